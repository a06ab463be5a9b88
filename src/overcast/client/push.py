"""Push, the way `cf push` (v7 and later) does it: a manifest (read from a file, made from flags,
or both) is applied to the space, which creates or updates the apps, their processes and their
routes; then for each app its directory is uploaded (only the files the server does not hold),
staged while the staging log streams, and its droplet started; push returns once every
instance that should run is RUNNING, or raises PushError saying what went wrong.

The previous droplet keeps running until the new one is staged: a failed upload or staging
changes nothing that runs. No I/O here but the API calls; the CLI renders through `PushEvents`."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from overcast.client.bits import AppFile, collect, split_matched, write_zip
from overcast.client.client import OvercastClient
from overcast.client.errors import ApiError, ClientError, JobFailed, JobTimedOut
from overcast.client.resources import App, Build, InstanceStats, LogEntry, Package, Process
from overcast.models.manifest import AppManifest, Manifest, render_manifest

PACKAGE_TIMEOUT_SECONDS = 300.0
STAGING_TIMEOUT_SECONDS = 900.0
APPLY_TIMEOUT_SECONDS = 120.0
# Polls while pushing are frequent and short: a push is measured in seconds.
POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 0.5
# Staging ends when the cell hands over its droplet; its last lines may still be on their way.
LOG_SETTLE_SECONDS = 0.3
# Files offered to resource matching (the largest ones): well inside the server's cap.
MAX_OFFERED_FILES = 5000
# The most recent log lines the API keeps per app, and so what one poll can see.
RECENT_LINES = 1000
STAGING_SOURCE = "STG"
# Beyond its health check timeout, how long a start may take (droplet download, placement).
START_MARGIN_SECONDS = 30.0
DEFAULT_HEALTH_CHECK_TIMEOUT = 60.0
# How many of an app's last log lines a failure to start shows.
FAILURE_LINES = 10
_SIZE_UNITS = ("B", "KB", "MB", "GB", "TB")

LogKey = tuple[int, str, str, str, str]


class PushError(ClientError):
    """A push that did not end with the app running: `message` says what and `details` holds
    the lines that show why (the last staging or app log lines)."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)

    def __str__(self) -> str:
        return self.message


def _ignore(*_args: object) -> None:
    return None


@dataclass
class PushEvents:
    """What a push reports as it goes (the CLI prints them; tests collect them)."""

    step: Callable[[str], None] = _ignore
    staging_line: Callable[[str], None] = _ignore
    upload_started: Callable[[int], None] = _ignore
    upload_progress: Callable[[int], None] = _ignore
    upload_finished: Callable[[], None] = _ignore


@dataclass
class ProcessSummary:
    type: str
    instances: int
    memory_in_mb: int
    disk_in_mb: int
    command: str | None
    stats: list[InstanceStats] = field(default_factory=list)

    @property
    def running(self) -> int:
        return sum(1 for entry in self.stats if entry["state"] == "RUNNING")


@dataclass
class PushedApp:
    name: str
    guid: str
    state: str = "STOPPED"
    routes: list[str] = field(default_factory=list)
    droplet_guid: str | None = None
    buildpacks: list[str] = field(default_factory=list)
    stack: str | None = None
    files_unchanged: int = 0
    files_uploaded: int = 0
    bytes_uploaded: int = 0
    processes: list[ProcessSummary] = field(default_factory=list)
    # Seconds spent in each phase: apply, upload, staging, start.
    timings: dict[str, float] = field(default_factory=dict)


# --- sizes and files --------------------------------------------------------------------------


def format_size(count: int) -> str:
    """0 -> `0 B`, 3174 -> `3.1 KB`, 5 * 2**20 -> `5 MB`: binary multiples, one decimal."""
    value = float(count)
    for unit in _SIZE_UNITS:
        if value < 1024 or unit == _SIZE_UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _files(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"


def files_summary(unchanged: Sequence[AppFile], uploaded: Sequence[AppFile]) -> str:
    """`12 files unchanged, 2 uploaded (3.1 KB)`."""
    size = sum(file.size for file in uploaded)
    return f"{_files(len(unchanged))} unchanged, {len(uploaded)} uploaded ({format_size(size)})"


def offered_files(files: Sequence[AppFile]) -> list[AppFile]:
    """The regular files worth asking about: the largest, up to MAX_OFFERED_FILES (links are
    always uploaded: they are not in the server's file store)."""
    regular = [file for file in files if not file.is_link]
    return sorted(regular, key=lambda file: (-file.size, file.path))[:MAX_OFFERED_FILES]


# --- the staging log --------------------------------------------------------------------------


class StagingLog:
    """Prints the app's `STG` lines that appear after `start()`, each once, by polling the
    app's recent lines (simple, and nothing to tear down when the build ends). A server
    without the log API is not an error: the staging is then followed without its output."""

    def __init__(self, client: OvercastClient, app_guid: str, write: Callable[[str], None]) -> None:
        self.client = client
        self.app_guid = app_guid
        self.write = write
        self.enabled = True
        self.lines: list[str] = []
        self._seen: set[LogKey] = set()

    @staticmethod
    def _key(entry: LogEntry) -> LogKey:
        return (
            entry.get("timestamp_ns") or 0,
            entry.get("source", ""),
            entry.get("stream", ""),
            entry.get("line", ""),
            entry.get("instance_guid") or "",
        )

    def _recent(self) -> list[LogEntry]:
        if not self.enabled:
            return []
        try:
            return self.client.recent_logs(self.app_guid, RECENT_LINES)
        except ApiError as error:
            if error.status == 401:
                raise
            self.enabled = False
            return []

    def start(self) -> None:
        """Remember the lines already there (an earlier staging's among them)."""
        self._seen.update(self._key(entry) for entry in self._recent())

    def poll(self, _build: Build | None = None) -> None:
        for entry in self._recent():
            key = self._key(entry)
            if key in self._seen:
                continue
            self._seen.add(key)
            if entry.get("source") == STAGING_SOURCE:
                line = entry.get("line", "")
                self.lines.append(line)
                self.write(line)


# --- manifests --------------------------------------------------------------------------------


def with_default_routes(manifest: Manifest) -> Manifest:
    """As `cf push`: an app whose manifest says nothing of routes gets its default route
    (`<name>.<default domain>`), unless it already has routes."""

    def defaulted(app: AppManifest) -> AppManifest:
        silent = (
            app.routes is None
            and not app.no_route
            and not app.random_route
            and app.default_route is None
        )
        return dataclasses.replace(app, default_route=True) if silent else app

    return dataclasses.replace(
        manifest, applications=tuple(defaulted(app) for app in manifest.applications)
    )


def for_server(manifest: Manifest) -> str:
    """The YAML apply_manifest gets: the local paths stay here."""
    return render_manifest(
        dataclasses.replace(
            manifest,
            applications=tuple(
                dataclasses.replace(app, path=None) for app in manifest.applications
            ),
        )
    )


# --- staging again, or not -------------------------------------------------------------------


@dataclass(frozen=True)
class StagedFrom:
    """What an app's current droplet was staged from, as far as a push can tell: the package's
    checksum (the sha256 of its files' manifest), the buildpacks that ran (name, version), and
    the app's lifecycle and environment variables at the time of the push."""

    droplet_guid: str
    package_checksum: str
    buildpacks: tuple[tuple[str, str | None], ...]
    lifecycle: tuple[tuple[str, ...], str | None]
    environment: tuple[tuple[str, str], ...]


def package_checksum(package: Package) -> str | None:
    data = package.get("data")
    checksum = data.get("checksum") if data is not None else None
    return checksum.get("value") if checksum is not None else None


def installed_filename(name: str, version: str | None) -> str:
    """The `filename` GET /v3/buildpacks shows for an installed buildpack of this version."""
    return f"{name}_buildpack{f'-v{version}' if version else ''}.zip"


def can_reuse(
    before: StagedFrom | None, after: StagedFrom | None, installed_files: frozenset[str]
) -> bool:
    """A droplet is staged again unless nothing that staging reads has changed: the same files,
    lifecycle and environment, and every buildpack it ran still installed at the same version
    (a git or zip URL buildpack may have changed behind its URL: always staged again)."""
    if before is None or after is None:
        return False
    return (
        before.package_checksum == after.package_checksum
        and before.lifecycle == after.lifecycle
        and before.environment == after.environment
        and bool(before.buildpacks)
        and all(installed_filename(*used) in installed_files for used in before.buildpacks)
    )


# --- pushing ----------------------------------------------------------------------------------


class Pusher:
    def __init__(
        self,
        client: OvercastClient,
        space_guid: str,
        events: PushEvents | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.space_guid = space_guid
        self.events = events or PushEvents()
        self._clock = clock
        self._sleep = sleep

    def push(
        self, manifest: Manifest, sources: Mapping[str, Path], *, no_start: bool = False
    ) -> list[PushedApp]:
        """Every app of the manifest, in order; `sources` maps each app's name to its
        directory. Stops at the first app that fails (PushError)."""
        manifest = with_default_routes(manifest)
        started = self._clock()
        before = {app.name: self._staged_from(app.name) for app in manifest.applications}
        self.apply(manifest)
        applied = self._clock() - started
        pushed = []
        for app in manifest.applications:
            result = self.push_app(
                app, sources[app.name], no_start=no_start, before=before[app.name]
            )
            result.timings["apply"] = applied
            pushed.append(result)
        return pushed

    def _staged_from(self, name: str, package_checksum: str | None = None) -> StagedFrom | None:
        """The app's StagedFrom now (None when it does not exist or has no staged droplet);
        `package_checksum` stands for the droplet's package when given."""
        app = self.client.app_by_name(self.space_guid, name)
        if app is None:
            return None
        droplet = self.client.current_droplet(app["guid"])
        if droplet is None or droplet["state"] != "STAGED":
            return None
        if package_checksum is None:
            package_checksum = self._package_checksum_of(app["guid"], droplet["guid"])
            if package_checksum is None:
                return None
        data = app["lifecycle"]["data"]
        environment = self.client.environment_variables(app["guid"])
        return StagedFrom(
            droplet_guid=droplet["guid"],
            package_checksum=package_checksum,
            buildpacks=tuple(
                (item.get("buildpack_name") or item["name"], item.get("version"))
                for item in droplet.get("buildpacks") or []
            ),
            lifecycle=(tuple(data.get("buildpacks") or ()), data.get("stack")),
            environment=tuple(sorted((key, str(value)) for key, value in environment.items())),
        )

    def _package_checksum_of(self, app_guid: str, droplet_guid: str) -> str | None:
        builds = self.client.app_builds(app_guid, states=["STAGED"])
        build = next(
            (
                b
                for b in builds
                if b["droplet"] is not None and b["droplet"]["guid"] == droplet_guid
            ),
            None,
        )
        if build is None:
            return None  # uploaded directly, not staged here: nothing to compare
        return package_checksum(self.client.get_package(build["package"]["guid"]))

    def _reusable_droplet(
        self, name: str, before: StagedFrom | None, package: Package
    ) -> str | None:
        checksum = package_checksum(package)
        if before is None or not checksum:
            return None
        after = self._staged_from(name, package_checksum=checksum)
        if after is None or after.droplet_guid != before.droplet_guid:
            return None
        installed = frozenset(
            item["filename"] for item in self.client.list_buildpacks() if item["filename"]
        )
        return before.droplet_guid if can_reuse(before, after, installed) else None

    def apply(self, manifest: Manifest) -> None:
        names = ", ".join(app.name for app in manifest.applications)
        self.events.step(f"Applying manifest to {names}...")
        job_guid = self.client.apply_manifest(self.space_guid, for_server(manifest))
        try:
            self.client.wait_for_job(
                job_guid, timeout=APPLY_TIMEOUT_SECONDS, max_interval=MAX_POLL_SECONDS
            )
        except JobFailed as error:
            raise PushError(f"Applying the manifest failed: {error}") from None

    def push_app(
        self,
        manifest: AppManifest,
        path: Path,
        *,
        no_start: bool,
        before: StagedFrom | None = None,
    ) -> PushedApp:
        app = self.client.app_by_name(self.space_guid, manifest.name)
        if app is None:
            raise PushError(f"App {manifest.name} was not created by the manifest")
        result = PushedApp(name=app["name"], guid=app["guid"])
        mark = self._clock()
        package = self.upload(app, path, result)
        result.timings["upload"] = self._clock() - mark
        mark = self._clock()
        reused = self._reusable_droplet(app["name"], before, package)
        if reused is not None:
            self.events.step(
                f"Files, buildpacks and environment of {app['name']} are unchanged: "
                f"keeping droplet {reused} (no staging)"
            )
            droplet_guid = reused
        else:
            build = self.stage(app, package["guid"])
            droplet = build["droplet"]
            if droplet is None:
                raise PushError(f"Build {build['guid']} is STAGED but names no droplet")
            droplet_guid = droplet["guid"]
        result.timings["staging"] = self._clock() - mark
        result.droplet_guid = droplet_guid
        mark = self._clock()
        self.start(app, droplet_guid, manifest, no_start=no_start)
        result.timings["start"] = self._clock() - mark
        self._describe(result)
        return result

    def upload(self, app: App, path: Path, result: PushedApp) -> Package:
        name = app["name"]
        files = collect(path)
        if not files:
            raise PushError(
                f"There are no files to push for app {name} in {path} "
                "(an empty directory, or everything is ignored by .cfignore)"
            )
        offered = offered_files(files)
        matched = (
            self.client.resource_matches([file.resource() for file in offered]) if offered else []
        )
        unchanged, uploaded = split_matched(files, matched)
        package = self.client.create_package(app["guid"])
        self.events.step(f"Uploading {name}: {files_summary(unchanged, uploaded)}")
        with tempfile.TemporaryDirectory(prefix="overcast-push-") as scratch:
            zip_path = Path(scratch) / f"{package['guid']}.zip"
            write_zip(path, uploaded, zip_path)
            self.events.upload_started(zip_path.stat().st_size)
            try:
                self.client.upload_package(
                    package["guid"],
                    zip_path,
                    resources=[file.resource() for file in unchanged],
                    progress=self.events.upload_progress,
                )
            finally:
                self.events.upload_finished()
        package = self.client.wait_for_package(
            package["guid"], timeout=PACKAGE_TIMEOUT_SECONDS, max_interval=MAX_POLL_SECONDS
        )
        if package["state"] != "READY":
            reason = (package.get("data") or {}).get("error") or f"it is {package['state']}"
            raise PushError(f"The upload of app {name} failed: {reason}")
        result.files_unchanged = len(unchanged)
        result.files_uploaded = len(uploaded)
        result.bytes_uploaded = sum(file.size for file in uploaded)
        return package

    def stage(self, app: App, package_guid: str) -> Build:
        name = app["name"]
        log = StagingLog(self.client, app["guid"], self.events.staging_line)
        log.start()
        build = self.client.create_build(package_guid)
        self.events.step(f"Staging {name}...")
        try:
            build = self.client.wait_for_build(
                build["guid"],
                timeout=STAGING_TIMEOUT_SECONDS,
                on_poll=log.poll,
                max_interval=MAX_POLL_SECONDS,
            )
        except JobTimedOut:
            raise PushError(
                f"App {name} is still staging after {STAGING_TIMEOUT_SECONDS:g}s "
                f"(build {build['guid']}); see: overcast logs {name} --recent"
            ) from None
        if log.enabled:
            self._sleep(LOG_SETTLE_SECONDS)
            log.poll()
        if build["state"] != "STAGED":
            raise PushError(
                f"Staging app {name} failed: {build['error'] or build['state']}. The app's "
                "previous droplet (if any) is unchanged.",
                details=log.lines[-FAILURE_LINES:],
            )
        return build

    def start(self, app: App, droplet_guid: str, manifest: AppManifest, *, no_start: bool) -> None:
        name = app["name"]
        current = self.client.get_app(app["guid"])
        self.client.set_current_droplet(app["guid"], droplet_guid)
        if no_start:
            if current["state"] == "STARTED":
                self.client.stop_app(app["guid"])
            self.events.step(f"App {name} is staged and not started (--no-start).")
            return
        replaced = frozenset[str]()
        if current["state"] == "STARTED":
            replaced = self._instance_guids(app["guid"])
            self.events.step(f"Restarting {name}...")
            self.client.restart_app(app["guid"])
        else:
            self.events.step(f"Starting {name}...")
            self.client.start_app(app["guid"])
        self.wait_running(app, manifest, replaced=replaced)

    def _instance_guids(self, app_guid: str) -> frozenset[str]:
        return frozenset(
            entry["instance_guid"]
            for process in self.client.app_processes(app_guid)
            if process["instances"] > 0
            for entry in self.client.process_stats(process["guid"])
            if entry.get("instance_guid")
        )

    def wait_running(
        self, app: App, manifest: AppManifest, *, replaced: frozenset[str] = frozenset()
    ) -> list[ProcessSummary]:
        """Until every instance of every process that should run is RUNNING (and none of them
        is one of the `replaced` instances a restart stops); PushError on a crash (with the
        app's last lines) or when it takes longer than its health checks allow."""
        name = app["name"]
        processes = [p for p in self.client.app_processes(app["guid"]) if p["instances"] > 0]
        timeout = max((_health_timeout(p) for p in processes), default=DEFAULT_HEALTH_CHECK_TIMEOUT)
        if manifest.timeout is not None:
            timeout = max(timeout, float(manifest.timeout))
        deadline = self._clock() + timeout + START_MARGIN_SECONDS
        delay = POLL_SECONDS
        while True:
            summaries = [self._summary(process, replaced) for process in processes]
            problem = _start_problem(name, summaries)
            if problem is not None:
                raise PushError(problem, details=self._last_lines(app["guid"]))
            if all(summary.running >= summary.instances for summary in summaries):
                return summaries
            if self._clock() > deadline:
                states = "; ".join(
                    f"{s.type}: {s.running}/{s.instances} running" for s in summaries
                )
                raise PushError(
                    f"App {name} did not start within {timeout + START_MARGIN_SECONDS:g}s "
                    f"({states})",
                    details=self._last_lines(app["guid"]),
                )
            self._sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_SECONDS)

    def _summary(self, process: Process, replaced: frozenset[str] = frozenset()) -> ProcessSummary:
        """The process with its instances, less those being replaced."""
        stats = self.client.process_stats(process["guid"])
        return ProcessSummary(
            type=process["type"],
            instances=process["instances"],
            memory_in_mb=process["memory_in_mb"],
            disk_in_mb=process["disk_in_mb"],
            command=process["command"],
            stats=[entry for entry in stats if entry.get("instance_guid") not in replaced],
        )

    def _last_lines(self, app_guid: str) -> list[str]:
        try:
            entries = self.client.recent_logs(app_guid, 200)
        except ApiError:
            return []
        shown = [
            f"[{entry['source']}] {entry['line']}"
            for entry in entries
            if entry["source"] != "RTR" and entry["source"] != STAGING_SOURCE
        ]
        return shown[-FAILURE_LINES:]

    def _describe(self, result: PushedApp) -> None:
        app = self.client.get_app(result.guid)
        result.state = app["state"]
        result.routes = sorted(route["url"] for route in self.client.app_routes(result.guid))
        if result.droplet_guid is not None:
            droplet = self.client.get_droplet(result.droplet_guid)
            result.buildpacks = [
                (item.get("buildpack_name") or item["name"])
                + (f" {item['version']}" if item.get("version") else "")
                for item in droplet.get("buildpacks") or []
            ]
            result.stack = droplet.get("stack")
        result.processes = [
            self._summary(process) for process in self.client.app_processes(result.guid)
        ]


def _health_timeout(process: Process) -> float:
    data = process["health_check"].get("data") or {}
    value = data.get("timeout")
    return float(value) if value else DEFAULT_HEALTH_CHECK_TIMEOUT


def _start_problem(name: str, summaries: Sequence[ProcessSummary]) -> str | None:
    """Why the app will not come up on its own, when that is already clear."""
    for summary in summaries:
        for entry in summary.stats:
            if entry["state"] == "CRASHED":
                reason = entry.get("details") or "it exited"
                return (
                    f"App {name} failed to start: {summary.type} instance {entry['index']} "
                    f"crashed ({reason})"
                )
            details = entry.get("details") or ""
            if entry["state"] == "DOWN" and details.startswith("no start command"):
                return f"App {name} cannot start its {summary.type} process: {details}"
    return None
