# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""ONNX export keeps PPT's per-sample policy: ONNX Runtime (CPU) gives PyTorch's outputs, within 1e-4, on batches
that mix pruned and pooled samples, for every score function, with and without the distillation token, for
tau = 0, tau = inf and a tau between the samples' score variances, at batch 1 and a larger batch of the same file.

The model is traced on random noise (one policy, most likely, for all of its samples): a graph that baked in the
traced batch's policies, its merge plan or its batch size would fail on the mixed batches here. Each export takes
seconds, so the matrix is covered by a handful of exports rather than the full product.
"""

from __future__ import annotations

import math
import os
import re

import pytest
import torch

from hub_fixtures import folder_snapshot
from model_fixtures import mixed_pixels, threshold_between, tiny_model


onnx_export = pytest.importorskip("ppt_tools.export.onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-4
MIXED = "mixed"


def _model(score_function: str, distilled: bool, tau, base_model: bool = False):
    model = tiny_model(
        score_function=score_function,
        use_distillation_token=distilled,
        distillation_head=distilled,
        track_sources=True,  # not a graph output: the export must still run (and leave the map out)
    )
    pixel_values = mixed_pixels(8)
    if tau == MIXED:
        with torch.no_grad():
            variances = model(pixel_values, output_compression=True).compression[0].score_variance
        tau = threshold_between(variances)
    model.configure_compression(prune_threshold=tau)
    if base_model:
        model = model.deit
    return model, pixel_values


def _policies(model, pixel_values) -> torch.Tensor:
    """`[layers, batch]` bool, True where PyTorch pruned the sample (classifier or encoder)."""
    with torch.no_grad():
        records = model(pixel_values, output_compression=True).compression
    return torch.stack([record.pruned for record in records])


# A covering of the matrix: every score function with a mixed batch, distilled and not, tau = 0 and tau = inf, the
# classifier's logits and (one case) the bare encoder's last hidden state and token sizes.
# (ats without the distillation token on a mixed batch is the command-line test's case, below.)
CASES = [
    ("cls_attention", True, MIXED, False),
    ("entropy", False, MIXED, False),
    ("entropy", True, MIXED, True),
    ("ats", True, 0.0, False),
    ("cls_attention", False, math.inf, False),
]


@pytest.mark.parametrize(
    "score_function, distilled, tau, base_model",
    CASES,
    ids=[f"{s}-{'distilled' if d else 'plain'}-tau_{t}{'-encoder' if b else ''}" for s, d, t, b in CASES],
)
def test_onnx_runtime_matches_pytorch_per_sample(tmp_path, score_function, distilled, tau, base_model):
    model, pixel_values = _model(score_function, distilled, tau, base_model)
    policies = _policies(model, pixel_values)
    if tau == MIXED:
        assert policies[0].any() and not policies[0].all(), "the batch must mix pruning and pooling"
    else:
        assert bool(policies.all()) if tau == 0 else not bool(policies.any())

    path = onnx_export.export_onnx(model, tmp_path / "model.onnx")
    assert model.training is False
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"], "one self-contained file, no temporary left over"
    _assert_onnx_matches(path, model, pixel_values, policies)


def _assert_onnx_matches(path, model, pixel_values, policies):
    """The file's outputs equal PyTorch's on the mixed batch, and on one pruned and one pooled sample alone."""
    base_model = not hasattr(model, "classifier")
    session = onnx_export.onnx_session(path, threads=1)
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    expected_outputs = ["last_hidden_state", "token_sizes"] if base_model else ["logits"]
    assert [o.name for o in session.get_outputs()] == expected_outputs

    # The whole mixed batch, then single samples of both policies through the same file (dynamic batch size).
    pruned_sample = int(policies[0].float().argmax())
    pooled_sample = int((~policies[0]).float().argmax())
    singles = [pixel_values[i : i + 1] for i in (pruned_sample, pooled_sample)]
    for batch in (pixel_values, *singles):
        got = onnx_export.onnx_outputs(session, batch)
        with torch.no_grad():
            out = model(batch)
        if base_model:
            torch.testing.assert_close(got[0], out.last_hidden_state, rtol=0, atol=TOLERANCE)
            torch.testing.assert_close(got[1], out.token_sizes, rtol=0, atol=TOLERANCE)
        else:
            torch.testing.assert_close(got[0], out.logits, rtol=0, atol=TOLERANCE)
    if base_model:  # pooled samples carry merged sizes, pruned ones keep sizes of 1 until they pool
        sizes = onnx_export.onnx_outputs(session, pixel_values)[1]
        assert (sizes[~policies.all(dim=0)] > 1).any(dim=-1).all() and (sizes[policies.all(dim=0)] == 1).all()


def test_cli_exports_a_checkpoint_and_checks_it_against_pytorch(tmp_path, capsys):
    """The command line, on the matrix's remaining case: ats, no distillation token, a mixed batch."""
    model, pixel_values = _model("ats", False, MIXED)
    policies = _policies(model, pixel_values)
    assert policies[0].any() and not policies[0].all(), "the batch must mix pruning and pooling"
    model.save_pretrained(tmp_path / "checkpoint")
    output = tmp_path / "out" / "ppt.onnx"
    output.parent.mkdir()
    assert onnx_export.main(["--model_name_or_path", str(tmp_path / "checkpoint"), "--output_file", str(output)]) == 0
    assert re.search(r"max \|logits difference\| = \d", capsys.readouterr().out)
    assert sorted(os.listdir(output.parent)) == ["ppt.onnx"]
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert metadata["ppt_deit.score_function"] == '"ats"' and metadata["ppt_deit.reduction_layers"] == "[1, 2]"
    assert float(metadata["ppt_deit.prune_threshold"]) == model.config.prune_threshold
    _assert_onnx_matches(output, model, pixel_values, policies)


# --------------------------------------------------------------------------------------------------------------------
# Bad input: clear errors, and no file touched that the export did not write. The exporter is replaced by a fake
# (these tests are about the file handling, and a real export takes seconds).
# --------------------------------------------------------------------------------------------------------------------


class _FakeProgram:
    def __init__(self, on_save=None):
        self.model = type("Model", (), {"metadata_props": {}})()
        self.on_save = on_save

    def save(self, destination, external_data=None):
        with open(destination, "wb") as stream:
            stream.write(b"new onnx")
        if self.on_save is not None:
            self.on_save(destination)


@pytest.fixture
def fake_exporter(monkeypatch):
    """Replace torch's exporter; returns a list that the fake program's `on_save` hook can be set through."""
    hooks = []
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: _FakeProgram(hooks[0] if hooks else None))
    return hooks


def test_not_a_ppt_model_is_refused(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    stock = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                intermediate_size=64, image_size=32, patch_size=8))
    for model in (torch.nn.Linear(2, 2), stock):
        with pytest.raises(TypeError, match="PPTDeiTForImageClassification.*got .*" + type(model).__name__):
            onnx_export.export_onnx(model, tmp_path / "model.onnx")
    with pytest.raises(TypeError, match="use export_onnx"):  # the comparator's export refuses PPT models
        onnx_export.export_stock_classifier(tiny_model(), tmp_path / "model.onnx")
    with pytest.raises(TypeError, match="needs a transformers image classifier"):
        onnx_export.export_stock_classifier(torch.nn.Linear(2, 2), tmp_path / "model.onnx")
    assert os.listdir(tmp_path) == []


def test_bad_targets_and_opsets_are_refused_before_exporting(tmp_path, fake_exporter):
    model = tiny_model()
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        onnx_export.export_onnx(model, tmp_path / "missing" / "model.onnx")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(IsADirectoryError, match="folder.onnx"):
        onnx_export.export_onnx(model, tmp_path / "folder.onnx")
    for opset in (17, 23, "18", 18.0):
        with pytest.raises(ValueError, match=r"opset .* not supported; choose one of \[18, 19, 20, 21, 22\]"):
            onnx_export.export_onnx(model, tmp_path / "model.onnx", opset=opset)
    assert sorted(os.listdir(tmp_path)) == ["folder.onnx"]


def test_an_existing_file_is_kept_unless_overwrite(tmp_path, fake_exporter):
    model = tiny_model()
    target = tmp_path / "model.onnx"
    target.write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError, match="model.onnx.*exists.*overwrite"):
        onnx_export.export_onnx(model, target)
    assert target.read_bytes() == b"someone else's file"
    onnx_export.export_onnx(model, target, overwrite=True)
    assert target.read_bytes() == b"new onnx"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]


def test_a_file_that_appears_during_the_export_is_not_replaced(tmp_path, fake_exporter):
    target = tmp_path / "model.onnx"
    fake_exporter.append(lambda _: target.write_bytes(b"written meanwhile"))
    with pytest.raises(FileExistsError, match="appeared during the export"):
        onnx_export.export_onnx(tiny_model(), target)
    assert target.read_bytes() == b"written meanwhile"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"], "the temporary file is removed"


def test_a_failed_export_leaves_nothing_behind(tmp_path, fake_exporter):
    def fail(_):
        raise RuntimeError("disk full")

    fake_exporter.append(fail)
    model = tiny_model().train()
    with pytest.raises(RuntimeError, match="disk full"):
        onnx_export.export_onnx(model, tmp_path / "model.onnx")
    assert os.listdir(tmp_path) == []
    assert model.training, "the caller's train/eval mode is restored"


def test_cli_errors_name_the_problem_and_touch_nothing(tmp_path, capsys, fake_exporter):
    checkpoint = tmp_path / "checkpoint"
    tiny_model().save_pretrained(checkpoint)
    saved = folder_snapshot(checkpoint)
    existing = tmp_path / "existing.onnx"
    existing.write_bytes(b"keep me")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    cases = [
        (["--model_name_or_path", str(checkpoint), "--output_file", str(existing)], "existing.onnx' exists"),
        (["--model_name_or_path", str(checkpoint), "--output_file", str(tmp_path / "nowhere" / "m.onnx")], "folder .*nowhere' does not exist"),
        (["--model_name_or_path", str(tmp_path / "absent"), "--output_file", str(tmp_path / "m.onnx")], "--model_name_or_path .*absent' does not exist"),
        (["--model_name_or_path", str(bert), "--output_file", str(tmp_path / "m.onnx")], "model_type 'bert'"),
        (["--model_name_or_path", str(checkpoint), "--output_file", str(tmp_path / "m.onnx"), "--opset", "12"], "opset 12 is not supported"),
        # --overwrite replaces .onnx files only: never the checkpoint's own weights
        (["--model_name_or_path", str(checkpoint), "--output_file", str(checkpoint / "model.safetensors"), "--overwrite"], "does not end in .onnx"),
    ]
    capsys.readouterr()  # save_pretrained's progress bar
    for argv, message in cases:
        assert onnx_export.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert re.search(message, err) and err.startswith("ppt-export-onnx: error: ") and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error; options cannot be abbreviated
        onnx_export.main(["--model_name_or_path", str(checkpoint), "--output_file", str(existing), "--overwrit"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --overwrit" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == ["bert", "checkpoint", "existing.onnx"]
    assert folder_snapshot(checkpoint) == saved


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_is_refused_with_the_alternative(tmp_path, fake_exporter, dtype):
    """torch exports a bf16 / fp16 model without complaint, but ONNX Runtime's CPU kernels refuse the file."""
    model = tiny_model().to(dtype)
    with pytest.raises(ValueError, match=rf"float32 models; this one holds {dtype} weights.*float32 copy"):
        onnx_export.export_onnx(model, tmp_path / "model.onnx")
    assert os.listdir(tmp_path) == []


def test_cli_exports_a_checkpoint_saved_in_bf16_in_float32(tmp_path, capsys):
    """The command loads the checkpoint in float32, the dtype the export runs in, and checks the file."""
    checkpoint = tmp_path / "checkpoint"
    tiny_model().to(torch.bfloat16).save_pretrained(checkpoint)
    output = tmp_path / "ppt.onnx"
    assert onnx_export.main(["--model_name_or_path", str(checkpoint), "--output_file", str(output)]) == 0, \
        capsys.readouterr().err
    assert re.search(r"max \|logits difference\| = \d", capsys.readouterr().out)


@pytest.mark.parametrize("content", ["{not json", ""])
def test_cli_names_a_config_json_that_is_not_json(tmp_path, capsys, fake_exporter, content):
    checkpoint = tmp_path / "checkpoint"
    tiny_model().save_pretrained(checkpoint)
    (checkpoint / "config.json").write_text(content)
    capsys.readouterr()  # save_pretrained's progress bar
    assert onnx_export.main(["--model_name_or_path", str(checkpoint), "--output_file", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ppt-export-onnx: error: ") and str(checkpoint / "config.json") in err, err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("distilled", [False, True])
def test_onnx_runtime_config_is_a_plain_stock_config(tmp_path, distilled):
    """The config.json written beside the ONNX file for Optimum loads as a stock ViT / DeiT config (no remote code)
    with the model's sizes and labels, and records the PPT settings baked into the graph."""
    import json

    from transformers import AutoConfig, DeiTConfig, ViTConfig

    model = tiny_model(use_distillation_token=distilled, distillation_head=distilled, prune_threshold=math.inf,
                       id2label={i: f"digit {i}" for i in range(10)})
    (tmp_path / "config.json").write_text(json.dumps(onnx_export.onnx_runtime_config(model.config)))
    loaded = AutoConfig.from_pretrained(tmp_path)  # no trust_remote_code: a stock config class
    assert type(loaded) is (DeiTConfig if distilled else ViTConfig)
    # the graph's logits average the two heads of a distilled model, as the WithTeacher class does
    stock_class = "DeiTForImageClassificationWithTeacher" if distilled else "ViTForImageClassification"
    assert loaded.architectures == [stock_class]
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
                "patch_size", "num_channels"):
        assert getattr(loaded, key) == getattr(model.config, key), key
    assert loaded.id2label == {i: f"digit {i}" for i in range(10)}
    assert loaded.ppt_deit["prune_threshold"] == "inf" and loaded.ppt_deit["reduction_layers"] == [1, 2]
