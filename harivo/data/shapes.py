"""The shapes world: a procedurally generated text-to-video world with known ground truth.

HARIVO (ECCV 2024) is trained on WebVid-10M and evaluated with prompts like the ones of its Table A3
("a horse is running", "a car is moving left to right", ...). This module is the embedded stand-in for that
data: one coloured shape on a plain background, doing one of eight motions, captioned in the same style:

    "a red circle is moving left to right on a gray background"

Every video is a pure function of ``(spec, seed, num_frames, size)``, and each one comes with a ``Track``
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
- **Every frame shows its motion** (the *cue*, world version ``WORLD_VERSION``), as a photograph of a runner
  shows the lean: a high-contrast *mark* inside the object (black or white, whichever is farther from the
  object's colour), kept ``CUE_MARGIN`` of the radius away from the object's edge so that it never touches it:
    - moving left to right / right to left / up / down: one mark on the leading side (the object faces where it
      goes), its centre ``CUE_OFFSET`` x radius from the object's centre;
    - getting closer: one mark in the centre (the object faces the viewer);
    - moving away: two marks side by side (``CUE_PAIR_OFFSET``), the object's back;
    - spinning: one mark towards the object's first corner, so it turns with the object;
    - standing still: no mark.
  The mark changes neither the object's colour name, nor its centroid, size, shape or angle as the checker
  reads them (``harivo.data.checker`` fills the mark in before measuring); the checker reads the mark back per
  frame (``FrameReading.cue``). Frames under ``CUE_MIN_FRAME`` pixels (tests' 32-px videos) show no mark. ``cue=False`` renders the world as it was before the cue (version "plain").

Why one file of ~470 lines: the world's definition, its renderer and the cue it draws share the palette and the
shape coverage test; the two experimental cue styles (``CUE_STYLES``: cue2, cue3) and the proxy settings of tracks
(``HARIVO_TRACKS=crossing``), backdrop (``HARIVO_BACKDROP=band``) and object size (``HARIVO_OBJECTS=large``, the small
world of 32-px frames), all experiments toward videos that follow the verb, go when one is adopted for good.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
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
# The cue's drawing: "cue1" (a round mark of CUE_RADIUS) or "cue2" (the leading half of the object, the
# object's "face": a cue 4x larger, proposed because the T2I learned where a cue1 mark sits too slowly), or
# "cue3" (a label: a centred disk whose colour names the motion, CUE3_COLOURS; proposed because the T2I learned
# neither where a cue1/cue2 mark sits nor its shape, only whether there is one, while it learns colours from
# words at 100 %).
# HARIVO_CUE_STYLE selects one for experiments; the style is the world version.
CUE_STYLES = ("cue1", "cue2", "cue3", "plain")
CUE_STYLE = os.environ.get("HARIVO_CUE_STYLE", "cue1")
if CUE_STYLE not in CUE_STYLES:
    raise ValueError(f"HARIVO_CUE_STYLE must be one of {CUE_STYLES}, got {CUE_STYLE!r}")
# How translations are drawn: "random" (0.30-0.45 of the frame from a random start) or, for the motion-cue proxy worlds,
# "crossing" (from one allowed edge to the other, so that the verb alone fixes the position along the axis in
# every frame; scripts/world_oracle.py measures what that is worth). HARIVO_TRACKS selects it for experiments.
TRACK_STYLES = ("random", "crossing")
TRACK_STYLE = os.environ.get("HARIVO_TRACKS", "random")
if TRACK_STYLE not in TRACK_STYLES:
    raise ValueError(f"HARIVO_TRACKS must be one of {TRACK_STYLES}, got {TRACK_STYLE!r}")
# The backdrop: "flat" (one colour) or, for the motion-cue proxy worlds, "band": a translation's frame shows a strip of
# BACKDROP_BAND pixels in its label colour (CUE3_COLOURS) along the edge the object heads for, under the object: a
# cue of the motion at a fixed place in every frame, which the caption-only prediction at t ~ T keeps (an on-object
# cue is averaged away over the object's unknown position). A brightness ramp toward that edge (+-20 levels) was
# tried first: the shapes VAE kept 3 % of its amplitude (median). "band2" gives the other labelled motions (getting
# closer, moving away, spinning) a strip too, in their label colour along the top edge (BAND2_EDGE): in the band world
# their only cue is the on-object label, averaged away at t ~ T as a translation's was, and their videos hardly change
# size. HARIVO_BACKDROP selects one for experiments.
BACKDROP_STYLES = ("flat", "band", "band2")
BACKDROP_STYLE = os.environ.get("HARIVO_BACKDROP", "flat")
if BACKDROP_STYLE not in BACKDROP_STYLES:
    raise ValueError(f"HARIVO_BACKDROP must be one of {BACKDROP_STYLES}, got {BACKDROP_STYLE!r}")
# Object size: "normal" or, for the small-world proxy, "large": every radius OBJECT_SCALE["large"] times the
# normal share of the frame, so that 32-px frames (a quarter of the pixels; measured: a stage-2 step about half the
# 64-px world's, a T2I step 1.3x cheaper) still show a cue3 label and the band (CUE_MIN_FRAME falls to 32).
# HARIVO_OBJECTS selects it.
OBJECT_STYLES = ("normal", "large")
OBJECT_STYLE = os.environ.get("HARIVO_OBJECTS", "normal")
if OBJECT_STYLE not in OBJECT_STYLES:
    raise ValueError(f"HARIVO_OBJECTS must be one of {OBJECT_STYLES}, got {OBJECT_STYLE!r}")
OBJECT_SCALE = {"normal": 1.0, "large": 1.4}
BACKDROP_BAND = 4  # pixels (one latent pixel of the x4 shapes VAE)
BAND2_EDGE = (0.0, -1.0)  # "band2": the edge (as a CUE_DIRECTIONS vector) of a size change's or a spin's strip


def world_record() -> dict:
    """This world as checkpoints record it: its version and the HARIVO_* settings that select it."""
    return {"version": WORLD_VERSION, "env": world_env()}


def world_env() -> dict[str, str]:
    """The HARIVO_* settings of this world that differ from the default world's (each style list's first), as the
    environment variables that select them: what a command must set to run in this world again."""
    return {name: value for name, value, styles in _WORLD_SETTINGS if value != styles[0]}


# (environment variable, this world's value, the choices, the default first) of every world setting
_WORLD_SETTINGS = (("HARIVO_CUE_STYLE", CUE_STYLE, CUE_STYLES), ("HARIVO_TRACKS", TRACK_STYLE, TRACK_STYLES),
                   ("HARIVO_BACKDROP", BACKDROP_STYLE, BACKDROP_STYLES), ("HARIVO_OBJECTS", OBJECT_STYLE, OBJECT_STYLES))
# part of every cache key built from rendered videos; bump when the pictures change: the cue style, then every other
# setting that is not its default
WORLD_VERSION = "-".join([CUE_STYLE] + [value for _, value, styles in _WORLD_SETTINGS[1:] if value != styles[0]])
CUE_OFFSET = 0.30  # facing mark: centre distance from the object's centre, x circumradius
CUE_RADIUS = 0.28  # mark radius, x circumradius
CUE_PAIR_OFFSET = 0.30  # "moving away": the two marks at +-this (horizontal), x circumradius
CUE_PAIR_RADIUS = 0.19
CUE2_CENTRE_RADIUS = 0.45  # cue2 "getting closer": a centred disk, x circumradius
CUE2_PAIR_OFFSET = 0.38  # cue2 "moving away": two disks at +-this (horizontal) ...
CUE2_PAIR_RADIUS = 0.26  # ... of this radius
CUE3_RADIUS = 0.45  # cue3: the label disk's radius, x circumradius (clipped to the shape shrunk by CUE_MARGIN)
CUE3_COLOURS: dict[str, tuple[int, int, int]] = {  # cue3: the label's colour per motion, off the object palette
    # (>= 89 from every object colour, >= 125 from each other, >= 60 off every object-to-mark blend, so that a
    # cue1/cue2 mark's anti-aliased rim never reads as a label)
    "moving left to right": (0, 225, 225),  # cyan
    "moving right to left": (230, 0, 230),  # magenta
    "moving up": (150, 255, 60),  # lime
    "moving down": (135, 0, 0),  # maroon
    "getting closer": (0, 240, 0),  # bright green
    "moving away": (0, 0, 110),  # navy
    "spinning": (0, 128, 128),  # teal (not gray: gray lies on the black-white blends of cue1/cue2 marks)
}
# frames smaller than this (pixels) show no mark: an object of a 32-px frame is 3-6 px wide (large: radius 6-9 px)
CUE_MIN_FRAME = 32 if OBJECT_STYLE == "large" else 48
CUE_MARGIN = 0.20  # the mark is clipped to the shape shrunk by this fraction, so it never reaches the edge
CUE_DIRECTIONS: dict[str, tuple[float, float]] = {  # motion -> unit vector the mark sits along (x right, y down)
    "moving left to right": (1.0, 0.0),
    "moving right to left": (-1.0, 0.0),
    "moving up": (0.0, -1.0),
    "moving down": (0.0, 1.0),
}


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
    S_obj = S * OBJECT_SCALE[OBJECT_STYLE]  # the radii's unit: the frame side, scaled in the large-object world
    if motion == "getting closer":
        r0, growth = rng.uniform(0.10, 0.12) * S_obj, rng.uniform(1.6, 2.0)
        radius = r0 * growth**t
    elif motion == "moving away":
        r0, growth = rng.uniform(0.18, 0.22) * S_obj, rng.uniform(1.6, 2.0)
        radius = r0 * growth ** (-t)
    else:
        radius = np.full_like(t, rng.uniform(0.13, 0.19) * S_obj)
    margin = float(radius.max()) + 1.0
    lo, hi = margin - 0.5, S - 0.5 - margin  # allowed centre range (pixel centres at 0..S-1)
    cx = np.full_like(t, rng.uniform(lo, hi))
    cy = np.full_like(t, rng.uniform(lo, hi))
    angle = np.full_like(t, angle0)
    if motion in ("moving left to right", "moving right to left", "moving up", "moving down"):
        dist = min(rng.uniform(0.30, 0.45) * S, hi - lo)
        start = rng.uniform(lo, hi - dist)
        if TRACK_STYLE == "crossing":  # the same draws (the rest of the video unchanged), then edge to edge
            dist, start = hi - lo, lo
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


def mark_rgb(rgb) -> tuple[int, int, int]:
    """The cue mark's colour on an object of colour ``rgb``: black or white, whichever is farther from it."""
    fg = np.asarray(rgb, float)
    black, white = np.array(COLOURS["black"], float), np.array(COLOURS["white"], float)
    return COLOURS["black"] if np.linalg.norm(fg - black) >= np.linalg.norm(fg - white) else COLOURS["white"]


def mark_colour(colour: str) -> tuple[int, int, int]:
    """The cue mark's colour on an object of the palette colour ``colour`` (``mark_rgb`` of it)."""
    return mark_rgb(COLOURS[colour])


def cue_marks(motion: str, angle_deg: np.ndarray, style: str | None = None) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The cue's marks for ``motion``: [(centre x, centre y, radius)] in units of the circumradius, per frame
    (centres are arrays of length F, following ``angle_deg`` for "spinning"); [] for "standing still".
    ``style``: one of ``CUE_STYLES`` (default ``CUE_STYLE``, the world's).

    A radius of ``np.inf`` (cue2's translations and spinning) is the half plane on the centre's side: the
    leading half of the object."""
    F = len(angle_deg)
    zero = np.zeros(F)
    style = _cue_style(style)
    if style == "plain":  # no mark: the object is drawn in its colour alone (a band backdrop may still show the motion)
        return []
    if style == "cue3":
        return [] if motion not in CUE3_COLOURS else [(zero, zero, CUE3_RADIUS)]
    half = style == "cue2"
    r_face = np.inf if half else CUE_RADIUS
    if motion in CUE_DIRECTIONS:
        ux, uy = CUE_DIRECTIONS[motion]
        return [(zero + CUE_OFFSET * ux, zero + CUE_OFFSET * uy, r_face)]
    if motion == "getting closer":
        return [(zero, zero, CUE2_CENTRE_RADIUS if half else CUE_RADIUS)]
    if motion == "moving away":
        off, r = (CUE2_PAIR_OFFSET, CUE2_PAIR_RADIUS) if half else (CUE_PAIR_OFFSET, CUE_PAIR_RADIUS)
        return [(zero - off, zero, r), (zero + off, zero, r)]
    if motion == "spinning":
        a = np.deg2rad(np.asarray(angle_deg, float))
        return [(CUE_OFFSET * np.cos(a), CUE_OFFSET * np.sin(a), r_face)]
    return []


def _cue_style(style: str | None) -> str:
    if style is None:
        return CUE_STYLE
    if style not in CUE_STYLES:
        raise ValueError(f"cue: expected True, False or one of {CUE_STYLES}, got {style!r}")
    return style


def _mark_on(dx, dy, radius, marks) -> np.ndarray:
    """Sub-samples (offsets ``dx``, ``dy`` from the centre) that ``marks`` cover (see ``cue_marks``)."""
    on = np.zeros(np.broadcast_shapes(dx.shape, dy.shape), bool)
    for mx, my, mr in marks:
        mx = (mx[:, None, None] * radius).astype(np.float32)
        my = (my[:, None, None] * radius).astype(np.float32)
        if np.isinf(mr):  # the half plane on the (mx, my) side of the centre
            on |= dx * mx + dy * my >= 0
        else:
            ex, ey = dx - mx, dy - my
            on |= ex * ex + ey * ey <= (np.float32(mr) * radius) ** 2
    return on


def rasterize(spec: ShapeSpec, track: Track, size: int = 64, cue: bool | str = True) -> np.ndarray:
    """Draw the spec's shape along ``track``: uint8 (F, size, size, 3), anti-aliased, flat colours exact.

    With ``cue`` (the world's default) the frame also shows its motion as a mark inside the object (module
    docstring) in the world's style ``CUE_STYLE``, or in the style named (``cue="cue2"``); ``cue=False`` draws
    the plain object."""
    style = _cue_style(None if cue is True or cue is False else cue)
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
    marks = cue_marks(spec.motion, track.angle, style) if cue and size >= CUE_MIN_FRAME else []
    if marks and (spec.shape, spec.motion) not in INVISIBLE:
        core = _coverage(spec.shape, dx, dy, radius * np.float32(1.0 - CUE_MARGIN), track.angle[:, None, None])
        on = _mark_on(dx, dy, radius, marks)
        mcov = (on & core).reshape(F, box, k, box, k).mean(axis=(2, 4), dtype=np.float32)
        mark = CUE3_COLOURS[spec.motion] if style == "cue3" else mark_colour(spec.colour)
        patch = patch + mcov[..., None] * (np.array(mark, np.float32) - fg)
    # the backdrop's offset from the flat background colour (zero for a flat one); every pixel's background part
    # (1 - object coverage) shows it
    extra = backdrop(spec, size) if cue is not False else None
    extra = np.zeros((size, size, 3), np.float32) if extra is None else extra
    out = np.broadcast_to(bg + extra, (F, size, size, 3)).copy()
    for f in range(F):
        ya, xa = max(y0[f], 0), max(x0[f], 0)
        yb, xb = min(y0[f] + box, size), min(x0[f] + box, size)
        if ya < yb and xa < xb:
            src = (f, slice(ya - y0[f], yb - y0[f]), slice(xa - x0[f], xb - x0[f]))
            out[f, ya:yb, xa:xb] = patch[src] + (1.0 - cov[src])[..., None] * extra[ya:yb, xa:xb]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def band_motions(style: str | None = None) -> tuple[str, ...]:
    """The motions whose frames a band backdrop of ``style`` (default: the world's; "flat" reads as "band") gives
    a strip: the translations, and with "band2" every labelled motion."""
    return tuple(CUE3_COLOURS) if (style or BACKDROP_STYLE) == "band2" else tuple(CUE_DIRECTIONS)


def band_mask(motion: str, size: int, style: str | None = None) -> np.ndarray | None:
    """(size, size) bool: the strip of a band backdrop of ``style`` (default: the world's; "flat" reads as "band")
    for ``motion``: the BACKDROP_BAND pixels along the edge a translation heads for, with "band2" along BAND2_EDGE
    for the other labelled motions; None for a motion without one."""
    if motion not in band_motions(style):
        return None
    ux, uy = CUE_DIRECTIONS.get(motion, BAND2_EDGE)
    idx = np.arange(size)
    lead = idx >= size - BACKDROP_BAND if ux + uy > 0 else idx < BACKDROP_BAND  # right/bottom or left/top edge
    return np.broadcast_to(lead[None, :] if ux else lead[:, None], (size, size)).copy()


def backdrop(spec: ShapeSpec, size: int, style: str | None = None) -> np.ndarray | None:
    """(size, size, 3) float32 the backdrop adds to the flat background colour, or None when it adds nothing: a
    flat backdrop, a motion without a strip (``band_motions``), or a frame under ``CUE_MIN_FRAME``."""
    if (style or BACKDROP_STYLE) == "flat" or size < CUE_MIN_FRAME:
        return None
    mask = band_mask(spec.motion, size, style)
    if mask is None:
        return None
    delta = np.array(CUE3_COLOURS[spec.motion], np.float32) - np.array(BACKGROUNDS[spec.background], np.float32)
    return (mask[..., None] * delta).astype(np.float32)


def render_video(
    spec: ShapeSpec, seed: int, num_frames: int = 16, size: int = 64, cue: bool | str = True
) -> tuple[np.ndarray, Track]:
    """Frames uint8 (F, size, size, 3) and the ground-truth ``Track``; deterministic in all arguments."""
    track = make_track(spec, seed, num_frames, size)
    return rasterize(spec, track, size, cue), track


def image_frame_index(seed: int, num_frames: int = 16) -> int:
    """The frame of video ``seed`` that ``render_image`` shows."""
    return int(np.random.default_rng([int(seed), 1]).integers(num_frames))


def render_image(spec: ShapeSpec, seed: int, size: int = 64, cue: bool | str = True) -> np.ndarray:
    """One frame (uint8 (size, size, 3)) of ``render_video(spec, seed, 16, size)`` at a seed-chosen index."""
    track = make_track(spec, seed, 16, size)
    i = image_frame_index(seed, 16)
    one = Track(*(a[i : i + 1] for a in (track.cx, track.cy, track.size, track.angle)))
    return rasterize(spec, one, size, cue)[0]


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
