#!/usr/bin/env bash
# Make sure a Kubernetes control plane (kube-apiserver, kube-controller-manager, etcd) is built for the
# integration tests in tests/kube/, and print the directory holding the three binaries on stdout
# (`make kube`; `dir=$(scripts/ensure-kube-apiserver.sh)` works: messages go to stderr).
#
# No cluster or release binary can be downloaded here, so it is built offline from Debian's `kubernetes`
# source package (1.20, vendored modules) with Debian's golang-1.19 in GOPATH mode (GO111MODULE=off), tag
# providerless; pkg/generated/openapi is regenerated first with the vendored openapi-gen. etcd is Debian's
# etcd-server. A cold build takes about 5 minutes on 2 idle cores (plus ~40 MB of downloads).
#
# The binaries are cached outside the repository, under $CP_KUBE_CACHE (default /var/cache/controlplane)
# in kube-1.20/<Debian source version>/bin, so later runs do nothing. A cached build is used without asking
# the mirror anything; CP_KUBE_REFRESH=1 looks the source version up again (and builds it when it is new).
# The deb-src lines come from the host's own apt configuration (its Debian mirror, no host name here) and
# live in a private apt state directory in the cache: the system's apt configuration is left alone.
# The build is quiet; its log is kept next to the binaries (build.log) and its tail printed on failure.
set -euo pipefail

SERIES=1.20
RECIPE=2 # bump when the build below changes: cached builds of another recipe are rebuilt
CACHE=${CP_KUBE_CACHE:-/var/cache/controlplane}/kube-$SERIES
GO=/usr/lib/go-1.19/bin/go

say() { printf 'ensure-kube-apiserver: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# a finished build: <version>/bin with both binaries and the stamp of this recipe; newest version first
cached() {
    local dir
    for dir in $(find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' 2>/dev/null \
        | sort -rV); do
        if [[ $(cat "$CACHE/$dir/recipe" 2>/dev/null) == "$RECIPE" ]] \
            && [[ -x $CACHE/$dir/bin/kube-apiserver && -x $CACHE/$dir/bin/kube-controller-manager ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

# etcd comes from Debian's etcd-server: link it next to the others so one directory has all three
link_etcd() {
    local bin=$1 etcd
    etcd=$(command -v etcd || true)
    if [[ -z $etcd ]]; then
        if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
            die "etcd is missing: install Debian's etcd-server"
        fi
        say "installing etcd-server"
        apt_install etcd-server
        etcd=$(command -v etcd) || die "etcd-server is installed but no etcd binary is on PATH"
    fi
    ln -sfn "$etcd" "$bin/etcd"
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$@" >>"$LOG" 2>&1 \
        || { apt-get update >>"$LOG" 2>&1 && apt-get install -y --no-install-recommends "$@" >>"$LOG" 2>&1; } \
        || fail "installing $*"
}

LOG=/dev/null
fail() {
    say "$1 failed; the last lines of $LOG:"
    tail -n 40 "$LOG" >&2 || true
    exit 1
}

if [[ -z ${CP_KUBE_REFRESH:-} ]] && have=$(cached); then
    [[ -e $CACHE/$have/bin/etcd ]] || link_etcd "$CACHE/$have/bin"
    say "kube-apiserver $have is built"
    printf '%s\n' "$CACHE/$have/bin"
    exit 0
fi

if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null 2>&1 || [[ $EUID -ne 0 ]]; then
    say "no kube-apiserver built in $CACHE, and this is not Debian as root: it cannot be built here."
    say "Run this as root on Debian ('sudo make kube'), or set CP_KUBE_CACHE to a directory holding"
    say "kube-$SERIES/<version>/bin/{kube-apiserver,kube-controller-manager} and a file 'recipe' saying $RECIPE."
    exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # one build at a time; whoever waited finds the cache filled below
LOG=$CACHE/build.log
: >"$LOG"

# --- the source package, through a private apt state with deb-src lines for the host's Debian mirror ---
APT=$CACHE/.apt
mkdir -p "$APT/parts" "$APT/lists/partial"
mirrors=$( (
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }'
) | grep -E '/debian/?$' | sort -u)
suite=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-bookworm}")
[[ -n $mirrors ]] || die "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list*"
{
    printf 'Types: deb-src\nURIs: %s\n' "$(tr '\n' ' ' <<<"$mirrors")"
    # this release first; bullseye also carries the 1.20 source, should this release not
    printf 'Suites: %s bullseye\nComponents: main\n' "$suite"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
} >"$APT/parts/kubernetes-src.sources"
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT/parts" -o "Dir::State::Lists=$APT/lists")
say "looking up Debian's kubernetes source package (log: $LOG)"
apt-get "${apt_opts[@]}" update >>"$LOG" 2>&1 || fail "apt-get update (deb-src)"
version=$(apt-cache "${apt_opts[@]}" showsrc kubernetes 2>>"$LOG" | awk '$1 == "Version:" { print $2 }' \
    | grep -E "^([0-9]+:)?$SERIES\.|really$SERIES\." | sort -rV | head -n 1 || true)
[[ -n $version ]] || fail "finding a kubernetes $SERIES source package"

if [[ $(cat "$CACHE/$version/recipe" 2>/dev/null) == "$RECIPE" && -x $CACHE/$version/bin/kube-apiserver \
    && -x $CACHE/$version/bin/kube-controller-manager ]]; then
    link_etcd "$CACHE/$version/bin"
    say "kube-apiserver $version is built"
    printf '%s\n' "$CACHE/$version/bin"
    exit 0
fi

start=$SECONDS
say "building kube-apiserver and kube-controller-manager $version (takes minutes; log: $LOG)"
need=()
[[ -x $GO ]] || need+=(golang-1.19-go)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
command -v etcd >/dev/null || need+=(etcd-server)
((${#need[@]} == 0)) || apt_install "${need[@]}"

WORK=$CACHE/.build
rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/gopath/src/k8s.io"
(cd "$WORK/src" && apt-get "${apt_opts[@]}" source "kubernetes=$version") >>"$LOG" 2>&1 \
    || fail "apt-get source kubernetes=$version"
tree=$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
[[ -d $tree/vendor ]] || fail "unpacking the source (no vendor/ in ${tree:-it})"
ln -s "$tree" "$WORK/gopath/src/k8s.io/kubernetes"

export GOPATH=$WORK/gopath GOCACHE=$WORK/gocache GO111MODULE=off CGO_ENABLED=0 GOFLAGS='' GOTOOLCHAIN=local
cd "$WORK/gopath/src/k8s.io/kubernetes"

# pkg/generated/openapi: every package tagged +k8s:openapi-gen, named as the Makefile does (staging/src/* as
# its vendor/* path; not vendor/ itself, the code generator's examples or the sample API server)
say "generating pkg/generated/openapi"
"$GO" build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen >>"$LOG" 2>&1 \
    || fail "building openapi-gen"
inputs=$(find -H . \( -path './_*' -o -path './.*' -o -path ./vendor -o -path ./debian \) -prune \
    -o -type f -name '*.go' -print | sed 's|^\./||' | xargs grep -l '+k8s:openapi-gen=' | xargs -n1 dirname \
    | sed 's|^staging/src/|vendor/|' | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
    | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
"$WORK/openapi-gen" --logtostderr -i "$inputs" -p k8s.io/kubernetes/pkg/generated/openapi \
    -O zz_generated.openapi -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$WORK/api-violations.report" >>"$LOG" 2>&1 || fail "openapi-gen"
[[ -s pkg/generated/openapi/zz_generated.openapi.go ]] || fail "openapi-gen (no zz_generated.openapi.go)"

# the version the servers report (/version), as hack/lib/version.sh would stamp it
upstream=${version#*really}
upstream=${upstream%%-*}
ldflags="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$upstream -X $pkg.gitMajor=${upstream%%.*} -X $pkg.gitMinor=$(cut -d. -f2 <<<"$upstream")"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
say "compiling (GOPATH mode, $("$GO" version | awk '{print $3}'))"
mkdir -p "$WORK/bin"
# providerless: without the in-tree cloud providers (AWS, Azure, GCE, OpenStack, vSphere SDKs), which no
# test needs and which take about half of the compile time and of the binaries' size
"$GO" build -tags providerless -trimpath -ldflags "$ldflags" -o "$WORK/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager >>"$LOG" 2>&1 \
    || fail "go build"
"$WORK/bin/kube-apiserver" --version >>"$LOG" 2>&1 || fail "running the built kube-apiserver"

cd /
rm -rf "${CACHE:?}/$version"
mkdir -p "$CACHE/$version"
mv "$WORK/bin" "$CACHE/$version/bin"
link_etcd "$CACHE/$version/bin"
printf '%s\n' "$RECIPE" >"$CACHE/$version/recipe"
cp "$LOG" "$CACHE/$version/build.log"
rm -rf "$WORK" # the source tree and the Go build cache: a few GB, not needed again
say "built kube-apiserver $version in $((SECONDS - start))s"
printf '%s\n' "$CACHE/$version/bin"
