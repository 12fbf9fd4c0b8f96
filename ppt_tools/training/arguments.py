# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Command-line / config-file arguments of train.py, the fine-tuning recipe's defaults, and the presets.

Precedence, lowest first: dataclass defaults < `RECIPE_DEFAULTS` < `--preset` < config file < command line.

The recipe (defaults for fine-tuning a pre-trained DeiT, e.g. DeiT-S on CIFAR-100 at 224 px, batch 128 per device):
AdamW, lr 1e-4, weight decay 0.05, 10% linear warmup then cosine decay, label smoothing 0.1, 3 epochs, bf16 when the
GPU supports it. That is DeiT's own fine-tuning recipe (AdamW + cosine + label smoothing, weight decay 0.05) at the
learning rate that DeiT's `lr = 5e-4 * batch / 512` rule gives for batch 128 (1.25e-4), rounded down because
fine-tuning moves less than pre-training. The thesis trained with Adam at 1e-3: for a pre-trained transformer that step
is large enough to wreck the pre-trained features in the first hundred steps, and without weight decay and warmup the
run is unstable; we do not use it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

from modeling_ppt_deit import PPTDeiTConfig
from ppt_tools.core.arguments import DatasetArguments, PPTArguments, check_at_least
from ppt_tools.core.data import DIGITS
from ppt_tools.core.models import check_model_folder, check_model_type, check_whole_patches, load_config
from ppt_tools.core.results import check_output_dir


DEFAULT_MODEL = "facebook/deit-small-patch16-224"
DEFAULT_DATASET = "uoft-cs/cifar100"
SCRATCH_ARCHITECTURE = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "image_size",
    "patch_size",
)
PPT_OPTIONS = tuple(item.name for item in fields(PPTArguments))


@dataclass
class ModelArguments(PPTArguments):
    """Which model to fine-tune (or build from scratch) and its PPT settings."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": f"Hub id or local folder of a DeiT/ViT/PPT-DeiT checkpoint (if not given: {DEFAULT_MODEL})."},
    )
    preset: str | None = field(
        default=None,
        metadata={"help": "A bundled setting: 'digits' trains a small PPT-DeiT from scratch on scikit-learn's digits "
                  "(offline, CPU, a few minutes)."},
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "Build a randomly initialised PPT-DeiT from the architecture options below instead of "
                  "loading a checkpoint."},
    )
    ppt: bool = field(default=True, metadata={"help": "Train with PPT compression on (False: plain DeiT)."})
    hidden_size: int | None = field(default=None, metadata={"help": "From scratch only: width."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "From scratch only: depth."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "From scratch only: heads."})
    intermediate_size: int | None = field(default=None, metadata={"help": "From scratch only: MLP width."})
    image_size: int | None = field(default=None, metadata={"help": "From scratch only: input resolution."})
    patch_size: int | None = field(default=None, metadata={"help": "From scratch only: patch size."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the checkpoint."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets go."})


@dataclass
class DataArguments(DatasetArguments):
    """Which dataset, which columns and splits, and the augmentation."""

    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N images only."})
    crop_scale_min: float = field(
        default=0.5,
        metadata={"help": "Smallest area fraction of the random resized crop (0.08 in ImageNet training; larger for "
                  "small, upscaled images)."},
    )
    horizontal_flip: bool = field(default=True, metadata={"help": "Random horizontal flips while training."})
    check_images: bool = field(
        default=True, metadata={"help": "Decode every image once before training, to fail early on corrupt files."}
    )


@dataclass
class PPTTrainingArguments(TrainingArguments):
    """`TrainingArguments`, plus `overwrite_output_dir` (which transformers 5 dropped)."""

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train into an output_dir that already holds a finished run."}
    )


def recipe_defaults() -> dict:
    """The fine-tuning recipe (see the module docstring). bf16 only where the GPU supports it."""
    return {
        "dataset_name": DEFAULT_DATASET,
        "output_dir": "outputs/deit-small-ppt-cifar100",
        "learning_rate": 1e-4,
        "weight_decay": 0.05,
        "adam_beta2": 0.999,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,  # < 1: a fraction of the total steps
        "label_smoothing_factor": 0.1,
        "num_train_epochs": 3.0,
        "per_device_train_batch_size": 128,
        "per_device_eval_batch_size": 256,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "save_total_limit": 2,
        "logging_steps": 50,
        "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
        "dataloader_num_workers": min(8, os.cpu_count() or 1) if torch.cuda.is_available() else 0,
        "dataloader_pin_memory": torch.cuda.is_available(),  # pinning without an accelerator only warns
        # Every parameter gets a gradient at every step (PPT drops tokens, never weights), so DDP need not search
        # for unused ones: that search costs a graph traversal per step and warns.
        "ddp_find_unused_parameters": False,
        "remove_unused_columns": False,
    }


# A PPT-DeiT from scratch on sklearn's digits: 32 px, patch 4 -> 64 patches + CLS = 65 tokens,
# r = 8 at layers 1, 2, 3: 65 -> 57 -> 49 -> 41 tokens (MLPs of layers 1-3 see 57, 49, 41).
PRESETS = {
    "digits": {
        "dataset_name": DIGITS,  # its own 20% test split (ppt_tools.core.data)
        "from_scratch": True,
        "hidden_size": 96,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 192,
        "image_size": 32,
        "patch_size": 4,
        "horizontal_flip": False,  # a mirrored digit is another glyph
        "crop_scale_min": 0.7,
        "output_dir": "outputs/digits",
        "learning_rate": 1e-3,  # from scratch, small model: a large step is right here
        "weight_decay": 0.05,
        "num_train_epochs": 30.0,
        "per_device_train_batch_size": 64,
        "per_device_eval_batch_size": 256,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": 50,
        "dataloader_num_workers": 0,
    }
}
# A preset's PPT schedule, kept apart so that `--preset digits --ppt False` is not a conflict: it applies only to
# the PPT options the user left unset, and only with PPT on. tau and the score function are the config's defaults.
PRESET_PPT_SETTINGS = {
    "digits": {"reduction_layers": [1, 2, 3], "tokens_removed": [8]},
}


def read_config_file(path: str) -> dict:
    """A flat JSON or YAML mapping of argument names to values."""
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)
    except (ValueError, yaml.YAMLError) as error:  # json.JSONDecodeError, UnicodeDecodeError are ValueErrors
        kind = "JSON" if path.endswith(".json") else "YAML"
        problem = " ".join(str(error).split())
        raise ValueError(f"config file {path!r} is not valid {kind}: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of argument names to values")
    return values


def _peek_preset(argv: list[str]) -> str | None:
    """The last --preset of `argv` (the one argparse keeps), before parsing: its values are parsing defaults."""
    found = None
    for index, token in enumerate(argv):
        if token == "--preset" and index + 1 < len(argv):
            found = argv[index + 1]
        elif token.startswith("--preset="):
            found = token.split("=", 1)[1]
    return found


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, PPTTrainingArguments]:
    """Parse `argv` (default `sys.argv[1:]`): an optional leading `config.json` / `config.yaml`, then options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # No abbreviations: `--learning_rat 0.1` is an error, never silently `--learning_rate`.
    parser = HfArgumentParser((ModelArguments, DataArguments, PPTTrainingArguments), prog="train.py",
                              allow_abbrev=False)
    file_values = {}
    if argv and argv[0].endswith((".json", ".yaml", ".yml")):
        file_values = read_config_file(argv.pop(0))
    preset = _peek_preset(argv) or file_values.get("preset")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
    defaults = {**recipe_defaults(), **PRESETS.get(preset, {}), **file_values}
    known = {f.name for dataclass_type in parser.dataclass_types for f in fields(dataclass_type) if f.init}
    unknown = sorted(set(defaults) - known)
    if unknown:
        raise ValueError(f"unknown argument(s) in the config file: {unknown}")
    parser.set_defaults(**defaults)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    return model_args, data_args, training_args


def validate_args(model_args: ModelArguments, data_args: DataArguments, training_args: PPTTrainingArguments) -> None:
    """Reject contradictory options before anything is loaded or written. Fills in the defaults that depend on
    other options (model, dataset)."""
    if model_args.preset == "digits" and data_args.dataset_name != DIGITS:
        raise ValueError(
            f"--preset digits trains on scikit-learn's digits; it cannot be combined with "
            f"--dataset_name {data_args.dataset_name!r} (drop one of them)"
        )
    if model_args.from_scratch and model_args.model_name_or_path is not None:
        raise ValueError(
            f"--from_scratch{' (set by --preset ' + model_args.preset + ')' if model_args.preset else ''} builds a "
            f"new model; it cannot be combined with --model_name_or_path {model_args.model_name_or_path!r}"
        )
    given_architecture = [name for name in SCRATCH_ARCHITECTURE if getattr(model_args, name) is not None]
    if model_args.from_scratch:
        missing = [name for name in SCRATCH_ARCHITECTURE if getattr(model_args, name) is None]
        if missing:
            raise ValueError(f"--from_scratch needs the architecture options {missing}")
    elif given_architecture:
        raise ValueError(
            f"{given_architecture} only apply with --from_scratch; a checkpoint brings its own architecture"
        )
    else:
        model_args.model_name_or_path = model_args.model_name_or_path or DEFAULT_MODEL

    compression_off = not model_args.ppt or model_args.reduction_layers == []
    if compression_off:
        given = [name for name in PPT_OPTIONS if getattr(model_args, name) not in (None, [])]
        if given:
            raise ValueError(
                f"{given} set but compression is off (--ppt False or no reduction layers): "
                "drop them or turn PPT on"
            )
    elif model_args.preset is not None:
        for name, value in PRESET_PPT_SETTINGS.get(model_args.preset, {}).items():
            if getattr(model_args, name) is None:
                setattr(model_args, name, value)
    if model_args.model_name_or_path is not None:
        check_model_source(model_args.model_name_or_path)
    check_model_settings(model_args)
    check_at_least(training_args, 1, "per_device_train_batch_size", "per_device_eval_batch_size",
                   "gradient_accumulation_steps")
    check_at_least(data_args, 1, "max_train_samples")
    data_args.validate()
    check_output_dir(training_args.output_dir)  # a folder, or creatable as one
    if not 0 < data_args.crop_scale_min <= 1:
        raise ValueError(f"crop_scale_min={data_args.crop_scale_min} must be in (0, 1]")


def check_model_source(name: str) -> None:
    """Fail early, naming the path, when `--model_name_or_path` points at a local path that is not a model folder,
    or at one whose config.json names a model PPT-DeiT cannot load. Other names are taken as Hub ids."""
    check_model_folder(name, "--model_name_or_path", hub_example=DEFAULT_MODEL)
    check_model_type(os.path.expanduser(name), f"--model_name_or_path {name!r}")


def compression_settings(model_args: ModelArguments) -> dict:
    """The PPT settings the user asked for (unset ones are left to the checkpoint / config defaults)."""
    if not model_args.ppt or model_args.reduction_layers == []:
        return {"reduction_layers": [], "tokens_removed": 0}
    return model_args.ppt_settings()


def check_model_settings(model_args: ModelArguments) -> None:
    """The config's own checks of the architecture (from scratch) or of the PPT settings against a local
    checkpoint's config, run before the dataset is read; `build_config` builds the full config (with the dataset's
    labels) later. A Hub checkpoint's config is read there."""
    if model_args.from_scratch:
        PPTDeiTConfig(**{name: getattr(model_args, name) for name in SCRATCH_ARCHITECTURE},
                      **compression_settings(model_args))
        check_whole_patches(model_args.image_size, model_args.patch_size, hidden_size=model_args.hidden_size,
                            num_attention_heads=model_args.num_attention_heads)
    elif os.path.isdir(os.path.expanduser(model_args.model_name_or_path)):
        name = model_args.model_name_or_path
        load_config(os.path.expanduser(name), f"--model_name_or_path {name!r}", **compression_settings(model_args))
