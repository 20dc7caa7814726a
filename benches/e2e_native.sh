#!/usr/bin/env bash
# End-to-end benchmark without torch: native-format dumps (examples/gen_native.rs) for f32, f16,
# bf16, f32 vs bf16 and f32 vs f16; driftscope compare against the read-only mmap pass
# (examples/read_baseline, 2 threads) and `cat` of the same files, all from page cache.
# driftscope runs twice: with `--json` (the report carries the error histograms) and plain
# (table only: the histograms are not counted).
#
# usage: benches/e2e_native.sh [DATA_DIR]   (default target/bench-native; generated if missing)
# env:   MIB (MiB of reference data per side, default 1024), REPS (median of, default 3),
#        KEEP=1 to keep the generated data (deleted otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-target/bench-native}
MIB=${MIB:-1024}
REPS=${REPS:-3}
cargo build --release --bin driftscope --example read_baseline --example gen_native >&2
BIN=target/release/driftscope
BASE=target/release/examples/read_baseline
[ -d "$D/fp32_ref" ] || target/release/examples/gen_native "$D" "$MIB"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; [ "${KEEP:-0}" = 1 ] || rm -rf "$D"' EXIT

# median wall seconds of REPS runs of "$@"
med() {
  local ts=()
  for _ in $(seq "$REPS"); do
    /usr/bin/time -f "%e" -o "$TMP/t" "$@" >"$TMP/out" 2>"$TMP/err" || { cat "$TMP/err" >&2; return 1; }
    ts+=("$(cat "$TMP/t")")
  done
  printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
catall() { find "$@" -type f -exec cat {} + >/dev/null; }

printf '%-10s %7s %8s %9s %9s %8s %10s %9s %8s %10s %9s %6s\n' pair MiB json_s json_GBps base_GBps cat_GBps json/base json/cat plain_s plain/base plain/cat load
for p in fp32 fp16 bf16 fp32_bf16 fp32_fp16; do
  R=$D/${p}_ref; C=$D/${p}_dev
  b=$(du -cb "$R" "$C" | tail -1 | cut -f1)
  catall "$R" "$C"   # warm the page cache
  tb=$(med "$BASE" "$R" "$C")
  tc=$(med bash -c "$(declare -f catall); catall $R $C")
  td=$(med "$BIN" compare "$R" "$C" --json "$TMP/o.json")
  tp=$(med "$BIN" compare "$R" "$C")
  load=$(cut -d" " -f1 /proc/loadavg)
  awk -v p="$p" -v b="$b" -v td="$td" -v tp="$tp" -v tb="$tb" -v tc="$tc" -v l="$load" 'BEGIN {
    printf "%-10s %7.0f %8.3f %9.2f %9.2f %8.2f %10.2f %9.2f %8.3f %10.2f %9.2f %6s\n", p, b/1048576, td, b/td/1e9, b/tb/1e9, b/tc/1e9, tb/td, tc/td, tp, tb/tp, tc/tp, l }'
done
