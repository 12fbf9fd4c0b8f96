# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""What the compression step itself costs, against the layer it sits in.

At the first reduction layer (the most tokens, so the dearest step), on the same hidden states, interleaved:

- `layer`: the whole layer without compression (attention + MLP over N tokens), the reference;
- `attention statistics`: the extra work the attention does for the scores (CLS query row, value norms, mean
  keys), measured as attention-with-statistics minus attention-without;
- `compression step`: scores, policy, prune and pool (`compute_scores` + `token_ops.compress`) on those statistics.

The issue-6 target is `attention statistics + compression step < 5%` of the layer.
"""

from __future__ import annotations

import torch

from modeling_ppt_deit.modeling_ppt_deit import TokenState
from modeling_ppt_deit.token_ops import ScoreInputs, clamp_tokens_removed, compress, compute_scores, get_score_function

from .speed import time_interleaved


def measure_step_cost(
    model, batch_size: int = 32, warmup: int = 2, rounds: int = 10, device="cpu", progress: bool = True
) -> dict:
    """Median milliseconds of the layer, the attention statistics and the compression step, and their shares."""
    config = model.config
    if not config.compression_enabled:
        raise ValueError("the model has no reduction layer (reduction_layers is empty or r = 0): nothing to measure")
    layer_index = next(index for index in config.reduction_layers if config.tokens_removed_at(index) > 0)
    layer = model.deit.layers[layer_index]
    num_tokens = config.token_schedule()[layer_index][0]
    num_protected = config.num_protected_tokens
    r = clamp_tokens_removed(config.tokens_removed_at(layer_index), num_tokens, num_protected)
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(batch_size, num_tokens, config.hidden_size, generator=generator)
    hidden = hidden.to(device=parameter.device, dtype=parameter.dtype)
    needs_probs = get_score_function(config.score_function).needs_full_attention

    with torch.inference_mode():
        normed = layer.layernorm_before(hidden)
        stats = layer.attention(normed, need_stats=True, need_probs=needs_probs)
        sizes = hidden.new_ones(hidden.shape[:2])

        def compression_step():
            inputs = ScoreInputs(stats.cls_attention, stats.value_norm, num_protected, stats.probs)
            scores = compute_scores(config.score_function, inputs)
            return compress(hidden, sizes, scores, stats.key_mean, r, config.prune_threshold, num_protected)

        steps = {
            "layer": lambda: layer(hidden, TokenState(None, None)),
            "attention": lambda: layer.attention(normed),
            "attention_with_statistics": lambda: layer.attention(normed, need_stats=True, need_probs=needs_probs),
            "compression_step": compression_step,
        }
        timings = time_interleaved(
            steps, batch_size, device=device, warmup=warmup, rounds=rounds, progress=progress, description="step cost"
        )
    milliseconds = {name: stats.median_latency_ms for name, stats in timings.items()}
    statistics_ms = max(0.0, milliseconds["attention_with_statistics"] - milliseconds["attention"])
    total_ms = statistics_ms + milliseconds["compression_step"]
    return {
        "layer_index": layer_index,
        "tokens": num_tokens,
        "tokens_removed": r,
        "batch_size": batch_size,
        "score_function": config.score_function,
        "prune_threshold": config.prune_threshold,
        "layer_ms": milliseconds["layer"],
        "attention_statistics_ms": statistics_ms,
        "compression_step_ms": milliseconds["compression_step"],
        "step_share_of_layer": total_ms / milliseconds["layer"],
        "timings": {name: stats.to_dict() for name, stats in timings.items()},
    }


def format_step_cost(result: dict) -> str:
    layer = result["layer_ms"]
    return "\n".join(
        [
            f"compression step at layer {result['layer_index']} ({result['tokens']} tokens, r={result['tokens_removed']}, "
            f"batch {result['batch_size']}, score {result['score_function']}, tau {result['prune_threshold']:g}):",
            f"  whole layer without compression   {layer:8.2f} ms  100.0%",
            f"  attention statistics (extra)      {result['attention_statistics_ms']:8.2f} ms  "
            f"{100 * result['attention_statistics_ms'] / layer:5.1f}%",
            f"  scores + policy + prune + pool    {result['compression_step_ms']:8.2f} ms  "
            f"{100 * result['compression_step_ms'] / layer:5.1f}%",
            f"  compression step, all in          {100 * result['step_share_of_layer']:14.1f}% of the layer",
        ]
    )


def main_step_cost(args) -> int:
    import os

    from .models import apply_dtype_device, model_from_args
    from .report import machine_info, write_json

    model = model_from_args(args)
    model, device = apply_dtype_device(model, args)
    result = measure_step_cost(
        model, batch_size=args.batch_size, warmup=args.warmup, rounds=args.rounds, device=device,
        progress=not args.no_progress,
    )
    result["machine"] = machine_info(device)
    print(format_step_cost(result))
    if args.output_dir:
        path = os.path.join(args.output_dir, "step_cost.json")
        write_json(path, result)  # via a temporary file, as every other result: never half a file
        print(f"wrote {path}")
    return 0
