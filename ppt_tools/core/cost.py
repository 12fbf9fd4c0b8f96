# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Cost of a PPT-DeiT forward pass: analytic multiply-accumulates (the cost model of docs/ALGORITHM.md) and a check against
`torch.utils.flop_counter.FlopCounterMode` on the real forward.

Conventions (one image):

- **MACs** are multiply-accumulates. The PPT paper (and most ViT papers) write "GFLOPs" for GMACs.
- **FLOPs** = 2 x MACs, which is what `FlopCounterMode` counts for matmuls and convolutions.

The cost model (docs/ALGORITHM.md) counts the transformer proper: per layer with `n` tokens in attention and `m` in the MLP,
`4 n D^2` (q, k, v, o projections) `+ 2 n^2 D` (`Q K^T` and `A V`) `+ 2 m D I` (the MLP, `I` = intermediate size,
`8 m D^2` when `I = 4 D`), plus the patch embedding `N_patches * C * P^2 * D` and the head `D * num_labels`.

The compression step adds a few small matmuls that the flop counter also sees, reported separately as
*compression overhead*: the CLS query row `q_CLS K^T` used by the CLS-row score functions (`n D` MACs per
reduction layer) and, when pooling can happen (`tau > 0`), the cosine similarity of bipartite matching
(`(ceil(n/2) - P_A) * (floor(n/2) - P_B) * head_dim` MACs, the protected tokens left out: `P_A` = 1 for CLS,
`P_B` = 1 for DIST if present). Score functions that need full attention rows (`entropy`) compute
the attention explicitly instead of through SDPA: same `2 n^2 D` MACs, no CLS-row extra.

Note on the flop counter: on CPU, `F.scaled_dot_product_attention` dispatches to
`aten._scaled_dot_product_flash_attention_for_cpu`, which torch's registry does not count (it only knows the
CUDA flash / efficient / cuDNN kernels). `flop_count` registers formulas for the CPU kernel (forward and backward)
with the same formula torch uses for the CUDA kernels, so the count is complete on every device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from modeling_ppt_deit import PPTDeiTConfig
from modeling_ppt_deit.token_ops import get_score_function


@dataclass
class LayerCost:
    """MACs of one transformer layer for one image."""

    layer_index: int
    tokens_attention: int  # n
    tokens_mlp: int  # m
    projection_macs: int  # 4 n D^2
    attention_macs: int  # 2 n^2 D
    mlp_macs: int  # 2 m D I
    compression_macs: int = 0  # CLS row + bipartite similarity (0 outside reduction layers)

    @property
    def macs(self) -> int:
        """The cost model (docs/ALGORITHM.md) (without the compression overhead)."""
        return self.projection_macs + self.attention_macs + self.mlp_macs


@dataclass
class ModelCost:
    """Analytic cost of one forward pass, for one image."""

    patch_embedding_macs: int
    head_macs: int
    layers: list[LayerCost] = field(default_factory=list)

    @property
    def layer_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def macs(self) -> int:
        """The cost model (docs/ALGORITHM.md): patch embedding + layers + head (what the paper reports as 'GFLOPs')."""
        return self.patch_embedding_macs + self.layer_macs + self.head_macs

    @property
    def compression_macs(self) -> int:
        return sum(layer.compression_macs for layer in self.layers)

    @property
    def total_macs(self) -> int:
        """Every matmul of the forward, compression overhead included: what the flop counter should see / 2."""
        return self.macs + self.compression_macs

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    @property
    def tokens_per_layer(self) -> list[tuple[int, int]]:
        return [(layer.tokens_attention, layer.tokens_mlp) for layer in self.layers]

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            macs=self.macs, flops=self.flops, compression_macs=self.compression_macs, total_macs=self.total_macs
        )
        return data


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def analytic_cost(config: PPTDeiTConfig, image_size: int | None = None) -> ModelCost:
    """The cost model (docs/ALGORITHM.md) for one image of `image_size` (default: the config's) under the config's PPT settings.

    Args:
        config: a `PPTDeiTConfig` (compression off when `reduction_layers` is empty).
        image_size: square side in pixels (or `(height, width)`); positional embeddings are assumed interpolated
            when it differs from the config's.

    Returns:
        `ModelCost` with per-layer `(n, m)` token counts and MACs.
    """
    size = config.image_size if image_size is None else image_size
    height, width = _pair(size)
    patch_h, patch_w = _pair(config.patch_size)
    num_patches = (height // patch_h) * (width // patch_w)
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = hidden // config.num_attention_heads
    num_heads = config.num_attention_heads

    patch_embedding = num_patches * config.num_channels * patch_h * patch_w * hidden
    num_heads_out = 2 if config.distillation_head else 1
    head = num_heads_out * hidden * config.num_labels if config.num_labels > 0 else 0

    score_needs_rows = get_score_function(config.score_function).needs_full_attention
    pooling_possible = config.prune_threshold > 0

    layers = []
    for index, (n, m) in enumerate(config.token_schedule(size)):
        compression = 0
        if m < n:  # a reduction layer that removed tokens
            if not score_needs_rows:
                compression += n * head_dim * num_heads  # q_CLS K^T over all heads
            if pooling_possible:
                # cosine similarity A x B of mean keys; CLS (in A) and DIST (in B) take no part in the matching
                protected = config.num_protected_tokens
                a, b = math.ceil(n / 2) - (protected + 1) // 2, n // 2 - protected // 2
                compression += a * b * head_dim
        layers.append(
            LayerCost(
                layer_index=index,
                tokens_attention=n,
                tokens_mlp=m,
                projection_macs=4 * n * hidden * hidden,
                attention_macs=2 * n * n * hidden,
                mlp_macs=2 * m * hidden * inter,
                compression_macs=compression,
            )
        )
    return ModelCost(patch_embedding, head, layers)


# ---------------------------------------------------------------------------------------------------------------
# Flop counter
# ---------------------------------------------------------------------------------------------------------------


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def sdpa_custom_mapping() -> dict:
    """Flop formulas for the SDPA kernels torch's registry misses (the CPU flash kernel), for `FlopCounterMode`."""
    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flop
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flop
    return mapping


@dataclass
class FlopCount:
    """What `FlopCounterMode` saw on one forward (or training step), divided by the batch size."""

    flops_per_image: float
    by_operator: dict[str, float]  # per image
    batch_size: int

    @property
    def macs_per_image(self) -> float:
        return self.flops_per_image / 2


def flop_count(model: torch.nn.Module, pixel_values: torch.Tensor, backward: bool = False, **forward_kwargs) -> FlopCount:
    """Count the FLOPs of `model(pixel_values)` (and its backward when `backward`) with `FlopCounterMode`.

    Args:
        model: any image classifier taking `pixel_values` (PPT-DeiT or a stock ViT).
        pixel_values: `[B, C, H, W]`; use a small batch (1) on CPU.
        backward: also run `logits.sum().backward()` inside the counter (training cost).

    Returns:
        `FlopCount` with the total and per-operator FLOPs for one image.
    """
    batch = pixel_values.shape[0]
    with FlopCounterMode(display=False, custom_mapping=sdpa_custom_mapping()) as counter:
        if backward:
            model(pixel_values, **forward_kwargs).logits.float().sum().backward()
        else:
            with torch.no_grad():
                model(pixel_values, **forward_kwargs)
    by_operator = {str(op): count / batch for op, count in counter.get_flop_counts().get("Global", {}).items()}
    return FlopCount(counter.get_total_flops() / batch, by_operator, batch)


def relative_difference(measured: float, expected: float) -> float:
    """`|measured - expected| / expected` (0 when both are 0)."""
    if expected == 0:
        return 0.0 if measured == 0 else math.inf
    return abs(measured - expected) / expected


def baseline_cost(config: PPTDeiTConfig, image_size: int | None = None) -> ModelCost:
    """Analytic cost of the same model with compression off (the stock DeiT/ViT)."""
    return analytic_cost(config.with_compression(reduction_layers=[]), image_size)


def baseline_macs(config: PPTDeiTConfig, image_size: int | None = None) -> int:
    """MACs of the same model with compression off (the stock DeiT/ViT)."""
    return baseline_cost(config, image_size).macs


__all__ = [
    "FlopCount",
    "baseline_cost",
    "baseline_macs",
    "LayerCost",
    "ModelCost",
    "analytic_cost",
    "flop_count",
    "relative_difference",
    "sdpa_custom_mapping",
]
