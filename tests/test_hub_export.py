# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The exported Hub folder: stock layout, config, and loading three ways in a fresh offline process."""

from __future__ import annotations

import copy
import json
import math
import textwrap

import pytest
import torch
from safetensors import safe_open

from hub_fixtures import (
    LABELS,
    china_photo,
    folder_snapshot,
    make_tmpdir,
    run_python,
    tiny_image_processor,
    tiny_trained_model,
    trained_export,
)
from ppt_tools.export import publish
from ppt_tools.export.publish import export_folder


EXPECTED_FILES = {
    "README.md",
    "config.json",
    "configuration_ppt_deit.py",
    "model.safetensors",
    "modeling_ppt_deit.py",
    "preprocessor_config.json",
    "results.json",
    "token_ops.py",
}


def _strict_json(text: str):
    """json.loads that rejects Infinity/NaN literals, as the Hub's (JavaScript) parser does."""

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def _safetensors_keys(path) -> set[str]:
    with safe_open(str(path), framework="pt") as handle:
        return set(handle.keys())


def _stock_saved_keys(stock_class_name: str, config_json: dict, tmp) -> set[str]:
    """Independent expectation: the keys stock transformers writes for a fresh model of that class and config."""
    import transformers

    stock_class = getattr(transformers, stock_class_name)
    config_class = stock_class.config_class
    fields = {k: v for k, v in config_json.items() if k in config_class().to_dict() and k != "model_type"}
    stock_class(config_class(**fields)).save_pretrained(tmp)
    return _safetensors_keys(tmp / "model.safetensors")


def _without_compression(model):
    reference = copy.deepcopy(model)
    reference.configure_compression(reduction_layers=[])
    return reference


def test_export_folder_holds_exactly_the_repo_files():
    export = trained_export()
    assert {p.name for p in export.folder.iterdir()} == EXPECTED_FILES
    assert not [p for p in export.folder.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert not [p for p in export.workdir.iterdir() if ".partial-" in p.name]  # staging folder moved away


def test_config_is_stock_vit_with_ppt_fields_and_auto_map():
    export = trained_export()
    config = _strict_json((export.folder / "config.json").read_text())
    assert config["model_type"] == "vit"
    assert config["architectures"] == ["ViTForImageClassification"]
    assert config["auto_map"] == {
        "AutoConfig": "configuration_ppt_deit.PPTDeiTConfig",
        "AutoModel": "modeling_ppt_deit.PPTDeiTModel",
        "AutoModelForImageClassification": "modeling_ppt_deit.PPTDeiTForImageClassification",
    }
    model_config = export.model.config
    assert config["reduction_layers"] == [1, 2]
    assert config["tokens_removed"] == 8
    assert config["prune_threshold"] == pytest.approx(7e-5)
    assert config["score_function"] == "ats"
    assert config["proportional_attention"] is True
    assert config["use_distillation_token"] is False and config["distillation_head"] is False
    assert config["track_sources"] is False
    assert config["id2label"] == {str(i): name for i, name in enumerate(LABELS)}
    assert config["hidden_size"] == model_config.hidden_size and config["patch_size"] == model_config.patch_size
    for code_file in ("configuration_ppt_deit.py", "modeling_ppt_deit.py", "token_ops.py"):
        assert (export.folder / code_file).stat().st_size > 0


def test_weights_use_the_key_layout_stock_transformers_saves(tmp_path):
    export = trained_export()
    keys = _safetensors_keys(export.folder / "model.safetensors")
    config = json.loads((export.folder / "config.json").read_text())
    assert keys == _stock_saved_keys("ViTForImageClassification", config, tmp_path)
    assert "vit.encoder.layer.0.attention.attention.query.weight" in keys  # old 4.x names, `vit.` prefix


LOAD_THREE_WAYS = textwrap.dedent(
    """
    import json, sys
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

    folder, image_path, out_path = sys.argv[1:4]
    image = Image.open(image_path).convert("RGB")
    processor = AutoImageProcessor.from_pretrained(folder)
    pixel_values = processor(image, return_tensors="pt")["pixel_values"]
    remote = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    stock = AutoModelForImageClassification.from_pretrained(folder).eval()
    ppt_pipe = pipeline("image-classification", model=folder, trust_remote_code=True)
    stock_pipe = pipeline("image-classification", model=folder)
    with torch.no_grad():
        ppt = remote(pixel_values, output_compression=True)
        base_hidden = base(pixel_values).last_hidden_state
        stock_logits = stock(pixel_values).logits
        remote.configure_compression(reduction_layers=[])
        off_logits = remote(pixel_values).logits
    name = lambda obj: type(obj).__module__ + "." + type(obj).__name__
    top_k = remote.config.num_labels
    json.dump(dict(
        remote_class=name(remote), base_class=name(base), stock_class=name(stock),
        ppt_pipe_class=name(ppt_pipe.model), stock_pipe_class=name(stock_pipe.model),
        installed_package_imported="modeling_ppt_deit" in sys.modules,
        pixel_values=pixel_values.tolist(), ppt_logits=ppt.logits.tolist(),
        tokens_after=[step.tokens_after for step in ppt.compression],
        base_cls=base_hidden[:, 0].tolist(), stock_logits=stock_logits.tolist(), off_logits=off_logits.tolist(),
        ppt_pipe=ppt_pipe(image, top_k=top_k), stock_pipe=stock_pipe(image, top_k=top_k),
    ), open(out_path, "w"))
    """
)


@pytest.mark.slow
def test_folder_loads_three_ways_offline_in_a_fresh_process():
    export = trained_export()
    workdir = make_tmpdir("ppt-hub-load-")
    image_path = workdir / "china.jpg"
    photo = china_photo()
    photo.save(image_path, quality=95)
    out_path = workdir / "out.json"
    done = run_python(LOAD_THREE_WAYS, args=[str(export.folder), str(image_path), str(out_path)])
    assert done.returncode == 0, done.stderr[-4000:]
    got = json.loads(out_path.read_text())

    # Remote code really ran (not the installed package), and stock classes without it.
    for key in ("remote_class", "ppt_pipe_class"):
        assert got[key].startswith("transformers_modules.") and got[key].endswith("PPTDeiTForImageClassification")
    assert got["base_class"].endswith("modeling_ppt_deit.PPTDeiTModel")
    assert got["base_class"].startswith("transformers_modules.")
    assert got["stock_class"] == got["stock_pipe_class"] == (
        "transformers.models.vit.modeling_vit.ViTForImageClassification"
    )
    assert got["installed_package_imported"] is False

    model = export.model
    pixel_values = torch.tensor(got["pixel_values"])
    with torch.no_grad():
        expected_ppt = model(pixel_values).logits
        expected_off = _without_compression(model)(pixel_values).logits
    assert got["tokens_after"] == [after for before, after in model.config.token_schedule() if after != before]
    ppt_logits, stock_logits = torch.tensor(got["ppt_logits"]), torch.tensor(got["stock_logits"])
    torch.testing.assert_close(ppt_logits, expected_ppt, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stock_logits, expected_off, atol=1e-5, rtol=1e-5)
    # Stock without remote code == PPT with compression off; and compression does change the logits.
    torch.testing.assert_close(torch.tensor(got["off_logits"]), stock_logits, atol=1e-6, rtol=0)
    assert (ppt_logits - stock_logits).abs().max() > 1e-3
    # AutoModel's final CLS token through the trained head gives the classifier's logits.
    with torch.no_grad():
        from_base = model.classifier(torch.tensor(got["base_cls"]))
    torch.testing.assert_close(from_base, ppt_logits, atol=1e-5, rtol=1e-5)

    for pipe_key, logits in (("ppt_pipe", ppt_logits), ("stock_pipe", stock_logits)):
        probs = logits.softmax(-1)[0]
        order = probs.argsort(descending=True).tolist()
        assert [entry["label"] for entry in got[pipe_key]] == [LABELS[i] for i in order]
        assert [entry["score"] for entry in got[pipe_key]] == pytest.approx(probs[order].tolist(), abs=1e-5)


@pytest.mark.parametrize(
    "distillation_head, stock_class",
    [(True, "DeiTForImageClassificationWithTeacher"), (False, "DeiTForImageClassification")],
)
def test_distilled_models_export_as_stock_deit(tmp_path, distillation_head, stock_class):
    from transformers import AutoConfig, AutoModelForImageClassification

    from modeling_ppt_deit import PPTDeiTForImageClassification

    model = tiny_trained_model(
        seed=1, steps=2, use_distillation_token=True, distillation_head=distillation_head,
        prune_threshold=float("inf"),
    )
    folder = export_folder(model, tiny_image_processor(), tmp_path / "export")
    text = (folder / "config.json").read_text()
    config = _strict_json(text)  # Infinity is written as standard JSON
    assert config["model_type"] == "deit" and config["architectures"] == [stock_class]
    assert config["use_distillation_token"] is True and config["distillation_head"] is distillation_head
    keys = _safetensors_keys(folder / "model.safetensors")
    assert keys == _stock_saved_keys(stock_class, config, tmp_path)
    assert ("cls_classifier.weight" in keys) is distillation_head

    ours = PPTDeiTForImageClassification.from_pretrained(folder).eval()
    assert math.isinf(ours.config.prune_threshold)  # Infinity round-trips
    assert ours.config.use_distillation_token and ours.config.distillation_head is distillation_head
    stock = AutoModelForImageClassification.from_pretrained(folder).eval()
    assert type(stock).__name__ == stock_class
    assert AutoConfig.from_pretrained(folder).model_type == "deit"

    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(pixel_values).logits, model(pixel_values).logits, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            stock(pixel_values).logits, _without_compression(model)(pixel_values).logits, atol=1e-5, rtol=1e-5
        )


def test_export_refuses_a_foreign_non_empty_folder(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        export_folder(tiny_trained_model(steps=1), tiny_image_processor(), target)
    assert folder_snapshot(target) == {"notes.txt": b"keep me"}


def test_export_rejects_bad_inputs_before_writing(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    model = tiny_trained_model(steps=1)
    with pytest.raises(ValueError, match="accuracy"):
        export_folder(model, tiny_image_processor(), tmp_path / "a", results={"eval_accuracy": "high"})
    with pytest.raises(ValueError, match="PPTDeiTForImageClassification"):
        export_folder(ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=64, image_size=32, patch_size=8)),
                      tiny_image_processor(), tmp_path / "b")
    with pytest.raises(ValueError, match="image_processor"):
        export_folder(model, None, tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_the_previous_export_intact(tmp_path, monkeypatch):
    model = tiny_trained_model(steps=1)
    folder = export_folder(model, tiny_image_processor(), tmp_path / "export")
    before = folder_snapshot(folder)

    def broken_card(*args, **kwargs):
        raise RuntimeError("card failed")

    monkeypatch.setattr(publish, "build_model_card", broken_card)
    with pytest.raises(RuntimeError, match="card failed"):
        export_folder(tiny_trained_model(seed=5, steps=1), tiny_image_processor(), folder)
    assert folder_snapshot(folder) == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging folder left behind

    monkeypatch.undo()
    other = tiny_trained_model(seed=5, steps=1)
    export_folder(other, tiny_image_processor(), folder)  # a previous export is replaced
    assert folder_snapshot(folder)["model.safetensors"] != before["model.safetensors"]


def test_export_refuses_to_replace_a_training_run_folder(tmp_path):
    """A train.py output folder also has config.json and the code files, but replacing it would delete the run's
    results, trainer state and checkpoints."""
    model = tiny_trained_model(steps=1)
    run = tmp_path / "run"
    model.save_pretrained(run)
    (run / "all_results.json").write_text("{}")
    (run / "checkpoint-1").mkdir()
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ValueError, match="not a previous export"):
        export_folder(model, tiny_image_processor(), run)
    assert sorted(p.name for p in run.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_the_export_folder_has_ordinary_permissions(tmp_path):
    """Not the private 0700 of a temporary directory: others on the machine may read a model folder."""
    import os

    umask = os.umask(0o022)
    try:
        folder = export_folder(tiny_trained_model(steps=1), tiny_image_processor(), tmp_path / "export")
    finally:
        os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o755


# ---- the ONNX file ------------------------------------------------------------------------------------------------


def test_onnx_export_adds_optimum_layout_that_runs_in_onnxruntime(tmp_path):
    """`onnx=True` adds onnx/model.onnx with a plain config and the image processor (Optimum's subfolder layout); the
    file runs in ONNX Runtime with PyTorch's logits, the card says how, and a re-export (with or without ONNX) may
    replace the folder: it is recognised as an export."""
    pytest.importorskip("onnxruntime")
    from transformers import AutoConfig, ViTConfig

    from ppt_tools.export.onnx import onnx_outputs, onnx_session

    model = tiny_trained_model(steps=1, prune_threshold=7e-5)
    folder = export_folder(model, tiny_image_processor(), tmp_path / "export", onnx=True, repo_id="me/tiny-ppt")
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES | {"onnx"}
    assert {p.name for p in (folder / "onnx").iterdir()} == {"model.onnx", "config.json", "preprocessor_config.json"}
    config = AutoConfig.from_pretrained(folder / "onnx")  # no remote code: a stock config
    assert type(config) is ViTConfig and config.id2label == model.config.id2label
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.eval()(pixel_values).logits
    session = onnx_session(folder / "onnx" / "model.onnx")
    for batch in (pixel_values, pixel_values[:1]):
        torch.testing.assert_close(onnx_outputs(session, batch)[0], expected[: len(batch)], rtol=0, atol=1e-4)
    card = (folder / "README.md").read_text()
    assert "### ONNX Runtime" in card and 'hf_hub_download(repo_id, "onnx/model.onnx"' in card
    assert 'ORTModelForImageClassification.from_pretrained(repo_id, subfolder="onnx")' in card
    assert card.count('repo_id = "me/tiny-ppt"') == 3  # the ONNX usage is pinned with the others on upload
    publish.check_export_folder(folder)
    (folder / "onnx" / "config.json").unlink()
    with pytest.raises(ValueError, match=r"incomplete onnx/ folder: missing \['onnx/config.json'\]"):
        publish.check_export_folder(folder)
    export_folder(model, tiny_image_processor(), folder)  # a previous export, ONNX or not, may be replaced
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES
    assert "ONNX Runtime" not in (folder / "README.md").read_text()


def test_an_onnx_folder_with_foreign_files_is_not_replaced(tmp_path):
    model = tiny_trained_model(steps=1)
    folder = export_folder(model, tiny_image_processor(), tmp_path / "export")
    (folder / "onnx").mkdir()
    (folder / "onnx" / "notes.txt").write_text("keep me")
    before = folder_snapshot(folder)
    with pytest.raises(ValueError, match="onnx/notes.txt changed since"):  # the edit check names the added file
        export_folder(model, tiny_image_processor(), folder)
    assert folder_snapshot(folder) == before
    with pytest.raises(ValueError, match="onnx_opset is given but onnx is off"):
        export_folder(model, tiny_image_processor(), tmp_path / "other", onnx_opset=18)
    with pytest.raises(ValueError, match=r"opset 12 is not supported"):
        export_folder(model, tiny_image_processor(), tmp_path / "other", onnx=True, onnx_opset=12)
    assert not (tmp_path / "other").exists()
