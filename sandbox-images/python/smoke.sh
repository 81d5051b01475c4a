#!/usr/bin/env bash
# Smoke test of the python sandbox image, run the way the control plane runs it: read-only root file
# system, uid 10001, no capabilities, no-new-privileges, no network, tmpfs /work and /tmp, the bundle of
# controlplane/backends/protocol.py on stdin and the runner's frames on stdout.
#
# Usage: smoke.sh [IMAGE]   (default: $CP_SANDBOX_IMAGE or controlplane-sandbox-python:1)
# Needs only docker and the host's python3 (standard library). build.sh runs it before tagging an image.
set -euo pipefail

IMAGE=${1:-${CP_SANDBOX_IMAGE:-controlplane-sandbox-python:1}}
command -v docker >/dev/null || { echo "smoke.sh: docker is not installed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "smoke.sh: python3 is not installed" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 \
    || { echo "smoke.sh: image $IMAGE not found; build it with: make image" >&2; exit 1; }

exec python3 - "$IMAGE" <<'PYTHON'
import base64, json, subprocess, sys, time

IMAGE = sys.argv[1]
DOCKER_RUN = [
    "docker", "run", "--rm", "-i", "--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges", "--network", "none",
    "--tmpfs", "/work:rw,nosuid,nodev,size=128m,uid=10001,gid=10001,mode=0700",
    "--tmpfs", "/tmp:rw,nosuid,nodev,noexec,size=64m,mode=1777",
    "--pids-limit", "128", "--memory", "256m", "--memory-swap", "256m",
    "--ulimit", "nofile=1024:1024", "--ulimit", "core=0",
]
failures = []


def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        failures.append(what)


def run(runtime, entrypoint, code, args=(), stdin=b"input-bytes"):
    bundle = {
        "v": 1, "runtime": runtime, "entrypoint": entrypoint,
        "files": {entrypoint: base64.b64encode(code.encode()).decode()},
        "args": list(args), "env": {"JETQUERY_HOST": "smoke.example", "JETQUERY_OUTPUTS": "/work/outputs"},
        "input": base64.b64encode(stdin).decode(),
        "outputs": {"max_files": 10, "max_bytes": 1 << 20}, "linger_seconds": 0,
    }
    started = time.monotonic()
    proc = subprocess.run(DOCKER_RUN + [IMAGE], input=json.dumps(bundle).encode(), capture_output=True,
                          timeout=120)
    took = time.monotonic() - started
    res = {"stdout": b"", "stderr": b"", "files": {}, "exit": None, "bad": 0, "took": took, "response": None,
           "docker_rc": proc.returncode, "docker_stderr": proc.stderr.decode(errors="replace")}
    current = None
    for line in proc.stdout.split(b"\n"):
        if not line:
            continue
        tag, _, b64 = line.partition(b" ")
        try:
            payload = base64.b64decode(b64, validate=True)
        except ValueError:
            res["bad"] += 1
            continue
        if tag == b"o":
            res["stdout"] += payload
        elif tag == b"e":
            res["stderr"] += payload
        elif tag == b"f":
            current = json.loads(payload)["path"]
            res["files"][current] = b""
        elif tag == b"r":
            res["response"] = dict(json.loads(payload), body=b"")
            current = None
        elif tag == b"d" and current is None and res["response"] is not None:
            res["response"]["body"] += payload
        elif tag == b"d" and current is not None:
            res["files"][current] += payload
        elif tag == b"x":
            res["exit"] = json.loads(payload)
        elif tag not in (b"s", b"k"):
            res["bad"] += 1
    return res


def show(res):
    print("    docker exit %s in %.2fs; stdout=%r stderr=%r exit=%s; docker stderr: %s" % (
        res["docker_rc"], res["took"], res["stdout"][:300], res["stderr"][:300], res["exit"],
        res["docker_stderr"][-500:]))


print("smoke test of %s" % IMAGE)
cfg = json.loads(subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True,
                                check=True).stdout)[0]["Config"]
check(cfg.get("User") == "10001:10001", "image user is 10001:10001 (got %r)" % cfg.get("User"))
check(cfg.get("Entrypoint") == ["/usr/bin/tini", "--"], "entrypoint is tini")
check(cfg.get("Cmd") == ["/usr/bin/python3", "-I", "/opt/controlplane/runner.py"], "command is the runner")
check("CP_RUNNER_SANDBOX=1" in (cfg.get("Env") or []), "CP_RUNNER_SANDBOX=1 is set")
check(bool((cfg.get("Labels") or {}).get("io.controlplane.inputs-sha")), "inputs-sha label is set")

# 1. a python script: stdout and stderr come back apart, argv intact, outputs collected, exit code kept
res = run("python", "main.py", (
    "import os, sys\n"
    "print('py-out', sys.argv[1:])\n"
    "print('py-err', file=sys.stderr)\n"
    "print('input', sys.stdin.read(), os.environ['JETQUERY_HOST'])\n"
    "os.makedirs('/work/outputs', exist_ok=True)\n"
    "open('/work/outputs/report.txt', 'w').write('a report')\n"
    "sys.exit(3)\n"), args=["a b", "$(id)", ";ls"])
check(b"py-out ['a b', '$(id)', ';ls']" in res["stdout"], "python: stdout frame carries the output and argv")
check(b"input input-bytes smoke.example" in res["stdout"], "python: input on stdin, env passed")
check(b"py-err" in res["stderr"] and b"py-err" not in res["stdout"], "python: stderr comes apart")
check(b"py-out" not in res["stderr"], "python: stdout does not leak into stderr")
check(res["files"].get("report.txt") == b"a report", "python: outputs/report.txt collected")
check((res["exit"] or {}).get("exitCode") == 3, "python: exit code 3 reported")
check(res["bad"] == 0, "python: no malformed frames")
if failures:
    show(res)

# 2. a shell script
before = len(failures)
res = run("shell", "main.sh", (
    'echo "sh-out $1"\n'
    'echo "sh-err" >&2\n'
    'echo "uid=$(id -u) gid=$(id -g)"\n'
    'printf "%s\\n" one two | grep two | sed s/two/three/ | awk \'{print "awk:" $1}\'\n'
    'exit 0\n'), args=["x y"])
check(b"sh-out x y" in res["stdout"], "shell: stdout frame carries the output")
check(b"sh-err" in res["stderr"] and b"sh-err" not in res["stdout"], "shell: stderr comes apart")
check(b"uid=10001 gid=10001" in res["stdout"], "shell: runs as 10001:10001")
check(b"awk:three" in res["stdout"], "shell: grep, sed and awk work")
check((res["exit"] or {}).get("exitCode") == 0, "shell: exit code 0 reported")
if len(failures) > before:
    show(res)

# 3. what the image must hold and must not hold, seen from inside
before = len(failures)
res = run("python", "facts.py", r'''
import datetime, json, os, pwd, shutil, socket, sqlite3, ssl, stat, zoneinfo
import openpyxl, pyodbc, reportlab, requests
from reportlab.pdfgen import canvas

facts = {"uid": os.getuid(), "gid": os.getgid(), "user": pwd.getpwuid(os.getuid()).pw_name,
         "home": pwd.getpwuid(os.getuid()).pw_dir}
facts["ca"] = ssl.create_default_context().cert_store_stats()["x509_ca"]
facts["requests_ca"] = os.path.getsize(requests.certs.where())
facts["sh"] = os.access("/bin/sh", os.X_OK)
facts["sqlite"] = sqlite3.connect(":memory:").execute("select 40 + 2").fetchone()[0]
facts["odbc_drivers"] = pyodbc.drivers()
try:  # a seed-000 style DSN with a DRIVER the image lacks: unixODBC's driver manager must answer
    pyodbc.connect("DRIVER={NoSuchDriver};SERVER=192.0.2.1;DATABASE=x;UID=u;PWD=p;Trusted_Connection=no;")
    facts["odbc_manager"] = "connected?"
except pyodbc.Error as exc:
    facts["odbc_manager"] = str(exc)
facts["requests"] = requests.__version__
facts["tz"] = datetime.datetime(2024, 7, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Warsaw")).tzname()
os.makedirs("/work/outputs", exist_ok=True)
c = canvas.Canvas("/work/outputs/r.pdf"); c.drawString(72, 720, "smoke"); c.save()
wb = openpyxl.Workbook(); wb.active["A1"] = 42; wb.save("/work/outputs/r.xlsx")
setid = []
for top, dirs, files in os.walk("/"):
    if top == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in dirs + files:
        st = os.lstat(os.path.join(top, name))
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            setid.append(os.path.join(top, name))
facts["setid"] = setid[:20]
facts["tools"] = sorted(t for t in ("dpkg", "apt", "apt-get", "perl", "sudo", "su", "mount") if shutil.which(t))
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
facts["nonewprivs"] = status["NoNewPrivs"].strip()
facts["capeff"] = status["CapEff"].strip()
try:
    open("/etc/smoke", "w")
    facts["rootfs"] = "writable"
except OSError as exc:
    facts["rootfs"] = exc.strerror
try:
    socket.create_connection(("192.0.2.1", 80), timeout=2)
    facts["net"] = "connected"
except OSError as exc:
    facts["net"] = type(exc).__name__
print(json.dumps(facts))
''')
try:
    facts = json.loads(res["stdout"].decode().strip().splitlines()[-1])
except (ValueError, IndexError):
    facts = {}
check(bool(facts), "facts: requests, pyodbc, reportlab, openpyxl, ssl, sqlite3, json, zoneinfo import")
if facts:
    check(facts["uid"] == 10001 and facts["gid"] == 10001, "uid/gid are 10001")
    check(facts["user"] == "sandbox" and facts["home"] == "/work/home", "10001 is user sandbox, home /work/home")
    check(facts["ca"] > 100, "CA bundle holds %s certificates" % facts["ca"])
    check(facts["requests_ca"] > 100000, "requests finds the CA bundle")
    check(facts["sh"], "/bin/sh exists")
    check(facts["sqlite"] == 42, "sqlite3 works")
    check(bool(facts["requests"]), "seed 000 prerequisite: requests %s imports" % facts["requests"])
    check(isinstance(facts["odbc_drivers"], list),
          "seed 000 prerequisite: pyodbc imports and lists ODBC drivers %s" % facts["odbc_drivers"])
    check("[unixODBC][Driver Manager]" in facts["odbc_manager"],
          "unixODBC's driver manager answers a connect (%s)" % facts["odbc_manager"][:120])
    check(facts["tz"] == "CEST", "zoneinfo knows Europe/Warsaw")
    check(res["files"].get("r.pdf", b"").startswith(b"%PDF"), "reportlab writes a PDF")
    check(res["files"].get("r.xlsx", b"").startswith(b"PK"), "openpyxl writes an xlsx")
    check(facts["setid"] == [], "no setuid/setgid files (found %s)" % facts["setid"])
    check(facts["tools"] == [], "no dpkg/apt/perl/sudo/su/mount (found %s)" % facts["tools"])
    check(facts["nonewprivs"] == "1" and int(facts["capeff"], 16) == 0, "NoNewPrivs=1, CapEff=0")
    check(facts["rootfs"] == "Read-only file system", "root file system is read-only")
    check(facts["net"] != "connected", "no network (%s)" % facts["net"])
check((res["exit"] or {}).get("exitCode") == 0, "facts script exits 0")
if len(failures) > before:
    show(res)

# 4. a script's own HTTP answer through the jetquery_response helper, from a wrapped request
before = len(failures)
request = {"method": "PUT", "headers": {"x-a": "1"}, "contentType": "text/csv"}
envelope = (b"\x00controlplane-request/1\n" + json.dumps(
    {"request": request, "env": {"JETQUERY_REQUEST_METHOD": "PUT", "JETQUERY_HOST": "not-this"}}).encode()
    + b"\nname;n\nx;1\n")
res = run("python", "answer.py", (
    "import os, sys\n"
    "from jetquery_response import request, respond\n"
    "req = request()\n"
    "print(sys.stdin.read() == req.text())\n"
    "head = '%s %s %s %s %s|' % (req.method, req.headers['x-a'], req.content_type,\n"
    "                           os.environ['JETQUERY_REQUEST_METHOD'], os.environ['JETQUERY_HOST'])\n"
    "respond(head.encode() + req.body, status=201, content_type='text/csv')\n"
    "open('/work/outputs/kept.txt', 'w').write('artifact')\n"), stdin=envelope)
answer = res["response"] or {}
check(answer.get("status") == "201" and answer.get("contentType") == "text/csv", "answer: status and type sent")
check(answer.get("body") == b"PUT 1 text/csv PUT smoke.example|name;n\nx;1\n",
      "answer: body, request metadata and env additions (never overriding the bundle's) reach the script")
check(res["stdout"].strip() == b"True", "answer: stdin is the unwrapped body")
check(sorted(res["files"]) == ["kept.txt"], "answer: .response is no artifact, other outputs are (%s)"
      % sorted(res["files"]))
check(res["bad"] == 0 and (res["exit"] or {}).get("exitCode") == 0, "answer: script exits 0, frames well-formed")
if len(failures) > before:
    show(res)

if failures:
    print("smoke.sh: %d check(s) failed for %s:" % (len(failures), IMAGE), file=sys.stderr)
    for f in failures:
        print("  - " + f, file=sys.stderr)
    sys.exit(1)
print("smoke.sh: %s passed" % IMAGE)
PYTHON
