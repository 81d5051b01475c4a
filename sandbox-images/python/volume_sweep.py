"""Delete what is older than a cut-off from a tenant's ARCHIVE volume (run as the sandbox user in a helper).

Usage: python3 -I /opt/controlplane/volume_sweep.py DAYS TOP

Never follows a symlink (lstat; a link is removed itself), keeps ``lost+found`` at the top, removes a
directory only once it is old and empty, and makes a directory a run locked (chmod 000) readable again
when it is the sandbox user's. Prints {"removed": n, "errors": n} as JSON."""

from __future__ import annotations

import json
import os
import stat
import sys
import time


class Sweep:
    def __init__(self, cutoff: float) -> None:
        self.cutoff = cutoff
        self.removed = 0
        self.errors = 0

    def directory(self, path: str, *, top: bool) -> None:
        try:
            st = os.lstat(path)
            if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
                os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)  # a run may have locked its own directory
            names = os.listdir(path)
        except OSError:
            self.errors += 1
            return
        for name in names:
            if not (top and name == "lost+found"):
                self.entry(os.path.join(path, name))

    def entry(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            self.errors += 1
            return
        if stat.S_ISDIR(st.st_mode):
            self.directory(path, top=False)
            if st.st_mtime < self.cutoff:
                try:
                    os.rmdir(path)  # only when empty: something newer inside keeps it
                except OSError:
                    pass
        elif st.st_mtime < self.cutoff:
            try:
                os.unlink(path)
                self.removed += 1
            except OSError:
                self.errors += 1


def sweep(top: str, older_than_days: float, now: float | None = None) -> dict[str, int]:
    job = Sweep((time.time() if now is None else now) - older_than_days * 86400)
    job.directory(top, top=True)
    return {"removed": job.removed, "errors": job.errors}


if __name__ == "__main__":
    print(json.dumps(sweep(sys.argv[2], float(sys.argv[1]))))
