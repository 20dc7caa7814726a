#!/usr/bin/env bash
# 1M-entry msprobe statistics dumps (docs/performance.md, "1M-entry statistics dumps"): wall,
# user and system time and peak RSS of compare, compare --json, bisect and shard + merge on a
# generated pair of N entries per side, the same on its first CUT entries, and msprobe's own
# compare on the cut, one after the other in the same run.
#   benches/stats_1m.sh                      # N=1000000 CUT=100000; ~12 min here, 1.4 GB of data
#   N=200000 CUT=20000 MSPROBE=0 benches/stats_1m.sh
# env: DRIFTSCOPE (binary; default target/release/driftscope, built), MSPROBE=0 skips msprobe,
#      PY (python with mindstudio-probe and torch; default .venv-bench/bin/python),
#      KEEP=1 keeps the data in target/bench-data/stats (deleted otherwise; reused when kept).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000} CUT=${CUT:-100000} MSPROBE=${MSPROBE:-1}
PY=${PY:-.venv-bench/bin/python}
bin=${DRIFTSCOPE:-$PWD/target/release/driftscope}
[ -n "${DRIFTSCOPE:-}" ] || cargo build --release --quiet --bin driftscope
D=target/bench-data/stats
T=$(mktemp -d /tmp/driftscope-stats.XXXXXX)
trap 'rm -rf "$T"; [ "${KEEP:-0}" = 1 ] || rm -rf "$D"' EXIT
if [ "$(cat "$D/.made" 2>/dev/null)" != "$N $CUT" ]; then
    rm -rf "$D"
    python3 benches/gen_stats.py "$D" "$N" --cut "$CUT" >&2
    echo "$N $CUT" >"$D/.made"
fi
# Two ranks of the N-entry pair (hard links) for the sharded path: one shard per rank.
for s in ref dev; do
    for r in 0 1; do
        mkdir -p "$D/ranks/$s/step0/rank$r"
        ln -f "$D/$s/step0/rank0/dump.json" "$D/ranks/$s/step0/rank$r/dump.json"
    done
done
cat "$D"/ref/step0/rank0/dump.json "$D"/dev/step0/rank0/dump.json >/dev/null # page cache

printf '%-34s %9s %8s %7s %6s %9s %9s\n' run entries wall_s user_s sys_s rss_MiB KiB/entry
row() { # LABEL ENTRIES CMD...: one line of the table (the command's output goes to $T/out)
    local label=$1 n=$2
    shift 2
    local rc=0
    /usr/bin/time -f "%e %U %S %M" -o "$T/time" "$@" >"$T/out" 2>"$T/err" || rc=$?
    # compare and bisect exit 1 when the run diverged (it does); anything else is a failure.
    if [ "$rc" -gt 1 ]; then
        echo "$label failed (exit $rc):" >&2
        tail -5 "$T/err" >&2
        return 1
    fi
    read -r wall user sys kib <"$T/time"
    awk -v l="$label" -v n="$n" -v w="$wall" -v u="$user" -v s="$sys" -v k="$kib" 'BEGIN {
        printf "%-34s %9d %8.2f %7.2f %6.2f %9.0f %9.2f\n", l, n, w, u, s, k/1024, k/n }'
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for size in "$N:$D" "$CUT:$D/cut"; do
    n=${size%%:*} d=${size#*:}
    row "compare" "$n" "$bin" compare "$d/ref" "$d/dev"
    row "compare --json" "$n" "$bin" compare "$d/ref" "$d/dev" --json "$T/c.json"
    row "bisect" "$n" "$bin" bisect "$d/ref" "$d/dev"
done
rm -f "$T/c.json"
for i in 0 1; do
    row "compare --shard $i/2 --part (1 rank)" "$N" "$bin" compare "$D/ranks/ref" "$D/ranks/dev" \
        --shard "$i/2" --part "$T/part-$i.json"
done
row "merge (2 parts of 1 rank each)" "$N" "$bin" merge "$T"/part-0.json "$T"/part-1.json -o "$T/merged.json"
echo "merged report: $(du -h "$T/merged.json" | cut -f1); parts: $(du -ch "$T"/part-*.json | tail -1 | cut -f1)"
rm -f "$T"/part-*.json "$T/merged.json"
if [ "$MSPROBE" = 1 ]; then
    ms=$(dirname "$PY")/msprobe
    # Run from $T: msprobe writes beside where it runs.
    row "msprobe compare (statistics)" "$CUT" env -C "$T" "$PWD/$ms" compare \
        -tp "$PWD/$D/cut/dev/step0" -gp "$PWD/$D/cut/ref/step0" -o "$T/ms"
    echo "msprobe: $(($(cat "$T"/ms/*.csv | wc -l) - 1)) rows, $(grep -cE ',(warning|error),' "$T"/ms/*.csv) warning or error"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
