"""The interface between the pipeline and add-ons on the frozen T2I model (ControlNet, IP-Adapter: `harivo.compat`).

An add-on hands `HarivoPipeline.__call__(..., conditions=[...])` objects with four members, and the pipeline asks
nothing else of them (no type checks): the core does not know which add-ons exist.

- `validate(model, num_frames, height, width)`: ValueError naming the argument when it cannot act on this call;
- `modules()`: the torch modules it runs (moved to the GPU with the video model under CPU offload);
- `unet_kwargs(sample, timestep, text_embeds, step, num_steps, video)`: extra UNet keyword arguments for one
  denoiser call, on both branches of the model (`video=False`: the T2I branch, frames as a batch);
- `replaces_attention_processors`: True when its own attention processors must stay in place, so that the
  attention capture (which installs processors of its own) is off for the call.

An add-on whose loader makes every call need one of its conditions (an IP-Adapter's image projection does)
registers the condition's type in `HarivoPipeline.required_conditions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch


class Condition(Protocol):
    replaces_attention_processors: bool

    def validate(self, model, num_frames: int, height: int, width: int) -> object: ...

    def modules(self) -> list[torch.nn.Module]: ...

    def unet_kwargs(self, sample: torch.Tensor, timestep, text_embeds: torch.Tensor, step: int, num_steps: int,
                    video: bool) -> dict: ...


def merge_unet_kwargs(conditions: Sequence[Condition], sample: torch.Tensor, timestep, text_embeds: torch.Tensor,
                      step: int, num_steps: int, video: bool) -> dict:
    """Extra UNet arguments of all `conditions` for one call; ControlNet residuals of several nets are summed
    (diffusers' MultiControlNetModel), `added_cond_kwargs` dictionaries merged."""
    out: dict = {}
    for condition in conditions:
        for key, value in condition.unet_kwargs(sample, timestep, text_embeds, step, num_steps, video).items():
            if key == "down_block_additional_residuals" and key in out:
                out[key] = [a + b for a, b in zip(out[key], value)]
            elif key == "mid_block_additional_residual" and key in out:
                out[key] = out[key] + value
            elif key == "added_cond_kwargs" and key in out:
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out


def validate_conditions(conditions: Sequence, required: Sequence[type], model, num_frames: int, height: int,
                     width: int) -> None:
    """Every condition valid for this call, and exactly one of each type in `required`."""
    for c in conditions:
        if not all(hasattr(c, name) for name in ("validate", "modules", "unet_kwargs", "replaces_attention_processors")):
            raise ValueError(f"conditions: expected add-on conditions (harivo.conditions.Condition), got "
                             f"{type(c).__name__}")
        c.validate(model, num_frames, height, width)
    for kind in required:
        n = sum(isinstance(c, kind) for c in conditions)
        if n != 1:
            raise ValueError(f"conditions: the loaded add-on needs one {kind.__name__} on every call, got {n}")
