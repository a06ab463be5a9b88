"""A real controller (store, job engine, API) in process, driven over HTTP with httpx."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from overcast.cmd.wiring import ControllerParts, build_controller
from overcast.core.settings import ControllerSettings
from overcast.testing.clock import FakeClock
from overcast.testing.droplets import build_droplet

ADMIN_PASSWORD = "admin-password-for-tests"
BASE = "http://api.test"


@dataclass
class Api:
    http: httpx.AsyncClient
    parts: ControllerParts
    clock: FakeClock
    admin: dict[str, str] = field(default_factory=dict)

    async def token(self, username: str, password: str) -> dict[str, Any]:
        response = await self.http.post(
            "/oauth/token",
            data={
                "grant_type": "password",
                "username": username,
                "password": password,
                "scope": "",
            },
            auth=("cf", ""),
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def login(self, username: str, password: str) -> dict[str, str]:
        token = await self.token(username, password)
        return {"Authorization": f"bearer {token['access_token']}"}

    async def user(
        self, username: str, password: str = "user-password-1"
    ) -> tuple[str, dict[str, str]]:
        response = await self.http.post(
            "/v3/users", headers=self.admin, json={"username": username, "password": password}
        )
        assert response.status_code == 201, response.text
        return response.json()["guid"], await self.login(username, password)

    async def org(self, name: str = "acme") -> dict[str, Any]:
        response = await self.http.post(
            "/v3/organizations", headers=self.admin, json={"name": name}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def space(self, org_guid: str, name: str = "dev") -> dict[str, Any]:
        response = await self.http.post(
            "/v3/spaces",
            headers=self.admin,
            json={"name": name, "relationships": {"organization": {"data": {"guid": org_guid}}}},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def app(
        self,
        space_guid: str,
        name: str = "web",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/v3/apps",
            headers=headers or self.admin,
            json={
                "name": name,
                "relationships": {"space": {"data": {"guid": space_guid}}},
                **extra,
            },
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def role(
        self,
        role_type: str,
        user_guid: str,
        *,
        org: str | None = None,
        space: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        relationships: dict[str, Any] = {"user": {"data": {"guid": user_guid}}}
        if org:
            relationships["organization"] = {"data": {"guid": org}}
        if space:
            relationships["space"] = {"data": {"guid": space}}
        return await self.http.post(
            "/v3/roles",
            headers=headers or self.admin,
            json={"type": role_type, "relationships": relationships},
        )

    async def upload_droplet(
        self, droplet_guid: str, data: bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.http.post(
            f"/v3/droplets/{droplet_guid}/upload",
            headers=headers or self.admin,
            files={"bits": ("droplet.tgz", data, "application/gzip")},
        )

    async def droplet(
        self,
        app_guid: str,
        headers: dict[str, str] | None = None,
        *,
        assign: bool = True,
        process_types: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A STAGED droplet of the app (the test droplet: the hello app), made current unless
        `assign` is false, so the app can start."""
        headers = headers or self.admin
        created = await self.http.post(
            "/v3/droplets",
            headers=headers,
            json={"relationships": {"app": {"data": {"guid": app_guid}}}},
        )
        assert created.status_code == 201, created.text
        with tempfile.TemporaryDirectory() as directory:
            built = build_droplet(Path(directory) / "d.tgz", process_types=process_types)
            data = built.path.read_bytes()
        uploaded = await self.upload_droplet(created.json()["guid"], data, headers)
        assert uploaded.status_code == 202, uploaded.text
        job = await self.wait_job(uploaded.headers["location"], headers)
        assert job["state"] == "COMPLETE", job
        guid = created.json()["guid"]
        if assign:
            response = await self.http.patch(
                f"/v3/apps/{app_guid}/relationships/current_droplet",
                headers=headers,
                json={"data": {"guid": guid}},
            )
            assert response.status_code == 200, response.text
        response = await self.http.get(f"/v3/droplets/{guid}", headers=headers)
        return dict(response.json())

    async def wait_job(
        self, location: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        for _ in range(400):
            response = await self.http.get(location, headers=headers or self.admin)
            assert response.status_code == 200, response.text
            job = dict(response.json())
            if job["state"] in ("COMPLETE", "FAILED"):
                return job
            await asyncio.sleep(0.02)
        raise AssertionError(f"job {location} did not finish")


async def _api(tmp_path: Path, database_url: str = "") -> AsyncIterator[Api]:
    settings = ControllerSettings(
        data_dir=tmp_path,
        store={"url": database_url},
        auth={"admin_password": ADMIN_PASSWORD, "access_token_ttl_seconds": 600},
        jobs={"poll_interval_seconds": 0.02},
        api={"external_url": BASE, "max_body_bytes": 64 * 1024},
    )
    clock = FakeClock(datetime.now(UTC))
    parts = await build_controller(settings, clock=clock)
    await parts.start()
    transport = httpx.ASGITransport(app=parts.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        api = Api(http=http, parts=parts, clock=clock)
        api.admin = await api.login("admin", ADMIN_PASSWORD)
        try:
            yield api
        finally:
            await parts.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for harness in _api(tmp_path):
        yield harness


@pytest.fixture
async def api_on_postgres(tmp_path: Path, postgres_url: str) -> AsyncIterator[Api]:
    async for harness in _api(tmp_path, postgres_url):
        yield harness
