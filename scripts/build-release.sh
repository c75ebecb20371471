#!/usr/bin/env bash
# build-release.sh - release build of the arca binary, copied to OUT_DIR/arca.
#
# Usage: scripts/build-release.sh [OUT_DIR=dist]
#   OUT_DIR is taken relative to the current directory (the Dockerfile passes /out).
#   Builds with --locked: Cargo.lock must be up to date. Honours CARGO_TARGET_DIR.
set -euo pipefail

OUT=${1:-dist}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

cargo build --release --locked --bin arca
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
install -m 0755 "$TARGET_DIR/release/arca" "$OUT/arca"
echo "build-release: $OUT/arca ($(du -h "$OUT/arca" | cut -f1))"
