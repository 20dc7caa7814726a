#!/usr/bin/env bash
# Fuzzing driftscope's readers with libFuzzer (docs/robustness.md).
#
#   bash fuzz/run.sh build            build every target (what .ci/run does)
#   bash fuzz/run.sh run SECONDS [T…] seed the corpora, then fuzz each target (all by default)
#                                     for SECONDS; crashes land in fuzz/artifacts/<target>/
#   bash fuzz/run.sh list             target names
#
# Works on stable Rust: this is what `cargo fuzz build -s none` does (SanitizerCoverage
# instrumentation through stable -C flags, libFuzzer from the libfuzzer-sys crate, debug
# assertions and overflow checks on), without needing cargo-fuzz installed. With cargo-fuzz,
# `cd fuzz && cargo fuzz run -s none <target>` builds and runs the same targets.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
TARGETS=(pickle pt npy npz safetensors msprobe native cann)
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$here/target/$triple/release"

build() {
  RUSTFLAGS="${RUSTFLAGS:-} -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --target "$triple" --bins
}

case "${1:-}" in
  build) build ;;
  list) printf '%s\n' "${TARGETS[@]}" ;;
  run)
    secs="${2:?usage: run.sh run SECONDS [TARGET...]}"
    shift 2
    [ $# -gt 0 ] && TARGETS=("$@")
    build
    python3 "$here/seed.py"
    for t in "${TARGETS[@]}"; do
      mkdir -p "artifacts/$t" "corpus/$t"
      echo "== $t: ${secs}s"
      # -rss_limit_mb: a reader that tries to allocate a bomb fails the run (OOM = finding).
      # -timeout: one input taking over 30 s is a hang (generous: shared CI machines).
      "$bin_dir/$t" "corpus/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 \
        -max_len=65536 -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 |
        grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|==[0-9]+== ERROR|SUMMARY|.*deadly signal|Done)' || true
      test -z "$(ls -A "artifacts/$t")" || { echo "!! $t: crash inputs in fuzz/artifacts/$t"; failed=1; }
    done
    exit "${failed:-0}" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
