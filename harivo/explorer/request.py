"""One generation as the app asks for it: `RunRequest` = the generation settings under their flat names (the
documented API's parameter names, `settings.FLAT`; defaults from `GenerationSettings`) plus the UI-only fields
`model` and `fps`, and `check_request`, which turns it into a checked `GenerationSettings`."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..config import check_fields
from ..outputs import VideoOptions
from ..pipeline import HarivoPipeline
from ..settings import GenerationSettings, defaults
from .models import ModelRegistry, unknown_words

_D = defaults()
EXAMPLE_PROMPT = "a red circle is moving left to right on a gray background"  # the app's first prompt
# ... and its seed: with its recommended sampling the featured model (models.FEATURED_CHECKPOINT) moves this prompt's
# circle right across the frame from each of seeds 0-7 (0.58-0.67 of the frame, colour, shape and direction right in
# 8/8, none judged smooth: the largest frame-to-frame step is 0.11-0.18 of the frame); seed 0 has the smallest step
EXAMPLE_SEED = 0
UI_ONLY = ("model", "fps")  # RunRequest fields that are not generation settings


@dataclass
class RunRequest:
    """The UI's values for one generation (everything a user can set)."""

    prompt: str = EXAMPLE_PROMPT
    model: str = ""  # ModelRegistry key; "" = the registry's default
    negative_prompt: str = _D["negative_prompt"]
    seed: int = EXAMPLE_SEED
    num_frames: int = _D["num_frames"]
    num_inference_steps: int = _D["num_inference_steps"]
    fps: int = VideoOptions.fps
    cfg_high: float = _D["cfg_high"]
    cfg_switch: float = _D["cfg_switch"]
    cfg_low: float = _D["cfg_low"]
    use_mg: bool = _D["use_mg"]
    mg_alpha: float = _D["mg_alpha"]
    mg_symmetric: bool = _D["mg_symmetric"]
    use_mapping: bool = _D["use_mapping"]
    use_frame_tokens: bool = _D["use_frame_tokens"]
    use_motion: bool = _D["use_motion"]

    def settings(self, capture_attention: bool = True, keep_per_step: bool = True) -> GenerationSettings:
        """The GenerationSettings of this request (UI numbers arrive as floats or strings: converted)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in UI_ONLY}
        for name in ("seed", "num_frames", "num_inference_steps"):
            values[name] = as_int(name, values[name])
        for name in ("cfg_high", "cfg_low", "cfg_switch", "mg_alpha"):
            values[name] = float(values[name])
        for name in ("use_mg", "mg_symmetric", "use_mapping", "use_frame_tokens", "use_motion"):
            values[name] = bool(values[name])
        values["negative_prompt"] = values["negative_prompt"] or ""
        return GenerationSettings.from_flat(**values, capture_attention=capture_attention,
                                            keep_attention_per_step=keep_per_step)


def as_int(name: str, value) -> int:
    """UI numbers arrive as floats (gr.Number) or strings (API); accept whole numbers only (an int as it is: a
    float cannot hold the largest seed)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
    if not np.isfinite(f) or f != int(f):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(f)


def check_request(registry: ModelRegistry, req: RunRequest) -> tuple[HarivoPipeline, GenerationSettings, list[str]]:
    """ValueError (naming the argument) for anything the model cannot do; warnings for what it can but should not
    (unknown words, components the model lacks). `req.model` is set to the registry's default when empty."""
    req.model = req.model or registry.default_key
    req.fps = as_int("fps", req.fps)
    check_fields(VideoOptions(fps=req.fps))
    settings = req.settings().validate()  # the settings' own errors before the model loads
    pipe = registry.get(req.model)
    caps = registry.capabilities(req.model)
    settings.keep_attention_per_step = caps["width"] <= 128  # per-step maps only where they stay small
    pipe.check(settings)
    warnings = []
    for name, text in (("prompt", req.prompt), ("negative prompt", req.negative_prompt or "")):
        unknown = unknown_words(text, caps["known_words"])
        if unknown:
            warnings.append(f"The {name} has words this model does not know: {', '.join(unknown)}. "
                            f"It knows: {', '.join(caps['known_words'])}.")
    return pipe, settings, warnings + pipe.in_effect(settings)[1]
