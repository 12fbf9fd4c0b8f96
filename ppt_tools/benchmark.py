#!/usr/bin/env python
# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Measure PPT-DeiT against its own uncompressed baseline (the same weights, compression off) and the stock
`transformers` ViT/DeiT with SDPA attention (the same weights again), in one process.

    python benchmark.py --arch deit-small --batch_size 32 --output_dir outputs/bench    # inference
    python benchmark.py --arch deit-small --mode train                                  # a training step
    python benchmark.py --arch deit-small --compile                                     # + torch.compile
    python benchmark.py --arch deit-base --image_size 384 --cost_only                   # MACs only
    python benchmark.py --arch deit-small --mode step_cost                              # the compression step
    python benchmark.py --arch deit-small --backend onnxruntime --threads 2            # + ONNX Runtime
    python benchmark.py --model_name_or_path outputs/digits --dataset_name digits               # + top-1 / top-5

    # accuracy over several processes (each image evaluated once, results gathered); streaming for large data
    accelerate launch --num_processes 4 benchmark.py --model_name_or_path facebook/deit-small-patch16-224 \
        --dataset_name ILSVRC/imagenet-1k --eval_split_name validation --streaming --cost_only

Per model: parameters; MACs per image from the cost model (the paper's "GFLOPs") and FLOPs = 2 x MACs; the
`torch.utils.flop_counter` count of a real forward and its difference from the cost model; tokens per layer;
throughput (images/s, median and [min, max] over rounds); batch-1 latency; peak memory; top-1 / top-5 with
`--dataset_name`. Then the ratios PPT / baseline and PPT / stock.

How it measures:
- Timing: the models are interleaved, and the order is rotated every round (a fixed order biased the first model
  by about 3% here), after untimed warm-up calls. Every timing keeps its spread and the load average around it;
  a noisy one (rounds spread too far, a single round, or a busy machine: `ppt_tools.core.timing`) and every
  speed-up from it are marked `~` in the table, with a note line per reason, and `noisy` / `noise` in the JSON.
- FLOP counting: the counter does not know the CPU SDPA kernel, so torch's own SDPA formula is registered for it
  (`ppt_tools.core.cost`); the compression step's small matmuls are reported apart.
- CPU peak memory: live tensor storages created during one call (a lower bound: no kernel scratch buffers, no
  allocator caching); on CUDA, `max_memory_allocated`.
- `--backend onnxruntime`: PPT and the stock model (the same weights) are exported the same way
  (`ppt_tools.export.onnx`: torch's dynamo exporter, dynamic batch), checked against PyTorch, and timed in ONNX
  Runtime sessions with `--threads` intra-op threads, interleaved with the eager models in the same rounds
  (`ppt_onnx`, `stock_onnx`; their ratio is `ppt_onnx_vs_stock_onnx`). Needs `pip install ".[onnx]"`.
- `--mode step_cost`: the compression step alone (`PPTDeiTLayer.compression_step`, the model's own) against the
  whole layer it sits in, at the first reduction layer; and that layer at every token count of the schedule, with
  the free-step ceiling it implies.
- Several processes (`accelerate launch --num_processes N`) share the accuracy evaluation; timing is refused there
  (the processes would time their contention), so such runs take `--cost_only`.

One runner per mode (`RUNNERS`: run, table, notes) fills one dict (`benchmark`), printed and written as
`benchmark_<mode>.json|csv|md` by the one writer (`write_results`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from transformers.utils import logging as transformers_logging

from modeling_ppt_deit import PPTDeiTConfig
from ppt_tools.core.accuracy import evaluate_accuracy, this_process_share
from ppt_tools.core.arguments import (
    DatasetArguments,
    MachineArguments,
    ModelSourceArguments,
    OutputArguments,
    PPTArguments,
    check_at_least,
    parse_into,
    run_command,
)
from ppt_tools.core.cost import analytic_cost, baseline_cost, flop_count, relative_difference
from ppt_tools.core.data import load_prepared, num_rows
from ppt_tools.core.models import build_stock_model, load_model
from ppt_tools.export.onnx import (
    FINGERPRINT_KEY,
    check_onnx_packages,
    check_opset,
    export_fingerprint,
    export_onnx,
    export_stock_classifier,
    file_metadata,
    max_difference,
    onnx_runner,
    onnx_session,
    operator_counts,
)
from ppt_tools.core.preprocessing import eval_batches, load_image_processor
from ppt_tools.core.results import (
    describe_machine,
    fmt,
    format_table,
    machine_done,
    machine_info,
    markdown_table,
    write_csv,
    write_json,
    write_text,
)
from ppt_tools.core.timing import SPREAD_LIMIT, inference_step, noise_of, peak_memory, time_interleaved


FLOP_AGREEMENT_TOLERANCE = 0.01  # the cost model and the flop counter must agree within 1%


RESULT_EXTENSIONS = (".json", ".csv", ".md")  # benchmark_<mode>.json|csv|md, the files write_results writes


@dataclass
class BenchmarkArguments(OutputArguments, DatasetArguments, MachineArguments, PPTArguments, ModelSourceArguments):
    """Measure PPT-DeiT against its uncompressed baseline and the stock transformers ViT (see the module doc)."""

    mode: Literal["inference", "train", "step_cost"] = field(default="inference", metadata={
        "help": "inference: forward passes; train: forward + backward + AdamW steps; step_cost: the compression "
                "step against its layer."})
    batch_size: int = field(default=32, metadata={"help": "Images per timed call."})
    warmup: int = field(default=2, metadata={"help": "Untimed calls per model first."})
    rounds: int = field(default=5, metadata={"help": "Timed rounds, interleaved across models."})
    iterations: int = field(default=1, metadata={"help": "Calls per timed measurement."})
    latency_rounds: int = field(default=5, metadata={"help": "Timed rounds of batch-1 latency (inference)."})
    latency_iterations: int = field(default=3, metadata={"help": "Calls per batch-1 latency measurement."})
    stock: bool = field(default=True, metadata={"help": "Also measure the stock transformers model (sdpa)."})
    compile: bool = field(default=False, metadata={"help": "Also time torch.compile'd models."})
    cost_only: bool = field(default=False, metadata={"help": "Parameters, MACs and the flop-counter check only."})
    memory: bool = field(default=True, metadata={"help": "Measure peak memory."})
    flop_check: bool = field(default=True, metadata={"help": "Count FLOPs of a real forward with torch's counter."})
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size of the accuracy evaluation."})
    progress: bool = field(default=True, metadata={"help": "Progress bars (--no_progress: none, also transformers')."})
    backend: Literal["pytorch", "onnxruntime"] = field(default="pytorch", metadata={
        "help": "pytorch: eager (and --compile). onnxruntime: also export PPT and the stock model to ONNX (the same "
                "weights, the same exporter) and time both in ONNX Runtime, interleaved with the eager models "
                "(needs pip install \".[onnx]\")."})
    onnx_dir: str | None = field(default=None, metadata={
        "help": "With --backend onnxruntime: write ppt.onnx / stock.onnx here (created if needed) and reuse them on later runs when they "
                "were exported from the same weights, settings and opset (default: a temporary folder)."})
    onnx_opset: int = field(default=18, metadata={"help": "With --backend onnxruntime: the ONNX opset (18..22)."})
    onnx_graph_report: bool = field(default=False, metadata={
        "help": "With --backend onnxruntime: count the operators of both graphs after ONNX Runtime's optimisation."})

    def output_files(self) -> list[str]:
        return [f"benchmark_{self.mode}{extension}" for extension in RESULT_EXTENSIONS]

    def validate(self) -> None:
        check_at_least(self, 1, "batch_size", "rounds", "iterations", "latency_rounds", "latency_iterations",
                       "eval_batch_size")
        check_at_least(self, 0, "warmup")
        processes = self.processes.num_processes
        if processes > 1 and (self.mode != "inference" or not self.cost_only or self.dataset_name is None):
            raise ValueError(f"{processes} processes share an accuracy evaluation only: give --dataset_name and "
                             "--cost_only (timing several processes at once would measure their contention)")
        if self.backend == "onnxruntime":
            check_onnx_backend(self)
        elif self.onnx_dir is not None or self.onnx_graph_report:
            raise ValueError("--onnx_dir and --onnx_graph_report belong to --backend onnxruntime")


def check_onnx_backend(args: BenchmarkArguments) -> None:
    """What --backend onnxruntime needs: inference timing, the stock comparator, fp32, the optional packages."""
    if args.mode != "inference" or args.cost_only:
        what = "--cost_only" if args.cost_only else f"--mode {args.mode}"
        raise ValueError(f"--backend onnxruntime times inference; it cannot run with {what}")
    if not args.stock:
        raise ValueError("--backend onnxruntime compares PPT with the stock model in ONNX Runtime: drop --no_stock")
    if args.dtype != "fp32":
        raise ValueError(f"--backend onnxruntime exports fp32 graphs; got --dtype {args.dtype}")
    if args.onnx_dir is not None and os.path.exists(args.onnx_dir) and not os.path.isdir(args.onnx_dir):
        raise ValueError(f"--onnx_dir {args.onnx_dir!r} exists and is not a folder")
    check_onnx_packages("--backend onnxruntime")  # imported on the backend's path only: eager runs need none
    check_opset(args.onnx_opset)


# ---- the models -------------------------------------------------------------------------------------------------------


def build_models(args: BenchmarkArguments) -> dict[str, torch.nn.Module]:
    """`ppt`, its `baseline` (a copy with compression off) and, unless `--no_stock`, `stock_sdpa`; eval mode, on
    the CPU in fp32 (the cost is counted there)."""
    settings = args.ppt_settings()
    ppt = load_model(args, settings)
    if not ppt.config.compression_enabled and not settings:
        # A checkpoint trained with compression off: measure the authors' schedule against it.
        try:
            ppt.configure_compression(**PPTDeiTConfig.compression_defaults())
        except ValueError as error:
            raise ValueError(f"{args.model_name} has compression off and the default schedule does not fit it "
                             f"({error}); give --reduction_layers and --tokens_removed") from None
    baseline = copy.deepcopy(ppt)
    baseline.configure_compression(reduction_layers=[])
    models = {"baseline": baseline, "ppt": ppt}
    if args.stock:
        models["stock_sdpa"] = build_stock_model(baseline, attn_implementation="sdpa")
    return models


def training_step(model: torch.nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor):
    """One optimisation step as a zero-argument callable (forward with labels, backward, AdamW, zero_grad) for the
    interleaved timer, which cannot drive Trainer's loop. Puts `model` in train mode."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        loss = model(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


# ---- measurements -----------------------------------------------------------------------------------------------------


ONNX_MODELS = {"ppt_onnx": "ppt", "stock_onnx": "stock_sdpa"}  # ONNX Runtime model -> the PyTorch model exported
# Untimed pause before each measurement in a run with ONNX Runtime sessions. After a run, ONNX Runtime's threads spin
# for a while on the cores the next model needs, which would slow whichever model is timed next. Turning the spinning
# off instead would cost every parallel operator a thread wake-up, which no server pays (docs/RESULTS.md).
ONNX_SETTLE_SECONDS = 0.05


def export_for_onnxruntime(models: dict, args: BenchmarkArguments, folder: str) -> dict:
    """Export `ppt` and `stock_sdpa` (CPU, fp32, the same weights) to `folder`/ppt.onnx and stock.onnx, or reuse
    the files there when their fingerprint (weights, config, opset, torch) matches. A file there that this tool
    did not write (no fingerprint) is never replaced. Returns how each file was obtained."""
    exporters = {"ppt_onnx": export_onnx, "stock_onnx": export_stock_classifier}
    report = {}
    for name, source in ONNX_MODELS.items():
        path = os.path.join(folder, name.removesuffix("_onnx") + ".onnx")
        fingerprint = export_fingerprint(models[source], args.onnx_opset)
        existing = None
        if os.path.exists(path):
            try:
                existing = file_metadata(path).get(FINGERPRINT_KEY)
            except ValueError:
                existing = None
        if os.path.exists(path) and existing is None:
            raise ValueError(f"{path!r} exists and was not written by benchmark.py (no {FINGERPRINT_KEY}); it is "
                             "left as it is: give another --onnx_dir")
        started = time.perf_counter()
        reused = existing == fingerprint
        if not reused:
            exporters[name](models[source], path, args.onnx_opset, overwrite=existing is not None,
                            metadata={FINGERPRINT_KEY: fingerprint})
        report[name] = {"path": path, "reused": reused, "export_seconds": time.perf_counter() - started}
    return report


def onnxruntime_sessions(models: dict, args: BenchmarkArguments, device, folder: str) -> tuple[dict, dict]:
    """ONNX Runtime sessions of `ppt` and `stock_sdpa` (exported into `folder`), checked against PyTorch on two
    images: name -> session, and what to record about them."""
    import onnxruntime

    files = export_for_onnxruntime(models, args, folder)
    threads = args.threads or torch.get_num_threads()
    # Thread pools that spin between runs, as ONNX Runtime's do by default and as a server runs them. The rounds
    # pause before each measurement (ONNX_SETTLE_SECONDS) so that no pool still spins while the next model runs.
    sessions = {name: onnx_session(entry["path"], threads=threads, device=device) for name, entry in files.items()}
    config = models["ppt"].config
    check = torch.randn(2, config.num_channels, config.image_size, config.image_size,
                        generator=torch.Generator().manual_seed(args.seed + 1))
    info = {
        "onnxruntime_version": onnxruntime.__version__,
        "providers": sessions["ppt_onnx"].get_providers(),
        "intra_op_threads": threads,
        "opset": args.onnx_opset,
        "files": files,
        "max_abs_logits_difference_vs_pytorch": {
            name: max_difference(models[ONNX_MODELS[name]], session, check) for name, session in sessions.items()},
    }
    if args.onnx_graph_report:
        info["operators_after_ort_optimisation"] = {}
        for name, entry in files.items():
            optimized = entry["path"].removesuffix(".onnx") + ".ort-optimized.onnx"
            onnx_session(entry["path"], threads=threads, device=device, optimized_model_path=optimized)
            info["operators_after_ort_optimisation"][name] = dict(operator_counts(optimized).most_common())
    return sessions, info


def measure_cost(model, cost, one_image: torch.Tensor, args: BenchmarkArguments) -> dict:
    entry = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs": cost.macs,
        "flops": cost.flops,
        "compression_macs": cost.compression_macs,
        "tokens_per_layer": cost.tokens_per_layer,
    }
    if args.flop_check:
        # Two copies of the image: the batch path, whose cost the cost model describes (at batch 1 on the CPU a
        # pruned image skips the bipartite matching, so its count would fall short of the cost model's overhead).
        counted = flop_count(model, one_image.expand(2, *one_image.shape[1:]))
        entry["counter_flops"] = counted.flops_per_image
        entry["counter_flops_by_operator"] = counted.by_operator
        entry["counter_vs_cost_model"] = relative_difference(counted.flops_per_image, cost.flops)
        entry["counter_vs_cost_model_with_overhead"] = relative_difference(counted.flops_per_image, cost.total_flops)
    return entry


def measure_accuracy(models: dict, args: BenchmarkArguments, device) -> dict:
    """Top-1 / top-5 of every model on `--dataset_name`'s evaluation split, preprocessed by the checkpoint's own
    image processor. The stock model too: with the same weights it must equal the baseline (a check of the
    comparison itself)."""
    config = models["ppt"].config
    data = load_prepared(args, digits_size=config.image_size)
    processor = load_image_processor(args.model_name_or_path, config.image_size)
    share = this_process_share(data.eval)
    batches = eval_batches(share, processor, data.image_column, data.label_column, args.eval_batch_size)
    rows = num_rows(data.eval)
    total = None if rows is None else -(-min(rows, args.max_eval_samples or rows) // args.processes.num_processes)
    accuracy = evaluate_accuracy(models, batches, config.num_labels, device, args.progress, total)
    return {name: {**result.to_dict(), "split": data.eval_split_name} for name, result in accuracy.items()}


def inference_steps(models: dict, onnx_sessions: dict, pixel_values: torch.Tensor) -> dict:
    """name -> one forward on `pixel_values`, for the PyTorch models and the ONNX Runtime sessions alike."""
    steps = {name: inference_step(model, pixel_values) for name, model in models.items()}
    if onnx_sessions:
        steps.update({name: onnx_runner(session, pixel_values) for name, session in onnx_sessions.items()})
    return steps


def fit_fixed_and_per_token(ms_by_tokens: dict[int, float]) -> dict | None:
    """Least-squares `ms = fixed_ms + per_token_ms * tokens` over the measured token counts (None with fewer than
    two): the fixed part (weights read from memory, kernel launches, Python) is paid at any token count."""
    if len(ms_by_tokens) < 2:
        return None
    counts, times = list(ms_by_tokens), list(ms_by_tokens.values())
    mean_count, mean_time = sum(counts) / len(counts), sum(times) / len(times)
    per_token = (sum((n - mean_count) * (t - mean_time) for n, t in zip(counts, times))
                 / sum((n - mean_count) ** 2 for n in counts))
    fixed = mean_time - per_token * mean_count
    largest = max(counts)
    return {"fixed_ms": fixed, "per_token_ms": per_token,
            "fixed_share_at_most_tokens": fixed / (fixed + per_token * largest)}


def compute_ratios(models: dict) -> dict:
    """`ppt` against `baseline` and `stock_sdpa` (compiled against compiled): speed-up = throughput ratio. A speed-up
    of a noisy timing is noisy: `speedup_noise` / `latency_speedup_noise` give the reasons, `noisy` any of them."""
    ratios = {}
    pairs = [("ppt", "baseline"), ("ppt", "stock_sdpa"), ("ppt_compiled", "baseline_compiled"),
             ("ppt_compiled", "stock_sdpa_compiled"), ("ppt_compiled", "stock_sdpa"), ("ppt_onnx", "stock_onnx")]
    for new, reference in pairs:
        if new not in models or reference not in models:
            continue
        a, b = models[new], models[reference]
        entry = {"macs_reduction_pct": 100.0 * (1 - a["macs"] / b["macs"])}
        if "throughput" in a and "throughput" in b:
            entry["speedup"] = a["throughput"]["median"] / b["throughput"]["median"]
            entry["speedup_noise"] = noise_of({new: a["throughput"], reference: b["throughput"]})
        if "latency_ms" in a and "latency_ms" in b:
            entry["latency_speedup"] = b["latency_ms"]["median"] / a["latency_ms"]["median"]
            entry["latency_speedup_noise"] = noise_of({new: a["latency_ms"], reference: b["latency_ms"]})
        if "speedup" in entry:
            entry["noisy"] = bool(entry["speedup_noise"] or entry.get("latency_speedup_noise"))
        if a.get("peak_memory_mib") is not None and b.get("peak_memory_mib"):
            entry["memory_reduction_pct"] = 100.0 * (1 - a["peak_memory_mib"] / b["peak_memory_mib"])
        if "accuracy" in a and "accuracy" in b:
            entry["top1_change_points"] = 100.0 * (a["accuracy"]["top1"] - b["accuracy"]["top1"])
            if a["accuracy"]["top5"] is not None and b["accuracy"]["top5"] is not None:
                entry["top5_change_points"] = 100.0 * (a["accuracy"]["top5"] - b["accuracy"]["top5"])
        ratios[f"{new}_vs_{reference}"] = entry
    return ratios


def marked(value, spec: str, noise) -> str:
    """A timing figure for the table: `~` in front when it is noisy."""
    return fmt(value, spec) if value is None or not noise else "~" + fmt(value, spec)


def noise_lines(figures: dict) -> list[str]:
    """Figure name -> its timing (a `TimingStats.to_dict()`, or None): one note line per reason, `~ noisy <the
    figures it applies to>: <reason>`."""
    return [f"~ noisy {line}" for line in noise_of({name: timing for name, timing in figures.items() if timing})]


# ---- the runners: one per mode ------------------------------------------------------------------------------------------


class ModelRunner:
    """Modes that measure whole models (inference, train): every model's parameters, MACs and flop count; top-1 /
    top-5 with --dataset_name; throughput, interleaved; peak memory; then the ratios. A subclass says what one timed
    call is (`steps`) and what else its mode measures."""

    def run(self, args: BenchmarkArguments, models: dict, results: dict) -> None:
        device = args.torch_device
        config = models["ppt"].config
        # Cost: counted in fp32 on the CPU at batch 1, before the models move.
        one_image = torch.randn(1, config.num_channels, config.image_size, config.image_size,
                                generator=torch.Generator().manual_seed(args.seed))
        costs = {"baseline": analytic_cost(models["baseline"].config), "ppt": analytic_cost(config)}
        costs["stock_sdpa"] = costs["baseline"]
        measured = {}
        for name, model in models.items():
            measured[name] = measure_cost(model, costs[name], one_image, args)
            if args.flop_check:
                measured[name].update(self.extra_cost(model, one_image))
        with tempfile.TemporaryDirectory(prefix="ppt-onnx-") as temporary:
            onnx_sessions = {}
            if args.backend == "onnxruntime":  # exported on the CPU in fp32, before the models move
                if args.onnx_dir is not None:
                    os.makedirs(args.onnx_dir, exist_ok=True)
                onnx_sessions, results["onnxruntime"] = onnxruntime_sessions(models, args, device,
                                                                             args.onnx_dir or temporary)
                for name, source in ONNX_MODELS.items():
                    measured[name] = {key: measured[source][key] for key in
                                      ("parameters", "macs", "flops", "tokens_per_layer")}
            models = {name: args.place(model) for name, model in models.items()}

            if args.dataset_name is not None:
                for name, accuracy in measure_accuracy(models, args, device).items():
                    measured[name]["accuracy"] = accuracy
            methods = {"timing_method": None, "memory_method": None}
            if not args.cost_only:
                methods = self.measure_speed(models, args, measured, onnx_sessions)
            del onnx_sessions  # the sessions hold the files open: closed before the temporary folder goes
        results.update(methods)
        results["models"] = measured
        results["ratios"] = compute_ratios(measured)

    def extra_cost(self, model, one_image: torch.Tensor) -> dict:
        """What this mode adds to a model's flop count."""
        return {}

    def steps(self, models: dict, onnx_sessions: dict, pixel_values: torch.Tensor, labels: torch.Tensor) -> dict:
        raise NotImplementedError

    def extra_timings(self, models: dict, onnx_sessions: dict, pixel_values: torch.Tensor, args, settle: float,
                      results: dict) -> None:
        """Timings this mode takes besides the throughput, into `results[name]`."""

    def measure_speed(self, models: dict, args: BenchmarkArguments, results: dict, onnx_sessions: dict) -> dict:
        """Throughput (and what `extra_timings` adds), interleaved; then peak memory of one call per model. Adds to
        `results[name]`; returns how the timing was done. `onnx_sessions` (name -> ONNX Runtime session) are timed
        in the same rounds as the PyTorch models."""
        device, config = args.torch_device, models["ppt"].config
        generator = torch.Generator().manual_seed(args.seed)
        pixel_values = torch.randn(args.batch_size, config.num_channels, config.image_size, config.image_size,
                                   generator=generator).to(device=device, dtype=args.torch_dtype)
        labels = torch.randint(0, max(config.num_labels, 1), (args.batch_size,), generator=generator).to(device)
        runnable = dict(models)
        if args.compile:
            for name, model in models.items():
                runnable[f"{name}_compiled"] = torch.compile(model)
                results[f"{name}_compiled"] = dict(results[name])
        steps = self.steps(runnable, onnx_sessions, pixel_values, labels)
        settle = ONNX_SETTLE_SECONDS if onnx_sessions else 0.0
        threads = args.threads or torch.get_num_threads()
        timing = time_interleaved(steps, args.batch_size, device, args.warmup, args.rounds, args.iterations,
                                  args.progress, f"{args.mode} throughput", settle, threads)
        for name, stats in timing.items():
            results[name]["throughput"] = stats.to_dict()
        self.extra_timings(runnable, onnx_sessions, pixel_values, args, settle, results)
        memory_method = None
        if args.memory:
            for name, step in steps.items():
                if name.endswith("_compiled") or name in onnx_sessions:
                    continue  # the dispatcher-based CPU tracker cannot see inside compiled kernels or ONNX Runtime
                measured = peak_memory(step, device, prime=args.warmup == 0)
                results[name]["peak_memory_mib"] = measured.peak_mib
                memory_method = measured.method
        return {
            "timing_method": (f"{args.warmup} warm-up calls per model, then {args.rounds} rounds; each round times "
                              f"every model in turn (interleaved, order rotated every round) over {args.iterations} "
                              "call(s); images/s median and [min, max]; noisy (~) when the rounds' interquartile "
                              f"range exceeds {100 * SPREAD_LIMIT:.0f}% of the median, or the 1-minute load average "
                              f"left fewer free CPUs than the {threads} thread(s) measured"
                              + (f"; an untimed {1000 * settle:.0f} ms pause before each measurement, for ONNX "
                                 "Runtime's threads to stop spinning" if settle else "")),
            "memory_method": memory_method,
        }

    def table(self, results: dict) -> tuple[list[str], list[list]]:
        """A row per model; a noisy timing figure (and a speed-up from one) is marked `~`."""
        headers = ["model", "params (M)", "GMACs", "GFLOPs", "counter GFLOPs", "diff %", "img/s median",
                   "[min, max]", "speed-up", "latency b1 (ms)", "peak mem (MiB)", "top-1 %", "top-5 %"]
        models = results["models"]
        rows = []
        for name, entry in models.items():
            throughput = entry.get("throughput")
            reference = "baseline_compiled" if name.endswith("_compiled") and "baseline_compiled" in models \
                else "baseline"
            if name.endswith("_onnx"):
                reference = "stock_onnx"  # there is no ONNX baseline: ONNX rows are compared with the stock graph
            speedup, speedup_noise = None, None
            if throughput and "throughput" in models[reference]:
                speedup = throughput["median"] / models[reference]["throughput"]["median"]
                speedup_noise = noise_of({name: throughput, reference: models[reference]["throughput"]})
            latency = entry.get("latency_ms") or {}
            accuracy = entry.get("accuracy") or {}
            counter = entry.get("counter_flops")
            rows.append([
                name,
                fmt(entry["parameters"] / 1e6),
                fmt(entry["macs"] / 1e9, ".3f"),
                fmt(entry["flops"] / 1e9, ".3f"),
                fmt(None if counter is None else counter / 1e9, ".3f"),
                fmt(None if counter is None else 100 * entry["counter_vs_cost_model"], ".3f"),
                marked(throughput["median"] if throughput else None, ".1f", (throughput or {}).get("noise")),
                f"[{throughput['min']:.1f}, {throughput['max']:.1f}]" if throughput else "-",
                marked(speedup, ".2f", speedup_noise),
                marked(latency.get("median"), ".1f", latency.get("noise")),
                fmt(entry.get("peak_memory_mib"), ".1f"),
                fmt(None if accuracy.get("top1") is None else 100 * accuracy["top1"], ".2f"),
                fmt(None if accuracy.get("top5") is None else 100 * accuracy["top5"], ".2f"),
            ])
        return headers, rows

    def notes(self, results: dict) -> list[str]:
        """What the table's numbers mean and how they were measured."""
        lines = ["MACs = multiply-accumulates per image from the cost model (the paper's 'GFLOPs'); GFLOPs = "
                 "2 x MACs; counter = torch.utils.flop_counter on a real forward (per image, batch path); diff = "
                 "|counter - 2*MACs| / 2*MACs."]
        for name, entry in results["models"].items():
            if entry.get("compression_macs"):
                lines.append(f"{name}: the compression step's matmuls (CLS row, bipartite similarity) add "
                             f"{entry['compression_macs'] / 1e6:.2f} MMACs/image, seen by the counter, not in GMACs")
            if "counter_train_step_flops" in entry:
                lines.append(f"{name}: a training step (forward + backward) = "
                             f"{entry['counter_train_step_flops'] / 1e9:.3f} GFLOPs/image by the flop counter")
        lines += self.mode_notes(results)
        for key, value in results["ratios"].items():
            parts = [f"MACs -{value['macs_reduction_pct']:.1f}%"]
            if "speedup" in value:
                parts.append(f"throughput speed-up {'~' if value['speedup_noise'] else ''}{value['speedup']:.2f}x")
            if "latency_speedup" in value:
                parts.append(f"batch-1 latency speed-up {'~' if value['latency_speedup_noise'] else ''}"
                             f"{value['latency_speedup']:.2f}x")
            if "memory_reduction_pct" in value:
                parts.append(f"peak memory {-value['memory_reduction_pct']:+.1f}%")
            if "top1_change_points" in value:
                parts.append(f"top-1 {value['top1_change_points']:+.2f} pts")
            lines.append(f"{key}: " + ", ".join(parts))
        lines.append("tokens per layer (attention/MLP), PPT: " + " ".join(
            str(n) if n == m else f"{n}/{m}" for n, m in results["models"]["ppt"]["tokens_per_layer"]))
        onnx = results.get("onnxruntime")
        if onnx:
            reused = [name for name, entry in onnx["files"].items() if entry["reused"]]
            lines.append(f"ONNX Runtime {onnx['onnxruntime_version']} ({onnx['providers'][0]}, "
                         f"{onnx['intra_op_threads']} intra-op threads, opset {onnx['opset']}"
                         f"{', reused: ' + ', '.join(reused) if reused else ''}): ppt_onnx / stock_onnx are ppt / "
                         "stock_sdpa exported with ppt_tools.export.onnx; max |logits - PyTorch| "
                         + ", ".join(f"{name} {value:.1e}" for name, value in
                                     onnx["max_abs_logits_difference_vs_pytorch"].items())
                         + "; their speed-up column is against stock_onnx")
            for name, counts in (onnx.get("operators_after_ort_optimisation") or {}).items():
                lines.append(f"{name} after ONNX Runtime's optimisation: {sum(counts.values())} nodes: "
                             + ", ".join(f"{op} {count}" for op, count in counts.items()))
        for key in ("timing_method", "memory_method"):
            if results.get(key):
                lines.append(f"{key.replace('_method', '')}: {results[key]}")
        figures = {}
        for name, entry in results["models"].items():
            figures[f"{name} throughput"] = entry.get("throughput")
            figures[f"{name} latency"] = entry.get("latency_ms")
        return lines + noise_lines(figures)

    def mode_notes(self, results: dict) -> list[str]:
        return []


class InferenceRunner(ModelRunner):
    """Forward passes (PyTorch, and ONNX Runtime with --backend onnxruntime); also batch-1 latency."""

    def steps(self, models, onnx_sessions, pixel_values, labels):
        return inference_steps(models, onnx_sessions, pixel_values)

    def extra_timings(self, models, onnx_sessions, pixel_values, args, settle, results):
        single = pixel_values[:1].clone()
        latency = time_interleaved(inference_steps(models, onnx_sessions, single), 1, args.torch_device, args.warmup,
                                   args.latency_rounds, args.latency_iterations, args.progress, "batch-1 latency",
                                   settle, args.threads or torch.get_num_threads())
        for name, stats in latency.items():
            fastest, slowest = stats.latency_range_ms
            results[name]["latency_ms"] = {"median": stats.median_latency_ms, "min": fastest, "max": slowest,
                                           "spread": stats.spread,
                                           "noisy": stats.noisy, "noise": stats.noise}

    def mode_notes(self, results):
        if not results.get("memory_method"):
            return []
        return ["inference peak memory is reached before the first reduction layer, where baseline and PPT hold the "
                "same tokens; training keeps every layer's activations, so there PPT lowers the peak"]


class TrainRunner(ModelRunner):
    """Training steps (forward with labels, backward, AdamW), each model on its own copy; the flop count adds a
    training step's."""

    def extra_cost(self, model, one_image):
        trained = copy.deepcopy(model).train()
        return {"counter_train_step_flops": flop_count(trained, one_image, backward=True).flops_per_image}

    def steps(self, models, onnx_sessions, pixel_values, labels):
        return {name: training_step(copy.deepcopy(model), pixel_values, labels) for name, model in models.items()}


class StepCostRunner:
    """The compression step alone against the whole layer it sits in (see `measure_step_cost`)."""

    def run(self, args: BenchmarkArguments, models: dict, results: dict) -> None:
        results["step_cost"] = measure_step_cost(args.place(models["ppt"]), args, args.torch_device)

    def table(self, results: dict) -> tuple[list[str], list[list]]:
        """A row per part of the layer; `~` on every time when any timing behind them is noisy."""
        step = results["step_cost"]
        noise = step.get("noise")
        layer = step["layer_ms"]
        parts = [("whole layer without compression", layer),
                 ("attention statistics (extra)", step["attention_statistics_ms"]),
                 ("scores + policy + prune + pool", step["compression_step_ms"])]
        rows = [[name, marked(ms, ".2f", noise), fmt(100 * ms / layer, ".1f")] for name, ms in parts]
        rows.append(["compression step, all in", "", fmt(100 * step["step_share_of_layer"], ".1f")])
        for count, ms in step["layer_ms_by_tokens"].items():
            rows.append([f"layer at {count} tokens, no step", marked(ms, ".2f", noise), fmt(100 * ms / layer, ".1f")])
        return ["part", "ms", "% of the layer"], rows

    def notes(self, results: dict) -> list[str]:
        step = results["step_cost"]
        lines = [f"at layer {step['layer_index']}: {step['tokens']} tokens, r={step['tokens_removed']}, batch "
                 f"{results['batch_size']}; median of {len(step['timings']['layer']['images_per_second'])} rounds"]
        fit = step["layer_fit"]
        if fit is not None and (fit["fixed_ms"] < 0 or fit["per_token_ms"] <= 0):
            lines.append("the layer's times at these token counts do not fit a fixed plus a per-token cost (fixed "
                         f"{fit['fixed_ms']:.2f} ms, per token {1000 * fit['per_token_ms']:.2f} us): too noisy; "
                         "more --rounds on a quieter machine")
        elif fit is not None:
            lines.append(f"a layer at n tokens ~ {fit['fixed_ms']:.2f} ms + {1000 * fit['per_token_ms']:.2f} us x n "
                         f"(least squares over the counts above): the fixed part, "
                         f"{100 * fit['fixed_share_at_most_tokens']:.0f}% of a layer at full length, is paid whatever "
                         "PPT removes")
        layers_ms = step["encoder_layers_ms"]
        lines.append(f"free-step ceiling: the encoder's layers at PPT's token counts with a free compression step "
                     f"take {layers_ms['ppt_with_free_step']:.1f} ms against {layers_ms['uncompressed']:.1f} ms "
                     f"uncompressed, at most {step['free_step_ceiling']:.2f}x (their MAC ratio: "
                     f"{step['layer_macs_ratio']:.2f}x)")
        return lines + [f"~ noisy step cost: {reason}" for reason in step.get("noise") or []]


def measure_step_cost(model, args: BenchmarkArguments, device) -> dict:
    """At the first reduction layer (the most tokens, the dearest step), on the same hidden states, interleaved:
    the whole layer without compression (the reference), the attention with and without the statistics the scores
    need (CLS row, value norms, mean keys), and the compression step itself (`PPTDeiTLayer.compression_step`:
    scores, policy, prune, pool).

    In the same rounds, the layer's two halves (attention + residual, MLP + residual) at every token count of the
    schedule: what the encoder would cost if the compression step were free (`free_step_ceiling`), and a fit
    `ms = fixed + per_token * tokens` of the layer, whose fixed part no compression can remove.
    """
    config = model.config
    if not config.compression_enabled:
        raise ValueError("the model has no reduction layer (reduction_layers is empty or r = 0): nothing to measure")
    layer_index = next(index for index in config.reduction_layers if config.tokens_removed_at(index) > 0)
    layer = model.deit.layers[layer_index]
    layer_schedule = model.deit.compression_schedule()[layer_index]
    schedule = config.token_schedule()
    num_tokens = schedule[layer_index][0]
    full_tokens = schedule[0][0]
    parameter = next(model.parameters())
    hidden = torch.randn(args.batch_size, full_tokens, config.hidden_size,
                         generator=torch.Generator().manual_seed(0))
    hidden = hidden.to(device=parameter.device, dtype=parameter.dtype)
    needs_probs = layer_schedule.score_function.needs_full_attention

    def attention_half(tokens: int):
        x = hidden[:, :tokens].contiguous()
        # After the first step the layers add the log token sizes to the attention logits: timed with that bias.
        key_bias = None if tokens == full_tokens else x.new_zeros(x.shape[:2])
        return lambda: layer.attention(layer.layernorm_before(x), key_bias=key_bias).output + x

    def mlp_half(tokens: int):
        x = hidden[:, :tokens].contiguous()
        return lambda: layer.mlp(layer.layernorm_after(x)) + x

    token_counts = sorted({count for pair in schedule for count in pair}, reverse=True)
    with torch.inference_mode():
        step_input = hidden[:, :num_tokens].contiguous()
        normed = layer.layernorm_before(step_input)
        stats = layer.attention(normed, need_stats=True, need_probs=needs_probs)

        def compression_step():
            return layer.compression_step(step_input, stats, schedule=layer_schedule)

        r = num_tokens - compression_step()[0].shape[1]
        steps = {
            "layer": lambda: layer(step_input),  # a layer with the default schedule: no compression
            "attention": lambda: layer.attention(normed),
            "attention_with_statistics": lambda: layer.attention(normed, need_stats=True, need_probs=needs_probs),
            "compression_step": compression_step,
        }
        for count in token_counts:
            steps[f"attention_half@{count}"] = attention_half(count)
            steps[f"mlp_half@{count}"] = mlp_half(count)
        timings = time_interleaved(steps, args.batch_size, device, args.warmup, args.rounds, 1, args.progress,
                                   "step cost", threads=args.threads or torch.get_num_threads())
    ms = {name: stats.median_latency_ms for name, stats in timings.items()}
    statistics_ms = max(0.0, ms["attention_with_statistics"] - ms["attention"])
    layer_ms_by_tokens = {count: ms[f"attention_half@{count}"] + ms[f"mlp_half@{count}"] for count in token_counts}
    uncompressed_ms = len(schedule) * layer_ms_by_tokens[full_tokens]
    free_step_ms = sum(ms[f"attention_half@{attention}"] + ms[f"mlp_half@{mlp}"] for attention, mlp in schedule)
    return {
        "layer_index": layer_index,
        "tokens": num_tokens,
        "tokens_removed": r,
        "layer_ms": ms["layer"],
        "attention_statistics_ms": statistics_ms,
        "compression_step_ms": ms["compression_step"],
        "step_share_of_layer": (statistics_ms + ms["compression_step"]) / ms["layer"],
        "layer_ms_by_tokens": layer_ms_by_tokens,
        "layer_fit": fit_fixed_and_per_token(layer_ms_by_tokens),
        "encoder_layers_ms": {"uncompressed": uncompressed_ms, "ppt_with_free_step": free_step_ms},
        "free_step_ceiling": uncompressed_ms / free_step_ms,
        "layer_macs_ratio": baseline_cost(config).layer_macs / analytic_cost(config).layer_macs,
        "timings": {name: stats.to_dict() for name, stats in timings.items()},
        "noise": noise_of(timings),  # every figure above comes from several of these timings
    }


RUNNERS = {"inference": InferenceRunner(), "train": TrainRunner(), "step_cost": StepCostRunner()}


# ---- the run ---------------------------------------------------------------------------------------------------------


def benchmark(args: BenchmarkArguments) -> dict:
    """Measure what `args` asks for (the mode's runner) and return everything in one dict (what `write_results`
    writes)."""
    started = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(args.torch_device)
    models = build_models(args)
    config = models["ppt"].config
    results = {
        "mode": args.mode,
        "model": args.model_name,
        "arguments": asdict(args),
        "machine": machine,
        "image_size": config.image_size,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "ppt_settings": {name: getattr(config, name) for name in PPTDeiTConfig.compression_defaults()},
    }
    RUNNERS[args.mode].run(args, models, results)
    machine_done(results["machine"])
    results["elapsed_seconds"] = time.time() - started
    return results


# ---- output -------------------------------------------------------------------------------------------------------------


def table(results: dict) -> tuple[list[str], list[list]]:
    """The results as one table: a row per model (or, in step_cost mode, per part of the layer)."""
    return RUNNERS[results["mode"]].table(results)


def notes(results: dict) -> list[str]:
    """What the table's numbers mean and how they were measured; a line per noisy figure, with its reasons."""
    return RUNNERS[results["mode"]].notes(results)


def format_results(results: dict) -> str:
    settings = results["ppt_settings"]
    header = [
        f"PPT-DeiT benchmark  mode={results['mode']}  model={results['model']}  image_size={results['image_size']}  "
        f"batch_size={results['batch_size']}  dtype={results['dtype']}",
        f"machine: {describe_machine(results['machine'])}",
        f"PPT: reduction_layers={settings['reduction_layers']} tokens_removed={settings['tokens_removed']} "
        f"prune_threshold={settings['prune_threshold']:g} score_function={settings['score_function']}",
        "",
    ]
    headers, rows = table(results)
    return "\n".join(header + [format_table(headers, rows), ""] + notes(results))


def write_results(results: dict, output_dir: str) -> list[str]:
    """The one writer: `benchmark_<mode>.json` (everything), `.csv` (the table) and `.md` (table and notes), each
    through a temporary file, so a failure never leaves half a file."""
    prefix = os.path.join(output_dir, f"benchmark_{results['mode']}")
    headers, rows = table(results)
    write_json(prefix + ".json", results)
    write_csv(prefix + ".csv", [dict(zip(headers, row)) for row in rows])
    write_text(prefix + ".md", markdown_table(headers, rows) + "\n\n" + "\n".join(f"- {line}" for line in notes(results))
               + "\n")
    return [prefix + ext for ext in RESULT_EXTENSIONS]


def run(args: BenchmarkArguments) -> int:
    main_process = args.processes.is_main_process
    if not args.progress or not main_process:
        transformers_logging.disable_progress_bar()  # transformers' own bars ("Loading weights") too
        args.progress = False
    # The main process holds --output_dir from before any work until its results are in place.
    with args.results_folder() if main_process else contextlib.nullcontext() as output:
        results = benchmark(args)
        if main_process:  # with several processes, every one holds the gathered results; one reports them
            print(format_results(results))
            if output is not None:
                with output.staging() as staging:
                    written = write_results(results, str(staging))
                print("wrote " + ", ".join(os.path.join(args.output_dir, os.path.basename(path)) for path in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Bad input prints `benchmark.py: error: <message>` on stderr and returns 2; nothing is written."""
    return run_command("benchmark.py", lambda: run(parse_into(BenchmarkArguments, argv, "benchmark.py")))


if __name__ == "__main__":
    raise SystemExit(main())
