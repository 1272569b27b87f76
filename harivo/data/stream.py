"""Training videos decoded and VAE-encoded step by step, for WebVid-scale data (training at scale, §4 / App. D).

`harivo.train` normally VAE-encodes its `train_videos` once and keeps the latents in memory: right for the shapes
world, impossible for WebVid-10M (24 frames of 32×32×4 latents at 256² are ~200 KB per video, ~2 TB in all).
With `stream_data`, every step decodes its own batch from the CSV's video files and encodes it on the device:

- the batch of step n stays a pure function of (seed, n, process): `make_batch` draws the indices from the step
  generator as before, so `--resume` and the DDP test behave as with the cache;
- a thread pool decodes the *next* step's videos while the device trains on this one (PyAV releases the GIL
  while decoding), so decoding costs no step time as long as `workers` keep up;
- a video that cannot be decoded (WebVid has a few broken or too-short files) is replaced by another row chosen
  deterministically from its index, and counted in `skipped`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..tokenizer import token_ids
from .webvid import WebVidDataset

_REPLACEMENT_STRIDE = 7_919  # a prime: replacement rows of a broken video are spread over the CSV
_MAX_REPLACEMENTS = 16


class StreamingVideos:
    """Rows of a WebVid-style CSV as (latents (b, c, f, h, w), text embeddings (b, M, D)) batches, on the fly."""

    def __init__(self, dataset: WebVidDataset, vae, text_encoder, tokenizer, device: torch.device,
                 limit: int | None = None, workers: int = 4, encode_chunk: int = 64):
        self.dataset, self.vae, self.text_encoder, self.tokenizer = dataset, vae, text_encoder, tokenizer
        self.device, self.encode_chunk = device, encode_chunk
        self.size = min(len(dataset), limit) if limit else len(dataset)
        if self.size < 1:
            raise ValueError(f"data: {str(dataset.csv_path)!r} has no rows")
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="harivo-decode")
        self.pending: dict[int, Future] = {}
        self.skipped = 0  # broken videos replaced so far
        self._empty: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.size

    # ------------------------------------------------------------------------------------------ decoding
    def _decode(self, index: int) -> tuple[torch.Tensor, str]:
        """(3, f, h, w) pixels in [-1, 1] and the caption of row `index`, or of a replacement row."""
        last = None
        for k in range(_MAX_REPLACEMENTS):
            row = (index + k * _REPLACEMENT_STRIDE) % self.size
            try:
                item = self.dataset[row]
                if k:
                    self.skipped += 1
                return item["pixel_values"], item["caption"]
            except ValueError as e:
                last = e
        raise ValueError(f"data: {_MAX_REPLACEMENTS} videos in a row could not be decoded, the last: {last}")

    def prefetch(self, indices: list[int]) -> None:
        """Start decoding these rows in the background (the next step's batch)."""
        for i in indices:
            if i not in self.pending:
                self.pending[i] = self.pool.submit(self._decode, i)

    def videos(self, indices: list[int]) -> tuple[torch.Tensor, list[str]]:
        """(b, 3, f, h, w) pixels and captions of `indices` (prefetched ones are taken from the pool)."""
        self.prefetch(indices)
        items = [self.pending[i].result() for i in indices]
        for i in set(indices):
            self.pending.pop(i, None)
        return torch.stack([p for p, _ in items]), [c for _, c in items]

    # ------------------------------------------------------------------------------------------ encoding
    @torch.no_grad()
    def encode_videos(self, pixels: torch.Tensor) -> torch.Tensor:
        """(b, 3, f, h, w) pixels → (b, c, f, h/8, w/8) latents: mode of the posterior × scaling_factor, as the
        cached path computes them."""
        b, f = pixels.shape[0], pixels.shape[2]
        frames = pixels.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (b f, 3, h, w)
        frames = frames.to(self.device, self.vae.dtype)
        z = torch.cat([self.vae.encode(frames[i:i + self.encode_chunk]).latent_dist.mode()
                       for i in range(0, len(frames), self.encode_chunk)])
        z = z.float() * float(self.vae.config.scaling_factor)
        return z.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4).contiguous()  # (b, c, f, h, w)

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """(b, M, D) text-encoder states, padded to max length with no attention mask (as the pipelines)."""
        ids = token_ids(self.tokenizer, captions)
        return self.text_encoder(ids.to(self.device))[0].float()

    @property
    def empty_embeds(self) -> torch.Tensor:
        """(M, D) state of the empty caption (CFG's unconditional branch)."""
        if self._empty is None:
            self._empty = self.encode_text([""])[0]
        return self._empty

    def batch(self, indices: list[int], drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and text embeddings of `indices`; rows where `drop` is true get the empty caption."""
        pixels, captions = self.videos(indices)
        embeds = self.encode_text(captions)
        embeds = torch.where(drop.to(embeds.device)[:, None, None], self.empty_embeds.expand_as(embeds), embeds)
        return self.encode_videos(pixels), embeds

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
