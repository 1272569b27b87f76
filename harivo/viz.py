"""Pictures of a HARIVO video and of why it looks the way it does (Fig. 6 of the paper).

- `slice_stack`: Fig. 6's vertical-slice stack: first frame | one-pixel-wide columns at two fixed x of
  every frame, stacked left to right | the same at the second x | last frame, red and green markers.
- `heat_overlay`, `token_attention_figure`, `attention_grid`: frame-wise cross-attention maps of one token over
  the frames (Fig. 6b), and a frames × tokens grid (text tokens and the K frame-wise tokens of §3.5); both
  figures carry a colour bar and say how the maps are normalised.
- `cfg_schedule_figure`, `diagnostics_figure`: the App. D CFG schedule per step; MG (Alg. 1) and
  mapping-network (Fig. A1) statistics per step.
- `ablation_figure` + `save_figure`: rows of videos (Table 1 variants, or α ∈ {0, 40, 150} as Fig. 6c) as
  frames + slice stack, exported as one PNG and one PDF for a paper.

Only numpy and matplotlib (Agg); every function takes plain arrays so notebooks can use them directly.
One module of ~460 lines: the pictures share their pixel conventions (uint8, nearest upscaling, one
normalisation and colour map for attention); split by figure, each part would import the others' helpers.
Frames are `(f, h, w, 3)` float in [0, 1] or uint8; maps are `(f, h, w)` or `(f, h, w, n)` for n tokens.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.colors
import matplotlib.ticker

matplotlib.use("Agg")  # headless: the app and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .media import to_uint8  # noqa: E402

RED = (230, 30, 30)  # marker colour of the first column (Fig. 6)
GREEN = (20, 200, 60)  # marker colour of the second column
FRAME_TOKEN_COLOUR = "#1f5fbf"  # labels of the K frame-wise tokens in grids
MIN_SIZE = 256  # short side (px) that the pixel images are upscaled to, so 64×64 videos stay readable


def auto_scale(size: int, min_size: int = MIN_SIZE) -> int:
    """Integer nearest-neighbour factor that brings `size` px to at least `min_size` px."""
    return max(1, -(-min_size // max(1, size)))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., h, w, c) by an integer factor (no invented pixels)."""
    if factor == 1:
        return image
    return image.repeat(factor, axis=-3).repeat(factor, axis=-2)


def _check_video(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames: expected an array of shape (f, h, w, 3), got {frames.shape}")
    return frames


# ------------------------------------------------------------------------------------------------ Fig. 6 slices
def slice_layout(num_frames: int, height: int, width: int, scale: int, y_range: tuple[int, int] | None = None) -> dict:
    """Pixel boxes (x0, y0, x1, y1) of the four panels of `slice_stack`, and the canvas size.

    Every panel is `scale`× nearest-upscaled; `border` = clip(scale // 4, 2, 4) px of white margin (coloured
    around the strips), `gap` = 2 · border px of white between panels.
    """
    y0, y1 = y_range or (0, height)
    b = int(np.clip(scale // 4, 2, 4))
    gap = 2 * b
    boxes, x = {}, b  # x: left edge of the next panel's outer box
    for name, w in (("first", width), ("red", num_frames), ("green", num_frames), ("last", width)):
        strip = name in ("red", "green")
        top, bottom = (b + y0 * scale, b + y1 * scale) if strip else (b, b + height * scale)
        inner = x + b if strip else x  # strips carry a coloured border of width b on every side
        boxes[name] = (inner, top, inner + w * scale, bottom)
        x = inner + w * scale + (b if strip else 0) + gap
    canvas = (height * scale + 2 * b, x - gap + b)
    return {"boxes": boxes, "border": b, "gap": gap, "scale": scale, "shape": canvas}


def column_strip(frames: np.ndarray, x: int, y_range: tuple[int, int] | None = None) -> np.ndarray:
    """The one-pixel-wide column `x` of every frame, stacked left to right: (h, f, 3)."""
    frames = _check_video(frames)
    y0, y1 = y_range or (0, frames.shape[1])
    return frames[:, y0:y1, x, :].transpose(1, 0, 2)  # (f, h, 3) -> (h, f, 3)


def slice_stack(
    frames: np.ndarray,
    x_red: int,
    x_green: int,
    scale: int | None = None,
    y_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """Fig. 6's vertical-slice stack as one uint8 image.

    [first frame | column `x_red` of every frame | column `x_green` of every frame | last frame], each panel
    nearest-upscaled by `scale` (default: to ≥ 256 px high). The chosen columns are outlined in red and green
    on the first and last frames (the outline lies next to the column, never on it) and the strips carry a
    border of their colour. `y_range` restricts the segments to rows [y0, y1) (the paper's short segments).
    """
    frames = to_uint8(_check_video(frames))
    f, h, w, _ = frames.shape
    for name, x in (("x_red", x_red), ("x_green", x_green)):
        if not (isinstance(x, (int, np.integer)) and 0 <= x < w):
            raise ValueError(f"{name}: expected a column index in [0, {w}), got {x!r}")
    y0, y1 = y_range or (0, h)
    if not 0 <= y0 < y1 <= h:
        raise ValueError(f"y_range: expected 0 <= y0 < y1 <= {h}, got {y_range!r}")
    s = scale or auto_scale(h)
    layout = slice_layout(f, h, w, s, (y0, y1))
    b, boxes = layout["border"], layout["boxes"]
    canvas = np.full((*layout["shape"], 3), 255, np.uint8)

    def paste(name: str, image: np.ndarray) -> None:
        x0, top, x1, bottom = boxes[name]
        canvas[top:bottom, x0:x1] = upscale(image, s)

    paste("first", frames[0])
    paste("last", frames[-1])
    for name, x, colour in (("red", x_red, RED), ("green", x_green, GREEN)):
        x0, top, x1, bottom = boxes[name]
        canvas[top - b : bottom + b, x0 - b : x1 + b] = colour  # border, then the strip inside it
        paste(name, column_strip(frames, x, (y0, y1)))
    for name, x, colour in (("red", x_red, RED), ("green", x_green, GREEN)):
        for panel in ("first", "last"):
            _outline_column(canvas, boxes[panel], x, (y0, y1), s, b, colour)
    return canvas


def _outline_column(canvas, box, x, y_range, s, b, colour) -> None:
    """Lines of width b left and right of column x (inside the panel) and ticks in the margins above/below."""
    px0, top, px1, bottom = box
    left, right = px0 + x * s, px0 + (x + 1) * s
    seg_top, seg_bottom = top + y_range[0] * s, top + y_range[1] * s
    canvas[seg_top:seg_bottom, max(px0, left - b) : left] = colour
    canvas[seg_top:seg_bottom, right : min(px1, right + b)] = colour
    lo, hi = max(px0, left - b), min(px1, right + b)
    canvas[top - b : top, lo:hi] = colour  # tick in the margin above the frame
    canvas[bottom : bottom + b, lo:hi] = colour  # and below


# ------------------------------------------------------------------------------------------------ attention
def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (f, h, w) maps to (f, *size) (half-pixel centres, like F.interpolate)."""
    maps = np.asarray(maps, dtype=np.float32)
    f, h, w = maps.shape
    H, W = size
    if (h, w) == (H, W):
        return maps

    def coords(n_in, n_out):
        c = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        c = np.clip(c, 0, n_in - 1)
        i0 = np.floor(c).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (c - i0).astype(np.float32)

    y0, y1, wy = coords(h, H)
    x0, x1, wx = coords(w, W)
    top = maps[:, y0][:, :, x0] * (1 - wx) + maps[:, y0][:, :, x1] * wx
    bottom = maps[:, y1][:, :, x0] * (1 - wx) + maps[:, y1][:, :, x1] * wx
    return top * (1 - wy[:, None]) + bottom * wy[:, None]


ATTENTION_NORMALISATION = ("colour: each token's map min–max normalised over all its frames and pixels "
                           "(1 = where that token is attended most in the video; tokens are not comparable)")


def normalise_per_token(maps: np.ndarray) -> np.ndarray:
    """Min–max normalise (f, h, w[, n]) maps per token over all frames and pixels (frames stay comparable)."""
    maps = np.asarray(maps, dtype=np.float32)
    axes = (0, 1, 2)
    lo = maps.min(axis=axes, keepdims=True)
    hi = maps.max(axis=axes, keepdims=True)
    return (maps - lo) / np.where(hi > lo, hi - lo, 1.0)


def heat_overlay(frames: np.ndarray, maps: np.ndarray, alpha: float = 0.6, cmap: str = "inferno",
                 normalise: bool = True) -> np.ndarray:
    """Attention maps (f, h', w') of one token as a heat overlay on the frames: (f, h, w, 3) float in [0, 1].

    Maps are bilinearly resized to the frame size and, by default, normalised per token across frames.
    """
    frames = _check_video(frames)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != frames.shape[0]:
        raise ValueError(f"maps: expected shape ({frames.shape[0]}, h, w) matching the frames, got {maps.shape}")
    base = to_uint8(frames).astype(np.float32) / 255.0
    heat = resize_maps(normalise_per_token(maps) if normalise else maps, base.shape[1:3])
    colours = plt.get_cmap(cmap)(np.clip(heat, 0, 1))[..., :3].astype(np.float32)
    return (1 - alpha) * base + alpha * colours


def frame_strip(frames: np.ndarray, scale: int | None = None, gap: int = 4, max_cols: int = 8) -> np.ndarray:
    """Frames side by side (wrapping after `max_cols`), white gaps, nearest-upscaled: one uint8 image."""
    frames = to_uint8(_check_video(frames))
    f, h, w, _ = frames.shape
    s = scale or auto_scale(h, 128)
    cols = min(f, max_cols)
    rows = math.ceil(f / cols)
    H, W = h * s, w * s
    out = np.full((rows * H + (rows - 1) * gap, cols * W + (cols - 1) * gap, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        out[r * (H + gap) : r * (H + gap) + H, c * (W + gap) : c * (W + gap) + W] = upscale(frame, s)
    return out


def attention_grid(frames: np.ndarray, maps: np.ndarray, tokens: Sequence[str], kinds: Sequence[str] | None = None,
                   rows: str = "tokens", max_frames: int = 16, overlay: bool = True, title: str | None = None) -> Figure:
    """Frames × tokens grid of cross-attention maps (each token normalised over its frames), labelled.

    `maps`: (f, h, w, n) for the n `tokens`; `kinds`: "text"/"frame" per token (frame tokens labelled in blue).
    `rows="tokens"` puts one token per row and one frame per column; `rows="frames"` the transpose. `overlay`:
    the maps on the frames, else the maps alone.
    """
    frames = _check_video(frames)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 4 or maps.shape[0] != frames.shape[0] or maps.shape[-1] != len(tokens):
        raise ValueError(f"maps: expected shape ({frames.shape[0]}, h, w, {len(tokens)}), got {maps.shape}")
    if rows not in ("tokens", "frames"):
        raise ValueError(f"rows: expected 'tokens' or 'frames', got {rows!r}")
    kinds = list(kinds or ["text"] * len(tokens))
    index = np.unique(np.linspace(0, frames.shape[0] - 1, min(max_frames, frames.shape[0])).round().astype(int))
    norm = normalise_per_token(maps)
    tiles = [_attention_tiles(frames[index], norm[index, ..., k], overlay) for k in range(len(tokens))]
    if rows == "frames":
        tiles = [list(col) for col in zip(*tiles)]
    mosaic = _mosaic(tiles, gap=2)
    n_rows, n_cols = len(tiles), len(tiles[0])
    th, tw = tiles[0][0].shape[:2]
    # Margins in inches: token/frame labels on the left, labels + title on top (tokens on top are slanted).
    left, right, top = 1.3, 0.2, (0.75 if rows == "tokens" else 1.3)
    img_w = min(0.55 * n_cols, 12.5)  # ~0.55 in per tile: readable cells, no giant cells for few frames
    fig, ax = _figure_with_colour_bar(mosaic, img_w, left, right, top, title)
    frame_labels = [str(i + 1) for i in index]
    row_labels, col_labels = (list(tokens), frame_labels) if rows == "tokens" else (frame_labels, list(tokens))
    ax.set_yticks([r * (th + 2) + th / 2 for r in range(n_rows)], row_labels, fontsize=10)
    ax.set_xticks([c * (tw + 2) + tw / 2 for c in range(n_cols)], col_labels, fontsize=10)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    if rows == "frames":
        plt.setp(ax.get_xticklabels(), rotation=45, ha="left", rotation_mode="anchor")
    token_labels = ax.get_yticklabels() if rows == "tokens" else ax.get_xticklabels()
    for label, kind in zip(token_labels, kinds):
        if kind == "frame":
            label.set_color(FRAME_TOKEN_COLOUR)
            label.set_fontweight("bold")
    ax.set_xlabel("frame" if rows == "tokens" else "token", fontsize=10)
    ax.xaxis.set_label_position("top")
    return fig


def token_attention_figure(frames: np.ndarray, maps: np.ndarray, token: str, overlay: bool = True,
                           max_cols: int = 8, title: str | None = None) -> Figure:
    """One token's cross-attention over every frame (Fig. 6b), `max_cols` frames a row (numbered), with the colour
    bar and normalisation note of `attention_grid`: `maps` (f, h, w), min–max normalised over all frames, on the
    frames (`overlay`) or alone. The heading names the token and `title`."""
    frames = _check_video(frames)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != frames.shape[0]:
        raise ValueError(f"maps: expected shape ({frames.shape[0]}, h, w) matching the frames, got {maps.shape}")
    tiles = _attention_tiles(frames, normalise_per_token(maps), overlay)
    cols, (th, tw) = min(len(tiles), max_cols), tiles[0].shape[:2]
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % cols)  # white cells after the last frame
    mosaic = _mosaic([tiles[r : r + cols] for r in range(0, len(tiles), cols)], gap=2)
    heading = " · ".join(part for part in (f"“{token}”", title) if part)
    fig, ax = _figure_with_colour_bar(mosaic, min(1.1 * cols, 12.5), 0.2, 0.2, 0.5, heading)
    for i in range(len(frames)):  # frame numbers in the tiles' corners
        r, c = divmod(i, cols)
        ax.text(c * (tw + 2) + 2, r * (th + 2) + 2, str(i + 1), color="white", fontsize=7, ha="left", va="top",
                bbox={"facecolor": "black", "alpha": 0.55, "pad": 1.0, "linewidth": 0})
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _attention_tiles(frames: np.ndarray, norm: np.ndarray, overlay: bool) -> list[np.ndarray]:
    """One uint8 tile per frame: normalised maps (f, h', w') on the frames (`overlay`) or alone (inferno)."""
    if overlay:
        images = heat_overlay(frames, norm, normalise=False)
    else:
        images = plt.get_cmap("inferno")(resize_maps(norm, frames.shape[1:3]))[..., :3]
    cell = max(frames.shape[1], 32)
    return [upscale(to_uint8(im), max(1, cell // frames.shape[1])) for im in images]


def _figure_with_colour_bar(mosaic: np.ndarray, img_w: float, left: float, right: float, top: float,
                            title: str | None) -> tuple[Figure, plt.Axes]:
    """A figure showing `mosaic` img_w inches wide (margins in inches), and under it the 0–1 colour bar of the
    normalised maps and ATTENTION_NORMALISATION. Returns the figure and the mosaic's axes."""
    img_h = img_w * mosaic.shape[0] / mosaic.shape[1]
    fig_w = max(left + right + img_w, 5.5)  # ≥ 5.5 in: room for the title
    note = textwrap.fill(ATTENTION_NORMALISATION, int((fig_w - left - right) * 15))  # ~15 chars/in at 8 pt
    title = textwrap.fill(title, int(fig_w * 12)) if title else None  # ~12 chars/in at 10 pt
    top += 0.17 * title.count("\n") if title else 0.0
    bottom = 0.75 + 0.14 * note.count("\n")  # colour bar + note
    fig_h = img_h + top + bottom
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=110)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, (fig_w - left - right) / fig_w, img_h / fig_h))
    ax.imshow(mosaic, interpolation="nearest")
    for spine in ax.spines.values():
        spine.set_visible(False)
    cax = fig.add_axes((left / fig_w, (bottom - 0.33) / fig_h, min(3.0, fig_w - left - right) / fig_w, 0.12 / fig_h),
                       label="colour bar")
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap="inferno", norm=matplotlib.colors.Normalize(0, 1)), cax=cax,
                       orientation="horizontal")
    bar.set_ticks([0, 0.5, 1])
    bar.ax.tick_params(labelsize=8)
    fig.text(left / fig_w, 0.06 / fig_h, note, fontsize=8, va="bottom", ha="left")
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.08 / fig_h, va="top")
    return fig, ax


def _mosaic(tiles: list[list[np.ndarray]], gap: int) -> np.ndarray:
    th, tw = tiles[0][0].shape[:2]
    rows, cols = len(tiles), len(tiles[0])
    out = np.full((rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            out[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
    return out


# ------------------------------------------------------------------------------------------------ plots
def cfg_schedule_figure(scales: Sequence[float], timesteps: Sequence[int], switch: float | None = None,
                        num_train_timesteps: int = 1000) -> Figure:
    """CFG scale per sampling step (App. D: high while t > switch·T, low after)."""
    fig, ax = plt.subplots(figsize=(4.2, 2.2), dpi=110)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.95, bottom=0.2)  # fixed margins: layout engines cost ~1 s
    steps = np.arange(1, len(scales) + 1)
    ax.step(steps, scales, where="mid", color="#333333", lw=1.6)
    ax.plot(steps, scales, "o", ms=3, color="#c0392b")
    ax.set_xlabel("DDIM step", fontsize=8)
    ax.set_ylabel("CFG scale", fontsize=8)
    ax.set_ylim(0, max(max(scales, default=1.0) * 1.2, 1.0))
    ax.tick_params(labelsize=7)
    if switch is not None and len(timesteps):
        after = [i + 1 for i, t in enumerate(timesteps) if t <= switch * num_train_timesteps]
        if after:
            ax.axvline(after[0] - 0.5, ls="--", lw=0.8, color="#888888")
            ax.text(after[0] - 0.4, ax.get_ylim()[1] * 0.92, f"t ≤ {switch:g}T", fontsize=7, color="#555555", va="top")
    ax.grid(alpha=0.3)
    return fig


def diagnostics_figure(steps: Sequence[dict], alpha: float | None = None) -> Figure:
    """Per-step MG diagnostics (median ‖D‖, bandwidth S, α‖G‖; Alg. 1) and the mapping network's change."""
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.4), dpi=110)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.18, wspace=0.22)
    x = np.arange(1, len(steps) + 1)

    def series(key):
        return np.array([s.get(key, np.nan) for s in steps], dtype=float)

    ax = axes[0]
    positive = lambda v: np.where(v > 0, v, np.nan)  # noqa: E731  0 where a step skipped MG: not drawn (log axis)
    d, g = positive(series("median_d")), positive(series("g_norm") * (alpha if alpha is not None else 1.0))
    mg_on = bool(len(steps)) and np.isfinite(series("g_norm")).any()
    if mg_on and np.isfinite(np.concatenate([d, g])).any():
        ax.semilogy(x, d, label="median ‖D‖ (x̂ frame diff.)", color="#2c7fb8")
        ax.semilogy(x, g, label="α‖G‖" if alpha is not None else "‖G‖", color="#d95f0e")
        ax.legend(fontsize=7, frameon=False, loc="upper right")  # a fixed place: "best" searches every line
        # labelled 1-2-5 ticks and no minor ones: unlabelled minor ticks were a third of the drawing
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8))
        ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    else:
        off = "MG on, no step moved x_t" if mg_on else "MG off"
        ax.text(0.5, 0.5, off, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="#777777")
        ax.set_yticks([])
    ax.set_title("mitigating gradient (Alg. 1)", fontsize=8, y=1.0)  # a fixed y: no tight-bbox search (~30 % of it)
    ax.set_xlabel("DDIM step", fontsize=8)
    ax = axes[1]
    diff = series("mapping_abs_diff")
    if len(steps) and np.isfinite(diff).any() and np.nanmax(np.abs(diff)) > 0:
        ax.plot(x, diff, label="mean |M(x) − x|", color="#31a354")
        ax.plot(x, series("mapping_mean_shift"), label="mean shift", color="#756bb1", ls="--")
        ax.plot(x, series("mapping_std_change"), label="std change", color="#636363", ls=":")
        ax.legend(fontsize=7, frameon=False, loc="best")
    else:
        ax.text(0.5, 0.5, "mapping network off\n(or identity)", ha="center", va="center", transform=ax.transAxes,
                fontsize=9, color="#777777")
        ax.set_yticks([])
    ax.set_title("mapping network (Fig. A1 statistics)", fontsize=8, y=1.0)
    ax.set_xlabel("DDIM step", fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(steps):
            ax.set_xlim(0.5, len(steps) + 0.5)  # every step, also those where MG did not act
    # plain "%g" labels: the default mathtext log labels take ~0.3 s to lay out
    axes[0].yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    return fig


# ------------------------------------------------------------------------------------------------ ablation figure
def ablation_figure(rows: Sequence[tuple[str, np.ndarray]], x_red: int, x_green: int, num_frames_shown: int = 4,
                    title: str | None = None, y_range: tuple[int, int] | None = None) -> Figure:
    """One row per video (label, frames): a few frames, then the slice stack (Fig. 6a/6c layout)."""
    if not rows:
        raise ValueError("rows: expected at least one (label, frames) row")
    f = _check_video(rows[0][1]).shape[0]
    shown = np.unique(np.linspace(0, f - 1, min(num_frames_shown, f)).round().astype(int))
    stacks = [slice_stack(frames, x_red, x_green, y_range=y_range) for _, frames in rows]
    h, w = rows[0][1].shape[1:3]
    stack_ratio = stacks[0].shape[1] / stacks[0].shape[0]
    ratios = [w / h] * len(shown) + [stack_ratio]
    row_h = 1.05
    width = row_h * sum(ratios) + 1.3
    # the title wraps to the figure's width (about 15 characters of 8 pt per inch) instead of running off it
    title_lines = textwrap.wrap(title, width=max(20, int(width * 15))) if title else []
    header = 0.25 + 0.14 * len(title_lines)  # inches above the first row: title lines + the column titles
    height = row_h * len(rows) + header
    fig = plt.figure(figsize=(width, height), dpi=200)
    grid = fig.add_gridspec(len(rows), len(ratios), width_ratios=ratios, wspace=0.04, hspace=0.06,
                            left=1.2 / width, right=0.995, top=1 - header / height, bottom=0.01)
    for r, ((label, frames), stack) in enumerate(zip(rows, stacks)):
        frames = to_uint8(_check_video(frames))
        for c, i in enumerate(shown):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(frames[min(i, len(frames) - 1)], interpolation="nearest")
            _bare(ax)
            if r == 0:
                ax.set_title(f"frame {i + 1}", fontsize=7, pad=2)
            if c == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center", labelpad=4)
        ax = fig.add_subplot(grid[r, len(shown)])
        ax.imshow(stack, interpolation="nearest")
        _bare(ax)
        if r == 0:
            ax.set_title(f"first | x={x_red} (red) | x={x_green} (green) over {f} frames | last", fontsize=7, pad=2)
    if title_lines:
        fig.suptitle("\n".join(title_lines), fontsize=8, y=1 - 0.03 / height, va="top")
    return fig


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# ------------------------------------------------------------------------------------------------ export
def figure_to_array(fig: Figure, close: bool = True) -> np.ndarray:
    """Render a matplotlib figure to a uint8 (h, w, 3) array (for gr.Image): the Agg canvas's pixels on white, as
    `savefig` would write them at the figure's dpi, without a PNG encode and decode (a third of the app's drawing)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    face = fig.get_facecolor()
    fig.set_facecolor("white")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    out = np.array(canvas.buffer_rgba())[..., :3]
    fig.set_facecolor(face)
    if close:
        plt.close(fig)
    return out


def save_figure(fig: Figure, stem: str | os.PathLike, formats: Sequence[str] = ("png", "pdf"), close: bool = True) -> list[Path]:
    """Save `fig` as `stem.png` and `stem.pdf` (tight bounding box, white background); returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, format=fmt, bbox_inches="tight", pad_inches=0.03, facecolor="white", dpi=200)
        paths.append(path)
    if close:
        plt.close(fig)
    return paths
