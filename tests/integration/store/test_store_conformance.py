"""One store conformance suite; every test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from overcast.models.errors import NotFound, Uniqueness, Unprocessable
from overcast.models.jobs import Job, Stage
from overcast.models.lifecycle import AppState, JobState
from overcast.models.query import ListQuery
from overcast.models.resources import (
    Actor,
    App,
    AuditEvent,
    Domain,
    Metadata,
    OAuthClient,
    Organization,
    Process,
    Role,
    SigningKey,
    Space,
    User,
)
from overcast.models.roles import RoleType
from overcast.store.sql.store import SqlStore
from overcast.testing.clock import FakeClock

pytestmark = pytest.mark.asyncio


def _org(clock: FakeClock, name: str, guid: str | None = None) -> Organization:
    now = clock.now()
    return Organization(guid=guid or f"org-{name}", name=name, created_at=now, updated_at=now)


def _space(clock: FakeClock, org: Organization, name: str) -> Space:
    now = clock.now()
    return Space(
        guid=f"space-{org.name}-{name}",
        name=name,
        org_guid=org.guid,
        created_at=now,
        updated_at=now,
    )


def _app(clock: FakeClock, space: Space, name: str) -> App:
    now = clock.now()
    return App(
        guid=f"app-{space.guid}-{name}",
        name=name,
        space_guid=space.guid,
        created_at=now,
        updated_at=now,
        environment_variables={"A": "1"},
    )


def _process(clock: FakeClock, app: App, kind: str = "web") -> Process:
    now = clock.now()
    return Process(
        guid=f"proc-{app.guid}-{kind}",
        app_guid=app.guid,
        type=kind,
        created_at=now,
        updated_at=now,
        version="v1",
    )


async def _tree(store: SqlStore, clock: FakeClock) -> tuple[Organization, Space, App]:
    org = _org(clock, "acme")
    space = _space(clock, org, "dev")
    app = _app(clock, space, "web")
    async with store.write() as tx:
        await tx.orgs.add(org)
        await tx.spaces.add(space)
        await tx.apps.add(app)
        await tx.processes.add(_process(clock, app))
    return org, space, app


async def test_add_get_round_trips_every_field(store: SqlStore, clock: FakeClock) -> None:
    org = dataclasses.replace(
        _org(clock, "acme"), metadata=Metadata(labels={"env": "prod"}, annotations={"a": "b"})
    )
    async with store.write() as tx:
        await tx.orgs.add(org)
    async with store.read() as tx:
        stored = await tx.orgs.get(org.guid)
    assert stored == org
    assert stored is not None and stored.created_at.tzinfo is not None


async def test_update_returns_before_and_after(store: SqlStore, clock: FakeClock) -> None:
    _, _, app = await _tree(store, clock)
    clock.advance(5)
    async with store.write() as tx:
        before, after = await tx.apps.update(
            app.guid, lambda current: dataclasses.replace(current, state=AppState.STARTED)
        )
    assert before.state == AppState.STOPPED and after.state == AppState.STARTED
    assert after.updated_at == before.updated_at + timedelta(seconds=5)
    async with store.read() as tx:
        assert (await tx.apps.require(app.guid)).state == AppState.STARTED


async def test_update_without_change_writes_nothing(store: SqlStore, clock: FakeClock) -> None:
    _, _, app = await _tree(store, clock)
    clock.advance(5)
    async with store.write() as tx:
        before, after = await tx.apps.update(app.guid, lambda current: current)
    assert before is after and after.updated_at == app.updated_at


async def test_missing_objects(store: SqlStore) -> None:
    async with store.write() as tx:
        assert await tx.apps.get("nope") is None
        with pytest.raises(NotFound, match="App not found"):
            await tx.apps.require("nope")
        with pytest.raises(NotFound):
            await tx.apps.update("nope", lambda app: app)
        assert await tx.apps.delete("nope") is None


async def test_names_are_unique_ignoring_case(store: SqlStore, clock: FakeClock) -> None:
    org, space, _ = await _tree(store, clock)
    with pytest.raises(Uniqueness, match="Organization 'ACME' already exists"):
        async with store.write() as tx:
            await tx.orgs.add(_org(clock, "ACME", guid="other"))
    with pytest.raises(Uniqueness):
        async with store.write() as tx:
            await tx.spaces.add(dataclasses.replace(_space(clock, org, "DEV"), guid="s2"))
    with pytest.raises(Uniqueness, match="App with the name 'WEB' already exists"):
        async with store.write() as tx:
            await tx.apps.add(dataclasses.replace(_app(clock, space, "WEB"), guid="a2"))
    # the same app name in another space is fine
    other_space = dataclasses.replace(_space(clock, org, "prod"), guid="s3")
    async with store.write() as tx:
        await tx.spaces.add(other_space)
        await tx.apps.add(dataclasses.replace(_app(clock, other_space, "web"), guid="a3"))


async def test_rename_onto_a_taken_name_is_refused(store: SqlStore, clock: FakeClock) -> None:
    async with store.write() as tx:
        await tx.orgs.add(_org(clock, "one"))
        await tx.orgs.add(_org(clock, "two"))
    with pytest.raises(Uniqueness):
        async with store.write() as tx:
            await tx.orgs.update("org-two", lambda o: dataclasses.replace(o, name="ONE"))


async def test_a_failed_transaction_leaves_nothing(store: SqlStore, clock: FakeClock) -> None:
    org = _org(clock, "acme")
    with pytest.raises(Uniqueness):
        async with store.write() as tx:
            await tx.orgs.add(org)
            await tx.spaces.add(_space(clock, org, "dev"))
            await tx.orgs.add(dataclasses.replace(org, guid="dup"))
    async with store.read() as tx:
        assert await tx.orgs.get(org.guid) is None
        assert (await tx.spaces.page(ListQuery())).total == 0


async def test_parents_must_exist(store: SqlStore, clock: FakeClock) -> None:
    ghost = _org(clock, "ghost")
    with pytest.raises(Unprocessable):
        async with store.write() as tx:
            await tx.spaces.add(_space(clock, ghost, "dev"))


async def test_deleting_a_parent_with_children_is_refused(
    store: SqlStore, clock: FakeClock
) -> None:
    org, _, _ = await _tree(store, clock)
    with pytest.raises(Unprocessable):
        async with store.write() as tx:
            await tx.orgs.delete(org.guid)


async def test_deleting_an_app_deletes_its_processes(store: SqlStore, clock: FakeClock) -> None:
    _, _, app = await _tree(store, clock)
    async with store.write() as tx:
        deleted = await tx.apps.delete(app.guid)
    assert deleted == app
    async with store.read() as tx:
        assert await tx.processes.of_app(app.guid) == []


async def test_list_filters_pages_and_orders(store: SqlStore, clock: FakeClock) -> None:
    async with store.write() as tx:
        for index, name in enumerate(["delta", "alpha", "charlie", "bravo", "echo"]):
            await tx.orgs.add(_org(clock, name))
            clock.advance(1 + index)
    async with store.read() as tx:
        first = await tx.orgs.page(ListQuery(per_page=2))
        assert first.total == 5 and [o.name for o in first.items] == ["delta", "alpha"]
        last = await tx.orgs.page(ListQuery(per_page=2, page=3))
        assert [o.name for o in last.items] == ["echo"]
        by_name = await tx.orgs.page(ListQuery(order_by="name", descending=True))
        assert [o.name for o in by_name.items] == ["echo", "delta", "charlie", "bravo", "alpha"]
        named = await tx.orgs.page(ListQuery(filters={"names": ["ALPHA", "echo"]}))
        assert {o.name for o in named.items} == {"alpha", "echo"}
        nothing = await tx.orgs.page(ListQuery(filters={"guids": []}))
        assert nothing.total == 0 and nothing.items == []
        cut = clock.now() - timedelta(seconds=10)
        recent = await tx.orgs.page(ListQuery(timestamps=[("created_at", "gt", cut)]))
        assert {o.name for o in recent.items} == {"bravo", "echo"}


async def test_related_filters(store: SqlStore, clock: FakeClock) -> None:
    org, space, app = await _tree(store, clock)
    async with store.read() as tx:
        assert (
            await tx.apps.page(ListQuery(filters={"organization_guids": [org.guid]}))
        ).total == 1
        assert (await tx.apps.page(ListQuery(filters={"organization_guids": ["x"]}))).total == 0
        processes = await tx.processes.page(ListQuery(filters={"space_guids": [space.guid]}))
        assert [p.app_guid for p in processes.items] == [app.guid]
        assert await tx.spaces.guids({"organization_guids": [org.guid]}) == [space.guid]


async def test_users_roles_and_cascade(store: SqlStore, clock: FakeClock) -> None:
    org, space, _ = await _tree(store, clock)
    now = clock.now()
    user = User(
        guid="u1", username="Alice", created_at=now, updated_at=now, password_hash="$argon2id$hash"
    )
    async with store.write() as tx:
        await tx.users.add(user)
        await tx.roles.add(
            Role(
                guid="r1",
                type=RoleType.ORGANIZATION_USER,
                user_guid="u1",
                org_guid=org.guid,
                created_at=now,
                updated_at=now,
            )
        )
        await tx.roles.add(
            Role(
                guid="r2",
                type=RoleType.SPACE_DEVELOPER,
                user_guid="u1",
                space_guid=space.guid,
                created_at=now,
                updated_at=now,
            )
        )
    with pytest.raises(Uniqueness):
        async with store.write() as tx:
            await tx.roles.add(
                Role(
                    guid="r3",
                    type=RoleType.SPACE_DEVELOPER,
                    user_guid="u1",
                    space_guid=space.guid,
                    created_at=now,
                    updated_at=now,
                )
            )
    async with store.read() as tx:
        assert await tx.users.by_username("alice") == user
        assert {r.guid for r in await tx.roles.of_user("u1")} == {"r1", "r2"}
        scoped = await tx.roles.page(ListQuery(filters={"scoped_organization_guids": [org.guid]}))
        assert scoped.total == 2
    async with store.write() as tx:
        await tx.users.delete("u1")
    async with store.read() as tx:
        assert await tx.roles.of_user("u1") == []


async def test_domains(store: SqlStore, clock: FakeClock) -> None:
    org, _, _ = await _tree(store, clock)
    now = clock.now()
    async with store.write() as tx:
        await tx.domains.add(Domain(guid="d1", name="apps.example", created_at=now, updated_at=now))
        await tx.domains.add(
            Domain(
                guid="d2", name="acme.example", org_guid=org.guid, created_at=now, updated_at=now
            )
        )
    with pytest.raises(Uniqueness):
        async with store.write() as tx:
            await tx.domains.add(
                Domain(guid="d3", name="APPS.example", created_at=now, updated_at=now)
            )
    async with store.read() as tx:
        usable = await tx.domains.page(
            ListQuery(filters={"usable_by_organization_guids": [org.guid]})
        )
        assert {d.guid for d in usable.items} == {"d1", "d2"}
        shared_only = await tx.domains.page(
            ListQuery(filters={"usable_by_organization_guids": ["other"]})
        )
        assert {d.guid for d in shared_only.items} == {"d1"}


async def test_audit_events(store: SqlStore, clock: FakeClock) -> None:
    actor = Actor(guid="u1", type="user", name="alice")
    async with store.write() as tx:
        for index in range(3):
            await tx.events.add(
                AuditEvent(
                    guid=f"e{index}",
                    type="audit.app.create" if index else "audit.space.create",
                    actor=actor,
                    target_guid=f"t{index}",
                    target_type="app",
                    target_name="x",
                    created_at=clock.now(),
                    data={"request": {"name": "x"}},
                    space_guid="s1" if index else None,
                    org_guid="o1",
                )
            )
    async with store.read() as tx:
        apps = await tx.events.page(ListQuery(filters={"types": ["audit.app.create"]}))
        assert apps.total == 2
        assert (await tx.events.get("e1")) == apps.items[0]
        everything = await tx.events.page(ListQuery(filters={"visible_in": ["o1", "s1"]}))
        assert everything.total == 3
        org_level = await tx.events.page(ListQuery(filters={"visible_in": ["o1"]}))
        assert [e.guid for e in org_level.items] == ["e0"]


async def test_concurrent_updates_do_not_lose_writes(store: SqlStore, clock: FakeClock) -> None:
    org = _org(clock, "acme")
    async with store.write() as tx:
        await tx.orgs.add(org)

    async def label(index: int) -> None:
        async with store.write() as tx:
            await tx.orgs.update(
                org.guid,
                lambda o: dataclasses.replace(
                    o, metadata=Metadata(labels={**o.metadata.labels, f"k{index}": "v"})
                ),
            )

    await asyncio.gather(*(label(index) for index in range(20)))
    async with store.read() as tx:
        assert len((await tx.orgs.require(org.guid)).metadata.labels) == 20


async def test_clients_and_keys(store: SqlStore, clock: FakeClock) -> None:
    client = OAuthClient(
        client_id="ci",
        created_at=clock.now(),
        secret_hash="h",
        authorized_grant_types=("client_credentials",),
        authorities=("cloud_controller.admin",),
    )
    async with store.write() as tx:
        await tx.clients.add(client)
        await tx.keys.add(SigningKey(kid="k1", secret="s1", created_at=clock.now()))
        clock.advance(1)
        await tx.keys.add(SigningKey(kid="k2", secret="s2", created_at=clock.now()))
    with pytest.raises(Uniqueness):
        async with store.write() as tx:
            await tx.clients.add(client)
    async with store.read() as tx:
        assert await tx.clients.get("ci") == client
        assert (await tx.keys.current()) == SigningKey(
            kid="k2", secret="s2", created_at=clock.now()
        )
        assert [k.kid for k in await tx.keys.all()] == ["k2", "k1"]


# --- jobs ---------------------------------------------------------------------------------


def _job(
    clock: FakeClock,
    guid: str,
    *,
    target: str = "t1",
    queue: str = "default",
    operation: str = "app.delete",
) -> Job:
    now = clock.now()
    return Job(
        guid=guid,
        operation=operation,
        queue=queue,
        target_type="app",
        target_guid=target,
        state=JobState.QUEUED,
        created_at=now,
        updated_at=now,
        stages=(Stage(name="one"), Stage(name="two")),
    )


async def _claim(store: SqlStore, clock: FakeClock, owner: str) -> Job | None:
    now = clock.now()
    async with store.write() as tx:
        return await tx.jobs.claim(owner, now, now + timedelta(seconds=30))


async def test_jobs_round_trip(store: SqlStore, clock: FakeClock) -> None:
    job = _job(clock, "j1")
    async with store.write() as tx:
        await tx.jobs.add(job)
    async with store.read() as tx:
        assert await tx.jobs.get("j1") == job
        assert await tx.jobs.find_pending("app.delete", "app:t1", "") == job
        assert await tx.jobs.find_pending("app.delete", "app:t2", "") is None


async def test_claim_honours_queue_limits(store: SqlStore, clock: FakeClock) -> None:
    async with store.write() as tx:
        await tx.queues.ensure("default", 2)
        for index in range(4):
            await tx.jobs.add(_job(clock, f"j{index}", target=f"t{index}"))
            clock.advance(1)
    claimed = [await _claim(store, clock, f"w{index}") for index in range(3)]
    assert [job.guid if job else None for job in claimed] == ["j0", "j1", None]
    assert claimed[0] is not None and claimed[0].state == JobState.RUNNING
    assert claimed[0].attempts == 1 and claimed[0].lease_owner == "w0"
    async with store.write() as tx:
        await tx.queues.set_concurrency("default", 3)
    third = await _claim(store, clock, "w2")
    assert third is not None and third.guid == "j2"


async def test_one_running_job_per_target(store: SqlStore, clock: FakeClock) -> None:
    async with store.write() as tx:
        await tx.queues.ensure("default", 10)
        await tx.jobs.add(_job(clock, "first", target="same"))
        clock.advance(1)
        await tx.jobs.add(_job(clock, "second", target="same", operation="app.update"))
        clock.advance(1)
        await tx.jobs.add(_job(clock, "other", target="different"))
    one = await _claim(store, clock, "w1")
    two = await _claim(store, clock, "w2")
    assert (one and one.guid, two and two.guid) == ("first", "other")
    assert await _claim(store, clock, "w3") is None


async def test_expired_lease_can_be_claimed_by_another(store: SqlStore, clock: FakeClock) -> None:
    async with store.write() as tx:
        await tx.queues.ensure("default", 1)
        await tx.jobs.add(_job(clock, "j1"))
    first = await _claim(store, clock, "dead-worker")
    assert first is not None
    assert await _claim(store, clock, "w2") is None
    clock.advance(31)
    taken = await _claim(store, clock, "w2")
    assert taken is not None and taken.guid == "j1" and taken.lease_owner == "w2"
    assert taken.attempts == 2
    async with store.write() as tx:
        # the dead worker's writes are refused from now on
        assert await tx.jobs.write_as_owner(first, "dead-worker", clock.now()) is None
        assert await tx.jobs.write_as_owner(taken, "w2", clock.now()) is not None


async def test_expire_leases_of_a_restarted_owner(store: SqlStore, clock: FakeClock) -> None:
    async with store.write() as tx:
        await tx.queues.ensure("default", 1)
        await tx.jobs.add(_job(clock, "j1"))
    assert await _claim(store, clock, "micro:123:abc") is not None
    async with store.write() as tx:
        assert await tx.jobs.expire_leases_of("micro:", clock.now()) == 1
    again = await _claim(store, clock, "micro:456:def")
    assert again is not None and again.guid == "j1"


async def test_waiting_jobs_run_after_their_time(store: SqlStore, clock: FakeClock) -> None:
    waiting = dataclasses.replace(
        _job(clock, "j1"),
        state=JobState.WAITING,
        run_after=clock.now() + timedelta(seconds=10),
        attempts=1,
    )
    async with store.write() as tx:
        await tx.queues.ensure("default", 1)
        await tx.jobs.add(waiting)
    assert await _claim(store, clock, "w") is None
    clock.advance(11)
    claimed = await _claim(store, clock, "w")
    assert claimed is not None and claimed.state == JobState.RUNNING and claimed.attempts == 1


async def test_queue_stats(store: SqlStore, clock: FakeClock) -> None:
    async with store.write() as tx:
        await tx.queues.ensure("default", 1)
        await tx.queues.ensure("staging", 2)
        assert (await tx.queues.ensure("default", 9)).concurrency == 1
        await tx.jobs.add(_job(clock, "j1"))
        clock.advance(1)
        await tx.jobs.add(_job(clock, "j2", target="t2"))
    await _claim(store, clock, "w")
    async with store.read() as tx:
        stats = {s.name: s for s in await tx.jobs.queue_stats(clock.now())}
    assert stats["default"].running == 1 and stats["default"].queued == 1
    assert stats["default"].oldest_queued_at == clock.now()
    assert stats["staging"].queued == 0 and stats["staging"].concurrency == 2


async def test_stored_times_are_utc(store: SqlStore) -> None:
    odd_zone = datetime(2026, 5, 1, 12, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=5)))
    org = Organization(guid="g", name="n", created_at=odd_zone, updated_at=odd_zone)
    async with store.write() as tx:
        await tx.orgs.add(org)
    async with store.read() as tx:
        stored = await tx.orgs.require("g")
    assert stored.created_at == odd_zone and stored.created_at.utcoffset() == timedelta(0)
