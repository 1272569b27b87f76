"""The three networks of the tiny Stable-Diffusion-shaped shapes-world model, as stock diffusers/transformers classes.

Everything here is a plain `AutoencoderKL`, `CLIPTextModel` or `UNet2DConditionModel`, so the exported folder
loads with `StableDiffusionPipeline.from_pretrained` and no project code, and the UNet inflates with
`UNetMotionModel.from_unet2d` + `MotionAdapter` (stage 2).
"""

from __future__ import annotations

import copy

import torch

# Stable Diffusion v1 noise schedule (the paper keeps it: linear betas 0.00085-0.012, "scaled_linear").
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def schedule(zero_snr: bool = False) -> dict:
    """Scheduler keyword arguments of stage 1's noise schedule (DDPM for training, DDIM for sampling accept both).

    `zero_snr=False`: SD v1 as the paper keeps it, epsilon prediction. `zero_snr=True`: the same betas rescaled to
    zero terminal SNR, v-prediction and trailing timesteps, together as Lin et al. 2024 prescribe ("Common
    diffusion noise schedules and sample steps are flawed"): SD's schedule keeps sqrt(alphas_cumprod[999]) = 0.068
    of the image at t = 999, which training reads (in the shapes world: each frame's layout, a video's whole
    trajectory) and sampling from pure noise never offers; epsilon prediction is undefined at SNR 0, hence v.
    """
    if not zero_snr:
        return dict(SCHEDULE, prediction_type="epsilon")
    return dict(SCHEDULE, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")


def make_vae(channels, layers_per_block: int, latent_channels: int, norm_num_groups: int, sample_size: int):
    """AutoencoderKL; len(channels) blocks give 2**(len-1) downsampling (3 blocks: 64x64 -> 16x16)."""
    from diffusers import AutoencoderKL

    n = len(channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        scaling_factor=1.0,  # replaced by 1/std of the latents after training
    )


def make_text_encoder(tokenizer, hidden: int, layers: int, heads: int, intermediate: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(cfg)


def make_unet(channels, layers_per_block: int, cross_attention_dim: int, attention_head_dim: int,
              norm_num_groups: int, sample_size: int, latent_channels: int):
    """SD-1.x-shaped UNet (two cross-attention levels + a plain one), compatible with `UNetMotionModel`."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=tuple(channels),
        layers_per_block=layers_per_block,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups,
    )


def check_motion_compatible(unet, layers_per_block: int, max_seq_length: int = 32) -> int:
    """Inflate a copy of `unet` with a fresh `MotionAdapter` (as stage 2 does); returns the motion param count.

    Raises ValueError if diffusers cannot build the video UNet from it.
    """
    from diffusers import MotionAdapter, UNetMotionModel

    try:
        adapter = MotionAdapter(
            block_out_channels=tuple(unet.config.block_out_channels),
            motion_layers_per_block=layers_per_block,
            motion_num_attention_heads=4,
            motion_norm_num_groups=32,
            motion_max_seq_length=max_seq_length,
        )
        video = UNetMotionModel.from_unet2d(copy.deepcopy(unet), adapter)
        f = 2
        x = torch.zeros(1, unet.config.in_channels, f, 8, 8)
        enc = torch.zeros(f, 3, unet.config.cross_attention_dim)
        with torch.no_grad():
            out = video(x, 10, encoder_hidden_states=enc).sample
        assert out.shape == x.shape
    except Exception as e:  # pragma: no cover - only hit with an incompatible config
        raise ValueError(f"unet: not compatible with UNetMotionModel.from_unet2d + MotionAdapter ({e})") from e
    return sum(p.numel() for p in adapter.parameters())


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def min_snr_weights(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: float,
                    prediction_type: str = "epsilon") -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023). Epsilon prediction: min(SNR, gamma) / SNR.

    v-prediction: min(SNR + 1, gamma) / (SNR + 1). The v-MSE is (SNR + 1) times the x0-MSE, so this caps the
    x0-space weight at gamma as Hang et al. do, but truncates SNR + 1 instead of SNR: their min(SNR, gamma) / (SNR + 1)
    gives the terminal step of a zero-terminal-SNR schedule (SNR 0, where the layout is chosen from the caption
    alone) weight 0; here it keeps weight 1.
    """
    ac = alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = ac / (1.0 - ac)
    if gamma <= 0:
        return torch.ones_like(snr)
    if prediction_type == "v_prediction":
        return torch.clamp(snr + 1, max=gamma) / (snr + 1)
    return torch.clamp(snr, max=gamma) / snr


class EMA:
    """Exponential moving average of a module's parameters, kept as a full module copy (what gets exported).

    decay ramps up as min(decay, (1 + step) / (10 + step)) like diffusers' EMAModel, so early weights do not
    dominate a short run.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    def effective_decay(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = self.effective_decay(step)
        ema_p = [p for p in self.module.parameters()]
        src_p = [p.detach().to(e.dtype) for p, e in zip(module.parameters(), ema_p)]
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, src_p, alpha=1.0 - d)


# ------------------------------------------------------------------------------------------- caption probe
CAPTION_ATTRIBUTES = ("colour", "shape", "motion", "background")


def attribute_values() -> dict[str, list[str]]:
    """The classes of every caption attribute, in the shapes world's fixed order."""
    from harivo.data.shapes import BACKGROUNDS, COLOURS, MOTIONS, SHAPES

    return {"colour": list(COLOURS), "shape": list(SHAPES), "motion": list(MOTIONS), "background": list(BACKGROUNDS)}


def caption_labels(captions: list[str]) -> torch.Tensor:
    """(n, 4) class indices of (colour, shape, motion, background) of shapes-world captions."""
    from harivo.data.shapes import ShapeSpec

    values = attribute_values()
    rows = []
    for c in captions:
        spec = ShapeSpec.from_caption(c)
        rows.append([values[a].index(getattr(spec, a)) for a in CAPTION_ATTRIBUTES])
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), len(CAPTION_ATTRIBUTES))


class CaptionProbe(torch.nn.Module):
    """Linear read-out of every caption attribute from the text encoder's pooled (EOS) output. Training only.

    Why: SD's text encoder is CLIP, whose contrastive pre-training made its pooled output say everything in the
    caption, verbs included. Ours learns from denoising single frames, and one frame barely shows the motion, so
    trained on the diffusion loss alone it learned to drop the verb: on the 9000-step encoder "moving left to
    right" and "moving right to left" differ by 1.3 (hidden-state norm over all positions) against 44 for two
    colours, and the UNet's prediction by 0.004 against 1.2 — no motion module downstream can read a verb
    from that. This probe's cross-entropy (weight `text_probe_weight`) is the miniature stand-in for CLIP's
    objective: the pooled output must name colour, shape, motion and background.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.heads = torch.nn.ModuleDict(
            {a: torch.nn.Linear(hidden, len(v)) for a, v in attribute_values().items()}
        )

    def forward(self, pooled: torch.Tensor, labels: torch.Tensor | None = None):
        """Logits per attribute; with `labels` ((n, 4) as `caption_labels`) the loss instead — the mean over the
        four attributes of the cross-entropy — so that a DDP-wrapped probe computes it in its forward (and syncs
        its gradients)."""
        logits = {a: self.heads[a](pooled.float()) for a in CAPTION_ATTRIBUTES}
        if labels is None:
            return logits
        ce = [torch.nn.functional.cross_entropy(logits[a], labels[:, i]) for i, a in enumerate(CAPTION_ATTRIBUTES)]
        return torch.stack(ce).mean()

    @torch.no_grad()
    def accuracy(self, pooled: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        logits = self(pooled)
        return {a: (logits[a].argmax(-1) == labels[:, i]).float().mean().item()
                for i, a in enumerate(CAPTION_ATTRIBUTES)}


@torch.no_grad()
def verb_separation(text_encoder, tokenizer) -> dict[str, float]:
    """How much the text encoder's hidden states (all positions, as the UNet sees them) change when one word of
    a caption changes: mean norm of the difference over caption pairs that differ only in motion, only in
    colour, only in shape. A verb-blind encoder has motion << colour."""
    from harivo.data.shapes import ShapeSpec, all_specs
    from harivo.tokenizer import token_ids

    specs = all_specs("all")
    out = {}
    for attr in ("motion", "colour", "shape"):
        pairs = []
        groups: dict[tuple, list[ShapeSpec]] = {}
        for s in specs:
            key = tuple(getattr(s, a) for a in CAPTION_ATTRIBUTES if a != attr)
            groups.setdefault(key, []).append(s)
        for group in groups.values():
            pairs += [(a.caption, b.caption) for a, b in zip(group, group[1:])]
        pairs = pairs[:: max(1, len(pairs) // 64)][:64]  # a fixed, spread subset
        caps = [p for pair in pairs for p in pair]
        h = text_encoder(token_ids(tokenizer, caps).to(text_encoder.device))[0].float()
        out[attr] = (h[0::2] - h[1::2]).flatten(1).norm(dim=1).mean().item()
    out["motion_over_colour"] = out["motion"] / max(out["colour"], 1e-12)
    return out
