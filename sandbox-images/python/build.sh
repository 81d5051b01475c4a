#!/usr/bin/env bash
# Build the python sandbox image (controlplane-sandbox-python:1) that every run starts from.
#
# Our build machines have no container registry, so the default build needs none: mmdebstrap's
# `extract` variant resolves packages.txt with apt against the host's own apt sources file, unpacks the
# packages into a directory without running maintainer scripts, we finish the tree ourselves (users,
# CA bundle, byte-code, runner, no setuid bits, no dpkg/apt/perl) and stream it into `docker import`.
# Where a registry is reachable, --from-base builds the same tree inside `docker build` (Dockerfile,
# FROM debian:bookworm-slim). Either way the image is smoke-tested (smoke.sh) before it is tagged, and it
# carries the label io.controlplane.inputs-sha so scripts/ensure-image.sh can tell when it is stale.
#
# Usage:
#   build.sh [--from-base [--base IMAGE]] [--tag IMAGE] [--no-smoke]
#   build.sh --inputs-sha                 print the sha256 of this image's inputs and exit
#   build.sh --packages                   print the package list and exit
#   build.sh --rootfs-from-apt DIR        (inside the Dockerfile) build the tree into DIR with apt-get
# Environment:
#   CP_SANDBOX_IMAGE   tag to build (default controlplane-sandbox-python:1)
#   CP_APT_SOURCES     apt sources file(s) to build from, space separated (default: the host's bookworm ones)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGE=${CP_SANDBOX_IMAGE:-controlplane-sandbox-python:1}
SUITE=bookworm
SANDBOX_ID=10001
INPUTS=(build.sh Dockerfile packages.txt runner.py jetquery_response.py volume_clear.py volume_sweep.py volume_own.py)
LABEL_SHA=io.controlplane.inputs-sha
# Packages apt pulls in only as dependencies (of dash, ca-certificates, python3-pil, ...) whose files a
# sandbox does not need at runtime; build.sh deletes their files and leaves them out of the package list.
DROP_PACKAGES=(dpkg debconf perl perl-base 'perl-modules-*' 'libperl*' mailcap mime-support)

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"; }

inputs_sha() { (cd "$HERE" && cat "${INPUTS[@]}") | sha256sum | cut -d' ' -f1; }

packages() { sed -e 's/#.*//' "$HERE/packages.txt" | tr -s '[:space:]' '\n' | sed '/^$/d'; }

dropped() {
    local pkg=$1 pat
    for pat in "${DROP_PACKAGES[@]}"; do
        # shellcheck disable=SC2053  # $pat is a glob on purpose
        [[ $pkg == $pat ]] && return 0
    done
    return 1
}

# The host's apt sources that serve $SUITE: mmdebstrap takes a sources file as its mirror argument, so
# the image comes from whatever mirror (or proxy, or snapshot) this machine already uses.
apt_sources() {
    local f
    if [[ -n ${CP_APT_SOURCES:-} ]]; then
        for f in $CP_APT_SOURCES; do
            [[ -f $f ]] || die "CP_APT_SOURCES names $f, which does not exist"
            printf '%s\n' "$f"
        done
        return
    fi
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] && grep -v '^[[:space:]]*#' "$f" | grep -qw "$SUITE" && printf '%s\n' "$f"
    done
    return 0
}

# ---------------------------------------------------------------------------------------------------
# Finishing the unpacked tree. Runs as root on the build host (default build) or inside the Dockerfile's
# first stage; $1 is the tree, $2 the directory holding the .deb files it was unpacked from.
# ---------------------------------------------------------------------------------------------------

drop_unneeded_packages() {
    local root=$1 debdir=$2 deb pkg path
    local -a dirs=()
    for deb in "$debdir"/*.deb; do
        pkg=$(dpkg-deb --field "$deb" Package)
        dropped "$pkg" || continue
        while IFS= read -r path; do
            path=${path#.}
            if [[ $path == */ ]]; then
                dirs+=("${path%/}")
            elif [[ -n $path ]]; then
                rm -f -- "$root$path"
            fi
        done < <(dpkg-deb --fsys-tarfile "$deb" | tar -t)
        log "dropped $pkg"
    done
    # directories the dropped packages leave empty (deepest first)
    if ((${#dirs[@]})); then
        printf '%s\n' "${dirs[@]}" | LC_ALL=C sort -ru | while IFS= read -r path; do
            if [[ -n $path ]]; then rmdir -- "$root$path" 2>/dev/null || true; fi
        done
    fi
}

# A dpkg status file listing what the image holds, so vulnerability scanners can read the image even
# though dpkg itself is not in it.
write_package_list() {
    local root=$1 debdir=$2 deb pkg
    rm -rf "$root/var/lib/dpkg"
    mkdir -p "$root/var/lib/dpkg"
    for deb in "$debdir"/*.deb; do
        pkg=$(dpkg-deb --field "$deb" Package)
        dropped "$pkg" && continue
        dpkg-deb --field "$deb" | sed '/^Package:/a Status: install ok installed'
        echo
    done > "$root/var/lib/dpkg/status"
    chmod 0644 "$root/var/lib/dpkg/status"
}

write_system_files() {
    local root=$1 id=$SANDBOX_ID
    rm -f "$root/etc/passwd" "$root/etc/group" "$root/etc/shadow" "$root/etc/gshadow"
    cat > "$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
sandbox:x:$id:$id:sandbox:/work/home:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
    cat > "$root/etc/group" <<EOF
root:x:0:
sandbox:x:$id:
nogroup:x:65534:
EOF
    cat > "$root/etc/nsswitch.conf" <<'EOF'
passwd:    files
group:     files
shadow:    files
hosts:     files dns
networks:  files
protocols: files
services:  files
ethers:    files
rpc:       files
netgroup:  files
EOF
    printf '/bin/sh\n/bin/dash\n/usr/bin/dash\n' > "$root/etc/shells"
    printf 'include /etc/ld.so.conf.d/*.conf\n' > "$root/etc/ld.so.conf"
    chmod 0644 "$root"/etc/{passwd,group,nsswitch.conf,shells,ld.so.conf}
    mkdir -p "$root/usr/sbin"
    printf '#!/bin/sh\necho "This account is currently not available." >&2\nexit 1\n' > "$root/usr/sbin/nologin"
    chmod 0755 "$root/usr/sbin/nologin"
    # links the packages' maintainer scripts (update-alternatives) would have made
    [[ -e $root/usr/bin/awk || ! -e $root/usr/bin/mawk ]] || ln -s mawk "$root/usr/bin/awk"
    [[ -e $root/usr/bin/which || ! -e $root/usr/bin/which.debianutils ]] \
        || ln -s which.debianutils "$root/usr/bin/which"
    [[ -e $root/bin/sh ]] || ln -s dash "$root/bin/sh"
}

# What update-ca-certificates does: one bundle plus a link per certificate and OpenSSL's hash links.
write_ca_bundle() {
    local root=$1 certs=$1/etc/ssl/certs rel name n=0
    local bundle=$certs/ca-certificates.crt
    mkdir -p "$certs"
    : > "$bundle"
    : > "$root/etc/ca-certificates.conf"
    while IFS= read -r rel; do
        rel=${rel#./}
        # shellcheck disable=SC1003  # sed: append a newline when the file lacks one
        sed -e '$a\' "$root/usr/share/ca-certificates/$rel" >> "$bundle"
        name=$(basename "$rel" .crt | sed -e 's/ /_/g' -e 's/[()]/=/g' -e 's/,/_/g')
        ln -sfn "/usr/share/ca-certificates/$rel" "$certs/$name.pem"
        printf '%s\n' "$rel" >> "$root/etc/ca-certificates.conf"
        n=$((n + 1))
    done < <(cd "$root/usr/share/ca-certificates" && find . -name '*.crt' | LC_ALL=C sort)
    ((n > 0)) || die "no CA certificates found under /usr/share/ca-certificates"
    chmod 0644 "$bundle" "$root/etc/ca-certificates.conf"
    if [[ -x $root/usr/bin/openssl ]]; then
        chroot "$root" /usr/bin/openssl rehash /etc/ssl/certs 2>/dev/null || log "warning: openssl rehash failed"
    fi
    log "CA bundle: $n certificates"
}

# Python compiles what it imports on every run otherwise (the root file system is read-only).
compile_python() {
    local root=$1
    local -a dirs=()
    local d
    for d in /usr/lib/python3.11 /usr/lib/python3/dist-packages; do
        [[ -d $root$d ]] && dirs+=("$d")
    done
    ((${#dirs[@]})) || return 0
    # several interpreters in parallel; multiprocessing would need /dev/shm inside the chroot
    (cd "$root" && find "${dirs[@]/#/.}" -name '*.py' ! -path '*/lib2to3/tests/*' | sed 's/^\.//') \
        | xargs -r -n 300 -P "$(nproc 2>/dev/null || echo 2)" \
            chroot "$root" /usr/bin/python3 -I -m compileall -q --invalidation-mode unchecked-hash \
        || die "byte-compiling the python library failed"
}

strip_for_runtime() {
    local root=$1
    # documentation (keep the copyright files), translations, package-manager state
    if [[ -d $root/usr/share/doc ]]; then
        find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
        find "$root/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
    fi
    rm -rf "$root"/usr/share/{man,info,locale,lintian,bug,doc-base,bash-completion,menu,pixmaps,gdb,gcc,polkit-1}
    rm -rf "$root"/etc/apt "$root"/etc/dpkg "$root"/var/lib/apt "$root"/var/cache/* "$root"/var/log/*
    rm -f "$root/usr/bin/tini-static" "$root/etc/fstab"
    # device nodes and mount points are the engine's business
    rm -rf "${root:?}/dev" "${root:?}/proc" "${root:?}/sys" "${root:?}/run"
}

make_layout() {
    local root=$1 runner=$2 id=$SANDBOX_ID
    install -d -m 0755 "$root"/{dev,proc,sys,run,etc,mnt,mnt/files,mnt/archive,opt,opt/controlplane,usr/local/bin}
    install -d -m 1777 "$root/tmp" "$root/var/tmp"
    install -d -m 0755 "$root/var/cache" "$root/var/log"
    install -d -m 0700 "$root/root"
    # the run's tmpfs is mounted here; owned by the sandbox user so a plain `docker run` works too
    install -d -m 0755 -o "$id" -g "$id" "$root/work"
    install -m 0555 -o 0 -g 0 "$runner" "$root/opt/controlplane/runner.py"
    # the programs the backend's short-lived volume helpers run (backends/docker/volumes.py)
    local tool
    for tool in volume_clear.py volume_sweep.py volume_own.py; do
        install -m 0444 -o 0 -g 0 "$HERE/$tool" "$root/opt/controlplane/$tool"
    done
    if command -v ldconfig >/dev/null 2>&1; then
        ldconfig -r "$root" 2>/dev/null || log "warning: ldconfig failed; the loader searches its default paths"
        rm -rf "$root/var/cache/ldconfig"
    fi
}

# Modules scripts import from the image itself (the answer convention of runner.py), byte-compiled with
# the rest of dist-packages.
install_helpers() {
    local root=$1
    install -d -m 0755 "$root/usr/lib/python3/dist-packages"
    install -m 0644 -o 0 -g 0 "$HERE/jetquery_response.py" "$root/usr/lib/python3/dist-packages/jetquery_response.py"
}

strip_setid_bits() {
    local root=$1 found
    found=$(find "$root" -xdev \( -type f -o -type d \) -perm /6000 -print)
    if [[ -n $found ]]; then
        log "removing setuid/setgid bits from:"$'\n'"${found//$root/}"
        find "$root" -xdev \( -type f -o -type d \) -perm /6000 -exec chmod ug-s {} +
    fi
    [[ -z $(find "$root" -xdev -perm /6000 -print -quit) ]] || die "setuid/setgid files left in the tree"
}

customize() {
    local root=$1 debdir=$2 runner=$3
    [[ -n $root && $(cd "$root" && pwd -P) != / ]] || die "refusing to finish '$root' as an image tree"
    [[ -x $root/usr/bin/python3 ]] || die "$root holds no /usr/bin/python3: unpacking failed?"
    drop_unneeded_packages "$root" "$debdir"
    write_package_list "$root" "$debdir"
    write_system_files "$root"
    write_ca_bundle "$root"
    install_helpers "$root"
    compile_python "$root"
    strip_for_runtime "$root"
    make_layout "$root" "$runner"
    strip_setid_bits "$root"
}

# ---------------------------------------------------------------------------------------------------
# The two builds
# ---------------------------------------------------------------------------------------------------

IMAGE_CONFIG=(
    -c 'ENV CP_RUNNER_SANDBOX=1 PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8'
    -c "USER $SANDBOX_ID:$SANDBOX_ID"
    -c 'WORKDIR /work'
    -c 'ENTRYPOINT ["/usr/bin/tini", "--"]'
    -c 'CMD ["/usr/bin/python3", "-I", "/opt/controlplane/runner.py"]'
)

build_extract() {
    local work=$1 sha=$2 id
    local -a sources
    need mmdebstrap "install it (Debian: apt-get install mmdebstrap), or build with --from-base where a registry is reachable"
    need dpkg-deb "install dpkg"
    [[ $EUID -eq 0 ]] || die "the offline build unpacks a root-owned tree and must run as root (sudo make image)"
    mapfile -t sources < <(apt_sources)
    ((${#sources[@]})) || die "no apt sources for $SUITE on this host; set CP_APT_SOURCES=/path/to/file.sources"
    log "building from ${sources[*]}"
    mmdebstrap --variant=extract --format=directory --mode=root --skip=cleanup/apt/cache \
        --include="$(packages | paste -sd, -)" \
        "$SUITE" "$work/rootfs" "${sources[@]}"
    customize "$work/rootfs" "$work/rootfs/var/cache/apt/archives" "$HERE/runner.py"
    log "rootfs: $(du -sh --apparent-size "$work/rootfs" | cut -f1)"
    id=$(tar --numeric-owner --one-file-system -C "$work/rootfs" -cf - . \
        | docker import "${IMAGE_CONFIG[@]}" \
            -c "LABEL $LABEL_SHA=$sha io.controlplane.build-mode=extract" \
            -m "controlplane python sandbox (mmdebstrap extract, $SUITE)" -)
    [[ $id == sha256:* ]] || die "docker import returned no image id"
    printf '%s\n' "$id"
}

build_from_base() {
    local work=$1 sha=$2 base=$3
    log "building with docker build FROM $base"
    docker build --build-arg "BASE=$base" --build-arg "INPUTS_SHA=$sha" \
        --iidfile "$work/iid" -f "$HERE/Dockerfile" "$HERE" >&2
    cat "$work/iid"
}

# Inside the Dockerfile's first stage: the same tree with plain apt-get instead of mmdebstrap.
rootfs_from_apt() {
    local root=$1 debs=/var/tmp/cp-debs deb
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    mkdir -p "$debs/partial" "$root"
    # an empty dpkg status: apt resolves every dependency, exactly as mmdebstrap's extract variant does
    # shellcheck disable=SC2046
    apt-get -qq -y --download-only -o Dir::State::status=/dev/null -o Dir::Cache::archives="$debs/" \
        -o APT::Install-Recommends=false install $(packages)
    for deb in "$debs"/*.deb; do
        dpkg-deb --fsys-tarfile "$deb" | tar -C "$root" --keep-directory-symlink -x
    done
    customize "$root" "$debs" "$HERE/runner.py"
    rm -rf "$debs"
}

main() {
    local mode=extract base=debian:bookworm-slim smoke=1
    while (($#)); do
        case $1 in
            --from-base) mode=base ;;
            --base) base=${2:?--base needs an image}; mode=base; shift ;;
            --tag) IMAGE=${2:?--tag needs an image name}; shift ;;
            --no-smoke) smoke=0 ;;
            --inputs-sha) inputs_sha; return ;;
            --packages) packages; return ;;
            --rootfs-from-apt) rootfs_from_apt "${2:?--rootfs-from-apt needs a directory}"; return ;;
            -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; return ;;
            *) die "unknown argument $1 (see --help)" ;;
        esac
        shift
    done
    need docker "install Docker (scripts/ensure-docker.sh does it on Debian)"
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer (make docker)"

    local sha work id old started=$SECONDS
    sha=$(inputs_sha)
    work=$(mktemp -d "${TMPDIR:-/tmp}/cp-sandbox-image.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    if [[ $mode == extract ]]; then
        id=$(build_extract "$work" "$sha")
    else
        id=$(build_from_base "$work" "$sha" "$base")
    fi
    if ((smoke)); then
        bash "$HERE/smoke.sh" "$id" || { docker rmi "$id" >/dev/null 2>&1 || true; die "smoke test failed; $IMAGE left as it was"; }
    fi
    old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    docker tag "$id" "$IMAGE"
    if [[ -n $old && $old != "$id" ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true  # still used by a container, or tagged elsewhere: keep it
    fi
    log "built $IMAGE ($id) in $((SECONDS - started)) s, $(docker image inspect -f '{{.Size}}' "$id" \
        | awk '{printf "%.0f MB", $1 / 1e6}'), $LABEL_SHA=$sha"
}

main "$@"
