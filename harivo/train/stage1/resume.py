"""Where a stage-1 stage starts from: its own training state in `run_dir/state_<stage>` (`--resume`), the
weights of an exported pipeline folder (`--init-from`, fresh optimizer and lr schedule), or scratch.

The state is `train_utils`' training state, written by the stage loops with `save_training_state`: the
modules' weights and buffers (`module_tensors`), the optimizer, the RNG states and a meta record (step, loss
history, minutes, config). The lr is a pure function of the step, so there is no scheduler to save.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harivo.fileio import load_tensors
from harivo.train.stage1.config import T2IConfig
from harivo.train.utils import STATE_JSON, load_training_state, module_tensors


def state_dir(cfg: T2IConfig, stage: str) -> Path:
    return Path(cfg.run_dir) / f"state_{stage}"


def warm_start(folder: Path, parts: dict[str, tuple[torch.nn.Module, ...]]) -> None:
    """Load `folder/<part>/*.safetensors` (strict) into every module of each part."""
    for part, modules in parts.items():
        files = sorted((folder / part).glob("*.safetensors"))
        if len(files) != 1:
            raise ValueError(f"init_from: expected one .safetensors file in {str(folder / part)!r}, found {len(files)}")
        weights = load_tensors(files[0], what=f"init_from {part}")
        for m in modules:
            m.load_state_dict(weights, strict=True)


def resume_or_warm_start(cfg: T2IConfig, stage: str, modules: dict[str, torch.nn.Module], optimizer,
                         warm_parts: dict[str, tuple[torch.nn.Module, ...]], log=print) -> dict:
    """Restore `modules` (in place), `optimizer` and the RNG from the stage's state if --resume finds one and return
    its meta; otherwise warm-start `warm_parts` from `init_from` if given. {} when nothing was restored."""
    folder = state_dir(cfg, stage)
    if cfg.resume and (folder / STATE_JSON).is_file():
        meta, _ = load_training_state(folder, module_tensors(modules), optimizer, None)
        log(f"[{stage}] resumed at step {meta['step']}")
        return meta
    if cfg.init_from:
        if not (Path(cfg.init_from) / stage / "config.json").is_file():
            raise ValueError(f"init_from: expected a StableDiffusionPipeline folder with {stage}/, "
                             f"got {cfg.init_from!r}")
        warm_start(Path(cfg.init_from), warm_parts)
        log(f"[{stage}] warm start from {cfg.init_from} (fresh optimizer)")
    return {}
