#!/usr/bin/env bash
# The GPU figures README.md and benchmarks/README.md still owe, in one run of under 12 minutes on one
# H100. Whoever next gets a machine with a CUDA GPU runs this first:
#
#   bash benchmarks/gpu.sh [--dry-run] [--budget SECONDS] [--work-dir DIR] [OUT]
#
# Steps, most valuable first; each has its own time limit (`timeout`, which also ends the processes
# a step started), a failed or timed-out step does not stop the next one:
#   1 env            python, packages, the CUDA device (benchmarks/gpu_env.py, nvidia-smi)
#   2 speed-torchao  rsvg bench speed --shape-of geochat-7b: int8wo, int4wo, fp8 and the bf16 reference
#                    at batch 1/8/32, 32 new tokens (writes the random 7B checkpoint first, 14 GB)
#   3 compiled       the compiled path (--compiled): bench_model.py, bf16, batch 1 and 8, compile times
#   4 speed-all      the same rsvg bench speed for every other precision (the rows of step 2 are
#                    reused, so OUT/speed/report.md ends with every precision in one table)
#   5 scene-10k      rsvg detect on a 10,000 x 10,000 px scene (529 tiles), bf16, 32 new tokens
#
# OUT (default build/gpu-<date>) gets every result: logs/NN-STEP.log per step, speed/ (report.md,
# metrics.json, speed_rows.jsonl), compiled/bench_model.json, scene-10k/ (GeoPackage, answer log) and
# summary.md, rewritten after every step. Bulky inputs (the random checkpoint, the scene) go to
# --work-dir (default build/gpu-work). Running the script again with the same OUT skips the steps that
# finished and resumes rsvg bench speed where it stopped. Each step's limit is its share of --budget
# (default 690 s) plus whatever the steps before it left unused. Exit status: 0 when every step
# finished, 1 otherwise.
#
# --dry-run prints every command without running anything (no GPU needed) and checks that each one's
# options parse with the real argument parser; it exits 1 when one does not.
#
# Python: $PYTHON, else .venv/bin/python, else python3. The repository is put first on PYTHONPATH, so
# an environment that has the dependencies but not the project installed works too.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY=0
OUT=""
WORK=""
BUDGET=690
GRACE=5 # seconds between timeout's TERM and KILL

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
    --dry-run) DRY=1 ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
    --budget=*) BUDGET=${1#*=} ;;
    --work-dir) WORK=${2:?--work-dir needs a folder}; shift ;;
    --work-dir=*) WORK=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *)
        [ -z "$OUT" ] || { echo "gpu.sh: one OUT folder only (got $OUT and $1)" >&2; exit 2; }
        OUT=$1
        ;;
    esac
    shift
done
case $BUDGET in '' | *[!0-9]*) echo "gpu.sh: --budget must be whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac

absolute() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
OUT=$(absolute "${OUT:-$REPO/build/gpu-$(date +%Y-%m-%d)}")
WORK=$(absolute "${WORK:-$REPO/build/gpu-work}")
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$REPO" || exit 2

SHAPES=$WORK/shapes # rsvg bench speed --work-dir: the checkpoint goes to $SHAPES/geochat-7b
SHAPE_MODEL=$SHAPES/geochat-7b
SCENE=$WORK/scene_10000.tif
# shellcheck disable=SC2054 # the commas are rsvg's list syntax, not array separators
SPEED=(bench speed --shape-of geochat-7b --device cuda --batch-sizes 1,8,32 --new-tokens 32
    --work-dir "$SHAPES" -o "$OUT/speed")
TORCHAO=int8wo,int4wo,fp8,bf16
EVERY=int8wo,int4wo,fp8,bf16,nf4,int8,fp16,fp4,fp32 # q4cal: needs a calibration, not under --shape-of

# name:seconds, in the order they run. The seconds add up to the default budget less the kill graces
# (690 - 5 x 5); another --budget scales them. A step may also use what the steps before it left.
STEPS=(env:30 speed-torchao:245 compiled:145 speed-all:125 scene-10k:120)
if [ "$BUDGET" -le $((${#STEPS[@]} * GRACE)) ]; then
    echo "gpu.sh: --budget $BUDGET leaves no time after the kill graces (${#STEPS[@]} x $GRACE s)" >&2
    exit 2
fi

# --- running (or, with --dry-run, printing and checking) one command --------------------------------
START=$(date +%s)
DEADLINE=$((START + BUDGET))
PARSE_FAILURES=0
STEP_INDEX=0
STEP_DEADLINE=0
STEP_LOG=/dev/null
STEP_RC=0
declare -A STATUS=() WALL=() LIMIT=()

word() { # one argument as the shell reads it back: bare when it is plain, else quoted
    if [[ $1 =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then printf '%s' "$1"; else printf '%q' "$1"; fi
}

shown() { # a command as it reads: `rsvg ...` for the CLI, `python ...` for a script
    local kind=$1 arg
    shift
    case $kind in
    rsvg) printf 'rsvg' ;;
    py) printf 'python' ;;
    sh) word "$1"; shift ;;
    esac
    for arg in "$@"; do printf ' '; word "$arg"; done
}

check_parses() { # the real argument parser, in a fresh interpreter (exit 2 and a usage line if not)
    local kind=$1
    shift
    case $kind in
    rsvg)
        "$PYTHON" -c 'import sys
from rsvg_desktop.cli.main import build_parser
build_parser().parse_args(sys.argv[1:])' "$@"
        ;;
    py)
        "$PYTHON" -c 'import importlib.util, sys
spec = importlib.util.spec_from_file_location("checked", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.build_parser().parse_args(sys.argv[2:])' "$@"
        ;;
    sh) command -v "$1" >/dev/null || [ "$1" = nvidia-smi ] ;; # no nvidia-smi without a GPU: fine here
    esac
}

run() { # run rsvg|py|sh ARGS...: one command of the current step, within the step's time limit
    local kind=$1 line
    shift
    line=$(shown "$kind" "$@")
    if [ "$DRY" = 1 ]; then
        printf '  $ %s\n' "$line"
        local err
        if ! err=$(check_parses "$kind" "$@" 2>&1 >/dev/null); then
            printf '  ^ DOES NOT PARSE: %s\n' "$(tail -n 1 <<<"$err")"
            PARSE_FAILURES=$((PARSE_FAILURES + 1))
        fi
        return 0
    fi
    [ "$STEP_RC" = 0 ] || return 0 # an earlier command of this step failed: the rest would too
    local left=$((STEP_DEADLINE - $(date +%s)))
    if [ "$left" -le 0 ]; then
        echo "# no time left for: $line" >>"$STEP_LOG"
        STEP_RC=124
        return 0
    fi
    local cmd
    case $kind in
    rsvg) cmd=("$PYTHON" -m rsvg_desktop.cli.main "$@") ;;
    py) cmd=("$PYTHON" "$@") ;;
    sh) cmd=("$@") ;;
    esac
    local t0 t1
    t0=$(date +%s.%N)
    printf '$ %s\n# %s, time limit %d s\n' "$line" "$(date -Is)" "$left" >>"$STEP_LOG"
    timeout -k "$GRACE" "$left" "${cmd[@]}" </dev/null >>"$STEP_LOG" 2>&1
    STEP_RC=$?
    t1=$(date +%s.%N)
    awk -v rc="$STEP_RC" -v t0="$t0" -v t1="$t1" 'BEGIN {
        printf "# exit %d after %.1f s%s\n", rc, t1 - t0, (rc == 124 || rc == 137) ? " (TIMED OUT)" : "" }' >>"$STEP_LOG"
}

share() { # seconds of the budget step $1 (1-based) is promised: its part of what the kill graces leave
    local i slots=0 usable=$((BUDGET - ${#STEPS[@]} * GRACE))
    for i in "${!STEPS[@]}"; do slots=$((slots + ${STEPS[$i]#*:})); done
    echo $((${STEPS[$(($1 - 1))]#*:} * usable / slots))
}

reserve_after() { # seconds promised to the steps after step $1 (1-based), their kill grace included
    local i total=0
    for ((i = $1 + 1; i <= ${#STEPS[@]}; i++)); do total=$((total + $(share "$i") + GRACE)); done
    echo "$total"
}

begin() { # begin NAME TITLE: returns 1 when the step is to be skipped (finished in an earlier run)
    local name=$1 title=$2 share
    STEP_INDEX=$((STEP_INDEX + 1))
    share=$(share "$STEP_INDEX")
    [ "${STEPS[$((STEP_INDEX - 1))]%%:*}" = "$name" ] || { echo "gpu.sh: step table out of order at $name" >&2; exit 2; }
    STEP_LOG=$OUT/logs/$(printf '%02d' "$STEP_INDEX")-$name.log
    STEP_RC=0
    if [ "$DRY" = 1 ]; then
        printf '\n[%d] %s (%s s of the budget), log %s\n' "$STEP_INDEX" "$name" "$share" "$STEP_LOG"
        printf '    %s\n' "$title"
        return 0
    fi
    if [ -e "${STEP_LOG%.log}.ok" ]; then
        STATUS[$name]="done in an earlier run"
        echo "[$STEP_INDEX] $name: done in an earlier run (delete ${STEP_LOG%.log}.ok to redo it)"
        return 1
    fi
    local now limit
    now=$(date +%s)
    limit=$((DEADLINE - now - $(reserve_after "$STEP_INDEX") - GRACE))
    LIMIT[$name]=$limit
    STEP_DEADLINE=$((now + limit))
    echo "[$STEP_INDEX] $name: $title (up to $limit s; log $STEP_LOG)"
    printf '=== %s: %s, %s, time limit %d s\n' "$name" "$title" "$(date -Is)" "$limit" >>"$STEP_LOG"
    STEP_T0=$now
    if [ "$limit" -le 0 ]; then
        echo "# no time left in the budget" >>"$STEP_LOG"
        STEP_RC=124
    fi
    return 0
}

end() { # record the step's outcome, then rewrite the summary
    local name=$1
    [ "$DRY" = 1 ] && return 0
    WALL[$name]=$(($(date +%s) - STEP_T0))
    if command -v nvidia-smi >/dev/null; then # memory still held after the step: a process left behind?
        nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader \
            | sed 's/^/# GPU memory in use after the step: /' >>"$STEP_LOG" 2>&1
    fi
    case $STEP_RC in
    0) STATUS[$name]=ok; touch "${STEP_LOG%.log}.ok" ;;
    124 | 137) STATUS[$name]="TIMED OUT" ;;
    *) STATUS[$name]="FAILED (exit $STEP_RC)" ;;
    esac
    echo "    -> ${STATUS[$name]} after ${WALL[$name]} s"
    summary
}

# --- the summary ----------------------------------------------------------------------------------
summary() {
    local f=$OUT/summary.md i name log
    {
        echo "# GPU figures: benchmarks/gpu.sh"
        echo
        echo "- run: $(date -d "@$START" -Is) to $(date -Is), budget $BUDGET s"
        echo "- commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' (with local changes)')"
        echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || echo 'nvidia-smi not found')"
        echo "- python: $PYTHON; checkpoint and scene in $WORK"
        echo
        echo "| # | step | status | wall (s) | limit (s) | log |"
        echo "|---|---|---|---|---|---|"
        for i in "${!STEPS[@]}"; do
            name=${STEPS[$i]%%:*}
            log=logs/$(printf '%02d' $((i + 1)))-$name.log
            echo "| $((i + 1)) | $name | ${STATUS[$name]:-not run} | ${WALL[$name]:-} | ${LIMIT[$name]:-} | [$log]($log) |"
        done
        echo
        echo "## Environment"
        echo
        grep -vE '^(#|\$|===)' "$OUT/logs/01-env.log" 2>/dev/null | sed -n '1,40p' | sed 's/^/    /'
        echo
        echo "## rsvg bench speed, GeoChat-7B shape (steps 2 and 4)"
        echo
        if [ -f "$OUT/speed/report.md" ]; then cat "$OUT/speed/report.md"; else echo "(no report: see the logs)"; fi
        echo
        echo "## The compiled path (step 3; uncompiled reference: bf16 in the table above)"
        echo
        log=$OUT/logs/03-compiled.log
        if grep -q '^|' "$log" 2>/dev/null; then grep -E '^(\||- )' "$log"; else echo "(no table: see the log)"; fi
        grep -E 'bf16 batch [0-9]+:|first batch of shape|Error|error' "$log" 2>/dev/null | grep -vE '^(\$|===)' \
            | sed 's/^/    /' | tail -n 20
        echo
        echo "## 10,000 x 10,000 px scene (step 5)"
        echo
        log=$OUT/logs/05-scene-10k.log
        echo "The wall time of rsvg detect (its '# exit' line) includes starting and loading the model."
        echo
        grep -E '^\$ |^[0-9]+/[0-9]+ tiles|tiles to answer|^# exit|^model:' "$log" 2>/dev/null | sed 's/^/    /'
        grep -E '^tiles \[' "$log" 2>/dev/null | tail -n 1 | sed 's/^/    last progress: /'
    } >"$f"
}

# --- the steps ------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    echo "gpu.sh --dry-run: OUT $OUT, work folder $WORK, budget $BUDGET s"
    echo "where rsvg is $PYTHON -m rsvg_desktop.cli.main and python is $PYTHON (PYTHONPATH starts with $REPO)"
else
    mkdir -p "$OUT/logs" "$OUT/compiled" "$OUT/scene-10k" "$WORK" || exit 2
    echo "gpu.sh: results in $OUT (summary.md), checkpoint and scene in $WORK, budget $BUDGET s"
fi

if begin env "python, packages and the CUDA device"; then
    run sh nvidia-smi
    run sh df -h "$WORK"
    run py benchmarks/gpu_env.py
    end env
fi

if begin speed-torchao "rsvg bench speed, GeoChat-7B shape: int8wo, int4wo, fp8, bf16 at batch 1/8/32"; then
    run rsvg "${SPEED[@]}" --precisions "$TORCHAO"
    end speed-torchao
fi

if begin compiled "the compiled path (--compiled), bf16, batch 1 and 8, with compile times"; then
    # bench_model.py builds its own random 7B unless its work folder already has one: lend it step 2's
    if [ "$DRY" = 1 ] || { [ -f "$SHAPE_MODEL/rsvg_manifest.json" ] && [ ! -e "$WORK/bench_model/geochat7b-random" ]; }; then
        run sh mkdir -p "$WORK/bench_model"
        run sh ln -sfn "$SHAPE_MODEL" "$WORK/bench_model/geochat7b-random"
    fi
    run py benchmarks/bench_model.py --geochat7b-random --device cuda --compiled --precisions bf16 \
        --tiles 8 --batch-sizes 1,8 --max-new-tokens 32 --repeat 1 --workdir "$WORK/bench_model" \
        --json "$OUT/compiled/bench_model.json"
    end compiled
fi

if begin speed-all "rsvg bench speed, GeoChat-7B shape: every precision at batch 1/8/32 (step 2's rows reused)"; then
    run rsvg "${SPEED[@]}" --precisions "$EVERY"
    end speed-all
fi

if begin scene-10k "rsvg detect on a 10,000 x 10,000 px scene, bf16, 32 new tokens per tile"; then
    run py benchmarks/make_scene.py --size 10000 -o "$SCENE"
    run rsvg detect "$SCENE" --query airplanes --task refer --model "$SHAPE_MODEL" --precision bf16 \
        --device cuda --max-new-tokens 32 -o "$OUT/scene-10k/bf16.gpkg" --overwrite
    end scene-10k
fi

if [ "$DRY" = 1 ]; then
    echo
    if [ "$PARSE_FAILURES" -gt 0 ]; then
        echo "gpu.sh --dry-run: $PARSE_FAILURES command(s) do not parse"
        exit 1
    fi
    echo "gpu.sh --dry-run: every command parses"
    exit 0
fi

summary
failed=0
for step in "${STEPS[@]}"; do
    case ${STATUS[${step%%:*}]:-} in ok | "done in an earlier run") ;; *) failed=1 ;; esac
done
echo "gpu.sh: done in $(($(date +%s) - START)) s; summary in $OUT/summary.md"
exit "$failed"
