"""PPT-DeiT models: parity with stock ViT/DeiT when compression is off, faithfulness to the authors' algorithm
(tests/reference_ppt.py), token counts, compression records, dtypes, training, input checks, torch.compile."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    DeiTConfig,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTModel,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

from model_fixtures import DEIT_S, TINY, mixed_pixels, pixels, threshold_between, tiny_model
from modeling_ppt_deit import (
    PPTCompressionRecord,
    PPTDeiTConfig,
    PPTDeiTForImageClassification,
    PPTDeiTModel,
    register_score_function,
)
from modeling_ppt_deit.modeling_ppt_deit import PPTDeiTLayerOutput
from modeling_ppt_deit.token_ops import ats_score
from reference_ppt import reference_logits


STOCK_TINY = dict(TINY, initializer_range=0.2)


def _stock(cls, config_cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(config_cls(**{**STOCK_TINY, **kwargs})).eval()


# --------------------------------------------------------------------------------------------------------------------
# 1. Parity with the stock models, compression off
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stock_cls, config_cls",
    [(ViTForImageClassification, ViTConfig), (DeiTForImageClassification, DeiTConfig),
     (DeiTForImageClassificationWithTeacher, DeiTConfig)],
)
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_classifier_parity_with_stock(tmp_path, stock_cls, config_cls, attn_implementation):
    stock = _stock(stock_cls, config_cls)
    stock.save_pretrained(tmp_path)
    model, info = PPTDeiTForImageClassification.from_pretrained(
        tmp_path, reduction_layers=[], attn_implementation=attn_implementation, output_loading_info=True
    )
    model.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.use_distillation_token == (config_cls is DeiTConfig)
    assert model.config.distillation_head == (stock_cls is DeiTForImageClassificationWithTeacher)
    x = pixels(3)
    with torch.no_grad():
        expected = stock(x).logits
        out = model(x, output_hidden_states=True)
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    assert out.token_sizes.eq(1).all() and out.token_sizes.shape == (3, out.hidden_states[-1].shape[1])
    if stock_cls is DeiTForImageClassificationWithTeacher:
        with torch.no_grad():
            stock_out = stock(x)
        torch.testing.assert_close(out.cls_logits, stock_out.cls_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.distillation_logits, stock_out.distillation_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stock_cls, config_cls, prefix", [(ViTModel, ViTConfig, "vit"), (DeiTModel, DeiTConfig, "deit")])
def test_base_model_parity_from_classifier_checkpoint(tmp_path, stock_cls, config_cls, prefix):
    """PPTDeiTModel loaded from a stock *classifier* checkpoint equals the stock base model (same weights)."""
    classifier_cls = ViTForImageClassification if prefix == "vit" else DeiTForImageClassification
    stock = _stock(classifier_cls, config_cls)
    stock.save_pretrained(tmp_path)
    base = getattr(stock, prefix)
    model = PPTDeiTModel.from_pretrained(tmp_path, reduction_layers=[]).eval()
    x = pixels(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x).last_hidden_state, base(x).last_hidden_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "stock_cls, config_cls",
    [
        (ViTModel, ViTConfig),
        (DeiTModel, DeiTConfig),
    ],
)
def test_base_model_parity_from_base_checkpoint(tmp_path, stock_cls, config_cls):
    """PPTDeiTModel vs stock ViTModel / DeiTModel saved as base models (no task head, no prefix in the keys)."""
    stock = _stock(stock_cls, config_cls)
    stock.save_pretrained(tmp_path)
    model, info = PPTDeiTModel.from_pretrained(tmp_path, reduction_layers=[], output_loading_info=True)
    model.eval()
    x = pixels(2)
    with torch.no_grad():
        ours, theirs = model(x), stock(x)
    torch.testing.assert_close(ours.last_hidden_state, theirs.last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.pooler_output, theirs.pooler_output, rtol=1e-5, atol=1e-5)
    assert not info["missing_keys"] and not info["unexpected_keys"]


@pytest.mark.parametrize("stock_cls, config_cls", [(ViTForImageClassification, ViTConfig),
                                                   (DeiTForImageClassification, DeiTConfig)])
@pytest.mark.parametrize("height, width", [(48, 48), (32, 48), (48, 24), (24, 24)])
def test_interpolate_pos_encoding_parity_with_stock(tmp_path, stock_cls, config_cls, height, width):
    stock = _stock(stock_cls, config_cls)
    stock.save_pretrained(tmp_path)
    model = PPTDeiTForImageClassification.from_pretrained(tmp_path, reduction_layers=[]).eval()
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = stock(x, interpolate_pos_encoding=True).logits
        out = model(x, interpolate_pos_encoding=True, output_hidden_states=True)
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    assert out.hidden_states[0].shape[1] == (height // 4) * (width // 4) + model.config.num_protected_tokens


def test_eager_and_sdpa_agree_with_compression(tmp_path):
    tiny_model(initializer_range=0.4).save_pretrained(tmp_path)
    x = mixed_pixels(8)
    probe = PPTDeiTForImageClassification.from_pretrained(tmp_path, prune_threshold=0.0).eval()
    with torch.no_grad():
        tau = threshold_between(probe(x, output_compression=True).compression[0].score_variance)
    outputs = {}
    for impl in ("eager", "sdpa"):
        model = PPTDeiTForImageClassification.from_pretrained(tmp_path, attn_implementation=impl,
                                                              prune_threshold=tau).eval()
        with torch.no_grad():
            outputs[impl] = model(x, output_compression=True)
    torch.testing.assert_close(outputs["eager"].logits, outputs["sdpa"].logits, rtol=1e-5, atol=1e-5)
    for a, b in zip(outputs["eager"].compression, outputs["sdpa"].compression):
        assert a.pruned.tolist() == b.pruned.tolist()
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-7)
    pruned = outputs["sdpa"].compression[0].pruned
    assert pruned.any() and not pruned.all()


# --------------------------------------------------------------------------------------------------------------------
# 4. Faithfulness to the authors' algorithm
# --------------------------------------------------------------------------------------------------------------------


def _model_and_mixed_tau(dtype=torch.float32, seed=0):
    model = tiny_model(seed=seed, initializer_range=0.5, prune_threshold=0.0).to(dtype)
    x = mixed_pixels(8).to(dtype)
    with torch.no_grad():
        variance = model(x, output_compression=True).compression[0].score_variance
    return model, x, threshold_between(variance)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("tau", ["mixed", 0.0, math.inf])
def test_logits_match_reference(dtype, tol, tau):
    model, x, mixed_tau = _model_and_mixed_tau(dtype)
    tau = mixed_tau if tau == "mixed" else tau
    model.configure_compression(prune_threshold=tau)
    with torch.no_grad():
        out = model(x, output_compression=True)
    expected, steps = reference_logits(model, x, [1, 2], 8, tau)
    torch.testing.assert_close(out.logits, expected, rtol=tol, atol=tol)
    assert len(steps) == len(out.compression) == 2
    for record, step in zip(out.compression, steps):
        assert record.layer_index == step.layer_index
        assert (record.tokens_before, record.tokens_after) == (step.tokens_before, step.tokens_after)
        assert record.pruned.tolist() == step.prune.tolist()
        torch.testing.assert_close(record.scores, step.scores, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(record.score_variance.to(dtype), step.variance, rtol=1e-4, atol=1e-10)
    first = out.compression[0].pruned
    if tau == 0.0:
        assert all(r.pruned.all() for r in out.compression)
    elif tau == math.inf:
        assert not any(r.pruned.any() for r in out.compression)
    else:
        assert first.any() and not first.all(), "the test needs a batch where both policies occur"


@pytest.mark.parametrize(
    "settings, dtype",
    [
        (dict(tokens_removed=20, reduction_layers=[0, 2]), torch.float64),
        (dict(tokens_removed=32, reduction_layers=[0, 1, 3]), torch.float64),
        (dict(proportional_attention=False), torch.float64),
        (dict(score_function="cls_attention"), torch.float64),
        # entropy needs full attention rows, computed on the eager path whose softmax runs in float32 (as stock
        # transformers' eager attention does), so it is compared in float32
        (dict(score_function="entropy"), torch.float32),
    ],
)
def test_logits_match_reference_other_settings(settings, dtype):
    model = tiny_model(seed=1, initializer_range=0.5, prune_threshold=0.0, **settings).to(dtype)
    x = mixed_pixels(8).to(dtype)
    with torch.no_grad():
        tau = threshold_between(model(x, output_compression=True).compression[0].score_variance)
    model.configure_compression(prune_threshold=tau)
    config = model.config
    with torch.no_grad():
        out = model(x, output_compression=True)
    expected, steps = reference_logits(model, x, config.reduction_layers, config.tokens_removed, tau,
                                       proportional_attention=config.proportional_attention,
                                       score=config.score_function)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.logits, expected, rtol=tol, atol=tol)
    assert [r.pruned.tolist() for r in out.compression] == [s.prune.tolist() for s in steps]
    assert steps[0].prune.any() and not steps[0].prune.all()


def test_attentions_output_shrinks_and_includes_log_size():
    model = tiny_model(initializer_range=0.4, prune_threshold=math.inf)
    with torch.no_grad():
        out = model(pixels(2), output_attentions=True, output_hidden_states=True)
    assert [a.shape[-1] for a in out.attentions] == [65, 65, 57, 49]
    for attention in out.attentions:
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))
    as_tuple = model(pixels(2), return_dict=False)
    torch.testing.assert_close(as_tuple[0], model(pixels(2)).logits)


def test_proportional_attention_changes_the_result():
    """After a pooling step sizes differ from 1; switching the log-size term off must change later layers."""
    model = tiny_model(initializer_range=0.4, prune_threshold=math.inf)
    x = pixels(2)
    with torch.no_grad():
        with_sizes = model(x).logits
        model.configure_compression(proportional_attention=False)
        without = model(x).logits
    assert not torch.allclose(with_sizes, without, atol=1e-4)


# --------------------------------------------------------------------------------------------------------------------
# 5. Token counts at DeiT-S size, compression records
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distilled, counts", [(False, [197, 147, 97, 49]), (True, [198, 148, 98, 50])])
def test_deit_small_token_counts(distilled, counts):
    torch.manual_seed(0)
    config = PPTDeiTConfig(**DEIT_S, num_labels=10, use_distillation_token=distilled, distillation_head=distilled)
    model = PPTDeiTForImageClassification(config).eval()
    with torch.no_grad():
        out = model(pixels(1, size=224), output_hidden_states=True, output_compression=True)
    lengths = [h.shape[1] for h in out.hidden_states]  # embeddings, then the output of each of the 12 layers
    assert lengths == [counts[0]] * 4 + [counts[1]] * 3 + [counts[2]] * 3 + [counts[3]] * 3
    assert [(c.layer_index, c.tokens_before, c.tokens_after) for c in out.compression] == [
        (3, counts[0], counts[1]), (6, counts[1], counts[2]), (9, counts[2], counts[3])]
    assert [n for n, _ in config.token_schedule()[3::3]] == counts[:3]
    assert out.token_sizes.shape == (1, counts[3])
    assert out.logits.shape == (1, 10)


def test_compression_records():
    model = tiny_model()
    x = pixels(3)
    with torch.no_grad():
        out = model(x, output_compression=True)
        plain = model(x)
    assert plain.compression is None
    assert len(out.compression) == 2
    for record, (before, after) in zip(out.compression, [(65, 57), (57, 49)]):
        assert record.pruned.dtype == torch.bool and record.pruned.shape == (3,)
        assert record.scores.shape == (3, before - 1)
        assert record.score_variance.shape == (3,)
        torch.testing.assert_close(record.score_variance, record.scores.var(-1))
        torch.testing.assert_close(record.scores.sum(-1), torch.ones(3))
        assert (record.tokens_before, record.tokens_after) == (before, after)
        assert record.pruned.tolist() == (record.score_variance >= model.config.prune_threshold).tolist()
    assert out.token_sizes.shape == (3, 49)


def test_a_layer_clamped_to_nothing_still_has_a_record():
    """8 px images, 4 px patches: 4 patches + CLS. r=2 at layers 0, 1, 2: 5 -> 3 (r=2), 3 -> 2 (clamped to 1),
    2 -> 2 (clamped to 0). Every scheduled layer reports, the last with no scores or policy."""
    model = tiny_model(image_size=8, reduction_layers=[0, 1, 2], tokens_removed=2)
    with torch.no_grad():
        out = model(pixels(2, size=8), output_compression=True)
    assert [(c.layer_index, c.tokens_before, c.tokens_after) for c in out.compression] == [(0, 5, 3), (1, 3, 2), (2, 2, 2)]
    assert out.compression[1].pruned.shape == (2,)
    last = out.compression[2]
    assert last.scores is None and last.score_variance is None and last.pruned is None
    assert out.token_sizes.shape == (2, 2)


@pytest.mark.parametrize("tau", [0.0, math.inf, "mixed"])
def test_model_source_maps(tau):
    model, x, mixed_tau = _model_and_mixed_tau()
    model.configure_compression(prune_threshold=mixed_tau if tau == "mixed" else tau, track_sources=True)
    with torch.no_grad():
        out = model(x, output_compression=True)
    sources, sizes = out.token_sources, out.token_sizes
    assert sources.shape == (8, 49, 65)
    torch.testing.assert_close(sources.sum(-1), sizes)  # row sums == sizes
    assert sources.sum(1).le(1).all()  # every input token in at most one final token
    assert sources[:, 0, 0].eq(1).all() and sources[:, 0].sum(-1).eq(1).all()  # CLS alone, first
    ever_pruned = torch.stack([r.pruned for r in out.compression]).any(0)
    for b in range(8):
        covered = int(sources[b].sum())
        if ever_pruned[b]:
            assert covered < 65  # pruned patches are covered by no final token
        else:
            assert covered == 65  # pooling only: every patch somewhere
    if tau == 0.0:
        assert sizes.eq(1).all() and sources.sum((1, 2)).eq(49).all()


def test_layers_return_typed_outputs_with_records():
    """Each layer returns a PPTDeiTLayerOutput: hidden states first (what output capturing records), the token state,
    and a PPTCompressionRecord exactly at the layers scheduled to compress."""
    model = tiny_model(track_sources=True)
    seen = []
    hooks = [layer.register_forward_hook(lambda module, args, output: seen.append(output)) for layer in model.deit.layers]
    with torch.no_grad():
        out = model(pixels(2), output_compression=True, output_hidden_states=True)
    for hook in hooks:
        hook.remove()
    assert [type(output) for output in seen] == [PPTDeiTLayerOutput] * 4
    for output, hidden in zip(seen, out.hidden_states[1:]):
        assert output[0] is output.hidden_states and torch.equal(output.hidden_states, hidden)
        assert output.tokens.sources.shape == (2, hidden.shape[1], 65)
    assert [output.compression is not None for output in seen] == [False, True, True, False]
    assert [output.compression for output in seen[1:3]] == list(out.compression)
    assert all(isinstance(record, PPTCompressionRecord) for record in out.compression)


def test_per_layer_sources_by_hand(score_registry):
    """Pruning only (tau = 0), with a score preferring the last positions of the current sequence, r = 20 at layer 1
    and r = 10 at layer 2. Positions are 1-based among the 64 patches; input token t is patch t (CLS is 0).

    Layer 1 keeps the 44 patches at positions 64..21, in descending score order: input tokens 64, 63, ..., 21.
    Layer 2 sees them at positions 1..44 (position p holds input token 65 - p) and keeps positions 44..11:
    input tokens 21, 22, ..., 54."""

    @register_score_function("_test_prefer_last")
    def prefer_last(inputs):
        batch, tokens = inputs.value_norm.shape
        return torch.arange(1, tokens - inputs.num_protected + 1, dtype=inputs.value_norm.dtype).expand(batch, -1)

    model = tiny_model(score_function="_test_prefer_last", prune_threshold=0.0, reduction_layers=[1, 2],
                       tokens_removed=[20, 10], track_sources=True)
    with torch.no_grad():
        out = model(pixels(3), output_compression=True)
    first, second = out.compression
    expected_first = [0, *range(64, 20, -1)]
    expected_second = [0, *range(21, 55)]
    for record, kept in ((first, expected_first), (second, expected_second)):
        expected = torch.zeros(3, len(kept), 65)
        expected[:, torch.arange(len(kept)), torch.tensor(kept)] = 1
        assert torch.equal(record.token_sources, expected)
        assert torch.equal(record.token_sizes, torch.ones(3, len(kept)))
        assert record.token_sources.shape == (3, record.tokens_after, 65)
    assert torch.equal(second.token_sources, out.token_sources)


@pytest.mark.parametrize("tau", [0.0, math.inf, "mixed"])
def test_per_layer_sources_and_sizes_are_consistent(tau):
    """Every record's sources are those after its step: rows sum to its sizes, each input token is in at most one
    token, a pooled sample keeps covering every input token, and the last record's are the model's final ones."""
    model, x, mixed_tau = _model_and_mixed_tau()
    model.configure_compression(prune_threshold=mixed_tau if tau == "mixed" else tau, track_sources=True,
                                reduction_layers=[0, 1, 2], tokens_removed=[10, 8, 6])
    with torch.no_grad():
        out = model(x, output_compression=True)
    ever_pruned = torch.zeros(8, dtype=torch.bool)
    for record in out.compression:
        ever_pruned |= record.pruned
        assert record.token_sources.shape == (8, record.tokens_after, 65)
        assert record.token_sizes.shape == (8, record.tokens_after)
        torch.testing.assert_close(record.token_sources.sum(-1), record.token_sizes)
        assert record.token_sources.sum(1).le(1).all()
        covered = record.token_sources.sum((1, 2))
        assert covered[~ever_pruned].eq(65).all() and covered[ever_pruned].lt(65).all()
    assert torch.equal(out.compression[-1].token_sources, out.token_sources)
    assert torch.equal(out.compression[-1].token_sizes, out.token_sizes)


def test_records_carry_sizes_but_no_sources_without_tracking():
    model = tiny_model(prune_threshold=math.inf)
    with torch.no_grad():
        out = model(pixels(2), output_compression=True)
    assert out.token_sources is None
    for record, after in zip(out.compression, (57, 49)):
        assert record.token_sources is None
        assert record.token_sizes.shape == (2, after) and record.token_sizes.sum(-1).eq(65).all()


def test_configure_compression_during_a_pass_takes_effect_at_the_next_pass(score_registry):
    """The model reads its PPT settings once per pass. A score function that reconfigures the model at the first
    reduction layer must not change the rest of that pass, only the next one."""
    model = tiny_model(initializer_range=0.5, prune_threshold=0.0, track_sources=True)
    reference = tiny_model(initializer_range=0.5, prune_threshold=0.0, track_sources=True)  # same seed, weights
    calls = []

    @register_score_function("_test_reconfigures")
    def reconfiguring_ats(inputs):
        calls.append(inputs.value_norm.shape[1])
        if len(calls) == 1:
            model.configure_compression(reduction_layers=[1, 2, 3], tokens_removed=[8, 20, 4], prune_threshold=math.inf,
                                        proportional_attention=False, score_function="cls_attention")
        return ats_score(inputs)

    model.configure_compression(score_function="_test_reconfigures")
    x = mixed_pixels(4)
    with torch.no_grad():
        during = model(x, output_compression=True, output_hidden_states=True)
        expected = reference(x, output_compression=True, output_hidden_states=True)
    assert calls == [65, 57]  # the pass's own score function, at both of its reduction layers
    assert [h.shape[1] for h in during.hidden_states] == [65, 65, 57, 49, 49]
    assert torch.equal(during.logits, expected.logits)
    assert torch.equal(during.token_sources, expected.token_sources)
    for got, want in zip(during.compression, expected.compression, strict=True):
        assert torch.equal(got.pruned, want.pruned) and got.pruned.all()
    with torch.no_grad():
        after = model(x, output_compression=True)
    assert calls == [65, 57]  # cls_attention from now on
    assert [(r.layer_index, r.tokens_before, r.tokens_after) for r in after.compression] == [
        (1, 65, 57), (2, 57, 37), (3, 37, 33)]
    assert not any(r.pruned.any() for r in after.compression)


@pytest.mark.parametrize("model_class", [PPTDeiTModel, PPTDeiTForImageClassification])
@pytest.mark.parametrize("name", ["output_attention", "attention_mask", "bool_masked_pos", "head_mask"])
def test_unknown_keyword_arguments_raise(model_class, name):
    torch.manual_seed(0)
    model = model_class(PPTDeiTConfig(**TINY, reduction_layers=[1], tokens_removed=8)).eval()
    with pytest.raises(TypeError, match=rf"{model_class.__name__}.forward\(\) got unexpected keyword argument\(s\) "
                                        rf"\['{name}'\]"):
        model(pixels(1), **{name: True})


def test_num_items_in_batch_reaches_the_loss():
    """Trainer passes num_items_in_batch to models whose forward takes **kwargs and then does not divide the loss by
    the gradient-accumulation steps itself: the loss must be the summed cross-entropy over num_items_in_batch."""
    model = tiny_model()
    x, labels = pixels(4), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        out = model(x, labels=labels, num_items_in_batch=torch.tensor(10))
        plain = model(x, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits, labels, reduction="sum") / 10
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(plain.loss, torch.nn.functional.cross_entropy(plain.logits, labels))


def test_output_flags_from_config_and_tuples():
    """hidden_states / attentions are collected by transformers' capture_outputs: asked for by argument or by the
    config, and in the tuple output in the usual order."""
    model = tiny_model(initializer_range=0.4, prune_threshold=math.inf, attn_implementation="eager")
    x = pixels(2)
    with torch.no_grad():
        by_argument = model(x, output_hidden_states=True, output_attentions=True)
        model.config.output_hidden_states = True
        model.config.output_attentions = True
        by_config = model(x)
        as_tuple = model(x, return_dict=False)
    for outputs in (by_config.hidden_states, by_config.attentions):
        assert outputs is not None
    for got, want in zip(by_config.hidden_states + by_config.attentions,
                         by_argument.hidden_states + by_argument.attentions, strict=True):
        assert torch.equal(got, want)
    logits, hidden_states, attentions = as_tuple[:3]
    assert torch.equal(logits, by_argument.logits)
    assert [h.shape[1] for h in hidden_states] == [65, 65, 57, 49, 49]
    assert [a.shape[-1] for a in attentions] == [65, 65, 57, 49]


# --------------------------------------------------------------------------------------------------------------------
# 8. Batch sizes, dtypes, training, inputs
# --------------------------------------------------------------------------------------------------------------------


def test_batch_of_one_equals_batch_rows():
    model, x, tau = _model_and_mixed_tau()
    model.configure_compression(prune_threshold=tau)
    with torch.no_grad():
        batched = model(x).logits
        single = torch.cat([model(x[i : i + 1]).logits for i in range(x.shape[0])])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_bfloat16_on_cpu():
    model, x, tau = _model_and_mixed_tau()
    model.configure_compression(prune_threshold=tau, track_sources=True)
    model = model.to(torch.bfloat16)
    with torch.no_grad():
        out = model(x, output_compression=True)  # float32 pixels are cast by the model
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all()
    assert out.logits.shape == (8, 10) and out.token_sizes.shape == (8, 49)
    assert torch.isfinite(out.token_sizes).all()


@pytest.mark.parametrize("tau", [0.0, math.inf, "mixed"])
def test_training_gradients(tau):
    model, x, mixed_tau = _model_and_mixed_tau()
    model.configure_compression(prune_threshold=mixed_tau if tau == "mixed" else tau)
    model.train()
    labels = torch.arange(8) % 10
    out = model(x, labels=labels, output_compression=True)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for layer in (0, 1, 2, 3):  # before, at, and after the reduction layers 1, 2
        for name in ("attention.q_proj", "attention.k_proj", "mlp.fc1"):
            grad = model.get_parameter(f"deit.layers.{layer}.{name}.weight").grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, (layer, name)
    assert torch.isfinite(model.deit.embeddings.cls_token.grad).all()


def test_activation_checkpointing_gives_the_same_gradients():
    """Trainer's gradient_checkpointing=True: the checkpointed layers carry token sizes through the recompute."""
    model, x, tau = _model_and_mixed_tau()
    model.configure_compression(prune_threshold=tau)
    model.train()
    labels = torch.arange(8) % 10
    model(x, labels=labels).loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in model.deit.layers)
    model(x, labels=labels).loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_interpolate_pos_encoding_gives_more_tokens():
    model = tiny_model()
    with torch.no_grad():
        out = model(pixels(2, size=48), interpolate_pos_encoding=True, output_hidden_states=True)
    # 12 x 12 patches + CLS = 145 -> 137 -> 129
    assert [h.shape[1] for h in out.hidden_states] == [145, 145, 137, 129, 129]
    assert out.logits.shape == (2, 10) and torch.isfinite(out.logits).all()


def test_wrong_inputs_raise_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"channels"):
        model(pixels(1, channels=1))
    with pytest.raises(ValueError, match=r"interpolate_pos_encoding"):
        model(pixels(1, size=48))
    with pytest.raises(ValueError, match=r"4-d"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        model(pixels(2), labels=torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        model(pixels(2), labels=torch.tensor([-1, 0]))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool, torch.complex64])
@pytest.mark.parametrize("model_class", [PPTDeiTModel, PPTDeiTForImageClassification])
def test_non_float_pixel_values_point_to_the_image_processor(dtype, model_class):
    """Raw 0-255 pixels used to be cast silently and give wrong predictions."""
    torch.manual_seed(0)
    model = model_class(PPTDeiTConfig(**TINY, reduction_layers=[1], tokens_removed=8)).eval()
    raw = (torch.rand(2, 3, 32, 32) * 255).to(dtype) if dtype != torch.bool else torch.rand(2, 3, 32, 32) > 0.5
    with pytest.raises(ValueError, match=rf"pixel_values has dtype {dtype}.*floating-point.*image processor"):
        model(raw)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_other_float_pixel_values_are_cast(dtype):
    model = tiny_model()
    x = pixels(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x.to(dtype)).logits, model(x.to(dtype).float()).logits)


@pytest.mark.parametrize("model_class", [PPTDeiTModel, PPTDeiTForImageClassification])
def test_empty_batch_gets_a_clear_error(model_class):
    torch.manual_seed(0)
    model = model_class(PPTDeiTConfig(**TINY, reduction_layers=[1], tokens_removed=8)).eval()
    with pytest.raises(ValueError, match=r"pixel_values holds no image \(shape \(0, 3, 32, 32\)\)"):
        model(torch.zeros(0, 3, 32, 32))


@pytest.mark.parametrize("tau", [0.0, math.inf])
def test_distilled_model_protects_dist_token(tau):
    torch.manual_seed(0)
    model = PPTDeiTForImageClassification(PPTDeiTConfig(
        **TINY, initializer_range=0.4, reduction_layers=[1, 2], tokens_removed=16, use_distillation_token=True,
        distillation_head=True, track_sources=True, prune_threshold=tau)).eval()
    with torch.no_grad():
        out = model(pixels(2), output_compression=True)
    # CLS first, DIST second, each alone, through both steps
    assert out.token_sources[:, 0, 0].eq(1).all() and out.token_sources[:, 0].sum(-1).eq(1).all()
    assert out.token_sources[:, 1, 1].eq(1).all() and out.token_sources[:, 1].sum(-1).eq(1).all()
    assert out.token_sizes[:, :2].eq(1).all()
    torch.testing.assert_close(out.logits, (out.cls_logits + out.distillation_logits) / 2)
    assert out.compression[0].scores.shape == (2, 64)
    assert out.token_sizes.shape == (2, 66 - 32)
    assert out.token_sources.sum((1, 2)).eq(66 if tau == math.inf else 66 - 32).all()


# --------------------------------------------------------------------------------------------------------------------
# 9. torch.compile
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_fullgraph_mixed_batch(backend):
    model, x, tau = _model_and_mixed_tau()
    model.configure_compression(prune_threshold=tau)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    with torch.no_grad():
        expected = model(x, output_compression=True)
        got = compiled(x, output_compression=True)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    assert [r.pruned.tolist() for r in got.compression] == [r.pruned.tolist() for r in expected.compression]
    assert expected.compression[0].pruned.any() and not expected.compression[0].pruned.all()


def test_torch_compile_fullgraph_with_captured_outputs():
    """capture_outputs' hooks trace under fullgraph=True: hidden states and attentions equal the eager ones."""
    model, x, tau = _model_and_mixed_tau()
    model.configure_compression(prune_threshold=tau)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    kwargs = dict(output_hidden_states=True, output_attentions=True, output_compression=True)
    with torch.no_grad():
        expected = model(x, **kwargs)
        got = compiled(x, **kwargs)
    assert [h.shape[1] for h in got.hidden_states] == [65, 65, 57, 49, 49]
    for a, b in zip(got.hidden_states + got.attentions, expected.hidden_states + expected.attentions, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
