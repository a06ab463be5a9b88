"""The environment CF gives an app: VCAP_APPLICATION and friends, as pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from overcast.models.resources import App, Organization, Process, Space
from overcast.models.validation import env_value_text


def vcap_application(
    app: App,
    space: Space,
    org: Organization,
    *,
    api_url: str,
    uris: Sequence[str] = (),
    process: Process | None = None,
) -> dict[str, Any]:
    version = process.version if process else app.guid
    memory = process.memory_in_mb if process else 256
    disk = process.disk_in_mb if process else 1024
    application: dict[str, Any] = {
        "application_id": app.guid,
        "application_name": app.name,
        "application_uris": list(uris),
        "application_version": version,
        "cf_api": api_url,
        "limits": {"fds": 16384, "mem": memory, "disk": disk},
        "name": app.name,
        "organization_id": org.guid,
        "organization_name": org.name,
        "space_id": space.guid,
        "space_name": space.name,
        "uris": list(uris),
        "users": None,
        "version": version,
    }
    if process is not None:
        application.update(process_id=process.guid, process_type=process.type)
    return application


def user_environment(app: App) -> dict[str, str]:
    return {name: env_value_text(value) for name, value in app.environment_variables.items()}
