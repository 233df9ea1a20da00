#!/usr/bin/env bash
# The real Kubernetes control plane for tests/integration/k8s_real (docs/executors.md): kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and etcd of k8s v1.37.2, and kwok v0.8.0, built from the
# Go module proxy by tests/support/k8s/build.sh into ~/.cache/rcaflow/k8s-v1.37.2/ and reused from there, so
# only a fresh machine pays: ~16 CPU-minutes (8-9 min wall on idle cores, ~25 min next to other work).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ ! -x "$GO" ]; then
  # Debian's golang is too old for k8s 1.37 (it needs Go 1.25+); the machine's own Go toolchain is expected.
  echo "k8s-deps: no Go toolchain (looked for $GO); the k8s_real tests need one to build the control plane" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 0
fi
command -v flock >/dev/null 2>&1 || {
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends util-linux
}
GO="$GO" bash "$here/../tests/support/k8s/build.sh"
