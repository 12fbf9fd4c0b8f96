# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Images to `pixel_values` for evaluation, with PIL, numpy and torch only (no torchvision).

Evaluation preprocesses with the model's **image processor**, the one saved beside its weights: what a user of the
published model runs is what every figure here was measured with. (Training augmentation is
`ppt_tools.training.augmentation`.)
"""

from __future__ import annotations

import ctypes
import logging

import torch
from datasets import IterableDataset
from PIL import Image
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


# ---- batches ----------------------------------------------------------------------------------------------------------


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
    resident memory grows with the number of images although the live memory stays flat. Trimming after every batch
    keeps it flat, for a few milliseconds per batch (docs/RESULTS.md)."""
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
    "collate_image_batch",
    "eval_batch_transform",
    "eval_batches",
    "load_image_processor",
    "processor_resolution",
    "resized_to",
    "return_freed_memory",
    "whole_image_processor",
]
