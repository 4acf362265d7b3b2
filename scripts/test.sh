#!/usr/bin/env bash
# Runs the whole test suite: nextest when installed (faster, one process per test), else cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --lib --bins --tests --no-fail-fast "$@"
else
  echo "cargo-nextest not found; using cargo test (install: cargo install cargo-nextest --locked)"
  exec cargo test --workspace --lib --bins --tests --no-fail-fast "$@"
fi
