"""HARIVO's training objective, Eq. 5: L = L_simple + λ_TRS L_TRS + λ_reg L_reg + λ_DC L_DC.

- `simple_loss`  Eq. 1 on the video branch only (§3.6: no L_simple on the T2I branch).
- `reg_loss`     Eq. 2, λ_t = 1 − t/T, video branch vs T2I branch (motion modules off, no frame tokens, mapping on).
- L_TRS          Eq. 3, recorded by `trs.TRSRecorder` on the decoder's spatial self-attention
                 (`LossConfig.trs_chunk_size > 0`: without keeping the maps, `trs.TRSAttentionFunction`).
- `dc_loss`      Eq. 4, decoupled contrastive loss on h-space (UNet mid-block output) through the projection
                 head g, τ = 0.1, negatives = a queue of earlier positives (`NegativeQueue`) and, with
                 `LossConfig.dc_in_batch` (ours), the other videos of the batch.
`training_step` runs one step's forward passes and returns the total and each term for logging.

On a base whose scheduler predicts v (zero terminal SNR, `t2i_models.schedule(zero_snr=True)`), L_simple
regresses v instead of ε and L_reg compares the two branches' v outputs: the method is unchanged, only the
parameterisation of its model output follows the frozen T2I's.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from einops import rearrange

from harivo.attention import recording, spatial_attention_names
from harivo.config import LossConfig
from harivo.model import HarivoVideoModel
from harivo.modules import ProjectionHead
from harivo.noise import mixed_noise, offset_noise, prediction_target
from harivo.train.trs import TRSRecorder


def simple_loss(eps_pred: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ‖ε − ε_θ(x_t, t)‖², mean over all elements (on a v-prediction base: ‖v − v_θ‖², `training_step`)."""
    return F.mse_loss(eps_pred.float(), noise.float())


def timestep_weights(num_timesteps: int, multiplier: float, portion: float) -> torch.Tensor:
    """(T,) sampling weights of the training timesteps: the last int(portion · T) weigh `multiplier`, the others 1
    (diffusers' timestep bias, strategy "later")."""
    weights = torch.ones(num_timesteps)
    biased = int(portion * num_timesteps)
    if biased:
        weights[-biased:] *= multiplier
    return weights


def draw_timesteps(loss_config: LossConfig, num_timesteps: int, batch: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One training timestep per video: uniform over [min_timestep, T), or with the config's bias toward the last
    timesteps (timestep_bias_multiplier != 1), drawn by weight."""
    if loss_config.timestep_bias_multiplier == 1:
        return torch.randint(loss_config.min_timestep, num_timesteps, (batch,), generator=generator)
    weights = timestep_weights(num_timesteps, loss_config.timestep_bias_multiplier, loss_config.timestep_bias_portion)
    weights[:loss_config.min_timestep] = 0
    return torch.multinomial(weights, batch, replacement=True, generator=generator)


def reg_weights(timesteps: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """λ_t = 1 − t/T (Eq. 2): soft near pure noise, where the T2I model's frames are discontinuous."""
    return 1.0 - timesteps.float() / num_train_timesteps


def reg_loss(eps_video: torch.Tensor, eps_t2i: torch.Tensor, timesteps: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """Eq. 2: mean over videos of λ_t · mean‖f_{M,θ,φ}(x_t) − f_{M,φ}(x_t)‖². Inputs (b, c, f, h, w), t (b,)."""
    per_video = (eps_video.float() - eps_t2i.float()).pow(2).flatten(1).mean(1)
    return (reg_weights(timesteps, num_train_timesteps) * per_video).mean()


def dc_loss(z1: torch.Tensor, z2: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.1,
            in_batch: bool = False) -> torch.Tensor:
    """Eq. 4 (decoupled contrastive, Yeh et al. 2022): −⟨z1, z2⟩/τ + log Σ_{q∈Q} exp(⟨z1, z_q⟩/τ), mean over pairs.

    z1, z2: (b, d) projected h-space of two frames of each video; negatives: (Q, d). Embeddings are L2-normalised
    (cosine similarity), as usual with τ = 0.1. The positive pair is *not* in the denominator (decoupled). With an
    empty queue only the alignment term remains.

    `in_batch` (ours): Q of row i also holds this step's z1, z2 of the *other* videos, with gradients. A queue of
    detached earlier embeddings alone rewards moving every current z away from the stale ones together; on the
    shapes world that ran away (h-space grew a common offset, std 1.5 → 45, every z collapsed to one direction,
    L_DC stuck at its collapse value log|Q| and L_simple 40 % above the baseline's). Live negatives make that
    collapse cost log(2b − 2) + 1/τ at once, as in SimCLR / MoCo's in-batch keys. Live negatives alone still let
    the offset grow (std 8 after 250 steps), since frames of one video then agree for free; `training_step` also
    centres h over the batch's frames (`LossConfig.dc_center_h`, DINO-style centring) so that an offset shared by
    every video has no gradient at all.
    """
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    loss = -(z1 * z2).sum(-1) / temperature
    logits = []
    if negatives.numel():
        logits.append(z1 @ F.normalize(negatives.float().to(z1.device), dim=-1).T / temperature)
    b = z1.shape[0]
    if in_batch and b > 1:
        live = z1 @ torch.cat([z1, z2]).T / temperature  # (b, 2b): row i's own z1_i, z2_i at columns i, b + i
        own = torch.eye(b, dtype=torch.bool, device=z1.device).repeat(1, 2)
        logits.append(live.masked_fill(own, float("-inf")))
    if logits:
        loss = loss + torch.logsumexp(torch.cat(logits, dim=1), dim=-1)
    return loss.mean()


class NegativeQueue:
    """FIFO of earlier positive embeddings (detached), the negatives Q of Eq. 4."""

    def __init__(self, size: int, dim: int):
        self.size, self.dim = size, dim
        self.items = torch.zeros(0, dim)

    def get(self) -> torch.Tensor:
        return self.items

    def push(self, z: torch.Tensor) -> None:
        self.items = torch.cat([z.detach().float().cpu(), self.items])[: self.size]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"items": self.items.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.items = state["items"].clone()


@contextlib.contextmanager
def capture_hspace(model: HarivoVideoModel) -> Iterator[list]:
    """Collect the video UNet's mid-block output (h-space) during the forward passes inside the block."""
    store: list[torch.Tensor] = []
    handle = model.unet.mid_block.register_forward_hook(lambda _m, _i, out: store.append(out))
    try:
        yield store
    finally:
        handle.remove()


def pick_frame_pairs(b: int, f: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two distinct random frames per video (positive pairs need not be consecutive, §3.4)."""
    first = torch.randint(0, f, (b,), generator=generator)
    offset = torch.randint(1, f, (b,), generator=generator)
    return first, (first + offset) % f


@dataclass
class StepOutput:
    loss: torch.Tensor
    terms: dict[str, float]


def training_step(
    model: HarivoVideoModel,
    latents: torch.Tensor,
    text_embeds: torch.Tensor,
    noise_scheduler: DDPMScheduler,
    loss_config: LossConfig,
    projection_head: ProjectionHead | None = None,
    queue: NegativeQueue | None = None,
    generator: torch.Generator | None = None,
) -> StepOutput:
    """One HARIVO training step's forward passes (Eq. 5). latents (b, c, f, h, w) are clean VAE latents.

    Returns the weighted total (call `.backward()` on it) and every term as a float for logging. The queue is
    updated with this step's positives *after* they were used.
    """
    b, _, f = latents.shape[:3]
    T = noise_scheduler.config.num_train_timesteps
    noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(latents.device)
    if not 0 <= loss_config.min_timestep < T:
        raise ValueError(f"min_timestep: expected 0 <= min_timestep < {T} (the scheduler's timesteps), "
                         f"got {loss_config.min_timestep}")
    timesteps = draw_timesteps(loss_config, T, b, generator).to(latents.device)
    if loss_config.noise_offset:  # drawn last, so runs without it keep their exact random stream
        noise = offset_noise(noise, loss_config.noise_offset, generator)
    noise = mixed_noise(noise, loss_config.noise_share, generator)  # drawn after the offset, for the same reason
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    target = prediction_target(noise_scheduler, latents, noise, timesteps)  # ε itself, or v

    # 0. mapping network M(x_t) (§3.2), computed once: both branches of Eq. 2 take the same M(x_t), with gradients
    mapped = model.map_noise(noisy)
    # 1. video branch f_{M,θ,φ}(x_t), recording decoder self-attention (L_TRS) and h-space (L_DC)
    trs = None
    with contextlib.ExitStack() as stack:
        if loss_config.use_trs:
            names = spatial_attention_names(model.unet, "attn1", decoder_only=True)
            recorder = TRSRecorder(names, f, chunk_size=loss_config.trs_chunk_size)
            trs = stack.enter_context(recording(model.unet, names, recorder))
        hspace = stack.enter_context(capture_hspace(model)) if loss_config.use_dc else []
        eps_video = model(mapped, timesteps, text_embeds, use_mapping=False)

    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=latents.device)
    if loss_config.use_simple:
        terms["simple"] = simple_loss(eps_video, target)
        total = total + terms["simple"]
    # 2. L_TRS (Eq. 3)
    if trs is not None:
        terms["trs"] = trs.loss()
        total = total + loss_config.trs_weight * terms["trs"]
    # 3. L_reg (Eq. 2): same x_t through the T2I branch, motion modules and frame tokens off, mapping kept
    if loss_config.use_reg:
        eps_t2i = model(mapped, timesteps, text_embeds, use_motion=False, use_mapping=False, use_frame_tokens=False)
        terms["reg"] = reg_loss(eps_video, eps_t2i, timesteps, T)
        total = total + loss_config.reg_weight * terms["reg"]
    # 4. L_DC (Eq. 4) on h-space of two frames per video
    if loss_config.use_dc:
        if projection_head is None or queue is None:
            raise ValueError("projection_head/queue: L_DC needs the projection head g and a NegativeQueue")
        h = rearrange(hspace[-1], "(b f) c h w -> b f c h w", f=f)
        if loss_config.dc_center_h and b > 1:  # ours: an offset shared by the whole batch says nothing (see dc_loss)
            h = h - h.mean(dim=(0, 1), keepdim=True)
        i1, i2 = pick_frame_pairs(b, f, generator)
        rows = torch.arange(b)
        z1, z2 = projection_head(h[rows, i1]), projection_head(h[rows, i2])
        terms["dc"] = dc_loss(z1, z2, queue.get(), loss_config.dc_temperature, loss_config.dc_in_batch)
        total = total + loss_config.dc_weight * terms["dc"]
        queue.push(torch.cat([z1, z2]))
    logged = {k: float(v.detach()) for k, v in terms.items()}
    logged["total"] = float(total.detach())
    return StepOutput(total, logged)
