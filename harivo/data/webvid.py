"""A WebVid-style video–caption dataset: a CSV of (`videoid`, `name` caption, local file path) rows over local
video files, decoded with PyAV.

HARIVO trains on WebVid-10M (§4): 24 frames at 6 fps, 256² (App. D). This loader gives the same kind of sample
from any local copy of such data: F frames taken every `1/fps` seconds (or every `frame_stride`-th decoded
frame), center-cropped to the target aspect ratio and resized, as `(c, f, h, w)` floats in [-1, 1]
(the VAE's input range) plus the caption. The shapes world (`harivo.data.shapes`) is the embedded stand-in;
this is the path to real data.

    ds = WebVidDataset("webvid/results_2M_train.csv", num_frames=24, fps=6, size=256, path_column="path")
    item = ds[0]  # {"pixel_values": (3, 24, 256, 256), "caption": "...", "videoid": "..."}

Decoding is sequential from the start of the file up to the last needed frame (WebVid clips are ~10-30 s);
frames that are not kept are dropped at once, so memory holds only the F output frames.
"""

from __future__ import annotations

import csv
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

CLIP_STARTS = ("start", "center", "random")


class WebVidDataset(Dataset):
    """Rows of a WebVid-style CSV as `{"pixel_values": (3, f, h, w) float in [-1, 1], "caption", "videoid"}`."""

    def __init__(
        self,
        csv_path: str | os.PathLike,
        num_frames: int = 16,
        fps: float | None = None,
        frame_stride: int = 1,
        size: int | tuple[int, int] = 64,
        path_column: str = "path",
        caption_column: str = "name",
        id_column: str = "videoid",
        video_root: str | os.PathLike | None = None,
        clip_start: str = "start",
        seed: int = 0,
    ):
        """
        csv_path: the CSV; file paths in `path_column` are relative to `video_root` (default: the CSV's folder).
        num_frames: F frames per sample.
        fps: sample frames every 1/fps seconds of the video (HARIVO: 6); None = every `frame_stride`-th frame.
        frame_stride: take every n-th decoded frame when `fps` is None.
        size: output side (square) or (height, width); frames are center-cropped to that aspect ratio first.
        clip_start: where the F frames start: "start", "center" or "random" (seeded by seed, index and epoch).
        """
        self.csv_path = Path(csv_path)
        if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1:
            raise ValueError(f"num_frames: expected an integer >= 1, got {num_frames!r}")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0):
            raise ValueError(f"fps: expected a number > 0 or None, got {fps!r}")
        if not isinstance(frame_stride, int) or isinstance(frame_stride, bool) or frame_stride < 1:
            raise ValueError(f"frame_stride: expected an integer >= 1, got {frame_stride!r}")
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if len(self.size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in self.size):
            raise ValueError(f"size: expected an integer >= 1 or (height, width), got {size!r}")
        if clip_start not in CLIP_STARTS:
            raise ValueError(f"clip_start: expected one of {list(CLIP_STARTS)}, got {clip_start!r}")
        self.num_frames, self.fps, self.frame_stride = num_frames, fps, frame_stride
        self.clip_start, self.seed, self.epoch = clip_start, seed, 0
        self.path_column, self.caption_column, self.id_column = path_column, caption_column, id_column
        self.video_root = Path(video_root) if video_root is not None else self.csv_path.parent
        self.rows = self._read_csv()

    def _read_csv(self) -> list[dict[str, str]]:
        if not self.csv_path.is_file():
            raise ValueError(f"csv_path: no such file {str(self.csv_path)!r}")
        with open(self.csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            for arg, column in (("id_column", self.id_column), ("caption_column", self.caption_column),
                                ("path_column", self.path_column)):
                if column not in columns:
                    raise ValueError(f"{arg}: column {column!r} is missing from {str(self.csv_path)!r} "
                                     f"(its columns: {columns})")
            return [{"videoid": r[self.id_column], "caption": r[self.caption_column], "path": r[self.path_column]}
                    for r in reader]

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """With clip_start="random", a new epoch draws new clip positions (deterministically)."""
        self.epoch = int(epoch)

    def video_path(self, index: int) -> Path:
        return self.video_root / self.rows[index]["path"]

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        path = self.video_path(index)
        if not row["path"]:
            raise ValueError(f"{self.path_column}: row {index} (videoid {row['videoid']!r}) of "
                             f"{str(self.csv_path)!r} has an empty file path")
        if not path.is_file():
            raise ValueError(f"{self.path_column}: video file {str(path)!r} (videoid {row['videoid']!r}) does not exist")
        frames = self.read_frames(path, index)  # (f, H, W, 3) uint8
        return {"pixel_values": self.transform(frames), "caption": row["caption"], "videoid": row["videoid"]}

    # ------------------------------------------------------------------------------------------ decoding
    def _indices(self, rate: Fraction | None, total: int | None, index: int) -> tuple[list[int], str]:
        """Frame indices of the clip and a description of the sampling (for error messages)."""
        if self.fps is not None:
            if not rate:
                raise ValueError("frame rate unknown")
            step = float(rate) / self.fps  # decoded frames per output frame
            how = f"{self.num_frames} frames at {self.fps:g} fps from a {float(rate):g} fps video"
        else:
            step = float(self.frame_stride)
            how = f"{self.num_frames} frames at stride {self.frame_stride}"
        span = int(round(step * (self.num_frames - 1))) + 1  # decoded frames the clip covers
        start = 0
        if total and total > span and self.clip_start != "start":
            if self.clip_start == "center":
                start = (total - span) // 2
            else:
                rng = np.random.default_rng([self.seed, index, self.epoch])
                start = int(rng.integers(0, total - span + 1))
        return [start + int(round(k * step)) for k in range(self.num_frames)], how

    def read_frames(self, path: Path, index: int = 0) -> np.ndarray:
        """The clip's frames as uint8 (f, H, W, 3); ValueError naming the file if it cannot give them."""
        import av

        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as e:
            raise ValueError(f"{self.path_column}: cannot open video file {str(path)!r} ({e})") from None
        try:
            if not container.streams.video:
                raise ValueError(f"{self.path_column}: {str(path)!r} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            total = stream.frames or None
            if total is None and stream.duration is not None and rate:
                total = int(float(stream.duration * stream.time_base * rate))
            try:
                wanted, how = self._indices(rate, total, index)
            except ValueError:
                raise ValueError(f"{self.path_column}: {str(path)!r} has no frame rate; use frame_stride instead "
                                 f"of fps") from None
            keep: dict[int, np.ndarray] = {}
            wanted_set, last, decoded = set(wanted), wanted[-1], 0
            for frame in container.decode(stream):
                if decoded in wanted_set:
                    keep[decoded] = frame.to_ndarray(format="rgb24")
                decoded += 1
                if decoded > last:
                    break
        except av.error.FFmpegError as e:
            raise ValueError(f"{self.path_column}: cannot decode video file {str(path)!r} ({e})") from None
        finally:
            container.close()
        if len(keep) < len(wanted_set):
            raise ValueError(f"{self.path_column}: video file {str(path)!r} is too short: {how} needs "
                             f"{last + 1} decoded frames (from frame {wanted[0]}), it has {decoded}")
        return np.stack([keep[i] for i in wanted])

    def transform(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (f, H, W, 3) → center crop to the target aspect → resize → (3, f, h, w) float in [-1, 1]."""
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (f, 3, H, W)
        h_out, w_out = self.size
        H, W = x.shape[-2:]
        if H * w_out > W * h_out:  # too tall: crop height
            ch, cw = max(1, round(W * h_out / w_out)), W
        else:  # too wide (or exact): crop width
            ch, cw = H, max(1, round(H * w_out / h_out))
        top, left = (H - ch) // 2, (W - cw) // 2
        x = x[:, :, top : top + ch, left : left + cw]
        if (ch, cw) != (h_out, w_out):
            x = F.interpolate(x, size=(h_out, w_out), mode="bilinear", antialias=True, align_corners=False)
        x = (x / 127.5 - 1.0).clamp(-1.0, 1.0)
        return x.permute(1, 0, 2, 3).contiguous()  # (3, f, h, w)
