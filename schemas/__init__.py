"""Schemas of the archive (archive.sql) and JSON Schemas; shipped as package data."""
