"""Sampling and scoring stage 1's text-to-image model: the sample grids written during training, and `--eval`
(`evaluate`), which samples `eval_prompts` captions (about 2/3 of the training split, 1/3 held out) from an
exported pipeline with the stock diffusers `StableDiffusionPipeline` and reads each image back with the
shapes-world checker (colour, shape, background and the motion cue right or not).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from harivo.fileio import atomic_path, read_json, write_json
from harivo.train.stage1.config import T2IConfig


def ddim_scheduler(zero_snr: bool = False):
    """The DDIM scheduler stage 1 ships with, on the training schedule (`t2i_models.schedule`)."""
    from diffusers import DDIMScheduler

    from harivo.train.t2i_models import schedule

    return DDIMScheduler(**schedule(zero_snr), clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def generate(pipe, prompts: list[str], first_seed: int, steps: int, guidance: float, **kwargs) -> np.ndarray:
    """(n, h, w, 3) uint8 images of `prompts` from a `StableDiffusionPipeline`, prompt i with seed first_seed + i."""
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(first_seed + i) for i in range(len(prompts))]
    with torch.no_grad():
        out = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np",
                   **kwargs).images
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def sample_images(vae, text_encoder, tokenizer, unet, prompts, seed, steps, guidance, zero_snr=False) -> np.ndarray:
    """Images of `prompts` from the models being trained (a pipeline around them, DDIM), at the VAE's size."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=ddim_scheduler(zero_snr), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    size = int(vae.config.sample_size)
    return generate(pipe, prompts, seed, steps, guidance, height=size, width=size)


def sample_prompts(n: int, seed: int) -> tuple[list[str], list[bool]]:
    """~2/3 prompts of the training split, ~1/3 of the held-out split (fixed by the seed)."""
    from harivo.data.shapes import all_specs

    rng = np.random.default_rng([seed, 3])
    n_held = n // 3
    train, held = all_specs("train"), all_specs("held_out")
    pick_t = [train[i] for i in rng.choice(len(train), size=n - n_held, replace=False)]
    pick_h = [held[i] for i in rng.choice(len(held), size=min(n_held, len(held)), replace=False)]
    return [s.caption for s in pick_t + pick_h], [False] * len(pick_t) + [True] * len(pick_h)


def short_caption(caption: str) -> str:
    """A caption short enough for a grid title ("red circle up on gray bg")."""
    return caption.replace("is ", "").replace(" background", " bg").replace("moving ", "").replace("a ", "", 1)


def save_grid(path: Path, images: list[np.ndarray], titles: list[str] | None = None, cols: int = 8) -> None:
    """A PNG grid of `images` with a small title above each, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9), dpi=80, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def frame_reader(world: str = ""):
    """The checker's `read_frame` (image → what it shows) in `world` (`shapes.World.parse`; "" is the shipped
    world), or None where `harivo.data.checker` does not import."""
    try:
        from harivo.data.checker import read_frame, world_thresholds
        from harivo.data.shapes import World
    except Exception:
        return None
    thresholds = world_thresholds(World.parse(world))
    return lambda image: read_frame(image, thresholds)


def checker_scores(prompts: list[str], held: list[bool], imgs: np.ndarray, read) -> tuple[list[dict], dict]:
    """One row per image (the checker's reading against its prompt) and the fractions right, over all prompts and
    over the seen / held-out ones."""
    from harivo.data.shapes import DIRECTIONS, ShapeSpec

    rows = []
    for p, h, im in zip(prompts, held, imgs):  # is the caption's band (or none) drawn?
        spec = ShapeSpec.from_caption(p)
        r = read(im)
        rows.append({"prompt": p, "held_out": h, "colour": r.colour == spec.colour, "shape": r.shape == spec.shape,
                     "background": r.background == spec.background,
                     "band": r.band == (spec.motion if spec.motion in DIRECTIONS else None),
                     "read": [r.colour, r.shape, r.background, r.band]})

    def frac(sel, key):
        sel = [r for r in rows if sel(r)]
        if key == "all":
            return sum(r["colour"] and r["shape"] and r["background"] for r in sel) / max(1, len(sel))
        return sum(r[key] for r in sel) / max(1, len(sel))

    selections = (("all", lambda r: True), ("seen", lambda r: not r["held_out"]), ("held_out", lambda r: r["held_out"]))
    keys = ("all", "colour", "shape", "background", "band")
    fractions = {name: {k: frac(sel, k) for k in keys}
                 for name, sel in selections}
    return rows, fractions


def evaluate(cfg: T2IConfig, folder: str | None = None, record: bool = True) -> dict:
    """Sample `eval_prompts` captions with the stock StableDiffusionPipeline and score them with the checker; the
    result goes to `run_dir` and, with `record`, to eval.json beside the weights."""
    from diffusers import StableDiffusionPipeline

    from harivo.train.t2i_models import verb_separation

    folder = folder or cfg.output_dir
    if not (Path(folder) / "model_index.json").is_file():
        raise ValueError(f"output_dir: no StableDiffusionPipeline folder at {folder!r}")
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    prompts, held = sample_prompts(cfg.eval_prompts, cfg.seed)
    t0 = time.time()
    imgs = generate(pipe, prompts, 1000, cfg.eval_steps, cfg.eval_guidance)
    result = {"folder": str(folder), "prompts": len(prompts), "steps": cfg.eval_steps,
              "guidance": cfg.eval_guidance, "sampling_seconds": round(time.time() - t0, 1)}
    read = frame_reader(cfg.world)
    titles = [short_caption(p) for p in prompts]
    if read is not None:
        rows, fractions = checker_scores(prompts, held, imgs, read)
        result.update(fractions, rows=rows)
        titles = [("ok " if (r["colour"] and r["shape"] and r["background"]) else "X ") + ("" if r["band"] else "~") + t
                  for r, t in zip(rows, titles)]
    else:
        result["checker"] = "harivo.data.checker not available"
    train_info = Path(folder) / "training.json"
    step = read_json(train_info).get("unet", {}).get("steps", 0) if train_info.is_file() else 0
    result["unet_steps"] = step
    with torch.no_grad():
        result["text_separation"] = verb_separation(pipe.text_encoder, pipe.tokenizer)
    grid = Path(cfg.run_dir) / "samples" / f"eval_step{step:06d}.png"
    save_grid(grid, list(imgs), titles, cols=8)
    result["grid"] = str(grid)
    write_json(Path(cfg.run_dir) / f"eval_step{step:06d}.json", result)
    if record:
        write_json(Path(folder) / "eval.json", result)  # beside the weights it scores (dropped by the next export)
    return result
