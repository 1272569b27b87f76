"""Stage-1 training (harivo.train.t2i) on tiny configs: losses go down, export loads with stock diffusers,
resume reproduces an uninterrupted run, bad config values are rejected by name."""

import json
import shutil
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
import torch

from harivo.train import t2i as T
from harivo.fileio import read_json
from harivo.pixels import to_pixels
from harivo.train.stage1.config import parse_config
from harivo.train.stage1.data import render_batch
from harivo.train.stage1.evaluation import evaluate
from harivo.train.stage1.unet import unet_loss
from harivo.train.stage1.vae import object_weights, vae_loss
from harivo.tokenizer import token_ids
from harivo.train.utils import make_accelerator, stage_step_generator

TINY = [
    "--vae-channels", "8,16,16", "--vae-norm-groups", "8", "--vae-batch-size", "4", "--vae-eval-images", "8",
    "--vae-eval-every", "1000", "--vae-warmup-steps", "1", "--vae-scale-images", "32",
    "--text-hidden", "16", "--text-layers", "1", "--text-heads", "2", "--text-intermediate", "32",
    "--unet-channels", "32,32,32", "--unet-attention-head-dim", "2", "--unet-batch-size", "4",
    "--unet-warmup-steps", "1", "--train-videos", "6", "--frames-per-video", "2",
    "--log-every", "1", "--checkpoint-every", "1000", "--sample-every", "1000", "--export-every-minutes", "0",
    "--num-threads", "1",
]


def tiny_cfg(tmp_path, *extra):
    return parse_config(TINY + ["--run-dir", str(tmp_path / "run"), "--output-dir", str(tmp_path / "out"), *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny vae+unet run (2 steps each) -> exported pipeline folder."""
    tmp = tmp_path_factory.mktemp("t2i")
    args = TINY + ["--run-dir", str(tmp / "run"), "--output-dir", str(tmp / "out"), "--stage", "all",
                   "--vae-steps", "2", "--unet-steps", "2"]
    out = T.main(args)
    return tmp, out


def test_vae_steps_lower_loss_on_fixed_batch(tmp_path):
    from harivo.train.t2i_models import make_vae

    cfg = tiny_cfg(tmp_path)
    acc = make_accelerator(cfg)
    torch.manual_seed(0)
    vae = make_vae(cfg.vae_channels, 1, 4, cfg.vae_norm_groups, 64)
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    _, imgs = render_batch(np.random.default_rng(0), 4, "train", 64)
    x = to_pixels(imgs)
    losses = []
    for _ in range(8):
        loss = vae_loss(vae, x, torch.Generator().manual_seed(0), cfg, acc)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_unet_steps_lower_loss_on_fixed_batch(tmp_path):
    from diffusers import DDPMScheduler

    from harivo.train.t2i_models import SCHEDULE, make_text_encoder, make_unet
    from harivo.tokenizer import build_tokenizer

    cfg = tiny_cfg(tmp_path)
    acc = make_accelerator(cfg)
    tok = build_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    te = make_text_encoder(tok, 16, 1, 2, 32)
    unet = make_unet((32, 32, 32), 1, 16, 2, 32, 16, 4)
    latents = torch.randn(8, 4, 16, 16)
    caps = ["a red circle is moving up on a gray background", "a blue star is spinning on a white background"]
    cap_ids, empty = token_ids(tok, caps), token_ids(tok, [""])[0]
    sched = DDPMScheduler(**SCHEDULE)
    opt = torch.optim.AdamW(list(unet.parameters()) + list(te.parameters()), lr=2e-3)
    losses = []
    for _ in range(8):  # step index fixed -> same batch, noise and timesteps every time
        loss, _, _ = unet_loss(0, cfg, latents, torch.tensor([0, 1] * 4), cap_ids, empty, 1.0, sched,
                            sched.alphas_cumprod, unet, te, acc, 8)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_noise_offset_adds_one_constant_per_sample_and_channel(tmp_path):
    from diffusers import DDPMScheduler

    from harivo.train.t2i_models import SCHEDULE

    class Recording(DDPMScheduler):
        def add_noise(self, original, noise, timesteps):
            self.seen = noise.clone()
            return super().add_noise(original, noise, timesteps)

    # stand-ins for the text encoder and the UNet: only the noise handed to add_noise matters here
    def text_encoder(ids):
        return (torch.zeros(ids.shape[0], 3, 4),)

    def unet(x, t, enc):
        return SimpleNamespace(sample=torch.zeros_like(x))

    latents = torch.randn(8, 4, 16, 16)
    seen = {}
    for offset in (0.0, 0.3):
        cfg = tiny_cfg(tmp_path, "--noise-offset", str(offset))
        sched = Recording(**SCHEDULE)
        unet_loss(5, cfg, latents, torch.zeros(8, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long),
                  torch.zeros(3, dtype=torch.long), 1.0, sched, sched.alphas_cumprod, unet, text_encoder,
                  make_accelerator(cfg), 8)
        seen[offset] = sched.seen
    d = seen[0.3] - seen[0.0]  # the base noise is the same stream; the offset is drawn after it
    assert torch.allclose(d, d[..., :1, :1].expand_as(d), atol=1e-6)
    assert 0.05 < d[..., 0, 0].std().item() < 1.0  # ~0.3 * N(0, 1)
    with pytest.raises(ValueError, match="noise_offset"):
        tiny_cfg(tmp_path, "--noise-offset", "-1")


def test_export_loads_with_stock_diffusers(trained):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    tmp, out = trained
    folder = tmp / "out"
    files = [p.name for p in folder.rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".ckpt"))]
    for need in ("model_index.json", "training.json", "loss_unet.csv", "loss_unet.png", "t2i_config.yaml"):
        assert (folder / need).is_file(), need
    assert (folder / "tokenizer" / "vocab.json").is_file() and (folder / "tokenizer" / "merges.txt").is_file()
    from harivo.data.shapes import WORLD
    assert json.loads((folder / "training.json").read_text())["world"] == WORLD.record()
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.safety_checker is None
    assert pipe.vae.config.scaling_factor != 1.0
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a red circle is moving up on a gray background", num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert img.shape == (1, 64, 64, 3) and np.isfinite(img).all()
    assert out["unet"]["steps"] == 2


def test_unet_is_motion_adapter_compatible():
    from harivo.train.t2i_models import check_motion_compatible, make_unet

    unet = make_unet((32, 32, 32), 1, 16, 2, 32, 16, 4)
    assert check_motion_compatible(unet, 1) > 0


def _unet_runs(trained, tmp_path, probe, before_resume=None):
    """The UNet stage run straight to step 4 and in two segments (2, then 4) from the same VAE; yields (name, the
    final state.json). `before_resume(state_dir)` rewrites the saved state before the second segment."""
    tmp, _ = trained
    for name, segments in (("straight", [4]), ("resumed", [2, 4])):
        run = tmp_path / name
        shutil.copytree(tmp / "run" / "vae", run / "vae")
        for steps in segments:
            if before_resume is not None and (run / "state_unet").is_dir():
                before_resume(run / "state_unet")
            T.main(TINY + ["--run-dir", str(run), "--output-dir", str(tmp_path / f"out_{name}"), "--stage", "unet",
                           "--unet-steps", "4", "--max-steps", str(steps), "--resume", "--text-probe-weight", probe])
        yield name, read_json(run / "state_unet" / "state.json")


@pytest.mark.parametrize("probe", ["0", "0.5"])
def test_resume_continues_exactly(trained, tmp_path, probe):
    losses = {}
    for name, state in _unet_runs(trained, tmp_path, probe):
        assert state["step"] == 4
        losses[name] = [r["loss"] for r in state["history"]]
        assert ("loss_text_probe" in state["history"][-1]) == (probe != "0")
    record = json.loads((tmp_path / "out_resumed" / "training.json").read_text())["text_encoder"]
    assert set(record["separation"]) == {"motion", "colour", "shape", "motion_over_colour"}
    assert ("probe_accuracy_held_out" in record) == (probe != "0")
    assert [r for r in losses["resumed"]][:2] == losses["straight"][:2]
    assert np.allclose(losses["resumed"], losses["straight"], rtol=0, atol=1e-6), losses


@pytest.mark.parametrize("args, name", [
    (["--vae-lr", "-1"], "vae_lr"),
    (["--unet-channels", "30,64,64"], "unet_channels"),
    (["--stage", "video"], "stage"),
    (["--cond-drop", "1.5"], "cond_drop"),
    (["--unet-batch-size", "0"], "unet_batch_size"),
    (["--mixed-precision", "fp8"], "mixed_precision"),
    (["--ema-decay", "1.0"], "ema_decay"),
    (["--vae-steps", "many"], "vae_steps"),
])
def test_bad_config_values_name_the_argument(args, name):
    with pytest.raises(ValueError, match=name):
        parse_config(args)


def test_yaml_config_and_unknown_key(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("unet_lr: 5.0e-4\nunet_channels: [32, 64, 64]\n")
    cfg = parse_config(["--config", str(good), "--unet-batch-size", "32"])
    assert cfg.unet_lr == 5e-4 and cfg.unet_channels == (32, 64, 64) and cfg.unet_batch_size == 32
    bad = tmp_path / "b.yaml"
    bad.write_text("unet_learning_rate: 1\n")
    with pytest.raises(ValueError, match="unet_learning_rate"):
        parse_config(["--config", str(bad)])
    shipped = Path(__file__).resolve().parents[1] / "configs" / "shapes-t2i.yaml"
    assert parse_config(["--config", str(shipped)]).unet_channels == (32, 64, 64)


def test_eval_scores_prompts_with_the_checker(trained):
    tmp, _ = trained
    cfg = parse_config(TINY + ["--run-dir", str(tmp / "run"), "--output-dir", str(tmp / "out"),
                               "--eval-prompts", "3", "--eval-steps", "2"])
    res = evaluate(cfg)
    assert res["prompts"] == 3 and Path(res["grid"]).is_file()
    if "all" in res:  # harivo.data.checker present
        assert 0.0 <= res["all"]["all"] <= 1.0 and len(res["rows"]) == 3


def test_object_weights_by_hand():
    """Pixels that differ from the image's background colour get `object_weight`; each image's mean weight is 1."""
    from harivo.data.shapes import BACKGROUNDS, ShapeSpec

    spec = ShapeSpec("red", "circle", "standing still", "gray")
    img = np.tile(np.array(BACKGROUNDS["gray"], dtype=np.uint8), (1, 4, 4, 1))  # (1, 4, 4, 3)
    img[0, 0, :2] = (220, 40, 40)  # 2 of 16 pixels are object
    x = to_pixels(img)
    w = object_weights([spec], x, 8.0)
    raw = torch.ones(1, 1, 4, 4)
    raw[0, 0, 0, :2] = 8.0  # mean (14 + 16) / 16 = 1.875
    torch.testing.assert_close(w, raw / 1.875)
    assert torch.equal(object_weights([spec], x, 1.0), torch.ones(1, 1, 4, 4))


def test_init_from_warm_starts_from_an_exported_pipeline(trained, tmp_path):
    """A fresh run_dir (state lost) warm-starts the unet stage from an exported folder: VAE, UNet and text
    encoder come from it, so with 0 steps the new export holds exactly the same weights."""
    from safetensors.torch import load_file

    src = trained[0] / "out"
    T.main(TINY + ["--run-dir", str(tmp_path / "fresh"), "--output-dir", str(tmp_path / "again"), "--stage", "unet",
                   "--unet-steps", "0", "--init-from", str(src)])
    for part, name in (("unet", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors"),
                       ("vae", "diffusion_pytorch_model.safetensors")):
        a, b = load_file(str(src / part / name)), load_file(str(tmp_path / "again" / part / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    # the export keeps the history it started from: the init's record and its loss curves
    record = json.loads((tmp_path / "again" / "training.json").read_text())
    origin = json.loads((src / "training.json").read_text())
    assert record["warm_started_from"]["folder"] == str(src)
    assert record["warm_started_from"]["unet"] == origin["unet"]
    assert (tmp_path / "again" / "loss_unet_init.csv").read_bytes() == (src / "loss_unet.csv").read_bytes()
    assert (tmp_path / "again" / "loss_vae.csv").read_bytes() == (src / "loss_vae.csv").read_bytes()
    # a second warm start moves every curve one generation back
    T.main(TINY + ["--run-dir", str(tmp_path / "fresh2"), "--output-dir", str(tmp_path / "third"), "--stage", "unet",
                   "--unet-steps", "0", "--init-from", str(tmp_path / "again")])
    third = tmp_path / "third"
    assert (third / "loss_unet_init_init.csv").read_bytes() == (src / "loss_unet.csv").read_bytes()
    assert not (tmp_path / "again" / "loss_unet.csv").exists() and not (third / "loss_unet_init.csv").exists()  # 0 steps
    assert json.loads((third / "training.json").read_text())["warm_started_from"]["warm_started_from"]["folder"] == str(src)
    with pytest.raises(ValueError, match="init_from"):
        T.main(TINY + ["--run-dir", str(tmp_path / "x"), "--stage", "unet", "--init-from", str(tmp_path)])


def test_caption_labels_and_probe_loss_by_hand():
    """Labels are the attributes' indices in the world's lists; zero logits give CE = ln(classes) per attribute."""
    import math

    from harivo.train.t2i_models import CaptionProbe, attribute_values, caption_labels

    labels = caption_labels(["a red circle is moving up on a gray background",
                             "an orange star is standing still on a black background"])
    values = attribute_values()
    assert labels.tolist() == [
        [values["colour"].index("red"), values["shape"].index("circle"), values["motion"].index("moving up"),
         values["background"].index("gray")],
        [values["colour"].index("orange"), values["shape"].index("star"),
         values["motion"].index("standing still"), values["background"].index("black")]]
    probe = CaptionProbe(5)
    for head in probe.heads.values():
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    want = sum(math.log(len(values[a])) for a in ("colour", "shape", "motion", "background")) / 4
    assert probe(torch.randn(2, 5), labels).item() == pytest.approx(want, abs=1e-6)
    probe.heads["motion"].bias.data[labels[0, 2]] = 100.0  # both captions' motions: one right, one wrong
    assert probe.accuracy(torch.randn(2, 5), labels)["motion"] == 0.5
    with pytest.raises(ValueError, match="caption"):
        caption_labels(["a red blob is moving up on a gray background"])


def test_text_probe_adds_its_loss_and_teaches_the_encoder_the_verb(tmp_path):
    """With text_probe_weight w the step's loss is the plain loss + w × the probe's CE on the same batch (no
    random numbers drawn), and training on it makes the text encoder tell verbs apart."""
    from diffusers import DDPMScheduler

    from harivo.train.t2i_models import SCHEDULE, CaptionProbe, caption_labels, make_text_encoder, make_unet, verb_separation
    from harivo.tokenizer import build_tokenizer

    tok = build_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    te = make_text_encoder(tok, 16, 1, 2, 32)
    unet = make_unet((32, 32, 32), 1, 16, 2, 32, 16, 4)
    probe = CaptionProbe(16)
    caps = [f"a red circle is {m} on a gray background" for m in ("moving up", "moving down", "moving left to right",
                                                                  "moving right to left")]
    cap_ids, empty = token_ids(tok, caps), token_ids(tok, [""])[0]
    labels = caption_labels(caps)
    sched = DDPMScheduler(**SCHEDULE)
    latents, index = torch.randn(8, 4, 16, 16), torch.tensor([0, 1, 2, 3] * 2)
    plain_cfg = tiny_cfg(tmp_path, "--cond-drop", "0")
    probe_cfg = tiny_cfg(tmp_path, "--cond-drop", "0", "--text-probe-weight", "0.5")
    acc = make_accelerator(plain_cfg)
    plain, _, none = unet_loss(3, plain_cfg, latents, index, cap_ids, empty, 1.0, sched, sched.alphas_cumprod, unet,
                               te, acc, 8)
    with_probe, _, ce = unet_loss(3, probe_cfg, latents, index, cap_ids, empty, 1.0, sched, sched.alphas_cumprod,
                                  unet, te, acc, 8, probe, labels)
    assert none is None and ce is not None
    torch.testing.assert_close(with_probe, plain + 0.5 * ce)

    def motion_gap():
        with torch.no_grad():
            h = te(cap_ids)[0]
        return (h[2] - h[3]).norm().item()  # "left to right" vs "right to left": same words, other order

    before = motion_gap()
    opt = torch.optim.Adam(list(te.parameters()) + list(probe.parameters()), lr=1e-2)
    for _ in range(80):
        loss = probe(te(cap_ids)[1], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert probe.accuracy(te(cap_ids)[1], labels)["motion"] == 1.0
    assert motion_gap() > 2 * before, (before, motion_gap())
    sep = verb_separation(te, tok)
    assert sep["motion_over_colour"] == pytest.approx(sep["motion"] / sep["colour"])


def test_object_weighted_unet_loss_by_hand(tmp_path):
    """unet_object_weight w: each latent pixel's squared error is weighted 1 + (w - 1) * mask, normalised to mean 1
    per image; w = 1 (or no masks) is the plain ε-MSE, and the batch/noise/timesteps are those of a run without."""
    from diffusers import DDPMScheduler

    from harivo.train.t2i_models import SCHEDULE

    pred = {}

    def text_encoder(ids):
        return (torch.zeros(ids.shape[0], 3, 4),)

    def unet(x, t, enc):
        pred["x"] = x.clone()
        return SimpleNamespace(sample=0.5 * x)

    latents = torch.randn(8, 4, 16, 16)
    masks = torch.zeros(8, 1, 16, 16)
    masks[:, :, 4:8, 4:8] = 1.0
    sched = DDPMScheduler(**SCHEDULE)
    args = (torch.zeros(8, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), torch.zeros(3, dtype=torch.long),
            1.0, sched, sched.alphas_cumprod, unet, text_encoder)
    plain_cfg = tiny_cfg(tmp_path, "--cond-drop", "0", "--snr-gamma", "0")
    weighted_cfg = tiny_cfg(tmp_path, "--cond-drop", "0", "--snr-gamma", "0", "--unet-object-weight", "5")
    acc = make_accelerator(plain_cfg)
    plain, _, _ = unet_loss(2, plain_cfg, latents, *args, acc, 8, masks=masks)
    x_plain = pred["x"]
    weighted, per, _ = unet_loss(2, weighted_cfg, latents, *args, acc, 8, masks=masks)
    assert torch.equal(pred["x"], x_plain)  # same batch, noise and timesteps
    gen = stage_step_generator(weighted_cfg.seed, 2, 2)
    idx = torch.randint(8, (weighted_cfg.unet_batch_size,), generator=gen)
    noise = torch.randn(latents[idx].shape, generator=gen)
    sq = (0.5 * x_plain - noise) ** 2
    w = 1.0 + 4.0 * masks[idx]
    w = w / w.mean(dim=(1, 2, 3), keepdim=True)  # 16 of 256 pixels at 5: mean 1.25
    assert torch.allclose(w[0, 0, 5, 5], torch.tensor(5 / 1.25)) and torch.allclose(w[0, 0, 0, 0], torch.tensor(0.8))
    torch.testing.assert_close(weighted, (sq * w).mean(dim=(1, 2, 3)).mean())
    torch.testing.assert_close(plain, sq.mean())
    assert not torch.allclose(weighted, plain)
    with pytest.raises(ValueError, match="unet_object_weight"):
        tiny_cfg(tmp_path, "--unet-object-weight", "0")


def older_state_layout(state: Path) -> None:
    """Rewrite a stage-1 training state in the layout stage 1 wrote before it moved onto train_utils' state:
    `model/<module>/<key>` weights, optimizer tensors, the torch RNG only; no RNG or scheduler meta."""
    from harivo.fileio import load_tensors, save_tensors, write_json

    tensors = load_tensors(state / "state.safetensors")
    older = {"model/" + k[len("params/"):]: v for k, v in tensors.items() if k.startswith("params/")}
    older.update({k: v for k, v in tensors.items() if k.startswith("optim/") or k == "rng/torch"})
    meta = {k: v for k, v in read_json(state / "state.json").items() if k not in ("rng", "lr_scheduler")}
    save_tensors(state / "state.safetensors", older)
    write_json(state / "state.json", meta)


@pytest.mark.parametrize("layout", ["current", "older"])
def test_vae_resume_continues_exactly(tmp_path, layout):
    """The VAE stage stopped at step 2 and resumed (from today's state, or from one in stage 1's older layout)
    logs the losses and exports the weights of the uninterrupted run."""
    from safetensors.torch import load_file

    history = {}
    for name, segments in (("straight", [3]), ("resumed", [2, 3])):
        run = tmp_path / name
        for steps in segments:
            if layout == "older" and (run / "state_vae").is_dir():
                older_state_layout(run / "state_vae")
            T.main(TINY + ["--run-dir", str(run), "--stage", "vae", "--vae-steps", "3", "--max-steps", str(steps),
                           "--resume"])
        history[name] = [{k: v for k, v in r.items() if k != "minutes"}
                         for r in read_json(run / "state_vae" / "state.json")["history"]]
    assert history["resumed"] == history["straight"] and history["straight"][-1]["step"] == 3
    weights = [load_file(str(tmp_path / name / "vae" / "diffusion_pytorch_model.safetensors"))
               for name in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_unet_resumes_from_the_older_state_layout(trained, tmp_path):
    """A UNet state in stage 1's older layout (what the run directories of earlier runs hold) resumes as a state
    in today's layout does: the losses of the uninterrupted run, EMA and optimizer included."""
    losses = {name: [r["loss"] for r in state["history"]]
              for name, state in _unet_runs(trained, tmp_path, "0.5", before_resume=older_state_layout)}
    assert len(losses["resumed"]) == 4 and losses["resumed"][:2] == losses["straight"][:2]
    assert np.allclose(losses["resumed"], losses["straight"], rtol=0, atol=1e-6), losses


def test_zero_snr_schedule_v_target_and_weights_by_hand(tmp_path):
    """`--zero-snr`: the DDPM schedule ends at SNR 0, the loss regresses v = √ᾱ ε − √(1−ᾱ) x0 with the
    min-SNR weight min(SNR + 1, γ) / (SNR + 1) (1 at the terminal step), and the exported DDIM is v/trailing."""
    from diffusers import DDPMScheduler

    from harivo.train.stage1.evaluation import ddim_scheduler
    from harivo.noise import prediction_target
    from harivo.train.t2i_models import min_snr_weights, schedule

    sched = DDPMScheduler(**schedule(True))
    ac = sched.alphas_cumprod
    sd_final = float(DDPMScheduler(**schedule(False)).alphas_cumprod[-1])
    assert float(ac[-1]) < 1e-6 and sd_final**0.5 == pytest.approx(0.068, abs=1e-3)
    x0, noise, t = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.tensor([0, 500, 999])
    a = ac[t].view(-1, 1, 1, 1)
    assert torch.allclose(prediction_target(sched, x0, noise, t), a.sqrt() * noise - (1 - a).sqrt() * x0, atol=1e-6)
    assert torch.allclose(prediction_target(sched, x0, noise, t)[2], -x0[2], atol=1e-3)  # t = T: v = −x0
    assert torch.equal(prediction_target(DDPMScheduler(**schedule(False)), x0, noise, t), noise)
    snr = ac[t] / (1 - ac[t])
    w = min_snr_weights(t, ac, 5.0, "v_prediction")
    assert torch.allclose(w, torch.clamp(snr + 1, max=5.0) / (snr + 1))
    assert float(w[2]) == pytest.approx(1.0) and float(w[0]) == pytest.approx(5.0 / (float(snr[0]) + 1))
    ddim = ddim_scheduler(True)
    assert (ddim.config.prediction_type, ddim.config.timestep_spacing, ddim.config.rescale_betas_zero_snr) == \
        ("v_prediction", "trailing", True)
    ddim.set_timesteps(25)
    assert int(ddim.timesteps[0]) == 999  # trailing: sampling starts where training put pure noise
    cfg = tiny_cfg(tmp_path, "--zero-snr")
    assert cfg.zero_snr is True


def test_zero_snr_unet_loss_regresses_v(tmp_path):
    """A UNet that outputs exactly v has zero v-loss; the same UNet scored as epsilon does not."""
    from diffusers import DDPMScheduler

    from harivo.train.t2i_models import schedule

    latents = torch.randn(8, 4, 16, 16)
    cfg = tiny_cfg(tmp_path)
    sched = DDPMScheduler(**schedule(True))

    class Oracle:  # knows the batch: reads x0 and the noise off add_noise
        def __call__(self, x, t, enc):
            return SimpleNamespace(sample=sched.get_velocity(self.x0, self.noise, t))

    oracle = Oracle()
    add_noise = sched.add_noise

    def spy(x0, noise, t):
        oracle.x0, oracle.noise = x0, noise
        return add_noise(x0, noise, t)

    sched.add_noise = spy
    args = (torch.zeros(8, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), torch.zeros(3, dtype=torch.long),
            1.0)
    te = lambda ids: (torch.zeros(ids.shape[0], 3, 4),)  # noqa: E731
    loss, mse, _ = unet_loss(3, cfg, latents, *args, sched, sched.alphas_cumprod, oracle, te, make_accelerator(cfg), 8)
    assert float(mse) < 1e-10 and float(loss) < 1e-10
    eps_sched = DDPMScheduler(**schedule(False))
    eps_sched.add_noise = spy
    loss, mse, _ = unet_loss(3, cfg, latents, *args, eps_sched, eps_sched.alphas_cumprod, oracle, te,
                             make_accelerator(cfg), 8)
    assert float(mse) > 0.1
