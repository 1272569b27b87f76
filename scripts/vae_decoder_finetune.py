"""Teach a shapes VAE's decoder to draw what its encoder already keeps (made for the "band" backdrop).

The encoder and its latents stay exactly as they are, so a T2I UNet trained on them needs no change; only
`decoder` and `post_quant_conv` train, on fresh frames of the current world (HARIVO_* settings), with stage 1's
loss (L1 + MSE, pixels that differ from the flat background colour weighted x `--object-weight`):

    HARIVO_CUE_STYLE=cue3 HARIVO_BACKDROP=band PYTHONPATH=. python scripts/vae_decoder_finetune.py \\
        checkpoints/shapes-sd-zsnr/vae runs/vae-band --steps 400 --threads 1

Before and after it reports the share of band pixels the reconstruction draws in the band's colour (closer to it
than half the way to the background) and the reconstruction's PSNR on held-out frames.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from tqdm import tqdm

from harivo.data.shapes import BACKGROUNDS, CUE3_COLOURS, band_mask
from harivo.fileio import atomic_dir
from harivo.pixels import to_pixels
from harivo.stage1.data import render_batch
from harivo.stage1.vae import object_weights


@torch.no_grad()
def measure(vae, n: int = 64, seed: int = 12345) -> dict:
    """Band pixels drawn in the band's colour (share) and PSNR (dB), on `n` held-out frames."""
    specs, imgs = render_batch(np.random.default_rng(seed), n, "all", 64)
    x = to_pixels(imgs)
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    psnr = float(10 * torch.log10(4.0 / ((rec - x) ** 2).mean()))
    r = ((rec + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    kept = []
    for spec, img, out in zip(specs, imgs, r):
        mask = band_mask(spec.motion, 64)
        if mask is None:
            continue
        colour = np.array(CUE3_COLOURS[spec.motion], float)
        on = mask & (np.abs(img.astype(float) - colour).max(-1) < 1)  # band pixels the object does not cover
        px = out[on]
        bg = np.array(BACKGROUNDS[spec.background], float)
        kept.append(float(np.mean(np.linalg.norm(px - colour, axis=-1) < np.linalg.norm(px - bg, axis=-1) / 2)))
    return {"band_kept": float(np.mean(kept)) if kept else float("nan"), "psnr_db": psnr, "frames": n}


def main() -> None:
    from diffusers import AutoencoderKL

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("vae", help="a diffusers AutoencoderKL folder")
    ap.add_argument("out", help="folder to write the fine-tuned VAE to (atomically)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--object-weight", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    before = measure(vae)
    print("before:", before, flush=True)
    trainable = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in vae.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    t0 = time.time()
    for step in tqdm(range(args.steps), desc="decoder"):
        for g in opt.param_groups:  # cosine to 10 %
            g["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / args.steps)))
        specs, imgs = render_batch(np.random.default_rng([args.seed, 7, step]), args.batch_size, "train", 64)
        x = to_pixels(imgs)
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn_like(post.mean)
        err = vae.decode(z).sample.float() - x
        w = object_weights(specs, x, args.object_weight)
        loss = (w * err.abs()).mean() + (w * err ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    vae.eval()
    after = measure(vae)
    print("after:", after, flush=True)
    info = {"from": args.vae, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "minutes": round((time.time() - t0) / 60, 1), "threads": args.threads, "before": before, "after": after}
    with atomic_dir(args.out) as tmp:
        vae.save_pretrained(tmp)
        (tmp / "decoder_finetune.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
