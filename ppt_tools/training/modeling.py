# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The model and image processor train.py fine-tunes: from a checkpoint (a new head when the classes differ) or
from scratch."""

from __future__ import annotations

import contextlib

from transformers import AutoImageProcessor

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification
from ppt_tools.core.errors import USER_ERRORS
from ppt_tools.core.models import CHECKPOINT_CONTENT_ERRORS, load_pretrained
from ppt_tools.core.preprocessing import resized_to, whole_image_processor

from .arguments import ModelArguments, compression_settings


@contextlib.contextmanager
def loading_from(source: str, what: str):
    """Name what was being loaded from where in the errors of loading it: bad input (`USER_ERRORS`: Hub id not
    found, offline, files missing or damaged, the config's checks) and what a checkpoint that does not describe a
    model raises inside from_pretrained (`CHECKPOINT_CONTENT_ERRORS`), as a `ValueError` for train.py's translator."""
    try:
        yield
    except (*USER_ERRORS, *CHECKPOINT_CONTENT_ERRORS) as error:
        raise ValueError(f"could not load the {what} of {source!r}: {error}") from error


def build_config(model_args: ModelArguments, label_names: list[str]) -> PPTDeiTConfig:
    """The full config (architecture, labels, PPT) without loading any weights, so bad settings fail early."""
    id2label = dict(enumerate(label_names))
    common = {"num_labels": len(label_names), "id2label": id2label,
              "label2id": {name: index for index, name in id2label.items()}, **compression_settings(model_args)}
    if model_args.from_scratch:
        return PPTDeiTConfig(
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=model_args.intermediate_size,
            image_size=model_args.image_size,
            patch_size=model_args.patch_size,
            **common,
        )
    with loading_from(model_args.model_name_or_path, "config"):
        return PPTDeiTConfig.from_pretrained(
            model_args.model_name_or_path, revision=model_args.model_revision, cache_dir=model_args.cache_dir, **common
        )


def build_model(model_args: ModelArguments, config: PPTDeiTConfig) -> PPTDeiTForImageClassification:
    if model_args.from_scratch:
        return PPTDeiTForImageClassification(config)
    source = {"revision": model_args.model_revision, "cache_dir": model_args.cache_dir}
    with loading_from(model_args.model_name_or_path, "weights"):
        # A dataset with other classes than the checkpoint's gets a new head. Only the heads may then be new:
        # any other missing or mismatched weight still fails loudly (load_pretrained).
        checkpoint_classes = checkpoint_num_labels(model_args.model_name_or_path, **source)
        return load_pretrained(model_args.model_name_or_path, f"--model_name_or_path {model_args.model_name_or_path!r}",
                               new_head=checkpoint_classes != config.num_labels, config=config, **source)


def checkpoint_num_labels(name: str, **source) -> int:
    """The number of classes of the checkpoint's own head, read from its config.json as it is (the checkpoint's
    PPT schedule, if any, need not fit: only the head matters here)."""
    config_dict, _ = PPTDeiTConfig.get_config_dict(name, **source)
    return len(config_dict.get("id2label") or {}) or int(config_dict.get("num_labels", 2))


def pretrained_image_processor(model_args: ModelArguments, image_size: int):
    """The checkpoint's own processor (its mean/std), set to resize whole images to `image_size`."""
    with loading_from(model_args.model_name_or_path, "image processor"):
        processor = AutoImageProcessor.from_pretrained(
            model_args.model_name_or_path, revision=model_args.model_revision, cache_dir=model_args.cache_dir
        )
    return resized_to(processor, image_size)


def scratch_image_processor(image_size: int, mean: list[float], std: list[float]):
    """A ViT image processor for `image_size` px with the dataset's own mean/std (bicubic resize, no crop)."""
    return whole_image_processor(image_size, mean, std)
