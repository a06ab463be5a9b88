"""Health checks of an instance (DESIGN.md section 8): `port` (TCP connect), `http` (GET an
endpoint, 2xx) and `process` (it runs: the agent sees an exit by itself)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from overcast.bus.messages import HealthCheckSpec


class Prober:
    """Runs probes; holds one HTTP client for every instance."""

    def __init__(self) -> None:
        # No proxies from the environment: probes go straight to the instance.
        self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)

    async def probe(self, check: HealthCheckSpec, host: str, port: int | None) -> str | None:
        """None when healthy, otherwise why not."""
        if check.type == "process":
            return None
        if port is None:
            return "the instance has no port"
        timeout = check.invocation_timeout_seconds
        if check.type == "http":
            return await self._http(host, port, check.endpoint or "/", timeout)
        return await tcp_probe(host, port, timeout)

    async def _http(self, host: str, port: int, endpoint: str, limit: float) -> str | None:
        path = endpoint if endpoint.startswith("/") else f"/{endpoint}"
        try:
            response = await self._client.get(f"http://{host}:{port}{path}", timeout=limit)
        except httpx.TimeoutException:
            return f"GET {path} timed out after {limit:g}s"
        except httpx.HTTPError as error:
            return f"GET {path} failed: {type(error).__name__}"
        if not 200 <= response.status_code < 300:
            return f"GET {path} answered {response.status_code}"
        return None

    async def close(self) -> None:
        await self._client.aclose()


async def tcp_probe(host: str, port: int, limit: float) -> str | None:
    try:
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
        async with asyncio.timeout(limit):
            _reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"connecting to port {port} timed out after {limit:g}s"
    except OSError as error:
        return f"connecting to port {port} failed: {error.strerror or type(error).__name__}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None
