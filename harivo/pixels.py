"""uint8 RGB images ↔ the pixel tensors the VAEs take: channels first, float in [-1, 1].

Both training stages and `verb_probe` encode rendered shapes-world frames with a VAE; this is the one place
that says how a frame becomes a VAE input and back.
"""

from __future__ import annotations

import numpy as np
import torch


def to_pixels(images_uint8: np.ndarray) -> torch.Tensor:
    """(n, h, w, 3) uint8 → (n, 3, h, w) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def from_pixels(x: torch.Tensor) -> np.ndarray:
    """(n, 3, h, w) float in [-1, 1] (clamped) → (n, h, w, 3) uint8 on the CPU."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
