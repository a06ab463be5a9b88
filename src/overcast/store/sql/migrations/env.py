"""Alembic environment: always run online on the connection the store hands over (see
migrate.py); for `alembic revision --autogenerate` during development a URL may be given with
-x url=sqlite:///path."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from overcast.store.sql.tables import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only alter tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///:memory:")
    with create_engine(url).connect() as development_connection:
        _run(development_connection)
