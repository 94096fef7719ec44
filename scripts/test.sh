#!/usr/bin/env bash
# Whole test suite: Rust (fmt, clippy, tests) then Elixir (format, compile
# with warnings as errors, ExUnit including the multi-node tests).
# Fails fast with a non-zero exit; the last line is a one-line summary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

start=$(date +%s)
current="setup"
steps_done=0
summary() {
  local rc=$?
  local secs=$(( $(date +%s) - start ))
  if [ "$rc" -eq 0 ]; then
    echo "test.sh: PASSED — ${steps_done} steps in ${secs}s"
  else
    echo "test.sh: FAILED at '${current}' (exit ${rc}) after ${steps_done} passed steps, ${secs}s"
  fi
}
trap summary EXIT

step() {
  current="$*"
  local t0
  t0=$(date +%s)
  echo
  echo "==> $*"
  "$@"
  echo "<== ok ($(( $(date +%s) - t0 ))s): $*"
  steps_done=$((steps_done + 1))
}

hpv_ensure_tools
hpv_ensure_rust_components
# The partition test uses network namespaces (it skips itself without root/netns).
command -v ip >/dev/null 2>&1 || hpv_apt_install iproute2

export MIX_ENV=test
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step cargo fmt --all --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo test --workspace
step cargo run --release -p hyparview_fuzz -- --seconds 20
step mix format --check-formatted
step mix compile --warnings-as-errors
step mix test
