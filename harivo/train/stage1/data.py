"""What stage 1 trains on. The VAE stage renders fresh shapes-world frames of the training split every step
(`render_batch`); the UNet stage trains on the VAE latents of a fixed set of training frames
(`training_frames`), encoded once and cached in `run_dir/cache` with their captions (`latent_cache`) and, for
the object-weighted loss, their object masks (`object_mask_cache`). `UNetData` is all of it, loaded together
with the frozen VAE and the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harivo.fileio import load_tensors, read_json, save_tensors, write_json
from harivo.pixels import to_pixels
from harivo.train.stage1.config import T2IConfig
from harivo.tokenizer import token_ids


def render_batch(rng: np.random.Generator, n: int, split: str, size: int, world: str = ""):
    """(specs, (n, size, size, 3) uint8 images): n random specs of `split`, one random frame of each, in `world`
    (`shapes.World.parse`; "" is the shipped world)."""
    from harivo.data.shapes import World, render_image, sample_spec

    w = World.parse(world)
    specs = [sample_spec(rng, split) for _ in range(n)]
    imgs = np.stack([render_image(s, int(rng.integers(2**31 - 1)), size, w) for s in specs])
    return specs, imgs


def frame_cache_key(cfg: T2IConfig) -> str:
    """What the caches of `training_frames` depend on (the world's version, data, frame choice, size)."""
    from harivo.data.shapes import World

    return f"{World.parse(cfg.world).version}_n{cfg.train_videos}_f{cfg.frames_per_video}_s{cfg.seed}_{cfg.image_size}"


def training_frames(cfg: T2IConfig):
    """(spec, frame) for `frames_per_video` random frames of each of `train_videos` training videos, in the one
    order that every stage-1 cache (latents, object masks) is stored in."""
    from harivo.data.shapes import World, make_dataset, render_video

    data = make_dataset(cfg.train_videos, cfg.seed, split="train", num_frames=16, size=cfg.image_size)
    rng = np.random.default_rng([cfg.seed, 5])
    for spec, vseed in data:
        video, _ = render_video(spec, vseed, 16, cfg.image_size, World.parse(cfg.world))
        for f in rng.choice(16, size=cfg.frames_per_video, replace=False):
            yield spec, video[f]


def latent_cache(cfg: T2IConfig, vae, device) -> tuple[torch.Tensor, list[str], list[int]]:
    """Pre-encode (once) `frames_per_video` random frames of `train_videos` training videos -> cached latents."""
    vae_file = Path(cfg.run_dir) / "vae" / "diffusion_pytorch_model.safetensors"
    stamp = str(int(vae_file.stat().st_mtime)) if vae_file.exists() else "mem"
    path = Path(cfg.run_dir) / "cache" / f"latents_{frame_cache_key(cfg)}.safetensors"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = read_json(meta_path)
        if meta.get("vae_stamp") == stamp:
            return load_tensors(path)["latents"], meta["captions"], meta["caption_index"]
    specs, frames = zip(*training_frames(cfg))
    captions: list[str] = sorted({s.caption for s in specs})
    cidx = {c: i for i, c in enumerate(captions)}
    caption_index = [cidx[s.caption] for s in specs]
    frames = np.stack(frames)
    vae.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), 256):
            out.append(vae.encode(to_pixels(frames[i:i + 256]).to(device)).latent_dist.mode().float().cpu())
    lat = torch.cat(out)
    save_tensors(path, {"latents": lat})
    write_json(meta_path, {"vae_stamp": stamp, "captions": captions, "caption_index": caption_index})
    return lat, captions, caption_index


def object_mask_cache(cfg: T2IConfig) -> torch.Tensor:
    """(N, 1, h, w) share of each latent pixel's 4x4 pixel cell that is object (not the background colour), dilated
    by one latent pixel, for the frames of `latent_cache` in the same order (`training_frames`)."""
    from harivo.data.shapes import BACKGROUNDS

    path = Path(cfg.run_dir) / "cache" / f"object_masks_{frame_cache_key(cfg)}.safetensors"
    if path.is_file():
        return load_tensors(path)["masks"]
    masks = [np.any(frame != np.array(BACKGROUNDS[spec.background], np.uint8), axis=-1)
             for spec, frame in training_frames(cfg)]
    m = torch.from_numpy(np.stack(masks)).float()[:, None]
    m = torch.nn.functional.max_pool2d(torch.nn.functional.avg_pool2d(m, 4), 3, stride=1, padding=1)
    save_tensors(path, {"masks": m.contiguous()})
    return m



@dataclass
class UNetData:
    """The UNet stage's inputs: the frozen VAE, the cached latents of the training frames and their captions."""

    vae: torch.nn.Module  # frozen, on the device
    vae_info: dict  # the VAE's record (vae_metrics.json, or the "vae" entry of an exported training.json)
    tokenizer: object
    latents: torch.Tensor  # (N, c, h, w) unscaled VAE latents (posterior mode)
    captions: list[str]  # the distinct captions, sorted
    cap_index: torch.Tensor  # (N,) index of each latent's caption in `captions`
    cap_ids: torch.Tensor  # (C, 77) token ids of the captions
    empty_ids: torch.Tensor  # (77,) token ids of the empty caption (classifier-free guidance)
    masks: torch.Tensor | None  # (N, 1, h, w) object masks (`object_mask_cache`), only with unet_object_weight

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)


def load_unet_data(cfg: T2IConfig, vae_dir: Path, init: Path | None, device) -> UNetData:
    """The VAE of `vae_dir`, the tokenizer of run_dir and the cached (computed on first use) training latents."""
    from diffusers import AutoencoderKL

    from harivo.tokenizer import build_tokenizer

    vae = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True).to(device).eval().requires_grad_(False)
    if (vae_dir / "vae_metrics.json").is_file():
        vae_info = read_json(vae_dir / "vae_metrics.json")
    else:  # an exported pipeline keeps the VAE's record in training.json
        vae_info = read_json(init / "training.json").get("vae", {})
    tokenizer = build_tokenizer(Path(cfg.run_dir) / "tokenizer")
    latents, captions, caption_index = latent_cache(cfg, vae, device)
    masks = object_mask_cache(cfg) if cfg.unet_object_weight != 1.0 else None
    return UNetData(vae, vae_info, tokenizer, latents, captions, torch.tensor(caption_index),
                    token_ids(tokenizer, captions), token_ids(tokenizer, [""])[0], masks)
