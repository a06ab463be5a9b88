"""Fixtures shared by every tier: the fake clock, throwaway PostgreSQL, stores on both
backends. Servers are started by the tests themselves on loopback; a missing server binary is
a skip locally and a failure when OVERCAST_TEST_REQUIRE_SERVERS=1 (CI)."""

from __future__ import annotations

import itertools
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from overcast.store.sql.store import SqlStore
from overcast.testing.clock import FakeClock
from overcast.testing.nats import NatsServer, nats_binary
from overcast.testing.ports import share_port_blocks
from overcast.testing.postgres import PostgresServer, postgres_binaries
from overcast.testing.servers import missing_server
from tests.run_watch import register as register_run_watch

_database_numbers = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    register_run_watch(config)
    # A background job of a non-interactive shell (as a CI runner may start us) has SIGINT
    # ignored, and children inherit that: `overcast logs` would then never see the Ctrl-C
    # its test sends. Tests of Ctrl-C need what a terminal gives.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _port_blocks_of_this_worker(request: pytest.FixtureRequest) -> None:
    """Under pytest-xdist (`./dev test` runs two workers), each worker's test cells take their
    own share of the port blocks."""
    workerinput = getattr(request.config, "workerinput", None)
    if workerinput is not None:
        worker = int(str(workerinput["workerid"]).removeprefix("gw"))
        share_port_blocks(worker, int(workerinput["workercount"]))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    binaries = postgres_binaries()
    if binaries is None:
        missing_server("PostgreSQL")
    server = PostgresServer(binaries)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for one test."""
    return postgres_server.create_database(f"test_{next(_database_numbers)}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'overcast.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over both store backends."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(database_url: str, clock: FakeClock) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(database_url, clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    binary = nats_binary()
    if binary is None:
        missing_server("nats-server")
    with NatsServer(binary) as server:
        yield server
