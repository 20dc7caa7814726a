#!/usr/bin/env bash
# End-to-end benchmark: driftscope compare vs a read-only mmap pass, `cat` and msprobe's compare.
#
# usage: benches/e2e.sh [DATA_DIR]   (default target/bench-data; generated if missing)
# env:   PY (python with torch, default the harness venv .venv-harness/bin/python)
#        MIB (MiB per side per dtype, default 1024; 0: the small dump only),
#        SMALL (small tensors, default 100000)
#        REPS (repetitions, median reported, default 3), MSPROBE=0 to skip msprobe,
#        KEEP=1 to keep the generated data (deleted otherwise).
# Prints one line per run and a summary table (GB/s = input bytes of both sides / wall s).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-target/bench-data}
PY=${PY:-.venv-harness/bin/python}
MIB=${MIB:-1024}
SMALL=${SMALL:-100000}
REPS=${REPS:-3}
MSPROBE=${MSPROBE:-1}
# absolute: msprobe runs from a scratch folder
MSPROBE_BIN="$(cd "$(dirname "$PY")" && pwd)/msprobe"
BIN=target/release/driftscope
BASE=target/release/examples/read_baseline
cargo build --release --bin driftscope --example read_baseline >&2
if [ ! -d "$D/native_fp32_ref" ] && [ ! -d "$D/small_ref" ]; then
  "$PY" benches/gen_dumps.py "$D" --mib-per-side "$MIB" --small "$SMALL" >&2
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; [ "${KEEP:-0}" = 1 ] || rm -rf "$D"' EXIT

# median wall seconds of REPS runs of "$@"; peak() then gives the max RSS (KiB) of the last run.
med() {
  local ts=()
  for _ in $(seq "$REPS"); do
    /usr/bin/time -f "%e %M" -o "$TMP/t" "$@" >"$TMP/out" 2>"$TMP/err" || { cat "$TMP/err" >&2; return 1; }
    read -r t _ <"$TMP/t"
    ts+=("$t")
  done
  printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
peak() { cut -d" " -f2 "$TMP/t"; }
bytes() { du -cb "$@" | tail -1 | cut -f1; }

printf '%-14s %9s %10s %9s %10s %7s %9s %9s %9s %8s\n' dataset MiB drift_s drift_GBps base_GBps ratio cat_GBps ratio_cat rss_MiB msprobe_x
for ds in msprobe_fp32 msprobe_bf16 native_fp32 native_bf16; do
  R=$D/${ds}_ref; C=$D/${ds}_dev
  [ -d "$R" ] || continue   # MIB=0: only the small dump
  b=$(bytes "$R" "$C")
  find "$R" "$C" -type f -exec cat {} + >/dev/null   # warm the page cache
  tb=$(med "$BASE" "$R" "$C")
  tc=$(med bash -c "find '$R' '$C' -type f -exec cat {} + >/dev/null")
  td=$(med "$BIN" compare "$R" "$C" --json "$TMP/o.json")
  rss=$(($(peak) / 1024))
  mx=-
  if [ "$MSPROBE" = 1 ] && [ "${ds#msprobe}" != "$ds" ] && [ -x "$MSPROBE_BIN" ]; then
    s=$(date +%s.%N)
    if (cd "$TMP" && "$MSPROBE_BIN" compare -tp "$OLDPWD/$C/step0" -gp "$OLDPWD/$R/step0" -o "$TMP/ms" >"$TMP/ms.log" 2>&1); then
      tm=$(echo "$(date +%s.%N) - $s" | bc)
      mx=$(echo "scale=1; $tm / $td" | bc)
    else
      mx=failed; tail -3 "$TMP/ms.log" >&2
    fi
  fi
  awk -v ds="$ds" -v b="$b" -v td="$td" -v tb="$tb" -v tc="$tc" -v rss="$rss" -v mx="$mx" 'BEGIN {
    printf "%-14s %9.0f %10.3f %9.3f %10.3f %7.2f %9.3f %9.2f %9d %8s\n", ds, b/1048576, td, b/td/1e9, b/tb/1e9, tb/td, b/tc/1e9, tc/td, rss, mx }'
done
# Many small tensors: pairs per second, including dump.json parsing and matching, against
# read_baseline's floor (open, read, close of every file on 2 threads) and `cat`.
R=$D/small_ref; C=$D/small_dev
if [ -d "$R" ]; then
  find "$R" "$C" -type f -exec cat {} + >/dev/null
  n=$(grep -o '"data_name"' "$R/step0/rank0/dump.json" | wc -l)
  tb=$(med "$BASE" "$R" "$C")
  tc=$(med bash -c "find '$R' '$C' -type f -exec cat {} + >/dev/null")
  tp=$(med "$BIN" compare "$R" "$C")
  rp=$(($(peak) / 1024))
  ts=$(med "$BIN" compare "$R" "$C" --json "$TMP/o.json")
  awk -v n="$n" -v t="$ts" -v tp="$tp" -v tb="$tb" -v tc="$tc" -v rp="$rp" -v rss="$(($(peak) / 1024))" 'BEGIN {
    printf "small: %d pairs; read_baseline %.3f s = %.0f pairs/s; cat %.3f s = %.0f pairs/s\n", n, tb, n/tb, tc, n/tc
    printf "small: --json %.3f s = %.0f pairs/s (%.2f of read_baseline, %.2f of cat), peak RSS %d MiB\n", t, n/t, tb/t, tc/t, rss
    printf "small: plain  %.3f s = %.0f pairs/s (%.2f of read_baseline, %.2f of cat), peak RSS %d MiB\n", tp, n/tp, tb/tp, tc/tp, rp }'
fi
