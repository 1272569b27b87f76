"""Running one generation for the app: `run_generation` (progress through tqdm, cancel per session) and its
`RunResult`, the per-user state the app keeps in `gr.State`; the download bundle (the run's files of
`harivo.outputs` + a GIF, zipped) and loading one back."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import media
from ..attention import AttentionRecord
from ..data.checker import DEFAULT_THRESHOLDS, Thresholds, flicker_score, world_thresholds
from ..outputs import RUN_FILES, VideoOptions, read_output, save_output
from .cost import Measured
from .models import ModelRegistry
from .request import RunRequest, check_request


@dataclass
class RunResult:
    """One generated (or loaded) video with everything the views need; the app keeps it in gr.State."""

    frames: np.ndarray  # (f, h, w, 3) float32 in [0, 1]
    attention: AttentionRecord | None
    steps: list[dict]
    settings: dict  # the settings in effect (GenerationSettings.to_dict, as recorded in config.json)
    model: str
    model_label: str
    fps: int = VideoOptions.fps
    notes: list[str] = field(default_factory=list)  # shown under the video (includes the warnings)
    flicker: float = float("nan")
    elapsed: float = 0.0
    cancelled: bool = False
    workdir: Path | None = None
    video: Path | None = None
    bundle: Path | None = None
    warnings: list[str] = field(default_factory=list)  # what the app shows as gr.Warning toasts
    threads: int = 0  # torch CPU threads of the run (0: not recorded); the last bits of the frames depend on it


class CancelFlags:
    """One threading.Event per session: the app's Cancel button sets it, the sampler's callback reads it."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        with self._lock:
            event = self._events[session] = threading.Event()
            return event

    def cancel(self, session: str) -> bool:
        with self._lock:
            event = self._events.get(session)
        if event is not None:
            event.set()
        return event is not None

    def finish(self, session: str, event: threading.Event) -> None:
        with self._lock:
            if self._events.get(session) is event:
                del self._events[session]


def new_workdir(root: Path | None = None, keep: int = 64) -> Path:
    """A fresh folder for one run's files; the oldest beyond `keep` are removed."""
    root = root or Path(tempfile.gettempdir()) / "harivo-explorer-runs"
    root.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for p in old[: max(0, len(old) - keep + 1)]:
        shutil.rmtree(p, ignore_errors=True)
    path = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def run_generation(registry: ModelRegistry, req: RunRequest, cancel: threading.Event | None = None,
                   capture_attention: bool = True, write_bundle: bool = True, desc: str = "sampling") -> RunResult:
    """Generate one video from UI values. Progress goes through tqdm (gr.Progress(track_tqdm=True) shows it);
    `cancel.set()` stops sampling after the current step (the partly denoised video is returned, marked).
    `write_bundle`: the run's files and the download zip (`write_bundle_files`), else the mp4 alone."""
    result, out = sample_result(registry, req, cancel, capture_attention, desc)
    if write_bundle:
        write_bundle_files(result, out)
    else:
        write_video(result)
    return result


def write_video(result: RunResult) -> Path:
    """The run's video.mp4 in its run folder (`result.video`)."""
    result.video = media.write_mp4(result.frames, result.workdir / "video.mp4", fps=result.fps)
    return result.video


def sample_result(registry: ModelRegistry, req: RunRequest, cancel: threading.Event | None = None,
                  capture_attention: bool = True, desc: str = "sampling") -> tuple[RunResult, object]:
    """`run_generation` before any file is written: the RunResult (its run folder made, empty) and the pipeline's
    `HarivoOutput`, which `write_bundle_files` writes."""
    req = dataclasses.replace(req)  # check_request fills in the model and whole numbers
    pipe, settings, warnings = check_request(registry, req)
    settings.capture_attention = capture_attention
    with registry.running(), tqdm(total=settings.num_inference_steps, desc=desc, unit="step", leave=False) as bar:
        used = [torch.get_num_threads()]

        def step(info) -> None:
            bar.update(1)
            registry.rebalance()  # another run may have started or ended: share the cores again
            used.append(torch.get_num_threads())

        start = time.perf_counter()
        out = pipe(settings, callback=step, cancel=cancel.is_set if cancel is not None else None)
        elapsed = time.perf_counter() - start
    if not out.cancelled:  # the page's next time estimate for this model
        height, width = out.frames.shape[1:3]
        registry.costs.record(req.model, Measured(elapsed, len(out.steps), len(out.frames), height, width))
    notes = [w for w in warnings if w not in out.notes] + list(out.notes)  # the model's notes are in both
    if len(set(used)) > 1:  # the frames' last bits depend on it (docs/performance.md)
        notes.append(f"CPU threads changed during the run ({' → '.join(map(str, dict.fromkeys(used)))}): another run "
                     "started or ended beside it.")
    if out.cancelled:
        notes.append("Cancelled: the video shows the partly denoised latents.")
    entry = registry.entry(req.model)
    if not entry.trained:
        notes.append("Untrained tiny random model: the video is noise by design (development only).")
    result = RunResult(out.frames, out.attention, out.steps, out.settings, req.model, entry.label, req.fps, notes,
                       flicker(out.frames, world_thresholds(pipe.world)), elapsed, bool(out.cancelled), warnings=list(warnings),
                       threads=used[0])
    result.workdir = new_workdir()
    return result, out


def flicker(frames: np.ndarray, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> float:
    """The checker's flicker score (read in the model's world: `checker.world_thresholds`), NaN for frames it
    cannot read (e.g. the tiny model's pure noise)."""
    try:
        return float(flicker_score(frames, thresholds))
    except (ValueError, RuntimeError):
        return float("nan")


# ------------------------------------------------------------------------------------------------ bundle
BUNDLE_FILES = (*RUN_FILES, "video.gif")
MAX_BUNDLE_BYTES = 512 * 2**20  # refuse bundles that unpack to more than this


def write_bundle_files(result: RunResult, out, video: bool = True) -> Path:
    """The run's files (`outputs.save_output`) and video.gif in the run folder, and all of them in a zip.
    `video=False`: video.mp4 is already there (`run_in_stages` writes it first)."""
    d = result.workdir
    extra = {"model": result.model, "model_label": result.model_label, "flicker": result.flicker,
             "cancelled": result.cancelled, "elapsed_s": result.elapsed, "torch_threads": result.threads}
    save_output(out, d, fps=result.fps, extra=extra, video=video)
    media.write_gif(result.frames, d / "video.gif", fps=result.fps)
    result.video = d / "video.mp4"
    s = result.settings
    result.bundle = d / f"harivo-{_slug(s.get('prompt', 'video'))}-seed{s.get('seed', 0)}.zip"
    with zipfile.ZipFile(result.bundle, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in BUNDLE_FILES:
            if (d / name).exists():  # compressed formats are stored as they are (deflating them again gains nothing)
                z.write(d / name, arcname=name, compress_type=zipfile.ZIP_STORED if name.endswith(
                    (".npz", ".mp4", ".gif")) else zipfile.ZIP_DEFLATED)
    return result.bundle


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:48] or "video"


def load_bundle(path: str | os.PathLike) -> RunResult:
    """A bundle zip written by `write_bundle_files` (or the CLI's output folder, zipped) → RunResult."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"bundle: expected a .zip written by the explorer, got {path.name!r}")
    workdir = new_workdir()
    with zipfile.ZipFile(path) as z:
        names = {Path(n).name: n for n in z.namelist() if not n.endswith("/")}  # flat: ignore any folders in names
        if "frames.npy" not in names or "config.json" not in names:
            raise ValueError(f"bundle: expected frames.npy and config.json in the zip, found {sorted(names)}")
        if sum(i.file_size for i in z.infolist()) > MAX_BUNDLE_BYTES:
            raise ValueError(f"bundle: unpacks to more than {MAX_BUNDLE_BYTES // 2**20} MiB")
        for name in BUNDLE_FILES:
            if name in names:
                (workdir / name).write_bytes(z.read(names[name]))
    run = read_output(workdir, what="bundle")
    config = run.config
    fps = int(config.get("fps", VideoOptions.fps))
    video = workdir / "video.mp4"
    if not video.exists():
        media.write_mp4(run.frames, video, fps=fps)
    notes = [f"Loaded from {path.name}."] + list(config.get("notes", []))
    return RunResult(run.frames, run.attention, list(config.get("steps", [])), dict(config.get("settings", {})),
                     str(config.get("model", "")), str(config.get("model_label", "loaded bundle")), fps, notes,
                     flicker(run.frames), float(config.get("elapsed_s", 0.0)), bool(config.get("cancelled", False)),
                     workdir, video, path, threads=int(config.get("torch_threads", 0) or 0))
