"""HARIVO's trainable add-on networks: mapping network (§3.2), frame-wise token generator (§3.5) and the
projection head g of the h-space contrastive loss (§3.4). Architectures follow the appendix pseudo-code.

Video tensors are `(b, c, f, h, w)` (diffusers layout); text tokens are `(b, M, D)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from einops import rearrange, repeat
from torch import nn


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) sinusoidal table, as AnimateDiff's temporal positional encoding."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    half = (dim + 1) // 2
    div_term = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / max(half, 1)))
    table = torch.zeros(num_positions, 2 * half)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table[:, :dim]


class LowRankSelfAttnProcessor:
    """Self-attention of a diffusers `Attention` computed in the input's own c dimensions instead of heads·d.

    Per head h, softmax((x W_q,h)(x W_k,h)ᵀ s) (x W_v,h) W_o,h = softmax(x A_h xᵀ) x B_h with A_h = s W_q,hᵀ W_k,h
    and B_h = W_v,hᵀ W_o,hᵀ, both c × c: the same function of the same weights (equal up to float rounding), but
    the mapping network's attention (c = 4 latent channels, heads·d = 8·64 = 512 in the appendix) never builds
    its 512-wide q, k, v. On a CPU that is ~14× less time for forward + backward (tests/test_speedups.py checks
    outputs and gradients against diffusers' `AttnProcessor2_0`). Only for the plain self-attention the mapping
    network builds: no q/k/v bias, norms, mask or residual.
    """

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        assert encoder_hidden_states is None and attention_mask is None and hidden_states.ndim == 3
        assert attn.to_q.bias is None and attn.to_k.bias is None and attn.to_v.bias is None
        assert attn.norm_q is None and attn.norm_k is None and attn.group_norm is None and attn.spatial_norm is None
        assert not attn.residual_connection and attn.rescale_output_factor == 1.0
        x = hidden_states  # (n, f, c)
        heads, c = attn.heads, x.shape[-1]
        d = attn.to_q.out_features // heads
        w_q, w_k, w_v = (lin.weight.view(heads, d, c) for lin in (attn.to_q, attn.to_k, attn.to_v))
        w_o = attn.to_out[0].weight.view(-1, heads, d).permute(1, 2, 0)  # (heads, d, c_out)
        a = w_q.transpose(1, 2) @ w_k * attn.scale  # (heads, c, c)
        b = w_v.transpose(1, 2) @ w_o  # (heads, c, c_out)
        x = x.unsqueeze(1)  # (n, 1, f, c)
        probs = ((x @ a) @ x.transpose(-1, -2)).softmax(dim=-1)  # (n, heads, f, f)
        out = (probs @ (x @ b)).sum(dim=1) + attn.to_out[0].bias  # (n, f, c_out)
        return attn.to_out[1](out)


def conv3d_by_frames(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a stride-1, undilated, ungrouped `nn.Conv3d` on (b, c, f, h, w), as one 2D convolution of every
    (time-padded) frame with the kt temporal taps stacked as output channels, then the taps' shifted sum. The same
    function of the same weights (equal up to float rounding); for the mapping network's 64 → 4 output convolution,
    which ATen runs on its slow im2col path (`slow_conv3d_forward`), it is 12× faster forward and 13× with backward on
    a CPU (16 frames of 16², one thread), ~6 % of a 25-step generation. tests/test_speedups.py checks it."""
    assert conv.stride == (1, 1, 1) and conv.dilation == (1, 1, 1) and conv.groups == 1
    assert conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
    (kt, kh, kw), (pt, ph, pw) = conv.kernel_size, conv.padding
    b, c, f, h, w = x.shape
    o, frames = conv.out_channels, f + 2 * pt - kt + 1
    padded = F.pad(x, (0, 0, 0, 0, pt, pt)).transpose(1, 2).reshape(b * (f + 2 * pt), c, h, w)
    taps = conv.weight.permute(2, 0, 1, 3, 4).reshape(kt * o, c, kh, kw)
    y = F.conv2d(padded, taps, None, padding=(ph, pw))
    y = y.view(b, f + 2 * pt, kt, o, *y.shape[-2:])
    out = sum(y[:, k : k + frames, k] for k in range(kt))  # (b, frames, o, h', w')
    if conv.bias is not None:
        out = out + conv.bias.view(1, 1, o, 1, 1)
    return out.transpose(1, 2)


class MappingNetwork(nn.Module):
    """§3.2 / appendix `MappingLayer`: maps IID noise x_t to a video-friendly input of the UNet.

    x ─► x + conv3d_branch(x)  (3D convolutions over f, h, w; zero-initialised last conv)
      ─► (b h w) f c tokens ─► + proj_out(temporal_attn(LayerNorm(tokens + pos)))  (zero-initialised proj_out)
      ─► back to (b c f h w)

    The appendix pseudo-code adds the input once more at the end (`h + input_x`) after a conv "residual" block,
    which would double x at init; we read both residuals as residual *branches* so that the whole network is
    exactly the identity at initialisation (m(x) == x), which keeps training from a frozen T2I model stable.
    """

    def __init__(
        self,
        channels: int = 4,
        hidden_channels: int = 64,
        heads: int = 8,
        head_dim: int = 64,
        max_frames: int = 64,
    ):
        super().__init__()
        self.channels = channels
        # Temporal 3D-conv residual branch (appendix: "3D convolution layers for f, h, w dimensions").
        self.conv_in = nn.Conv3d(channels, hidden_channels, kernel_size=3, padding=1)
        self.conv_out = nn.Conv3d(hidden_channels, channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        # Temporal attention branch over the frames of each latent pixel.
        self.temporal_norm = nn.LayerNorm(channels)
        self.temporal_attn = Attention(query_dim=channels, heads=heads, dim_head=head_dim)
        if channels < head_dim:  # the usual case (4 latent channels): attention in c dims is cheaper
            self.temporal_attn.set_processor(LowRankSelfAttnProcessor())
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.register_buffer("positions", sinusoidal_positions(max_frames, channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.channels:
            raise ValueError(f"x: expected a (b, {self.channels}, f, h, w) video latent, got shape {tuple(x.shape)}")
        b, c, f, h, w = x.shape
        if f > self.positions.shape[0]:
            raise ValueError(f"x: at most {self.positions.shape[0]} frames supported, got {f}")
        x = x + conv3d_by_frames(self.conv_out, F.silu(self.conv_in(x)))  # (b, c, f, h, w)
        tokens = rearrange(x, "b c f h w -> (b h w) f c")
        attn_in = self.temporal_norm(tokens + self.positions[:f].to(tokens.dtype))
        tokens = tokens + self.proj_out(self.temporal_attn(attn_in))  # (b h w, f, c)
        return rearrange(tokens, "(b h w) f c -> b c f h w", b=b, h=h, w=w)


class FrameTokenGenerator(nn.Module):
    """§3.5 / appendix `Frame_wise_token`: t_θ : (M × D) → (F × K × D) frame-wise tokens.

    Linear-SiLU, SiLU, Conv1d(M → F·K, k=1) over the token axis, SiLU, 3 × Linear-SiLU. The tokens are
    concatenated after the M text tokens of every frame: output `(b f) (M+K) D`, batch-major, in the order of
    `repeat_interleave(num_frames, dim=0)`, so the text tokens of every frame are untouched.
    """

    def __init__(self, text_dim: int = 768, max_text_len: int = 77, num_tokens: int = 3, num_frames: int = 16):
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_tokens: expected >= 1, got {num_tokens}")
        self.num_frames = num_frames
        self.num_tokens = num_tokens
        self.max_text_len = max_text_len
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(text_dim, text_dim), nn.SiLU()),
            nn.SiLU(),
            nn.Conv1d(max_text_len, num_tokens * num_frames, kernel_size=1, bias=False),
            nn.SiLU(),
            nn.Sequential(nn.Linear(text_dim, text_dim), nn.SiLU()),
            nn.Sequential(nn.Linear(text_dim, text_dim), nn.SiLU()),
            nn.Sequential(nn.Linear(text_dim, text_dim), nn.SiLU()),
        )

    def frame_tokens(self, text_tokens: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """(b, M, D) → (b, f, K, D). Other frame counts than trained are linearly resampled along frames."""
        if text_tokens.ndim != 3 or text_tokens.shape[1] != self.max_text_len:
            raise ValueError(
                f"text_tokens: expected (b, {self.max_text_len}, D) text encoder states, got {tuple(text_tokens.shape)}"
            )
        tokens = rearrange(self.layers(text_tokens), "b (f n) d -> b f n d", f=self.num_frames)
        f = num_frames or self.num_frames
        if f != self.num_frames:
            b, _, n, d = tokens.shape
            flat = rearrange(tokens, "b f n d -> b (n d) f")
            flat = F.interpolate(flat, size=f, mode="linear", align_corners=True)
            tokens = rearrange(flat, "b (n d) f -> b f n d", n=n, d=d)
        return tokens

    def forward(self, text_tokens: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """(b, M, D) → (b f, M + K, D): every frame's text tokens followed by its K frame tokens."""
        f = num_frames or self.num_frames
        tokens = self.frame_tokens(text_tokens, f)  # (b, f, K, D)
        text = repeat(text_tokens, "b n d -> b f n d", f=f)
        return rearrange(torch.cat([text, tokens], dim=2), "b f n d -> (b f) n d")


class ProjectionHead(nn.Module):
    """§3.4 / appendix `Contrastive_projection` g: h-space (c, s, s) → z (c). Training only, never shipped.

    Conv2d with kernel = spatial size (collapses h, w), SiLU, Flatten, then Linear/SiLU MLP c → c → c → c.
    """

    def __init__(self, channels: int, spatial_size: int):
        super().__init__()
        self.channels = channels
        self.spatial_size = spatial_size
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=spatial_size, stride=1, padding=0, bias=False),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(channels, channels),
            nn.SiLU(),
            nn.Linear(channels, channels),
            nn.SiLU(),
            nn.Linear(channels, channels),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.spatial_size, self.spatial_size)
        if h.ndim != 4 or tuple(h.shape[1:]) != expected:
            raise ValueError(f"h: expected (n, {expected[0]}, {expected[1]}, {expected[2]}) h-space features, got {tuple(h.shape)}")
        return self.layers(h)
