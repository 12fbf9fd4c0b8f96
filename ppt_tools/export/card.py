# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The Hub model card of an exported PPT-DeiT model: measured results in, `huggingface_hub.ModelCard` out.

Numbers in the card come only from result files of real runs (the training run's `all_results.json` /
`eval_results.json`, the benchmark's JSON). A value that no file provides is printed as "not measured"; nothing is
estimated or filled in. The model's own parameter count and token schedule are read from the model itself.

Results: keys read (after `normalize_results`)
----------------------------------------------
Each key may be given under one of its aliases (left: the name used in the card; right: accepted aliases). The same
keys prefixed with `baseline_` (e.g. `baseline_accuracy`, `baseline_eval_accuracy`) describe the uncompressed
baseline; train.py's `eval_baseline_<metric>` keys are read the same way, and its `ppt_gmacs` as `gmacs`. A file may
instead hold `{"ppt": {...}, "baseline": {...}}` (or `"compressed"` for `"ppt"`): the keys of `"baseline"` get the
`baseline_` prefix. `benchmark.py`'s JSON report is read as it is written (its `models` and `machine`).

    accuracy              top-1 accuracy, fraction in [0, 1] or percent  accuracy, eval_accuracy, top1, top1_accuracy,
                                                                       eval_top1_accuracy, test_accuracy
    top5_accuracy         top-5 accuracy, same convention              top5_accuracy, eval_top5_accuracy, top5,
                                                                       eval_top5, accuracy_top5
    eval_loss             evaluation loss                              eval_loss
    eval_samples          number of evaluated images                   eval_samples, num_eval_samples
    params                parameter count                              params, num_parameters, num_params, parameters
    macs                  multiply-accumulates per image (count)       macs; gmacs (x 1e9)
    throughput            images per second                            throughput, images_per_second,
                                                                       throughput_images_per_second
    throughput_batch_size batch size of the throughput measurement     throughput_batch_size, batch_size
    hardware              device the throughput was measured on (str)  hardware, device_name, device
    threads               CPU threads of the throughput measurement    threads, torch_threads
    dtype                 dtype of the throughput measurement (str)    dtype
    throughput_noise      why the throughput is noisy (str; benchmark  throughput_noise
                          reports give it): the card leaves a noisy
                          throughput and speed-up out unless
                          `allow_noisy_timings`
    epoch                 epochs trained (Trainer's all_results.json)  epoch
    eval_split            split the accuracy was measured on (str)     eval_split

Other keys are kept in `results.json` under "raw" and otherwise ignored.

training_info: keys read (all optional; missing ones print as "not recorded")
------------------------------------------------------------------------------
    dataset          Hub dataset id (card metadata `datasets`, model-index dataset type), e.g. "imagenet-1k"
    dataset_name     readable dataset name (default: `dataset`)
    dataset_config   dataset configuration name
    eval_split       split the accuracy was measured on (default: the results' `eval_split`, which train.py writes)
    base_model       Hub id of the checkpoint that was fine-tuned (card metadata `base_model`)
    repo_id          target Hub repo "user/name" (usage code; a placeholder otherwise)
    model_name       title of the card (default: the repo name)
    epochs (or num_train_epochs), learning_rate, lr_scheduler_type, batch_size, per_device_train_batch_size,
    label_smoothing_factor, optimizer, weight_decay, seed, recipe (free text; or preset), training_hardware,
    training_time    printed in the training table (epochs default to the results' `epoch`)
    trained_with_compression  True if fine-tuned with PPT on (the card's limitations then say so)
    license          default "apache-2.0"
    tags             extra tags
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ppt_tools.core.results import read_json_object


TEMPLATE_PATH = resources.files("ppt_tools.templates").joinpath("template.md")  # model_card/ in a checkout
NOT_MEASURED = "not measured"
NOT_RECORDED = "not recorded"
UNPINNED_REVISION = "main"
EXAMPLE_IMAGE_URL = "http://images.cocodataset.org/val2017/000000039769.jpg"
# The images the Hub's default image-classification widget uses: ImageNet photos, so the card offers them only to a
# 1000-class (ImageNet) model; another model's card shows images of its own evaluation set stored in its repo
# (`example_files`), or none.
WIDGET_EXAMPLES = [
    {"src": "https://huggingface.co/datasets/mishig/sample_images/resolve/main/tiger.jpg", "example_title": "Tiger"},
    {"src": "https://huggingface.co/datasets/mishig/sample_images/resolve/main/teapot.jpg", "example_title": "Teapot"},
    {"src": "https://huggingface.co/datasets/mishig/sample_images/resolve/main/palace.jpg", "example_title": "Palace"},
]
BASE_TAGS = ["vision", "image-classification", "token-pruning", "token-merging", "ppt", "deit"]

# card name -> accepted names in result files (first match wins, in this order)
RESULT_ALIASES: dict[str, tuple[str, ...]] = {
    "accuracy": ("accuracy", "eval_accuracy", "top1", "top1_accuracy", "eval_top1_accuracy", "test_accuracy"),
    "top5_accuracy": ("top5_accuracy", "eval_top5_accuracy", "top5", "eval_top5", "accuracy_top5"),
    "eval_loss": ("eval_loss",),
    "eval_samples": ("eval_samples", "num_eval_samples"),
    "params": ("params", "num_parameters", "num_params", "parameters"),
    "macs": ("macs",),
    "throughput": ("throughput", "images_per_second", "throughput_images_per_second"),
    "throughput_batch_size": ("throughput_batch_size", "batch_size"),
    "hardware": ("hardware", "device_name", "device"),
    "threads": ("threads", "torch_threads"),
    "dtype": ("dtype",),
    "throughput_noise": ("throughput_noise",),
    "epoch": ("epoch",),
    "eval_split": ("eval_split",),
}
TEXT_KEYS = {"hardware", "eval_split", "dtype", "throughput_noise"}
BASELINE_KEYS = ("accuracy", "top5_accuracy", "eval_loss", "params", "macs", "throughput", "throughput_noise")
NESTED_PPT = ("ppt", "compressed")
NESTED_BASELINE = ("baseline",)
TRAIN_BASELINE_PREFIX = "eval_baseline_"


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------


def _number(key: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"result {key!r} must be a finite number >= 0, got {value!r}")
    return value


def _from_benchmark_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """`benchmark.py`'s JSON (`{"models": {"ppt": {...}, "baseline": {...}, ...}, "machine": {...}}`, each model
    with `parameters`, `macs`, `throughput: {median, batch_size, noise}` and, with --dataset, `accuracy: {top1,
    top5}`) -> the `{"ppt": ..., "baseline": ...}` form."""

    def card_keys(entry: Mapping[str, Any]) -> dict[str, Any]:
        throughput = entry.get("throughput") or {}
        accuracy = entry.get("accuracy") or {}
        keys = {
            "params": entry.get("parameters"),
            "macs": entry.get("macs"),
            "throughput": throughput.get("median"),
            "throughput_noise": "; ".join(throughput.get("noise") or []) or None,
            "accuracy": accuracy.get("top1"),
            "top5_accuracy": accuracy.get("top5"),
        }
        return {key: value for key, value in keys.items() if value is not None}

    models = report["models"]
    converted = {name: card_keys(models[name]) for name in ("ppt", "baseline") if isinstance(models.get(name), Mapping)}
    throughput = (models.get("ppt") or {}).get("throughput") or {}
    if "batch_size" in throughput:
        converted["throughput_batch_size"] = throughput["batch_size"]
    machine = report.get("machine") or {}
    if machine:
        converted["hardware"] = machine.get("gpu") or machine.get("cpu", "CPU")
        if machine.get("torch_threads"):
            converted["threads"] = machine["torch_threads"]
    if report.get("dtype"):
        converted["dtype"] = report["dtype"]
    return converted


def _flatten(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`{"ppt": {...}, "baseline": {...}}` -> flat keys, baseline ones prefixed with `baseline_`."""
    if isinstance(raw.get("models"), Mapping) and "ppt" in raw["models"]:
        raw = _from_benchmark_report(raw)
    flat = {key: value for key, value in raw.items() if not isinstance(value, Mapping)}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            if key in NESTED_PPT:
                flat.update({k: v for k, v in value.items() if not isinstance(v, Mapping)})
            elif key in NESTED_BASELINE:
                flat.update({f"baseline_{k}": v for k, v in value.items() if not isinstance(v, Mapping)})
    # train.py's all_results.json: `eval_baseline_<metric>` is the same weights with compression off, and
    # `ppt_gmacs` the compressed model's cost.
    for key, value in list(flat.items()):
        if key.startswith(TRAIN_BASELINE_PREFIX):
            flat.setdefault("baseline_eval_" + key[len(TRAIN_BASELINE_PREFIX):], value)
    if "ppt_gmacs" in flat:
        flat.setdefault("gmacs", flat["ppt_gmacs"])
    return flat


def _pick(flat: Mapping[str, Any], name: str, prefix: str = "") -> tuple[bool, Any]:
    for alias in RESULT_ALIASES[name]:
        if prefix + alias in flat:
            return True, flat[prefix + alias]
    if name == "macs" and prefix + "gmacs" in flat:
        return True, _number(prefix + "gmacs", flat[prefix + "gmacs"]) * 1e9
    return False, None


def normalize_results(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Map a result dict with any of the documented aliases onto the card's names (see the module docstring).

    Raises `ValueError` naming the key when a value has the wrong type (e.g. a string accuracy).
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"results must be a dict (or a list of JSON files), got {type(raw).__name__}")
    flat = _flatten(raw)
    results: dict[str, Any] = {}
    for name in RESULT_ALIASES:
        found, value = _pick(flat, name)
        if found and value is not None:
            results[name] = str(value) if name in TEXT_KEYS else _number(name, value)
    for name in BASELINE_KEYS:
        found, value = _pick(flat, name, prefix="baseline_")
        if found and value is not None:
            results[f"baseline_{name}"] = str(value) if name in TEXT_KEYS else _number(f"baseline_{name}", value)
    return results


def noisy_timings(results: Mapping[str, Any]) -> list[str]:
    """Why the throughput figures of normalized `results` are noisy, one line per model (empty: none is)."""
    return [f"{label} throughput: {results[prefix + 'throughput_noise']}"
            for label, prefix in (("PPT", ""), ("baseline", "baseline_"))
            if results.get(prefix + "throughput") is not None and results.get(prefix + "throughput_noise")]


def is_export_results(content: Mapping[str, Any]) -> bool:
    """True for the `results.json` of an export (`{"results": normalized, "raw": {file name: content}, ...}`)."""
    return isinstance(content.get("results"), Mapping) and isinstance(content.get("raw"), Mapping)


def load_results(paths) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and merge result JSON files (later files win on the same key). An export's own `results.json` counts
    as the files it was made from, so that re-exporting an export keeps its numbers.

    Returns `(normalized, raw)` where `raw` maps each file name to its content.
    """
    merged: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        content = read_json_object(path, "results file")
        if is_export_results(content):
            raw.update(content["raw"])
            merged.update(normalize_results(content["results"]))
        else:
            raw[path.name] = content
            merged.update(normalize_results(content))
    return merged, raw


# ----------------------------------------------------------------------------------------------------------------
# Formatting (the tests format the result files' numbers the same way and look for them in the card)
# ----------------------------------------------------------------------------------------------------------------


def format_accuracy(value) -> str:
    """A fraction (<= 1) is shown as percent; a value above 1 is taken to be a percent already."""
    if value is None:
        return NOT_MEASURED
    return f"{value * 100:.2f}%" if value <= 1 else f"{value:.2f}%"


def format_count(value, unit: str = "") -> str:
    if value is None:
        return NOT_MEASURED
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f} {suffix}{unit}".rstrip()
    return f"{value:g} {unit}".rstrip()


def format_throughput(value, noise: str | None = None, allow_noisy: bool = False) -> str:
    """A noisy figure is left out (`allow_noisy`: kept), and said to be noisy either way."""
    if value is None:
        return NOT_MEASURED
    if noise:
        return f"{value:.1f} img/s (noisy)" if allow_noisy else f"{NOT_MEASURED} (noisy)"
    return f"{value:.1f} img/s"


def _speed_context(results: Mapping[str, Any]) -> str:
    """What a speed figure was measured with: batch size, dtype, machine, threads."""
    batch, threads = results.get("throughput_batch_size"), results.get("threads")
    parts = [f"batch {int(batch)}" if batch else f"batch size {NOT_RECORDED}"]
    if results.get("dtype"):
        parts.append(str(results["dtype"]))
    parts.append(results.get("hardware", f"hardware {NOT_RECORDED}"))
    parts.append(f"{int(threads)} threads" if threads else f"threads {NOT_RECORDED}")
    return ", ".join(parts)


def _results_table(results: Mapping[str, Any], stock_class: str, allow_noisy_timings: bool = False) -> str:
    def row(label: str, prefix: str) -> str:
        macs = results.get(prefix + "macs")
        cells = [
            format_accuracy(results.get(prefix + "accuracy")),
            format_accuracy(results.get(prefix + "top5_accuracy")),
            format_count(results.get(prefix + "params")),
            format_count(macs, "MACs"),
            format_count(None if macs is None else 2 * macs, "FLOPs"),
            format_throughput(results.get(prefix + "throughput"), results.get(prefix + "throughput_noise"),
                              allow_noisy_timings),
        ]
        return f"| {label} | " + " | ".join(cells) + " |"

    measured = "throughput" in results or "baseline_throughput" in results
    throughput = f"Throughput ({_speed_context(results)})" if measured else "Throughput"
    header = (
        f"| Model | Top-1 accuracy | Top-5 accuracy | Parameters | MACs / image | FLOPs / image (2 x MACs) | {throughput} |\n"
        "|---|---|---|---|---|---|---|"
    )
    return "\n".join(
        [header, row(f"Baseline (no token reduction, plain {stock_class})", "baseline_"), row("**PPT (this model)**", "")]
    )


def _results_notes(results: Mapping[str, Any], info: Mapping[str, Any], sources: list[str],
                   allow_noisy_timings: bool = False) -> str:
    notes = []
    dataset = info.get("dataset_name") or info.get("dataset")
    split = info.get("eval_split") or results.get("eval_split") or NOT_RECORDED
    if "accuracy" in results or "baseline_accuracy" in results:
        samples = results.get("eval_samples")
        where = f"{dataset or 'the evaluation data (' + NOT_RECORDED + ')'}, split `{split}`"
        notes.append(f"Accuracy on {where}" + (f" ({int(samples)} images)." if samples is not None else "."))
    if "throughput" in results or "baseline_throughput" in results:
        hardware = results.get("hardware", NOT_RECORDED)
        batch = results.get("throughput_batch_size")
        notes.append(f"Throughput measured on {hardware}" + (f", batch size {int(batch)}." if batch else "."))
        noise = noisy_timings(results)
        if results.get("throughput") and results.get("baseline_throughput"):
            speedup = f"{results['throughput'] / results['baseline_throughput']:.2f}x"
            if noise and not allow_noisy_timings:
                notes.append(f"Speed-up: {NOT_MEASURED} (noisy: {'; '.join(noise)}).")
            else:
                noisy = f", noisy: {'; '.join(noise)}" if noise else ""
                notes.append(f"Speed-up: {speedup} (PPT / baseline throughput; {_speed_context(results)}{noisy}).")
        elif noise:
            notes.append(f"Noisy timings: {'; '.join(noise)}.")
    notes.append(
        "MACs are multiply-accumulates; the PPT paper's \"GFLOPs\" are MACs. "
        f'"{NOT_MEASURED}" marks a number no run has measured yet.'
    )
    if sources:
        notes.append("Source files: " + ", ".join(f"`{name}`" for name in sources) + " (also in `results.json`).")
    elif results:
        notes.append("Numbers as passed to `export_folder` (kept in `results.json`).")
    else:
        notes.append("No results were given.")
    return " ".join(notes)


def _format_threshold(value: float) -> str:
    return "inf (always pool, as ToMe)" if math.isinf(value) else ("0 (always prune)" if value == 0 else f"{value:g}")


def _settings_rows(config) -> str:
    rows = [
        ("`reduction_layers` (0-based)", str(list(config.reduction_layers))),
        ("`tokens_removed` per reduction layer", str(config.tokens_removed)),
        ("`prune_threshold` (tau)", _format_threshold(config.prune_threshold)),
        ("`score_function`", f"`{config.score_function}`"),
        ("`proportional_attention`", str(config.proportional_attention)),
        ("`use_distillation_token`", str(config.use_distillation_token)),
        ("`distillation_head`", str(config.distillation_head)),
    ]
    return "\n".join(f"| {name} | {value} |" for name, value in rows)


def _training_rows(info: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    def first(*keys):
        return next((info[key] for key in keys if info.get(key) is not None), None)

    epochs = first("epochs", "num_train_epochs")
    rows = [
        ("Dataset", first("dataset_name", "dataset")),
        ("Base model", info.get("base_model")),
        ("Recipe", first("recipe", "preset")),
        ("Epochs", results.get("epoch") if epochs is None else epochs),
        ("Learning rate", info.get("learning_rate")),
        ("Learning-rate schedule", info.get("lr_scheduler_type")),
        ("Batch size", info.get("batch_size")),
        ("Batch size per device", info.get("per_device_train_batch_size")),
        ("Label smoothing", info.get("label_smoothing_factor")),
        ("Optimizer", info.get("optimizer")),
        ("Weight decay", info.get("weight_decay")),
        ("Seed", info.get("seed")),
        ("Hardware", info.get("training_hardware")),
        ("Training time", info.get("training_time")),
    ]
    return "\n".join(f"| {name} | {NOT_RECORDED if value is None else value} |" for name, value in rows)


# ----------------------------------------------------------------------------------------------------------------
# The card
# ----------------------------------------------------------------------------------------------------------------


def _eval_results(results: Mapping[str, Any], info: Mapping[str, Any]) -> list[EvalResult]:
    dataset = info.get("dataset")
    if not dataset:
        return []  # the model-index needs a dataset: without one the numbers stay in the table only
    common = dict(
        task_type="image-classification",
        task_name="Image Classification",
        dataset_type=dataset,
        dataset_name=info.get("dataset_name") or dataset,
        dataset_config=info.get("dataset_config"),
        dataset_split=info.get("eval_split") or results.get("eval_split"),
    )
    evals = []
    for key, metric_name in (("accuracy", "Top-1 accuracy"), ("top5_accuracy", "Top-5 accuracy")):
        if key in results:
            evals.append(
                EvalResult(
                    **common,
                    metric_type="accuracy",
                    metric_value=results[key],
                    metric_name=metric_name,
                    metric_config="top5" if key == "top5_accuracy" else None,
                )
            )
    return evals


def build_model_card(
    config,
    results: Mapping[str, Any] | None = None,
    training_info: Mapping[str, Any] | None = None,
    *,
    stock_class: str,
    num_parameters: int,
    result_sources: list[str] | None = None,
    repo_id: str | None = None,
    revision: str = UNPINNED_REVISION,
    example_files: list[tuple[str, str]] | None = None,
    onnx_opset: int | None = None,
    allow_noisy_timings: bool = False,
) -> ModelCard:
    """Fill `template.md` for a PPT-DeiT `config` (a `PPTDeiTConfig`).

    Args:
        results: normalized results (see `normalize_results`); missing entries print as "not measured".
        training_info: how the model was trained (keys in the module docstring).
        stock_class: the stock `transformers` class the weights load into without remote code.
        num_parameters: parameter count of the exported weights.
        result_sources: file names the results came from (printed in the card).
        repo_id: the Hub repo, for the usage code (default: `training_info["repo_id"]` or a placeholder).
        revision: the revision in the usage code; `push_folder` replaces it with the uploaded commit's hash.
        example_files: `(title, path in the repo)` of example images stored in the repo (its evaluation images): the
            widget's examples and the usage code's image. Without them an ImageNet (1000-class) model gets the Hub's
            sample photos and any other model no widget examples.
        onnx_opset: the opset of the folder's `onnx/model.onnx`, if it has one: the card then says how to run it.
        allow_noisy_timings: print a noisy throughput and speed-up (marked noisy); by default they are left out and
            the card says why (see `noisy_timings`).
    """
    results = dict(results or {})
    info = dict(training_info or {})
    repo_id = repo_id or info.get("repo_id") or "your-username/ppt-deit"
    model_name = info.get("model_name") or repo_id.split("/")[-1]
    tags = list(dict.fromkeys(BASE_TAGS + ["vit" if not config.use_distillation_token else "distillation"]
                              + list(info.get("tags") or [])))
    if example_files:
        widget = [{"src": f"https://huggingface.co/{repo_id}/resolve/main/{path}", "example_title": title}
                  for title, path in example_files]
        example_image_url = widget[0]["src"]
    else:
        widget = WIDGET_EXAMPLES if config.num_labels == 1000 else None
        example_image_url = EXAMPLE_IMAGE_URL
    card_data = ModelCardData(
        license=info.get("license", "apache-2.0"),
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[info["dataset"]] if info.get("dataset") else None,
        base_model=info.get("base_model"),
        metrics=["accuracy"],
        model_name=model_name,
        eval_results=_eval_results(results, info) or None,
        widget=widget,
    )
    image_size = config.image_size if isinstance(config.image_size, int) else "x".join(map(str, config.image_size))
    steps = [f"{config.token_schedule()[0][0]} tokens"] + [
        f"{after} after layer {layer}" for layer, (before, after) in enumerate(config.token_schedule()) if after != before
    ]
    schedule = ", ".join(steps)
    trained_with_ppt = info.get("trained_with_compression")
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        architecture_description=(
            "distilled DeiT (CLS + DIST tokens)" if config.use_distillation_token else "DeiT / ViT image classifier"
        ),
        stock_class=stock_class,
        base_model=f"[{info['base_model']}](https://huggingface.co/{info['base_model']})"
        if info.get("base_model")
        else NOT_RECORDED,
        num_parameters=format_count(num_parameters),
        reduction_layers=str(list(config.reduction_layers)),
        score_function=config.score_function,
        prune_threshold=_format_threshold(config.prune_threshold),
        results_table=_results_table(results, stock_class, allow_noisy_timings),
        results_notes=_results_notes(results, info, list(result_sources or []), allow_noisy_timings),
        settings_rows=_settings_rows(config),
        image_size=image_size,
        token_schedule=schedule,
        training_rows=_training_rows(info, results),
        repo_id=repo_id,
        revision=revision,
        example_image_url=example_image_url,
        example_tokens_removed=_example_tokens_removed(config),
        dataset=info.get("dataset_name") or info.get("dataset") or NOT_RECORDED,
        trained_with_ppt_note=(
            ", which it was fine-tuned as" if trained_with_ppt else ""
        ),
        onnx_section="" if onnx_opset is None else _onnx_section(config, repo_id, revision, onnx_opset),
    )


def _onnx_section(config, repo_id: str, revision: str, opset: int) -> str:
    """How to run `onnx/model.onnx`: ONNX Runtime directly, or Optimum's ORTModelForImageClassification."""
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    return f"""
### ONNX Runtime

`onnx/model.onnx` is this PPT model as an ONNX graph (opset {opset}, dynamic batch size, exported with torch's
dynamo exporter): the token pruning and pooling run inside the graph, per image, with the settings above (the file's
metadata records them); image size ({size} px) and token schedule are fixed. It needs `onnxruntime` only, no PyTorch:

```python
import numpy as np
import onnxruntime
from huggingface_hub import hf_hub_download
from transformers import AutoImageProcessor
from transformers.image_utils import load_image

repo_id = "{repo_id}"
revision = "{revision}"
path = hf_hub_download(repo_id, "onnx/model.onnx", revision=revision)
session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
processor = AutoImageProcessor.from_pretrained(repo_id, revision=revision)
pixel_values = processor(load_image("{EXAMPLE_IMAGE_URL}"), return_tensors="np")["pixel_values"]
logits = session.run(["logits"], {{"pixel_values": pixel_values.astype(np.float32)}})[0]
print(int(logits.argmax(-1)[0]))
```

`onnx/config.json` is a plain `{"deit" if config.use_distillation_token else "vit"}` config, so that Optimum's
`ORTModelForImageClassification.from_pretrained(repo_id, subfolder="onnx")` loads the graph without remote code
(`optimum-onnx` needs `transformers<4.58`: use it in its own environment).
"""


def _example_tokens_removed(config) -> int:
    per_layer = config.tokens_removed if isinstance(config.tokens_removed, int) else max(config.tokens_removed)
    return max(1, per_layer // 2)


_REPO_LINE = re.compile(r'^repo_id = "([^"]*)"$', re.MULTILINE)
_REVISION_LINE = re.compile(r'^revision = "([^"]*)"', re.MULTILINE)


def pin_usage(card_text: str, repo_id: str, revision: str) -> str:
    """The card text with its usage code pointing at `repo_id` and pinned to `revision` (a commit hash)."""
    match = _REPO_LINE.search(card_text)
    if match is None:
        raise ValueError('the card has no `repo_id = "..."` line in its usage code: was it written by model_card?')
    text = card_text.replace(f'"{match.group(1)}"', f'"{repo_id}"')
    # The widget's example images stored in the repo: the repo's full id (a bare name gets its namespace on upload).
    text = text.replace(f"https://huggingface.co/{match.group(1)}/resolve/main/",
                        f"https://huggingface.co/{repo_id}/resolve/main/")
    return _REVISION_LINE.sub(f'revision = "{revision}"', text)
