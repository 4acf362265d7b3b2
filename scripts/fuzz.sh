#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Runs the cargo-fuzz targets in fuzz/ one after another (never in parallel: the machine is
# shared), each for SECONDS (default 600) under `nice -n 19`. New inputs go to fuzz/work/<target>
# (ignored by git); afterwards those that reach new coverage are merged into the committed
# fuzz/corpus/<target>, so it stays minimal. A crash stops the run with the reproducer under
# fuzz/artifacts/<target>/. libFuzzer's output of each run goes to target/fuzz/<target>.log.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain build with the sanitizer flags cargo-fuzz passes. FUZZ_BUILD=0 reuses the binaries
# built last time (the library may have changed since).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-600}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(initdata upload_pipeline upload_framing yookassa_notification kie_callback)
export RUSTC_BOOTSTRAP=1

[[ ${FUZZ_BUILD:-1} == 0 ]] || cargo fuzz build
mkdir -p ../target/fuzz
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "work/$target" "artifacts/$target"
  bin="target/x86_64-unknown-linux-gnu/release/$target"
  echo "== $target: ${seconds} s"
  # The built binary directly: `cargo fuzz run` would rebuild first when the library changed.
  nice -n 19 "$bin" "work/$target" "corpus/$target" -artifact_prefix="artifacts/$target/" \
    -max_total_time="$seconds" -print_final_stats=1 2>"../target/fuzz/$target.log" ||
    { tail -n 40 "../target/fuzz/$target.log"; exit 1; }
  grep -E 'DONE|stat::number_of_executed_units|stat::peak_rss_mb' "../target/fuzz/$target.log" || true
  nice -n 19 "$bin" -merge=1 "corpus/$target" "work/$target" 2>"../target/fuzz/$target.merge.log"
  grep -E 'MERGE-OUTER: [0-9]+ new files' "../target/fuzz/$target.merge.log" || true
done
