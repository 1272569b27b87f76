"""harivo.evaluate.verb_probe: the three measurements on hand-computed inputs and a tiny model."""

import math

import pytest
import torch
from conftest import build_model

from harivo.data.shapes import ShapeSpec
from harivo.evaluate.verb_probe import _int_list, feature_change, frame_token_stats, gap_noise, oracle_gain, swap_gap, swap_verb


def test_swap_verb_pairs_and_rejects_unknown():
    spec = ShapeSpec("red", "circle", "moving left to right", "gray")
    assert swap_verb(spec).caption == "a red circle is moving right to left on a gray background"
    assert swap_verb(swap_verb(spec)) == spec
    assert swap_verb(ShapeSpec("red", "circle", "moving up", "gray")).motion == "moving down"
    assert swap_verb(ShapeSpec("red", "square", "spinning", "gray")).motion == "standing still"
    odd = object.__new__(ShapeSpec)
    object.__setattr__(odd, "motion", "dancing")
    with pytest.raises(ValueError, match="spec.motion: expected one of"):
        swap_verb(odd)


def test_oracle_gain_by_hand():
    # group A: 1, 3, 1, 3 (mean 2), group B: 5, 7, 5, 7 (mean 6); each variance (ddof 1) = 4 / 3
    # spread of the means around 4: (4 + 4) / 2 = 4, less (G - 1) / G · σ² / n = 1/2 · 4/3 / 4 = 1/6
    a = torch.tensor([1.0, 3.0, 1.0, 3.0])[:, None]
    b = torch.tensor([5.0, 7.0, 5.0, 7.0])[:, None]
    out = oracle_gain([a, b])
    assert out["x0_mse_verb_known"] == pytest.approx(4 / 3)
    assert out["x0_mse_verb_ignored"] == pytest.approx(4 / 3 + 4 - 1 / 6)
    assert out["gain_pct"] == pytest.approx(100 * (4 - 1 / 6) / (4 / 3 + 4 - 1 / 6))
    # the same videos under both verbs: the sample means agree, the estimate is not positive
    assert oracle_gain([a, a.clone()])["gain_pct"] < 0
    with pytest.raises(ValueError, match="groups: expected >= 2 groups of the same number"):
        oracle_gain([a, b[:3]])


class _ConstantModel(torch.nn.Module):
    """ε = the first entry of the text embedding, everywhere: 0 for the 'true' captions, 1 for the swapped."""

    def forward(self, x, t, embeds):
        return torch.ones_like(x) * embeds[:, 0, 0].view(-1, *([1] * (x.ndim - 1)))


def test_swap_gap_by_hand():
    from diffusers import DDPMScheduler

    from harivo.tiny import scheduler_config

    latents = torch.randn(3, 4, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    true, swapped = torch.zeros(3, 5, 6), torch.ones(3, 5, 6)
    rows = swap_gap(_ConstantModel(), DDPMScheduler.from_config(scheduler_config()), latents, true, swapped, [999, 10],
                    seed=3, batch_size=2)
    noise = gap_noise(tuple(latents.shape), 2, 3)
    for j, row in enumerate(rows):
        loss = (noise[j] ** 2).mean().item()  # predicting 0
        loss_sw = ((1 - noise[j]) ** 2).mean().item()  # predicting 1
        assert row["t"] == [999, 10][j]
        assert row["loss"] == pytest.approx(loss, rel=1e-5)
        assert row["loss_swapped"] == pytest.approx(loss_sw, rel=1e-5)
        assert row["gap_pct"] == pytest.approx(100 * (loss_sw - loss) / loss, rel=1e-4)
    # the same noise passed explicitly gives the same rows; a wrong shape is refused
    explicit = swap_gap(_ConstantModel(), DDPMScheduler.from_config(scheduler_config()), latents, true, swapped,
                        [999, 10], batch_size=2, noise=noise)
    assert explicit == rows
    with pytest.raises(ValueError, match="noise: expected shape"):
        swap_gap(_ConstantModel(), DDPMScheduler.from_config(scheduler_config()), latents, true, swapped, [999],
                 noise=noise)
    # a caption-blind comparison (same embeddings) has no gap at all
    same = swap_gap(_ConstantModel(), DDPMScheduler.from_config(scheduler_config()), latents, true, true.clone(), [500])
    assert same[0]["gap_pct"] == 0.0
    with pytest.raises(ValueError, match="one per video"):
        swap_gap(_ConstantModel(), DDPMScheduler.from_config(scheduler_config()), latents, true[:2], swapped, [500])


def test_feature_change_sees_every_motion_module(tiny):
    model = build_model(tiny).eval()
    n_modules = sum(1 for n, _ in model.unet.named_modules() if n.rsplit(".", 2)[-2:-1] == ["motion_modules"])
    sample = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ids = tiny.tokenizer(["red circle", "blue circle"], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        states = tiny.text_encoder(ids.input_ids)[0]
    a, b = states[:1], states[1:]
    same = feature_change(model, a, a.clone(), sample, 900)
    assert len(same["per_module"]) == n_modules > 0
    assert same["eps"] == 0.0 and all(v == 0.0 for v in same["per_module"].values())
    diff = feature_change(model, a, b, sample, 900)
    assert diff["eps"] > 0 and all(v > 0 for v in diff["per_module"].values())
    # by hand for ε
    with torch.no_grad():
        ea, eb = model(sample, torch.tensor([900]), a), model(sample, torch.tensor([900]), b)
    assert diff["eps"] == pytest.approx(((ea - eb).norm() / ea.norm()).item(), rel=1e-6)
    # the hooks are gone afterwards
    assert all(not m._forward_pre_hooks for m in model.unet.modules())


def test_cli_refuses_bad_arguments_before_loading_anything(capsys):
    from harivo.evaluate.verb_probe import main

    assert main(["--variants", "baseline,nope"]) == 2
    assert "--variants: expected a comma-separated subset of" in capsys.readouterr().err
    assert main(["--oracle-videos", "1"]) == 2
    assert "--oracle-videos: expected >= 2" in capsys.readouterr().err


def test_timesteps_argument_is_checked():
    assert _int_list("--timesteps", "999, 10") == [999, 10]
    with pytest.raises(ValueError, match="--timesteps: expected timesteps in 0..999"):
        _int_list("--timesteps", "1000")
    with pytest.raises(ValueError, match="--timesteps: expected comma-separated integers"):
        _int_list("--timesteps", "high")


def test_frame_token_stats(tiny):
    model = build_model(tiny, use_frame_tokens=True).eval()
    ids = tiny.tokenizer(["red circle", "blue circle"], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        states = tiny.text_encoder(ids.input_ids)[0]
    a, c = states[:1], states[1:]
    sample = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = frame_token_stats(model, a, a.clone(), c, sample, 800)
    assert out["verb_change"] == 0.0 and out["colour_change"] > 0
    k = model.config.num_frame_tokens
    tokens = model.frame_token_generator(a, 4)[:, -k:]
    spread = (tokens - tokens.mean(0, keepdim=True)).norm() / tokens.norm()
    assert out["frame_variation"] == pytest.approx(spread.item(), rel=1e-5)
    n_attn2 = sum(1 for n, _ in model.unet.named_modules() if n.endswith("attn2") and "motion_modules" not in n)
    assert len(out["attention_share"]) == n_attn2 > 0
    assert all(0.0 < v < 1.0 for v in out["attention_share"].values())
    assert all(not m._forward_pre_hooks for m in model.unet.modules())
    with pytest.raises(ValueError, match="frame-token generator"):
        frame_token_stats(build_model(tiny, use_frame_tokens=False), a, a, c, sample, 800)


def test_swap_gap_on_a_v_prediction_base_scores_v():
    """On a zero-terminal-SNR base the gap compares v-MSEs: at t = 999 (ᾱ = 0) v = −x0, so predicting 0 costs
    mean(x0²) and predicting 1 costs mean((1 + x0)²)."""
    from diffusers import DDPMScheduler

    from harivo.train.t2i_models import schedule

    latents = torch.randn(3, 4, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    true, swapped = torch.zeros(3, 5, 6), torch.ones(3, 5, 6)
    row = swap_gap(_ConstantModel(), DDPMScheduler(**schedule(True)), latents, true, swapped, [999], seed=3)[0]
    assert row["loss"] == pytest.approx((latents**2).mean().item(), rel=1e-4)
    assert row["loss_swapped"] == pytest.approx(((1 + latents) ** 2).mean().item(), rel=1e-4)


def test_time_reversal_score_is_one_for_the_video_minus_one_backwards_zero_for_a_still():
    from harivo.evaluate.trajectory_probe import reversal_scores

    x0 = torch.randn(3, 4, 6, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(reversal_scores(x0, x0), torch.ones(3))
    torch.testing.assert_close(reversal_scores(x0.flip(2), x0), -torch.ones(3))
    still = x0.mean(2, keepdim=True).expand_as(x0)  # the same played backwards
    torch.testing.assert_close(reversal_scores(still, x0), torch.zeros(3), atol=1e-5, rtol=0)
    halfway = 0.5 * x0 + 0.5 * still
    assert (reversal_scores(halfway, x0) - 0.5).abs().max() < 1e-5
    with pytest.raises(ValueError, match="x0: a video equal to itself played backwards"):
        reversal_scores(still, still)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_predicted_x0_inverts_the_training_target(kind):
    from diffusers import DDPMScheduler

    from harivo.noise import prediction_target
    from harivo.evaluate.trajectory_probe import predicted_x0

    sched = DDPMScheduler(num_train_timesteps=1000, prediction_type=kind, rescale_betas_zero_snr=True)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(2, 4, 3, 4, 4, generator=g), torch.randn(2, 4, 3, 4, 4, generator=g)
    for t in (999, 500) if kind == "v_prediction" else (500,):
        tt = torch.full((2,), t)
        x_t = sched.add_noise(x0, noise, tt)
        target = prediction_target(sched, x0, noise, tt)
        torch.testing.assert_close(predicted_x0(target, x_t, float(sched.alphas_cumprod[t]), kind), x0,
                                   atol=1e-4, rtol=0)
    if kind == "epsilon":  # zero terminal SNR: ε at t = 999 says nothing about x0
        with pytest.raises(ValueError, match="timesteps: an ε-prediction model"):
            predicted_x0(noise, noise, 0.0, kind)


def test_trajectory_probe_scores_the_rendered_videos_in_frame_order(tmp_path):
    """End to end on a tiny random checkpoint: at t = 0 the noisy input is the video itself, so whatever the
    (untrained) model predicts, x̂0 is the video played forwards (s ≈ 1) for both branches; the counts add up."""
    from harivo.tiny import save_tiny_checkpoint
    from harivo.evaluate.trajectory_probe import probe

    checkpoint = save_tiny_checkpoint(tmp_path, num_frames=4)
    out = probe(str(checkpoint), videos=3, split="train", timesteps=(0, 500), num_frames=4, size=16)
    assert out["videos"] == 3 and list(out["timesteps"]) == ["0", "500"]
    for branch in ("model", "frozen_t2i"):
        assert out["timesteps"]["0"][branch]["mean"] > 0.8  # backwards would be ≈ −0.9
        assert out["timesteps"]["0"][branch]["positive"] == out["timesteps"]["0"][branch]["n"] == 3
        assert math.isfinite(out["timesteps"]["500"][branch]["mean"])
