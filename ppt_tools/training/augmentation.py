# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Training augmentation, with PIL, numpy and torch only (no torchvision): random resized crop and horizontal flip,
normalised with the model's image-processor statistics, so that the statistics a checkpoint was pre-trained with are
the ones it is fine-tuned with. `AugmentedDataset` draws each image's augmentation from its own generator, seeded by
(seed, epoch, row): the same crops whatever the DataLoader workers, and again after resuming from a checkpoint."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm


def channel_mean_std(images, size: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] of RGB `images` resized to `size` (a from-scratch model's processor)."""
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for image in tqdm(images, desc="image statistics", leave=False):
        pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
        flat = pixels.reshape(-1, 3)
        total += flat.sum(0)
        total_sq += (flat**2).sum(0)
        count += flat.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return [round(float(value), 4) for value in mean], [round(float(value), 4) for value in std]


# ---- training augmentation ----------------------------------------------------------------------------------------


def random_resized_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                            rng: random.Random, attempts: int = 10) -> tuple[int, int, int, int]:
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
class TrainTransform:
    """One PIL image -> `pixel_values` `(3, size, size)`: random resized crop, random horizontal flip, normalise.

    The random draws come from the `rng` passed to the call, else from the `rng` field, else from the global
    `random` module. Training passes a generator seeded per image (`AugmentedDataset`): draws from a shared
    stream depend on which images were transformed before, which a resumed run (it skips the batches already
    trained) and DataLoader workers (each has its own stream) change.
    """

    size: int
    mean: list[float]
    std: list[float]
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip: bool = True
    resample: int = Image.BICUBIC
    rng: random.Random | None = None

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        rng = rng or self.rng or random
        image = image.convert("RGB")
        box = random_resized_crop_box(image.width, image.height, self.crop_scale, self.crop_ratio, rng)
        image = image.resize((self.size, self.size), self.resample, box=box)
        if self.horizontal_flip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_normalized_tensor(image, self.mean, self.std)


class AugmentedDataset(torch.utils.data.Dataset):
    """A training split as `{"pixel_values", "labels"}` items, augmented by `transform` with a `random.Random`
    seeded by `(seed, epoch, row index)`.

    So an image's augmentation does not depend on the order images are loaded in, on which DataLoader worker loads
    it, or on whether the run was resumed: a resumed run sees exactly the images an uninterrupted one does. The
    training loop calls `set_epoch` at the start of each epoch (train.py: `EpochCallback`); the epoch lives in
    shared memory, so persistent DataLoader workers see it too.

    Args:
        dataset (`datasets.Dataset`): the split, with decoded images in `image_column`, class ids in `label_column`.
        transform (`TrainTransform`): the augmentation.
        seed (`int`): the run's seed.
    """

    def __init__(self, dataset, transform: TrainTransform, image_column: str, label_column: str, seed: int):
        self.dataset = dataset
        self.transform = transform
        self.image_column = image_column
        self.label_column = label_column
        self.seed = int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def rng_for(self, index: int) -> random.Random:
        """The generator of row `index` in the current epoch (a string seed is hashed with SHA-512: the same in
        every process, unlike `hash()`)."""
        return random.Random(f"ppt-augment:{self.seed}:{self.epoch}:{int(index)}")

    def _item(self, index: int, image, label) -> dict:
        return {"pixel_values": self.transform(image, self.rng_for(index)), "labels": label}

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[int(index)]
        return self._item(index, row[self.image_column], row[self.label_column])

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A whole batch in one read (the DataLoader's fetcher uses it when present)."""
        indices = [int(index) for index in indices]
        rows = self.dataset[indices]
        return [self._item(index, image, label)
                for index, image, label in zip(indices, rows[self.image_column], rows[self.label_column])]


def train_batch_transform(transform: TrainTransform, image_column: str, label_column: str):
    """For `Dataset.set_transform` or a stream's batched `map`: rows -> `{"pixel_values": [...], "labels": [...]}`,
    augmented with draws from the `random` module (a stream has no row index to seed an image's draws by: see
    `AugmentedDataset` for map-style splits)."""

    def apply(batch):
        return {"pixel_values": [transform(image) for image in batch[image_column]],
                "labels": list(batch[label_column])}

    return apply


__all__ = ["AugmentedDataset", "TrainTransform", "channel_mean_std", "random_resized_crop_box", "to_normalized_tensor",
           "train_batch_transform"]
