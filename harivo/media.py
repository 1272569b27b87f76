"""Writing videos and images: mp4 (moviepy/ffmpeg), GIF and PNG, atomically; pixel conversions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .fileio import atomic_path


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """float frames in [0, 1] (or uint8) → uint8."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def upscale(frames: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor so that the short side is at least `min_size` px
    (tiny 64×64 shapes-world videos stay crisp in a browser; pixels are never invented)."""
    h, w = frames.shape[-3:-1]
    factor = max(1, -(-min_size // min(h, w)))
    if factor == 1:
        return frames
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: int = 8, min_size: int = 256) -> Path:
    """(f, h, w, 3) frames → H.264 mp4 (yuv420p, plays in browsers). x264's "veryfast" preset: the app waits for this
    file before it shows the video, and for 16 frames of 256² it takes 40 % less time than "medium" (195 → 112 ms),
    at the same quality setting (CRF 23) and ~10 % more bytes."""
    from moviepy import ImageSequenceClip

    path = Path(path)
    data = upscale(to_uint8(frames), min_size)
    if data.shape[1] % 2 or data.shape[2] % 2:  # yuv420p needs even sides
        data = np.pad(data, ((0, 0), (0, data.shape[1] % 2), (0, data.shape[2] % 2), (0, 0)), mode="edge")
    clip = ImageSequenceClip(list(data), fps=fps)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        clip.write_videofile(str(tmp), codec="libx264", audio=False, logger=None, preset="veryfast",
                             ffmpeg_params=["-pix_fmt", "yuv420p"])
        os.replace(tmp, path)
    finally:
        clip.close()
        if tmp.exists():
            tmp.unlink()
    return path


def write_gif(frames: np.ndarray, path: str | os.PathLike, fps: int = 8, min_size: int = 256) -> Path:
    images = [Image.fromarray(f) for f in upscale(to_uint8(frames), min_size)]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return Path(path)


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    return Path(path)


def write_npy(array: np.ndarray, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return Path(path)


def write_npz(arrays: dict, path: str | os.PathLike) -> Path:
    """`np.savez`, uncompressed: float attention maps deflate by ~10 % at ~25× the time (0.39 s against 16 ms for a
    default request's 10 MB of maps), which a visitor waits for at every click."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)
