"""Text → video with HARIVO: prompt encoding, initial noise, the DDIM/CFG-schedule/MG loop of `sampling`,
VAE decoding, and the record of what happened (frame-wise cross-attention, per-step diagnostics).

With mapping network, frame tokens and MG off and a constant CFG scale, the result equals diffusers'
`AnimateDiffPipeline` + `DDIMScheduler` on the same weights and seed (tests/test_pipeline.py, the oracle).

Real scale (SD1.5 + AnimateDiff, docs/design.md §1): `to(device, dtype)` for fp16/bf16 on a GPU (the sampler's own
state stays float32, so MG's norms cannot overflow in fp16), `enable_cpu_offload` (each stage's modules on the
GPU only while they run), `enable_attention_slicing`, `enable_vae_slicing` and `decode_chunk_size`. Add-on
conditions (ControlNet, IP-Adapter: `harivo.compat`) enter through `__call__(..., conditions=[...])` and the small
interface of `harivo.conditions`.

The output records the settings *in effect* (`in_effect`): a flag the model cannot honour (no mapping network,
no frame tokens, frame tokens without temporal layers, attention capture beside an add-on's processors) is
recorded off, and every view reads that record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from .attention import (AttentionRecord, CrossAttentionRecorder, recording, spatial_attention_names,
                        text_token_columns)
from .conditions import merge_unet_kwargs, validate_conditions
from .config import HarivoConfig, check_range
from .data.shapes import World
from .noise import mixed_noise
from . import fileio
from .model import CONFIG_NAME, HarivoVideoModel, load_motion_adapter, load_unet2d
from .sampling import PREDICTION_TYPES, DDIMSchedule, StepInfo, sample_ddim
from .settings import GenerationSettings, coerce
from .tokenizer import token_count, token_ids

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
VARIANTS = ("baseline", "trs-dc", "mapping", "full")


@dataclass
class HarivoOutput:
    frames: np.ndarray  # (f, h, w, 3) float32 in [0, 1]
    latents: torch.Tensor  # (1, c, f, h, w) final latents
    attention: AttentionRecord | None
    steps: list[dict]  # per-step diagnostics: timestep, cfg scale, MG median ‖D‖, ‖G‖, mapping change
    settings: dict  # GenerationSettings.to_dict() of the settings in effect (`HarivoPipeline.in_effect`)
    notes: list[str] = field(default_factory=list)  # things the UI should say (e.g. frame tokens resampled)
    cancelled: bool = False  # stopped early by `cancel()`


# what a checkpoint may recommend (the embedded models: measured by the evaluation, docs/results.md)
SAMPLING_DEFAULTS = ("cfg_high", "cfg_low", "cfg_switch", "mg_alpha", "num_inference_steps")


def read_sampling_defaults(config: dict) -> dict[str, float | int]:
    """A checkpoint's recommended sampling settings (its config.json's "sampling": {flat name: number}), checked."""
    raw = config.get("sampling") or {}
    if not isinstance(raw, dict) or set(raw) - set(SAMPLING_DEFAULTS):
        raise ValueError(f"checkpoint: config.json's \"sampling\" may set only {list(SAMPLING_DEFAULTS)}, got {raw!r}")
    values = {k: coerce(k, v) for k, v in raw.items()}
    GenerationSettings.from_flat(prompt="-", **values).validate()  # a recommended value out of range: ValueError
    return values


class HarivoPipeline:
    """HARIVO inference over diffusers components. Calls on one pipeline are serialised by a lock (the
    attention capture installs processors on the shared model)."""

    def __init__(self, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                 model: HarivoVideoModel, scheduler: DDIMScheduler, name: str = ""):
        if not isinstance(scheduler, DDIMScheduler):
            raise ValueError(f"scheduler: expected a DDIMScheduler (App. D), got {type(scheduler).__name__}")
        if scheduler.config.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"scheduler: expected prediction_type in {list(PREDICTION_TYPES)}, "
                             f"got {scheduler.config.prediction_type!r}")
        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.model, self.scheduler, self.name = model, scheduler, name
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.decode_chunk_size = 16  # frames per VAE decode call (AnimateDiff's decode_chunk_size)
        self.offload_device: torch.device | None = None  # set by enable_cpu_offload
        self.required_conditions: list[type] = []  # condition types every call needs (harivo.conditions)
        self._lock = threading.Lock()
        # the sampling settings this model was measured best at (config.json "sampling", flat names of
        # SAMPLING_DEFAULTS); the CLI and the app start from them, App. D's values otherwise
        self.sampling_defaults: dict[str, float] = {}
        self.world: World | None = None  # the shapes world the checkpoint was trained in (config.json "world")

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, base_model: str | None = None) -> "HarivoPipeline":
        """A HARIVO checkpoint folder (docs/design.md §3) on top of its base StableDiffusion-style folder."""
        checkpoint = Path(checkpoint)
        model = HarivoVideoModel.from_pretrained(checkpoint, base_model=base_model)
        base = base_model or model.config.base_model
        pipe = cls.from_base(base, model, name=checkpoint.name, relative_to=checkpoint)
        config = fileio.read_json(checkpoint / CONFIG_NAME, what="checkpoint config.json")
        pipe.sampling_defaults = read_sampling_defaults(config)
        pipe.world = World.from_record(config["world"]) if config.get("world") else None
        return pipe

    @classmethod
    def from_animatediff(cls, base_model: str, motion_adapter: str, harivo_weights: str | None = None) -> "HarivoPipeline":
        """Any SD1.5-family diffusers folder or hub id + an AnimateDiff MotionAdapter (folder or hub id).

        Without `harivo_weights` this is plain AnimateDiff with HARIVO's training-free parts (MG, CFG schedule,
        attention capture); with a HARIVO checkpoint folder its trained adapter, mapping network and frame tokens
        are used on top of `base_model` instead.
        """
        if harivo_weights:
            return cls.from_checkpoint(harivo_weights, base_model=base_model)
        model = HarivoVideoModel.from_unet2d(
            load_unet2d(base_model), load_motion_adapter(motion_adapter),
            HarivoConfig(use_mapping=False, use_frame_tokens=False, base_model=base_model),
        )
        return cls.from_base(base_model, model, name=f"{Path(base_model).name} + {Path(motion_adapter).name}")

    @classmethod
    def from_variant(cls, variant: str, checkpoints: str | os.PathLike = DEFAULT_CHECKPOINTS) -> "HarivoPipeline":
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {list(VARIANTS)}, got {variant!r}")
        return cls.from_checkpoint(Path(checkpoints) / f"harivo-shapes-{variant}")

    @classmethod
    def from_base(cls, base: str, model: HarivoVideoModel, name: str = "", relative_to: Path | None = None) -> "HarivoPipeline":
        path = Path(base)
        if not path.is_absolute() and relative_to is not None and (relative_to / base).exists():
            path = (relative_to / base).resolve()
        try:
            vae = AutoencoderKL.from_pretrained(str(path), subfolder="vae", use_safetensors=True)
            text_encoder = CLIPTextModel.from_pretrained(str(path), subfolder="text_encoder", use_safetensors=True)
            tokenizer = CLIPTokenizer.from_pretrained(str(path), subfolder="tokenizer")
            scheduler = DDIMScheduler.from_pretrained(str(path), subfolder="scheduler")
        except (OSError, ValueError) as e:
            raise ValueError(f"base_model: cannot load the T2I pipeline components from {base!r} ({e})") from None
        return cls(vae.eval(), text_encoder.eval(), tokenizer, model.eval(), scheduler, name=name)

    # ------------------------------------------------------------------------------------------ memory
    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "HarivoPipeline":
        """Move (and cast) VAE, text encoder and video model. fp16/bf16 are for GPUs; on a CPU, bf16 works, fp16
        is slow or unsupported by some kernels."""
        if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype: expected float32, float16 or bfloat16, got {dtype}")
        if dtype == torch.float16 and torch.device(device or self.device).type == "cpu":
            warnings.warn("dtype: float16 on a CPU is slow and some kernels lack it; use bfloat16 or float32")
        for module in (self.vae, self.text_encoder, self.model):
            module.to(device=device, dtype=dtype)
        return self

    def enable_cpu_offload(self, device: str | torch.device = "cuda") -> bool:
        """Keep every module on the CPU and move each stage's modules (text encoder; video model and conditions;
        VAE) to `device` only while that stage runs. A no-op with a warning where no such device exists."""
        device = torch.device(device)
        if device.type == "cpu" or (device.type == "cuda" and not torch.cuda.is_available()):
            warnings.warn("cpu_offload: no GPU here, the models already run on the CPU; offload does nothing")
            return False
        self.to("cpu")
        self.offload_device = device
        return True

    @contextlib.contextmanager
    def _on_device(self, *modules: torch.nn.Module):
        """With offload, `modules` on the execution device for the duration of the block, then back on the CPU."""
        if self.offload_device is None:
            yield
            return
        for module in modules:
            module.to(self.offload_device)
        try:
            yield
        finally:
            for module in modules:
                module.to("cpu")
            if self.offload_device.type == "cuda":
                torch.cuda.empty_cache()

    def enable_attention_slicing(self, slice_size: int | None = None) -> int:
        """Spatial attention computed a few heads at a time (diffusers' SlicedAttnProcessor; default half the heads):
        less peak memory, a little slower. Motion-module attention (over frames) and processors of add-ons
        (IP-Adapter) are left alone. Returns the number of layers sliced."""
        from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

        count = 0
        for unet in (self.model.unet, self.model.t2i_unet):
            for name, module in unet.named_modules():
                if isinstance(module, Attention) and "motion_modules" not in name and \
                        isinstance(module.processor, (AttnProcessor, AttnProcessor2_0)):
                    module.set_attention_slice(slice_size or max(1, module.heads // 2))
                    count += 1
        return count

    def enable_vae_slicing(self) -> None:
        """Decode one frame at a time (AutoencoderKL.enable_slicing)."""
        self.vae.enable_slicing()

    # ------------------------------------------------------------------------------------------ pieces
    @property
    def device(self) -> torch.device:
        """Where the computation runs (the offload device when CPU offload is on)."""
        return self.offload_device or self.model.unet.device

    def check(self, s: GenerationSettings) -> None:
        """ValueError naming the argument for anything the settings or this model cannot do."""
        s.validate()
        limit = self.tokenizer.model_max_length
        for name, text in (("prompt", s.prompt), ("negative_prompt", s.negative_prompt)):
            n = token_count(self.tokenizer, text)
            if n > limit:
                raise ValueError(f"{name}: expected at most {limit - 2} tokens, got {n - 2}")
        check_range("num_frames", s.num_frames, high=self.model.max_frames, integer=True)
        check_range("num_inference_steps", s.num_inference_steps, high=self.scheduler.config.num_train_timesteps,
                    integer=True)
        for name in ("height", "width"):
            v = getattr(s, name)
            if v is not None and v % (self.vae_scale_factor * 2 ** (len(self.model.unet.config.block_out_channels) - 1)):
                raise ValueError(f"{name}: expected a multiple of the VAE × UNet downsampling, got {v}")

    def in_effect(self, s: GenerationSettings, conditions: Sequence = ()) -> tuple[GenerationSettings, list[str]]:
        """The settings this model (and these add-on conditions) honours, and a note for each requested component
        the model lacks. The one place that decides what is on: the sampler runs, and the output records, these."""
        model, notes = self.model, []
        if s.use_mapping and model.mapping_network is None:
            notes.append("This model has no mapping network; mapping is off.")
        if s.use_frame_tokens and model.frame_token_generator is None:
            notes.append("This model has no frame-wise tokens; frame tokens are off.")
        return dataclasses.replace(
            s, use_mapping=s.use_mapping and model.mapping_network is not None,
            # the T2I branch (temporal layers off) never has frame tokens (Eq. 2)
            use_frame_tokens=s.use_frame_tokens and model.frame_token_generator is not None and s.use_motion,
            capture_attention=s.capture_attention and not any(c.replaces_attention_processors for c in conditions),
        ), notes

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, M, D) text tokens as `AnimateDiffPipeline.encode_prompt` makes them, and the input ids."""
        ids = token_ids(self.tokenizer, prompt)
        with self._on_device(self.text_encoder):
            embeds = self.text_encoder(ids.to(self.device), attention_mask=None)[0]
        return embeds.to(self.device, self.model.unet.dtype), ids[0]

    def prepare_latents(self, seed: int, num_frames: int, height: int, width: int) -> torch.Tensor:
        """Initial noise exactly as AnimateDiffPipeline draws it: randn (b, c, f, h, w) from a seeded Generator; for
        a model trained with PYoCo's mixed noise (config.noise_share > 0) the same draw, mixed with one more draw
        shared by the frames (losses.mixed_noise), as the model saw it in training."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        shape = (1, self.model.unet.config.in_channels, num_frames, height // self.vae_scale_factor, width // self.vae_scale_factor)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.model.unet.dtype)
        noise = mixed_noise(noise, self.model.config.noise_share, generator)
        return noise * self.scheduler.init_noise_sigma

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_size: int | None = None) -> np.ndarray:
        """(1, c, f, h, w) latents → (f, H, W, 3) float32 frames in [0, 1], as AnimateDiffPipeline decodes."""
        chunk_size = chunk_size or self.decode_chunk_size
        frames = latents[0].permute(1, 0, 2, 3) / self.vae.config.scaling_factor  # (f, c, h, w)
        with self._on_device(self.vae):
            frames = frames.to(self.device, self.vae.dtype)
            images = torch.cat([self.vae.decode(frames[i : i + chunk_size]).sample
                                for i in range(0, len(frames), chunk_size)])
        return (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    def attention_tokens(self, ids: torch.Tensor, frame_tokens: bool) -> tuple[list[int], list[str], list[str]]:
        """Key positions worth showing: the real text tokens (<sot> … <eot>) and the K frame tokens."""
        index, labels = text_token_columns(self.tokenizer, ids)
        kinds = ["text"] * len(index)
        if frame_tokens:
            M, K = len(ids), self.model.config.num_frame_tokens
            index += list(range(M, M + K))
            labels += [f"<f{k + 1}>" for k in range(K)]
            kinds += ["frame"] * K
        return index, labels, kinds

    # ------------------------------------------------------------------------------------------ call
    def __call__(self, settings: GenerationSettings, callback: Callable[[StepInfo], None] | None = None,
                 cancel: Callable[[], bool] | None = None, conditions: Sequence = ()) -> HarivoOutput:
        """Generate one video. `callback(info)` after every step; `cancel()` true stops early (`out.cancelled`).
        `conditions`: add-on conditions for this call only (`harivo.conditions`; ControlNet, IP-Adapter)."""
        self.check(settings)
        self.check_conditions(settings, conditions)
        with self._lock:
            return self._generate(settings, callback, cancel, tuple(conditions))

    def output_size(self, s: GenerationSettings) -> tuple[int, int]:
        default = self.model.unet.config.sample_size * self.vae_scale_factor
        return s.height or default, s.width or default

    def check_conditions(self, s: GenerationSettings, conditions: Sequence) -> None:
        validate_conditions(conditions, self.required_conditions, self.model, s.num_frames, *self.output_size(s))

    @torch.no_grad()
    def _generate(self, s: GenerationSettings, callback, cancel, conditions: tuple = ()) -> HarivoOutput:
        with self._on_device(self.model, *[m for c in conditions for m in c.modules()]):
            out = self._sample(s, callback, cancel, conditions)
        out.frames = self.decode(out.latents)  # after the video model left the GPU (offload)
        return out

    def _sample(self, requested: GenerationSettings, callback, cancel, conditions: tuple) -> HarivoOutput:
        s, notes = self.in_effect(requested, conditions)
        model = self.model
        if s.use_frame_tokens and s.num_frames != model.config.num_frames:
            notes.append(f"frame tokens were trained for {model.config.num_frames} frames; resampled to {s.num_frames}")
        if requested.capture_attention and not s.capture_attention:
            notes.append("attention maps are not recorded while an add-on (an IP-Adapter) uses attention processors of its own")
        height, width = self.output_size(s)
        cond, ids = self.encode_prompt(s.prompt)
        uncond, _ = self.encode_prompt(s.negative_prompt)
        text = torch.cat([uncond, cond])  # CFG batch order: [uncond, cond]
        dtype = model.unet.dtype
        # the sampler's state (x_t, DDIM, MG) is float32 whatever the model's dtype: fp16 norms in MG overflow
        latents = self.prepare_latents(s.seed, s.num_frames, height, width).float()
        self.scheduler.set_timesteps(s.num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        steps: list[dict] = []

        recorder = None
        if s.capture_attention:
            index, labels, kinds = self.attention_tokens(ids, s.use_frame_tokens)
            recorder = CrossAttentionRecorder(1, s.num_frames, tuple(latents.shape[-2:]), index, labels, kinds, s.keep_attention_per_step)

        def denoise(x: torch.Tensor, t: torch.Tensor, scale: float) -> torch.Tensor:
            if recorder is not None:
                recorder.begin_step(len(steps), int(t))
            x_in = x.to(dtype)
            mapped = model.map_noise(x_in, s.use_mapping)
            steps.append({"timestep": int(t), "cfg_scale": scale, **mapping_change(x_in, mapped)})
            batch = torch.cat([mapped] * 2)
            extra = merge_unet_kwargs(conditions, batch, t, text, len(steps) - 1, len(timesteps), s.use_motion)
            out = model(batch, t, text, use_motion=s.use_motion, use_mapping=False, use_frame_tokens=s.use_frame_tokens,
                        unet_kwargs=extra)  # ε, or v on a zero-terminal-SNR base (the scheduler says which)
            out_uncond, out_cond = out.float().chunk(2)
            return out_uncond + scale * (out_cond - out_uncond)

        def on_step(info: StepInfo) -> None:
            steps[-1].update({k: float(v[0]) for k, v in info.mg.items()})
            if callback is not None:
                callback(info)

        unet_for_capture = model.unet if s.use_motion else model.t2i_unet
        names = spatial_attention_names(unet_for_capture, "attn2") if recorder is not None else []
        schedule = DDIMSchedule.from_scheduler(self.scheduler, self.device)
        with recording(unet_for_capture, names, recorder) if recorder is not None else contextlib.nullcontext():
            latents = sample_ddim(denoise, latents, schedule, cfg=s.cfg, mg=s.mg if s.mg.enabled else None,
                                  callback=on_step, cancel=cancel)
        cancelled = len(steps) < len(timesteps)
        if cancelled:
            notes.append(f"cancelled after {len(steps)} of {len(timesteps)} steps")
        return HarivoOutput(None, latents, recorder.result() if recorder else None, steps, s.to_dict(), notes, cancelled)


def mapping_change(x: torch.Tensor, mapped: torch.Tensor) -> dict[str, float]:
    """Fig. A1 statistics: mean |M(x) − x|, its std, mean shift and std change."""
    if mapped is x:
        return {"mapping_abs_diff": 0.0, "mapping_abs_diff_std": 0.0, "mapping_mean_shift": 0.0, "mapping_std_change": 0.0}
    diff = (mapped - x).abs()
    return {
        "mapping_abs_diff": float(diff.mean()), "mapping_abs_diff_std": float(diff.std()),
        "mapping_mean_shift": float(mapped.mean() - x.mean()), "mapping_std_change": float(mapped.std() - x.std()),
    }
