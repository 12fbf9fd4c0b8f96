# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""train.py loses nothing and survives being killed, and a resumed run is the run that was never interrupted:

- a new run refuses an output_dir that holds another run (its checkpoints or its results survive, byte for byte);
- checkpoints appear complete or not at all, even under SIGKILL in the middle of a save;
- resuming skips, and names, checkpoint folders that lack something, and refuses one that cannot be resumed;
- a run killed after a checkpoint and resumed ends with bitwise the weights of the uninterrupted run, with and
  without DataLoader workers (each image's augmentation is seeded by seed, epoch and row).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset, Features
from datasets import Image as ImageFeature
from datasets import Value
from helpers import ROOT, TINY_MODEL_ARGS, TINY_PPT_ARGS, CrashAfterCheckpoint, random_images, train_script
from safetensors.torch import load_file
from transformers import TrainerCallback
from transformers.trainer_callback import TrainerState

from modeling_ppt_deit import PPTDeiTForImageClassification
from ppt_tools.training.augmentation import AugmentedDataset, TrainTransform
from ppt_tools.training.checkpoints import CHECKPOINT_STAGING_DIR, checkpoint_problem


train = train_script()

# 48 training images in batches of 8: 6 batches per epoch.
RUN_ARGS = [
    *TINY_MODEL_ARGS, *TINY_PPT_ARGS,
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "24", "--learning_rate", "1e-3",
    "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
    "--dataloader_num_workers", "0", "--use_cpu", "True", "--disable_tqdm", "True", "--report_to", "none",
]


def run_argv(dataset, output_dir, *extra) -> list[str]:
    return ["--dataset_name", str(dataset), "--output_dir", str(output_dir), *RUN_ARGS, *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(expected: dict, actual: dict) -> None:
    assert sorted(expected) == sorted(actual)
    different = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


class StepRecorder(TrainerCallback):
    """The optimizer steps a run takes (a resumed run starts after its checkpoint's step)."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


@pytest.fixture(scope="module")
def checkpointed_run(cifar100_path, tmp_path_factory) -> Path:
    """A finished 4-step run that saved checkpoint-2 and checkpoint-4."""
    out = tmp_path_factory.mktemp("checkpointed") / "run"
    train.main(run_argv(cifar100_path, out, "--max_steps", "4"))
    return out


# ---- 1. a new run never touches another run's folder -----------------------------------------------------------------


def make_previous_run(folder: Path, finished: bool, checkpoints: bool) -> None:
    for step in (50, 60):
        if checkpoints:
            checkpoint = folder / f"checkpoint-{step}"
            checkpoint.mkdir(parents=True)
            (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "note": "other run"}))
            (checkpoint / "model.safetensors").write_bytes(bytes(range(256)) * step)
    if finished:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.97}))
        (folder / "model.safetensors").write_bytes(b"the finished model")


@pytest.mark.parametrize("finished, checkpoints", [(False, True), (True, False), (True, True)],
                         ids=["checkpoints", "finished", "both"])
def test_a_new_run_refuses_a_folder_holding_another_run(tmp_path, finished, checkpoints):
    """The issue's case (checkpoints, no flags): Trainer's rotation (save_total_limit 1) would delete them."""
    out = tmp_path / "O"
    make_previous_run(out, finished, checkpoints)
    before = snapshot(out)
    with pytest.raises(train.InputError) as error:
        train.main(["--preset", "digits", "--max_train_samples", "128", "--num_train_epochs", "2",
                    "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "1", "--output_dir", str(out),
                    "--disable_tqdm", "True"])
    message = str(error.value)
    assert ("checkpoint-50, checkpoint-60" if not finished else "finished run (all_results.json)") in message
    for way in ("another --output_dir", "--resume_from_checkpoint True", "--overwrite_output_dir True"):
        assert way in message
    assert snapshot(out) == before


def an_export(folder: Path) -> None:
    """What `ppt-publish` leaves: a model folder with its card, no training state."""
    folder.mkdir(parents=True)
    for name, content in {"config.json": b'{"model_type": "vit"}', "model.safetensors": b"the exported weights",
                          "preprocessor_config.json": b"{}", "README.md": b"the card", "results.json": b"{}"}.items():
        (folder / name).write_bytes(content)


@pytest.mark.parametrize("case", ["export", "symlink to an export", "a user's files"])
def test_a_new_run_refuses_a_folder_that_is_not_empty(tmp_path, case):
    """train.py writes config.json, model.safetensors... into output_dir when it ends: a folder holding anything
    (an export, the checkpoint a run fine-tunes, a user's files) is refused before any work."""
    out = tmp_path / "O"
    if case == "a user's files":
        out.mkdir()
        (out / "config.json").write_text("my config")
        (out / "notes.md").write_text("my notes")
    else:
        an_export(tmp_path / "export")
        if case == "symlink to an export":
            out.symlink_to(tmp_path / "export", target_is_directory=True)
        else:
            out = tmp_path / "export"
    before = snapshot(tmp_path)
    with pytest.raises(train.InputError) as error:
        train.main(["--preset", "digits", "--max_train_samples", "64", "--max_steps", "1", "--output_dir", str(out),
                    "--disable_tqdm", "True"])
    shown = "config.json, notes.md" if case == "a user's files" else \
        "README.md, config.json, model.safetensors, preprocessor_config.json, results.json"
    assert f"output_dir {str(out)!r} is not empty ({shown})" in str(error.value)
    for way in ("another --output_dir", "--overwrite_output_dir True"):
        assert way in str(error.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["a user's folder named like one", "a symlink"])
def test_overwrite_output_dir_deletes_nothing_but_checkpoints(tmp_path, case):
    """--overwrite_output_dir deletes checkpoint-N folders: one that holds more than a checkpoint does (a user's
    work in a folder of that name), or a symlink to somebody's folder, is refused, and nothing is deleted."""
    out = tmp_path / "O"
    make_previous_run(out, finished=False, checkpoints=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("years of work")
    if case == "a symlink":
        (out / "checkpoint-70").symlink_to(elsewhere, target_is_directory=True)
    else:
        shutil.copytree(elsewhere, out / "checkpoint-70")
    before = snapshot(tmp_path)
    with pytest.raises(train.InputError) as error:
        train.main(["--preset", "digits", "--max_train_samples", "64", "--max_steps", "1", "--output_dir", str(out),
                    "--overwrite_output_dir", "True", "--disable_tqdm", "True"])
    expected = "is a symlink" if case == "a symlink" else "holds what no checkpoint does (thesis.tex)"
    assert f"would delete {str(out / 'checkpoint-70')!r}, which {expected}" in str(error.value)
    assert snapshot(tmp_path) == before


def test_overwrite_output_dir_starts_over_without_the_old_checkpoints(cifar100_path, tmp_path):
    """--overwrite_output_dir deletes the previous run's checkpoints: a later --resume_from_checkpoint True would
    otherwise take checkpoint-60 of the old run for this run's."""
    out = tmp_path / "O"
    make_previous_run(out, finished=True, checkpoints=True)
    results = train.main(run_argv(cifar100_path, out, "--max_steps", "2", "--save_strategy", "no",
                                  "--overwrite_output_dir", "True"))
    assert results["train_global_step"] == 2
    assert sorted(path.name for path in out.iterdir() if path.name.startswith("checkpoint")) == []
    assert json.loads((out / "all_results.json").read_text())["train_global_step"] == 2


# ---- 2. checkpoints are complete or absent -------------------------------------------------------------------------------


def test_checkpoints_are_complete_and_no_staging_is_left(checkpointed_run):
    names = sorted(path.name for path in checkpointed_run.iterdir() if path.is_dir())
    assert names == ["checkpoint-2", "checkpoint-4"]  # no .incomplete-checkpoint, no .replaced-*
    for name in names:
        assert checkpoint_problem(str(checkpointed_run / name)) is None
        state = TrainerState.load_from_json(str(checkpointed_run / name / "trainer_state.json"))
        assert f"checkpoint-{state.global_step}" == name


def pause_in_save(monkeypatch, step):
    """Make the save of checkpoint-`step` fail after the weights and optimizer are written (a crash mid-save)."""
    original = train.ImageTrainer._save_rng_state

    def crashing(self, output_dir):
        if self.state.global_step == step:
            raise KeyboardInterrupt(f"crash while writing {output_dir}")
        return original(self, output_dir)

    monkeypatch.setattr(train.ImageTrainer, "_save_rng_state", crashing)


def test_a_crash_during_a_save_leaves_the_last_complete_checkpoint(cifar100_path, tmp_path, monkeypatch):
    out = tmp_path / "run"
    pause_in_save(monkeypatch, step=4)
    with pytest.raises(KeyboardInterrupt, match=CHECKPOINT_STAGING_DIR):
        train.main(run_argv(cifar100_path, out, "--max_steps", "6"))
    assert not (out / "checkpoint-4").exists()  # Trainer alone leaves a checkpoint-4 without RNG states here
    assert checkpoint_problem(str(out / "checkpoint-2")) is None
    assert (out / CHECKPOINT_STAGING_DIR / "checkpoint-4" / "model.safetensors").is_file()

    monkeypatch.undo()
    steps = StepRecorder()
    results = train.main(run_argv(cifar100_path, out, "--max_steps", "6", "--resume_from_checkpoint", "True"),
                         callbacks=[steps])
    assert results["train_global_step"] == 6 and steps.steps == [3, 4, 5, 6]
    assert sorted(path.name for path in out.iterdir() if path.is_dir()) == ["checkpoint-4", "checkpoint-6"]


def start_probe(pause_step: int, ready: Path, argv: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path)}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "kill_probe.py"), str(pause_step), str(ready), *argv],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_save_then_resume(cifar100_path, tmp_path):
    """A real `kill -9` while checkpoint-4 is half written (weights and optimizer on disk, RNG states and trainer
    state not yet), then `--resume_from_checkpoint True`: it continues from checkpoint-2 to the last step, the result
    loads, and its weights are bitwise those of the same run never killed."""
    out, ready = tmp_path / "run", tmp_path / "ready"
    argv = run_argv(cifar100_path, out, "--max_steps", "6")
    probe = start_probe(4, ready, argv, tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert probe.poll() is None, f"the probe ended before the pause: {probe.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "the probe did not reach the pause"
            time.sleep(0.2)
        writing = Path(ready.read_text())
        probe.send_signal(signal.SIGKILL)
        assert probe.wait(timeout=60) == -signal.SIGKILL
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        probe.stderr.close()

    assert writing == out / CHECKPOINT_STAGING_DIR / "checkpoint-4"  # it was writing into the staging folder
    assert (writing / "optimizer.pt").is_file() and not (writing / "trainer_state.json").exists()
    assert not (out / "checkpoint-4").exists()
    assert checkpoint_problem(str(out / "checkpoint-2")) is None
    assert not (out / "all_results.json").exists()

    steps = StepRecorder()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the probe ran (OMP_NUM_THREADS=1): another thread count rounds differently
    try:
        results = train.main(run_argv(cifar100_path, out, "--max_steps", "6", "--resume_from_checkpoint", "True"),
                             callbacks=[steps])
        train.main(run_argv(cifar100_path, tmp_path / "uninterrupted", "--max_steps", "6"))
    finally:
        torch.set_num_threads(threads)
    assert results["train_global_step"] == 6 and steps.steps == [3, 4, 5, 6]  # from checkpoint-2
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    assert not (out / CHECKPOINT_STAGING_DIR).exists()
    model = PPTDeiTForImageClassification.from_pretrained(out)
    assert model(torch.zeros(1, 3, 32, 32)).logits.shape == (1, 100)
    # and it ends with the weights of the run that was never killed
    assert_same_weights(weights(tmp_path / "uninterrupted"), weights(out))


# ---- 3. resuming: incomplete checkpoints are skipped and named, or refused -------------------------------------------


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


DAMAGES = {
    "no trainer state": (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),
    "trainer state truncated": (lambda c: truncate(c / "trainer_state.json", 0.3), "trainer_state.json is truncated"),
    "weights truncated": (lambda c: truncate(c / "model.safetensors"), "model.safetensors cannot be read by safetensors"),
    "weights header only": (lambda c: truncate(c / "model.safetensors", 0.01), "model.safetensors"),
    "no weights": (lambda c: (c / "model.safetensors").unlink(), "no model weights"),
    "no optimizer": (lambda c: (c / "optimizer.pt").unlink(), "no optimizer.pt"),
    "optimizer truncated": (lambda c: truncate(c / "optimizer.pt"), "optimizer.pt is truncated"),
    "no scheduler": (lambda c: (c / "scheduler.pt").unlink(), "no scheduler.pt"),
    "no rng state": (lambda c: (c / "rng_state.pth").unlink(), "no rng_state.pth"),
    "rng state truncated": (lambda c: truncate(c / "rng_state.pth", 0.9), "rng_state.pth is truncated"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_checkpoint_problem_names_what_is_missing(checkpointed_run, tmp_path, damage):
    checkpoint = tmp_path / "checkpoint-4"
    shutil.copytree(checkpointed_run / "checkpoint-4", checkpoint)
    damaging, expected = DAMAGES[damage]
    damaging(checkpoint)
    assert expected in checkpoint_problem(str(checkpoint))


def partial_run(checkpointed_run: Path, folder: Path, damage: str) -> Path:
    """A run folder as a killed job leaves it: checkpoint-2 complete, checkpoint-4 damaged, no final model."""
    folder.mkdir()
    for name in ("checkpoint-2", "checkpoint-4"):
        shutil.copytree(checkpointed_run / name, folder / name)
    DAMAGES[damage][0](folder / "checkpoint-4")
    return folder


@pytest.mark.parametrize("damage", ["no rng state", "weights truncated"])
def test_resume_skips_and_names_an_incomplete_checkpoint(checkpointed_run, cifar100_path, tmp_path, caplog, damage):
    out = partial_run(checkpointed_run, tmp_path / "run", damage)
    steps = StepRecorder()
    with caplog.at_level(logging.WARNING, logger="train"):
        results = train.main(run_argv(cifar100_path, out, "--max_steps", "4", "--resume_from_checkpoint", "True"),
                             callbacks=[steps])
    skipped = [record.getMessage() for record in caplog.records if "skipping the incomplete checkpoint" in record.getMessage()]
    assert len(skipped) == 1 and str(out / "checkpoint-4") in skipped[0]
    assert DAMAGES[damage][1] in skipped[0] and str(out / "checkpoint-2") in skipped[0]
    assert results["train_global_step"] == 4 and steps.steps == [3, 4]  # trained from checkpoint-2
    assert checkpoint_problem(str(out / "checkpoint-4")) is None  # written again, complete


def test_resume_refuses_what_cannot_be_resumed(checkpointed_run, cifar100_path, tmp_path):
    out = partial_run(checkpointed_run, tmp_path / "run", "no optimizer")
    shutil.rmtree(out / "checkpoint-2")
    before = snapshot(out)
    with pytest.raises(train.InputError, match=r"holds no complete checkpoint-\* \(incomplete: checkpoint-4: no "
                                               r"optimizer.pt"):
        train.main(run_argv(cifar100_path, out, "--resume_from_checkpoint", "True"))
    named = str(out / "checkpoint-4")
    with pytest.raises(train.InputError, match=f"--resume_from_checkpoint '{named}' cannot be resumed from: no "
                                               "optimizer.pt"):
        train.main(run_argv(cifar100_path, out, "--resume_from_checkpoint", named))
    with pytest.raises(train.InputError, match="does not exist"):
        train.main(run_argv(cifar100_path, out, "--resume_from_checkpoint", str(tmp_path / "nowhere")))
    assert snapshot(out) == before


def test_resume_refuses_a_checkpoint_of_another_model(checkpointed_run, cifar100_path, tmp_path):
    """Options that build another architecture than the checkpoint's: named before training, not a size-mismatch
    traceback from inside Trainer."""
    out = tmp_path / "run"
    shutil.copytree(checkpointed_run / "checkpoint-2", out / "checkpoint-2")
    argv = run_argv(cifar100_path, out, "--resume_from_checkpoint", "True")
    argv[argv.index("--hidden_size") + 1] = "48"
    with pytest.raises(train.InputError, match=r"holds another model than the one these options build \(.*\(32,\) in "
                                               r"the checkpoint, \(48,\) here"):
        train.main(argv)


# ---- 4. a resumed run is the uninterrupted run ---------------------------------------------------------------------------


def test_augmentation_depends_on_seed_epoch_and_row_only():
    """Not on the order of access, nor on the DataLoader worker (persistent workers included), and it changes with
    the epoch: what makes resumed runs and multi-worker runs reproducible."""
    features = Features({"image": ImageFeature(), "label": Value("int64")})
    rows = Dataset.from_dict({"image": random_images(6, 24, seed=4), "label": list(range(6))}, features=features)
    transform = TrainTransform(16, [0.5] * 3, [0.25] * 3, crop_scale=(0.3, 1.0))
    dataset = AugmentedDataset(rows, transform, "image", "label", seed=7)

    epoch0 = [dataset[index]["pixel_values"] for index in range(6)]
    assert torch.equal(dataset[3]["pixel_values"], epoch0[3]) and dataset[3]["labels"] == 3
    backwards = dataset.__getitems__([5, 4, 3, 2, 1, 0])
    assert all(torch.equal(item["pixel_values"], epoch0[5 - i]) for i, item in enumerate(backwards))
    dataset.set_epoch(1)
    epoch1 = [dataset[index]["pixel_values"] for index in range(6)]
    assert not any(torch.equal(a, b) for a, b in zip(epoch0, epoch1))
    other_seed = AugmentedDataset(rows, transform, "image", "label", seed=8)
    assert not torch.equal(other_seed[0]["pixel_values"], epoch0[0])

    dataset.set_epoch(0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True,
                                         collate_fn=lambda items: items)
    for epoch, expected in ((0, epoch0), (1, epoch1)):
        dataset.set_epoch(epoch)  # after the workers started: they see it through shared memory
        seen = [item["pixel_values"] for batch in loader for item in batch]
        assert all(torch.equal(a, b) for a, b in zip(seen, expected)), f"epoch {epoch}"


@pytest.mark.parametrize("epoch, expected", [(None, 0), (0.0, 0), (0.5, 0), (1.0, 1), (1.75, 1), (2.9999999999, 3)])
def test_epoch_callback_passes_the_whole_epoch(epoch, expected):
    class Recorder:
        def set_epoch(self, value):
            self.epoch = value

    recorder = Recorder()
    train.EpochCallback(recorder).on_epoch_begin(None, TrainerState(epoch=epoch), None)
    assert recorder.epoch == expected


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_the_uninterrupted_run(cifar100_path, tmp_path, monkeypatch):
    """Bitwise, on CPU: 2 epochs of 3 optimizer steps (gradient accumulation 2), killed after checkpoint-2 (inside
    epoch 0) or checkpoint-4 (inside epoch 1) and resumed, with 0 or 2 DataLoader workers. Before the augmentation
    was seeded per image, the resumed runs ended up to 4e-3 away: Trainer restores its RNG states only after it has
    fetched the first batches past the skipped ones (and workers draw from their own streams)."""
    options = ["--max_steps", "6", "--gradient_accumulation_steps", "2"]
    train.main(run_argv(cifar100_path, tmp_path / "uninterrupted", *options))
    expected = weights(tmp_path / "uninterrupted")

    epochs_seen = []
    rng_for = AugmentedDataset.rng_for

    def recording_rng_for(self, index):
        epochs_seen.append(self.epoch)
        return rng_for(self, index)

    monkeypatch.setattr(AugmentedDataset, "rng_for", recording_rng_for)
    for kill_after, workers in ((2, "0"), (4, "2")):
        out = tmp_path / f"killed-{kill_after}"
        argv = run_argv(cifar100_path, out, *options, "--dataloader_num_workers", workers)
        with pytest.raises(KeyboardInterrupt):
            train.main(argv, callbacks=[CrashAfterCheckpoint(kill_after)])
        epochs_seen.clear()
        results = train.main([*argv, "--resume_from_checkpoint", "True"])
        assert results["train_global_step"] == 6
        assert_same_weights(expected, weights(out))
        if workers == "0":  # workers draw in their own processes
            assert epochs_seen[0] == kill_after // 3 and sorted(set(epochs_seen)) == [kill_after // 3, 1]


# ---- 5. a resumed run reports the whole run; a finished one has nothing to resume ---------------------------------------


def test_resuming_a_finished_run_keeps_it_as_it_is(checkpointed_run, cifar100_path, capsys):
    """The issue's case: a finished run resumed again took no step and rewrote train_loss (to 0.0), train_runtime
    and the card's training time with those of the empty piece. Nothing to resume: every file stays as it was."""
    before = snapshot(checkpointed_run)
    results = train.main(run_argv(cifar100_path, checkpointed_run, "--max_steps", "4", "--resume_from_checkpoint",
                                  "True"))
    assert "nothing to resume" in capsys.readouterr().out
    assert snapshot(checkpointed_run) == before
    assert results == json.loads(before["all_results.json"])


def recorded_runtime(checkpoint: Path) -> float:
    return json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]["PPTRunTotals"][
        "train_runtime"]


@pytest.mark.parametrize("kill", ["after checkpoint-2", "in the final save"])
def test_a_resumed_run_reports_the_figures_of_the_whole_run(checkpointed_run, cifar100_path, tmp_path, monkeypatch,
                                                            kill):
    """Killed after a checkpoint, or while saving the finished model (its last checkpoint is at the last step, so
    the resume takes no step): the resumed run reports the train_loss of the run never killed (the same steps, the
    same losses) and a train_runtime that includes the time before the kill."""
    out = tmp_path / "run"
    if kill == "in the final save":
        def killed(*args, **kwargs):
            raise KeyboardInterrupt("killed while saving the model")

        monkeypatch.setattr(train, "finalize_output", killed)
        callbacks, checkpoint = [], out / "checkpoint-4"
    else:
        callbacks, checkpoint = [CrashAfterCheckpoint(2)], out / "checkpoint-2"
    with pytest.raises(KeyboardInterrupt):
        train.main(run_argv(cifar100_path, out, "--max_steps", "4"), callbacks=callbacks)
    monkeypatch.undo()
    assert not (out / "all_results.json").exists()
    earlier = recorded_runtime(checkpoint)

    results = train.main(run_argv(cifar100_path, out, "--max_steps", "4", "--resume_from_checkpoint", "True"))
    uninterrupted = json.loads((checkpointed_run / "all_results.json").read_text())
    assert results["train_global_step"] == 4
    assert results["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-6)
    assert results["train_runtime"] >= round(earlier, 4)  # rounded as Trainer rounds it
    info = json.loads((out / "training_info.json").read_text())
    assert info["training_time"] == f"{results['train_runtime'] / 60:.1f} min"


def test_a_new_run_into_a_finished_runs_folder_keeps_none_of_its_results(tmp_path):
    """With --overwrite_output_dir (or resuming), the previous run's result files go before training: the model the
    new run saves before its evaluation never stands beside the old run's accuracy (which publish would put in a
    card)."""
    from types import SimpleNamespace

    for name in ("all_results.json", "eval_results.json", "train_results.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    train_script().start_output_dir(SimpleNamespace(output_dir=str(tmp_path), overwrite_output_dir=True), None)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
