"""Stage 2's base model: the frozen stage-1 text-to-image pipeline (VAE, text encoder, tokenizer, UNet, scheduler
config) that HARIVO inflates, loaded from a folder or a Hugging Face hub id (safetensors only), with a fingerprint
of each part's weights so that caches and resumed runs can tell when the base has changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from harivo.model import load_unet2d
from harivo.sampling import PREDICTION_TYPES


@dataclass
class BaseModel:
    """The frozen stage-1 components."""

    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: object
    unet: nn.Module
    scheduler_config: dict
    path: Path
    fingerprints: dict[str, str]  # sha256 (first 16 hex) of each weights file

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def fingerprint(paths: list[Path]) -> str:
    """sha256 (first 16 hex) of the files' names and bytes: what a cache or a resumed run checks its inputs by."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def model_folder(source: str, what: str = "base_model") -> Path:
    """A local folder for `source`: the folder itself, or a hub id (`owner/name`) fetched into the HF cache
    (safetensors of the pipeline's sub-models only, no .bin, fp16 or single-file copies)."""
    path = Path(source)
    if path.exists() or path.is_absolute() or source.startswith(".") or source.count("/") != 1:
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.safetensors"],
                                      ignore_patterns=["*fp16*", "*non_ema*", "*.ckpt", "*.bin", "*pruned*"]))
    except Exception as e:  # offline, unknown repo, gated repo: say so, naming the field
        raise ValueError(f"{what}: {source!r} is no local folder and cannot be fetched from the hub ({e})") from None


def load_base(base_model: str) -> BaseModel:
    """The frozen stage-1 pipeline of `base_model` (folder or hub id), fingerprinted; ValueError naming the field
    if it is no StableDiffusionPipeline predicting ε or v."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    path = model_folder(base_model)
    if not (path / "unet").is_dir():
        raise ValueError(f"base_model: expected a StableDiffusionPipeline folder with unet/, got {base_model!r}")
    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", use_safetensors=True)
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", use_safetensors=True)
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        scheduler_config = dict(DDIMScheduler.load_config(path, subfolder="scheduler"))
    except (OSError, ValueError) as e:
        raise ValueError(f"base_model: cannot load the T2I components from {base_model!r} ({e})") from None
    unet = load_unet2d(str(path))
    if scheduler_config.get("prediction_type", "epsilon") not in PREDICTION_TYPES:
        raise ValueError(f"base_model: expected a scheduler predicting one of {list(PREDICTION_TYPES)}, "
                         f"got {scheduler_config['prediction_type']!r}")
    fingerprints = {part: fingerprint(list((path / part).glob("*.safetensors")))
                    for part in ("vae", "text_encoder", "unet")}
    fingerprints["tokenizer"] = fingerprint([p for p in (path / "tokenizer").iterdir() if p.is_file()])
    for m in (vae, text_encoder, unet):
        m.eval().requires_grad_(False)
    return BaseModel(vae, text_encoder, tokenizer, unet, scheduler_config, path, fingerprints)

