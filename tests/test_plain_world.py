"""The plain world (objects in their caption's colour alone; a translation's frames show a strip on the edge the
object heads for; translations run edge to edge) and its shipped models: `checkpoints/shapes-sd-plain`,
`checkpoints/harivo-plain-<variant>`, their learning curves in `assets/long-runs/`. The world is chosen by
environment variables when `harivo.data.shapes` is imported, so world-specific checks run in a fresh interpreter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import in_world

from harivo.data.checker import DEFAULT_THRESHOLDS, flicker_score, world_thresholds
from harivo.pipeline import DEFAULT_CHECKPOINTS

WORLD = {"HARIVO_CUE_STYLE": "plain", "HARIVO_BACKDROP": "band", "HARIVO_TRACKS": "crossing"}
ROOT = Path(__file__).resolve().parents[1]
LONG_RUNS = ROOT / "assets" / "long-runs"


def in_plain_world(code: str) -> dict:
    return in_world(WORLD, "import torch; torch.set_num_threads(1)\nimport sys; sys.path.insert(0, 'scripts')\n" + code)


def shipped(name: str) -> Path:
    folder = DEFAULT_CHECKPOINTS / name
    if not ((folder / "config.json").is_file() or (folder / "model_index.json").is_file()):
        pytest.skip(f"{name} is not shipped")
    return folder


def test_the_world_draws_each_object_in_its_caption_colour_and_names_itself():
    """No mark or label on the object (the interior is the caption's colour: off-colour share 0 on every prompt of
    the evaluation set), the strip on the leading edge of every translation, the world's version names it."""
    out = in_plain_world("""
import json
from caption_colour import video_share
from harivo.data.shapes import WORLD_VERSION, backdrop, render_video, world_record
from harivo.evaluate import eval_prompts
shares, strips = [], []
for spec in eval_prompts(8, 10):
    frames = render_video(spec, 0)[0]
    shares.append(video_share(frames, spec.colour))
    strips.append(backdrop(spec, 64) is not None)
motions = [s.motion for s in eval_prompts(8, 10)]
print(json.dumps({"version": WORLD_VERSION, "record": world_record(), "shares": shares, "strips": strips,
                  "motions": motions}))
""")
    assert out["version"] == "plain-crossing-band" and out["record"]["env"] == WORLD
    assert max(out["shares"]) == 0.0
    translations = ("moving left to right", "moving right to left", "moving up", "moving down")
    assert out["strips"] == [m in translations for m in out["motions"]]


def test_a_label_world_fails_the_caption_colour_test():
    """The measure sees what a visitor sees: the cue3 world's label covers a large part of the object."""
    out = in_world({"HARIVO_CUE_STYLE": "cue3", "HARIVO_BACKDROP": "band", "HARIVO_TRACKS": "crossing"},
                   "import sys, json; sys.path.insert(0, 'scripts')\nfrom caption_colour import video_share\n"
                   "from harivo.data.shapes import ShapeSpec, render_video\n"
                   "spec = ShapeSpec('red', 'circle', 'moving up', 'gray')\n"
                   "print(json.dumps(video_share(render_video(spec, 0)[0], 'red')))")
    assert out > 0.1


def test_the_app_reads_a_plain_world_video_as_the_evaluation_does(tmp_path):
    """A checkpoint's recorded world sets the thresholds the app reads its videos with: the flicker score computed
    here (default world) equals the one computed in the plain world itself, which the evaluation uses."""
    out = in_plain_world(f"""
import json, numpy as np
from harivo.data.checker import flicker_score
from harivo.data.shapes import ShapeSpec, render_video, world_record
frames = render_video(ShapeSpec("blue", "star", "moving left to right", "white"), 3)[0]
np.save({str(tmp_path / "v.npy")!r}, frames)
print(json.dumps({{"flicker": flicker_score(frames), "world": world_record()}}))
""")
    frames = np.load(tmp_path / "v.npy")
    assert flicker_score(frames, world_thresholds(out["world"])) == pytest.approx(out["flicker"], abs=1e-9)
    assert world_thresholds(None) == DEFAULT_THRESHOLDS


def test_shipped_t2i_is_the_plain_worlds_and_its_eval_reproduces(tmp_path):
    """checkpoints/shapes-sd-plain/eval.json (stock StableDiffusionPipeline, 143 prompts, checker-judged) is what the
    weights draw today."""
    folder = shipped("shapes-sd-plain")
    recorded = json.loads((folder / "eval.json").read_text())
    assert json.loads((folder / "training.json").read_text())["world"]["env"] == WORLD
    assert recorded["prompts"] == 143  # asked for 160 (--eval-prompts 160): 107 seen + all 36 held-out combinations
    out = in_plain_world(f"""
import json
from harivo.stage1.config import T2IConfig
from harivo.stage1.evaluation import evaluate
cfg = T2IConfig(run_dir={str(tmp_path)!r}, eval_prompts=160, eval_steps={recorded["steps"]},
                eval_guidance={recorded["guidance"]})
again = evaluate(cfg, {str(folder)!r}, record=False)
print(json.dumps({{"rows": again["rows"], "all": again["all"]}}))
""")
    agree = [a["read"] == b["read"] for a, b in zip(out["rows"], recorded["rows"])]
    assert len(agree) == len(recorded["rows"]) and sum(agree) >= len(agree) - 2
    assert out["all"]["all"] == pytest.approx(recorded["all"]["all"], abs=0.015)


@pytest.mark.parametrize("variant", ["baseline", "full"])
def test_shipped_models_name_their_world_sampling_and_learning_curve(variant):
    """Each shipped row records its world and the sampling it was measured at (the app and the CLI start there), and
    its weights are the last point of its learning curve (assets/long-runs/curve-<row>.json)."""
    folder = shipped(f"harivo-plain-{variant}")
    config = json.loads((folder / "config.json").read_text())
    assert config["world"]["env"] == WORLD and config["variant"] == variant
    assert config["sampling"] == {"cfg_high": 12.5, "cfg_low": 2.5, "cfg_switch": 0.7, "mg_alpha": 40.0}
    training = json.loads((folder / "training.json").read_text())
    curve = json.loads((LONG_RUNS / f"curve-{variant}.json").read_text())
    last = curve["points"][-1]
    assert curve["step_offset"] + training["steps"] == last["step"] and training["steps"] == last["run_steps"]
    assert curve["eval"] == ["--seen-prompts", "8", "--held-out-prompts", "10", "--seeds", "1", "--no-sweep",
                             "--cfg-low", "2.5"]


def test_the_verb_not_the_seed_sets_the_direction():
    """HARIVO's full model at its recommended sampling: the app's first prompt crosses the frame to the right from
    seeds 0 and 1 (shipped: +0.64 of the frame each), and from the same seeds with the opposite verb to the left."""
    checkpoint = shipped("harivo-plain-full")
    out = in_plain_world(f"""
import json
import numpy as np
from motion_proxy import along_track
from harivo.data.checker import judge
from harivo.data.shapes import ShapeSpec
from harivo.pipeline import HarivoPipeline
from harivo.settings import GenerationSettings
from harivo.verb_probe import swap_verb
pipe = HarivoPipeline.from_checkpoint({str(checkpoint)!r})
spec = ShapeSpec("red", "circle", "moving left to right", "gray")
moved = []
for seed in (0, 1):
    row = []
    for s in (spec, swap_verb(spec)):
        frames = pipe(GenerationSettings.from_flat(prompt=s.caption, seed=seed, capture_attention=False,
                                                   **pipe.sampling_defaults)).frames
        track = judge((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), s)["details"]["reading"].track
        row.append(along_track(track, spec.motion, frames.shape[2]))
    moved.append(row)
print(json.dumps(moved))
""")
    for along, along_opposite in out:
        assert along > 0.25 and along_opposite < -0.25, out
