"""Off-the-shelf T2I add-ons on a HARIVO video model (§1 and Fig. 7: LoRA, DreamBooth, ControlNet, IP-Adapter).

They work without retraining because HARIVO never changes the T2I weights: anything made for the frozen SD1.5
UNet sees the same spatial layers inside the video model. Each add-on touches both branches of the model (the
motion UNet and the tied T2I UNet of `use_motion=False`), so the "temporal layers off" view stays comparable.

- `load_lora`          LoRA (diffusers format, via peft) into the spatial layers and the text encoder; kohya/A1111
                       files go through diffusers' converter (`lora_state_dict`), not tested here.
- `swap_base_model`    another SD1.5-family folder (a DreamBooth model) under the same motion adapter and HARIVO
                       networks.
- `ControlNetCondition` ControlNet on every frame or on a few frames only (Fig. 7b: start and end frames): the
                       residuals of a frame without a condition are zero, as if ControlNet were absent there. All
                       frames is exactly diffusers' `AnimateDiffControlNetPipeline` (tests/test_compat.py).
- `load_ip_adapter`, `IPAdapterCondition`  IP-Adapter image prompts (Fig. 7c), loaded with diffusers'
                       `_load_ip_adapter_weights` (the loader behind `load_ip_adapter`).

`ControlNetCondition` and `IPAdapterCondition` implement the add-on interface of `harivo.conditions` (validate,
modules, UNet keyword arguments for one denoiser call, whether they replace attention processors);
`HarivoPipeline.__call__(..., conditions=[...])` passes their arguments to whichever UNet runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from .config import HarivoConfig, check_range
from .model import HarivoVideoModel, load_unet2d
from .pipeline import HarivoPipeline


# ------------------------------------------------------------------------------------------------------- LoRA
def _require_peft(what: str) -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ValueError(f"{what}: LoRA needs peft (pip install peft==0.21.2)") from None


def load_lora(pipe, source, *, weight_name: str | None = None, adapter_name: str = "lora", scale: float = 1.0) -> dict:
    """Load a LoRA (folder, file, hub id or state dict; diffusers format, kohya via diffusers' converter) into
    the frozen T2I parts of `pipe`: the spatial layers of the motion UNet, the tied T2I UNet and the text
    encoder. Returns how many LoRA layers went where. The LoRA weights are separate peft layers; the T2I
    weights themselves stay untouched."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Loader
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    _require_peft("lora")
    check_range("lora_scale", scale, 0.0)
    src = source
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        src, weight_name = str(Path(source).parent), Path(source).name
    if weight_name is not None and not str(weight_name).endswith(".safetensors"):
        raise ValueError(f"lora: expected a .safetensors file (no pickled weights), got {weight_name!r}")
    try:  # safetensors only: diffusers falls back to pickled .bin files unless told otherwise
        state, alphas = Loader.lora_state_dict(src if isinstance(src, dict) else str(src), weight_name=weight_name,
                                               use_safetensors=True)
    except (OSError, ValueError, EnvironmentError) as e:
        raise ValueError(f"lora: cannot read LoRA weights from {source!r} ({e})") from None
    unet_state = {k: v for k, v in state.items() if k.startswith("unet.")}
    text_state = {k: v for k, v in state.items() if k.startswith("text_encoder.")}
    if not unet_state and not text_state:
        raise ValueError(f"lora: no 'unet.' or 'text_encoder.' LoRA keys in {source!r} (SD1.5 LoRAs have them)")
    spatial = {k: v for k, v in unet_state.items() if "motion_modules" not in k}  # motion LoRAs: video UNet only
    counts = {"unet": 0, "t2i_unet": 0, "text_encoder": 0}
    model = pipe.model
    if unet_state:
        Loader.load_lora_into_unet(unet_state, alphas, unet=model.unet, adapter_name=adapter_name)
        model.unet.set_adapters([adapter_name], weights=[scale])
        counts["unet"] = _count_lora_layers(model.unet, adapter_name)
    if spatial:
        Loader.load_lora_into_unet(spatial, alphas, unet=model.t2i_unet, adapter_name=adapter_name)
        model.t2i_unet.set_adapters([adapter_name], weights=[scale])
        counts["t2i_unet"] = _count_lora_layers(model.t2i_unet, adapter_name)
    if text_state:
        load_text_encoder_lora(pipe.text_encoder, text_state, alphas, adapter_name)
        set_weights_and_activate_adapters(pipe.text_encoder, [adapter_name], [scale])
        counts["text_encoder"] = _count_lora_layers(pipe.text_encoder, adapter_name)
    for module in (model.unet, model.t2i_unet, pipe.text_encoder):
        module.requires_grad_(False)  # inference add-on: nothing of it trains
    model.freeze_t2i()
    return counts


def load_text_encoder_lora(text_encoder, state: dict, alphas: dict | None, adapter_name: str) -> None:
    """diffusers' `_load_lora_into_text_encoder`, with peft's injection instead of transformers' `load_adapter`:
    transformers 5.x wants peft >= 0.22 for that, and 0.21.2 is the newest peft release installable here."""
    from diffusers.utils.peft_utils import _create_lora_config
    from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    state = {k.removeprefix("text_encoder."): v for k, v in state.items()}
    state = convert_state_dict_to_peft(convert_state_dict_to_diffusers(state))
    if not hasattr(text_encoder, "text_model"):  # flattened CLIPTextModel of newer transformers
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    rank = {f"{name}.lora_B.weight": state[f"{name}.lora_B.weight"].shape[1] for name, _ in text_encoder.named_modules()
            if f"{name}.lora_B.weight" in state}
    if alphas:
        alphas = {k.removeprefix("text_encoder."): v for k, v in alphas.items() if k.split(".")[0] == "text_encoder"}
    config = _create_lora_config(state, alphas, None, rank, is_unet=False)
    inject_adapter_in_model(config, text_encoder, adapter_name)
    result = set_peft_model_state_dict(text_encoder, state, adapter_name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if unexpected:
        raise ValueError(f"lora: text-encoder LoRA keys that match no layer, e.g. {unexpected[:3]}")
    text_encoder.to(device=text_encoder.device, dtype=text_encoder.dtype)


def _count_lora_layers(module: torch.nn.Module, adapter_name: str) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(isinstance(m, BaseTunerLayer) and adapter_name in getattr(m, "lora_A", {}) for m in module.modules())


# --------------------------------------------------------------------------------------- DreamBooth / base swap
def swap_base_model(pipe, base: str, parts: Sequence[str] = ("unet", "text_encoder")):
    """A new HarivoPipeline on `parts` ("unet", "text_encoder", "vae") of another SD1.5-family folder or hub id
    (a DreamBooth model) with this pipeline's motion adapter, mapping network and frame-token generator. Parts
    the folder lacks keep this pipeline's. The old pipeline is left as it was."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    unknown = sorted(set(parts) - {"unet", "text_encoder", "vae"})
    if unknown or "unet" not in parts:
        raise ValueError(f"parts: expected 'unet' plus any of 'text_encoder', 'vae', got {list(parts)}")
    old = pipe.model
    unet2d = load_unet2d(base)
    if tuple(unet2d.config.block_out_channels) != tuple(old.unet.config.block_out_channels):
        raise ValueError(f"base_model: {base!r} has UNet channels {tuple(unet2d.config.block_out_channels)}, the motion "
                         f"adapter was made for {tuple(old.unet.config.block_out_channels)}")
    if unet2d.config.cross_attention_dim != old.config.text_dim:
        raise ValueError(f"base_model: {base!r} has text width {unet2d.config.cross_attention_dim}, the frame-token "
                         f"generator was made for {old.config.text_dim}")
    config = HarivoConfig.from_dict({**old.config.to_dict(), "base_model": str(base)})
    model = HarivoVideoModel.from_unet2d(unet2d.to(old.unet.dtype), old.motion_adapter().to(old.unet.dtype), config)
    for name in ("mapping_network", "frame_token_generator"):
        module = getattr(old, name)
        if module is not None:
            getattr(model, name).load_state_dict(module.state_dict())
    text_encoder, vae = pipe.text_encoder, pipe.vae
    if "text_encoder" in parts and _has_part(base, "text_encoder"):
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", use_safetensors=True)
    if "vae" in parts and _has_part(base, "vae"):
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", use_safetensors=True)
    device = pipe.device
    return HarivoPipeline(vae.to(device).eval(), text_encoder.to(device).eval(), pipe.tokenizer,
                          model.to(device).eval(), pipe.scheduler, name=f"{pipe.name} on {Path(str(base)).name}")


def _has_part(base: str, part: str) -> bool:
    path = Path(base)
    return (path / part).is_dir() if path.exists() else True  # hub ids: let from_pretrained decide


# ------------------------------------------------------------------------------------------------ ControlNet
@dataclass
class ControlNetCondition:
    """ControlNet on all frames (`frame_indices=None`, one image per frame) or on the frames listed (sparse,
    Fig. 7b), one image each. The ControlNet sees what the video UNet sees: the mapped x_t of each conditioned
    frame and the text tokens (not the frame tokens, which a T2I ControlNet never saw)."""

    controlnet: torch.nn.Module  # diffusers ControlNetModel
    images: torch.Tensor  # (n, 3, H, W) in [0, 1]: condition images (pose, edges, depth ...)
    frame_indices: Sequence[int] | None = None  # frames the images belong to; None = every frame, in order
    scale: float = 1.0  # controlnet_conditioning_scale
    start: float = 0.0  # fraction of the steps where it starts acting (diffusers' control_guidance_start)
    end: float = 1.0  # ... and stops (control_guidance_end)
    replaces_attention_processors = False  # it adds residuals; the UNet's attention stays as it is

    def validate(self, model, num_frames: int, height: int, width: int) -> ControlNetCondition:
        if not (isinstance(self.images, torch.Tensor) and self.images.ndim == 4 and self.images.shape[1] == 3):
            raise ValueError(f"control_images: expected (n, 3, H, W) images in [0, 1], got "
                             f"{getattr(self.images, 'shape', type(self.images).__name__)}")
        if tuple(self.images.shape[-2:]) != (height, width):
            raise ValueError(f"control_images: expected {height}x{width} images (the video size), got "
                             f"{self.images.shape[-2]}x{self.images.shape[-1]}")
        indices = list(range(num_frames)) if self.frame_indices is None else list(self.frame_indices)
        if len(indices) != len(self.images):
            raise ValueError(f"control_images: expected one image per conditioned frame ({len(indices)}), got {len(self.images)}")
        if len(set(indices)) != len(indices) or any(not 0 <= i < num_frames for i in indices):
            raise ValueError(f"control_frames: expected distinct frame indices in [0, {num_frames - 1}], got {indices}")
        check_range("control_scale", self.scale, 0.0)
        check_range("control_start", self.start, 0.0, 1.0)
        check_range("control_end", self.end, self.start, 1.0)
        return self

    def modules(self) -> list[torch.nn.Module]:
        return [self.controlnet]

    def unet_kwargs(self, sample, timestep, text_embeds, step, num_steps, video) -> dict:
        """Residuals for the UNet's down and mid blocks, (b f, C, h, w) each; zero on frames without a condition."""
        b, _, f = sample.shape[:3]
        # 1. on/off by step, exactly as AnimateDiffControlNetPipeline's controlnet_keep
        keep = 1.0 - float(step / num_steps < self.start or (step + 1) / num_steps > self.end)
        indices = list(range(f)) if self.frame_indices is None else list(self.frame_indices)
        dtype, device = self.controlnet.dtype, sample.device
        # 2. ControlNet on the conditioned frames only, video-major like the UNet: (b n) c h w
        frames = rearrange(sample[:, :, indices], "b c n h w -> (b n) c h w").to(dtype)
        images = self.images.to(device, dtype).repeat(b, 1, 1, 1)  # [uncond, cond] halves see the same images
        states = text_embeds.to(dtype).repeat_interleave(len(indices), dim=0)  # (b n, M, D)
        down, mid = self.controlnet(frames, timestep, encoder_hidden_states=states, controlnet_cond=images,
                                    conditioning_scale=self.scale * keep, return_dict=False)
        # 3. scatter to every frame: zero residual = no ControlNet on that frame
        if len(indices) != f:
            down = [_scatter_frames(r, b, f, indices) for r in down]
            mid = _scatter_frames(mid, b, f, indices)
        return {"down_block_additional_residuals": list(down), "mid_block_additional_residual": mid}


def _scatter_frames(residual: torch.Tensor, b: int, f: int, indices: list[int]) -> torch.Tensor:
    """(b n, C, h, w) residuals of the frames `indices` → (b f, C, h, w), zeros elsewhere."""
    full = residual.new_zeros((b, f) + residual.shape[1:])
    full[:, indices] = residual.unflatten(0, (b, len(indices)))
    return full.flatten(0, 1)


def load_controlnet(source: str, dtype: torch.dtype | None = None):
    from diffusers import ControlNetModel

    try:
        return ControlNetModel.from_pretrained(str(source), use_safetensors=True, torch_dtype=dtype).eval()
    except (OSError, ValueError) as e:
        raise ValueError(f"controlnet: cannot load a diffusers ControlNetModel from {str(source)!r} ({e})") from None


def read_images(paths: Sequence[str | os.PathLike], height: int, width: int) -> torch.Tensor:
    """Image files (or one .npy/.npz of frames (f, h, w, 3) in [0, 1] or uint8) → (n, 3, H, W) in [0, 1],
    resized to the video size (bilinear, as diffusers' VideoProcessor)."""
    from PIL import Image

    arrays = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise ValueError(f"control_images: no such file {str(p)!r}")
        if p.suffix == ".npy":
            frames = np.load(p, allow_pickle=False)
            frames = frames if frames.ndim == 4 else frames[None]
            arrays += [f.astype(np.float32) / (255.0 if f.dtype == np.uint8 else 1.0) for f in frames]
            continue
        try:
            image = Image.open(p).convert("RGB")
        except OSError as e:
            raise ValueError(f"control_images: cannot read {str(p)!r} ({e})") from None
        arrays.append(np.asarray(image.resize((width, height), Image.BILINEAR), np.float32) / 255.0)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (n, 3, h, w)
    if tuple(x.shape[-2:]) != (height, width):
        x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).contiguous()


# ----------------------------------------------------------------------------------------------- IP-Adapter
def ip_adapter_state_dict(source, weight_name: str = "ip-adapter_sd15.safetensors", subfolder: str = "models") -> dict:
    """{"image_proj": ..., "ip_adapter": ...} from a dict, a .safetensors file, or a folder/hub id as h94/IP-Adapter
    lays it out (`models/ip-adapter_sd15.safetensors`)."""
    from safetensors.torch import load_file

    if isinstance(source, dict):
        state = source
    else:
        path = Path(source)
        if path.is_dir():
            path = path / subfolder / weight_name if (path / subfolder).is_dir() else path / weight_name
        elif not path.is_file():
            try:
                from huggingface_hub import hf_hub_download

                path = Path(hf_hub_download(str(source), weight_name, subfolder=subfolder))
            except Exception as e:
                raise ValueError(f"ip_adapter: {str(source)!r} is no local file or folder and cannot be fetched ({e})") from None
        if path.suffix != ".safetensors" or not path.is_file():
            raise ValueError(f"ip_adapter: expected a .safetensors IP-Adapter file, got {str(path)!r}")
        flat = load_file(str(path))
        state = {"image_proj": {}, "ip_adapter": {}}
        for key, value in flat.items():
            head, _, rest = key.partition(".")
            if head in state:
                state[head][rest] = value
    if not state.get("image_proj") or not state.get("ip_adapter"):
        raise ValueError(f"ip_adapter: expected 'image_proj' and 'ip_adapter' weights in {source if not isinstance(source, dict) else 'the state dict'!r}")
    return state


def load_ip_adapter(pipe, source, *, weight_name: str = "ip-adapter_sd15.safetensors", subfolder: str = "models",
                    scale: float = 1.0) -> None:
    """IP-Adapter cross-attention (to_k_ip/to_v_ip) and image projection into both UNets of `pipe.model`, with
    diffusers' own loader. From then on every denoiser call needs an `IPAdapterCondition` (diffusers' rule for a
    UNet with `encoder_hid_dim_type='ip_image_proj'`) until `unload_ip_adapter`."""
    state = ip_adapter_state_dict(source, weight_name, subfolder)
    check_range("ip_scale", scale, 0.0)
    for unet in (pipe.model.unet, pipe.model.t2i_unet):
        if not has_ip_adapter(unet):
            unet._processors_before_ip = unet.attn_processors  # restored by unload_ip_adapter
        try:
            unet._load_ip_adapter_weights([state], low_cpu_mem_usage=False)
        except (KeyError, RuntimeError) as e:
            raise ValueError(f"ip_adapter: the weights do not fit this UNet ({type(e).__name__}: {e})") from None
        set_ip_adapter_scale(unet, scale)
        unet.requires_grad_(False)
    pipe.model.freeze_t2i()
    if IPAdapterCondition not in pipe.required_conditions:
        pipe.required_conditions.append(IPAdapterCondition)  # diffusers' UNet wants image_embeds on every call


def set_ip_adapter_scale(unet, scale: float) -> None:
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    for proc in unet.attn_processors.values():
        if isinstance(proc, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)):
            proc.scale = [scale] * len(proc.scale)


def has_ip_adapter(unet) -> bool:
    return getattr(unet, "encoder_hid_proj", None) is not None and unet.config.encoder_hid_dim_type == "ip_image_proj"


def unload_ip_adapter(pipe) -> None:
    """Back to the plain UNets (the attention processors from before `load_ip_adapter`, no image projection)."""
    for unet in (pipe.model.unet, pipe.model.t2i_unet):
        if has_ip_adapter(unet):
            unet.encoder_hid_proj = None
            unet.register_to_config(encoder_hid_dim_type=None)
            unet.set_attn_processor(unet.__dict__.pop("_processors_before_ip"))
    if IPAdapterCondition in pipe.required_conditions:
        pipe.required_conditions.remove(IPAdapterCondition)


@dataclass
class IPAdapterCondition:
    """The CLIP image embedding of the image prompt; the unconditional CFG half gets zeros (as diffusers)."""

    image_embeds: torch.Tensor  # (1, D) CLIPVisionModelWithProjection.image_embeds
    replaces_attention_processors = True  # IP-Adapter's own processors (to_k_ip/to_v_ip) must stay in place

    def validate(self, model, num_frames: int, height: int, width: int) -> IPAdapterCondition:
        if not has_ip_adapter(model.unet):
            raise ValueError("conditions: no IP-Adapter is loaded (compat.load_ip_adapter); expected no "
                             "IPAdapterCondition")
        return self

    def modules(self) -> list[torch.nn.Module]:
        return []

    def unet_kwargs(self, sample, timestep, text_embeds, step, num_steps, video) -> dict:
        b, f = sample.shape[0], sample.shape[2]
        cond = self.image_embeds.to(sample.device, text_embeds.dtype).reshape(1, 1, -1)  # (1, 1, D)
        embeds = torch.cat([torch.zeros_like(cond)] * (b - 1) + [cond]) if b > 1 else cond  # [uncond, cond]
        if not video:  # the T2I UNet sees frames as a batch; UNetMotionModel repeats over frames itself
            embeds = embeds.repeat_interleave(f, dim=0)
        return {"added_cond_kwargs": {"image_embeds": [embeds]}}


@torch.no_grad()
def encode_image(image_encoder, feature_extractor, image) -> torch.Tensor:
    """(1, D) CLIP image embedding of a PIL image / array for `IPAdapterCondition`."""
    pixels = feature_extractor(image, return_tensors="pt").pixel_values
    return image_encoder(pixels.to(image_encoder.device, image_encoder.dtype)).image_embeds


def load_image_encoder(source: str, subfolder: str = "models/image_encoder"):
    """CLIPVisionModelWithProjection + CLIPImageProcessor (h94/IP-Adapter layout, or a folder with both)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    path = Path(source)
    sub = subfolder if (not path.exists() or (path / subfolder).is_dir()) else ""
    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(str(source), subfolder=sub, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"image_encoder: cannot load a CLIPVisionModelWithProjection from {str(source)!r} ({e})") from None
    try:
        processor = CLIPImageProcessor.from_pretrained(str(source), subfolder=sub)
    except (OSError, ValueError):
        processor = CLIPImageProcessor()  # IP-Adapter's image encoder folder has no preprocessor config: CLIP defaults
    return encoder.eval(), processor
