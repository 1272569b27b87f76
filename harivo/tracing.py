"""`harivo.trace(pipe)`: the frame-wise cross-attention of a generation, for notebooks (DAAM, for videos).

    import harivo
    with harivo.trace(pipe) as tr:           # any diffusers AnimateDiffPipeline, or harivo's HarivoPipeline
        video = pipe("a dog running on the beach", num_frames=16, generator=torch.Generator().manual_seed(0))
    tr.word_map("dog")                       # (videos, frames, h, w), every resolution upsampled and averaged
    tr.word_map("dog", resolution="16x16", step=0)
    tr.record                                # the whole AttentionRecord: per step, resolution and layer

A stock diffusers pipeline is traced from the outside: `RecordingAttnProcessor`s (bit-identical to
`AttnProcessor2_0`, so the video does not change) on the UNet's spatial cross-attention layers (`attn2`, never the
motion modules), a forward pre-hook on the UNet (one UNet call is one denoising step: shapes, timestep) and a wrapper
around `pipe.encode_prompt` (the prompt, whether CFG is on). Under CFG the pipeline batches [uncond, cond], so the
conditional half is the last one, and only it is recorded. A `HarivoPipeline` records the same maps itself; the
trace switches its capture on for the call and keeps its record. Every hook is removed on exit, also when the call
raises.

A word's map merges its sub-word tokens as DAAM does (`GlobalHeatMap.compute_word_heat_map`): the word is tokenized,
every occurrence of its token sequence in the prompt is found, and the maps of all those tokens are averaged
(`merge="mean"`; `merge="sum"` adds them instead).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from typing import Iterator

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from .attention import (AttentionRecord, CrossAttentionRecorder, recording, spatial_attention_names,
                        text_token_columns)
from .tokenizer import split_words, token_ids, token_pieces

MERGES = ("mean", "sum")
_TRACED: set[int] = set()  # id() of the pipelines inside a trace (a second, nested trace is refused)


class Trace:
    """What one `trace` block recorded: the last generation's `AttentionRecord` and its prompt.

    Read it after the pipeline call returns. Maps are on the CPU, float32, conditional branch only, mean over heads
    (and over the layers of a resolution); `b` is the number of videos recorded (those of `prompt_index`).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.prompt: str | None = None  # the traced prompt (None: the call passed prompt embeddings)
        self._recorder: CrossAttentionRecorder | None = None
        self._record: AttentionRecord | None = None
        self._missing = "nothing was traced: call the pipeline inside `with harivo.trace(pipe) as tr:`"

    def _begin(self, recorder: CrossAttentionRecorder | None, prompt: str | None, record=None, missing="") -> None:
        """A new generation: its recorder (stock pipelines) or its finished record (HarivoPipeline)."""
        self._recorder, self._record, self.prompt = recorder, record, prompt
        self._missing = missing or self._missing

    @property
    def record(self) -> AttentionRecord:
        """The `AttentionRecord` of the last traced generation (`per_step`, `per_layer`, `tokens`, `maps()`)."""
        if self._record is None and self._recorder is not None:
            self._record, self._recorder = self._recorder.result(), None
        if self._record is None:
            raise RuntimeError(self._missing)
        return self._record

    @property
    def tokens(self) -> list[str]:
        """The labels of the recorded token columns: <sot>, the prompt's tokens, <eot> (HarivoPipeline: + <f1>..)."""
        return self.record.tokens

    @property
    def words(self) -> list[str]:
        """The prompt's words (as CLIP's pre-tokenizer splits them, lower-cased), each once, punctuation left out."""
        if self.prompt is None:
            return []
        return list(dict.fromkeys(w for w in split_words(self.prompt) if any(c.isalnum() for c in w)))

    def maps(self, resolution: str | None = None, step: int | None = None,
             size: tuple[int, int] | None = None) -> torch.Tensor:
        """(b, f, h, w, n) maps of every recorded token (`AttentionRecord.maps`): one resolution ("HxW") or all,
        upsampled to `size` (default: the largest) and averaged; one step or the mean over steps."""
        return self.record.maps(resolution, step, size)

    def token_indices(self, word: str) -> list[int]:
        """The record's columns of `word`: every occurrence of its sub-word token sequence in the prompt (a phrase
        such as "red circle" works too). ValueError naming `word` (and the prompt's words) when it is not there."""
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"word: expected a word of the prompt, got {word!r}")
        if self.prompt is None:
            raise ValueError("word: the traced call passed prompt embeddings, not a prompt, so there are no words; "
                             "read the token columns with `tr.maps()[..., i]`")
        last = self.record.token_kinds.count("text") - 1  # <eot>'s column: later prompt tokens were truncated away
        prompt, pieces = token_pieces(self.tokenizer, self.prompt), token_pieces(self.tokenizer, word)
        starts = [i for i in range(len(prompt) - len(pieces) + 1) if prompt[i : i + len(pieces)] == pieces]
        columns = sorted({1 + i + k for i in starts for k in range(len(pieces)) if 1 + i + k < last})  # 0: <sot>
        if not columns:
            raise ValueError(f"word: {word!r} is not in the traced prompt; expected one of {self.words}")
        return columns

    def word_map(self, word: str, resolution: str | None = None, step: int | None = None,
                 size: tuple[int, int] | None = None, merge: str = "mean") -> torch.Tensor:
        """(b, f, h, w) map of `word` per video and frame: the maps of its sub-word tokens (every occurrence)
        averaged as DAAM does (`merge="sum"`: added), at one resolution or all, one step or the mean over steps."""
        if merge not in MERGES:
            raise ValueError(f"merge: expected one of {list(MERGES)}, got {merge!r}")
        maps = self.maps(resolution, step, size)[..., self.token_indices(word)]
        return maps.mean(-1) if merge == "mean" else maps.sum(-1)


@contextlib.contextmanager
def trace(pipe, *, keep_per_step: bool = True, prompt_index: int = 0) -> Iterator[Trace]:
    """Record the frame-wise cross-attention of every call of `pipe` inside the block (the `Trace` holds the last).

    `pipe`: a diffusers `AnimateDiffPipeline` (or another pipeline with `unet`, `tokenizer` and `encode_prompt`
    that calls its UNet once per denoising step, CFG batched as [uncond, cond]; an image pipeline is recorded as
    one-frame videos) or a `harivo.pipeline.HarivoPipeline`. `keep_per_step`: keep the maps of every step (else
    only their mean). `prompt_index`: with a list of prompts, the one whose videos are recorded.
    Not for a pipeline other threads call meanwhile: the hooks act on every call.
    """
    if not isinstance(keep_per_step, bool):
        raise ValueError(f"keep_per_step: expected True or False, got {keep_per_step!r}")
    if isinstance(prompt_index, bool) or not isinstance(prompt_index, int) or prompt_index < 0:
        raise ValueError(f"prompt_index: expected an index ≥ 0 into the call's prompts, got {prompt_index!r}")
    if id(pipe) in _TRACED:
        raise ValueError("pipe: already inside a trace; nested traces of one pipeline are not supported")
    harivo = _is_harivo_pipeline(pipe)
    if not harivo and not all(hasattr(pipe, a) for a in ("unet", "tokenizer", "encode_prompt")):
        raise ValueError(f"pipe: expected a diffusers AnimateDiffPipeline (unet, tokenizer, encode_prompt) or a "
                         f"HarivoPipeline, got {type(pipe).__name__}")
    tr = Trace(pipe.tokenizer)
    hooks = _harivo_hooks(pipe, tr, keep_per_step, prompt_index) if harivo else \
        _diffusers_hooks(pipe, tr, keep_per_step, prompt_index)
    _TRACED.add(id(pipe))
    try:
        with hooks:
            yield tr
    finally:
        _TRACED.discard(id(pipe))


def _is_harivo_pipeline(pipe) -> bool:
    """Told by name, not isinstance: `harivo.pipeline` imports the package face that exports `trace`."""
    return any(c.__module__ == "harivo.pipeline" and c.__name__ == "HarivoPipeline" for c in type(pipe).__mro__)


# ------------------------------------------------------------------------------------------------ HarivoPipeline
@contextlib.contextmanager
def _harivo_hooks(pipe, tr: Trace, keep_per_step: bool, prompt_index: int) -> Iterator[None]:
    """Every call samples with attention capture on (`keep_per_step` as asked); its record becomes the trace's."""
    if prompt_index != 0:
        raise ValueError(f"prompt_index: a HarivoPipeline call has one prompt, expected 0, got {prompt_index}")
    sample = pipe._sample

    def traced_sample(requested, *args, **kwargs):
        settings = dataclasses.replace(requested, capture_attention=True, keep_attention_per_step=keep_per_step)
        out = sample(settings, *args, **kwargs)
        missing = "; ".join(n for n in out.notes if "attention" in n) or "the pipeline recorded no attention"
        tr._begin(None, requested.prompt, out.attention, missing)
        return out

    pipe._sample = traced_sample
    try:
        yield
    finally:
        del pipe._sample  # the class's method again


# ------------------------------------------------------------------------------------------------ stock diffusers
class _PromptRecorder(CrossAttentionRecorder):
    """`CrossAttentionRecorder` of one prompt's videos, followed in the batch by `after` more conditional videos
    (the processors compute the last `rows` rows: this prompt's and those after it)."""

    def __init__(self, *args, after: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = (self.b + after) * self.f

    def record(self, name: str, probs: torch.Tensor) -> None:
        super().record(name, probs[-self.rows :][: self.b * self.f])


class _DiffusersTracer:
    """The hooks on a stock pipeline: `encode_prompt` says a generation starts (prompt, CFG); the UNet's first call
    then gives the latent shape, the recorder is made and the processors installed; every call is a step."""

    def __init__(self, pipe, tr: Trace, names: list[str], keep_per_step: bool, prompt_index: int):
        self.pipe, self.tr, self.names = pipe, tr, names
        self.keep_per_step, self.prompt_index = keep_per_step, prompt_index
        self.encode_prompt = pipe.encode_prompt
        self.signature = inspect.signature(self.encode_prompt)
        self.pending: dict | None = None  # encode_prompt's arguments, until the generation's first UNet call
        self.recorder: CrossAttentionRecorder | None = None
        self.steps = 0
        self.processors = contextlib.ExitStack()

    def traced_encode_prompt(self, *args, **kwargs):
        self.pending = dict(self.signature.bind(*args, **kwargs).arguments)
        return self.encode_prompt(*args, **kwargs)

    def before_unet(self, module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        if self.pending is not None or self.recorder is None:
            states = args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states")
            self.start(sample, states)
        self.recorder.begin_step(self.steps, int(timestep.flatten()[0]) if torch.is_tensor(timestep) else int(timestep))
        self.steps += 1

    def start(self, sample: torch.Tensor, states: torch.Tensor | None) -> None:
        """A new generation: a recorder for its shapes and prompt, installed on the UNet's cross-attention."""
        call = self.pending or {}
        self.pending, self.steps = None, 0
        cfg = call.get("do_classifier_free_guidance", getattr(self.pipe, "do_classifier_free_guidance", False))
        frames = sample.shape[2] if sample.ndim == 5 else 1  # (b, c, f, h, w) video latents, (b, c, h, w) images
        videos = sample.shape[0] // 2 if cfg else sample.shape[0]
        prompt = call.get("prompt")
        prompts = len(prompt) if isinstance(prompt, (list, tuple)) else 1
        if self.prompt_index >= prompts:
            raise ValueError(f"prompt_index: expected an index below the call's {prompts} prompt(s), "
                             f"got {self.prompt_index}")
        per_prompt = videos // prompts
        text = prompt[self.prompt_index] if isinstance(prompt, (list, tuple)) else prompt
        index, labels, text = self.columns(text, states)
        self.recorder = _PromptRecorder(per_prompt, frames, tuple(sample.shape[-2:]), index, labels,
                                        ["text"] * len(index), self.keep_per_step,
                                        after=videos - (self.prompt_index + 1) * per_prompt)
        self.processors.close()
        self.processors.enter_context(recording(self.pipe.unet, self.names, self.recorder))
        self.tr._begin(self.recorder, text)

    def columns(self, text, states: torch.Tensor | None) -> tuple[list[int], list[str], str | None]:
        """The prompt's text columns as `encode_prompt` tokenizes it (textual inversion included); without a
        prompt (prompt embeddings passed) every key position, labelled by its index."""
        if not isinstance(text, str):
            n = states.shape[1] if states is not None else self.pipe.tokenizer.model_max_length
            return list(range(n)), [f"[{i}]" for i in range(n)], None
        if hasattr(self.pipe, "maybe_convert_prompt"):  # TextualInversionLoaderMixin, as encode_prompt does
            text = self.pipe.maybe_convert_prompt(text, self.pipe.tokenizer)
        index, labels = text_token_columns(self.pipe.tokenizer, token_ids(self.pipe.tokenizer, text)[0])
        return index, labels, text


def _check_processors(unet, names: list[str]) -> None:
    """The recording processor is bit-identical to AttnProcessor2_0 only: any other (an IP-Adapter's, attention
    slicing, xformers) would be replaced and the video would change."""
    processors = unet.attn_processors
    for name in names:
        if type(processors[name]) is not AttnProcessor2_0:
            raise ValueError(f"pipe: trace replaces the cross-attention processors and needs diffusers' default "
                             f"AttnProcessor2_0 there, but {name} has {type(processors[name]).__name__} (an "
                             f"IP-Adapter, attention slicing or xformers?); `pipe.unet.set_attn_processor("
                             f"AttnProcessor2_0())` restores the default")


@contextlib.contextmanager
def _diffusers_hooks(pipe, tr: Trace, keep_per_step: bool, prompt_index: int) -> Iterator[None]:
    if getattr(pipe, "free_noise_enabled", False):
        raise ValueError("pipe: FreeNoise encodes one prompt per frame window; trace does not support it")
    names = spatial_attention_names(pipe.unet, "attn2")
    if not names:
        raise ValueError("pipe: its UNet has no spatial cross-attention layers to trace")
    _check_processors(pipe.unet, names)
    tracer = _DiffusersTracer(pipe, tr, names, keep_per_step, prompt_index)
    own = vars(pipe).get("encode_prompt")  # an instance attribute of the caller's, restored after ours
    pipe.encode_prompt = tracer.traced_encode_prompt
    handle = pipe.unet.register_forward_pre_hook(tracer.before_unet, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        tracer.processors.close()
        if own is None:
            del pipe.encode_prompt
        else:
            pipe.encode_prompt = own
