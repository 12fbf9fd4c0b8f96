"""Test-only reference implementation of PPT on a (non-distilled) DeiT, written independently of the package.

It follows the structure of the authors' released timm code (a ToMe-style patch of `Block` and `Attention`) rather
than the package's: plain eager attention with the log-size added to the logits, the score computed from the CLS row
with a CLS score of 2 prepended, a boolean split of the batch into a pruned and a pooled sub-batch, ToMe's
`bipartite_soft_matching(class_token=True)` + size-weighted merge for the pooled one, a descending sort for the
pruned one, and the two re-assembled at their original batch positions. Slow and simple on purpose; it reads the
weights of a `PPTDeiTForImageClassification` by parameter name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ReferenceStep:
    layer_index: int
    scores: torch.Tensor  # [B, N - 1], normalised, CLS excluded
    variance: torch.Tensor  # [B]
    prune: torch.Tensor  # [B] bool
    tokens_before: int
    tokens_after: int


def _tome_bipartite_soft_matching(metric: torch.Tensor, r: int):
    """ToMe's bipartite soft matching with `class_token=True` (CLS may not be merged)."""
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[..., ::2, :], metric[..., 1::2, :]
    scores = a @ b.transpose(-1, -2)
    scores[..., 0, :] = -math.inf  # CLS
    node_max, node_idx = scores.max(dim=-1)
    edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
    unm_idx = edge_idx[..., r:, :]
    src_idx = edge_idx[..., :r, :]
    dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
    unm_idx = unm_idx.sort(dim=1)[0]  # keep CLS (and unmerged tokens) in order

    def merge(x: torch.Tensor, mode: str = "sum") -> torch.Tensor:
        src, dst = x[..., ::2, :], x[..., 1::2, :]
        n, t1, c = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(n, t1 - r, c))
        src = src.gather(dim=-2, index=src_idx.expand(n, r, c))
        dst = dst.scatter_reduce(-2, dst_idx.expand(n, r, c), src, reduce=mode)
        return torch.cat([unm, dst], dim=1)

    return merge


def _merge_wavg(merge, x: torch.Tensor, size: torch.Tensor):
    x = merge(x * size, mode="sum")
    size = merge(size, mode="sum")
    return x / size, size


def _attention(x, weights, prefix, num_heads, size, score="ats"):
    B, N, C = x.shape
    head_dim = C // num_heads
    q = F.linear(x, weights[f"{prefix}.attention.q_proj.weight"], weights[f"{prefix}.attention.q_proj.bias"])
    k = F.linear(x, weights[f"{prefix}.attention.k_proj.weight"], weights[f"{prefix}.attention.k_proj.bias"])
    v = F.linear(x, weights[f"{prefix}.attention.v_proj.weight"], weights[f"{prefix}.attention.v_proj.bias"])
    q, k, v = (t.reshape(B, N, num_heads, head_dim).permute(0, 2, 1, 3) for t in (q, k, v))
    attn = (q @ k.transpose(-2, -1)) * head_dim**-0.5
    if size is not None:
        attn = attn + size.log()[:, None, None, :, 0]  # proportional attention
    attn = attn.softmax(dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(B, N, C)
    out = F.linear(out, weights[f"{prefix}.attention.o_proj.weight"], weights[f"{prefix}.attention.o_proj.bias"])
    v_norm = v.transpose(1, 2).reshape(B, N, C).norm(dim=-1)  # [B, N], all heads concatenated
    if score == "ats":  # CLS attention summed over heads times the value norm
        scores = attn[:, :, 0, 1:].sum(dim=1) * v_norm[:, 1:]
    elif score == "cls_attention":  # the thesis's "average"
        scores = attn[:, :, 0, 1:].mean(dim=1)
    elif score == "entropy":  # the thesis's "diversity": entropy of each token's own attention row
        entropy = -(attn * torch.log(attn + 1e-12)).sum(dim=-1)  # [B, H, N]
        scores = entropy.mean(dim=1)[:, 1:] * v_norm[:, 1:]
    else:
        raise ValueError(score)
    scores = scores / scores.sum(dim=-1, keepdim=True)
    return out, k.mean(1), scores


def reference_logits(model, pixel_values: torch.Tensor, reduction_layers, tokens_removed: int, tau: float,
                     proportional_attention: bool = True, score: str = "ats"):
    """Logits `[B, num_labels]` and the per-layer steps of the authors' algorithm on `model`'s weights, computed in
    the dtype of `pixel_values` (float32 or float64)."""
    config = model.config
    assert not config.use_distillation_token, "the reference covers the non-distilled model"
    assert config.hidden_act == "gelu", "the reference uses exact GELU"
    dtype = pixel_values.dtype if pixel_values.is_floating_point() else torch.float32
    weights = {name: p.detach().to(dtype) for name, p in model.named_parameters()}
    eps = config.layer_norm_eps
    C = config.hidden_size
    x = F.conv2d(pixel_values.to(dtype), weights["deit.embeddings.patch_embeddings.projection.weight"],
                 weights["deit.embeddings.patch_embeddings.projection.bias"], stride=config.patch_size)
    x = x.flatten(2).transpose(1, 2)
    B = x.shape[0]
    x = torch.cat([weights["deit.embeddings.cls_token"].expand(B, -1, -1), x], dim=1)
    x = x + weights["deit.embeddings.position_embeddings"]

    size = None
    steps = []
    for index in range(config.num_hidden_layers):
        prefix = f"deit.layers.{index}"
        if index in reduction_layers and size is None:
            size = torch.ones(B, x.shape[1], 1, dtype=dtype)
        h = F.layer_norm(x, (C,), weights[f"{prefix}.layernorm_before.weight"],
                         weights[f"{prefix}.layernorm_before.bias"], eps)
        attn_out, metric, scores = _attention(h, weights, prefix, config.num_attention_heads,
                                              size if proportional_attention else None, score)
        x = x + attn_out
        r = tokens_removed if index in reduction_layers else 0
        r = min(r, (x.shape[1] - 1) // 2)
        if r > 0:
            N = x.shape[1]
            full_scores = torch.cat([torch.full((B, 1), 2.0, dtype=dtype), scores], dim=1)  # CLS always ranks first
            variance = full_scores[:, 1:].var(dim=-1)
            prune_mask = variance >= tau
            pool_mask = ~prune_mask
            new_x = torch.empty(B, N - r, C, dtype=dtype)
            new_size = torch.empty(B, N - r, 1, dtype=dtype)
            if pool_mask.any():
                merge = _tome_bipartite_soft_matching(metric[pool_mask], r)
                px, psize = _merge_wavg(merge, x[pool_mask], size[pool_mask])
                new_x[pool_mask], new_size[pool_mask] = px, psize
            if prune_mask.any():
                idx = full_scores[prune_mask].argsort(dim=-1, descending=True)[:, : N - r]
                xs, ss = x[prune_mask], size[prune_mask]
                new_x[prune_mask] = xs.gather(1, idx[..., None].expand(-1, -1, C))
                new_size[prune_mask] = ss.gather(1, idx[..., None])
            steps.append(ReferenceStep(index, scores, variance, prune_mask, N, N - r))
            x, size = new_x, new_size
        h = F.layer_norm(x, (C,), weights[f"{prefix}.layernorm_after.weight"],
                         weights[f"{prefix}.layernorm_after.bias"], eps)
        h = F.linear(h, weights[f"{prefix}.mlp.fc1.weight"], weights[f"{prefix}.mlp.fc1.bias"])
        h = F.gelu(h)
        h = F.linear(h, weights[f"{prefix}.mlp.fc2.weight"], weights[f"{prefix}.mlp.fc2.bias"])
        x = x + h
    x = F.layer_norm(x, (C,), weights["deit.layernorm.weight"], weights["deit.layernorm.bias"], eps)
    logits = F.linear(x[:, 0], weights["classifier.weight"], weights["classifier.bias"])
    return logits, steps
