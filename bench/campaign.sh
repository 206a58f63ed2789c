#!/usr/bin/env bash
# The long measurements behind docs/results.md (issue 13) and bench/README.md's pruning tables (issue 14), in order,
# at the CPU preset. A step whose result exists is skipped and an interrupted one is resumed (--resume), so the same
# command continues the campaign in a later session:
#
#     nohup bash bench/campaign.sh > campaign.log 2>&1 &
#
# About 45 minutes per study and 16-36 minutes per evaluation run (36 epochs at a median 27 s, two at a time, slower
# when the machine is shared) on the 2-core machine; evaluations
# take the upstream and base runs over from the curriculum study's (study/evaluate.py --reuse), so each further
# space re-trains only its best configuration's 5 seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SPACES=${SPACES:-"critic correlation optimizer quirks full all"}

study() {  # study NAME ARGS...: run study/run.py --name NAME ARGS, or resume it, until its leaderboard exists
    local name=$1
    shift
    if [ -f "experiments/$name/leaderboard.parquet" ]; then return; fi
    local resume=()
    if [ -f "experiments/$name/study.json" ]; then resume=(--resume); fi
    echo "== study $name $* ${resume[*]}"
    $PY study/run.py --name "$name" --no-dashboard "$@" "${resume[@]}"
}

evaluate() {  # evaluate NAME [SEEDS]: upstream, the base and the best configuration, until final_summary.csv
    local folder=experiments/$1 seeds=${2:-5} plan
    plan=$(ls -t "$folder"/final-*/evaluation.json 2>/dev/null | head -1 || true)
    if [ -n "$plan" ] && [ "$folder/final_summary.csv" -nt "$plan" ]; then return; fi
    echo "== evaluate $1"
    if [ -n "$plan" ]; then
        $PY study/evaluate.py "$folder" --resume --no-dashboard --reuse experiments/curriculum
    else
        $PY study/evaluate.py "$folder" --top 1 --seeds "$seeds" --no-dashboard --reuse experiments/curriculum
    fi
}

main() {  # the whole campaign; bash reads all of it before running, so the file may be edited meanwhile
    study curriculum --space curriculum
    evaluate curriculum
    # Issue 13, part 2: a larger size's learning curve (50 epochs = 3,000 generator steps, one thread), beside the
    # signal study so that both cores work
    curve=runs/curves/wgan_buffer_ladder_h64
    if [ ! -f "$curve/done" ]; then
        resume=()
        if [ -f "$curve/checkpoints/last.pt" ]; then resume=(--resume); else rm -rf "$curve"; fi  # nothing to resume
        ( if $PY bench/learning_curves.py run wgan_buffer_ladder_h64 --epochs 50 "${resume[@]}"; then
            touch "$curve/done"; fi ) &
    fi
    # Issue 14, before the spaces because its tables set the pruning defaults they use: every trial to the full
    # budget, then which signal at which rung predicts the final test quality.
    study signals --space all --scheduler none --num-samples 24
    if [ ! -f bench/pruning_signals.cpu.json ]; then
        $PY bench/pruning_signals.py experiments/signals --json bench/pruning_signals.cpu.json \
            --csv bench/pruning_signals.cpu.csv --seed-spread experiments/curriculum/final_summary.csv
    fi
    wait  # the learning curve
    for space in $SPACES; do
        study "$space" --space "$space"
        evaluate "$space"
    done
    study baseline --space baseline # upstream alone, one trial per seed: the seed spread, nothing to re-train
    # Issue 14: TPE with ASHA, PBT and TPE with no pruning at the same compute (8 full trials' worth), each winner
    # re-trained with 3 seeds on test patients.
    for scheduler in asha pbt none; do
        study "sched-$scheduler" --space optimizer --scheduler "$scheduler" --budget "${BUDGET:-288}"
        evaluate "sched-$scheduler" 3
    done
    $PY bench/schedulers.py experiments/sched-asha experiments/sched-pbt experiments/sched-none \
        --json bench/schedulers.cpu.json > bench/schedulers.cpu.md
    echo "== campaign done"
}

main "$@"
