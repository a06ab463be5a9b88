"""Persistence: protocols in base.py, SQL implementation in sql/."""
