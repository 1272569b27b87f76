"""The real models the app offers beside the embedded ones: `python app.py`'s flags (the CLI's model flags,
`harivo.sources.add_model_arguments`, for one model) and a YAML file listing several (`--models`, or
`$HARIVO_MODELS` where no flag can be passed, as on a Space):

    models:                      # or the list alone, without `default` and `embedded`
      - name: sd15-animatediff
        base_model: stable-diffusion-v1-5/stable-diffusion-v1-5
        motion_adapter: guoyww/animatediff-motion-adapter-v1-5-2
      - name: harivo-webvid
        base_model: stable-diffusion-v1-5/stable-diffusion-v1-5
        harivo_weights: checkpoints/harivo-sd15-webvid      # relative paths: from the YAML file's folder
        lora: my-style.safetensors
        lora_scale: 0.8
        height: 256
        width: 256
    default: sd15-animatediff    # the model the page opens with (default: the embedded featured model)
    embedded: true               # false: offer the real models only

Each entry's keys are the fields of `harivo.sources.ModelSpec` (the CLI's flag names with underscores); an error
names the file, the entry and the field.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..sources import ModelSpec, add_model_arguments, spec_from_args, spec_from_mapping, with_paths_from

MODELS_ENV = "HARIVO_MODELS"  # the YAML model list when no --models is given
REAL_PREFIX = "real:"  # a real model's registry key: "real:<name>"


@dataclass
class ModelList:
    """What `--models` (and the model flags) ask the app to offer."""

    specs: list[ModelSpec] = field(default_factory=list)
    default: str | None = None  # a name or registry key
    embedded: bool = True


def read_models(path: str | os.PathLike) -> ModelList:
    """The YAML model list at `path` (see the module's docstring); ValueError naming the file, entry and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"models: cannot read {str(path)!r} ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ValueError(f"models: {path.name} is not valid YAML ({e})") from None
    top = {"models": raw} if isinstance(raw, list) else raw
    if not isinstance(top, dict) or not isinstance(top.get("models"), list):
        raise ValueError(f"models: {path.name}: expected a list of models, or a mapping with a 'models' list")
    unknown = sorted(set(top) - {"models", "default", "embedded"})
    if unknown:
        raise ValueError(f"models: {path.name}: {unknown[0]}: expected some of 'models', 'default', 'embedded'")
    if not isinstance(top.get("embedded", True), bool):
        raise ValueError(f"models: {path.name}: embedded: expected true or false, got {top['embedded']!r}")
    specs = []
    for i, entry in enumerate(top["models"], 1):
        where = f"{path.name}, model {i}" + (f" ({entry['name']!r})" if isinstance(entry, dict) and "name" in entry
                                              else "")
        try:
            specs.append(with_paths_from(spec_from_mapping(entry), path.parent))
        except (TypeError, ValueError) as e:
            raise ValueError(f"models: {where}: {e}") from None
    check_names(specs, path.name)
    return ModelList(specs, top.get("default"), top.get("embedded", True))


def check_names(specs: list[ModelSpec], where: str) -> None:
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"models: {where}: name: {spec.name!r} is given twice")
        seen.add(spec.name)


def default_name(spec: ModelSpec) -> str:
    """A name for a model given by flags: its weights' or adapter's folder / hub repo name."""
    return Path(spec.harivo_weights or spec.motion_adapter or spec.base_model or "model").name


def build_parser() -> argparse.ArgumentParser:
    """`python app.py`'s flags: the CLI's model flags for one real model, --models for several."""
    p = argparse.ArgumentParser(prog="python app.py", description="HARIVO Explorer: the embedded shapes-world "
                                "models and any real ones given here, on http://127.0.0.1:7860 (Gradio's "
                                "GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change the address)")
    p.add_argument("--models", default=None, help=f"YAML file listing models (harivo/explorer/specs.py; default: "
                                                   f"${MODELS_ENV})")
    p.add_argument("--name", help="the app's name for the model given by the flags below (default: its folder)")
    p.add_argument("--default-model", help="the model the page opens with: a name from --models / --name")
    p.add_argument("--checkpoints", help="folder scanned for embedded HARIVO checkpoints (default: "
                                         "$HARIVO_CHECKPOINTS, else checkpoints/)")
    p.add_argument("--no-embedded", dest="embedded", action="store_false", default=None,
                   help="offer the real models only")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for each run (default: "
                   "$HARIVO_THREADS, else the cores other processes leave free)")
    p.add_argument("--height", type=int, help="video height the flags' model makes by default (default: native)")
    p.add_argument("--width", type=int, help="video width the flags' model makes by default (default: native)")
    add_model_arguments(p, ModelSpec(), variants=False)
    return p


def models_from_args(args: argparse.Namespace, env: dict | None = None) -> ModelList:
    """The models of `python app.py`'s flags: the YAML list (--models or $HARIVO_MODELS), then the flags' model."""
    env = os.environ if env is None else env
    path = args.models or env.get(MODELS_ENV, "").strip() or None
    models = read_models(path) if path else ModelList()
    if args.base_model or args.motion_adapter or args.harivo_weights:
        spec = spec_from_args(args, name=args.name or "")
        spec.name = spec.name or default_name(spec)
        if not (spec.motion_adapter or spec.harivo_weights):
            raise ValueError("motion_adapter: --base-model needs --motion-adapter or --harivo-weights")
        models.specs.append(spec.validate())
        check_names(models.specs, "the flags")
    elif args.name:
        raise ValueError("name: --name names the model of --base-model / --motion-adapter / --harivo-weights")
    models.default = args.default_model or models.default
    models.embedded = models.embedded if args.embedded is None else args.embedded
    return models


def models_from_env(env: dict | None = None) -> ModelList:
    """The models of `$HARIVO_MODELS` alone (`gradio app.py`, or `import app; app.demo`)."""
    env = os.environ if env is None else env
    path = env.get(MODELS_ENV, "").strip()
    return read_models(path) if path else ModelList()
