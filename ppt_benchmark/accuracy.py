# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Top-1 / top-5 accuracy of an image classifier on a `datasets` dataset saved to disk (`save_to_disk`), or on the
digits split `train.py --preset digits` holds out."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

IMAGE_COLUMNS = ("image", "img", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "fine_label")
EVAL_SPLITS = ("validation", "test", "eval", "train")


@dataclass
class AccuracyResult:
    top1: float
    top5: float | None  # None when the model has fewer than 5 classes
    num_samples: int

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "num_samples": self.num_samples}


DIGITS = "digits"  # the dataset of `train.py --preset digits`, rebuilt with the same held-out split


def load_digits_splits(image_size: int = 32):
    """`(train, eval)` exactly as `train.py --preset digits` splits scikit-learn's digits (20% held out, seed 42)."""
    from ppt_training.arguments import PRESETS
    from ppt_training.data import prepare_splits
    from ppt_training.digits import load_digits_dataset

    preset = PRESETS["digits"]
    ratio, seed = preset.get("eval_split_ratio", 0.2), preset.get("split_seed", 42)  # train.py's split, kept in sync
    train, held_out, _ = prepare_splits(load_digits_dataset(size=image_size), "train", None, ratio, seed, "label")
    return train, held_out


def load_train_dataset(path: str, split: str = "train", max_samples: int | None = None, image_size: int = 32):
    """The training split of a saved dataset (or of `digits`), for compression-aware fine-tuning."""
    if path == DIGITS:
        dataset = load_digits_splits(image_size)[0]
    else:
        dataset = load_eval_dataset(path, split)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def load_eval_dataset(path: str, split: str | None = None, max_samples: int | None = None, image_size: int = 32):
    """`path == "digits"`: the evaluation split `train.py --preset digits` holds out (same seed), at `image_size`.

    Otherwise: load a dataset saved with `save_to_disk` (a `Dataset`, or a `DatasetDict` from which `split` -- default
    the first of validation/test/eval/train present -- is taken), from `path` itself or, failing that, from its
    `dataset/` or `data/` subfolder. (`train.py` saves no dataset next to its model: for its digits run, pass
    `"digits"`, which rebuilds the same held-out split.) Raises `ValueError` when nothing loads."""
    from datasets import Dataset, DatasetDict, load_from_disk

    if path == DIGITS:
        loaded = load_digits_splits(image_size)[1]
        return loaded.select(range(min(max_samples, len(loaded)))) if max_samples is not None else loaded
    if not os.path.isdir(path):
        raise ValueError(
            f"dataset path {path!r} is not a directory (expected the output of Dataset.save_to_disk, or 'digits')"
        )
    candidates = [path] + [os.path.join(path, sub) for sub in ("dataset", "data")]
    loaded = None
    errors = []
    for candidate in candidates:
        if not os.path.isdir(candidate):
            continue
        try:
            loaded = load_from_disk(candidate)
            break
        except Exception as error:  # not a saved dataset: try the next candidate
            errors.append(f"{candidate}: {error}")
    if loaded is None:
        raise ValueError(f"no dataset saved with save_to_disk found at {path!r} ({'; '.join(errors)})")
    if isinstance(loaded, DatasetDict):
        if split is None:
            split = next((name for name in EVAL_SPLITS if name in loaded), None) or next(iter(loaded))
        if split not in loaded:
            raise ValueError(f"split {split!r} not in the dataset; available: {list(loaded)}")
        loaded = loaded[split]
    elif split is not None and not isinstance(loaded, Dataset):
        raise ValueError(f"cannot take split {split!r} from {type(loaded).__name__}")
    if max_samples is not None:
        loaded = loaded.select(range(min(max_samples, len(loaded))))
    return loaded


def find_column(dataset, names: tuple[str, ...], what: str) -> str:
    for name in names:
        if name in dataset.column_names:
            return name
    raise ValueError(f"dataset has no {what} column; looked for {list(names)}, found {dataset.column_names}")


def default_image_processor(config, checkpoint: str | None = None):
    """The checkpoint's image processor when it has one, else a ViT processor resizing to the model's image size
    (ImageNet mean/std, as DeiT)."""
    from transformers import AutoImageProcessor, ViTImageProcessor

    if checkpoint is not None:
        try:
            return AutoImageProcessor.from_pretrained(checkpoint)
        except (OSError, ValueError):
            pass
    size = config.image_size
    return ViTImageProcessor(
        size={"height": size, "width": size},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )


def batches(dataset, image_processor, batch_size: int):
    """Yield `(pixel_values [B, C, H, W], labels [B])` from a dataset with an image (or pixel_values) column."""
    image_column = find_column(dataset, IMAGE_COLUMNS, "image")
    label_column = find_column(dataset, LABEL_COLUMNS, "label")
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        labels = torch.as_tensor(rows[label_column])
        if image_column == "pixel_values":
            pixel_values = torch.as_tensor(rows[image_column], dtype=torch.float32)
        else:
            images = [image.convert("RGB") if hasattr(image, "convert") else image for image in rows[image_column]]
            pixel_values = image_processor(images, return_tensors="pt")["pixel_values"]
        yield pixel_values, labels


def check_labels(labels, num_labels: int, what: str = "the evaluation dataset") -> None:
    """Raise `ValueError` naming the labels outside the model's classes `0 .. num_labels - 1` (they could never be
    predicted: counted silently as wrong, they would only lower the accuracy)."""
    labels = torch.as_tensor(labels).reshape(-1)
    outside = labels[(labels < 0) | (labels >= num_labels)]
    if outside.numel():
        values = sorted(set(outside.tolist()))
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        raise ValueError(
            f"{what} has labels outside the model's classes: {shown} ({outside.numel()} of {labels.numel()} "
            f"samples), but the model has num_labels={num_labels} (labels 0 to {num_labels - 1}); use a model "
            "trained on this dataset"
        )


def check_batch_labels(cached: list, num_labels: int, what: str = "the evaluation dataset") -> None:
    """`check_labels` over preprocessed `(pixel_values, labels)` batches (see `preprocess`)."""
    if cached:
        check_labels(torch.cat([labels.reshape(-1) for _, labels in cached]), num_labels, what)


def dataset_labels(dataset) -> torch.Tensor:
    return torch.as_tensor(dataset[find_column(dataset, LABEL_COLUMNS, "label")])


def top_k_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """Number of rows whose label is among the `k` largest logits. logits: `[B, C]`, labels: `[B]`."""
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
    return int((top == labels.unsqueeze(-1)).any(dim=-1).sum())


@torch.inference_mode()
def evaluate_accuracy(
    models: dict[str, torch.nn.Module],
    dataset,
    image_processor,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, AccuracyResult]:
    """Top-1 / top-5 accuracy of several models on the same batches (images preprocessed once)."""
    correct1 = {name: 0 for name in models}
    correct5 = {name: 0 for name in models}
    total = 0
    num_labels = min(getattr(model.config, "num_labels", 1000) for model in models.values())
    check_labels(dataset_labels(dataset), num_labels)
    steps = (len(dataset) + batch_size - 1) // batch_size
    for pixel_values, labels in tqdm(
        batches(dataset, image_processor, batch_size), total=steps, desc="accuracy", disable=not progress, leave=False
    ):
        pixel_values, labels = pixel_values.to(device), labels.to(device)
        total += labels.shape[0]
        for name, model in models.items():
            dtype = next(model.parameters()).dtype
            logits = model(pixel_values.to(dtype)).logits.float()
            correct1[name] += top_k_correct(logits, labels, 1)
            correct5[name] += top_k_correct(logits, labels, 5)
    if total == 0:
        raise ValueError("the evaluation dataset is empty")
    return {
        name: AccuracyResult(correct1[name] / total, correct5[name] / total if num_labels > 5 else None, total)
        for name in models
    }


def preprocess(dataset, image_processor, batch_size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """All batches of `dataset` as tensors, preprocessed once (sweeps evaluate many settings on the same images)."""
    return list(batches(dataset, image_processor, batch_size))


@torch.inference_mode()
def accuracy_on_batches(model: torch.nn.Module, cached: list, device: torch.device | str = "cpu") -> AccuracyResult:
    """Top-1 / top-5 of `model` on preprocessed `(pixel_values, labels)` batches (see `preprocess`)."""
    correct1 = correct5 = total = 0
    dtype = next(model.parameters()).dtype
    check_batch_labels(cached, getattr(model.config, "num_labels", 1000))
    for pixel_values, labels in cached:
        logits = model(pixel_values.to(device=device, dtype=dtype)).logits.float()
        labels = labels.to(device)
        correct1 += top_k_correct(logits, labels, 1)
        correct5 += top_k_correct(logits, labels, 5)
        total += labels.shape[0]
    if total == 0:
        raise ValueError("the evaluation dataset is empty")
    has_top5 = getattr(model.config, "num_labels", 1000) > 5
    return AccuracyResult(correct1 / total, correct5 / total if has_top5 else None, total)


__all__ = ["AccuracyResult", "accuracy_on_batches", "check_batch_labels", "check_labels", "preprocess", "default_image_processor", "evaluate_accuracy", "load_eval_dataset", "top_k_correct"]
