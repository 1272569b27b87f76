"""The shapes world: a procedurally generated text-to-video world with known ground truth.

HARIVO (ECCV 2024) is trained on WebVid-10M and evaluated with prompts like the ones of its Table A3
("a horse is running", "a car is moving left to right", ...). This module is the embedded stand-in for that
data: one coloured shape on a plain background, doing one of eight motions, captioned in the same style:

    "a red circle is moving left to right on a gray background"

Every video is a pure function of ``(spec, seed, num_frames, size, world)``, and each one comes with a ``Track``
(centroid, size and angle per frame), so quality can be measured exactly (see ``harivo.data.checker``,
the analog of the paper's Table A2 human study: content, action, smooth, non-weird).

Decisions worth knowing:
- ``Track.cx``/``cy`` use array-index coordinates: pixel ``[y, x]`` has its centre at ``(x, y)``; y points
  down.
  ``Track.size`` is the circumradius (centre to the farthest corner) in pixels. ``Track.angle`` is in degrees,
  positive = clockwise on screen (because y points down), and rotates a corner away from the +x axis.
- A spinning circle looks exactly like a still one, so ``(circle, spinning)`` is left out of the world:
  ``all_specs``/``sample_spec``/``make_dataset`` never produce it. A ``ShapeSpec`` for it can still be built
  (an app user may type it); it renders as a still circle and the checker accepts "standing still" for it.
- The object never has the background's colour name (no white on white, black on black, blue on blue);
  ``ShapeSpec`` raises ``ValueError`` for those.
- Captions use "an" before a vowel ("an orange star ..."); ``from_caption`` accepts "a" or "an".
- ``HELD_OUT`` lists (colour, shape, motion) combinations that training never sees, on any background.
- The object is drawn in its caption's colour only. A translation runs from one edge of the allowed range to
  the other (the verb alone fixes the position along its axis in every frame), and its frames show a strip of
  ``World.band_px`` pixels in a motion colour (``BAND_COLOURS``) along the edge the object heads for: the
  world's one motion cue, outside the object, at a fixed place (the caption-only prediction at t ~ T keeps it).
- The world is a value, ``World``: every function that draws or reads a video takes one (default ``WORLD``,
  the world of the shipped checkpoints), and checkpoints record theirs (``World.record``), so a model is judged
  in the world it was trained in. Nothing here reads the environment.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 220),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 200),
    "orange": (240, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "white": (235, 235, 235),
    "black": (15, 15, 15),
    "blue": (40, 60, 140),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
MOTIONS: tuple[str, ...] = (
    "moving left to right",
    "moving right to left",
    "moving up",
    "moving down",
    "getting closer",
    "moving away",
    "spinning",
    "standing still",
)
TRANSLATIONS: tuple[str, ...] = MOTIONS[:4]  # the motions that move the object across the frame
SIZE_CHANGES: tuple[str, ...] = MOTIONS[4:6]  # getting closer, moving away: the object grows or shrinks
# the motions with a direction, by kind (stage 2's verb-phase pools, scripts/motion_proxy.py --motions)
MOTION_GROUPS: dict[str, tuple[str, ...]] = {"translations": TRANSLATIONS, "directed": (*TRANSLATIONS, *SIZE_CHANGES),
                                             "sizes": SIZE_CHANGES}
# (colour, shape, motion) never seen in training, on any background. Every colour, shape and motion still
# appears in training in other combinations; none of them is the excluded (circle, spinning).
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("red", "circle", "moving up"),
    ("green", "square", "spinning"),
    ("blue", "triangle", "getting closer"),
    ("yellow", "star", "moving right to left"),
    ("purple", "circle", "moving left to right"),
    ("orange", "square", "moving away"),
    ("white", "triangle", "moving down"),
    ("black", "star", "standing still"),
    ("red", "triangle", "spinning"),
    ("blue", "star", "moving away"),
)
# (shape, motion) pairs whose motion cannot be seen; kept out of all_specs.
INVISIBLE: tuple[tuple[str, str], ...] = (("circle", "spinning"),)
STAR_INNER_RATIO = 0.5  # inner/outer radius of the 5-pointed star; fat enough to stay readable at 6 px
SUPERSAMPLE = 4  # anti-aliasing: each pixel is the mean of 4x4 sub-samples
SPLITS = ("train", "held_out", "all")
# the strip's colour per translation, off the object palette (>= 89 from every object colour, >= 125 from each other)
BAND_COLOURS: dict[str, tuple[int, int, int]] = {
    "moving left to right": (0, 225, 225),  # cyan
    "moving right to left": (230, 0, 230),  # magenta
    "moving up": (150, 255, 60),  # lime
    "moving down": (135, 0, 0),  # maroon
}
DIRECTIONS: dict[str, tuple[float, float]] = {  # translation -> unit vector it heads along (x right, y down)
    "moving left to right": (1.0, 0.0),
    "moving right to left": (-1.0, 0.0),
    "moving up": (0.0, -1.0),
    "moving down": (0.0, 1.0),
}


@dataclass(frozen=True)
class World:
    """Every setting of the shapes world that changes its pictures, as one value passed to whatever draws or reads
    a video (the renderer, the checker, the datasets, training, the evaluation) and recorded in every checkpoint.

    ``band_px``: the width of the strip a translation's frames show along the edge the object heads for (4 px: one
    latent pixel of the x4 shapes VAE); 0 draws no strip (a flat backdrop). ``min_band_frame``: frames smaller than
    this (pixels; the tests' 32-px videos) show no strip."""

    band_px: int = 4
    min_band_frame: int = 48

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"World: {f.name} must be an integer >= 0, got {value!r}")

    def draws_band(self, size: int) -> bool:
        """Whether this world's frames of `size` pixels show strips (a translation's: see ``band_mask``)."""
        return self.band_px > 0 and size >= self.min_band_frame

    @property
    def version(self) -> str:
        """The world's name, part of every cache key built from its videos: "plain-crossing-band" for the shipped
        world (its name since its videos were first cached), the settings that differ from it appended."""
        name = "plain-crossing-" + ("flat" if self.band_px == 0 else "band")
        extra = [f"{f.name}{getattr(self, f.name)}" for f in fields(self)
                 if getattr(self, f.name) != f.default and not (f.name == "band_px" and self.band_px == 0)]
        return "-".join([name, *extra])

    def record(self) -> dict:
        """What a checkpoint's config records of its world: the version and every setting."""
        return {"version": self.version, **asdict(self)}

    @classmethod
    def from_record(cls, record: dict | None) -> "World":
        """The world a checkpoint records (``record``); None or {} (a checkpoint that predates the record): ``WORLD``.
        Unknown keys and settings out of range raise ValueError naming them."""
        if not record:
            return WORLD
        if not isinstance(record, dict):
            raise ValueError(f"world: expected a mapping of World settings, got {record!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known - {"version"})
        if unknown:
            raise ValueError(f"world: unknown settings {unknown} (known: {sorted(known)})")
        world = cls(**{k: v for k, v in record.items() if k in known})
        if "version" in record and record["version"] != world.version:
            raise ValueError(f"world: version {record['version']!r} does not match its settings ({world.version!r})")
        return world

    @classmethod
    def parse(cls, text: str) -> "World":
        """A world from a command line or a config: its version (``World.version``, e.g. "plain-crossing-band"), or
        settings "band_px=0,min_band_frame=32" (the others as ``WORLD``'s)."""
        text = str(text).strip()
        known = {f.name for f in fields(cls)}
        settings: dict[str, int] = {}
        parts = ([] if text in ("", "plain-crossing-band") else ["band_px=0"] if text == "plain-crossing-flat"
                 else text.split(","))
        for prefix in ("plain-crossing-band-", "plain-crossing-flat-"):  # a version with settings appended
            if text.startswith(prefix):
                parts = ["band_px=0"] * prefix.endswith("flat-") + [
                    next((f"{k}={p[len(k):]}" for k in known if p.startswith(k)), p) for p in text[len(prefix):].split("-")]
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in known or not value.strip().isdigit():
                raise ValueError(f"world: expected a version such as {WORLD.version!r} or settings such as "
                                 f"'band_px=4,min_band_frame=48' (known: {sorted(known)}), got {text!r}")
            settings[key.strip()] = int(value)
        return cls(**settings)


WORLD = World()  # the world of the shipped checkpoints


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class ShapeSpec:
    """What one video shows; ``caption`` is its text prompt."""

    colour: str  # key of COLOURS
    shape: str  # one of SHAPES
    motion: str  # one of MOTIONS
    background: str  # key of BACKGROUNDS, never the same name as colour

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("colour", self.colour, tuple(COLOURS)),
            ("shape", self.shape, SHAPES),
            ("motion", self.motion, MOTIONS),
            ("background", self.background, tuple(BACKGROUNDS)),
        ):
            if value not in allowed:
                raise ValueError(f"ShapeSpec: {name} must be one of {list(allowed)}, got {value!r}")
        if self.colour == self.background:
            raise ValueError(
                f"ShapeSpec: background must differ from the object's colour, got {self.colour!r} on "
                f"{self.background!r}"
            )

    @property
    def caption(self) -> str:
        return (
            f"{_article(self.colour)} {self.colour} {self.shape} is {self.motion} "
            f"on {_article(self.background)} {self.background} background"
        )

    @classmethod
    def from_caption(cls, caption: str) -> "ShapeSpec":
        """Inverse of ``caption`` (case, spaces and a final full stop are forgiven)."""
        text = " ".join(str(caption).lower().strip().rstrip(".").split())
        m = re.fullmatch(r"an? (\S+) (\S+) is (.+) on an? (\S+) background", text)
        if m is None:
            raise ValueError(
                "caption: expected 'a <colour> <shape> is <motion> on a <background> background', "
                f"got {caption!r}"
            )
        colour, shape, motion, background = m.groups()
        unknown = []
        if colour not in COLOURS:
            unknown.append(f"colour {colour!r} (known: {list(COLOURS)})")
        if shape not in SHAPES:
            unknown.append(f"shape {shape!r} (known: {list(SHAPES)})")
        if motion not in MOTIONS:
            unknown.append(f"motion {motion!r} (known: {list(MOTIONS)})")
        if background not in BACKGROUNDS:
            unknown.append(f"background {background!r} (known: {list(BACKGROUNDS)})")
        if unknown:
            raise ValueError(f"caption {caption!r}: unknown " + "; unknown ".join(unknown))
        return cls(colour, shape, motion, background)


def world_vocabulary() -> list[str]:
    """Every (lowercase) word that can appear in a caption, sorted."""
    words = {"a", "an", "is", "on", "background"}
    for phrase in (*COLOURS, *SHAPES, *MOTIONS, *BACKGROUNDS):
        words.update(phrase.split())
    return sorted(words)


def is_held_out(spec: ShapeSpec) -> bool:
    return (spec.colour, spec.shape, spec.motion) in HELD_OUT


@lru_cache(maxsize=None)
def _specs(split: str) -> tuple[ShapeSpec, ...]:
    out = []
    for colour in COLOURS:
        for shape in SHAPES:
            for motion in MOTIONS:
                if (shape, motion) in INVISIBLE:
                    continue
                held = (colour, shape, motion) in HELD_OUT
                if (split == "train" and held) or (split == "held_out" and not held):
                    continue
                out.extend(ShapeSpec(colour, shape, motion, bg) for bg in BACKGROUNDS if bg != colour)
    return tuple(out)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def all_specs(split: str = "train") -> list[ShapeSpec]:
    """All specs of a split in a fixed order (colour, shape, motion, background)."""
    _check_split(split)
    return list(_specs(split))


def sample_spec(rng: np.random.Generator, split: str = "train") -> ShapeSpec:
    """One spec drawn uniformly from ``all_specs(split)``."""
    _check_split(split)
    specs = _specs(split)
    return specs[int(rng.integers(len(specs)))]


@dataclass
class Track:
    """Ground truth (or a checker reading) per frame; arrays of length F, NaN where unknown."""

    cx: np.ndarray  # centroid x in pixels (array-index coordinates, x right)
    cy: np.ndarray  # centroid y in pixels (y down)
    size: np.ndarray  # circumradius in pixels
    angle: np.ndarray  # degrees, clockwise on screen


def _check_video_args(num_frames: int, size: int) -> None:
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    if int(size) != size or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")


def make_track(spec: ShapeSpec, seed: int, num_frames: int = 16, size: int = 64) -> Track:
    """The ground-truth track of ``render_video(spec, seed, num_frames, size)`` without rendering it.

    Start position, size, speed and angle come from ``np.random.default_rng(seed)``; motion is linear in
    time (geometric for the size), and the object stays inside the frame with a 1 px margin.
    """
    _check_video_args(num_frames, size)
    rng = np.random.default_rng(seed)
    S = float(size)
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    angle0 = rng.uniform(0.0, 360.0)
    motion = spec.motion
    if motion == "getting closer":
        r0, growth = rng.uniform(0.10, 0.12) * S, rng.uniform(1.6, 2.0)
        radius = r0 * growth**t
    elif motion == "moving away":
        r0, growth = rng.uniform(0.18, 0.22) * S, rng.uniform(1.6, 2.0)
        radius = r0 * growth ** (-t)
    else:
        radius = np.full_like(t, rng.uniform(0.13, 0.19) * S)
    margin = float(radius.max()) + 1.0
    lo, hi = margin - 0.5, S - 0.5 - margin  # allowed centre range (pixel centres at 0..S-1)
    cx = np.full_like(t, rng.uniform(lo, hi))
    cy = np.full_like(t, rng.uniform(lo, hi))
    angle = np.full_like(t, angle0)
    if motion in ("moving left to right", "moving right to left", "moving up", "moving down"):
        dist = min(rng.uniform(0.30, 0.45) * S, hi - lo)
        start = rng.uniform(lo, hi - dist)
        dist, start = hi - lo, lo  # edge to edge (the two draws above keep every later draw where it was)
        path = start + dist * t
        if motion == "moving left to right":
            cx = path
        elif motion == "moving right to left":
            cx = path[::-1].copy()
        elif motion == "moving down":
            cy = path
        else:
            cy = path[::-1].copy()
    elif motion == "spinning":
        turn = rng.uniform(100.0, 180.0) * rng.choice([-1.0, 1.0])
        angle = angle0 + turn * t
    return Track(cx=cx, cy=cy, size=radius, angle=angle)


def _edge(shape: str) -> tuple[float, float, float, float]:
    """(half period rad, normal x, normal y, offset) of the boundary line in a folded sector, unit radius.

    In polar coordinates folded into [0, half period], the shape is {p : n . p <= offset}.
    """
    if shape == "star":
        half = np.pi / 5
        p1 = np.array([1.0, 0.0])
        p2 = STAR_INNER_RATIO * np.array([np.cos(half), np.sin(half)])
    else:
        n = {"square": 4, "triangle": 3}[shape]
        half = np.pi / n
        p1 = np.array([1.0, 0.0])
        p2 = np.cos(half) * np.array([np.cos(half), np.sin(half)])  # edge midpoint
    d = p2 - p1
    normal = np.array([d[1], -d[0]]) / np.hypot(*d)
    if normal @ p1 < 0:
        normal = -normal
    return half, float(normal[0]), float(normal[1]), float(normal @ p1)


def _coverage(
    shape: str, dx: np.ndarray, dy: np.ndarray, radius: np.ndarray, angle: np.ndarray
) -> np.ndarray:
    """Boolean inside-test for sample offsets (dx, dy) from the centre; radius/angle broadcast per frame."""
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    half, nx, ny, off = _edge(shape)
    rho = np.hypot(dx, dy)
    phi = np.mod(np.arctan2(dy, dx) - np.deg2rad(angle).astype(np.float32), np.float32(2 * half))
    phi = np.minimum(phi, np.float32(2 * half) - phi)
    return rho * (np.float32(nx) * np.cos(phi) + np.float32(ny) * np.sin(phi)) <= np.float32(off) * radius


def rasterize(spec: ShapeSpec, track: Track, size: int = 64, world: World = WORLD) -> np.ndarray:
    """Draw the spec's shape along ``track`` on the ``world``'s backdrop: uint8 (F, size, size, 3), anti-aliased,
    flat colours exact."""
    F = len(track.cx)
    bg = np.array(BACKGROUNDS[spec.background], np.float32)
    fg = np.array(COLOURS[spec.colour], np.float32)
    if F == 0:
        return np.empty((0, size, size, 3), np.uint8)
    box = int(np.ceil(2 * float(np.max(track.size)) + 3))  # crop side in pixels, same for all frames
    x0 = np.floor(track.cx - box / 2 + 0.5).astype(int)  # crop origin per frame
    y0 = np.floor(track.cy - box / 2 + 0.5).astype(int)
    k = SUPERSAMPLE
    sub = (np.arange(box * k) + 0.5) / k - 0.5  # sample positions inside the crop, pixel units
    # float32 halves the cost of the trigonometry; sub-sample positions need only ~1e-3 px precision
    dx = (x0 - track.cx)[:, None, None] + sub[None, None, :]  # (F, 1, box*k)
    dy = (y0 - track.cy)[:, None, None] + sub[None, :, None]  # (F, box*k, 1)
    dx, dy = dx.astype(np.float32), dy.astype(np.float32)
    radius = track.size[:, None, None].astype(np.float32)
    inside = _coverage(spec.shape, dx, dy, radius, track.angle[:, None, None])  # (F, box*k, box*k)
    cov = inside.reshape(F, box, k, box, k).mean(axis=(2, 4), dtype=np.float32)  # (F, box, box)
    patch = bg + cov[..., None] * (fg - bg)  # (F, box, box, 3); cov == 1 gives fg exactly
    # the backdrop's offset from the flat background colour (zero for a flat one); every pixel's background part
    # (1 - object coverage) shows it
    extra = backdrop(spec, size, world)
    extra = np.zeros((size, size, 3), np.float32) if extra is None else extra
    out = np.broadcast_to(bg + extra, (F, size, size, 3)).copy()
    for f in range(F):
        ya, xa = max(y0[f], 0), max(x0[f], 0)
        yb, xb = min(y0[f] + box, size), min(x0[f] + box, size)
        if ya < yb and xa < xb:
            src = (f, slice(ya - y0[f], yb - y0[f]), slice(xa - x0[f], xb - x0[f]))
            out[f, ya:yb, xa:xb] = patch[src] + (1.0 - cov[src])[..., None] * extra[ya:yb, xa:xb]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def band_mask(motion: str, size: int, world: World = WORLD) -> np.ndarray | None:
    """(size, size) bool: the ``world``'s strip for ``motion``, its ``band_px`` pixels along the edge a translation
    heads for; None where no strip is drawn: a motion without one (every motion but the translations), a world
    without strips, a frame under ``world.min_band_frame``."""
    if motion not in DIRECTIONS or not world.draws_band(size):
        return None
    ux, uy = DIRECTIONS[motion]
    idx = np.arange(size)
    lead = idx >= size - world.band_px if ux + uy > 0 else idx < world.band_px  # right/bottom or left/top edge
    return np.broadcast_to(lead[None, :] if ux else lead[:, None], (size, size)).copy()


def backdrop(spec: ShapeSpec, size: int, world: World = WORLD) -> np.ndarray | None:
    """(size, size, 3) float32 the ``world``'s backdrop adds to the flat background colour, or None when it adds
    nothing: a motion without a strip (``band_mask``), or a frame under ``world.min_band_frame``."""
    mask = band_mask(spec.motion, size, world)
    if mask is None:
        return None
    delta = np.array(BAND_COLOURS[spec.motion], np.float32) - np.array(BACKGROUNDS[spec.background], np.float32)
    return (mask[..., None] * delta).astype(np.float32)


def render_video(
    spec: ShapeSpec, seed: int, num_frames: int = 16, size: int = 64, world: World = WORLD
) -> tuple[np.ndarray, Track]:
    """Frames uint8 (F, size, size, 3) and the ground-truth ``Track``; deterministic in all arguments."""
    track = make_track(spec, seed, num_frames, size)
    return rasterize(spec, track, size, world), track


def image_frame_index(seed: int, num_frames: int = 16) -> int:
    """The frame of video ``seed`` that ``render_image`` shows."""
    return int(np.random.default_rng([int(seed), 1]).integers(num_frames))


def render_image(spec: ShapeSpec, seed: int, size: int = 64, world: World = WORLD) -> np.ndarray:
    """One frame (uint8 (size, size, 3)) of ``render_video(spec, seed, 16, size)`` at a seed-chosen index."""
    track = make_track(spec, seed, 16, size)
    i = image_frame_index(seed, 16)
    one = Track(*(a[i : i + 1] for a in (track.cx, track.cy, track.size, track.angle)))
    return rasterize(spec, one, size, world)[0]


def make_dataset(
    n: int, seed: int, split: str = "train", num_frames: int = 16, size: int = 64
) -> list[tuple[ShapeSpec, int]]:
    """``n`` (spec, video_seed) pairs drawn from ``split``; deterministic in ``seed``.

    Videos are rendered lazily by the caller with ``render_video(spec, video_seed, num_frames, size)``.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    _check_split(split)
    _check_video_args(num_frames, size)
    rng = np.random.default_rng(seed)
    return [(sample_spec(rng, split), int(rng.integers(2**31 - 1))) for _ in range(int(n))]
