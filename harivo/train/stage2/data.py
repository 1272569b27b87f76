"""What stage 2 trains on: the training videos (the shapes world's training split, or the first rows of a
WebVid-style CSV) with their captions. By default they are VAE-encoded and text-encoded *once* and cached in
`cache_dir` (keyed by the data, the frame count and size, and the base model's fingerprints), shared by the
variants (`load_training_data` → `VideoLatents`); with `stream_data`, WebVid at scale, they are decoded and
encoded step by step instead (`streaming_data`, `harivo.data.stream`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harivo.fileio import load_tensors, read_json, save_tensors, write_json
from harivo.pixels import to_pixels
from harivo.train.stage2.base import BaseModel, fingerprint
from harivo.train.stage2.config import TrainConfig
from harivo.tokenizer import token_ids


@dataclass
class VideoLatents:
    """The pre-encoded training set."""

    latents: torch.Tensor  # (N, c, f, h, w) float16, VAE latents × scaling_factor
    caption_index: torch.Tensor  # (N,) int64 into captions
    captions: list[str]
    text_embeds: torch.Tensor  # (C, M, D) text-encoder states of the captions
    empty_embeds: torch.Tensor  # (M, D) state of the empty caption (CFG's unconditional branch)

    def __len__(self) -> int:
        return len(self.latents)


def training_videos(cfg: TrainConfig):
    """(uint8 (f, h, w, 3) or float (3, f, h, w) in [-1, 1], caption) pairs of the training data."""
    if cfg.data == "shapes":
        from harivo.data.shapes import World, is_held_out, make_dataset, render_video

        world = World.parse(cfg.world)

        for spec, seed in make_dataset(cfg.train_videos, cfg.seed, split="train", num_frames=cfg.num_frames,
                                       size=cfg.video_size):
            assert not is_held_out(spec), spec  # held-out combinations are never trained on
            yield render_video(spec, seed, cfg.num_frames, cfg.video_size, world)[0], spec.caption
    else:
        from harivo.data.webvid import WebVidDataset

        ds = WebVidDataset(cfg.data, num_frames=cfg.num_frames, fps=cfg.webvid_fps or None, size=cfg.video_size)
        for i in range(min(len(ds), cfg.train_videos)):
            item = ds[i]
            yield item["pixel_values"], item["caption"]


def video_pixels(video) -> torch.Tensor:
    """A video of `training_videos` → (f, 3, h, w) float in [-1, 1]."""
    if isinstance(video, np.ndarray):
        return to_pixels(video)
    return video.permute(1, 0, 2, 3).float()


@torch.no_grad()
def encode_videos(cfg: TrainConfig, base: BaseModel, device: torch.device,
                  chunk: int = 256) -> tuple[torch.Tensor, list[str]]:
    """VAE latents (mode of the posterior × scaling_factor, as stage 1) of every training video, once."""
    from tqdm.auto import tqdm

    vae = base.vae.to(device)
    scale = float(vae.config.scaling_factor)
    out, captions, pending = [], [], []

    def flush():
        frames = torch.cat([v for v in pending]).to(device)  # (n f, 3, h, w)
        z = torch.cat([vae.encode(frames[i:i + chunk]).latent_dist.mode() for i in range(0, len(frames), chunk)])
        z = z.float().cpu() * scale
        z = z.reshape(len(pending), cfg.num_frames, *z.shape[1:]).permute(0, 2, 1, 3, 4)
        out.append(z.half())  # (n, c, f, h, w)
        pending.clear()

    for video, caption in tqdm(training_videos(cfg), total=cfg.train_videos, desc="encode videos", mininterval=10):
        pending.append(video_pixels(video))
        captions.append(caption)
        if len(pending) * cfg.num_frames >= chunk:
            flush()
    if pending:
        flush()
    return torch.cat(out), captions


@torch.no_grad()
def encode_captions(base: BaseModel, captions: list[str], device: torch.device) -> torch.Tensor:
    """(C, M, D) text-encoder states, as the pipelines compute them (padded to max length, no attention mask)."""
    ids = token_ids(base.tokenizer, captions)
    te = base.text_encoder.to(device)
    return torch.cat([te(ids[i:i + 64].to(device))[0].float().cpu() for i in range(0, len(ids), 64)])


def load_training_data(cfg: TrainConfig, base: BaseModel, device: torch.device, log=print) -> VideoLatents:
    """Pre-encoded latents and text embeddings from `cache_dir`, computed and cached on first use."""
    cache = Path(cfg.cache_dir)
    from harivo.data.shapes import World

    if cfg.data == "shapes":
        source = f"shapes-{World.parse(cfg.world).version}"
    else:
        source = f"csv-{fingerprint([Path(cfg.data)])}-fps{cfg.webvid_fps:g}"
    key = (f"{source}_n{cfg.train_videos}_s{cfg.seed}_f{cfg.num_frames}_{cfg.video_size}px"
           f"_vae{base.fingerprints['vae']}")
    lat_file, cap_file = cache / f"latents_{key}.safetensors", cache / f"latents_{key}.json"
    if not (lat_file.is_file() and cap_file.is_file()):
        t0 = time.time()
        latents, captions = encode_videos(cfg, base, device)
        save_tensors(lat_file, {"latents": latents})
        write_json(cap_file, {"captions": captions, "config": dataclasses.asdict(cfg), "base": str(base.path)})
        log(f"[data] encoded {len(latents)} videos in {time.time() - t0:.0f} s -> {lat_file}")
    # always read back from the cache: a run that encoded and a run that resumes then train on the same tensors
    latents, captions = load_tensors(lat_file)["latents"], read_json(cap_file)["captions"]
    log(f"[data] {len(latents)} cached video latents from {lat_file}")
    unique = sorted(set(captions))
    index = {c: i for i, c in enumerate(unique)}
    text_key = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:16]
    text_file = cache / (f"text_{text_key}_te{base.fingerprints['text_encoder']}"
                         f"_tok{base.fingerprints['tokenizer']}.safetensors")
    if not text_file.is_file():
        save_tensors(text_file, {"embeds": encode_captions(base, unique, device),
                                 "empty": encode_captions(base, [""], device)[0]})
    text = load_tensors(text_file)
    caption_index = torch.tensor([index[c] for c in captions], dtype=torch.long)
    return VideoLatents(latents, caption_index, unique, text["embeds"], text["empty"])


def streaming_data(cfg: TrainConfig, base: BaseModel, device: torch.device):
    """The first `train_videos` rows of the CSV, decoded and encoded step by step (WebVid at scale)."""
    from harivo.data.stream import StreamingVideos
    from harivo.data.webvid import WebVidDataset

    ds = WebVidDataset(cfg.data, num_frames=cfg.num_frames, fps=cfg.webvid_fps or None, size=cfg.video_size,
                       seed=cfg.seed)
    return StreamingVideos(ds, base.vae.to(device), base.text_encoder.to(device), base.tokenizer, device,
                           limit=cfg.train_videos, workers=cfg.data_workers)

