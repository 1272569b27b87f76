"""L_TRS (Eq. 3), the temporal regularisation of self-attention, with its hand-written autograd.

L_TRS = Σ_i λ_i Σ_{j≥2} mean|A_i^(j) − A_i^(j−1)| over the spatial self-attention maps (`attn1`) of the N decoder
transformer blocks, λ_i = i/N. `TRSRecorder` is what `attention.recording` hands the maps (or, with
`chunk_size > 0`, the attention itself) to; `losses.training_step` turns its terms into the loss.

- `FrameDifferenceL1`: Σ_{j≥2} mean|A^(j) − A^(j−1)| with a backward that writes the gradient into one tensor;
- `TRSAttentionFunction` / `trs_attention`: attention output and its L_TRS term a chunk of queries at a time,
  without keeping the maps (recomputed in backward, as flash attention does).
"""

from __future__ import annotations

import math

import torch


class FrameDifferenceL1(torch.autograd.Function):
    """Σ_{j≥2} mean|A^(j) − A^(j−1)| of maps (b, f, ...), the mean over everything but the frame axis.

    Equals `(maps[:, 1:] - maps[:, :-1]).abs().mean(dim=(0, 2, ...)).sum()` with its gradient, but the backward
    writes ∂/∂A^(j) = (sign Δ_j − sign Δ_{j+1}) / n straight into one tensor instead of autograd's chain of
    full-size temporaries (abs, sign, two zero-filled slice gradients, negation, sum): on the attention maps of
    L_TRS those temporaries cost more than the attention itself. Nothing but the maps (which softmax keeps for
    its own backward anyway) is saved.
    """

    @staticmethod
    def forward(ctx, maps: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(maps)
        n = maps[:, 0].numel()  # elements per frame pair: the mean of Eq. 3's |·|
        return (maps[:, 1:] - maps[:, :-1]).abs_().sum(dtype=torch.promote_types(maps.dtype, torch.float32)) / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (maps,) = ctx.saved_tensors
        step = (maps[:, 1:] - maps[:, :-1]).sign_().mul_(grad / maps[:, 0].numel())  # (b, f-1, ...)
        out = torch.empty_like(maps)
        out[:, :1] = -step[:, :1]  # first frame: only the pair (2, 1)
        out[:, -1:] = step[:, -1:]  # last frame: only the pair (f, f-1)
        if maps.shape[1] > 2:  # inner frames: pair (j, j−1) pulls one way, pair (j+1, j) the other
            torch.sub(step[:, :-1], step[:, 1:], out=out[:, 1:-1])
        return out


def frame_difference_l1(maps: torch.Tensor) -> torch.Tensor:
    """Σ_{j≥2} mean|A^(j) − A^(j−1)| along dim 1 of `maps` (b, f, ...), see `FrameDifferenceL1`."""
    if maps.shape[1] < 2:
        return maps.sum() * 0  # no frame pair: zero, still connected to the graph
    return FrameDifferenceL1.apply(maps)


class TRSAttentionFunction(torch.autograd.Function):
    """Attention output softmax(QKᵀ/√d)·V and its L_TRS term Σ_{j≥2} mean|A^(j) − A^(j−1)| without keeping A.

    q (B, heads, n_q, d), k and v (B, heads, n_k, d) with B = b·f (batch-major frames). The maps A are computed
    `chunk_size` queries at a time: a query row of every frame sits in the same chunk, so each chunk holds its
    share of every frame pair's |A^(j) − A^(j−1)|. The mean is over videos, heads, queries and keys, as
    `FrameDifferenceL1` (n = b·heads·n_q·n_k). Only q, k, v are saved; backward recomputes each chunk's P and
    takes, as flash attention does, dP = gO·Vᵀ + ∂L_TRS/∂P (`FrameDifferenceL1`'s sign formula),
    dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS·K/√d, dK += dSᵀ·Q/√d, dV += Pᵀ·gO. Peak extra memory: a few
    (B, heads, chunk, n_k) tensors instead of every layer's (B, heads, n_q, n_k) maps until backward.
    The maps are float32 (or float64) and the output is P.to(v.dtype) @ v, like `RecordingAttnProcessor`.
    """

    @staticmethod
    def _probs(q: torch.Tensor, k: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
        """softmax(q kᵀ/√d) of one chunk of queries, in `compute` precision: (B, heads, chunk, n_k)."""
        return ((q.to(compute) / math.sqrt(q.shape[-1])) @ k.to(compute).transpose(-1, -2)).softmax(dim=-1)

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_frames: int, chunk_size: int):
        B, heads, n_q, _ = q.shape
        b, f = B // num_frames, num_frames
        compute = torch.promote_types(q.dtype, torch.float32)
        out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=v.dtype, device=v.device)  # (B, heads, n_q, d_v)
        term = torch.zeros((), dtype=compute, device=q.device)
        for i in range(0, n_q, chunk_size):
            p = TRSAttentionFunction._probs(q[:, :, i : i + chunk_size], k, compute)  # (B, heads, c, n_k)
            out[:, :, i : i + chunk_size] = p.to(v.dtype) @ v
            maps = p.view(b, f, *p.shape[1:])  # (b, f, heads, c, n_k)
            term += (maps[:, 1:] - maps[:, :-1]).abs_().sum()
        ctx.save_for_backward(q, k, v)
        ctx.num_frames, ctx.chunk_size = num_frames, chunk_size
        n = b * heads * n_q * k.shape[-2]  # elements per frame pair: the mean of Eq. 3's |·|
        return out, term / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor, grad_term: torch.Tensor):
        q, k, v = ctx.saved_tensors
        f, chunk_size = ctx.num_frames, ctx.chunk_size
        B, heads, n_q, d = q.shape
        b, n_k = B // f, k.shape[-2]
        compute = torch.promote_types(q.dtype, torch.float32)
        scale = 1 / math.sqrt(d)
        trs_scale = grad_term.to(compute) / (b * heads * n_q * n_k)
        kc, vc = k.to(compute), v.to(compute)
        dq = torch.empty(q.shape, dtype=compute, device=q.device)
        dk = torch.zeros(k.shape, dtype=compute, device=k.device)
        dv = torch.zeros(v.shape, dtype=compute, device=v.device)
        for i in range(0, n_q, chunk_size):
            qc, go = q[:, :, i : i + chunk_size].to(compute), grad_out[:, :, i : i + chunk_size].to(compute)
            p = TRSAttentionFunction._probs(qc, kc, compute)  # (B, heads, c, n_k)
            dp = go @ vc.transpose(-1, -2)  # ∂out/∂P
            if f > 1:  # ∂L_TRS/∂P: pair (j, j−1) pulls A^(j) by +sign, A^(j−1) by −sign
                maps, dmaps = p.view(b, f, *p.shape[1:]), dp.view(b, f, *dp.shape[1:])  # (b, f, heads, c, n_k)
                step = (maps[:, 1:] - maps[:, :-1]).sign_().mul_(trs_scale)  # (b, f-1, heads, c, n_k)
                dmaps[:, 1:] += step
                dmaps[:, :-1] -= step
            ds = dp.sub_((dp * p).sum(-1, keepdim=True)).mul_(p)  # softmax backward
            dq[:, :, i : i + chunk_size] = ds @ kc * scale
            dk += ds.transpose(-1, -2) @ qc * scale
            dv += p.transpose(-1, -2) @ go
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None


def trs_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_frames: int,
                  chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(QKᵀ/√d)·V, Σ_{j≥2} mean|A^(j) − A^(j−1)|) of q (b·f, heads, n_q, d), see `TRSAttentionFunction`."""
    if q.shape[0] % num_frames:
        raise ValueError(f"q: expected a batch of videos × {num_frames} frames, got batch {q.shape[0]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive number of queries, got {chunk_size}")
    return TRSAttentionFunction.apply(q, k, v, num_frames, chunk_size)


class TRSRecorder:
    """Eq. 3 on the fly: L_TRS = Σ_i λ_i Σ_{j≥2} mean|A_i^(j) − A_i^(j−1)|, λ_i = i/N over the N decoder layers.

    |·| is the mean absolute difference of the attention probabilities (over videos, heads, queries, keys),
    so the loss does not grow with resolution; the sums over layers i and frame pairs j are as in Eq. 3.
    The maps keep their gradients; only the per-layer scalar terms are stored, and the recording processors
    compute the layer outputs from these same maps (`output_from_probs`). With `chunk_size > 0` the maps are
    not kept at all: the processors ask `attend` for each layer's output, whose term `TRSAttentionFunction` gives,
    O(chunk_size · keys) memory per layer instead of O(queries · keys) held until backward, at the price of
    computing the maps twice.
    """

    output_from_probs = True

    def __init__(self, layer_names: list[str], num_frames: int, chunk_size: int = 0):
        if not layer_names:
            raise ValueError("layer_names: expected at least one decoder self-attention layer for L_TRS")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 0:
            raise ValueError(f"chunk_size: expected an integer >= 0, got {chunk_size!r}")
        self.weights = {name: (i + 1) / len(layer_names) for i, name in enumerate(layer_names)}
        self.f = num_frames
        self.chunk_size = chunk_size
        self.terms: dict[str, torch.Tensor] = {}

    def attend(self, name: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The attention output of layer `name` (chunk_size > 0): computed with `trs_attention`, its term kept."""
        out, term = trs_attention(query, key, value, self.f, self.chunk_size)
        self.record_term(name, term)
        return out

    def record_term(self, name: str, term: torch.Tensor) -> None:
        """Σ_{j≥2} mean|A^(j) − A^(j−1)| of layer `name`, already reduced (`TRSAttentionFunction`)."""
        self.terms[name] = self.terms.get(name, 0) + term

    def record(self, name: str, probs: torch.Tensor) -> None:
        bf, heads, q, k = probs.shape
        maps = probs.reshape(bf // self.f, self.f, heads, q, k)  # (b, f, heads, q, k)
        self.terms[name] = self.terms.get(name, 0) + frame_difference_l1(maps)

    def loss(self) -> torch.Tensor:
        if not self.terms:
            raise RuntimeError("TRSRecorder: no decoder self-attention was recorded")
        return sum(self.weights[name] * term for name, term in self.terms.items())
