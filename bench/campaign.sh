#!/usr/bin/env bash
# The long measurements behind docs/results.md (issue 13) and bench/README.md's pruning tables (issue 14), in order,
# at the CPU preset:
#
#     nohup bash bench/campaign.sh > campaign.log 2>&1 &
#
# A step is done when its small result is in the repository (docs/results/SPACE.final_summary.csv, a signal batch's
# bench/signals/signals-N.csv, bench/schedulers.cpu.md; while an evaluation runs, docs/results/SPACE.runs_so_far.csv
# holds its finished runs): commit those as they appear, because an experiment folder
# does not outlive the machine it ran on, and a later session on a fresh clone continues from the committed results.
# A step interrupted on the same machine resumes from its folder (--resume).
#
# On the 2-core machine the default study took 45 minutes with its first rung at epoch 12 and 28 with it at 8 (the
# preset's now); an evaluation run 16-36 minutes (36 epochs at a median 27 s, two at a time, slower when the machine
# is shared). A signal batch took 76 minutes for 8 trials (batch 1), 49 for 4 (batch 2, beside the test suite), 26
# for 4 (batch 3) and about 135 for 8 (batch 4, resumed once, partly beside the test suite), test scoring included.
# The no-pruning scheduler study took 54 minutes and its 3-seed evaluation (9 runs) 58.
# Evaluations take over the runs earlier evaluations made exactly so (study/evaluate.py --reuse, by run key: their
# folders when here, else their committed tables' test scores); a key includes the code that trained the run. The
# curriculum table's keys hold no code (they were added after its runs) and match nothing, so the critic evaluation
# re-trains the upstream and base arms, and later spaces take those over from it and train only their own winner.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SPACES=${SPACES:-"critic correlation optimizer quirks full all"}
# The signal study: batches NAME:SEED:TRIALS, training seeds SEED..SEED+TRIALS-1, 0-23 in all; each batch starts with
# the base and the upstream reference, as every study does.
BATCHES=${BATCHES:-"1:0:8 2:8:4 3:12:4 4:16:8"}
# The report's figures (study/report.py --figures) kept for each space in docs/results/SPACE/.
FIGURES="emd_feat_per_epoch_for_every_trial factors_against_the_final_metric optuna_parameter_importances
final_evaluation_on_test_patients_every_seed real_vs_synthetic_marginal_distributions"

study() {  # study NAME ARGS...: run study/run.py --name NAME ARGS, or resume it, until its leaderboard exists
    local name=$1 record=docs/results/$1
    shift
    if [ -f "experiments/$name/leaderboard.parquet" ]; then return; fi
    if [ -f "$record/study.json" ] && [ -f "$record/leaderboard.parquet" ]; then  # a finished study, committed
        echo "== study $name: its committed record ($record/study.json, leaderboard.parquet), not trained again"
        mkdir -p "experiments/$name"
        cp "$record/study.json" "$record/leaderboard.parquet" "experiments/$name/"
        return
    fi
    local resume=()
    if [ -f "experiments/$name/study.json" ]; then resume=(--resume); fi
    echo "== study $name $* ${resume[*]}"
    $PY study/run.py --name "$name" --no-dashboard "$@" "${resume[@]}"
}

evaluate() {  # evaluate NAME [SEEDS]: upstream, the base and the best configuration, until final_summary.csv
    # (EVAL_EPOCHS: epochs per run when not the study's own; EVAL_ARMS: the arms besides upstream and the base)
    local folder=experiments/$1 seeds=${2:-5} plan reuse=()
    plan=$(ls -t "$folder"/final-*/evaluation.json 2>/dev/null | head -1 || true)
    if [ -n "$plan" ] && [ "$folder/final_summary.csv" -nt "$plan" ]; then return; fi
    # Runs another evaluation made exactly so (same options, seed, epochs, data, code: the run key) are taken over, not
    # re-trained: from evaluations whose folders are still here, and from the committed tables of the others.
    for other in experiments/*/; do
        other=${other%/}
        if [ "$other" != "$folder" ] && ls "$other"/final-*/evaluation.json > /dev/null 2>&1; then
            reuse+=(--reuse "$other")
        fi
    done
    for table in docs/results/*.final_evaluation.csv docs/results/*.runs_so_far.csv; do
        if [ -f "$table" ] && [ "$table" != "docs/results/$1.final_evaluation.csv" ]; then reuse+=(--reuse "$table"); fi
    done
    echo "== evaluate $1"
    # Its finished runs, scored, kept every 10 minutes in docs/results/NAME.runs_so_far.csv: commit it, and a fresh
    # clone's evaluation takes them over (an evaluation can outlast the machine: 15 runs of up to 36 minutes).
    (while sleep 600; do $PY study/evaluate.py "$folder" --keep-done "docs/results/$1.runs_so_far.csv" || true; done) &
    local keeper=$!
    if [ -n "$plan" ]; then
        $PY study/evaluate.py "$folder" --resume --no-dashboard "${reuse[@]}"
    else
        # shellcheck disable=SC2086  # EVAL_ARMS: several words
        $PY study/evaluate.py "$folder" ${EVAL_ARMS:---top 1} --seeds "$seeds" ${EVAL_EPOCHS:+--epochs "$EVAL_EPOCHS"} \
            --no-dashboard "${reuse[@]}"
    fi
    kill "$keeper" 2> /dev/null || true
}

space() {  # space NAME [SEEDS] [STUDY ARGS...]: study and evaluation, their tables kept in docs/results/NAME.*
    local name=$1 seeds=$2
    shift 2
    if [ -f "docs/results/$name.final_summary.csv" ]; then return; fi
    study "$name" "$@"
    # The study's record and leaderboard (40 KB), all an evaluation needs of it: a fresh clone evaluates the study
    # from them instead of running it again (the critic study: 39 minutes, 52 beside the test suite).
    mkdir -p "docs/results/$name"
    cp "experiments/$name/study.json" "experiments/$name/leaderboard.parquet" "docs/results/$name/"
    echo "== study $name done: commit docs/results/$name/study.json docs/results/$name/leaderboard.parquet"
    evaluate "$name" "$seeds"
    cp "experiments/$name/final_summary.csv" "docs/results/$name.final_summary.csv"
    cp "experiments/$name/final_evaluation.csv" "docs/results/$name.final_evaluation.csv"
    cp "experiments/$name/leaderboard.csv" "docs/results/$name.leaderboard.csv"
    rm -f "docs/results/$name.runs_so_far.csv"  # the full table holds them now
    # the report's pictures that docs/results.md shows: the search, the factors, the 5 seeds on test patients
    $PY study/report.py "experiments/$name" --figures "experiments/$name/figures" > /dev/null
    mkdir -p "docs/results/$name"
    for figure in $FIGURES; do
        figure=experiments/$name/figures/$figure.png
        if [ -f "$figure" ]; then cp "$figure" "docs/results/$name/"; fi
    done
    if [[ $name == sched-* ]]; then  # the scheduler table's row, read later without the folder
        mkdir -p bench/schedulers
        $PY bench/schedulers.py "experiments/$name" --json "bench/schedulers/$name.json" > /dev/null
    fi
    echo "== $name done: commit docs/results/$name.* docs/results/$name/ bench/schedulers/"
}

main() {  # the whole campaign; bash reads all of it before running, so the file may be edited meanwhile
    space curriculum 5 --space curriculum
    # Issue 14, before the other spaces because its tables set the pruning defaults they use: every trial to the
    # full budget, then which signal at which rung predicts the final test quality. In batches (76 minutes for the
    # first 8 trials) whose records are committed, so that the study spans sessions.
    mkdir -p bench/signals
    for spec in $BATCHES; do
        IFS=: read -r batch seed trials <<< "$spec"
        record=bench/signals/signals-$batch.csv
        if [ -f "$record" ]; then continue; fi
        study "signals-$batch" --space all --scheduler none --num-samples "$trials" --seed "$seed"
        $PY bench/pruning_signals.py "experiments/signals-$batch" --export "$record" > /dev/null
        echo "== signal batch $batch done: commit $record"
    done
    if [ ! -f bench/pruning_signals.cpu.json ]; then
        $PY bench/pruning_signals.py bench/signals/signals-*.csv --json bench/pruning_signals.cpu.json \
            --csv bench/pruning_signals.cpu.csv --seed-spread docs/results/curriculum.final_summary.csv
    fi
    for name in $SPACES; do
        space "$name" 5 --space "$name"
    done
    # The signal study's best trial (one seed there), the named configuration stronger_critic, re-trained with 5 seeds
    # on test patients beside upstream and the base; its 1-epoch study (the base alone) only gives study/evaluate.py a
    # study to evaluate, which trains each run the CPU preset's epochs.
    epochs=$($PY -c 'from study.presets import PRESETS; print(PRESETS["cpu"].max_epochs)')
    EVAL_EPOCHS=$epochs EVAL_ARMS="--top 0 --config stronger_critic" space candidate 5 --space baseline \
        --num-samples 1 --max-epochs 1 --seed 20
    # Issue 14: TPE with ASHA, PBT and TPE with no pruning at the same compute (8 full trials' worth), each winner
    # re-trained with 3 seeds on test patients.
    for scheduler in asha pbt none; do
        space "sched-$scheduler" 3 --space optimizer --scheduler "$scheduler" --budget "${BUDGET:-288}"
    done
    if [ ! -f bench/schedulers.cpu.md ]; then
        $PY bench/schedulers.py bench/schedulers/sched-{asha,pbt,none}.json --json bench/schedulers.cpu.json \
            > bench/schedulers.cpu.md
    fi
    echo "== campaign done"
}

main "$@"
