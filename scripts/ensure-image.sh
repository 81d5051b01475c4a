#!/usr/bin/env bash
# Make sure the sandbox image exists and was built from the current inputs (`make image`).
#
# build.sh labels the image with the sha256 of its inputs (build.sh, Dockerfile, packages.txt, runner.py);
# a missing image or a different label means a rebuild. Arguments are passed on to build.sh (--from-base).
#
# Without arguments the build mode follows CP_SANDBOX_BUILD: "auto" (default) builds from the normal base
# image when the engine can pull it (a registry is reachable), else offline from Debian packages with
# mmdebstrap; "offline" and "base" force one of them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/sandbox-images/python/build.sh
IMAGE=${CP_SANDBOX_IMAGE:-controlplane-sandbox-python:1}

say() { printf 'ensure-image: %s\n' "$*" >&2; }

want=$(bash "$BUILD" --inputs-sha)
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE is missing: building it"
else
    have=$(docker image inspect -f '{{index .Config.Labels "io.controlplane.inputs-sha"}}' "$IMAGE" 2>/dev/null || true)
    if [[ $have == "$want" ]]; then
        say "$IMAGE is up to date"
        exit 0
    fi
    say "$IMAGE is stale (inputs-sha ${have:-none}, sources ${want}): rebuilding it"
fi
args=("$@")
if ((${#args[@]} == 0)); then
    case ${CP_SANDBOX_BUILD:-auto} in
        offline) ;;
        base) args=(--from-base) ;;
        auto)
            base=$(sed -n 's/^ARG BASE=//p' "$ROOT/sandbox-images/python/Dockerfile")
            if timeout 120 docker pull -q "$base" >/dev/null 2>&1; then
                say "pulled $base: building from it"
                args=(--from-base)
            else
                say "$base cannot be pulled (no registry reachable): building offline from Debian packages"
            fi
            ;;
        *) say "CP_SANDBOX_BUILD must be auto, offline or base"; exit 2 ;;
    esac
fi
CP_SANDBOX_IMAGE=$IMAGE exec bash "$BUILD" "${args[@]}"
