"""Shared helpers for the model tests: tiny configs, deterministic inputs, and checkpoints written by hand in the
exact layouts that DeiT repos on the Hugging Face Hub have (written key by key, not by `transformers`' own saving).

The tiny model: hidden 32, 4 layers, 2 heads, 32 px images, 4 px patches -> 64 patches + CLS = 65 tokens; with
`tokens_removed=8` at layers 1 and 2: 65 -> 57 -> 49.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification


TINY = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=4,
    num_labels=10,
)
TINY_PPT = dict(reduction_layers=[1, 2], tokens_removed=8)

# DeiT-S at 224 px (the paper's setting).
DEIT_S = dict(
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    intermediate_size=1536,
    image_size=224,
    patch_size=16,
)


def tiny_config(**overrides) -> PPTDeiTConfig:
    return PPTDeiTConfig(**{**TINY, **TINY_PPT, **overrides})


def tiny_model(seed: int = 0, **overrides) -> PPTDeiTForImageClassification:
    """A randomly initialised tiny PPT-DeiT in eval mode. The init std is raised from 0.02 so that attention is far
    from uniform and the score variances differ between samples (with 0.02 every token looks alike)."""
    torch.manual_seed(seed)
    overrides.setdefault("initializer_range", 0.2)
    return PPTDeiTForImageClassification(tiny_config(**overrides)).eval()


def pixels(batch: int = 2, size: int = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=generator)


def mixed_pixels(batch: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Images that differ in kind (noise of different scales, smooth gradients, a constant image), so that the
    significance-score variances spread out across the batch."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    ramp = torch.linspace(-1, 1, size)
    for index in range(batch):
        kind = index % 4
        if kind == 0:
            image = 3.0 * torch.randn(3, size, size, generator=generator)
        elif kind == 1:
            image = ramp[None, :, None] * ramp[None, None, :] * torch.tensor([1.0, -0.5, 0.2])[:, None, None]
        elif kind == 2:
            image = torch.full((3, size, size), 0.3)
        else:
            image = 0.3 * torch.randn(3, size, size, generator=generator)
            image[:, : size // 2, : size // 2] += 4.0  # one bright corner
        images.append(image)
    return torch.stack(images)


def threshold_between(variances: torch.Tensor) -> float:
    """A tau that splits `variances` (one per sample) at the largest gap in log space: both policies occur."""
    values = torch.sort(variances.double().flatten()).values
    logs = values.log()
    gaps = logs[1:] - logs[:-1]
    index = int(gaps.argmax())
    return float(math.exp((logs[index] + logs[index + 1]) / 2))


# --------------------------------------------------------------------------------------------------------------------
# Hand-written Hub checkpoints
# --------------------------------------------------------------------------------------------------------------------

HUB_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                patch_size=8, num_labels=10)


def _rand(generator, *shape, scale=0.2):
    return scale * torch.randn(*shape, generator=generator)


def hub_state_dict(prefix: str, distilled: bool, seed: int = 0, sizes: dict = HUB_TINY) -> dict[str, torch.Tensor]:
    """Old (transformers 4.x) key names exactly as `facebook/deit-*` repos hold them.

    prefix: "vit" (non-distilled DeiT repos, `ViTForImageClassification`) or "deit" (distilled, `...WithTeacher`).
    """
    g = torch.Generator().manual_seed(seed)
    d, inter, p = sizes["hidden_size"], sizes["intermediate_size"], sizes["patch_size"]
    num_patches = (sizes["image_size"] // p) ** 2
    prefix_tokens = 2 if distilled else 1
    sd = {
        f"{prefix}.embeddings.cls_token": _rand(g, 1, 1, d),
        f"{prefix}.embeddings.position_embeddings": _rand(g, 1, num_patches + prefix_tokens, d),
        f"{prefix}.embeddings.patch_embeddings.projection.weight": _rand(g, d, 3, p, p),
        f"{prefix}.embeddings.patch_embeddings.projection.bias": _rand(g, d),
    }
    if distilled:
        sd[f"{prefix}.embeddings.distillation_token"] = _rand(g, 1, 1, d)
    for n in range(sizes["num_hidden_layers"]):
        layer = f"{prefix}.encoder.layer.{n}"
        for name in ("query", "key", "value"):
            sd[f"{layer}.attention.attention.{name}.weight"] = _rand(g, d, d)
            sd[f"{layer}.attention.attention.{name}.bias"] = _rand(g, d)
        sd[f"{layer}.attention.output.dense.weight"] = _rand(g, d, d)
        sd[f"{layer}.attention.output.dense.bias"] = _rand(g, d)
        sd[f"{layer}.intermediate.dense.weight"] = _rand(g, inter, d)
        sd[f"{layer}.intermediate.dense.bias"] = _rand(g, inter)
        sd[f"{layer}.output.dense.weight"] = _rand(g, d, inter)
        sd[f"{layer}.output.dense.bias"] = _rand(g, d)
        for ln in ("layernorm_before", "layernorm_after"):
            sd[f"{layer}.{ln}.weight"] = 1.0 + _rand(g, d, scale=0.1)
            sd[f"{layer}.{ln}.bias"] = _rand(g, d, scale=0.1)
    sd[f"{prefix}.layernorm.weight"] = 1.0 + _rand(g, d, scale=0.1)
    sd[f"{prefix}.layernorm.bias"] = _rand(g, d, scale=0.1)
    heads = ["cls_classifier", "distillation_classifier"] if distilled else ["classifier"]
    for head in heads:
        sd[f"{head}.weight"] = _rand(g, sizes["num_labels"], d)
        sd[f"{head}.bias"] = _rand(g, sizes["num_labels"])
    return sd


def expected_ppt_name(old_name: str) -> str:
    """Where a Hub key must land in `PPTDeiTForImageClassification`, written out by hand (independent of the
    package's `CHECKPOINT_KEY_MAPPING`)."""
    name = old_name
    if name.startswith("vit."):
        name = "deit." + name[len("vit."):]
    if name.startswith("cls_classifier."):
        name = "classifier." + name[len("cls_classifier."):]
    replacements = [
        (".encoder.layer.", ".layers."),
        (".attention.attention.query.", ".attention.q_proj."),
        (".attention.attention.key.", ".attention.k_proj."),
        (".attention.attention.value.", ".attention.v_proj."),
        (".attention.output.dense.", ".attention.o_proj."),
        (".intermediate.dense.", ".mlp.fc1."),
        (".output.dense.", ".mlp.fc2."),  # after attention.output.dense has been renamed above
    ]
    for old, new in replacements:
        name = name.replace(old, new)
    return name


def hub_config(model_type: str, sizes: dict = HUB_TINY) -> dict:
    """config.json as the facebook/deit-* repos have it (4.x era fields), shrunk to `sizes`."""
    labels = {str(i): f"class_{i}" for i in range(sizes["num_labels"])}
    config = {
        "architectures": ["ViTForImageClassification"] if model_type == "vit" else [
            "DeiTForImageClassificationWithTeacher"],
        "attention_probs_dropout_prob": 0.0,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": sizes["hidden_size"],
        "id2label": labels,
        "image_size": sizes["image_size"],
        "initializer_range": 0.02,
        "intermediate_size": sizes["intermediate_size"],
        "label2id": {v: int(k) for k, v in labels.items()},
        "layer_norm_eps": 1e-12,
        "model_type": model_type,
        "num_attention_heads": sizes["num_attention_heads"],
        "num_channels": 3,
        "num_hidden_layers": sizes["num_hidden_layers"],
        "patch_size": sizes["patch_size"],
        "qkv_bias": True,
        "transformers_version": "4.13.0.dev0",
    }
    if model_type == "deit":
        config["encoder_stride"] = sizes["patch_size"]
    return config


PREPROCESSOR_CONFIG = {
    "crop_size": 32,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "DeiTFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "size": 36,
}


def write_hub_checkpoint(directory: Path, model_type: str, weights_format: str = "safetensors", seed: int = 0):
    """Write a tiny checkpoint with the layout of facebook/deit-small-patch16-224 (`model_type="vit"`) or
    facebook/deit-small-distilled-patch16-224 (`model_type="deit"`). Returns the state dict written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_dict = hub_state_dict("vit" if model_type == "vit" else "deit", distilled=model_type == "deit", seed=seed)
    if weights_format == "safetensors":
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(directory / "model.safetensors"),
                  metadata={"format": "pt"})
    elif weights_format == "bin":
        torch.save(state_dict, directory / "pytorch_model.bin")
    else:
        raise ValueError(weights_format)
    (directory / "config.json").write_text(json.dumps(hub_config(model_type), indent=2))
    (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    return state_dict
