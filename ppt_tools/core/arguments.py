# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The command-line options that train.py, benchmark.py and the analysis tools share, declared once as dataclasses.

Each tool's own options dataclass inherits the groups it needs and is parsed by `transformers.HfArgumentParser`,
so an option has one name, one help text and one check everywhere:

- `ModelSourceArguments`: `--arch` (a named DeiT size, random weights) or `--model_name_or_path` (a folder or Hub id);
- `PPTArguments`: the compression schedule (`--reduction_layers`, `--tokens_removed`, `--prune_threshold`,
  `--score_function`); unset ones are the model's own;
- `MachineArguments`: `--device`, `--dtype`, `--threads`;
- `DatasetArguments`: which dataset, columns and splits (the split rule is in `ppt_tools.core.data`);
- `OutputArguments`: `--output_dir`, and `--overwrite_output_dir` to replace the files an earlier run left there
  (each command names the files it writes; without the flag a command refuses before any work).

Checks raise `ValueError` naming the flag and its value; `run_command`, the one error translator of every command,
turns that into one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from accelerate import PartialState
from transformers import HfArgumentParser

from .data import DEFAULT_TRAIN_SPLIT
from .errors import USER_ERRORS, CommandFailure, one_line
from .models import ARCHITECTURES
from .outputs import FILES, OutputTarget
from .results import check_output_dir


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_at_least(owner, minimum: int, *names: str) -> None:
    """Each of `names` that `owner` has set (not None) must be >= `minimum`."""
    for name in names:
        value = getattr(owner, name, None)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} {value} must be >= {minimum}")


@dataclass
class ModelSourceArguments:
    """Which model: a named DeiT size with random weights (cost and speed only) or a checkpoint."""

    arch: str | None = field(default=None, metadata={
        "help": "A DeiT size with random weights (cost and speed only).", "choices": sorted(ARCHITECTURES)})
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A model folder (save_pretrained / train.py output) or a Hub repo id (ours, or a stock DeiT/ViT)."})
    image_size: int | None = field(default=None, metadata={
        "help": "With --arch: the input resolution, a multiple of 16 (default 224). A checkpoint runs at its own."})
    num_labels: int | None = field(default=None, metadata={
        "help": "With --arch: the number of classes (default 1000). A checkpoint keeps its own classifier."})
    seed: int = field(default=0, metadata={"help": "Seed of random weights and random inputs."})

    def validate(self) -> None:
        if (self.arch is None) == (self.model_name_or_path is None):
            raise ValueError(f"give exactly one of --arch ({', '.join(sorted(ARCHITECTURES))}, random weights) or "
                             f"--model_name_or_path (a model folder or Hub repo id); got {'both' if self.arch else 'neither'}")
        check_at_least(self, 1, "image_size", "num_labels")

    @property
    def model_name(self) -> str:
        return self.arch or self.model_name_or_path


@dataclass
class PPTArguments:
    """The compression schedule; what is left unset is the model's own (for --arch: r=50 at 3 6 9, tau=7e-5, ats)."""

    reduction_layers: list[int] | None = field(default=None, metadata={
        "help": "0-based layers that compress tokens, between their attention and their MLP."})
    tokens_removed: list[int] | None = field(default=None, metadata={
        "help": "r, tokens removed per reduction layer: one value for all, or one per layer."})
    prune_threshold: float | None = field(default=None, metadata={
        "help": "tau: an image whose score variance is >= tau is pruned, else pooled (0 = always prune, "
                "inf = always pool)."})
    score_function: str | None = field(default=None, metadata={
        "help": "Significance score: ats, cls_attention, entropy, or a registered one."})

    def ppt_settings(self) -> dict:
        """The settings given, as `PPTDeiTConfig` takes them (one r for all layers as an int)."""
        settings = {name: getattr(self, name) for name in ("reduction_layers", "prune_threshold", "score_function")}
        if self.tokens_removed is not None:
            removed = list(self.tokens_removed)
            settings["tokens_removed"] = removed[0] if len(removed) == 1 else removed
        return {name: value for name, value in settings.items() if value is not None}


@dataclass
class MachineArguments:
    """Where and how the model runs."""

    device: str = field(default="auto", metadata={"help": "auto (CUDA when available), cpu, cuda or cuda:N."})
    dtype: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={"help": "Weights and inputs dtype."})
    threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (default: torch's choice)."})

    def validate(self) -> None:
        check_at_least(self, 1, "threads")
        if self.device in ("auto", "cpu"):
            return
        match = re.fullmatch(r"cuda(?::(\d+))?", self.device)
        if match is None:
            raise ValueError(f"--device {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"--device {self.device!r}: CUDA is not available ({why}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if int(match.group(1) or 0) >= count:
            raise ValueError(f"--device {self.device!r}: there are {count} CUDA devices (cuda:0 to cuda:{count - 1})")

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def processes(self) -> PartialState:
        """The processes this command runs in: one, or several under `accelerate launch` / torchrun. accelerate's
        state is created once per process, and on a machine without a GPU it joins the processes only when told it
        runs on the CPU: so it is created here, where the device is known, before anything else asks for it."""
        return PartialState(cpu=self.torch_device.type == "cpu")

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """Apply --threads, and move `model` to --device / --dtype."""
        if self.threads:
            torch.set_num_threads(self.threads)
        return model.to(device=self.torch_device, dtype=self.torch_dtype)


@dataclass
class DatasetArguments:
    """Which dataset and which of its columns and splits (the split rule is documented in `ppt_tools.core.data`)."""

    dataset_name: str | None = field(default=None, metadata={
        "help": "A Hub dataset id, a save_to_disk folder, an imagefolder directory, or 'digits' (scikit-learn's "
                "bundled digits: offline)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    image_column_name: str | None = field(default=None, metadata={
        "help": "Image column (if not given: the only Image column)."})
    label_column_name: str | None = field(default=None, metadata={
        "help": "Label column (if not given: the only ClassLabel column, or 'label')."})
    train_split_name: str = field(default=DEFAULT_TRAIN_SPLIT, metadata={"help": "The training split."})
    eval_split_name: str | None = field(default=None, metadata={
        "help": "The evaluation split (if not given: test, else validation, else a held-out part of train)."})
    eval_split_ratio: float = field(default=0.15, metadata={
        "help": "Fraction of train held out for evaluation when the dataset has no evaluation split."})
    split_seed: int = field(default=42, metadata={"help": "Seed of that held-out split."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N images only."})
    streaming: bool = field(default=False, metadata={
        "help": "Read the dataset as a stream (datasets' IterableDataset): images are decoded as they are used, "
                "so memory stays flat for ImageNet-size data."})

    def validate(self) -> None:
        check_at_least(self, 1, "max_eval_samples")
        if not 0 < self.eval_split_ratio < 1:
            raise ValueError(f"--eval_split_ratio {self.eval_split_ratio} must be in (0, 1)")


@dataclass
class OutputArguments:
    """Where the command writes its results. Results an earlier run left there are measurements too: they are
    replaced only when asked."""

    output_dir: str | None = field(default=None, metadata={"help": "Write the command's result files here."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Replace the result files of an earlier run in --output_dir (without it the command refuses)."})

    def output_files(self) -> list[str]:
        """The names of the files the command writes into --output_dir."""
        return []

    def validate(self) -> None:
        check_output_dir(self.output_dir)

    @contextlib.contextmanager
    def results_folder(self):
        """--output_dir held for this command while it runs (`ppt_tools.core.outputs.OutputTarget`: a second writer
        is refused, what a killed run left is finished or removed), the earlier results it would replace refused
        unless --overwrite_output_dir; yields the target, whose `staging()` folder the result files are written
        into, or None without --output_dir. Enter it before any work."""
        if self.output_dir is None:
            yield None
            return
        with OutputTarget(self.output_dir, kind=FILES) as output:
            existing = [name for name in self.output_files() if os.path.lexists(os.path.join(self.output_dir, name))]
            if existing and not self.overwrite_output_dir:
                raise ValueError(f"--output_dir {self.output_dir!r} already holds {', '.join(existing)} (an earlier "
                                 "run's results, which this run would replace): pass another --output_dir, or "
                                 "--overwrite_output_dir to replace them")
            yield output


# ---- parsing and reporting --------------------------------------------------------------------------------------


def parse_into(dataclass_type, argv: list[str] | None, prog: str):
    """Parse `argv` (default: `sys.argv[1:]`) into one `dataclass_type`, then run its `validate` methods, those of
    every option group it inherits, most general first. Options may not be abbreviated: `--learning_rat` is an
    error, not `--learning_rate`."""
    parser = HfArgumentParser(dataclass_type, prog=prog, description=dataclass_type.__doc__, allow_abbrev=False)
    args, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # argparse's usage line, exit code 2
    validate(args)
    return args


def validate(args) -> None:
    """Every `validate` defined along the class's MRO, base groups first, each once."""
    for klass in reversed(type(args).__mro__):
        check = klass.__dict__.get("validate")
        if check is not None:
            check(args)


def run_command(prog: str, command, *args) -> int:
    """`command(*args)`, the one error translator of every command: bad input (`USER_ERRORS`) prints
    `<prog>: error: <message>` on stderr and returns 2; a `CommandFailure` prints the same line and returns 1."""
    try:
        return command(*args) or 0
    except USER_ERRORS as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except CommandFailure as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 1


def option_names(dataclass_type) -> list[str]:
    return [item.name for item in fields(dataclass_type)]


__all__ = [
    "DTYPES",
    "CommandFailure",
    "DatasetArguments",
    "MachineArguments",
    "ModelSourceArguments",
    "OutputArguments",
    "PPTArguments",
    "USER_ERRORS",
    "check_at_least",
    "one_line",
    "option_names",
    "parse_into",
    "run_command",
    "validate",
]
