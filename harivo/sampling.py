"""Sampling for HARIVO: DDIM (η = 0), the CFG schedule of App. D, and mitigating-gradient (MG) sampling,
Algorithm 1 / Eq. 6–7 (§3.7). Plain functions, no hidden state; the loop takes a `denoise` function and an
optional per-step `callback`, in the style of k-diffusion's samplers.

Video latents are `(b, c, f, h, w)`; MG works per video, with norms per consecutive frame pair.

The model may predict ε (SD v1, the paper) or v = √ᾱ ε − √(1−ᾱ) x_0 (a zero-terminal-SNR schedule, Lin et al.
2024; `split_prediction`). Both go through the same DDIM update and MG: MG changes ε by α·G as in Algorithm 1,
and x̂_0 by the amount that keeps x_t = √ᾱ x̂_0 + √(1−ᾱ) ε, which is what the ε path does implicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .config import check_fields, setting


@dataclass(frozen=True)
class CFGSchedule:
    """App. D: a strong guidance scale while t > switch·T, a weaker one after. high == low is constant CFG."""

    high: float = setting(12.5, low=1.0, high=100.0, name="cfg_high", slider=(1.0, 20.0))  # t > switch·T (10–15)
    low: float = setting(7.5, low=1.0, high=100.0, name="cfg_low", slider=(1.0, 20.0))  # t <= switch·T (App. D: 7.5)
    switch: float = setting(0.7, low=0.0, high=1.0, name="cfg_switch")  # fraction of T where it drops (App. D: 0.7T)

    @classmethod
    def constant(cls, scale: float) -> "CFGSchedule":
        return cls(high=scale, low=scale, switch=0.0)

    def validate(self) -> "CFGSchedule":
        check_fields(self)
        return self

    def scale(self, t: int | float | torch.Tensor, num_train_timesteps: int = 1000) -> float:
        """CFG scale at timestep t (0 ≤ t < T)."""
        return self.high if float(t) > self.switch * num_train_timesteps else self.low

    def scales(self, timesteps, num_train_timesteps: int = 1000) -> list[float]:
        return [self.scale(t, num_train_timesteps) for t in timesteps]


@dataclass(frozen=True)
class MGConfig:
    """§3.7 mitigating-gradient sampling: α and which gradient of Eq. 7 to follow.

    MG off has one representation, `enabled=False`: α = 0 (no gradient at all) is turned into it here, so that
    nothing downstream has to ask both.
    """

    alpha: float = setting(40.0, low=0.0, high=300.0)  # α, §4 (40–50 in App. D; 150 over-smooths, Fig. 6c)
    symmetric: bool = False  # False: Algorithm 1 (one-sided); True: full gradient of Eq. 7 (our extra)
    enabled: bool = True

    def __post_init__(self):
        if self.alpha == 0 and self.enabled:
            object.__setattr__(self, "enabled", False)  # frozen: the one place that decides "off"

    def validate(self) -> "MGConfig":
        check_fields(self)
        return self


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_prod_t: torch.Tensor | float) -> torch.Tensor:
    """x̂_t = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t (Algorithm 1, line 2; DDIM formula (12))."""
    return (x_t - (1 - alpha_prod_t) ** 0.5 * eps) / alpha_prod_t**0.5


PREDICTION_TYPES = ("epsilon", "v_prediction")

# MG acts where the image keeps at least about as much signal as SD v1's schedule ever leaves (ᾱ_999 = 0.00466; the
# paper's α was chosen there). A zero-terminal-SNR schedule starts below it (ᾱ = 0 at t = 999, 0.00038 at 959):
# there ω = √((1−ᾱ)/ᾱ) is infinite or 4× SD's largest, and x̂_0 is the model's guess from the caption alone.
MG_MIN_ALPHA_PROD = 4e-3


def split_prediction(x_t: torch.Tensor, out: torch.Tensor, alpha_prod_t: torch.Tensor | float,
                     prediction_type: str = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂_0, ε̂) from the model output: ε (x̂_0 by DDIM's formula (12)) or v (x̂_0 = √ᾱ x_t − √(1−ᾱ) v,
    ε̂ = √ᾱ v + √(1−ᾱ) x_t), as `DDIMScheduler.step` does."""
    if prediction_type == "epsilon":
        return predict_x0(x_t, out, alpha_prod_t), out
    if prediction_type == "v_prediction":
        a, b = alpha_prod_t**0.5, (1 - alpha_prod_t) ** 0.5
        return a * x_t - b * out, a * out + b * x_t
    raise ValueError(f"prediction_type: expected one of {list(PREDICTION_TYPES)}, got {prediction_type!r}")


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_prod_t: torch.Tensor | float,
    alpha_prod_prev: torch.Tensor | float,
    clip_sample_range: float | None = None,
    x0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (η = 0). Returns (x_{t-1}, x̂_0). Equals `DDIMScheduler.step` (eta=0).

    `x0`: x̂_0 when the caller has it (v-prediction, `split_prediction`); otherwise from ε by formula (12)."""
    # 1. predicted original sample, formula (12) of DDIM
    if x0 is None:
        x0 = predict_x0(x_t, eps, alpha_prod_t)
    if clip_sample_range is not None:
        x0 = x0.clamp(-clip_sample_range, clip_sample_range)
    # 2. direction pointing to x_t (σ_t = 0)
    direction = (1 - alpha_prod_prev) ** 0.5 * eps
    # 3. x_{t-1} without random noise
    return alpha_prod_prev**0.5 * x0 + direction, x0


def mitigating_gradient(
    eps: torch.Tensor,
    x_t: torch.Tensor,
    alpha_prod_t: torch.Tensor | float,
    alpha: float,
    symmetric: bool = False,
    x0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Algorithm 1: ε ← ε + α · concat(0, G) with G = 2 exp(−‖D‖²/S) D/S · ω, closed form, per video.

    eps, x_t: (b, c, f, h, w) after CFG. Returns the new ε and diagnostics per video: median ‖D‖, S, ‖G‖.
    Guards: fewer than 3 frames (log(F−1) ≤ 0 leaves S undefined) and S = 0 (identical frames) change nothing.
    A third guard: below `MG_MIN_ALPHA_PROD` (a zero-terminal-SNR schedule's first steps) MG changes nothing.
    When MG changes nothing, the `eps` passed in is returned itself.
    `symmetric=True` follows the full gradient of Eq. 7 (each frame pulled towards both neighbours).
    `x0`: x̂_t when the caller has it (v-prediction); otherwise from ε (line 2).
    """
    b, f = eps.shape[0], eps.shape[2]
    zeros = torch.zeros(b, device=eps.device, dtype=eps.dtype)
    if alpha == 0 or f <= 2 or float(alpha_prod_t) < MG_MIN_ALPHA_PROD:
        return eps, {"median_d": zeros, "s": zeros, "g_norm": zeros}
    # 1. x̂_t and consecutive differences D_j = x̂^(j) − x̂^(j−1)   (line 2)
    if x0 is None:
        x0 = predict_x0(x_t, eps, alpha_prod_t)
    d = x0[:, :, 1:] - x0[:, :, :-1]  # (b, c, f-1, h, w)
    d_sq = d.pow(2).sum(dim=(1, 3, 4))  # ‖D_j‖², (b, f-1)
    # 2. bandwidth S = median(‖D‖)² / log(F − 1), per video   (line 3)
    median_d = d_sq.sqrt().median(dim=1).values  # (b,)
    s = median_d.pow(2) / math.log(f - 1)
    safe_s = torch.where(s > 0, s, torch.ones_like(s))
    # 3. G = 2 exp(−‖D‖²/S) D/S ω,  ω = √((1 − ᾱ_t)/ᾱ_t)   (line 4); = −ω ∇ of Eq. 7's one-sided term
    omega = ((1 - alpha_prod_t) / alpha_prod_t) ** 0.5
    kernel = torch.exp(-d_sq / safe_s[:, None])  # (b, f-1)
    g = 2 * kernel[:, None, :, None, None] * d / safe_s[:, None, None, None, None] * omega
    g = torch.where((s > 0)[:, None, None, None, None], g, torch.zeros_like(g))
    # 4. ε ← ε + α concat(0, G) along frames   (line 5)
    zero = torch.zeros_like(g[:, :, :1])
    if symmetric:  # frame j also feels the pair (j+1, j), with the opposite sign
        full = torch.cat([zero, g], dim=2) - torch.cat([g, zero], dim=2)
    else:
        full = torch.cat([zero, g], dim=2)
    g_norm = full.flatten(1).norm(dim=1)
    return eps + alpha * full, {"median_d": median_d, "s": s, "g_norm": g_norm}


@dataclass
class StepInfo:
    """What the per-step callback sees (and what the app plots)."""

    index: int
    timestep: int
    cfg_scale: float
    latents: torch.Tensor  # x_{t-1}
    x0: torch.Tensor  # x̂_0 after MG
    mg: dict[str, torch.Tensor]


@dataclass(frozen=True)
class DDIMSchedule:
    """The noise schedule a DDIM loop walks: its timesteps (descending), ᾱ per training timestep, ᾱ past the last
    step, T, what the model predicts ("epsilon" or "v_prediction") and the x̂_0 clip range (None: no clipping).
    `from_scheduler` reads them off a diffusers `DDIMScheduler` after `set_timesteps`."""

    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor
    final_alpha_cumprod: torch.Tensor | float
    num_train_timesteps: int
    prediction_type: str = "epsilon"
    clip_sample_range: float | None = None

    @classmethod
    def from_scheduler(cls, scheduler, device: torch.device | str | None = None) -> "DDIMSchedule":
        c = scheduler.config
        if c.thresholding:
            raise ValueError("scheduler: dynamic thresholding is not supported by the HARIVO sampler")
        final = scheduler.final_alpha_cumprod
        return cls(scheduler.timesteps, scheduler.alphas_cumprod.to(device),
                   final.to(device) if isinstance(final, torch.Tensor) else final, c.num_train_timesteps,
                   c.prediction_type, c.clip_sample_range if c.clip_sample else None)


@torch.no_grad()
def sample_ddim(
    denoise: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor],
    latents: torch.Tensor,
    schedule: DDIMSchedule,
    *,
    cfg: CFGSchedule,
    mg: MGConfig | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """DDIM loop with the CFG schedule and MG over `schedule`. `denoise(x_t, t, cfg_scale)` returns the guided model
    output (ε, or v with `schedule.prediction_type="v_prediction"`). MG changes nothing at steps with ᾱ_t < `MG_MIN_ALPHA_PROD`.

    The previous timestep follows `DDIMScheduler.step`: t − T/N, or `final_alpha_cumprod` past the end.
    `callback(info)` runs after each step; `cancel()` is asked before each step and stops the loop when true
    (the latents reached so far are returned).
    """
    timesteps, alphas_cumprod, num_train_timesteps = schedule.timesteps, schedule.alphas_cumprod, \
        schedule.num_train_timesteps
    step = num_train_timesteps // len(timesteps)
    x = latents
    for i, t in enumerate(timesteps):
        if cancel is not None and cancel():
            break
        t_int = int(t)
        scale = cfg.scale(t_int, num_train_timesteps)
        # 1. guided ε, or v (Algorithm 1, line 1)
        out = denoise(x, t, scale)
        alpha_prod_t = alphas_cumprod[t_int]
        prev_t = t_int - step
        alpha_prod_prev = alphas_cumprod[prev_t] if prev_t >= 0 else schedule.final_alpha_cumprod
        # ε keeps the paper's path bit for bit (x̂_0 from ε in ddim_step); v gives x̂_0 directly
        x0, eps = (None, out) if schedule.prediction_type == "epsilon" else split_prediction(
            x, out, alpha_prod_t, schedule.prediction_type)
        # 2. mitigating gradient on ε (Algorithm 1, lines 2–5)
        diagnostics: dict[str, torch.Tensor] = {}
        if mg is not None and mg.enabled:
            new_eps, diagnostics = mitigating_gradient(eps, x, alpha_prod_t, mg.alpha, mg.symmetric, x0)
            if x0 is not None and new_eps is not eps:  # MG acted: keep x_t = √ᾱ x̂_0 + √(1−ᾱ) ε
                x0 = x0 - ((1 - alpha_prod_t) / alpha_prod_t) ** 0.5 * (new_eps - eps)
            eps = new_eps
        # 3. DDIM update x_t → x_{t−1}
        x, x0 = ddim_step(x, eps, alpha_prod_t, alpha_prod_prev, schedule.clip_sample_range, x0)
        if callback is not None:
            callback(StepInfo(i, t_int, scale, x, x0, diagnostics))
    return x
