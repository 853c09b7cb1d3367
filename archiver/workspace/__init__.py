"""The compliance workspace served by the Datasette plugin: search, item history, raw records."""
