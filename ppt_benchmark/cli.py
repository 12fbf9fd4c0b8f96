# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Command line: `python benchmark.py [run|sweep|score-table|policy-stats|calibrate|step-cost|visualize] ...` (run is the default)."""

from __future__ import annotations

import argparse
import math
import sys

COMMANDS = ("run", "sweep", "score-table", "policy-stats", "calibrate", "step-cost", "visualize")


def _threshold(text: str) -> float:
    value = float(text)
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"prune threshold {text!r} must be >= 0 or inf")
    return value


def _layer_set(text: str) -> list[int]:
    """'3,6,9' -> [3, 6, 9]; 'none' or '' -> [] (no compression)."""
    if text.strip().lower() in ("", "none", "[]"):
        return []
    try:
        return [int(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"reduction layer set {text!r} must be comma-separated ints, e.g. 3,6,9") from None


# What `accuracy.load_eval_dataset` accepts (train.py's output folder holds a model, not a dataset).
DATASET_HELP = ("'digits' (the split train.py --preset digits holds out), or a folder written by Dataset / "
                "DatasetDict.save_to_disk (also found in its dataset/ or data/ subfolder)")


def add_model_arguments(parser: argparse.ArgumentParser, ppt: bool = True, results: bool = True) -> None:
    """--arch / --checkpoint, the PPT settings (`ppt`), --device / --dtype / --threads, and with `results`
    --output_dir and --no_progress (left out where the subcommand writes no result folder and shows no bars)."""
    from .models import ARCHITECTURES

    source = parser.add_argument_group("model")
    source.add_argument("--arch", choices=sorted(ARCHITECTURES), help="named DeiT size with random weights (cost/speed only)")
    source.add_argument("--checkpoint", help="model dir (save_pretrained / train.py output) or Hub repo id (ours or stock DeiT/ViT)")
    source.add_argument("--image_size", type=int,
                        help="with --arch: 224 (default), 384, ... (a multiple of the patch size 16); a checkpoint "
                             "runs at its own size")
    source.add_argument("--num_labels", type=int,
                        help="with --arch: classes (default 1000); a checkpoint keeps its own classifier")
    if ppt:
        group = parser.add_argument_group("PPT settings (default: the checkpoint's, or r=50 at 3 6 9, tau=7e-5, ats)")
        group.add_argument("--reduction_layers", type=int, nargs="*", help="0-based layers that compress")
        group.add_argument("--tokens_removed", type=int, nargs="+", help="r: one int, or one per reduction layer")
        group.add_argument("--prune_threshold", type=_threshold, help="tau; 0 = always prune, inf = always pool")
        group.add_argument("--score_function", help="ats | cls_attention | entropy | a registered name")
    machine = parser.add_argument_group("machine")
    machine.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    machine.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    machine.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    if results:
        parser.add_argument("--output_dir", help="write JSON / CSV / markdown (and PNG) results here")
        parser.add_argument("--no_progress", action="store_true", help="no tqdm progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Measure PPT-DeiT: cost, speed, memory, accuracy, sweeps, score-function table, policy statistics.",
    )
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="baseline vs PPT vs stock transformers, one run (default command)")
    add_model_arguments(run)
    run.add_argument("--mode", default="inference", choices=["inference", "train"], help="forward only, or training steps")
    run.add_argument("--batch_size", type=int, default=32)
    run.add_argument("--warmup", type=int, default=2, help="untimed calls per model")
    run.add_argument("--rounds", type=int, default=5, help="timed rounds (interleaved across models)")
    run.add_argument("--iterations", type=int, default=1, help="calls per timed measurement")
    run.add_argument("--latency_rounds", type=int, default=5)
    run.add_argument("--latency_iterations", type=int, default=3)
    run.add_argument("--no_stock", action="store_true", help="skip the stock ViTForImageClassification (sdpa) comparator")
    run.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    run.add_argument("--cost_only", action="store_true", help="parameters, MACs and the flop-counter check only")
    run.add_argument("--no_memory", action="store_true")
    run.add_argument("--no_flop_check", action="store_true")
    run.add_argument("--dataset", help=f"adds top-1/top-5 on: {DATASET_HELP}")
    run.add_argument("--split")
    run.add_argument("--max_eval_samples", type=int)
    run.add_argument("--eval_batch_size", type=int, default=64)
    run.add_argument("--seed", type=int, default=0)

    sweep = sub.add_parser("sweep", help="sweep r, tau, reduction layers, score function; table + Pareto plots")
    add_model_arguments(sweep, ppt=False)
    sweep.add_argument("--tokens_removed_values", type=int, nargs="+", default=[50])
    sweep.add_argument("--prune_threshold_values", type=_threshold, nargs="+", default=[7e-5])
    sweep.add_argument("--reduction_layer_sets", type=_layer_set, nargs="+", default=[[3, 6, 9]],
                       help="sets like 3,6,9 2,5,8")
    sweep.add_argument("--score_functions", nargs="+", default=["ats"])
    sweep.add_argument("--no_reference_policies", action="store_true",
                       help="do not add ToMe-style pooling only (tau=inf) and top-k pruning only (tau=0)")
    sweep.add_argument("--dataset", help=f"adds top-1/top-5 on: {DATASET_HELP}")
    sweep.add_argument("--split")
    sweep.add_argument("--max_eval_samples", type=int)
    sweep.add_argument("--eval_batch_size", type=int, default=64)
    sweep.add_argument("--no_speed", action="store_true", help="skip throughput (cost and accuracy only)")
    sweep.add_argument("--batch_size", type=int, default=32)
    sweep.add_argument("--warmup", type=int, default=1)
    sweep.add_argument("--rounds", type=int, default=3)

    table = sub.add_parser("score-table", help="the thesis's score-function table at equal MACs")
    add_model_arguments(table)
    table.add_argument("--dataset", required=True, help=f"evaluation (and --train_split) images: {DATASET_HELP}")
    table.add_argument("--split")
    table.add_argument("--train_split", default="train")
    table.add_argument("--max_eval_samples", type=int)
    table.add_argument("--eval_batch_size", type=int, default=64)
    table.add_argument("--score_functions", nargs="+", default=["ats", "cls_attention", "entropy"])
    table.add_argument("--finetune_steps", type=int, default=0, help="compression-aware fine-tuning steps per score function (0: off-the-shelf only)")
    table.add_argument("--finetune_batch_size", type=int, default=32)
    table.add_argument("--finetune_learning_rate", type=float, default=5e-5)
    table.add_argument("--calibrate_prune_fraction", type=float,
                       help="give each score function its own tau, calibrated on training images to prune this fraction")
    table.add_argument("--seed", type=int, default=0)

    step = sub.add_parser("step-cost", help="time of the compression step vs the layer it sits in")
    add_model_arguments(step)
    step.add_argument("--batch_size", type=int, default=32)
    step.add_argument("--warmup", type=int, default=2)
    step.add_argument("--rounds", type=int, default=10)

    visualize = sub.add_parser("visualize", help="draw which patches one image pruned and pooled together")
    add_model_arguments(visualize, results=False)
    visualize.add_argument("--image", required=True, help="an image file")
    visualize.add_argument("--output", default="token_map.png",
                           help="image to write, side by side: the image | its token map (.png, .jpg, ...)")

    for name, help_text in (("policy-stats", "per-layer score variance and prune/pool fractions"),
                            ("calibrate", "pick tau for a target fraction of pruned samples")):
        stats = sub.add_parser(name, help=help_text)
        add_model_arguments(stats)
        stats.add_argument("--dataset", help=f"calibration images (default: random noise, only for smoke tests): "
                                             f"{DATASET_HELP}")
        stats.add_argument("--split")
        stats.add_argument("--num_samples", type=int, default=64)
        stats.add_argument("--batch_size", type=int, default=32)
        if name == "calibrate":
            stats.add_argument("--target_prune_fraction", type=float, default=0.5,
                               help="fraction of (sample, reduction layer) decisions that should prune")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        # run takes no positional argument: a first word that is no command is a mistyped one
        import difflib

        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        parser.error(f"unknown command {argv[0]!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                     f"choose one of {', '.join(COMMANDS)} (run is the default when the first argument is an option)")
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv = ["run"] + argv
    return parser.parse_args(argv)


# Bad input -- an option, a path, a file's content -- surfaces as one of these: `ValueError` from our checks, the
# config's validation and `BenchmarkOptions.validate`; `OSError` (FileNotFoundError, PermissionError, ...) from
# reading a model, dataset or image, or writing results. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError)


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Bad input prints `benchmark.py <command>: error: <message>` on stderr and returns 2."""
    args = parse_args(argv)
    try:
        return _dispatch(args)
    except USER_ERRORS as error:
        print(f"benchmark.py {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from .options import validate_common_options

    validate_common_options(args)  # every subcommand: model source, device, dtype, threads, sizes, output folder
    if getattr(args, "no_progress", False):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # transformers' own bars ("Loading weights") too
    if args.command == "run":
        return _main_run(args)
    if args.command == "sweep":
        from .sweep import main_sweep

        return main_sweep(args)
    if args.command == "score-table":
        from .score_table import main_score_table

        return main_score_table(args)
    if args.command == "visualize":
        from .visualize import main_visualize

        return main_visualize(args)
    if args.command == "step-cost":
        from .step_cost import main_step_cost

        return main_step_cost(args)
    from .calibrate import main_calibrate, main_policy_stats

    return main_policy_stats(args) if args.command == "policy-stats" else main_calibrate(args)


def _main_run(args) -> int:
    from .models import ppt_settings_from_args
    from .runner import BenchmarkOptions, format_report, run_benchmark, save_report

    options = BenchmarkOptions(
        arch=args.arch,
        checkpoint=args.checkpoint,
        image_size=args.image_size,
        num_labels=args.num_labels,
        **ppt_settings_from_args(args),
        mode=args.mode,
        batch_size=args.batch_size,
        dtype=args.dtype,
        device=args.device,
        threads=args.threads,
        warmup=args.warmup,
        rounds=args.rounds,
        iterations=args.iterations,
        latency_rounds=args.latency_rounds,
        latency_iterations=args.latency_iterations,
        stock=not args.no_stock,
        compile=args.compile,
        speed=not args.cost_only,
        memory=not (args.cost_only or args.no_memory),
        flop_check=not args.no_flop_check,
        dataset=args.dataset,
        split=args.split,
        max_eval_samples=args.max_eval_samples,
        eval_batch_size=args.eval_batch_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    report = run_benchmark(options)
    print(format_report(report))
    if args.output_dir:
        paths = save_report(report, args.output_dir, prefix=f"benchmark_{args.mode}")
        print("wrote " + ", ".join(paths.values()))
    return 0


__all__ = ["build_parser", "main", "parse_args"]
