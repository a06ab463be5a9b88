"""Buildpacks: the ones installed with Overcast (CF's admin buildpacks, read-only here), and
what a build may name: an installed buildpack, a URL the cell fetches (git or zip), or an
absolute path on the cell (which the cell accepts only inside its configured directories)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from overcast.controller.access import Caller
from overcast.models.errors import NotFound, Unprocessable
from overcast.models.query import ListQuery, Page

# Buildpack guids are derived from their names, so every controller shows the same ones.
_NAMESPACE = uuid.UUID("6f0b9d55-0c5e-4b8a-9d7b-4a8f3f0b7c11")
URL_SCHEMES = frozenset({"http", "https", "git", "file"})
MAX_BUILDPACKS = 16


@dataclass(frozen=True)
class InstalledBuildpack:
    name: str
    position: int
    version: str | None
    stack: str | None
    created_at: datetime

    @property
    def guid(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, self.name))


def is_buildpack_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in URL_SCHEMES and bool(parts.netloc or parts.scheme == "file")


class Buildpacks:
    def __init__(self, installed: Sequence[InstalledBuildpack] = ()) -> None:
        self.installed = sorted(installed, key=lambda buildpack: buildpack.position)

    def names(self) -> list[str]:
        return [buildpack.name for buildpack in self.installed]

    async def page(self, caller: Caller, query: ListQuery) -> Page[InstalledBuildpack]:
        del caller  # every authenticated user sees the installed buildpacks, as in CF
        names = set(query.filters.get("names", ())) if "names" in query.filters else None
        stacks = set(query.filters.get("stacks", ())) if "stacks" in query.filters else None
        matching = [
            buildpack
            for buildpack in self.installed
            if (names is None or buildpack.name in names)
            and (stacks is None or buildpack.stack in stacks)
        ]
        if query.descending:
            matching.reverse()
        start = (query.page - 1) * query.per_page
        return Page(items=matching[start : start + query.per_page], total=len(matching))

    async def get(self, caller: Caller, guid: str) -> InstalledBuildpack:
        del caller
        for buildpack in self.installed:
            if buildpack.guid == guid:
                return buildpack
        raise NotFound.of("Buildpack")

    def check_requested(self, requested: Sequence[str]) -> None:
        """CF's rule: each must be an installed buildpack or a URL (Overcast also takes an
        absolute path, which the staging cell checks against its allowed directories)."""
        if len(requested) > MAX_BUILDPACKS:
            raise Unprocessable(f"A build may name at most {MAX_BUILDPACKS} buildpacks")
        known = set(self.names())
        for name in requested:
            if name in known or name.startswith("/") or is_buildpack_url(name):
                continue
            raise Unprocessable(
                f'Buildpack "{name[:255]}" must be an existing admin buildpack or a valid git URI'
            )
