"""What a generation will cost, said on the page before it runs: the work (UNet passes, frames through the VAE),
the weights' memory, and a time estimate scaled from the last run of the same model in this process (nothing is
run to make the estimate; before a model's first run the page says that no time is measured yet)."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    """One finished run: its wall time (text encoding, sampling, decoding) and its size."""

    seconds: float
    steps: int
    frames: int
    height: int
    width: int

    @property
    def work(self) -> int:
        """Steps × frames × pixels: what the estimate scales with."""
        return self.steps * self.frames * self.height * self.width


class CostMeter:
    """The last finished run of each model (thread-safe)."""

    def __init__(self):
        self._last: dict[str, Measured] = {}
        self._lock = threading.Lock()

    def record(self, key: str, measured: Measured) -> None:
        with self._lock:
            self._last[key] = measured

    def last(self, key: str) -> Measured | None:
        with self._lock:
            return self._last.get(key)


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**28 else f"{n / 2**20:.1f} MB"


def cost_note(caps: dict, measured: Measured | None, frames: int, steps: int, height: int | None = None,
              width: int | None = None) -> str:
    """Markdown: the run's work and memory for the model of `caps` (`ModelRegistry.capabilities`), and the time
    estimate from `measured` (None: not measured yet). Sizes None (or 0) are the model's."""
    h, w = int(height or caps["height"]), int(width or caps["width"])
    frames, steps = int(frames), int(steps)
    switches = ["VAE slicing: one frame at a time" if caps["vae_slicing"] else
                f"{min(caps['decode_chunk_size'], frames)} frames per decode call"]
    if caps["cpu_offload"]:
        switches.append("CPU offload: each part on the GPU only while it runs")
    lines = [
        f"**Cost of one run**: {frames} frames × {h}×{w} px × {steps} steps on {caps['device']} ({caps['dtype']}): "
        f"{2 * steps} UNet passes (CFG: with and without the prompt), {frames} frames through the VAE "
        f"({', '.join(switches)}); weights {_gb(caps['weights_bytes'])}."]
    if measured is None:
        lines.append("Time: measured by the first run (it includes warm-up).")
    else:
        estimate = measured.seconds * (steps * frames * h * w) / max(1, measured.work)
        lines.append(f"Time ≈ {_seconds(estimate)}, scaled from the last run here ({measured.steps} steps, "
                     f"{measured.frames} × {measured.height}×{measured.width} px: {_seconds(measured.seconds)}; "
                     "attention grows faster than linearly in pixels).")
    return "\n".join(lines)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"
