#!/usr/bin/env bash
# The GPU check: one prepared command for a lent GPU machine (the `device` tool runs it in the repository root).
# The SD1.5 / AnimateDiff v2-shaped model on random weights, float16 on CUDA, 16 frames at 256² and 512², 25 steps:
# seconds per video and peak CUDA memory of HARIVO full without and with the app's attention capture (`harivo_app`),
# against diffusers' AnimateDiffPipeline on the same weights and settings, and one training step of `baseline` and
# `full`. Writes $OUT/bench_gpu.json (assets/bench_gpu.json without $OUT); docs/performance.md takes its numbers.
#
# The GPU machines hold torch, transformers, accelerate, peft, einops, safetensors, imageio and matplotlib but not
# diffusers, and fetch nothing. Carry it as a wheel: here, once (Python 3.12 there; add any package the import names):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1
# (on cuda the benchmark leaves out the app figure, the one part that needs moviepy and gradio)
# then: run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=600)
set -euo pipefail
out="${OUT:-assets}"
mkdir -p "$out"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
python3 -m harivo.bench --device cuda --sd15-sizes 256,512 --sd15-dtype float16 --repeats 3 --json "$out/bench_gpu.json"
