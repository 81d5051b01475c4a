"""A011-archive-cleanup: prune the tenant's ARCHIVE and report recent failures through the API.

It uses only what every run gets: JETQUERY_ARCHIVE (the tenant's scratch space), JETQUERY_HOST and
JETQUERY_TOKEN (this run's own token, valid until the run ends) to call the control plane back; the
automation asks for network "api", which reaches the control plane and nothing else.
"""

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta


def api(path: str) -> dict:
    req = urllib.request.Request(
        f"http://{os.environ['JETQUERY_HOST']}{path}",
        headers={"Authorization": f"Bearer {os.environ['JETQUERY_TOKEN']}"},
    )
    with urllib.request.urlopen(req, timeout=20) as resp:  # noqa: S310 - our own API
        return json.load(resp)


def prune(root: str, days: int) -> list[str]:
    cutoff = time.time() - days * 86400
    removed = []
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and os.lstat(path).st_mtime < cutoff:
                os.unlink(path)
                removed.append(os.path.relpath(path, root))
    return removed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    archive = os.environ.get("JETQUERY_ARCHIVE")
    removed = prune(archive, args.days) if archive and os.path.isdir(archive) else []
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    failures = []
    for automation in api("/api/v1/automations?limit=100")["data"]:
        query = urllib.parse.quote(f'status eq "failed" and createdAt ge "{since}"')
        runs = api(f"/api/v1/automations/{automation['id']}/runs?filter={query}&limit=100")["data"]
        failures += [{"automation": automation["name"], "run": r["id"], "exitCode": r["exitCode"]} for r in runs]
    report = {"archiveFilesRemoved": removed, "failedRunsLastDay": failures}
    out = os.environ.get("JETQUERY_OUTPUTS", "outputs")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cleanup.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"removed {len(removed)} archive file(s); {len(failures)} failed run(s) in the last day")
    return 0


if __name__ == "__main__":
    sys.exit(main())
