"""The WebVid-style loader on tiny mp4 files written here: frame sampling by fps/stride, center crop + resize,
value range, and clear errors for a missing column, a missing or broken file and a too-short video."""

import csv
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from harivo.data.webvid import WebVidDataset


def write_video(path, frames: np.ndarray, fps: int = 10) -> None:
    """Lossless RGB H.264 (libx264rgb, crf 0), so decoded pixels equal the written ones."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264rgb", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "rgb24"
        stream.options = {"crf": "0"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def counting_video(n: int, height: int = 24, width: int = 32) -> np.ndarray:
    """Frame k is uniform gray 5 + 8k, except a red 4-px strip on the left and right edges (cropped away)."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for k in range(n):
        frames[k] = 5 + 8 * k
    frames[:, :, :4] = (255, 0, 0)
    frames[:, :, -4:] = (255, 0, 0)
    return frames


def write_csv(path, rows, columns=("videoid", "name", "path")):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow({c: r[c] for c in columns})


@pytest.fixture
def webvid(tmp_path):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "a.mp4", counting_video(30), fps=10)
    write_video(tmp_path / "videos" / "b.mp4", counting_video(6), fps=10)
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"this is not an mp4 file" * 20)
    rows = [
        {"videoid": "1", "name": "a gray square is flashing", "path": "videos/a.mp4"},
        {"videoid": "2", "name": "too short", "path": "videos/b.mp4"},
        {"videoid": "3", "name": "broken", "path": "videos/broken.mp4"},
        {"videoid": "4", "name": "missing", "path": "videos/none.mp4"},
    ]
    write_csv(tmp_path / "data.csv", rows)
    return tmp_path / "data.csv"


def frame_levels(pixels: torch.Tensor) -> list[int]:
    """(3, f, h, w) in [-1, 1] → the gray level (0-255) of every frame's center."""
    center = pixels[:, :, pixels.shape[2] // 2, pixels.shape[3] // 2]  # (3, f)
    return [round(v) for v in ((center.mean(0) + 1) * 127.5).tolist()]


def test_reads_frames_at_fps_with_center_crop(webvid):
    ds = WebVidDataset(webvid, num_frames=4, fps=5, size=16)  # 10 fps video at 5 fps: every 2nd frame
    assert len(ds) == 4
    item = ds[0]
    x = item["pixel_values"]
    assert item["caption"] == "a gray square is flashing" and item["videoid"] == "1"
    assert x.shape == (3, 4, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert frame_levels(x) == [5 + 8 * k for k in (0, 2, 4, 6)]
    # the 24x32 frames were center-cropped to 24x24 (the red edge strips are gone), then resized to 16x16
    assert torch.allclose(x[0], x[1], atol=1e-5) and torch.allclose(x[1], x[2], atol=1e-5)


def test_stride_and_clip_start(webvid):
    ds = WebVidDataset(webvid, num_frames=3, frame_stride=3, size=8, clip_start="center")
    # 30 frames, clip spans 7 frames: centered start (30 - 7) // 2 = 11
    assert frame_levels(ds[0]["pixel_values"]) == [5 + 8 * k for k in (11, 14, 17)]
    rnd = WebVidDataset(webvid, num_frames=3, frame_stride=3, size=8, clip_start="random", seed=1)
    first = frame_levels(rnd[0]["pixel_values"])
    assert first == frame_levels(rnd[0]["pixel_values"])  # deterministic per (seed, index, epoch)
    assert [b - a for a, b in zip(first, first[1:])] == [24, 24]


def test_non_square_size(webvid):
    x = WebVidDataset(webvid, num_frames=2, size=(8, 12))[0]["pixel_values"]
    assert x.shape == (3, 2, 8, 12)


def test_clear_errors(webvid, tmp_path):
    ds = WebVidDataset(webvid, num_frames=4, fps=5, size=16)
    with pytest.raises(ValueError, match=r"b\.mp4.*too short"):
        ds[1]  # 6 frames at 10 fps cannot give 4 frames at 5 fps (needs 7)
    with pytest.raises(ValueError, match=r"broken\.mp4"):
        ds[2]
    with pytest.raises(ValueError, match=r"none\.mp4.*does not exist"):
        ds[3]
    write_csv(tmp_path / "nocap.csv", [{"videoid": "1", "path": "videos/a.mp4"}], columns=("videoid", "path"))
    with pytest.raises(ValueError, match=r"caption_column.*'name'.*nocap\.csv"):
        WebVidDataset(tmp_path / "nocap.csv")
    with pytest.raises(ValueError, match=r"path_column.*'file'"):
        WebVidDataset(webvid, path_column="file")
    with pytest.raises(ValueError, match="fps"):
        WebVidDataset(webvid, fps=0)
    with pytest.raises(ValueError, match="clip_start"):
        WebVidDataset(webvid, clip_start="middle")
    with pytest.raises(ValueError, match="csv_path"):
        WebVidDataset(tmp_path / "nothing.csv")


def test_works_with_a_dataloader(webvid, tmp_path):
    write_csv(tmp_path / "ok.csv", [{"videoid": str(i), "name": f"clip {i}", "path": "videos/a.mp4"} for i in range(3)])
    loader = torch.utils.data.DataLoader(WebVidDataset(tmp_path / "ok.csv", num_frames=2, size=8), batch_size=2)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (2, 3, 2, 8, 8)
    assert batch["caption"] == ["clip 0", "clip 1"]
