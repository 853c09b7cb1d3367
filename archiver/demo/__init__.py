"""The embedded default: a sample clinic on a loopback Mastodon-compatible server, archived and served."""
