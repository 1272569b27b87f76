"""The HARIVO video model over diffusers (§3.1–3.5): a frozen T2I UNet inflated with AnimateDiff motion modules
(`UNetMotionModel.from_unet2d`), plus the mapping network in front of it and the frame-wise token generator.

Two branches share one copy of the frozen T2I weights:
- the video branch `f_{M,θ,φ}` = UNetMotionModel (motion modules on), and
- the T2I branch `f_{M,φ}` of Eq. 2 = the original `UNet2DConditionModel`, whose parameters are *tied* to the
  spatial parameters of the motion UNet. It runs every frame on its own (motion modules skipped), without
  frame tokens, and serves both `L_reg` and the app's "temporal layers off" toggle. Tying (instead of patching
  the motion modules out) keeps the two branches thread-safe and costs no memory.

Checkpoint layout (docs/design.md §3): `motion_adapter/` (diffusers MotionAdapter), `harivo.safetensors` (mapping
network, frame-token generator), `config.json` (HarivoConfig).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from einops import rearrange
from torch import nn

from . import fileio
from .config import HarivoConfig
from .modules import FrameTokenGenerator, MappingNetwork, ProjectionHead

WEIGHTS_NAME = "harivo.safetensors"
CONFIG_NAME = "config.json"
ADAPTER_DIR = "motion_adapter"


def tie_spatial_weights(motion_unet: UNetMotionModel, unet2d: UNet2DConditionModel) -> int:
    """Make every T2I parameter/buffer of `motion_unet` the very same tensor as in `unet2d`. Returns the count."""
    tied = 0
    for name, module in unet2d.named_modules():
        target = motion_unet.get_submodule(name)
        for pname, param in module.named_parameters(recurse=False):
            own = target._parameters[pname]
            assert own is not None and own.shape == param.shape, f"cannot tie {name}.{pname}"
            target._parameters[pname] = param
            tied += 1
        for bname, buf in module.named_buffers(recurse=False):
            if bname in target._buffers:
                target._buffers[bname] = buf
    return tied


def motion_adapter_config(adapter: MotionAdapter) -> dict:
    """The MotionAdapter constructor arguments, to rebuild it when saving (JSON-serialisable)."""
    keys = (
        "block_out_channels", "motion_layers_per_block", "motion_transformer_layers_per_block",
        "motion_mid_block_layers_per_block", "motion_transformer_layers_per_mid_block",
        "motion_num_attention_heads", "motion_norm_num_groups", "motion_max_seq_length",
        "use_motion_mid_block", "conv_in_channels",
    )
    cfg = {k: adapter.config[k] for k in keys if k in adapter.config}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


@contextlib.contextmanager
def _quiet_fp32_cast_warning():
    """diffusers' `UNetMotionModel.from_unet2d` casts with `.to(dtype)`, and `ModelMixin.to` then warns that "modules
    ... should be kept in float32: []" even when that list is empty: once per model load, in the app and the CLI.
    Silence that logger for the call (errors still show)."""
    log = logging.getLogger("diffusers.models.modeling_utils")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class HarivoVideoModel(nn.Module):
    """ε-prediction of HARIVO on video latents `(b, c, f, h, w)`; each component switchable per call."""

    def __init__(
        self,
        unet: UNetMotionModel,
        t2i_unet: UNet2DConditionModel,
        config: HarivoConfig,
        mapping_network: MappingNetwork | None = None,
        frame_token_generator: FrameTokenGenerator | None = None,
    ):
        super().__init__()
        self.unet, self.t2i_unet, self.config = unet, t2i_unet, config  # video branch, T2I branch (tied weights)
        self.mapping_network, self.frame_token_generator = mapping_network, frame_token_generator  # None: absent

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def from_unet2d(
        cls, unet2d: UNet2DConditionModel, motion_adapter: MotionAdapter, config: HarivoConfig | None = None
    ) -> "HarivoVideoModel":
        """Inflate a T2I UNet with a MotionAdapter (§3.1), add the HARIVO networks, freeze the T2I weights."""
        config = config or HarivoConfig()
        config.latent_channels = unet2d.config.in_channels
        config.text_dim = unet2d.config.cross_attention_dim
        config.hspace_channels = unet2d.config.block_out_channels[-1]
        config.hspace_size = unet2d.config.sample_size // 2 ** (len(unet2d.config.block_out_channels) - 1)
        config.motion_adapter_config = motion_adapter_config(motion_adapter)
        config.validate()
        with _quiet_fp32_cast_warning():
            unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter)
        tie_spatial_weights(unet, unet2d)
        mapping = None
        if config.use_mapping:
            mapping = MappingNetwork(
                config.latent_channels, config.mapping_hidden_channels, config.mapping_heads,
                config.mapping_head_dim, config.mapping_max_frames,
            )
        tokens = None
        if config.use_frame_tokens:
            tokens = FrameTokenGenerator(config.text_dim, config.max_text_len, config.num_frame_tokens, config.num_frames)
        model = cls(unet, unet2d, config, mapping, tokens)
        for module in (mapping, tokens):
            if module is not None:
                module.to(device=unet2d.device, dtype=unet2d.dtype)
        model.freeze_t2i()
        return model

    def freeze_t2i(self) -> None:
        """T2I weights never change (§3.1); motion modules, mapping network and token generator train."""
        self.unet.freeze_unet2d_params()  # freezes all, then unfreezes the motion modules
        self.t2i_unet.requires_grad_(False)
        for module in (self.mapping_network, self.frame_token_generator):
            if module is not None:
                module.requires_grad_(True)

    def make_projection_head(self) -> ProjectionHead:
        """g of Eq. 4, sized to this UNet's h-space. Training only."""
        return ProjectionHead(self.config.hspace_channels, self.config.hspace_size)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def max_frames(self) -> int:
        return int(self.unet.config.motion_max_seq_length)

    # ------------------------------------------------------------------------------------------- forward
    def encoder_states(self, text_embeds: torch.Tensor, num_frames: int, use_frame_tokens: bool) -> torch.Tensor:
        """(b, M, D) text tokens → (b f, n, D) per-frame cross-attention states (batch-major)."""
        if use_frame_tokens:
            if self.frame_token_generator is None:
                raise ValueError("use_frame_tokens: this model has no frame-token generator (trained without it)")
            return self.frame_token_generator(text_embeds, num_frames)
        return text_embeds.repeat_interleave(num_frames, dim=0)

    def map_noise(self, sample: torch.Tensor, use_mapping: bool | None = None) -> torch.Tensor:
        """M(x_t) (§3.2) on (b, c, f, h, w); `use_mapping` defaults to whether the model has a mapping network."""
        use_mapping = self.mapping_network is not None if use_mapping is None else use_mapping
        if not use_mapping:
            return sample
        if self.mapping_network is None:
            raise ValueError("use_mapping: this model has no mapping network (trained without it)")
        return self.mapping_network(sample)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        text_embeds: torch.Tensor,
        *,
        use_motion: bool = True,
        use_mapping: bool | None = None,
        use_frame_tokens: bool | None = None,
        cross_attention_kwargs: dict | None = None,
        unet_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """ε(x_t, t, c) for `sample` (b, c, f, h, w), one text embedding (b, M, D) per video.

        `use_motion=False` is the T2I branch of Eq. 2: every frame denoised on its own by the frozen T2I UNet.
        `use_mapping` / `use_frame_tokens` default to what the model has. `unet_kwargs`: extra keyword arguments
        for whichever UNet runs (add-ons: ControlNet residuals, IP-Adapter image embeddings; `harivo.conditions`).
        """
        if sample.ndim != 5:
            raise ValueError(f"sample: expected (b, c, f, h, w) video latents, got shape {tuple(sample.shape)}")
        b, c, f, h, w = sample.shape
        if text_embeds.shape[0] != b:
            raise ValueError(f"text_embeds: expected batch {b} (one per video), got {text_embeds.shape[0]}")
        use_mapping = self.mapping_network is not None if use_mapping is None else use_mapping
        use_frame_tokens = self.frame_token_generator is not None if use_frame_tokens is None else use_frame_tokens
        extra = {"cross_attention_kwargs": cross_attention_kwargs, **(unet_kwargs or {})}
        # 1. mapping network on x_t (§3.2), per video
        x = self.map_noise(sample, use_mapping)
        # 2. per-frame cross-attention states, with frame-wise tokens (§3.5)
        states = self.encoder_states(text_embeds, f, use_frame_tokens)  # (b f, n, D)
        if use_motion:
            # 3a. video branch: UNetMotionModel takes (b, c, f, h, w) and broadcasts t over frames itself
            return self.unet(x, timestep, encoder_hidden_states=states, **extra).sample
        # 3b. T2I branch: frames are independent images
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.expand(b) if t.ndim == 0 else t
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        eps = self.t2i_unet(frames, t.repeat_interleave(f), encoder_hidden_states=states, **extra).sample
        return rearrange(eps, "(b f) c h w -> b c f h w", b=b)

    # ----------------------------------------------------------------------------------------- save / load
    def motion_adapter(self) -> MotionAdapter:
        """The trained motion modules as a diffusers MotionAdapter (loads with MotionAdapter.from_pretrained)."""
        adapter = MotionAdapter(**self.config.motion_adapter_config)
        state = {k: v for k, v in self.unet.state_dict().items() if "motion_modules" in k}
        adapter.load_state_dict(state)
        return adapter

    def harivo_state_dict(self) -> dict[str, torch.Tensor]:
        state = {}
        for prefix in ("mapping_network", "frame_token_generator"):
            module = getattr(self, prefix)
            if module is not None:
                state.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        return state

    def load_harivo_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what `harivo_state_dict` returns (mapping network, frame-token generator) into this model."""
        for prefix in ("mapping_network", "frame_token_generator"):
            module = getattr(self, prefix)
            if module is not None:
                sub = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
                module.load_state_dict(sub, strict=False)  # non-persistent buffers are rebuilt, not stored

    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write motion_adapter/, harivo.safetensors and config.json into `directory` (atomically per file)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with fileio.atomic_dir(directory / ADAPTER_DIR) as tmp:
            self.motion_adapter().save_pretrained(tmp, safe_serialization=True)
        fileio.save_tensors(directory / WEIGHTS_NAME, self.harivo_state_dict(), metadata={"format": "pt"})
        fileio.write_json(directory / CONFIG_NAME, {**self.config.to_dict(), **(extra or {})})

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        unet2d: UNet2DConditionModel | None = None,
        base_model: str | None = None,
    ) -> "HarivoVideoModel":
        """Load a HARIVO checkpoint folder on top of `unet2d` (or the config's / given `base_model`)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"checkpoint: expected a HARIVO checkpoint folder, {str(directory)!r} does not exist")
        raw = fileio.read_json(directory / CONFIG_NAME, what="checkpoint config.json")
        known = {k: v for k, v in raw.items() if k in HarivoConfig.__dataclass_fields__}
        config = HarivoConfig.from_dict(known)
        if unet2d is None:
            base = base_model or config.base_model
            if not base:
                raise ValueError("base_model: the checkpoint names no base T2I model; pass base_model=")
            unet2d = load_unet2d(base, directory)
        if not (directory / ADAPTER_DIR).is_dir():
            raise ValueError(f"checkpoint: {str(directory)!r} has no {ADAPTER_DIR}/ folder")
        adapter = load_motion_adapter(str(directory / ADAPTER_DIR), what="checkpoint")
        model = cls.from_unet2d(unet2d, adapter, config)
        state = fileio.load_tensors(directory / WEIGHTS_NAME, what="checkpoint harivo.safetensors")
        expected = model.harivo_state_dict()
        if set(state) != set(expected):
            missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise ValueError(f"checkpoint: harivo.safetensors does not match config.json (missing {missing[:3]}, unexpected {extra[:3]})")
        model.load_harivo_state_dict(state)
        return model


def load_unet2d(base: str, relative_to: Path | None = None) -> UNet2DConditionModel:
    """The T2I UNet of a StableDiffusion-style pipeline folder (local path, relative path, or hub id)."""
    path = Path(base)
    if not path.is_absolute() and relative_to is not None and not path.exists():
        candidate = (relative_to / base).resolve()
        path = candidate if candidate.exists() else path
    try:
        return UNet2DConditionModel.from_pretrained(str(path), subfolder="unet", use_safetensors=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"base_model: cannot load a diffusers UNet from {base!r} ({e})") from None


def load_motion_adapter(source: str, what: str = "motion_adapter") -> MotionAdapter:
    """A diffusers MotionAdapter from a local folder or a hub id (safetensors only)."""
    try:
        return MotionAdapter.from_pretrained(str(source), use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{what}: cannot load a diffusers MotionAdapter from {str(source)!r} ({e})") from None
