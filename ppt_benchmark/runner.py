# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""One benchmark run: baseline (compression off) vs PPT vs the stock `transformers` model, in the same process,
with interleaved timings. Used by `python benchmark.py` / `python -m ppt_benchmark`."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch

from .cost import analytic_cost, flop_count, relative_difference
from .models import PPT_DEFAULTS, build_stock_model, load_model
from .options import DTYPES, resolve_device, validate_common_options
from .report import fmt, format_table, machine_info, markdown_table, write_csv, write_json
from .speed import inference_step, peak_memory, time_interleaved, training_step

MODES = ("inference", "train")
FLOP_AGREEMENT_TOLERANCE = 0.01  # the spec: analytic and counted cost agree within 1%


@dataclass
class BenchmarkOptions:
    """Everything a run depends on (also written to the JSON output)."""

    arch: str | None = None
    checkpoint: str | None = None
    image_size: int | None = None  # default: 224 for --arch, the checkpoint's otherwise
    num_labels: int | None = None  # default: 1000 for --arch, the checkpoint's otherwise
    reduction_layers: list[int] | None = None
    tokens_removed: int | list[int] | None = None
    prune_threshold: float | None = None
    score_function: str | None = None
    mode: str = "inference"
    batch_size: int = 32
    dtype: str = "fp32"
    device: str = "auto"
    threads: int | None = None
    warmup: int = 2
    rounds: int = 5
    iterations: int = 1
    latency_rounds: int = 5
    latency_iterations: int = 3
    stock: bool = True
    compile: bool = False
    speed: bool = True
    memory: bool = True
    flop_check: bool = True
    dataset: str | None = None
    split: str | None = None
    max_eval_samples: int | None = None
    eval_batch_size: int = 64
    seed: int = 0
    progress: bool = True

    def validate(self) -> None:
        """Raise `ValueError` on bad input before any work starts."""
        validate_common_options(self)
        if self.mode not in MODES:
            raise ValueError(f"--mode {self.mode!r} is not one of {', '.join(MODES)}")

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def ppt_settings(self) -> dict:
        settings = {
            "reduction_layers": self.reduction_layers,
            "tokens_removed": self.tokens_removed,
            "prune_threshold": self.prune_threshold,
            "score_function": self.score_function,
        }
        return {key: value for key, value in settings.items() if value is not None}


def load_models(options: BenchmarkOptions):
    """(ppt_model, baseline_model) in eval mode, same weights; baseline = `reduction_layers=[]`."""
    settings = options.ppt_settings()
    model = load_model(arch=options.arch, checkpoint=options.checkpoint, image_size=options.image_size,
                       num_labels=options.num_labels, seed=options.seed, **settings)
    if options.checkpoint is not None and not model.config.compression_enabled and not settings:
        # A checkpoint saved without compression: measure the authors' default schedule against it.
        model.configure_compression(**PPT_DEFAULTS)
    baseline = copy.deepcopy(model)
    baseline.configure_compression(reduction_layers=[])
    return model, baseline


def _cost_entry(model, batch_pixel_values, analytic, options, check: bool) -> dict:
    entry = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs": analytic.macs,
        "flops": analytic.flops,
        "compression_macs": analytic.compression_macs,
        "tokens_per_layer": analytic.tokens_per_layer,
    }
    if check:
        counted = flop_count(model, batch_pixel_values)
        entry["counter_flops"] = counted.flops_per_image
        entry["counter_flops_by_operator"] = counted.by_operator
        entry["counter_vs_cost_model"] = relative_difference(counted.flops_per_image, analytic.flops)
        entry["counter_vs_cost_model_with_overhead"] = relative_difference(counted.flops_per_image, analytic.total_flops)
        if options.mode == "train":
            trained = copy.deepcopy(model).train()
            entry["counter_train_step_flops"] = flop_count(trained, batch_pixel_values, backward=True).flops_per_image
    return entry


def run_benchmark(options: BenchmarkOptions) -> dict:
    """Measure and return the results as a JSON-ready dict (see `print_report` / `save_report`)."""
    options.validate()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    device = options.resolved_device()
    dtype = DTYPES[options.dtype]
    started = time.time()

    ppt, baseline = load_models(options)
    config = ppt.config
    image_size = config.image_size
    models = {"baseline": baseline, "ppt": ppt}
    if options.stock:
        models["stock_sdpa"] = build_stock_model(baseline, attn_implementation="sdpa")

    # ---- cost (fp32, CPU-independent: counted on the real forward at batch 1) ----
    generator = torch.Generator().manual_seed(options.seed)
    one_image = torch.randn(1, config.num_channels, image_size, image_size, generator=generator)
    costs = {"baseline": analytic_cost(baseline.config), "ppt": analytic_cost(ppt.config)}
    costs["stock_sdpa"] = costs["baseline"]
    results: dict[str, dict] = {}
    for name, model in models.items():
        results[name] = _cost_entry(model, one_image, costs[name], options, options.flop_check)

    for model in models.values():
        model.to(device=device, dtype=dtype)

    # ---- accuracy ----
    if options.dataset is not None:
        from .accuracy import default_image_processor, evaluate_accuracy, load_eval_dataset

        dataset = load_eval_dataset(options.dataset, options.split, options.max_eval_samples, config.image_size)
        processor = default_image_processor(config, options.checkpoint)
        # the stock model too: with the same weights it must match the baseline (a check of the comparison)
        accuracy = evaluate_accuracy(models, dataset, processor, options.eval_batch_size, device, options.progress)
        for name, value in accuracy.items():
            results[name]["accuracy"] = value.to_dict()

    # ---- speed and memory ----
    pixel_values = torch.randn(
        options.batch_size, config.num_channels, image_size, image_size, generator=generator
    ).to(device=device, dtype=dtype)
    single = pixel_values[:1].clone()
    labels = torch.randint(0, max(config.num_labels, 1), (options.batch_size,), generator=generator).to(device)
    runnable = dict(models)
    if options.compile:
        for name, model in models.items():
            runnable[f"{name}_compiled"] = torch.compile(copy.deepcopy(model) if options.mode == "train" else model)
            results[f"{name}_compiled"] = dict(results[name])
    if options.mode == "train":
        runnable = {name: copy.deepcopy(model) for name, model in runnable.items()}
        steps = {name: training_step(model, pixel_values, labels) for name, model in runnable.items()}
    else:
        steps = {name: inference_step(model, pixel_values) for name, model in runnable.items()}

    if options.speed:
        timing = time_interleaved(
            steps, options.batch_size, device, options.warmup, options.rounds, options.iterations,
            options.progress, f"{options.mode} throughput",
        )
        for name, stats in timing.items():
            results[name]["throughput"] = stats.to_dict()
        if options.mode == "inference":
            latency_steps = {name: inference_step(model, single) for name, model in runnable.items()}
            latency = time_interleaved(
                latency_steps, 1, device, options.warmup, options.latency_rounds, options.latency_iterations,
                options.progress, "batch-1 latency",
            )
            for name, stats in latency.items():
                results[name]["latency_ms"] = {
                    "median": stats.median_latency_ms,
                    "min": 1000.0 / stats.maximum,
                    "max": 1000.0 / stats.minimum,
                }
    memory_method = None
    if options.memory:
        for name, step in steps.items():
            if name.endswith("_compiled"):
                continue  # the dispatcher-based CPU tracker cannot see inside compiled kernels
            measured = peak_memory(step, device, prime=not (options.speed and options.warmup > 0))
            results[name]["peak_memory_mib"] = measured.peak_mib
            memory_method = measured.method

    ratios = compute_ratios(results)
    return {
        "options": asdict(options),
        "machine": machine_info(device),
        "batch_size": options.batch_size,
        "torch_threads": torch.get_num_threads(),
        "dtype": options.dtype,
        "mode": options.mode,
        "image_size": image_size,
        "ppt_settings": {key: getattr(config, key) for key in ("reduction_layers", "tokens_removed", "prune_threshold", "score_function")},
        "memory_method": memory_method,
        "timing_method": (
            f"{options.warmup} warm-up calls per model, then {options.rounds} rounds; each round times every model "
            f"in turn (interleaved, order rotated every round) over {options.iterations} call(s); images/s median and "
            "[min, max]"
        ) if options.speed else None,  # --cost_only: nothing was timed
        "models": results,
        "ratios": ratios,
        "elapsed_seconds": time.time() - started,
    }


def compute_ratios(results: dict) -> dict:
    """`ppt` against `baseline` and `stock_sdpa` (and compiled against compiled): speed-up = throughput ratio."""
    ratios = {}
    pairs = [("ppt", "baseline"), ("ppt", "stock_sdpa"), ("ppt_compiled", "baseline_compiled"),
             ("ppt_compiled", "stock_sdpa_compiled"), ("ppt_compiled", "stock_sdpa")]
    for new, reference in pairs:
        if new not in results or reference not in results:
            continue
        a, b = results[new], results[reference]
        entry = {"macs_reduction_pct": 100.0 * (1 - a["macs"] / b["macs"])}
        if "throughput" in a and "throughput" in b:
            entry["speedup"] = a["throughput"]["median"] / b["throughput"]["median"]
        if "latency_ms" in a and "latency_ms" in b:
            entry["latency_speedup"] = b["latency_ms"]["median"] / a["latency_ms"]["median"]
        if "peak_memory_mib" in a and "peak_memory_mib" in b and b["peak_memory_mib"]:
            entry["memory_reduction_pct"] = 100.0 * (1 - a["peak_memory_mib"] / b["peak_memory_mib"])
        if "accuracy" in a and "accuracy" in b:
            entry["top1_change_points"] = 100.0 * (a["accuracy"]["top1"] - b["accuracy"]["top1"])
            if a["accuracy"]["top5"] is not None and b["accuracy"]["top5"] is not None:
                entry["top5_change_points"] = 100.0 * (a["accuracy"]["top5"] - b["accuracy"]["top5"])
        ratios[f"{new}_vs_{reference}"] = entry
    return ratios


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def _scaled(value, factor):
    return None if value is None else value * factor


def _rows(report: dict) -> tuple[list[str], list[list]]:
    models = report["models"]
    headers = ["model", "params (M)", "GMACs", "GFLOPs", "counter GFLOPs", "diff %", "img/s median", "[min, max]",
               "speed-up", "latency b1 (ms)", "peak mem (MiB)", "top-1 %", "top-5 %"]
    rows = []
    for name, entry in models.items():
        throughput = entry.get("throughput")
        reference = "baseline_compiled" if name.endswith("_compiled") and "baseline_compiled" in models else "baseline"
        speedup = None
        if throughput and "throughput" in models[reference]:
            speedup = throughput["median"] / models[reference]["throughput"]["median"]
        accuracy = entry.get("accuracy") or {}
        rows.append([
            name,
            fmt(entry["parameters"] / 1e6),
            fmt(entry["macs"] / 1e9, ".3f"),
            fmt(entry["flops"] / 1e9, ".3f"),
            fmt(_scaled(entry.get("counter_flops"), 1e-9), ".3f"),
            fmt(_scaled(entry.get("counter_vs_cost_model"), 100), ".3f"),
            fmt(throughput["median"] if throughput else None, ".1f"),
            f"[{throughput['min']:.1f}, {throughput['max']:.1f}]" if throughput else "-",
            f"{speedup:.2f}x" if speedup is not None else "-",
            fmt((entry.get("latency_ms") or {}).get("median"), ".1f"),
            fmt(entry.get("peak_memory_mib"), ".1f"),
            fmt(_scaled(accuracy.get("top1"), 100), ".2f"),
            fmt(_scaled(accuracy.get("top5"), 100), ".2f"),
        ])
    return headers, rows


def format_report(report: dict) -> str:
    """The console view: settings, one row per model, the ratios, tokens per layer and the methods."""
    machine = report["machine"]
    settings = report["ppt_settings"]
    options = report["options"]
    lines = [
        f"PPT-DeiT benchmark  mode={report['mode']}  model={options['arch'] or options['checkpoint']}  "
        f"image_size={report['image_size']}  batch_size={report['batch_size']}  dtype={report['dtype']}",
        f"machine: {machine['cpu']}  ({machine['logical_cpus']} logical CPUs, torch threads={report['torch_threads']}, "
        f"device={machine['device']}{', ' + machine['gpu'] if 'gpu' in machine else ''})  torch {machine['torch']}, "
        f"transformers {machine.get('transformers', '?')}",
        f"PPT: reduction_layers={settings['reduction_layers']} tokens_removed={settings['tokens_removed']} "
        f"prune_threshold={settings['prune_threshold']:g} score_function={settings['score_function']}",
        "",
    ]
    headers, rows = _rows(report)
    lines.append(format_table(headers, rows))
    lines.append("")
    lines.append("MACs = multiply-accumulates per image from the spec's cost model (the paper's 'GFLOPs'); "
                 "GFLOPs = 2 x MACs; counter = torch.utils.flop_counter.FlopCounterMode on a real batch-1 forward "
                 "(includes the compression step's small matmuls), diff = |counter - 2*MACs| / (2*MACs).")
    for name, entry in report["models"].items():
        if entry.get("compression_macs"):
            lines.append(f"  {name}: compression-step matmuls (CLS row, bipartite similarity) = "
                         f"{entry['compression_macs'] / 1e6:.2f} MMACs/image, counted by the flop counter, not in GMACs")
    if report["mode"] == "train":
        for name, entry in report["models"].items():
            if "counter_train_step_flops" in entry:
                lines.append(f"  {name}: training step (forward + backward) = "
                             f"{entry['counter_train_step_flops'] / 1e9:.3f} GFLOPs/image by the flop counter")
    if report["mode"] == "inference" and report.get("memory_method"):
        lines.append("  inference peak memory is reached before the first reduction layer, where baseline and PPT hold "
                     "the same tokens; training keeps every layer's activations, so there PPT lowers the peak.")
    for key, value in report["ratios"].items():
        parts = [f"MACs -{value['macs_reduction_pct']:.1f}%"]
        if "speedup" in value:
            parts.append(f"throughput speed-up {value['speedup']:.2f}x")
        if "latency_speedup" in value:
            parts.append(f"batch-1 latency speed-up {value['latency_speedup']:.2f}x")
        if "memory_reduction_pct" in value:
            parts.append(f"peak memory {-value['memory_reduction_pct']:+.1f}%")
        if "top1_change_points" in value:
            parts.append(f"top-1 {value['top1_change_points']:+.2f} pts")
        lines.append(f"{key}: " + ", ".join(parts))
    ppt_tokens = report["models"]["ppt"]["tokens_per_layer"]
    lines.append("tokens per layer (attention/MLP), PPT: " + " ".join(
        f"{n}" if n == m else f"{n}/{m}" for n, m in ppt_tokens))
    if report.get("timing_method"):
        lines.append(f"timing: {report['timing_method']}")
    if report.get("memory_method"):
        lines.append(f"peak memory: {report['memory_method']}")
    return "\n".join(lines)


def flat_rows(report: dict) -> list[dict]:
    rows = []
    for name, entry in report["models"].items():
        throughput = entry.get("throughput") or {}
        accuracy = entry.get("accuracy") or {}
        rows.append({
            "model": name,
            "mode": report["mode"],
            "image_size": report["image_size"],
            "batch_size": report["batch_size"],
            "dtype": report["dtype"],
            "torch_threads": report["torch_threads"],
            "parameters": entry["parameters"],
            "macs": entry["macs"],
            "flops": entry["flops"],
            "counter_flops": entry.get("counter_flops"),
            "counter_vs_cost_model": entry.get("counter_vs_cost_model"),
            "images_per_second_median": throughput.get("median"),
            "images_per_second_min": throughput.get("min"),
            "images_per_second_max": throughput.get("max"),
            "latency_ms_median": (entry.get("latency_ms") or {}).get("median"),
            "peak_memory_mib": entry.get("peak_memory_mib"),
            "top1": accuracy.get("top1"),
            "top5": accuracy.get("top5"),
            "tokens_per_layer": " ".join(f"{n}/{m}" for n, m in entry["tokens_per_layer"]),
        })
    return rows


def save_report(report: dict, output_dir: str, prefix: str = "benchmark") -> dict[str, str]:
    """Write `<prefix>.json`, `<prefix>.csv` and `<prefix>.md` into `output_dir`; return their paths."""
    import os

    paths = {ext: os.path.join(output_dir, f"{prefix}.{ext}") for ext in ("json", "csv", "md")}
    write_json(paths["json"], report)
    write_csv(paths["csv"], flat_rows(report))
    headers, rows = _rows(report)
    from .report import atomic_write_text

    atomic_write_text(paths["md"], markdown_table(headers, rows) + "\n")
    return paths


__all__ = ["BenchmarkOptions", "compute_ratios", "format_report", "run_benchmark", "save_report"]
