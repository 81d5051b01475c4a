#!/usr/bin/python3 -I
"""Sandbox runner: the one process the control plane starts inside every sandbox (under tini).

It reads a bundle (code, args, env, input) from stdin, writes the code into /work/code, runs the script as
a child with argv (never through a shell), and reports back on its own stdout in the line protocol of
``controlplane/backends/protocol.py``: the script's stdout and stderr as separate frames, then the script's
own HTTP answer if it wrote one, then the files it left in /work/outputs (regular files only, never
following a symlink), then its exit status.
Standard library only: it must run in the smallest image. Its own stderr is for its own diagnostics.

A script answers an HTTP caller (the scripting dialect, seed 002) language-neutrally with up to three
files in /work/outputs/.response/ (created empty before the script starts): ``status`` (a number, default
200), ``content-type`` (default application/octet-stream with a body, text/plain without) and ``body``
(bytes as they are). They are sent as one ``r`` frame plus ``d`` frames, never as artifacts. With none of
them written the control plane answers with the script's stdout as text/plain.

An input that starts with REQUEST_MAGIC is an HTTP request wrapped by the scripting dialect: one JSON line
{"request": {method, path, query, headers, contentType, ...}, "env": {NAME: value}} and then the body. The
script gets the body (stdin and /work/input), the request as /work/request.json, and the env additions
(never overriding a variable the bundle already sets).
"""

import base64
import json
import os
import re
import resource
import selectors
import signal
import stat
import subprocess
import sys
import time

WORK = os.environ.get("CP_RUNNER_WORK", "/work")
CHUNK = 8192
DRAIN_GRACE = 0.2  # seconds to keep reading after the script exits (children still writing)
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
INTERPRETERS = {"python": ["/usr/bin/python3"], "shell": ["/bin/sh"]}
REQUEST_MAGIC = b"\x00controlplane-request/1\n"
RESPONSE_DIR = ".response"
RESPONSE_TEXT_MAX = 1024  # bytes read of the status and content-type files
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
ENV_VALUE_MAX = 32 * 1024  # a longer variable would make execve fail (E2BIG past 128 KiB)


def emit(tag, payload):
    line = tag + b" " + base64.b64encode(payload) + b"\n"
    view = memoryview(line)
    while view:
        n = os.write(1, view)
        view = view[n:]


def emit_json(tag, doc):
    emit(tag, json.dumps(doc, separators=(",", ":")).encode())


def diag(msg):
    os.write(2, ("runner: " + msg + "\n").encode(errors="replace"))


def safe_relpath(path):
    if not isinstance(path, str) or not path or "\x00" in path or path.startswith("/"):
        raise ValueError("bad file path %r" % (path,))
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or len(parts) > 16:
        raise ValueError("bad file path %r" % (path,))
    return parts


def write_file(root, rel, data, mode=0o755):
    parts = safe_relpath(rel)
    cur = root
    for part in parts[:-1]:
        cur = os.path.join(cur, part)
        try:
            os.mkdir(cur, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(cur).st_mode):
                raise ValueError("bad file path %r" % (rel,)) from None
    fd = os.open(os.path.join(cur, parts[-1]), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def oom_kills():
    """The cgroup's OOM-kill counter (v2 memory.events, v1 memory.oom_control), or -1 if unreadable."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return -1


SCRIPT_PGID = None


def ancestors():
    """Our parent and its parents up to (not including) pid 1. Under an engine-provided init (docker
    --init, a shared process namespace) our tini is not pid 1: killing it would end the sandbox before
    the exit frame is written."""
    pids = set()
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open("/proc/%d/stat" % pid, "rb") as fh:
                pid = int(fh.read().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def kill_all_but(spare):
    """SIGKILL every process we may signal except ``spare``, until a pass finds none (forks in flight)."""
    for _ in range(100):
        found = False
        try:
            names = os.listdir("/proc")
        except OSError as exc:
            diag("cannot list /proc: %s" % exc)
            return
        for name in names:
            if not name.isdigit() or int(name) in spare:
                continue
            try:
                with open("/proc/%s/stat" % name, "rb") as fh:
                    if fh.read().rpartition(b")")[2].split()[0] == b"Z":
                        continue  # dead already, waiting for its parent
                os.kill(int(name), signal.SIGKILL)
                found = True
            except (OSError, IndexError):
                pass
        if not found:
            return


def kill_everything_else():
    """SIGKILL what the script left behind: its process group, and inside a sandbox (the image sets
    CP_RUNNER_SANDBOX=1, we are not root) every process we may signal except ourselves, init and our
    ancestors."""
    targets = []
    if SCRIPT_PGID:
        targets.append(lambda: os.killpg(SCRIPT_PGID, signal.SIGKILL))
    if os.environ.get("CP_RUNNER_SANDBOX") == "1" and os.getuid() != 0:
        spare = ancestors()
        if spare:
            spare |= {0, 1, os.getpid()}
            targets.append(lambda: kill_all_but(spare))
        else:  # the usual case: tini is pid 1 and our parent; kill(-1) spares init and ourselves
            targets.append(lambda: os.kill(-1, signal.SIGKILL))
    for kill in targets:
        try:
            kill()
        except ProcessLookupError:
            pass
        except OSError as exc:
            diag("kill failed: %s" % exc)


def pump(proc):
    """Forward the child's stdout/stderr as frames until both close; returns when the child is done."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, b"o")
    sel.register(proc.stderr, selectors.EVENT_READ, b"e")
    exited_at = None
    killed = False
    while sel.get_map():
        for key, _ in sel.select(timeout=0.05 if exited_at else 0.5):
            data = os.read(key.fileobj.fileno(), CHUNK)
            if data:
                emit(key.data, data)
            else:
                sel.unregister(key.fileobj)
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        if exited_at is not None and not killed and time.monotonic() - exited_at > DRAIN_GRACE:
            # the script is gone but something it left behind still holds the pipes: end it
            kill_everything_else()
            killed = True
    proc.wait()


def send_file(full, rel, st, limit):
    """One regular file as an ``f`` frame and its ``d`` frames, at most ``limit`` bytes; (bytes sent, None) or
    (0, why it was skipped). Opened without following a symlink and checked to be the file ``st`` saw."""
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return 0, "unreadable: %s" % exc.strerror
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            return 0, "changed while collecting"
        size = min(fst.st_size, limit)
        emit_json(b"f", {"path": rel, "size": size})
        left = size
        while left > 0:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                break
            emit(b"d", data)
            left -= len(data)
        return size - left, None
    finally:
        os.close(fd)


def skip_reason(st, sent_files, sent_bytes, max_files, max_bytes):
    """Why a file found in the outputs is not sent, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if sent_files >= max_files:
        return "too many files"
    if sent_bytes + st.st_size > max_bytes:
        return "too large"
    return None


def collect_outputs(root, max_files, max_bytes):
    skipped = []
    sent_files = 0
    sent_bytes = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            if stat.S_ISLNK(os.lstat(full).st_mode):
                skipped.append({"path": os.path.relpath(full, root), "reason": "symlink"})
                dirnames.remove(name)
            elif dirpath == root and name == RESPONSE_DIR:
                dirnames.remove(name)  # the script's HTTP answer: sent by send_response, not an artifact
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            reason = skip_reason(st, sent_files, sent_bytes, max_files, max_bytes)
            if reason is None:
                sent, reason = send_file(full, rel, st, max_bytes - sent_bytes)
            if reason is not None:
                skipped.append({"path": rel, "reason": reason})
                continue
            sent_files += 1
            sent_bytes += sent
    if skipped:
        emit_json(b"k", skipped[:1000])


def read_regular(path, limit):
    """Up to ``limit`` bytes of a regular file, never through a symlink (ELOOP) or from a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def send_response(outputs, max_bytes):
    """The script's own HTTP answer (outputs/.response/{status,content-type,body}) as an ``r`` frame and the
    body's ``d`` frames. Nothing when the script wrote none of the three files."""
    root = os.path.join(outputs, RESPONSE_DIR)
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            return  # a symlink or a file in its place: collect_outputs reports or collects it
    except OSError:
        return
    head, found = response_head(root)
    fd, found_body = open_body(root, head, max_bytes)
    try:
        if not (found or found_body):
            return
        if head["error"]:
            head["size"] = 0
        emit_json(b"r", head)
        left = head["size"]
        while fd is not None and left > 0:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                break  # shrank meanwhile: the control plane sees the body cut short
            emit(b"d", data)
            left -= len(data)
    finally:
        if fd is not None:
            os.close(fd)


def response_head(root):
    """The ``r`` frame's status and content type from their files, and whether either file was there."""
    head = {"status": None, "contentType": None, "size": 0, "error": None}
    found = False
    for name, key in (("status", "status"), ("content-type", "contentType")):
        try:
            head[key] = read_regular(os.path.join(root, name), RESPONSE_TEXT_MAX).decode("utf-8", "replace")
            found = True
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            found = True
            head["error"] = head["error"] or "%s: %s" % (name, getattr(exc, "strerror", None) or exc)
    return head, found


def open_body(root, head, max_bytes):
    """(fd or None, whether a body was there): the body file opened for reading, its size or trouble in ``head``."""
    try:
        fd = os.open(os.path.join(root, "body"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, False
    except OSError as exc:
        head["error"] = head["error"] or "body: %s" % (exc.strerror or exc)
        return None, True
    fst = os.fstat(fd)
    if not stat.S_ISREG(fst.st_mode):
        head["error"] = head["error"] or "body: not a regular file"
    elif fst.st_size > max_bytes:
        head["error"] = head["error"] or "body: %d bytes, above the limit of %d" % (fst.st_size, max_bytes)
    else:
        head["size"] = fst.st_size
    return fd, True


def unwrap_request(data):
    """(body, request document or None): see REQUEST_MAGIC in the module docstring."""
    if not data.startswith(REQUEST_MAGIC):
        return data, None
    rest = data[len(REQUEST_MAGIC) :]
    end = rest.find(b"\n")
    if end < 0:
        raise ValueError("request envelope without its JSON line")
    doc = json.loads(rest[:end])
    if not isinstance(doc, dict):
        raise ValueError("request envelope is not a JSON object")
    return rest[end + 1 :], doc


def request_env(doc, env):
    """The envelope's variables that are well-formed and not set by the bundle already."""
    extra = {}
    for name, value in (doc.get("env") or {}).items():
        value = str(value)
        if ENV_NAME.fullmatch(str(name)) and name not in env and "\x00" not in value and len(value) <= ENV_VALUE_MAX:
            extra[name] = value
    return extra


def read_bundle(argv):
    if len(argv) > 2 and argv[1] == "--bundle":
        with open(argv[2], "rb") as fh:
            return json.loads(fh.read())
    return json.loads(sys.stdin.buffer.read())


class Job:
    """What the bundle asks for, laid out in the work folder: ready to start."""

    def __init__(self, doc):
        if doc.get("v") != 1:
            raise ValueError("unsupported bundle version %r" % (doc.get("v"),))
        self.runtime = doc["runtime"]
        if self.runtime not in INTERPRETERS:
            raise ValueError("unknown runtime %r" % (self.runtime,))
        self.code, self.outputs, home = (os.path.join(WORK, d) for d in ("code", "outputs", "home"))
        for d in (self.code, self.outputs, home):
            os.makedirs(d, 0o755, exist_ok=True)
        for rel, b64 in doc.get("files", {}).items():
            write_file(self.code, rel, base64.b64decode(b64))
        self.entry = doc["entrypoint"]
        safe_relpath(self.entry)
        self.input_path = os.path.join(WORK, "input")
        body, request = unwrap_request(base64.b64decode(doc.get("input", "")))
        write_file(WORK, "input", body, mode=0o644)
        os.makedirs(os.path.join(self.outputs, RESPONSE_DIR), 0o755, exist_ok=True)
        self.args = [str(a) for a in doc.get("args", [])]
        self.env = dict(BASE_ENV, HOME=home)
        self.env.update({str(k): str(v) for k, v in doc.get("env", {}).items()})
        if request is not None:
            meta = request.get("request") or {}
            write_file(WORK, "request.json", json.dumps(meta, separators=(",", ":")).encode(), mode=0o644)
            self.env.update(request_env(request, self.env))
        limits = doc.get("outputs", {})
        self.max_files = int(limits.get("max_files", 100))
        self.max_bytes = int(limits.get("max_bytes", 20 << 20))
        self.linger = float(doc.get("linger_seconds", 0))


def exited(exit_code):
    """The ``x`` frame of a script that never ran."""
    emit_json(b"x", {"exitCode": exit_code, "signal": None, "oomKilled": False, "cpuSeconds": 0, "maxRssBytes": 0})
    return exit_code


def main(argv):
    try:
        job = Job(read_bundle(argv))
    except (ValueError, KeyError, TypeError, OSError) as exc:
        diag("bad bundle: %s" % exc)
        emit(b"e", ("sandbox runner: bad bundle: %s\n" % exc).encode())
        return exited(126)

    signal.signal(signal.SIGTERM, lambda *_: (kill_everything_else(), os._exit(143)))
    oom_before = oom_kills()
    with open(job.input_path, "rb") as stdin:
        try:
            proc = subprocess.Popen(
                INTERPRETERS[job.runtime] + [job.entry] + job.args,
                cwd=job.code,
                env=job.env,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:  # not found, too long (E2BIG), a NUL byte in an argument
            emit(b"e", ("sandbox runner: cannot start the script: %s\n" % exc).encode())
            return exited(127)
    global SCRIPT_PGID
    SCRIPT_PGID = proc.pid
    emit_json(b"s", {"pid": proc.pid})
    pump(proc)
    kill_everything_else()
    return finish(job, proc, oom_before)


def finish(job, proc, oom_before):
    """After the script: its answer, its outputs and the ``x`` frame; then linger for the engine's counters."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc = proc.returncode
    sig = -rc if rc < 0 else None
    exit_code = 128 + sig if sig else rc
    oom_after = oom_kills()
    oom = oom_after > oom_before >= 0 or (sig == signal.SIGKILL and oom_after > 0)
    try:
        send_response(job.outputs, job.max_bytes)
    except OSError as exc:
        diag("sending the response failed: %s" % exc)
    try:
        collect_outputs(job.outputs, job.max_files, job.max_bytes)
    except OSError as exc:
        diag("collecting outputs failed: %s" % exc)
    emit_json(
        b"x",
        {
            "exitCode": exit_code,
            "signal": sig,
            "oomKilled": bool(oom),
            "cpuSeconds": round(usage.ru_utime + usage.ru_stime, 6),
            "maxRssBytes": int(usage.ru_maxrss) * 1024,
        },
    )
    if job.linger > 0:  # let the control plane read the sandbox's counters before it removes us
        time.sleep(job.linger)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
