"""What Cloud Foundry's launcher does before an app's start command: source the droplet's
`.profile.d/*.sh` (where buildpacks put runtime settings such as the virtualenv on PATH) and
then `.profile`, from the app directory. A cell runs `bash -c launcher_command(command)` with
the app directory as its working directory and HOME."""

from __future__ import annotations

PROFILE_SCRIPT = (
    'for _overcast_profile in .profile.d/*.sh; do if [ -r "$_overcast_profile" ]; then '
    '. "$_overcast_profile"; fi; done; unset _overcast_profile; '
    "if [ -r .profile ]; then . ./.profile; fi\n"
)


def launcher_command(command: str) -> str:
    """`command` preceded by the sourcing of the droplet's profile scripts (for `bash -c`)."""
    return PROFILE_SCRIPT + command
