"""Stage 2's sample videos, written every `sample_every` steps and at the end of a run: a fixed set of prompts
(one per motion, the last one held out), each sampled with the plain CFG schedule and MG off, saved as mp4 /
GIF, drawn as a strip of frames and, on the shapes world, judged by the checker (run_dir/samples/step_N/).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harivo import media
from harivo.fileio import write_json

if TYPE_CHECKING:
    from harivo.train.stage2.run import Run


def sample_specs(n: int, seed: int = 0):
    """n fixed sample prompts, each with another motion; the last one held out when n >= 4."""
    from harivo.data.shapes import MOTIONS, all_specs

    rng = np.random.default_rng([seed, 17])
    order = ("moving left to right", "getting closer", "moving up", "spinning", "moving right to left",
             "moving away", "moving down", "standing still")
    assert set(order) == set(MOTIONS)
    train, held = all_specs("train"), all_specs("held_out")
    specs = []
    for i in range(n):
        if n >= 4 and i == n - 1:
            specs.append(held[int(rng.integers(len(held)))])
            continue
        pool = [s for s in train if s.motion == order[i % len(order)] and s not in specs]
        specs.append(pool[int(rng.integers(len(pool)))])
    return specs


def frame_strip(videos: list[np.ndarray], titles: list[str], scale: int = 2) -> np.ndarray:
    """One row per video (frames left to right, nearest-neighbour upscaled), a caption line above each row."""
    from PIL import Image, ImageDraw

    rows = []
    for video, title in zip(videos, titles):
        row = media.upscale(media.to_uint8(np.concatenate(list(video), axis=1)[None]), video.shape[1] * scale)[0]
        label = Image.new("RGB", (row.shape[1], 14), (255, 255, 255))
        ImageDraw.Draw(label).text((3, 1), title, fill=(0, 0, 0))
        rows += [np.asarray(label), row]
    return np.concatenate(rows, axis=0)


def sample_videos(run: Run) -> Path:
    """Videos for the fixed sample prompts (seed 0; plain CFG schedule, MG off) → run_dir/samples/step_N/."""
    from diffusers import DDIMScheduler

    from harivo.data.checker import judge
    from harivo.pipeline import GenerationSettings, HarivoPipeline
    from harivo.sampling import MGConfig

    cfg, base, model = run.cfg, run.base, run.raw.model
    folder = Path(cfg.run_dir) / "samples" / f"step_{run.step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    pipe = HarivoPipeline(base.vae, base.text_encoder, base.tokenizer, model,
                          DDIMScheduler.from_config(base.scheduler_config), name=cfg.variant)
    model.eval()
    videos, titles, scores = [], [], []
    for i, spec in enumerate(sample_specs(cfg.sample_prompts, cfg.seed)):
        out = pipe(GenerationSettings(prompt=spec.caption, seed=i, num_frames=cfg.num_frames,
                                      num_inference_steps=cfg.sample_steps, mg=MGConfig(enabled=False),
                                      capture_attention=False))
        stem = f"{i}_{spec.caption.replace(' ', '-')}"
        media.write_mp4(out.frames, folder / f"{stem}.mp4")
        media.write_gif(out.frames, folder / f"{stem}.gif")
        verdict = {}
        if cfg.data == "shapes":
            verdict = {k: bool(v) for k, v in judge(out.frames, spec).items() if k != "details"}
        scores.append({"prompt": spec.caption, "seed": i, **verdict})
        videos.append(out.frames)
        titles.append(f"{spec.caption}  " + " ".join(k for k, v in verdict.items() if v))
    model.train()
    media.write_png(frame_strip(videos, titles), folder / "strip.png")
    write_json(folder / "judge.json", {"step": run.step, "variant": cfg.variant, "videos": scores})
    return folder
