#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible `llama-server` for the real-model tests (docs/llm.md).
#
# Why from the llama-cpp-python sdist: it vendors a pinned llama.cpp tree and comes from the package
# registry through pip, so no GitHub access is needed. The binary is cached outside the checkout in
# ~/.cache/rcaflow/llama-server-<version>/bin/llama-server and reused when present; the sdist's
# sha256 is checked before anything is built. Built with -DGGML_NATIVE=ON for speed on this CPU,
# which is why the cache is per machine (it is never copied between hosts).
#
# Prints the binary's path on stdout; progress goes to stderr. ~18 min on 2 cores, niced.
set -euo pipefail
V="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
SDIST_SHA256="${LLAMA_CPP_PYTHON_SHA256:-832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e}"
CACHE="${RCAFLOW_CACHE:-$HOME/.cache/rcaflow}"
DEST="$CACHE/llama-server-$V"
BIN="$DEST/bin/llama-server"
PY="${PYTHON:-python3}"

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"; exit 0
fi
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9                                   # one build at a time; a second caller waits and reuses it
if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"; exit 0
fi

SRC_DIR="$DEST/src"
mkdir -p "$SRC_DIR"
TARBALL="$SRC_DIR/llama_cpp_python-$V.tar.gz"
if [ ! -f "$TARBALL" ]; then
  echo "llama-server: downloading llama-cpp-python $V sdist" >&2
  # --no-binary for this package only: its build backend (scikit-build-core) comes as a wheel, so pip
  # does not build a tower of build tools from source just to read the sdist's metadata.
  "$PY" -m pip download -q --no-deps --no-binary=llama-cpp-python -d "$SRC_DIR" "llama-cpp-python==$V"
fi
got="$(sha256sum "$TARBALL" | cut -d' ' -f1)"
if [ "$got" != "$SDIST_SHA256" ]; then
  echo "llama-server: sha256 mismatch for $TARBALL: got $got, want $SDIST_SHA256" >&2
  rm -f "$TARBALL"; exit 1
fi
rm -rf "$SRC_DIR/llama_cpp_python-$V"
tar xzf "$TARBALL" -C "$SRC_DIR"
LLAMA_SRC="$SRC_DIR/llama_cpp_python-$V/vendor/llama.cpp"
B="$DEST/build"
t0=$(date +%s)
echo "llama-server: building (niced; ~18 min on 2 cores)" >&2
nice -n "${NICE:-15}" cmake -S "$LLAMA_SRC" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
nice -n "${NICE:-15}" cmake --build "$B" --target llama-server -j "${JOBS:-2}" >&2
mkdir -p "$DEST/bin"
cp "$B/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"   # atomic: never a half-copied binary
rm -rf "$B" "$SRC_DIR/llama_cpp_python-$V"
echo "llama-server: built in $(( $(date +%s) - t0 )) s" >&2
echo "$BIN"
