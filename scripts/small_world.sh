#!/bin/bash
# A cheaper design, the small world: the band world (cue3 labels, edge-to-edge translations, the band) drawn
# at 32 px with large objects (HARIVO_OBJECTS=large), so that a stage-2 step costs a fraction of the 64-px world's.
# Everything warm-starts from checkpoints/shapes-sd-band and runs on the 2 CPU cores of a session; each step resumes
# where it stopped (rerun the same command):
#   bash scripts/small_world.sh vae                 # the VAE at 32 px (6400 steps, 21 min on 2 threads)
#   bash scripts/small_world.sh t2i                 # the T2I UNet + text encoder at 32 px, then its --eval
#   bash scripts/small_world.sh p1 full             # stage 2's phase 1 (2000 steps), one thread
#   bash scripts/small_world.sh p1 baseline         #   (the two side by side on 2 cores)
#   bash scripts/small_world.sh verb full translations    # the verb phase (600 steps at t >= 900) on a copy of phase 1
#   bash scripts/small_world.sh smooth full translations  # the smoothing phase (400 steps at lr 1e-4), exported
# R (default runs/small) holds every run; THREADS (default: 2 for vae/t2i, 1 for the rest) the torch threads.
set -eu
cd "$(dirname "$0")/.."
export HARIVO_CUE_STYLE=cue3 HARIVO_BACKDROP=band HARIVO_TRACKS=crossing HARIVO_OBJECTS=large PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD
R=${R:-runs/small}
PY=${PY:-python}
T2I=$R/shapes-sd-small
mkdir -p "$R"
S1=(--config configs/shapes-t2i.yaml --init-from checkpoints/shapes-sd-band --image-size 32 --run-dir "$R/t2i"
    --output-dir "$T2I" --resume)
TA=(--video-size 32 --train-videos 2000 --timestep-bias-multiplier 9 --timestep-bias-portion 0.1)  # fixed on resume
S2=(--config configs/shapes-harivo.yaml --base-model "$T2I" --cache-dir "$R/cache" --resume --sample-every 0
    --checkpoint-every 100 --max-steps 2000 "${TA[@]}")
VP=(--verb-phase-steps 600 --verb-phase-min-timestep 900 --verb-phase-lr 1e-3)
verb_train() { [ "$1" = baseline ] && echo all || echo motion; }  # full/mapping keep the mapping network fixed
case "${1:-}" in
vae)
    $PY -m harivo.train_t2i "${S1[@]}" --stage vae --vae-steps 6400 --vae-warmup-steps 20 --vae-lr 1e-3 \
        --vae-eval-every 800 --num-threads "${THREADS:-2}" ;;
t2i)
    $PY -m harivo.train_t2i "${S1[@]}" --stage unet --noise-offset 0.15 --text-probe-weight 0.1 --zero-snr \
        --unet-steps "${UNET_STEPS:-4500}" --unet-lr 3e-4 --unet-warmup-steps 100 --sample-every 100000 \
        --num-threads "${THREADS:-2}" --max-minutes "${MINUTES:-0}" --eval ;;
p1)
    v=$2
    $PY -m harivo.train "${S2[@]}" --variant "$v" --out "$R/harivo-small-$v-p1" --run-dir "$R/run-$v" \
        --num-threads "${THREADS:-1}" ;;
verb)
    v=$2 m=$3
    [ -d "$R/run-$v-$m" ] || cp -r "$R/run-$v" "$R/run-$v-$m"
    $PY -m harivo.train "${S2[@]}" --variant "$v" --out "$R/harivo-small-$v-$m" --run-dir "$R/run-$v-$m" \
        --num-threads "${THREADS:-1}" "${VP[@]}" --verb-phase-motions "$m" --verb-phase-train "$(verb_train "$v")" ;;
smooth)
    v=$2 m=$3
    $PY scripts/verb_finetune.py --variant "$v" --state "$R/run-$v-$m/state" --base-model "$T2I" \
        --cache-dir "$R/cache" --train-args "${TA[*]} ${VP[*]} --verb-phase-motions $m
            --verb-phase-train $(verb_train "$v") --checkpoint-every 100" \
        --motions all --steps 400 --lr 1e-4 --min-timestep 0 --every 200 --threads "${THREADS:-1}" --out "$R/sm-$v-$m"
    $PY -c '
import sys
from harivo.fileio import load_tensors
from harivo.model import HarivoVideoModel
verb, weights, out = sys.argv[1:]
model = HarivoVideoModel.from_pretrained(verb)
unexpected = model.load_state_dict(load_tensors(weights, what="smoothing weights"), strict=False).unexpected_keys
assert not unexpected, unexpected
model.save_pretrained(out)
print("exported", out)
' "$R/harivo-small-$v-$m" "$R/sm-$v-$m/weights.safetensors" "$R/harivo-small-$v-$m-smooth" ;;
*)
    echo "usage: bash scripts/small_world.sh vae | t2i | p1 VARIANT | verb VARIANT MOTIONS | smooth VARIANT MOTIONS" >&2
    exit 2 ;;
esac
