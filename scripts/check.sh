#!/usr/bin/env bash
# check.sh - the project's test command (what .ci/run calls).
#
#   1. cargo fmt --all -- --check
#   2. cargo clippy --all-targets -- -D warnings
#   3. cargo test --all-targets
#   4. cargo build --bin arca, then the Python compatibility tests (hvac 2.4.0, pytest)
#      in tests/python against the real binary, in a venv at .venv (created once; reused
#      while tests/python/requirements.txt is unchanged).
#
# Every step runs even if an earlier one failed (except the Python tests, which need a
# binary); the exit code is non-zero if any step failed.
#
# Usage: scripts/check.sh [PYTEST_ARGS...]     e.g. scripts/check.sh -k cas -x
# Env:   SKIP_RUST=1   only the Python tests (still builds the binary)
#        SKIP_PYTHON=1 only the Rust steps
#        ARCA_BIN=...  test this binary instead of target/debug/arca (no build)
#        CI=true       adds --locked to cargo (Cargo.lock must be up to date)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1

VENV="$REPO/.venv"
REQS="$REPO/tests/python/requirements.txt"
LOCKED=()
[ -n "${CI:-}" ] && LOCKED=(--locked)
FAILED=()

step() { printf '\n==> %s\n' "$*"; }
run() { # name cmd...
  local name=$1
  shift
  step "$name: $*"
  local t0=$SECONDS
  if "$@"; then
    printf '==> %s: ok (%ss)\n' "$name" $((SECONDS - t0))
  else
    local rc=$?
    printf '==> %s: FAILED (exit %s, %ss)\n' "$name" "$rc" $((SECONDS - t0))
    FAILED+=("$name")
    return "$rc"
  fi
}

# ---------------------------------------------------------------- Rust
if [ -z "${SKIP_RUST:-}" ]; then
  run fmt cargo fmt --all -- --check
  run clippy cargo clippy "${LOCKED[@]}" --all-targets -- -D warnings
  run test cargo test "${LOCKED[@]}" --all-targets
fi

# ---------------------------------------------------------------- Python
venv_ok() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c 'import hvac, pytest' 2>/dev/null &&
    [ -f "$VENV/.requirements.sha256" ] &&
    sha256sum "$REQS" | cmp -s - "$VENV/.requirements.sha256"
}

setup_venv() {
  if venv_ok; then
    echo "venv $VENV up to date"
    return 0
  fi
  # a venv left half-made (e.g. python3-venv was missing) is rebuilt from scratch
  if [ -d "$VENV" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || {
      echo "python3 -m venv failed: on Debian, apt-get install -y python3-venv" >&2
      rm -rf "$VENV"
      return 1
    }
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" || return 1
  sha256sum "$REQS" >"$VENV/.requirements.sha256"
}

pytest_run() {
  local log rc summary
  log=$(mktemp)
  # -p no:cacheprovider: no .pytest_cache in the work tree
  "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfE --color=no tests/python "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  summary=$(grep -E '^=* ?[0-9]+ (passed|failed|error|skipped|deselected)|^=* ?no tests ran' "$log" | tail -1)
  rm -f "$log"
  echo "pytest summary: ${summary:-<none>}"
  if [ "$rc" = 5 ]; then
    echo "pytest collected no tests: treated as a failure" >&2
  fi
  return "$rc"
}

if [ -z "${SKIP_PYTHON:-}" ]; then
  py_ready=1
  run venv setup_venv || py_ready=""
  if [ -z "${ARCA_BIN:-}" ]; then
    run build cargo build "${LOCKED[@]}" --bin arca || py_ready=""
    # the tests find target/debug/arca by themselves; elsewhere, tell them
    [ -n "${CARGO_TARGET_DIR:-}" ] && export ARCA_BIN="$CARGO_TARGET_DIR/debug/arca"
  elif [ ! -x "$ARCA_BIN" ]; then
    echo "ARCA_BIN=$ARCA_BIN is not executable" >&2
    FAILED+=(build)
    py_ready=""
  fi
  if [ -n "$py_ready" ]; then
    run pytest pytest_run "$@"
  else
    echo "==> pytest: not run (venv or build failed)"
    FAILED+=(pytest)
  fi
fi

echo
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "check.sh: FAILED steps: ${FAILED[*]}"
  exit 1
fi
echo "check.sh: all steps passed"
