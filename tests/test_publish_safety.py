# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""`ppt-publish` loses nothing measured and exports only finished runs:

- exporting an export onto itself keeps every number and the training information (the card is unchanged);
- an export never replaces a previous one with fewer numbers unless told to;
- an output_dir that is a symlink to an export is followed;
- a training run without all_results.json, or a checkpoint-N, is refused unless --allow_unfinished.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hub_fixtures import (
    REPO_ID,
    TRAINING_INFO,
    folder_snapshot,
    tiny_image_processor,
    tiny_trained_model,
    trained_export,
)

from ppt_tools.export import publish
from ppt_tools.export.publish import export_folder


def copy_of_export(tmp_path: Path, name: str = "export") -> Path:
    target = tmp_path / name
    shutil.copytree(trained_export().folder, target)
    return target


def publish_cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()  # what building the fixtures printed (a progress bar) is not the command's
    code = publish.main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def test_exporting_an_export_onto_itself_keeps_its_numbers(tmp_path, capsys):
    """The issue's case: `publish --model_name_or_path X --hub_model_id a/b --dry_run --output_dir X` replaced 11 results by 0."""
    folder = copy_of_export(tmp_path)
    before = folder_snapshot(folder)
    assert len(json.loads(before["results.json"])["results"]) > 10
    code, err = publish_cli(capsys, "--model_name_or_path", folder, "--hub_model_id", REPO_ID, "--dry_run", "--output_dir", folder)
    assert code == 0, err
    assert folder_snapshot(folder) == before  # same weights, same results.json, the same card
    assert "| **PPT (this model)** | 43.75% |" in (folder / "README.md").read_text()


def test_an_export_does_not_drop_numbers_unless_told(tmp_path, capsys):
    folder = copy_of_export(tmp_path)
    before = folder_snapshot(folder)
    model = tiny_trained_model(prune_threshold=7e-5)
    with pytest.raises(ValueError) as error:
        export_folder(model, tiny_image_processor(), folder, results={"eval_accuracy": 0.5})
    message = str(error.value)
    assert "'throughput'" in message and "'baseline_accuracy'" in message and "'base_model'" in message
    assert "allow_fewer_results=True" in message
    assert folder_snapshot(folder) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export"]  # nothing staged or left

    export_folder(model, tiny_image_processor(), folder, results={"eval_accuracy": 0.5}, allow_fewer_results=True)
    assert json.loads((folder / "results.json").read_text())["results"] == {"accuracy": 0.5}
    note = capsys.readouterr().err  # what was dropped is said
    assert "drops its results [" in note and "'throughput'" in note and "'base_model'" in note


def test_an_output_dir_that_is_a_symlink_to_an_export_is_followed(tmp_path, capsys):
    source = copy_of_export(tmp_path, "source")
    target = tmp_path / "target"  # an older export: another model, the same results
    export_folder(tiny_trained_model(prune_threshold=7e-5, steps=1), tiny_image_processor(), target,
                  results=trained_export().result_files, training_info=TRAINING_INFO)
    assert folder_snapshot(target)["model.safetensors"] != folder_snapshot(source)["model.safetensors"]
    link = tmp_path / "links" / "current"
    link.parent.mkdir()
    link.symlink_to(target, target_is_directory=True)
    code, err = publish_cli(capsys, "--model_name_or_path", source, "--hub_model_id", REPO_ID, "--dry_run", "--output_dir", link)
    assert code == 0, err
    assert link.is_symlink() and Path(os.readlink(link)) == target
    assert folder_snapshot(target) == folder_snapshot(source)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["links", "source", "target"]
    assert [path.name for path in link.parent.iterdir()] == ["current"]


@pytest.mark.parametrize("edit", ["README.md", "examples/9_mine.png", "onnx/notes.txt"])
def test_an_export_edited_since_it_was_written_is_not_replaced(tmp_path, capsys, edit):
    """The card a user edited by hand (or an image they added) would be lost by replacing the export: refused, with
    the file named, whether it replaced one the export wrote or was added where the layout has none."""
    folder = copy_of_export(tmp_path)
    (folder / edit).parent.mkdir(exist_ok=True)
    (folder / edit).write_bytes(b"my own words")
    before = folder_snapshot(folder)
    code, err = publish_cli(capsys, "--model_name_or_path", folder, "--hub_model_id", REPO_ID, "--dry_run", "--output_dir", folder)
    assert code == 2 and err.count("\n") == 1
    assert f"{edit} changed since" in err, err
    assert folder_snapshot(folder) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export"]


def unfinished(tmp_path: Path, kind: str) -> Path:
    run = tmp_path / "run"
    folder = run / "checkpoint-12" if kind == "checkpoint" else run
    tiny_trained_model(steps=1).save_pretrained(folder)
    tiny_image_processor().save_pretrained(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 12, "max_steps": 40}))
    if kind == "checkpoint":
        (folder / "optimizer.pt").write_bytes(b"")
        (run / "all_results.json").write_text("{}")  # the run finished; its checkpoint is still mid-training
    return folder


@pytest.mark.parametrize("kind, expected", [
    ("run", "is a training run that has not finished (no all_results.json, which train.py writes last, stopped at "
            "step 12 of 40)"),
    ("checkpoint", "is a mid-training checkpoint (no all_results.json"),
])
def test_an_unfinished_run_is_not_exported_unless_told(tmp_path, capsys, kind, expected):
    folder, out = unfinished(tmp_path, kind), tmp_path / "export"
    code, err = publish_cli(capsys, "--model_name_or_path", folder, "--hub_model_id", REPO_ID, "--output_dir", out)  # an upload, refused first
    assert code == 2 and expected in err and "--allow_unfinished" in err and "Traceback" not in err
    assert not out.exists()
    code, err = publish_cli(capsys, "--model_name_or_path", folder, "--hub_model_id", REPO_ID, "--output_dir", out, "--dry_run",
                            "--allow_unfinished")
    assert code == 0, err
    assert (out / "model.safetensors").is_file()


def test_a_run_folder_with_only_checkpoints_says_so(tmp_path, capsys):
    run = unfinished(tmp_path, "checkpoint").parent
    (run / "all_results.json").unlink()
    code, err = publish_cli(capsys, "--model_name_or_path", run, "--hub_model_id", REPO_ID, "--dry_run", "--output_dir", tmp_path / "export")
    assert code == 2
    assert "(no config.json); it holds checkpoint-12: an unfinished run" in err
    assert f"--resume_from_checkpoint True --output_dir {run}" in err


def test_the_command_says_it_left_noisy_timings_out_and_names_the_flag(tmp_path, capsys):
    from hub_fixtures import ALL_RESULTS
    from ppt_tools.core.timing import TimingStats

    run = tmp_path / "run"
    tiny_trained_model(prune_threshold=7e-5).save_pretrained(run)
    tiny_image_processor().save_pretrained(run)
    (run / "all_results.json").write_text(json.dumps(ALL_RESULTS))
    busy = TimingStats(16, 1, [300.0] * 5, threads=2, cpus=2, load_before=3.0, load_after=5.0).to_dict()
    report = tmp_path / "benchmark_inference.json"
    report.write_text(json.dumps({"machine": {"cpu": "Test CPU"}, "models": {
        "ppt": {"throughput": busy}, "baseline": {"throughput": {**busy, "median": 200.0}}}}))
    argv = ["--model_name_or_path", run, "--hub_model_id", REPO_ID, "--dry_run",
            "--results", run / "all_results.json", report]
    code, err = publish_cli(capsys, *argv, "--output_dir", tmp_path / "quiet")
    assert code == 0, err
    assert "noisy timings are left out of the card (PPT throughput: machine busy" in err
    assert "--allow_noisy_timings" in err
    assert "Speed-up: not measured (noisy: " in (tmp_path / "quiet" / "README.md").read_text()
    code, err = publish_cli(capsys, *argv, "--output_dir", tmp_path / "told", "--allow_noisy_timings")
    assert code == 0, err
    assert "noisy timings" not in err
    assert "Speed-up: 1.50x (PPT / baseline throughput; " in (tmp_path / "told" / "README.md").read_text()
