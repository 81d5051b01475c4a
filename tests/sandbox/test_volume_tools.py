"""The volume helpers' programs (sandbox-images/python/volume_*.py), run here on the host's Python the way
the helper containers run them: as scripts, with arguments. The Docker backend's tests run them in the image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "sandbox-images" / "python"
DAY = 86400


def _run(tool: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-I", str(TOOLS / tool), *args], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def _age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then), follow_symlinks=False)


def test_clear_empties_the_top_without_following_links(tmp_path: Path) -> None:
    top, outside = tmp_path / "files", tmp_path / "outside"
    (top / "sub" / "deeper").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep.txt").write_text("not the tenant's")
    (top / "a.txt").write_text("a")
    (top / "sub" / "deeper" / "b.txt").write_text("b")
    (top / "link").symlink_to(outside, target_is_directory=True)
    _run("volume_clear.py", str(top))
    assert list(top.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "not the tenant's"


def test_sweep_removes_only_what_is_older_than_the_cutoff(tmp_path: Path) -> None:
    top = tmp_path / "archive"
    (top / "old-dir").mkdir(parents=True)
    (top / "mixed").mkdir()
    (top / "lost+found").mkdir()
    for name, days in [("old.csv", 40), ("new.csv", 1), ("old-dir/x", 40), ("mixed/old", 40), ("mixed/new", 1)]:
        (top / name).write_text(name)
        _age(top / name, days)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the tenant's")
    _age(outside, 40)
    (top / "link").symlink_to(outside)
    _age(top / "link", 40)
    for directory in ("old-dir", "mixed", "lost+found"):
        _age(top / directory, 40)

    report = json.loads(_run("volume_sweep.py", "30", str(top)))

    assert report == {"removed": 4, "errors": 0}  # old.csv, old-dir/x, mixed/old and the link itself
    assert sorted(p.name for p in top.iterdir()) == ["lost+found", "mixed", "new.csv"]
    assert [p.name for p in (top / "mixed").iterdir()] == ["new"]  # newer content keeps its directory
    assert outside.read_text() == "not the tenant's"


def test_sweep_unlocks_a_directory_a_run_locked(tmp_path: Path) -> None:
    top = tmp_path / "archive"
    locked = top / "locked"
    locked.mkdir(parents=True)
    (locked / "old").write_text("x")
    _age(locked / "old", 40)
    locked.chmod(0)
    try:
        report = json.loads(_run("volume_sweep.py", "30", str(top)))
    finally:
        if locked.exists():
            locked.chmod(0o700)
    assert report["removed"] == 1


def test_own_hands_the_top_to_a_user(tmp_path: Path) -> None:
    target = tmp_path / "archive"
    target.mkdir()
    uid, gid = os.getuid(), os.getgid()
    _run("volume_own.py", str(target), str(uid), str(gid))
    assert (target.stat().st_uid, target.stat().st_gid) == (uid, gid)
