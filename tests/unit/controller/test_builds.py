"""The pure parts of builds: which buildpacks a build may name, how failures read, how
installed buildpacks list, what staging_info.yml may say about the buildpacks that ran."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from overcast.controller.buildpacks import Buildpacks, InstalledBuildpack, is_buildpack_url
from overcast.controller.builds import failure_text
from overcast.controller.droplet_archive import InvalidDroplet, StagedBuildpack, parse_staging_info
from overcast.models.errors import NotFound, Unprocessable
from overcast.models.query import ListQuery
from overcast.staging.sources import display_url, is_zip_url

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
INSTALLED = Buildpacks(
    [
        InstalledBuildpack("static", 3, "1.0", "overcast-linux", WHEN),
        InstalledBuildpack("python", 1, "1.0", "overcast-linux", WHEN),
        InstalledBuildpack("nodejs", 2, None, "overcast-linux", WHEN),
    ]
)


@pytest.mark.parametrize(
    "name",
    [
        "python",
        "/opt/buildpacks/go",
        "https://github.com/cloudfoundry/python-buildpack",
        "https://host/bp.git#v1.2",
        "git://host/bp.git",
        "http://host/bp.zip",
        "file:///srv/bp",
    ],
)
def test_names_a_build_may_use(name: str) -> None:
    INSTALLED.check_requested([name])


@pytest.mark.parametrize(
    "name", ["ruby", "relative/path", "ftp://host/bp.zip", "https://", "javascript:alert(1)"]
)
def test_names_refused_with_cfs_message(name: str) -> None:
    with pytest.raises(Unprocessable, match="must be an existing admin buildpack or a valid git"):
        INSTALLED.check_requested([name])


def test_too_many_buildpacks() -> None:
    with pytest.raises(Unprocessable, match="at most"):
        INSTALLED.check_requested(["python"] * 17)


async def test_installed_buildpacks_list_in_position_order_with_stable_guids() -> None:
    page = await INSTALLED.page(None, ListQuery())  # type: ignore[arg-type]
    assert [b.name for b in page.items] == ["python", "nodejs", "static"]
    assert page.total == 3
    again = Buildpacks(INSTALLED.installed)
    assert [b.guid for b in again.installed] == [b.guid for b in INSTALLED.installed]
    assert len({b.guid for b in page.items}) == 3
    only = await INSTALLED.page(None, ListQuery(filters={"names": ["static"]}))  # type: ignore[arg-type]
    assert [b.name for b in only.items] == ["static"]
    second = await INSTALLED.page(None, ListQuery(page=2, per_page=2))  # type: ignore[arg-type]
    assert [b.name for b in second.items] == ["static"]
    found = await INSTALLED.get(None, page.items[0].guid)  # type: ignore[arg-type]
    assert found.name == "python"
    with pytest.raises(NotFound):
        await INSTALLED.get(None, "nope")  # type: ignore[arg-type]


def test_failure_text_uses_cf_reason_names() -> None:
    assert failure_text("NoAppDetectedError", "x") == "NoAppDetectedError - x"
    assert failure_text("MadeUp", "y") == "StagingError - y"
    assert len(failure_text("StagingError", "z" * 10_000)) < 4200


def test_urls_are_shown_without_secrets() -> None:
    url = "https://user:token@git.example.com:8443/org/bp.git?private_token=abc#v1"
    shown = display_url(url)
    assert shown == "https://git.example.com:8443/org/bp.git"
    assert "token" not in shown and "abc" not in shown
    assert is_zip_url("https://host/x/bp.ZIP?x=1") and not is_zip_url("https://host/bp.git")
    assert is_buildpack_url("file:///srv/bp") and not is_buildpack_url("python")


def test_staging_info_buildpacks() -> None:
    info = parse_staging_info(
        b"process_types: {web: run}\n"
        b"buildpacks: [{name: python, version: '1.0', detect_output: python}, {name: x}]\n"
    )
    assert info.buildpacks == (
        StagedBuildpack("python", "1.0", "python"),
        StagedBuildpack("x", None, None),
    )
    for bad in (b"buildpacks: 3", b"buildpacks: [3]", b"buildpacks: [{version: '1'}]"):
        with pytest.raises(InvalidDroplet):
            parse_staging_info(bad)
