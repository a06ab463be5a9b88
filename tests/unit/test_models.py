"""Pure domain: transition tables, validators, masking, permissions, metadata patches."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overcast.models.errors import IllegalTransition, Unprocessable
from overcast.models.jobs import Job, Stage
from overcast.models.lifecycle import (
    APP_TRANSITIONS,
    JOB_TRANSITIONS,
    AppState,
    JobState,
    StageState,
    cf_job_state,
    transition,
)
from overcast.models.metadata import patch_metadata
from overcast.models.resources import Metadata
from overcast.models.roles import Grant, Permissions, RoleType
from overcast.models.secrets import HIDDEN, looks_secret, mask
from overcast.models.validation import check_environment_variables, check_name, megabytes

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_app_transitions() -> None:
    assert (
        transition(APP_TRANSITIONS, AppState.STOPPED, AppState.STARTED, what="App")
        == AppState.STARTED
    )
    assert (
        transition(APP_TRANSITIONS, AppState.STARTED, AppState.STARTED, what="App")
        == AppState.STARTED
    )


def test_finished_jobs_cannot_move() -> None:
    for finished in (JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED):
        for target in JobState:
            if target != finished:
                with pytest.raises(IllegalTransition, match=f"from {finished.value}"):
                    transition(JOB_TRANSITIONS, finished, target, what="job")


def test_cf_job_states() -> None:
    assert {cf_job_state(s) for s in JobState} == {"PROCESSING", "POLLING", "COMPLETE", "FAILED"}
    assert cf_job_state(JobState.WAITING) == "POLLING"
    assert cf_job_state(JobState.CANCELLED) == "FAILED"


def test_first_unfinished_stage() -> None:
    job = Job(
        guid="j",
        operation="o",
        queue="q",
        target_type="t",
        target_guid="g",
        state=JobState.RUNNING,
        created_at=NOW,
        updated_at=NOW,
        stages=(
            Stage("a", StageState.COMPLETE),
            Stage("b", StageState.SKIPPED),
            Stage("c", StageState.RUNNING),
            Stage("d"),
        ),
    )
    assert job.first_unfinished_stage() == 2
    done = Job(
        guid="j",
        operation="o",
        queue="q",
        target_type="t",
        target_guid="g",
        state=JobState.RUNNING,
        created_at=NOW,
        updated_at=NOW,
        stages=(Stage("a", StageState.COMPLETE),),
    )
    assert done.first_unfinished_stage() is None


def test_stage_moves_record_times() -> None:
    running = Stage("a").moved(StageState.RUNNING, NOW)
    assert running.started_at == NOW and running.finished_at is None
    complete = running.moved(StageState.COMPLETE, NOW)
    assert complete.finished_at == NOW
    with pytest.raises(IllegalTransition):
        complete.moved(StageState.RUNNING, NOW)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("512M", 512),
        ("512m", 512),
        ("1G", 1024),
        ("1gb", 1024),
        ("2048MB", 2048),
        ("1T", 1024 * 1024),
        ("1048576K", 1024),
        (" 64M ", 64),
    ],
)
def test_megabytes(text: str, expected: int) -> None:
    assert megabytes(text) == expected


@pytest.mark.parametrize("text", ["512", "", "M", "1.5G", "-1M", "100K", "1P", "ten M"])
def test_megabytes_refuses(text: str) -> None:
    with pytest.raises(Unprocessable):
        megabytes(text)


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["M", "MB", "m", "mb"]))
def test_megabytes_round_trip(amount: int, unit: str) -> None:
    assert megabytes(f"{amount}{unit}") == amount


def test_names() -> None:
    assert check_name("ok", what="App") == "ok"
    for bad in ("", "   ", "x" * 256, "a\nb", "tab\there"):
        with pytest.raises(Unprocessable):
            check_name(bad, what="App")


def test_environment_variable_rules() -> None:
    check_environment_variables({"A": "1", "B_2": 3, "C": True, "D": None})
    for bad in (
        {"VCAP_X": "1"},
        {"vcap_x": "1"},
        {"PORT": "1"},
        {"1A": "x"},
        {"A-B": "x"},
        {"A": ["x"]},
        {"A": "x" * (130 * 1024 + 1)},
    ):
        with pytest.raises(Unprocessable):
            check_environment_variables(bad)


def test_masking() -> None:
    masked = mask(
        {
            "name": "app",
            "password": "p",
            "client_secret": "s",
            "Authorization": "bearer x",
            "environment_variables": {"A": "1"},
            "nested": [{"token": "t"}, {"url": "postgresql://u:pw@db/x"}],
            "enabled": True,
            "api_url": "http://127.0.0.1:9022",
        }
    )
    assert masked == {
        "name": "app",
        "password": HIDDEN,
        "client_secret": HIDDEN,
        "Authorization": HIDDEN,
        "environment_variables": {"A": HIDDEN},
        "nested": [{"token": HIDDEN}, {"url": f"postgresql://u:{HIDDEN}@db/x"}],
        "enabled": True,
        "api_url": "http://127.0.0.1:9022",
    }
    assert looks_secret("DB_PASSWORD") and looks_secret("GITHUB_TOKEN")
    assert not looks_secret("GREETING")


def _permissions(*grants: Grant, admin: bool = False) -> Permissions:
    return Permissions.of(grants, admin=admin)


def test_admin_sees_everything() -> None:
    admin = _permissions(admin=True)
    assert admin.visible_org_guids() is None and admin.visible_space_guids() is None
    assert admin.can_manage_org("o") and admin.can_develop_in_space("s")


def test_space_developer_sees_their_space_and_its_org() -> None:
    developer = _permissions(
        Grant(RoleType.ORGANIZATION_USER, org_guid="o1"),
        Grant(RoleType.SPACE_DEVELOPER, space_guid="s1", space_org_guid="o1"),
    )
    assert developer.visible_org_guids() == {"o1"}
    assert developer.can_see_space("s1", "o1") and not developer.can_see_space("s2", "o1")
    assert developer.can_develop_in_space("s1") and not developer.can_develop_in_space("s2")
    assert not developer.can_manage_org("o1") and not developer.can_manage_space("s1", "o1")


def test_org_manager_sees_every_space_of_their_org() -> None:
    manager = _permissions(Grant(RoleType.ORGANIZATION_MANAGER, org_guid="o1"))
    assert manager.can_see_space("any", "o1") and not manager.can_see_space("any", "o2")
    assert manager.can_manage_space("any", "o1")
    assert not manager.can_develop_in_space("any")


def test_space_roles_alone_reveal_their_org() -> None:
    auditor = _permissions(Grant(RoleType.SPACE_AUDITOR, space_guid="s1", space_org_guid="o1"))
    assert auditor.can_see_org("o1") and not auditor.can_see_org("o2")
    assert not auditor.can_see_space_secrets("s1")


def test_metadata_patches() -> None:
    current = Metadata(labels={"a": "1", "b": "2"}, annotations={"x": "y"})
    patched = patch_metadata(current, {"a": None, "c": "3"}, None)
    assert patched == Metadata(labels={"b": "2", "c": "3"}, annotations={"x": "y"})
    assert patch_metadata(current, None, None) == current
    for bad in ({"-bad": "v"}, {"x" * 64: "v"}, {"ok": "bad value!"}, {"UPPER.Prefix/k": "v"}):
        with pytest.raises(Unprocessable):
            patch_metadata(current, bad, None)
    assert patch_metadata(current, {"example.com/key": "v"}, None).labels["example.com/key"] == "v"
