#!/usr/bin/env bash
# Submits a sharded compare of a multi-rank run: a job array of SHARDS tasks and a merge job
# that runs once every task succeeded (docs/cluster.md). Prints the two job ids.
#   scripts/slurm/submit.sh REF DEV OUT_DIR SHARDS [compare options...]
#   DRIFTSCOPE_COMMAND=check MERGE_OPTIONS="--check --junit OUT/junit.xml" \
#       scripts/slurm/submit.sh REF DEV OUT_DIR SHARDS [--config driftscope.toml]
# The report lands in OUT_DIR/report.json; MERGE_OPTIONS go to `driftscope merge` (split on
# spaces). Extra sbatch options go in SBATCH_* variables (SBATCH_PARTITION, SBATCH_ACCOUNT,
# ...), which sbatch reads itself.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 REF DEV OUT_DIR SHARDS [compare options...]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
ref=$(realpath "$1") dev=$(realpath "$2") shards=$4
mkdir -p "$3"
out=$(realpath "$3")
shift 4
array=$(sbatch --parsable --array=0-$((shards - 1)) --output="$out/shard-%a.log" \
    "$here/shard.sbatch" "$ref" "$dev" "$out" "$shards" "$@")
array=${array%%;*}
# Never merge after a failed shard: the merge job is cancelled instead of waiting forever.
merge=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes \
    --output="$out/merge.log" "$here/merge.sbatch" "$out" "$out/report.json" ${MERGE_OPTIONS:-})
echo "array $array merge ${merge%%;*}"
