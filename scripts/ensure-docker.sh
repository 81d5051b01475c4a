#!/usr/bin/env bash
# Make sure a Docker engine answers (`make docker`; `make run` and `make test` need one).
#
# Already answering: nothing to do. On Debian as root: install the engine and what the sandbox image build
# needs (docker.io, iptables, mmdebstrap, e2fsprogs) when missing, start dockerd (systemd when it runs the
# machine, otherwise a background dockerd logging to /var/log/dockerd.log) and wait up to 60 s for it.
# Anywhere else: say what to install and start, and fail.
set -euo pipefail

LOG=${CP_DOCKERD_LOG:-/var/log/dockerd.log}
WAIT_SECONDS=60

say() { printf 'ensure-docker: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
    say "Docker engine is running"
    exit 0
fi

if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null 2>&1 || [[ $EUID -ne 0 ]]; then
    if command -v docker >/dev/null 2>&1; then
        say "the Docker engine does not answer ('docker info' failed)."
        say "Start it (e.g. 'sudo systemctl start docker', or Docker Desktop) and make sure your user may use it"
        say "(member of the 'docker' group), then run 'make docker' again."
    else
        say "Docker is not installed. Install Docker Engine (Debian/Ubuntu: 'sudo apt-get install docker.io';"
        say "other systems: your distribution's docker package or Docker Desktop), start it, then run 'make docker'."
    fi
    [[ -f /etc/debian_version && $EUID -ne 0 ]] && say "On this Debian machine 'sudo make docker' does all of that."
    exit 1
fi

# --- Debian, root ------------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
fi

started=0 pid=
if docker info >/dev/null 2>&1; then
    say "Docker engine is running (started by its package)"
    exit 0
elif [[ -d /run/systemd/system ]]; then
    say "starting docker with systemd"
    systemctl start docker
    started=1
else
    say "starting dockerd in the background (log: $LOG)"
    mkdir -p "$(dirname "$LOG")"
    # its own session: a Ctrl-C in the terminal that ran `make run` must not reach the engine
    nohup setsid dockerd >>"$LOG" 2>&1 </dev/null &
    pid=$!
    started=1
fi

for ((i = 0; i < WAIT_SECONDS; i++)); do
    if docker info >/dev/null 2>&1; then
        say "Docker engine is running"
        exit 0
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
        say "dockerd exited"
        break
    fi
    sleep 1
done
say "the Docker engine does not answer (waited ${i}s)"
if ((started)) && [[ -f $LOG ]]; then
    say "last lines of $LOG:"
    tail -n 30 "$LOG" >&2
fi
exit 1
