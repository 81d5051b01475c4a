"""Hand a fresh ARCHIVE volume's top directory to the sandbox user (run as root with CAP_CHOWN only).

Usage: python3 -I /opt/controlplane/volume_own.py PATH UID GID"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.chown(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
