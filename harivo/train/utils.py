"""Helpers every training script of the project needs: dataclass configs from YAML + CLI, the learning-rate
schedule, the accelerator, per-step random generators, the resumable training state, and loss curves.

Used by stage 1 (`harivo.train.stage1`, the tiny T2I model) and stage 2 (`harivo.train.stage2`, HARIVO itself).

The training state is what a killed run needs to continue *exactly* where it stopped: trainable weights,
optimizer moments, LR-scheduler counters, RNG states and whatever else the script hands in (e.g. the L_DC
negative queue). Tensors go to `state.safetensors`, everything else to `state.json`, the folder is swapped in
atomically (`fileio.atomic_dir`); no pickle is ever written or loaded. Stage 1 wrote its states in a layout
of its own before it moved onto these helpers (`model/<module>/<key>` tensors, the torch RNG only);
`load_training_state` reads those too, so its older run directories still resume.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import os
import random
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from harivo.fileio import atomic_dir, atomic_path, load_tensors, read_json, save_tensors, write_json, write_text

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


# ------------------------------------------------------------------------------------------------ config
def _coerce(name: str, kind: type, value: Any) -> Any:
    """A YAML/CLI value as the field's type (`kind` = type of the default); ValueError names the field."""
    try:
        if kind is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            return tuple(int(v) for v in value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, (bool, float)) or not str(value).strip().lstrip("-").isdigit():
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: cannot read {value!r} as {kind.__name__}") from None


def config_from_dict(cls: type, d: dict | None, base: Any = None) -> Any:
    """`base` (or `cls()`) with the fields of `d` replaced; unknown keys and bad values raise ValueError."""
    cfg = base if base is not None else cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    updates = {}
    for k, v in (d or {}).items():
        key = str(k).replace("-", "_")
        if key not in fields:
            raise ValueError(f"{k}: unknown config key (known: {', '.join(sorted(fields))})")
        updates[key] = _coerce(key, type(fields[key].default), v)
    return dataclasses.replace(cfg, **updates)


def load_yaml(path: str | os.PathLike) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config: no such file {str(p)!r}")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"config: {str(p)!r} is not valid YAML ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"config: {str(p)!r} must hold a mapping of config keys")
    return d


def config_to_yaml(cfg: Any) -> str:
    import yaml

    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    return yaml.safe_dump(d, sort_keys=False)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One `--field-name` flag per dataclass field (default None = "not given"); bools accept a bare flag."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(flag, nargs="?", const="true", default=None, help=f"bool (default {f.default})")
        else:
            parser.add_argument(flag, default=None, help=f"{kind.__name__} (default {f.default!r})")


def config_from_args(cls: type, args: argparse.Namespace, skip: tuple[str, ...] = ()) -> Any:
    """Defaults < YAML (`args.config`) < CLI flags given (not None), ignoring `config` and the `skip` flags."""
    cfg = cls()
    if getattr(args, "config", None):
        cfg = config_from_dict(cls, load_yaml(args.config), cfg)
    cli = {k: v for k, v in vars(args).items() if v is not None and k != "config" and k not in skip}
    return config_from_dict(cls, cli, cfg)


# ----------------------------------------------------------------------------------------- schedules, RNG
@dataclasses.dataclass
class WarmupDecay:
    """LR factor of step s (a `LambdaLR` lambda): linear warm-up to 1, then cosine or linear decay to
    `min_ratio` at `total`. A callable object, so `LambdaLR.state_dict()` stays plain numbers."""

    warmup: int  # warm-up steps
    total: int  # steps at which the decay reaches min_ratio
    min_ratio: float  # final lr / peak lr (HARIVO App. D: 1e-5 / 1e-4 = 0.1)
    kind: str = "cosine"  # cosine | linear
    constant_from: int = 0  # from this step on the factor is constant_ratio (stage 2's verb phase); 0 = never
    constant_ratio: float = 1.0

    def __call__(self, step: int) -> float:
        if self.constant_from and step >= self.constant_from:
            return self.constant_ratio
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        if self.total <= self.warmup:
            return 1.0
        p = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        shape = 0.5 * (1 + math.cos(math.pi * p)) if self.kind == "cosine" else 1.0 - p
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def run_cli(main: Callable[[], Any], prog: str) -> None:
    """Entry point of a training script: a bad config, flag or data path is one line on stderr and exit 2
    (the way argparse reports its own errors), not a traceback; anything else still raises."""
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)


def make_accelerator(cfg: Any):
    """The `accelerate.Accelerator` of a run (`cfg.mixed_precision`: no | fp16 | bf16)."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision=cfg.mixed_precision)


def step_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator that is a pure function of (seed, keys): step n draws the same batch and noise whether
    or not the run was interrupted before it. Stage 2 keys it by (step, process index)."""
    mixed = int(seed)
    for k in keys:
        mixed = (mixed * 1_000_003 + int(k) + 7_919) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def stage_step_generator(seed: int, stage: int, step: int) -> torch.Generator:
    """Stage 1's per-step generator, a pure function of (seed, stage, step) like `step_generator` but with its
    own mix, seed * 1_000_003 + stage * 7_919 + step (stage 1 = VAE, 2 = UNet). Every stage-1 model was trained
    on this stream, so it stays as it is: a run resumed from an older state draws what the uninterrupted run
    drew, and a retrained model is the same model."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + stage * 7_919 + int(step)) % (2**63 - 1))


def where_trained() -> str:
    if torch.cuda.is_available():
        return f"gpu: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu, {cores} cores"


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Global RNG states (torch, CUDA, numpy, python) as tensors + JSON."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": [py_version, list(py_state), py_gauss]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict | None) -> None:
    """Inverse of `rng_state`; with `meta` None (stage 1's older states) only the torch and CUDA states."""
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng/cuda/"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    if meta is None:
        return
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    py_version, py_state, py_gauss = meta["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


# -------------------------------------------------------------------------------------- training state
def module_tensors(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """`<name>/<key>` → tensor of every module's state dict (weights and buffers), sharing their storage: what
    stage 1 hands `save_training_state` and `load_training_state` (which restores into them in place)."""
    return {f"{name}/{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}


def optimizer_state_to_flat(osd: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer state dict's per-parameter state as `optim/<pid>/<key>` tensors + `<pid>/<key>` scalars."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim/{pid}/{k}"] = v.detach().clone()
            else:
                scalars[f"{pid}/{k}"] = v
    return tensors, scalars


def optimizer_state_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of `optimizer_state_to_flat` (scalars in meta["optim_scalars"], groups in meta["param_groups"])."""
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, pid, key = k.split("/", 2)
            state.setdefault(int(pid), {})[key] = v
    for k, v in meta.get("optim_scalars", {}).items():
        pid, key = k.split("/", 1)
        state.setdefault(int(pid), {})[key] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(
    folder: str | os.PathLike,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any | None,
    meta: dict,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write everything a resumed run needs into `folder`, atomically (old state kept until the new is in)."""
    tensors = {f"params/{k}": v.detach().clone() for k, v in params.items()}
    osd = optimizer.state_dict()
    optim_tensors, scalars = optimizer_state_to_flat(osd)
    tensors.update(optim_tensors)
    tensors.update({f"extra/{k}": v.detach().clone() for k, v in (extra_tensors or {}).items()})
    rng_tensors, rng_meta = rng_state()
    tensors.update(rng_tensors)
    sched = None
    if lr_scheduler is not None:
        sched = {k: v for k, v in lr_scheduler.state_dict().items() if k != "lr_lambdas"}
    full_meta = dict(meta, param_groups=osd["param_groups"], optim_scalars=scalars, lr_scheduler=sched, rng=rng_meta)
    with atomic_dir(folder) as tmp:
        save_tensors(tmp / STATE_TENSORS, tensors)
        write_json(tmp / STATE_JSON, full_meta)


def has_training_state(folder: str | os.PathLike) -> bool:
    return (Path(folder) / STATE_JSON).is_file() and (Path(folder) / STATE_TENSORS).is_file()


def load_training_state(
    folder: str | os.PathLike,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any | None,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore weights (in place), optimizer, LR scheduler and RNG states; return (meta, extra tensors).
    Reads stage 1's older layout too: weights as `model/<module>/<key>` (the keys of `module_tensors`), no RNG
    meta (torch RNG only)."""
    folder = Path(folder)
    tensors = load_tensors(folder / STATE_TENSORS, what="resume state")
    meta = read_json(folder / STATE_JSON, what="resume state")
    prefix = "params/" if any(k.startswith("params/") for k in tensors) or "rng" in meta else "model/"
    saved = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise ValueError(f"resume: the state in {str(folder)!r} does not match this model "
                         f"(missing {missing[:3]}, unexpected {extra[:3]}); was it made with another config?")
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != saved[name].shape:
                raise ValueError(f"resume: {name} has shape {tuple(saved[name].shape)} in the state, "
                                 f"{tuple(p.shape)} in the model")
            p.copy_(saved[name])
    optimizer.load_state_dict(optimizer_state_from_flat(tensors, meta))
    if lr_scheduler is not None and meta.get("lr_scheduler") is not None:
        lr_scheduler.load_state_dict({**lr_scheduler.state_dict(), **meta["lr_scheduler"]})
    set_rng_state(tensors, meta.get("rng"))
    extra = {k[len("extra/"):]: v for k, v in tensors.items() if k.startswith("extra/")}
    return meta, extra


# ----------------------------------------------------------------------------------------- loss curves
def write_loss_curves(folder: str | os.PathLike, history: list[dict], title: str, stem: str = "loss_curves",
                      terms: tuple[str, ...] | None = None) -> None:
    """`<stem>.csv` (every logged row) and `<stem>.png` (one panel per loss term, raw + smoothed)."""
    if not history:
        return
    folder = Path(folder)
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "step", k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text(folder / f"{stem}.csv", buf.getvalue())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = terms or tuple(k for k in keys if k.startswith("loss"))
    terms = tuple(t for t in terms if any(t in row for row in history))
    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 3.0), dpi=100, squeeze=False)
    for ax, term in zip(axes[0], terms):
        rows = [r for r in history if term in r and r[term] is not None]
        steps = np.array([r["step"] for r in rows])
        y = np.array([r[term] for r in rows], dtype=float)
        ax.plot(steps, y, alpha=0.3, lw=0.8)
        k = max(1, len(y) // 20)
        if len(y) >= k:
            ax.plot(steps[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), lw=1.5)
        if np.all(y > 0):
            ax.set_yscale("log")
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(folder / f"{stem}.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
