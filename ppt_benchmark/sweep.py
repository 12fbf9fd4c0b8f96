# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Sweeps over PPT settings (r, tau, reduction layers, score function) with the reference policies ToMe-style
pooling only (tau = inf) and top-k pruning only (tau = 0): table (CSV / JSON / markdown) and Pareto plots."""

from __future__ import annotations

import copy
import itertools
import math
import os
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from modeling_ppt_deit import PPTDeiTConfig

from .cost import analytic_cost
from .plots import pareto_plot
from .report import fmt, machine_info, markdown_table, write_csv, write_json, atomic_write_text
from .speed import inference_step, time_interleaved


@dataclass(frozen=True)
class SweepPoint:
    """One PPT setting. `policy`: 'ppt' (adaptive), 'pool only (ToMe)', 'prune only (top-k)' or 'baseline'."""

    reduction_layers: tuple[int, ...]
    tokens_removed: int
    prune_threshold: float
    score_function: str
    policy: str

    @property
    def label(self) -> str:
        if self.policy == "baseline":
            return "baseline"
        layers = ",".join(map(str, self.reduction_layers))
        tau = "inf" if math.isinf(self.prune_threshold) else f"{self.prune_threshold:g}"
        score = "" if math.isinf(self.prune_threshold) else f" {self.score_function}"  # pooling reads no scores
        return f"r={self.tokens_removed} L={layers} tau={tau}{score}"

    def settings(self) -> dict:
        return {
            "reduction_layers": list(self.reduction_layers),
            "tokens_removed": self.tokens_removed,
            "prune_threshold": self.prune_threshold,
            "score_function": self.score_function,
        }


def policy_name(prune_threshold: float) -> str:
    if prune_threshold == 0:
        return "prune only (top-k)"
    if math.isinf(prune_threshold):
        return "pool only (ToMe)"
    return "ppt"


def sweep_grid(
    tokens_removed_values: list[int],
    prune_threshold_values: list[float],
    reduction_layer_sets: list[list[int]],
    score_functions: list[str],
    reference_policies: bool = True,
) -> list[SweepPoint]:
    """The baseline, then every combination; with `reference_policies`, tau = 0 and tau = inf are added per
    (r, layers, score). Pooling does not read scores, so tau = inf appears once per (r, layers). Duplicates dropped."""
    thresholds = list(prune_threshold_values)
    if reference_policies:
        thresholds += [value for value in (0.0, math.inf) if value not in thresholds]
    points = [SweepPoint((), 0, 0.0, score_functions[0], "baseline")]
    seen = set()
    for layers, r, tau, score in itertools.product(reduction_layer_sets, tokens_removed_values, thresholds, score_functions):
        if math.isinf(tau):
            score = score_functions[0]  # scores unused when every sample pools
        point = SweepPoint(tuple(layers), r, float(tau), score, policy_name(tau))
        if not layers or r == 0:
            continue  # that is the baseline
        if point not in seen:
            seen.add(point)
            points.append(point)
    return points


def validate_points(config: PPTDeiTConfig, points: list[SweepPoint]) -> None:
    """Raise ValueError for the first setting the model cannot run, before any measurement."""
    for point in points:
        if point.policy == "baseline":
            continue
        merged = {**config.to_dict(), **point.settings()}
        merged.pop("model_type", None)
        try:
            PPTDeiTConfig(**merged)
        except ValueError as error:
            raise ValueError(f"sweep setting {point.label!r} is invalid for this model: {error}") from None


def run_sweep(
    model,
    points: list[SweepPoint],
    eval_batches: list | None = None,
    speed: bool = True,
    batch_size: int = 32,
    warmup: int = 1,
    rounds: int = 3,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[dict]:
    """Measure every point. Throughput is timed interleaved against an uncompressed copy of the model in the same
    loop, so each row's speed-up is against a baseline measured at the same time."""
    from .accuracy import accuracy_on_batches

    validate_points(model.config, points)
    model = model.eval()
    baseline = copy.deepcopy(model)
    baseline.configure_compression(reduction_layers=[])
    dtype = next(model.parameters()).dtype
    config = model.config
    pixel_values = torch.randn(
        batch_size, config.num_channels, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0)
    ).to(device=device, dtype=dtype)
    rows = []
    for point in tqdm(points, desc="sweep", disable=not progress):
        if point.policy == "baseline":
            model.configure_compression(reduction_layers=[])
        else:
            model.configure_compression(**point.settings())
        cost = analytic_cost(model.config)
        row = {
            "label": point.label,
            "policy": point.policy,
            "reduction_layers": " ".join(map(str, point.reduction_layers)),
            "tokens_removed": point.tokens_removed,
            "prune_threshold": point.prune_threshold,
            "score_function": point.score_function if point.policy not in ("baseline", "pool only (ToMe)") else "",
            "gmacs": cost.macs / 1e9,
            "gflops": cost.flops / 1e9,
            "final_tokens": cost.tokens_per_layer[-1][1],
        }
        if eval_batches is not None:
            accuracy = accuracy_on_batches(model, eval_batches, device)
            row["top1"] = 100 * accuracy.top1
            row["top5"] = None if accuracy.top5 is None else 100 * accuracy.top5
        if speed:
            timing = time_interleaved(
                {"baseline": inference_step(baseline, pixel_values), "point": inference_step(model, pixel_values)},
                batch_size, device, warmup, rounds, 1, progress=False,
            )
            row["images_per_second"] = timing["point"].median
            row["baseline_images_per_second"] = timing["baseline"].median
            row["speedup"] = timing["point"].median / timing["baseline"].median
        rows.append(row)
    return rows


TABLE_COLUMNS = [
    ("label", "setting", None), ("policy", "policy", None), ("gmacs", "GMACs", ".4g"), ("final_tokens", "final tokens", None),
    ("top1", "top-1 %", ".2f"), ("top5", "top-5 %", ".2f"), ("images_per_second", "img/s", ".1f"), ("speedup", "speed-up", ".2f"),
]


def table_rows(rows: list[dict]) -> tuple[list[str], list[list]]:
    columns = [column for column in TABLE_COLUMNS if any(column[0] in row for row in rows)]
    headers = [title for _, title, _ in columns]
    body = [[fmt(row.get(key), spec) if spec else row.get(key) for key, _, spec in columns] for row in rows]
    return headers, body


def save_sweep(rows: list[dict], output_dir: str, metadata: dict, title: str = "") -> dict[str, str]:
    """Write sweep.csv / sweep.json / sweep.md and the Pareto PNGs; returns the paths written."""
    paths = {
        "csv": os.path.join(output_dir, "sweep.csv"),
        "json": os.path.join(output_dir, "sweep.json"),
        "md": os.path.join(output_dir, "sweep.md"),
    }
    write_csv(paths["csv"], rows)
    write_json(paths["json"], {"metadata": metadata, "rows": rows})
    headers, body = table_rows(rows)
    atomic_write_text(paths["md"], markdown_table(headers, body) + "\n")
    has_accuracy = any(row.get("top1") is not None for row in rows)
    has_speed = any(row.get("images_per_second") is not None for row in rows)
    y_key, y_label = ("top1", "top-1 accuracy (%)") if has_accuracy else ("images_per_second", "throughput (images/s)")
    if has_accuracy or has_speed:
        paths["pareto_macs"] = pareto_plot(
            rows, "gmacs", y_key, os.path.join(output_dir, "pareto_macs.png"), "GMACs per image", y_label,
            lower_x_is_better=True, title=title,
        )
    if has_accuracy and has_speed:
        paths["pareto_throughput"] = pareto_plot(
            rows, "images_per_second", "top1", os.path.join(output_dir, "pareto_throughput.png"),
            "measured throughput (images/s)", "top-1 accuracy (%)", lower_x_is_better=False, title=title,
        )
    return paths


def main_sweep(args) -> int:
    from .accuracy import default_image_processor, load_eval_dataset, preprocess
    from .models import apply_dtype_device, model_from_args

    points = sweep_grid(args.tokens_removed_values, args.prune_threshold_values, args.reduction_layer_sets,
                        args.score_functions, reference_policies=not args.no_reference_policies)
    model = model_from_args(args)
    validate_points(model.config, points)  # before loading data or timing anything
    model, device = apply_dtype_device(model, args)
    eval_batches = None
    if args.dataset:
        dataset = load_eval_dataset(args.dataset, args.split, args.max_eval_samples, model.config.image_size)
        eval_batches = preprocess(dataset, default_image_processor(model.config, args.checkpoint), args.eval_batch_size)
    rows = run_sweep(model, points, eval_batches, speed=not args.no_speed, batch_size=args.batch_size,
                     warmup=args.warmup, rounds=args.rounds, device=device, progress=not args.no_progress)
    headers, body = table_rows(rows)
    from .report import format_table

    print(format_table(headers, body, align_left=2))
    if args.output_dir:
        metadata = {"model": args.arch or args.checkpoint, "machine": machine_info(device), "batch_size": args.batch_size,
                    "dtype": args.dtype, "dataset": args.dataset, "points": [asdict(p) for p in points]}
        paths = save_sweep(rows, args.output_dir, metadata, title=f"{args.arch or args.checkpoint}")
        print("wrote " + ", ".join(paths.values()))
    return 0


__all__ = ["SweepPoint", "run_sweep", "save_sweep", "sweep_grid", "validate_points"]
