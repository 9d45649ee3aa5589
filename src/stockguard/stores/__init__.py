"""Persistence: the SQL store (SQLite, PostgreSQL, MariaDB/MySQL) and, later, Redis."""
