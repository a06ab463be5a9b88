"""stage (an app's source directory becomes its current droplet), buildpacks.

`overcast stage APP [PATH]` is `cf push` without the manifest, routes and start: the files of
PATH (less `.cfignore`) are offered to resource matching, only those the server does not hold
are zipped and uploaded, the package is staged by a build whose `STG` log lines are printed as
they come, and the droplet it makes becomes the app's current one (start or restart the app to
run it)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from overcast.cli import render
from overcast.cli.app_commands import AppName, find_app
from overcast.cli.context import add_commands, current
from overcast.cli.errors import CliError
from overcast.client import JobTimedOut, OvercastClient
from overcast.client.bits import collect, split_matched, write_zip
from overcast.client.push import StagingLog, files_summary, format_size, offered_files
from overcast.client.resources import Build, Buildpack, Droplet, MatchedResource

PACKAGE_TIMEOUT_SECONDS = 300.0
STAGING_TIMEOUT_SECONDS = 900.0
# How often, at most, the build (and the staging log lines) are polled while it stages.
LOG_POLL_SECONDS = 0.5
# Staging ends when the cell hands over its droplet; its last lines may still be on their way.
LOG_SETTLE_SECONDS = 0.5


def _write_staging_line(text: str) -> None:
    # Plain writes, flushed per line: the buildpack's own output, never markup.
    sys.stdout.write(f"   {text}\n")
    sys.stdout.flush()


def _upload(
    client: OvercastClient,
    package_guid: str,
    zip_path: Path,
    resources: list[MatchedResource],
) -> None:
    out = render.console()
    with Progress(
        TextColumn("Uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=out,
        transient=True,
        disable=not out.is_terminal,
    ) as progress:
        task = progress.add_task("upload", total=zip_path.stat().st_size)
        client.upload_package(
            package_guid,
            zip_path,
            resources=resources,
            progress=lambda sent: progress.update(task, completed=sent),
        )


def _buildpack_names(droplet: Droplet, build: Build) -> str:
    detected = [
        (item.get("buildpack_name") or item["name"])
        + (f" {item['version']}" if item.get("version") else "")
        for item in droplet.get("buildpacks") or []
    ]
    return ", ".join(detected or build["lifecycle"]["data"].get("buildpacks") or ["-"])


def _process_types(droplet: Droplet) -> str:
    types = sorted(droplet.get("process_types") or {}, key=lambda kind: (kind != "web", kind))
    return ", ".join(types) or "-"


def stage(
    name: AppName,
    path: Annotated[
        Path,
        typer.Argument(
            exists=True,
            file_okay=False,
            dir_okay=True,
            help="The app's source directory (default: the current one).",
        ),
    ] = Path("."),
    buildpacks: Annotated[
        list[str] | None,
        typer.Option(
            "-b",
            "--buildpack",
            metavar="BUILDPACK",
            help="Buildpack to stage with (a name from `overcast buildpacks` or a git URL); "
            "repeat for several. Default: the app's, else detection.",
        ),
    ] = None,
) -> None:
    """Stage an app from its source directory; the droplet becomes its current one.

    Only the files the server does not already hold are uploaded; the buildpack's output is
    printed as it runs. Start or restart the app to run the new droplet."""
    ctx = current()
    org, space = ctx.require_org(), ctx.require_space()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        user = ctx.config.username or "?"
        render.line(
            f"Staging app {name} from {path} in org {org.name} / space {space.name} as {user}..."
        )
        files = collect(path)
        if not files:
            raise CliError(f"There are no files to stage in {path} (all ignored by .cfignore?)")
        offered = offered_files(files)
        matched = client.resource_matches([file.resource() for file in offered]) if offered else []
        unchanged, uploaded = split_matched(files, matched)
        package = client.create_package(found["guid"])
        with tempfile.TemporaryDirectory(prefix="overcast-stage-") as scratch:
            zip_path = Path(scratch) / f"{name}.zip"
            write_zip(path, uploaded, zip_path)
            _upload(client, package["guid"], zip_path, [file.resource() for file in unchanged])
        render.line(files_summary(unchanged, uploaded))
        package = client.wait_for_package(package["guid"], timeout=PACKAGE_TIMEOUT_SECONDS)
        if package["state"] != "READY":
            reason = (package.get("data") or {}).get("error") or f"it is {package['state']}"
            raise CliError(f"The upload of app {name} failed: {reason}")

        log = StagingLog(client, found["guid"], _write_staging_line)
        log.start()
        build = client.create_build(package["guid"], buildpacks=buildpacks or None)
        render.line(f"Staging (build {build['guid']})...")
        try:
            build = client.wait_for_build(
                build["guid"],
                timeout=STAGING_TIMEOUT_SECONDS,
                on_poll=log.poll,
                max_interval=LOG_POLL_SECONDS,
            )
        except JobTimedOut:
            raise CliError(
                f"App {name} is still staging after {STAGING_TIMEOUT_SECONDS:g}s "
                f"(build {build['guid']}); see: overcast logs {name} --recent"
            ) from None
        if log.enabled:
            time.sleep(LOG_SETTLE_SECONDS)
            log.poll()
        if build["state"] != "STAGED":
            raise CliError(f"Staging app {name} failed: {build['error'] or build['state']}")
        droplet_ref = build["droplet"]
        if droplet_ref is None:
            raise CliError(f"Build {build['guid']} is STAGED but names no droplet")
        client.set_current_droplet(found["guid"], droplet_ref["guid"])
        droplet = client.get_droplet(droplet_ref["guid"])
    skipped = sum(file.size for file in unchanged)
    sent = sum(file.size for file in uploaded)
    render.line(
        f"Staged app {name}: droplet {droplet['guid']} is now current "
        f"(buildpack {_buildpack_names(droplet, build)}; process types {_process_types(droplet)}"
        f"); {format_size(sent)} uploaded, {format_size(skipped)} unchanged."
    )


def _buildpack_row(buildpack: Buildpack) -> tuple[str, ...]:
    return (
        str(buildpack["position"]),
        buildpack["name"],
        buildpack.get("stack") or "-",
        str(buildpack["enabled"]).lower(),
        str(buildpack["locked"]).lower(),
    )


def buildpacks() -> None:
    """List the installed buildpacks, in the order detection tries them."""
    with current().client() as client:
        found = client.list_buildpacks()
    if not found:
        render.line("No buildpacks are installed.")
        return
    render.table(
        ("position", "name", "stack", "enabled", "locked"),
        (_buildpack_row(item) for item in sorted(found, key=lambda item: item["position"])),
    )


def register(app_: typer.Typer) -> None:
    add_commands(app_, "Apps", {"stage": stage, "buildpacks": buildpacks})
