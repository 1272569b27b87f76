"""Configuration dataclasses for the HARIVO video model, its losses and its sampler.

Each default carries a comment saying where it comes from (the paper's section, docs/design.md, or a choice of
ours). Scripts override fields from YAML/CLI and save the resolved config beside the checkpoint.

`setting(default, low=, high=)` declares a field together with the range it accepts, so that a setting's default
and range are written once, beside each other; `check_fields` checks them and `field_range` hands them to the
app's sliders and the CLI's messages.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


# Table 1 rows, one naming everywhere (app dropdown, ablation figure, evaluation report, docs/results.md, checkpoint records):
# variant -> (row, what the row adds). The paper's Fig. 6a letters its variants from the minimal method on, so its
# [A] / [B] / [C] are our rows B / C / D.
TABLE1: dict[str, tuple[str, str]] = {
    "baseline": ("A", "AnimateDiff baseline"),
    "trs-dc": ("B", "A + L_TRS & L_DC"),
    "mapping": ("C", "B + mapping network"),
    "full": ("D", "C + frame-wise tokens (HARIVO)"),
    "full+mg": ("D + MG", "D + MG sampling"),
}


def table1_label(variant: str) -> str:
    """'D · C + frame-wise tokens (HARIVO)': a variant's Table 1 row and what it adds (ValueError if unknown)."""
    if variant not in TABLE1:
        raise ValueError(f"variant: expected one of {list(TABLE1)}, got {variant!r}")
    row, adds = TABLE1[variant]
    return f"{row} · {adds}"


def check_range(name: str, value: float, low: float | None = None, high: float | None = None, *,
                integer: bool = False) -> None:
    """Raise ValueError naming `name` unless low <= value <= high (NaN always fails)."""
    kind = "an integer" if integer else "a number"
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name}: expected a value >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name}: expected a value <= {high}, got {value!r}")


def check_noise_share(value: float) -> None:
    """noise_share is a variance fraction in [0, 1): at 1 the frames would share all their noise (one image)."""
    check_range("noise_share", value, 0.0)
    if value >= 1:
        raise ValueError(f"noise_share: expected a fraction in [0, 1), got {value!r}")




def setting(default: Any, *, low: float | None = None, high: float | None = None, integer: bool = False,
            name: str | None = None, slider: tuple[float, float] | None = None) -> Any:
    """A dataclass field with the range it accepts (`check_fields`), the name its errors give (default: the
    field's) and, where the app shows it on a narrower slider than it accepts, that slider's range."""
    return field(default=default, metadata={"low": low, "high": high, "integer": integer, "name": name,
                                            "slider": slider})


def check_fields(obj: Any) -> None:
    """check_range on every `setting` field of the dataclass `obj` (an optional field left at None passes)."""
    for f in dataclasses.fields(obj):
        if "low" not in f.metadata:
            continue
        value = getattr(obj, f.name)
        if value is None and f.default is None:
            continue
        m = f.metadata
        check_range(m["name"] or f.name, value, m["low"], m["high"], integer=m["integer"])


def field_range(cls: type, name: str, slider: bool = False) -> tuple[float | None, float | None]:
    """(low, high) that the `setting` field `name` of `cls` accepts, or with `slider` the range the app shows."""
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    return tuple(meta["slider"]) if slider and meta["slider"] else (meta["low"], meta["high"])


@dataclass
class HarivoConfig:
    """What the video model is made of (saved as `config.json` beside the weights)."""

    use_mapping: bool = True  # §3.2 mapping network in front of the UNet (Table 1 row B)
    use_frame_tokens: bool = True  # §3.5 frame-wise tokens concatenated to the text tokens (row C)
    num_frames: int = 16  # frames the frame-token generator was built for (paper: 24; shapes world: 16)
    num_frame_tokens: int = 3  # K in §3.5
    max_text_len: int = 77  # M in §3.5, the tokenizer's model_max_length
    text_dim: int = 768  # D in §3.5, the text encoder's hidden size (768 for SD1.5)
    latent_channels: int = 4  # channels of the VAE latents the mapping network sees
    mapping_hidden_channels: int = 64  # width of the mapping network's 3D-conv residual branch (ours)
    mapping_heads: int = 8  # appendix MappingLayer: heads=8
    mapping_head_dim: int = 64  # appendix MappingLayer: dim_head=64
    mapping_max_frames: int = 64  # longest video the mapping network's sinusoidal positions cover (ours)
    hspace_channels: int = 1280  # channels of the UNet mid-block output (h-space) for the projection head
    hspace_size: int = 4  # spatial size of h-space (latent size / 2**num_downsamplers)
    base_model: str = ""  # diffusers StableDiffusionPipeline folder or hub id of the frozen T2I model
    motion_adapter_config: dict[str, Any] = field(default_factory=dict)  # MotionAdapter(**config) to rebuild it
    # ours (PYoCo's mixed noise prior, Ge et al. 2023; not in the paper): the fraction of the initial noise's
    # variance common to a video's frames, as the model was trained with (LossConfig.noise_share); 0 = AnimateDiff's
    # independent noise per frame. The pipeline draws its initial latents with it (losses.mixed_noise)
    noise_share: float = 0.0

    def validate(self) -> "HarivoConfig":
        check_range("num_frames", self.num_frames, 2, integer=True)
        check_range("num_frame_tokens", self.num_frame_tokens, 0, integer=True)
        check_range("max_text_len", self.max_text_len, 1, integer=True)
        check_range("text_dim", self.text_dim, 1, integer=True)
        check_range("latent_channels", self.latent_channels, 1, integer=True)
        check_range("mapping_hidden_channels", self.mapping_hidden_channels, 1, integer=True)
        check_noise_share(self.noise_share)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HarivoConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown HarivoConfig keys {unknown}; expected a subset of {sorted(names)}")
        return cls(**d).validate()


@dataclass
class LossConfig:
    """Eq. 5: L = L_simple + λ_TRS L_TRS + λ_reg L_reg + λ_DC L_DC, each term switchable."""

    use_simple: bool = True  # Eq. 1 on the video branch (never on the T2I branch, §3.6)
    use_trs: bool = True  # Eq. 3, decoder spatial self-attention of the video branch
    use_reg: bool = True  # Eq. 2, video branch vs T2I branch (motion modules and frame tokens off)
    use_dc: bool = True  # Eq. 4, decoupled contrastive loss on h-space
    trs_weight: float = 0.1  # λ_TRS, §4 configuration
    reg_weight: float = 0.1  # λ_reg, §4 configuration
    dc_weight: float = 0.1  # λ_DC, §4 configuration
    dc_temperature: float = 0.1  # τ in Eq. 4
    dc_queue_size: int = 256  # negatives kept from earlier positive pairs (ours; the paper gives no size)
    # ours: the batch's other videos are negatives too, with gradients (losses.dc_loss: a queue alone collapsed)
    dc_in_batch: bool = True
    # ours: h minus its mean over the batch's frames before g (an offset shared by all videos gets no gradient);
    # a batch of one video is left uncentred
    dc_center_h: bool = True
    # 0 = L_TRS keeps every decoder self-attention map until backward (fastest on small models); N = memory-efficient
    # L_TRS (trs.TRSAttentionFunction): N queries at a time, maps recomputed in backward (ours)
    trs_chunk_size: int = 0
    # offset noise (ours, not in the paper; diffusers' --noise_offset): ε += offset · N(0, 1) per (video, channel,
    # frame). Frames that share a background must then agree on it from the caption and each other, not from each
    # frame's own noise mean (see stage1.config.T2IConfig.noise_offset for the leak it closes)
    noise_offset: float = 0.0
    # exploration only (scripts/verb_finetune.py): draw training timesteps from [min_timestep, T) instead of [0, T);
    # 0 = the paper's uniform t, with the same random stream as before this option existed
    min_timestep: int = 0
    # ours (PYoCo's mixed noise, not the paper's): this fraction of the training noise's variance is one draw shared
    # by a video's frames (losses.mixed_noise); sampling must then start from the same prior (HarivoConfig.noise_share)
    noise_share: float = 0.0
    # ours (diffusers' SDXL training --timestep_bias_strategy later, PR 5094; not the paper's): the last
    # timestep_bias_portion of the T training timesteps are drawn timestep_bias_multiplier times as often as the
    # others. 1 = the paper's uniform t, with the same random stream as before this option existed
    timestep_bias_multiplier: float = 1.0
    timestep_bias_portion: float = 0.1

    def validate(self) -> "LossConfig":
        for name in ("trs_weight", "reg_weight", "dc_weight", "noise_offset"):
            check_range(name, getattr(self, name), 0.0)
        check_range("dc_temperature", self.dc_temperature, 1e-6)
        check_range("dc_queue_size", self.dc_queue_size, 1, integer=True)
        check_range("trs_chunk_size", self.trs_chunk_size, 0, integer=True)
        check_range("min_timestep", self.min_timestep, 0, 999, integer=True)
        check_noise_share(self.noise_share)
        check_range("timestep_bias_multiplier", self.timestep_bias_multiplier, 1e-6)
        check_range("timestep_bias_portion", self.timestep_bias_portion, 0.0, 1.0)
        return self
