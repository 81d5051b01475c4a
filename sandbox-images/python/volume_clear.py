"""Empty a tenant's FILES volume before new files are unpacked into it (run as root in a helper container).

Usage: python3 -I /opt/controlplane/volume_clear.py [TOP]   (TOP defaults to /mnt/files)

Removes everything under TOP, never following a symlink (a link is removed, not its target)."""

from __future__ import annotations

import os
import shutil
import sys


def clear(top: str) -> int:
    """Remove every entry of ``top``; return how many were removed."""
    removed = 0
    for name in os.listdir(top):
        path = os.path.join(top, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        removed += 1
    return removed


if __name__ == "__main__":
    clear(sys.argv[1] if len(sys.argv) > 1 else "/mnt/files")
