"""The app's inputs: each one's label (what the page shows) and what the app accepts, and `check_values`, the one
rule for input: a value the app does not accept is refused with one message,

    "<label>: expected <what the field accepts>, got <value>"

never clamped, rounded or replaced by another. The page builds its fields from here (labels, the ranges shown
under them) with components that pass what the visitor typed through unchanged (`gr.Number` without bounds: a
`gr.Slider` clamps a typed value on the client, and its server-side check loses the field's label once an update
has copied the component); the handlers check every request, from the page or the API alike, before running.

Number ranges are the settings' own (`harivo.settings.flat_range`; where the app offers less than the library
accepts, the range the app shows); the frame count and the attention columns are bounded by the chosen model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import field_range
from ..outputs import VideoOptions
from ..settings import flat_range
from ..tokenizer import token_count
from .ablation import ABLATION_MODES
from .cost import cost_note
from .models import ModelRegistry
from .request import SIZES

MG_VARIANTS = ("Algorithm 1 (one-sided)", "symmetric (full Eq. 7)")  # the "MG gradient" radio; index = mg_symmetric


def _show(x: float | int) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def refuse(label: str, expected: str, got) -> ValueError:
    """The one message for a value the app does not accept."""
    return ValueError(f"{label}: expected {expected}, got {got}")


@dataclass(frozen=True)
class NumberField:
    """A number the visitor types: its label, the range the app accepts (high None: the chosen model's), whole
    numbers only or not, and the step of the box's arrows."""

    label: str
    low: float | int
    high: float | int | None = None
    integer: bool = False
    step: float = 1

    def span(self, high: float | int | None = None) -> str:
        """'1 to 50': the range, shown under the field's label and named by its errors."""
        return f"{_show(self.low)} to {_show(self.high if high is None else high)}"

    def expected(self, high: float | int | None = None) -> str:
        return f"{'a whole number' if self.integer else 'a number'} from {self.span(high)}"

    def check(self, value, high: float | int | None = None, label: str | None = None) -> int | float:
        """`value` as an int (whole-number fields) or a float; ValueError naming the label and the range unless it
        is one (a float like 4.0 is the whole number 4; 2.5 steps are refused, not rounded)."""
        hi = self.high if high is None else high
        number = _as_number(value, self.integer)
        if number is None or number < self.low or (hi is not None and number > hi):
            raise refuse(label or self.label, self.expected(hi), repr(value))
        return number


def _as_number(value, integer: bool) -> int | float | None:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or (integer and not value.is_integer()):
            return None
        return int(value) if integer else value
    return value if integer else float(value)  # ints compared exactly (the largest seed is not a float)


NUMBERS: dict[str, NumberField] = {  # API name -> field
    "seed": NumberField("Seed", *flat_range("seed"), integer=True),
    "num_frames": NumberField("Frames", flat_range("num_frames")[0], None, integer=True),  # ≤ the model's longest
    "num_inference_steps": NumberField("DDIM steps", *flat_range("num_inference_steps", slider=True), integer=True),
    "fps": NumberField("fps", *field_range(VideoOptions, "fps", slider=True), integer=True),
    "cfg_high": NumberField("CFG high scale (t > switch·T)", *flat_range("cfg_high", slider=True), step=0.5),
    "cfg_switch": NumberField("CFG switch (fraction of T)", *flat_range("cfg_switch"), step=0.05),
    "cfg_low": NumberField("CFG low scale", *flat_range("cfg_low", slider=True), step=0.5),
    "mg_alpha": NumberField("MG α", *flat_range("mg_alpha"), step=10),
    "height": NumberField("Height (px)", *flat_range("height"), integer=True),  # a multiple of the model's; 0: the
    "width": NumberField("Width (px)", *flat_range("width"), integer=True),  # model's size (`check_size`)
    "x_red": NumberField("red column x", 0, None, integer=True),  # ≤ the video's width − 1
    "x_green": NumberField("green column x", 0, None, integer=True),
}
TEXTS = {"prompt": "Prompt", "negative_prompt": "Negative prompt"}
FLAGS = {"use_mapping": "mapping network (§3.2)", "use_frame_tokens": "frame-wise tokens (§3.5)",
         "use_motion": "temporal layers (off = frozen T2I per frame)", "use_mg": "mitigating-gradient sampling (§3.7)"}
CHOICES = {"model": "Model", "mg_variant": "MG gradient", "mode": "Rows"}
LABELS = {**{k: f.label for k, f in NUMBERS.items()}, **TEXTS, **FLAGS, **CHOICES}
SIDES = ("a", "b")  # Compare A vs B: `a_<name>` / `b_<name>` override the shared values for one side


def model_bound(name: str, caps: dict, values: dict | None = None) -> int | None:
    """The chosen model's bound on a number field (None: the field's own range); the columns are bounded by the
    width asked for in `values`, else the model's."""
    width = (values or {}).get("width") or caps["width"]
    return {"num_frames": caps["max_frames"], "x_red": width - 1, "x_green": width - 1}.get(name)


def size_info(name: str, caps: dict) -> str:
    """What the height / width box accepts, shown under its label."""
    f, m = NUMBERS[name], caps["size_multiple"]
    return f"{_show(max(f.low, m))} to {_show(f.high)}, multiples of {m}; 0: the model's {caps[name]}"


def check_size(name: str, value, caps: dict, label: str) -> int | None:
    """A video height / width: 0 or None (the model's size: the page's box shows an empty value as 0) or a whole
    number in range, a multiple of the model's VAE × UNet downsampling."""
    f, m = NUMBERS[name], caps["size_multiple"]
    low, number = max(f.low, m), None if value is None else _as_number(value, True)
    if value is None or number == 0:
        return None
    if number is None or number < low or number > f.high or number % m:
        raise refuse(label, f"a whole number from {_show(low)} to {_show(f.high)}, a multiple of {m} (0: the model's "
                            f"{caps[name]})", repr(value))
    return number


def check_values(registry: ModelRegistry, values: dict) -> dict:
    """A handler's keyword values, checked and converted (whole numbers as int, numbers as float); ValueError
    "<label>: expected <what it accepts>, got <value>" for the first the app does not accept. Values the
    handler does not know (the attention view's dropdowns) pass unchecked. Compare's per-side values (`a_model`,
    `b_mg_alpha`, ...) are checked with the other values on that side's model, and named "<label> (A)"."""
    shared = {k: v for k, v in values.items() if not k.startswith(tuple(f"{s}_" for s in SIDES))}
    out = {**values, **_check(registry, shared)}
    for s in SIDES:
        own = {k[len(s) + 1:]: v for k, v in values.items() if k.startswith(f"{s}_")}
        if own:
            checked = _check(registry, {**out, **own}, own=set(own), suffix=f" ({s.upper()})")
            out.update({f"{s}_{k}": checked[k] for k in own})
    return out


def _check(registry: ModelRegistry, values: dict, own: set | None = None, suffix: str = "") -> dict:
    def label(name: str) -> str:
        return LABELS[name] + (suffix if own is None or name in own else "")

    out = dict(values)
    model = values.get("model", registry.default_key)
    if model not in registry.keys:  # first: the model bounds frames, columns and the prompt's length
        raise refuse(label("model"), f"one of {', '.join(map(repr, registry.keys))}", repr(model))
    for name, choices in (("mg_variant", MG_VARIANTS), ("mode", tuple(ABLATION_MODES))):
        if name in values and values[name] not in choices:
            raise refuse(label(name), f"one of {', '.join(map(repr, choices))}", repr(values[name]))
    for name in FLAGS:
        if name in values and not isinstance(values[name], bool):
            raise refuse(label(name), "true or false", repr(values[name]))
    caps = None
    for name, field in NUMBERS.items():
        if name not in values:
            continue
        if name in SIZES:  # bounded by the model: load it (it would load for the run anyway)
            caps = caps or registry.capabilities(model)
            out[name] = check_size(name, values[name], caps, label(name))
            continue
        high = None
        if field.high is None:
            caps = caps or registry.capabilities(model)
            high = model_bound(name, caps, out)
        out[name] = field.check(values[name], high, label(name))
    for name in TEXTS:
        if name in values:
            out[name] = check_text(registry, model, name, values[name], label(name))
    return out


def check_text(registry: ModelRegistry, model: str, name: str, text, label: str) -> str:
    """The prompt (1 token at least) or negative prompt (may be empty) within the model's token limit."""
    text = "" if text is None and name == "negative_prompt" else text
    tokenizer = registry.get(model).tokenizer
    limit = tokenizer.model_max_length - 2  # without <sot> and <eot>
    low = 1 if name == "prompt" else 0
    expected = f"text of {low} to {limit} tokens"
    if not isinstance(text, str) or (low and not text.strip()):
        raise refuse(label, expected, repr(text))
    n = token_count(tokenizer, text) - 2
    if n > limit:
        raise refuse(label, expected, f"{n} tokens")
    return text


def typed_width(registry: ModelRegistry, model, width) -> int | None:
    """The video width a typed value makes (0: the model's); None while it would be refused."""
    try:
        return check_values(registry, {"model": model, "width": width})["width"] or registry.capabilities(model)["width"]
    except ValueError:
        return None


def typed_cost(registry: ModelRegistry, model, frames, steps, height=None, width=None) -> str | None:
    """The cost note (`cost.cost_note`) of the values typed so far; None while one of them would be refused (a
    box being retyped)."""
    try:
        v = check_values(registry, {"model": model, "num_frames": frames, "num_inference_steps": steps,
                                    "height": height, "width": width})
    except ValueError:
        return None
    return cost_note(registry.capabilities(model), registry.costs.last(model), v["num_frames"],
                     v["num_inference_steps"], v["height"], v["width"])
