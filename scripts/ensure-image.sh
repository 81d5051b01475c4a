#!/usr/bin/env bash
# Make sure the sandbox image exists and was built from the current inputs (`make image`).
#
# build.sh labels the image with the sha256 of its inputs (build.sh, Dockerfile, packages.txt, runner.py);
# a missing image or a different label means a rebuild. Arguments are passed on to build.sh (--from-base).
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
CP_SANDBOX_IMAGE=$IMAGE exec bash "$BUILD" "$@"
