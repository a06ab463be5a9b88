"""The pure rules of overcast.client.push: default routes, what apply_manifest is sent, when
a droplet is kept instead of staged again, and when a start has clearly failed."""

from __future__ import annotations

from typing import Any

import yaml

from overcast.client.push import (
    ProcessSummary,
    StagedFrom,
    _start_problem,
    can_reuse,
    for_server,
    installed_filename,
    with_default_routes,
)
from overcast.models.manifest import AppManifest, Manifest, RouteEntry

STAGED = StagedFrom(
    droplet_guid="d1",
    package_checksum="abc",
    buildpacks=(("python", "1.0.0"),),
    lifecycle=((), None),
    environment=(("MODE", "demo"),),
)
INSTALLED = frozenset({installed_filename("python", "1.0.0"), "static_buildpack.zip"})


def test_silent_apps_get_their_default_route() -> None:
    manifest = Manifest(
        applications=(
            AppManifest(name="plain"),
            AppManifest(name="routed", routes=(RouteEntry(route="x.apps.localhost"),)),
            AppManifest(name="hidden", no_route=True),
            AppManifest(name="random", random_route=True),
        )
    )
    defaulted = {app.name: app.default_route for app in with_default_routes(manifest).applications}
    assert defaulted == {"plain": True, "routed": None, "hidden": None, "random": None}


def test_the_server_never_sees_local_paths() -> None:
    text = for_server(Manifest(applications=(AppManifest(name="a", path="/home/me/src"),)))
    (app,) = yaml.safe_load(text)["applications"]
    assert app == {"name": "a"}


def test_a_droplet_is_kept_only_when_nothing_staging_reads_changed() -> None:
    assert can_reuse(STAGED, STAGED, INSTALLED)
    assert not can_reuse(None, STAGED, INSTALLED)
    changed: dict[str, Any] = {
        "package_checksum": "def",
        "lifecycle": (("nodejs",), None),
        "environment": (("MODE", "live"),),
    }
    for field, value in changed.items():
        after = StagedFrom(**{**STAGED.__dict__, field: value})
        assert not can_reuse(STAGED, after, INSTALLED), field
    # A buildpack upgraded since, or one given by URL, means staging again.
    assert not can_reuse(STAGED, STAGED, frozenset({installed_filename("python", "1.1.0")}))
    by_url = StagedFrom(**{**STAGED.__dict__, "buildpacks": (("https://x/bp.git", None),)})
    assert not can_reuse(by_url, by_url, INSTALLED)
    nothing_ran = StagedFrom(**{**STAGED.__dict__, "buildpacks": ()})
    assert not can_reuse(nothing_ran, nothing_ran, INSTALLED)


def _stats(state: str, details: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "state": state, "details": details}


def test_a_crash_or_a_missing_command_fails_the_start_at_once() -> None:
    def summary(*stats: dict[str, Any]) -> ProcessSummary:
        return ProcessSummary("web", 2, 256, 1024, None, list(stats))  # type: ignore[arg-type]

    assert _start_problem("a", [summary(_stats("RUNNING"), _stats("STARTING", index=1))]) is None
    assert _start_problem("a", [summary(_stats("DOWN", "no room on any cell"))]) is None
    crashed = _start_problem("a", [summary(_stats("CRASHED", "exited with status 3", 1))])
    assert crashed == "App a failed to start: web instance 1 crashed (exited with status 3)"
    missing = _start_problem("a", [summary(_stats("DOWN", "no start command: none"))])
    assert missing == "App a cannot start its web process: no start command: none"
