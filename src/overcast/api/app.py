"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from overcast import __version__
from overcast.api.errors import install_error_handlers
from overcast.api.middleware import RequestContextMiddleware
from overcast.api.v3 import (
    apps,
    blobs,
    builds,
    droplets,
    extensions,
    health,
    instances,
    logs,
    misc,
    orgs,
    packages,
    processes,
    roles,
    root,
    routes,
    spaces,
)
from overcast.controller.controller import Controller

# Multipart framing around an uploaded file (boundaries, part headers) on top of its size.
UPLOAD_FRAMING_BYTES = 64 * 1024


def create_app(
    controller: Controller,
    *,
    external_url: str = "",
    max_body_bytes: int = 1024 * 1024,
    max_upload_bytes: int = 2 * 1024**3,
    max_package_upload_bytes: int | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Overcast API",
        version=__version__,
        description="Cloud Foundry Cloud Controller v3 compatible API, plus /v3/x extensions.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        # CF answers an unknown path (a trailing slash included) with a JSON 404, not a redirect.
        redirect_slashes=False,
    )
    app.state.controller = controller
    app.state.external_url = external_url.rstrip("/")
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=max_body_bytes,
        body_limits=[
            (droplets.UPLOAD_PATH, max_upload_bytes + UPLOAD_FRAMING_BYTES),
            (builds.STAGED_DROPLET_PATH, controller.droplets.max_droplet_bytes),
            # The zip, plus the `resources` field, plus framing.
            (
                packages.UPLOAD_PATH,
                (max_package_upload_bytes or controller.packages.max_package_bytes)
                + packages.MAX_RESOURCES_BYTES
                + UPLOAD_FRAMING_BYTES,
            ),
            (packages.MATCHES_PATH, max(max_body_bytes, packages.MAX_MATCHES_BODY_BYTES)),
            (health.ACTIONS_PATH, max(max_body_bytes, health.MAX_ACTIONS_BODY_BYTES)),
        ],
    )
    for module in (
        root,
        orgs,
        spaces,
        apps,
        processes,
        roles,
        misc,
        extensions,
        logs,
        droplets,
        packages,
        builds,
        blobs,
        instances,
        routes,
        health,
    ):
        app.include_router(module.router)
    return app
