"""A real sandbox prints its tenant's secrets every way it can - whole, split over two flushes with a sleep
between, in base64 (standard, URL-safe, unpadded, inside longer encoded data), on stdout and stderr, in a
traceback, in an artifact's file name - and none of it is stored or served: not in the run, its logs
(stored or followed live), its artifacts listing, its export archive or debug record, nor in the server's
own log. Variables are not secret and come through as they are."""

from __future__ import annotations

import base64
import io
import json
import secrets
import threading
import time
import zipfile

import httpx

from tests.support.e2e import BASE, Server

SCRIPT = r"""
import base64, os, sys, time
a = os.environ["JETQUERY_API_KEY"]
b = os.environ["JETQUERY_DB_PASSWORD"]
print("plain variable:", os.environ["JETQUERY_APP_NAME"], flush=True)
print("whole:", a, flush=True)
print("stderr whole:", b, file=sys.stderr, flush=True)
half = len(a) // 2
sys.stdout.write("split:" + a[:half]); sys.stdout.flush()
time.sleep(1.0)  # several flushes of the control plane (every 0.25 s) pass between the halves
sys.stdout.write(a[half:] + "\n"); sys.stdout.flush()
sys.stderr.write(b[:3]); sys.stderr.flush(); time.sleep(0.6); sys.stderr.write(b[3:] + "\n"); sys.stderr.flush()
print("b64:", base64.b64encode(a.encode()).decode(), flush=True)
print("urlsafe:", base64.urlsafe_b64encode(a.encode()).decode().rstrip("="), flush=True)
print("echo | base64:", base64.b64encode((a + "\n").encode()).decode(), flush=True)
print("basic auth:", base64.b64encode(("user:" + b).encode()).decode(), file=sys.stderr, flush=True)
os.makedirs(os.environ["JETQUERY_OUTPUTS"] + "/dir-" + a, exist_ok=True)  # a holds a '/': nested dirs
open(os.environ["JETQUERY_OUTPUTS"] + "/report-" + b + ".txt", "w").write("harmless content")
open(os.environ["JETQUERY_OUTPUTS"] + "/dir-" + a + "/x.txt", "w").write("harmless too")
raise RuntimeError("could not log in with " + b)
"""


def forms(value: str) -> list[str]:
    raw = value.encode()
    std, url = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    return [value, std, std.rstrip("="), url, url.rstrip("=")]


def follow(server: Server, aid: str, run_id: str, stream: str, sink: dict[str, bytes]) -> None:
    with httpx.Client(base_url=server.url, headers=server.client.headers, timeout=60) as c:
        with c.stream("GET", f"{BASE}/{aid}/runs/{run_id}/logs", params={"stream": stream, "follow": "true"}) as r:
            sink[stream] = b"".join(r.iter_bytes())


def test_secrets_never_leave_the_sandbox_unmasked(server: Server) -> None:
    key = "sk-" + secrets.token_urlsafe(18) + "+/x"  # '+' and '/' make every base64 form different
    password = "pw-" + secrets.token_hex(10)
    for name, value in (("API_KEY", key), ("DB_PASSWORD", password)):
        r = server.client.put(f"/api/v1/secrets/{name}", json={"value": value})
        assert r.status_code == 201, r.text
    assert server.client.put("/api/v1/variables/APP_NAME", json={"value": "erp-app"}).status_code == 201

    aid = server.automation("leaky", SCRIPT, timeoutSeconds=60)
    run_id = server.start_run(aid)["id"]
    followed: dict[str, bytes] = {}
    threads = [threading.Thread(target=follow, args=(server, aid, run_id, s, followed)) for s in ("stdout", "stderr")]
    for t in threads:
        t.start()
    run = server.wait_run(aid, run_id, timeout=90)
    for t in threads:
        t.join(60)
    assert run["status"] == "failed" and run["exitCode"] == 1, run

    stdout = server.logs(aid, run_id, "stdout").decode()
    stderr = server.logs(aid, run_id, "stderr").decode()
    assert "plain variable: erp-app" in stdout  # variables are not masked
    assert "whole: ***" in stdout and "split:***" in stdout and "b64: ***" in stdout and "urlsafe: ***" in stdout
    assert "stderr whole: ***" in stderr and "could not log in with ***" in stderr
    assert "\n***\n" in stderr and "basic auth: " in stderr and "***" in stderr.split("basic auth: ")[1]
    assert followed["stdout"].decode() == stdout and followed["stderr"].decode() == stderr

    arts = server.client.get(f"{BASE}/{aid}/runs/{run_id}/artifacts").json()
    paths = sorted(a["path"] for a in arts)
    assert paths == ["dir-***/x.txt", "report-***.txt"], paths
    got = server.client.get(f"{BASE}/{aid}/runs/{run_id}/artifacts/report-***.txt")
    assert got.status_code == 200 and got.content == b"harmless content"

    link = server.client.post(f"{BASE}/{aid}/runs/{run_id}/actions/export")
    assert link.status_code == 200, link.text
    archive = httpx.get(link.json()["url"], timeout=60)
    assert archive.status_code == 200, archive.text
    exported = ""
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        for info in z.infolist():
            exported += info.filename + "\n" + z.read(info).decode(errors="replace") + "\n"
    assert "report-***.txt" in exported and "whole: ***" in exported
    debug_url = server.client.get(f"{BASE}/{aid}/runs/{run_id}/debug").text.strip().strip('"')
    debug = httpx.get(debug_url, timeout=60).text

    time.sleep(0.5)  # let the server's log catch up
    seen = {
        "run": json.dumps(server.get_run(aid, run_id)),
        "stdout": stdout,
        "stderr": stderr,
        "followed": (followed["stdout"] + followed["stderr"]).decode(),
        "artifacts": json.dumps(arts),
        "export": exported,
        "debug": debug,
        "server log": server.log_text(tail=10_000_000),
    }
    for where, text in seen.items():
        for value in (key, password):
            for form in forms(value):
                assert form not in text, f"{form!r} (a form of a secret) leaked into the {where}"
