"""Attention capture: processors installed (and restored) by context managers, recorders owned by the call.

- `CrossAttentionRecorder`: probabilities of the spatial cross-attention layers (`attn2` of the T2I transformer
  blocks, never `motion_modules.*`, whose attn2 is temporal self-attention), conditional branch only, per frame,
  for the text tokens and the K frame-wise tokens (Fig. 6b). Aggregated per resolution per step and per layer.
- the L_TRS recorder (`harivo.train.trs.TRSRecorder`, beside the losses): spatial self-attention maps (`attn1`) of
  the decoder, with gradients, reduced on the fly to the frame-difference terms of Eq. 3; with `chunk_size > 0`
  it computes each layer's attention itself (`attend`) and the maps are never kept.

The processor computes the layer's output exactly like diffusers' default `AttnProcessor2_0` (SDPA), so
capture on/off gives bit-identical outputs; the probabilities are computed beside it (SDPA returns none).
When no capture context is active the default processors stay in place: capture costs nothing when off.
Installing processors changes the model, so callers that share a model across threads hold a lock
(`HarivoPipeline` does).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


class Recorder(Protocol):
    """Gets the probabilities of every recorded layer. Optional attributes a recorder may set:
    `rows` (int): it only needs the last `rows` batch rows (e.g. the conditional half under CFG), so only those are
    computed; `output_from_probs` (bool): see `RecordingAttnProcessor`; `chunk_size` (int > 0): the recorder
    computes the layer's attention itself, `attend(name, query, key, value) -> output`, and never sees the maps."""

    def record(self, name: str, probs: torch.Tensor) -> None: ...


class RecordingAttnProcessor:
    """`AttnProcessor2_0` that also hands softmax(QKᵀ/√d) of shape (batch, heads, queries, keys) to a recorder.

    A recorder with `output_from_probs = True` (L_TRS, whose maps keep gradients) gets the layer output as
    probs @ V from the very probabilities it records: autograd keeps them anyway, and a second attention
    computation (SDPA) plus its backward would only double the work. Otherwise the output comes from SDPA,
    bit-identical to the default processor (capture on/off gives the same video).

    A recorder with `chunk_size > 0` (memory-efficient L_TRS, `harivo.train.trs`) never sees the maps: its `attend`
    returns the layer's attention output and keeps what it needs of the maps itself.
    """

    def __init__(self, name: str, recorder: Recorder):
        self.name = name
        self.recorder = recorder
        self.output_from_probs = bool(getattr(recorder, "output_from_probs", False))
        self.rows = getattr(recorder, "rows", None)  # only the last `rows` batch rows are recorded
        self.chunk_size = int(getattr(recorder, "chunk_size", 0) or 0)
        assert not (self.output_from_probs and self.rows), "the output needs the probabilities of every row"
        assert not (self.chunk_size and self.rows), "the chunked L_TRS path needs every row"

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, q, d)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, k, d)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if self.chunk_size and attention_mask is None:
            # memory-efficient L_TRS: the recorder computes the output (and its term), maps recomputed in backward
            hidden_states = self.recorder.attend(self.name, query, key, value)
            return self._project_out(attn, hidden_states, residual, input_ndim, batch_size, head_dim, query.dtype,
                                     (channel, height, width) if input_ndim == 4 else None)
        # the probabilities SDPA uses internally (default scale 1/√d, applied to the smaller Q), recorded
        q, k, mask = query, key, attention_mask
        if self.rows:  # just the rows the recorder keeps: under CFG the conditional half, half the work
            q, k = q[-self.rows :], k[-self.rows :]
            mask = mask[-self.rows :] if mask is not None else None
        scores = (q.float() / math.sqrt(head_dim)) @ k.float().transpose(-1, -2)
        if mask is not None:
            scores = scores + mask.float()
        probs = scores.softmax(dim=-1)  # (B or rows, heads, q, k)
        self.recorder.record(self.name, probs)
        if self.output_from_probs:
            hidden_states = probs.to(value.dtype) @ value
        else:
            hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                                           is_causal=False)
        return self._project_out(attn, hidden_states, residual, input_ndim, batch_size, head_dim, query.dtype,
                                 (channel, height, width) if input_ndim == 4 else None)

    @staticmethod
    def _project_out(attn: Attention, hidden_states: torch.Tensor, residual: torch.Tensor, input_ndim: int,
                     batch_size: int, head_dim: int, dtype: torch.dtype, chw: tuple[int, int, int] | None) -> torch.Tensor:
        """(B, heads, q, d) attention output → the layer output, as `AttnProcessor2_0` finishes."""
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, *chw)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def spatial_attention_names(unet: torch.nn.Module, which: str, decoder_only: bool = False) -> list[str]:
    """Processor keys of the T2I transformer blocks' `attn1` (self) or `attn2` (cross), in module order."""
    if which not in ("attn1", "attn2"):
        raise ValueError(f"which: expected 'attn1' or 'attn2', got {which!r}")
    names = []
    for name in unet.attn_processors:
        parts = name.split(".")
        if ".attentions." not in f".{name}" or "motion_modules" in parts or parts[-2] != which:
            continue
        if decoder_only and not name.startswith("up_blocks."):
            continue
        names.append(name)
    return names


@contextlib.contextmanager
def recording(unet: torch.nn.Module, names: list[str], recorder: Recorder) -> Iterator[Recorder]:
    """Install RecordingAttnProcessors on `names`, restore the previous processors on exit."""
    previous = unet.attn_processors
    procs = {name: (RecordingAttnProcessor(name, recorder) if name in names else proc) for name, proc in previous.items()}
    unet.set_attn_processor(procs)
    try:
        yield recorder
    finally:
        unet.set_attn_processor(previous)


def layer_resolution(name: str) -> str:
    """A readable label for a processor key, e.g. 'up_blocks.1.attentions.0...' → 'up1.0'."""
    parts = name.split(".")
    if parts[0] == "mid_block":
        return f"mid.{parts[2]}"
    return f"{parts[0].split('_')[0]}{parts[1]}.{parts[3]}"


# ------------------------------------------------------------------------------------------------ cross attention
def token_label(token: str) -> str:
    """A CLIP token as the views show it: <sot> / <eot>, the word-end mark `</w>` dropped."""
    return {"<|startoftext|>": "<sot>", "<|endoftext|>": "<eot>"}.get(token, token.replace("</w>", ""))


def text_token_columns(tokenizer, ids: torch.Tensor) -> tuple[list[int], list[str]]:
    """The key positions worth showing of one prompt's (M,) input ids, the real text tokens <sot> … <eot> (not
    the padding after them), and their labels."""
    eos = tokenizer.eos_token_id
    n_text = int((ids == eos).nonzero()[0]) + 1 if (ids == eos).any() else len(ids)
    return list(range(n_text)), [token_label(t) for t in tokenizer.convert_ids_to_tokens(ids[:n_text].tolist())]


@dataclass
class AttentionRecord:
    """Frame-wise cross-attention maps of one generation (conditional branch).

    `per_step[res]`: (steps, b, f, h, w, n) mean over the layers at resolution `res` ("HxW") and heads.
    `per_layer[layer]`: (b, f, h, w, n) mean over steps and heads. `tokens`: the n token labels, text tokens
    first, then the frame tokens `<f1>`..`<fK>`; `token_kinds`: "text" / "frame" per token.
    """

    tokens: list[str]
    token_kinds: list[str]
    timesteps: list[int] = field(default_factory=list)
    per_step: dict[str, torch.Tensor] = field(default_factory=dict)
    per_layer: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def resolutions(self) -> list[str]:
        return sorted(self.per_step, key=lambda r: -int(r.split("x")[0]))

    def maps(self, resolution: str | None = None, step: int | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(b, f, h, w, n) maps: one resolution or all (upsampled to `size` or the largest, then averaged, as DAAM),
        one step or the mean over steps."""
        if not self.per_step:
            raise ValueError("attention: nothing was recorded")
        resolutions = [resolution] if resolution else self.resolutions
        for r in resolutions:
            if r not in self.per_step:
                raise ValueError(f"resolution: expected one of {self.resolutions}, got {r!r}")
        if size is None:
            size = tuple(int(v) for v in self.resolutions[0].split("x"))
        out = []
        for r in resolutions:
            data = self.per_step[r]
            if step is not None:
                if not -data.shape[0] <= step < data.shape[0]:
                    raise ValueError(f"step: expected an index in [0, {data.shape[0]}), got {step}")
                m = data[step]
            else:
                m = data.mean(0)
            b, f, h, w, n = m.shape
            m = m.permute(0, 1, 4, 2, 3).reshape(b * f, n, h, w)
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False) if (h, w) != tuple(size) else m
            out.append(m.reshape(b, f, n, *size).permute(0, 1, 3, 4, 2))
        return torch.stack(out).mean(0)


class CrossAttentionRecorder:
    """Records cross-attention for the last `num_videos · num_frames` batch rows (the conditional half under CFG).

    Only the token columns in `token_index` are kept (real text tokens + frame tokens), on the CPU in float32.
    Call `begin_step(i, t)` before each denoising step.
    """

    def __init__(self, num_videos: int, num_frames: int, latent_hw: tuple[int, int], token_index: list[int],
                 tokens: list[str], token_kinds: list[str], keep_per_step: bool = True):
        self.b, self.f = num_videos, num_frames
        self.latent_hw = latent_hw
        self.token_index = torch.as_tensor(token_index, dtype=torch.long)
        self.rows = num_videos * num_frames  # the processors compute only these (last) rows
        self.record_ = AttentionRecord(tokens=tokens, token_kinds=token_kinds)
        self.keep_per_step = keep_per_step
        self._step_sums: dict[str, list] = {}  # res -> [sum, count] for the current step
        self._layer_sums: dict[str, list] = {}

    def begin_step(self, index: int, timestep: int) -> None:
        self._flush_step()
        self.record_.timesteps.append(int(timestep))

    def _flush_step(self) -> None:
        for res, (total, count) in self._step_sums.items():
            self.record_.per_step.setdefault(res, []).append(total / count)
        self._step_sums = {}

    def _shape(self, queries: int) -> tuple[int, int]:
        h, w = self.latent_hw
        factor = math.isqrt((h * w) // queries)
        return h // factor, w // factor

    @torch.no_grad()
    def record(self, name: str, probs: torch.Tensor) -> None:
        rows = self.b * self.f
        probs = probs[-rows:].mean(1)  # conditional half, mean over heads: (b f, q, k)
        probs = probs[..., self.token_index.to(probs.device)].float().cpu()  # (b f, q, n)
        h, w = self._shape(probs.shape[1])
        maps = probs.reshape(self.b, self.f, h, w, -1)
        res = f"{h}x{w}"
        total = self._step_sums.setdefault(res, [0, 0])
        total[0] = total[0] + maps
        total[1] += 1
        layer = self._layer_sums.setdefault(name, [0, 0])
        layer[0] = layer[0] + maps
        layer[1] += 1

    def result(self) -> AttentionRecord:
        self._flush_step()
        rec = self.record_
        rec.per_step = {r: torch.stack(v) if isinstance(v, list) else v for r, v in rec.per_step.items()}
        if not self.keep_per_step:
            rec.per_step = {r: v.mean(0, keepdim=True) for r, v in rec.per_step.items()}
        rec.per_layer = {n: total / count for n, (total, count) in self._layer_sums.items()}
        return rec
