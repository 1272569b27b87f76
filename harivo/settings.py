"""What determines one video: `GenerationSettings`, the one owner of the generation settings' defaults and
validation (§3.2, §3.5, §3.7, App. D). The CLI (`python -m harivo.generate`), the app (`harivo.explorer`) and
the evaluation build on it instead of restating defaults or ranges.

The settings nest the CFG schedule and MG (`sampling.CFGSchedule`, `sampling.MGConfig`); the CLI, the app's API
and its request name them flat (`cfg_high`, `mg_alpha`, `use_mg`, ...). `FLAT` maps the flat names onto the
nested fields, `GenerationSettings.flat()` / `from_flat()` translate, and `add_arguments` / `from_args` make the
CLI flags of the documented interface from them (docs/design.md §3).
"""

from __future__ import annotations

import argparse
import math
import typing
from dataclasses import asdict, dataclass, field

from .config import check_fields, field_range, setting
from .sampling import CFGSchedule, MGConfig


@dataclass(frozen=True)
class Flat:
    """A generation setting under its flat name: where it lives in GenerationSettings, and its CLI flag."""

    path: tuple[str, ...]  # ("mg", "alpha"): GenerationSettings.mg.alpha
    flag: str | None = None  # flag of `python -m harivo.generate` (docs/design.md §3); "--no-X" switches off
    help: str = ""


# flat name (app API parameter, `explorer.RunRequest` field, CLI dest) -> Flat; defaults: GenerationSettings
FLAT: dict[str, Flat] = {
    "prompt": Flat(("prompt",), "--prompt", "text prompt"),
    "negative_prompt": Flat(("negative_prompt",), "--negative-prompt", "negative prompt (CFG's unconditional branch)"),
    "seed": Flat(("seed",), "--seed", "seed of the initial noise (same seed ⇒ same video)"),
    "num_frames": Flat(("num_frames",), "--frames", "number of frames"),
    "num_inference_steps": Flat(("num_inference_steps",), "--steps", "DDIM steps (App. D)"),
    "cfg_high": Flat(("cfg", "high"), "--cfg-high", "CFG scale while t > switch·T (App. D: 10–15)"),
    "cfg_low": Flat(("cfg", "low"), "--cfg-low", "CFG scale after the switch (App. D)"),
    "cfg_switch": Flat(("cfg", "switch"), "--cfg-switch", "switch point as a fraction of T (App. D)"),
    "use_mg": Flat(("mg", "enabled"), "--no-mg", "skip mitigating-gradient sampling"),
    "mg_alpha": Flat(("mg", "alpha"), "--alpha", "MG strength α (§4)"),
    "mg_symmetric": Flat(("mg", "symmetric"), "--mg-symmetric", "full Eq. 7 gradient instead of Algorithm 1"),
    "use_mapping": Flat(("use_mapping",), "--no-mapping", "skip the mapping network"),
    "use_frame_tokens": Flat(("use_frame_tokens",), "--no-frame-tokens", "skip the frame-wise tokens"),
    "use_motion": Flat(("use_motion",), "--no-motion", "frozen T2I model on each frame (temporal layers off)"),
    "height": Flat(("height",), "--height", "video height in px (default: the UNet's native size)"),
    "width": Flat(("width",), "--width", "video width in px (default: the UNet's native size)"),
    "capture_attention": Flat(("capture_attention",), "--no-attention", "do not record cross-attention maps"),
    "keep_attention_per_step": Flat(("keep_attention_per_step",)),
}
NESTED = {"cfg": CFGSchedule, "mg": MGConfig}


@dataclass
class GenerationSettings:
    """Everything that determines a video (saved in config.json next to it)."""

    prompt: str = ""  # required: `validate` refuses an empty one
    negative_prompt: str = ""
    seed: int = setting(0, low=0, high=2**63 - 1, integer=True)  # same seed ⇒ same initial noise
    # shapes-world videos have 16 frames; the upper bound is the model's (motion modules' max length)
    num_frames: int = setting(16, low=2, integer=True)
    num_inference_steps: int = setting(25, low=1, integer=True, slider=(1, 50))  # App. D: DDIM, 25 steps
    cfg: CFGSchedule = field(default_factory=CFGSchedule)  # App. D schedule: 12.5 while t > 0.7T, 7.5 after
    mg: MGConfig = field(default_factory=MGConfig)  # §3.7
    use_mapping: bool = True  # §3.2 (off in effect when the model has none)
    use_frame_tokens: bool = True  # §3.5 (off in effect when the model has none, or without temporal layers)
    use_motion: bool = True  # False: the frozen T2I model on every frame independently
    height: int | None = setting(None, low=8, high=4096, integer=True)  # default: UNet sample size × VAE factor
    width: int | None = setting(None, low=8, high=4096, integer=True)
    capture_attention: bool = True  # record frame-wise cross-attention maps
    keep_attention_per_step: bool = True  # per-step maps (else only the mean over steps)

    def validate(self) -> GenerationSettings:
        """ValueError naming the argument for anything no model can do (the model's own limits:
        `HarivoPipeline.check`)."""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("prompt: expected a non-empty text prompt")
        if not isinstance(self.negative_prompt, str):
            raise ValueError(f"negative_prompt: expected a text, got {self.negative_prompt!r}")
        check_fields(self)
        self.cfg.validate()
        self.mg.validate()
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def flat(self) -> dict:
        """{flat name: value}, see FLAT."""
        out = {}
        for name, spec in FLAT.items():
            value = self
            for part in spec.path:
                value = getattr(value, part)
            out[name] = value
        return out

    @classmethod
    def from_flat(cls, **values) -> GenerationSettings:
        """Settings from flat names (FLAT); names not given keep their defaults. Not validated."""
        unknown = sorted(set(values) - set(FLAT))
        if unknown:
            raise ValueError(f"settings: unknown names {unknown}; expected some of {list(FLAT)}")
        top: dict = {}
        nested: dict[str, dict] = {name: {} for name in NESTED}
        for name, value in values.items():
            path = FLAT[name].path
            (nested[path[0]] if len(path) == 2 else top)[path[-1]] = value
        return cls(**top, **{name: NESTED[name](**kw) for name, kw in nested.items()})


def defaults() -> dict:
    """{flat name: default}: read the defaults from here (or the dataclasses), never restate a number."""
    return GenerationSettings().flat()


def flat_type(name: str) -> type:
    """The type of the flat setting `name` (its dataclass field's: int, float, bool or str; `int | None` is int)."""
    path = FLAT[name].path
    owner = NESTED[path[0]] if len(path) == 2 else GenerationSettings
    kind = typing.get_type_hints(owner)[path[-1]]
    return next((a for a in typing.get_args(kind) if a is not type(None)), kind)


def whole_number(name: str, value) -> int:
    """An int from a UI number (gr.Number sends floats) or an API string; whole numbers only (an int as it is: a
    float cannot hold the largest seed). ValueError naming `name` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(f)


def coerce(name: str, value):
    """`value` as the type of the flat setting `name` (`flat_type`): how the app's request and API read their
    values. ValueError naming the setting when it is not one."""
    kind = flat_type(name)
    if kind is int:
        return whole_number(name, value)
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if kind is bool:
        return bool(value)
    return "" if value is None else str(value)


def flat_range(name: str, slider: bool = False) -> tuple[float | None, float | None]:
    """(low, high) that the flat setting `name` accepts, or with `slider` the range the app shows."""
    path = FLAT[name].path
    owner = NESTED[path[0]] if len(path) == 2 else GenerationSettings
    return field_range(owner, path[-1], slider)


# ------------------------------------------------------------------------------------------------ CLI flags
def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, required: tuple[str, ...] = ("prompt",),
                  only: tuple[str, ...] | None = None, with_defaults: bool = True) -> None:
    """The CLI flags of the generation settings (FLAT; `only` some of them), dest = the flat name.
    `with_defaults=False` leaves the value flags at None ("not given"), for callers with defaults of their own."""
    values = defaults()
    for name, spec in FLAT.items():
        if spec.flag is None or (only is not None and name not in only):
            continue
        default = values[name]
        if isinstance(default, bool):
            action = "store_false" if spec.flag.startswith("--no-") else "store_true"
            parser.add_argument(spec.flag, dest=name, action=action, help=spec.help)
            continue
        shown = f" (default: {default:g})" if isinstance(default, (int, float)) else ""
        parser.add_argument(spec.flag, dest=name, type=type(default) if default is not None else int,
                            default=default if with_defaults else None, required=name in required,
                            help=spec.help + shown, metavar=spec.flag.removeprefix("--").replace("-", "_").upper())


def from_args(args: argparse.Namespace, fallback: dict | None = None) -> GenerationSettings:
    """GenerationSettings from the flags of `add_arguments` (those given; not validated); a value flag left unset
    (None, `with_defaults=False`) takes `fallback`'s value (e.g. a checkpoint's recommended sampling), then the
    default."""
    given = {name: getattr(args, name) for name, f in FLAT.items() if f.flag and getattr(args, name, None) is not None}
    return GenerationSettings.from_flat(**{**(fallback or {}), **given})
