"""A002-tools-minimal: a Python port of seed 000's minimal tool template.

Arguments (all optional):
  --status 0|1|2  exit status: 0 success; 1 general failure (message on stderr);
                  2 incorrect usage / file not found (message on stderr). Default 0.
  --wait SECONDS  sleep this long first (default 5).
  --msg TEXT      print TEXT; by default print every JETQUERY_* variable and the args as JSON.
"""

import json
import os
import sys
import time

USAGE = "usage: A002-tools-minimal [--status 0|1|2] [--wait seconds] [--msg text]"


def parse(argv: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        key = argv[i]
        if key not in ("--status", "--wait", "--msg") or i + 1 >= len(argv):
            raise ValueError(f"unexpected argument {key!r}")
        opts[key[2:]] = argv[i + 1]
        i += 2
    return opts


def main(argv: list[str]) -> int:
    try:
        opts = parse(argv)
        status = int(opts.get("status", "0"))
        wait = float(opts.get("wait", "5"))
        if status not in (0, 1, 2) or wait < 0:
            raise ValueError("--status must be 0, 1 or 2 and --wait a non-negative number")
    except ValueError as exc:
        print(f"error: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    time.sleep(wait)
    if "msg" in opts:
        print(opts["msg"])
    else:
        # the run's token is live until the run ends and logs are readable by viewers: never print it
        env = {
            k: ("***" if k.endswith("TOKEN") else v) for k, v in sorted(os.environ.items()) if k.startswith("JETQUERY_")
        }
        print(json.dumps({"env": env, "args": argv}, indent=2))
    if status == 1:
        print("error: general failure (--status 1)", file=sys.stderr)
    elif status == 2:
        print("error: incorrect usage or file not found (--status 2)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
