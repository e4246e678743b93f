"""Durable local stores of the shared layer (SQLite files a component owns)."""
