# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Bad input to benchmark.py and to `ppt-analysis <command>`: one line `<prog>: error: <message>` naming
the bad value, exit code 2, no traceback, nothing written. The CLIs run in-process on the tiny model.

Commands are named as in the table `COMMANDS`: "run" and "step-cost" are benchmark.py (inference, `--mode
step_cost`), the others are analysis commands."""

from __future__ import annotations

import pytest
import torch
from helpers import save_labelled
from model_fixtures import tiny_model

from ppt_tools import benchmark
from ppt_tools.analysis import __main__ as analysis


ANALYSIS = ("sweep", "score-table", "policy-stats", "calibrate", "visualize")


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


def command_line(command: str, options: list[str]) -> tuple:
    """(main, argv, the prefix of its error line) for one of the COMMANDS."""
    if command in ANALYSIS:
        return analysis.main, [command, *options], f"ppt_analysis {command}: error: "
    mode = ["--mode", "step_cost"] if command == "step-cost" else []
    return benchmark.main, [*mode, *options], "benchmark.py: error: "


def rejected(capsys, argv: list[str], *expected: str, output_dir=None, command: str | None = None) -> str:
    """Run a CLI; assert it fails as bad input should, with every `expected` text in its message. Returns it.
    `argv` starting with an analysis command runs that; otherwise benchmark.py (`command` "step-cost" adds
    `--mode step_cost`)."""
    if command is None:
        command = argv[0] if argv and argv[0] in (*ANALYSIS, "step-cost", "run") else "run"
        argv = argv[1:] if argv and argv[0] == command else argv
    main, argv, prefix = command_line(command, argv)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert errors[0].startswith(prefix), errors[0]
    message = errors[0][len(prefix):]
    for text in expected:
        assert text in message, message
    if output_dir is not None:
        assert not output_dir.exists() or not any(output_dir.iterdir())
    return message


# ---- 1. one clear line instead of a traceback --------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--score_function", "bogus"], ["'bogus'", "ats", "cls_attention", "entropy"]),
        (["--tokens_removed", "999"], ["tokens_removed=999", "32"]),
        (["--reduction_layers", "9"], ["reduction_layers contains 9", "[0, 3]"]),
        (["--batch_size", "0"], ["batch_size", "0", ">= 1"]),
        (["--threads", "0"], ["threads", "0", ">= 1"]),
    ],
    ids=["score_function", "tokens_removed", "reduction_layer", "batch_size", "threads"],
)
def test_run_bad_option_is_one_line(checkpoint, tmp_path, capsys, extra, expected):
    out = tmp_path / "out"
    rejected(capsys, ["--model_name_or_path", checkpoint, "--cost_only", "--no_stock", "--output_dir", str(out), *extra],
             *expected, output_dir=out)


def test_model_source_must_be_exactly_one(checkpoint, capsys):
    rejected(capsys, ["--cost_only"], "--arch", "--model_name_or_path")
    rejected(capsys, ["--cost_only", "--arch", "deit-tiny", "--model_name_or_path", checkpoint], "--arch", "--model_name_or_path")


def test_output_dir_that_is_a_file(checkpoint, tmp_path, capsys):
    path = tmp_path / "file.txt"
    path.write_text("keep me")
    rejected(capsys, ["--model_name_or_path", checkpoint, "--cost_only", "--output_dir", str(path)], str(path), "not a directory")
    assert path.read_text() == "keep me"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_cuda_without_cuda(checkpoint, capsys):
    rejected(capsys, ["--model_name_or_path", checkpoint, "--cost_only", "--device", "cuda"], "'cuda'", "CUDA is not available")


def test_internal_errors_keep_their_traceback(checkpoint, monkeypatch):
    """Only bad input is turned into one line: a bug (here a RuntimeError) still raises."""

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(benchmark, "benchmark", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        benchmark.main(["--model_name_or_path", checkpoint, "--cost_only"])


# ---- 3, 4, 8. the options every subcommand shares are checked by one function, for every subcommand ---------------

TINY_SWEEP = ["--reduction_layer_sets", "1,2", "--tokens_removed_values", "4", "--no_reference_policies"]
SUBCOMMANDS = {
    "run": ["--cost_only", "--no_stock"],
    "sweep": TINY_SWEEP,
    "step-cost": ["--rounds", "1", "--warmup", "0"],
    "policy-stats": ["--num_samples", "2"],
    "calibrate": ["--num_samples", "2"],
    "score-table": ["--dataset_name", "digits", "--max_eval_samples", "2"],
}


@pytest.mark.timeout(60)  # policy-stats and calibrate used to loop forever on --batch_size 0
@pytest.mark.parametrize("command", ["run", "sweep", "step-cost", "policy-stats", "calibrate"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_batch_size_must_be_positive(checkpoint, tmp_path, capsys, command, value):
    out = tmp_path / "out"
    argv = [command, "--model_name_or_path", checkpoint, *SUBCOMMANDS[command], "--batch_size", value, "--output_dir", str(out)]
    rejected(capsys, argv, f"--batch_size {value}", ">= 1", output_dir=out)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["policy-stats", "calibrate"])
def test_num_samples_must_be_positive(checkpoint, tmp_path, capsys, command):
    out = tmp_path / "out"
    rejected(capsys, [command, "--model_name_or_path", checkpoint, "--num_samples", "0", "--output_dir", str(out)],
             "--num_samples 0", ">= 1", output_dir=out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_cuda_without_cuda_in_every_subcommand(checkpoint, tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = [command, "--model_name_or_path", checkpoint, *SUBCOMMANDS[command], "--device", "cuda", "--output_dir", str(out)]
    rejected(capsys, argv, "--device 'cuda'", "CUDA is not available", output_dir=out)


@pytest.mark.parametrize(
    "command, flag, value",
    [("sweep", "--threads", "0"), ("step-cost", "--threads", "-1"), ("sweep", "--eval_batch_size", "0"),
     ("step-cost", "--rounds", "0"), ("sweep", "--warmup", "-1"), ("score-table", "--finetune_batch_size", "0"),
     ("run", "--latency_rounds", "0")],
)
def test_counts_are_checked_in_every_subcommand(checkpoint, tmp_path, capsys, command, flag, value):
    out = tmp_path / "out"
    argv = [command, "--model_name_or_path", checkpoint, *SUBCOMMANDS[command], flag, value, "--output_dir", str(out)]
    rejected(capsys, argv, f"{flag} {value}", output_dir=out)


def test_device_must_be_a_known_name(checkpoint, capsys):
    rejected(capsys, ["sweep", "--model_name_or_path", checkpoint, *TINY_SWEEP, "--device", "tpu"],
             "--device 'tpu'", "auto, cpu, cuda, cuda:N")


def test_output_dir_below_a_file(checkpoint, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    rejected(capsys, ["step-cost", "--model_name_or_path", checkpoint, "--output_dir", str(blocker / "sub")],
             str(blocker), "is a file")


@pytest.mark.parametrize("command", ["run", "sweep", "score-table"])
def test_max_eval_samples_names_the_flag(checkpoint, tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = [command, "--model_name_or_path", checkpoint, *SUBCOMMANDS[command], "--dataset_name", "digits",
            "--max_eval_samples", "-3", "--output_dir", str(out)]
    rejected(capsys, argv, "--max_eval_samples -3", ">= 1", output_dir=out)


# ---- 2. --checkpoint: a local path is checked as one, a Hub id goes to from_pretrained ----------------------------


def _write_config_only(folder):
    folder.mkdir()
    tiny_model().config.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "case, expected",
    [("missing_abs", "does not exist"), ("missing_rel", "does not exist"), ("file", "is a file"),
     ("empty_folder", "is not a model folder (no config.json)"), ("parent_folder", "model folders inside it: model"),
     ("no_weights", "could not be loaded")],
)
def test_bad_checkpoint_path_is_named(tmp_path, capsys, monkeypatch, case, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "image.png").write_bytes(b"not a model")
    (tmp_path / "empty").mkdir()
    _write_config_only(tmp_path / "parent")
    (tmp_path / "parent" / "config.json").unlink()
    _write_config_only(tmp_path / "parent" / "model")
    path = {"missing_abs": str(tmp_path / "nowhere"), "missing_rel": "./nowhere", "file": str(tmp_path / "image.png"),
            "empty_folder": str(tmp_path / "empty"), "parent_folder": str(tmp_path / "parent"),
            "no_weights": str(tmp_path / "parent" / "model")}[case]
    message = rejected(capsys, ["--model_name_or_path", path, "--cost_only"], f"--model_name_or_path {path!r}", expected)
    assert "Repo id" not in message


def test_hub_ids_still_go_to_from_pretrained(monkeypatch, tmp_path):
    from modeling_ppt_deit import PPTDeiTForImageClassification
    from ppt_tools.core.models import load_checkpoint as build_model

    monkeypatch.chdir(tmp_path)
    asked = []

    def fake_from_pretrained(name, output_loading_info=False, **kwargs):
        asked.append(name)
        info = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
        return (tiny_model(), info) if output_loading_info else tiny_model()

    monkeypatch.setattr(PPTDeiTForImageClassification, "from_pretrained", fake_from_pretrained)
    for repo_id in ("facebook/deit-small-patch16-224", "deit-tiny"):
        build_model(repo_id)
    assert asked == ["facebook/deit-small-patch16-224", "deit-tiny"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("./facebook/deit-small-patch16-224")
    assert len(asked) == 2


# ---- 7. --image_size and --num_labels are used or refused, never silently replaced --------------------------------


@pytest.mark.parametrize("command", ["run", "sweep", "step-cost", "policy-stats"])
@pytest.mark.parametrize("value, expected", [("0", ">= 1"), ("-16", ">= 1"), ("100", "multiple of deit-tiny's patch size 16")])
def test_arch_image_size_is_checked(tmp_path, capsys, command, value, expected):
    out = tmp_path / "out"
    argv = [command, "--arch", "deit-tiny", "--image_size", value, "--output_dir", str(out)]
    rejected(capsys, argv, f"--image_size {value}", expected, output_dir=out)


@pytest.mark.parametrize("command", ["run", "sweep", "policy-stats", "calibrate", "score-table", "step-cost"])
@pytest.mark.parametrize("flag, value, expected", [("--num_labels", "5", "checkpoint's 10 classes"),
                                                   ("--image_size", "64", "checkpoint's 32")])
def test_checkpoint_keeps_its_image_size_and_classes(checkpoint, tmp_path, capsys, command, flag, value, expected):
    out = tmp_path / "out"
    argv = [command, "--model_name_or_path", checkpoint, *SUBCOMMANDS[command], flag, value, "--output_dir", str(out)]
    rejected(capsys, argv, f"{flag} {value}", expected, output_dir=out)


def test_num_labels_zero_is_refused(capsys):
    rejected(capsys, ["--arch", "deit-tiny", "--num_labels", "0", "--cost_only"], "--num_labels 0", ">= 1")


def test_checkpoint_with_its_own_num_labels_and_image_size_runs(checkpoint, capsys):
    assert benchmark.main(["--model_name_or_path", checkpoint, "--num_labels", "10", "--image_size", "32", "--cost_only",
                 "--no_stock", "--no_flop_check", "--no_progress"]) == 0
    assert "image_size=32" in capsys.readouterr().out


def test_arch_image_size_is_used(capsys):
    assert benchmark.main(["--arch", "deit-tiny", "--image_size", "64", "--num_labels", "7", "--reduction_layers", "1",
                 "--tokens_removed", "4", "--cost_only", "--no_stock", "--no_flop_check", "--no_progress"]) == 0
    assert "image_size=64" in capsys.readouterr().out


# ---- 5. visualize: the image and the output are checked first; nothing written on failure --------------------------


@pytest.fixture
def image_dir(tmp_path):
    """A folder with one small image and one file that is no image; the tests check nothing else appears in it."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "in.png")
    (folder / "text.png").write_text("not an image")
    return folder


@pytest.mark.parametrize(
    "image, output, expected",
    [
        ("missing.png", "map.png", ["--image", "missing.png", "does not exist"]),
        ("text.png", "map.png", ["--image", "text.png", "not an image"]),
        (".", "map.png", ["--image", "is a folder"]),
        ("in.png", "nowhere/map.png", ["--output", "nowhere", "does not exist"]),
        ("in.png", "map.xyz", ["--output", "'.xyz'", ".png", ".jpg"]),
        ("in.png", "map", ["--output", "no extension", ".png"]),
        ("in.png", ".", ["--output", "is a folder"]),
        ("in.png", "in.png", ["--output", "is the --image"]),
        ("in.png", "text.png", ["--output", "text.png' exists", "--overwrite"]),
    ],
    ids=["missing", "not_an_image", "folder", "missing_folder", "unknown_extension", "no_extension", "output_folder",
         "output_is_the_image", "output_exists"],
)
def test_visualize_bad_paths(checkpoint, image_dir, capsys, image, output, expected):
    before = {p.name: p.read_bytes() for p in image_dir.rglob("*") if p.is_file()}
    rejected(capsys, ["visualize", "--model_name_or_path", checkpoint, "--image", str(image_dir / image),
                      "--output", str(image_dir / output)], *expected)
    assert {p.name: p.read_bytes() for p in image_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("command, written", [
    ("run", "benchmark_inference.json"), ("step-cost", "benchmark_step_cost.md"), ("sweep", "pareto_macs.png"),
    ("score-table", "score_table.json"), ("policy-stats", "policy_stats.csv"), ("calibrate", "calibration.json"),
])
def test_an_earlier_runs_results_are_replaced_only_when_asked(checkpoint, labelled_dataset, tmp_path, capsys, command,
                                                                written):
    """A results file of an earlier run in --output_dir is refused before any work; --overwrite_output_dir replaces
    it (shown for benchmark.py's cost-only run)."""
    out = tmp_path / "results"
    out.mkdir()
    (out / written).write_text("an earlier run's numbers")
    dataset = ["--dataset_name", labelled_dataset] if command == "score-table" else []
    argv = [command, "--model_name_or_path", checkpoint, *dataset, "--output_dir", str(out), "--no_progress"]
    rejected(capsys, argv, f"already holds {written}", "another --output_dir", "--overwrite_output_dir")
    assert (out / written).read_text() == "an earlier run's numbers" and len(list(out.iterdir())) == 1
    if command == "run":
        assert benchmark.main(argv[1:] + ["--cost_only", "--overwrite_output_dir"]) == 0
        assert '"mode": "inference"' in (out / written).read_text()


@pytest.mark.parametrize("flag", [["--output_dir", "somewhere"], ["--no_progress"]])
def test_visualize_does_not_offer_what_it_ignores(checkpoint, image_dir, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        analysis.main(["visualize", "--model_name_or_path", checkpoint, "--image", str(image_dir / "in.png"), *flag])
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_visualize_honours_dtype_and_device(checkpoint, image_dir, capsys, monkeypatch):
    """The tiny checkpoint has no preprocessor_config.json: visualize falls back to a ViT processor at its size."""
    from PIL import Image

    import ppt_tools.analysis.visualize as visualize

    used = []
    original = visualize.load_placed_model

    def spy(args):
        model, device = original(args)
        used.append((next(model.parameters()).dtype, device.type))
        return model, device

    monkeypatch.setattr(visualize, "load_placed_model", spy)
    output = image_dir / "map.jpg"
    assert analysis.main(["visualize", "--model_name_or_path", checkpoint, "--image", str(image_dir / "in.png"), "--output", str(output),
                 "--dtype", "bf16", "--device", "cpu"]) == 0
    assert used == [(torch.bfloat16, "cpu")]
    assert Image.open(output).format == "JPEG"
    assert sorted(p.name for p in image_dir.iterdir()) == ["in.png", "map.jpg", "text.png"]  # no temporary left
    if not torch.cuda.is_available():
        rejected(capsys, ["visualize", "--model_name_or_path", checkpoint, "--image", str(image_dir / "in.png"),
                          "--output", str(image_dir / "other.png"), "--device", "cuda"], "--device 'cuda'")
        assert not (image_dir / "other.png").exists()


# ---- 6. dataset labels the model cannot predict ------------------------------------------------------------------


@pytest.fixture(scope="module")
def label_datasets(tmp_path_factory):
    """20-class datasets for the 10-class tiny model: labels 12 and 15 in validation, or 11 in train."""
    root = tmp_path_factory.mktemp("labels")
    return {"eval": save_labelled(root / "bad_eval", [0, 1, 2, 3], [1, 12, 15, 12], num_classes=20),
            "train": save_labelled(root / "bad_train", [0, 11, 2, 3], [1, 2, 3, 4], num_classes=20)}


@pytest.mark.parametrize("command", ["run", "sweep", "score-table"])
def test_eval_labels_outside_the_model_are_named(checkpoint, label_datasets, tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = [command, "--model_name_or_path", checkpoint, *SUBCOMMANDS[command], "--dataset_name", label_datasets["eval"],
            "--no_progress", "--output_dir", str(out)]
    if command == "sweep":
        argv.append("--no_speed")
    elif command == "score-table":
        argv[argv.index("--max_eval_samples") + 1] = "4"
    rejected(capsys, argv, "the evaluation split has labels outside the classes 0 to 9 (num_labels=10): 12, 15",
             "3 of 4 rows", output_dir=out)


def test_train_labels_outside_the_model_are_named(checkpoint, label_datasets, tmp_path, capsys):
    out = tmp_path / "out"
    rejected(capsys, ["score-table", "--model_name_or_path", checkpoint, "--dataset_name", label_datasets["train"],
                      "--finetune_steps", "1", "--finetune_batch_size", "2", "--no_progress", "--output_dir", str(out)],
             "the training split has labels outside the classes 0 to 9 (num_labels=10): 11", output_dir=out)


def test_check_labels_accepts_labels_in_range():
    from ppt_tools.core.data import check_labels

    check_labels(torch.tensor([0, 9, 3]), 10, "labels")
    with pytest.raises(ValueError, match="-1"):
        check_labels([0, -1], 10, "labels")


# ---- 9. --dataset_name: a folder that holds no dataset is named -----------------------------------------------------


def test_a_model_folder_is_no_dataset(checkpoint, capsys):
    rejected(capsys, ["--model_name_or_path", checkpoint, "--cost_only", "--no_stock", "--dataset_name", checkpoint],
             f"dataset folder {checkpoint!r} is neither a save_to_disk folder nor a folder of data files")


# ---- 10. run --cost_only times nothing, so it says nothing about timing -------------------------------------------


def test_cost_only_prints_no_timing_line(checkpoint, tmp_path, capsys):
    import json

    out = tmp_path / "out"
    assert benchmark.main(["--model_name_or_path", checkpoint, "--cost_only", "--no_stock", "--warmup", "3", "--no_progress",
                           "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "timing:" not in printed and "warm-up" not in printed
    assert "ppt_vs_baseline: MACs" in printed
    assert json.loads((out / "benchmark_inference.json").read_text())["timing_method"] is None


# ---- 11. progress bars on the long loops, off with --no_progress --------------------------------------------------


@pytest.fixture(scope="module")
def good_dataset(labelled_dataset):
    return labelled_dataset


@pytest.mark.parametrize(
    "argv, bar",
    [(["policy-stats", "--num_samples", "4", "--batch_size", "2"], "policy statistics"),
     (["score-table", "--score_functions", "ats", "entropy"], "score functions")],
    ids=["policy-stats", "score-table"],
)
def test_long_loops_show_progress(checkpoint, good_dataset, capsys, argv, bar):
    argv = [*argv, "--model_name_or_path", checkpoint, "--dataset_name", good_dataset]
    assert analysis.main(argv) == 0
    err = capsys.readouterr().err
    assert bar in err and "it/s" in err
    assert analysis.main([*argv, "--no_progress"]) == 0
    assert bar not in capsys.readouterr().err


@pytest.mark.parametrize("word, hint", [("sweeep", "did you mean 'sweep'?"), ("frobnicate", "")])
def test_mistyped_command_lists_the_commands(capsys, word, hint):
    assert analysis.main([word, "--arch", "deit-tiny"]) == 2
    err = capsys.readouterr().err
    assert f"unknown command {word!r}" in err and hint in err
    assert "sweep, score-table, policy-stats, calibrate, visualize" in err
    assert "Traceback" not in err



def test_a_failed_write_never_leaves_half_a_result_file(checkpoint, tmp_path, monkeypatch):
    import json

    out = tmp_path / "out"
    argv = ["--model_name_or_path", checkpoint, "--mode", "step_cost", "--batch_size", "2", "--rounds", "1", "--warmup", "0",
            "--no_progress", "--output_dir", str(out)]
    assert benchmark.main(argv) == 0
    assert json.loads((out / "benchmark_step_cost.json").read_text())["step_cost"]["tokens"] == 65

    class Unwritable:  # fails half way through serialising the result
        def __str__(self):
            raise RuntimeError("cannot write this")

    for name in list(out.iterdir()):
        name.unlink()
    real = benchmark.measure_step_cost
    monkeypatch.setattr(benchmark, "measure_step_cost", lambda *a: {**real(*a), "broken": Unwritable()})
    with pytest.raises(RuntimeError, match="cannot write this"):
        benchmark.main(argv)
    assert not any(out.iterdir())


def test_score_table_checks_the_calibration_fraction_before_loading_data(checkpoint, tmp_path, capsys):
    """Not after loading the model and preprocessing the evaluation split (here a missing dataset would fail first)."""
    rejected(capsys, ["score-table", "--model_name_or_path", checkpoint, "--dataset_name", str(tmp_path / "nowhere"),
                      "--calibrate_prune_fraction", "1.5"], "--calibrate_prune_fraction 1.5", "[0, 1]")
    rejected(capsys, ["score-table", "--model_name_or_path", checkpoint, "--dataset_name", str(tmp_path / "nowhere"),
                      "--finetune_steps", "-1"], "--finetune_steps -1", ">= 0")
