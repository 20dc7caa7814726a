#!/usr/bin/env bash
# The sharded compare on a real Slurm cluster (docs/cluster.md): starts munge, slurmctld and
# slurmd on this machine (one node, its CPUs), generates a 64-rank msprobe statistics dump from
# the real llama runs (rank 17 of the candidate is the SiLU fault run), submits
# scripts/slurm/submit.sh (a job array of shards, then a merge job with afterok), waits, and
# checks the merged report is byte for byte the single-process report; then the nightly form
# (check shards, `merge --check` writing JUnit, Markdown, history and HTML) against a
# single-process `check` of the same dumps, timestamps aside. Always stops its
# daemons. Installs slurm-wlm, munge and jq with apt-get when missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
RANKS=64 SHARDS=8 BAD=17

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v jq >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge jq >/dev/null
fi
[ -x target/release/driftscope ] || cargo build --release --quiet
export DRIFTSCOPE=$repo/target/release/driftscope

work=$(mktemp -d /tmp/driftscope-slurm.XXXXXX)
stop() {
    local code=$?
    for pid in "$work/slurmd.pid" "$work/slurmctld.pid" "$work/munged.pid"; do
        [ -s "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    # Give them a moment to exit before their folder goes.
    for pid in "$work/slurmd.pid" "$work/slurmctld.pid" "$work/munged.pid"; do
        for _ in $(seq 50); do
            [ -s "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null || break
            sleep 0.1
        done
    done
    if [ "$code" -ne 0 ]; then
        echo "slurm test failed; daemon logs:" >&2
        tail -n 20 "$work"/*.log >&2 || true
    fi
    rm -rf "$work"
    exit "$code"
}
trap stop EXIT

# munge on its own socket, so a system munged (if any) is left alone.
[ -s /etc/munge/munge.key ] || {
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
}
munged --force -S "$work/munge.sock" --pid-file="$work/munged.pid" \
    --log-file="$work/munged.log" --seed-file="$work/munged.seed"

host=$(hostname -s)
mkdir -p "$work/state" "$work/spool"
cat >"$work/slurm.conf" <<CONF
ClusterName=driftscope-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge.sock
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^idle' && break
    sleep 0.5
done
sinfo -h -o %T | grep -qE '^idle' || { echo "slurmd never came up" >&2; exit 1; }

# A 64-rank statistics dump: msprobe's statistics task is the tensor task's dump.json
# without tensor files.
stats() {
    local d
    d=$(dirname "$(ls reference_dumps/h200/llama/msprobe/"$1"/step0/*/dump.json)")
    jq -c '.task = "statistics" | del(.dump_data_dir)
        | .data |= with_entries(.value |= walk(if type == "object" then del(.data_name) else . end))' \
        "$d/dump.json"
}
stats cpu_fp32 >"$work/ref.json"
stats cuda_fp16 >"$work/dev.json"
stats cuda_fp16_fault_silu_l1 >"$work/bad.json"
for r in $(seq 0 $((RANKS - 1))); do
    mkdir -p "$work/ref/step0/rank$r" "$work/dev/step0/rank$r"
    cp "$work/ref.json" "$work/ref/step0/rank$r/dump.json"
    if [ "$r" -eq "$BAD" ]; then src=bad; else src=dev; fi
    cp "$work/$src.json" "$work/dev/step0/rank$r/dump.json"
done

"$DRIFTSCOPE" compare "$work/ref" "$work/dev" --json "$work/single.json" >/dev/null
read -r _ array _ merge < <(scripts/slurm/submit.sh "$work/ref" "$work/dev" "$work/out" "$SHARDS")
echo "submitted array $array, merge $merge"
for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$array,$merge" 2>/dev/null)" ] && break
    sleep 0.5
done
[ -z "$(squeue -h -j "$array,$merge")" ] || { echo "jobs still queued after 5 minutes" >&2; squeue >&2; exit 1; }
parts=$(ls "$work/out"/part-*.json | wc -l)
[ "$parts" -eq "$SHARDS" ] || { echo "expected $SHARDS parts, found $parts" >&2; cat "$work/out"/*.log >&2; exit 1; }
[ -s "$work/out/report.json" ] || { echo "the merge job wrote no report" >&2; cat "$work/out/merge.log" >&2; exit 1; }
cmp "$work/single.json" "$work/out/report.json" || {
    echo "the merged report differs from the single-process report" >&2
    exit 1
}
first=$(jq -c '.summary.first_ranks' "$work/out/report.json")
[ "$first" = "[$BAD]" ] || { echo "first divergent ranks $first, expected [$BAD]" >&2; exit 1; }
grep -q "merged $SHARDS part(s)" "$work/out/merge.log"
echo "slurm: $SHARDS shards over $RANKS ranks merged; identical to the single-process report; first: rank $BAD"

wait_for() {
    for _ in $(seq 600); do
        [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
        sleep 0.5
    done
    echo "jobs $1 still queued after 5 minutes" >&2
    squeue >&2
    return 1
}
# The nightly job: check shards, then merge --check; exit 1 (the regression) from the merge.
outputs() { echo "--junit $1/junit.xml --markdown $1/summary.md --history $1/history.jsonl --html $1/ranks.html --run-id nightly --report-url R"; }
mkdir -p "$work/one"
code=0
# shellcheck disable=SC2046
"$DRIFTSCOPE" check "$work/ref" "$work/dev" --json "$work/one/report.json" $(outputs "$work/one") >"$work/one/out.txt" || code=$?
[ "$code" -eq 1 ] || { echo "single-process check exited $code, expected 1 (regression)" >&2; exit 1; }
read -r _ array _ merge < <(DRIFTSCOPE_COMMAND=check MERGE_OPTIONS="--check $(outputs "$work/nightly")" \
    scripts/slurm/submit.sh "$work/ref" "$work/dev" "$work/nightly" "$SHARDS")
wait_for "$array,$merge"
cmp "$work/one/report.json" "$work/nightly/report.json" || { echo "merged check report differs" >&2; cat "$work/nightly/merge.log" >&2; exit 1; }
untimed() { sed -E 's/(timestamp="|"date":")[^"]*"/\1T"/g' "$1"; }
for f in junit.xml summary.md history.jsonl ranks.html; do
    diff <(untimed "$work/one/$f") <(untimed "$work/nightly/$f") >/dev/null || {
        echo "merged $f differs from the single-process check's" >&2
        exit 1
    }
done
grep -q "FAIL: $RANKS rank(s) checked, 1 failing" "$work/nightly/merge.log" || { cat "$work/nightly/merge.log" >&2; exit 1; }
echo "slurm: nightly check over $SHARDS shards: JUnit, Markdown, history and HTML identical to one process"
