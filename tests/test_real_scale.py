"""Structural tests on the real SD1.5 / AnimateDiff configs with random weights (no downloads). Slow: run with
`python -m pytest -m slow`. Shapes and wiring only; 64×64 px and 2–3 frames keep it to a few minutes on a CPU."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from harivo.attention import spatial_attention_names
from harivo.bench.cases import ANIMATEDIFF_V2, SD15_UNET, SD15_VAE
from harivo.bench.cases import SD15_TEXT as _SD15_TEXT
from harivo.config import HarivoConfig
from harivo.model import HarivoVideoModel
from harivo.pipeline import GenerationSettings, HarivoPipeline
from harivo.sampling import CFGSchedule
from harivo.tiny import scheduler_config, word_tokenizer

pytestmark = pytest.mark.slow

# the real configs, shared with the benchmark's SD1.5-sized section; the tests use the tiny word tokenizer's vocab
SD15_TEXT = {k: v for k, v in _SD15_TEXT.items() if k != "vocab_size"}


@pytest.fixture(scope="module")
def sd15():
    torch.manual_seed(0)
    tokenizer = word_tokenizer("a red circle moving left".split())
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, **SD15_TEXT)).eval()
    return dict(unet=UNet2DConditionModel(**SD15_UNET).eval(), vae=AutoencoderKL(**SD15_VAE).eval(),
                text_encoder=text_encoder, tokenizer=tokenizer, adapter=MotionAdapter(**ANIMATEDIFF_V2))


def test_sd15_video_model_structure(sd15):
    model = HarivoVideoModel.from_unet2d(sd15["unet"], sd15["adapter"], HarivoConfig(num_frames=3))
    assert model.config.text_dim == 768 and model.config.hspace_channels == 1280 and model.config.hspace_size == 8
    n_unet = sum(p.numel() for p in sd15["unet"].parameters())
    assert 855e6 < n_unet < 865e6  # SD1.5 UNet: 859.5 M
    n_motion = sum(p.numel() for n, p in model.unet.named_parameters() if "motion_modules" in n)
    assert 450e6 < n_motion < 460e6  # AnimateDiff v2 motion modules: 453 M
    assert len(spatial_attention_names(model.unet, "attn2")) == 16  # SD1.5's cross-attention layers
    assert len(spatial_attention_names(model.unet, "attn1", decoder_only=True)) == 9  # L_TRS layers (3 up blocks × 3)
    x = torch.randn(1, 4, 3, 8, 8)
    text = torch.randn(1, 77, 768)
    with torch.no_grad():
        assert model(x, 500, text).shape == x.shape
        assert model(x, 500, text, use_motion=False, use_frame_tokens=False).shape == x.shape
    head = model.make_projection_head()
    assert head(torch.randn(2, 1280, 8, 8)).shape == (2, 1280)


def test_sd15_pipeline_generates(sd15):
    model = HarivoVideoModel.from_unet2d(sd15["unet"], sd15["adapter"], HarivoConfig(num_frames=2))
    pipe = HarivoPipeline(sd15["vae"], sd15["text_encoder"], sd15["tokenizer"], model.eval(), DDIMScheduler(**scheduler_config()))
    out = pipe(GenerationSettings("a red circle moving left", num_frames=2, num_inference_steps=1, height=64, width=64,
                                  cfg=CFGSchedule()))
    assert out.frames.shape == (2, 64, 64, 3)
    assert out.attention.resolutions == ["8x8", "4x4", "2x2", "1x1"]  # 64 px: 8×8 latents; the mid block is 1×1


# ------------------------------------------------------------------ add-ons (harivo.compat) at SD1.5 shapes
# One pipeline for the add-on tests (a second SD1.5 copy would double the memory); they run in file order and
# each removes its add-on again, LoRA last.
def settings(**kw) -> GenerationSettings:
    base = dict(num_frames=2, num_inference_steps=1, height=64, width=64, cfg=CFGSchedule())
    base.update(kw)
    return GenerationSettings("a red circle moving left", **base)


@pytest.fixture(scope="module")
def sd15_pipe(sd15):
    model = HarivoVideoModel.from_unet2d(sd15["unet"], sd15["adapter"], HarivoConfig(num_frames=2))
    return HarivoPipeline(sd15["vae"], sd15["text_encoder"], sd15["tokenizer"], model.eval(), DDIMScheduler(**scheduler_config()))


def test_sd15_controlnet_sparse_frames(sd15_pipe):
    from diffusers import ControlNetModel

    from harivo.compat import ControlNetCondition

    net = ControlNetModel.from_unet(sd15_pipe.model.t2i_unet).eval()  # SD1.5 ControlNet shapes (361 M)
    assert 355e6 < sum(p.numel() for p in net.parameters()) < 365e6
    images = torch.rand(1, 3, 64, 64)
    cond = ControlNetCondition(net, images, frame_indices=[1])
    x, text = torch.randn(2, 4, 2, 8, 8), torch.randn(2, 77, 768)
    with torch.no_grad():
        extra = cond.unet_kwargs(x, 500, text, 0, 1, True)
    assert len(extra["down_block_additional_residuals"]) == 12  # SD1.5: 12 down-block residuals + mid
    assert [tuple(r.shape[1:]) for r in extra["down_block_additional_residuals"]][::3] == \
        [(320, 8, 8), (320, 4, 4), (640, 2, 2), (1280, 1, 1)]
    assert extra["mid_block_additional_residual"].shape == (4, 1280, 1, 1)  # (b f): CFG halves × 2 frames
    out = sd15_pipe(settings(), conditions=[cond])
    assert out.frames.shape == (2, 64, 64, 3) and np.isfinite(out.frames).all()


def test_sd15_ip_adapter(sd15_pipe):
    from harivo.compat import IPAdapterCondition, load_ip_adapter, unload_ip_adapter

    from test_compat import make_ip_adapter

    load_ip_adapter(sd15_pipe, make_ip_adapter(sd15_pipe.model.t2i_unet, image_dim=1024), scale=0.6)  # ViT-H: 1024
    try:
        for use_motion in (True, False):
            out = sd15_pipe(settings(use_motion=use_motion), conditions=[IPAdapterCondition(torch.randn(1, 1024))])
            assert out.frames.shape == (2, 64, 64, 3) and np.isfinite(out.frames).all()
    finally:
        unload_ip_adapter(sd15_pipe)
    assert sd15_pipe(settings()).frames.shape == (2, 64, 64, 3)


def test_sd15_dreambooth_swap(sd15_pipe, tmp_path):
    import gc

    from harivo.compat import swap_base_model

    other = UNet2DConditionModel(**SD15_UNET)
    other.save_pretrained(tmp_path / "dreambooth" / "unet", safe_serialization=True)  # a UNet-only "DreamBooth"
    del other
    swapped = swap_base_model(sd15_pipe, str(tmp_path / "dreambooth"))
    assert swapped.text_encoder is sd15_pipe.text_encoder  # the folder has no text encoder: kept
    assert swapped.model.unet.conv_in.weight is swapped.model.t2i_unet.conv_in.weight
    assert swapped(settings()).frames.shape == (2, 64, 64, 3)
    del swapped
    gc.collect()


def test_sd15_training_step_all_four_losses(sd15):
    """One HARIVO step (Eq. 5, every term) on SD1.5 shapes at 64 px (8×8 latents → 1×1 h-space), as train.py
    sets it up below the native size."""
    from diffusers import DDPMScheduler

    from harivo.config import LossConfig
    from harivo.train.losses import NegativeQueue, training_step

    model = HarivoVideoModel.from_unet2d(sd15["unet"], sd15["adapter"], HarivoConfig(num_frames=2))
    model.config.hspace_size = 1
    head = model.make_projection_head()
    loss_cfg = LossConfig()
    out = training_step(model, torch.randn(1, 4, 2, 8, 8), torch.randn(1, 77, 768),
                        DDPMScheduler(**{k: v for k, v in scheduler_config().items() if k != "set_alpha_to_one"}),
                        loss_cfg, head, NegativeQueue(8, 1280), torch.Generator().manual_seed(0))
    assert set(out.terms) == {"total", "simple", "trs", "reg", "dc"} and torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "motion_modules" in n)
    for prefix in ("mapping_network.", "frame_token_generator."):
        assert any(g is not None for n, g in grads.items() if n.startswith(prefix)), prefix
    assert all(p.grad is not None for p in head.parameters())
    assert all(p.grad is None for p in model.t2i_unet.parameters())  # T2I frozen
    model.zero_grad(set_to_none=True)


def test_sd15_lora_unet_and_text_encoder(sd15_pipe):
    from harivo.compat import load_lora

    g = torch.Generator().manual_seed(0)
    state, r = {}, 4
    for name, module in sd15_pipe.model.t2i_unet.named_modules():
        if name.endswith(("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn2.to_q", "attn2.to_k", "attn2.to_v", "to_out.0")):
            state[f"unet.{name}.lora_A.weight"] = torch.randn(r, module.in_features, generator=g) * 0.01
            state[f"unet.{name}.lora_B.weight"] = torch.randn(module.out_features, r, generator=g) * 0.01
    for name, module in sd15_pipe.text_encoder.named_modules():
        if name.endswith(("q_proj", "k_proj", "v_proj", "out_proj")):
            state[f"text_encoder.{name}.lora_A.weight"] = torch.randn(r, module.in_features, generator=g) * 0.01
            state[f"text_encoder.{name}.lora_B.weight"] = torch.randn(module.out_features, r, generator=g) * 0.01
    counts = load_lora(sd15_pipe, state, scale=0.8)
    assert counts == {"unet": 128, "t2i_unet": 128, "text_encoder": 48}  # 16 blocks × (attn1, attn2) × q k v out; 12 × 4
    out = sd15_pipe(settings())
    assert out.frames.shape == (2, 64, 64, 3) and np.isfinite(out.frames).all()
