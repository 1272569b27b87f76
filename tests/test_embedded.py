"""The shipped checkpoints (checkpoints/): what they claim about themselves holds.

These load the real embedded weights (a few MB) and run a handful of sampling steps, so they take seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

from harivo.explorer import training_note
from harivo.explorer.models import VARIANT_PATTERN
from harivo.pipeline import DEFAULT_CHECKPOINTS, VARIANTS, GenerationSettings, HarivoPipeline
from harivo.sampling import CFGSchedule, MGConfig
from harivo.train.stage2.base import load_base

T2I = "shapes-sd"  # the plain world's T2I, every shipped row's frozen base
SHIPPED = [v for v in VARIANTS if (DEFAULT_CHECKPOINTS / VARIANT_PATTERN.format(variant=v) / "config.json").is_file()]
pytestmark = pytest.mark.skipif(not (DEFAULT_CHECKPOINTS / T2I / "unet").is_dir(),
                                reason="no embedded checkpoints in this checkout")


def test_every_shipped_variant_was_trained_on_the_shipped_t2i_with_one_recipe():
    if not SHIPPED:
        pytest.skip("no HARIVO checkpoint shipped yet")
    base = load_base(str(DEFAULT_CHECKPOINTS / T2I))
    runs = {v: json.loads((DEFAULT_CHECKPOINTS / VARIANT_PATTERN.format(variant=v) / "training.json").read_text()) for v in SHIPPED}
    for v, run in runs.items():
        assert run["variant"] == v
        assert run["base_fingerprints"] == base.fingerprints, f"{v} was trained on other T2I weights"
        assert run["steps"] == sum(s["end_step"] - s["start_step"] for s in run["segments"])
        assert run["command"].startswith("python -m harivo.train ")
    # Table 1 rows compare like with like: same schedule, data and batch; finished ones also the same steps
    assert len({(r["max_steps"], r["batch_size"], r["train_videos"]) for r in runs.values()}) == 1
    assert len({r["steps"] for r in runs.values() if r["finished"]}) <= 1
    for v, run in runs.items():  # an unfinished one says so wherever it is offered
        assert run["finished"] == (run["steps"] >= run["max_steps"])
        note = training_note(DEFAULT_CHECKPOINTS / VARIANT_PATTERN.format(variant=v))
        assert (f"{run['steps']}/{run['max_steps']}" in note) != run["finished"], (v, note)
    total_mb = sum(p.stat().st_size for p in DEFAULT_CHECKPOINTS.rglob("*") if p.is_file()) / 2**20
    assert total_mb < 50


def test_shipped_dc_variants_did_not_collapse():
    """The first shipped L_DC runs collapsed (h-space std 20-45, cosine between videos 0.999, L_DC = log 256 = 5.55)."""
    for v in SHIPPED:
        folder = DEFAULT_CHECKPOINTS / VARIANT_PATTERN.format(variant=v)
        if not json.loads((folder / "config.json").read_text())["components"]["losses"]["dc"]:
            continue
        run = json.loads((folder / "training.json").read_text())
        # collapsed, every projection is the same unit vector and L_DC = log|Q| (+ log(2b − 2) live negatives)
        assert run["final_loss_terms"]["loss_dc"] < np.log(256) - 0.5, (v, run["final_loss_terms"])
        assert {"std", "mean_cos_between_videos"} <= set(run["hspace"])  # recorded for the next reader


@pytest.mark.skipif("baseline" not in SHIPPED, reason="no baseline checkpoint shipped yet")
def test_shipped_baseline_is_a_diffusers_animatediff_motion_adapter():
    # docs/design.md's oracle on the real embedded weights: diffusers alone, from the two folders, draws our video
    folder = DEFAULT_CHECKPOINTS / VARIANT_PATTERN.format(variant="baseline")
    adapter = MotionAdapter.from_pretrained(folder / "motion_adapter")
    ad = AnimateDiffPipeline.from_pretrained(DEFAULT_CHECKPOINTS / T2I, motion_adapter=adapter)
    ad.scheduler = DDIMScheduler.from_config(ad.scheduler.config)
    ad.set_progress_bar_config(disable=True)
    prompt = "a red circle is moving left to right on a gray background"
    ref = ad(prompt, num_frames=16, num_inference_steps=4, guidance_scale=7.5, height=64, width=64, output_type="np",
             generator=torch.Generator().manual_seed(0)).frames[0]
    ours = HarivoPipeline.from_checkpoint(folder)(GenerationSettings(
        prompt=prompt, seed=0, num_frames=16, num_inference_steps=4, cfg=CFGSchedule.constant(7.5),
        mg=MGConfig(enabled=False), capture_attention=False))
    assert ref.shape == (16, 64, 64, 3)
    assert np.abs(ours.frames - ref).max() <= 1e-4
