# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The thesis's score-function table: the significance scores side by side at equal MACs (the same reduction layers
and tokens removed, so every row has the same token schedule), off the shelf and after a short compression-aware
fine-tuning with `Trainer`, with the uncompressed baseline (fine-tuned for the same number of steps) as the
reference row. Every row starts from its own copy of the model."""

from __future__ import annotations

import copy
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import Trainer, TrainingArguments

from ppt_tools.core.accuracy import evaluate_accuracy
from ppt_tools.core.arguments import check_at_least
from ppt_tools.core.cost import analytic_cost
from ppt_tools.core.data import check_labels
from ppt_tools.core.preprocessing import collate_image_batch, eval_batch_transform
from ppt_tools.core.results import describe_machine, fmt, format_table, machine_info, markdown_table, write_csv, write_json, write_text

from .common import AnalysisArguments, load_data, load_placed_model, preprocessed
from .policy import calibrate_threshold, collect_policy_records, overall_prune_fraction


SCORE_TABLE_FILES = {"csv": "score_table.csv", "json": "score_table.json", "md": "score_table.md"}


@dataclass
class ScoreTableArguments(AnalysisArguments):
    """The thesis's table of significance scores at equal MACs, off the shelf and fine-tuned (needs
    --dataset_name: evaluation on its evaluation split, fine-tuning and tau calibration on its training split)."""

    score_functions: list[str] = field(default_factory=lambda: ["ats", "cls_attention", "entropy"], metadata={
        "help": "The score functions compared, one row each."})
    finetune_steps: int = field(default=0, metadata={
        "help": "Compression-aware fine-tuning steps per row (0: off-the-shelf only)."})
    finetune_batch_size: int = field(default=32, metadata={"help": "Batch size of the fine-tuning."})
    finetune_learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate (constant)."})
    calibrate_prune_fraction: float | None = field(default=None, metadata={
        "help": "Give each score function its own tau, calibrated on training images to prune this fraction of "
                "the decisions (score variances of different scores live on different scales)."})
    calibration_samples: int = field(default=256, metadata={"help": "Training images used for that calibration."})

    def output_files(self) -> list[str]:
        return list(SCORE_TABLE_FILES.values())

    def validate(self) -> None:
        check_at_least(self, 0, "finetune_steps")
        check_at_least(self, 1, "finetune_batch_size", "calibration_samples")
        if self.calibrate_prune_fraction is not None and not 0 <= self.calibrate_prune_fraction <= 1:
            raise ValueError(f"--calibrate_prune_fraction {self.calibrate_prune_fraction} must be in [0, 1]")
        if self.dataset_name is None:
            raise ValueError("score-table needs images: give --dataset_name (a dataset folder, a Hub id, or digits)")


@dataclass
class Finetuning:
    """Compression-aware fine-tuning of each row: AdamW at a constant learning rate, weight decay 0.05."""

    dataset: object  # a Dataset whose transform yields pixel_values and labels
    steps: int
    batch_size: int
    learning_rate: float
    seed: int = 0


def finetune(model, settings: Finetuning, progress: bool = True):
    """`settings.steps` optimizer steps of `Trainer` on `settings.dataset`, with the model's PPT settings on.
    Nothing is saved. Returns the model, in eval mode."""
    device = next(model.parameters()).device
    with tempfile.TemporaryDirectory(prefix="ppt-score-table-") as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant",
            weight_decay=0.05,
            max_grad_norm=0.0,
            seed=settings.seed,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=not progress,
            dataloader_num_workers=0,
            dataloader_pin_memory=device.type == "cuda",
            remove_unused_columns=False,
            use_cpu=device.type == "cpu",
        )
        Trainer(model=model, args=arguments, train_dataset=settings.dataset, data_collator=collate_image_batch).train()
    return model.eval()


def score_function_table(model, eval_batches: list, score_functions: list[str], finetuning: Finetuning | None = None,
                         calibrate_prune_fraction: float | None = None, calibration_batches: list | None = None,
                         progress: bool = True) -> list[dict]:
    """One row per setting: the baseline, then each score function; columns: off-the-shelf (and fine-tuned)
    accuracy, GMACs, the fraction of pruned decisions. The model's reduction layers and tokens removed are kept;
    tau too, unless `calibrate_prune_fraction` is given: then each score function gets its own tau
    (`calibrate_threshold` on `calibration_batches`), so that every row prunes the same fraction of decisions."""
    if not model.config.compression_enabled:
        raise ValueError("the model has compression off: give --reduction_layers / --tokens_removed")
    num_labels = model.config.num_labels
    check_labels(torch.cat([labels for _, labels in eval_batches]), num_labels, "the evaluation split")
    rows = []
    for name in tqdm(["baseline"] + list(score_functions), desc="score functions", disable=not progress):
        candidate = copy.deepcopy(model).eval()
        if name == "baseline":
            candidate.configure_compression(reduction_layers=[])
        else:
            candidate.configure_compression(score_function=name)
            if calibrate_prune_fraction is not None:
                tau = calibrate_threshold(candidate, calibration_batches, calibrate_prune_fraction,
                                          progress=False).prune_threshold
                candidate.configure_compression(prune_threshold=tau)
        row = {"setting": name, "gmacs": analytic_cost(candidate.config).macs / 1e9}
        if name != "baseline":
            row["prune_threshold"] = candidate.config.prune_threshold
        stages = [("off_the_shelf", None)] + ([("finetuned", finetuning)] if finetuning else [])
        for stage, tuning in stages:
            if tuning is not None:
                finetune(candidate, tuning, progress)
            result = evaluate_accuracy({name: candidate}, eval_batches, num_labels, progress=False)[name]
            row[f"top1_{stage}"] = 100 * result.top1
            row[f"top5_{stage}"] = None if result.top5 is None else 100 * result.top5
            if name != "baseline":
                row[f"pruned_fraction_{stage}"] = overall_prune_fraction(collect_policy_records(candidate, eval_batches))
        rows.append(row)
    return rows


COLUMNS = [
    ("setting", "score function", None), ("gmacs", "GMACs", ".4g"), ("prune_threshold", "tau", ".3g"),
    ("top1_off_the_shelf", "top-1 off-the-shelf %", ".2f"), ("top5_off_the_shelf", "top-5 off-the-shelf %", ".2f"),
    ("pruned_fraction_off_the_shelf", "pruned (off)", ".0%"),
    ("top1_finetuned", "top-1 fine-tuned %", ".2f"), ("top5_finetuned", "top-5 fine-tuned %", ".2f"),
    ("pruned_fraction_finetuned", "pruned (ft)", ".0%"),
]


def table(rows: list[dict]) -> tuple[list[str], list[list]]:
    columns = [c for c in COLUMNS if any(c[0] in row for row in rows)]
    return [c[1] for c in columns], [[fmt(row.get(k), spec) if spec else row.get(k) for k, _, spec in columns]
                                     for row in rows]


def run(args: ScoreTableArguments) -> int:
    with args.results_folder() as output:  # held before any work (`ppt_tools.core.arguments.OutputArguments`)
        return score_table(args, output)


def score_table(args: ScoreTableArguments, output) -> int:
    started = time.time()
    model, device = load_placed_model(args)
    for name in args.score_functions:  # an unknown name fails before any work
        model.config.with_compression(score_function=name)
    data, processor = load_data(args, model, need_train=args.finetune_steps > 0 or args.calibrate_prune_fraction is not None)
    eval_batches = preprocessed(data.eval, data, processor, args.eval_batch_size)
    finetuning = calibration = None
    if args.calibrate_prune_fraction is not None:  # tau from training images, never from the evaluation split
        calibration = preprocessed(data.train, data, processor, args.eval_batch_size, limit=args.calibration_samples)
    if args.finetune_steps > 0:
        check_labels(data.train[data.label_column], model.config.num_labels, "the training split")
        data.train.set_transform(eval_batch_transform(processor, data.image_column, data.label_column))
        finetuning = Finetuning(data.train, args.finetune_steps, args.finetune_batch_size,
                                args.finetune_learning_rate, args.seed)
    rows = score_function_table(model, eval_batches, args.score_functions, finetuning, args.calibrate_prune_fraction,
                                calibration, args.progress)
    config = model.config
    headers, body = table(rows)
    command = "ppt-analysis score-table " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    machine = machine_info(device)
    if calibration is not None:
        tau_text = (f"tau calibrated per score function for {args.calibrate_prune_fraction:.0%} pruned decisions on "
                    f"{sum(len(labels) for _, labels in calibration)} training images")
    else:
        tau_text = f"prune_threshold={config.prune_threshold:g}"
    summary = (f"PPT: reduction_layers={config.reduction_layers} tokens_removed={config.tokens_removed} {tau_text}; "
               f"evaluation: {sum(len(b[1]) for b in eval_batches)} images of {data.eval_split_name!r}; fine-tuning: "
               f"{args.finetune_steps} steps, batch {args.finetune_batch_size}, lr {args.finetune_learning_rate:g} "
               "(AdamW, each row from the same checkpoint; the baseline row fine-tunes with compression off)")
    print(summary)
    print(format_table(headers, body))
    print(f"machine: {describe_machine(machine)}; {time.time() - started:.0f} s")
    if output is not None:
        with output.staging() as staging:
            paths = {kind: os.path.join(staging, name) for kind, name in SCORE_TABLE_FILES.items()}
            write_csv(paths["csv"], rows)
            write_json(paths["json"], {"rows": rows, "command": command, "machine": machine, "summary": summary})
            write_text(paths["md"],
                       markdown_table(headers, body) + f"\n\n{summary}\n\nCommand: `{command}`\n\n"
                       f"Machine: {describe_machine(machine)}\n")
        print("wrote " + ", ".join(os.path.join(args.output_dir, name) for name in SCORE_TABLE_FILES.values()))
    return 0


__all__ = ["Finetuning", "ScoreTableArguments", "finetune", "run", "score_function_table"]
