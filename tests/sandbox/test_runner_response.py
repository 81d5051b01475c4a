"""The runner's half of a script's HTTP answer and of a wrapped request, run on the host (no engine): the
runner as a process over a bundle file, and its functions against hostile outputs directories."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from controlplane.backends.protocol import (
    ArtifactData,
    ArtifactHead,
    Exited,
    FrameParser,
    Output,
    ResponseHead,
    Skipped,
    encode_bundle,
)
from controlplane.core.settings import Settings
from controlplane.dialects.scripting.service import REQUEST_MAGIC, ScriptRequest, wrap_request

IMAGE_DIR = Path(__file__).resolve().parents[2] / "sandbox-images" / "python"


@pytest.fixture(scope="module")
def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cp_runner_under_test", IMAGE_DIR / "runner.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frames_of(out: bytes) -> list[Any]:
    parser = FrameParser()
    frames = list(parser.feed(out))
    assert parser.bad_lines == 0
    return frames


def run_runner(
    tmp_path: Path, work: Path, bundle: bytes
) -> tuple[subprocess.CompletedProcess[bytes], list[Any], bytes]:
    """runner.py as a process over ``bundle`` (a file, as on Kubernetes): its exit, frames and stderr."""
    (tmp_path / "bundle.json").write_bytes(bundle)
    proc = subprocess.run(
        [sys.executable, "-I", str(IMAGE_DIR / "runner.py"), "--bundle", str(tmp_path / "bundle.json")],
        env={"CP_RUNNER_WORK": str(work), "PATH": os.environ["PATH"]},
        capture_output=True,
        timeout=60,
        check=False,
    )
    frames = frames_of(proc.stdout)
    stderr = b"".join(f.data for f in frames if isinstance(f, Output) and f.stream == "stderr")
    return proc, frames, stderr


def test_magic_is_the_same_on_both_sides(runner: ModuleType) -> None:
    assert runner.REQUEST_MAGIC == REQUEST_MAGIC


def test_a_script_answers_through_the_helper(tmp_path: Path) -> None:
    """runner.py over a bundle whose input is a wrapped request; the script uses jetquery_response."""
    work = tmp_path / "work"
    work.mkdir()
    request = ScriptRequest(
        method="PUT",
        path="/scripting/script/s/run",
        query="name=John",
        headers=[("Authorization", "Bearer hidden"), ("X-Custom", "yes"), ("Content-Type", "text/csv")],
        content_type="text/csv",
        body=b"a;b\n1;2\n",
    )
    script = (
        "import json, os, sys\n"
        "from jetquery_response import request, respond\n"
        "req = request()\n"
        "stdin = sys.stdin.buffer.read()\n"
        "print('stdout stays a log')\n"
        "seen = {'method': req.method, 'query': req.query_params, 'headers': req.headers,\n"
        "        'type': req.content_type, 'same': stdin == req.body,\n"
        "        'env': os.environ['JETQUERY_REQUEST_METHOD'], 'host': os.environ['JETQUERY_HOST']}\n"
        "respond(json.dumps(seen).encode() + b'|' + stdin, status=203, content_type='application/x-seen')\n"
        "open(os.path.join(os.environ['JETQUERY_OUTPUTS'], 'kept.txt'), 'w').write('kept')\n"
    )
    env = {
        "JETQUERY_HOST": "bundle-wins",
        "JETQUERY_OUTPUTS": str(work / "outputs"),
        "JETQUERY_INPUT_FILE": str(work / "input"),
        "JETQUERY_REQUEST_FILE": str(work / "request.json"),
        "PYTHONPATH": str(IMAGE_DIR),
    }
    data = wrap_request(Settings(), request, script_id="s", mode="run")
    data = data.replace(b'"JETQUERY_REQUEST_METHOD":"PUT"', b'"JETQUERY_REQUEST_METHOD":"PUT","JETQUERY_HOST":"x"')
    bundle = encode_bundle(
        runtime="python",
        entrypoint="main.py",
        files={"main.py": script.encode()},
        args=[],
        env=env,
        input_data=data,
        max_files=10,
        max_bytes=1 << 20,
        linger_seconds=0,
    )
    proc, frames, stderr = run_runner(tmp_path, work, bundle)
    assert proc.returncode == 0, (stderr, proc.stderr)
    heads = [f for f in frames if isinstance(f, ResponseHead)]
    assert len(heads) == 1 and (heads[0].status, heads[0].content_type) == ("203", "application/x-seen")
    at = frames.index(heads[0])
    body = b"".join(f.data for f in frames[at + 1 :] if isinstance(f, ArtifactData))
    body = body[: heads[0].size]
    seen, _, echoed = body.partition(b"|")
    assert echoed == b"a;b\n1;2\n"
    assert json.loads(seen) == {
        "method": "PUT",
        "query": {"name": ["John"]},
        "headers": {"x-custom": "yes", "content-type": "text/csv"},
        "type": "text/csv",
        "same": True,
        "env": "PUT",
        "host": "bundle-wins",  # the request's variables never override the bundle's
    }
    assert [f.path for f in frames if isinstance(f, ArtifactHead)] == ["kept.txt"]  # .response is no artifact
    assert b"stdout stays a log" in b"".join(f.data for f in frames if isinstance(f, Output))
    assert isinstance(frames[-1], Exited) and frames[-1].exit_code == 0
    assert json.loads((work / "request.json").read_text())["method"] == "PUT"
    assert (work / "input").read_bytes() == b"a;b\n1;2\n"


def answer_frames(runner: ModuleType, outputs: Path, capfd: pytest.CaptureFixture[str], limit: int = 100) -> list[Any]:
    capfd.readouterr()
    runner.send_response(str(outputs), limit)
    return frames_of(capfd.readouterr().out.encode())


def test_nothing_written_sends_no_answer(runner: ModuleType, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".response").mkdir()
    assert answer_frames(runner, tmp_path, capfd) == []
    assert answer_frames(runner, tmp_path / "missing", capfd) == []


def test_hostile_answers_are_reported_never_followed(
    runner: ModuleType, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    answer = tmp_path / ".response"
    answer.mkdir()
    (answer / "status").symlink_to(secret)
    (answer / "body").symlink_to(secret)
    frames = answer_frames(runner, tmp_path, capfd)
    assert len(frames) == 1 and isinstance(frames[0], ResponseHead) and frames[0].size == 0
    assert frames[0].error is not None and "status" in frames[0].error and frames[0].status is None
    (answer / "status").unlink()
    (answer / "body").unlink()
    os.mkfifo(answer / "body")  # a reader would block forever on a FIFO
    frames = answer_frames(runner, tmp_path, capfd)
    assert frames == [ResponseHead(None, None, 0, "body: not a regular file")]
    (answer / "body").unlink()
    (answer / "body").write_bytes(b"x" * 101)
    frames = answer_frames(runner, tmp_path, capfd)
    assert frames == [ResponseHead(None, None, 0, "body: 101 bytes, above the limit of 100")]


def test_a_symlinked_answer_directory_is_a_skipped_output(
    runner: ModuleType, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "status").write_text("201")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / ".response").symlink_to(elsewhere)
    assert answer_frames(runner, outputs, capfd) == []
    capfd.readouterr()
    runner.collect_outputs(str(outputs), 10, 1000)
    assert frames_of(capfd.readouterr().out.encode()) == [Skipped(((".response", "symlink"),))]


def test_plain_inputs_are_not_unwrapped(runner: ModuleType) -> None:
    assert runner.unwrap_request(b'{"name": "John"}') == (b'{"name": "John"}', None)
    body, doc = runner.unwrap_request(REQUEST_MAGIC + b'{"request": {}, "env": {"A": "1"}}\n\x00body\n')
    assert body == b"\x00body\n" and doc == {"request": {}, "env": {"A": "1"}}
    with pytest.raises(ValueError):
        runner.unwrap_request(REQUEST_MAGIC + b"[1]\nbody")
    extra = runner.request_env(
        {"env": {"OK_1": "v", "PATH": "/evil", "bad-name": "x", "NUL": "a\x00b", "BIG": "x" * 40000}},
        {"PATH": "/usr/bin"},
    )
    assert extra == {"OK_1": "v"}


@pytest.mark.parametrize(
    ("args", "said"),
    [(["nul\x00inside"], "embedded null byte"), (["x" * (256 * 1024)], "Argument list too long")],
    ids=["nul", "e2big"],
)
def test_a_script_that_cannot_start_is_reported(tmp_path: Path, args: list[str], said: str) -> None:
    """Whatever keeps execve from starting the script ends the run 127 with the reason on stderr (a NUL
    used to end it 1 with nothing said); the API refuses both earlier (core/execargs.py)."""
    work = tmp_path / "work"
    work.mkdir()
    bundle = encode_bundle(
        runtime="python",
        entrypoint="main.py",
        files={"main.py": b"print('never')\n"},
        args=args,
        env={},
        input_data=b"",
        max_files=10,
        max_bytes=1 << 20,
        linger_seconds=0,
    )
    proc, frames, stderr = run_runner(tmp_path, work, bundle)
    assert proc.returncode == 127
    assert b"cannot start the script" in stderr and said.encode() in stderr
    assert [f.exit_code for f in frames if isinstance(f, Exited)] == [127]
