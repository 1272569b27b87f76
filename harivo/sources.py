"""Where a model comes from and where it runs: `ModelSpec` (base model, motion adapter, HARIVO weights, LoRA,
DreamBooth; dtype, device and the memory switches; the video size it makes by default), its flags (one builder,
`add_model_arguments`, shared by `python -m harivo.generate` and `python app.py`), a spec from a mapping (a YAML
entry of the app's model list), and `load`, which builds the `HarivoPipeline` and places it.

Everything loads through `HarivoPipeline.from_checkpoint` / `from_animatediff` and `harivo.compat`: diffusers /
transformers folders or hub ids, safetensors weights only, never remote code.

The spec's own defaults are the app's, sized for a 16-frame 512² video on a 24 GB GPU: float16 on CUDA (float32 on
a CPU), VAE slicing on, 8 frames per VAE decode call, no CPU offload (SD1.5 + AnimateDiff v2 weights are ≈ 2.8 GiB
in float16; an estimate from the parameter counts, not measured on a GPU here). The CLI keeps its own
(`CLI_DEFAULTS`: float32, no slicing, 16 frames per decode call).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .config import check_range
from .pipeline import DEFAULT_CHECKPOINTS, VARIANTS, HarivoPipeline

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
AUTO = "auto"  # float16 on CUDA, float32 elsewhere
SOURCES = ("base_model", "motion_adapter", "harivo_weights", "lora", "dreambooth")  # fields that name files / hub ids


@dataclass
class ModelSpec:
    """One model: where its parts come from, where it runs, and the video size it makes by default. Field names
    are the CLI's flags (`--base-model` → `base_model`), and the keys of the app's YAML model list."""

    name: str = ""  # the app's name for it (its key is "real:<name>")
    base_model: str | None = None  # SD1.5-family diffusers folder or hub id (VAE, text encoder, UNet, scheduler)
    motion_adapter: str | None = None  # AnimateDiff MotionAdapter folder or hub id (plain AnimateDiff)
    harivo_weights: str | None = None  # a HARIVO checkpoint folder (its own motion adapter + HARIVO networks)
    variant: str | None = None  # an embedded shapes-world variant (the CLI's --variant)
    lora: str | None = None  # LoRA folder, .safetensors file or hub id (diffusers or kohya format)
    lora_weight_name: str | None = None
    lora_scale: float = 1.0
    dreambooth: str | None = None  # another SD1.5-family folder: its UNet and text encoder
    dtype: str = AUTO  # float32, float16, bfloat16, or auto
    device: str | None = None  # cuda, cuda:1, cpu ...; None: CUDA when present, else the CPU
    cpu_offload: bool = False  # each stage's modules on the GPU only while it runs
    attention_slicing: bool = False  # spatial attention a few heads at a time
    vae_slicing: bool = True  # decode one frame at a time
    decode_chunk_size: int = 8  # frames per VAE decode call
    height: int | None = None  # the video size it makes by default (None: the UNet's native size)
    width: int | None = None

    def validate(self) -> ModelSpec:
        """ValueError naming the field for anything no model can be built from."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("str | None", "str") and value is not None and not isinstance(value, str):
                raise ValueError(f"{f.name}: expected a text, got {value!r}")
        if self.motion_adapter and self.harivo_weights:
            raise ValueError("motion_adapter: leave it out with harivo_weights (a HARIVO checkpoint carries its own "
                             "trained motion adapter)")
        if self.motion_adapter and not self.base_model:
            raise ValueError("base_model: a motion adapter needs a base model (an SD1.5-family folder or hub id)")
        if self.variant is not None and self.variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {list(VARIANTS)}, got {self.variant!r}")
        if self.dtype not in (AUTO, *DTYPES):
            raise ValueError(f"dtype: expected one of {[AUTO, *DTYPES]}, got {self.dtype!r}")
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"device: expected cpu, cuda or cuda:N, got {self.device!r}") from None
        for name in ("cpu_offload", "attention_slicing", "vae_slicing"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        check_range("decode_chunk_size", self.decode_chunk_size, 1, integer=True)
        check_range("lora_scale", self.lora_scale, 0.0)
        for name in ("height", "width"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 8, 4096, integer=True)
        return self

    def resolved_device(self) -> torch.device:
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def resolved_dtype(self) -> str:
        """The dtype name in effect: auto is float16 on CUDA, float32 elsewhere."""
        if self.dtype != AUTO:
            return self.dtype
        return "float16" if self.resolved_device().type == "cuda" else "float32"

    def describe(self) -> str:
        """'base + adapter', '+ HARIVO weights …', '+ LoRA …': what the model is made of, for labels."""
        parts = [_short(self.base_model or "the checkpoint's base")]
        if self.dreambooth:
            parts.append(f"DreamBooth {_short(self.dreambooth)}")
        parts.append(f"HARIVO weights {_short(self.harivo_weights)}" if self.harivo_weights
                     else _short(self.motion_adapter or "") + " (no HARIVO weights)")
        if self.lora:
            parts.append(f"LoRA {_short(self.lora)}" + (f" ×{self.lora_scale:g}" if self.lora_scale != 1 else ""))
        return " + ".join(parts)


def _short(source: str) -> str:
    """A local path by its folder name, a hub id as it is."""
    path = Path(source)
    return path.name if path.exists() else source


CLI_DEFAULTS = ModelSpec(dtype="float32", vae_slicing=False, decode_chunk_size=16)


# ------------------------------------------------------------------------------------------------ flags
def add_model_arguments(parser: argparse.ArgumentParser, defaults: ModelSpec = ModelSpec(),
                        variants: bool = True) -> None:
    """The model-source, add-on and device/memory flags (dest = the `ModelSpec` field), with `defaults`' values.
    `variants`: offer --variant (the CLI's embedded models) beside the other sources."""
    src = parser.add_argument_group("model (a diffusers SD1.5-family base + an AnimateDiff motion adapter, or "
                                    "HARIVO weights; folders or hub ids, safetensors only)")
    one = src.add_mutually_exclusive_group()
    if variants:
        one.add_argument("--variant", choices=VARIANTS, help="embedded shapes-world model (default: full)")
    one.add_argument("--checkpoint", "--harivo-weights", dest="harivo_weights",
                     help="a HARIVO checkpoint folder (motion_adapter/, harivo.safetensors, config.json)")
    one.add_argument("--motion-adapter", help="plain AnimateDiff: a diffusers MotionAdapter folder or hub id "
                                              "(needs --base-model)")
    src.add_argument("--base-model", help="SD1.5-family diffusers folder or hub id (overrides the checkpoint's base)")
    src.add_argument("--lora", help="LoRA folder, .safetensors file or hub id (diffusers format)")
    src.add_argument("--lora-weight-name", help="file name inside a LoRA folder / hub repo")
    src.add_argument("--lora-scale", type=float, default=defaults.lora_scale, help="LoRA strength")
    src.add_argument("--dreambooth", help="another SD1.5-family folder (DreamBooth): its UNet and text encoder")
    mem = parser.add_argument_group("device and memory")
    mem.add_argument("--device", default=defaults.device, help="cuda, cuda:1, cpu ... (default: cuda if available)")
    mem.add_argument("--dtype", choices=[AUTO, *sorted(DTYPES)], default=defaults.dtype,
                     help=f"model weights; auto: float16 on CUDA, float32 on a CPU (default: {defaults.dtype})")
    switch = argparse.BooleanOptionalAction
    mem.add_argument("--cpu-offload", action=switch, default=defaults.cpu_offload,
                     help="keep models on the CPU, each on the GPU only while it runs")
    mem.add_argument("--attention-slicing", action=switch, default=defaults.attention_slicing,
                     help="spatial attention a few heads at a time")
    mem.add_argument("--vae-slicing", action=switch, default=defaults.vae_slicing, help="decode one frame at a time")
    mem.add_argument("--decode-chunk-size", type=int, default=defaults.decode_chunk_size,
                     help=f"frames per VAE decode call (default: {defaults.decode_chunk_size})")


def spec_from_args(args: argparse.Namespace, name: str = "") -> ModelSpec:
    """The `ModelSpec` of the flags of `add_model_arguments` (and --height/--width where the parser has them)."""
    values = {f.name: getattr(args, f.name) for f in fields(ModelSpec) if hasattr(args, f.name)}
    return ModelSpec(**{**values, "name": name or values.get("name") or ""})


def spec_from_mapping(raw: dict, name_required: bool = True) -> ModelSpec:
    """A spec from a mapping (one entry of the app's YAML list); ValueError naming an unknown or bad field."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping of ModelSpec fields, got {raw!r}")
    known = [f.name for f in fields(ModelSpec) if f.name != "variant"]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a model field; expected some of {known}")
    spec = ModelSpec(**raw)
    if name_required and (not isinstance(spec.name, str) or not spec.name.strip()):
        raise ValueError(f"name: expected a non-empty name, got {spec.name!r}")
    if not (spec.motion_adapter or spec.harivo_weights):
        raise ValueError("motion_adapter: expected base_model + motion_adapter, or harivo_weights")
    return spec.validate()


def with_paths_from(spec: ModelSpec, folder: Path) -> ModelSpec:
    """`spec` with relative local paths read from `folder` (a YAML file's); hub ids and absolute paths kept."""
    updates = {}
    for name in SOURCES:
        value = getattr(spec, name)
        if value and not Path(value).is_absolute() and (folder / value).exists():
            updates[name] = str((folder / value).resolve())
    return dataclasses.replace(spec, **updates)


# ------------------------------------------------------------------------------------------------ loading
def build(spec: ModelSpec) -> HarivoPipeline:
    """The pipeline of `spec`'s sources and add-ons, on the CPU in float32 (`place` moves it)."""
    from . import compat

    spec.validate()
    if spec.motion_adapter:
        pipe = HarivoPipeline.from_animatediff(spec.base_model, spec.motion_adapter)
    elif spec.harivo_weights:
        pipe = HarivoPipeline.from_checkpoint(spec.harivo_weights, base_model=spec.base_model)
    elif spec.base_model:  # an embedded variant's HARIVO networks on another base (same shapes-world sizes)
        pipe = HarivoPipeline.from_checkpoint(DEFAULT_CHECKPOINTS / f"harivo-shapes-{spec.variant or 'full'}",
                                              spec.base_model)
    else:
        pipe = HarivoPipeline.from_variant(spec.variant or "full")
    if spec.dreambooth:
        pipe = compat.swap_base_model(pipe, spec.dreambooth)
    if spec.lora:
        compat.load_lora(pipe, spec.lora, weight_name=spec.lora_weight_name, scale=spec.lora_scale)
    return pipe


def place(pipe: HarivoPipeline, spec: ModelSpec) -> HarivoPipeline:
    """Device, dtype and the memory switches of `spec`."""
    spec.validate()
    device, dtype = spec.resolved_device(), DTYPES[spec.resolved_dtype()]
    pipe.to(None if spec.cpu_offload else device, dtype)
    if spec.cpu_offload:
        pipe.enable_cpu_offload(device)
    if spec.attention_slicing:
        pipe.enable_attention_slicing()
    if spec.vae_slicing:
        pipe.enable_vae_slicing()
    pipe.decode_chunk_size = spec.decode_chunk_size
    return pipe


def load(spec: ModelSpec) -> HarivoPipeline:
    """`build` then `place`."""
    return place(build(spec), spec)


def weights_bytes(pipe: HarivoPipeline) -> int:
    """Bytes of the pipeline's weights (shared tensors once: the T2I branch is tied to the video UNet's)."""
    seen, total = set(), 0
    for module in (pipe.vae, pipe.text_encoder, pipe.model):
        for p in list(module.parameters()) + list(module.buffers()):
            key = (p.untyped_storage().data_ptr(), p.dtype) if p.device.type != "meta" else id(p)
            if key not in seen:
                seen.add(key)
                total += p.numel() * p.element_size()
    return total
