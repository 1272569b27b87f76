"""The pictures of one result, without any UI: frame strip, the chosen token's attention and the attention grid
(on the frames or alone), Fig. 6 slice stack, CFG schedule, MG diagnostics, and the summary under the video.
Every view reads the settings in effect that the result records (`HarivoPipeline.in_effect`), never the request."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .. import viz
from ..attention import AttentionRecord, layer_resolution
from ..data.shapes import SHAPES
from ..sampling import CFGSchedule, MGConfig
from ..tiny import scheduler_config
from .models import ModelRegistry
from ..settings import whole_number
from .request import RunRequest
from .runs import RunResult, sample_result, write_bundle_files, write_video

MEAN_SOURCE, MEAN_STEP = "mean of all resolutions", "mean over steps"
AUTO_TOKEN = "the object's noun"  # token choice before the first run: resolve_view picks the prompt's shape word


# ------------------------------------------------------------------------------------------------ choices
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
    for word in (*SHAPES, *str(prompt).split()[2:3]):
        if word in choices:
            return word
    frame = [c for c, k in zip(choices, rec.token_kinds) if k == "frame"] if rec else []
    return frame[0] if frame else (choices[1] if len(choices) > 1 else (choices[0] if choices else None))


def source_choices(rec: AttentionRecord | None) -> list[str]:
    if rec is None:
        return [MEAN_SOURCE]
    return ([MEAN_SOURCE] + [f"resolution {r}" for r in rec.resolutions]
            + [f"layer {layer_label(n)}" for n in rec.per_layer])


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
    return round(0.35 * (width - 1)), round(0.65 * (width - 1))


def columns(width: int, x_red: int | None = None, x_green: int | None = None) -> tuple[int, int]:
    """The Fig. 6 columns a user chose (UI numbers), clipped to the frame; None = `default_columns`."""
    d_red, d_green = default_columns(width)
    x_red = d_red if x_red is None else int(np.clip(whole_number("x_red", x_red), 0, width - 1))
    x_green = d_green if x_green is None else int(np.clip(whole_number("x_green", x_green), 0, width - 1))
    return x_red, x_green


@dataclass
class ViewOptions:
    """How the user wants to look at a result (changing these never re-runs the model)."""

    token: str | None = None  # token label (token_choices); None = the object's noun
    source: str | None = None  # source_choices: mean of all resolutions / one resolution / one layer
    step: str | None = None  # step_choices: mean over steps / one step
    rows: str = "tokens"  # attention grid: one row per token or per frame
    x_red: int | None = None  # Fig. 6 columns (None = default_columns)
    x_green: int | None = None
    overlay: bool = True  # attention maps drawn on the frames (else the maps alone)


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
    o.x_red, o.x_green = columns(result.frames.shape[2], o.x_red, o.x_green)
    o.overlay = bool(o.overlay)
    return o


# ------------------------------------------------------------------------------------------------ views
ALL_VIEWS = ("strip", "token", "grid", "slices", "diagnostics")
FIRST_VIEWS = ("strip",)  # what the first screen shows beside the video (at 1280×800: the video and its frames)


def render_views(result: RunResult, opts: ViewOptions | None = None, names: tuple[str, ...] | None = None) -> dict:
    """The pictures of one result (`names`, default all: frame strip, the chosen token's attention + the grid, slice
    stack, MG diagnostics) and, under "view", the ViewOptions they were drawn with."""
    o = resolve_view(result, opts)
    names = names or ALL_VIEWS
    views: dict = {"view": o}
    if "strip" in names:
        views["strip"] = viz.frame_strip(result.frames)
    views.update(render_attention(result, o.token, o.source, o.step, o.rows, o.overlay,
                                  which=tuple(n for n in ("token", "grid") if n in names)))
    if "slices" in names:
        views["slices"] = render_slices(result, o.x_red, o.x_green)
    if "diagnostics" in names:
        mg = recorded_mg(result.settings)
        views["diagnostics"] = viz.figure_to_array(viz.diagnostics_figure(result.steps, mg.alpha if mg.enabled else None))
    return views


def run_in_stages(registry: ModelRegistry, req: RunRequest, opts: ViewOptions | None = None,
                  cancel: threading.Event | None = None) -> Iterator[tuple[RunResult, dict, bool]]:
    """The app's Generate button, in two answers: (result, views, done). First the video (its mp4) with the views of
    the first screen (`FIRST_VIEWS`), as soon as they exist; then every view and the download bundle (`done`).
    For the second, another thread writes the run's files (arrays, GIF, zip: C code, which leaves the GIL) while the
    figures are drawn, so on two cores they cost little wall time."""
    result, out = sample_result(registry, req, cancel)
    write_video(result)
    first = render_views(result, opts, FIRST_VIEWS)
    yield result, first, False
    with ThreadPoolExecutor(1, thread_name_prefix="harivo-files") as pool:
        files = pool.submit(write_bundle_files, result, out, video=False)
        rest = render_views(result, first["view"], tuple(n for n in ALL_VIEWS if n not in FIRST_VIEWS))
        files.result()
    yield result, {**first, **rest}, True


def run_and_render(registry: ModelRegistry, req: RunRequest, opts: ViewOptions | None = None,
                   cancel: threading.Event | None = None) -> tuple[RunResult, dict[str, np.ndarray | None]]:
    """One run and every view of it (`run_in_stages`' last answer)."""
    for result, views, _ in run_in_stages(registry, req, opts, cancel):
        pass
    return result, views


def render_attention(result: RunResult, token: str | None = None, source: str | None = None, step: str | None = None,
                     rows: str = "tokens", overlay: bool = True,
                     which: tuple[str, ...] = ("token", "grid")) -> dict[str, np.ndarray | None]:
    """{"token": the chosen token over every frame, "grid": every token × frames} (those in `which`), both with a
    colour bar; `overlay`: the maps on the frames, else alone. None where no attention was recorded."""
    rec = result.attention
    if rec is None or not rec.per_step or not which:
        return {name: None for name in which}
    choices = token_choices(rec)
    token = token if token in choices else default_token(rec, result.settings.get("prompt", ""))
    if (source or "").startswith("layer "):
        step = MEAN_STEP  # per-layer maps are kept as the mean over steps only
    maps = attention_maps(rec, source, step)  # (f, h, w, n)
    where = f"{source or MEAN_SOURCE} · {step or MEAN_STEP}"
    out = {}
    if "token" in which:
        out["token"] = viz.figure_to_array(
            viz.token_attention_figure(result.frames, maps[..., choices.index(token)], token, overlay, title=where))
    if "grid" in which:
        frame_tokens = " · frame tokens in blue" if "frame" in rec.token_kinds else ""
        out["grid"] = viz.figure_to_array(viz.attention_grid(result.frames, maps, choices, rec.token_kinds, rows=rows,
                                                             overlay=overlay, title=where + frame_tokens))
    return out


def render_slices(result: RunResult, x_red: int | None = None, x_green: int | None = None) -> np.ndarray:
    return viz.slice_stack(result.frames, *columns(result.frames.shape[2], x_red, x_green))


def schedule_timesteps(num_steps: int, config: dict | None = None) -> list[int]:
    """The DDIM timesteps of `num_steps` steps under a model's scheduler `config` (`pipe.scheduler.config`: its
    spacing, e.g. "trailing", sets which timesteps run); SD1.5's scheduler settings without one."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(config) if config else DDIMScheduler(**scheduler_config())
    scheduler.set_timesteps(max(1, int(num_steps)))
    return [int(t) for t in scheduler.timesteps]


def render_cfg_schedule(cfg_high: float, cfg_switch: float, cfg_low: float, num_steps: int,
                        scheduler_config: dict | None = None) -> np.ndarray:
    """The CFG scale at each DDIM step that a model with `scheduler_config` runs (see `schedule_timesteps`). Drawn
    once per schedule (every Generate redraws it; ~0.1 s of matplotlib a time)."""
    key = json.dumps(dict(scheduler_config), sort_keys=True, default=str) if scheduler_config else ""
    return _cfg_schedule_image(float(cfg_high), float(cfg_switch), float(cfg_low), max(1, int(num_steps)), key).copy()


@functools.lru_cache(maxsize=64)
def _cfg_schedule_image(cfg_high: float, cfg_switch: float, cfg_low: float, num_steps: int, config: str) -> np.ndarray:
    cfg = CFGSchedule(cfg_high, cfg_low, cfg_switch)
    timesteps = schedule_timesteps(num_steps, json.loads(config) if config else None)
    return viz.figure_to_array(viz.cfg_schedule_figure(cfg.scales(timesteps), timesteps, cfg.switch))


def recorded_mg(settings: dict) -> MGConfig:
    """The MG of a result's recorded settings (`MGConfig` decides whether it is off)."""
    return MGConfig(**settings.get("mg", {}))


def summary(result: RunResult) -> str:
    """Markdown lines under the video: model, time, the components in effect, flicker, notes."""
    s = result.settings
    flick = "n/a (no single object found)" if not np.isfinite(result.flicker) else f"{result.flicker:.4f}"
    mg = recorded_mg(s)
    mg_text = f"MG α={mg.alpha:g}" + (" (symmetric)" if mg.symmetric else "") if mg.enabled else "MG off"
    parts = [f"mapping {'on' if s.get('use_mapping') else 'off'}",
             f"frame tokens {'on' if s.get('use_frame_tokens') else 'off'}",
             f"temporal layers {'on' if s.get('use_motion', True) else 'off'}", mg_text]
    head = (f"**{result.model_label}** · seed {s.get('seed')} · {result.frames.shape[0]} frames · "
            f"{len(result.steps)} steps · {result.elapsed:.1f} s" +
            (f" on {result.threads} CPU thread{'s' if result.threads > 1 else ''}" if result.threads else ""))
    lines = [head, " · ".join(parts), f"flicker score: {flick} (0 = steady)"]
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines)


SAMPLING_LABELS = {"cfg_high": "CFG high", "cfg_low": "CFG low", "cfg_switch": "CFG switch", "mg_alpha": "MG α",
                   "num_inference_steps": "DDIM steps"}
COMPONENTS = {"mapping": "mapping network", "frame_tokens": "frame-wise tokens"}


def model_info(caps: dict) -> str:
    """The note under the model's settings: what it was trained for, where it runs, the components it lacks and
    why, the sampling it starts from, the words it knows."""
    frames = (f"Up to {caps['max_frames']} frames" if caps.get("plain") else
              f"Trained for {caps['trained_frames']} frames (up to {caps['max_frames']})")
    text = f"{frames}, {caps['width']}×{caps['height']} px by default; runs on {caps['device']}, {caps['dtype']}."
    by_reason: dict[str, list[str]] = {}
    for key, reason in caps["missing"].items():
        by_reason.setdefault(reason, []).append(COMPONENTS[key])
    for reason, names in by_reason.items():
        text += f" {' and '.join(names).capitalize()} off: {reason}."
    if caps["sampling"]:
        text += " Starts from the sampling it was measured best at: " + ", ".join(
            f"{SAMPLING_LABELS[k]} {v:g}" for k, v in caps["sampling"].items()) + "."
    if caps["known_words"] is not None:
        text += f" Known words: {', '.join(caps['known_words'])}."
    return text
