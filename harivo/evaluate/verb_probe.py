"""`python -m harivo.evaluate.verb_probe`: does a video model read the verb of its prompt? Three measurements.

    python -m harivo.evaluate.verb_probe --variants baseline,full --json assets/eval/verb_probe.json

- **Feature change** (`feature_change`): swap one caption word and measure the relative change
  ‖a − b‖ / ‖a‖ of the input of every motion module and of ε, on the same noisy latent. AnimateDiff's motion
  modules attend over frames only; the prompt reaches them only through the frozen T2I's spatial features, so
  this is how much of the verb they can see. A colour swap is the control.
- **Swap gap** (`swap_gap`): ε-MSE on generator videos with their true captions and with the verb swapped
  (left to right ↔ right to left, up ↔ down), same noise and timesteps. A model that reads the verb denoises
  worse with the wrong one: the gap, in % of the true-caption loss, is > 0. A verb-blind model scores 0.
- **Caption oracle** (`oracle_gain`): the most the verb can buy at t ≈ T, where x_t holds almost nothing of
  x0 and the best prediction of x0 is the mean video of the caption. Per verb pair, the x0-MSE of the
  per-verb mean (verb known) against the pooled mean (verb ignored), on generator videos of one
  (colour, shape, background), both as unbiased population estimates. Times the SNR at t, this is the
  ε-loss a model could save by reading the verb.

This is the measurement behind docs/results.md, "Why the videos do not follow the verb".
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harivo import fileio
from harivo.attention import recording, spatial_attention_names
from harivo.data.shapes import TRANSLATIONS, ShapeSpec, all_specs, render_video
from harivo.noise import prediction_target
from harivo.pixels import to_pixels

OPPOSITE = {
    "moving left to right": "moving right to left",
    "moving right to left": "moving left to right",
    "moving up": "moving down",
    "moving down": "moving up",
    "getting closer": "moving away",
    "moving away": "getting closer",
    "spinning": "standing still",
    "standing still": "spinning",
}
# (what changes, caption a, caption b) for the feature change; the colour swap is the control
FEATURE_PAIRS = (
    ("left/right", "a red circle is moving left to right on a gray background",
     "a red circle is moving right to left on a gray background"),
    ("up/down", "a red circle is moving up on a gray background", "a red circle is moving down on a gray background"),
    ("closer/away", "a red circle is getting closer on a gray background",
     "a red circle is moving away on a gray background"),
    ("spinning/still", "a red square is spinning on a gray background",
     "a red square is standing still on a gray background"),
    ("colour (control)", "a red circle is moving left to right on a gray background",
     "a blue circle is moving left to right on a gray background"),
)
# (colour, shape, background) × verb pair of the caption oracle
ORACLE_CASES = (
    ("red", "circle", "gray", "moving left to right"),
    ("blue", "square", "white", "moving up"),
    ("green", "triangle", "black", "getting closer"),
)
_MOTION_MODULE = re.compile(r"motion_modules\.\d+$")


def swap_verb(spec: ShapeSpec) -> ShapeSpec:
    """The same spec with the opposite verb (left to right ↔ right to left, up ↔ down, closer ↔ away,
    spinning ↔ standing still)."""
    if spec.motion not in OPPOSITE:
        raise ValueError(f"spec.motion: expected one of {sorted(OPPOSITE)}, got {spec.motion!r}")
    return dataclasses.replace(spec, motion=OPPOSITE[spec.motion])


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm().clamp_min(1e-12))


@torch.no_grad()
def feature_change(model, embeds_a: torch.Tensor, embeds_b: torch.Tensor, sample: torch.Tensor,
                   timestep: int) -> dict:
    """Relative change of every motion module's input and of ε when the text embedding goes from a to b.

    `model` is a `HarivoVideoModel`; `sample` (1, c, f, h, w) is fed as x_t at `timestep` for both captions.
    Returns {"eps": float, "motion_inputs": mean over the modules, "per_module": {name: float}}.
    """
    seen: dict[str, list[torch.Tensor]] = {}

    def record(name):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            seen.setdefault(name, []).append(hidden.detach().clone())
        return hook

    hooks = [m.register_forward_pre_hook(record(n), with_kwargs=True)
             for n, m in model.unet.named_modules() if _MOTION_MODULE.search(n)]
    if not hooks:
        raise ValueError("model: expected a UNetMotionModel with motion modules, found none")
    try:
        t = torch.tensor([timestep], device=sample.device)
        eps = [model(sample, t, e, use_motion=True) for e in (embeds_a, embeds_b)]
    finally:
        for h in hooks:
            h.remove()
    per_module = {n: _relative(a, b) for n, (a, b) in seen.items()}
    return {"eps": _relative(*eps), "motion_inputs": float(np.mean(list(per_module.values()))),
            "per_module": per_module}


class _TokenShare:
    """Recorder (`attention.recording`): per cross-attention layer, the mean probability mass on the last k keys."""

    def __init__(self, k: int):
        self.k, self.shares = k, {}

    def record(self, name: str, probs: torch.Tensor) -> None:
        self.shares[name.removesuffix(".processor")] = float(probs[..., -self.k:].sum(-1).mean())


@torch.no_grad()
def frame_token_stats(model, embeds_a: torch.Tensor, embeds_b: torch.Tensor, embeds_c: torch.Tensor,
                      sample: torch.Tensor, timestep: int) -> dict:
    """The frame-wise tokens of a model with a generator (§3.5), for a verb swap a → b and a colour swap a → c:
    relative change of the tokens, their variation from frame to frame (‖tokens − frame mean‖ / ‖tokens‖), and
    the share of cross-attention they take in every spatial `attn2` layer on `sample` at `timestep` (caption a)."""
    gen = model.frame_token_generator
    if gen is None:
        raise ValueError("model: expected a model with a frame-token generator")
    f, k = sample.shape[2], model.config.num_frame_tokens
    tokens = [gen(e, f)[:, -k:] for e in (embeds_a, embeds_b, embeds_c)]  # (f, K, D) each
    shares = _TokenShare(k)
    with recording(model.unet, spatial_attention_names(model.unet, "attn2"), shares):
        model(sample, torch.tensor([timestep], device=sample.device), embeds_a)
    a = tokens[0]
    return {"verb_change": _relative(a, tokens[1]), "colour_change": _relative(a, tokens[2]),
            "frame_variation": _relative(a, a.mean(0, keepdim=True).expand_as(a)),
            "token_norm": float(a.norm(dim=-1).mean()), "text_token_norm": float(embeds_a.norm(dim=-1).mean()),
            "attention_share": shares.shares}


def gap_noise(shape: tuple[int, ...], num_timesteps: int, seed: int) -> torch.Tensor:
    """The fixed noise of `swap_gap`: (num_timesteps, *shape) from a CPU generator seeded with `seed`."""
    return torch.randn((num_timesteps, *shape), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def swap_gap(model, scheduler, latents: torch.Tensor, embeds: torch.Tensor, swapped: torch.Tensor,
             timesteps, seed: int = 0, batch_size: int = 8, noise: torch.Tensor | None = None) -> list[dict]:
    """ε-MSE (v-MSE on a v-prediction base) with the true and with the swapped captions, same x_t; one row per
    timestep.

    latents (n, c, f, h, w) clean, embeds / swapped (n, M, D). Noise: `noise` (len(timesteps), n, c, f, h, w) if
    given, else `gap_noise(latents.shape, len(timesteps), seed)`.
    Row: {"t", "loss", "loss_swapped", "gap_pct" = 100 (loss_swapped − loss) / loss}.
    """
    if not (len(latents) == len(embeds) == len(swapped)):
        raise ValueError(f"latents, embeds, swapped: expected one per video, got {len(latents)}, {len(embeds)}, "
                         f"{len(swapped)}")
    if noise is None:
        noise = gap_noise(tuple(latents.shape), len(timesteps), seed)
    elif tuple(noise.shape) != (len(timesteps), *latents.shape):
        raise ValueError(f"noise: expected shape {(len(timesteps), *latents.shape)}, got {tuple(noise.shape)}")
    noise = noise.to(latents.device, latents.dtype)
    rows = []
    for j, t in enumerate(timesteps):
        sums = [0.0, 0.0]
        for k in range(0, len(latents), batch_size):
            x0, n = latents[k:k + batch_size], noise[j, k:k + batch_size]
            tt = torch.full((len(x0),), int(t), device=latents.device)
            xt = scheduler.add_noise(x0, n, tt)
            target = prediction_target(scheduler, x0, n, tt)
            for s, e in enumerate((embeds, swapped)):
                pred = model(xt, tt, e[k:k + batch_size])
                sums[s] += float(((pred - target) ** 2).mean(dim=tuple(range(1, pred.ndim))).sum())
        loss, loss_sw = sums[0] / len(latents), sums[1] / len(latents)
        rows.append({"t": int(t), "loss": loss, "loss_swapped": loss_sw,
                     "gap_pct": 100.0 * (loss_sw - loss) / max(loss, 1e-12)})
    return rows


def oracle_gain(groups) -> dict:
    """The caption-only x0 predictor with and without the verb, for groups of clean latents that differ only in
    the verb (G groups of n videos each, n >= 2), as unbiased estimates of the population MSEs:

    - verb known: E‖x − μ_g‖², the within-group variance (ddof = 1), averaged over groups;
    - verb ignored: that plus the spread of the group means around their mean, (1/G) Σ_g ‖μ_g − μ̄‖², estimated
      by the sample means' spread less its sampling part ((G − 1)/G · σ²/n).

    Per element of the latent. Returns both MSEs and the gain in %."""
    sizes = {len(g) for g in groups}
    if len(groups) < 2 or len(sizes) != 1 or min(sizes) < 2:
        raise ValueError(f"groups: expected >= 2 groups of the same number (>= 2) of videos, got sizes "
                         f"{[len(g) for g in groups]}")
    stacked = torch.stack([g.double() for g in groups])  # (G, n, ...)
    G, n = stacked.shape[:2]
    within = stacked.var(dim=1, unbiased=True)  # (G, ...)
    means = stacked.mean(dim=1)
    spread = ((means - means.mean(0)) ** 2).mean(0)  # (1/G) Σ_g (m_g − m̄)², per element
    between = (spread - (G - 1) / G * within.mean(0) / n).mean().item()
    known = within.mean().item()
    ignored = known + between
    return {"x0_mse_verb_known": known, "x0_mse_verb_ignored": ignored,
            "gain_pct": 100.0 * between / max(ignored, 1e-12)}


# ------------------------------------------------------------------------------------------------ the CLI
def _encode_videos(vae, specs: list[ShapeSpec], seeds: list[int], size: int, frames: int) -> torch.Tensor:
    """Generator videos → VAE latents (mode × scaling factor, as the training data) (n, c, f, h, w)."""
    out = []
    for spec, seed in zip(specs, seeds):
        video, _ = render_video(spec, seed, frames, size)
        pixels = to_pixels(video)
        with torch.no_grad():
            lat = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
        out.append(lat.permute(1, 0, 2, 3))
    return torch.stack(out).float()


def gap_specs(n: int, seed: int = 0) -> list[ShapeSpec]:
    """n translation specs of the training split (seen combinations), drawn without replacement."""
    pool = [s for s in all_specs("train") if s.motion in TRANSLATIONS]
    if not 1 <= n <= len(pool):
        raise ValueError(f"videos: expected 1..{len(pool)} (the training split's translation specs), got {n}")
    rng = np.random.default_rng([seed, 31])
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def probe_variant(pipe, videos: int, timesteps, seed: int) -> dict:
    """Feature change (t = 999 and 700) and swap gap of one loaded `HarivoPipeline`."""
    model = pipe.model
    f = model.config.num_frames
    lat_hw = model.unet.config.sample_size
    size = lat_hw * pipe.vae_scale_factor
    sample = torch.randn((1, model.unet.config.in_channels, f, lat_hw, lat_hw),
                         generator=torch.Generator().manual_seed(seed))
    features = {}
    for name, a, b in FEATURE_PAIRS:
        ea, eb = pipe.encode_prompt(a)[0], pipe.encode_prompt(b)[0]
        features[name] = {str(t): feature_change(model, ea, eb, sample, t) for t in (999, 700)}
    out = {}
    if model.frame_token_generator is not None:
        pair, colour = FEATURE_PAIRS[0], FEATURE_PAIRS[-1]
        embeds = [pipe.encode_prompt(c)[0] for c in (pair[1], pair[2], colour[2])]
        out["frame_tokens"] = frame_token_stats(model, *embeds, sample, 800)
    specs = gap_specs(videos, seed)
    latents = _encode_videos(pipe.vae, specs, [70_000 + i for i in range(len(specs))], size, f)
    embeds = torch.cat([pipe.encode_prompt(s.caption)[0] for s in specs])
    swapped = torch.cat([pipe.encode_prompt(swap_verb(s).caption)[0] for s in specs])
    gap = swap_gap(model, _train_scheduler(pipe), latents, embeds, swapped, timesteps, seed)
    return {"feature_change": features, "swap_gap": gap, **out}


def _train_scheduler(pipe):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


def probe_oracle(vae, videos: int, size: int, frames: int, timesteps, alphas_cumprod: torch.Tensor) -> list[dict]:
    rows = []
    for colour, shape, background, motion in tqdm(ORACLE_CASES, desc="caption oracle"):
        spec = ShapeSpec(colour, shape, motion, background)
        groups = [_encode_videos(vae, [s] * videos, [80_000 + i for i in range(videos)], size, frames)
                  for s in (spec, swap_verb(spec))]
        row = {"case": f"{colour} {shape} on {background}", "verbs": [spec.motion, swap_verb(spec).motion],
               **oracle_gain(groups)}
        diff = row["x0_mse_verb_ignored"] - row["x0_mse_verb_known"]
        for t in timesteps:
            snr = float(alphas_cumprod[t] / (1 - alphas_cumprod[t]))
            row[f"eps_saving_t{t}"] = snr * diff  # ε-MSE = SNR × x0-MSE; valid where x_t holds ~nothing of x0
        rows.append(row)
    return rows


def plot_probe(result: dict, path: str | Path) -> None:
    """Two panels: how much of each word swap reaches the motion modules (t = 999), and the swap gap per t next
    to what the caption oracle says the verb is worth at t = 999."""
    import matplotlib.pyplot as plt

    from harivo.evaluate.report import save_plot as _save

    table_order = ("baseline", "trs-dc", "mapping", "full")  # Table 1 rows A–D (the JSON's keys are sorted)
    variants = sorted(result["variants"], key=lambda v: (table_order.index(v) if v in table_order else 99, v))
    pairs = [name for name, _, _ in FEATURE_PAIRS]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        fc = result["variants"][v]["feature_change"]
        ax1.bar(np.arange(len(pairs)) + i * width, [100 * fc[p]["999"]["motion_inputs"] for p in pairs], width,
                label=v)
        gap = result["variants"][v]["swap_gap"]
        ax2.plot([r["t"] for r in gap], [r["gap_pct"] for r in gap], marker="o", label=v)
    ax1.set_xticks(np.arange(len(pairs)) + 0.4 - width / 2, pairs, rotation=15)
    ax1.set_yscale("log")
    ax1.set_ylabel("change of the motion modules' input (%)")
    ax1.set_title("What a one-word swap changes at the motion modules (t = 999)")
    ax1.legend(fontsize=8)
    losses = [r["loss"] for v in variants for r in result["variants"][v]["swap_gap"] if r["t"] == 999]
    for row, style in zip(result.get("oracle", []), ("--", ":", "-.")):
        if losses and row["verbs"][0] in TRANSLATIONS:
            worth = 100 * row["eps_saving_t999"] / float(np.mean(losses))
            ax2.axhline(worth, color="gray", linestyle=style,
                        label=f"caption oracle at t = 999: {row['verbs'][0]} / {row['verbs'][1]}")
    ax2.axhline(0, color="black", linewidth=0.8)
    ax2.set_xlabel("timestep t")
    ax2.set_ylabel("loss with the opposite verb − true verb (%)")
    ax2.set_title(f"Swap gap on {result['videos']} translation videos")
    ax2.invert_xaxis()
    ax2.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, Path(path))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harivo.evaluate.verb_probe", description=__doc__.split("\n")[0])
    p.add_argument("--variants", default="baseline,trs-dc,mapping,full", help="comma-separated shipped variants")
    p.add_argument("--checkpoints", default=None, help="folder with harivo-shapes-<variant>/ (default: shipped)")
    p.add_argument("--videos", type=int, default=24, help="generator videos of the swap gap")
    p.add_argument("--oracle-videos", type=int, default=48, help="videos per verb in the caption oracle")
    p.add_argument("--timesteps", default="999,900,800,700,600,400", help="comma-separated timesteps of the gap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    p.add_argument("--json", default="assets/eval/verb_probe.json", help="where the numbers go")
    return p


def _int_list(name: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values or any(not 0 <= v < 1000 for v in values):
        raise ValueError(f"{name}: expected timesteps in 0..999, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    from harivo.pipeline import DEFAULT_CHECKPOINTS, VARIANTS, HarivoPipeline

    args = build_parser().parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown or not variants:
            raise ValueError(f"--variants: expected a comma-separated subset of {list(VARIANTS)}, got {args.variants!r}")
        timesteps = _int_list("--timesteps", args.timesteps)
        if args.videos < 1:
            raise ValueError(f"--videos: expected >= 1, got {args.videos}")
        if args.oracle_videos < 2:
            raise ValueError(f"--oracle-videos: expected >= 2, got {args.oracle_videos}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoints = Path(args.checkpoints or DEFAULT_CHECKPOINTS)
    result = {"videos": args.videos, "timesteps": timesteps, "seed": args.seed, "variants": {}}
    pipe = None
    for variant in variants:
        pipe = HarivoPipeline.from_variant(variant, checkpoints)
        result["variants"][variant] = probe_variant(pipe, args.videos, timesteps, args.seed)
        gaps = ", ".join(f"t{r['t']} {r['gap_pct']:+.2f}%" for r in result["variants"][variant]["swap_gap"])
        print(f"{variant}: swap gap {gaps}", flush=True)
    if pipe is not None:
        f = pipe.model.config.num_frames
        size = pipe.model.unet.config.sample_size * pipe.vae_scale_factor
        result["oracle"] = probe_oracle(pipe.vae, args.oracle_videos, size, f, (999, 900),
                                        _train_scheduler(pipe).alphas_cumprod)
        for row in result["oracle"]:
            print(f"oracle {row['case']} {row['verbs']}: x0-MSE gain {row['gain_pct']:.2f} %, "
                  f"ε saving at t999 {row['eps_saving_t999']:.2e}", flush=True)
    fileio.write_json(args.json, result)
    plot = Path(args.json).with_suffix(".png")
    plot_probe(result, plot)
    print(f"-> {args.json}, {plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
