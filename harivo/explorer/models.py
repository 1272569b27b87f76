"""The models the explorer offers: finding and caching HARIVO checkpoints (`ModelRegistry`), what each can do,
the words a closed-vocabulary model knows, and the example prompts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..config import table1_label
from ..data.shapes import COLOURS, HELD_OUT, SHAPES, all_specs, world_vocabulary
from ..pipeline import DEFAULT_CHECKPOINTS, VARIANTS, HarivoPipeline
from ..sources import ModelSpec, load, weights_bytes
from ..threads import ThreadChoice
from ..tiny import TINY_WORDS, save_tiny_checkpoint
from ..tokenizer import token_pieces
from ..tokenizer import unknown_words as _unknown_words
from .cost import CostMeter
from .specs import REAL_PREFIX, ModelList, models_from_env

CHECKPOINTS_ENV = "HARIVO_CHECKPOINTS"  # overrides the checkpoints folder the app scans
TINY_KEY = "tiny"
TINY_LABEL = "tiny random model (untrained — for development)"
VARIANT_PATTERN = "harivo-shapes-{variant}"  # the shipped Table 1 rows' folders (the plain world's)
VARIANT_LABELS = {v: f"{table1_label(v)} — {VARIANT_PATTERN.format(variant=v)}"  # dropdown, full first
                  for v in reversed(VARIANTS)}


@dataclass(frozen=True)
class ModelEntry:
    key: str  # "full", "mapping", … , "ckpt:<folder>", "real:<name>" or "tiny"
    label: str  # what the model dropdown shows
    path: Path | None  # HARIVO checkpoint folder (None for the tiny model until built, and for real models)
    trained: bool
    spec: ModelSpec | None = None  # a real model's sources, device and memory switches (harivo.sources)


# The model the app opens with when it is shipped: HARIVO's full model of the plain world (objects in their caption's
# colour, a strip on the edge a translation heads for), trained longest; otherwise the first Table 1 variant found.
FEATURED_CHECKPOINT = "harivo-shapes-full"
SHIPPED_EVAL = Path(__file__).resolve().parents[2] / "assets" / "eval" / "results.json"  # the shipped evaluation

# The note above the app's tabs while a shapes-world model is offered: one line, then the details, folded away.
MINIATURE_NOTE = ("Miniature HARIVO models, trained on a procedurally generated world of coloured shapes (not real "
                  "video) — what they can and cannot do yet")


def miniature_details(results: Path = SHIPPED_EVAL) -> tuple[str, ...]:
    """The note's details, one Markdown bullet each, the figures read from the shipped evaluation's JSON. The page
    cannot link to the repository's files (a Space serves the app, not the repository): files are named as code."""
    world = (f"**{VARIANT_LABELS['full']}** (HARIVO's full model, the default) and **{VARIANT_LABELS['baseline']}** "
             "(the AnimateDiff baseline, same recipe and steps) live in the *plain world*: one object in its caption's "
             "colour; a translation's frames show a coloured strip on the edge the object heads for, the world's only "
             "motion cue.")
    lines = [world]
    try:
        rows = json.loads(results.read_text())
        full, base = rows["variants"]["full+mg"], rows["variants"]["baseline"]
    except (OSError, ValueError, KeyError):
        full = base = None
    if full is not None:
        n, by = full["n"], full["by_motion"]
        turns = [f"{by[m]['action']:.0f}" for m in ("getting closer", "moving away", "spinning") if m in by]
        lines.append(f"On {n} videos of seen and held-out prompts (`assets/eval/`): HARIVO + MG AVG {full['avg']:.1f} "
                     f"(content {full['content']:.0f} %, prompted motion {full['action']:.0f} %, smooth "
                     f"{full['smooth']:.0f} %, FVD analog {full['fvd']:.1f}), the baseline AVG {base['avg']:.1f} "
                     f"(smooth {base['smooth']:.0f} %, FVD {base['fvd']:.1f}).")
        lines.append("**Still missing**: *getting closer*, *moving away* and *spinning* "
                     f"({'/'.join(turns)} % of their videos), and most videos are not smooth (the object waits, "
                     "then jumps; its size and colour waver).")
    lines.append("Table 1 row C (B + the mapping network) is still to train on the same recipe; the ablation grid "
                 "shows the shipped rows A, B and D. How each was trained and measured: `docs/results.md`.")
    return tuple(lines)


MINIATURE_DETAILS = miniature_details()


def miniature_note(registry: ModelRegistry) -> tuple[str, str] | None:
    """The app's note on what the shipped shapes-world models cannot do yet, as (one-line summary, Markdown
    bullets of the details); None when none of them is offered."""
    if not any(e.key in VARIANT_LABELS for e in registry.entries):
        return None
    return MINIATURE_NOTE, "\n".join(f"- {line}" for line in MINIATURE_DETAILS)


def is_checkpoint(path: Path) -> bool:
    return ((path / "config.json").is_file() and (path / "harivo.safetensors").is_file()
            and (path / "motion_adapter").is_dir())


def training_note(path: Path) -> str:
    """' (unfinished: 400/1500 training steps)' for a checkpoint exported before its run ended, else ''."""
    try:
        info = json.loads((path / "training.json").read_text())
    except (OSError, ValueError):
        return ""
    if info.get("finished", True):
        return ""
    total = info["max_steps"] + info.get("verb_phase_steps", 0) if "max_steps" in info else "?"
    return f" (unfinished: {info.get('steps', '?')}/{total} training steps)"


class ModelRegistry:
    """The models the app offers, each loaded once (one `HarivoPipeline` per model, thread-safe, loaded when first
    asked for).

    Lists the trained variants under `checkpoints` (`VARIANT_PATTERN`), then any other HARIVO checkpoint folder
    there, then the real models of `models` (`specs.ModelList`: `python app.py`'s flags and YAML list; default:
    `$HARIVO_MODELS`), keyed "real:<name>". When none exists it offers a tiny random model, built into
    `cache_dir`, clearly labelled as untrained. `threads`: how many torch threads each run gets (the app's
    `threads.ThreadChoice`: the cores the machine's load leaves); None leaves torch's setting alone.
    """

    def __init__(self, checkpoints: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 tiny_frames: int = 16, models: ModelList | None = None, threads: ThreadChoice | None = None):
        self.checkpoints = Path(checkpoints or os.environ.get(CHECKPOINTS_ENV) or DEFAULT_CHECKPOINTS)
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "harivo-explorer-cache")
        self.tiny_frames = tiny_frames
        self.models = models if models is not None else models_from_env()
        self.costs = CostMeter()  # the last run's time per model: the page's time estimate
        self.threads = threads
        self._runs, self._runs_lock = 0, threading.Lock()  # runs going on (they share the CPU threads)
        self._pipes: dict[str, HarivoPipeline] = {}
        self._caps: dict[str, dict] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.entries = self.scan()
        self._default = self._chosen_default(self.models.default)

    def scan(self) -> list[ModelEntry]:
        entries = self._embedded() if self.models.embedded else []
        entries += [ModelEntry(REAL_PREFIX + s.name, f"{s.name} — {s.describe()}", None, True, s)
                    for s in self.models.specs]
        if not entries:
            entries.append(ModelEntry(TINY_KEY, TINY_LABEL, None, False))
        return entries

    def _embedded(self) -> list[ModelEntry]:
        entries = []
        for v, label in VARIANT_LABELS.items():
            path = self.checkpoints / VARIANT_PATTERN.format(variant=v)
            if is_checkpoint(path):
                entries.append(ModelEntry(v, label + training_note(path), path, True))
        if self.checkpoints.is_dir():
            for path in sorted(p for p in self.checkpoints.iterdir() if p.is_dir()):
                if path.name not in {VARIANT_PATTERN.format(variant=v) for v in VARIANTS} and is_checkpoint(path):
                    entries.append(ModelEntry(f"ckpt:{path.name}", f"checkpoint: {path.name}", path, True))
        return entries

    def _chosen_default(self, name: str | None) -> str | None:
        if not name:
            return None
        for key in (name, REAL_PREFIX + name):
            if key in self.keys:
                return key
        raise ValueError(f"default: expected one of {self.keys} (or a real model's name), got {name!r}")

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    @property
    def default_key(self) -> str:
        """The model asked for (`ModelList.default`), else the FEATURED_CHECKPOINT folder's entry when it is
        offered, else the first entry."""
        if self._default:
            return self._default
        return next((e.key for e in self.entries if e.path is not None and e.path.name == FEATURED_CHECKPOINT),
                    self.entries[0].key)

    @property
    def concurrency(self) -> int:
        """Runs at once: 2 on CPUs (a basic Space's 2 cores), 1 where a model runs on a GPU (two 512² runs at once
        would need twice the activations' memory)."""
        return 1 if any(e.spec is not None and e.spec.resolved_device().type == "cuda" for e in self.entries) else 2

    @contextlib.contextmanager
    def running(self):
        """Around one run, in the thread that computes it: sets that thread's torch threads (`threads`, shared with
        the runs going on), yields how many run now, this one included. `rebalance` re-applies it between steps."""
        with self._runs_lock:
            self._runs += 1
            runs = self._runs
        try:
            if self.threads is not None:
                self.threads.apply(runs)
            yield runs
        finally:
            with self._runs_lock:
                self._runs -= 1

    def rebalance(self) -> None:
        """Between two steps of a run: its share of the free cores now that other runs may have started or ended
        (torch's thread count is per thread: each run sets its own). The last load reading; nothing is measured."""
        if self.threads is not None:
            self.threads.apply(max(1, self._runs), fresh=False)

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
                if entry.spec is not None:
                    self._pipes[key] = load(entry.spec)
                else:
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
        """What the UI must enable/disable for this model: components present (and why one is off), frame range,
        the video size it makes by default and the multiple sizes must be, where it runs."""
        pipe = self.get(key)
        with self._lock:
            if key in self._caps:
                return dict(self._caps[key])
        model, entry = pipe.model, self.entry(key)
        native = model.unet.config.sample_size * pipe.vae_scale_factor
        spec = entry.spec or ModelSpec()
        caps = {
            "mapping": model.mapping_network is not None, "frame_tokens": model.frame_token_generator is not None,
            "missing": missing_components(entry, pipe),
            "plain": entry.spec is not None and not entry.spec.harivo_weights,  # AnimateDiff without HARIVO weights
            "max_frames": model.max_frames, "trained_frames": model.config.num_frames,
            "width": spec.width or native, "height": spec.height or native, "native": native,
            "size_multiple": pipe.vae_scale_factor * 2 ** (len(model.unet.config.block_out_channels) - 1),
            "known_words": known_words(pipe.tokenizer), "trained": entry.trained,
            "sampling": dict(pipe.sampling_defaults),  # the CFG schedule / α this model was measured best at
            "device": str(pipe.device), "dtype": str(model.unet.dtype).removeprefix("torch."),
            "weights_bytes": weights_bytes(pipe), "decode_chunk_size": pipe.decode_chunk_size,
            "vae_slicing": bool(getattr(pipe.vae, "use_slicing", False)),
            "cpu_offload": pipe.offload_device is not None,
        }
        with self._lock:
            self._caps[key] = caps
        return dict(caps)


def missing_components(entry: ModelEntry, pipe: HarivoPipeline) -> dict[str, str]:
    """{"mapping" / "frame_tokens": why this model runs without it} for the components it lacks."""
    model = pipe.model
    absent = {"mapping": model.mapping_network is None, "frame_tokens": model.frame_token_generator is None}
    plain = entry.spec is not None and not entry.spec.harivo_weights
    reason = "no HARIVO weights (plain AnimateDiff)" if plain else "these HARIVO weights were trained without it"
    return {k: reason for k, off in absent.items() if off}


def known_words(tokenizer) -> list[str] | None:
    """Words a closed-vocabulary (embedded shapes-world) tokenizer knows as one token; None for open vocabularies."""
    if len(tokenizer) > 10_000:
        return None  # a real CLIP tokenizer: every word is fine
    candidates = sorted(set(world_vocabulary()) | set(TINY_WORDS))
    return [w for w in candidates if token_pieces(tokenizer, w) == [f"{w}</w>"]]


def unknown_words(prompt: str, known: list[str] | None) -> list[str]:
    """Words of `prompt` the model does not know (none for an open vocabulary, `known` None)."""
    return [] if known is None else _unknown_words(prompt, known)


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
