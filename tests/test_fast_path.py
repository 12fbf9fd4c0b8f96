"""The fast path (SDPA, CLS attention row only, tensor-op policy) computes what the reference path computes.

Reference path: `attn_implementation="eager"`, which materialises the full attention probabilities in every layer
and takes the CLS row from them. Fast path: `scaled_dot_product_attention` plus a separate CLS-row softmax. Both
must agree on logits, per-sample policies, token sizes and source maps — also when compiled with
`fullgraph=True`, which fails on any host sync (`.item()`, `nonzero`) or data-dependent shape.
"""

import pytest
import torch

from model_fixtures import TINY as TINY_ARCHITECTURE
from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification


# Two reduction layers with different r, sources tracked: 65 -> 53 -> 44 tokens.
TINY = dict(TINY_ARCHITECTURE, reduction_layers=[1, 2], tokens_removed=[12, 9], track_sources=True)


def _pair(**overrides):
    """The same random weights as a fast-path (sdpa) and a reference (eager) model."""
    torch.manual_seed(0)
    fast = PPTDeiTForImageClassification(PPTDeiTConfig(**{**TINY, **overrides})).eval()
    reference = PPTDeiTForImageClassification(PPTDeiTConfig(**{**TINY, **overrides}, attn_implementation="eager"))
    reference.load_state_dict(fast.state_dict())
    assert fast.config._attn_implementation == "sdpa" and reference.config._attn_implementation == "eager"
    return fast, reference.eval()


def _mixed_threshold(model, pixel_values):
    """A tau between the first reduction layer's per-sample variances, so the batch mixes both policies."""
    with torch.no_grad():
        variance = model(pixel_values, output_compression=True).compression[0].score_variance
    ordered = variance.sort().values
    middle = len(ordered) // 2
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def _assert_same(fast_out, reference_out):
    torch.testing.assert_close(fast_out.logits, reference_out.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_out.token_sizes, reference_out.token_sizes)
    torch.testing.assert_close(fast_out.token_sources, reference_out.token_sources)
    for fast_step, reference_step in zip(fast_out.compression, reference_out.compression, strict=True):
        assert torch.equal(fast_step.pruned, reference_step.pruned)
        torch.testing.assert_close(fast_step.scores, reference_step.scores, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("score_function", ["ats", "cls_attention", "entropy"])
def test_fast_path_matches_eager_reference_on_a_mixed_policy_batch(score_function):
    fast, reference = _pair(score_function=score_function)
    pixel_values = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tau = _mixed_threshold(reference, pixel_values)
    fast.configure_compression(prune_threshold=tau)
    reference.configure_compression(prune_threshold=tau)
    with torch.no_grad():
        fast_out = fast(pixel_values, output_compression=True)
        reference_out = reference(pixel_values, output_compression=True)
    pruned = reference_out.compression[0].pruned
    assert pruned.any() and not pruned.all(), "the batch must mix pruning and pooling"
    _assert_same(fast_out, reference_out)


@pytest.mark.parametrize("prune_threshold", [0.0, float("inf")])
def test_fast_path_matches_eager_reference_for_single_policies(prune_threshold):
    fast, reference = _pair(prune_threshold=prune_threshold)
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fast_out = fast(pixel_values, output_compression=True)
        reference_out = reference(pixel_values, output_compression=True)
    assert bool(reference_out.compression[0].pruned.all()) == (prune_threshold == 0.0)
    _assert_same(fast_out, reference_out)


def test_full_attention_is_only_materialised_when_asked_for():
    fast, _ = _pair()
    seen = []
    hooks = [
        layer.attention.register_forward_hook(lambda module, args, output: seen.append(output.probs))
        for layer in fast.deit.layers
    ]
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast(pixel_values)
        assert all(probs is None for probs in seen), "ats needs only the CLS row: no [B, H, N, N] tensor"
        seen.clear()
        out = fast(pixel_values, output_attentions=True)
    assert all(probs is not None for probs in seen)
    assert [a.shape[-1] for a in out.attentions] == [65, 65, 53, 44]
    for hook in hooks:
        hook.remove()


def test_compiled_fullgraph_matches_eager_with_mixed_policies():
    fast, reference = _pair()
    pixel_values = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    tau = _mixed_threshold(reference, pixel_values)
    fast.configure_compression(prune_threshold=tau)
    reference.configure_compression(prune_threshold=tau)
    torch._dynamo.reset()
    # fullgraph=True raises on any graph break: a host sync or a data-dependent shape in the policy would be one.
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        compiled_out = compiled(pixel_values, output_compression=True)
        reference_out = reference(pixel_values, output_compression=True)
    pruned = reference_out.compression[0].pruned
    assert pruned.any() and not pruned.all()
    _assert_same(compiled_out, reference_out)


def test_compression_off_runs_the_stock_attention_kernel_path():
    """With no reduction layers nothing PPT-specific runs: no stats, no mask, no sizes."""
    fast, _ = _pair(reduction_layers=[])
    calls = []
    for layer in fast.deit.layers:
        layer.attention.register_forward_pre_hook(
            lambda module, args, kwargs: calls.append((kwargs.get("key_bias"), kwargs.get("need_stats"))),
            with_kwargs=True,
        )
    with torch.no_grad():
        out = fast(torch.randn(2, 3, 32, 32))
    assert calls == [(None, False)] * 4
    assert torch.equal(out.token_sizes, torch.ones(2, 65))
