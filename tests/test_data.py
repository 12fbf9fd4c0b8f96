# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The one split rule (ppt_tools.core.data) and what depends on it: train.py and benchmark.py, given the same dataset,
evaluate the same images and report the same accuracy."""

from __future__ import annotations

import json

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features
from datasets import Image as ImageFeature
from helpers import FAST_TRAINING_ARGS, TINY_MODEL_ARGS, TINY_PPT_ARGS, random_images, train_script

from ppt_tools import benchmark
from ppt_tools.core.data import load_digits_dataset, select_splits


def dataset_with(splits: dict[str, int], num_classes: int = 3) -> DatasetDict:
    features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=num_classes)})
    return DatasetDict({
        name: Dataset.from_dict({"image": random_images(count, 8, seed=index),
                                 "label": [row % num_classes for row in range(count)]}, features=features)
        for index, (name, count) in enumerate(splits.items())
    })


@pytest.mark.parametrize(
    "splits, eval_split_name, expected",
    [
        ({"train": 12, "validation": 5, "test": 4}, None, ("test", 12, 4)),
        ({"train": 12, "validation": 5}, None, ("validation", 12, 5)),
        ({"train": 12, "valid": 5}, None, ("valid", 12, 5)),
        ({"train": 12, "validation": 5, "test": 4}, "validation", ("validation", 12, 5)),
        ({"train": 20}, None, ("train (held out 15%)", 17, 3)),
    ],
)
def test_the_split_rule(splits, eval_split_name, expected):
    train, evaluation, name = select_splits(dataset_with(splits), "train", eval_split_name, 0.15, 42, "label")
    assert (name, len(train), len(evaluation)) == expected


def test_the_held_out_split_is_seeded_stratified_and_disjoint():
    dataset = dataset_with({"train": 60})
    train, evaluation, _ = select_splits(dataset, "train", None, 0.25, 7, "label")
    again, _, _ = select_splits(dataset, "train", None, 0.25, 7, "label")
    assert train["label"] == again["label"]  # the same seed, the same split
    assert sorted(evaluation["label"]) == [0] * 5 + [1] * 5 + [2] * 5  # every class keeps its share
    assert len(train) + len(evaluation) == 60


def test_digits_has_a_fixed_stratified_test_split():
    digits = load_digits_dataset(16)
    train, test = digits["train"], digits["test"]
    assert (len(train), len(test)) == (1437, 360)  # 1797 images, 20% held out
    counts = [test["label"].count(digit) for digit in range(10)]
    assert min(counts) >= 35 and max(counts) <= 37  # stratified: each digit ~10% of the test split
    assert test[0]["image"].size == (16, 16)


@pytest.mark.parametrize("splits", [{"train": 40}, {"train": 30, "validation": 10, "test": 12}],
                         ids=["held-out", "test-split"])
def test_train_and_benchmark_report_the_same_accuracy_on_the_same_split(tmp_path, splits):
    """train.py evaluates its run; benchmark.py evaluates the saved folder on the same dataset: the same split,
    the same images and the same numbers (the tools once chose different splits of one dataset)."""
    path = tmp_path / "data"
    dataset_with(splits, num_classes=10).save_to_disk(path)
    out = tmp_path / "run"
    train = train_script()
    results = train.main(["--dataset_name", str(path), "--output_dir", str(out), *TINY_MODEL_ARGS, *TINY_PPT_ARGS,
                          *FAST_TRAINING_ARGS])
    assert benchmark.main(["--model_name_or_path", str(out), "--dataset_name", str(path), "--cost_only", "--no_progress",
                           "--output_dir", str(tmp_path / "bench")]) == 0
    models = json.loads((tmp_path / "bench" / "benchmark_inference.json").read_text())["models"]
    assert models["ppt"]["accuracy"]["split"] == results["eval_split"]
    assert models["ppt"]["accuracy"]["num_samples"] == results["eval_samples"]
    assert models["ppt"]["accuracy"]["top1"] == results["eval_accuracy"]
    assert models["baseline"]["accuracy"]["top1"] == results["eval_baseline_accuracy"]
    assert models["ppt"]["accuracy"]["top5"] == results["eval_top5_accuracy"]
