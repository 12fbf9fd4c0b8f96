# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""On a CUDA GPU, the model computes what it computes on the CPU, in fp32, bf16 and fp16, eager and compiled.

Skipped where there is no GPU (CI has none); `scripts/gpu_benchmarks.sh` runs this file on a GPU machine.
The CPU fp32 model is the reference. On the GPU, fp32 matmuls may use TF32 (off here, so the comparison is tight);
bf16/fp16 are compared with tau = 0 and tau = inf, where rounding cannot flip a per-sample policy.
"""

import math

import pytest
import torch

from model_fixtures import mixed_pixels, threshold_between, tiny_model


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _cpu_and_gpu(prune_threshold, dtype=torch.float32, **overrides):
    """The same tiny model (same seed) on the CPU in fp32 and on the GPU in `dtype`."""
    settings = {"initializer_range": 0.5, "prune_threshold": prune_threshold, "track_sources": True, **overrides}
    return tiny_model(**settings), tiny_model(**settings).to(device="cuda", dtype=dtype)


def _mixed_tau(pixel_values, **overrides):
    """A tau between the first reduction layer's per-sample variances: the batch mixes pruning and pooling."""
    probe = tiny_model(initializer_range=0.5, prune_threshold=0.0, **overrides)
    with torch.no_grad():
        return threshold_between(probe(pixel_values, output_compression=True).compression[0].score_variance)


@pytest.mark.parametrize("score_function", ["ats", "cls_attention", "entropy"])
def test_fp32_on_gpu_matches_the_cpu(score_function):
    x = mixed_pixels(8)
    cpu, gpu = _cpu_and_gpu(_mixed_tau(x, score_function=score_function), score_function=score_function)
    with torch.no_grad():
        expected = cpu(x, output_compression=True)
        got = gpu(x.cuda(), output_compression=True)
    first = expected.compression[0].pruned
    assert first.any() and not first.all(), "the batch must mix pruning and pooling"
    for ours, theirs in zip(got.compression, expected.compression, strict=True):
        assert torch.equal(ours.pruned.cpu(), theirs.pruned)
    torch.testing.assert_close(got.logits.cpu(), expected.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.token_sizes.cpu(), expected.token_sizes)
    torch.testing.assert_close(got.token_sources.cpu(), expected.token_sources)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("prune_threshold", [0.0, math.inf])
def test_half_precision_on_gpu_adds_little_error_to_what_the_dtype_itself_costs(dtype, prune_threshold):
    """The relative logit error of PPT in `dtype` (against fp32 on the CPU) stays within 3x that of the same model
    with compression off: the compression step (sizes, merges, top-k) does not amplify rounding. Measured on the
    CPU: 1.0-1.6x for this model."""
    x = mixed_pixels(8)
    errors = {}
    for name, layers in (("ppt", [1, 2]), ("off", [])):
        cpu, gpu = _cpu_and_gpu(prune_threshold, dtype=dtype, reduction_layers=layers, initializer_range=0.2)
        with torch.no_grad():
            expected = cpu(x).logits
            got = gpu(x.to(device="cuda", dtype=dtype)).logits.float().cpu()
        assert torch.isfinite(got).all()
        errors[name] = float((got - expected).abs().max() / expected.abs().max())
    assert errors["ppt"] <= 3 * errors["off"] + 1e-3, errors


def test_compiled_on_gpu_matches_eager():
    x = mixed_pixels(8).cuda()
    _, model = _cpu_and_gpu(_mixed_tau(x.cpu()))
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        expected = model(x).logits
        got = compiled(x).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_training_step_on_gpu():
    """What Trainer does with --bf16: autocast forward, fp32 master weights, finite loss and gradients."""
    _, model = _cpu_and_gpu(_mixed_tau(mixed_pixels(8)))
    model.train()
    x, labels = mixed_pixels(8).cuda(), torch.arange(8, device="cuda") % model.config.num_labels
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(pixel_values=x, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
