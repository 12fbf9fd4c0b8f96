# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Image transforms for training and evaluation with PIL, numpy and torch only (no torchvision needed).

Train: random resized crop -> random horizontal flip -> normalize. Eval: resize the whole image -> normalize.
Normalisation uses the image processor's own `image_mean` / `image_std`, so the statistics the checkpoint was
pre-trained with are the ones it is fine-tuned and evaluated with.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: random.Random,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """A crop box `(left, top, right, bottom)` covering a random fraction `scale` of the area with a random aspect
    ratio in `ratio` (sampled log-uniformly); falls back to the largest centred box of a valid aspect ratio."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left = rng.randint(0, width - crop_w)
            top = rng.randint(0, height - crop_h)
            return left, top, left + crop_w, top + crop_h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        crop_w, crop_h = round(height * ratio[1]), height
    else:
        crop_w, crop_h = width, height
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def to_normalized_tensor(image: Image.Image, mean, std) -> torch.Tensor:
    """RGB PIL image -> float tensor `(3, height, width)`, `(pixel / 255 - mean) / std`."""
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


@dataclass
class ImageTransform:
    """Callable on one PIL image -> `pixel_values` `(3, size, size)`. `train=True` adds the random augmentation."""

    size: int
    mean: list[float]
    std: list[float]
    train: bool = False
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip: bool = True
    resample: int = Image.BICUBIC
    seed: int | None = None
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self):
        # Without a seed, the `random` module: Trainer seeds it, and DataLoader workers each get their own seed,
        # so workers do not repeat each other's crops.
        self.rng = random.Random(self.seed) if self.seed is not None else random

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")
        if self.train:
            box = random_resized_crop_box(image.width, image.height, self.crop_scale, self.crop_ratio, self.rng)
            image = image.resize((self.size, self.size), self.resample, box=box)
            if self.horizontal_flip and self.rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            image = image.resize((self.size, self.size), self.resample)
        return to_normalized_tensor(image, self.mean, self.std)


def make_batch_transform(transform: ImageTransform, image_column: str, label_column: str):
    """For `Dataset.set_transform`: a batch dict of columns -> `{"pixel_values": [...], "labels": [...]}`."""

    def apply(batch):
        return {
            "pixel_values": [transform(image) for image in batch[image_column]],
            "labels": list(batch[label_column]),
        }

    return apply


def collate_image_batch(examples: list[dict]) -> dict[str, torch.Tensor]:
    """`pixel_values` `(batch_size, 3, size, size)` float, `labels` `(batch_size,)` long."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.long),
    }
