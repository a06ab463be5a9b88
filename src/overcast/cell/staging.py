"""Staging on a cell: the `stage` command's work (DESIGN.md section 9).

For one build: fetch the package zip by its signed URL and unpack it under the zip rules,
fetch any buildpack given by URL, run the buildpacks (overcast.staging.runner) with the app's
buildpack cache, send every output line as an `STG` log line, and post the droplet, or the
failure, to the controller's signed URLs. Each build has its own directory, removed when it
ends; the per-app buildpack caches stay (least recently used ones are pruned).

The URLs are signed and the environment holds the app's variables: neither is logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from overcast.bus.messages import Resources, StagingSpec
from overcast.cell.disk import directory_size
from overcast.core.logging import get_logger
from overcast.core.settings import CellSection
from overcast.staging.archives import ArchiveLimits, UnsafeArchive, safe_extract_zip
from overcast.staging.runner import Buildpack, StagingError, builtin_buildpacks, stage
from overcast.staging.sources import display_url, fetch_buildpack

log = get_logger(__name__)

MIB = 1024 * 1024
CHUNK_BYTES = 256 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0
TRANSFER_TIMEOUT_SECONDS = 300.0
# Posting the outcome: tries, and the pause before each retry (the controller may be
# restarting; the build's watchdog fails it if the outcome never arrives).
REPORT_ATTEMPTS = 5
REPORT_BACKOFF_SECONDS = 1.0
# On cell shutdown, how long a failure report may take.
SHUTDOWN_REPORT_SECONDS = 2.0
# The steps the runner streams are the buildpacks' compile output; a failing detect or
# release step's captured lines are sent after the failure.
STREAMED_REASONS = frozenset({"BuildpackCompileFailed", "StagingTimeExpired"})

# (app guid, line, stream) -> published as an `STG` line.
LogSink = Callable[[str, str, str], Awaitable[None]]


@dataclass
class _Staging:
    spec: StagingSpec
    task: asyncio.Task[None]


class Stager:
    def __init__(
        self,
        settings: CellSection,
        work_dir: Path,
        *,
        log_sink: LogSink,
        on_change: Callable[[], Awaitable[None]],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._root = work_dir / "staging"
        self._caches = work_dir / "caches"
        self._log = log_sink
        self._on_change = on_change
        self._transport = transport
        self._stagings: dict[str, _Staging] = {}
        self._builtin = builtin_buildpacks()
        # A previous process's leftovers: its stagings are gone with it.
        shutil.rmtree(self._root, ignore_errors=True)

    def guids(self) -> list[str]:
        return sorted(self._stagings)

    def is_staging(self, build_guid: str) -> bool:
        return build_guid in self._stagings

    def allocated(self) -> Resources:
        specs = [staging.spec for staging in self._stagings.values()]
        return Resources(
            memory_mb=sum(spec.memory_mb for spec in specs),
            disk_mb=sum(spec.disk_mb for spec in specs),
            containers=len(specs),
        )

    def begin(self, spec: StagingSpec) -> None:
        task = asyncio.get_running_loop().create_task(
            self._run(spec), name=f"cell-staging:{spec.build_guid}"
        )
        self._stagings[spec.build_guid] = _Staging(spec=spec, task=task)

    async def stop(self) -> None:
        """Abandon every staging (each reports its failure briefly on the way out)."""
        tasks = [staging.task for staging in self._stagings.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one staging ------------------------------------------------------------------------

    async def _run(self, spec: StagingSpec) -> None:
        directory = self._root / spec.build_guid
        started = time.monotonic()
        try:
            await self._stage(spec, directory, started)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SHUTDOWN_REPORT_SECONDS):
                    await self._report_failure(spec, "StagingError", "The cell shut down", tries=1)
            raise
        except StagingError as error:
            await self._failed(spec, error)
        except Exception:
            log.exception("cell.staging_crashed", build_guid=spec.build_guid)
            await self._failed(spec, StagingError("The cell failed to stage the app"))
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            self._stagings.pop(spec.build_guid, None)
            with contextlib.suppress(Exception):
                await self._on_change()
            log.info(
                "cell.staging_ended",
                build_guid=spec.build_guid,
                seconds=round(time.monotonic() - started, 3),
            )

    async def _stage(self, spec: StagingSpec, directory: Path, started: float) -> None:
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        await self._say(spec, "Downloading app package...")
        source = await self._package(spec, directory)
        buildpacks, requested = await self._buildpacks(spec, directory)
        cache = self._caches / spec.app_guid
        with contextlib.suppress(OSError):
            cache.mkdir(parents=True, exist_ok=True)
            os.utime(cache)
        await self._say(spec, "Staging app...")
        remaining = spec.timeout_seconds - (time.monotonic() - started)
        if remaining <= 0:
            raise StagingError("Staging timed out", reason="StagingTimeExpired")

        async def output(line: str, stream: str) -> None:
            await self._log(spec.app_guid, line, stream)

        result = await stage(
            source,
            buildpacks=buildpacks,
            requested=requested,
            cache_dir=cache,
            env=spec.environment,
            output=output,
            timeout_seconds=remaining,
            memory_limit_mb=spec.memory_mb,
            work_dir=directory / "work",
        )
        used = await asyncio.to_thread(directory_size, directory / "work" / "app")
        if used > spec.disk_mb * MIB:
            raise StagingError(
                f"The staged app takes {used // MIB} MB, more than the staging disk limit of "
                f"{spec.disk_mb} MB"
            )
        await self._say(spec, f"Uploading droplet ({_size(result.size)})...")
        await self._upload(spec, result.droplet_path)
        await asyncio.to_thread(self._prune_caches, spec.app_guid)

    async def _package(self, spec: StagingSpec, directory: Path) -> Path:
        archive = directory / "package.zip"
        # The zip is at most about its expanded size (stored entries), plus headers.
        await self._download(spec.package_url, archive, spec.max_package_bytes + 64 * MIB)
        source = directory / "source"
        limits = ArchiveLimits(max_bytes=spec.max_package_bytes)
        try:
            await asyncio.to_thread(safe_extract_zip, archive, source, limits)
        except UnsafeArchive as error:
            raise StagingError(
                f"The app package is unsafe: {error}", reason="InvalidPackage"
            ) from None
        finally:
            archive.unlink(missing_ok=True)
        if not any(source.iterdir()):
            raise StagingError("The app package is empty", reason="InvalidPackage")
        return source

    async def _buildpacks(
        self, spec: StagingSpec, directory: Path
    ) -> tuple[list[Buildpack], list[str]]:
        """The buildpacks the runner may choose from, and the names asked for (empty: it
        detects among the built-in ones)."""
        available = list(self._builtin)
        installed = {buildpack.name for buildpack in available}
        for position, name in enumerate(spec.buildpacks, start=1):
            if name in installed:
                continue
            if name.startswith("/"):
                self._check_path(name)
                continue
            shown = display_url(name)
            await self._say(spec, f"Fetching buildpack {shown}...")
            fetched = await fetch_buildpack(
                name,
                directory / "fetched" / f"{position:02d}",
                position=position,
                timeout_seconds=min(spec.timeout_seconds, TRANSFER_TIMEOUT_SECONDS),
            )
            available.append(fetched)
        return available, list(spec.buildpacks)

    def _check_path(self, name: str) -> None:
        path = Path(os.path.realpath(name))
        allowed = [Path(os.path.realpath(root)) for root in self._settings.buildpack_paths]
        if not any(path == root or root in path.parents for root in allowed):
            raise StagingError(
                f"Buildpack {name!r} is not in a directory this cell allows buildpacks from",
                reason="BuildpackNotFound",
            )

    # --- transfers --------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        # No proxies or certificates from the environment: settings only.
        return httpx.AsyncClient(
            timeout=httpx.Timeout(TRANSFER_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            trust_env=False,
            transport=self._transport,
        )

    async def _download(self, url: str, path: Path, limit: int) -> None:
        received = 0
        try:
            async with self._client() as client, client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise StagingError(
                        f"The app package could not be downloaded: HTTP {response.status_code}"
                    )
                with path.open("wb") as handle:
                    async for chunk in response.aiter_bytes(CHUNK_BYTES):
                        received += len(chunk)
                        if received > limit:
                            raise StagingError("The app package is larger than allowed")
                        handle.write(chunk)
        except httpx.HTTPError as error:
            # The exception text would name the signed URL: keep only its kind.
            raise StagingError(
                f"The app package could not be downloaded ({type(error).__name__})"
            ) from None

    async def _upload(self, spec: StagingSpec, droplet: Path) -> None:
        async def body() -> AsyncIterator[bytes]:
            with droplet.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    yield chunk

        size = (await asyncio.to_thread(droplet.stat)).st_size
        headers = {"Content-Type": "application/gzip", "Content-Length": str(size)}
        await self._post(spec, spec.droplet_upload_url, "droplet upload", headers, body)

    async def _failed(self, spec: StagingSpec, error: StagingError) -> None:
        if error.reason not in STREAMED_REASONS:
            for line in error.output:
                await self._log(spec.app_guid, line, "stderr")
        await self._say(spec, f"Staging failed: {error.summary}", stream="stderr")
        await self._report_failure(spec, error.reason, error.summary)

    async def _report_failure(
        self, spec: StagingSpec, reason: str, detail: str, *, tries: int = REPORT_ATTEMPTS
    ) -> None:
        payload = json.dumps({"reason": reason, "detail": detail}).encode()

        async def body() -> AsyncIterator[bytes]:
            yield payload

        headers = {"Content-Type": "application/json"}
        with contextlib.suppress(StagingError):
            await self._post(spec, spec.failure_url, "failure report", headers, body, tries=tries)

    async def _post(
        self,
        spec: StagingSpec,
        url: str,
        what: str,
        headers: dict[str, str],
        body: Callable[[], AsyncIterator[bytes]],
        *,
        tries: int = REPORT_ATTEMPTS,
    ) -> None:
        """POST with retries on connection errors and 5xx; a 4xx is final (the build is over,
        or the droplet was refused: the controller failed the build itself)."""
        for attempt in range(1, tries + 1):
            try:
                async with self._client() as client:
                    response = await client.post(url, content=body(), headers=headers)
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            else:
                if response.status_code < 300:
                    return
                if response.status_code < 500:
                    log.info(
                        "cell.staging_refused",
                        build_guid=spec.build_guid,
                        what=what,
                        status=response.status_code,
                    )
                    return
                outcome = f"HTTP {response.status_code}"
            log.warning(
                "cell.staging_post_failed",
                build_guid=spec.build_guid,
                what=what,
                attempt=attempt,
                outcome=outcome,
            )
            if attempt < tries:
                await asyncio.sleep(REPORT_BACKOFF_SECONDS * attempt)
        raise StagingError(f"The {what} could not reach the controller")

    # --- housekeeping -----------------------------------------------------------------------

    async def _say(self, spec: StagingSpec, line: str, *, stream: str = "stdout") -> None:
        await self._log(spec.app_guid, line, stream)

    def _prune_caches(self, keep: str) -> None:
        limit = self._settings.app_cache_entries
        try:
            caches = sorted(
                (path for path in self._caches.iterdir() if path.is_dir()),
                key=lambda path: path.stat().st_mtime,
                reverse=True,
            )
        except OSError:
            return
        for old in caches[limit:]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)


def _size(size: int) -> str:
    if size >= MIB:
        return f"{size / MIB:.1f} MB"
    return f"{max(1, size // 1024)} KB"
