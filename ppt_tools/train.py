#!/usr/bin/env python
# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Fine-tune PPT-DeiT (token Pruning & Pooling on DeiT) on an image-classification dataset with `Trainer`, then
evaluate top-1 (and top-5) accuracy with compression off (the stock DeiT, same weights) and on.

    # offline, CPU, a few minutes: a small PPT-DeiT from scratch on scikit-learn's digits
    python train.py --preset digits --output_dir outputs/digits

    # DeiT-S fine-tuned on CIFAR-100 with PPT (r=50 at layers 3, 6, 9), one or several GPUs
    accelerate launch train.py
    accelerate launch train.py --tokens_removed 30 --prune_threshold 7e-5 --output_dir outputs/deit-s-r30

    # any datasets image-classification dataset: Hub id, imagefolder directory, parquet shards, save_to_disk folder
    python train.py --dataset_name path/to/folder --label_column_name label --num_train_epochs 5

    # ImageNet-size data: read as a stream (memory stays flat)
    accelerate launch train.py --dataset_name ILSVRC/imagenet-1k --eval_split_name validation --streaming

    # options from a file (JSON or YAML), with command-line overrides after it
    python train.py config.yaml --learning_rate 5e-5

The output folder holds the model (safetensors + config + modeling code, loadable with trust_remote_code=True),
its image processor, train/eval/all_results.json and trainer_state.json. `all_results.json` is written last:
a folder without it is an unfinished run.

Nothing is lost and a resumed run is the run that was never interrupted:
- A run refuses an output_dir that holds another run's results or checkpoints, unless told to resume or overwrite.
- Checkpoints appear complete or not at all (`ppt_tools.training.checkpoints.AtomicCheckpoints`); resuming skips, and
  names, checkpoint folders that lack something.
- The augmentation of each image is seeded by (seed, epoch, row) (`ppt_tools.training.augmentation.AugmentedDataset`), so
  resuming (which skips the batches already trained) ends with the weights of the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass

import torch
import transformers
from datasets import IterableDataset
from safetensors import safe_open
from transformers import Trainer, TrainerCallback, set_seed

from ppt_tools.export.publish import HubPushError, export_folder, push_folder
from modeling_ppt_deit import PPTDeiTForImageClassification
from ppt_tools.core.accuracy import TopKAccuracy, ranked_predictions, top_k_for
from ppt_tools.core.arguments import run_command
from ppt_tools.core.errors import USER_ERRORS, CommandFailure, one_line
from ppt_tools.core.cost import analytic_cost, baseline_macs
from ppt_tools.core.data import (
    DIGITS,
    SOURCE_COLUMN,
    DataError,
    ImageClassificationData,
    check_image,
    check_stream_batch,
    load_prepared,
    num_rows,
)
from ppt_tools.core.outputs import FILES, MANIFEST_FILE, OutputTarget, resolve_target, staging_path
from ppt_tools.core.preprocessing import collate_image_batch, eval_batch_transform
from ppt_tools.training.augmentation import AugmentedDataset, TrainTransform, channel_mean_std, train_batch_transform
from ppt_tools.core.results import (
    ALL_RESULTS_FILE,
    EVAL_RESULTS_FILE,
    TRAIN_RESULTS_FILE,
    TRAINING_INFO_FILE,
    cpu_name,
    json_ready,
    markdown_table,
    write_json,
)
from ppt_tools.training.arguments import DataArguments, ModelArguments, PPTTrainingArguments, parse_args, validate_args
from ppt_tools.training.checkpoints import (
    CHECKPOINT_STAGING_DIR,
    AtomicCheckpoints,
    checkpoint_folders,
    checkpoint_problem,
    checkpoint_step,
    find_resume_checkpoint,
    not_checkpoint_content,
)
from ppt_tools.training.modeling import build_config, build_model, pretrained_image_processor, scratch_image_processor


logger = logging.getLogger("train")

HUB_EXPORT_DIR = "hub_export"  # --push_to_hub: what is uploaded, kept in the run folder


# ---- checks before any work -----------------------------------------------------------------------------------


def resolve_resume(training_args) -> str | None:
    """`--resume_from_checkpoint True` -> the last complete checkpoint in output_dir (incomplete ones after it are
    skipped, and named); a path -> that checkpoint, if it is complete."""
    wanted = training_args.resume_from_checkpoint
    if wanted is None or str(wanted).lower() in ("", "false", "none"):
        return None
    if str(wanted).lower() == "true":
        output_dir = training_args.output_dir
        found, skipped = find_resume_checkpoint(output_dir)
        lacking = "; ".join(f"{os.path.basename(path)}: {problem}" for path, problem in skipped)
        if found is None:
            raise ValueError(
                f"--resume_from_checkpoint True, but {output_dir!r} holds no complete checkpoint-*"
                + (f" (incomplete: {lacking})" if skipped else "")
            )
        for path, problem in skipped:
            logger.warning("skipping the incomplete checkpoint %s (%s); resuming from %s", path, problem, found)
        return found
    problem = checkpoint_problem(wanted)
    if problem is not None:
        raise ValueError(f"--resume_from_checkpoint {wanted!r} cannot be resumed from: {problem}")
    return wanted


def check_output_dir(training_args, resume: str | None) -> None:
    """A new run (neither resuming nor overwriting) refuses an output_dir that is not empty: training there would
    replace a finished model or an export (config.json, model.safetensors...), or mix two runs, and Trainer's
    rotation (`save_total_limit`) would delete the other run's checkpoints. Resuming a checkpoint of another folder
    refuses the same. --overwrite_output_dir deletes the previous run's checkpoints, so each must hold only what a
    checkpoint holds (not a symlink, nothing else)."""
    output_dir = training_args.output_dir
    checkpoints = checkpoint_folders(output_dir)
    if training_args.overwrite_output_dir:
        for path in checkpoints if resume is None else ():
            foreign = not_checkpoint_content(path)
            if foreign:
                what = "is a symlink" if foreign == [path] else \
                    f"holds what no checkpoint does ({', '.join(foreign[:5])})"
                raise ValueError(f"--overwrite_output_dir would delete {path!r}, which {what}: move it out of "
                                 f"{output_dir!r} first")
        return
    ways = ("pass another --output_dir, --resume_from_checkpoint True to continue that run, or "
            "--overwrite_output_dir True to start over (which deletes them)")
    names = [os.path.basename(path) for path in checkpoints]
    shown = ", ".join(names[-5:]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    others = sorted(set(os.listdir(output_dir)) - {CHECKPOINT_STAGING_DIR, MANIFEST_FILE, *names}) \
        if os.path.isdir(output_dir) else []
    shown_others = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
    not_empty = (f"output_dir {output_dir!r} is not empty ({shown_others}): the run's model and results would "
                 "replace files of the same names there; pass another --output_dir, or --overwrite_output_dir True "
                 "to write into it anyway")
    if resume is not None:
        # Resuming a checkpoint of another folder into this one would mix two runs here (and rotate theirs away).
        elsewhere = os.path.realpath(os.path.dirname(os.path.normpath(resume))) != os.path.realpath(output_dir)
        if elsewhere and checkpoints:
            raise ValueError(f"--resume_from_checkpoint {resume!r} is not in output_dir {output_dir!r}, which holds "
                             f"checkpoints of another run ({shown}); {ways}")
        if elsewhere and others:
            raise ValueError(not_empty)
        return
    if os.path.isfile(os.path.join(output_dir, ALL_RESULTS_FILE)):
        raise ValueError(f"output_dir {output_dir!r} already holds a finished run ({ALL_RESULTS_FILE}); {ways}")
    if checkpoints:
        raise ValueError(f"output_dir {output_dir!r} already holds checkpoints of a run ({shown}); {ways}")
    if others:
        raise ValueError(not_empty)


def check_resume_matches(model, checkpoint: str) -> None:
    """The checkpoint's weights must fit the model this run builds (Trainer would fail deep in load_state_dict
    on another architecture, or silently keep random weights for missing keys)."""
    path = os.path.join(checkpoint, "model.safetensors")
    if not os.path.isfile(path):
        return  # other formats (sharded, .bin) are left to Trainer
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    with safe_open(path, framework="pt") as handle:
        saved = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    missing = sorted(set(expected) - set(saved))
    differing = sorted(key for key in set(expected) & set(saved) if expected[key] != saved[key])
    if missing or differing:
        details = [f"{key}: {saved[key]} in the checkpoint, {expected[key]} here" for key in differing[:3]]
        details += [f"{len(missing)} weights missing, e.g. {missing[0]}"] if missing else []
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint!r} holds another model than the one these options build "
            f"({'; '.join(details)}); resume with the options of the run that wrote it"
        )


def total_batch_size(training_args) -> int:
    return (training_args.per_device_train_batch_size * training_args.world_size
            * training_args.gradient_accumulation_steps)


# Rows a stream is shuffled within (the stream's shards are shuffled too). The buffer holds rows as they are read,
# images still encoded (about 0.1 MB each for ImageNet): it is filled before the transform, never after, since a
# buffer of transformed images held as Python rows would take several GiB.
STREAM_SHUFFLE_BUFFER = 1_000
# Rows a stream decodes and transforms at a time (datasets' `map` default, 1,000, would hold as many transformed
# images at once).
STREAM_TRANSFORM_BATCH = 32


def set_steps_of_a_stream(training_args, train) -> None:
    """A stream has no length, so Trainer needs `max_steps`: taken from the split size the dataset's info gives
    (epochs x steps per epoch), or given with --max_steps."""
    if training_args.max_steps > 0:
        return
    rows = num_rows(train)
    if rows is None:
        raise ValueError("with --streaming, the size of the training split is unknown (the dataset's info does not "
                         "give it): set the length of training with --max_steps")
    per_epoch = -(-rows // total_batch_size(training_args))
    training_args.max_steps = max(1, math.ceil(training_args.num_train_epochs * per_epoch))


def with_transform(dataset, transform, columns: list[str], shuffle_seed: int | None = None):
    """`dataset` with `transform` (rows of `columns` -> pixel_values, labels) applied as rows are read:
    `set_transform` on a map-style dataset, a lazy batched `map` on a stream, which `shuffle_seed` first shuffles
    (its shards, and its rows within `STREAM_SHUFFLE_BUFFER`)."""
    if not isinstance(dataset, IterableDataset):
        dataset.set_transform(transform)
        return dataset
    dataset = dataset.select_columns(columns)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(seed=shuffle_seed, buffer_size=STREAM_SHUFFLE_BUFFER)
    return dataset.map(transform, batched=True, batch_size=STREAM_TRANSFORM_BATCH, remove_columns=columns)


def checked(transform, data: ImageClassificationData, which: str):
    """`transform` for a batch of `data.checked_stream(which)`, which it first checks (`check_stream_batch`: labels
    in range, images that decode; a bad row raises `DataError` naming its split, file and row)."""
    split_name = data.train_split_name if which == "train" else data.eval_split_name

    def apply(batch):
        return transform(check_stream_batch(batch, data.image_column, data.label_column, len(data.label_names),
                                            split_name))

    return apply


def data_error_text(error: DataError) -> str:
    """The message of a `DataError`; raised in a DataLoader worker, torch re-raises it with the worker's traceback
    as its message, whose last line is the original one."""
    text = str(error)
    if "Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(f"{type(error).__name__}: ", 1)[-1]
    return one_line(text)


# ---- metrics ----------------------------------------------------------------------------------------------------


def make_metric_functions(num_labels: int):
    """`preprocess_logits_for_metrics` keeps only the top-k class ids per sample (k = 5 when there are more than
    5 classes, else 1), so that evaluation gathers `[N, k]` ints instead of `[N, num_labels]` logits;
    `compute_metrics` turns them into accuracy (and top5_accuracy) with the `evaluate` metric."""
    top_k = top_k_for(num_labels)
    metric = TopKAccuracy()

    def preprocess_logits_for_metrics(logits, labels):
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return ranked_predictions(logits, top_k)

    def compute_metrics(eval_prediction):
        scores = metric.compute(predictions=eval_prediction.predictions, references=eval_prediction.label_ids)
        return {**scores, "samples": len(eval_prediction.label_ids)}  # counted, as a stream has no length

    return preprocess_logits_for_metrics, compute_metrics


# ---- results ------------------------------------------------------------------------------------------------------


def ppt_summary(config) -> dict:
    return {
        "ppt_reduction_layers": list(config.reduction_layers),
        "ppt_tokens_removed": config.tokens_removed,
        "ppt_prune_threshold": json_ready(config.prune_threshold),
        "ppt_score_function": config.score_function,
        "ppt_tokens_per_layer": [list(pair) for pair in config.token_schedule()],
        "ppt_gmacs": analytic_cost(config).macs / 1e9,
        "baseline_gmacs": baseline_macs(config) / 1e9,
    }


class ImageTrainer(AtomicCheckpoints, Trainer):
    """`Trainer` whose checkpoints appear complete or not at all (`AtomicCheckpoints`), and whose `total_flos`
    counts images with the cost model (`ppt_tools.core.cost`). Trainer's own estimate, 6 x input elements x parameters, is meant for
    text tokens: for pixels it is off by about 40x, and it cannot see the tokens PPT removes."""

    def floating_point_ops(self, inputs) -> int:
        # forward = 2 x MACs FLOPs and backward about twice the forward: 6 x MACs per image and step
        pixel_values = inputs["pixel_values"]
        return 6 * pixel_values.shape[0] * analytic_cost(self.model.config, tuple(pixel_values.shape[-2:])).macs


class EpochCallback(TrainerCallback):
    """Tells the augmented training set which epoch starts, before its DataLoader is iterated. (accelerate's
    DataLoader forwards `set_epoch` to the dataset only when its sampler has none, which Trainer's has.)"""

    def __init__(self, dataset: AugmentedDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is `epoch + finished steps / steps per epoch`: a whole number at an epoch's start, and the
        # checkpoint's fraction when a run resumes inside an epoch. The epsilon guards float rounding.
        self.dataset.set_epoch(int((state.epoch or 0.0) + 1e-6))


def format_tokens(schedule: list[tuple[int, int]]) -> str:
    """`[(65, 65), (65, 57), ...]` -> `65 65>57 57>49 49>41`: tokens in attention, `>` what the MLP sees."""
    return " ".join(str(a) if a == m else f"{a}>{m}" for a, m in schedule)


def results_table(results: dict, config, output_dir: str) -> str:
    """Baseline vs PPT: accuracy (+ top-5), estimated GMACs per image, tokens per layer, where the model went."""
    has_top5 = "eval_top5_accuracy" in results
    tokens_in = config.token_schedule()[0][0]
    rows = [
        ("baseline (no PPT)", "eval_baseline", results["baseline_gmacs"], [(tokens_in, tokens_in)] * len(config.token_schedule())),
        ("PPT" if config.compression_enabled else "PPT (off)", "eval", results["ppt_gmacs"], config.token_schedule()),
    ]
    header = ["model", "top-1"] + (["top-5"] if has_top5 else []) + ["GMACs", "tokens per layer (attention>MLP)"]
    table = []
    for name, prefix, gmacs, schedule in rows:
        cells = [name, f"{100 * results[prefix + '_accuracy']:.2f}%"]
        if has_top5:
            cells.append(f"{100 * results[prefix + '_top5_accuracy']:.2f}%")
        table.append(cells + [f"{gmacs:.4f}", format_tokens(schedule)])
    return "\n".join([
        f"PPT settings: reduction_layers={list(config.reduction_layers)} tokens_removed={config.tokens_removed} "
        f"prune_threshold={config.prune_threshold} score_function={config.score_function}",
        f"evaluated on {results['eval_split']!r} ({results['eval_samples']} images)",
        markdown_table(header, table),
        f"model saved to {os.path.abspath(output_dir)}",
    ])


def start_output_dir(training_args, resume: str | None) -> None:
    """Before training: the folder no longer claims to be a finished run nor holds its results, and --overwrite_output_dir (without
    resuming) deletes the previous run's checkpoints, which a later `--resume_from_checkpoint True` would
    otherwise take for this run's."""
    output_dir = training_args.output_dir
    for name in (ALL_RESULTS_FILE, EVAL_RESULTS_FILE, TRAIN_RESULTS_FILE):  # --overwrite_output_dir or resuming:
        path = os.path.join(output_dir, name)  # no result of the previous run may stand beside this run's weights
        if os.path.exists(path):
            os.remove(path)
    if resume is None and training_args.overwrite_output_dir:
        for path in checkpoint_folders(output_dir):
            logger.warning("--overwrite_output_dir: deleting %s of the previous run", path)
            shutil.rmtree(path)
    staging = os.path.join(output_dir, CHECKPOINT_STAGING_DIR)
    if os.path.isdir(staging):  # a checkpoint whose save was interrupted
        shutil.rmtree(staging)


def lock_output_dir(training_args, held: contextlib.ExitStack) -> OutputTarget | None:
    """The main process holds output_dir for the whole run (`ppt_tools.core.outputs`): a second run into it, or a
    `--resume_from_checkpoint` while the run is alive, is refused with the other process named; what a killed final
    save left is finished or removed. The other processes of a distributed run write nothing there on their own."""
    if training_args.process_index != 0:
        return None
    return held.enter_context(OutputTarget(training_args.output_dir, kind=FILES, last=[ALL_RESULTS_FILE]))


def finalize_output(trainer: Trainer, output: OutputTarget | None, train_metrics: dict, eval_metrics: dict | None,
                    info: dict) -> None:
    """Write the finished model folder: everything goes to a staging folder beside output_dir, then moves in
    (`ppt_tools.core.outputs`, `FILES`), all_results.json last, so that an interrupted run never leaves a folder that
    looks complete, and the next run finishes a move that a kill interrupted. Without `eval_metrics` (the trained
    model, saved before its evaluation): no eval_results.json and no all_results.json."""
    staging = staging_path(resolve_target(trainer.args.output_dir))  # the same path on every process
    with output.staging() if output is not None else contextlib.nullcontext(staging) as staging:
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(staging))  # model + image processor + training_args.bin; only the main process writes
        if trainer.is_world_process_zero():
            trainer.state.save_to_json(os.path.join(staging, "trainer_state.json"))
            write_json(os.path.join(staging, TRAIN_RESULTS_FILE), train_metrics)
            write_json(os.path.join(staging, TRAINING_INFO_FILE), info)
            if eval_metrics is not None:
                write_json(os.path.join(staging, EVAL_RESULTS_FILE), eval_metrics)
                write_json(os.path.join(staging, ALL_RESULTS_FILE), {**train_metrics, **eval_metrics})
    trainer.accelerator.wait_for_everyone()


def card_results(results: dict) -> dict:
    """all_results.json in the shape model_card reads: `{"ppt": {...}, "baseline": {...}}`."""
    baseline = {
        "eval_" + key[len("eval_baseline_"):]: value for key, value in results.items() if key.startswith("eval_baseline_")
    }
    ppt = {key: value for key, value in results.items() if not key.startswith(("eval_baseline_", "baseline_"))}
    ppt["gmacs"] = results["ppt_gmacs"]
    baseline.update({"gmacs": results["baseline_gmacs"], "eval_samples": results["eval_samples"]})
    return {"ppt": ppt, "baseline": baseline}


def training_hardware(training_args) -> str:
    """What trained the model, for the card: the accelerator (or CPU) and the number of processes."""
    if torch.cuda.is_available() and not training_args.use_cpu:
        device = torch.cuda.get_device_name(0)
    else:
        device = f"{cpu_name()} ({os.cpu_count()} logical CPUs)"
    processes = training_args.world_size
    return device + (f", {processes} processes" if processes > 1 else "")


def training_info(model, data, train_metrics: dict, training_args, model_args, data_args) -> dict:
    """How the model was trained, in the keys the model card reads (`ppt_tools.export.card`); written to the run folder
    as training_info.json, where `ppt-publish` finds it."""
    dataset = data_args.dataset_name
    is_hub_dataset = dataset != DIGITS and not os.path.exists(dataset)
    recipe = f"train.py --preset {model_args.preset}" if model_args.preset else "train.py (AdamW + cosine)"
    runtime = train_metrics.get("train_runtime")
    info = {
        "dataset": dataset if is_hub_dataset else None,
        "dataset_name": "scikit-learn digits" if dataset == DIGITS else dataset,
        "dataset_config": data_args.dataset_config_name,
        "eval_split": data.eval_split_name,
        "image_column": data.image_column,
        "label_column": data.label_column,
        "base_model": model_args.model_name_or_path,
        "epochs": training_args.num_train_epochs,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
        "batch_size": total_batch_size(training_args),
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "label_smoothing_factor": training_args.label_smoothing_factor,
        "optimizer": str(getattr(training_args.optim, "value", training_args.optim)),
        "weight_decay": training_args.weight_decay,
        "seed": training_args.seed,
        "recipe": recipe + (", from scratch" if model_args.from_scratch else ""),
        "training_hardware": training_hardware(training_args),
        "training_time": f"{runtime / 60:.1f} min" if runtime is not None else None,
        "trained_with_compression": bool(model.config.compression_enabled),
    }
    return {key: value for key, value in info.items() if value is not None}


def push_to_hub(model, image_processor, results: dict, info: dict, training_args) -> str:
    """Upload the final model (safetensors, code, card) through ppt_tools.export.publish."""
    repo_id = training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir))
    training_info = {"repo_id": repo_id, **info}
    # The export stays in the run folder, so that a failed upload can be retried from it (the error says how).
    folder = export_folder(model, image_processor, os.path.join(training_args.output_dir, HUB_EXPORT_DIR),
                           results=card_results(results), training_info=training_info, repo_id=repo_id)
    try:
        return push_folder(folder, repo_id, token=training_args.hub_token, private=bool(training_args.hub_private_repo),
                           revision=training_args.hub_revision, commit_message="Upload PPT-DeiT fine-tuned with train.py")
    except HubPushError as error:
        raise UploadError(
            f"the run finished and is saved in {training_args.output_dir!r}, but the upload failed: {error}"
        ) from error


# ---- main -------------------------------------------------------------------------------------------------------


class InputError(ValueError):
    """Bad arguments or data, found before training started; nothing was written."""


class UploadError(CommandFailure):
    """--push_to_hub: training finished and everything is saved, but the upload failed."""


class StoppedOnDataError(CommandFailure):
    """A streamed row that cannot be used, found while training or evaluating; the message says what is saved."""


@dataclass
class TrainingRun:
    """Everything `prepare` checked and built, for `train_and_evaluate`."""

    model_args: ModelArguments
    data_args: DataArguments
    training_args: PPTTrainingArguments
    data: ImageClassificationData
    model: PPTDeiTForImageClassification
    image_processor: object
    trainer: Trainer
    resume_from: str | None  # checkpoint folder to resume from
    publish: bool  # --push_to_hub: upload through ppt_tools.export.publish at the end
    output: OutputTarget | None = None  # output_dir, held by the main process (`lock_output_dir`)


def main(argv: list[str] | None = None, callbacks: list | None = None) -> dict:
    """Run train.py with `argv` (default: sys.argv[1:]); returns the results written to all_results.json.
    Raises `InputError` (a `ValueError`) for bad options or data, before anything is written."""
    with contextlib.ExitStack() as held:  # output_dir's lock, for the whole run
        try:
            run = prepare(argv, callbacks, held)
        except USER_ERRORS as error:
            raise InputError(one_line(error)) from error
        return train_and_evaluate(run)


def cli(argv: list[str] | None = None) -> int:
    """The command line: bad input prints one `train.py: error:` line and returns 2 (nothing was written); a failed
    upload after a finished run, a streamed row that cannot be used, or a save that failed (a full disk) prints what
    is saved and what to do and returns 1."""
    return run_command("train.py", lambda: main(argv) and 0)


def prepare(argv: list[str] | None, callbacks: list | None, held: contextlib.ExitStack) -> TrainingRun:
    """Everything that can fail on bad input: arguments, dataset, labels, images, model config and weights."""
    model_args, data_args, training_args = parse_args(argv)
    validate_args(model_args, data_args, training_args)

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO,
                        handlers=[logging.StreamHandler(sys.stdout)])
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)

    # Our collate function needs the image and label columns, which Trainer would drop as "unused".
    training_args.remove_unused_columns = False
    # The upload goes through ppt_tools.export.publish at the end; Trainer's own push would create a repo at start.
    publish = training_args.push_to_hub
    training_args.push_to_hub = False
    output = lock_output_dir(training_args, held)
    resume_from = resolve_resume(training_args)
    check_output_dir(training_args, resume_from)
    set_seed(training_args.seed)

    # ---- data: load, pick splits and columns, check labels and every image, all before training ----
    with training_args.main_process_first(desc="loading the dataset"):
        data = load_prepared(data_args, digits_size=model_args.image_size or 32, check_all_images=data_args.check_images,
                             need_train=True, max_train_samples=data_args.max_train_samples,
                             cache_dir=model_args.cache_dir)
    if data.streaming:
        set_steps_of_a_stream(training_args, data.train)
    logger.info("train: %s images, eval (%s): %s images, %d classes, columns image=%r label=%r",
                num_rows(data.train) or "a stream of", data.eval_split_name, num_rows(data.eval) or "a stream of",
                len(data.label_names), data.image_column, data.label_column)

    # ---- model and image processor (config first: bad PPT settings fail before weights load) ----
    config = build_config(model_args, data.label_names)
    if model_args.from_scratch:  # the dataset's own statistics (of the first 10,000 images of a stream)
        images = (check_image(row[data.image_column], data.image_column,
                              f"split {data.train_split_name!r}, {row[SOURCE_COLUMN]}")
                  for row in data.checked_stream("train").take(10_000)) if data.streaming else \
            data.train[data.image_column]
        mean, std = channel_mean_std(images, config.image_size)
        image_processor = scratch_image_processor(config.image_size, mean, std)
    else:
        image_processor = pretrained_image_processor(model_args, config.image_size)
    model = build_model(model_args, config)
    if resume_from is not None:
        check_resume_matches(model, resume_from)

    # Training augments, each image with its own seeded generator (reproducible across resumes and workers);
    # evaluation runs the image processor that is saved with the model, so that the folder reproduces the figures
    # reported here.
    train_transform = TrainTransform(config.image_size, image_processor.image_mean, image_processor.image_std,
                                     crop_scale=(data_args.crop_scale_min, 1.0),
                                     horizontal_flip=data_args.horizontal_flip)
    columns = [data.image_column, data.label_column]
    if data.streaming:
        # A stream has no row index to seed each image's augmentation by (AugmentedDataset): it draws from `random`.
        # Its rows carry their source and are checked as they are read, as map-style splits were before training.
        streamed = [*columns, SOURCE_COLUMN]
        train_dataset = with_transform(data.checked_stream("train"),
                                       checked(train_batch_transform(train_transform, *columns), data, "train"),
                                       streamed, shuffle_seed=training_args.seed)
        eval_dataset = with_transform(data.checked_stream("eval"),
                                      checked(eval_batch_transform(image_processor, *columns), data, "eval"), streamed)
        epoch_callbacks = []  # Trainer itself tells a stream its epoch (its shuffle order)
    else:
        train_dataset = AugmentedDataset(data.train, train_transform, *columns, seed=training_args.seed)
        eval_dataset = with_transform(data.eval, eval_batch_transform(image_processor, *columns), columns)
        epoch_callbacks = [EpochCallback(train_dataset)]
    preprocess_logits_for_metrics, compute_metrics = make_metric_functions(len(data.label_names))

    trainer = ImageTrainer(
        model=model,
        args=training_args,
        data_collator=collate_image_batch,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=image_processor,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        callbacks=[*epoch_callbacks, *(callbacks or [])],
    )
    return TrainingRun(model_args, data_args, training_args, data, model, image_processor, trainer, resume_from, publish,
                       output)


def planned_steps(trainer: Trainer) -> int:
    """The optimizer steps the run takes in all (Trainer's own count, from the options and the training data)."""
    return trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1]


def at_last_step(run: TrainingRun) -> bool:
    """Resuming from a checkpoint at the run's last step: there is nothing left to train."""
    if run.resume_from is None:
        return False
    step = checkpoint_step(run.resume_from)
    return step is not None and step >= planned_steps(run.trainer)


def finished_run_results(run: TrainingRun) -> dict | None:
    """A resume of a run that finished: its checkpoint is at the run's last step and output_dir holds its results.
    Then there is nothing to resume, and the results are returned as they are (training again would rewrite the
    figures with those of an empty piece)."""
    output_dir = run.training_args.output_dir
    results_file = os.path.join(output_dir, ALL_RESULTS_FILE)
    if not os.path.isfile(results_file) or not at_last_step(run):
        return None
    step, last = checkpoint_step(run.resume_from), planned_steps(run.trainer)
    with open(results_file, encoding="utf-8") as handle:
        results = json.load(handle)
    if run.trainer.is_world_process_zero():
        print(f"nothing to resume: {output_dir!r} holds a finished run ({os.path.basename(run.resume_from)} is its "
              f"last step, {step} of {last}); its model and results are kept as they are (to train longer, raise "
              "--max_steps or --num_train_epochs)", flush=True)
    return results


def evaluation_command(run: TrainingRun) -> str:
    """How to evaluate the saved model again (benchmark.py, on the same data)."""
    data_args = run.data_args
    options = [f"--model_name_or_path {run.training_args.output_dir}", f"--dataset_name {data_args.dataset_name}"]
    if data_args.dataset_config_name:
        options.append(f"--dataset_config_name {data_args.dataset_config_name}")
    if data_args.streaming:
        options += ["--streaming", f"--eval_split_name {run.data.eval_split_name}"]
    return "benchmark.py " + " ".join(options) + " --cost_only"


def train_and_evaluate(run: TrainingRun) -> dict:
    trainer, training_args, model, data = run.trainer, run.training_args, run.model, run.data
    finished = finished_run_results(run)
    if finished is not None:
        return finished
    if trainer.is_world_process_zero():
        start_output_dir(training_args, run.resume_from)

    # ---- train (a stream is checked as it is read); the figures are those of the whole run when it was resumed ----
    try:
        if at_last_step(run):  # killed after its last checkpoint (in the final save): only the saving is left
            logger.info("%s is at the run's last step: nothing left to train", run.resume_from)
            piece_metrics = trainer.restore_finished(run.resume_from)
        else:
            piece_metrics = trainer.whole_run_metrics(trainer.train(resume_from_checkpoint=run.resume_from).metrics)
    except DataError as error:
        found, _ = find_resume_checkpoint(training_args.output_dir)
        kept = (f"the last checkpoint, {found}, is kept: fix or remove the row, then continue with "
                "--resume_from_checkpoint True") if found else \
            "no checkpoint was saved (--save_strategy steps saves some)"
        raise StoppedOnDataError(f"training stopped at step {trainer.state.global_step}: {data_error_text(error)}; "
                                 f"{kept}") from error
    # total_flos from the state: with --disable_tqdm, Trainer's PrinterCallback pops it from the logged metrics dict
    train_samples = num_rows(data.train) if not data.streaming else trainer.state.global_step * total_batch_size(
        training_args)  # a stream: the images the steps took
    train_metrics = {**piece_metrics, "total_flos": trainer.state.total_flos,
                     "train_samples": train_samples, "train_global_step": trainer.state.global_step}
    trainer.log_metrics("train", train_metrics)
    info = training_info(model, data, train_metrics, training_args, run.model_args, run.data_args)
    # The trained model is on disk before its evaluation, which reads data that may still hold a bad row.
    finalize_output(trainer, run.output, train_metrics, None, info)

    # ---- evaluate with PPT on and off ----
    saved = (f"the trained model is saved in {training_args.output_dir!r} (without its evaluation); evaluate it "
             f"again with: {evaluation_command(run)}")
    try:
        eval_metrics = trainer.evaluate(metric_key_prefix="eval")
        with model.compression_settings(reduction_layers=[]):  # the same weights as the stock DeiT
            eval_metrics.update(trainer.evaluate(metric_key_prefix="eval_baseline"))
    except DataError as error:
        raise StoppedOnDataError(f"the evaluation stopped: {data_error_text(error)}; {saved}") from error
    except BaseException:
        logger.error(saved)
        raise
    eval_metrics.update(ppt_summary(model.config))
    eval_metrics.update({"eval_split": data.eval_split_name})  # eval_samples: counted by compute_metrics
    trainer.log_metrics("eval", {key: value for key, value in eval_metrics.items() if not isinstance(value, list)})

    finalize_output(trainer, run.output, train_metrics, eval_metrics, info)

    results = {**train_metrics, **eval_metrics}
    if trainer.is_world_process_zero():
        print("\n" + results_table(results, model.config, training_args.output_dir), flush=True)
        if run.publish:
            url = push_to_hub(model, run.image_processor, results, info, training_args)
            print(f"pushed to {url}", flush=True)
    return results


if __name__ == "__main__":
    sys.exit(cli())
