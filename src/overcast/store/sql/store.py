"""The SQL store on SQLite (file, WAL, one writer at a time) or PostgreSQL (asyncpg).

SQLite: pysqlite's implicit transaction handling is switched off and transactions are begun
explicitly, `BEGIN IMMEDIATE` for writes, so a writer takes the lock up front instead of
failing on upgrade; writers in this process also queue on an asyncio lock, and other processes
wait through busy_timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from overcast.core.clock import Clock
from overcast.core.logging import get_logger
from overcast.store.base import Tx
from overcast.store.sql.migrate import upgrade_to_head
from overcast.store.sql.repos import SqlTx

log = get_logger(__name__)

_WRITE_OPTION = "overcast_write"
_MIGRATION_LOCK_KEY = 0x0C7A58


def async_url(url: str) -> URL:
    """Accept plain `sqlite:///` and `postgresql://` URLs and pick the async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def safe_url(url: str) -> str:
    """The URL with any password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=10000",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class SqlStore:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._dialect = engine.dialect.name
        self._write_lock = asyncio.Lock() if self._dialect == "sqlite" else None

    @classmethod
    async def open(
        cls, url: str, clock: Clock, *, migrate: bool = True, pool_size: int = 5, echo: bool = False
    ) -> SqlStore:
        target = async_url(url)
        options: dict[str, Any] = {"echo": echo}
        if target.get_backend_name() == "sqlite":
            if target.database and target.database != ":memory:":
                Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        engine = create_async_engine(target, **options)
        if target.get_backend_name() == "sqlite":
            _configure_sqlite(engine)
        store = cls(engine, clock)
        if migrate:
            await store.migrate()
        log.info("store.opened", url=safe_url(url), dialect=store.dialect)
        return store

    @property
    def dialect(self) -> str:
        return self._dialect

    async def migrate(self) -> None:
        """Apply Alembic migrations up to head; concurrent starters wait for each other."""
        async with self._connection(write=True) as conn, conn.begin():
            if self._dialect == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            await conn.run_sync(upgrade_to_head)

    @asynccontextmanager
    async def _connection(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if write and self._dialect == "sqlite":
                conn = await conn.execution_options(**{_WRITE_OPTION: True})
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlTx]:
        if self._write_lock is not None:
            async with self._write_lock, self._transaction(write=True) as tx:
                yield tx
        else:
            async with self._transaction(write=True) as tx:
                yield tx

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlTx]:
        async with self._transaction(write=False) as tx:
            yield tx

    @asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[SqlTx]:
        async with self._connection(write=write) as conn, conn.begin():
            yield SqlTx(conn, self.clock, self._dialect)

    async def close(self) -> None:
        await self.engine.dispose()


def _conforms(tx: SqlTx) -> Tx:
    """Static check only: mypy proves the SQL store implements the protocols."""
    return tx
