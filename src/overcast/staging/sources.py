"""Buildpacks that are not installed: fetched for one staging from a URL.

- a URL whose path ends in `.zip` (http, https or file) is downloaded and unpacked with the
  same zip rules as app packages (a hostile buildpack archive is refused entry by entry);
- any other http(s), git or file URL is a git repository, cloned at depth 1; a fragment
  names the branch or tag (`https://host/buildpack.git#v1.2`).

Either way the tree may not hold links that leave it. URLs may carry credentials, so only
`display_url` forms of them reach logs and errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from overcast.staging.archives import ArchiveLimits, UnsafeArchive, safe_extract_zip
from overcast.staging.runner import (
    STEP_PATH,
    Buildpack,
    StagingError,
    check_links,
    close_pipes,
)

FETCH_FAILED = "BuildpackDownloadFailed"
# A buildpack archive is a few scripts, perhaps with vendored tools: generous, but bounded.
BUILDPACK_LIMITS = ArchiveLimits(
    max_entries=20_000, max_bytes=512 * 1024 * 1024, max_file_bytes=256 * 1024 * 1024
)
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
CHUNK_BYTES = 256 * 1024


def display_url(url: str) -> str:
    """The URL without user, password, query or fragment secrets: safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_zip_url(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(".zip")


async def fetch_buildpack(
    url: str, destination: Path, *, position: int, timeout_seconds: float
) -> Buildpack:
    """The buildpack at `url`, fetched into `destination` (which must not exist yet)."""
    shown = display_url(url)
    await asyncio.to_thread(destination.parent.mkdir, parents=True, exist_ok=True)
    try:
        async with asyncio.timeout(timeout_seconds):
            if is_zip_url(url):
                await _fetch_zip(url, destination, shown)
            else:
                await _clone(url, destination, shown)
    except TimeoutError:
        shutil.rmtree(destination, ignore_errors=True)
        raise StagingError(
            f"Fetching buildpack {shown} took longer than {timeout_seconds:g} seconds",
            reason=FETCH_FAILED,
        ) from None
    await asyncio.to_thread(check_links, destination, f"Buildpack {shown}", "")
    if not (destination / "bin" / "compile").is_file():
        raise StagingError(
            f"Buildpack {shown} is not a buildpack: it has no bin/compile", reason=FETCH_FAILED
        )
    version_file = destination / "VERSION"
    version = None
    if version_file.is_file():
        version = version_file.read_text(errors="replace").strip()[:64] or None
    return Buildpack(name=url, path=destination, position=position, version=version)


async def _fetch_zip(url: str, destination: Path, shown: str) -> None:
    archive = destination.with_name(destination.name + ".zip")
    try:
        if urlsplit(url).scheme == "file":
            source = Path(urlsplit(url).path)
            if not await asyncio.to_thread(source.is_file):
                raise StagingError(f"Buildpack {shown} does not exist", reason=FETCH_FAILED)
            await asyncio.to_thread(shutil.copyfile, source, archive)
        else:
            await _download(url, archive, shown)
        try:
            await asyncio.to_thread(safe_extract_zip, archive, destination, BUILDPACK_LIMITS)
        except UnsafeArchive as error:
            raise StagingError(
                f"Buildpack {shown} is not a safe archive: {error}", reason=FETCH_FAILED
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()


async def _download(url: str, path: Path, shown: str) -> None:
    received = 0
    try:
        async with (
            httpx.AsyncClient(trust_env=False, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise StagingError(
                    f"Buildpack {shown} could not be downloaded: HTTP {response.status_code}",
                    reason=FETCH_FAILED,
                )
            with path.open("wb") as handle:
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    received += len(chunk)
                    if received > MAX_DOWNLOAD_BYTES:
                        raise StagingError(
                            f"Buildpack {shown} is larger than {MAX_DOWNLOAD_BYTES} bytes",
                            reason=FETCH_FAILED,
                        )
                    handle.write(chunk)
    except httpx.HTTPError as error:
        raise StagingError(
            f"Buildpack {shown} could not be downloaded ({type(error).__name__})",
            reason=FETCH_FAILED,
        ) from None


async def _clone(url: str, destination: Path, shown: str) -> None:
    parts = urlsplit(url)
    repository = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    command = ["git", "clone", "--quiet", "--depth", "1", "--no-tags"]
    if parts.fragment:
        command += ["--branch", parts.fragment]
    command += ["--", repository, str(destination)]
    environment = {
        "PATH": STEP_PATH,
        "HOME": str(destination.parent),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LANG": "C.UTF-8",
    }
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        raise StagingError(
            f"Cannot fetch buildpack {shown}: git is not available ({error.strerror})",
            reason=FETCH_FAILED,
        ) from None
    try:
        _, stderr = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        close_pipes(process)
        raise
    if process.returncode != 0:
        shutil.rmtree(destination, ignore_errors=True)
        # git's message may repeat the URL with its credentials: say only that it failed.
        lines = stderr.decode(errors="replace").strip().splitlines()
        hint = lines[-1].replace(repository, shown) if lines else "no message"
        if "@" in hint or (parts.query in hint and parts.query):
            hint = "see the git server's logs"
        raise StagingError(
            f"Buildpack {shown} could not be cloned ({hint[:200]})", reason=FETCH_FAILED
        )
