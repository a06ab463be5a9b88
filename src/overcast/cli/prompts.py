"""Questions to the user. On a terminal: prompts (hidden for secrets). With piped input: one
line per answer from stdin, so scripts can feed a password without putting it in argv."""

from __future__ import annotations

import sys

import typer

from overcast.cli.errors import CliError


def _interactive() -> bool:
    return sys.stdin.isatty()


def _read_piped_line() -> str:
    return sys.stdin.readline().rstrip("\r\n")


def ask(prompt: str, *, secret: bool = False, confirm: bool = False) -> str:
    if _interactive():
        answer = str(typer.prompt(prompt, hide_input=secret, confirmation_prompt=confirm))
    else:
        answer = _read_piped_line()
    if not answer:
        raise CliError(f"No {prompt.lower()} given")
    return answer


def confirm_deletion(what: str, *, force: bool) -> bool:
    """True to go ahead. Without -f a person must say yes; a script must pass -f."""
    if force:
        return True
    if not _interactive():
        raise CliError(f"Not deleting {what} without confirmation: pass -f to delete it")
    return typer.confirm(f"Really delete {what}?", default=False)
