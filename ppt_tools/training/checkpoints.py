# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Training checkpoints that a kill cannot corrupt, and the choice of the checkpoint to resume from.

- `AtomicCheckpoints` (a `Trainer` mixin): Trainer writes `checkpoint-N/` file by file, so a job killed during a
  save leaves a folder that looks like a checkpoint but lacks the optimizer, the RNG states or half the weights.
  Here every checkpoint is written into `<output_dir>/.incomplete-checkpoint/checkpoint-N/` and renamed to
  `<output_dir>/checkpoint-N` once all its files (those of every process) are on disk. A rename within one folder
  is atomic: `checkpoint-N` is either complete or absent. The older checkpoints are rotated out
  (`save_total_limit`) only after that.
- `checkpoint_problem` says what a folder lacks to be resumed from; `find_resume_checkpoint` picks the last
  complete checkpoint of a run and names the incomplete ones it skips (written by another tool, half deleted, or
  damaged on disk).
- `RunTotals`: each checkpoint's trainer state also records the training time and the summed loss of the whole run
  up to it (every piece a kill and a resume made of it), so that a resumed run reports `train_runtime` and
  `train_loss` of the whole run, not of its last piece (which is empty when the kill came after the last step).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ppt_tools.core.models import safetensors_problem
from ppt_tools.core.outputs import replace_path, translated_write_errors


logger = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# Where a checkpoint is written before it is renamed into place. A leading dot and another prefix: neither
# Trainer's rotation (`checkpoint-*`) nor `get_last_checkpoint` ever takes it for a checkpoint.
CHECKPOINT_STAGING_DIR = ".incomplete-checkpoint"
TRAINER_STATE_FILE = "trainer_state.json"
# What Trainer needs to continue exactly where it stopped (besides the weights and the trainer state).
RESUME_STATE_FILES = ("optimizer.pt", "scheduler.pt")
# Every file a Trainer checkpoint of this project holds (the model folder, its remote code, the training state):
# --overwrite_output_dir deletes a checkpoint-N folder only when it holds nothing else.
CHECKPOINT_FILE = re.compile(
    r"trainer_state\.json|training_args\.bin|(optimizer|scheduler|scaler)\.pt|rng_state(_\d+)?\.pth"
    r"|(config|preprocessor_config|generation_config)\.json|model(-\d+-of-\d+)?\.safetensors"
    r"|model\.safetensors\.index\.json|pytorch_model\.bin|\w+\.py"
)


# ---- what a checkpoint folder holds -------------------------------------------------------------------------------


def checkpoint_folders(output_dir: str) -> list[str]:
    """The `checkpoint-N` folders directly in `output_dir`, by step, oldest first ([] if it is not a folder)."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_NAME.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return [path for _, path in sorted(found)]


def _torch_file_problem(path: str) -> str | None:
    # torch.save writes a zip archive whose directory is at the end: a truncated file is not a readable zip.
    if not zipfile.is_zipfile(path):
        return f"{os.path.basename(path)} is truncated or not a torch.save file"
    return None


def not_checkpoint_content(folder: str) -> list[str]:
    """What `folder` holds that no Trainer checkpoint does (sub-folders, other files); `[folder]` for a symlink, whose
    target is somebody else's."""
    if os.path.islink(folder):
        return [folder]
    return sorted(entry.name + ("/" if entry.is_dir() else "") for entry in os.scandir(folder)
                  if not (entry.is_file(follow_symlinks=False) and CHECKPOINT_FILE.fullmatch(entry.name)))


def checkpoint_problem(folder: str) -> str | None:
    """Why `folder` cannot be resumed from, or None if it holds everything Trainer restores: the trainer state, the
    weights (every safetensors file whole), the optimizer, the scheduler and the RNG states."""
    if not os.path.isdir(folder):
        return "it is not a folder" if os.path.exists(folder) else "it does not exist"
    names = set(os.listdir(folder))
    if TRAINER_STATE_FILE not in names:
        return f"no {TRAINER_STATE_FILE}"
    try:
        with open(os.path.join(folder, TRAINER_STATE_FILE), encoding="utf-8") as handle:
            state = json.load(handle)
        int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{TRAINER_STATE_FILE} is truncated or not a trainer state"
    weights = sorted(name for name in names if name.endswith(".safetensors"))
    if not weights and not {"pytorch_model.bin", "model.safetensors.index.json"} & names:
        return "no model weights (model.safetensors)"
    for name in weights:
        problem = safetensors_problem(os.path.join(folder, name))
        if problem is not None:
            return f"{name} {problem}"
    for name in RESUME_STATE_FILES:
        if name not in names:
            return f"no {name}" + (" (a save_only_model checkpoint cannot be resumed)" if name == "optimizer.pt" else "")
        problem = _torch_file_problem(os.path.join(folder, name))
        if problem is not None:
            return problem
    rng_files = sorted(name for name in names if re.fullmatch(r"rng_state(_\d+)?\.pth", name))
    if not rng_files:
        return "no rng_state.pth (the random states Trainer restores)"
    for name in rng_files:
        problem = _torch_file_problem(os.path.join(folder, name))
        if problem is not None:
            return problem
    return None


def find_resume_checkpoint(output_dir: str) -> tuple[str | None, list[tuple[str, str]]]:
    """`(the last complete checkpoint in output_dir or None, [(incomplete checkpoint, what it lacks), ...])`; the
    incomplete ones listed are those newer than the one returned (older ones are never looked at)."""
    skipped = []
    for folder in reversed(checkpoint_folders(output_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, skipped
        skipped.append((folder, problem))
    return None, skipped


def checkpoint_step(folder: str) -> int | None:
    try:
        return TrainerState.load_from_json(os.path.join(folder, TRAINER_STATE_FILE)).global_step
    except (OSError, ValueError, TypeError):
        return None


# ---- the figures of the whole run ----------------------------------------------------------------------------------

# The key, in a checkpoint's trainer_state.json `stateful_callbacks`, of the run's totals up to that checkpoint.
RUN_TOTALS_KEY = "PPTRunTotals"


@dataclass
class RunTotals:
    """The run up to a checkpoint: seconds spent training (summed over the pieces that led to it), and the training
    loss summed over its optimizer steps (the sum Trainer divides by the steps for `train_loss`)."""

    train_runtime: float = 0.0
    loss_sum: float = 0.0
    steps: int = 0


def run_totals(checkpoint: str) -> RunTotals | None:
    """The `RunTotals` a checkpoint recorded (None for one written without them)."""
    try:
        with open(os.path.join(checkpoint, TRAINER_STATE_FILE), encoding="utf-8") as handle:
            recorded = (json.load(handle).get("stateful_callbacks") or {}).get(RUN_TOTALS_KEY)
        return RunTotals(float(recorded["train_runtime"]), float(recorded["loss_sum"]), int(recorded["steps"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# ---- writing checkpoints atomically -------------------------------------------------------------------------------


def replace_folder(source: str, target: str) -> None:
    """Move the folder `source` to `target` (same parent folder), replacing a `target` that exists; at every moment
    `target` is the old folder or the new one (`ppt_tools.core.outputs.replace_path`)."""
    replace_path(Path(source), Path(target))


class AtomicCheckpoints:
    """`Trainer` mixin (list it before `Trainer`): each checkpoint appears in output_dir complete or not at all.

    Trainer's `_save_checkpoint` writes the model, optimizer, scheduler, RNG states (one file per process) and
    trainer state into `run_dir/checkpoint-N`, then rotates old checkpoints. Here `run_dir` is a staging folder
    while it writes; then all processes wait for each other, and the main process renames the folder into place
    and only then rotates (`save_total_limit`), so a kill at any moment leaves the last complete checkpoint.
    """

    _checkpoint_staging_root: str | None = None
    _earlier: RunTotals | None = None  # the totals of the checkpoint this piece resumed from
    _piece_start: float | None = None

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        self._earlier = run_totals(resume_from_checkpoint) if isinstance(resume_from_checkpoint, str) else RunTotals()
        if self._earlier is None:
            logger.warning("%s records no totals of the run before it: train_runtime and train_loss will be those "
                           "of this piece of the run only", resume_from_checkpoint)
        self._piece_start = time.time()
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _totals_so_far(self) -> RunTotals | None:
        """The run's totals now, during training (None when the checkpoint resumed from had none)."""
        if self._earlier is None or self._piece_start is None:
            return None
        # Trainer's own loss sum of this piece: the logged part and what accumulates until the next log
        loss = self._total_loss_scalar + float(self._tr_loss.item())
        return RunTotals(self._earlier.train_runtime + time.time() - self._piece_start,
                         self._earlier.loss_sum + loss,
                         self._earlier.steps + self.state.global_step - self._initial_global_step)

    def whole_run_metrics(self, metrics: dict) -> dict:
        """`train()`'s metrics (those of this piece) as the figures of the whole run: its time summed over the
        pieces (up to the checkpoint each resumed from), its loss averaged over all steps, rates from both."""
        if self._earlier is None or self._earlier.steps == 0:
            return metrics  # a run in one piece, or one whose earlier pieces recorded nothing
        steps = self.state.global_step - self._initial_global_step
        runtime = self._earlier.train_runtime + metrics["train_runtime"]
        all_steps = self._earlier.steps + steps
        whole = {**metrics, "train_runtime": round(runtime, 4),
                 "train_loss": (self._earlier.loss_sum + metrics["train_loss"] * steps) / all_steps,
                 "train_steps_per_second": round(all_steps / runtime, 3),
                 "train_samples_per_second": round(all_steps * self.get_total_train_batch_size(self.args) / runtime,
                                                   3)}
        return whole

    def restore_finished(self, checkpoint: str) -> dict:
        """Load a checkpoint that is at the run's last step, instead of `train()` (which would take one step past
        it), and return the training metrics of the whole run as that checkpoint recorded them."""
        self._load_from_checkpoint(checkpoint)
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_FILE))
        metrics = {"epoch": self.state.epoch}
        totals = run_totals(checkpoint)
        if totals is not None and totals.steps > 0 and totals.train_runtime > 0:
            metrics.update({
                "train_runtime": round(totals.train_runtime, 4), "train_loss": totals.loss_sum / totals.steps,
                "train_steps_per_second": round(totals.steps / totals.train_runtime, 3),
                "train_samples_per_second": round(
                    totals.steps * self.get_total_train_batch_size(self.args) / totals.train_runtime, 3)})
        else:
            logger.warning("%s records no totals of the run: train_runtime and train_loss are unknown", checkpoint)
        return metrics

    def _get_output_dir(self, trial):
        if self._checkpoint_staging_root is not None:
            return self._checkpoint_staging_root
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = self._get_output_dir(trial)
        staging_root = os.path.join(run_dir, CHECKPOINT_STAGING_DIR)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save and os.path.lexists(staging_root):
            shutil.rmtree(staging_root)  # what a killed save left
        self.accelerator.wait_for_everyone()
        totals = self._totals_so_far()
        if totals is not None:  # saved with the trainer state (`stateful_callbacks` is written as it is)
            self.state.stateful_callbacks[RUN_TOTALS_KEY] = asdict(totals)
        self._checkpoint_staging_root = staging_root
        try:
            # a full disk surfaces from torch.save as `basic_ios::clear`, from safetensors as an `IoError`: one line
            with translated_write_errors(os.path.join(run_dir, name), "the checkpoints saved before it are kept"):
                super()._save_checkpoint(model, trial)
        finally:
            self._checkpoint_staging_root = None
        self.accelerator.wait_for_everyone()  # every process has written its files (RNG states)
        if self.args.should_save:
            staged, final = os.path.join(staging_root, name), os.path.join(run_dir, name)
            if self.state.best_model_checkpoint == staged:  # Trainer recorded where it wrote
                self.state.best_model_checkpoint = final
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_FILE))
            replace_folder(staged, final)
            shutil.rmtree(staging_root, ignore_errors=True)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()


__all__ = [
    "AtomicCheckpoints",
    "CHECKPOINT_STAGING_DIR",
    "RUN_TOTALS_KEY",
    "RunTotals",
    "checkpoint_folders",
    "checkpoint_problem",
    "checkpoint_step",
    "find_resume_checkpoint",
    "replace_folder",
    "run_totals",
]
