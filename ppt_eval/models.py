# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The models that are measured: a PPT-DeiT from a checkpoint or a named DeiT size, and the stock `transformers`
classifier holding the same weights (the comparator of the benchmark and the weights layout of the Hub export).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from transformers import (
    DeiTConfig,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    ViTConfig,
    ViTForImageClassification,
)

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification

from .data import looks_like_local_path


@dataclass(frozen=True)
class Architecture:
    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int = 12
    patch_size: int = 16

    @property
    def intermediate_size(self) -> int:
        return 4 * self.hidden_size


# The DeiT family (Touvron et al. 2021): 12 layers, patch 16, MLP 4x.
ARCHITECTURES = {
    "deit-tiny": Architecture(192, 3),
    "deit-small": Architecture(384, 6),
    "deit-base": Architecture(768, 12),
}


def build_named_model(arch: str, image_size: int = 224, num_labels: int = 1000, seed: int = 0,
                      **ppt_settings) -> PPTDeiTForImageClassification:
    """A named DeiT size with random weights (enough for cost and speed), in eval mode. PPT settings not given
    are the config's defaults (the authors' DeiT-S schedule)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"--arch {arch!r} is not one of {', '.join(sorted(ARCHITECTURES))}")
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
        **ppt_settings,
    )
    return PPTDeiTForImageClassification(config).eval()


def is_model_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def check_checkpoint(checkpoint: str) -> None:
    """A local `checkpoint` must be a model folder (config.json inside); Hub repo ids are left to from_pretrained.
    Raises `FileNotFoundError` naming the path and what was expected."""
    if not looks_like_local_path(checkpoint) or is_model_folder(checkpoint):
        return
    expected = "a model folder with config.json (save_pretrained / train.py output) or a Hub repo id"
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"--checkpoint {checkpoint!r} does not exist; expected {expected}")
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"--checkpoint {checkpoint!r} is a file; expected {expected}")
    inside = sorted(name for name in os.listdir(checkpoint) if is_model_folder(os.path.join(checkpoint, name)))
    hint = f" (model folders inside it: {', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''})" if inside else ""
    raise FileNotFoundError(f"--checkpoint {checkpoint!r} is a folder without config.json{hint}; expected {expected}")


def load_checkpoint(checkpoint: str, **ppt_settings) -> PPTDeiTForImageClassification:
    """A PPT-DeiT classifier from a local folder or Hub repo (ours, or a stock DeiT/ViT), in eval mode, with
    `ppt_settings` applied over the checkpoint's own."""
    check_checkpoint(checkpoint)
    try:
        model = PPTDeiTForImageClassification.from_pretrained(checkpoint, **ppt_settings)
    except OSError as error:  # missing weights, a Hub id not found or not cached offline, ...
        where = "" if os.path.exists(checkpoint) else " (tried as a Hub repo id: there is no local folder of that name)"
        raise OSError(f"--checkpoint {checkpoint!r} could not be loaded{where}: {error}") from error
    return model.eval()


def load_model(source, ppt_settings: Mapping | None = None) -> PPTDeiTForImageClassification:
    """The model a `ModelSourceArguments` names (`ppt_eval.arguments`). With `--arch`, `--image_size` defaults to
    224 and `--num_labels` to 1000; a checkpoint keeps its own, and a different value is refused (its trained
    position embeddings and classifier fit only its own)."""
    settings = dict(ppt_settings or {})
    if source.arch is not None:
        return build_named_model(source.arch, 224 if source.image_size is None else source.image_size,
                                 1000 if source.num_labels is None else source.num_labels, source.seed, **settings)
    model = load_checkpoint(source.checkpoint, **settings)
    config = model.config
    if source.image_size is not None and source.image_size != config.image_size:
        raise ValueError(f"--image_size {source.image_size} differs from the checkpoint's {config.image_size}; "
                         "measure checkpoints at their own resolution (leave --image_size out)")
    if source.num_labels is not None and source.num_labels != config.num_labels:
        raise ValueError(f"--num_labels {source.num_labels} differs from the checkpoint's {config.num_labels} "
                         "classes; a checkpoint keeps its trained classifier (--num_labels is for --arch)")
    return model


# ---- the stock layout -------------------------------------------------------------------------------------------


def stock_classes(config: PPTDeiTConfig) -> tuple[str, type, type]:
    """`(model_type, config class, model class)` of the stock `transformers` classifier whose weights are exactly
    ours: ViT for the non-distilled DeiTs, DeiT (WithTeacher when it has a distillation head) for distilled ones."""
    if not config.use_distillation_token:
        return "vit", ViTConfig, ViTForImageClassification
    if config.distillation_head:
        return "deit", DeiTConfig, DeiTForImageClassificationWithTeacher
    return "deit", DeiTConfig, DeiTForImageClassification


def to_stock_state_dict(state_dict: Mapping[str, torch.Tensor], model_type: str, distillation_head: bool) -> dict:
    """Our parameter names -> those of the stock 5.x class. Both share the module layout (`layers.N.attention.
    q_proj`, `mlp.fc1`, ...); what differs is the base-model prefix (`vit.` for ViT) and the name of the CLS head
    (`cls_classifier` in the WithTeacher class)."""
    renamed = {}
    for key, tensor in state_dict.items():
        if model_type == "vit" and key.startswith("deit."):
            key = "vit." + key[len("deit."):]
        elif distillation_head and key.startswith("classifier."):
            key = "cls_" + key
        renamed[key] = tensor.detach()
    return renamed


def build_stock_model(model: PPTDeiTForImageClassification, attn_implementation: str | None = None,
                      device: torch.device | str | None = None, **config_extras) -> torch.nn.Module:
    """The stock `transformers` classifier with `model`'s weights, in eval mode, on `device` (default: the model's)
    and in the model's dtype. Loaded strictly: a weight that does not transfer raises, so a comparison never runs
    on half-random weights. `config_extras` are added to its config (the export adds the PPT settings and
    `auto_map`)."""
    config = model.config
    model_type, config_class, model_class = stock_classes(config)
    ours = config.to_dict()
    skip = {"model_type", "architectures", "transformers_version", "auto_map", "_name_or_path"}
    fields = {key: ours[key] for key in config_class().to_dict() if key in ours and key not in skip}
    stock_config = config_class(**fields, **config_extras)
    if attn_implementation is not None:
        stock_config._attn_implementation = attn_implementation
    stock = model_class(stock_config)
    stock.load_state_dict(to_stock_state_dict(model.state_dict(), model_type, config.distillation_head), strict=True)
    parameter = next(model.parameters())
    return stock.to(device=parameter.device if device is None else device, dtype=parameter.dtype).eval()


__all__ = [
    "ARCHITECTURES",
    "build_named_model",
    "build_stock_model",
    "check_checkpoint",
    "load_checkpoint",
    "load_model",
    "stock_classes",
    "to_stock_state_dict",
]
