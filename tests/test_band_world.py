"""checkpoints/harivo-band-baseline-verb: the first shipped model whose verb sets the direction (issue 16,
docs/results.md "verb phase"). Its world (band backdrop, edge-to-edge translations, cue3 labels) is chosen by
environment variables when `harivo.data.shapes` is imported, so each check runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harivo.pipeline import DEFAULT_CHECKPOINTS

CHECKPOINT = DEFAULT_CHECKPOINTS / "harivo-band-baseline-verb"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"  # motion_proxy.along_track: how far a track went
WORLD = {"HARIVO_CUE_STYLE": "cue3", "HARIVO_BACKDROP": "band", "HARIVO_TRACKS": "crossing"}
pytestmark = pytest.mark.skipif(not (CHECKPOINT / "config.json").is_file(), reason="no band-world checkpoint shipped")


def in_band_world(code: str) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter of the band world, one thread."""
    env = {**os.environ, **WORLD, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", "import torch; torch.set_num_threads(1)\n" + code], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_it_draws_the_prompted_trajectory_from_the_caption_alone():
    """At t = 999 (pure noise on its zero-SNR base) its clean-video prediction runs the prompted way on every one of
    the 15 held-out translation videos (time-reversal score +0.159 when shipped); the frozen T2I's has no direction."""
    out = in_band_world(f"""
import json
from harivo.trajectory_probe import probe
print(json.dumps(probe({str(CHECKPOINT)!r}, videos=16, split="held_out", timesteps=(999,))))
""")
    row = out["timesteps"]["999"]
    assert row["model"]["mean"] > 0.12 and row["model"]["positive"] == row["model"]["n"] == 15
    assert abs(row["frozen_t2i"]["mean"]) < 0.03


def test_the_verb_not_the_seed_sets_the_direction_on_held_out_prompts():
    """Two held-out prompts of the shipped proxy (seeds as `motion_proxy --split held_out`): with the verb the object
    crosses the frame the prompted way, from the same seed with the opposite verb the other way (shipped: +0.44 /
    −0.55 and +0.54 / −0.48 of the frame)."""
    out = in_band_world(f"""
import json, sys
import numpy as np
sys.path.insert(0, {str(SCRIPTS)!r})
from motion_proxy import along_track
from harivo.data.checker import judge
from harivo.data.shapes import ShapeSpec
from harivo.pipeline import GenerationSettings, HarivoPipeline
from harivo.verb_probe import swap_verb
pipe = HarivoPipeline.from_checkpoint({str(CHECKPOINT)!r})
moved = []
for seed, caption in ((6, "a purple circle is moving left to right on a white background"),
                      (9, "a red circle is moving up on a white background")):
    spec = ShapeSpec.from_caption(caption)
    row = []
    for s in (spec, swap_verb(spec)):
        frames = pipe(GenerationSettings(prompt=s.caption, seed=seed, num_inference_steps=15,
                                         capture_attention=False)).frames
        track = judge((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), s)["details"]["reading"].track
        row.append(along_track(track, spec.motion, frames.shape[2]))  # along the first prompt's direction
    moved.append(row)
print(json.dumps(moved))
""")
    for along, along_opposite in out:
        assert along > 0.25 and along_opposite < -0.25, out
