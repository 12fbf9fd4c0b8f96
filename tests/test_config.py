"""PPTDeiTConfig: validation of the PPT settings, derived quantities, custom score functions."""

from __future__ import annotations

import json
import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError

from model_fixtures import mixed_pixels, pixels, tiny_config, tiny_model
from modeling_ppt_deit import SCORE_FUNCTIONS, PPTDeiTConfig, PPTDeiTForImageClassification, register_score_function


@pytest.mark.parametrize(
    "settings, needle",
    [
        (dict(reduction_layers=[4]), "4"),  # 4 layers: valid indices 0..3
        (dict(reduction_layers=[-1]), "-1"),
        (dict(reduction_layers=[1, 1]), "twice"),
        (dict(tokens_removed=-1), "-1"),
        (dict(tokens_removed=33), "33"),  # 64 patches: at most 32 in one step
        (dict(tokens_removed=[8, 8, 8]), "[8, 8, 8]"),
        (dict(tokens_removed=[8]), "[8]"),
        (dict(tokens_removed=[8, -2]), "-2"),
        (dict(score_function="nonexistent"), "nonexistent"),
        (dict(prune_threshold=-1e-5), "-1e-05"),
        (dict(prune_threshold=float("nan")), "nan"),
        (dict(distillation_head=True), "use_distillation_token"),
    ],
)
def test_invalid_settings_raise_value_error_naming_the_value(settings, needle):
    with pytest.raises(ValueError) as error:
        tiny_config(**settings)
    assert needle in str(error.value)


# (setting, bad value, what the message must say the setting accepts). Each arrived as a raw TypeError,
# ZeroDivisionError, or was stored as it was (a truthy "no"). A value of the wrong type is refused by the config's
# `@strict` fields (huggingface_hub's strict dataclasses, as every transformers config), whose error names the field
# and the type it accepts; a value of the right type out of range by the config's own check (a ValueError).
BAD_TYPES = [
    ("proportional_attention", "no", "expected bool"),
    ("track_sources", 1, "expected bool"),
    ("use_distillation_token", "yes", "expected bool"),
    ("distillation_head", None, "expected bool"),
    ("tokens_removed", 8.0, "(<class 'int'>, list[int], tuple[int, ...])"),
    ("tokens_removed", [8, "8"], "(<class 'int'>, list[int], tuple[int, ...])"),
    ("reduction_layers", None, "(list[int], tuple[int, ...])"),
    ("reduction_layers", 3, "(list[int], tuple[int, ...])"),
    ("reduction_layers", "12", "(list[int], tuple[int, ...])"),
    ("prune_threshold", "abc", "(<class 'float'>, <class 'int'>)"),
    ("prune_threshold", None, "(<class 'float'>, <class 'int'>)"),
    ("prune_threshold", True, "(<class 'float'>, <class 'int'>)"),
    ("score_function", 3, "expected str"),
    ("score_function", ["ats"], "expected str"),
    ("hidden_size", "32", "expected int"),
    ("image_size", 32.0, "(<class 'int'>, list[int], tuple[int, int])"),
]
BAD_VALUES = [
    ("patch_size", 0, "a positive int (or a (height, width) pair of them)"),
    ("image_size", -32, "a positive int (or a (height, width) pair of them)"),
    ("image_size", [32, 32, 3], "a positive int, or a (height, width) pair"),
    ("image_size", 2, "at least one patch"),  # 4 px patches
    ("hidden_size", -32, "a positive int"),
    ("num_attention_heads", 0, "a positive int"),
    ("intermediate_size", -1, "a positive int"),
    ("num_channels", 0, "a positive int"),
    # A config.json asking for sizes that would allocate until memory runs out is refused before any weight exists.
    ("num_hidden_layers", 100_000, "<= 256"),
    ("hidden_size", 2**20, "<= 16,384"),
    ("intermediate_size", 10**9, "<= 65,536"),
    ("num_attention_heads", 4096, "<= 256"),
    ("image_size", 10**6, "<= 8,192"),
    ("image_size", [8192, 8192], "at most 65,536"),
    ("num_channels", 10**6, "<= 64"),
]
CASES = [(StrictDataclassFieldValidationError, *case) for case in BAD_TYPES] + \
    [(ValueError, *case) for case in BAD_VALUES]


@pytest.mark.parametrize("route", ["constructor", "config_from_pretrained", "model_from_pretrained", "config.json"])
@pytest.mark.parametrize("error_type, name, value, allowed", CASES, ids=lambda v: repr(v)[:20])
def test_badly_typed_settings_raise_value_error_naming_the_setting(tmp_path, route, error_type, name, value, allowed):
    if route == "constructor":
        load = lambda: tiny_config(**{name: value})  # noqa: E731
    else:
        tiny_model().save_pretrained(tmp_path)
        if route == "config.json":
            config_json = json.loads((tmp_path / "config.json").read_text())
            config_json[name] = value
            (tmp_path / "config.json").write_text(json.dumps(config_json))
            load = lambda: PPTDeiTForImageClassification.from_pretrained(tmp_path)  # noqa: E731
        elif route == "config_from_pretrained":
            load = lambda: PPTDeiTConfig.from_pretrained(tmp_path, **{name: value})  # noqa: E731
        else:
            load = lambda: PPTDeiTForImageClassification.from_pretrained(tmp_path, **{name: value})  # noqa: E731
    with pytest.raises(error_type) as error:
        load()
    message = str(error.value)
    assert name in message and allowed in message, message


def test_messages_do_not_repeat_a_huge_value():
    """A config.json listing a million values gets an error of a few lines, naming the field."""
    with pytest.raises(ValueError) as error:
        tiny_config(tokens_removed=list(range(10**6)))
    message = str(error.value)
    assert message.startswith("tokens_removed=[0, 1, 2") and "has 1000000 entries" in message
    assert len(message) < 300, len(message)


@pytest.mark.parametrize("content", ["[1, 2]", '"ppt_deit"', "3", "null"])
def test_config_json_that_is_not_an_object(tmp_path, content):
    tiny_model().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(content)
    for load in (PPTDeiTConfig.from_pretrained, PPTDeiTForImageClassification.from_pretrained):
        with pytest.raises(ValueError, match=r"config.json.* must be a JSON object"):
            load(tmp_path)
    with pytest.raises(ValueError, match=r"config_dict must be a JSON object"):
        PPTDeiTConfig.from_dict(json.loads(content))


def test_unknown_score_lists_known_ones():
    with pytest.raises(ValueError) as error:
        tiny_config(score_function="atss")
    for known in ("ats", "cls_attention", "entropy"):
        assert known in str(error.value)


@pytest.mark.parametrize(
    "settings",
    [dict(prune_threshold=0), dict(prune_threshold=float("inf")), dict(tokens_removed=0), dict(reduction_layers=[]),
     dict(tokens_removed=32), dict(tokens_removed=[32, 3]), dict(score_function="entropy")],
)
def test_valid_settings(settings):
    config = tiny_config(**settings)
    for name, value in settings.items():
        assert getattr(config, name) == (list(value) if isinstance(value, tuple) else value)
    assert isinstance(config.prune_threshold, float)


def test_defaults_are_the_authors_deit_s_setting():
    config = PPTDeiTConfig()
    assert config.reduction_layers == [3, 6, 9]
    assert config.tokens_removed == 50
    assert config.prune_threshold == pytest.approx(7e-5)
    assert config.score_function == "ats"
    assert config.proportional_attention is True
    assert config.model_type == "ppt_deit"


def test_token_schedule_and_clamp_in_later_layers():
    # r = 16 at every layer: 65 -> 49 -> 33 -> 17 -> 9 (the last step is clamped to (17 - 1) // 2 = 8)
    config = tiny_config(reduction_layers=[0, 1, 2, 3], tokens_removed=16)
    assert config.token_schedule() == [(65, 49), (49, 33), (33, 17), (17, 9)]
    model = PPTDeiTForImageClassification(config).eval()
    with torch.no_grad():
        out = model(pixels(1), output_hidden_states=True, output_compression=True)
    assert [h.shape[1] for h in out.hidden_states] == [65, 49, 33, 17, 9]
    assert [(c.tokens_before, c.tokens_after) for c in out.compression] == [(65, 49), (49, 33), (33, 17), (17, 9)]


def test_token_schedule_per_layer_list_and_distillation_and_image_size():
    config = tiny_config(reduction_layers=[1, 3], tokens_removed=[10, 4], use_distillation_token=True)
    assert config.num_protected_tokens == 2
    assert config.tokens_removed_at(0) == 0 and config.tokens_removed_at(1) == 10 and config.tokens_removed_at(3) == 4
    assert config.token_schedule() == [(66, 66), (66, 56), (56, 56), (56, 52)]
    assert config.token_schedule(image_size=48)[0] == (146, 146)  # 12 x 12 patches + 2
    assert config.compression_enabled
    assert not tiny_config(reduction_layers=[]).compression_enabled
    assert not tiny_config(tokens_removed=0).compression_enabled


def test_from_pretrained_validates_overrides(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="-1"):
        PPTDeiTForImageClassification.from_pretrained(tmp_path, tokens_removed=-1)
    with pytest.raises(ValueError, match="nope"):
        PPTDeiTConfig.from_pretrained(tmp_path, score_function="nope")
    config = PPTDeiTConfig.from_pretrained(tmp_path, prune_threshold=float("inf"), tokens_removed=[3, 4])
    assert config.prune_threshold == math.inf and config.tokens_removed == [3, 4]


@pytest.mark.parametrize("tau", [0.0, float("inf"), 3e-4])
def test_config_json_round_trip(tmp_path, tau):
    config = tiny_config(prune_threshold=tau, tokens_removed=[5, 6], score_function="entropy", track_sources=True)
    config.save_pretrained(tmp_path)
    loaded = PPTDeiTConfig.from_pretrained(tmp_path)
    for name in ("reduction_layers", "tokens_removed", "prune_threshold", "score_function", "track_sources",
                 "proportional_attention", "use_distillation_token", "distillation_head"):
        assert getattr(loaded, name) == getattr(config, name), name


def test_configure_compression_validates_and_applies():
    model = tiny_model()
    with pytest.raises(ValueError, match="-3"):
        model.configure_compression(tokens_removed=-3)
    with pytest.raises(ValueError, match="bogus"):
        model.configure_compression(bogus=1)
    with pytest.raises(ValueError):
        model.configure_compression(use_distillation_token=True)
    assert model.config.tokens_removed == 8  # nothing half-applied
    model.configure_compression(tokens_removed=4, reduction_layers=[0])
    with torch.no_grad():
        out = model(pixels(1), output_hidden_states=True)
    assert [h.shape[1] for h in out.hidden_states] == [65, 61, 61, 61, 61]


def test_compression_settings_restores_the_previous_settings_also_on_error():
    model = tiny_model()
    x = pixels(1)
    with torch.no_grad():
        compressed = model(x, output_hidden_states=True)
        with model.compression_settings(reduction_layers=[], prune_threshold=float("inf")):
            assert model.config.reduction_layers == [] and model.config.prune_threshold == float("inf")
            baseline = model(x, output_hidden_states=True)
        with pytest.raises(KeyError), model.compression_settings(tokens_removed=[4, 2]):
            raise KeyError("inside the block")
        again = model(x, output_hidden_states=True)
    assert [h.shape[1] for h in baseline.hidden_states] == [65] * 5
    assert (model.config.reduction_layers, model.config.tokens_removed) == ([1, 2], 8)
    assert model.config.prune_threshold == pytest.approx(7e-5)
    assert torch.equal(again.logits, compressed.logits)
    with pytest.raises(ValueError, match="-1"), model.compression_settings(tokens_removed=-1):
        pass
    assert model.config.tokens_removed == 8


def test_custom_score_function_is_used(score_registry):
    """A registered score preferring the LAST patches: with tau = 0 pruning must keep exactly those."""
    calls = []

    @register_score_function("_test_prefer_last")
    def prefer_last(inputs):
        calls.append(inputs)
        batch, tokens = inputs.value_norm.shape
        return torch.arange(1, tokens - inputs.num_protected + 1, dtype=inputs.value_norm.dtype).expand(batch, -1)

    model = tiny_model(score_function="_test_prefer_last", prune_threshold=0.0, reduction_layers=[1],
                       tokens_removed=20, track_sources=True)
    with torch.no_grad():
        out = model(pixels(2), output_compression=True)
    assert len(calls) == 1
    covered = out.token_sources.sum(1)  # [B, 65]: which input tokens survive
    expected = torch.zeros(65)
    expected[0] = 1
    expected[65 - 44:] = 1  # the last 64 - 20 patches
    torch.testing.assert_close(covered, expected.expand(2, -1))
    assert out.compression[0].pruned.all()
    # normalised by the model
    torch.testing.assert_close(out.compression[0].scores.sum(-1), torch.ones(2))


def test_register_score_function_rejects_bad_input():
    with pytest.raises(ValueError):
        register_score_function("", lambda inputs: inputs.value_norm)
    with pytest.raises(TypeError):
        register_score_function("_test_not_callable", 3)
    assert "_test_not_callable" not in SCORE_FUNCTIONS


def _value_norm_score(inputs):
    return inputs.value_norm[:, inputs.num_protected:]


def _other_score(inputs):
    return inputs.value_norm[:, inputs.num_protected:] ** 2


@pytest.mark.parametrize("name", ["ats", "cls_attention", "entropy", "_test_mine"])
@pytest.mark.parametrize("as_decorator", [False, True])
def test_a_taken_name_is_replaced_only_with_override(score_registry, name, as_decorator):
    if name == "_test_mine":
        register_score_function(name, _value_norm_score)
    before = SCORE_FUNCTIONS[name]
    with pytest.raises(ValueError, match=rf"{name!r} is already registered; pass override=True"):
        if as_decorator:
            register_score_function(name)(_other_score)
        else:
            register_score_function(name, _other_score)
    assert SCORE_FUNCTIONS[name] is before  # the process-wide registry is untouched
    if as_decorator:
        register_score_function(name, override=True)(_other_score)
    else:
        register_score_function(name, _other_score, override=True)
    assert SCORE_FUNCTIONS[name].fn is _other_score


# --------------------------------------------------------------------------------------------------------------------
# What a custom score function returns is checked
# --------------------------------------------------------------------------------------------------------------------


def _ones(inputs):
    batch, tokens = inputs.value_norm.shape
    return torch.ones(batch, tokens - inputs.num_protected, dtype=inputs.value_norm.dtype)


def _alternating_sign(inputs):
    scores = _ones(inputs)
    scores[:, ::2] = -1.0
    return scores


def _one_value(value):
    def score(inputs):
        scores = _ones(inputs)
        scores[1, 5] = value
        return scores

    return score


# (what the function returns, needs_full_attention, error type, what the message must say besides the function name).
# The tiny model at its first reduction layer: batch 2, 65 tokens, 1 protected -> the expected shape is [2, 64].
BAD_SCORE_FUNCTIONS = {
    "too_narrow": (lambda inputs: _ones(inputs)[:, :3], ValueError, "it returned shape [2, 3]"),
    "one_dimensional": (lambda inputs: _ones(inputs)[:, 0], ValueError, "it returned shape [2]"),
    "with_protected": (lambda inputs: torch.ones_like(inputs.value_norm), ValueError, "it returned shape [2, 65]"),
    "mixed_sign": (_alternating_sign, ValueError, "negative values"),
    "all_zero": (lambda inputs: 0 * _ones(inputs), ValueError, "all-zero scores for samples [0, 1]"),
    "one_nan": (_one_value(float("nan")), ValueError, "1 non-finite values"),
    "one_inf": (_one_value(float("inf")), ValueError, "1 non-finite values"),
    "a_list": (lambda inputs: _ones(inputs).tolist(), TypeError, "it returned list"),
    "none": (lambda inputs: None, TypeError, "it returned NoneType"),
    "integers": (lambda inputs: _ones(inputs).long(), TypeError, "it returned dtype torch.int64"),
    "complex": (lambda inputs: _ones(inputs).to(torch.complex64), TypeError, "it returned dtype torch.complex64"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCORE_FUNCTIONS))
def test_a_bad_custom_score_function_gets_a_clear_error(score_registry, case):
    fn, error, needle = BAD_SCORE_FUNCTIONS[case]
    name = f"_test_{case}"
    register_score_function(name, fn)
    model = tiny_model(score_function=name)
    with pytest.raises(error) as raised, torch.no_grad():
        model(pixels(2))
    message = str(raised.value)
    assert f"score function {name!r}" in message, message
    assert "[2, 64]" in message and needle in message, message


def test_reading_full_attention_without_registering_for_it_says_so(score_registry):
    register_score_function("_test_reads_rows", lambda inputs: inputs.attention_probs[:, :, 1:, :].mean((1, 3)))
    model = tiny_model(score_function="_test_reads_rows")
    with pytest.raises(TypeError, match=r"'_test_reads_rows' was registered without needs_full_attention=True"):
        with torch.no_grad():
            model(pixels(2))
    # registered as it should be, the same function works
    register_score_function("_test_reads_rows", SCORE_FUNCTIONS["_test_reads_rows"].fn, needs_full_attention=True,
                            override=True)
    with torch.no_grad():
        assert torch.isfinite(model(pixels(2)).logits).all()


def test_valid_custom_scores_pass_the_checks_also_compiled(score_registry):
    """Float64 scores in a float32 model are fine; under torch.compile(fullgraph=True) the checks add no graph break
    (the value check, which needs a host sync, is eager-only) and the result equals eager."""
    register_score_function("_test_value_norm_f64", lambda inputs: _value_norm_score(inputs).double() + 1e-3)
    model = tiny_model(score_function="_test_value_norm_f64", initializer_range=0.5)
    x = mixed_pixels(4)
    with torch.no_grad():
        expected = model(x, output_compression=True)
        torch._dynamo.reset()
        got = torch.compile(model, fullgraph=True, backend="eager")(x, output_compression=True)
    torch.testing.assert_close(got.logits, expected.logits)
    assert expected.compression[0].scores.dtype == torch.float64


def test_builtin_scores_skip_the_checks(monkeypatch):
    """The built-ins are tested here and stay off the per-call checks; a custom function is checked every call."""
    from modeling_ppt_deit import token_ops

    checked = []
    monkeypatch.setattr(token_ops, "check_scores", lambda *args, **kwargs: checked.append(args[1]))
    for name in ("ats", "cls_attention", "entropy"):
        with torch.no_grad():
            tiny_model(score_function=name)(pixels(1))
    assert checked == []
    monkeypatch.setitem(SCORE_FUNCTIONS, "_test_checked", SCORE_FUNCTIONS["ats"]._replace(
        name="_test_checked", check_output=True))
    with torch.no_grad():
        tiny_model(score_function="_test_checked")(pixels(1))
    assert checked == ["_test_checked", "_test_checked"]  # both reduction layers
