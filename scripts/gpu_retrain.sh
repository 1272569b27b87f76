#!/bin/bash
# The retrain in one call of a lent GPU (the `device` tool; ran on one H200): the band world's T2I trained on,
# then stage 2 of the four Table 1 variants on it (phase 1, then the verb phase) and two verb-phase ablations of
# `full`, all runs of a phase side by side on the one GPU. Every run stops at a deadline (--max-minutes), saves and
# exports whatever step it reached, so nothing is lost if the GPU is slower than planned; the folders come back as
# tars under $OUT (the device tool returns at most 8 files). Locally, a dry run on the CPU in seconds:
#   T2I_STEPS=2 P1_STEPS=2 VERB_STEPS=2 VIDEOS=16 T2I_VIDEOS=16 NO_WHEELS=1 P1_END=30 END=40 R=/tmp/g OUT=/tmp/g-out \
#       bash scripts/gpu_retrain.sh
# On the device, whose image has torch and transformers but not diffusers: fetch the wheels here first
#   echo /.whl/ >> .git/info/exclude; for w in diffusers==0.42.1 importlib_metadata==10.2.0; do
#     python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl $w; done
# then `run` with carry [".whl"], timeout_s 590:  bash scripts/gpu_retrain.sh
# The next lent GPU: the four Table 1 rows on checkpoints/shapes-sd-band with the verb phase that keeps full's
# frames (this call's speeds: phase 1 of `full` 4.7 min beside the three others, a verb phase 1.4 min):
#   T2I_STEPS=0 PLAN=table1 P1_END=6.5 END=8.5 bash scripts/gpu_retrain.sh
set -u
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT=${OUT:-runs/gpu-out}; R=${R:-/tmp/g}
T2I_STEPS=${T2I_STEPS:-6000}; T2I_MIN=${T2I_MIN:-2.6}; T2I_VIDEOS=${T2I_VIDEOS:-4000}
P1_STEPS=${P1_STEPS:-2000}; VERB_STEPS=${VERB_STEPS:-600}; VIDEOS=${VIDEOS:-2000}
P1_END=${P1_END:-6.9}   # minutes after START by which phase 1 must have stopped
END=${END:-8.9}         # minutes after START by which every run must have stopped (then the tars)
THREADS=${THREADS:-2}
L=$R/logs  # every log, returned as one tar (the device tool returns at most 8 files)
mkdir -p "$OUT" "$R" "$L"
export HARIVO_CUE_STYLE=cue3 HARIVO_BACKDROP=band HARIVO_TRACKS=crossing PYTHONUNBUFFERED=1 OMP_NUM_THREADS=$THREADS
export PYTHONPATH=$PWD
if [ -z "${NO_WHEELS:-}" ] && [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
PY=${PY:-python3}
log() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/summary.txt"; }
left() { python3 -c "print(max(0.2, round($1 - ($(date +%s) - $START) / 60, 2)))"; }  # minutes until deadline $1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$L/gpu.txt" 2>&1
log "gpu: $(cat "$L/gpu.txt")"

# --- the T2I, trained on from shapes-sd-band (its content was 65 %), beside the stage-2 latent cache ---------------
T2I=$R/shapes-sd-band2
T2I_PID=
if [ "$T2I_STEPS" -gt 0 ]; then
$PY -m harivo.train_t2i --config configs/shapes-t2i.yaml --stage unet --init-from checkpoints/shapes-sd-band \
    --run-dir "$R/t2i" --output-dir "$T2I" --noise-offset 0.15 --text-probe-weight 0.1 --zero-snr \
    --unet-steps "$T2I_STEPS" --unet-lr 3e-4 --unet-warmup-steps 100 --train-videos "$T2I_VIDEOS" \
    --num-threads 4 --max-minutes "$T2I_MIN" --sample-every 100000 > "$L/t2i.log" 2>&1 &
T2I_PID=$!
fi
S2=(--config configs/shapes-harivo.yaml --cache-dir "$R/cache" --resume --sample-every 0 --num-threads "$THREADS"
    --checkpoint-every 250
    --train-videos "$VIDEOS" --max-steps "$P1_STEPS" --timestep-bias-multiplier 9 --timestep-bias-portion 0.1)
# the latents only depend on the VAE's encoder, which the T2I run does not touch: encode them now
$PY -c "
import sys, torch
from harivo.stage2.base import load_base
from harivo.stage2.config import parse_config
from harivo.stage2.data import load_training_data
cfg = parse_config(sys.argv[1:])
load_training_data(cfg, load_base(cfg.base_model), torch.device('cuda' if torch.cuda.is_available() else 'cpu'))
" "${S2[@]}" --base-model checkpoints/shapes-sd-band > "$L/cache.log" 2>&1 || log "latent cache FAILED"
[ -n "$T2I_PID" ] && { wait $T2I_PID || log "t2i exited with $?"; }
if [ -f "$T2I/unet/config.json" ]; then BASE=$T2I; else BASE=checkpoints/shapes-sd-band; log "no new t2i: stage 2 on $BASE"; fi
log "t2i: $(grep -o '"steps": [0-9]*' "$T2I/training.json" 2>/dev/null | head -1); stage 2 on $BASE"

# --- stage 2: phase 1 of each variant, then its verb-phase branches (each a copy of its phase-1 run) ------------
branch() {  # variant name extra-flags...: the verb phase from a copy of the variant's finished phase 1
    local v=$1 name=$2; shift 2
    cp -r "$R/p1/run-$v" "$R/vp/run-$name"
    $PY -m harivo.train "${S2[@]}" --variant "$v" --base-model "$BASE" --out "$R/vp/harivo-shapes-$name" \
        --run-dir "$R/vp/run-$name" --verb-phase-steps "$VERB_STEPS" --verb-phase-min-timestep 900 \
        --verb-phase-lr 1e-3 --max-minutes "$(left "$END")" "$@" > "$L/vp_$name.log" 2>&1
    log "verb $name: exit $? $(grep -o '"steps": [0-9]*' "$R/vp/harivo-shapes-$name/training.json" 2>/dev/null | head -1)"
}
chain() {  # variant, then its branches as "name:flags"
    local v=$1; shift
    $PY -m harivo.train "${S2[@]}" --variant "$v" --base-model "$BASE" --out "$R/p1/harivo-shapes-$v" \
        --run-dir "$R/p1/run-$v" --max-minutes "$(left "$P1_END")" > "$L/p1_$v.log" 2>&1
    log "phase 1 $v: exit $? $(grep -o '"finished": [a-z]*' "$R/p1/harivo-shapes-$v/training.json" 2>/dev/null)"
    grep -q '"finished": true' "$R/p1/harivo-shapes-$v/training.json" 2>/dev/null || return
    for b in "$@"; do
        # shellcheck disable=SC2086
        branch "$v" "${b%%:*}" ${b#*:} &
    done
    wait
}
mkdir -p "$R/p1" "$R/vp"
if [ "${PLAN:-explore}" = explore ]; then  # what ran on 2026-11-30 (docs/results.md "The verb phase on a GPU")
    chain baseline "baseline-d:--verb-phase-motions directed" "baseline-t:--verb-phase-motions translations" &
    chain trs-dc "trs-dc-d:--verb-phase-motions directed" &
    chain mapping "mapping-d:--verb-phase-motions directed" &
    chain full "full-d:--verb-phase-motions directed" "full-t:--verb-phase-motions translations" \
        "full-dm:--verb-phase-motions directed --verb-phase-train motion" &
else  # PLAN=table1 (T2I_STEPS=0): the four Table 1 rows with the one recipe that keeps full's frames
    for v in baseline trs-dc mapping full; do
        chain $v "$v-verb:--verb-phase-motions translations --verb-phase-train motion" &
    done
fi
wait
log "training done"

# --- back: checkpoints (+ the states of runs that did not finish, to resume on the CPU) --------------------------
tar -C "$R" -czf "$OUT/t2i.tgz" shapes-sd-band2 t2i/loss_unet.csv t2i/t2i_config.yaml 2>/dev/null
tar -C "$R/p1" -czf "$OUT/p1.tgz" $(cd "$R/p1" && ls -d harivo-shapes-* 2>/dev/null)
tar -C "$R/vp" -czf "$OUT/vp_a.tgz" $(cd "$R/vp" && ls -d harivo-shapes-{baseline,trs-dc,mapping}-* 2>/dev/null)  # 2 to 4 checkpoints
tar -C "$R/vp" -czf "$OUT/vp_b.tgz" $(cd "$R/vp" && ls -d harivo-shapes-full-* 2>/dev/null)
# a training state is ~10 MB: the two costliest unfinished runs come back, one tar each (the tool's 16 MB a file)
n=0
for d in p1/run-full p1/run-mapping p1/run-trs-dc p1/run-baseline $(cd "$R" && ls -d vp/run-* 2>/dev/null); do
    o=${d/run-/harivo-shapes-}
    [ -d "$R/$d" ] && ! grep -q '"finished": true' "$R/$o/training.json" 2>/dev/null || continue
    log "unfinished: $d"
    [ $n -lt 2 ] && n=$((n + 1)) && tar -C "$R" -czf "$OUT/state_$n.tgz" "$d"
done
tar -C "$R" -czf "$OUT/logs.tgz" logs
ls -la "$OUT" | tee -a "$OUT/summary.txt"
log "end"
