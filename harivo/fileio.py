"""Atomic file writes and safe loading.

Every file the project writes (checkpoints, configs, videos, metrics) goes through these helpers so that a
kill mid-write never leaves a half-written file behind: data goes to a temporary file in the same folder,
is flushed and fsync'ed, then renamed over the target (rename is atomic on POSIX).
Weights are read and written with safetensors only: no pickle is ever loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike, what: str = "path") -> dict:
    """Read a JSON file; a missing or corrupt file raises ValueError naming `what`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: expected a JSON file at {str(path)!r}, found none")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what}: {str(path)!r} is not valid JSON ({e})") from None


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors as safetensors, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike, what: str = "path") -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing or corrupt file raises ValueError naming `what`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: expected a safetensors file at {str(path)!r}, found none")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
        raise ValueError(f"{what}: {str(path)!r} is not a readable safetensors file ({e})") from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Write a whole folder atomically: fill the yielded temporary folder, it then replaces `path`.

    The old folder (if any) is moved aside first and deleted only after the new one is in place, so at every
    instant either the old or the new complete folder exists under `path` (or `path.old` during the swap).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(path.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
