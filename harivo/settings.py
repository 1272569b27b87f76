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
from dataclasses import asdict, dataclass, field

from .config import check_fields, field_range, setting
from .sampling import CFGSchedule, MGConfig

# flat name (app API parameter, `explorer.RunRequest` field, CLI dest) -> where it lives in GenerationSettings
FLAT: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt",), "negative_prompt": ("negative_prompt",), "seed": ("seed",),
    "num_frames": ("num_frames",), "num_inference_steps": ("num_inference_steps",),
    "cfg_high": ("cfg", "high"), "cfg_low": ("cfg", "low"), "cfg_switch": ("cfg", "switch"),
    "use_mg": ("mg", "enabled"), "mg_alpha": ("mg", "alpha"), "mg_symmetric": ("mg", "symmetric"),
    "use_mapping": ("use_mapping",), "use_frame_tokens": ("use_frame_tokens",), "use_motion": ("use_motion",),
    "height": ("height",), "width": ("width",),
    "capture_attention": ("capture_attention",), "keep_attention_per_step": ("keep_attention_per_step",),
}  # fmt: skip
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

    def validate(self) -> "GenerationSettings":
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
        for name, path in FLAT.items():
            value = self
            for part in path:
                value = getattr(value, part)
            out[name] = value
        return out

    @classmethod
    def from_flat(cls, **values) -> "GenerationSettings":
        """Settings from flat names (FLAT); names not given keep their defaults. Not validated."""
        unknown = sorted(set(values) - set(FLAT))
        if unknown:
            raise ValueError(f"settings: unknown names {unknown}; expected some of {list(FLAT)}")
        top: dict = {}
        nested: dict[str, dict] = {name: {} for name in NESTED}
        for name, value in values.items():
            path = FLAT[name]
            (nested[path[0]] if len(path) == 2 else top)[path[-1]] = value
        return cls(**top, **{name: NESTED[name](**kw) for name, kw in nested.items()})


def defaults() -> dict:
    """{flat name: default}: read the defaults from here (or the dataclasses), never restate a number."""
    return GenerationSettings().flat()


def flat_range(name: str, slider: bool = False) -> tuple[float | None, float | None]:
    """(low, high) that the flat setting `name` accepts, or with `slider` the range the app shows."""
    path = FLAT[name]
    owner = NESTED[path[0]] if len(path) == 2 else GenerationSettings
    return field_range(owner, path[-1], slider)


# ------------------------------------------------------------------------------------------------ CLI flags
# (flat name, flag, help) of `python -m harivo.generate` (docs/design.md §3); a `--no-` flag switches off a
# setting that is on by default. Defaults come from GenerationSettings.
CLI_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("prompt", "--prompt", "text prompt"),
    ("negative_prompt", "--negative-prompt", "negative prompt (the unconditional branch of CFG)"),
    ("seed", "--seed", "seed of the initial noise (same seed ⇒ same video)"),
    ("num_frames", "--frames", "number of frames"),
    ("height", "--height", "video height in px (default: the UNet's native size)"),
    ("width", "--width", "video width in px (default: the UNet's native size)"),
    ("num_inference_steps", "--steps", "DDIM steps (App. D)"),
    ("cfg_high", "--cfg-high", "CFG scale while t > switch·T (App. D: 10–15)"),
    ("cfg_low", "--cfg-low", "CFG scale after the switch (App. D)"),
    ("cfg_switch", "--cfg-switch", "switch point as a fraction of T (App. D)"),
    ("mg_alpha", "--alpha", "MG strength α (§4)"),
    ("mg_symmetric", "--mg-symmetric", "full Eq. 7 gradient instead of Algorithm 1"),
    ("use_mapping", "--no-mapping", "skip the mapping network"),
    ("use_frame_tokens", "--no-frame-tokens", "skip the frame-wise tokens"),
    ("use_mg", "--no-mg", "skip mitigating-gradient sampling"),
    ("use_motion", "--no-motion", "frozen T2I model on each frame (temporal layers off)"),
    ("capture_attention", "--no-attention", "do not record cross-attention maps"),
)


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, required: tuple[str, ...] = ("prompt",),
                  only: tuple[str, ...] | None = None, with_defaults: bool = True) -> None:
    """The CLI flags of the generation settings (CLI_FLAGS; `only` some of them), dest = the flat name.
    `with_defaults=False` leaves the value flags at None ("not given"), for callers with defaults of their own."""
    values = defaults()
    for name, flag, text in CLI_FLAGS:
        if only is not None and name not in only:
            continue
        default = values[name]
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action="store_false" if flag.startswith("--no-") else "store_true",
                                help=text)
            continue
        shown = f" (default: {default:g})" if isinstance(default, (int, float)) else ""
        parser.add_argument(flag, dest=name, type=type(default) if default is not None else int,
                            default=default if with_defaults else None, required=name in required, help=text + shown,
                            metavar=flag.removeprefix("--").replace("-", "_").upper())


def from_args(args: argparse.Namespace) -> GenerationSettings:
    """GenerationSettings from the flags of `add_arguments` (those given; not validated)."""
    return GenerationSettings.from_flat(**{name: getattr(args, name) for name, _, _ in CLI_FLAGS
                                           if getattr(args, name, None) is not None})
