# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Streaming and several processes: the code path of the ImageNet evaluation (`--streaming` over parquet shards
with ImageNet's columns `image` / `label`), here on local shards, and evaluation shared by two CPU processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from helpers import FAST_TRAINING_ARGS, TINY_MODEL_ARGS, TINY_PPT_ARGS, free_port, train_script
from PIL import Image

from modeling_ppt_deit import PPTDeiTForImageClassification
from ppt_tools import benchmark
import ppt_tools.core.accuracy as accuracy_module


ROOT = Path(__file__).resolve().parents[1]
VALIDATION_ROWS = 23  # not a multiple of 2 processes x batch 4: the last batches are partial


def imagenet_like_split(rows: int, seed: int) -> Dataset:
    """ImageNet's schema (`image`, `label` ClassLabel), shrunk to the tiny model's 10 classes and 40 px JPEGs."""
    rng = np.random.default_rng(seed)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=[f"n0{index}" for index in range(10)])})
    images = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(rows)]
    return Dataset.from_dict({"image": images, "label": rng.integers(0, 10, rows).tolist()}, features=features)


def write_imagenet_like(root: Path) -> str:
    """Parquet shards in the Hub's layout (`data/<split>-0000i-of-0000n.parquet`): 3 validation shards, 2 train."""
    (root / "data").mkdir(parents=True)
    for split, rows, shards in (("validation", VALIDATION_ROWS, 3), ("train", 32, 2)):
        dataset = imagenet_like_split(rows, seed=len(split))
        for index in range(shards):
            dataset.shard(shards, index, contiguous=True).to_parquet(
                root / "data" / f"{split}-{index:05d}-of-{shards:05d}.parquet")
    return str(root)


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory) -> str:
    return write_imagenet_like(tmp_path_factory.mktemp("imagenet-like"))


def accuracy_report(out: Path) -> dict:
    models = json.loads((out / "benchmark_inference.json").read_text())["models"]
    return {name: entry["accuracy"] for name, entry in models.items()}


def test_a_stream_gives_the_numbers_of_the_whole_split(tiny_checkpoint, imagenet_like, tmp_path, monkeypatch):
    common = ["--model_name_or_path", tiny_checkpoint, "--dataset_name", imagenet_like, "--cost_only", "--no_flop_check",
              "--eval_batch_size", "4"]
    assert benchmark.main([*common, "--no_progress", "--output_dir", str(tmp_path / "whole")]) == 0
    bars = []

    class RecordedBar(accuracy_module.tqdm):
        def __exit__(self, *exc):
            bars.append((self.n, self.total, getattr(self, "unit", None), self.disable))
            return super().__exit__(*exc)

    # The bar itself, not its rendering: tqdm redraws at most every 0.1 s, so what reaches stderr depends on speed.
    monkeypatch.setattr(accuracy_module, "tqdm", RecordedBar)
    assert benchmark.main([*common, "--streaming", "--output_dir", str(tmp_path / "stream")]) == 0
    whole, stream = accuracy_report(tmp_path / "whole"), accuracy_report(tmp_path / "stream")
    assert whole == stream
    assert whole["ppt"]["num_samples"] == VALIDATION_ROWS and whole["ppt"]["split"] == "validation"
    # The bar counts images (6 batches of 4 would count 6), against the split size from the dataset info.
    assert bars == [(VALIDATION_ROWS, VALIDATION_ROWS, "img", False)]  # shown, in images, against the total

    assert benchmark.main([*common, "--streaming", "--max_eval_samples", "10", "--no_progress",
                           "--output_dir", str(tmp_path / "first10")]) == 0
    assert accuracy_report(tmp_path / "first10")["ppt"]["num_samples"] == 10


def test_a_stream_without_an_evaluation_split_is_refused(tiny_checkpoint, tmp_path, capsys):
    path = tmp_path / "train-only"
    (path / "data").mkdir(parents=True)
    imagenet_like_split(8, seed=1).to_parquet(path / "data" / "train-00000-of-00001.parquet")
    assert benchmark.main(["--model_name_or_path", tiny_checkpoint, "--dataset_name", str(path), "--streaming",
                           "--cost_only", "--no_progress"]) == 2
    assert "a stream cannot be split at random: name one with --eval_split_name" in capsys.readouterr().err


def test_an_unlabelled_split_is_named(tiny_checkpoint, tmp_path, capsys):
    """ImageNet's test split has label -1 everywhere; the split rule would pick it before validation."""
    path = tmp_path / "unlabelled"
    (path / "data").mkdir(parents=True)
    split = imagenet_like_split(6, seed=2).cast_column("label", ClassLabel(names=[f"n0{i}" for i in range(10)]))
    split.map(lambda row: {"label": -1}).to_parquet(path / "data" / "test-00000-of-00001.parquet")
    imagenet_like_split(6, seed=3).to_parquet(path / "data" / "validation-00000-of-00001.parquet")
    assert benchmark.main(["--model_name_or_path", tiny_checkpoint, "--dataset_name", str(path), "--streaming",
                           "--cost_only", "--no_progress"]) == 2
    assert "-1 marks an unlabelled split" in capsys.readouterr().err
    assert benchmark.main(["--model_name_or_path", tiny_checkpoint, "--dataset_name", str(path), "--streaming",
                           "--eval_split_name", "validation", "--cost_only", "--no_progress"]) == 0


def test_train_py_streams_its_data(tmp_path):
    """Fresh shards: `datasets` knows no split sizes for them (a map-style load would have cached some)."""
    train = train_script()
    argv = ["--dataset_name", write_imagenet_like(tmp_path / "shards"), "--streaming", *TINY_MODEL_ARGS, *TINY_PPT_ARGS, *FAST_TRAINING_ARGS]
    without_steps = [option for option in argv if option not in ("--max_steps", "3")]
    with pytest.raises(ValueError, match="size of the training split is unknown"):
        train.main([*without_steps, "--output_dir", str(tmp_path / "no-steps")])
    assert not (tmp_path / "no-steps").exists()

    results = train.main([*argv, "--output_dir", str(tmp_path / "run")])
    assert results["train_global_step"] == 3 and results["train_samples"] == 3 * 8
    assert results["eval_split"] == "validation" and results["eval_samples"] == VALIDATION_ROWS
    assert results["eval_baseline_samples"] == VALIDATION_ROWS
    assert json.loads((tmp_path / "run" / "all_results.json").read_text())["eval_accuracy"] == results["eval_accuracy"]


def test_a_training_stream_transforms_a_few_rows_at_a_time_and_shuffles_them_encoded():
    """The shuffle buffer (1,000 rows) is filled with rows as read, images still encoded, and the transform runs
    STREAM_TRANSFORM_BATCH rows at a time: reading the first example transforms one batch of rows. (With the buffer
    after the transform, or `map`'s default batch of 1,000, the first example cost 1,000 transformed images: 6 GB of
    RSS for 224 px images.)"""
    train = train_script()
    rows = train.STREAM_SHUFFLE_BUFFER + 200
    stream = Dataset.from_dict({"image": [b"x"] * rows, "label": list(range(rows)), "other": [0] * rows})
    transformed = []

    def transform(batch):
        transformed.extend(batch["label"])
        return {"pixel_values": [[0.0]] * len(batch["label"]), "labels": batch["label"]}

    dataset = train.with_transform(stream.to_iterable_dataset(num_shards=4), transform, ["image", "label"],
                                   shuffle_seed=0)
    first = next(iter(dataset))
    assert len(transformed) == train.STREAM_TRANSFORM_BATCH
    assert first["labels"] == transformed[0] and set(first) == {"pixel_values", "labels"}
    # shuffled: not the stream's order, and another seed gives another order
    order = [row["labels"] for row in dataset]
    assert sorted(order) == list(range(rows)) and order != list(range(rows))
    reshuffled = train.with_transform(stream.to_iterable_dataset(num_shards=4), transform, ["image", "label"],
                                      shuffle_seed=1)
    assert [row["labels"] for row in reshuffled] != order


def launch(script_args: list[str], tmp_path: Path, processes: int) -> subprocess.CompletedProcess:
    """benchmark.py under `accelerate launch` with `processes` CPU processes (torchrun, DDP over gloo)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(ROOT / "benchmark.py"), *script_args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_two_processes_report_exactly_the_single_process_accuracy(tiny_checkpoint, imagenet_like, tmp_path,
                                                                  streaming):
    common = ["--model_name_or_path", tiny_checkpoint, "--dataset_name", imagenet_like, "--cost_only", "--no_flop_check",
              "--eval_batch_size", "4", "--no_progress", *(["--streaming"] if streaming else [])]
    assert benchmark.main([*common, "--output_dir", str(tmp_path / "one")]) == 0
    done = launch([*common, "--output_dir", str(tmp_path / "two")], tmp_path, processes=2)
    assert done.stdout.count("PPT-DeiT benchmark") == 1  # one process reports
    one, two = accuracy_report(tmp_path / "one"), accuracy_report(tmp_path / "two")
    assert two == one and two["ppt"]["num_samples"] == VALIDATION_ROWS


# ---- a stream is checked: its head before any work, every row as it is read ------------------------------------------


def write_shards(root: Path, bad: dict, classes: dict | None = None) -> str:
    """The shards of `write_imagenet_like`, with `bad[(split, shard, row)] = ("label", value)` or `("image", bytes)`
    put in; `classes[split]`: that split's ClassLabel size (a split may then hold labels the model lacks)."""
    (root / "data").mkdir(parents=True)
    for split, rows, shards in (("validation", VALIDATION_ROWS, 3), ("train", 32, 2)):
        names = [f"n0{index}" for index in range((classes or {}).get(split, 10))]
        features = Features({"image": ImageFeature(), "label": ClassLabel(names=names)})
        whole = imagenet_like_split(rows, seed=len(split)).cast_column("image", ImageFeature(decode=False))
        for index in range(shards):
            columns = whole.shard(shards, index, contiguous=True).to_dict()
            for (bad_split, bad_shard, row), (column, value) in bad.items():
                if (bad_split, bad_shard) == (split, index):
                    columns[column][row] = {"bytes": value, "path": None} if column == "image" else value
            Dataset.from_dict(columns, features=features).to_parquet(
                root / "data" / f"{split}-{index:05d}-of-{shards:05d}.parquet")
    return str(root)


def stream_argv(dataset: str, out: Path) -> list[str]:
    return ["--dataset_name", dataset, "--streaming", "--output_dir", str(out), *TINY_MODEL_ARGS, *TINY_PPT_ARGS,
            *FAST_TRAINING_ARGS]


@pytest.mark.parametrize("bad, classes, message", [
    ({("train", 0, 5): ("image", b"not an image")}, None,
     r"split 'train', file '\S*train-00000-of-00002.parquet', row 5: image \(embedded bytes\) cannot be decoded"),
    ({("train", 0, 2): ("label", -1)}, None,
     r"split 'train' has labels outside the classes 0 to 9 .*: -1 .*file '\S*train-00000-of-00002.parquet', row 2"),
    ({("validation", 1, 4): ("label", 57)}, {"validation": 60},
     r"split 'validation' has labels .*: 57 .*file '\S*validation-00001-of-00003.parquet', row 4\)"),
], ids=["corrupt image", "label -1", "label 57 of 10"])
def test_the_head_of_each_streamed_split_is_checked_before_training(tmp_path, bad, classes, message):
    train = train_script()
    dataset = write_shards(tmp_path / "shards", bad, classes)
    with pytest.raises(train.InputError, match=message):
        train.main(stream_argv(dataset, tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_bad_training_row_past_the_head_stops_training_naming_it(tmp_path):
    """Row 16 onwards (the second train shard) is past the head: found as it streams, named by file and row, and
    refused, not trained as class 0."""
    train = train_script()
    dataset = write_shards(tmp_path / "shards", {("train", 1, 3): ("label", -1)})
    argv = stream_argv(dataset, tmp_path / "run")
    argv[argv.index("--max_steps") + 1] = "8"  # 64 rows: two passes over the 32
    with pytest.raises(train.StoppedOnDataError,
                       match=r"training stopped at step \d: split 'train' has labels .*: -1 .*"
                             r"file '\S*train-00001-of-00002.parquet', row 3\).*; no checkpoint was saved"):
        train.main(argv)
    assert not (tmp_path / "run" / "all_results.json").exists()


@pytest.mark.parametrize("bad", [("label", -1), ("image", b"\x89PNG truncated")], ids=["label -1", "corrupt image"])
def test_a_bad_evaluation_row_costs_only_the_evaluation(tmp_path, bad, capsys):
    """The third validation shard (rows 16 to 22) is past the head: the evaluation stops on its row 2, which it
    names; the trained model is on disk first, and loads, and the message says how to evaluate it again."""
    train = train_script()
    dataset = write_shards(tmp_path / "shards", {("validation", 2, 2): bad})
    out = tmp_path / "run"
    assert train.cli(stream_argv(dataset, out)) == 1
    error = capsys.readouterr().err
    assert re.search(r"the evaluation stopped: split 'validation'.* file '\S*validation-00002-of-00003.parquet', "
                     r"row 2", error), error
    assert f"the trained model is saved in {str(out)!r}" in error
    assert f"benchmark.py --model_name_or_path {out} --dataset_name {dataset} --streaming --eval_split_name " \
           "validation" in error
    assert not (out / "all_results.json").exists() and not (out / "eval_results.json").exists()
    assert json.loads((out / "train_results.json").read_text())["train_global_step"] == 3
    model = PPTDeiTForImageClassification.from_pretrained(out)
    assert model(torch.zeros(1, 3, 32, 32)).logits.shape == (1, 10)
