"""push, create-app-manifest.

`overcast push [NAME]` is `cf push`: the manifest (`manifest.yml` in the directory, or `-f`),
its ((variables)) filled from `--var` and `--vars-file`, the flags laid over it, then
`overcast.client.push` does the work and this module prints it: steps, an upload progress bar,
the staging log as it comes, and a summary per app (or what failed, with the lines that show
why, and exit status 1)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from overcast.cli import render
from overcast.cli.app_commands import AppName, find_app
from overcast.cli.context import EXIT_FAILURE, add_commands, current
from overcast.cli.errors import CliError
from overcast.cli.units import format_mb, parse_size_mb
from overcast.client.manifests import (
    Manifest,
    ManifestError,
    apply_flag_overrides,
    parse_manifest,
    parse_var_flag,
    parse_vars_file,
)
from overcast.client.push import PushedApp, Pusher, PushError, PushEvents, format_size

MANIFEST_NAMES = ("manifest.yml", "manifest.yaml")


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"Cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise CliError(f"{what.capitalize()} {path} is not UTF-8 text") from None


def find_manifest(manifest: Path | None, directory: Path, *, ignore: bool) -> Path | None:
    """`-f` (a file, or a directory holding manifest.yml), else the directory's own."""
    if ignore:
        return None
    if manifest is not None:
        if manifest.is_dir():
            found = next((manifest / n for n in MANIFEST_NAMES if (manifest / n).is_file()), None)
            if found is None:
                raise CliError(f"No manifest.yml in {manifest}")
            return found
        if not manifest.is_file():
            raise CliError(f"Manifest {manifest} does not exist")
        return manifest
    return next((directory / n for n in MANIFEST_NAMES if (directory / n).is_file()), None)


def variables(pairs: list[str], files: list[Path]) -> dict[str, object]:
    """--vars-file values, then --var ones (a flag wins, as with the cf CLI)."""
    found: dict[str, object] = {}
    for file in files:
        found.update(parse_vars_file(_read(file, "vars file"), source=str(file)))
    for pair in pairs:
        name, value = parse_var_flag(pair)
        found[name] = value
    return found


def sources(manifest: Manifest, manifest_dir: Path, path_flag: Path | None) -> dict[str, Path]:
    """Each app's directory: `-p`, else its manifest `path` (relative to the manifest), else
    the manifest's directory."""
    found = {}
    for app in manifest.applications:
        if path_flag is not None:
            directory = path_flag
        elif app.path is not None:
            directory = manifest_dir / app.path
        else:
            directory = manifest_dir
        if not directory.is_dir():
            raise CliError(f"The path of app {app.name} ({directory}) is not a directory")
        found[app.name] = directory
    return found


class _Printer:
    """PushEvents on the terminal: lines, and a transient progress bar for each upload."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: int | None = None

    def events(self) -> PushEvents:
        return PushEvents(
            step=render.line,
            staging_line=self.staging_line,
            upload_started=self.upload_started,
            upload_progress=self.upload_progress,
            upload_finished=self.upload_finished,
        )

    @staticmethod
    def staging_line(text: str) -> None:
        # Plain writes, flushed per line: the buildpack's own output, never markup.
        sys.stdout.write(f"   {text}\n")
        sys.stdout.flush()

    def upload_started(self, total: int) -> None:
        out = render.console()
        self._progress = Progress(
            TextColumn("   Uploading"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=out,
            transient=True,
            disable=not out.is_terminal,
        )
        self._progress.start()
        self._task = self._progress.add_task("upload", total=total)

    def upload_progress(self, sent: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=sent)  # type: ignore[arg-type]

    def upload_finished(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None


def _summary(app: PushedApp) -> None:
    render.line()
    render.key_values(
        [
            ("name", app.name),
            ("requested state", app.state.lower()),
            ("routes", ", ".join(app.routes) or "(none)"),
            (
                "uploaded",
                f"{format_size(app.bytes_uploaded)} in {app.files_uploaded} file(s); "
                f"{app.files_unchanged} unchanged",
            ),
            ("stack", app.stack or "-"),
            ("buildpacks", ", ".join(app.buildpacks) or "-"),
        ]
    )
    for process in app.processes:
        render.line()
        render.key_values(
            [
                ("type", process.type),
                ("instances", f"{process.running}/{process.instances}"),
                ("memory usage", format_mb(process.memory_in_mb)),
                ("start command", process.command or "(the droplet's)"),
            ]
        )
        if process.stats:
            render.table(
                ("#", "state", "since", "cpu", "memory"),
                (
                    (
                        str(entry["index"]),
                        entry["state"].lower(),
                        f"{entry['uptime']:.0f}s" if entry["state"] == "RUNNING" else "-",
                        f"{(entry['usage'].get('cpu') or 0) * 100:.1f}%",
                        format_size(entry["usage"].get("mem") or 0),
                    )
                    for entry in process.stats
                ),
            )


def push(
    name: Annotated[
        str | None, typer.Argument(help="App name (default: the manifest's apps).")
    ] = None,
    manifest_file: Annotated[
        Path | None, typer.Option("-f", "--manifest", help="Path to the manifest.")
    ] = None,
    no_manifest: Annotated[
        bool, typer.Option("--no-manifest", help="Ignore manifest.yml in the directory.")
    ] = False,
    path: Annotated[
        Path | None,
        typer.Option("-p", "--path", help="The app's directory (default: the current one)."),
    ] = None,
    instances: Annotated[
        int | None, typer.Option("-i", "--instances", help="Instances of the web process.")
    ] = None,
    memory: Annotated[
        str | None, typer.Option("-m", "--memory", help="Memory per instance (256M, 1G).")
    ] = None,
    disk: Annotated[
        str | None, typer.Option("-k", "--disk", help="Disk per instance (512M, 1G).")
    ] = None,
    buildpacks: Annotated[
        list[str] | None,
        typer.Option("-b", "--buildpack", help="Buildpack name or git URL; repeat for several."),
    ] = None,
    command: Annotated[
        str | None, typer.Option("-c", "--start-command", help="Start command of web.")
    ] = None,
    stack: Annotated[str | None, typer.Option("-s", "--stack", help="Stack.")] = None,
    health_check_type: Annotated[
        str | None,
        typer.Option("-u", "--health-check-type", help="port, process or http."),
    ] = None,
    no_route: Annotated[
        bool, typer.Option("--no-route", help="Map no route (and unmap existing ones).")
    ] = False,
    random_route: Annotated[
        bool, typer.Option("--random-route", help="Map a route with a random host.")
    ] = False,
    no_start: Annotated[
        bool, typer.Option("--no-start", help="Stage, but do not start the app.")
    ] = False,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="Manifest variable NAME=VALUE.")
    ] = None,
    vars_file: Annotated[
        list[Path] | None, typer.Option("--vars-file", help="YAML file of manifest variables.")
    ] = None,
) -> None:
    """Push apps from a directory: upload, stage, start, and map their routes.

    Reads manifest.yml when there is one (CF's schema); flags override it. Only the files
    the server does not hold are uploaded; the staging log streams; push waits until every
    instance runs, and says why when one does not."""
    ctx = current()
    org, space = ctx.require_org(), ctx.require_space()
    directory = path if path is not None else Path(".")
    try:
        manifest_path = find_manifest(manifest_file, directory, ignore=no_manifest)
        manifest = None
        if manifest_path is not None:
            values = variables(var or [], vars_file or [])
            text = _read(manifest_path, "manifest")
            manifest = parse_manifest(text, variables=values, source=str(manifest_path))
        elif var or vars_file:
            raise CliError("--var and --vars-file need a manifest")
        if manifest is None and name is None:
            raise CliError("Name the app to push (overcast push NAME), or add a manifest.yml")
        final = apply_flag_overrides(
            manifest,
            app_name=name,
            instances=instances,
            memory_mb=parse_size_mb(memory, what="Memory") if memory else None,
            disk_mb=parse_size_mb(disk, what="Disk") if disk else None,
            buildpacks=buildpacks or None,
            command=command,
            no_route=no_route,
            random_route=random_route,
            stack=stack,
            health_check_type=health_check_type,
        )
    except ManifestError as error:
        raise CliError(str(error)) from None
    manifest_dir = manifest_path.parent if manifest_path is not None else directory
    directories = sources(final, manifest_dir, path)
    user = ctx.config.username or "?"
    names = ", ".join(app.name for app in final.applications)
    render.line(f"Pushing {names} to org {org.name} / space {space.name} as {user}...")
    printer = _Printer()
    with ctx.client() as client:
        pusher = Pusher(client, space.guid, printer.events())
        try:
            pushed = pusher.push(final, directories, no_start=no_start)
        except PushError as error:
            printer.upload_finished()
            for detail in error.details:
                print(f"   {detail}", file=sys.stderr)
            print(error.message, file=sys.stderr)
            raise typer.Exit(EXIT_FAILURE) from None
    for app in pushed:
        _summary(app)


def create_app_manifest(
    name: AppName,
    path: Annotated[
        Path | None,
        typer.Option("-p", "--path", help="Where to write it (default: ./<name>_manifest.yml)."),
    ] = None,
) -> None:
    """Write the manifest that would make an app as it is now."""
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        text = client.app_manifest(found["guid"])
    target = path or Path(f"{name}_manifest.yml")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise CliError(f"Cannot write {target}: {error.strerror or error}") from None
    render.line(f"Manifest of app {name} written to {target}.")


def register(app_: typer.Typer) -> None:
    add_commands(app_, "Apps", {"push": push, "create-app-manifest": create_app_manifest})
