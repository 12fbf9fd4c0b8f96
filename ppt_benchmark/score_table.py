# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The thesis's score-function table: the significance scores side by side at equal MACs (same reduction layers
and tokens removed, so every row has the same token schedule), off-the-shelf and after a short compression-aware
fine-tuning, with the uncompressed baseline (fine-tuned for the same number of steps) as the reference row."""

from __future__ import annotations

import copy
import os
import shlex
import sys
import time

import torch
from tqdm.auto import tqdm

from .accuracy import (
    accuracy_on_batches,
    check_batch_labels,
    default_image_processor,
    load_eval_dataset,
    load_train_dataset,
    preprocess,
)
from .calibrate import collect_policy_records, overall_prune_fraction
from .cost import analytic_cost
from .report import atomic_write_text, fmt, format_table, machine_info, markdown_table, write_csv, write_json


def finetune(model, train_batches: list, steps: int, learning_rate: float, seed: int = 0, progress: bool = True):
    """`steps` AdamW steps on `train_batches` (cycled, reshuffled each epoch) with the model's PPT settings on.
    Returns the model, in eval mode."""
    if steps <= 0:
        return model.eval()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.05)
    device = next(model.parameters()).device
    model.train()
    bar = tqdm(total=steps, desc=f"fine-tune ({model.config.score_function if model.config.compression_enabled else 'baseline'})",
               disable=not progress, leave=False)
    step = 0
    while step < steps:
        for index in torch.randperm(len(train_batches), generator=generator).tolist():
            pixel_values, labels = train_batches[index]
            loss = model(pixel_values=pixel_values.to(device), labels=labels.to(device)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step >= steps:
                break
    bar.close()
    return model.eval()


def score_function_table(
    model,
    eval_batches: list,
    score_functions: list[str],
    train_batches: list | None = None,
    finetune_steps: int = 0,
    learning_rate: float = 5e-5,
    seed: int = 0,
    progress: bool = True,
    calibrate_prune_fraction: float | None = None,
    calibration_batches: list | None = None,
) -> list[dict]:
    """One row per setting: baseline, then each score function; columns off-the-shelf (and fine-tuned) accuracy,
    GMACs, fraction of pruned decisions. The model's reduction layers and tokens removed are kept; tau too, unless
    `calibrate_prune_fraction` is given: then each score function gets its own tau (`calibrate_threshold` on
    `calibration_batches`) so that every row prunes the same fraction of decisions -- score variances differ by
    orders of magnitude between score functions, so one tau would give them different policies."""
    if not model.config.compression_enabled:
        raise ValueError("the model has compression off: give --reduction_layers / --tokens_removed")
    if finetune_steps > 0 and not train_batches:
        raise ValueError("fine-tuning needs training batches")
    training = train_batches if finetune_steps > 0 else None
    for what, cached in (("the evaluation split", eval_batches), ("the training split", training)):
        check_batch_labels(cached, model.config.num_labels, what)  # before any work: wrong dataset or model
    settings = {key: getattr(model.config, key) for key in ("reduction_layers", "tokens_removed", "prune_threshold")}
    rows = []
    for name in tqdm(["baseline"] + list(score_functions), desc="score functions", disable=not progress):
        candidate = copy.deepcopy(model).eval()
        if name == "baseline":
            candidate.configure_compression(reduction_layers=[])
        else:
            candidate.configure_compression(score_function=name, **settings)
            if calibrate_prune_fraction is not None:
                from .calibrate import calibrate_threshold

                tau = calibrate_threshold(candidate, calibration_batches or eval_batches, calibrate_prune_fraction,
                                          progress=False).prune_threshold
                candidate.configure_compression(prune_threshold=tau)
        row = {"setting": name, "gmacs": analytic_cost(candidate.config).macs / 1e9}
        if name != "baseline":
            row["prune_threshold"] = candidate.config.prune_threshold
        off = accuracy_on_batches(candidate, eval_batches)
        row["top1_off_the_shelf"] = 100 * off.top1
        row["top5_off_the_shelf"] = None if off.top5 is None else 100 * off.top5
        if name != "baseline":
            row["pruned_fraction_off_the_shelf"] = overall_prune_fraction(collect_policy_records(candidate, eval_batches))
        if finetune_steps > 0:
            torch.manual_seed(seed)
            finetune(candidate, train_batches, finetune_steps, learning_rate, seed, progress)
            tuned = accuracy_on_batches(candidate, eval_batches)
            row["top1_finetuned"] = 100 * tuned.top1
            row["top5_finetuned"] = None if tuned.top5 is None else 100 * tuned.top5
            if name != "baseline":
                row["pruned_fraction_finetuned"] = overall_prune_fraction(collect_policy_records(candidate, eval_batches))
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
    return [c[1] for c in columns], [[fmt(row.get(k), spec) if spec else row.get(k) for k, _, spec in columns] for row in rows]


def main_score_table(args) -> int:
    from .models import apply_dtype_device, model_from_args

    if args.calibrate_prune_fraction is not None and not 0 <= args.calibrate_prune_fraction <= 1:
        raise ValueError(f"--calibrate_prune_fraction {args.calibrate_prune_fraction} must be in [0, 1]")
    started = time.time()
    model = model_from_args(args)
    for name in args.score_functions:  # fail before any work on an unknown name
        model.configure_compression(score_function=name)
    model, device = apply_dtype_device(model, args)
    processor = default_image_processor(model.config, args.checkpoint)
    size = model.config.image_size
    eval_batches = preprocess(load_eval_dataset(args.dataset, args.split, args.max_eval_samples, size), processor,
                              args.eval_batch_size)
    train_batches = None
    if args.finetune_steps > 0 or args.calibrate_prune_fraction is not None:
        train_set = load_train_dataset(args.dataset, args.train_split, image_size=size)
        train_batches = preprocess(train_set, processor, args.finetune_batch_size)
    # tau is calibrated on training images (up to 256), never on the evaluation split
    calibration = None
    if train_batches:
        calibration, count = [], 0
        for batch in train_batches:
            if count >= 256:
                break
            calibration.append(batch)
            count += len(batch[1])
    rows = score_function_table(model, eval_batches, args.score_functions, train_batches, args.finetune_steps,
                                args.finetune_learning_rate, args.seed, not args.no_progress,
                                args.calibrate_prune_fraction, calibration)
    config = model.config
    headers, body = table(rows)
    command = "python benchmark.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    machine = machine_info(device)
    tau_text = (f"tau calibrated per score function for {args.calibrate_prune_fraction:.0%} pruned decisions on "
                f"training images" if args.calibrate_prune_fraction is not None else f"prune_threshold={config.prune_threshold:g}")
    summary = (f"PPT: reduction_layers={config.reduction_layers} tokens_removed={config.tokens_removed} "
               f"{tau_text}; eval images: {sum(len(b[1]) for b in eval_batches)}; "
               f"fine-tuning: {args.finetune_steps} steps, batch {args.finetune_batch_size}, lr {args.finetune_learning_rate:g} "
               f"(AdamW, each row from the same checkpoint; the baseline row fine-tunes with compression off)")
    print(summary)
    print(format_table(headers, body))
    print(f"machine: {machine['cpu']} ({machine['logical_cpus']} CPUs, torch threads {machine['torch_threads']}), "
          f"torch {machine['torch']}; {time.time() - started:.0f} s")
    if args.output_dir:
        write_csv(os.path.join(args.output_dir, "score_table.csv"), rows)
        write_json(os.path.join(args.output_dir, "score_table.json"),
                   {"rows": rows, "command": command, "machine": machine, "summary": summary})
        atomic_write_text(os.path.join(args.output_dir, "score_table.md"),
                          markdown_table(headers, body) + f"\n\n{summary}\n\nCommand: `{command}`\n\n"
                          f"Machine: {machine['cpu']}, {machine['logical_cpus']} CPUs, torch {machine['torch']}\n")
        print(f"wrote {args.output_dir}/score_table.csv, .json, .md")
    return 0


__all__ = ["finetune", "score_function_table"]
