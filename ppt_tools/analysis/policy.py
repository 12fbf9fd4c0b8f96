# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Policy statistics (per reduction layer: score variance, fraction of samples pruned vs pooled) and calibration of
the prune threshold tau for a new model or score function.

How calibration works. The model has one tau for all reduction layers, and the layers interact: what a sample
chose at layer 3 changes the tokens, hence the score variance, at layer 6. So tau is not read off one forward
pass. `calibrate_threshold` searches it on the real model: bisection on log(tau) between the smallest and largest
score variance seen, each step a full forward over the calibration batches *with that tau*, until the overall
fraction of pruned (sample, reduction layer) decisions is as close to the target as the data allows. The fraction
pruned only changes where tau crosses an observed variance, so the search stops after `max_steps` or when the
bracket no longer contains a variance. Per-layer thresholds are also reported (the `1 - target` quantile of each
layer's variances in the final pass) as a guide to how different the layers are; the config holds one tau only.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from ppt_tools.core.arguments import check_at_least
from ppt_tools.core.models import eval_mode
from ppt_tools.core.results import fmt, format_table, write_csv, write_json

from .common import AnalysisArguments, load_data, load_placed_model, noise_batches, preprocessed
from .plots import policy_stats_plot


@torch.inference_mode()
def collect_policy_records(
    model, batches: list, device: torch.device | str = "cpu", progress: bool = False
) -> dict[int, dict]:
    """Run `model` on `(pixel_values, labels)` batches with `output_compression=True` (`progress`: a tqdm bar).

    Returns: layer index -> {"variance": [num_samples] float tensor, "pruned": [num_samples] bool tensor,
    "tokens_before": int, "tokens_after": int}.
    """
    collected: dict[int, dict] = {}
    dtype = next(model.parameters()).dtype
    for pixel_values, _ in tqdm(batches, desc="policy statistics", disable=not progress, leave=False):
        out = model(pixel_values.to(device=device, dtype=dtype), output_compression=True)
        for record in out.compression or ():
            if record.pruned is None:  # the clamp left this layer nothing to remove: no policy to collect
                continue
            entry = collected.setdefault(
                record.layer_index,
                {"variance": [], "pruned": [], "tokens_before": record.tokens_before, "tokens_after": record.tokens_after},
            )
            entry["variance"].append(record.score_variance.float().cpu())
            entry["pruned"].append(record.pruned.cpu())
    for entry in collected.values():
        entry["variance"] = torch.cat(entry["variance"])
        entry["pruned"] = torch.cat(entry["pruned"])
    return dict(sorted(collected.items()))


def policy_statistics(records: dict[int, dict]) -> list[dict]:
    """Per reduction layer: mean / median / 10th / 90th percentile of the score variance, fraction pruned."""
    stats = []
    for layer, entry in records.items():
        variance = entry["variance"].double()
        stats.append({
            "layer_index": layer,
            "tokens_before": entry["tokens_before"],
            "tokens_after": entry["tokens_after"],
            "num_samples": int(variance.numel()),
            "mean_score_variance": float(variance.mean()),
            "median_score_variance": float(variance.median()),
            "q10_score_variance": float(torch.quantile(variance, 0.1)),
            "q90_score_variance": float(torch.quantile(variance, 0.9)),
            "fraction_pruned": float(entry["pruned"].float().mean()),
        })
    return stats


def overall_prune_fraction(records: dict[int, dict]) -> float:
    decisions = torch.cat([entry["pruned"].float() for entry in records.values()])
    return float(decisions.mean())


@dataclass
class CalibrationResult:
    prune_threshold: float  # use as PPTDeiTConfig(prune_threshold=...) / configure_compression(prune_threshold=...)
    target_prune_fraction: float
    achieved_prune_fraction: float
    per_layer_fraction_pruned: dict[int, float]
    per_layer_quantile_threshold: dict[int, float]
    steps: int

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate_threshold(
    model,
    batches: list,
    target_prune_fraction: float,
    device: torch.device | str = "cpu",
    max_steps: int = 25,
    progress: bool = True,
) -> CalibrationResult:
    """Find tau such that about `target_prune_fraction` of all (sample, reduction layer) decisions prune.

    The model's other PPT settings are used as they are; each trial tau is set only for its pass
    (`compression_settings`), in eval mode (`eval_mode`), so the model leaves as it came.
    Returns a `CalibrationResult` whose `prune_threshold` is usable as the config's `prune_threshold`.
    """
    if not 0.0 <= target_prune_fraction <= 1.0:
        raise ValueError(f"target_prune_fraction={target_prune_fraction} must be in [0, 1]")
    if not model.config.compression_enabled:
        raise ValueError("the model has no reduction layers: set reduction_layers / tokens_removed first")

    def evaluate(tau: float):
        with eval_mode(model), model.compression_settings(prune_threshold=tau):
            records = collect_policy_records(model, batches, device)
        return overall_prune_fraction(records), records

    if target_prune_fraction >= 1.0:
        tau, steps = 0.0, 0
        fraction, records = evaluate(tau)
    elif target_prune_fraction <= 0.0:
        tau, steps = math.inf, 0
        fraction, records = evaluate(tau)
    else:
        # Bracket: all variances observed with tau = 0 (always prune) and tau = inf (always pool).
        observed = []
        for tau in (0.0, math.inf):
            observed += [entry["variance"] for entry in evaluate(tau)[1].values()]
        observed = torch.cat(observed)
        positive = observed[observed > 0]
        low = float(positive.min()) / 2 if positive.numel() else 1e-12
        high = float(observed.max()) * 2 if observed.numel() else 1.0
        best = None
        steps = 0
        for steps in tqdm(range(1, max_steps + 1), desc="calibrating tau", disable=not progress, leave=False):
            tau = math.sqrt(low * high)  # bisection in log space
            fraction, records = evaluate(tau)
            if best is None or abs(fraction - target_prune_fraction) < abs(best[1] - target_prune_fraction):
                best = (tau, fraction, records)
            if fraction > target_prune_fraction:
                low = tau  # too many prune: raise tau
            elif fraction < target_prune_fraction:
                high = tau
            else:
                break
            if high / low < 1.0001:
                break
        tau, fraction, records = best

    stats = policy_statistics(records)
    quantiles = {
        layer: float(torch.quantile(entry["variance"].double(), 1 - target_prune_fraction))
        for layer, entry in records.items()
    }
    return CalibrationResult(
        prune_threshold=tau,
        target_prune_fraction=target_prune_fraction,
        achieved_prune_fraction=fraction,
        per_layer_fraction_pruned={entry["layer_index"]: entry["fraction_pruned"] for entry in stats},
        per_layer_quantile_threshold=quantiles,
        steps=steps,
    )


# ---------------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------------


POLICY_STATS_FILES = {"json": "policy_stats.json", "csv": "policy_stats.csv", "png": "policy_stats.png"}
CALIBRATION_FILE = "calibration.json"


@dataclass
class PolicyStatsArguments(AnalysisArguments):
    """Per reduction layer: score variances and the fraction of images pruned vs pooled, on the evaluation split
    of --dataset_name (without one: random noise, for smoke tests only)."""

    num_samples: int = field(default=64, metadata={"help": "Images to run."})
    batch_size: int = field(default=32, metadata={"help": "Images per forward pass."})

    def output_files(self) -> list[str]:
        return list(POLICY_STATS_FILES.values())

    def validate(self) -> None:
        check_at_least(self, 1, "num_samples", "batch_size")


@dataclass
class CalibrateArguments(PolicyStatsArguments):
    """The tau that prunes --target_prune_fraction of the (image, reduction layer) decisions, searched on the
    training split of --dataset_name (never on the evaluation split; without a dataset: random noise)."""

    target_prune_fraction: float = field(default=0.5, metadata={"help": "Fraction of decisions that should prune."})

    def output_files(self) -> list[str]:
        return [CALIBRATION_FILE]

    def validate(self) -> None:
        if not 0.0 <= self.target_prune_fraction <= 1.0:
            raise ValueError(f"--target_prune_fraction {self.target_prune_fraction} must be in [0, 1]")


def policy_batches(args, model, split: str) -> list:
    if args.dataset_name is None:
        return noise_batches(model.config, args.num_samples, args.batch_size, args.seed)
    data, processor = load_data(args, model, need_train=split == "train")
    return preprocessed(getattr(data, split), data, processor, args.batch_size, limit=args.num_samples)


def _stats_table(stats: list[dict]) -> str:
    headers = ["layer", "tokens", "samples", "mean var", "median var", "p10 var", "p90 var", "pruned", "pooled"]
    rows = [[s["layer_index"], f"{s['tokens_before']}->{s['tokens_after']}", s["num_samples"],
             fmt(s["mean_score_variance"], ".3e"), fmt(s["median_score_variance"], ".3e"),
             fmt(s["q10_score_variance"], ".3e"), fmt(s["q90_score_variance"], ".3e"),
             fmt(s["fraction_pruned"], ".1%"), fmt(1 - s["fraction_pruned"], ".1%")] for s in stats]
    return format_table(headers, rows)


def run_policy_stats(args: PolicyStatsArguments) -> int:
    with args.results_folder() as output:  # held before any work (`ppt_tools.core.arguments.OutputArguments`)
        model, device = load_placed_model(args)
        config = model.config
        if not config.compression_enabled:
            raise ValueError("the model has no reduction layers: pass --reduction_layers / --tokens_removed")
        batches = policy_batches(args, model, "eval")
        stats = policy_statistics(collect_policy_records(model, batches, device, progress=args.progress))
        print(f"policy statistics: tau={config.prune_threshold:g} score_function={config.score_function} "
              f"on {args.dataset_name or 'random noise'}")
        print(_stats_table(stats))
        if output is not None:
            with output.staging() as staging:
                paths = {kind: os.path.join(staging, name) for kind, name in POLICY_STATS_FILES.items()}
                write_json(paths["json"], {"prune_threshold": config.prune_threshold,
                                           "score_function": config.score_function, "layers": stats})
                write_csv(paths["csv"], stats)
                policy_stats_plot(stats, paths["png"], config.prune_threshold,
                                  title=f"{args.model_name}: {config.score_function}")
            print("wrote " + ", ".join(os.path.join(args.output_dir, name) for name in POLICY_STATS_FILES.values()))
    return 0


def run_calibrate(args: CalibrateArguments) -> int:
    with args.results_folder() as output:  # held before any work
        model, device = load_placed_model(args)
        batches = policy_batches(args, model, "train")
        result = calibrate_threshold(model, batches, args.target_prune_fraction, device, progress=args.progress)
        print(f"prune_threshold = {result.prune_threshold:.6g}  (pruned {result.achieved_prune_fraction:.1%} of "
              f"decisions, target {result.target_prune_fraction:.1%}, {result.steps} search steps)")
        for layer in result.per_layer_fraction_pruned:
            print(f"  layer {layer}: pruned {result.per_layer_fraction_pruned[layer]:.1%}; this layer alone would "
                  f"need tau = {result.per_layer_quantile_threshold[layer]:.4g}")
        print(f"use: --prune_threshold {result.prune_threshold:.6g}  or  "
              f"model.configure_compression(prune_threshold={result.prune_threshold:.6g})")
        if output is not None:
            with output.staging() as staging:
                write_json(os.path.join(staging, CALIBRATION_FILE), result.to_dict())
    return 0


__all__ = [
    "CalibrateArguments",
    "CalibrationResult",
    "PolicyStatsArguments",
    "calibrate_threshold",
    "collect_policy_records",
    "overall_prune_fraction",
    "policy_statistics",
    "run_calibrate",
    "run_policy_stats",
]
