# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Models to measure: a PPT-DeiT from a checkpoint or a named architecture, and the stock `transformers` comparator
(ViT / DeiT with SDPA attention) holding the same weights."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification
from ppt_training.arguments import looks_like_local_path


@dataclass(frozen=True)
class Architecture:
    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int = 12
    patch_size: int = 16

    @property
    def intermediate_size(self) -> int:
        return 4 * self.hidden_size


# The DeiT family (Touvron et al. 2021): all 12 layers, patch 16, MLP 4x.
ARCHITECTURES = {
    "deit-tiny": Architecture(192, 3),
    "deit-small": Architecture(384, 6),
    "deit-base": Architecture(768, 12),
}

PPT_DEFAULTS = {"reduction_layers": [3, 6, 9], "tokens_removed": 50, "prune_threshold": 7e-5, "score_function": "ats"}


def build_model(
    arch: str | None = None,
    checkpoint: str | None = None,
    image_size: int = 224,
    num_labels: int = 1000,
    seed: int = 0,
    **ppt_settings,
) -> PPTDeiTForImageClassification:
    """A PPT-DeiT classifier in eval mode: loaded from `checkpoint` (local dir or Hub repo, ours or stock ViT/DeiT),
    or a named `arch` with random weights (fine for cost and speed; accuracy needs trained weights).

    `ppt_settings` (reduction_layers, tokens_removed, prune_threshold, score_function) are applied on top.
    """
    if (arch is None) == (checkpoint is None):
        raise ValueError("give exactly one of arch (one of %s) or checkpoint (a model dir or Hub repo id)" % sorted(ARCHITECTURES))
    settings = {k: v for k, v in ppt_settings.items() if v is not None}
    if checkpoint is not None:
        check_checkpoint(checkpoint)
        try:
            model = PPTDeiTForImageClassification.from_pretrained(checkpoint, **settings)
        except OSError as error:  # missing weights, a Hub id not found or not cached offline, ...
            where = "" if os.path.exists(checkpoint) else " (tried as a Hub repo id: there is no local folder of that name)"
            raise OSError(f"--checkpoint {checkpoint!r} could not be loaded{where}: {error}") from error
    else:
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}")
        spec = ARCHITECTURES[arch]
        if image_size < spec.patch_size or image_size % spec.patch_size:
            raise ValueError(f"--image_size {image_size} must be a positive multiple of {arch}'s patch size "
                             f"{spec.patch_size} (e.g. 224 or 384)")
        torch.manual_seed(seed)
        config = PPTDeiTConfig(
            hidden_size=spec.hidden_size,
            num_hidden_layers=spec.num_hidden_layers,
            num_attention_heads=spec.num_attention_heads,
            intermediate_size=spec.intermediate_size,
            image_size=image_size,
            patch_size=spec.patch_size,
            num_labels=num_labels,
            **{**PPT_DEFAULTS, **settings},
        )
        model = PPTDeiTForImageClassification(config)
    return model.eval()


def checkpoint_exists(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def check_checkpoint(checkpoint: str) -> None:
    """A local --checkpoint must be a model folder (config.json inside); Hub repo ids are left to from_pretrained.
    Raises `FileNotFoundError` naming the path and what was expected."""
    if not looks_like_local_path(checkpoint) or checkpoint_exists(checkpoint):
        return
    expected = "a model folder with config.json (save_pretrained / train.py output) or a Hub repo id"
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"--checkpoint {checkpoint!r} does not exist; expected {expected}")
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"--checkpoint {checkpoint!r} is a file; expected {expected}")
    inside = sorted(name for name in os.listdir(checkpoint) if checkpoint_exists(os.path.join(checkpoint, name)))
    hint = f" (model folders inside it: {', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''})" if inside else ""
    raise FileNotFoundError(f"--checkpoint {checkpoint!r} is a folder without config.json{hint}; expected {expected}")


def build_stock_model(model: PPTDeiTForImageClassification, attn_implementation: str = "sdpa") -> torch.nn.Module:
    """The stock `transformers` model with the same weights: `ViTForImageClassification` for the non-distilled DeiTs
    (no DIST token), `DeiTForImageClassification(WithTeacher)` for distilled ones. Eval mode, same dtype/device.

    Raises `RuntimeError` if any weight fails to transfer (so a comparison never runs on half-random weights).
    """
    from transformers import (
        DeiTConfig,
        DeiTForImageClassification,
        DeiTForImageClassificationWithTeacher,
        ViTConfig,
        ViTForImageClassification,
    )

    config = model.config
    common = dict(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
        image_size=config.image_size,
        patch_size=config.patch_size,
        num_channels=config.num_channels,
        qkv_bias=config.qkv_bias,
        num_labels=config.num_labels,
        attn_implementation=attn_implementation,
    )
    state = model.state_dict()
    if not config.use_distillation_token:
        stock = ViTForImageClassification(ViTConfig(**common))
        state = {("vit." + k[len("deit."):] if k.startswith("deit.") else k): v for k, v in state.items()}
    elif config.distillation_head:
        stock = DeiTForImageClassificationWithTeacher(DeiTConfig(**common))
        state = {("cls_classifier." + k[len("classifier."):] if k.startswith("classifier.") else k): v for k, v in state.items()}
    else:
        stock = DeiTForImageClassification(DeiTConfig(**common))
    result = stock.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys]
    unexpected = [k for k in result.unexpected_keys if "pooler" not in k]
    if missing or unexpected:
        raise RuntimeError(f"stock comparator: weights did not transfer (missing {missing}, unexpected {unexpected})")
    param = next(model.parameters())
    return stock.to(device=param.device, dtype=param.dtype).eval()


def ppt_settings_from_args(args) -> dict:
    """The PPT settings given on the command line (absent ones left out, so the model's own apply)."""
    tokens_removed = getattr(args, "tokens_removed", None)
    if tokens_removed is not None and not isinstance(tokens_removed, int):
        tokens_removed = tokens_removed[0] if len(tokens_removed) == 1 else list(tokens_removed)
    settings = {
        "reduction_layers": getattr(args, "reduction_layers", None),
        "tokens_removed": tokens_removed,
        "prune_threshold": getattr(args, "prune_threshold", None),
        "score_function": getattr(args, "score_function", None),
    }
    return {key: value for key, value in settings.items() if value is not None}


def load_model(
    arch: str | None = None,
    checkpoint: str | None = None,
    image_size: int | None = None,
    num_labels: int | None = None,
    seed: int = 0,
    **ppt_settings,
) -> PPTDeiTForImageClassification:
    """`build_model` with the CLI's defaults and checks. `arch`: `image_size` default 224, `num_labels` default 1000.
    `checkpoint`: its own image size and classes; a different `image_size` or `num_labels` is refused (its trained
    position embeddings and classifier fit only its own)."""
    if arch is not None and checkpoint is None:
        return build_model(arch=arch, image_size=224 if image_size is None else image_size,
                           num_labels=1000 if num_labels is None else num_labels, seed=seed, **ppt_settings)
    model = build_model(arch=arch, checkpoint=checkpoint, seed=seed, **ppt_settings)
    config = model.config
    if image_size is not None and image_size != config.image_size:
        raise ValueError(f"--image_size {image_size} differs from the checkpoint's {config.image_size}; benchmark "
                         "checkpoints at their own resolution (leave --image_size out)")
    if num_labels is not None and num_labels != config.num_labels:
        raise ValueError(f"--num_labels {num_labels} differs from the checkpoint's {config.num_labels} classes; a "
                         "checkpoint keeps its trained classifier (--num_labels is for --arch; leave it out)")
    return model


def model_from_args(args, **overrides) -> PPTDeiTForImageClassification:
    """Build the model named by CLI arguments (--arch / --checkpoint, --image_size, --num_labels, PPT settings)."""
    settings = {**ppt_settings_from_args(args), **overrides}
    return load_model(arch=args.arch, checkpoint=args.checkpoint, image_size=args.image_size,
                      num_labels=args.num_labels, **settings)


def apply_dtype_device(model, args):
    """Move to the CLI's --device / --dtype (auto device: cuda when available); apply --threads. The options are
    checked first (`validate_common_options`; the CLI has run it already, so this is cheap)."""
    from .options import DTYPES, check_device, resolve_device

    device = getattr(args, "device", "auto")
    check_device(device)
    device = resolve_device(device)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return model.to(device=device, dtype=DTYPES[getattr(args, "dtype", "fp32")]), device


__all__ = [
    "ARCHITECTURES",
    "apply_dtype_device",
    "model_from_args",
    "ppt_settings_from_args",
    "PPT_DEFAULTS",
    "build_model",
    "build_stock_model",
    "load_model",
]
