# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Export a trained PPT-DeiT classifier as a Hub repo folder, and upload it.

    from ppt_tools.export.publish import export_folder, push_folder
    folder = export_folder(model, image_processor, "outputs/hub/ppt-deit-small", results=results,
                           training_info={"dataset": "imagenet-1k", "base_model": "facebook/deit-small-patch16-224",
                                          "repo_id": "me/ppt-deit-small"})
    url = push_folder(folder, "me/ppt-deit-small")

Command line (an existing checkpoint folder, e.g. the `output_dir` of `train.py`):

    ppt-publish --model_name_or_path outputs/run --hub_model_id me/ppt-deit-small --dry_run
    ppt-publish --model_name_or_path outputs/run --hub_model_id me/ppt-deit-small --results outputs/bench/results.json

The folder holds exactly what is uploaded:

- `model.safetensors`: the weights in the stock layout that `transformers`' own `ViTForImageClassification` /
  `DeiTForImageClassification` / `DeiTForImageClassificationWithTeacher.save_pretrained` writes (never pickle);
- `config.json`: `model_type` "vit" or "deit", `architectures` the stock class, plus the PPT settings and an
  `auto_map` to the shipped code. Stock `transformers` loads the folder without remote code as the plain classifier
  (compression off; what the Hub widget runs); `trust_remote_code=True` gives the PPT model;
- `configuration_ppt_deit.py`, `modeling_ppt_deit.py`, `token_ops.py`: the remote code;
- `preprocessor_config.json`: the image processor;
- `README.md`: the model card (see `ppt_tools.export.card`, which documents the result keys it reads);
- `results.json`: the measured results the card was filled from (normalized, and each source file as given), the
  training information, and the sha256 of every other file (so that a later export sees a hand-edited card);
- with `onnx=True` (`--onnx`): `onnx/model.onnx`, the PPT model as an ONNX graph (`ppt_tools.export.onnx`:
  compression in the graph, dynamic batch), with `onnx/config.json`, a plain vit / deit config, and
  `onnx/preprocessor_config.json`, the layout Optimum's `ORTModelForImageClassification` loads with
  `subfolder="onnx"`. The file is checked against PyTorch in ONNX Runtime before the folder is kept.
- `examples/` (when given): example images from the model's evaluation set, which the card's widget offers.

`--space` also writes (and uploads, as a Gradio Space) a demo that runs PPT itself on an image: see
`ppt_tools.export.space`.

Nothing measured is lost without saying so: an export that would replace a previous export whose results hold
numbers the new one lacks is refused (`allow_fewer_results` / `--allow_fewer_results` to do it anyway), and the
command line exports an export with the numbers and training information it holds. The command line also refuses
a training run that has not finished (no `all_results.json`, or a `checkpoint-N` folder) unless given
`--allow_unfinished`. A throughput that benchmark.py marked noisy, and the speed-up from it, stay out of the card
(it says why, and the command says so on stderr) unless `allow_noisy_timings` / `--allow_noisy_timings`.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id
from transformers import AutoImageProcessor

from modeling_ppt_deit import PPTDeiTForImageClassification
from modeling_ppt_deit.configuration_ppt_deit import PPT_SETTINGS
from ppt_tools.core.arguments import run_command
from ppt_tools.core.errors import CommandFailure, one_line
from ppt_tools.core.models import build_stock_model, load_pretrained
from ppt_tools.export.onnx import (
    DEFAULT_OPSET,
    OnnxMismatchError,
    check_onnx_packages,
    check_opset,
    export_onnx,
    max_difference,
    onnx_runtime_config,
    onnx_session,
)
from ppt_tools.core.results import (
    ALL_RESULTS_FILE,
    EVAL_RESULTS_FILE,
    TRAIN_RESULTS_FILE,
    TRAINING_INFO_FILE,
    read_json_object,
    write_json,
)
from ppt_tools.core.outputs import FOLDER, MANIFEST_FILE, OutputTarget, TargetLock, check_replaceable, file_digests, \
    refuse_edited, resolve_target

from .card import build_model_card, is_export_results, load_results, noisy_timings, normalize_results, pin_usage
from .space import EXAMPLES_DIR, check_space_dir, evaluation_examples, save_examples, \
    write_space_folder


CODE_FILES = ("configuration_ppt_deit.py", "modeling_ppt_deit.py", "token_ops.py")
RESULTS_FILE = "results.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md", *CODE_FILES)
ONNX_DIR = "onnx"
ONNX_FILES = ("model.onnx", "config.json", "preprocessor_config.json")  # inside ONNX_DIR
EXPORT_FILES = (*REQUIRED_FILES, RESULTS_FILE, ONNX_DIR)  # everything export_folder writes
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Result files a training run leaves in its output_dir (HF examples' names), read by the CLI when present.
RUN_RESULT_FILES = (ALL_RESULTS_FILE, TRAIN_RESULTS_FILE, EVAL_RESULTS_FILE)
# What Trainer leaves in a run folder or checkpoint that has not finished (train.py writes all_results.json last).
TRAINING_STATE_FILES = ("trainer_state.json", "optimizer.pt")
PROG = "ppt-publish"


class HubPushError(CommandFailure):
    """The upload failed (no token, offline, network, permissions); the local folder is untouched."""


# ----------------------------------------------------------------------------------------------------------------
# Stock layout
# ----------------------------------------------------------------------------------------------------------------


def _ppt_settings(config) -> dict[str, Any]:
    return {name: getattr(config, name) for name in PPT_SETTINGS}


# The remote code the exported config points the Auto classes at (files shipped beside it: CODE_FILES).
AUTO_MAP = {
    "AutoConfig": "configuration_ppt_deit.PPTDeiTConfig",
    "AutoModel": "modeling_ppt_deit.PPTDeiTModel",
    "AutoModelForImageClassification": "modeling_ppt_deit.PPTDeiTForImageClassification",
}


def stock_export_model(model):
    """The stock classifier with `model`'s weights, on the CPU, whose config also carries the PPT settings and
    `auto_map`: its `save_pretrained` writes the exported config and weights."""
    return build_stock_model(model, device="cpu", **_ppt_settings(model.config), auto_map=dict(AUTO_MAP))


# ----------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------


def _check_model(model) -> None:
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "ppt_deit" or not hasattr(model, "classifier"):
        raise ValueError(
            f"export_folder needs a PPTDeiTForImageClassification, got {type(model).__name__}"
            + (f" with model_type={config.model_type!r}" if config is not None else "")
        )
    if config.num_labels < 1 or not isinstance(model.classifier, torch.nn.Linear):
        raise ValueError(f"the model has no classification head (num_labels={config.num_labels}); nothing to export")


def _code_dir(model) -> Path:
    """The directory of the code the model runs (the installed package, or a remote-code module cache)."""
    directory = Path(inspect.getfile(type(model))).parent
    missing = [name for name in CODE_FILES if not (directory / name).is_file()]
    if missing:
        raise ValueError(f"the model's code directory {directory} lacks {missing}; cannot ship its code")
    return directory


def _is_previous_export(folder: Path) -> bool:
    """Only a folder that holds what an export writes and nothing else may be replaced. A model folder with more in
    it (a training run's output, a clone with `.git`) may hold work that replacing it would destroy."""
    names = {entry.name for entry in folder.iterdir()}
    if ONNX_DIR in names:
        onnx_dir = folder / ONNX_DIR
        if not onnx_dir.is_dir() or onnx_dir.is_symlink() or not {e.name for e in onnx_dir.iterdir()} <= set(ONNX_FILES):
            return False
    if EXAMPLES_DIR in names:  # the example images an export stores, and nothing else
        examples = folder / EXAMPLES_DIR
        if not examples.is_dir() or examples.is_symlink() or any(
                entry.suffix != ".png" or not entry.is_file() for entry in examples.iterdir()):
            return False
    return set(REQUIRED_FILES) <= names <= {*EXPORT_FILES, EXAMPLES_DIR}


def _check_output_dir(output_dir) -> Path:
    """`output_dir` with a symlink followed, where an export may be written: new, empty, or a previous export that
    nobody edited since (`ppt_tools.core.outputs`)."""
    # First: an export this tool wrote names the files changed or added since (the layout check would not).
    refuse_edited(os.path.realpath(output_dir), "output_dir", "keep a copy, then pass another --output_dir (or "
                  "delete the folder)", manifest=RESULTS_FILE)
    return check_replaceable(
        output_dir, _is_previous_export, "output_dir",
        f"a previous export (which holds only {list(EXPORT_FILES)}, with {list(ONNX_FILES)} in {ONNX_DIR}/ and .png "
        f"images in {EXAMPLES_DIR}/)", "an export replaces the folder's content")


def previous_export_contents(folder: Path) -> dict[str, Any]:
    """The results.json of a previous export in `folder` ({} when there is none or it cannot be read)."""
    try:
        content = json.loads((Path(folder) / RESULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) and is_export_results(content) else {}


def _check_nothing_dropped(output_dir: Path, results: Mapping[str, Any], training_info: Mapping[str, Any],
                           allow_fewer_results: bool = False) -> None:
    """Refuse to replace a previous export whose results (or training information) hold entries this export lacks;
    with `allow_fewer_results`, name them on stderr and go on."""
    previous = previous_export_contents(output_dir)
    if not previous:
        return
    lost = sorted(set(previous["results"]) - set(results))
    lost_info = sorted(set(previous.get("training_info") or {}) - set(training_info) - {"repo_id"})
    if not (lost or lost_info):
        return
    what = ", ".join(filter(None, [f"results {lost}" if lost else "", f"training info {lost_info}" if lost_info
                                   else ""]))
    if allow_fewer_results:
        print(f"{PROG}: note: replacing the export in {str(output_dir)!r} drops its {what}", file=sys.stderr)
        return
    raise ValueError(
        f"output_dir {str(output_dir)!r} holds an export with {what} that this export would drop: pass the "
        "result files that hold them (--results), or allow_fewer_results=True (--allow_fewer_results) to replace "
        "them anyway"
    )


def _verify_export(folder: Path, model) -> None:
    """Reload the folder with our class and check weights and PPT settings are exactly the model's."""
    reloaded, info = PPTDeiTForImageClassification.from_pretrained(folder, output_loading_info=True)
    problems = {kind: keys for kind, keys in info.items() if keys and kind in ("missing_keys", "unexpected_keys")}
    if problems:
        raise RuntimeError(f"the exported folder does not load back into PPT-DeiT: {problems}")
    ours = model.state_dict()
    for key, tensor in reloaded.state_dict().items():
        if not torch.equal(tensor, ours[key].detach().cpu()):
            raise RuntimeError(f"exported weight {key} differs from the model's")
    if _ppt_settings(reloaded.config) != _ppt_settings(model.config):
        raise RuntimeError(
            f"PPT settings do not round-trip: {_ppt_settings(reloaded.config)} != {_ppt_settings(model.config)}"
        )


def export_folder(
    model,
    image_processor,
    output_dir,
    results: Mapping[str, Any] | list | tuple | None = None,
    training_info: Mapping[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    verify: bool = True,
    allow_fewer_results: bool = False,
    example_images=None,
    onnx: bool = False,
    onnx_opset: int | None = None,
    allow_noisy_timings: bool = False,
) -> Path:
    """Write the folder that `push_folder` uploads (contents in the module docstring) and return its path.

    Args:
        model (`PPTDeiTForImageClassification`): the trained model; its current PPT settings are exported.
        image_processor: its image processor (`save_pretrained` writes `preprocessor_config.json`).
        output_dir: the folder to write. It must be new, empty, or a previous export, whose content is replaced.
            The folder is built next to it and moved in place at the end: an error leaves nothing half-written. A
            symlink is followed.
        results: measured results, a dict with the keys documented in `ppt_tools.export.card` (e.g. `eval_accuracy`,
            `baseline_accuracy`, `macs`, `throughput`, `hardware`), or a list of JSON result files to merge.
        training_info: how the model was trained (`dataset`, `base_model`, `epochs`, ...: see `ppt_tools.export.card`).
        repo_id: target repo, for the usage code in the card (default `training_info["repo_id"]`).
        verify: reload the written folder and check weights and settings are exactly the model's.
        allow_fewer_results: replace a previous export in `output_dir` even though its results (or training info)
            hold entries that this export lacks; without it that raises `ValueError` naming them.
        example_images: `(title, PIL image)` pairs from the model's evaluation set, stored as `examples/*.png`; the
            card's widget offers them (see `ppt_tools.export.card.build_model_card`'s `example_files`).
        onnx: also write `onnx/model.onnx` (+ `onnx/config.json`, `onnx/preprocessor_config.json`) for ONNX Runtime
            and Optimum, checked against PyTorch within 1e-4 (needs `pip install ".[onnx]"`).
        onnx_opset: its opset (default `ppt_tools.export.onnx.DEFAULT_OPSET`).
        allow_noisy_timings: put a noisy throughput and speed-up (see `ppt_tools.core.timing`) into the card, marked
            noisy; by default the card leaves them out and says why.
    """
    _check_model(model)
    if image_processor is None or not hasattr(image_processor, "save_pretrained"):
        raise ValueError(
            f"image_processor must be an image processor with save_pretrained, got {type(image_processor).__name__}"
        )
    output_dir = _check_output_dir(output_dir)
    if isinstance(results, (list, tuple)):
        normalized, raw = load_results(results)
        sources = list(raw)
    else:
        normalized, raw = normalize_results(results), ({"results": dict(results)} if results else {})
        sources = []
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    if "params" in normalized and int(normalized["params"]) != num_parameters:
        raise ValueError(
            f"the results give params={int(normalized['params'])} for PPT, but this model has {num_parameters} "
            "parameters: they were measured on another model"
        )
    training_info = dict(training_info or {})
    _check_nothing_dropped(output_dir, normalized, training_info, allow_fewer_results)
    code_dir = _code_dir(model)
    if onnx:
        onnx_opset = _check_onnx_export(onnx_opset)
    elif onnx_opset is not None:
        raise ValueError("onnx_opset is given but onnx is off: pass onnx=True (--onnx) to write onnx/model.onnx")

    with OutputTarget(output_dir, kind=FOLDER, manifest=RESULTS_FILE) as output, output.staging() as staging:
        _check_output_dir(output_dir)  # again, under the lock: nobody edited or wrote it since the first check
        stock_model = stock_export_model(model)
        stock_model.save_pretrained(staging)
        for name in CODE_FILES:
            shutil.copyfile(code_dir / name, staging / name)
        image_processor.save_pretrained(staging)
        example_files = []
        if example_images:
            names = save_examples(staging / EXAMPLES_DIR, list(example_images))
            example_files = [(title, f"{EXAMPLES_DIR}/{name}") for (title, _), name in zip(example_images, names)]
        card = build_model_card(
            model.config,
            normalized,
            training_info,
            stock_class=type(stock_model).__name__,
            num_parameters=sum(p.numel() for p in stock_model.parameters()),
            result_sources=sources,
            repo_id=repo_id,
            example_files=example_files,
            onnx_opset=onnx_opset if onnx else None,
            allow_noisy_timings=allow_noisy_timings,
        )
        card.save(staging / "README.md")
        if verify:
            _verify_export(staging, model)
        if onnx:
            _write_onnx(model, staging, onnx_opset)
        # last, with what every other file holds (the export's manifest): a later export finds out whether someone
        # edited them since
        write_json(staging / RESULTS_FILE, {"results": normalized, "raw": raw, "training_info": training_info,
                                            "files": file_digests(staging, exclude=[RESULTS_FILE])})
    return output_dir


def _check_onnx_export(opset) -> int:
    """The opset to export at; a clear error before any work when the optional ONNX packages are missing."""
    check_onnx_packages("the ONNX export")
    return check_opset(DEFAULT_OPSET if opset is None else opset)


ONNX_TOLERANCE = 1e-4


def _write_onnx(model, staging: Path, opset: int) -> None:
    """`onnx/model.onnx` (exported from a CPU fp32 copy of `model`), its plain config and the image processor's
    config, then the file run in ONNX Runtime against PyTorch on two images (one alone, to use the dynamic batch)."""
    cpu_model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    folder = staging / ONNX_DIR
    folder.mkdir()
    path = export_onnx(cpu_model, folder / "model.onnx", opset)
    write_json(folder / "config.json", onnx_runtime_config(cpu_model.config))
    shutil.copyfile(staging / "preprocessor_config.json", folder / "preprocessor_config.json")
    size = cpu_model.config.image_size
    pixel_values = torch.randn(2, cpu_model.config.num_channels, size, size, generator=torch.Generator().manual_seed(0))
    session = onnx_session(path)
    worst = max(max_difference(cpu_model, session, batch) for batch in (pixel_values, pixel_values[:1]))
    if not worst <= ONNX_TOLERANCE:
        raise OnnxMismatchError(f"the exported onnx/model.onnx differs from PyTorch by {worst:.2e} "
                                f"(> {ONNX_TOLERANCE})")


# ----------------------------------------------------------------------------------------------------------------
# Upload
# ----------------------------------------------------------------------------------------------------------------


def check_export_folder(folder) -> Path:
    """Raise `ValueError` unless `folder` is a complete export with no pickle files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} does not exist")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"folder {str(folder)!r} is not a complete export: missing {missing} (use export_folder)")
    if (folder / ONNX_DIR).exists():
        missing = [f"{ONNX_DIR}/{name}" for name in ONNX_FILES if not (folder / ONNX_DIR / name).is_file()]
        if missing:
            raise ValueError(f"folder {str(folder)!r} has an incomplete {ONNX_DIR}/ folder: missing {missing}")
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"folder {str(folder)!r} holds pickle files {pickles}: only safetensors are uploaded")
    return folder


def check_repo_id(repo_id) -> None:
    """Raise `ValueError` unless `repo_id` is a valid Hub model id, 'user-or-org/name' or 'name'."""
    try:
        validate_repo_id(repo_id if isinstance(repo_id, str) else "")
    except ValueError as error:  # HFValidationError
        raise ValueError(
            f"repo_id must look like 'user-or-org/name' (or 'name' for your namespace), got {repo_id!r}: {error}"
        ) from None


def _retry_hint(folder: Path, repo_id: str) -> str:
    return (
        f"The exported folder {folder} was not changed; upload it later with "
        f"`ppt-publish --model_name_or_path {folder} --hub_model_id {repo_id} --upload_only`."
    )


def push_folder(
    folder,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload an exported folder to the Hub model repo `repo_id` (created if needed) and return the commit URL.

    The token is `token`, else the usual places (`HF_TOKEN`, `hf auth login`). After the upload, the card's usage
    code is pinned to the uploaded commit in a second, README-only commit. The local folder is never modified.

    Raises:
        ValueError: the folder is not a complete export (before anything is sent).
        HubPushError: no token, offline mode, network or permission errors, with what to do next.
    """
    folder = check_export_folder(folder)
    check_repo_id(repo_id)
    token = token or get_token()
    if not token:
        raise HubPushError(
            "No Hugging Face token found: pass token=..., set the HF_TOKEN environment variable or run "
            "`hf auth login`. " + _retry_hint(folder, repo_id)
        )
    if constants.HF_HUB_OFFLINE:
        raise HubPushError("HF_HUB_OFFLINE is set, so nothing can be uploaded. " + _retry_hint(folder, repo_id))

    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            revision=revision,
            commit_message=commit_message or "Upload PPT-DeiT model (safetensors, remote code, model card)",
        )
        pinned_card = pin_usage((folder / "README.md").read_text(), repo_id, commit.oid)
        pin_commit = api.upload_file(
            path_or_fileobj=pinned_card.encode(),
            path_in_repo="README.md",
            repo_id=repo_id,
            revision=revision,
            commit_message=f"Pin the usage code to revision {commit.oid[:10]}",
            parent_commit=commit.oid,
        )
    except OfflineModeIsEnabled as error:
        raise HubPushError(f"Offline mode is enabled ({error}). " + _retry_hint(folder, repo_id)) from error
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        reason = (
            "the token was rejected or has no write access to this repo"
            if status in (401, 403)
            else f"the Hub answered with an error (HTTP {status})"
        )
        raise HubPushError(f"Upload to {repo_id} failed: {reason}: {error}. " + _retry_hint(folder, repo_id)) from error
    except Exception as error:  # connection refused, DNS, timeouts: the transport's own exception types
        raise HubPushError(
            f"Could not reach the Hub at {constants.ENDPOINT} to upload {repo_id} "
            f"({type(error).__name__}: {error}). Check the network (and HF_ENDPOINT). " + _retry_hint(folder, repo_id)
        ) from error
    return pin_commit.commit_url


def push_space(folder, space_id: str, token: str | None = None, private: bool = False,
               commit_message: str | None = None) -> str:
    """Upload a Space folder (`ppt_tools.export.space.write_space_folder`) to the Gradio Space `space_id` (created if
    needed) and return the commit URL. Failures raise `HubPushError` with what to do next; the folder is unchanged."""
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "app.py").is_file():
        raise ValueError(f"space folder {str(folder)!r} holds no app.py: write it with --space first")
    check_repo_id(space_id)
    token = token or get_token()
    hint = f"The Space folder {folder} was not changed; upload it later with the same command."
    if not token:
        raise HubPushError("No Hugging Face token found: pass --token, set HF_TOKEN or run `hf auth login`. " + hint)
    if constants.HF_HUB_OFFLINE:
        raise HubPushError("HF_HUB_OFFLINE is set, so nothing can be uploaded. " + hint)
    api = HfApi(token=token)
    try:
        space_id = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private,
                                   exist_ok=True).repo_id
        commit = api.upload_folder(folder_path=folder, repo_id=space_id, repo_type="space",
                                   commit_message=commit_message or "PPT demo Space (Gradio)",
                                   ignore_patterns=[MANIFEST_FILE])  # what the tool wrote, for its edit check
    except OfflineModeIsEnabled as error:
        raise HubPushError(f"Offline mode is enabled ({error}). " + hint) from error
    except HfHubHTTPError as error:
        raise HubPushError(f"Upload of the Space {space_id} failed: {error}. " + hint) from error
    except Exception as error:  # connection refused, DNS, timeouts
        raise HubPushError(f"Could not reach the Hub at {constants.ENDPOINT} to upload the Space {space_id} "
                           f"({type(error).__name__}: {error}). " + hint) from error
    return commit.commit_url


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export a PPT-DeiT checkpoint folder as a Hub repo (stock-loadable weights, remote code, model "
        "card with measured results) and upload it.",
        allow_abbrev=False,  # `--result x.json` is an error, never silently `--results`
    )
    parser.add_argument("--model_name_or_path", type=Path, required=True, help="a folder written by save_pretrained (e.g. train.py's "
                        "output_dir, or a previous export), or with --upload_only an exported folder")
    parser.add_argument("--hub_model_id", required=True, help="target Hub repo, 'user-or-org/name'")
    parser.add_argument("--output_dir", type=Path, default=None,
                        help="where to write the export (default: outputs/hub/<repo name>)")
    parser.add_argument("--results", type=Path, nargs="*", default=None,
                        help="result JSON files (default: all_results.json, train_results.json, eval_results.json "
                        "found in --model_name_or_path, or the results.json of an export); later files win on the same key")
    parser.add_argument("--training_info", type=Path, default=None,
                        help=f"JSON with dataset, base_model, epochs, ... (default: <model_name_or_path>/{TRAINING_INFO_FILE} "
                        "if present, or what an export recorded)")
    parser.add_argument("--dataset_name", default=None, help="Hub dataset id the model was trained/evaluated on")
    parser.add_argument("--base_model", default=None, help="Hub id of the fine-tuned checkpoint")
    parser.add_argument("--dry_run", action="store_true", help="write the folder, do not upload")
    parser.add_argument("--upload_only", action="store_true", help="--model_name_or_path is an export: upload it as is")
    parser.add_argument("--allow_unfinished", action="store_true",
                        help="export a training run that has not finished (no all_results.json) or a checkpoint-N")
    parser.add_argument("--allow_noisy_timings", action="store_true",
                        help="put noisy throughput and speed-up figures into the card (marked noisy); without it the "
                             "card leaves them out")
    parser.add_argument("--allow_fewer_results", action="store_true",
                        help="replace a previous export in output_dir although it holds results this export lacks")
    parser.add_argument("--space", nargs="?", const="", default=None, metavar="SPACE_ID",
                        help="also write a Gradio Space that runs PPT on an image with this model (and upload it "
                        "after the model unless --dry_run); SPACE_ID defaults to <hub_model_id>-demo")
    parser.add_argument("--space_dir", type=Path, default=None,
                        help="where to write the Space folder (default: outputs/spaces/<space name>)")
    parser.add_argument("--onnx", action="store_true",
                        help="also write onnx/model.onnx (compression in the graph, dynamic batch) + the plain config "
                        "Optimum's ORTModelForImageClassification loads with subfolder='onnx' (needs pip install "
                        "\".[onnx]\")")
    parser.add_argument("--onnx_opset", type=int, default=None, help="opset of onnx/model.onnx (default 18)")
    parser.add_argument("--hub_private_repo", action="store_true", help="create the repo (and Space) private")
    parser.add_argument("--hub_revision", default=None, help="branch to upload to (default: main)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--hub_token", default=None, help="Hub token (default: HF_TOKEN or the `hf auth login` token)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """The command line; a failure is one `ppt-publish: error:` line, with exit code 2 for bad input and 1 for an
    upload that failed (`ppt_tools.core.arguments.run_command`). The export folder is replaced only once the new
    one is complete."""
    return run_command(PROG, _publish, _parse_args(argv))


def _publish(args) -> int:
    check_repo_id(args.hub_model_id)  # also with --dry_run: the card's usage code names the repo
    space_id, space_dir = _space_target(args)  # checked before any work
    if args.upload_only:
        folder = check_export_folder(args.model_name_or_path)
    else:
        folder = _export_checkpoint(args)
        print(f"Exported {folder}")
    url = None
    if not args.dry_run:
        url = push_folder(folder, args.hub_model_id, token=args.hub_token, private=args.hub_private_repo,
                          revision=args.hub_revision, commit_message=args.commit_message)
    if space_dir is not None:
        # The Space serves the model at the commit just uploaded (the end of its URL), else the revision given.
        model_revision = url.rsplit("/commit/", 1)[-1] if url else args.hub_revision
        num_labels = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("id2label")
        write_space_folder(space_dir, args.hub_model_id, examples=folder / EXAMPLES_DIR,
                           num_labels=len(num_labels) if isinstance(num_labels, dict) else None,
                           model_revision=model_revision)
        pinned = (f"serves {args.hub_model_id} at revision {model_revision}" if model_revision else
                  f"unpinned (nothing uploaded, no commit to pin): it serves the latest {args.hub_model_id}")
        print(f"Wrote the Space folder {space_dir}, {pinned} (try it: PPT_DEMO_CHECKPOINT={folder} python "
              f"{space_dir}/app.py)")
    if args.dry_run:
        print("Dry run: nothing uploaded.")
        return 0
    if space_dir is not None:
        print(f"Uploaded: {url}")
        url = push_space(space_dir, space_id, token=args.hub_token, private=args.hub_private_repo)
    print(f"Uploaded: {url}")
    return 0


def _export_dir(args) -> Path:
    """Where the export goes: --output_dir, else outputs/hub/<repo name>; with --upload_only, the folder given."""
    if args.upload_only:
        return args.model_name_or_path
    return args.output_dir or Path("outputs") / "hub" / args.hub_model_id.split("/")[-1]


def _space_target(args) -> tuple[str | None, Path | None]:
    """The Space's repo id and folder for --space (None, None without it); a bad id, a folder this tool did not
    write, or one that holds or lies in the export folder is refused here, before any export."""
    if args.space is None:
        return None, None
    space_id = args.space or f"{args.hub_model_id}-demo"
    try:
        validate_repo_id(space_id)
    except ValueError as error:
        raise ValueError(f"--space must be a Space id like 'user-or-org/name', got {space_id!r}: {error}") from None
    space_dir = check_space_dir(args.space_dir or Path("outputs") / "spaces" / space_id.split("/")[-1])
    export_dir = Path(os.path.realpath(_export_dir(args)))
    space_real = Path(os.path.realpath(space_dir))
    if space_real == export_dir or export_dir in space_real.parents or space_real in export_dir.parents:
        raise ValueError(f"--space_dir {str(space_dir)!r} and the export folder {str(_export_dir(args))!r} overlap; "
                         "the Space and the model repo need folders of their own")
    # A Space folder another live process is writing is refused now, not after the export (write_space_folder takes
    # the lock again to write).
    TargetLock(resolve_target(space_dir), PROG).acquire().release()
    return space_id, space_dir


def unfinished_run_problem(folder: Path) -> str | None:
    """What shows that `folder` is a training run (or one of its checkpoints) that has not finished: Trainer's
    state files without the all_results.json that train.py writes last. None for a finished run, an export, or a
    folder written by save_pretrained alone."""
    if (folder / ALL_RESULTS_FILE).is_file():
        return None
    is_checkpoint = re.fullmatch(r"checkpoint-\d+", folder.name) is not None
    state_files = [name for name in TRAINING_STATE_FILES if (folder / name).is_file()]
    if not is_checkpoint and not state_files:
        return None
    progress = ""
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        progress = f", stopped at step {int(state['global_step'])} of {int(state['max_steps'])}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    what = "a mid-training checkpoint" if is_checkpoint else "a training run that has not finished"
    return f"{str(folder)!r} is {what} (no {ALL_RESULTS_FILE}, which train.py writes last{progress})"


def _export_checkpoint(args) -> Path:
    checkpoint = args.model_name_or_path
    if not (checkpoint / "config.json").is_file():
        runs = sorted(entry.name for entry in checkpoint.iterdir() if re.fullmatch(r"checkpoint-\d+", entry.name)) \
            if checkpoint.is_dir() else []
        hint = (f"; it holds {', '.join(runs[-3:])}: an unfinished run, resume it with train.py "
                f"--resume_from_checkpoint True --output_dir {checkpoint}") if runs else ""
        raise ValueError(f"{str(checkpoint)!r} is not a checkpoint folder (no config.json){hint}")
    unfinished = unfinished_run_problem(checkpoint)
    if unfinished is not None and not args.allow_unfinished:
        raise ValueError(
            f"{unfinished}: its weights are not the trained model, and the card would have no results. Finish the run "
            f"(train.py --resume_from_checkpoint True), or pass --allow_unfinished to export it anyway"
        )
    if not (checkpoint / "preprocessor_config.json").is_file():
        raise ValueError(
            f"{str(checkpoint)!r} has no preprocessor_config.json: save the image processor there "
            "(image_processor.save_pretrained(<model_name_or_path>)) so the exported repo preprocesses images as in training"
        )
    previous = previous_export_contents(checkpoint)  # re-exporting an export keeps what it recorded
    result_files = args.results
    if result_files is None:
        result_files = [checkpoint / name for name in RUN_RESULT_FILES if (checkpoint / name).is_file()]
        if not result_files and previous:
            result_files = [checkpoint / RESULTS_FILE]
    info_path = args.training_info or (checkpoint / TRAINING_INFO_FILE)
    if args.training_info or info_path.is_file():
        training_info = read_json_object(info_path, "training_info file")
    else:
        training_info = dict(previous.get("training_info") or {})
    for key, option in (("dataset", "dataset_name"), ("base_model", "base_model")):
        if getattr(args, option):
            training_info[key] = getattr(args, option)
    training_info["repo_id"] = args.hub_model_id
    output_dir = _export_dir(args)
    output_dir = _check_output_dir(output_dir)
    if args.onnx:
        _check_onnx_export(args.onnx_opset)  # before loading the model
    elif args.onnx_opset is not None:
        raise ValueError("--onnx_opset belongs to --onnx")
    normalized, _ = load_results(result_files)  # validate before loading the model
    noise = noisy_timings(normalized)
    if noise and not args.allow_noisy_timings:
        print(f"{PROG}: note: noisy timings are left out of the card ({'; '.join(noise)}); --allow_noisy_timings "
              "puts them in, marked noisy", file=sys.stderr)
    if not args.allow_fewer_results:  # refused before loading the model; with the flag export_folder names them
        _check_nothing_dropped(output_dir, normalized, training_info)
    model = load_pretrained(str(checkpoint), f"checkpoint {str(checkpoint)!r}").eval()
    image_processor = AutoImageProcessor.from_pretrained(checkpoint)
    return export_folder(model, image_processor, output_dir, results=list(result_files), training_info=training_info,
                         allow_fewer_results=args.allow_fewer_results,
                         example_images=_example_images(checkpoint, training_info), onnx=args.onnx,
                         onnx_opset=args.onnx_opset, allow_noisy_timings=args.allow_noisy_timings)


def _example_images(checkpoint: Path, training_info: dict) -> list:
    """The widget's examples: images of the evaluation split of the dataset the model was trained on, else those a
    previous export in `checkpoint` stored; none when neither can be had (said on stderr)."""
    try:
        examples = evaluation_examples(training_info)
    except Exception as error:  # offline, a dataset not found, no image column: the export goes on without them
        print(f"{PROG}: note: no example images from the evaluation set of {training_info.get('dataset')!r} "
              f"({type(error).__name__}: {one_line(error)})", file=sys.stderr)
        examples = []
    stored = checkpoint / EXAMPLES_DIR
    if not examples and stored.is_dir():
        from PIL import Image

        for path in sorted(stored.glob("*.png")):
            with Image.open(path) as image:
                examples.append((path.stem.split("_", 1)[-1], image.convert("RGB")))
    return examples


if __name__ == "__main__":
    sys.exit(main())
