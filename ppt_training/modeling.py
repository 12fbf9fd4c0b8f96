# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Building the model and its image processor for train.py, and the numbers the final table reports."""

from __future__ import annotations

import contextlib
import hashlib
import logging

import torch
from PIL import Image
from transformers import AutoImageProcessor

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification

from .arguments import ModelArguments


logger = logging.getLogger(__name__)


def ppt_settings(model_args: ModelArguments) -> dict:
    """The PPT settings the user asked for (unset ones are left to the checkpoint / config defaults)."""
    if not model_args.ppt or model_args.reduction_layers == []:
        return {"reduction_layers": [], "tokens_removed": 0}
    settings = {}
    if model_args.reduction_layers is not None:
        settings["reduction_layers"] = list(model_args.reduction_layers)
    if model_args.tokens_removed is not None:
        removed = list(model_args.tokens_removed)
        settings["tokens_removed"] = removed[0] if len(removed) == 1 else removed
    if model_args.prune_threshold is not None:
        settings["prune_threshold"] = float(model_args.prune_threshold)
    if model_args.score_function is not None:
        settings["score_function"] = model_args.score_function
    return settings


def label_maps(label_names: list[str]) -> tuple[dict[int, str], dict[str, int]]:
    id2label = {index: name for index, name in enumerate(label_names)}
    return id2label, {name: index for index, name in id2label.items()}


@contextlib.contextmanager
def loading_from(source: str, what: str):
    """Turn transformers' `OSError` (Hub id not found, offline, files missing in a folder) into a `ValueError`
    that names what was being loaded from where, which train.py reports as one line."""
    try:
        yield
    except OSError as error:
        raise ValueError(f"could not load the {what} of {source!r}: {error}") from error


def build_config(model_args: ModelArguments, label_names: list[str]) -> PPTDeiTConfig:
    """The full config (architecture, labels, PPT) without loading any weights, so bad settings fail early."""
    id2label, label2id = label_maps(label_names)
    common = {"num_labels": len(label_names), "id2label": id2label, "label2id": label2id, **ppt_settings(model_args)}
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
    # A different number of labels than the checkpoint's gives a new head: ignore_mismatched_sizes.
    with loading_from(model_args.model_name_or_path, "weights"):
        return PPTDeiTForImageClassification.from_pretrained(
            model_args.model_name_or_path,
            config=config,
            revision=model_args.model_revision,
            cache_dir=model_args.cache_dir,
            ignore_mismatched_sizes=True,
        )


def _size_of(size) -> int | None:
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return get("height") or get("shortest_edge")


def processor_resolution(processor) -> int | None:
    """The side of the square the processor feeds the model (its crop when it crops, else its resize)."""
    if getattr(processor, "do_center_crop", False):
        return _size_of(getattr(processor, "crop_size", None))
    return _size_of(getattr(processor, "size", None))


def pretrained_image_processor(model_args: ModelArguments, image_size: int):
    """The checkpoint's own processor (its mean/std), set to resize whole images to `image_size`, bicubic: the
    same preprocessing as the evaluation transform, so that the saved model folder reproduces our figures."""
    with loading_from(model_args.model_name_or_path, "image processor"):
        processor = AutoImageProcessor.from_pretrained(
            model_args.model_name_or_path, revision=model_args.model_revision, cache_dir=model_args.cache_dir
        )
    resolution = processor_resolution(processor)
    if resolution is not None and resolution != image_size:
        logger.warning(
            "the image processor of %s produces %d px but the model expects %d px; using %d px",
            model_args.model_name_or_path, resolution, image_size, image_size,
        )
    processor.do_resize = True
    processor.size = {"height": image_size, "width": image_size}
    processor.do_center_crop = False
    processor.resample = Image.BICUBIC
    return processor


def scratch_image_processor(image_size: int, mean: list[float], std: list[float]):
    """A ViT image processor for `image_size` px with the dataset's own mean/std (bicubic resize, no crop)."""
    from transformers import ViTImageProcessor  # imported here: it warns at import when torchvision is absent

    return ViTImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        resample=Image.BICUBIC,
        do_rescale=True,
        do_normalize=True,
        image_mean=mean,
        image_std=std,
    )


@contextlib.contextmanager
def compression_off(model: PPTDeiTForImageClassification):
    """Temporarily run `model` as the stock DeiT (no reduction layers), then restore its PPT settings."""
    saved = {"reduction_layers": list(model.config.reduction_layers), "tokens_removed": model.config.tokens_removed}
    model.configure_compression(reduction_layers=[], tokens_removed=0)
    try:
        yield model
    finally:
        model.configure_compression(**saved)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (names and bytes, sorted by name): equal iff the weights are equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
