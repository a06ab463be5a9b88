"""SQLAlchemy 2 (async) store on SQLite or PostgreSQL, schema managed by Alembic."""
