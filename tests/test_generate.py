"""Pipeline behaviour (same seed ⇒ same video, capture on/off, attention maps, bad input) and the CLI."""

import json

import numpy as np
import pytest
import torch

from harivo import generate
from harivo.pipeline import GenerationSettings, HarivoPipeline
from harivo.sampling import CFGSchedule, MGConfig
from harivo.tiny import save_tiny_checkpoint

from conftest import build_pipeline

PROMPT = "a red circle is moving left to right on a gray background"


def small(**kw):
    base = dict(prompt=PROMPT, seed=1, num_frames=4, num_inference_steps=3)
    base.update(kw)
    return GenerationSettings(**base)


def test_same_seed_same_video_bit_for_bit(tiny):
    pipe = build_pipeline(tiny)
    a, b = pipe(small()), pipe(small())
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, pipe(small(seed=2)).frames)


def test_capture_on_off_identical_and_maps_are_distributions(tiny):
    pipe = build_pipeline(tiny)
    on, off = pipe(small()), pipe(small(capture_attention=False))
    assert off.attention is None
    assert np.array_equal(on.frames, off.frames)
    rec = on.attention
    assert rec.tokens[0] == "<sot>" and rec.tokens[-3:] == ["<f1>", "<f2>", "<f3>"]
    assert "red" in rec.tokens and rec.token_kinds.count("frame") == 3
    assert len(rec.timesteps) == 3
    for res, maps in rec.per_step.items():
        assert maps.shape[:3] == (3, 1, 4)  # steps, videos, frames
        assert torch.all(maps >= 0)
    # the recorded columns are a subset of the keys: their sum is ≤ 1, and the probabilities
    # over all keys sum to 1 (checked on a full record of one layer below)
    assert torch.all(rec.maps().sum(-1) <= 1 + 1e-5)


def test_cross_attention_over_all_keys_sums_to_one(tiny):
    pipe = build_pipeline(tiny)
    ids = list(range(77 + 3))  # every key: 77 text tokens + 3 frame tokens
    pipe.attention_tokens = lambda _ids, frame_tokens: (ids, [str(i) for i in ids], ["text"] * 77 + ["frame"] * 3)
    rec = pipe(small()).attention
    for maps in rec.per_step.values():
        assert torch.allclose(maps.sum(-1), torch.ones(()), atol=1e-5)
    for maps in rec.per_layer.values():
        assert torch.allclose(maps.sum(-1), torch.ones(()), atol=1e-5)


def test_components_change_the_video(tiny):
    pipe = build_pipeline(tiny)
    with torch.no_grad():  # an untrained mapping network is the identity: perturb it to see it act
        pipe.model.mapping_network.proj_out.weight.normal_()
    base = pipe(small(mg=MGConfig(enabled=False)))
    for change in (dict(use_mapping=False), dict(use_frame_tokens=False), dict(use_motion=False),
                   dict(mg=MGConfig(alpha=300.0)), dict(cfg=CFGSchedule.constant(3.0))):
        assert not np.array_equal(pipe(small(**{"mg": MGConfig(enabled=False), **change})).frames, base.frames), change
    out = pipe(small())
    assert all(s["g_norm"] > 0 for s in out.steps) and out.steps[0]["mapping_abs_diff"] > 0


@pytest.mark.parametrize(
    "change,argument",
    [
        (dict(prompt=""), "prompt"),
        (dict(prompt="   "), "prompt"),
        (dict(prompt="red " * 80), "prompt"),
        (dict(num_frames=1), "num_frames"),
        (dict(num_frames=33), "num_frames"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(mg=MGConfig(alpha=-1.0)), "alpha"),
        (dict(mg=MGConfig(alpha=float("nan"))), "alpha"),
        (dict(cfg=CFGSchedule(high=0.5)), "cfg_high"),
        (dict(seed=-3), "seed"),
        (dict(height=10), "height"),
    ],
)
def test_bad_input_names_the_argument(tiny, change, argument):
    pipe = build_pipeline(tiny)
    with pytest.raises(ValueError, match=argument):
        pipe(small(**change))


def test_unknown_variant(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        HarivoPipeline.from_variant("nope", checkpoints=tmp_path)


def test_cli_writes_the_four_files(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path)
    out = tmp_path / "out"
    argv = ["--prompt", PROMPT, "--seed", "5", "--checkpoint", str(ckpt), "--frames", "6", "--steps", "2",
            "--alpha", "40", "--out", str(out)]
    assert generate.main(argv) == 0
    frames = np.load(out / "frames.npy")
    assert frames.dtype == np.float32 and frames.shape == (6, 16, 16, 3)
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert (out / "video.mp4").stat().st_size > 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["seed"] == 5 and config["settings"]["mg"]["alpha"] == 40
    assert "torch" in config["versions"] and len(config["steps"]) == 2
    assert "frame tokens were trained for 4 frames; resampled to 6" in config["notes"][0]
    att = np.load(out / "attention.npz")
    assert list(att["tokens"][-3:]) == ["<f1>", "<f2>", "<f3>"]
    # same seed ⇒ same video, through the CLI too
    assert generate.main(argv[:-1] + [str(tmp_path / "again")]) == 0
    assert np.array_equal(np.load(tmp_path / "again" / "frames.npy"), frames)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--frames", "1"], "num_frames"),
        (["--steps", "0"], "num_inference_steps"),
        (["--alpha", "nan"], "alpha"),
        (["--alpha", "-2"], "alpha"),
    ],
)
def test_cli_bad_input_prints_message_and_exits_nonzero(tmp_path, capsys, extra, message):
    ckpt = save_tiny_checkpoint(tmp_path)
    code = generate.main(["--prompt", PROMPT, "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")] + extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_missing_or_corrupt_checkpoint(tmp_path, capsys):
    assert generate.main(["--prompt", PROMPT, "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint" in capsys.readouterr().err
    ckpt = save_tiny_checkpoint(tmp_path)
    (ckpt / "harivo.safetensors").write_bytes(b"\x00" * 10)
    assert generate.main(["--prompt", PROMPT, "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "harivo.safetensors" in capsys.readouterr().err


def test_plain_animatediff_parts_load_through_the_same_code(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path)
    pipe = HarivoPipeline.from_animatediff(str(tmp_path / "base"), str(ckpt / "motion_adapter"))
    assert pipe.model.mapping_network is None and pipe.model.frame_token_generator is None
    out = pipe(small(mg=MGConfig(alpha=40.0)))  # training-free parts work on plain AnimateDiff
    assert out.frames.shape == (4, 16, 16, 3) and "<f1>" not in out.attention.tokens
    with pytest.raises(ValueError, match="motion_adapter"):
        HarivoPipeline.from_animatediff(str(tmp_path / "base"), str(tmp_path / "no-adapter"))
    with pytest.raises(ValueError, match="base_model"):
        HarivoPipeline.from_animatediff(str(tmp_path / "no-base"), str(ckpt / "motion_adapter"))


def test_cancel_stops_early_and_callback_sees_every_step(tiny):
    pipe = build_pipeline(tiny)
    seen = []
    out = pipe(small(num_inference_steps=5), callback=lambda info: seen.append(info.index) or True)
    assert seen == [0, 1, 2, 3, 4] and not out.cancelled  # a callback's return value never cancels
    out = pipe(small(num_inference_steps=5), cancel=lambda: len(seen) >= 7, callback=lambda info: seen.append(info.index))
    assert out.cancelled and len(out.steps) == 2 and "cancelled after 2 of 5 steps" in out.notes


def _recommend(ckpt, sampling):
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "sampling": sampling}))


def test_checkpoint_recommended_sampling_is_the_cli_default_and_a_flag_overrides_it(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path)
    _recommend(ckpt, {"cfg_low": 2.5, "mg_alpha": 60})
    assert HarivoPipeline.from_checkpoint(ckpt).sampling_defaults == {"cfg_low": 2.5, "mg_alpha": 60.0}
    base = ["--prompt", PROMPT, "--checkpoint", str(ckpt), "--frames", "4", "--steps", "2"]
    assert generate.main(base + ["--out", str(tmp_path / "a")]) == 0
    settings = json.loads((tmp_path / "a" / "config.json").read_text())["settings"]
    assert settings["cfg"] == {"high": 12.5, "low": 2.5, "switch": 0.7} and settings["mg"]["alpha"] == 60
    assert generate.main(base + ["--cfg-low", "7.5", "--out", str(tmp_path / "b")]) == 0
    settings = json.loads((tmp_path / "b" / "config.json").read_text())["settings"]
    assert settings["cfg"]["low"] == 7.5 and settings["mg"]["alpha"] == 60
    # without a recommendation: App. D's values
    plain = save_tiny_checkpoint(tmp_path / "plain")
    assert HarivoPipeline.from_checkpoint(plain).sampling_defaults == {}


@pytest.mark.parametrize("sampling,message", [({"steps": 3}, "may set only"), ({"mg_alpha": -1}, "alpha")])
def test_bad_recommended_sampling_names_it(tmp_path, sampling, message):
    ckpt = save_tiny_checkpoint(tmp_path)
    _recommend(ckpt, sampling)
    with pytest.raises(ValueError, match=message):
        HarivoPipeline.from_checkpoint(ckpt)
