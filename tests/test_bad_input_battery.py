# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""A battery of bad inputs and faults for the command-line tools: train.py, benchmark.py, `ppt-analysis`,
`ppt-publish` (with `--space`), `ppt-export-onnx` and `ppt-demo`, including damaged and malicious checkpoints and
config.json files that reach the model only through them, streamed datasets with a bad shard, and output folders
that another live process is writing. Each case runs the tool in-process and is classified:

- clear: the case's exit code (2 for bad input, 1 for a failure the input did not cause, or that was found only
  after work was saved), one `<prog>: error:` line, last on stderr, of at most `MAX_ERROR_LINE` characters, that
  holds the case's expected text (the bad value or file), no traceback, and every file that was there unchanged
  (the output folder not created);
- traceback: an exception escaped the tool, stderr holds a traceback, there is no single short error line, or the
  exit code is not the case's;
- bad: the input was accepted (exit code 0), or a file that had to survive changed.

Every case must be clear. The session summary prints the counts (`bad-input battery: ...`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from helpers import (
    BATTERY_OUTCOMES,
    FAST_TRAINING_ARGS,
    TINY_MODEL_ARGS,
    TINY_PPT_ARGS,
    random_images,
    save_imagefolder,
    save_labelled,
    save_with_out_of_range_labels,
    train_script,
)
from hub_fixtures import trained_export
from model_fixtures import tiny_model
from safetensors.torch import load_file, save_file

from ppt_tools import benchmark
from ppt_tools.export import publish
from ppt_tools.analysis import __main__ as analysis
from ppt_tools.core.outputs import TargetLock, resolve_target
from ppt_tools.core.preprocessing import whole_image_processor
from ppt_tools.export import onnx as onnx_export


train = train_script()
# train.py from scratch: the tiny architecture and its PPT schedule (the default one does not fit 4 layers)
SCRATCH_ARGS = [*TINY_MODEL_ARGS, *TINY_PPT_ARGS]

PREFIXES = {"train": "train.py: error: ", "benchmark": "benchmark.py: error: ",
            "publish": "ppt-publish: error: ", "onnx": "ppt-export-onnx: error: ", "demo": "ppt-demo: error: "}
# An error line longer than this repeats what a file or option holds instead of naming it (the translator cuts
# messages to 1,000 characters; the prefix and a path come on top).
MAX_ERROR_LINE = 1_400


def run_demo(argv: list[str]) -> int:
    """`ppt-demo` with a launch that starts the server and stops it at once: a case the demo accepts returns 0
    instead of serving forever, and a port it cannot use fails as it would."""
    import gradio

    from ppt_tools import demo

    launch = gradio.Blocks.launch

    def launch_and_stop(self, *args, **kwargs):
        kwargs["prevent_thread_lock"] = True
        result = launch(self, *args, **kwargs)
        self.close()
        return result

    gradio.Blocks.launch = launch_and_stop
    try:
        return demo.main(argv)
    finally:
        gradio.Blocks.launch = launch


def run_tool(tool: str, argv: list[str]) -> int:
    if tool == "train":
        return train.cli(argv)
    if tool == "benchmark":
        return benchmark.main(argv)
    if tool == "analysis":
        return analysis.main(argv)
    if tool == "onnx":
        return onnx_export.main(argv)
    if tool == "demo":
        return run_demo(argv)
    return publish.main(argv)


def snapshot(path: Path) -> dict[str, bytes] | bytes | None:
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return path.read_bytes() if path.is_file() else None


def classify(tool: str, argv: list[str], expected: tuple[str, ...], guarded: list[Path], output: Path | None,
             capsys, exit_code: int = 2) -> tuple[str, str]:
    """(clear | traceback | bad, what happened)."""
    before = {path: snapshot(path) for path in guarded}
    output_existed = output is not None and output.exists()
    try:
        code = run_tool(tool, argv)
    except SystemExit as exit_:
        code = exit_.code
    except BaseException as error:  # noqa: BLE001 - a bare exception is what this battery counts
        return "traceback", f"{type(error).__name__}: {error}"[:500]
    err = capsys.readouterr().err
    changed = [str(path) for path in guarded if snapshot(path) != before[path]]
    if output is not None and not output_existed and output.exists():
        changed.append(f"{output} (created)")
    if "Traceback (most recent call last)" in err:
        return "traceback", err[-1500:]
    if code == 0:
        return "bad", "accepted (exit code 0)" + (f"; changed {changed}" if changed else "")
    if changed:
        return "bad", f"exit code {code}, but changed {changed}"
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    prefix = f"ppt_analysis {argv[0]}: error: " if tool == "analysis" else PREFIXES[tool]
    if len(errors) != 1 or lines[-1] != errors[0] or not errors[0].startswith(prefix):
        return "traceback", f"no single '{prefix}' line: {err[-1500:]}"
    missing = [text for text in expected if text not in errors[0]]
    if missing:
        return "traceback", f"the error line lacks {missing}: {errors[0][:MAX_ERROR_LINE]}"
    if len(errors[0]) > MAX_ERROR_LINE:
        return "traceback", f"an error line of {len(errors[0]):,} characters: {errors[0][:300]}..."
    if code != exit_code:
        return "traceback", f"exit code {code}, not {exit_code}: {errors[0]}"
    return "clear", errors[0]


# ---- the inputs the cases start from -------------------------------------------------------------------------------


@dataclass
class World:
    checkpoint: Path  # the tiny PPT-DeiT (10 classes, 32 px) with an image processor
    labelled: Path  # a save_to_disk dataset for it: 10 classes, 32 px
    export: Path  # an export (ppt_tools.export.publish) with results
    image: Path  # a PNG for visualize
    resumable: Path  # a checkpoint-2 folder with everything a resume checks for
    tmp: Path  # this case's own folder
    held: contextlib.ExitStack  # what the case holds while the tool runs (another writer's lock), released after

    def hold_lock(self, target: Path) -> str:
        """Take `target`'s output lock as another live writer would (`ppt_tools.core.outputs`); the text the
        refusal must hold to name that writer."""
        lock = TargetLock(resolve_target(target), "train.py --output_dir (another run)").acquire()
        self.held.callback(lock.release)
        return f"process {os.getpid()}"

    def copy_checkpoint(self, name: str = "model") -> Path:
        target = self.tmp / name
        shutil.copytree(self.checkpoint, target)
        return target

    def copy_labelled(self, name: str = "data") -> Path:
        target = self.tmp / name
        shutil.copytree(self.labelled, target)
        return target


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("battery-inputs")
    checkpoint = root / "model"
    tiny_model().save_pretrained(checkpoint)
    whole_image_processor(32, [0.5] * 3, [0.25] * 3).save_pretrained(checkpoint)
    labelled = Path(save_labelled(root / "labelled", [i % 10 for i in range(20)], [i % 10 for i in range(10)]))
    image = root / "image.png"
    random_images(1, 40, seed=3)[0].save(image)
    resumable = root / "checkpoint-2"
    shutil.copytree(checkpoint, resumable)
    (resumable / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({}, resumable / name)
    return {"checkpoint": checkpoint, "labelled": labelled, "export": trained_export().folder, "image": image,
            "resumable": resumable}


@pytest.fixture
def world(shared, tmp_path) -> World:
    with contextlib.ExitStack() as held:
        yield World(**shared, tmp=tmp_path, held=held)


# ---- damage -------------------------------------------------------------------------------------------------------


def truncate(path: Path, keep) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])


def patch_bytes(path: Path, offset: int, new: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset: offset + len(new)] = new
    path.write_bytes(bytes(data))


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def drop_half_the_weights(folder: Path) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    kept = {name: tensor for index, (name, tensor) in enumerate(sorted(tensors.items())) if index % 2}
    save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})


def weights_of_another_model(folder: Path) -> None:
    other = tiny_model(hidden_size=48)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})


WEIGHTS = "model.safetensors"
# name -> (damage(folder), the text the error must hold ("{path}" is the folder))
MODEL_DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    # A damaged weights file: safetensors' own diagnosis, with the folder and file named (the model's from_pretrained).
    "weights truncated": (lambda f: truncate(f / WEIGHTS, 0.5), "file not fully covered"),
    "weights cut inside the header": (lambda f: truncate(f / WEIGHTS, 40), WEIGHTS),
    "weights 3 bytes": (lambda f: truncate(f / WEIGHTS, 3), "header too small"),
    "weights empty": (lambda f: truncate(f / WEIGHTS, 0), "header too small"),
    "weights header length absurd": (lambda f: patch_bytes(f / WEIGHTS, 0, b"\xff" * 8), "header too large"),
    "weights header not JSON": (lambda f: patch_bytes(f / WEIGHTS, 8, b"\xfe\x00garbage!"), "invalid UTF-8 in header"),
    "weights with trailing bytes": (lambda f: (f / WEIGHTS).write_bytes((f / WEIGHTS).read_bytes() + b"x" * 64),
                                    "file not fully covered"),
    "weights a text file": (lambda f: (f / WEIGHTS).write_text("version https://git-lfs.github.com/spec/v1\n"
                                                                "oid sha256:0\nsize 12345\n"), WEIGHTS),
    "weights missing": (lambda f: (f / WEIGHTS).unlink(), "{path}"),
    "weights lack half the parameters": (drop_half_the_weights, "lack"),
    "weights of another architecture": (weights_of_another_model, "{path}"),
    "config.json not JSON": (lambda f: (f / "config.json").write_text("{not json"), "config.json"),
    "config.json empty": (lambda f: (f / "config.json").write_text(""), "config.json"),
    "config.json a list": (lambda f: (f / "config.json").write_text("[1, 2]"), "must hold a JSON object"),
    "config.json model_type bert": (lambda f: edit_config(f, model_type="bert"), "model_type 'bert'"),
    "config.json hidden_size a string": (lambda f: edit_config(f, hidden_size="32"), "hidden_size"),
    "config.json layer_norm_eps a string": (lambda f: edit_config(f, layer_norm_eps="small"), "layer_norm_eps"),
    "config.json no attention heads": (lambda f: edit_config(f, num_attention_heads=0), "{path}"),
    "config.json heads do not divide the width": (lambda f: edit_config(f, num_attention_heads=5), "{path}"),
    "config.json patch_size 0": (lambda f: edit_config(f, patch_size=0), "{path}"),
    "config.json image_size not the weights'": (lambda f: edit_config(f, image_size=48), "{path}"),
    "config.json unknown activation": (lambda f: edit_config(f, hidden_act="swoosh"), "swoosh"),
    "config.json id2label a list": (lambda f: edit_config(f, id2label=["a", "b"]), "{path}"),
    "config.json reduction layer 99": (lambda f: edit_config(f, reduction_layers=[99]), "reduction_layers contains 99"),
    "config.json tokens_removed -1": (lambda f: edit_config(f, tokens_removed=-1), "tokens_removed contains -1"),
    "config.json tokens_removed too many": (lambda f: edit_config(f, tokens_removed=[1, 2, 3]), "tokens_removed"),
    "config.json prune_threshold a word": (lambda f: edit_config(f, prune_threshold="high"), "'high'"),
    "config.json prune_threshold negative": (lambda f: edit_config(f, prune_threshold=-1), "prune_threshold=-1"),
    "config.json score_function unknown": (lambda f: edit_config(f, score_function="magic"), "'magic'"),
    "config.json num_labels not the weights'": (lambda f: edit_config(f, num_labels=3, id2label=None, label2id=None),
                                                "{path}"),
    "no config.json": (lambda f: (f / "config.json").unlink(), "config.json"),
}
# train.py builds its own head from the dataset's classes: a checkpoint whose head disagrees is fine there.
TRAIN_ACCEPTS = {"config.json num_labels not the weights'"}


def model_damage_case(tool: str, damage: str, command: str | None = None):
    def build(world: World):
        folder = world.copy_checkpoint()
        damaging, expected = MODEL_DAMAGES[damage]
        damaging(folder)
        out = world.tmp / "out"
        if tool == "train":
            argv = ["--model_name_or_path", str(folder), "--dataset_name", str(world.labelled), "--output_dir", str(out),
                    *FAST_TRAINING_ARGS]
        elif tool == "benchmark":
            argv = ["--model_name_or_path", str(folder), "--cost_only", "--no_stock", "--no_progress", "--output_dir", str(out)]
        elif tool == "publish":
            argv = ["--model_name_or_path", str(folder), "--hub_model_id", "someone/tiny", "--dry_run", "--output_dir", str(out)]
        else:
            argv = [*ANALYSIS_ARGV[command](world), "--model_name_or_path", str(folder)]
            out = None if command == "visualize" else out
            if out is not None:
                argv += ["--output_dir", str(out)]
        return argv, (expected.format(path=folder),), [folder], out

    return build


ANALYSIS_ARGV = {
    "sweep": lambda w: ["sweep", "--reduction_layer_sets", "1,2", "--tokens_removed_values", "4",
                        "--no_reference_policies", "--no_progress"],
    "policy-stats": lambda w: ["policy-stats", "--num_samples", "2", "--no_progress"],
    "calibrate": lambda w: ["calibrate", "--num_samples", "2", "--no_progress"],
    "score-table": lambda w: ["score-table", "--dataset_name", str(w.labelled), "--max_eval_samples", "2",
                              "--no_progress"],
    "visualize": lambda w: ["visualize", "--image", str(w.image), "--output", str(w.tmp / "map.png")],
}
STEP_COST = ["--mode", "step_cost", "--rounds", "1", "--warmup", "0", "--no_progress"]
SOME_DAMAGES = ["weights truncated", "weights empty", "weights header length absurd", "weights lack half the parameters",
                "config.json not JSON", "config.json hidden_size a string"]


# ---- datasets -------------------------------------------------------------------------------------------------------


def save_dataset(path: Path, splits: dict[str, dict], features: Features) -> Path:
    DatasetDict({name: Dataset.from_dict(rows, features=features) for name, rows in splits.items()}).save_to_disk(
        str(path))
    return path


IMAGE_LABEL = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=10)})


def rows(labels: list[int], size: int = 32, seed: int = 0) -> dict:
    return {"image": random_images(len(labels), size, seed), "label": labels}


def arrow_file(folder: Path, split: str = "train") -> Path:
    return sorted((folder / split).glob("*.arrow"))[0]


def dataset_damage(world: World, damage: str, tool: str) -> tuple[Path, list[str]]:
    """A damaged dataset (and extra options), for a model with 10 classes and 32 px images; the damage is where
    `tool` reads (benchmark.py reads the evaluation split only)."""
    tmp = world.tmp
    if damage == "missing path":
        return tmp / "nowhere", []
    if damage == "a file":
        (tmp / "data.txt").write_text("not a dataset")
        return tmp / "data.txt", []
    if damage == "empty folder":
        (tmp / "empty").mkdir()
        return tmp / "empty", []
    if damage in ("class folders without images", "class folders with text files only"):
        for name in ("cat", "dog"):
            (tmp / "folder" / "train" / name).mkdir(parents=True)
            if damage.endswith("only"):
                (tmp / "folder" / "train" / name / "notes.txt").write_text("no image")
        return tmp / "folder", []
    if damage in ("corrupt image", "zero-byte image", "truncated image"):
        root = Path(save_imagefolder(tmp, classes=("a", "b"), per_class=3, size=32))
        shutil.copytree(root / "train", root / "test")  # benchmark.py evaluates the test split only
        bad = root / ("train" if tool == "train" else "test") / "a" / "0.png"
        if damage == "corrupt image":
            bad.write_bytes(b"this is not a png" * 4)
        elif damage == "zero-byte image":
            bad.write_bytes(b"")
        else:
            truncate(bad, 0.5)
        return root, []
    if damage == "one class only":
        return Path(save_imagefolder(tmp, classes=("only",), per_class=4, size=32)), []
    if damage.startswith("arrow") or damage.endswith(".json corrupt") or damage == "arrow file missing":
        folder = world.copy_labelled()
        if damage == "arrow truncated":
            truncate(arrow_file(folder), 0.5)
        elif damage == "arrow empty":
            truncate(arrow_file(folder), 0)
        elif damage == "arrow garbage":
            arrow_file(folder).write_bytes(b"\x00garbage" * 100)
        elif damage == "arrow file missing":
            arrow_file(folder).unlink()
        else:
            name = damage.split()[0]
            target = folder / name if (folder / name).exists() else folder / "train" / name
            target.write_text("{broken")
        return folder, []
    if damage == "no label column":
        features = Features({"image": ImageFeature(), "score": Value("float32")})
        return save_dataset(tmp / "d", {"train": {"image": random_images(4, 32, 1), "score": [0.1] * 4}}, features), []
    if damage == "string labels":
        features = Features({"image": ImageFeature(), "label": Value("string")})
        return save_dataset(tmp / "d", {"train": {"image": random_images(4, 32, 1), "label": ["a", "b"] * 2},
                                        "test": {"image": random_images(2, 32, 2), "label": ["a", "b"]}}, features), []
    if damage == "labels outside the classes" and tool == "train":  # train's classes are those of its train split
        return Path(save_with_out_of_range_labels(tmp)), []
    if damage == "labels outside the classes":
        features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=20)})
        return save_dataset(tmp / "d", {"train": rows([0, 1, 2, 3]), "test": rows([1, 12, 15, 12], seed=2)},
                            features), []
    if damage == "a single class label":
        features = Features({"image": ImageFeature(), "label": ClassLabel(names=["one"])})
        return save_dataset(tmp / "d", {"train": rows([0] * 4), "test": rows([0] * 2, seed=2)}, features), []
    if damage == "empty eval split":
        return save_dataset(tmp / "d", {"train": rows([0, 1, 2, 3]), "test": rows([])}, IMAGE_LABEL), []
    if damage == "empty train split":
        return save_dataset(tmp / "d", {"train": rows([]), "test": rows([0, 1])}, IMAGE_LABEL), []
    if damage == "one row and no eval split":
        return save_dataset(tmp / "d", {"train": rows([3])}, IMAGE_LABEL), []
    if damage == "a missing image":
        features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=10)})
        damaged = rows([0, 1, 2])
        damaged["image"][1] = None
        other = rows([0, 1], seed=3)
        splits = {"train": damaged, "test": other} if tool == "train" else {"train": other, "test": damaged}
        return save_dataset(tmp / "d", splits, features), []
    if damage == "image column of numbers":
        features = Features({"image": Value("int64"), "label": ClassLabel(num_classes=10)})
        return save_dataset(tmp / "d", {"train": {"image": [1, 2], "label": [0, 1]},
                                        "test": {"image": [3], "label": [1]}}, features), []
    options = {
        "image column missing": ["--image_column_name", "picture"],
        "label column missing": ["--label_column_name", "class"],
        "label column is the image column": ["--label_column_name", "image"],
        "image column is the label column": ["--image_column_name", "label"],
        "train split missing": ["--train_split_name", "training"],
        "eval split missing": ["--eval_split_name", "test"],
        "eval split ratio 0": ["--eval_split_ratio", "0"],
        "eval split ratio 1.5": ["--eval_split_ratio", "1.5"],
        "max_eval_samples 0": ["--max_eval_samples", "0"],
    }
    if damage in options:
        return world.labelled, options[damage]
    if damage == "Hub id not cached offline":
        return Path("someone/no-such-dataset"), []
    raise KeyError(damage)


DATASET_DAMAGES = {
    "missing path": "does not exist",
    "a file": "is a file",
    "empty folder": "empty",
    "class folders without images": "folder",
    "class folders with text files only": "folder",
    "corrupt image": "cannot be decoded",
    "zero-byte image": "cannot be decoded",
    "truncated image": "cannot be decoded",
    "one class only": "no ClassLabel column",  # datasets' imagefolder makes no labels for one class folder
    "arrow truncated": "cannot be read",
    "arrow empty": "cannot be read",
    "arrow garbage": "cannot be read",
    "arrow file missing": "cannot be read",
    "dataset_dict.json corrupt": "cannot be read",
    "state.json corrupt": "cannot be read",
    "dataset_info.json corrupt": "cannot be read",
    "no label column": "no ClassLabel column",
    "string labels": "'label'",
    "labels outside the classes": "outside the classes",
    "a single class label": "at least 2",
    "empty eval split": "cannot be read",  # datasets cannot load an empty split it saved
    "empty train split": "cannot be read",
    "one row and no eval split": "too few",
    "a missing image": "empty",
    "image column of numbers": "image (Value)",
    "image column missing": "'picture'",
    "label column missing": "'class'",
    "label column is the image column": "'image'",
    "image column is the label column": "'label'",
    "train split missing": "'training'",
    "eval split missing": "'test'",
    "eval split ratio 0": "eval_split_ratio",
    "eval split ratio 1.5": "eval_split_ratio",
    "max_eval_samples 0": "--max_eval_samples 0",
    "Hub id not cached offline": "someone/no-such-dataset",
}


def dataset_damage_case(tool: str, damage: str):
    def build(world: World):
        dataset, extra = dataset_damage(world, damage, tool)
        out = world.tmp / "out"
        if tool == "train":
            argv = ["--dataset_name", str(dataset), "--output_dir", str(out), *SCRATCH_ARGS, *FAST_TRAINING_ARGS,
                    *extra]
        else:
            argv = ["--model_name_or_path", str(world.checkpoint), "--dataset_name", str(dataset), "--cost_only", "--no_stock",
                    "--no_progress", "--output_dir", str(out), *extra]
        guarded = [dataset] if dataset.exists() else []
        return argv, (DATASET_DAMAGES[damage],), guarded, out

    return build


# ---- options -------------------------------------------------------------------------------------------------------


def option_case(tool: str, extra: list[str], expected: str, command: str | None = None):
    def build(world: World):
        out = world.tmp / "out"
        if tool == "train":
            argv = ["--dataset_name", str(world.labelled), "--output_dir", str(out), *SCRATCH_ARGS,
                    *FAST_TRAINING_ARGS, *extra]
        elif tool == "benchmark":
            argv = ["--model_name_or_path", str(world.checkpoint), "--cost_only", "--no_stock", "--no_progress",
                    "--output_dir", str(out), *extra]
        else:
            argv = [*ANALYSIS_ARGV[command](world), "--model_name_or_path", str(world.checkpoint), *extra]
            if command != "visualize":
                argv += ["--output_dir", str(out)]
        return argv, (expected,), [world.checkpoint], out

    return build


TRAIN_OPTIONS = [
    (["--learning_rat", "0.1"], "--learning_rat"),
    (["--per_device_train", "4"], "--per_device_train"),
    (["--output", "x"], "--output"),
    (["--not_an_option", "1"], "--not_an_option"),
    (["--learning_rate", "fast"], "'fast'"),
    (["--num_train_epochs", "many"], "'many'"),
    (["--reduction_layers", "one"], "'one'"),
    (["--ppt", "perhaps"], "perhaps"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0"),
    (["--per_device_train_batch_size", "-4"], "--per_device_train_batch_size -4"),
    (["--per_device_eval_batch_size", "0"], "--per_device_eval_batch_size 0"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps 0"),
    (["--max_train_samples", "0"], "--max_train_samples 0"),
    (["--crop_scale_min", "0"], "crop_scale_min=0"),
    (["--crop_scale_min", "1.5"], "crop_scale_min=1.5"),
    (["--preset", "mnist"], "'mnist'"),
    (["--preset", "digits"], "cannot be combined with --dataset_name"),
    (["--model_name_or_path", "facebook/deit-tiny-patch16-224"], "cannot be combined with --model_name_or_path"),
    (["--ppt", "False", "--tokens_removed", "8"], "compression is off"),
    (["--reduction_layers", "1", "2", "--tokens_removed", "1", "2", "3"], "tokens_removed=[1, 2, 3] has 3 entries"),
    (["--reduction_layers", "9"], "reduction_layers contains 9"),
    (["--reduction_layers", "-1"], "reduction_layers contains -1"),
    (["--tokens_removed", "-2"], "tokens_removed contains -2"),
    (["--tokens_removed", "40"], "tokens_removed=40 is too large"),
    (["--prune_threshold", "-1"], "prune_threshold=-1.0"),
    (["--score_function", "magic"], "'magic'"),
    (["--image_size", "30"], "--image_size 30 must be a multiple of --patch_size 4"),
    (["--hidden_size", "33"], "--hidden_size 33 must be a multiple of --num_attention_heads 2"),
    (["--hidden_size", "0"], "hidden_size=0 is not valid"),
    (["--num_hidden_layers", "0"], "num_hidden_layers=0 is not valid"),
    (["--patch_size", "0"], "patch_size=0 is not valid"),
    (["--resume_from_checkpoint", "True"], "holds no complete checkpoint"),
    (["--resume_from_checkpoint", "/nowhere/checkpoint-3"], "does not exist"),
]


def train_without_scratch_size(name: str, expected: str):
    def build(world: World):
        out = world.tmp / "out"
        options = list(SCRATCH_ARGS)
        index = options.index(f"--{name}")
        del options[index: index + 2]
        return (["--dataset_name", str(world.labelled), "--output_dir", str(out), *options, *FAST_TRAINING_ARGS],
                (expected,), [], out)

    return build


def train_config_file(content: str, name: str, expected: str):
    def build(world: World):
        path = world.tmp / name
        if content is not None:
            path.write_text(content)
        out = world.tmp / "out"
        return [str(path), "--dataset_name", str(world.labelled), "--output_dir", str(out), *SCRATCH_ARGS,
                *FAST_TRAINING_ARGS], (expected,), ([path] if content is not None else []), out

    return build


BENCHMARK_OPTIONS = [
    (["--batch", "4"], "--batch"),
    (["--check", "x"], "--check"),
    (["--bogus"], "--bogus"),
    (["--batch_size", "many"], "'many'"),
    (["--mode", "fast"], "'fast'"),
    (["--dtype", "fp64"], "'fp64'"),
    (["--device", "tpu"], "'tpu'"),
    (["--device", "cuda:x"], "'cuda:x'"),
    (["--batch_size", "0"], "--batch_size 0"),
    (["--warmup", "-1"], "--warmup -1"),
    (["--rounds", "0"], "--rounds 0"),
    (["--iterations", "0"], "--iterations 0"),
    (["--latency_rounds", "0"], "--latency_rounds 0"),
    (["--eval_batch_size", "0"], "--eval_batch_size 0"),
    (["--threads", "0"], "--threads 0"),
    (["--reduction_layers", "7"], "reduction_layers contains 7"),
    (["--tokens_removed", "-3"], "tokens_removed contains -3"),
    (["--tokens_removed", "1", "2", "3"], "tokens_removed"),
    (["--prune_threshold", "-0.5"], "prune_threshold=-0.5"),
    (["--score_function", "magic"], "'magic'"),
    (["--image_size", "64"], "--image_size 64"),
    (["--num_labels", "5"], "--num_labels 5"),
    (["--arch", "deit-small"], "exactly one of --arch"),
]


def benchmark_output_case(kind: str, expected: str):
    def build(world: World):
        blocker = world.tmp / "file.txt"
        blocker.write_text("keep me")
        target = blocker if kind == "a file" else blocker / "sub"
        argv = ["--model_name_or_path", str(world.checkpoint), "--cost_only", "--no_stock", "--no_progress", "--output_dir",
                str(target)]
        return argv, (expected,), [blocker], None

    return build


def arch_case(argv_extra: list[str], expected: str):
    def build(world: World):
        return ["--cost_only", "--no_stock", "--no_progress", *argv_extra], (expected,), [], None

    return build


ANALYSIS_OPTIONS = [
    ("sweep", ["--tokens_removed_values", "-1"], "-1"),
    ("sweep", ["--tokens_removed_values", "99"], "99"),
    ("sweep", ["--prune_threshold_values", "-1"], "-1"),
    ("sweep", ["--reduction_layer_sets", "a,b"], "'a,b'"),
    ("sweep", ["--reduction_layer_sets", "1,9"], "9"),
    ("sweep", ["--score_functions", "magic"], "'magic'"),
    ("sweep", ["--rounds", "0"], "--rounds 0"),
    ("sweep", ["--batch_size", "0"], "--batch_size 0"),
    ("sweep", ["--eval_batch_size", "0"], "--eval_batch_size 0"),
    ("sweep", ["--tokens_removed_val", "4"], "--tokens_removed_val"),
    ("policy-stats", ["--num_samples", "0"], "--num_samples 0"),
    ("policy-stats", ["--num_sample", "2"], "--num_sample"),
    ("policy-stats", ["--dtype", "int8"], "'int8'"),
    ("calibrate", ["--target_prune_fraction", "1.5"], "1.5"),
    ("calibrate", ["--target_prune_fraction", "-0.1"], "-0.1"),
    ("calibrate", ["--target", "0.5"], "--target"),
    ("score-table", ["--calibrate_prune_fraction", "2"], "2"),
    ("score-table", ["--finetune_batch_size", "0"], "--finetune_batch_size 0"),
    ("score-table", ["--finetune_steps", "-1"], "-1"),
    ("score-table", ["--score_functions", "magic"], "'magic'"),
    ("visualize", ["--reduction_layers", "8"], "reduction_layers contains 8"),
    ("visualize", ["--device", "gpu"], "'gpu'"),
]


def visualize_path_case(kind: str, expected: str):
    def build(world: World):
        image, output = world.image, world.tmp / "map.png"
        if kind == "image missing":
            image = world.tmp / "missing.png"
        elif kind == "image not an image":
            image = world.tmp / "text.png"
            image.write_text("no image")
        elif kind == "image truncated":
            image = world.tmp / "cut.png"
            image.write_bytes(world.image.read_bytes()[:60])
        elif kind == "output below a file":
            (world.tmp / "file").write_text("keep me")
            output = world.tmp / "file" / "map.png"
        elif kind == "output extension unknown":
            output = world.tmp / "map.tiffany"
        argv = ["visualize", "--model_name_or_path", str(world.checkpoint), "--image", str(image), "--output", str(output)]
        guarded = [path for path in (image, world.tmp / "file") if path.exists()]
        return argv, (expected,), guarded, output

    return build


# ---- publish -------------------------------------------------------------------------------------------------------


def publish_case(kind: str, expected: str):
    def build(world: World):
        tmp, out = world.tmp, world.tmp / "export"
        checkpoint = world.copy_checkpoint()
        extra: list[str] = []
        guarded = [checkpoint]
        if kind == "missing checkpoint":
            checkpoint = tmp / "nowhere"
            guarded = []
        elif kind == "checkpoint is a file":
            checkpoint = tmp / "model.txt"
            checkpoint.write_text("x")
        elif kind == "no preprocessor_config.json":
            (checkpoint / "preprocessor_config.json").unlink()
        elif kind == "unfinished run":
            (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 3, "max_steps": 10}))
        elif kind == "mid-training checkpoint":
            renamed = tmp / "checkpoint-3"
            checkpoint.rename(renamed)
            checkpoint = renamed
            (checkpoint / "optimizer.pt").write_bytes(b"")
            guarded = [checkpoint]
        elif kind.startswith("results"):
            results = tmp / "results.json"
            content = {"results missing": None, "results not JSON": "{oops", "results a list": "[]",
                       "results accuracy a word": json.dumps({"eval_accuracy": "high"}),
                       "results accuracy negative": json.dumps({"eval_accuracy": -0.5}),
                       "results accuracy NaN": '{"eval_accuracy": NaN}',
                       "results params of another model": json.dumps({"params": 5})}[kind]
            if content is not None:
                results.write_text(content)
                guarded.append(results)
            extra = ["--results", str(results)]
        elif kind.startswith("training_info"):
            info = tmp / "info.json"
            content = {"training_info missing": None, "training_info not JSON": "nope",
                       "training_info a list": "[1]"}[kind]
            if content is not None:
                info.write_text(content)
                guarded.append(info)
            extra = ["--training_info", str(info)]
        elif kind == "repo_id missing":
            return ["--model_name_or_path", str(checkpoint), "--dry_run", "--output_dir", str(out)], ("--hub_model_id",), guarded, out
        elif kind.startswith("repo_id"):
            value = {"repo_id with spaces": "some one/tiny", "repo_id three parts": "a/b/c", "repo_id empty": "",
                     "repo_id too long": "a/" + "b" * 120}[kind]
            return ["--model_name_or_path", str(checkpoint), "--hub_model_id", value, "--dry_run", "--output_dir", str(out)], (repr(value)[1:-1],), \
                guarded, out
        elif kind == "option abbreviated":
            extra = ["--dry"]
        elif kind == "unknown option":
            extra = ["--upload_now"]
        elif kind == "output_dir is a file":
            out = tmp / "file.txt"
            out.write_text("keep me")
            guarded.append(out)
        elif kind == "output_dir below a file":
            (tmp / "file.txt").write_text("keep me")
            guarded.append(tmp / "file.txt")
            out = tmp / "file.txt" / "export"
        elif kind == "output_dir a foreign folder":
            out.mkdir()
            (out / "notes.txt").write_text("keep me")
            guarded.append(out)
        elif kind == "output_dir a training run":
            out = world.copy_checkpoint("run")
            (out / "all_results.json").write_text("{}")
            (out / "checkpoint-2").mkdir()
            guarded.append(out)
        elif kind == "output_dir an export with more results":
            out = tmp / "previous"
            shutil.copytree(world.export, out)
            guarded.append(out)
        elif kind == "upload_only an incomplete folder":
            return ["--model_name_or_path", str(checkpoint), "--hub_model_id", "someone/tiny", "--upload_only"], ("not a complete export",), \
                guarded, None
        elif kind == "upload_only a folder with pickles":
            folder = tmp / "exported"
            shutil.copytree(world.export, folder)
            (folder / "extra.bin").write_bytes(b"pickle")
            return ["--model_name_or_path", str(folder), "--hub_model_id", "someone/tiny", "--upload_only"], ("pickle",), [folder], None
        else:
            raise KeyError(kind)
        argv = ["--model_name_or_path", str(checkpoint), "--hub_model_id", "someone/tiny", "--dry_run", "--output_dir", str(out), *extra]
        return argv, (expected,), guarded, (out if not out.exists() else None)

    return build


PUBLISH_CASES = {
    "missing checkpoint": "not a checkpoint folder",
    "checkpoint is a file": "not a checkpoint folder",
    "no preprocessor_config.json": "preprocessor_config.json",
    "unfinished run": "has not finished",
    "mid-training checkpoint": "mid-training checkpoint",
    "results missing": "does not exist",
    "results not JSON": "not valid JSON",
    "results a list": "must hold a JSON object",
    "results accuracy a word": "'high'",
    "results accuracy negative": "-0.5",
    "results accuracy NaN": "nan",
    "results params of another model": "params=5",
    "training_info missing": "does not exist",
    "training_info not JSON": "not valid JSON",
    "training_info a list": "must hold a JSON object",
    "repo_id with spaces": "",
    "repo_id three parts": "",
    "repo_id empty": "",
    "repo_id too long": "",
    "repo_id missing": "",
    "option abbreviated": "--dry",
    "unknown option": "--upload_now",
    "output_dir is a file": "not a directory",
    "output_dir below a file": "not a directory",
    "output_dir a foreign folder": "not empty",
    "output_dir a training run": "not a previous export",
    "output_dir an export with more results": "would drop",
    "upload_only an incomplete folder": "",
    "upload_only a folder with pickles": "",
}


# ---- train.py output folders and resuming -----------------------------------------------------------------------------


def train_output_case(kind: str, expected: str):
    def build(world: World):
        out = world.tmp / "out"
        extra: list[str] = []
        guarded = [out]
        if kind in ("finished run", "checkpoints of another run"):
            out.mkdir()
            if kind == "finished run":
                (out / "all_results.json").write_text('{"eval_accuracy": 0.9}')
            else:
                (out / "checkpoint-50").mkdir()
                (out / "checkpoint-50" / "trainer_state.json").write_text('{"global_step": 50}')
        elif kind == "output_dir a file":
            out = world.tmp / "out.txt"
            out.write_text("keep me")
            guarded = [out]
        elif kind == "output_dir below a file":
            (world.tmp / "file").write_text("keep me")
            guarded = [world.tmp / "file"]
            out = world.tmp / "file" / "out"
        elif kind == "resume from another folder into one with checkpoints":
            out.mkdir()
            (out / "checkpoint-50").mkdir()
            (out / "checkpoint-50" / "trainer_state.json").write_text('{"global_step": 50}')
            shutil.copytree(world.resumable, world.tmp / "elsewhere" / "checkpoint-2")
            extra = ["--resume_from_checkpoint", str(world.tmp / "elsewhere" / "checkpoint-2")]
        elif kind.startswith("resume"):
            out.mkdir()
            checkpoint = out / "checkpoint-4"
            checkpoint.mkdir()
            (checkpoint / "trainer_state.json").write_text('{"global_step": 4}')
            if kind == "resume from a folder without trainer_state.json":
                (checkpoint / "trainer_state.json").unlink()
            if kind != "resume with only an incomplete checkpoint":
                extra = ["--resume_from_checkpoint", str(checkpoint)]
            else:
                extra = ["--resume_from_checkpoint", "True"]
        argv = ["--dataset_name", str(world.labelled), "--output_dir", str(out), *SCRATCH_ARGS, *FAST_TRAINING_ARGS,
                *extra]
        return argv, (expected,), guarded, None

    return build


TRAIN_OUTPUT_CASES = {
    "finished run": "already holds a finished run",
    "checkpoints of another run": "already holds checkpoints",
    "output_dir a file": "exists and is not a directory",
    "output_dir below a file": "cannot be created",
    "resume with only an incomplete checkpoint": "no complete checkpoint",
    "resume from a folder without trainer_state.json": "no trainer_state.json",
    "resume from an incomplete checkpoint": "no model weights",
    "resume from another folder into one with checkpoints": "is not in output_dir",
}


# ---- streaming: a bad shard, found in the head of its split before any work ------------------------------------------


STREAM_SHARDS = {"train": (2, 8), "validation": (2, 4)}  # (shards, rows per shard): both splits fit in the head


def shard_name(split: str, index: int) -> str:
    shards = STREAM_SHARDS[split][0]
    return f"{split}-{index:05d}-of-{shards:05d}.parquet"


def write_stream_shards(root: Path, split: str | None = None, damage: str | None = None) -> Path:
    """Parquet shards in the Hub's layout (`data/<split>-0000i-of-0000n.parquet`) for the tiny model's 10 classes and
    32 px, with `damage` put into the second shard of `split` (row 3 where a row is damaged)."""
    (root / "data").mkdir(parents=True)
    for name, (shards, per_shard) in STREAM_SHARDS.items():
        for index in range(shards):
            path = root / "data" / shard_name(name, index)
            bad = name == split and index == 1
            labels = [(index * per_shard + row) % 10 for row in range(per_shard)]
            classes = 60 if bad and damage == "label out of range" else 10
            images = [{"bytes": _png(image), "path": None}
                      for image in random_images(per_shard, 32, seed=len(name) + index)]
            columns = {"image": images, "label": labels}
            features = {"image": ImageFeature(), "label": ClassLabel(num_classes=classes)}
            if bad and damage == "corrupt image":
                images[3] = {"bytes": b"this is not a png" * 4, "path": None}
            elif bad and damage == "missing image":
                images[3] = None
            elif bad and damage == "label -1":
                labels[3] = -1
            elif bad and damage == "label out of range":
                labels[3] = 57
            elif bad and damage == "no label column in one shard":
                del columns["label"], features["label"]
            elif bad and damage == "label column renamed in one shard":
                columns["class"], features["class"] = columns.pop("label"), features.pop("label")
            elif bad and damage == "image column of text in one shard":
                columns["image"], features["image"] = ["a picture"] * per_shard, Value("string")
            elif name == split and damage == "split without rows":
                columns, per_shard = {"image": [], "label": []}, 0
            Dataset.from_dict(columns, features=Features(features)).to_parquet(str(path))
            if bad and damage == "empty shard file":
                path.write_bytes(b"")
            elif bad and damage == "truncated shard":
                truncate(path, 0.5)
            elif bad and damage == "shard of garbage":
                path.write_bytes(b"\x00garbage" * 200)
    return root


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# damage -> what the error must hold besides the split ("{shard}": the damaged shard's file name)
STREAM_DAMAGES = {
    "corrupt image": ("{shard}", "row 3", "cannot be decoded"),
    "missing image": ("{shard}", "row 3", "empty"),
    "label -1": ("{shard}", "row 3", "-1"),
    "label out of range": ("{shard}", "row 3", "57"),
    "no label column in one shard": ("{shard}",),
    "label column renamed in one shard": ("{shard}",),
    "image column of text in one shard": ("{shard}",),
    "empty shard file": ("{shard}",),
    "truncated shard": ("{shard}",),
    "shard of garbage": ("{shard}",),
    "split without rows": ("is empty",),
}


def stream_case(tool: str, split: str, damage: str):
    def build(world: World):
        root = write_stream_shards(world.tmp / "shards", split, damage)
        out = world.tmp / "out"
        if tool == "train":
            argv = ["--dataset_name", str(root), "--streaming", "--output_dir", str(out), *SCRATCH_ARGS,
                    *FAST_TRAINING_ARGS]
        else:
            argv = ["--model_name_or_path", str(world.checkpoint), "--dataset_name", str(root), "--streaming",
                    "--cost_only", "--no_stock", "--no_progress", "--output_dir", str(out)]
        expected = tuple(text.format(shard=shard_name(split, 1)) for text in STREAM_DAMAGES[damage])
        return argv, (f"split {split!r}", *expected), [root], out

    return build


# ---- publish --space --------------------------------------------------------------------------------------------


def space_case(kind: str, wanted: str):
    def build(world: World):
        expected = wanted
        from ppt_tools.export.space import write_space_folder

        tmp = world.tmp
        checkpoint = world.copy_checkpoint()
        out, space = tmp / "export", tmp / "space"
        extra: list[str] = []
        guarded = [checkpoint]
        if kind.startswith("edited") or kind.startswith("added"):
            write_space_folder(space, "someone/tiny")
            if kind == "edited app.py":
                (space / "app.py").write_text((space / "app.py").read_text() + "\n# my change\n")
            elif kind == "edited README.md":
                (space / "README.md").write_text("my own Space card\n")
            elif kind == "edited requirements.txt":
                (space / "requirements.txt").write_text("torch\nmy-package\n")
            elif kind == "added an example image":
                random_images(1, 24, seed=9)[0].save(space / "examples" / "mine.png")
            elif kind == "added a file of my own":
                (space / "notes.md").write_text("my notes")
            guarded.append(space)
        elif kind == "space_dir is the export folder":
            space = out
        elif kind == "space_dir inside a previous export":
            shutil.copytree(world.export, out)
            space = out / "space"
            guarded.append(out)
        elif kind == "export inside space_dir":
            space.mkdir()
            out = space / "export"
        elif kind == "space_dir a link to the export":
            shutil.copytree(world.export, out)
            space.symlink_to(out, target_is_directory=True)
            guarded.append(out)
        elif kind == "space_dir a file":
            space.write_text("keep me")
            guarded.append(space)
        elif kind == "space_dir below a file":
            (tmp / "file").write_text("keep me")
            guarded.append(tmp / "file")
            space = tmp / "file" / "space"
        elif kind == "space_dir a folder of my own":
            space.mkdir()
            (space / "notes.txt").write_text("keep me")
            guarded.append(space)
        elif kind == "space_dir a model export":
            shutil.copytree(world.export, space)
            guarded.append(space)
        elif kind == "space id invalid":
            extra = ["--space", "some one/demo"]
        elif kind == "space_dir being written":
            expected = world.hold_lock(space)
        elif kind == "upload_only with space_dir the export":
            shutil.copytree(world.export, out)
            return (["--model_name_or_path", str(out), "--hub_model_id", "someone/tiny", "--upload_only", "--space",
                     "--space_dir", str(out)], ("is not a Space this tool wrote",), [out], None)
        else:
            raise KeyError(kind)
        argv = ["--model_name_or_path", str(checkpoint), "--hub_model_id", "someone/tiny", "--dry_run", "--output_dir",
                str(out), *(extra or ["--space"]), "--space_dir", str(space)]
        return argv, (expected,), guarded, (out if not out.exists() else None)

    return build


SPACE_CASES = {
    "edited app.py": "app.py",
    "edited README.md": "README.md",
    "edited requirements.txt": "requirements.txt",
    "added an example image": "examples/mine.png",
    "added a file of my own": "notes.md",
    "space_dir is the export folder": "overlap",
    "space_dir inside a previous export": "overlap",
    "export inside space_dir": "overlap",
    "space_dir a link to the export": "is not a Space this tool wrote",  # refused as a folder before the overlap
    "space_dir a file": "not a directory",
    "space_dir below a file": "not a directory",
    "space_dir a folder of my own": "not empty",
    "space_dir a model export": "not empty",
    "space id invalid": "'some one/demo'",
    "space_dir being written": "",  # the lock holder, filled in by the case
    "upload_only with space_dir the export": "overlap",
}


# ---- the ONNX export ------------------------------------------------------------------------------------------------


def onnx_case(kind: str, wanted: str):
    def build(world: World):
        expected = wanted
        tmp = world.tmp
        checkpoint = world.copy_checkpoint()
        target = tmp / "model.onnx"
        extra: list[str] = []
        guarded = [checkpoint]
        if kind == "checkpoint missing":
            checkpoint, guarded = tmp / "nowhere", []
        elif kind == "checkpoint a file":
            checkpoint = tmp / "model.txt"
            checkpoint.write_text("x")
            guarded = [checkpoint]
        elif kind in MODEL_DAMAGES:
            damaging, expected = MODEL_DAMAGES[kind]
            damaging(checkpoint)
            expected = expected.format(path=checkpoint)
        elif kind == "output folder missing":
            target = tmp / "nowhere" / "model.onnx"
        elif kind == "output below a file":
            (tmp / "file").write_text("keep me")
            guarded.append(tmp / "file")
            target = tmp / "file" / "model.onnx"
        elif kind == "output a folder":
            target.mkdir()
            (target / "notes.txt").write_text("keep me")
            guarded.append(target)
        elif kind in ("output exists, no --overwrite", "bf16 checkpoint, output exists, no --overwrite"):
            target.write_bytes(b"my earlier export")
            guarded.append(target)
            if kind.startswith("bf16"):
                shutil.rmtree(checkpoint)
                tiny_model().to(torch.bfloat16).save_pretrained(checkpoint)
        elif kind == "output not .onnx":
            target = tmp / "model.bin"
        elif kind == "output the checkpoint's weights":
            target, extra = checkpoint / WEIGHTS, ["--overwrite"]
        elif kind == "output the checkpoint's config.json":
            target, extra = checkpoint / "config.json", ["--overwrite"]
        elif kind.startswith("--"):
            extra = kind.split()
        elif kind == "output being written":
            expected = world.hold_lock(target)
        else:
            raise KeyError(kind)
        argv = ["--model_name_or_path", str(checkpoint), "--output_file", str(target), "--no_check", *extra]
        return argv, (expected,), guarded, (target if not target.exists() else None)

    return build


ONNX_CASES = {
    "checkpoint missing": "nowhere",
    "checkpoint a file": "model.txt",
    "weights truncated": "",
    "weights missing": "",
    "config.json not JSON": "",
    "config.json a list": "",
    "config.json model_type bert": "",
    "config.json hidden_size a string": "",
    "config.json reduction layer 99": "",
    "no config.json": "",
    "output folder missing": "does not exist",
    "output below a file": "is a file",
    "output a folder": "is a folder",
    "output exists, no --overwrite": "--overwrite",
    "bf16 checkpoint, output exists, no --overwrite": "--overwrite",
    "output not .onnx": ".onnx",
    "output the checkpoint's weights": ".onnx",
    "output the checkpoint's config.json": ".onnx",
    "--opset 17": "opset 17",
    "--opset 23": "opset 23",
    "--opset 0": "opset 0",
    "--opset eighteen": "'eighteen'",
    "--overwr": "--overwr",
    "--output_dir x": "--output_dir",
    "output being written": "",  # the lock holder, filled in by the case
}


# ---- the demo ----------------------------------------------------------------------------------------------------------

FOREIGN_CODE = """
import pathlib
pathlib.Path(__file__).with_name("ran").write_text("the folder's code ran")
from transformers import PretrainedConfig
class ForeignConfig(PretrainedConfig):
    model_type = "foreign"
"""


def demo_case(kind: str, wanted: str):
    def build(world: World):
        expected = wanted
        from helpers import free_port

        tmp = world.tmp
        folder = world.copy_checkpoint()
        port = str(free_port())
        guarded, created = [folder], None
        if kind == "folder missing":
            folder, guarded = tmp / "nowhere", []
        elif kind == "a file":
            folder = tmp / "model.txt"
            folder.write_text("x")
            guarded = [folder]
        elif kind == "a folder without config.json":
            (folder / "config.json").unlink()
        elif kind in MODEL_DAMAGES:
            damaging, expected = MODEL_DAMAGES[kind]
            damaging(folder)
            expected = expected.format(path=folder)
        elif kind.startswith("foreign auto_map"):
            (folder / "foreign.py").write_text(FOREIGN_CODE)
            model_type = "deit" if kind.endswith("stock model_type") else "foreign"
            edit_config(folder, model_type=model_type, auto_map={
                "AutoConfig": "foreign.ForeignConfig", "AutoModelForImageClassification": "foreign.ForeignModel"})
            created = folder / "ran"  # the folder's code must not run
        elif kind.startswith("--port"):
            port = kind.split()[1]
        elif kind == "port in use":
            import socket

            busy = socket.socket()
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            world.held.callback(busy.close)
            port = expected = str(busy.getsockname()[1])
        else:
            raise KeyError(kind)
        return ["--model_name_or_path", str(folder), "--port", port], (expected,), guarded, created

    return build


DEMO_CASES = {
    "folder missing": "nowhere",
    "a file": "model.txt",
    "a folder without config.json": "config.json",
    "weights truncated": "",
    "weights missing": "",
    "config.json not JSON": "",
    "config.json model_type bert": "",
    "config.json unknown activation": "",
    "foreign auto_map without --trust_remote_code": "--trust_remote_code",
    "foreign auto_map without --trust_remote_code, stock model_type": "--trust_remote_code",
    "--port 70000": "70000",
    "--port -1": "-1",
    "--port 0": "0",
    "--port http": "'http'",
    "port in use": "",  # the port, filled in by the case
}


# ---- malicious config.json, for every command that loads a model --------------------------------------------------


HUGE_LIST = list(range(600_000))
MALICIOUS_CONFIGS: dict[str, tuple[dict | str, str]] = {
    "100,000 layers": ({"num_hidden_layers": 100_000}, "num_hidden_layers=100000"),
    "hidden_size 10**9": ({"hidden_size": 10**9}, "hidden_size=1000000000"),
    "intermediate_size 10**12": ({"intermediate_size": 10**12}, "intermediate_size=1000000000000"),
    "image_size 10**6": ({"image_size": 10**6}, "image_size=1000000"),
    "num_labels 10**8": ({"num_labels": 10**8, "id2label": None, "label2id": None}, "num_labels"),
    "reduction_layers of 600,000 entries": ({"reduction_layers": HUGE_LIST}, "reduction_layers"),
    "tokens_removed of 600,000 entries": ({"tokens_removed": HUGE_LIST}, "tokens_removed"),
    "hidden_size true": ({"hidden_size": True}, "hidden_size"),
    "image_size a triple": ({"image_size": [32, 32, 32]}, "image_size"),
    "nested 100,000 deep": ('{"hidden_size": ' + "[" * 100_000 + "]" * 100_000 + "}", "config.json"),
}


def malicious_config_case(tool: str, name: str):
    def build(world: World):
        folder = world.copy_checkpoint()
        change, expected = MALICIOUS_CONFIGS[name]
        if isinstance(change, str):
            (folder / "config.json").write_text(change)
        else:
            edit_config(folder, **change)
        out = world.tmp / "out"
        if tool == "onnx":
            argv = ["--model_name_or_path", str(folder), "--output_file", str(world.tmp / "model.onnx"), "--no_check"]
            out = world.tmp / "model.onnx"
        elif tool == "demo":
            from helpers import free_port

            argv, out = ["--model_name_or_path", str(folder), "--port", str(free_port())], None
        elif tool == "analysis":
            argv = [*ANALYSIS_ARGV["sweep"](world), "--model_name_or_path", str(folder), "--output_dir", str(out)]
        elif tool == "train":
            argv = ["--model_name_or_path", str(folder), "--dataset_name", str(world.labelled), "--output_dir",
                    str(out), *FAST_TRAINING_ARGS]
        elif tool == "benchmark":
            argv = ["--model_name_or_path", str(folder), "--cost_only", "--no_stock", "--no_progress", "--output_dir",
                    str(out)]
        else:
            argv = ["--model_name_or_path", str(folder), "--hub_model_id", "someone/tiny", "--dry_run",
                    "--output_dir", str(out)]
        return argv, (expected,), [folder], out

    return build


# ---- another live process writing the output folder -----------------------------------------------------------------


def busy_case(tool: str, kind: str):
    """The output folder (or file) is held by another live writer (its lock taken here, as a second process would
    hold it): refused before any work, naming that process, and what is there unchanged."""

    def build(world: World):
        out = world.tmp / "out"
        guarded: list[Path] = []
        if tool == "train":
            argv = ["--dataset_name", str(world.labelled), "--output_dir", str(out), *SCRATCH_ARGS,
                    *FAST_TRAINING_ARGS]
            if kind == "resume while the run is alive":
                out.mkdir()
                shutil.copytree(world.resumable, out / "checkpoint-2")
                argv += ["--resume_from_checkpoint", "True"]
            elif kind == "overwrite a finished run":
                shutil.copytree(world.checkpoint, out)
                (out / "all_results.json").write_text('{"eval_accuracy": 0.9}')
                shutil.copytree(world.resumable, out / "checkpoint-2")
                argv += ["--overwrite_output_dir", "True"]
        elif tool == "benchmark":
            argv = ["--model_name_or_path", str(world.checkpoint), "--cost_only", "--no_stock", "--no_progress",
                    "--output_dir", str(out)]
            if kind == "overwrite earlier results":
                out.mkdir()
                (out / "benchmark_inference.json").write_text('{"models": {}}')
                argv += ["--overwrite_output_dir"]
        elif tool == "analysis":
            argv = [*ANALYSIS_ARGV[kind](world), "--model_name_or_path", str(world.checkpoint)]
            if kind == "visualize":
                out = world.tmp / "map.png"
            else:
                argv += ["--output_dir", str(out)]
        elif tool == "publish":
            argv = ["--model_name_or_path", str(world.checkpoint), "--hub_model_id", "someone/tiny", "--dry_run",
                    "--output_dir", str(out)]
            if kind == "a previous export":  # whose results this checkpoint lacks: replacing them is asked for
                shutil.copytree(world.export, out)
                argv += ["--allow_fewer_results"]
        else:
            out = world.tmp / "model.onnx"
            argv = ["--model_name_or_path", str(world.checkpoint), "--output_file", str(out), "--no_check"]
        holder = world.hold_lock(out)
        if out.exists():
            guarded.append(out)
        return argv, (holder,), guarded, (out if not out.exists() else None)

    return build


BUSY_CASES = [("train", "a new folder"), ("train", "resume while the run is alive"),
              ("train", "overwrite a finished run"), ("benchmark", "a new folder"),
              ("benchmark", "overwrite earlier results"), *[("analysis", command) for command in ANALYSIS_ARGV],
              ("publish", "a new folder"), ("publish", "a previous export"), ("onnx", "a new file")]


# ---- the user's own files in an output folder ----------------------------------------------------------------------


def user_files_case(tool: str, kind: str, expected: str):
    def build(world: World):
        out = world.tmp / "out"
        out.mkdir()
        if tool == "train":
            names = {"notes": ["notes.txt"], "a model of my own": ["config.json", WEIGHTS],
                     "a README of my own": ["README.md"]}[kind]
            for name in names:
                (out / name).write_text(f"my {name}")
            argv = ["--dataset_name", str(world.labelled), "--output_dir", str(out), *SCRATCH_ARGS,
                    *FAST_TRAINING_ARGS]
        elif tool == "benchmark":
            (out / "benchmark_inference.json").write_text('{"my": "own figures"}')
            argv = ["--model_name_or_path", str(world.checkpoint), "--cost_only", "--no_stock", "--no_progress",
                    "--output_dir", str(out)]
        elif tool == "analysis":
            (out / "sweep.csv").write_text("my,own,table\n")
            argv = [*ANALYSIS_ARGV["sweep"](world), "--model_name_or_path", str(world.checkpoint), "--output_dir",
                    str(out)]
        else:  # an export the user edited or added to since it was written
            shutil.rmtree(out)
            shutil.copytree(world.export, out)
            if kind == "edited README.md":
                (out / "README.md").write_text("my own card\n")
            else:
                (out / "notes.txt").write_text("my notes")
            argv = ["--model_name_or_path", str(world.checkpoint), "--hub_model_id", "someone/tiny", "--dry_run",
                    "--output_dir", str(out)]
        return argv, (expected,), [out], None

    return build


USER_FILE_CASES = [
    ("train", "notes", "notes.txt"),
    ("train", "a model of my own", "config.json"),
    ("train", "a README of my own", "README.md"),
    ("benchmark", "their own benchmark_inference.json", "benchmark_inference.json"),
    ("analysis", "their own sweep.csv", "sweep.csv"),
    ("publish", "edited README.md", "README.md"),
    ("publish", "a file added", "notes.txt"),
]


# ---- the table --------------------------------------------------------------------------------------------------------


CASES: dict[str, tuple[str, Callable]] = {}


def add(tool: str, name: str, build: Callable) -> None:
    key = f"{tool}: {name}"
    assert key not in CASES, key
    CASES[key] = (tool, build)


for damage in MODEL_DAMAGES:
    for tool in ("train", "benchmark", "publish"):
        if not (tool == "train" and damage in TRAIN_ACCEPTS):
            add(tool, f"checkpoint {damage}", model_damage_case(tool, damage))
for damage in SOME_DAMAGES:
    for command in ANALYSIS_ARGV:
        add("analysis", f"{command} checkpoint {damage}", model_damage_case("analysis", damage, command))
for damage in DATASET_DAMAGES:
    for tool in ("train", "benchmark"):
        add(tool, f"dataset {damage}", dataset_damage_case(tool, damage))
for extra, expected in TRAIN_OPTIONS:
    add("train", " ".join(extra), option_case("train", extra, expected))
for name in ("hidden_size", "patch_size"):
    add("train", f"--from_scratch without --{name}", train_without_scratch_size(name, f"'{name}'"))
for content, name, expected in [(None, "missing.yaml", "does not exist"), ("- a\n- b\n", "list.yaml", "mapping"),
                                ("a: [1,\n", "broken.yaml", "broken.yaml"), ("{oops", "broken.json", "broken.json"),
                                ("learing_rate: 0.1\n", "typo.yaml", "learing_rate")]:
    add("train", f"config file {name}", train_config_file(content, name, expected))
for kind, expected in TRAIN_OUTPUT_CASES.items():
    add("train", kind, train_output_case(kind, expected))
for extra, expected in BENCHMARK_OPTIONS:
    add("benchmark", " ".join(extra), option_case("benchmark", extra, expected))
for kind, expected in [("a file", "not a directory"), ("below a file", "is a file")]:
    add("benchmark", f"--output_dir {kind}", benchmark_output_case(kind, expected))
for extra, expected in [(["--arch", "deit-huge"], "'deit-huge'"), (["--arch", "deit-tiny", "--image_size", "100"],
                                                                   "--image_size 100"),
                        (["--arch", "deit-tiny", "--num_labels", "0"], "--num_labels 0")]:
    add("benchmark", " ".join(extra), arch_case(extra, expected))
for command, extra, expected in ANALYSIS_OPTIONS:
    add("analysis", f"{command} {' '.join(extra)}", option_case("analysis", extra, expected, command))
for kind, expected in [("image missing", "does not exist"), ("image not an image", "not an image"),
                       ("image truncated", "cut.png"), ("output below a file", "file"),
                       ("output extension unknown", "'.tiffany'")]:
    add("analysis", f"visualize {kind}", visualize_path_case(kind, expected))
for kind, expected in PUBLISH_CASES.items():
    add("publish", kind, publish_case(kind, expected))
for damage in STREAM_DAMAGES:
    for tool, split in (("train", "train"), ("train", "validation"), ("benchmark", "validation")):
        add(tool, f"--streaming, {split} split: {damage}", stream_case(tool, split, damage))
for kind, expected in SPACE_CASES.items():
    add("publish", f"--space: {kind}", space_case(kind, expected))
for kind, expected in ONNX_CASES.items():
    add("onnx", kind, onnx_case(kind, expected))
for kind, expected in DEMO_CASES.items():
    add("demo", kind, demo_case(kind, expected))
for name in MALICIOUS_CONFIGS:
    for tool in ("train", "benchmark", "publish", "analysis", "onnx", "demo"):
        add(tool, f"config.json {name}", malicious_config_case(tool, name))
for tool, kind in BUSY_CASES:
    add(tool, f"output being written by another process: {kind}", busy_case(tool, kind))
for tool, kind, expected in USER_FILE_CASES:
    add(tool, f"output_dir holds the user's files: {kind}", user_files_case(tool, kind, expected))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly_and_loses_nothing(case, world, capsys, request):
    tool, build = CASES[case]
    argv, expected, guarded, output, *exit_code = build(world)
    category, detail = classify(tool, argv, tuple(text for text in expected if text), guarded, output, capsys,
                                *exit_code)
    request.config.stash.setdefault(BATTERY_OUTCOMES, []).append((case, category))
    assert category == "clear", f"[{category}] {detail}"
