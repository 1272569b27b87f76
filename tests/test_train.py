"""Stage-2 training on a tiny random base: every Table 1 variant learns on a fixed batch with the T2I weights
bit-identical, checkpoints round-trip (HarivoVideoModel, HarivoPipeline, diffusers AnimateDiffPipeline), resume
continues exactly, and bad configs fail naming the field."""

import json
import math
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

from harivo.train import loop as train
from harivo.train.stage2.config import VARIANTS, TrainConfig, parse_config, validate
from harivo.train.stage2.export import hspace_stats
from harivo.train.stage2.run import fixed_batch_loss, make_batch, setup, train_step
from harivo.model import HarivoVideoModel
from harivo.pipeline import GenerationSettings, HarivoPipeline
from harivo.sampling import CFGSchedule, MGConfig
from harivo.tiny import save_tiny_checkpoint
from harivo.train.utils import WarmupDecay, load_training_state, save_training_state, step_generator

TINY = dict(train_videos=6, num_frames=4, video_size=16, batch_size=2, mapping_hidden_channels=8, mapping_heads=2,
            mapping_head_dim=8, motion_num_attention_heads=2, sample_every=0, log_every=1, checkpoint_every=2,
            lr_warmup_steps=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random StableDiffusion-style base folder (VAE x2: 16 px videos -> 8x8 latents) and a data cache."""
    root = tmp_path_factory.mktemp("stage2")
    save_tiny_checkpoint(root)
    return root


def tiny_cfg(world, variant="full", **overrides) -> TrainConfig:
    fields = dict(TINY, variant=variant, base_model=str(world / "base"), cache_dir=str(world / "cache"),
                  out=str(world / f"out-{variant}"), run_dir=str(world / f"run-{variant}"))
    fields.update(overrides)
    return validate(TrainConfig(**fields)).resolved()


def cli(world, variant, *extra, name=None):
    name = name or variant
    args = ["--variant", variant, "--base-model", str(world / "base"), "--cache-dir", str(world / "cache"),
            "--out", str(world / f"out-{name}"), "--run-dir", str(world / f"run-{name}")]
    for k, v in TINY.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    return args + list(extra)


def quiet(*_):
    pass


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_learns_on_a_fixed_batch_and_t2i_stays_frozen(world, variant):
    run = setup(tiny_cfg(world, variant, run_dir=str(world / f"fixed-{variant}"), lr=1e-3, lr_warmup_steps=0), log=quiet)
    flags = VARIANTS[variant]
    names = set(run.params)
    assert any(n.startswith("model.unet.") and "motion_modules" in n for n in names)
    assert all("motion_modules" in n for n in names if n.startswith("model.unet."))  # nothing spatial trains
    assert any(n.startswith("model.mapping_network.") for n in names) == flags["use_mapping"]
    assert any(n.startswith("model.frame_token_generator.") for n in names) == flags["use_frame_tokens"]
    assert any(n.startswith("projection_head.") for n in names) == flags["use_dc"]
    proj_out = [p for n, p in run.params.items() if "motion_modules" in n and n.split(".")[-2] == "proj_out"]
    assert proj_out and all(torch.count_nonzero(p) == 0 for p in proj_out)  # AnimateDiff zero init

    frozen = {k: v.clone() for k, v in run.raw.model.t2i_unet.state_dict().items()}
    frozen_te = {k: v.clone() for k, v in run.base.text_encoder.state_dict().items()}
    batch = make_batch(run, step_generator(0, 0))
    before = fixed_batch_loss(run, batch)
    assert set(before) == {"total", "simple"} | {k for k in ("trs", "reg", "dc") if flags[f"use_{k}"]}
    for _ in range(6):
        train_step(run, batch, generator=step_generator(0, 10**9))  # the noise and t of fixed_batch_loss
    after = fixed_batch_loss(run, batch)
    assert after["total"] < before["total"] - 1e-4, (before, after)
    assert any(torch.count_nonzero(p) > 0 for p in proj_out)
    for k, v in run.raw.model.t2i_unet.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    for k, v in run.base.text_encoder.state_dict().items():
        assert torch.equal(v, frozen_te[k]), k
    # the video UNet's spatial weights are the very same tensors as the frozen T2I UNet's
    spatial = dict(run.raw.model.unet.named_parameters())
    for k, p in run.raw.model.t2i_unet.named_parameters():
        assert spatial[k] is p


def test_cli_checkpoint_round_trip(world):
    run = train.main(cli(world, "full", "--max-steps", "3"))
    out = world / "out-full"
    assert {p.name for p in out.iterdir()} >= {"motion_adapter", "harivo.safetensors", "config.json", "training.json",
                                               "loss_curves.png", "loss_curves.csv", "train_config.yaml"}
    config = json.loads((out / "config.json").read_text())
    assert config["base_model"] == "../base" and config["variant"] == "full"
    from harivo.data.shapes import WORLD
    assert config["world"] == WORLD.record()  # the world it was trained in, read back by the pipeline
    assert config["components"]["frame_tokens"] and config["components"]["losses"]["dc"]
    training = json.loads((out / "training.json").read_text())
    assert training["steps"] == 3 and training["finished"] and training["command"].startswith("python -m harivo.train ")
    assert training["where_trained"] and set(training["final_loss_terms"]) >= {"loss_total", "loss_simple", "loss_dc"}
    header = (out / "loss_curves.csv").read_text().splitlines()[0].split(",")
    assert {"step", "loss_total", "loss_simple", "loss_trs", "loss_reg", "loss_dc", "lr"} <= set(header)
    # the h-space collapse check: a fixed batch and noise, so recomputing it gives the recorded numbers
    hs = training["hspace"]
    assert hs["std"] > 0 and -1 <= hs["mean_cos_between_videos"] <= 1 and hs["videos"] >= 2
    assert hspace_stats(run) == hs

    loaded = HarivoVideoModel.from_pretrained(out)
    assert not any("projection" in k for k in loaded.harivo_state_dict())  # g is training-only
    trained = run.raw.model
    for k, v in trained.harivo_state_dict().items():
        assert torch.equal(v, loaded.harivo_state_dict()[k]), k
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 77, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(trained(x, 500, text), loaded(x, 500, text), atol=1e-6)

    pipe = HarivoPipeline.from_checkpoint(out)
    video = pipe(GenerationSettings(prompt="a red circle is moving up on a gray background", num_frames=4,
                                    num_inference_steps=2, capture_attention=False))
    assert video.frames.shape == (4, 16, 16, 3) and np.isfinite(video.frames).all()


def test_baseline_motion_adapter_plugs_into_animatediff(world):
    train.main(cli(world, "baseline", "--max-steps", "2"))
    out, base = world / "out-baseline", world / "base"
    config = json.loads((out / "config.json").read_text())
    assert not config["use_mapping"] and not config["use_frame_tokens"] and not config["components"]["losses"]["trs"]
    adapter = MotionAdapter.from_pretrained(out / "motion_adapter")
    harivo = HarivoPipeline.from_checkpoint(out)
    ad = AnimateDiffPipeline.from_pretrained(base, motion_adapter=adapter)
    ad.scheduler = DDIMScheduler.from_config(ad.scheduler.config)
    ad.set_progress_bar_config(disable=True)
    prompt = "a blue square is moving left to right on a white background"
    ref = ad(prompt, num_frames=4, num_inference_steps=3, guidance_scale=7.5, height=16, width=16, output_type="np",
             generator=torch.Generator().manual_seed(3)).frames[0]
    ours = harivo(GenerationSettings(prompt=prompt, seed=3, num_frames=4, num_inference_steps=3,
                                     cfg=CFGSchedule.constant(7.5), mg=MGConfig(enabled=False), capture_attention=False))
    assert ref.shape == (4, 16, 16, 3)
    assert np.abs(ours.frames - ref).max() <= 1e-4  # our baseline *is* an AnimateDiff motion adapter


def test_resume_continues_exactly(world):
    whole = train.main(cli(world, "trs-dc", "--max-steps", "4", name="whole"))
    first = train.main(cli(world, "trs-dc", "--max-steps", "4", "--segment-steps", "2", name="parts"))
    assert first.step == 2
    with pytest.raises(ValueError, match="resume"):
        train.main(cli(world, "trs-dc", "--max-steps", "4", name="parts"))  # a state exists: refuse to start over
    with pytest.raises(ValueError, match="batch_size"):
        train.main(cli(world, "trs-dc", "--max-steps", "4", "--resume", "--batch-size", "3", name="parts"))
    with pytest.raises(ValueError, match="dc_weight"):  # a weight of a loss this variant trains with
        train.main(cli(world, "trs-dc", "--max-steps", "4", "--resume", "--dc-weight", "0.5", name="parts"))
    second = train.main(cli(world, "trs-dc", "--max-steps", "4", "--resume", name="parts"))
    assert second.step == 4 and [s["end_step"] for s in second.segments] == [2, 4]
    by_step = {r["step"]: r for r in whole.history}
    for row in second.history[2:]:
        for k in ("loss_total", "loss_simple", "loss_trs", "loss_dc", "lr"):
            assert row[k] == by_step[row["step"]][k], (row["step"], k)
    for k, p in whole.params.items():
        assert torch.equal(p, second.params[k]), k
    training = json.loads((world / "out-parts" / "training.json").read_text())
    assert training["steps"] == 4 and len(training["segments"]) == 2


def test_baseline_resumes_under_other_weights_of_losses_it_does_not_train(world):
    first = train.main(cli(world, "baseline", "--max-steps", "2", "--segment-steps", "1", name="base-parts"))
    assert first.step == 1
    second = train.main(cli(world, "baseline", "--max-steps", "2", "--resume", "--dc-weight", "0.5", "--trs-weight",
                            "0.3", "--reg-weight", "0.2", name="base-parts"))
    assert second.step == 2
    with pytest.raises(ValueError, match="batch_size"):  # what it does train with stays fixed
        train.main(cli(world, "baseline", "--max-steps", "3", "--resume", "--batch-size", "3", name="base-parts"))


def test_gradient_checkpointing_gives_the_same_step(world):
    results = []
    for gc in (False, True):
        run = setup(tiny_cfg(world, "full", run_dir=str(world / f"gc-{gc}"), gradient_checkpointing=gc), log=quiet)
        terms = [train_step(run, generator=step_generator(0, i)) for i in range(2)]
        results.append((terms, {k: p.detach().clone() for k, p in run.params.items()}))
    assert results[0][0] == results[1][0]
    for k, p in results[0][1].items():
        assert torch.allclose(p, results[1][1][k], atol=1e-7), k


def test_bad_config_names_the_field(world, tmp_path):
    for argv, field in (
        (["--variant", "nope"], "variant"),
        (["--batch-size", "0"], "batch_size"),
        (["--lr", "fast"], "lr"),
        (["--min-lr", "1e-3"], "min_lr"),
        (["--mixed-precision", "fp8"], "mixed_precision"),
        (["--num-frames", "40"], "motion_max_seq_length"),
        (["--cond-drop", "1.5"], "cond_drop"),
    ):
        with pytest.raises(ValueError, match=field):
            parse_config(argv)
    (tmp_path / "bad.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        parse_config(["--config", str(tmp_path / "bad.yaml")])
    with pytest.raises(ValueError, match="video_size"):
        setup(tiny_cfg(world, video_size=32, run_dir=str(tmp_path / "r")), log=quiet)
    with pytest.raises(ValueError, match="motion_num_attention_heads"):
        setup(tiny_cfg(world, motion_num_attention_heads=3, run_dir=str(tmp_path / "r")), log=quiet)
    with pytest.raises(ValueError, match="base_model"):
        setup(tiny_cfg(world, base_model=str(tmp_path / "nothing"), run_dir=str(tmp_path / "r")), log=quiet)


@pytest.mark.parametrize("module", ["harivo.train", "harivo.train.t2i"])
def test_cli_reports_a_bad_flag_in_one_line(module):
    # the scripts' entry point: exit status 2 and one 'error: <field>: ...' line, no traceback
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", module, "--seed", "-1"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"python -m {module}: error: seed")
    assert "Traceback" not in done.stderr


def test_yaml_then_cli_precedence(tmp_path):
    (tmp_path / "c.yaml").write_text("batch_size: 8\nlr: 2.0e-4\nvariant: baseline\n")
    cfg = parse_config(["--config", str(tmp_path / "c.yaml"), "--batch-size", "2", "--variant", "mapping"])
    assert (cfg.batch_size, cfg.lr, cfg.variant) == (2, 2e-4, "mapping")
    assert cfg.out == "checkpoints/harivo-shapes-mapping" and cfg.run_dir == "runs/harivo-mapping"


def test_lr_schedule():
    s = WarmupDecay(warmup=10, total=110, min_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0) and s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1)
    assert WarmupDecay(0, 100, 0.1, "linear")(50) == pytest.approx(0.55)
    held = WarmupDecay(10, 110, 0.1, constant_from=110, constant_ratio=0.5)  # the verb phase's constant lr
    assert held(60) == s(60) and held(109) == s(109) and held(110) == held(500) == 0.5


def test_verb_phase_trains_on_translations_at_late_timesteps_and_extends_a_finished_run(world):
    """After max_steps, verb_phase_steps more steps: translation videos only, t >= verb_phase_min_timestep, constant
    verb_phase_lr. A finished run resumed with a verb phase continues exactly as one run with it from the start."""
    from harivo.data.shapes import TRANSLATIONS, ShapeSpec
    from harivo.train.stage2.run import verb_phase_pool

    whole = train.main(cli(world, "baseline", "--max-steps", "2", "--verb-phase-steps", "2",
                           "--verb-phase-lr", "5e-4", "--lr", "1e-3", name="verb-whole"))
    assert whole.step == 4 and [r["lr"] for r in whole.history][2:] == [5e-4, 5e-4]
    first = train.main(cli(world, "baseline", "--max-steps", "2", "--lr", "1e-3", name="verb-parts"))
    assert first.step == 2
    second = train.main(cli(world, "baseline", "--max-steps", "2", "--verb-phase-steps", "2", "--verb-phase-lr",
                            "5e-4", "--lr", "1e-3", "--resume", name="verb-parts"))
    assert second.step == 4 and [r["lr"] for r in second.history][2:] == [5e-4, 5e-4]
    for k, p in whole.params.items():
        assert torch.equal(p, second.params[k]), k
    training = json.loads((world / "out-verb-parts" / "training.json").read_text())
    assert training["finished"] and training["verb_phase_steps"] == 2 and training["steps"] == 4

    run = setup(tiny_cfg(world, "baseline", run_dir=str(world / "verb-batches"), max_steps=2, verb_phase_steps=3,
                         verb_phase_min_timestep=950), log=quiet)
    pool = verb_phase_pool(run.data)  # the default pool: translations
    captions = [run.data.captions[i] for i in run.data.caption_index.tolist()]
    assert 0 < len(pool) < len(captions)
    assert all((ShapeSpec.from_caption(captions[i]).motion in TRANSLATIONS) == (i in pool.tolist())
               for i in range(len(captions)))
    seen = []
    add_noise = run.raw.noise_scheduler.add_noise
    run.raw.noise_scheduler.add_noise = lambda x, n, t: seen.append(t.clone()) or add_noise(x, n, t)
    for step in range(5):
        run.step = step
        latents, _ = make_batch(run, step_generator(0, step, 0))
        picked = [int(torch.nonzero((run.data.latents.float() == v).flatten(1).all(1)).flatten()[0]) for v in latents]
        in_pool = [i in pool.tolist() for i in picked]
        train_step(run)
        if step >= 2:
            assert all(in_pool) and seen[-1].min() >= 950, (step, picked, seen[-1])
    assert not all(t.min() >= 950 for t in seen[:2])  # phase 1 keeps uniform t (the odds of all four >= 950: 6e-6)


def test_training_state_round_trip(tmp_path):
    w = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([w], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupDecay(2, 10, 0.1))
    for _ in range(3):
        w.sum().backward()
        opt.step()
        sched.step()
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    save_training_state(tmp_path / "s", {"w": w}, opt, sched, {"step": 3}, {"queue": torch.ones(2)})
    expected = (torch.rand(2), np.random.rand(), random.random())
    w2 = torch.nn.Parameter(torch.zeros(3))
    opt2 = torch.optim.AdamW([w2], lr=1e-3)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, WarmupDecay(2, 10, 0.1))
    meta, extra = load_training_state(tmp_path / "s", {"w": w2}, opt2, sched2)
    assert meta["step"] == 3 and torch.equal(extra["queue"], torch.ones(2)) and torch.equal(w, w2)
    assert sched2.last_epoch == 3 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert torch.equal(opt2.state[w2]["exp_avg_sq"], opt.state[w]["exp_avg_sq"])
    got = (torch.rand(2), np.random.rand(), random.random())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
    with pytest.raises(ValueError, match="does not match"):
        load_training_state(tmp_path / "s", {"v": w2}, opt2, sched2)
    assert not math.isnan(meta["step"])


def test_verb_phase_directed_pool_and_motion_only_training(world):
    """verb_phase_motions=directed adds the size changes to the verb phase's pool; verb_phase_train=motion updates
    only the motion modules in the verb phase (mapping network, frame-token generator and projection head keep
    their phase-1 weights), while phase 1 trains everything; both may be chosen when a finished run is resumed."""
    from harivo.data.shapes import MOTIONS, ShapeSpec
    from harivo.train.stage2.run import is_motion_module, verb_phase_pool

    run = setup(tiny_cfg(world, "full", run_dir=str(world / "verb-directed"), max_steps=1, verb_phase_steps=2,
                         verb_phase_motions="directed", verb_phase_train="motion"), log=quiet)
    captions = [run.data.captions[i] for i in run.data.caption_index.tolist()]
    directed = verb_phase_pool(run.data, "directed").tolist()
    assert set(verb_phase_pool(run.data, "translations").tolist()) <= set(directed)
    assert all((ShapeSpec.from_caption(captions[i]).motion in MOTIONS[:6]) == (i in directed)
               for i in range(len(captions)))
    # "sizes": the size changes alone, by caption (videos 1 and 3 share one caption)
    specs = [ShapeSpec("red", "circle", m, "gray") for m in ("moving up", "getting closer", "moving away")]
    data = SimpleNamespace(captions=[s.caption for s in specs], caption_index=torch.tensor([0, 1, 2, 1, 0]))
    assert verb_phase_pool(data, "sizes").tolist() == [1, 2, 3]
    assert verb_phase_pool(data, "translations").tolist() == [0, 4]
    assert verb_phase_pool(data, "directed").tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="no sizes video"):
        verb_phase_pool(SimpleNamespace(captions=data.captions[:1], caption_index=torch.tensor([0, 0])), "sizes")
    motion = [n for n in run.params if is_motion_module(n)]
    other = [n for n in run.params if not is_motion_module(n)]
    assert motion and any("mapping" in n for n in other) and any("frame_token" in n for n in other), other[:5]
    for step in range(3):
        before = {n: p.detach().clone() for n, p in run.params.items()}
        run.step = step
        train_step(run)
        changed = {n for n, p in run.params.items() if not torch.equal(p, before[n])}
        if step == 0:  # phase 1: everything that trains moves
            assert set(motion) & changed and set(other) & changed
        else:
            assert set(motion) & changed and not set(other) & changed, sorted(set(other) & changed)[:3]
    with pytest.raises(ValueError, match="verb_phase_train"):
        tiny_cfg(world, "full", verb_phase_train="mapping")
    with pytest.raises(ValueError, match="verb_phase_motions"):
        tiny_cfg(world, "full", verb_phase_motions="spinning")


def test_init_from_warm_starts_every_shipped_part_and_checks_the_variant(world):
    run = train.main(cli(world, "full", "--max-steps", "2", name="warm-src"))
    source = world / "out-warm-src"
    warm = setup(tiny_cfg(world, "full", init_from=str(source), run_dir=str(world / "run-warm")), log=quiet)
    trained, loaded = run.raw.model.state_dict(), warm.raw.model.state_dict()
    parts = [k for k in trained if any(s in k for s in ("motion_modules", "mapping_network", "frame_token_generator"))]
    assert parts and all(torch.equal(trained[k], loaded[k]) for k in parts)
    # the trained motion modules differ from a fresh start's (zero proj_out), so the warm start is visible
    fresh = setup(tiny_cfg(world, "full", run_dir=str(world / "run-fresh")), log=quiet).raw.model.state_dict()
    assert any(not torch.equal(fresh[k], loaded[k]) for k in parts)
    with pytest.raises(ValueError, match="init_from: .* is a 'full' checkpoint, this run trains 'baseline'"):
        setup(tiny_cfg(world, "baseline", init_from=str(source), run_dir=str(world / "run-warm-b")), log=quiet)
    with pytest.raises(ValueError, match="init_from: expected a HARIVO checkpoint folder"):
        setup(tiny_cfg(world, "full", init_from=str(world / "nowhere"), run_dir=str(world / "run-warm-c")), log=quiet)
