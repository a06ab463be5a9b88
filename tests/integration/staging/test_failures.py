"""Staging that goes wrong, with real processes: failing and slow buildpacks, nothing detected,
the memory limit, runtime.txt asking for a missing Python, a missing node, links out of the
app. Also what a step sees: a clean environment and ENV_DIR."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from overcast.staging.runner import NO_APP_DETECTED, STEP_PATH, Buildpack, StagingError
from tests.integration.staging.helpers import EXAMPLES, stage_app


def _buildpack(root: Path, name: str, *, compile_body: str, release: str = "") -> Buildpack:
    path = root / name
    (path / "bin").mkdir(parents=True)
    release = release or "echo '---'; echo 'default_process_types: {web: ./run}'"
    scripts = {"detect": f"echo {name}", "compile": compile_body, "release": release}
    for script, body in scripts.items():
        (path / "bin" / script).write_text(f"#!/bin/bash\n{body}\n")
    return Buildpack(name=name, path=path, position=1)


def _source(tmp_path: Path, **files: str) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name, content in (files or {"run": "#!/bin/sh\necho hi\n"}).items():
        (source / name).write_text(content)
    return source


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


async def test_failing_compile_reports_its_last_lines(tmp_path: Path) -> None:
    failing = _buildpack(
        tmp_path / "bp",
        "failing",
        compile_body='for i in $(seq 1 30); do echo "line $i"; done\n'
        'sleep 0.2; echo "it broke" >&2\nexit 1',
    )
    with pytest.raises(StagingError) as caught:
        await stage_app(
            _source(tmp_path), tmp_path / "work", tmp_path / "cache", buildpacks=[failing]
        )
    error = caught.value
    assert error.reason == "BuildpackCompileFailed"
    assert error.summary == (
        "Buildpack failing failed to compile the app (bin/compile exited with code 1)"
    )
    assert len(error.output) == 20
    assert error.output[-1] == "it broke"
    assert "line 30" in error.output and "line 5" not in error.output
    assert str(error).endswith("line 30\nit broke")


async def test_compile_output_is_streamed_line_by_line(tmp_path: Path) -> None:
    chatty = _buildpack(
        tmp_path / "bp",
        "chatty",
        compile_body="echo one; echo two >&2; printf 'no newline at the end'",
    )
    staged = await stage_app(
        _source(tmp_path), tmp_path / "work", tmp_path / "cache", buildpacks=[chatty]
    )
    assert sorted(staged.lines) == sorted(
        [("one", "stdout"), ("two", "stderr"), ("no newline at the end", "stdout")]
    )
    assert staged.result.detected_buildpack == "chatty"
    assert staged.result.detect_output == "chatty"
    assert staged.result.process_types == {"web": "./run"}


async def test_nothing_detected(tmp_path: Path) -> None:
    with pytest.raises(StagingError) as caught:
        await stage_app(
            _source(tmp_path, **{"README.md": "no app here\n"}), tmp_path / "work", tmp_path / "c"
        )
    assert str(caught.value) == NO_APP_DETECTED
    assert caught.value.reason == "NoAppDetectedError"


async def test_timeout_kills_the_step_and_what_it_started(tmp_path: Path) -> None:
    slow = _buildpack(
        tmp_path / "bp",
        "slow",
        compile_body='sleep 120 & echo $! > "$1/../background.pid"\n'
        'echo $$ > "$1/../compile.pid"\necho started\nsleep 120',
    )
    started = time.monotonic()
    with pytest.raises(StagingError) as caught:
        await stage_app(
            _source(tmp_path),
            tmp_path / "work",
            tmp_path / "cache",
            buildpacks=[slow],
            timeout_seconds=1.5,
        )
    assert time.monotonic() - started < 10
    assert caught.value.reason == "StagingTimeExpired"
    assert "limit of 1.5 seconds" in str(caught.value)
    pids = [
        int((tmp_path / "work" / name).read_text()) for name in ("compile.pid", "background.pid")
    ]
    for _ in range(50):
        if not any(_alive(pid) for pid in pids):
            break
        await asyncio.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


async def test_steps_get_a_clean_environment_and_env_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERCAST_RUNNER_SECRET", "do-not-leak")
    probe = _buildpack(
        tmp_path / "bp",
        "probe",
        compile_body='env | sort > "$1/../env.txt"\n'
        'for f in "$3"/*; do echo "$(basename "$f")=$(cat "$f")"; done > "$1/../envdir.txt"\n'
        'echo "$2" > "$1/../cache.txt"',
    )
    await stage_app(
        _source(tmp_path),
        tmp_path / "work",
        tmp_path / "cache",
        buildpacks=[probe],
        env={"GREETING": "hello", "CF_STACK": "cflinuxfs4"},
        memory_limit_mb=512,
    )
    environment = dict(
        line.split("=", 1) for line in (tmp_path / "work" / "env.txt").read_text().splitlines()
    )
    assert "OVERCAST_RUNNER_SECRET" not in environment
    assert environment["GREETING"] == "hello"
    assert environment["PATH"] == STEP_PATH
    assert environment["HOME"] == str(tmp_path / "work" / "home")
    assert environment["MEMORY_LIMIT"] == "512m"
    assert "PORT" not in environment
    envdir = (tmp_path / "work" / "envdir.txt").read_text().splitlines()
    assert envdir == ["CF_STACK=cflinuxfs4", "GREETING=hello"]
    assert (tmp_path / "work" / "cache.txt").read_text().strip() == str(
        tmp_path / "cache" / "probe"
    )


async def test_memory_limit_applies_to_steps(tmp_path: Path) -> None:
    greedy = _buildpack(
        tmp_path / "bp",
        "greedy",
        compile_body='python3 -c "b = bytearray(600 * 1024 * 1024); print(len(b))"',
    )
    source = _source(tmp_path)
    with pytest.raises(StagingError) as caught:
        await stage_app(
            source, tmp_path / "work", tmp_path / "cache", buildpacks=[greedy], memory_limit_mb=200
        )
    assert "MemoryError" in str(caught.value)
    staged = await stage_app(
        source,
        tmp_path / "work2",
        tmp_path / "cache",
        buildpacks=[greedy],
        memory_limit_mb=None,
    )
    assert staged.lines == [(str(600 * 1024 * 1024), "stdout")]


def _copy_example(tmp_path: Path, name: str) -> Path:
    source = tmp_path / name
    shutil.copytree(EXAMPLES / name, source)
    return source


async def test_runtime_txt_naming_a_python_the_cell_lacks(tmp_path: Path) -> None:
    source = _copy_example(tmp_path, "stdlib")
    (source / "runtime.txt").write_text("python-2.7.x\n")
    with pytest.raises(StagingError) as caught:
        await stage_app(source, tmp_path / "work", tmp_path / "cache")
    assert caught.value.reason == "BuildpackCompileFailed"
    message = str(caught.value)
    assert "runtime.txt asks for python-2.7.x, which is not available on this cell" in message
    assert "(available: python-3." in message


async def test_runtime_txt_naming_the_cells_python(tmp_path: Path) -> None:
    python = shutil.which("python3.11", path=STEP_PATH)
    if python is None:
        pytest.skip("no python3.11 on the cell's PATH")
    source = _copy_example(tmp_path, "stdlib")
    (source / "runtime.txt").write_text("python-3.11.x\n")
    staged = await stage_app(source, tmp_path / "work", tmp_path / "cache")
    assert f"({python})" in staged.text
    assert staged.result.process_types == {"web": "python app.py"}


async def test_nodejs_without_node_on_the_cell(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(StagingError) as caught:
        await stage_app(
            EXAMPLES / "node",
            tmp_path / "work",
            tmp_path / "cache",
            requested=["nodejs"],
            env={"PATH": str(empty)},
        )
    assert caught.value.reason == "BuildpackCompileFailed"
    assert "node is not installed on this cell" in str(caught.value)


async def test_procfile_only_app(tmp_path: Path) -> None:
    source = _source(tmp_path, Procfile="web: ./run.sh\nclock: ./clock.sh\n", **{"run.sh": ""})
    staged = await stage_app(source, tmp_path / "work", tmp_path / "cache")
    assert staged.result.detected_buildpack == "procfile"
    assert staged.result.process_types == {"web": "./run.sh", "clock": "./clock.sh"}
    assert staged.result.start_command == "./run.sh"


async def test_procfile_overrides_the_buildpacks_default(tmp_path: Path) -> None:
    source = _copy_example(tmp_path, "stdlib")
    (source / "Procfile").write_text("web: python app.py --verbose\nworker: python w.py\n")
    staged = await stage_app(source, tmp_path / "work", tmp_path / "cache")
    assert staged.result.process_types == {
        "web": "python app.py --verbose",
        "worker": "python w.py",
    }


async def test_a_link_out_of_the_app_is_refused(tmp_path: Path) -> None:
    source = _source(tmp_path, Procfile="web: ./run\n")
    os.symlink("/etc/passwd", source / "passwd")
    with pytest.raises(StagingError, match=r"link to an absolute path: app/passwd -> /etc/passwd"):
        await stage_app(source, tmp_path / "work", tmp_path / "cache")


async def test_a_bad_procfile(tmp_path: Path) -> None:
    source = _source(tmp_path, Procfile="web ./run\n")
    with pytest.raises(StagingError, match="Procfile line 1"):
        await stage_app(source, tmp_path / "work", tmp_path / "cache")


async def test_a_failing_output_callback_ends_the_step(tmp_path: Path) -> None:
    from overcast.staging.runner import stage

    endless = _buildpack(tmp_path / "bp", "endless", compile_body="yes 'a line'")

    async def output(line: str, stream: str) -> None:
        raise RuntimeError("the log sink is gone")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the log sink is gone"):
        await stage(
            _source(tmp_path),
            buildpacks=[endless],
            cache_dir=tmp_path / "cache",
            env={},
            output=output,
            work_dir=tmp_path / "work",
            timeout_seconds=30,
        )
    assert time.monotonic() - started < 10
