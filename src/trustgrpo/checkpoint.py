"""Checkpoints: weights (safetensors; a loadable Hugging Face directory for language models),
optimiser, RNG, step.

A checkpoint is written to a temporary folder and renamed into place, so a crash never leaves
a half-written ``checkpoints/step-N``: either it is complete (it has ``trainer_state.json``) or
it does not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rng_state() -> dict[str, Any]:
    """Python, NumPy and PyTorch global RNG states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(
    directory: Path,
    *,
    model: Any = None,
    tokenizer: Any = None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    extra: dict[str, Any] | None = None,
    write_weights: Callable[[Path], None] | None = None,
) -> str:
    """Write a checkpoint atomically; return the SHA-256 of its weights file.

    The weights are written by ``write_weights(folder)`` (which must write
    ``model.safetensors`` there), or else by ``model.save_pretrained`` and
    ``tokenizer.save_pretrained`` (a Hugging Face directory).
    """
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if write_weights is not None:
        write_weights(tmp)
    else:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        tmp / "optimizer.pt",
    )
    torch.save(rng_state(), tmp / "rng.pt")
    weights_sha = sha256_file(tmp / WEIGHTS_FILE)
    state = {"step": step, "weights_sha256": weights_sha, **(extra or {})}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    _fsync_dir(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    _fsync_dir(directory.parent)
    return weights_sha


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir() if path.is_dir() else []:
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    done = [
        d
        for d in root.iterdir()
        if d.is_dir()
        and d.name.startswith("step-")
        and d.name[5:].isdigit()  # not a step-N.tmp left by a crash mid-save
        and (d / STATE_FILE).is_file()
    ]
    return max(done, key=lambda d: int(d.name.split("-")[1]), default=None)


def load_state(directory: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint."""
    return dict(json.loads((directory / STATE_FILE).read_text()))


def restore_optimizer(directory: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Load optimiser and scheduler state saved by :func:`save`."""
    blob = torch.load(directory / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    set_rng_state(torch.load(directory / "rng.pt", weights_only=False))
