"""A run's files (docs/design.md §3), written and read in one place for the CLI, the app and the evaluation.

    video.mp4      the video (`fps` frames per second)
    frames.npy     float32 (f, h, w, 3) in [0, 1]
    config.json    the settings in effect, per-step diagnostics, notes, fps and library versions (+ caller extras)
    attention.npz  the frame-wise cross-attention maps (`attention_to_arrays`), when they were recorded
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__, fileio, media
from .attention import AttentionRecord, layer_resolution
from .config import setting

RUN_FILES = ("video.mp4", "frames.npy", "config.json", "attention.npz")


@dataclass
class VideoOptions:
    """How a run's video file is written (the CLI's --fps, the app's fps slider)."""

    fps: int = setting(8, low=1, high=60, integer=True, slider=(1, 24))  # frames per second of video.mp4


def versions() -> dict[str, str]:
    """Versions of what made a video (recorded beside it, and in the evaluation's results)."""
    import diffusers
    import transformers

    return {"harivo": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def attention_to_arrays(rec: AttentionRecord) -> dict:
    """Flat numpy arrays of an AttentionRecord for attention.npz; per-layer keys are short ("up1.0")."""
    arrays = {"tokens": list(rec.tokens), "token_kinds": list(rec.token_kinds), "timesteps": list(rec.timesteps)}
    for r, v in rec.per_step.items():
        arrays[f"per_step_{r}"] = v.numpy()
    for name, v in rec.per_layer.items():
        arrays[f"per_layer_{layer_resolution(name)}"] = v.numpy()
    return arrays


def read_attention(path: str | Path) -> AttentionRecord:
    """attention.npz (`attention_to_arrays`) → AttentionRecord."""
    with np.load(path, allow_pickle=False) as z:
        rec = AttentionRecord(tokens=[str(t) for t in z["tokens"]], token_kinds=[str(k) for k in z["token_kinds"]],
                              timesteps=[int(t) for t in z["timesteps"]])
        for key in z.files:
            if key.startswith("per_step_"):
                rec.per_step[key[len("per_step_"):]] = torch.from_numpy(z[key])
            elif key.startswith("per_layer_"):
                rec.per_layer[key[len("per_layer_"):]] = torch.from_numpy(z[key])
    return rec


def save_output(out, directory: str | Path, fps: int = VideoOptions.fps, extra: dict | None = None,
                video: bool = True) -> Path:
    """Write the four files of a `HarivoOutput` into `directory` (config.json also gets `extra`'s keys);
    `video=False` leaves out video.mp4 (written already)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if video:
        media.write_mp4(out.frames, directory / "video.mp4", fps=fps)
    media.write_npy(out.frames.astype("float32"), directory / "frames.npy")
    if out.attention is not None:
        media.write_npz(attention_to_arrays(out.attention), directory / "attention.npz")
    config = {"settings": out.settings, "steps": out.steps, "notes": out.notes, "versions": versions(), "fps": fps}
    fileio.write_json(directory / "config.json", {**config, **(extra or {})})
    return directory


@dataclass
class RunFiles:
    """What `read_output` reads back."""

    frames: np.ndarray  # (f, h, w, 3) float32 in [0, 1]
    config: dict  # config.json
    attention: AttentionRecord | None


def read_output(directory: str | Path, what: str = "output") -> RunFiles:
    """frames.npy, config.json and (when present) attention.npz of a run folder; ValueError naming `what`."""
    directory = Path(directory)
    try:
        frames = np.load(directory / "frames.npy", allow_pickle=False).astype(np.float32)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise ValueError(f"{what}: cannot read frames.npy/config.json ({e})") from None
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{what}: frames.npy must hold (f, h, w, 3) frames, got {frames.shape}")
    attention = read_attention(directory / "attention.npz") if (directory / "attention.npz").exists() else None
    return RunFiles(frames, config, attention)
