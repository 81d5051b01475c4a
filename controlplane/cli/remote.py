"""``controlplane run``: a client of a running server, over its API, as any API client would be."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL

FINAL = {status.value for status in TERMINAL}


# Options go before NAME; everything after it is the script's, verbatim (A002's own --wait is not ours).
@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--wait/--no-wait", default=True, help="Follow the run and exit with its exit code (default).")
@click.option("--input", "input_text", default=None, help="Input for the script's stdin (JSON if it parses).")
@click.option("--url", envvar="CP_URL", default=None, help="API base URL (CP_URL; default http://CP_HOST:CP_PORT).")
@click.option("--token", envvar="CP_TOKEN", default=None, help="Bearer token (CP_TOKEN; default DATA_DIR/admin-token).")
def run_cmd(
    name: str, args: tuple[str, ...], wait: bool, input_text: str | None, url: str | None, token: str | None
) -> None:
    """Start automation NAME with ARGS; with --wait show progress, stream its output, exit with its code.

    Options come before NAME: every argument after NAME is passed to the script as it is."""
    settings = Settings()
    base = (url or settings.base_url).rstrip("/")
    if token is None:
        token_file = Path(settings.data_dir) / "admin-token"
        if not token_file.exists():
            raise click.ClickException("no token: pass --token or set CP_TOKEN")
        token = token_file.read_text().strip()
    sys.exit(_run_remote(base, token, name, list(args), wait=wait, input_text=input_text))


def _run_remote(base: str, token: str, name: str, args: list[str], *, wait: bool, input_text: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(30.0, read=None)) as client:
        automation_id = _automation_id(client, name)
        body: dict[str, Any] = {"context": "api_async", "args": args}
        if input_text is not None:
            try:
                body["input"] = json.loads(input_text)
            except ValueError:
                body["input"] = input_text
        run = _check(client.post(f"/api/v1/automations/{automation_id}/runs", json=body)).json()
        run_path = f"/api/v1/automations/{automation_id}/runs/{run['id']}"
        click.echo(f"run {run['id']} {run['status']}", err=True)
        if not wait:
            click.echo(run["id"])
            return 0
        _poll(client, run_path, run, ("queued", "starting"))
        if not _follow_stdout(client, run_path):
            click.echo(f"\ndetached; the run continues: {base}{run_path}", err=True)
            return 130
        run = _poll(client, run_path, _check(client.get(run_path)).json(), None)
        return _report(client, run_path, run)


def _automation_id(client: httpx.Client, name: str) -> str:
    listing = _check(client.get("/api/v1/automations", params={"filter": f'name eq "{name}"', "limit": 1}))
    found = listing.json()["data"]
    if not found:
        raise click.ClickException(f"no automation named {name!r}")
    return str(found[0]["id"])


def _poll(client: httpx.Client, run_path: str, run: dict[str, Any], while_in: tuple[str, ...] | None) -> Any:
    """Poll the run while its status is one of ``while_in`` (None: until it is final), telling each change."""
    last = run["status"]
    while (run["status"] in while_in) if while_in is not None else (run["status"] not in FINAL):
        time.sleep(0.2)
        run = _check(client.get(run_path)).json()
        if while_in is not None and run["status"] != last:
            click.echo(f"run {run['id']} {run['status']}", err=True)
            last = run["status"]
    return run


def _follow_stdout(client: httpx.Client, run_path: str) -> bool:
    """Copy the run's stdout as it comes; False when Ctrl-C detached from it (the run goes on)."""

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    try:
        with client.stream("GET", f"{run_path}/logs", params={"stream": "stdout", "follow": "true"}) as resp:
            _check(resp)
            for chunk in resp.iter_bytes():
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    except KeyboardInterrupt:
        return False
    return True


def _report(client: httpx.Client, run_path: str, run: dict[str, Any]) -> int:
    """Print the ended run's stderr and status; the exit code is the script's (124: deadline, 1: no code)."""
    sys.stderr.buffer.write(_check(client.get(f"{run_path}/logs", params={"stream": "stderr"})).content)
    sys.stderr.flush()
    click.echo(f"run {run['id']} {run['status']} exitCode={run['exitCode']}", err=True)
    for e in run.get("error", []):
        click.echo(f"  {e.get('code')}: {e.get('title')} {e.get('detail', '')}", err=True)
    if run["exitCode"] is not None:
        return int(run["exitCode"])
    return 124 if run["status"] == "exceeded limit" else 1


def _check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        resp.read()
        try:
            errors = resp.json().get("errors", [])
            text = "; ".join(f"{e.get('code')}: {e.get('detail') or e.get('title')}" for e in errors)
        except ValueError:
            text = resp.text[:500]
        raise click.ClickException(f"HTTP {resp.status_code}: {text}")
    return resp


COMMANDS = (run_cmd,)
