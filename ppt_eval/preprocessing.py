# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Images to `pixel_values`, for training and evaluation, with PIL, numpy and torch only (no torchvision).

- Evaluation preprocesses with the model's **image processor**, the one saved beside its weights: what a user of
  the published model runs is what every figure here was measured with.
- Training adds the random augmentation (`TrainTransform`: random resized crop, horizontal flip) and normalises
  with that processor's mean and std, so that the statistics the checkpoint was pre-trained with are the ones it
  is fine-tuned with. `AugmentedDataset` draws each image's augmentation from its own generator, seeded by
  (seed, epoch, row): the same crops whatever the DataLoader workers, and again after resuming from a checkpoint.
"""

from __future__ import annotations

import ctypes
import logging
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from datasets import IterableDataset
from PIL import Image
from tqdm.auto import tqdm
from transformers import AutoImageProcessor

from .data import check_images


logger = logging.getLogger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]  # DeiT's (and ViT processors') default statistics
IMAGENET_STD = [0.229, 0.224, 0.225]


# ---- image processors ---------------------------------------------------------------------------------------------


def _side(size) -> int | None:
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return get("height") or get("shortest_edge")


def processor_resolution(processor) -> int | None:
    """The side of the square the processor feeds the model (its crop when it crops, else its resize)."""
    if getattr(processor, "do_center_crop", False):
        return _side(getattr(processor, "crop_size", None))
    return _side(getattr(processor, "size", None))


def whole_image_processor(size: int, mean, std):
    """A `ViTImageProcessor`: resize the whole image to `size` x `size` (bicubic, no crop), normalise with `mean` /
    `std`."""
    # Imported on use: without torchvision, importing this name logs a fallback warning on every run.
    from transformers import ViTImageProcessor

    return ViTImageProcessor(do_resize=True, size={"height": size, "width": size}, resample=Image.BICUBIC,
                             do_rescale=True, do_normalize=True, image_mean=list(mean), image_std=list(std))


def load_image_processor(source: str | None, image_size: int, **from_pretrained_kwargs):
    """The image processor saved with the checkpoint `source`; a checkpoint without one (or `source` None: a named
    architecture with random weights) gets `whole_image_processor` at `image_size` with ImageNet statistics."""
    if source is not None:
        try:
            return AutoImageProcessor.from_pretrained(source, **from_pretrained_kwargs)
        except (OSError, ValueError):  # no preprocessor_config.json there
            logger.info("%s has no image processor: resizing to %d px with ImageNet mean/std", source, image_size)
    return whole_image_processor(image_size, IMAGENET_MEAN, IMAGENET_STD)


def resized_to(processor, image_size: int):
    """`processor`'s statistics, set to resize whole images to `image_size` (bicubic, no crop): the evaluation
    preprocessing of a fine-tuned model, saved with it so that its folder reproduces the reported figures."""
    resolution = processor_resolution(processor)
    if resolution is not None and resolution != image_size:
        logger.warning("the image processor produces %d px but the model expects %d px; using %d px",
                       resolution, image_size, image_size)
    processor.do_resize = True
    processor.size = {"height": image_size, "width": image_size}
    processor.do_center_crop = False
    processor.resample = Image.BICUBIC
    return processor


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


# ---- batches ----------------------------------------------------------------------------------------------------------


def train_batch_transform(transform: TrainTransform, image_column: str, label_column: str):
    """For `Dataset.set_transform` or a stream's batched `map`: rows -> `{"pixel_values": [...], "labels": [...]}`,
    augmented with draws from the `random` module (a stream has no row index to seed an image's draws by: see
    `AugmentedDataset` for map-style splits)."""

    def apply(batch):
        return {"pixel_values": [transform(image) for image in batch[image_column]],
                "labels": list(batch[label_column])}

    return apply


def eval_batch_transform(processor, image_column: str, label_column: str):
    """For `Dataset.set_transform`: rows -> `{"pixel_values": [...], "labels": [...]}` through `processor`."""

    def apply(batch):
        images = [image.convert("RGB") for image in batch[image_column]]
        return {"pixel_values": list(processor(images, return_tensors="pt")["pixel_values"]),
                "labels": list(batch[label_column])}

    return apply


def collate_image_batch(examples: list[dict]) -> dict[str, torch.Tensor]:
    """`pixel_values` `(batch_size, 3, size, size)` float, `labels` `(batch_size,)` long."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.long),
    }


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not Linux with glibc (macOS, Windows, musl): nothing to do
        return None


_LIBC = _glibc()


def return_freed_memory() -> None:
    """Hand the memory freed since the last call back to the operating system (glibc's `malloc_trim`).

    Decoded images and batch tensors differ in size from batch to batch, and glibc raises its mmap threshold after
    freeing a large block, so later blocks come from the heap, which it keeps once freed: over a long evaluation the
    resident memory grows with the number of images although the live memory stays flat (measured: 20,000 streamed
    224 px images peaked at 1.0 to 2.7 GiB, with about 0.2 GiB in use). Trimming after every batch keeps it flat;
    it costs a few milliseconds (3.6 ms median for batches of 64 such images), under 1% of a batch's decoding and
    forward passes."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def eval_batches(dataset, processor, image_column: str, label_column: str, batch_size: int,
                 split_name: str = "evaluation"):
    """Yield `(pixel_values [B, 3, H, W], labels [B])` over `dataset` (map-style or a stream) in order, preprocessed
    by `processor` one batch at a time. An image that cannot be decoded (or a missing one) raises `ValueError`
    naming its row (and, for a map-style split, its file)."""
    rows_iterator = iter(dataset.select_columns([image_column, label_column]).iter(batch_size=batch_size))
    start = 0
    while True:
        try:
            rows = next(rows_iterator, None)
            if rows is None:
                return
            images = [image.convert("RGB") for image in rows[image_column]]
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError...; a missing image is None
            if isinstance(dataset, IterableDataset):
                raise ValueError(f"split {split_name!r}: an image in rows {start} to {start + batch_size - 1} cannot "
                                 f"be decoded: {type(error).__name__}: {error}") from error
            # Find the row to name; if every image decodes one by one, the error was something else: re-raise it.
            check_images(dataset.select(range(start, min(start + batch_size, len(dataset)))), image_column,
                         split_name, first_row=start)
            raise
        yield processor(images, return_tensors="pt")["pixel_values"], torch.as_tensor(rows[label_column])
        start += len(images)
        del rows, images
        return_freed_memory()


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentedDataset",
    "TrainTransform",
    "channel_mean_std",
    "collate_image_batch",
    "eval_batch_transform",
    "eval_batches",
    "load_image_processor",
    "processor_resolution",
    "random_resized_crop_box",
    "resized_to",
    "return_freed_memory",
    "to_normalized_tensor",
    "train_batch_transform",
    "whole_image_processor",
]
