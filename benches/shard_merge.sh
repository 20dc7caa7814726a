#!/usr/bin/env bash
# Shard + merge at scale (docs/performance.md, "Sharded runs"): RANKS ranks of ENTRIES msprobe
# statistics entries each, compared in SHARDS shards one after the other (as SHARDS nodes would
# run them at once), merged (plain, and with --check writing JUnit, Markdown, history and HTML),
# and compared once in a single process; wall time and peak RSS of
# each step, and a check that the merged report equals the single-process one.
#   RANKS=1024 ENTRIES=1000 SHARDS=8 benches/shard_merge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RANKS=${RANKS:-1024} ENTRIES=${ENTRIES:-1000} SHARDS=${SHARDS:-8}
bin=${DRIFTSCOPE:-$PWD/target/release/driftscope}
[ -x "$bin" ] || cargo build --release --quiet
d=$(mktemp -d /tmp/driftscope-shards.XXXXXX)
trap 'rm -rf "$d"' EXIT
python3 benches/gen_ranks.py "$d" "$RANKS" "$ENTRIES"
measure() { # LABEL CMD...: prints LABEL, wall seconds, peak RSS in MiB
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$d/time" "$@" >/dev/null
    read -r wall kib <"$d/time"
    printf '%-28s %8.2f s %8.1f MiB\n' "$label" "$wall" "$(echo "$kib / 1024" | bc -l)"
}
echo "$RANKS ranks x $ENTRIES statistics entries, $SHARDS shards"
for i in $(seq 0 $((SHARDS - 1))); do
    measure "compare --shard $i/$SHARDS" "$bin" compare "$d/ref" "$d/dev" --shard "$i/$SHARDS" \
        --part "$d/parts/part-$i.json" --only-failing
done
du -sh "$d/parts" | sed 's/^/parts on disk: /'
measure "merge" "$bin" merge "$d"/parts/part-*.json -o "$d/merged.json"
# The nightly form: the merge judges every rank and writes the CI files (exit 1: a regression).
measure "merge --check (all outputs)" bash -c '"$0" merge "$1"/parts/part-*.json -o "$1/checked.json" \
    --check --junit "$1/junit.xml" --markdown "$1/summary.md" --history "$1/h.jsonl" \
    --html "$1/ranks.html"; [ $? -le 1 ]' "$bin" "$d"
measure "compare (one process)" "$bin" compare "$d/ref" "$d/dev" --json "$d/single.json" --only-failing
cmp "$d/single.json" "$d/merged.json" && echo "merged report == single-process report ($(du -h "$d/merged.json" | cut -f1))"
