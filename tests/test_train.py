# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""train.py end to end on tiny local datasets (offline, CPU), plus its pure parts (transforms, metric, options)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    CIFAR100_FINE_NAMES,
    CrashAfterCheckpoint,
    FAST_TRAINING_ARGS,
    TINY_MODEL_ARGS,
    TINY_PPT_ARGS,
    random_images,
    save_cifar100_like,
    save_imagefolder,
    save_with_corrupt_image,
    save_with_out_of_range_labels,
    save_without_label_feature,
    train_script,
)
from PIL import Image
from transformers import AutoImageProcessor

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification
from ppt_tools.core.accuracy import TopKAccuracy
from ppt_tools.core.preprocessing import whole_image_processor
from ppt_tools.training.augmentation import TrainTransform, random_resized_crop_box
from ppt_tools.training.arguments import DEFAULT_DATASET, DEFAULT_MODEL, parse_args, validate_args


ROOT = Path(__file__).resolve().parents[1]


train = train_script()


@pytest.fixture(scope="module")
def cifar_like(cifar100_path):
    return cifar100_path


def run_train(dataset, output_dir, *extra, callbacks=None):
    argv = ["--dataset_name", str(dataset), "--output_dir", str(output_dir),
            *TINY_MODEL_ARGS, *FAST_TRAINING_ARGS, *extra]
    return train.main(argv, callbacks=callbacks)


def accuracy_by_hand(model_dir, dataset_path, split="test"):
    """Top-1 accuracy of the saved folder, through its own saved image processor (not train.py's transforms)."""
    from datasets import load_from_disk

    model = PPTDeiTForImageClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    data = load_from_disk(dataset_path)[split]
    pixel_values = processor([image.convert("RGB") for image in data["img"]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        compressed = model(pixel_values).logits.argmax(-1)
        with model.compression_settings(reduction_layers=[]):
            plain = model(pixel_values).logits.argmax(-1)
    labels = torch.tensor(list(data["fine_label"]))
    return (compressed == labels).float().mean().item(), (plain == labels).float().mean().item()


# ---- end to end ---------------------------------------------------------------------------------------------------


def test_cifar100_schema_trains_with_ppt_and_saves_a_complete_folder(cifar_like, tmp_path):
    out = tmp_path / "run"
    results = run_train(cifar_like, out, *TINY_PPT_ARGS)

    saved = json.loads((out / "all_results.json").read_text())
    assert saved["train_global_step"] == 3
    assert saved["eval_split"] == "test" and saved["eval_samples"] == 24
    for key in ("eval_accuracy", "eval_top5_accuracy", "eval_baseline_accuracy", "eval_baseline_top5_accuracy"):
        assert 0.0 <= saved[key] <= 1.0
    assert saved["ppt_reduction_layers"] == [1, 2] and saved["ppt_tokens_removed"] == 8
    assert saved["ppt_tokens_per_layer"] == [[65, 65], [65, 57], [57, 49], [49, 49]]
    assert saved["ppt_gmacs"] < saved["baseline_gmacs"]
    # Trainer's total_flos counts 3 steps x 8 images at 6 x the PPT model's MACs (forward 2x, backward ~4x)
    assert saved["total_flos"] == pytest.approx(6 * 3 * 8 * saved["ppt_gmacs"] * 1e9)
    assert json.loads((out / "eval_results.json").read_text())["eval_accuracy"] == saved["eval_accuracy"]
    assert results["eval_accuracy"] == saved["eval_accuracy"]
    # the final save's staging folder (beside the run folder) and its lock are gone
    assert not [path.name for path in out.parent.iterdir() if ".ppt-" in path.name]
    info = json.loads((out / "training_info.json").read_text())  # what the model card reads
    assert info["eval_split"] == "test" and info["dataset_name"] == cifar_like and "dataset" not in info
    assert (info["image_column"], info["label_column"]) == ("img", "fine_label")  # the Space's examples use them
    assert info["trained_with_compression"] is True and info["learning_rate"] == 1e-3
    assert info["batch_size"] == 8 and info["training_time"].endswith(" min") and info["training_hardware"]

    # The folder is a model: labels are the ClassLabel names of fine_label (not coarse_label), PPT is on.
    model = PPTDeiTForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 100
    assert [model.config.id2label[i] for i in range(100)] == CIFAR100_FINE_NAMES
    assert model.config.label2id["fine_042"] == 42
    assert model.config.reduction_layers == [1, 2] and model.config.tokens_removed == 8
    # Its own image processor reproduces both accuracies train.py reported (PPT on and off).
    compressed, plain = accuracy_by_hand(out, cifar_like)
    assert compressed == pytest.approx(saved["eval_accuracy"])
    assert plain == pytest.approx(saved["eval_baseline_accuracy"])


def test_ppt_off_trains_the_plain_model(cifar_like, tmp_path):
    out = tmp_path / "plain"
    results = run_train(cifar_like, out, "--ppt", "False")
    assert results["ppt_reduction_layers"] == [] and results["ppt_gmacs"] == results["baseline_gmacs"]
    assert results["eval_accuracy"] == results["eval_baseline_accuracy"]
    assert PPTDeiTForImageClassification.from_pretrained(out).config.compression_enabled is False


def test_imagefolder_without_eval_split_holds_out_a_seeded_split(tmp_path):
    folder = save_imagefolder(tmp_path, per_class=8)  # 24 images, 3 classes, only a train split
    first = run_train(folder, tmp_path / "a", *TINY_PPT_ARGS, "--eval_split_ratio", "0.25")
    assert first["eval_split"].startswith("train (held out") and first["eval_samples"] == 6
    assert first["train_samples"] == 18
    config = PPTDeiTConfig.from_pretrained(tmp_path / "a")
    assert sorted(config.id2label.values()) == ["cat", "dog", "fish"]
    assert "eval_top5_accuracy" not in first  # 3 classes: top-1 only


def test_fine_tunes_a_stock_vit_checkpoint_with_its_own_processor_statistics(cifar_like, tmp_path):
    """The default path (a Hub DeiT such as facebook/deit-small-patch16-224, model_type "vit", old key names),
    on a tiny local copy: 10-class head replaced by a 100-class one, encoder weights kept, processor stats kept."""
    from model_fixtures import write_hub_checkpoint

    checkpoint = tmp_path / "deit-like"
    original = write_hub_checkpoint(checkpoint, "vit")  # 32 px, patch 8: 17 tokens
    out = tmp_path / "finetuned"
    argv = ["--model_name_or_path", str(checkpoint), "--dataset_name", cifar_like, "--output_dir", str(out),
            "--reduction_layers", "1", "--tokens_removed", "4", *FAST_TRAINING_ARGS]
    results = train.main(argv)
    assert results["ppt_tokens_per_layer"] == [[17, 17], [17, 13]]

    model = PPTDeiTForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 100 and model.config.id2label[7] == "fine_007"
    loaded = model.deit.embeddings.patch_embeddings.projection.weight
    # Three AdamW steps at lr 1e-3 move each weight by a few 1e-3 at most: the checkpoint's weights were loaded.
    torch.testing.assert_close(loaded, original["vit.embeddings.patch_embeddings.projection.weight"], atol=0.01,
                               rtol=0)
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == [0.485, 0.456, 0.406] and processor["image_std"] == [0.229, 0.224, 0.225]
    assert processor["size"] == {"height": 32, "width": 32} and processor["do_center_crop"] is False


def test_killed_run_resumes_to_the_same_step_count(cifar_like, tmp_path):
    out = tmp_path / "resumable"
    options = [*TINY_PPT_ARGS, "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3",
               "--gradient_accumulation_steps", "2", "--eval_strategy", "steps", "--eval_steps", "3"]
    with pytest.raises(KeyboardInterrupt):
        run_train(cifar_like, out, *options, callbacks=[CrashAfterCheckpoint(3)])
    assert (out / "checkpoint-3" / "trainer_state.json").is_file()
    assert not (out / "all_results.json").exists() and not (out / "model.safetensors").exists()

    results = run_train(cifar_like, out, *options, "--resume_from_checkpoint", "True")
    assert results["train_global_step"] == 6
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["max_steps"] == 6
    assert [entry["step"] for entry in state["log_history"] if "eval_accuracy" in entry][:2] == [3, 6]
    model = PPTDeiTForImageClassification.from_pretrained(out)
    assert model(torch.zeros(1, 3, 32, 32)).logits.shape == (1, 100)


def test_push_goes_through_model_card_publish_only(cifar_like, tmp_path, monkeypatch):
    calls = {}

    def export_folder(model, image_processor, output_dir, results=None, training_info=None, **kwargs):
        calls["export"] = {"results": results, "training_info": training_info, **kwargs}
        os.makedirs(output_dir)
        model.save_pretrained(output_dir)
        return Path(output_dir)

    def push_folder(folder, repo_id, token=None, private=False, revision=None, commit_message=None):
        calls["push"] = {"files": sorted(os.listdir(folder)), "repo_id": repo_id, "private": private}
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(train, "export_folder", export_folder)
    monkeypatch.setattr(train, "push_folder", push_folder)
    run_train(cifar_like, tmp_path / "pushed", *TINY_PPT_ARGS, "--push_to_hub", "True",
              "--hub_model_id", "someone/ppt-tiny", "--hub_private_repo", "True")
    assert calls["push"]["repo_id"] == "someone/ppt-tiny" and calls["push"]["private"] is True
    assert "model.safetensors" in calls["push"]["files"]
    card_results = calls["export"]["results"]
    assert set(card_results) == {"ppt", "baseline"}
    assert card_results["baseline"]["eval_accuracy"] == json.loads(
        (tmp_path / "pushed" / "all_results.json").read_text())["eval_baseline_accuracy"]
    assert calls["export"]["training_info"]["trained_with_compression"] is True


def test_a_failed_push_keeps_the_run_and_says_how_to_retry(cifar_like, tmp_path, monkeypatch):
    """No token (and offline): training completes, the export stays in the run folder, and the error's retry
    command names that folder."""
    monkeypatch.setenv("HF_TOKEN", "")
    out = tmp_path / "run"
    with pytest.raises(train.UploadError) as error:
        run_train(cifar_like, out, *TINY_PPT_ARGS, "--push_to_hub", "True", "--hub_model_id", "someone/ppt-tiny")
    export = out / train.HUB_EXPORT_DIR
    assert (out / "all_results.json").is_file() and (export / "model.safetensors").is_file()
    assert f"ppt-publish --model_name_or_path {export} --hub_model_id someone/ppt-tiny --upload_only" in str(error.value)


@pytest.mark.slow
def test_digits_preset_learns(tmp_path):
    """The README's first command, shortened (the full preset, 30 epochs, reaches ~97%; see the report)."""
    out = tmp_path / "digits"
    results = train.main(["--preset", "digits", "--output_dir", str(out), "--num_train_epochs", "5",
                          "--disable_tqdm", "True"])
    assert results["eval_split"] == "test" and results["eval_samples"] == 360  # digits' own 20% test split
    assert results["ppt_tokens_per_layer"] == [[65, 65], [65, 57], [57, 49], [49, 41]]
    assert results["eval_accuracy"] > 0.3 and results["eval_baseline_accuracy"] > 0.3  # chance: 0.1
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 32, "width": 32}
    assert 0.2 < processor["image_mean"][0] < 0.45  # digits: mostly black background
    assert (out / "model.safetensors").is_file() and (out / "all_results.json").is_file()


# ---- bad input: a clear error before training, nothing written -----------------------------------------------------


@pytest.mark.parametrize(
    "make_dataset, extra, message",
    [
        (lambda tmp: str(tmp / "missing"), [], "does not exist"),
        (save_with_corrupt_image, [], "cannot be decoded"),
        (save_with_out_of_range_labels, [], "split 'test' has labels outside the classes 0 to 2 (num_labels=3): 7"),
        (save_without_label_feature, [], "no ClassLabel column"),
        (save_cifar100_like, ["--label_column_name", "label"], "fine_label (ClassLabel)"),
        (save_cifar100_like, ["--eval_split_name", "validation"], "splits: ['train', 'test']"),
        (save_cifar100_like, ["--ppt", "False", "--tokens_removed", "8"], "compression is off"),
        (save_cifar100_like, ["--reduction_layers", "1", "9"], "reduction_layers contains 9"),
        (save_cifar100_like, ["--preset", "digits"], "cannot be combined with --dataset_name"),
        (save_cifar100_like, ["--preset", "mnist"], "known presets: ['digits']"),
        (save_cifar100_like, ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0 must be >= 1"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, make_dataset, extra, message):
    dataset = make_dataset(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as error:  # a PPT schedule that fits the tiny model: only `extra` is bad
        run_train(dataset, out, *TINY_PPT_ARGS, *extra)
    assert message in str(error.value)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["missing", "empty folder", "file"])
def test_a_local_model_path_that_is_not_a_model_is_named(tmp_path, cifar_like, kind):
    path = tmp_path / "model"
    if kind == "empty folder":
        path.mkdir()
    elif kind == "file":
        path.write_text("{}")
    out = tmp_path / "out"
    argv = ["--dataset_name", cifar_like, "--output_dir", str(out), "--model_name_or_path", str(path),
            *FAST_TRAINING_ARGS]
    with pytest.raises(ValueError) as error:
        train.main(argv)
    problem = {"missing": "does not exist", "file": "is a file"}.get(kind, "is not a model folder (no config.json)")
    assert f"--model_name_or_path {str(path)!r} {problem}" in str(error.value)
    assert not out.exists()


def test_a_hub_model_that_cannot_be_loaded_is_named(tmp_path, cifar_like, monkeypatch):
    """Offline (as here), a Hub id fails inside transformers with an OSError; the error names the model."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    argv = ["--dataset_name", cifar_like, "--output_dir", str(out), "--model_name_or_path", "someone/no-such-deit",
            *FAST_TRAINING_ARGS]
    with pytest.raises(ValueError, match="could not load the config of 'someone/no-such-deit'"):
        train.main(argv)
    assert not out.exists()


def test_output_dir_that_is_a_file_is_rejected(tmp_path, cifar_like):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        run_train(cifar_like, target, *TINY_PPT_ARGS)
    assert target.read_text() == "keep me"


def test_a_plain_integer_label_column_is_found_by_name_and_counts_classes_of_all_splits():
    """With this seed the held-out half takes every label-2 row: the classes still come from both splits."""
    from datasets import Dataset, DatasetDict, Features, Image as ImageFeature, Value

    from ppt_tools.core.data import prepare_data

    features = Features({"image": ImageFeature(), "label": Value("int64"), "weight": Value("int64")})
    rows = {"image": random_images(6, 8, seed=1), "label": [0, 1, 2, 0, 1, 2], "weight": [1] * 6}
    data = prepare_data(DatasetDict({"train": Dataset.from_dict(rows, features=features)}), eval_split_ratio=0.5)
    assert data.label_column == "label" and data.label_names == ["0", "1", "2"]


@pytest.mark.slow
def test_cli_reports_bad_input_in_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--dataset_name", str(tmp_path / "nope"), "--output_dir",
         str(tmp_path / "out"), *TINY_MODEL_ARGS, *TINY_PPT_ARGS],  # a schedule that fits: the settings are checked first
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert completed.returncode == 2
    assert f"train.py: error: dataset path '{tmp_path / 'nope'}' does not exist" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()


def test_finished_output_dir_is_not_overwritten_silently(tmp_path):
    out = tmp_path / "done"
    out.mkdir()
    (out / "all_results.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a finished run"):
        train.main(["--preset", "digits", "--output_dir", str(out)])


# ---- options --------------------------------------------------------------------------------------------------


def parsed(argv):
    model_args, data_args, training_args = parse_args(argv)
    validate_args(model_args, data_args, training_args)
    return model_args, data_args, training_args


def test_no_arguments_mean_the_default_model_and_dataset_with_its_own_schedule():
    model_args, data_args, _ = parsed([])
    assert model_args.model_name_or_path == DEFAULT_MODEL and data_args.dataset_name == DEFAULT_DATASET
    assert model_args.ppt and model_args.reduction_layers is None  # the checkpoint's default schedule applies


def test_config_file_sits_between_preset_and_command_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("preset: digits\nlearning_rate: 0.002\nnum_train_epochs: 3\nreduction_layers: [2, 3]\n")
    model_args, data_args, training_args = parsed([str(config), "--num_train_epochs", "5"])
    assert model_args.from_scratch and model_args.hidden_size == 96  # from the preset
    assert training_args.learning_rate == 0.002  # file over preset
    assert training_args.num_train_epochs == 5  # command line over file
    assert model_args.reduction_layers == [2, 3] and model_args.tokens_removed == [8]  # file, then preset's r
    json_config = tmp_path / "run.json"
    json_config.write_text(json.dumps({"preset": "digits", "learing_rate": 1}))
    with pytest.raises(ValueError, match="learing_rate"):
        parse_args([str(json_config)])


def test_preset_with_ppt_off_is_not_a_conflict():
    model_args, _, _ = parsed(["--preset", "digits", "--ppt", "False"])
    assert model_args.reduction_layers is None and model_args.tokens_removed is None


# ---- pure parts --------------------------------------------------------------------------------------------------


def test_random_resized_crop_box_respects_scale_and_bounds():
    rng = random.Random(0)
    for _ in range(300):
        left, top, right, bottom = random_resized_crop_box(40, 30, (0.3, 0.6), (3 / 4, 4 / 3), rng)
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        area = (right - left) * (bottom - top) / (40 * 30)
        assert 0.25 < area < 0.67  # rounding to whole pixels moves it a little
    # Impossible constraints fall back to the largest centred box of an allowed aspect ratio.
    assert random_resized_crop_box(100, 10, (0.99, 1.0), (1.0, 1.0), rng) == (45, 0, 55, 10)


def test_train_transform_without_augmentation_is_the_saved_processor():
    """Training and evaluation normalise alike: with the crop covering the whole image and no flip, the training
    transform gives what the image processor saved with the model gives."""
    processor = whole_image_processor(32, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    images = random_images(3, 24, seed=3)
    expected = processor(images, return_tensors="pt")["pixel_values"]
    transform = TrainTransform(32, processor.image_mean, processor.image_std, crop_scale=(1.0, 1.0),
                               crop_ratio=(1.0, 1.0), horizontal_flip=False, rng=random.Random(0))
    ours = torch.stack([transform(image) for image in images])
    assert ours.shape == (3, 3, 32, 32)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_train_transform_flips_and_crops():
    image = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8)[None, :, None] * 8, (32, 1, 3)))  # left dark
    full_crop = TrainTransform(32, [0, 0, 0], [1, 1, 1], crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                               horizontal_flip=True, rng=random.Random(0))
    outputs = [full_crop(image) for _ in range(40)]
    flipped = [bool(out[0, 0, 0] > out[0, 0, -1]) for out in outputs]
    assert 5 < sum(flipped) < 35  # both orientations occur
    for out, was_flipped in zip(outputs, flipped):
        reference = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
        torch.testing.assert_close(out, reference.flip(-1) if was_flipped else reference)


def test_topk_accuracy_metric_counts():
    metric = TopKAccuracy()
    scores = metric.compute(predictions=[[3, 1, 7], [0, 2, 5], [4, 6, 8], [9, 0, 1]], references=[3, 2, 5, 0])
    assert scores == {"accuracy": 0.25, "top3_accuracy": 0.75}
    assert metric.compute(predictions=[1, 2, 2], references=[1, 2, 0]) == {"accuracy": pytest.approx(2 / 3)}
