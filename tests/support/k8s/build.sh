#!/usr/bin/env bash
# Builds the real Kubernetes control plane the k8s_real integration tests run
# against, from the Go module proxy only, into a version-stamped cache outside
# the checkout:
#
#   ~/.cache/rcaflow/k8s-v$K8S_VERSION/bin/{etcd,kube-apiserver,kube-controller-manager,
#                                           kube-scheduler,kubectl,kwok}
#   ~/.cache/rcaflow/k8s-v$K8S_VERSION/stages-fast.yaml   (kwok's "fast" stages)
#
# A binary is rebuilt only when its stamp (bin/.<name>.version) is missing or
# names another version, so a second run costs nothing. Go's build and module
# caches live under ~/.cache/rcaflow/go/ (never in the checkout).
#
# Why a throwaway module: `go install k8s.io/kubernetes/cmd/...@vX` is refused
# (its go.mod replaces each k8s.io/* staging module with ./staging/src/...), so
# we require k8s.io/kubernetes vX.Y.Z and replace every staging module with its
# published v0.Y.Z tag. etcd comes from the same module graph. kwok has no
# replace directives: plain `go install`.
#
# Cost on a 2-core machine: ~16 CPU-minutes (8-9 min wall when idle), peak RSS
# ~2.7 GB, ~5.5 GB of Go caches, ~440 MB of binaries.
#
# Usage: bash tests/support/k8s/build.sh [component ...]
# Env:   K8S_VERSION (1.37.2)  KWOK_VERSION (0.8.0)  RCAFLOW_CACHE (~/.cache/rcaflow)
#        GO (go on PATH, else /usr/local/go/bin/go)  GO_P (2: compiler parallelism)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
KWOK_VERSION=${KWOK_VERSION:-0.8.0}
STAGING_VERSION=0.${K8S_VERSION#1.}
CACHE=${RCAFLOW_CACHE:-$HOME/.cache/rcaflow}
OUT=$CACHE/k8s-v$K8S_VERSION
BIN=$OUT/bin
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
NICE=${NICE:-nice -n 19}

export GOCACHE=${GOCACHE_DIR:-$CACHE/go/build}
export GOMODCACHE=${GOMODCACHE_DIR:-$CACHE/go/mod}
export GOPATH=$CACHE/go/path
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -p=${GO_P:-2}"

COMPONENTS=("$@")
if [ ${#COMPONENTS[@]} -eq 0 ]; then
  COMPONENTS=(kwok etcd kube-scheduler kube-controller-manager kube-apiserver kubectl)
fi

log() { echo "k8s-build: $*" >&2; }

version_of() { # component -> version it should be stamped with
  if [ "$1" = kwok ]; then echo "v$KWOK_VERSION"; else echo "v$K8S_VERSION"; fi
}
is_current() {
  [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$(version_of "$1")" ]
}

todo=()
for c in "${COMPONENTS[@]}"; do
  is_current "$c" || todo+=("$c")
done
if [ ${#todo[@]} -eq 0 ] && [ -s "$OUT/stages-fast.yaml" ]; then
  log "cached: $BIN (k8s v$K8S_VERSION, kwok v$KWOK_VERSION)"
  exit 0
fi

[ -x "$GO" ] || { log "no Go toolchain (looked for $GO)"; exit 1; }
mkdir -p "$BIN" "$OUT/logs" "$GOCACHE" "$GOMODCACHE"

# One build at a time per cache (CI and a developer may start it together).
exec 9>"$OUT/.build.lock"
if ! flock -n 9; then
  log "another build holds $OUT/.build.lock; waiting"
  flock 9
fi
todo=()
for c in "${COMPONENTS[@]}"; do
  is_current "$c" || todo+=("$c")
done

log "building into $BIN: ${todo[*]:-(stages only)} ($("$GO" version | cut -d' ' -f3))"
t0=$(date +%s)

build_kwok() {
  local s=$(date +%s)
  log "kwok v$KWOK_VERSION: go install ..."
  GOBIN=$BIN $NICE "$GO" install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" > "$OUT/logs/build-kwok.log" 2>&1 \
    || { tail -30 "$OUT/logs/build-kwok.log" >&2; return 1; }
  echo "v$KWOK_VERSION" > "$BIN/.kwok.version"
  log "kwok built in $(( $(date +%s) - s )) s ($(du -h "$BIN/kwok" | cut -f1))"
}

write_stages() {
  # kwok ships no default stages: use the "fast" set from its module
  # (nodes initialise and heartbeat, pods become ready / complete / go away).
  "$GO" mod download "sigs.k8s.io/kwok@v$KWOK_VERSION" >/dev/null
  local src=$GOMODCACHE/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage f
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"; cat "$src/$f"
    done
  } > "$OUT/stages-fast.yaml.tmp"
  mv "$OUT/stages-fast.yaml.tmp" "$OUT/stages-fast.yaml"
}

prepare_module() {
  local mod=$OUT/src
  mkdir -p "$mod"
  cd "$mod"
  if [ -s go.sum ] && grep -q "k8s.io/kubernetes v$K8S_VERSION" go.mod 2>/dev/null; then
    return 0
  fi
  log "resolving the k8s.io/kubernetes v$K8S_VERSION module graph ..."
  $NICE "$GO" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null
  local kmod=$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/v$K8S_VERSION.mod
  {
    echo "module rcaflow.test/k8sbuild"
    echo
    grep -m1 '^go ' "$kmod"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    sed -n '/^replace (/,/^)/p' "$kmod" | awk -v v="v$STAGING_VERSION" '/=>/ {print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  $NICE "$GO" mod tidy > "$OUT/logs/tidy.log" 2>&1 || { tail -30 "$OUT/logs/tidy.log" >&2; return 1; }
  log "module graph resolved in $(( $(date +%s) - t0 )) s"
}

build_k8s() {
  local c=$1 pkg s
  case $c in
    etcd) pkg=go.etcd.io/etcd/server/v3 ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) pkg=k8s.io/kubernetes/cmd/$c ;;
    *) log "unknown component $c"; return 1 ;;
  esac
  prepare_module
  # Stamp the version, or /version says v0.0.0.
  local minor ldf="-s -w" p
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldf="$ldf -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  s=$(date +%s)
  log "$c: go build ... (kube-apiserver is the long one: minutes)"
  (cd "$OUT/src" && $NICE "$GO" build -trimpath -ldflags "$ldf" -o "$BIN/$c.tmp" "$pkg") \
    > "$OUT/logs/build-$c.log" 2>&1 || { tail -30 "$OUT/logs/build-$c.log" >&2; return 1; }
  mv "$BIN/$c.tmp" "$BIN/$c"
  echo "v$K8S_VERSION" > "$BIN/.$c.version"
  log "$c built in $(( $(date +%s) - s )) s ($(du -h "$BIN/$c" | cut -f1))"
}

for c in "${todo[@]}"; do
  if [ "$c" = kwok ]; then build_kwok; else build_k8s "$c"; fi
done
[ -s "$OUT/stages-fast.yaml" ] || write_stages
log "done in $(( $(date +%s) - t0 )) s: $BIN"
ls -la "$BIN" >&2
