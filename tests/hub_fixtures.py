# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Fixtures for the Hub tests: a tiny PPT-DeiT trained for a few steps, its export folder, result files in the
formats the training run and the benchmark write, and a way to run Python in a fresh offline process."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from model_fixtures import TINY as TINY_ARCHITECTURE
from model_fixtures import TINY_PPT
from PIL import Image


TINY = {
    **{key: value for key, value in TINY_ARCHITECTURE.items() if key != "num_labels"},  # labels: LABELS below
    **TINY_PPT,
    # Wider init than the default 0.02, so that a few training steps give a model whose logits on the photo
    # visibly depend on compression (and whose layers choose both policies on it).
    "initializer_range": 0.1,
}
LABELS = ["cat", "dog", "bird", "fish", "horse", "ship"]
REPO_ID = "ppt-tests/tiny-ppt-deit"

# What a training run writes (transformers' Trainer / HF examples: all_results.json) and what a benchmark writes.
ALL_RESULTS = {
    "epoch": 2.0,
    "eval_accuracy": 0.4375,
    "eval_loss": 1.7321,
    "eval_runtime": 0.51,
    "eval_samples": 48,
    "eval_samples_per_second": 94.1,
    "train_loss": 1.79,
    "train_runtime": 3.2,
}
BENCHMARK = {
    "ppt": {"macs": 1_234_567, "params": 38_118, "throughput": 812.5},  # params: the tiny model's real count
    "baseline": {"accuracy": 0.4583, "macs": 2_345_678, "params": 38_118, "throughput": 512.4},
    "hardware": "2-core CPU (test fixture)",
    "throughput_batch_size": 16,
}
TRAINING_INFO = {
    "dataset": "cifar10",
    "dataset_name": "CIFAR-10",
    "eval_split": "test",
    "base_model": "facebook/deit-tiny-patch16-224",
    "repo_id": REPO_ID,
    "epochs": 2,
    "learning_rate": 1e-3,
    "batch_size": 8,
    "recipe": "AdamW, a few steps on random data (test fixture)",
}


def make_tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def tiny_trained_model(seed: int = 0, steps: int = 4, **overrides):
    """A tiny PPTDeiTForImageClassification after `steps` AdamW steps on random images (compression on)."""
    from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification

    torch.manual_seed(seed)
    settings = {**TINY, **overrides}
    config = PPTDeiTConfig(
        **settings,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    model = PPTDeiTForImageClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        pixel_values = torch.randn(8, 3, config.image_size, config.image_size)
        labels = torch.randint(0, len(LABELS), (8,))
        loss = model(pixel_values, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def tiny_image_processor():
    from transformers import ViTImageProcessor

    return ViTImageProcessor(
        size={"height": TINY["image_size"], "width": TINY["image_size"]},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def china_photo() -> Image.Image:
    """A real photo: scikit-learn's bundled sample image."""
    from sklearn.datasets import load_sample_image

    return Image.fromarray(np.asarray(load_sample_image("china.jpg")))


@dataclass
class Export:
    model: object
    folder: Path
    result_files: list[Path]
    workdir: Path


@functools.lru_cache(maxsize=None)
def trained_export() -> Export:
    """The tiny model (vit layout, tau = 7e-5), exported once per test session with both result files."""
    from ppt_tools.export.publish import export_folder

    workdir = make_tmpdir("ppt-hub-")
    all_results = workdir / "all_results.json"
    all_results.write_text(json.dumps(ALL_RESULTS))
    benchmark = workdir / "benchmark.json"
    benchmark.write_text(json.dumps(BENCHMARK))
    model = tiny_trained_model(prune_threshold=7e-5)
    folder = export_folder(
        model,
        tiny_image_processor(),
        workdir / "export",
        results=[all_results, benchmark],
        training_info=TRAINING_INFO,
    )
    return Export(model, folder, [all_results, benchmark], workdir)


def offline_env(**extra) -> dict:
    """Environment for a fresh process: offline, private HF caches, no token, no bytecode writes."""
    home = make_tmpdir("ppt-hf-home-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_HOME=str(home),
        HF_MODULES_CACHE=str(home / "modules"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONDONTWRITEBYTECODE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(code: str | None = None, args: list[str] | None = None, env: dict | None = None, timeout: int = 180,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable] + (["-c", code] if code is not None else []) + list(args or [])
    return subprocess.run(
        command, env=env or offline_env(), capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def folder_snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
