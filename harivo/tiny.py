"""Tiny random Stable-Diffusion-shaped components for tests, quick benchmarks and development.

Same diffusers/transformers classes as the real model, a few thousand parameters each, built offline
(the tokenizer is a real CLIPTokenizer made from a small word list).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TINY_WORDS = (
    "a red green blue yellow purple orange white black gray circle square triangle star is moving left to right "
    "up down getting closer away spinning standing still on background"
).split()


def word_tokenizer(words, model_max_length: int = 77) -> CLIPTokenizer:
    """A CLIP BPE tokenizer in which every word of `words` is one token; other text falls back to letters."""
    vocab: dict[str, int] = {}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789,.'-!?":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words)):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:  # merge left to right: a, b -> ab, then ab, c -> abc ...
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


@dataclass
class TinyComponents:
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    unet: UNet2DConditionModel
    motion_adapter: MotionAdapter
    scheduler: DDIMScheduler


def scheduler_config() -> dict:
    """SD1.5's scheduler settings (linear betas 0.00085–0.012 in sqrt space, App. D)."""
    return dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
    )


def tiny_components(seed: int = 0, text_dim: int = 16, sample_size: int = 8, max_frames: int = 32) -> TinyComponents:
    """Random tiny VAE (×2), CLIP text encoder, UNet (2 levels) and MotionAdapter."""
    torch.manual_seed(seed)
    tokenizer = word_tokenizer(TINY_WORDS)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=text_dim, intermediate_size=2 * text_dim, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=2 * sample_size,
    ).eval()
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_dim, attention_head_dim=4, norm_num_groups=8,
    ).eval()
    adapter = MotionAdapter(
        block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=2,
        motion_norm_num_groups=8, motion_max_seq_length=max_frames, use_motion_mid_block=True,
    )
    randomize_motion_outputs(adapter, seed)
    return TinyComponents(vae, text_encoder, tokenizer, unet, adapter, DDIMScheduler(**scheduler_config()))


def randomize_motion_outputs(adapter: MotionAdapter, seed: int, std: float = 0.02) -> None:
    """AnimateDiff zero-initialises the motion modules' proj_out; give them small random values so tests see
    motion modules that actually act (a zero motion module would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "proj_out" in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def save_tiny_checkpoint(root, seed: int = 0, num_frames: int = 4, **config) -> "Path":
    """Write a tiny random base pipeline folder (`root/base`) and a HARIVO checkpoint on it (`root/harivo`).
    The checkpoint names its base by a relative path, as the shipped checkpoints do."""
    from pathlib import Path

    from diffusers import StableDiffusionPipeline

    from .config import HarivoConfig
    from .model import HarivoVideoModel

    root = Path(root)
    c = tiny_components(seed)
    StableDiffusionPipeline(
        vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet, scheduler=c.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(root / "base", safe_serialization=True)
    cfg = dict(num_frames=num_frames, mapping_hidden_channels=8, mapping_heads=2, mapping_head_dim=8, base_model="../base")
    cfg.update(config)
    model = HarivoVideoModel.from_unet2d(c.unet, c.motion_adapter, HarivoConfig(**cfg))
    model.save_pretrained(root / "harivo")
    return root / "harivo"


# SD1.5 / AnimateDiff's block structure (4 UNet levels, 3 with cross-attention, 2 layers per block, a mid block with
# motion modules, a 4-level VAE: 8× downsampling) with tiny channels: a "real-shaped" model for fast tests of what
# a real model goes through (folders, loaders, attention at every resolution). The real configs (random weights) are
# harivo.bench.cases' SD15_*.
REAL_SHAPED = dict(
    unet=dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(8, 8, 16, 16),
              down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
              up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=16,
              attention_head_dim=2, norm_num_groups=4),
    vae=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 4, 8, 8), layers_per_block=1,
             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=64,
             norm_num_groups=4, scaling_factor=0.18215),
    text=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
              max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=16),
    adapter=dict(block_out_channels=(8, 8, 16, 16), motion_layers_per_block=2, motion_num_attention_heads=2,
                 motion_norm_num_groups=4, motion_max_seq_length=32, use_motion_mid_block=True),
)


def save_real_shaped(root, configs: dict | None = None, seed: int = 0, harivo: dict | None = None) -> "Path":
    """Random weights in the layout of a real model, offline: `root/base` (a StableDiffusionPipeline folder with
    the word tokenizer), `root/motion_adapter` (a MotionAdapter folder) and, with `harivo` (HarivoConfig fields),
    `root/harivo` (a HARIVO checkpoint on `../base`). `configs`: unet / vae / text / adapter keyword arguments
    (default `REAL_SHAPED`; `harivo.bench.cases`' SD15_* give SD1.5 + AnimateDiff v2). Each part is written and
    freed before the next, so an SD1.5-sized model never holds two copies. Returns `root`."""
    import gc
    from pathlib import Path

    from diffusers import StableDiffusionPipeline

    from .config import HarivoConfig
    from .model import HarivoVideoModel

    root, c = Path(root), {**REAL_SHAPED, **(configs or {})}
    torch.manual_seed(seed)
    tokenizer = word_tokenizer(TINY_WORDS)
    text = {k: v for k, v in c["text"].items() if k != "vocab_size"}
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id, **text)).eval()
    unet = UNet2DConditionModel(**c["unet"]).eval()
    StableDiffusionPipeline(
        vae=AutoencoderKL(**c["vae"]).eval(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(**scheduler_config()), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(root / "base", safe_serialization=True)
    del text_encoder
    gc.collect()
    adapter = MotionAdapter(**c["adapter"])
    randomize_motion_outputs(adapter, seed)
    adapter.save_pretrained(root / "motion_adapter", safe_serialization=True)
    if harivo is not None:
        config = HarivoConfig(**{"base_model": "../base", **harivo})
        HarivoVideoModel.from_unet2d(unet, adapter, config).save_pretrained(root / "harivo")
    del unet, adapter
    gc.collect()
    return root
