"""One generation as the app asks for it: `RunRequest` = the generation settings under their flat names (the
documented API's parameter names, `settings.FLAT`; defaults from `GenerationSettings`) plus the UI-only fields
`model` and `fps`, and `check_request`, which turns it into a checked `GenerationSettings`."""

from __future__ import annotations

import dataclasses
from dataclasses import field, make_dataclass

from ..config import check_fields
from ..outputs import VideoOptions
from ..pipeline import HarivoPipeline
from ..settings import GenerationSettings, coerce, defaults, flat_type, whole_number
from .models import ModelRegistry, unknown_words

_D = defaults()
EXAMPLE_PROMPT = "a red circle is moving left to right on a gray background"  # the app's first prompt
# ... and its seed: with its recommended sampling the featured model (models.FEATURED_CHECKPOINT) moves this prompt's
# circle right across the frame from each of seeds 0-7 (0.58-0.67 of the frame, colour, shape and direction right in
# 8/8, none judged smooth: the largest frame-to-frame step is 0.11-0.18 of the frame); seed 0 has the smallest step
# (measured at 25 DDIM steps; at the model's 12, seed 0 still carries the circle across: assets/screenshots/explore.png)
EXAMPLE_SEED = 0
# the generation settings a visitor sets, by their flat names (settings.FLAT); RunRequest adds the UI-only fields
REQUEST_SETTINGS = ("prompt", "negative_prompt", "seed", "num_frames", "num_inference_steps", "cfg_high", "cfg_switch",
                    "cfg_low", "use_mg", "mg_alpha", "mg_symmetric", "use_mapping", "use_frame_tokens", "use_motion",
                    "height", "width")
SIZES = ("height", "width")  # None or 0 (the page's empty box): the model's size (`ModelRegistry.capabilities`)
UI_ONLY = ("model", "fps")  # RunRequest fields that are not generation settings


class _Request:
    def settings(self, capture_attention: bool = True, keep_per_step: bool = True) -> GenerationSettings:
        """The GenerationSettings of this request; UI numbers arrive as floats or strings, converted by each
        setting's type (`settings.coerce`)."""
        values = {name: None if name in SIZES and not getattr(self, name) else coerce(name, getattr(self, name))
                  for name in REQUEST_SETTINGS}
        return GenerationSettings.from_flat(**values, capture_attention=capture_attention,
                                            keep_attention_per_step=keep_per_step)


# The UI's values for one generation (everything a user can set): each generation setting of REQUEST_SETTINGS under
# its flat name, typed and defaulted by GenerationSettings (the app's first prompt and seed excepted), then the model
# (a ModelRegistry key; "" = the registry's default) and the video's fps. Declared once, in settings.py.
RunRequest = make_dataclass("RunRequest", [
    *[(name, flat_type(name), field(default={"prompt": EXAMPLE_PROMPT, "seed": EXAMPLE_SEED}.get(name, _D[name])))
      for name in REQUEST_SETTINGS],
    ("model", str, field(default="")), ("fps", int, field(default=VideoOptions.fps))], bases=(_Request,))
RunRequest.__module__ = __name__
RunRequest.__doc__ = "The UI's values for one generation: REQUEST_SETTINGS (settings.FLAT), model and fps."


def check_request(registry: ModelRegistry, req: RunRequest) -> tuple[HarivoPipeline, GenerationSettings, list[str]]:
    """ValueError (naming the argument) for anything the model cannot do; warnings for what it can but should not
    (unknown words, components the model lacks). `req.model` is set to the registry's default when empty."""
    req.model = req.model or registry.default_key
    req.fps = whole_number("fps", req.fps)
    check_fields(VideoOptions(fps=req.fps))
    settings = req.settings().validate()  # the settings' own errors before the model loads
    pipe = registry.get(req.model)
    caps = registry.capabilities(req.model)
    for name in SIZES:  # not given: the model's size (left unset where it is the UNet's own, as the CLI leaves it)
        if getattr(settings, name) is None and caps[name] != caps["native"]:
            setattr(settings, name, caps[name])
    settings.keep_attention_per_step = (settings.width or caps["width"]) <= 128  # per-step maps where they stay small
    pipe.check(settings)
    warnings = []
    for name, text in (("prompt", req.prompt), ("negative prompt", req.negative_prompt or "")):
        unknown = unknown_words(text, caps["known_words"])
        if unknown:
            warnings.append(f"The {name} has words this model does not know: {', '.join(unknown)}. "
                            f"It knows: {', '.join(caps['known_words'])}.")
    return pipe, settings, warnings + pipe.in_effect(settings)[1]


def default_request(registry: ModelRegistry, model: str | None = None) -> RunRequest:
    """The request the app opens with for `model` (default: the registry's default): `RunRequest`'s defaults with the
    sampling the model was measured best at (its checkpoint's "sampling": CFG schedule, α, DDIM steps)."""
    key = model or registry.default_key
    return dataclasses.replace(RunRequest(model=key), **registry.capabilities(key)["sampling"])
