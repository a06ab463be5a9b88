"""Who is calling: what a verified token says."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_SCOPE = "cloud_controller.admin"
USER_SCOPES = ("openid", "cloud_controller.read", "cloud_controller.write", "uaa.user")


@dataclass(frozen=True)
class Identity:
    guid: str
    name: str
    kind: str  # "user" or "client"
    scopes: tuple[str, ...]

    @property
    def admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes


SYSTEM = Identity(guid="system", name="overcast", kind="system", scopes=(ADMIN_SCOPE,))
