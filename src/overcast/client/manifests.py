"""Manifests as the client reads them: the CLI and other client code use the same parsing,
((variable)) interpolation, push-flag rules and rendering as the API (overcast.models.manifest),
through this module (the CLI imports only the client)."""

from __future__ import annotations

from overcast.models.manifest import (
    AppManifest,
    Manifest,
    ManifestError,
    ManifestProblem,
    apply_flag_overrides,
    parse_manifest,
    parse_var_flag,
    parse_vars_file,
    render_manifest,
)

__all__ = [
    "AppManifest",
    "Manifest",
    "ManifestError",
    "ManifestProblem",
    "apply_flag_overrides",
    "parse_manifest",
    "parse_var_flag",
    "parse_vars_file",
    "render_manifest",
]
