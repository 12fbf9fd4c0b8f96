"""Loading DeiT checkpoints in the exact layouts of the Hub repos (written key by key in model_fixtures.py):

- facebook/deit-small-patch16-224 style: model_type "vit", ViTForImageClassification, `vit.*` + `classifier`;
- facebook/deit-small-distilled-patch16-224 style: model_type "deit", DeiTForImageClassificationWithTeacher,
  `deit.*` + `cls_classifier` + `distillation_classifier` + `deit.embeddings.distillation_token`;

both with the old 4.x names (`encoder.layer.N.attention.attention.query`, ...), as model.safetensors and as a pickled
pytorch_model.bin, plus preprocessor_config.json.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, DeiTForImageClassificationWithTeacher, ViTForImageClassification

from model_fixtures import HUB_TINY, expected_ppt_name, pixels, tiny_model, write_hub_checkpoint
from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification, PPTDeiTModel


LAYOUTS = [("vit", "safetensors"), ("vit", "bin"), ("deit", "safetensors"), ("deit", "bin")]
HEAD_KEYS = {"vit": {"classifier.weight", "classifier.bias"},
             "deit": {"classifier.weight", "classifier.bias", "distillation_classifier.weight",
                      "distillation_classifier.bias"}}
STOCK = {"vit": ViTForImageClassification, "deit": DeiTForImageClassificationWithTeacher}


@pytest.fixture(params=LAYOUTS, ids=lambda p: f"{p[0]}-{p[1]}")
def hub_checkpoint(request, tmp_path):
    model_type, weights_format = request.param
    state_dict = write_hub_checkpoint(tmp_path, model_type, weights_format)
    return tmp_path, model_type, state_dict


def test_every_weight_lands_where_expected(hub_checkpoint):
    directory, model_type, written = hub_checkpoint
    model, info = PPTDeiTForImageClassification.from_pretrained(directory, reduction_layers=[],
                                                                output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    ours = model.state_dict()
    expected_names = {expected_ppt_name(name) for name in written}
    assert expected_names == set(ours), (expected_names ^ set(ours))
    for old_name, tensor in written.items():
        torch.testing.assert_close(ours[expected_ppt_name(old_name)], tensor, rtol=0, atol=0, msg=old_name)
    # spot checks written out in full
    prefix = "vit" if model_type == "vit" else "deit"
    assert torch.equal(model.deit.layers[1].attention.q_proj.weight,
                       written[f"{prefix}.encoder.layer.1.attention.attention.query.weight"])
    assert torch.equal(model.deit.layers[0].mlp.fc2.bias, written[f"{prefix}.encoder.layer.0.output.dense.bias"])
    assert torch.equal(model.deit.layers[0].attention.o_proj.weight,
                       written[f"{prefix}.encoder.layer.0.attention.output.dense.weight"])
    head = "classifier" if model_type == "vit" else "cls_classifier"
    assert torch.equal(model.classifier.weight, written[f"{head}.weight"])


def test_config_and_logits_match_stock(hub_checkpoint):
    directory, model_type, _ = hub_checkpoint
    model = PPTDeiTForImageClassification.from_pretrained(directory, reduction_layers=[]).eval()
    config = model.config
    assert isinstance(config, PPTDeiTConfig) and config.model_type == "ppt_deit"
    assert config.use_distillation_token == (model_type == "deit")
    assert config.distillation_head == (model_type == "deit")
    assert config.num_labels == HUB_TINY["num_labels"] and config.id2label[3] == "class_3"
    assert config.layer_norm_eps == 1e-12
    stock = STOCK[model_type].from_pretrained(directory).eval()
    x = pixels(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, stock(x).logits, rtol=1e-5, atol=1e-5)


def test_new_head_with_num_labels(hub_checkpoint):
    directory, model_type, written = hub_checkpoint
    model, info = PPTDeiTForImageClassification.from_pretrained(
        directory, num_labels=100, ignore_mismatched_sizes=True, reduction_layers=[0], tokens_removed=4,
        output_loading_info=True)
    assert not info["unexpected_keys"]
    reinitialised = set(info["missing_keys"]) | {entry[0] if isinstance(entry, tuple) else entry
                                                 for entry in info["mismatched_keys"]}
    assert {"classifier.weight"} <= reinitialised <= HEAD_KEYS[model_type], reinitialised
    assert model.config.num_labels == 100 and len(model.config.id2label) == 100
    assert model.classifier.weight.shape == (100, HUB_TINY["hidden_size"])
    if model_type == "deit":
        assert model.distillation_classifier.weight.shape == (100, HUB_TINY["hidden_size"])
    ours = model.state_dict()
    for old_name, tensor in written.items():
        name = expected_ppt_name(old_name)
        if name not in HEAD_KEYS[model_type]:
            assert torch.equal(ours[name], tensor), old_name  # backbone intact
    with torch.no_grad():
        out = model.eval()(pixels(2), output_hidden_states=True)
    assert out.logits.shape == (2, 100)
    protected = 2 if model_type == "deit" else 1
    assert [h.shape[1] for h in out.hidden_states] == [16 + protected, 12 + protected, 12 + protected]


@pytest.mark.parametrize("overrides, mismatched", [
    (dict(num_labels=3), {"classifier.weight", "classifier.bias"}),
    (dict(id2label={0: "a", 1: "b"}), {"classifier.weight", "classifier.bias"}),
    (dict(image_size=32), {"deit.embeddings.position_embeddings"}),
    (dict(num_labels=3, image_size=32), {"classifier.weight", "classifier.bias", "deit.embeddings.position_embeddings"}),
])
def test_shape_mismatch_raises_unless_ignored(tmp_path, overrides, mismatched):
    """The transformers contract: weights that do not fit raise, unless ignore_mismatched_sizes=True re-initialises
    them. (num_labels / id2label used to switch shape checking off for every weight: the trained position embeddings
    of a 30 px model were silently replaced by random ones at image_size=32.)"""
    saved = tiny_model(image_size=30)
    saved.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        PPTDeiTForImageClassification.from_pretrained(tmp_path, **overrides)
    model, info = PPTDeiTForImageClassification.from_pretrained(
        tmp_path, ignore_mismatched_sizes=True, output_loading_info=True, **overrides)
    assert {entry[0] for entry in info["mismatched_keys"]} == mismatched
    trained = saved.state_dict()
    for name, tensor in model.state_dict().items():
        if name not in mismatched:
            assert torch.equal(tensor, trained[name]), name  # everything else is the checkpoint's


def test_base_model_loads_hub_checkpoint(hub_checkpoint):
    directory, model_type, written = hub_checkpoint
    model, info = PPTDeiTModel.from_pretrained(directory, reduction_layers=[], output_loading_info=True)
    assert not info["missing_keys"] or info["missing_keys"] <= {"pooler.dense.weight", "pooler.dense.bias"}
    assert all(not key.startswith(("deit.", "vit.", "layers", "embeddings")) for key in info["unexpected_keys"])
    prefix = "vit" if model_type == "vit" else "deit"
    assert torch.equal(model.layers[1].attention.k_proj.weight,
                       written[f"{prefix}.encoder.layer.1.attention.attention.key.weight"])
    assert torch.equal(model.layernorm.weight, written[f"{prefix}.layernorm.weight"])


def test_image_processor_and_forward(hub_checkpoint):
    directory, _, _ = hub_checkpoint
    from PIL import Image

    processor = AutoImageProcessor.from_pretrained(directory)
    image = Image.fromarray((torch.rand(50, 60, 3) * 255).to(torch.uint8).numpy())
    inputs = processor(images=[image, image], return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, 32, 32)
    model = PPTDeiTForImageClassification.from_pretrained(directory, reduction_layers=[1], tokens_removed=3).eval()
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape == (2, 10) and torch.isfinite(out.logits).all()


def test_resave_round_trips(hub_checkpoint, tmp_path_factory):
    """transformers 5 writes a loaded checkpoint back in the key layout it came in (it reverses the key mapping),
    so a model loaded from a Hub-layout checkpoint saves the old names, a fresh model the new ones; either way the
    folder must load back to the same model."""
    directory, _, written = hub_checkpoint
    model = PPTDeiTForImageClassification.from_pretrained(directory, reduction_layers=[1], tokens_removed=3).eval()
    out_dir = tmp_path_factory.mktemp("resaved")
    model.save_pretrained(out_dir)
    keys = set(load_file(str(out_dir / "model.safetensors")))
    assert keys in (set(model.state_dict()), set(written))
    assert not (out_dir / "pytorch_model.bin").exists()
    reloaded = PPTDeiTForImageClassification.from_pretrained(out_dir).eval()
    assert reloaded.config.reduction_layers == [1] and reloaded.config.tokens_removed == 3
    x = pixels(2)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, model(x).logits, rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["truncated", "bad header"])
def test_a_damaged_weights_file_is_named(tmp_path, damage):
    """safetensors' own error names no file; from_pretrained (and AutoModel with the remote code) names the folder."""
    from transformers import AutoModelForImageClassification

    tiny_model().save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else (10**6).to_bytes(8, "little") + data[8:])
    for load in (PPTDeiTForImageClassification.from_pretrained,
                 lambda folder: AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)):
        with pytest.raises(OSError, match=rf"a weights file of '{tmp_path}' cannot be read by safetensors .*damaged.*model\.safetensors"):
            load(str(tmp_path))
