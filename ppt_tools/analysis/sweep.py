# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Sweeps over PPT settings (r, tau, reduction layers, score function) with the reference policies ToMe-style
pooling only (tau = inf) and top-k pruning only (tau = 0): table (CSV / JSON / markdown) and Pareto plots."""

from __future__ import annotations

import copy
import itertools
import math
import os
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from modeling_ppt_deit import PPTDeiTConfig
from ppt_tools.core.accuracy import evaluate_accuracy
from ppt_tools.core.arguments import check_at_least
from ppt_tools.core.cost import analytic_cost
from ppt_tools.core.models import eval_mode
from ppt_tools.core.results import fmt, format_table, machine_info, markdown_table, write_csv, write_json, write_text
from ppt_tools.core.timing import inference_step, time_interleaved

from .common import AnalysisArguments, load_data, load_placed_model, preprocessed
from .plots import pareto_plot


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
        try:
            config.with_compression(**point.settings())
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
    """Measure every point (in eval mode); the model leaves with its own settings and mode. Throughput is timed
    interleaved against an uncompressed copy of the model in the same loop, so each row's speed-up is against a
    baseline measured at the same time."""
    validate_points(model.config, points)
    baseline = copy.deepcopy(model).eval()
    baseline.configure_compression(reduction_layers=[])
    config = model.config
    pixel_values = torch.randn(
        batch_size, config.num_channels, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0)
    ).to(device=device, dtype=next(model.parameters()).dtype)
    rows = []
    for point in tqdm(points, desc="sweep", disable=not progress):
        settings = {"reduction_layers": []} if point.policy == "baseline" else point.settings()
        with eval_mode(model), model.compression_settings(**settings):
            rows.append(measure_point(model, baseline, point, eval_batches, speed, pixel_values, warmup, rounds,
                                      device))
    return rows


def measure_point(model, baseline, point: SweepPoint, eval_batches, speed: bool, pixel_values, warmup: int,
                  rounds: int, device) -> dict:
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
        accuracy = evaluate_accuracy({"point": model}, eval_batches, model.config.num_labels, device, False)["point"]
        row["top1"] = 100 * accuracy.top1
        row["top5"] = None if accuracy.top5 is None else 100 * accuracy.top5
    if speed:
        batch_size = pixel_values.shape[0]
        timing = time_interleaved(
            {"baseline": inference_step(baseline, pixel_values), "point": inference_step(model, pixel_values)},
            batch_size, device, warmup, rounds, 1, progress=False,
        )
        row["images_per_second"] = timing["point"].median
        row["baseline_images_per_second"] = timing["baseline"].median
        row["speedup"] = timing["point"].median / timing["baseline"].median
    return row


TABLE_COLUMNS = [
    ("label", "setting", None), ("policy", "policy", None), ("gmacs", "GMACs", ".4g"), ("final_tokens", "final tokens", None),
    ("top1", "top-1 %", ".2f"), ("top5", "top-5 %", ".2f"), ("images_per_second", "img/s", ".1f"), ("speedup", "speed-up", ".2f"),
]


def table_rows(rows: list[dict]) -> tuple[list[str], list[list]]:
    columns = [column for column in TABLE_COLUMNS if any(column[0] in row for row in rows)]
    headers = [title for _, title, _ in columns]
    body = [[fmt(row.get(key), spec) if spec else row.get(key) for key, _, spec in columns] for row in rows]
    return headers, body


SWEEP_FILES = {"csv": "sweep.csv", "json": "sweep.json", "md": "sweep.md", "pareto_macs": "pareto_macs.png",
               "pareto_throughput": "pareto_throughput.png"}


def save_sweep(rows: list[dict], output_dir: str, metadata: dict, title: str = "") -> dict[str, str]:
    """Write sweep.csv / sweep.json / sweep.md and the Pareto PNGs; returns the paths written."""
    paths = {kind: os.path.join(output_dir, SWEEP_FILES[kind]) for kind in ("csv", "json", "md")}
    write_csv(paths["csv"], rows)
    write_json(paths["json"], {"metadata": metadata, "rows": rows})
    headers, body = table_rows(rows)
    write_text(paths["md"], markdown_table(headers, body) + "\n")
    has_accuracy = any(row.get("top1") is not None for row in rows)
    has_speed = any(row.get("images_per_second") is not None for row in rows)
    y_key, y_label = ("top1", "top-1 accuracy (%)") if has_accuracy else ("images_per_second", "throughput (images/s)")
    if has_accuracy or has_speed:
        paths["pareto_macs"] = pareto_plot(
            rows, "gmacs", y_key, os.path.join(output_dir, SWEEP_FILES["pareto_macs"]), "GMACs per image", y_label,
            lower_x_is_better=True, title=title,
        )
    if has_accuracy and has_speed:
        paths["pareto_throughput"] = pareto_plot(
            rows, "images_per_second", "top1", os.path.join(output_dir, SWEEP_FILES["pareto_throughput"]),
            "measured throughput (images/s)", "top-1 accuracy (%)", lower_x_is_better=False, title=title,
        )
    return paths


def _default(name: str):
    """The config's default of a schedule setting, as a one-value list (a sweep over that value alone)."""
    return lambda: [PPTDeiTConfig.compression_defaults()[name]]


@dataclass
class SweepArguments(AnalysisArguments):
    """Accuracy (with --dataset_name), MACs and measured speed over a grid of PPT settings, with the reference
    policies pool-only (tau = inf, ToMe) and prune-only (tau = 0, top-k); table and Pareto plots."""

    tokens_removed_values: list[int] = field(default_factory=_default("tokens_removed"), metadata={
        "help": "Values of r to sweep."})
    prune_threshold_values: list[float] = field(default_factory=_default("prune_threshold"), metadata={
        "help": "Values of tau to sweep (0 and inf are added, see --reference_policies)."})
    reduction_layer_sets: list[str] = field(
        default_factory=lambda: [",".join(map(str, PPTDeiTConfig.compression_defaults()["reduction_layers"]))],
        metadata={"help": "Sets of reduction layers, each comma-separated: 3,6,9 2,5,8."})
    score_functions: list[str] = field(default_factory=_default("score_function"), metadata={
        "help": "Score functions to sweep."})
    reference_policies: bool = field(default=True, metadata={
        "help": "Add pooling only (tau = inf) and pruning only (tau = 0) for every (r, layers, score)."})
    speed: bool = field(default=True, metadata={"help": "Time every setting (--no_speed: cost and accuracy only)."})
    batch_size: int = field(default=32, metadata={"help": "Images per timed call."})
    warmup: int = field(default=1, metadata={"help": "Untimed calls per setting."})
    rounds: int = field(default=3, metadata={"help": "Timed rounds per setting."})

    def output_files(self) -> list[str]:
        return list(SWEEP_FILES.values())

    def validate(self) -> None:
        check_at_least(self, 1, "batch_size", "rounds")
        check_at_least(self, 0, "warmup")
        for value in self.prune_threshold_values:
            if math.isnan(value) or value < 0:
                raise ValueError(f"--prune_threshold_values {value} must be >= 0 (or inf)")
        self.layer_sets()

    def layer_sets(self) -> list[list[int]]:
        """'3,6,9' -> [3, 6, 9]."""
        try:
            return [[int(part) for part in text.replace(" ", "").split(",") if part] for text in self.reduction_layer_sets]
        except ValueError:
            raise ValueError(f"--reduction_layer_sets {self.reduction_layer_sets}: each set is comma-separated ints, "
                             "e.g. 3,6,9") from None


def run(args: SweepArguments) -> int:
    points = sweep_grid(args.tokens_removed_values, args.prune_threshold_values, args.layer_sets(),
                        args.score_functions, reference_policies=args.reference_policies)
    with args.results_folder() as output:  # held before any work (`ppt_tools.core.arguments.OutputArguments`)
        model, device = load_placed_model(args)
        validate_points(model.config, points)  # before loading data or timing anything
        eval_batches = None
        if args.dataset_name is not None:
            data, processor = load_data(args, model)
            eval_batches = preprocessed(data.eval, data, processor, args.eval_batch_size)
        rows = run_sweep(model, points, eval_batches, speed=args.speed, batch_size=args.batch_size,
                         warmup=args.warmup, rounds=args.rounds, device=device, progress=args.progress)
        headers, body = table_rows(rows)
        print(format_table(headers, body, align_left=2))
        if output is not None:
            metadata = {"model": args.model_name, "machine": machine_info(device), "batch_size": args.batch_size,
                        "dtype": args.dtype, "dataset": args.dataset_name, "points": [asdict(p) for p in points]}
            with output.staging() as staging:
                paths = save_sweep(rows, str(staging), metadata, title=args.model_name)
            print("wrote " + ", ".join(os.path.join(args.output_dir, os.path.basename(path))
                                       for path in paths.values()))
    return 0


__all__ = ["SweepArguments", "SweepPoint", "run", "run_sweep", "save_sweep", "sweep_grid", "validate_points"]
