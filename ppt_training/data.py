# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Loading and checking an image-classification dataset for train.py.

Everything here runs before training starts and raises a `ValueError` that names what exists (splits, columns,
label range, the undecodable image) so that a bad dataset never gets as far as the first optimizer step.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict
from datasets import Image as ImageFeature
from PIL import Image
from tqdm.auto import tqdm

from .arguments import looks_like_local_path


# Splits tried, in order, as the evaluation split when none is named.
EVAL_SPLIT_CANDIDATES = ("test", "validation", "valid", "val", "eval")
# Column names used when a dataset has several candidate columns (e.g. CIFAR-100's fine_label and coarse_label).
KNOWN_COLUMNS = {
    "uoft-cs/cifar100": ("img", "fine_label"),
    "cifar100": ("img", "fine_label"),
    "uoft-cs/cifar10": ("img", "label"),
    "cifar10": ("img", "label"),
}
PREFERRED_LABEL_NAMES = ("label", "labels", "fine_label")


@dataclass
class PreparedData:
    """The two splits and what the model needs to know about them."""

    train: Dataset
    eval: Dataset
    image_column: str
    label_column: str
    label_names: list[str]
    eval_split_name: str  # the split's name, or "<train> (held out)" when carved from the training split


def load_any_dataset(name: str, config_name: str | None = None, cache_dir: str | None = None) -> DatasetDict:
    """A Hub dataset, a `save_to_disk` folder (Dataset or DatasetDict), or a local `imagefolder` directory."""
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "dataset_dict.json")) or os.path.exists(os.path.join(path, "state.json")):
            loaded = datasets.load_from_disk(path)
        else:
            loaded = datasets.load_dataset("imagefolder", data_dir=path, cache_dir=cache_dir)
    elif os.path.exists(path):
        raise ValueError(
            f"dataset_name={name!r} is a file; give a dataset folder (save_to_disk output or an imagefolder "
            "directory of class sub-folders) or a Hub dataset id"
        )
    elif looks_like_local_path(name):
        raise ValueError(f"dataset path {name!r} does not exist")
    else:
        try:
            loaded = datasets.load_dataset(name, config_name, cache_dir=cache_dir)
        except Exception as error:  # the Hub client raises many types (offline, 404, gated...)
            raise ValueError(
                f"could not load dataset {name!r} from the Hugging Face Hub ({type(error).__name__}: {error}). "
                "If it is meant to be a local folder, that folder does not exist."
            ) from error
    if isinstance(loaded, Dataset):
        loaded = DatasetDict({"train": loaded})
    return loaded


def choose_column(features: datasets.Features, wanted: str | None, kind: str, feature_type, preferred=()) -> str:
    """The column named `wanted`, else the only column of `feature_type`, else a preferred name among several."""
    described = ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())
    if wanted is not None:
        if wanted not in features:
            raise ValueError(f"{kind} column {wanted!r} not found; the dataset has columns: {described}")
        return wanted
    candidates = [name for name, feature in features.items() if isinstance(feature, feature_type)]
    if len(candidates) == 1:
        return candidates[0]
    preferred_found = [name for name in preferred if name in candidates]
    if preferred_found:
        return preferred_found[0]
    if not candidates:
        # e.g. a plain integer 'label' column (a dataset built from a DataFrame): use it by name; the caller checks
        # that its type can hold class ids.
        named = [name for name in preferred if name in features]
        if named:
            return named[0]
        raise ValueError(
            f"no {feature_type.__name__} column found for the {kind}s; pass --{kind}_column_name. "
            f"The dataset has columns: {described}"
        )
    raise ValueError(
        f"several {feature_type.__name__} columns could be the {kind}s: {candidates}; pass --{kind}_column_name"
    )


def label_names_of(label_column: str, *splits: Dataset) -> list[str]:
    """ClassLabel names (of the first split), or "0".."max" for a plain integer column, the max taken over all
    `splits`: a class the training split happens to lack is still a class the model must be able to predict."""
    feature = splits[0].features[label_column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        largest = max((int(np.max(split[label_column])) for split in splits if len(split)), default=-1)
        return [str(index) for index in range(largest + 1)]
    raise ValueError(
        f"label column {label_column!r} has type {feature}; it must be a ClassLabel or an integer column"
    )


def check_labels(dataset: Dataset, label_column: str, num_labels: int, split: str) -> None:
    labels = np.asarray(dataset[label_column])
    if labels.size == 0:
        return
    bad = (labels < 0) | (labels >= num_labels)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"split {split!r}: {int(bad.sum())} label(s) outside [0, {num_labels - 1}] (num_labels={num_labels}), "
            f"e.g. row {first} has label {int(labels[first])}"
        )


def check_images(dataset: Dataset, image_column: str, split: str) -> None:
    """Decode every image once, so that a corrupt file fails here and not in the middle of an epoch."""
    raw = dataset.cast_column(image_column, ImageFeature(decode=False))
    for row, item in enumerate(tqdm(raw[image_column], desc=f"checking {split} images", leave=False)):
        if item is None:
            raise ValueError(f"split {split!r}, row {row}: the {image_column!r} column is empty")
        try:
            source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
            with Image.open(source) as image:
                image.load()
        except Exception as error:
            where = item.get("path") or "embedded bytes"
            raise ValueError(
                f"split {split!r}, row {row}: image ({where}) cannot be decoded: {type(error).__name__}: {error}"
            ) from error


def prepare_splits(
    dataset: DatasetDict,
    train_split_name: str,
    eval_split_name: str | None,
    eval_split_ratio: float,
    split_seed: int,
    label_column: str | None = None,
) -> tuple[Dataset, Dataset, str]:
    """Pick the train and eval splits; with no eval split, hold out `eval_split_ratio` of train (seeded)."""
    splits = list(dataset.keys())
    if train_split_name not in dataset:
        raise ValueError(f"train split {train_split_name!r} not found; the dataset has splits: {splits}")
    if eval_split_name is not None:
        if eval_split_name not in dataset:
            raise ValueError(f"eval split {eval_split_name!r} not found; the dataset has splits: {splits}")
        return dataset[train_split_name], dataset[eval_split_name], eval_split_name
    for candidate in EVAL_SPLIT_CANDIDATES:
        if candidate in dataset and candidate != train_split_name:
            return dataset[train_split_name], dataset[candidate], candidate
    train = dataset[train_split_name]
    if not 0 < eval_split_ratio < 1:
        raise ValueError(f"eval_split_ratio={eval_split_ratio} must be in (0, 1)")
    if len(train) < 2:
        raise ValueError(f"train split {train_split_name!r} has {len(train)} rows: too few to hold some out")
    # Stratify when the labels allow it, so that small datasets keep every class on both sides.
    try:
        held_out = train.train_test_split(test_size=eval_split_ratio, seed=split_seed, stratify_by_column=label_column)
    except ValueError:  # a class with a single example, or a label column that is not a ClassLabel
        held_out = train.train_test_split(test_size=eval_split_ratio, seed=split_seed)
    return held_out["train"], held_out["test"], f"{train_split_name} (held out {eval_split_ratio:.0%})"


def prepare_data(
    dataset: DatasetDict,
    *,
    dataset_name: str | None = None,
    image_column_name: str | None = None,
    label_column_name: str | None = None,
    train_split_name: str = "train",
    eval_split_name: str | None = None,
    eval_split_ratio: float = 0.15,
    split_seed: int = 42,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    num_labels: int | None = None,
    check_all_images: bool = True,
) -> PreparedData:
    """Resolve columns and splits and check labels and images; raises `ValueError` on anything wrong."""
    known_image, known_label = KNOWN_COLUMNS.get(dataset_name or "", (None, None))
    if train_split_name not in dataset:
        raise ValueError(f"train split {train_split_name!r} not found; the dataset has splits: {list(dataset)}")
    features = dataset[train_split_name].features
    image_column = choose_column(features, image_column_name or known_image, "image", ImageFeature)
    label_column = choose_column(
        features, label_column_name or known_label, "label", ClassLabel, preferred=PREFERRED_LABEL_NAMES
    )
    train, eval_split, eval_name = prepare_splits(
        dataset, train_split_name, eval_split_name, eval_split_ratio, split_seed, label_column
    )
    if image_column == label_column:
        raise ValueError(f"image and label columns are both {image_column!r}")
    if not isinstance(train.features[image_column], ImageFeature):
        raise ValueError(
            f"image column {image_column!r} has type {train.features[image_column]}; it must be an Image feature"
        )
    for name, split in ((train_split_name, train), (eval_name, eval_split)):
        missing = [column for column in (image_column, label_column) if column not in split.features]
        if missing:
            raise ValueError(f"split {name!r} lacks column(s) {missing}; it has {list(split.features)}")
    label_names = label_names_of(label_column, train, eval_split)
    if num_labels is not None and num_labels != len(label_names) and isinstance(train.features[label_column], ClassLabel):
        raise ValueError(
            f"num_labels={num_labels} conflicts with the {len(label_names)} class names of column {label_column!r}"
        )
    if num_labels is not None:
        label_names = label_names + [str(index) for index in range(len(label_names), num_labels)]
    if len(label_names) < 2:
        raise ValueError(f"label column {label_column!r} has {len(label_names)} class(es); need at least 2")

    if max_train_samples is not None:
        train = train.select(range(min(max_train_samples, len(train))))
    if max_eval_samples is not None:
        eval_split = eval_split.select(range(min(max_eval_samples, len(eval_split))))
    for name, split in ((train_split_name, train), (eval_name, eval_split)):
        if len(split) == 0:
            raise ValueError(f"split {name!r} is empty")
        check_labels(split, label_column, len(label_names), name)
        if check_all_images:
            check_images(split, image_column, name)
    return PreparedData(train, eval_split, image_column, label_column, label_names, eval_name)


def channel_mean_std(dataset: Dataset, image_column: str, size: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] of the RGB images resized to `size` (for a from-scratch processor)."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for image in tqdm(dataset[image_column], desc="image statistics", leave=False):
        pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
        flat = pixels.reshape(-1, 3)
        total += flat.sum(0)
        total_sq += (flat**2).sum(0)
        count += flat.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return [round(float(value), 4) for value in mean], [round(float(value), 4) for value in std]
