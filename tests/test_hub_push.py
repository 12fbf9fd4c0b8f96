# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Upload and command line: clean failures without token or network (local folder intact), the upload calls, the
CLI dry run from a checkpoint folder. Never reaches the real network."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from huggingface_hub import constants, metadata_load

from hub_fixtures import (
    ALL_RESULTS,
    BENCHMARK,
    folder_snapshot,
    offline_env,
    run_python,
    tiny_image_processor,
    tiny_trained_model,
    trained_export,
)
from ppt_tools.export import publish
from ppt_tools.export.publish import HubPushError, check_export_folder, push_folder


def _cli(*args, **env):
    return run_python(args=["-m", "ppt_tools.export.publish", *map(str, args)], env=offline_env(**env), timeout=120)


@pytest.mark.slow
def test_upload_without_token_fails_clearly_and_keeps_the_folder():
    folder = trained_export().folder
    before = folder_snapshot(folder)
    done = _cli("--model_name_or_path", folder, "--hub_model_id", "someone/tiny", "--upload_only", HF_HUB_OFFLINE="0",
                HF_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 1
    assert "No Hugging Face token found" in done.stderr and "HF_TOKEN" in done.stderr
    assert "RuntimeWarning" not in done.stderr  # `ppt-publish` runs without runpy's warning
    assert f"{folder} was not changed" in done.stderr
    assert folder_snapshot(folder) == before


@pytest.mark.slow
def test_upload_to_unreachable_endpoint_fails_clearly_and_keeps_the_folder():
    folder = trained_export().folder
    before = folder_snapshot(folder)
    done = _cli("--model_name_or_path", folder, "--hub_model_id", "someone/tiny", "--upload_only", HF_HUB_OFFLINE="0",
                HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN="hf_not_a_real_token")
    assert done.returncode == 1, done.stdout
    assert "Could not reach the Hub at http://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr
    assert "--hub_model_id someone/tiny --upload_only" in done.stderr  # tells how to retry
    assert folder_snapshot(folder) == before


def test_upload_in_offline_mode_fails_before_any_request(monkeypatch):
    folder = trained_export().folder
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE"):
        push_folder(folder, "someone/tiny", token="hf_not_a_real_token")


class RecordingApi:
    """Stands in for HfApi: records the calls, answers like the Hub would."""

    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return SimpleNamespace(oid="a" * 40, commit_url=f"https://hub.test/{kwargs['repo_id']}/commit/{'a' * 40}")

    def upload_file(self, **kwargs):
        self.calls.append(("upload_file", kwargs))
        return SimpleNamespace(oid="b" * 40, commit_url=f"https://hub.test/{kwargs['repo_id']}/commit/{'b' * 40}")


def test_push_uploads_the_folder_then_pins_the_card(monkeypatch):
    folder = trained_export().folder
    before = folder_snapshot(folder)
    RecordingApi.calls = []
    monkeypatch.setattr(publish, "HfApi", RecordingApi)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    url = push_folder(folder, "someone/tiny", token="hf_x", private=True, revision="v1", commit_message="msg")

    names = [call[0] for call in RecordingApi.calls]
    assert names == ["init", "create_repo", "create_branch", "upload_folder", "upload_file"]
    assert RecordingApi.calls[0] == ("init", "hf_x")
    assert RecordingApi.calls[1][2]["private"] is True
    upload = RecordingApi.calls[3][1]
    assert upload["folder_path"] == folder and upload["repo_id"] == "someone/tiny"
    assert upload["revision"] == "v1" and upload["commit_message"] == "msg"
    pin = RecordingApi.calls[4][1]
    assert pin["path_in_repo"] == "README.md" and pin["parent_commit"] == "a" * 40 and pin["revision"] == "v1"
    card = pin["path_or_fileobj"].decode()
    assert card.count(f'revision = "{"a" * 40}"') == 2 and 'repo_id = "someone/tiny"' in card
    assert url == f"https://hub.test/someone/tiny/commit/{'b' * 40}"
    assert folder_snapshot(folder) == before

    # A bare name goes to the token's namespace, which the Hub reports back; the card then names the full id.
    RecordingApi.calls = []
    push_folder(folder, "tiny", token="hf_x")
    assert 'repo_id = "me/tiny"' in RecordingApi.calls[-1][1]["path_or_fileobj"].decode()


def test_push_rejects_incomplete_or_pickled_folders(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        push_folder(tmp_path, "someone/tiny", token="hf_x")
    folder = trained_export().folder
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in folder_snapshot(folder).items():
        (copy / name).write_bytes(data)
    (copy / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="pickle"):
        check_export_folder(copy)
    with pytest.raises(ValueError, match="repo_id"):
        push_folder(folder, "a/b/c", token="hf_x")


def _run_folder(path, **model_options):
    """What train.py leaves for the publish CLI: a saved model and its image processor."""
    tiny_trained_model(**model_options).save_pretrained(path)
    tiny_image_processor().save_pretrained(path)
    return path


def test_cli_dry_run_exports_a_checkpoint_folder(tmp_path, capsys):
    checkpoint = _run_folder(tmp_path / "run", seed=2, steps=2)
    (checkpoint / "all_results.json").write_text(json.dumps(ALL_RESULTS))
    (checkpoint / "training_info.json").write_text(json.dumps({"dataset": "cifar10", "epochs": 2}))
    benchmark = tmp_path / "benchmark.json"
    benchmark.write_text(json.dumps(BENCHMARK))
    out = tmp_path / "export"

    code = publish.main(["--model_name_or_path", str(checkpoint), "--hub_model_id", "someone/tiny", "--dry_run", "--output_dir", str(out),
                         "--results", str(checkpoint / "all_results.json"), str(benchmark),
                         "--base_model", "facebook/deit-tiny-patch16-224"])
    assert code == 0
    assert "Dry run: nothing uploaded." in capsys.readouterr().out
    check_export_folder(out)
    metadata = metadata_load(out / "README.md")
    assert metadata["base_model"] == "facebook/deit-tiny-patch16-224" and metadata["datasets"] == ["cifar10"]
    assert metadata["model-index"][0]["results"][0]["metrics"][0]["value"] == ALL_RESULTS["eval_accuracy"]
    assert 'repo_id = "someone/tiny"' in (out / "README.md").read_text()
    stored = json.loads((out / "results.json").read_text())
    assert stored["results"]["throughput"] == BENCHMARK["ppt"]["throughput"]

    # Without --results the run's own result files are found in the checkpoint folder. They lack the benchmark's
    # numbers (and --base_model), so replacing the export above needs --allow_fewer_results.
    before = folder_snapshot(out)
    code = publish.main(["--model_name_or_path", str(checkpoint), "--hub_model_id", "someone/tiny", "--dry_run", "--output_dir", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'throughput'" in err and "'base_model'" in err and "--allow_fewer_results" in err
    assert folder_snapshot(out) == before
    code = publish.main(["--model_name_or_path", str(checkpoint), "--hub_model_id", "someone/tiny", "--dry_run", "--output_dir", str(out),
                         "--allow_fewer_results"])
    assert code == 0
    assert json.loads((out / "results.json").read_text())["raw"] == {"all_results.json": ALL_RESULTS}


def test_cli_reports_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    code = publish.main(["--model_name_or_path", str(tmp_path), "--hub_model_id", "someone/tiny", "--dry_run", "--output_dir",
                         str(tmp_path / "out")])
    assert code == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_rejects_a_bad_repo_id_before_writing_anything(tmp_path, capsys):
    checkpoint = _run_folder(tmp_path / "run", steps=1)
    code = publish.main(["--model_name_or_path", str(checkpoint), "--hub_model_id", "bad repo id!!", "--dry_run", "--output_dir",
                         str(tmp_path / "out")])
    assert code == 2
    assert "'bad repo id!!'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_names_a_training_info_file_that_is_not_json(tmp_path, capsys):
    checkpoint = _run_folder(tmp_path / "run", steps=1)
    info = tmp_path / "info.json"
    info.write_text("not json")
    code = publish.main(["--model_name_or_path", str(checkpoint), "--hub_model_id", "someone/tiny", "--dry_run", "--training_info", str(info),
                         "--output_dir", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(info) in err and "not valid JSON" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
