"""The runner's small formats: Procfiles, release output, ENV_DIR, the step environment and the
launcher's profile sourcing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from overcast.staging.launcher import launcher_command
from overcast.staging.procfile import FormatError, parse_procfile, parse_release
from overcast.staging.runner import (
    STEP_PATH,
    StagingError,
    merge_process_types,
    step_environment,
    write_env_dir,
)


def test_procfile_types_in_order_skipping_comments_and_blank_lines() -> None:
    text = (
        "# the app's processes\n"
        "\n"
        "web: python app.py --port $PORT\n"
        "  worker:   celery -A tasks worker  \n"
        "clock: ./bin/clock: every 5s # not a comment inside a command\n"
    )
    assert parse_procfile(text) == {
        "web": "python app.py --port $PORT",
        "worker": "celery -A tasks worker",
        "clock": "./bin/clock: every 5s # not a comment inside a command",
    }


def test_procfile_quoted_commands_are_unquoted_like_yaml() -> None:
    text = 'web: "bundle exec \'rails s\'"\nworker: \'echo "hi"\'\nraw: echo "a" "b"\n'
    assert parse_procfile(text) == {
        "web": "bundle exec 'rails s'",
        "worker": 'echo "hi"',
        "raw": 'echo "a" "b"',
    }


def test_procfile_later_line_wins_and_crlf_is_fine() -> None:
    assert parse_procfile("web: one\r\nweb: two\r\n") == {"web": "two"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just a command\n", "line 1 is not 'type: command'"),
        ("web: ok\n-bad: x\n", "line 2"),
        ("web:\n", "no command for 'web'"),
    ],
)
def test_procfile_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_procfile(text)


def test_release_default_process_types() -> None:
    text = "---\nconfig_vars:\n  A: b\ndefault_process_types:\n  web: npm start\n  port: 8080\n"
    assert parse_release(text) == {"web": "npm start", "port": "8080"}


@pytest.mark.parametrize(
    "text", ["", "---\n", "---\ndefault_process_types:\n", "default_process_types: {}\n"]
)
def test_release_without_process_types(text: str) -> None:
    assert parse_release(text) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default_process_types: [web]\n", "must be a mapping"),
        ("- a\n- b\n", "must print a YAML mapping"),
        ("default_process_types: {web: [1]}\n", "invalid entry"),
        ("default_process_types: {web: npm\n", "invalid YAML"),
    ],
)
def test_release_errors(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_release(text)


def test_procfile_overrides_release_type_by_type() -> None:
    merged = merge_process_types(
        {"web": "npm start", "worker": "node worker.js"}, {"web": "node server.js"}
    )
    assert merged == {"web": "node server.js", "worker": "node worker.js"}


def test_env_dir_has_one_file_per_variable(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgres://u:p@h/db",
        "MULTI": "line one\nline two",
        "EMPTY": "",
        "a/b": "not a file name",
        "..": "nor this",
        "NUL": "bad\x00value",
    }
    written = write_env_dir(tmp_path / "env", env)
    assert written == ["DATABASE_URL", "EMPTY", "MULTI"]
    assert sorted(p.name for p in (tmp_path / "env").iterdir()) == written
    assert (tmp_path / "env" / "MULTI").read_text() == "line one\nline two"
    assert (tmp_path / "env" / "EMPTY").read_text() == ""
    assert (tmp_path / "env" / "DATABASE_URL").stat().st_mode & 0o777 == 0o600


def test_step_environment_is_built_from_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERCAST_RUNNER_SECRET", "s3cret")
    environment = step_environment(
        {"GREETING": "hi", "BAD=NAME": "x"},
        home=tmp_path / "home",
        tmpdir=tmp_path / "tmp",
        memory_limit_mb=512,
    )
    assert environment == {
        "PATH": STEP_PATH,
        "HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path / "tmp"),
        "LANG": "C.UTF-8",
        "MEMORY_LIMIT": "512m",
        "GREETING": "hi",
    }


def test_app_variables_may_override_the_defaults(tmp_path: Path) -> None:
    environment = step_environment(
        {"PATH": "/opt/bin:/usr/bin"}, home=tmp_path, tmpdir=tmp_path, memory_limit_mb=None
    )
    assert environment["PATH"] == "/opt/bin:/usr/bin"
    assert "MEMORY_LIMIT" not in environment


def test_staging_error_carries_reason_and_output() -> None:
    error = StagingError("compile failed", reason="BuildpackCompileFailed", output=["a", "b"])
    assert error.summary == "compile failed"
    assert error.reason == "BuildpackCompileFailed"
    assert error.output == ("a", "b")
    assert str(error) == "compile failed\na\nb"


def test_launcher_sources_profile_scripts_then_runs_the_command(tmp_path: Path) -> None:
    (tmp_path / ".profile.d").mkdir()
    (tmp_path / ".profile.d" / "a.sh").write_text('export FROM_A="a"\n')
    (tmp_path / ".profile.d" / "b.sh").write_text('export FROM_B="$FROM_A-b"\n')
    (tmp_path / ".profile").write_text('export FROM_PROFILE="$FROM_B-p"\n')
    result = subprocess.run(
        ["/bin/bash", "-c", launcher_command('echo "$FROM_PROFILE $1"; echo "$_overcast_profile"')],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", STEP_PATH), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "a-b-p \n\n"


def test_launcher_without_profile_scripts(tmp_path: Path) -> None:
    result = subprocess.run(
        ["/bin/bash", "-c", launcher_command("echo ran && exit 3")],
        cwd=tmp_path,
        env={"PATH": STEP_PATH},
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout, result.stderr) == (3, "ran\n", "")
