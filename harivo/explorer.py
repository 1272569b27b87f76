"""What the ablation explorer (`app.py`) does, without any UI: finding and caching models, turning the UI's
values into a `GenerationSettings` run, rendering the views of one result (attention maps, Fig. 6 slice
stacks, CFG schedule, MG diagnostics), the download bundle (write and load back), A-vs-B and ablation-grid
runs (Table 1 variants + MG, or α ∈ {0, 40, 150} as Fig. 6c).

Usable from a notebook:

    reg = ModelRegistry()                       # checkpoints/ (or $HARIVO_CHECKPOINTS); tiny random fallback
    res = run_generation(reg, RunRequest(prompt="a red circle is moving up on a gray background"))
    views = render_views(res)                   # dict of uint8 images
    python -m harivo.explorer ablation --mode alpha --out assets/ablation   # PNG + PDF figure

Per-user state is a `RunResult` (held by the app in `gr.State`); nothing here is module-level mutable state
except the model cache, which is read-only after loading and guarded by locks.
"""

from __future__ import annotations

import dataclasses
import json
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

from . import media, viz
from .attention import AttentionRecord, layer_resolution
from .config import TABLE1, table1_label
from .data.checker import flicker_score
from .data.shapes import COLOURS, HELD_OUT, SHAPES, all_specs, world_vocabulary
from .generate import save_output
from .pipeline import DEFAULT_CHECKPOINTS, VARIANTS, GenerationSettings, HarivoPipeline
from .sampling import CFGSchedule, MGConfig
from .tiny import TINY_WORDS, save_tiny_checkpoint, scheduler_config

CHECKPOINTS_ENV = "HARIVO_CHECKPOINTS"  # overrides the checkpoints folder the app scans
TINY_KEY = "tiny"
TINY_LABEL = "tiny random model (untrained — for development)"
VARIANT_LABELS = {v: f"{table1_label(v)} — {v}" for v in ("full", "mapping", "trs-dc", "baseline")}  # dropdown
TABLE1_ROWS = tuple((table1_label(v), v.removesuffix("+mg"), v.endswith("+mg")) for v in TABLE1)  # ablation grid
ALPHAS = (0.0, 40.0, 150.0)  # Fig. 6c
ABLATION_MODES = {"variants": "Table 1 variants + MG", "alpha": "MG α ∈ {0, 40, 150} (Fig. 6c)"}
BUNDLE_FILES = ("video.mp4", "video.gif", "frames.npy", "config.json", "attention.npz")
MAX_BUNDLE_BYTES = 512 * 2**20  # refuse bundles that unpack to more than this
MEAN_SOURCE, MEAN_STEP = "mean of all resolutions", "mean over steps"
AUTO_TOKEN = "the object's noun"  # token choice before the first run: resolve_view picks the prompt's shape word


# ------------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelEntry:
    key: str  # "full", "mapping", … , "ckpt:<folder>", or "tiny"
    label: str  # what the model dropdown shows
    path: Path | None  # HARIVO checkpoint folder (None for the tiny model until built)
    trained: bool


MINIATURE_NOTE = (  # true of the shipped models; drop it once `verb_probe` shows a swap gap well above 0
    "ℹ️ The shapes-world models are miniatures trained on 2 CPU cores. They keep one object and one background "
    "through a video, but have **not learned the prompted direction of motion**: objects hold still or drift in a "
    "chance direction, whatever the verb says. docs/results.md (\"Why the videos do not follow the verb\") "
    "measures why; `python -m harivo.verb_probe` tells when a longer run has learned it."
)


def miniature_note(registry: ModelRegistry) -> str | None:
    """The app's note on what the shipped shapes-world models cannot do yet; None when none of them is offered."""
    return MINIATURE_NOTE if any(e.key in VARIANT_LABELS for e in registry.entries) else None


def is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "harivo.safetensors").is_file() and (path / "motion_adapter").is_dir()


def training_note(path: Path) -> str:
    """' (unfinished: 400/1500 training steps)' for a checkpoint exported before its run ended, else ''."""
    try:
        info = json.loads((path / "training.json").read_text())
    except (OSError, ValueError):
        return ""
    if info.get("finished", True):
        return ""
    return f" (unfinished: {info.get('steps', '?')}/{info.get('max_steps', '?')} training steps)"


class ModelRegistry:
    """The models the app offers, each loaded once (one `HarivoPipeline` per checkpoint, thread-safe).

    Lists the trained variants under `checkpoints` (`harivo-shapes-<variant>`), then any other HARIVO
    checkpoint folder there (e.g. a real-scale SD1.5 + AnimateDiff one). When none exists it offers a tiny
    random model, built into `cache_dir`, clearly labelled as untrained.
    """

    def __init__(self, checkpoints: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 tiny_frames: int = 16):
        self.checkpoints = Path(checkpoints or os.environ.get(CHECKPOINTS_ENV) or DEFAULT_CHECKPOINTS)
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "harivo-explorer-cache")
        self.tiny_frames = tiny_frames
        self._pipes: dict[str, HarivoPipeline] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.entries = self.scan()

    def scan(self) -> list[ModelEntry]:
        entries = []
        for v in ("full", "mapping", "trs-dc", "baseline"):
            path = self.checkpoints / f"harivo-shapes-{v}"
            if is_checkpoint(path):
                entries.append(ModelEntry(v, VARIANT_LABELS[v] + training_note(path), path, True))
        if self.checkpoints.is_dir():
            for path in sorted(p for p in self.checkpoints.iterdir() if p.is_dir()):
                if not path.name.startswith("harivo-shapes-") and is_checkpoint(path):
                    entries.append(ModelEntry(f"ckpt:{path.name}", f"checkpoint: {path.name}", path, True))
        if not entries:
            entries.append(ModelEntry(TINY_KEY, TINY_LABEL, None, False))
        return entries

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    @property
    def default_key(self) -> str:
        return self.entries[0].key

    @property
    def untrained_only(self) -> bool:
        return not any(e.trained for e in self.entries)

    def entry(self, key: str) -> ModelEntry:
        for e in self.entries:
            if e.key == key:
                return e
        raise ValueError(f"model: expected one of {self.keys}, got {key!r}")

    def get(self, key: str) -> HarivoPipeline:
        entry = self.entry(key)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # a second user asking for the same model waits for the first load instead of loading twice
            if key not in self._pipes:
                path = entry.path if entry.path is not None else self._build_tiny()
                self._pipes[key] = HarivoPipeline.from_checkpoint(path)
            return self._pipes[key]

    def _build_tiny(self) -> Path:
        root = self.cache_dir / f"tiny-random-{self.tiny_frames}f"
        if not is_checkpoint(root / "harivo"):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=self.cache_dir))
            save_tiny_checkpoint(tmp, num_frames=self.tiny_frames)
            try:
                os.replace(tmp, root)  # atomic: another process may have built it meanwhile
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        return root / "harivo"

    def capabilities(self, key: str) -> dict:
        """What the UI must enable/disable for this model: components present, frame range, frame size."""
        pipe = self.get(key)
        model = pipe.model
        size = model.unet.config.sample_size * pipe.vae_scale_factor
        return {
            "mapping": model.mapping_network is not None, "frame_tokens": model.frame_token_generator is not None,
            "max_frames": model.max_frames, "trained_frames": model.config.num_frames, "width": size, "height": size,
            "known_words": known_words(pipe.tokenizer), "trained": self.entry(key).trained,
        }


def known_words(tokenizer) -> list[str] | None:
    """Words a closed-vocabulary (embedded shapes-world) tokenizer knows as one token; None for open vocabularies."""
    if len(tokenizer) > 10_000:
        return None  # a real CLIP tokenizer: every word is fine
    candidates = sorted(set(world_vocabulary()) | set(TINY_WORDS))
    return [w for w in candidates if tokenizer.tokenize(w) == [f"{w}</w>"]]


def unknown_words(prompt: str, known: list[str] | None) -> list[str]:
    if known is None:
        return []
    from .tokenizer import unknown_words as _unknown

    return _unknown(prompt, known)


EXAMPLE_MAX_CHARS = 60  # Gradio's example buttons cut longer text with "..."


def example_prompts(n_seen: int = 6, n_held_out: int = 4) -> tuple[list[str], list[str]]:
    """A few prompts seen in training and a few held-out (colour, shape, motion) combinations, each short enough
    to show whole on an example button (the held-out ones on their shortest background)."""
    fits = [s for s in all_specs("train") if len(s.caption) <= EXAMPLE_MAX_CHARS]
    motions = ("moving left to right", "moving right to left", "moving up", "getting closer", "spinning",
               "standing still", "moving down", "moving away")
    seen = []  # one verb each, colours and shapes taking turns
    for i, motion in enumerate(motions[:n_seen]):
        pool = [s for s in fits if s.motion == motion]
        best = [s for s in pool if s.colour == list(COLOURS)[i % len(COLOURS)] and s.shape == SHAPES[i % len(SHAPES)]]
        seen.append(next((s for s in best if s.background == ("blue", "gray", "white", "black")[i % 4]),
                         best[0] if best else pool[0]))
    by_combo: dict = {}
    for s in all_specs("held_out"):
        key = (s.colour, s.shape, s.motion)
        if key not in by_combo or len(s.caption) < len(by_combo[key].caption):
            by_combo[key] = s
    held_out = [by_combo[c].caption for c in HELD_OUT if c in by_combo and
                len(by_combo[c].caption) <= EXAMPLE_MAX_CHARS][:n_held_out]
    return [s.caption for s in seen], held_out


# ------------------------------------------------------------------------------------------------ requests
@dataclass
class RunRequest:
    """The UI's values for one generation (everything a user can set)."""

    prompt: str = "a red circle is moving left to right on a gray background"
    model: str = ""  # ModelRegistry key; "" = the registry's default
    negative_prompt: str = ""
    seed: int = 0
    num_frames: int = 16
    num_inference_steps: int = 25
    fps: int = 8
    cfg_high: float = 12.5
    cfg_switch: float = 0.7
    cfg_low: float = 7.5
    use_mg: bool = True
    mg_alpha: float = 40.0
    mg_symmetric: bool = False
    use_mapping: bool = True
    use_frame_tokens: bool = True
    use_motion: bool = True

    def settings(self, capture_attention: bool = True, keep_per_step: bool = True) -> GenerationSettings:
        return GenerationSettings(
            prompt=self.prompt, negative_prompt=self.negative_prompt or "", seed=int(self.seed),
            num_frames=int(self.num_frames), num_inference_steps=int(self.num_inference_steps),
            cfg=CFGSchedule(float(self.cfg_high), float(self.cfg_low), float(self.cfg_switch)),
            mg=MGConfig(alpha=float(self.mg_alpha), symmetric=bool(self.mg_symmetric), enabled=bool(self.use_mg)),
            use_mapping=bool(self.use_mapping), use_frame_tokens=bool(self.use_frame_tokens),
            use_motion=bool(self.use_motion), capture_attention=capture_attention, keep_attention_per_step=keep_per_step,
        )


def as_int(name: str, value) -> int:
    """UI numbers arrive as floats (gr.Number) or strings (API); accept whole numbers only."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
    if not np.isfinite(f) or f != int(f):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(f)


def check_request(registry: ModelRegistry, req: RunRequest) -> tuple[HarivoPipeline, GenerationSettings, list[str]]:
    """ValueError (naming the argument) for anything the model cannot do; warnings for what it can but should not."""
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        raise ValueError("prompt: expected a non-empty text prompt (try one of the examples)")
    req.model = req.model or registry.default_key
    req.seed, req.num_frames = as_int("seed", req.seed), as_int("num_frames", req.num_frames)
    req.num_inference_steps, req.fps = as_int("num_inference_steps", req.num_inference_steps), as_int("fps", req.fps)
    if not 1 <= req.fps <= 60:
        raise ValueError(f"fps: expected a value in [1, 60], got {req.fps}")
    if not 0 <= float(req.mg_alpha) <= 300:
        raise ValueError(f"mg_alpha: expected a value in [0, 300], got {req.mg_alpha}")
    pipe = registry.get(req.model)
    caps = registry.capabilities(req.model)
    warnings = []
    for name, text in (("prompt", req.prompt), ("negative prompt", req.negative_prompt or "")):
        unknown = unknown_words(text, caps["known_words"])
        if unknown:
            warnings.append(f"The {name} has words this model does not know: {', '.join(unknown)}. "
                            f"It knows: {', '.join(caps['known_words'])}.")
    settings = req.settings(keep_per_step=caps["width"] <= 128)  # per-step maps only where they stay small
    pipe.check(settings)
    if req.use_mapping and not caps["mapping"]:
        warnings.append("This model has no mapping network; the mapping toggle is ignored.")
    if req.use_frame_tokens and not caps["frame_tokens"]:
        warnings.append("This model has no frame-wise tokens; the frame-token toggle is ignored.")
    return pipe, settings, warnings


# ------------------------------------------------------------------------------------------------ runs
@dataclass
class RunResult:
    """One generated (or loaded) video with everything the views need; the app keeps it in gr.State."""

    frames: np.ndarray  # (f, h, w, 3) float32 in [0, 1]
    attention: AttentionRecord | None
    steps: list[dict]
    settings: dict
    model: str
    model_label: str
    fps: int = 8
    notes: list[str] = field(default_factory=list)  # shown under the video (includes the warnings)
    flicker: float = float("nan")
    elapsed: float = 0.0
    cancelled: bool = False
    workdir: Path | None = None
    video: Path | None = None
    bundle: Path | None = None
    warnings: list[str] = field(default_factory=list)  # what the app shows as gr.Warning toasts


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
    `cancel.set()` stops sampling after the current step (the partly denoised video is returned, marked)."""
    pipe, settings, warnings = check_request(registry, dataclasses.replace(req))
    req = dataclasses.replace(req, model=req.model or registry.default_key)
    settings.capture_attention = capture_attention
    start = time.perf_counter()
    with tqdm(total=settings.num_inference_steps, desc=desc, unit="step", leave=False) as bar:
        out = pipe(settings, callback=lambda info: bar.update(1), cancel=cancel.is_set if cancel is not None else None)
    elapsed = time.perf_counter() - start
    cancelled = bool(out.cancelled)
    notes = list(warnings) + list(out.notes)
    if cancelled:
        notes.append("Cancelled: the video shows the partly denoised latents.")
    entry = registry.entry(req.model)
    if not entry.trained:
        notes.append("Untrained tiny random model: the video is noise by design (development only).")
    result = RunResult(out.frames, out.attention, out.steps, out.settings, req.model, entry.label, req.fps, notes,
                       _flicker(out.frames), elapsed, cancelled, warnings=list(warnings))
    result.workdir = new_workdir()
    if write_bundle:
        write_bundle_files(result, out)
    else:
        result.video = media.write_mp4(result.frames, result.workdir / "video.mp4", fps=result.fps)
    return result


def _flicker(frames: np.ndarray) -> float:
    try:
        return float(flicker_score(frames))
    except (ValueError, RuntimeError):  # frames the checker cannot read (e.g. pure noise of the tiny model)
        return float("nan")


# ------------------------------------------------------------------------------------------------ bundle
def write_bundle_files(result: RunResult, out) -> Path:
    """video.mp4, video.gif, frames.npy, config.json, attention.npz in the run folder, and all of them in a zip."""
    d = result.workdir
    extra = {"model": result.model, "model_label": result.model_label, "flicker": result.flicker,
             "cancelled": result.cancelled, "elapsed_s": result.elapsed}
    save_output(out, d, fps=result.fps, extra=extra)
    media.write_gif(result.frames, d / "video.gif", fps=result.fps)
    result.video = d / "video.mp4"
    result.bundle = d / f"harivo-{_slug(result.settings.get('prompt', 'video'))}-seed{result.settings.get('seed', 0)}.zip"
    with zipfile.ZipFile(result.bundle, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in BUNDLE_FILES:
            if (d / name).exists():
                z.write(d / name, arcname=name)
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
    try:
        frames = np.load(workdir / "frames.npy", allow_pickle=False).astype(np.float32)
        config = json.loads((workdir / "config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise ValueError(f"bundle: cannot read frames.npy/config.json ({e})") from None
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"bundle: frames.npy must hold (f, h, w, 3) frames, got {frames.shape}")
    attention = read_attention(workdir / "attention.npz") if (workdir / "attention.npz").exists() else None
    fps = int(config.get("fps", 8))
    video = workdir / "video.mp4"
    if not video.exists():
        media.write_mp4(frames, video, fps=fps)
    notes = [f"Loaded from {path.name}."] + list(config.get("notes", []))
    return RunResult(frames, attention, list(config.get("steps", [])), dict(config.get("settings", {})),
                     str(config.get("model", "")), str(config.get("model_label", "loaded bundle")), fps, notes,
                     _flicker(frames), float(config.get("elapsed_s", 0.0)), bool(config.get("cancelled", False)),
                     workdir, video, path)


def read_attention(path: Path) -> AttentionRecord:
    """attention.npz (AttentionRecord.to_arrays) → AttentionRecord; per-layer keys stay short ("up1.0")."""
    with np.load(path, allow_pickle=False) as z:
        rec = AttentionRecord(tokens=[str(t) for t in z["tokens"]], token_kinds=[str(k) for k in z["token_kinds"]],
                              timesteps=[int(t) for t in z["timesteps"]])
        for key in z.files:
            if key.startswith("per_step_"):
                rec.per_step[key[len("per_step_"):]] = torch.from_numpy(z[key])
            elif key.startswith("per_layer_"):
                rec.per_layer[key[len("per_layer_"):]] = torch.from_numpy(z[key])
    return rec


# ------------------------------------------------------------------------------------------------ views
def token_choices(rec: AttentionRecord | None) -> list[str]:
    """Unique labels for the recorded tokens (a repeated word gets '#2')."""
    if rec is None:
        return []
    out, seen = [], {}
    for t in rec.tokens:
        seen[t] = seen.get(t, 0) + 1
        out.append(t if seen[t] == 1 else f"{t} #{seen[t]}")
    return out


def default_token(rec: AttentionRecord | None, prompt: str = "") -> str | None:
    """The object's noun when there is one (what the maps should highlight), else the first frame token."""
    choices = token_choices(rec)
    for word in ("circle", "square", "triangle", "star", *str(prompt).split()[2:3]):
        if word in choices:
            return word
    frame = [c for c, k in zip(choices, rec.token_kinds) if k == "frame"] if rec else []
    return frame[0] if frame else (choices[1] if len(choices) > 1 else (choices[0] if choices else None))


def source_choices(rec: AttentionRecord | None) -> list[str]:
    if rec is None:
        return [MEAN_SOURCE]
    return [MEAN_SOURCE] + [f"resolution {r}" for r in rec.resolutions] + [f"layer {layer_label(n)}" for n in rec.per_layer]


def layer_label(name: str) -> str:
    return layer_resolution(name) if name.endswith(".processor") else name


def step_choices(rec: AttentionRecord | None) -> list[str]:
    if rec is None or not rec.per_step or next(iter(rec.per_step.values())).shape[0] != len(rec.timesteps):
        return [MEAN_STEP]  # per-step maps were not kept
    return [MEAN_STEP] + [f"step {i + 1} (t={t})" for i, t in enumerate(rec.timesteps)]


def attention_maps(rec: AttentionRecord, source: str | None = None, step: str | None = None) -> np.ndarray:
    """(f, h, w, n) maps for a source ("mean of all resolutions", "resolution 8x8", "layer up1.0") and a step
    ("mean over steps", "step 3 (t=841)"); layers are always the mean over steps."""
    source = source or MEAN_SOURCE
    step_index = None
    if step and step != MEAN_STEP:
        m = re.match(r"step (\d+)", step)
        if m is None or step not in step_choices(rec):
            raise ValueError(f"step: expected one of {step_choices(rec)[:3]}…, got {step!r}")
        step_index = int(m.group(1)) - 1
    if source.startswith("layer "):
        wanted = source[len("layer "):]
        for name, maps in rec.per_layer.items():
            if layer_label(name) == wanted:
                return maps[0].float().numpy()
        raise ValueError(f"attention_source: expected one of {source_choices(rec)}, got {source!r}")
    resolution = None
    if source != MEAN_SOURCE:
        if not source.startswith("resolution ") or source[len("resolution "):] not in rec.resolutions:
            raise ValueError(f"attention_source: expected one of {source_choices(rec)}, got {source!r}")
        resolution = source[len("resolution "):]
    return rec.maps(resolution=resolution, step=step_index)[0].float().numpy()


def default_columns(width: int) -> tuple[int, int]:
    """Two columns in the middle third, as in Fig. 6."""
    return int(round(0.35 * (width - 1))), int(round(0.65 * (width - 1)))


@dataclass
class ViewOptions:
    """How the user wants to look at a result (changing these never re-runs the model)."""

    token: str | None = None  # token label (token_choices); None = the object's noun
    source: str | None = None  # source_choices: mean of all resolutions / one resolution / one layer
    step: str | None = None  # step_choices: mean over steps / one step
    rows: str = "tokens"  # attention grid: one row per token or per frame
    x_red: int | None = None  # Fig. 6 columns (None = default_columns)
    x_green: int | None = None


def resolve_view(result: RunResult, opts: ViewOptions | None = None) -> ViewOptions:
    """`opts` with every choice made valid for this result (a new prompt may have other tokens, a loaded
    bundle other steps): unknown choices fall back to the defaults."""
    o = dataclasses.replace(opts) if opts is not None else ViewOptions()
    rec = result.attention
    if o.token not in token_choices(rec):
        o.token = default_token(rec, result.settings.get("prompt", ""))
    if o.source not in source_choices(rec):
        o.source = MEAN_SOURCE
    if o.step not in step_choices(rec) or (o.source or "").startswith("layer "):
        o.step = MEAN_STEP  # per-layer maps are already the mean over steps
    if o.rows not in ("tokens", "frames"):
        o.rows = "tokens"
    w = result.frames.shape[2]
    d_red, d_green = default_columns(w)
    o.x_red = d_red if o.x_red is None else int(np.clip(as_int("x_red", o.x_red), 0, w - 1))
    o.x_green = d_green if o.x_green is None else int(np.clip(as_int("x_green", o.x_green), 0, w - 1))
    return o


def render_views(result: RunResult, opts: ViewOptions | None = None) -> dict:
    """All pictures of one result (frame strip, attention overlay + grid, slice stack, MG diagnostics) and,
    under "view", the ViewOptions they were drawn with."""
    o = resolve_view(result, opts)
    views = {"view": o, "strip": viz.frame_strip(result.frames)}
    views.update(render_attention(result, o.token, o.source, o.step, o.rows))
    views["slices"] = render_slices(result, o.x_red, o.x_green)
    alpha = result.settings.get("mg", {}).get("alpha") if result.settings.get("mg", {}).get("enabled", True) else None
    views["diagnostics"] = viz.figure_to_array(viz.diagnostics_figure(result.steps, alpha))
    return views


def run_and_render(registry: ModelRegistry, req: RunRequest, opts: ViewOptions | None = None,
                   cancel: threading.Event | None = None) -> tuple[RunResult, dict[str, np.ndarray | None]]:
    """The app's Generate button: one run, then every view of it."""
    result = run_generation(registry, req, cancel)
    return result, render_views(result, opts)


def render_attention(result: RunResult, token: str | None = None, source: str | None = None, step: str | None = None,
                     rows: str = "tokens") -> dict[str, np.ndarray | None]:
    rec = result.attention
    if rec is None or not rec.per_step:
        return {"overlay": None, "grid": None}
    choices = token_choices(rec)
    token = token if token in choices else default_token(rec, result.settings.get("prompt", ""))
    if (source or "").startswith("layer "):
        step = MEAN_STEP  # per-layer maps are kept as the mean over steps only
    maps = attention_maps(rec, source, step)  # (f, h, w, n)
    k = choices.index(token)
    overlay = viz.frame_strip(viz.heat_overlay(result.frames, maps[..., k]))
    grid = viz.attention_grid(result.frames, maps, choices, rec.token_kinds, rows=rows,
                              title=f"{source or MEAN_SOURCE} · {step or MEAN_STEP} · frame tokens in blue")
    return {"overlay": overlay, "grid": viz.figure_to_array(grid)}


def render_slices(result: RunResult, x_red: int | None = None, x_green: int | None = None) -> np.ndarray:
    w = result.frames.shape[2]
    d_red, d_green = default_columns(w)
    x_red = d_red if x_red is None else int(np.clip(as_int("x_red", x_red), 0, w - 1))
    x_green = d_green if x_green is None else int(np.clip(as_int("x_green", x_green), 0, w - 1))
    return viz.slice_stack(result.frames, x_red, x_green)


def schedule_timesteps(num_steps: int, config: dict | None = None) -> list[int]:
    """The DDIM timesteps of `num_steps` steps (SD1.5 scheduler settings unless a config is given)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(**(config or scheduler_config()))
    scheduler.set_timesteps(max(1, int(num_steps)))
    return [int(t) for t in scheduler.timesteps]


def render_cfg_schedule(cfg_high: float, cfg_switch: float, cfg_low: float, num_steps: int) -> np.ndarray:
    cfg = CFGSchedule(float(cfg_high), float(cfg_low), float(cfg_switch))
    timesteps = schedule_timesteps(num_steps)
    return viz.figure_to_array(viz.cfg_schedule_figure(cfg.scales(timesteps), timesteps, cfg.switch))


def summary(result: RunResult) -> str:
    """Markdown lines under the video: model, time, flicker, notes."""
    s = result.settings
    flick = "n/a (no single object found)" if not np.isfinite(result.flicker) else f"{result.flicker:.4f}"
    mg = s.get("mg", {})
    mg_text = f"MG α={mg.get('alpha', 0):g}" + (" (symmetric)" if mg.get("symmetric") else "") \
        if mg.get("enabled") and mg.get("alpha", 0) > 0 else "MG off"
    parts = [f"mapping {'on' if s.get('use_mapping') else 'off'}", f"frame tokens {'on' if s.get('use_frame_tokens') else 'off'}",
             f"temporal layers {'on' if s.get('use_motion', True) else 'off'}", mg_text]
    lines = [f"**{result.model_label}** · seed {s.get('seed')} · {result.frames.shape[0]} frames · "
             f"{len(result.steps)} steps · {result.elapsed:.1f} s", " · ".join(parts),
             f"flicker score: {flick} (0 = steady)"]
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ compare, ablation
def run_compare(registry: ModelRegistry, a: RunRequest, b: RunRequest, cancel: threading.Event | None = None) -> list[RunResult]:
    """A and B on the same seed (the caller sets it), one after the other, without attention capture."""
    return [run_generation(registry, r, cancel, capture_attention=False, write_bundle=False, desc=f"sampling {n}")
            for n, r in (("A", a), ("B", b))]


def ablation_plan(registry: ModelRegistry, mode: str, req: RunRequest) -> list[tuple[str, RunRequest]]:
    """Rows of the ablation grid. "variants": Table 1 (trained variants, then full + MG) when ≥ 2 trained
    variants exist, else the components switched on one by one on the chosen model. "alpha": Fig. 6c."""
    if mode not in ABLATION_MODES:
        raise ValueError(f"mode: expected one of {list(ABLATION_MODES)}, got {mode!r}")
    base = dataclasses.replace(req, model=req.model or registry.default_key)
    if mode == "alpha":
        return [(f"α = {a:g}", dataclasses.replace(base, use_mg=a > 0, mg_alpha=a)) for a in ALPHAS]
    present = [v for v in VARIANTS if v in registry.keys]
    if len(present) >= 2:
        return [(label, dataclasses.replace(base, model=v, use_mg=mg, use_mapping=True, use_frame_tokens=True))
                for label, v, mg in TABLE1_ROWS if v in present]
    off = dict(use_mapping=False, use_frame_tokens=False, use_mg=False)
    return [
        ("no mapping, no frame tokens", dataclasses.replace(base, **off)),
        ("+ mapping network", dataclasses.replace(base, **{**off, "use_mapping": True})),
        ("+ frame-wise tokens", dataclasses.replace(base, **{**off, "use_mapping": True, "use_frame_tokens": True})),
        (f"+ MG (α = {base.mg_alpha:g})", dataclasses.replace(base, use_mapping=True, use_frame_tokens=True, use_mg=True)),
    ]


@dataclass
class AblationResult:
    image: np.ndarray  # preview of the figure
    png: Path
    pdf: Path
    rows: list[tuple[str, RunResult]]


def run_ablation(registry: ModelRegistry, mode: str, req: RunRequest, x_red: int | None = None,
                 x_green: int | None = None, cancel: threading.Event | None = None,
                 out_stem: str | os.PathLike | None = None) -> AblationResult:
    """Every row on one seed, then one figure (frames + Fig. 6 slice stack per row) as PNG and PDF."""
    rows = []
    for label, r in ablation_plan(registry, mode, req):
        if cancel is not None and cancel.is_set():
            break
        rows.append((label, run_generation(registry, r, cancel, capture_attention=False, write_bundle=False,
                                           desc=f"ablation: {label}")))
    if not rows:
        raise ValueError("ablation: cancelled before the first row")
    w = rows[0][1].frames.shape[2]
    d_red, d_green = default_columns(w)
    x_red = d_red if x_red is None else int(np.clip(as_int("x_red", x_red), 0, w - 1))
    x_green = d_green if x_green is None else int(np.clip(as_int("x_green", x_green), 0, w - 1))
    first = rows[0][1]
    one_model = len({r.model for _, r in rows}) == 1
    what = ABLATION_MODES[mode] if mode == "alpha" or not one_model else "components one by one + MG"
    models = first.model_label if one_model else "one trained checkpoint per row"
    title = f"“{first.settings['prompt']}”, seed {first.settings['seed']} — {what} ({models})"
    fig = viz.ablation_figure([(label, res.frames) for label, res in rows], x_red, x_green, title=title)
    stem = Path(out_stem) if out_stem else first.workdir / f"ablation-{mode}"
    png, pdf = viz.save_figure(fig, stem)
    from PIL import Image

    return AblationResult(np.asarray(Image.open(png).convert("RGB")), png, pdf, rows)


def main(argv: list[str] | None = None) -> int:
    """`python -m harivo.explorer ablation --mode alpha --out assets/ablation`: the ablation figure, no UI."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m harivo.explorer")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ablation", help="export the ablation grid figure (PNG + PDF)")
    a.add_argument("--mode", choices=list(ABLATION_MODES), default="variants")
    a.add_argument("--prompt", default=RunRequest.prompt)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--frames", type=int, default=16)
    a.add_argument("--steps", type=int, default=25)
    a.add_argument("--model", default="", help="registry key (default: the first available)")
    a.add_argument("--checkpoints", default=None, help=f"checkpoints folder (default: ${CHECKPOINTS_ENV} or checkpoints/)")
    a.add_argument("--out", required=True, help="output stem: writes STEM.png and STEM.pdf")
    args = p.parse_args(argv)
    registry = ModelRegistry(args.checkpoints)
    req = RunRequest(prompt=args.prompt, seed=args.seed, num_frames=args.frames, num_inference_steps=args.steps, model=args.model)
    res = run_ablation(registry, args.mode, req, out_stem=args.out)
    print(f"wrote {res.png} and {res.pdf} ({len(res.rows)} rows, models: {', '.join(sorted({r.model for _, r in res.rows}))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
