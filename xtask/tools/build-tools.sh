#!/usr/bin/env bash
# Builds the pinned tools (kube-apiserver, kube-controller-manager, kubectl, etcd, helm; for
# the local node kubelet, kube-proxy, kube-scheduler, CoreDNS and a pause binary) from Go modules into a cache outside the repository, keyed by version. Re-running reuses
# what is there; each binary has a stamp naming what it was built from.
#
#   MCALL_TOOLS_DIR   cache root (default: ~/.cache/mcall-tools)
#   prints the bin directory on its last line of stdout.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"

root="${MCALL_TOOLS_DIR:-$HOME/.cache/mcall-tools}"
bin="$root/bin-k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}-helm-${HELM_VERSION}"
work="$root/src"
mkdir -p "$bin" "$work"

log() { printf '[tools] %s\n' "$*" >&2; }

# Concurrent runs (several test binaries, a developer's shell) must not build into the same
# *.tmp files at once: serialize on a lock in the cache root. Cached runs hold it only briefly.
exec 9>"$root/.lock"
flock 9

# Each binary gets a stamp naming what it was built from (version + build flags). A binary
# whose stamp does not match is rebuilt, so changing the flags below reaches existing caches.
# Rebuilding with a warm Go build cache only relinks.
fresh() { [ -x "$bin/$1" ] && [ "$(cat "$bin/$1.stamp" 2>/dev/null)" = "$2" ]; }

if ! command -v go >/dev/null 2>&1; then
  log "error: the Go toolchain is required to build kube-apiserver, kube-controller-manager, etcd, kubectl and helm (install Go >= 1.24 and retry)"
  exit 1
fi

k8s_minor="${KUBERNETES_VERSION#v1.}"
k8s_minor="${k8s_minor%%.*}"

export GOFLAGS="-trimpath"
export CGO_ENABLED=0
ldflags="-s -w"

# --- kube-apiserver + kube-controller-manager + kubectl -------------------------------------
# All three come from the one k8s.io/kubernetes module; tools.go imports each cmd/ package so
# `go mod tidy` records (in go.sum) every dependency they need.
tools_go() {
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  for cmd in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
  printf ')\n'
}

build_kubernetes() {
  local dir="$work/kubernetes-${KUBERNETES_VERSION}"
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$dir"
  (
    cd "$dir"
    if [ ! -f go.mod ]; then
      log "preparing module for k8s.io/kubernetes ${KUBERNETES_VERSION} (staging modules at ${staging})"
      cat >go.mod <<MOD
module mcall.local/kubernetes-tools

go 1.24
MOD
      # The published go.mod points every staging module at v0.0.0 via ./staging replaces;
      # read that list from the module itself and pin each one to the matching release.
      local modfile
      modfile=$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$modfile" | awk '{print $1}' | sort -u | while read -r m; do
        go mod edit -replace "${m}=${m}@${staging}"
      done
      go mod edit -require "k8s.io/kubernetes@${KUBERNETES_VERSION}"
    fi
    # Re-tidy whenever the set of commands changes, so a module prepared for fewer commands
    # (an existing cache) gains the go.sum entries of a newly added one. The marker is written
    # only after tidy succeeded, so an interrupted run tidies again.
    local want
    want=$(tools_go "$@")
    if [ "$(cat tools.go.tidied 2>/dev/null)" != "$want" ]; then
      printf '%s\n' "$want" >tools.go
      log "resolving dependencies of $* (go mod tidy)"
      go mod tidy -e >&2
      printf '%s' "$want" >tools.go.tidied
    fi
    # Without these the binaries report v0.0.0-master+$Format:%H$ (the Kubernetes release
    # build injects them from git): kubectl version fails to parse it and helm refuses charts
    # with a kubeVersion constraint. Same flags as hack/lib/version.sh.
    local kflags="$ldflags"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      kflags="$kflags -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${k8s_minor} -X $pkg.gitTreeState=clean"
    done
    for cmd in "$@"; do
      local stamp="$cmd ${KUBERNETES_VERSION} $kflags"
      if ! fresh "$cmd" "$stamp"; then
        log "building $cmd ${KUBERNETES_VERSION} (several minutes on 2 cores)"
        go build -ldflags "$kflags" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" >&2
        mv "$bin/$cmd.tmp" "$bin/$cmd"
        printf '%s' "$stamp" >"$bin/$cmd.stamp"
      fi
    done
  )
}

# --- a single-main-package module (etcd, helm) ---------------------------------------------
build_simple() {
  local name=$1 module=$2 version=$3 pkg=$4 extra=${5:-}
  local stamp="$name $version $ldflags $extra"
  fresh "$name" "$stamp" && return 0
  local dir="$work/$name-$version"
  mkdir -p "$dir"
  (
    cd "$dir"
    if [ ! -f go.mod ]; then
      printf 'module mcall.local/%s-tools\n\ngo 1.24\n' "$name" >go.mod
      printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
      log "resolving $module@$version"
      go get "$module@$version" >&2
      go mod tidy -e >&2
    fi
    log "building $name $version"
    go build -ldflags "$ldflags $extra" -o "$bin/$name.tmp" "$pkg" >&2
    mv "$bin/$name.tmp" "$bin/$name"
    printf '%s' "$stamp" >"$bin/$name.stamp"
  )
}

build_simple etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
# helm's Makefile injects its own version and the Kubernetes version that `helm template` and
# `helm lint` assume without a cluster (the built-in default, 1.20, fails charts with a newer
# kubeVersion constraint); use the pinned Kubernetes minor, the cluster these charts target.
helm_flags="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_flags="$helm_flags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${k8s_minor}"
done
build_simple helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$helm_flags"
# CoreDNS serves the local cluster's DNS (cluster.local) from its kubernetes plugin.
build_simple coredns github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns
# The node's sandbox ("pause") binary, from this repository (xtask/tools/pause).
pause_src="$(cd "$(dirname "$0")" && pwd)/pause"
pause_stamp="pause $(cat "$pause_src/main.go" "$pause_src/go.mod" | sha256sum | cut -c1-16) $ldflags"
if ! fresh pause "$pause_stamp"; then
  log "building pause"
  (cd "$pause_src" && go build -ldflags "$ldflags" -o "$bin/pause.tmp" . >&2)
  mv "$bin/pause.tmp" "$bin/pause"
  printf '%s' "$pause_stamp" >"$bin/pause.stamp"
fi
# The control plane, and the node's kubelet, kube-proxy and kube-scheduler: one module.
build_kubernetes kube-apiserver kube-controller-manager kubectl kube-scheduler kube-proxy kubelet

for t in etcd helm coredns pause kube-apiserver kube-controller-manager kubectl kube-scheduler kube-proxy kubelet; do
  [ -x "$bin/$t" ] || { log "error: $t was not built"; exit 1; }
done
log "tools ready in $bin"
echo "$bin"
