# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The checks of the options the subcommands share (model source, device, dtype, threads, batch sizes, counts,
output folder), in one place: the CLI runs them for every subcommand before any work, and
`BenchmarkOptions.validate` runs them for `run_benchmark`."""

from __future__ import annotations

import os
import re

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Options that must be >= 1 or >= 0 when a subcommand has them (None = not given / not offered: not checked).
POSITIVE = (
    "batch_size", "eval_batch_size", "finetune_batch_size", "num_samples", "max_eval_samples", "rounds",
    "iterations", "latency_rounds", "latency_iterations", "threads", "image_size", "num_labels",
)
NON_NEGATIVE = ("warmup", "finetune_steps")


def check_device(device: str) -> None:
    """`auto`, `cpu`, or `cuda` / `cuda:N` on a machine that has that GPU."""
    if device in ("auto", "cpu"):
        return
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match is None:
        raise ValueError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(f"--device {device!r}: CUDA is not available ({why}); use --device cpu or auto")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {device!r}: there are {torch.cuda.device_count()} CUDA devices "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")


def resolve_device(device: str) -> torch.device:
    """`auto` is CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_output_dir(path: str | None) -> None:
    """The results folder must be a folder, or creatable as one (its nearest existing parent a writable folder)."""
    if path is None:
        return
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"--output_dir {path!r} exists and is not a directory")
        existing = path
    else:
        existing = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise ValueError(f"--output_dir {path!r} cannot be created: {existing!r} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--output_dir {path!r}: {existing!r} is not writable")


def validate_common_options(options) -> None:
    """Raise `ValueError` naming the flag and its bad value. `options`: the CLI's namespace or a `BenchmarkOptions`;
    only the options it has are checked."""
    from .models import ARCHITECTURES

    arch, checkpoint = getattr(options, "arch", None), getattr(options, "checkpoint", None)
    if (arch is None) == (checkpoint is None):
        raise ValueError(f"give exactly one of --arch ({', '.join(sorted(ARCHITECTURES))}, random weights) or "
                         "--checkpoint (a model folder or Hub repo id); got "
                         + ("both" if arch is not None else "neither"))
    if arch is not None and arch not in ARCHITECTURES:
        raise ValueError(f"--arch {arch!r} is not one of {', '.join(sorted(ARCHITECTURES))}")
    dtype = getattr(options, "dtype", "fp32")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    check_device(getattr(options, "device", "auto"))
    for name in POSITIVE:
        value = getattr(options, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name} {value} must be >= 1")
    for name in NON_NEGATIVE:
        value = getattr(options, name, None)
        if value is not None and value < 0:
            raise ValueError(f"--{name} {value} must be >= 0")
    check_output_dir(getattr(options, "output_dir", None))


__all__ = ["DTYPES", "check_device", "check_output_dir", "resolve_device", "validate_common_options"]
