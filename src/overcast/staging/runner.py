"""The buildpack runner: app source in, droplet out (DESIGN.md section 9).

`stage()` drives buildpacks through the v2 buildpack API, as Cloud Foundry's buildpack
lifecycle does:

1. the source is copied into a build directory (`WORK_DIR/app`, the droplet's `app/`);
2. with no buildpack requested, each one's `bin/detect BUILD_DIR` runs in order and the first to
   exit 0 is used (its stdout is the detect output); requested buildpacks are used without
   detection, and with several, every one compiles but only the last one's release counts
   (CF's multi-buildpack);
3. `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`, every line of its output going to `output`;
4. `bin/release BUILD_DIR` of the last buildpack: YAML `default_process_types`, which a
   `Procfile` in the build directory overrides type by type;
5. the droplet: a gzipped tarball of `app/` and `staging_info.yml` (detected_buildpack,
   start_command, process_types, buildpacks), with its sha256.

Every step runs with a clean environment (never the runner's own): `PATH`, `HOME` and `TMPDIR`
in the work directory, `LANG`, `MEMORY_LIMIT`, then the app's variables (which are also one
file each in ENV_DIR). Each step is its own process group, killed when staging runs out of
time. The memory limit is applied as RLIMIT_DATA (`ulimit -d`), which bounds the heap and
private writable mappings but not address-space reservations, so pip and node (V8 reserves
far more address space than it uses) work under it where RLIMIT_AS would break them.

Commands in a droplet expect the launcher's environment: see `overcast.staging.launcher`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import stat
import tarfile
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from overcast.models.errors import OvercastError
from overcast.staging.procfile import FormatError, parse_procfile, parse_release

BUILTIN_DIRECTORY = Path(__file__).resolve().parent / "buildpacks"
STEP_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_TIMEOUT_SECONDS = 15 * 60  # CF's default staging timeout
DEFAULT_MEMORY_LIMIT_MB = 1024  # CF's default staging memory
NO_APP_DETECTED = "None of the buildpacks detected a compatible application"
OUTPUT_TAIL_LINES = 20
MAX_LINE_BYTES = 16 * 1024
# gzip level of droplets: 1 takes half the time of 6 on a Python app for 13% more bytes.
DROPLET_COMPRESSION = 1
_DRAIN_SECONDS = 5.0
_ENV_NAME = re.compile(r"^[^/=\x00]+$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")

# `output(line, stream)` with stream "stdout" or "stderr": one call per line of every
# buildpack step (detect and release are captured, not streamed).
OutputCallback = Callable[[str, str], Awaitable[None]]


class StagingError(OvercastError):
    """Staging failed. `summary` says why; `reason` is CF's error name (NoAppDetectedError,
    BuildpackCompileFailed, BuildpackReleaseFailed, StagingTimeExpired, StagingError);
    `output` holds the failing step's last lines, which `detail` ends with too."""

    def __init__(self, summary: str, *, reason: str = "StagingError", output: Sequence[str] = ()):
        detail = summary if not output else summary + "\n" + "\n".join(output)
        super().__init__(detail)
        self.summary = summary
        self.reason = reason
        self.output = tuple(output)


@dataclass(frozen=True)
class Buildpack:
    """A v2 buildpack: a directory holding bin/detect, bin/compile and bin/release."""

    name: str
    path: Path
    position: int
    version: str | None = None


@dataclass(frozen=True)
class UsedBuildpack:
    name: str
    version: str | None
    detect_output: str


@dataclass(frozen=True)
class StagingResult:
    droplet_path: Path
    sha256: str
    size: int
    # The buildpack whose release gave the process types (the last one used).
    detected_buildpack: str
    detect_output: str
    buildpacks: tuple[UsedBuildpack, ...]
    process_types: dict[str, str] = field(default_factory=dict)
    start_command: str = ""


@dataclass(frozen=True)
class _Step:
    code: int
    stdout: str
    tail: tuple[str, ...]


def builtin_buildpacks(directory: Path = BUILTIN_DIRECTORY) -> list[Buildpack]:
    """The buildpacks shipped with Overcast, in detection order (from their manifest.yml)."""
    manifest = yaml.safe_load((directory / "manifest.yml").read_text())
    result: list[Buildpack] = []
    for position, entry in enumerate(manifest["buildpacks"], start=1):
        name = str(entry["name"])
        path = directory / name
        version_file = path / "VERSION"
        version = version_file.read_text().strip() if version_file.is_file() else None
        result.append(Buildpack(name=name, path=path, position=position, version=version))
    return result


def write_env_dir(directory: Path, env: Mapping[str, str]) -> list[str]:
    """ENV_DIR: one file per variable, named after it and holding its value (no newline added).
    Names that cannot be file names are left out; the names written, sorted."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name, value in sorted(env.items()):
        if not _ENV_NAME.match(name) or name in (".", "..") or "\x00" in value:
            continue
        path = directory / name
        path.write_text(value)
        path.chmod(0o600)
        written.append(name)
    return written


def step_environment(
    env: Mapping[str, str], *, home: Path, tmpdir: Path, memory_limit_mb: int | None
) -> dict[str, str]:
    """The environment of every buildpack step, built from nothing."""
    environment = {
        "PATH": STEP_PATH,
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "LANG": "C.UTF-8",
    }
    if memory_limit_mb:
        environment["MEMORY_LIMIT"] = f"{memory_limit_mb}m"
    for name, value in env.items():
        if _ENV_NAME.match(name) and "\x00" not in value:
            environment[name] = value
    return environment


def merge_process_types(release: Mapping[str, str], procfile: Mapping[str, str]) -> dict[str, str]:
    """The release's defaults with the Procfile's types on top."""
    merged = dict(release)
    merged.update(procfile)
    return merged


async def stage(
    source_dir: Path,
    *,
    buildpacks: Sequence[Buildpack],
    requested: Sequence[str] = (),
    cache_dir: Path,
    env: Mapping[str, str],
    output: OutputCallback,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
    work_dir: Path,
) -> StagingResult:
    """Stage `source_dir` into `work_dir/droplet.tgz` (see the module docstring).

    `requested` names buildpacks of `buildpacks` (or gives a buildpack directory's absolute
    path); empty means detection. `cache_dir` persists between stagings of one app; each
    buildpack gets `cache_dir/<name>` as its CACHE_DIR. The
    timeout covers the whole staging; on expiry the running step's process group is killed.
    Raises StagingError."""
    try:
        async with asyncio.timeout(timeout_seconds):
            return await _stage(
                source_dir,
                buildpacks=buildpacks,
                requested=requested,
                cache_dir=cache_dir,
                env=env,
                output=output,
                memory_limit_mb=memory_limit_mb,
                work_dir=work_dir,
            )
    except TimeoutError:
        raise StagingError(
            f"Staging timed out: it took longer than the limit of {timeout_seconds:g} seconds",
            reason="StagingTimeExpired",
        ) from None


def _select(buildpacks: Sequence[Buildpack], requested: Sequence[str]) -> list[Buildpack]:
    by_name = {buildpack.name: buildpack for buildpack in buildpacks}
    chosen: list[Buildpack] = []
    for position, name in enumerate(requested, start=1):
        if name in by_name:
            chosen.append(by_name[name])
        elif name.startswith("/") and (Path(name) / "bin" / "compile").is_file():
            chosen.append(Buildpack(name=Path(name).name, path=Path(name), position=position))
        else:
            known = ", ".join(sorted(by_name)) or "none"
            raise StagingError(
                f"Buildpack {name!r} is not installed (installed: {known})",
                reason="BuildpackNotFound",
            )
    return chosen


def _prepare_buildpack(buildpack: Buildpack, directory: Path) -> Path:
    """A private copy of the buildpack with executable bin/ scripts (uploaded buildpacks often
    lose their modes; the installed ones are never written to)."""
    # Names may be URLs: keep the directory name to safe characters.
    safe_name = _UNSAFE_NAME.sub("_", buildpack.name)[-64:]
    target = directory / f"{buildpack.position:02d}-{safe_name}"
    if target.exists():
        return target
    shutil.copytree(buildpack.path, target, symlinks=True)
    bindir = target / "bin"
    if bindir.is_dir():
        for script in bindir.iterdir():
            if script.is_file() and not script.is_symlink():
                script.chmod(script.stat().st_mode | 0o755)
    return target


def _reset(directory: Path) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


@dataclass(frozen=True)
class _Layout:
    build: Path
    env_dir: Path
    home: Path
    tmpdir: Path
    buildpacks: Path


def _prepare(source: Path, work_dir: Path, cache_dir: Path, env: Mapping[str, str]) -> _Layout:
    """The work directory: app/ (a copy of the source), env/, home/, tmp/, buildpacks/."""
    if not source.is_dir():
        raise StagingError(f"The app source {source} is not a directory")
    work_dir.mkdir(parents=True, exist_ok=True)
    build = work_dir / "app"
    if build.exists():
        shutil.rmtree(build)
    shutil.copytree(source, build, symlinks=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    layout = _Layout(
        build=build,
        env_dir=_reset(work_dir / "env"),
        home=_reset(work_dir / "home"),
        tmpdir=_reset(work_dir / "tmp"),
        buildpacks=_reset(work_dir / "buildpacks"),
    )
    write_env_dir(layout.env_dir, env)
    return layout


async def _stage(
    source_dir: Path,
    *,
    buildpacks: Sequence[Buildpack],
    requested: Sequence[str],
    cache_dir: Path,
    env: Mapping[str, str],
    output: OutputCallback,
    memory_limit_mb: int | None,
    work_dir: Path,
) -> StagingResult:
    chosen = _select(buildpacks, requested)
    layout = await asyncio.to_thread(_prepare, source_dir, work_dir, cache_dir, env)
    build = layout.build
    environment = step_environment(
        env, home=layout.home, tmpdir=layout.tmpdir, memory_limit_mb=memory_limit_mb
    )

    async def run(buildpack: Buildpack, script: str, *arguments: Path, stream: bool) -> _Step:
        path = await asyncio.to_thread(_prepare_buildpack, buildpack, layout.buildpacks)
        executable = path / "bin" / script
        if not await asyncio.to_thread(executable.is_file):
            raise StagingError(f"Buildpack {buildpack.name} has no bin/{script}")
        step = await _run_step(
            [str(executable), *map(str, arguments)],
            cwd=build,
            environment=environment,
            memory_limit_mb=memory_limit_mb,
            output=output if stream else None,
        )
        return step

    used: list[UsedBuildpack] = []
    if chosen:
        used = [UsedBuildpack(b.name, b.version, "") for b in chosen]
    else:
        for buildpack in sorted(buildpacks, key=lambda b: b.position):
            step = await run(buildpack, "detect", build, stream=False)
            if step.code == 0:
                detect_output = step.stdout.strip().splitlines()[0] if step.stdout.strip() else ""
                chosen = [buildpack]
                used = [UsedBuildpack(buildpack.name, buildpack.version, detect_output)]
                break
        else:
            raise StagingError(NO_APP_DETECTED, reason="NoAppDetectedError")

    for buildpack in chosen:
        # Each buildpack has its own cache (CF's buildpack-cache/<key>).
        cache = cache_dir / buildpack.name
        await asyncio.to_thread(cache.mkdir, parents=True, exist_ok=True)
        step = await run(buildpack, "compile", build, cache, layout.env_dir, stream=True)
        if step.code != 0:
            raise StagingError(
                f"Buildpack {buildpack.name} failed to compile the app "
                f"(bin/compile exited with code {step.code})",
                reason="BuildpackCompileFailed",
                output=step.tail,
            )

    final = chosen[-1]
    step = await run(final, "release", build, stream=False)
    if step.code != 0:
        raise StagingError(
            f"Buildpack {final.name} failed to release the app "
            f"(bin/release exited with code {step.code})",
            reason="BuildpackReleaseFailed",
            output=step.tail,
        )
    try:
        release_types = parse_release(step.stdout)
    except FormatError as error:
        raise StagingError(
            f"Buildpack {final.name}: {error}", reason="BuildpackReleaseFailed"
        ) from None
    procfile = build / "Procfile"
    procfile_types: dict[str, str] = {}
    if procfile.is_file():
        try:
            procfile_types = parse_procfile(procfile.read_text(errors="replace"))
        except FormatError as error:
            raise StagingError(str(error)) from None
    process_types = merge_process_types(release_types, procfile_types)
    start_command = process_types.get("web", "")

    info: dict[str, Any] = {
        "detected_buildpack": final.name,
        "start_command": start_command,
        "process_types": process_types,
        "buildpacks": [
            {"name": u.name, "version": u.version, "detect_output": u.detect_output} for u in used
        ],
    }
    droplet = work_dir / "droplet.tgz"
    digest, size = await asyncio.to_thread(_write_droplet, build, info, droplet)
    return StagingResult(
        droplet_path=droplet,
        sha256=digest,
        size=size,
        detected_buildpack=final.name,
        detect_output=used[-1].detect_output,
        buildpacks=tuple(used),
        process_types=process_types,
        start_command=start_command,
    )


async def _run_step(
    argv: Sequence[str],
    *,
    cwd: Path,
    environment: Mapping[str, str],
    memory_limit_mb: int | None,
    output: OutputCallback | None,
) -> _Step:
    """Run one buildpack executable in its own process group. With `output`, each line goes to
    it as it comes; without, stdout is captured (stderr lines are kept for the tail only)."""
    command = list(argv)
    if memory_limit_mb:
        # bash applies the limit to itself and then becomes the step.
        command = [
            "/bin/bash",
            "-c",
            'ulimit -d "$1" || exit 125; shift; exec "$@"',
            "overcast-staging",
            str(memory_limit_mb * 1024),
            *command,
        ]
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=dict(environment),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        raise StagingError(f"Cannot run {argv[0]}: {error.strerror}") from None
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    captured: list[str] = []

    async def emit(line: str, stream: str) -> None:
        tail.append(line)
        if output is not None:
            await output(line, stream)
        elif stream == "stdout":
            captured.append(line)

    assert process.stdout is not None and process.stderr is not None
    pumps = [
        asyncio.create_task(_pump(process.stdout, "stdout", emit)),
        asyncio.create_task(_pump(process.stderr, "stderr", emit)),
    ]
    waiter = asyncio.create_task(process.wait())
    try:
        # A pump fails only when the output callback raises: give up on the step then.
        await asyncio.wait([waiter, *pumps], return_when=asyncio.FIRST_EXCEPTION)
        for task in pumps:
            if task.done():
                task.result()
        code = await waiter
        _kill_group(process.pid)  # what it left running in the background
        done, _ = await asyncio.wait(pumps, timeout=_DRAIN_SECONDS)
        for task in done:
            task.result()
    finally:
        if process.returncode is None:
            _kill_group(process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            # Reap it without waiting for ever (it was SIGKILLed).
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), _DRAIN_SECONDS)
        waiter.cancel()
        for task in pumps:
            task.cancel()
        close_pipes(process)
    return _Step(code=code, stdout="\n".join(captured) + "\n", tail=tuple(tail))


def close_pipes(process: asyncio.subprocess.Process) -> None:
    """Close the process's pipes now. asyncio closes them only once every pipe has reached
    its end on a loop still running; a step given up on (its output callback failed) may
    not get there, and the transport would then be collected after its loop closed."""
    transport = getattr(process, "_transport", None)  # no public way to close it
    if transport is not None:
        transport.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _pump(
    reader: asyncio.StreamReader, stream: str, emit: Callable[[str, str], Awaitable[None]]
) -> None:
    """Split a pipe into lines (overlong ones in pieces of MAX_LINE_BYTES)."""
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        buffer += chunk
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                if len(buffer) < MAX_LINE_BYTES:
                    break
                newline = MAX_LINE_BYTES
                line, buffer = buffer[:newline], buffer[newline:]
            else:
                line, buffer = buffer[:newline], buffer[newline + 1 :]
            await emit(_decode(line), stream)
    if buffer:
        await emit(_decode(buffer), stream)


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r")


def check_links(tree: Path, label: str = "The staged app", prefix: str = "app/") -> None:
    """Refuse a tree whose links leave it (cells would refuse such a droplet, and a buildpack
    that links out could read the cell's files)."""
    root = tree.resolve()
    for directory, subdirectories, files in os.walk(tree):
        for name in [*subdirectories, *files]:
            path = Path(directory) / name
            if not path.is_symlink():
                continue
            target = os.readlink(path)
            relative = path.relative_to(tree)
            if target.startswith("/"):
                raise StagingError(
                    f"{label} has a link to an absolute path: {prefix}{relative} -> {target}"
                )
            resolved = Path(os.path.normpath(path.parent / target))
            if resolved != root and root not in resolved.parents and tree not in resolved.parents:
                raise StagingError(
                    f"{label} has a link pointing outside it: {prefix}{relative} -> {target}"
                )


def _tar_filter(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        return None  # sockets and fifos a step left behind
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
    return member


def _write_droplet(build: Path, info: Mapping[str, Any], destination: Path) -> tuple[str, int]:
    check_links(build)
    data = yaml.safe_dump(dict(info), sort_keys=False).encode()
    partial = destination.with_name(destination.name + ".partial")
    with tarfile.open(partial, "w:gz", compresslevel=DROPLET_COMPRESSION) as archive:
        archive.add(build, arcname="app", recursive=True, filter=_tar_filter)
        entry = tarfile.TarInfo("staging_info.yml")
        entry.size = len(data)
        entry.mode = 0o644
        archive.addfile(entry, io.BytesIO(data))
    digest = hashlib.sha256()
    with partial.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    size = partial.stat().st_size
    partial.replace(destination)
    return digest.hexdigest(), size
