# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Plain helpers of the test suite (the fixtures built from them are in conftest.py): the command-line options of
the tiny model, and writers of small local datasets in the real formats (CIFAR-100's columns, an imagefolder,
save_to_disk folders)."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from model_fixtures import TINY, TINY_PPT
from PIL import Image
from transformers import TrainerCallback


ROOT = Path(__file__).resolve().parents[1]
# (case, category) of each bad-input battery case run (tests/test_bad_input_battery.py); conftest prints the counts.
BATTERY_OUTCOMES = pytest.StashKey[list]()


def train_script():
    """The training command's module (`ppt_tools.train`, what `train.py` and `ppt-train` run)."""
    return importlib.import_module("ppt_tools.train")


def cli_options(settings: dict) -> list[str]:
    """`{"hidden_size": 32, "reduction_layers": [1, 2]}` -> `["--hidden_size", "32", "--reduction_layers", "1", "2"]`."""
    options = []
    for name, value in settings.items():
        options += [f"--{name}", *map(str, value if isinstance(value, (list, tuple)) else [value])]
    return options


# train.py options that build the tiny model from scratch, and its PPT schedule (65 -> 57 -> 49 tokens).
TINY_MODEL_ARGS = ["--from_scratch", "True", *cli_options({k: v for k, v in TINY.items() if k != "num_labels"})]
TINY_PPT_ARGS = cli_options(TINY_PPT)
# Few steps, no checkpoints unless a test asks, no per-epoch evaluation, CPU.
FAST_TRAINING_ARGS = [
    "--max_steps", "3",
    "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "16",
    "--learning_rate", "1e-3",
    "--eval_strategy", "no",
    "--save_strategy", "no",
    "--logging_steps", "1",
    "--dataloader_num_workers", "0",
    "--use_cpu", "True",
    "--disable_tqdm", "True",
    "--report_to", "none",
]

CIFAR100_FINE_NAMES = [f"fine_{index:03d}" for index in range(100)]
CIFAR100_COARSE_NAMES = [f"coarse_{index:02d}" for index in range(20)]


def random_images(count: int, size: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def cifar100_like(n_train: int = 48, n_test: int = 24, size: int = 24, seed: int = 0) -> DatasetDict:
    """CIFAR-100's schema: `img` (Image), `fine_label` (ClassLabel, 100 names), `coarse_label` (ClassLabel, 20)."""
    features = Features({"img": ImageFeature(), "fine_label": ClassLabel(names=CIFAR100_FINE_NAMES),
                         "coarse_label": ClassLabel(names=CIFAR100_COARSE_NAMES)})
    rng = np.random.default_rng(seed + 1)

    def split(count, offset):
        fine = rng.integers(0, 100, count).tolist()
        return Dataset.from_dict({"img": random_images(count, size, seed + offset), "fine_label": fine,
                                  "coarse_label": [label // 5 for label in fine]}, features=features)

    return DatasetDict({"train": split(n_train, 10), "test": split(n_test, 20)})


def save_cifar100_like(directory, **kwargs) -> str:
    path = os.path.join(str(directory), "cifar100_like")
    cifar100_like(**kwargs).save_to_disk(path)
    return path


def save_labelled(path, train_labels: list[int], validation_labels: list[int], num_classes: int = 10,
                  size: int = 32) -> str:
    """A save_to_disk DatasetDict with `image` / `label` (ClassLabel of `num_classes`), train and validation."""
    rng = np.random.default_rng(0)
    features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=num_classes)})

    def split(labels):
        images = [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in labels]
        return Dataset.from_dict({"image": images, "label": labels}, features=features)

    DatasetDict({"train": split(train_labels), "validation": split(validation_labels)}).save_to_disk(str(path))
    return str(path)


def save_imagefolder(directory, classes=("cat", "dog", "fish"), per_class: int = 6, size: int = 20) -> str:
    """`<dir>/imagefolder/train/<class>/<i>.png`: the layout `load_dataset("imagefolder")` reads (one split)."""
    root = os.path.join(str(directory), "imagefolder")
    for class_index, name in enumerate(classes):
        folder = os.path.join(root, "train", name)
        os.makedirs(folder, exist_ok=True)
        for index, image in enumerate(random_images(per_class, size, seed=100 + class_index)):
            image.save(os.path.join(folder, f"{index}.png"))
    return root


def save_with_corrupt_image(directory) -> str:
    """An imagefolder whose `dog/bad.png` is not an image."""
    root = save_imagefolder(directory)
    with open(os.path.join(root, "train", "dog", "bad.png"), "wb") as handle:
        handle.write(b"this is not a png file" * 10)
    return root


def save_with_out_of_range_labels(directory) -> str:
    """train has 3 classes, test (another ClassLabel with 10 names) has label 7: outside the 3 the model gets."""
    images = random_images(8, 16, seed=5)
    train = Dataset.from_dict({"image": images[:6], "label": [0, 1, 2, 0, 1, 2]},
                              features=Features({"image": ImageFeature(), "label": ClassLabel(names=["a", "b", "c"])}))
    test = Dataset.from_dict({"image": images[6:], "label": [1, 7]},
                             features=Features({"image": ImageFeature(),
                                                "label": ClassLabel(names=[str(i) for i in range(10)])}))
    path = os.path.join(str(directory), "bad_labels")
    DatasetDict({"train": train, "test": test}).save_to_disk(path)
    return path


def save_without_label_feature(directory) -> str:
    """An Image column and a float column: nothing that can be a label."""
    dataset = Dataset.from_dict({"picture": random_images(4, 16, seed=7), "score": [0.1, 0.2, 0.3, 0.4]},
                                features=Features({"picture": ImageFeature(), "score": Value("float32")}))
    path = os.path.join(str(directory), "no_labels")
    DatasetDict({"train": dataset}).save_to_disk(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CrashAfterCheckpoint(TrainerCallback):
    """Dies like a killed job right after the checkpoint of `step` is on disk."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise KeyboardInterrupt(f"simulated kill after checkpoint-{state.global_step}")
