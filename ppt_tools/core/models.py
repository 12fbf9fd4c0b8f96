# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The models that are measured: a PPT-DeiT from a checkpoint or a named DeiT size, and the stock `transformers`
classifier holding the same weights (the comparator of the benchmark and the weights layout of the Hub export).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from transformers import (
    DeiTConfig,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    ViTConfig,
    ViTForImageClassification,
)

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification

from .data import looks_like_local_path
from .errors import CHECKPOINT_CONTENT_ERRORS
from .outputs import MANIFESTS, check_recorded_files


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode (no dropout) for the duration of a `with` block, then every submodule's own mode back: a measurement
    or an export leaves a model in training as it found it."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


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


def check_whole_patches(image_size: int, patch_size: int, patch_what: str = "--patch_size",
                        hidden_size: int | None = None, num_attention_heads: int | None = None) -> None:
    """A new model's shapes must divide: `image_size` by its patch size (the patch convolution would silently drop
    the pixels past the last whole patch), and `hidden_size` by `num_attention_heads` (checked here, before any
    data is read, rather than when the attention is built). A checkpoint's own sizes are the config's to check: it
    refuses only an image smaller than a patch, as transformers loads stock models of any size."""
    if image_size % patch_size:
        raise ValueError(f"--image_size {image_size} must be a multiple of {patch_what} {patch_size}")
    if hidden_size is not None and num_attention_heads and hidden_size % num_attention_heads:
        raise ValueError(f"--hidden_size {hidden_size} must be a multiple of --num_attention_heads "
                         f"{num_attention_heads}")


def build_named_model(arch: str, image_size: int = 224, num_labels: int = 1000, seed: int = 0,
                      **ppt_settings) -> PPTDeiTForImageClassification:
    """A named DeiT size with random weights (enough for cost and speed), in eval mode. PPT settings not given
    are the config's defaults (the authors' DeiT-S schedule)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"--arch {arch!r} is not one of {', '.join(sorted(ARCHITECTURES))}")
    spec = ARCHITECTURES[arch]
    check_whole_patches(image_size, spec.patch_size, f"{arch}'s patch size")
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


def check_model_folder(name: str, option: str = "--model_name_or_path", hub_example: str | None = None) -> None:
    """A local `name` (what `option` gave) must be a model folder (config.json inside); Hub repo ids are left to
    from_pretrained, which would try a mistyped local path as a Hub id and report something else. Raises
    `FileNotFoundError` naming the option, the path and what was expected."""
    if not looks_like_local_path(name) or is_model_folder(name):
        return
    path = os.path.expanduser(name)
    hub_id = f"a Hub model id such as {hub_example!r}" if hub_example else "a Hub repo id"
    expected = f"expected a folder written by save_pretrained (e.g. a train.py --output_dir) or {hub_id}"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{option} {name!r} does not exist; {expected}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{option} {name!r} is a file; {expected}")
    inside = sorted(entry for entry in os.listdir(path) if is_model_folder(os.path.join(path, entry)))
    hint = f" (model folders inside it: {', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''})" if inside else ""
    raise FileNotFoundError(f"{option} {name!r} is not a model folder (no config.json){hint}; {expected}")


# ---- weight files ---------------------------------------------------------------------------------------------


def safetensors_problem(path) -> str | None:
    """What safetensors finds wrong with the file `path` (None when it opens): a header that is too short, too long
    or not JSON, or a size other than the header describes (a truncated copy, an interrupted save). Reads only the
    header. For choosing among files before any load (a checkpoint to resume from); loading a model reports the
    same through `PPTDeiTForImageClassification.from_pretrained`."""
    try:
        with safe_open(str(path), framework="pt"):
            return None
    except SafetensorError as error:
        return f"cannot be read by safetensors ({error}): it is damaged or was not fully written"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


# The checkpoints PPTDeiTForImageClassification loads: its own, and the stock ViT / DeiT layouts.
LOADABLE_MODEL_TYPES = ("ppt_deit", "vit", "deit")
# What a config.json or weights that do not describe a model raise inside from_pretrained: `CHECKPOINT_CONTENT_ERRORS`
# (`ppt_tools.core.errors`). A field of the wrong type raises the config's StrictDataclassError, a bad value its
# ValueError, a damaged weights file an OSError naming the folder: those are bad input as they are.
# Parameters that a checkpoint of another task may lack or hold in another shape: the classification heads.
HEAD_PREFIXES = ("classifier.", "distillation_classifier.")


def check_model_type(folder, what: str) -> None:
    """A local checkpoint's config.json must name a model type PPT-DeiT loads (a BERT folder would otherwise load
    with every weight missing, i.e. random)."""
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return  # missing, not JSON, or nested past the reader's depth: from_pretrained says so, naming the file
    if not isinstance(config, dict):
        raise ValueError(f"{what}: {path!r} must hold a JSON object, got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type is not None and model_type not in LOADABLE_MODEL_TYPES:
        raise ValueError(f"{what}: config.json has model_type {model_type!r}; PPT-DeiT loads "
                         f"{', '.join(LOADABLE_MODEL_TYPES)} checkpoints")


@contextlib.contextmanager
def naming_the_checkpoint(what: str):
    """The errors of loading a checkpoint's config or weights as a `ValueError` naming `what`: the config's check of
    a field (config.json or keyword arguments) and what a config.json or weights that do not describe a model raise
    inside from_pretrained (`CHECKPOINT_CONTENT_ERRORS`)."""
    try:
        yield
    except (ValueError, StrictDataclassError) as error:
        raise ValueError(f"{what}: {error}") from error
    except CHECKPOINT_CONTENT_ERRORS as error:
        raise ValueError(f"{what} cannot be loaded, most likely because its config.json or weights do not describe a "
                         f"PPT-DeiT/ViT classifier ({type(error).__name__}: {error})") from error


def load_config(source: str, what: str, **kwargs) -> PPTDeiTConfig:
    """`PPTDeiTConfig.from_pretrained(source, **kwargs)`, with the errors of `load_pretrained`: the config's checks
    run without loading any weights."""
    with naming_the_checkpoint(what):
        return PPTDeiTConfig.from_pretrained(source, **kwargs)


def load_pretrained(source: str, what: str, *, new_head: bool = False, **kwargs) -> PPTDeiTForImageClassification:
    """`PPTDeiTForImageClassification.from_pretrained(source, **kwargs)` for a tool: a config.json or weights that
    do not describe a model, or weights that do not fit it, raise `ValueError` naming `what` (e.g.
    "--model_name_or_path 'runs/a'"), and so does a checkpoint that lacks weights (transformers would initialise
    them at random and only warn). `new_head=True`: the classification heads may be new (another set of classes); every other weight must
    still load. `OSError` (missing or damaged files, a Hub id not found) is left to the caller."""
    if os.path.isdir(source):
        check_model_type(source, what)
        # a weights file whose bytes changed since our tool wrote it (a zeroed tail still parses as safetensors)
        weights = sorted(name for name in os.listdir(source) if name.endswith(".safetensors"))
        for manifest in MANIFESTS:
            check_recorded_files(source, weights, what, manifest)
    with naming_the_checkpoint(what):
        model, info = PPTDeiTForImageClassification.from_pretrained(
            source, output_loading_info=True, ignore_mismatched_sizes=new_head, **kwargs)
    missing = sorted(key for key in info.get("missing_keys", ()) if not (new_head and key.startswith(HEAD_PREFIXES)))
    mismatched = sorted(str(item[0]) for item in info.get("mismatched_keys", ())
                        if not str(item[0]).startswith(HEAD_PREFIXES))
    if missing or mismatched:
        problem = (f"lack {len(missing)} of the model's weights (e.g. {missing[0]})" if missing
                   else f"hold {len(mismatched)} weights of another shape (e.g. {mismatched[0]})")
        raise ValueError(f"{what}: its weights {problem}; they would be random. Is it the checkpoint of another "
                         "architecture, or an incomplete copy?")
    return model


def load_checkpoint(checkpoint: str, option: str = "--model_name_or_path", **ppt_settings) -> PPTDeiTForImageClassification:
    """A PPT-DeiT classifier from a local folder or Hub repo (ours, or a stock DeiT/ViT), in eval mode, with
    `ppt_settings` applied over the checkpoint's own; errors name `option` (what gave `checkpoint`)."""
    check_model_folder(checkpoint, option)
    try:
        model = load_pretrained(checkpoint, f"{option} {checkpoint!r}", **ppt_settings)
    except OSError as error:  # missing or damaged weights, a Hub id not found or not cached offline, ...
        where = "" if os.path.exists(checkpoint) else " (tried as a Hub repo id: there is no local folder of that name)"
        raise OSError(f"{option} {checkpoint!r} could not be loaded{where}: {error}") from error
    return model.eval()


def load_model(source, ppt_settings: Mapping | None = None) -> PPTDeiTForImageClassification:
    """The model a `ModelSourceArguments` names (`ppt_tools.core.arguments`). With `--arch`, `--image_size` defaults to
    224 and `--num_labels` to 1000; a checkpoint keeps its own, and a different value is refused (its trained
    position embeddings and classifier fit only its own)."""
    settings = dict(ppt_settings or {})
    if source.arch is not None:
        return build_named_model(source.arch, 224 if source.image_size is None else source.image_size,
                                 1000 if source.num_labels is None else source.num_labels, source.seed, **settings)
    model = load_checkpoint(source.model_name_or_path, **settings)
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
    "CHECKPOINT_CONTENT_ERRORS",
    "build_named_model",
    "build_stock_model",
    "check_whole_patches",
    "check_model_folder",
    "check_model_type",
    "load_checkpoint",
    "load_config",
    "load_model",
    "load_pretrained",
    "safetensors_problem",
    "stock_classes",
    "to_stock_state_dict",
]
