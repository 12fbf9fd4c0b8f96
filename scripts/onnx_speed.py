# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""ONNX Runtime speed of PPT-DeiT against the stock ViT with the same weights, both exported the same way.

    python scripts/onnx_speed.py --arch deit-small --batch_sizes 32 1 --threads 2 --rounds 9

Both graphs come from `ppt_eval.onnx_export` (torch's dynamo exporter, opset 18, dynamic batch); each is run by an
ONNX Runtime CPU session with `--threads` intra-op threads (inter-op 1), fp32, full graph optimisation. The sessions
are timed interleaved (order rotated every round) in one process, as benchmark.py times PyTorch models. With
`--graph_report` the graphs after ORT's optimisation are saved and their operator counts printed side by side
(are the attention and MLP matmuls fused as well in the PPT graph as in the stock one?).

A measurement script, for now (the benchmark CLI will get an ONNX Runtime backend).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppt_benchmark.models import ARCHITECTURES, build_model, build_stock_model  # noqa: E402
from ppt_benchmark.speed import time_interleaved  # noqa: E402
from ppt_eval.onnx_export import (  # noqa: E402
    DEFAULT_OPSET,
    export_onnx,
    export_stock_classifier,
    max_difference,
    onnx_outputs,
    onnx_session,
)


def operator_counts(path) -> collections.Counter:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return collections.Counter(f"{node.domain + '.' if node.domain else ''}{node.op_type}" for node in graph.node)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="deit-small", choices=sorted(ARCHITECTURES))
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--iterations", type=int, default=1, help="calls per timed measurement")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--prune_threshold", type=float, help="tau (default: the authors' 7e-5)")
    parser.add_argument("--work_dir", help="keep the .onnx files here (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true",
                        help="use ppt.onnx / stock.onnx already in --work_dir (same --arch, tau and seed) instead of exporting")
    parser.add_argument("--graph_report", action="store_true", help="save ORT-optimised graphs, compare operators")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch models (eager) in the rounds")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    settings = {} if args.prune_threshold is None else {"prune_threshold": args.prune_threshold}
    ppt = build_model(args.arch, **settings)
    stock = build_stock_model(ppt)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="ppt-onnx-")
    os.makedirs(work_dir, exist_ok=True)
    paths = {"ppt": os.path.join(work_dir, "ppt.onnx"), "stock": os.path.join(work_dir, "stock.onnx")}
    start = time.perf_counter()
    if not (args.reuse and all(os.path.exists(path) for path in paths.values())):
        export_onnx(ppt, paths["ppt"], args.opset, overwrite=True)
        export_stock_classifier(stock, paths["stock"], args.opset, overwrite=True)
        print(f"exported both in {time.perf_counter() - start:.0f} s to {work_dir} (opset {args.opset})")

    import onnxruntime

    sessions = {name: onnx_session(path, threads=args.threads) for name, path in paths.items()}
    check = torch.randn(3, 3, ppt.config.image_size, ppt.config.image_size, generator=torch.Generator().manual_seed(0))
    print(f"ONNX Runtime vs PyTorch, max |logits difference|: ppt {max_difference(ppt, sessions['ppt'], check):.1e}, "
          f"stock {max_difference(stock, sessions['stock'], check):.1e}")
    print(f"machine: {os.cpu_count()} logical CPUs; onnxruntime {onnxruntime.__version__}, torch {torch.__version__}; "
          f"intra-op threads {args.threads}, fp32, {args.arch} {ppt.config.image_size}px, PPT r="
          f"{ppt.config.tokens_removed} at {list(ppt.config.reduction_layers)}, tau={ppt.config.prune_threshold:g}, "
          f"{ppt.config.score_function}")

    for batch_size in args.batch_sizes:
        pixels = torch.randn(batch_size, 3, ppt.config.image_size, ppt.config.image_size,
                             generator=torch.Generator().manual_seed(1))
        steps = {
            "ort_ppt": lambda p=pixels: onnx_outputs(sessions["ppt"], p),
            "ort_stock": lambda p=pixels: onnx_outputs(sessions["stock"], p),
        }
        if args.torch:
            def eager(model, p=pixels):
                with torch.inference_mode():
                    return model(p).logits
            steps["torch_ppt"] = lambda: eager(ppt)
            steps["torch_stock"] = lambda: eager(stock)
        timings = time_interleaved(steps, batch_size, warmup=args.warmup, rounds=args.rounds,
                                   iterations=args.iterations, progress=False)
        print(f"\nbatch {batch_size}: {args.warmup} warm-up calls, {args.rounds} interleaved rounds of "
              f"{args.iterations} call(s); median latency per batch [min, max]")
        for name, stats in timings.items():
            low = 1000 * batch_size / stats.maximum
            high = 1000 * batch_size / stats.minimum
            print(f"  {name:12s} {stats.median_latency_ms:8.2f} ms  [{low:7.2f}, {high:7.2f}]  {stats.median:7.1f} img/s")
        print(f"  PPT vs stock, ONNX Runtime: {timings['ort_ppt'].median / timings['ort_stock'].median:.2f}x")
        if args.torch:
            print(f"  PPT vs stock, PyTorch eager: {timings['torch_ppt'].median / timings['torch_stock'].median:.2f}x")

    if args.graph_report:
        counts = {}
        for name, path in paths.items():
            optimized = os.path.join(work_dir, f"{name}.ort-optimized.onnx")
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.optimized_model_filepath = optimized
            onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            counts[name] = operator_counts(optimized)
        print(f"\noperators after ONNX Runtime's optimisation (graphs in {work_dir}):")
        print(f"  {'operator':40s} {'ppt':>6s} {'stock':>6s}")
        for op in sorted(set(counts["ppt"]) | set(counts["stock"]), key=lambda o: -counts["ppt"][o] - counts["stock"][o]):
            print(f"  {op:40s} {counts['ppt'][op]:6d} {counts['stock'][op]:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
