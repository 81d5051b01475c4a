"""A000-run-test: the smallest end-to-end check of a sandbox run."""

import json
import os
import sys

PREFIX = "JETQUERY_"


def main() -> int:
    data = sys.stdin.read()
    variables = {
        k: ("***" if k.endswith("TOKEN") else v) for k, v in sorted(os.environ.items()) if k.startswith(PREFIX)
    }
    print("A000-run-test OK")
    print("python", sys.version.split()[0], "uid", os.getuid())
    print("args", json.dumps(sys.argv[1:]))
    print("input", json.dumps(data))
    print("variables", json.dumps(variables, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
