# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""`ppt-publish ... --space`: the model repo's example images come from its evaluation set (the
digits' test split here, checked against scikit-learn's digits directly), the Space folder holds what a Space needs
and runs from its own copies of the code, a folder the tool did not write is never replaced, and the upload goes to
a Gradio Space. Never reaches the real network."""

from __future__ import annotations

import json
import runpy
import sys
from importlib import metadata
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
from huggingface_hub import constants, metadata_load
from PIL import Image

from hub_fixtures import folder_snapshot, offline_env, run_python, tiny_image_processor, tiny_trained_model
from ppt_tools.export import publish
from ppt_tools.export.space import SPACE_CODE, is_space_folder, write_space_folder


REPO = "someone/tiny-digits"
DIGITS_INFO = {"dataset_name": "scikit-learn digits", "eval_split": "test", "epochs": 1}


def digits_run(path):
    """A finished train.py run on the digits, as the publish CLI sees it."""
    tiny_trained_model(steps=1).save_pretrained(path)
    tiny_image_processor().save_pretrained(path)
    (path / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    (path / "training_info.json").write_text(json.dumps(DIGITS_INFO))
    return path


def first_test_digit_of_each_label(count=4):
    """Independently of model_card: the digits' test split (ppt_eval's one split rule), the first image of each new
    label in row order."""
    from ppt_tools.core.data import load_digits_dataset

    test = load_digits_dataset()["test"]
    found, seen = [], set()
    for row in test:
        if row["label"] not in seen:
            seen.add(row["label"])
            found.append((str(row["label"]), np.asarray(row["image"].convert("RGB"))))
        if len(found) == count:
            return found
    return found


def app_call(space, monkeypatch, **environ) -> tuple[tuple, dict]:
    """What the Space's app.py passes to `build_demo` (a stand-in `space_app` records it; nothing is loaded)."""
    calls = []
    stub = ModuleType("space_app")
    stub.build_demo = lambda *args, **kwargs: calls.append((args, kwargs))
    monkeypatch.setitem(sys.modules, "space_app", stub)
    monkeypatch.delenv("PPT_DEMO_CHECKPOINT", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    runpy.run_path(str(space / "app.py"))
    (call,) = calls
    return call


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("space_publish")
    run = digits_run(root / "run")
    code = publish.main(["--model_name_or_path", str(run), "--hub_model_id", REPO, "--dry_run", "--output_dir", str(root / "export"), "--space",
                         "--space_dir", str(root / "space")])
    assert code == 0
    return root


def test_the_model_repo_stores_digits_from_its_test_split_and_the_widget_shows_them(published):
    export = published / "export"
    expected = first_test_digit_of_each_label()
    files = sorted((export / "examples").iterdir())
    assert [path.name for path in files] == [f"{index}_{label}.png" for index, (label, _) in enumerate(expected)]
    for path, (_, pixels) in zip(files, expected):
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), pixels)
    widget = metadata_load(export / "README.md")["widget"]
    assert widget == [{"src": f"https://huggingface.co/{REPO}/resolve/main/examples/{path.name}",
                       "example_title": label} for path, (label, _) in zip(files, expected)]
    assert "mishig/sample_images" not in (export / "README.md").read_text()  # no ImageNet photos for digits
    publish.check_export_folder(export)


@pytest.mark.parametrize("recorded_columns", [True, False], ids=["columns recorded", "older training_info"])
def test_examples_of_a_cifar100_run_take_its_fine_labels(cifar100_path, recorded_columns):
    """A local CIFAR-100-schema dataset (img, fine_label, coarse_label: two ClassLabel columns): the examples are the
    first test images of each new fine label, titled with its name, as train.py's column rule picks the labels."""
    from datasets import load_from_disk

    from ppt_tools.export.space import evaluation_examples

    info = {"dataset_name": cifar100_path, "eval_split": "test"}
    if recorded_columns:
        info.update(image_column="img", label_column="fine_label")
    test = load_from_disk(cifar100_path)["test"]
    expected, seen = [], set()
    for row in test:
        if row["fine_label"] not in seen:
            seen.add(row["fine_label"])
            expected.append((f"fine_{row['fine_label']:03d}", np.asarray(row["img"].convert("RGB"))))
    examples = evaluation_examples(info, count=3)
    assert [title for title, _ in examples] == [title for title, _ in expected[:3]]
    for (_, image), (_, pixels) in zip(examples, expected):
        np.testing.assert_array_equal(np.asarray(image), pixels)
    # The coarse labels when the run trained on them.
    coarse = evaluation_examples({**info, "label_column": "coarse_label"}, count=2)
    assert [title for title, _ in coarse] == [f"coarse_{row['coarse_label']:02d}" for row in
                                              [test[0], next(r for r in test if r["coarse_label"] != test[0]["coarse_label"])]]


def test_the_space_folder_holds_app_pinned_requirements_card_code_and_examples(published):
    space = published / "space"
    assert is_space_folder(space)
    card = metadata_load(space / "README.md")
    assert card["sdk"] == "gradio" and card["models"] == [REPO] and card["app_file"] == "app.py"
    assert card["sdk_version"] == metadata.version("gradio")
    requirements = (space / "requirements.txt").read_text().splitlines()
    for name in ("gradio", "transformers", "torch", "matplotlib", "huggingface_hub"):
        assert f"{name}=={metadata.version(name)}" in requirements
    assert f'"{REPO}"' in (space / "app.py").read_text()
    assert folder_snapshot(space / "examples") == folder_snapshot(published / "export" / "examples")
    for target in SPACE_CODE:
        assert (space / target).is_file()


def test_the_space_runs_the_models_own_code_pinned_to_its_revision(published, tmp_path, monkeypatch, capsys):
    """The app passes trust_remote_code explicitly, with the reason beside it, and the model revision it was written
    for: none after a dry run without --revision (said in the app, the card and on the console), else the one given;
    PPT_DEMO_CHECKPOINT serves a local folder, unpinned."""
    space = published / "space"
    app = (space / "app.py").read_text()
    assert "# trust_remote_code=True: the Space runs the model repo's own code" in app
    assert app_call(space, monkeypatch) == ((REPO,), {"revision": None, "trust_remote_code": True,
                                                      "examples": space / "examples", "title": REPO})
    assert "Unpinned" in app
    assert "at the latest commit of its main branch (unpinned)" in (space / "README.md").read_text()
    assert app_call(space, monkeypatch, PPT_DEMO_CHECKPOINT="/some/export")[1]["revision"] is None

    run = published / "run"
    assert publish.main(["--model_name_or_path", str(run), "--hub_model_id", REPO, "--dry_run", "--output_dir",
                         str(tmp_path / "export"), "--space", "--space_dir", str(tmp_path / "space"),
                         "--hub_revision", "v1.0"]) == 0
    assert "at revision v1.0" in capsys.readouterr().out
    (args, kwargs) = app_call(tmp_path / "space", monkeypatch)
    assert args == (REPO,) and kwargs["revision"] == "v1.0" and kwargs["trust_remote_code"] is True
    assert "at revision `v1.0`" in (tmp_path / "space" / "README.md").read_text()


@pytest.mark.slow
def test_the_space_runs_from_its_own_copies_of_the_code(published):
    """In a fresh process started in the Space folder (as a Space runs app.py), serving the exported repo (its remote
    code): the app's modules are the folder's copies, and an example image runs through it."""
    script = """
import json, os, sys
from pathlib import Path
import app, space_app, ppt_tools.core.cost, ppt_tools.core.errors, ppt_tools.analysis.token_maps, modeling_ppt_deit
here = Path.cwd().resolve()
for module in (space_app, ppt_tools.core.cost, ppt_tools.core.errors, ppt_tools.analysis.token_maps,
               modeling_ppt_deit):
    assert Path(module.__file__).resolve().is_relative_to(here), module.__file__
from gradio_client import Client, handle_file
app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
example = sorted((here / "examples").iterdir())[0]
status, off, on, maps, cost, details = Client(f"http://127.0.0.1:{sys.argv[1]}/", verbose=False).predict(
    handle_file(str(example)), 8, 7e-5, "ats", api_name="/run")
print(json.dumps({"on": on["label"], "panels": details["panels"], "status": status}))
app.demo.close()
"""
    from helpers import free_port

    env = offline_env(PPT_DEMO_CHECKPOINT=str(published / "export"))
    env.pop("PYTHONPATH", None)
    done = run_python(script, args=[str(free_port())], env=env, cwd=published / "space", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"on"')))
    assert result["panels"] == ["input", "after layer 1", "after layer 2"]
    assert result["on"] in json.loads((published / "export" / "config.json").read_text())["id2label"].values()


def test_a_folder_the_tool_did_not_write_is_never_replaced(published, tmp_path, capsys):
    run = published / "run"
    theirs = tmp_path / "their_space"
    theirs.mkdir()
    (theirs / "app.py").write_text("their app")
    (theirs / "notes.md").write_text("keep me")
    before = folder_snapshot(theirs)
    code = publish.main(["--model_name_or_path", str(run), "--hub_model_id", REPO, "--dry_run", "--output_dir", str(tmp_path / "export"),
                         "--space", "--space_dir", str(theirs)])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not a Space this tool wrote" in err and err.count("\n") == 1 and "Traceback" not in err
    assert folder_snapshot(theirs) == before
    assert not (tmp_path / "export").exists()  # refused before any work
    # A bad Space id is one line too.
    assert publish.main(["--model_name_or_path", str(run), "--hub_model_id", REPO, "--dry_run", "--output_dir", str(tmp_path / "export"),
                         "--space", "a/b/c"]) == 2
    assert "--space must be a Space id" in capsys.readouterr().err
    # The Space in the export folder (or the export in the Space's): refused before either is written.
    for space_dir in (tmp_path / "export", tmp_path / "export" / "space"):
        assert publish.main(["--model_name_or_path", str(run), "--hub_model_id", REPO, "--dry_run", "--output_dir", str(tmp_path / "export"),
                             "--space", "--space_dir", str(space_dir)]) == 2
        assert "overlap" in capsys.readouterr().err
        assert not (tmp_path / "export").exists()

    # A Space it wrote is replaced (here by the same Space written again).
    space = published / "space"
    code = publish.main(["--model_name_or_path", str(published / "export"), "--hub_model_id", REPO, "--dry_run", "--upload_only", "--space",
                         "--space_dir", str(space)])
    assert code == 0 and is_space_folder(space)


class RecordingApi:
    calls: list = []

    def __init__(self, token=None):
        RecordingApi.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        RecordingApi.calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")

    def create_branch(self, repo_id, **kwargs):
        RecordingApi.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        RecordingApi.calls.append(("upload_folder", kwargs))
        return SimpleNamespace(oid="a" * 40, commit_url=f"https://hub.test/{kwargs['repo_id']}/commit/{'a' * 40}")

    def upload_file(self, **kwargs):
        RecordingApi.calls.append(("upload_file", kwargs))
        return SimpleNamespace(oid="b" * 40, commit_url=f"https://hub.test/{kwargs['repo_id']}/commit/{'b' * 40}")


def test_the_space_is_uploaded_as_a_gradio_space_after_the_model(published, monkeypatch, capsys):
    RecordingApi.calls = []
    monkeypatch.setattr(publish, "HfApi", RecordingApi)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    space = published / "space"
    # The Space the upload writes: the one a dry run wrote, pinned to the model's commit that was uploaded last.
    config = json.loads((published / "export" / "config.json").read_text())
    expected = write_space_folder(published / "expected_space", REPO, examples=published / "export" / "examples",
                                  num_labels=len(config["id2label"]), model_revision="b" * 40)
    code = publish.main(["--model_name_or_path", str(published / "export"), "--hub_model_id", REPO, "--upload_only",
                         "--space", "someone/demo", "--space_dir", str(space), "--hub_token", "hf_x"])
    assert code == 0, capsys.readouterr().err
    uploads = [call for call in RecordingApi.calls if call[0] in ("create_repo", "upload_folder")]
    assert uploads[0][1] == REPO and uploads[0][2].get("repo_type", "model") == "model"
    assert uploads[1][1]["repo_id"] == REPO
    assert uploads[2][1] == "someone/demo" and uploads[2][2]["repo_type"] == "space"
    assert uploads[2][2]["space_sdk"] == "gradio"
    assert uploads[3][1]["repo_id"] == "someone/demo" and uploads[3][1]["repo_type"] == "space"
    assert uploads[3][1]["folder_path"] == space
    assert folder_snapshot(space) == folder_snapshot(expected)
    assert app_call(space, monkeypatch)[1]["revision"] == "b" * 40
    out = capsys.readouterr().out
    assert "https://hub.test/someone/demo/commit/" in out

    # Without a token: a clear line, nothing sent.
    RecordingApi.calls = []
    monkeypatch.setattr(publish, "get_token", lambda: None)
    assert publish.main(["--model_name_or_path", str(published / "export"), "--hub_model_id", REPO, "--upload_only", "--space",
                         "--space_dir", str(space)]) == 1
    assert "No Hugging Face token found" in capsys.readouterr().err
    assert not [call for call in RecordingApi.calls if call[0] != "init"]
