# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The PPT demo: a Gradio app that runs PPT itself on an image (the Hub widget cannot: it runs no custom code).

    from ppt_tools.demo import build_demo
    build_demo("outputs/digits").launch()                          # a train.py run folder, or an export
    build_demo("me/ppt-deit-small", revision="<commit>").launch()  # a Hub repo, at a pinned revision

    ppt-demo --model_name_or_path outputs/digits           # the same from the command line
    ppt-demo --model_name_or_path me/ppt-deit-small --revision <commit> --trust_remote_code

A model's own Python code (config.json's `auto_map`: the `.py` files in its folder or repo) runs only when asked
(`trust_remote_code=True`, `--trust_remote_code`, as in transformers); without it a PPT-DeiT folder or repo loads with
the installed `modeling_ppt_deit`, and one that needs its own code is refused.

For an image (uploaded, or an example: on a train.py run folder, images of the evaluation split its
training_info.json records) and the chosen `tokens_removed`, `prune_threshold` and score function it shows,
compression off next to compression on: the top-5 labels with probabilities, the per-layer token maps
(`ppt_tools.analysis.token_maps`), the MACs per image (`ppt_tools.core.cost`) and the latency of both measured here,
interleaved (`ppt_tools.core.timing`), median and the spread of the rounds, with the model's dtype. Bad input (a file
that is no image, a damaged or huge image, settings the model refuses, a value a control does not take) is a message
in the page and one line on the server's console, never a traceback; a grayscale or transparent image is converted
and says so, and so does an r that the clamp reduces.

A Space runs this module as it is: `ppt-publish ... --space` writes a Space folder holding `app.py`
(which calls `build_demo`), this file as `space_app.py`, the few modules it imports (`ppt_tools.core.cost`,
`ppt_tools.core.timing`, `ppt_tools.core.errors`, `ppt_tools.analysis.token_maps` and the model package they use) and
example images. So this module imports nothing else of this project at the top (what only the command line or a run
folder needs is imported where it is used). gradio is imported here and nowhere else (the `.[demo]` extra).
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import reprlib
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig

from modeling_ppt_deit import PPTDeiTForImageClassification
from ppt_tools.analysis.token_maps import figure_pixels, layer_maps, model_view, patch_grid, token_map_figure
from ppt_tools.core.cost import analytic_cost
from ppt_tools.core.errors import CHECKPOINT_CONTENT_ERRORS, USER_ERRORS, one_line
from ppt_tools.core.timing import time_interleaved


# Larger images are refused before decoding (an upload of a 100-megapixel photo would take seconds and gigabytes to
# decode, only to be resized to 224 px).
MAX_MEGAPIXELS = 40
MAX_FILE_SIZE = "25mb"
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PROG = "ppt-demo"
# The model types the installed PPT-DeiT classes load (a train.py output, an export of one, a stock DeiT / ViT).
LOADABLE_MODEL_TYPES = ("ppt_deit", "vit", "deit")
# A value a client sent, as a message quotes it (a script may send a megabyte of text for a number).
SHOWN = reprlib.Repr()
SHOWN.maxstring = SHOWN.maxother = 60


# ---- the model -------------------------------------------------------------------------------------------------------


def needs_own_code(config: dict) -> bool:
    """Whether a config.json maps the model to code of its own that is not PPT-DeiT's (`auto_map`). A train.py output
    (`model_type` "ppt_deit") and an export (a stock `model_type`, `auto_map` to the PPT-DeiT classes) are PPT-DeiT:
    the installed classes load them."""
    auto_map = config.get("auto_map") or {}
    if not auto_map or config.get("model_type") == "ppt_deit":
        return False
    target = auto_map.get("AutoModelForImageClassification") if isinstance(auto_map, dict) else None
    return not (isinstance(target, str) and target.rsplit(".", 1)[-1] == PPTDeiTForImageClassification.__name__)


def load_demo_model(model_name_or_path: str, revision: str | None = None, trust_remote_code: bool = False):
    """The PPT classifier and image processor of `model_name_or_path`, a local model folder or a Hub repo id (at
    `revision`: a branch, tag or commit; for a Hub id, the commit pins what is loaded).

    The model's own Python code (config.json's `auto_map`) runs only with `trust_remote_code=True`, as in
    transformers. Without it a PPT-DeiT checkpoint (a train.py output, an export) loads with the installed
    `modeling_ppt_deit`, and one that needs code of its own is refused (`ValueError` naming the flag).
    """
    name = str(model_name_or_path)
    local = (Path(name) / "config.json").is_file()
    looks_local = os.path.exists(name) or name.startswith(("/", ".", "~")) or os.sep + os.sep in name or \
        name.count("/") > 1
    if looks_local and not local:
        raise ValueError(f"{name!r} is not a model folder (no config.json there); give a model folder "
                         "(train.py output, an export) or a Hub repo id like 'user/name'")
    try:
        config, _ = PretrainedConfig.get_config_dict(name, revision=revision)  # the JSON only: runs no code
        model_type = config.get("model_type")
        if not trust_remote_code and not needs_own_code(config) and model_type not in LOADABLE_MODEL_TYPES:
            raise ValueError(f"{name!r} has model_type {SHOWN.repr(model_type)} in its config.json; the demo loads "
                             f"PPT-DeiT checkpoints and exports ({', '.join(LOADABLE_MODEL_TYPES)})")
        if trust_remote_code:
            model = AutoModelForImageClassification.from_pretrained(name, revision=revision, code_revision=revision,
                                                                    trust_remote_code=True)
        elif needs_own_code(config):
            raise ValueError(f"{name!r} needs its own Python code (config.json's auto_map: "
                             f"{SHOWN.repr(config.get('auto_map'))}), which runs only when asked: pass "
                             "--trust_remote_code (trust_remote_code=True) if you trust that code")
        else:
            model = PPTDeiTForImageClassification.from_pretrained(name, revision=revision)
        processor = AutoImageProcessor.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as error:  # not found on the Hub, offline without a cached copy, no weights
        where = "" if local else " (tried as a Hub repo id)"
        raise OSError(f"{name!r} could not be loaded{where}: {one_line(error)}") from error
    except CHECKPOINT_CONTENT_ERRORS as error:  # an unknown activation, a config.json nested past the reader's depth
        raise ValueError(f"{name!r} cannot be loaded: its config.json or weights do not describe a PPT-DeiT "
                         f"classifier ({type(error).__name__}: {one_line(error)})") from error
    if getattr(model.config, "model_type", None) != "ppt_deit" or not hasattr(model, "compression_settings"):
        raise ValueError(f"{name!r} did not load as a PPT-DeiT model (got {type(model).__name__}); the demo "
                         "needs a PPT-DeiT checkpoint or export")
    return model.eval(), processor


def score_function_names(model) -> list[str]:
    """The score functions the model's own code registers (its `token_ops` module, local or remote)."""
    package = type(model).__module__.rsplit(".", 1)[0]
    token_ops = sys.modules.get(f"{package}.token_ops")
    names = sorted(getattr(token_ops, "SCORE_FUNCTIONS", {}) or {"ats", "cls_attention", "entropy"})
    return names if model.config.score_function in names else [*names, model.config.score_function]


def max_tokens_removed(config) -> int:
    """The largest r the config accepts: half the non-protected tokens entering the first reduction layer."""
    return (config.num_initial_tokens - config.num_protected_tokens) // 2


def default_tokens_removed(config) -> int:
    removed = config.tokens_removed
    return int(removed if isinstance(removed, int) else (removed[0] if removed else 0))


# ---- input checks ----------------------------------------------------------------------------------------------------


def refuse(message: str) -> gr.Error:
    """Bad input: `message` for the page, and one line on the server's console (gradio would print a traceback,
    which is for bugs)."""
    print(f"{PROG}: refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def read_image(path: str | None, examples_offered: bool = False) -> tuple[Image.Image, list[str]]:
    """The RGB image at `path` and what was done to make it one (notes for the page). `refuse` with a message a
    person understands for no image, a file that is none, a damaged one, or one over `MAX_MEGAPIXELS`."""
    if not path:
        raise refuse("Upload an image (or pick one of the examples below) first." if examples_offered
                     else "Upload an image first.")
    name = os.path.basename(str(path))
    try:
        image = Image.open(path)
    except Image.DecompressionBombError:
        raise refuse(f"{name} is far too large to decode safely; this demo takes images up to {MAX_MEGAPIXELS} "
                     "megapixels.") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise refuse(f"{name} is not an image this demo can read: upload a PNG, JPEG, WebP, GIF or BMP file.") \
            from None
    with image:
        width, height = image.size
        if width * height > MAX_MEGAPIXELS * 1_000_000:
            raise refuse(f"{name} is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); this demo "
                         f"takes images up to {MAX_MEGAPIXELS} megapixels. Downscale it first (the model sees it "
                         "at its own input size anyway).")
        notes = []
        try:
            image = ImageOps.exif_transpose(image)
            mode = image.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                background = Image.new("RGB", image.size, (255, 255, 255))
                background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
                rgb = background
                notes.append(f"{name} has transparency (mode {mode}): transparent areas were filled with white.")
            elif mode != "RGB":
                rgb = image.convert("RGB")
                kind = {"L": "grayscale", "1": "black-and-white", "I": "32-bit grayscale", "I;16": "16-bit grayscale",
                        "F": "floating-point grayscale", "P": "palette", "CMYK": "CMYK"}.get(mode, mode)
                notes.append(f"{name} is a {kind} image (mode {mode}): converted to RGB for the model.")
            else:
                rgb = image.copy()
        except (OSError, ValueError, SyntaxError) as error:  # truncated or damaged pixel data
            raise refuse(f"{name} could not be decoded ({one_line(error)}): the file is damaged or truncated.") \
                from None
    if min(rgb.size) < 1:
        raise refuse(f"{name} has no pixels.")
    return rgb, notes


def checked_settings(model, tokens_removed, prune_threshold, score_function) -> dict:
    """The settings of the form as the model's config takes them; `refuse` naming the bad one."""
    try:
        removed = int(tokens_removed)
        if removed != tokens_removed:
            raise ValueError
    except (TypeError, ValueError):
        raise refuse(f"tokens_removed must be a whole number, got {SHOWN.repr(tokens_removed)}.") from None
    if prune_threshold is None:
        raise refuse("prune_threshold (τ) is empty: give a number ≥ 0 (0 = always prune).")
    settings = {"tokens_removed": removed, "prune_threshold": float(prune_threshold),
                "score_function": str(score_function)}
    try:
        model.config.with_compression(**settings)
    except ValueError as error:
        raise refuse(f"These settings cannot run: {one_line(error)}") from None
    return settings


def clamp_notes(config) -> list[str]:
    """One line per reduction layer where the clamp (at most half the non-protected tokens per step) removes fewer
    tokens than the configured r."""
    notes = []
    schedule = config.token_schedule()
    for layer in config.reduction_layers:
        configured = config.tokens_removed_at(layer)
        before, after = schedule[layer]
        if before - after < configured:
            left = before - config.num_protected_tokens
            notes.append(f"r = {configured} is more than layer {layer} can remove: at most half of the {left} patch "
                         f"tokens left there go, so it removes {before - after}.")
    return notes


# ---- one run ---------------------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Everything the page shows for one image and one set of settings."""

    top5_off: dict[str, float]
    top5_on: dict[str, float]
    maps: np.ndarray
    details: dict
    notes: list[str] = field(default_factory=list)


def dtype_name(model) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def top5(probabilities: torch.Tensor, config) -> dict[str, float]:
    values, indices = probabilities.topk(min(5, probabilities.numel()))
    return {config.id2label.get(int(index), str(int(index))): float(value) for value, index in zip(values, indices)}


def compare(model, processor, image: Image.Image, settings: dict, latency_rounds: int = 5) -> Comparison:
    """Run `image` through `model` with compression off and with `settings`, draw the token maps, cost and time
    both. The model's own settings are restored afterwards."""
    pixel_values = processor(images=[image], return_tensors="pt").pixel_values
    pixel_values = pixel_values.to(dtype=next(model.parameters()).dtype, device=next(model.parameters()).device)
    with torch.no_grad(), model.compression_settings(**settings):
        config = model.config.with_compression()  # a copy: the settings this run uses
        with model.compression_settings(reduction_layers=[]):
            logits_off = model(pixel_values).logits
        with model.compression_settings(track_sources=True):
            outputs = model(pixel_values, output_compression=True)

        def run_off():
            with model.compression_settings(reduction_layers=[]):
                model(pixel_values)

        # A small model runs in a few milliseconds: several calls per timed round, so that a round lasts about
        # 20 ms and one hiccup of the machine does not decide the ratio.
        started = time.perf_counter()
        run_off()
        iterations = min(50, max(1, math.ceil(0.02 / max(time.perf_counter() - started, 1e-6))))
        timings = time_interleaved({"off": run_off, "on": lambda: model(pixel_values)}, batch_size=1,
                                   device=pixel_values.device, warmup=1, rounds=latency_rounds, iterations=iterations,
                                   progress=False)
    grid = patch_grid(config, pixel_values)
    maps = layer_maps(outputs, config, 0, grid)
    probabilities_off = logits_off[0].float().softmax(-1)
    probabilities_on = outputs.logits[0].float().softmax(-1)
    predicted = int(probabilities_on.argmax())
    label = config.id2label.get(predicted, str(predicted))
    figure = token_map_figure(model_view(pixel_values, processor), outputs, config, grid=grid,
                              image_titles=[f"PPT predicts {label} ({float(probabilities_on[predicted]):.1%})"])
    cost_on = analytic_cost(config).macs
    cost_off = analytic_cost(config.with_compression(reduction_layers=[])).macs
    details = {
        "settings": {**settings, "reduction_layers": list(config.reduction_layers)},
        "macs_off": cost_off,
        "macs_on": cost_on,
        "latency_ms_off": timings["off"].median_latency_ms,
        "latency_ms_on": timings["on"].median_latency_ms,
        "latency_ms_range_off": timings["off"].latency_range_ms,
        "latency_ms_range_on": timings["on"].latency_range_ms,
        "dtype": dtype_name(model),
        "latency_rounds": latency_rounds,
        "latency_iterations": iterations,
        "tokens_final": maps[-1].tokens_after if maps else config.num_initial_tokens,
        "panels": ["input", *(f"after layer {layer.layer_index}" for layer in maps)],
        "layers": [{"layer": layer.layer_index, "policy": layer.policy, "score_variance": layer.score_variance,
                    "tokens_before": layer.tokens_before, "tokens_after": layer.tokens_after,
                    "pruned_patches": int(layer.pruned.sum()), "merged_patches": int(layer.merged.sum())}
                   for layer in maps],
    }
    return Comparison(top5(probabilities_off, config), top5(probabilities_on, config), figure_pixels(figure), details,
                      clamp_notes(config))


def cost_table(details: dict, device: str) -> str:
    """The MACs and latency of both, as a Markdown table: the median latency, and the fastest and slowest round."""
    def macs(value):
        return f"{value / 1e9:.3f} G" if value >= 1e8 else f"{value / 1e6:.2f} M"

    def latency(setting):
        fastest, slowest = details[f"latency_ms_range_{setting}"]
        return f"{details[f'latency_ms_{setting}']:.2f} ms ({fastest:.2f}–{slowest:.2f})"

    saved = 1 - details["macs_on"] / details["macs_off"]
    speedup = details["latency_ms_off"] / details["latency_ms_on"]
    return (
        "| | MACs per image | latency: median (min–max) |\n|---|---|---|\n"
        f"| compression off | {macs(details['macs_off'])} | {latency('off')} |\n"
        f"| PPT on | {macs(details['macs_on'])} ({saved:.0%} fewer) | {latency('on')} "
        f"({speedup:.2f}× the speed) |\n\n"
        f"MACs from the cost model (`ppt_tools.core.cost`); latency measured now on this machine ({device}, "
        f"{details['dtype']}), one image, {details['latency_rounds']} rounds of {details['latency_iterations']} calls "
        "each, interleaved: the median round, and the fastest and slowest (a wide spread means a busy machine)."
        + (" Here PPT ran slower: in a model this small the compression step can cost about what the removed tokens "
           "save, and a few rounds on a busy machine vary; DeiT-sized models gain the speed." if speedup < 1 else "")
    )


# ---- the page --------------------------------------------------------------------------------------------------------


def with_readable_errors(component, describe=None):
    """`component` whose own decoding of what a browser or a script sent fails with a message in the page
    (`refuse`): gradio's own checks (a value out of range, not a choice) keep their text after the control's name,
    anything else is said by `describe(payload)` (default: not a value the control takes). (A wrapper on the
    instance rather than a subclass: gradio writes a .pyi stub beside the module of every component subclass, also
    in a read-only Space.)"""
    decode = component.preprocess
    label = component.label or "input"

    def preprocess(payload):
        try:
            return decode(payload)
        except gr.Error as error:
            raise refuse(f"{label}: {error.message}") from None
        except Image.DecompressionBombError:
            raise refuse(f"The image is far too large to decode safely; this demo takes images up to "
                         f"{MAX_MEGAPIXELS} megapixels.") from None
        except Exception:  # whatever a client sends reaches this decoding: its failure is the input's
            message = describe(payload) if describe else f"{label}: {SHOWN.repr(payload)} is not a value it takes."
            raise refuse(message) from None

    component.preprocess = preprocess
    return component


def not_an_image(payload) -> str:
    name = os.path.basename(getattr(payload, "orig_name", None) or getattr(payload, "path", "") or "the file")
    return f"{name} is not an image this demo can read: upload a PNG, JPEG, WebP, GIF or BMP file."


def not_a_number(label: str):
    return lambda payload: f"{label} must be a number, got {SHOWN.repr(payload)}."


INTRO = """# PPT: token Pruning & Pooling, on your image
At a few layers a ViT/DeiT classifier with PPT ([arXiv 2310.01812](https://arxiv.org/abs/2310.01812)) removes `r`
tokens. Each image chooses how: if its token significance scores vary a lot (variance ≥ τ, a few patches matter) it
**prunes** its `r` least significant tokens; otherwise it **pools** `r` tokens into similar ones. The maps show, layer
by layer, which patches were pruned (grey, crossed) and which were merged (one colour per merged token)."""


def example_rows(folder, settings_row: list) -> list[list]:
    """`[image path, *settings_row]` for each image in `folder` (sorted), for `gr.Examples`."""
    if folder is None or not Path(folder).is_dir():
        return []
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)
    return [[str(path), *settings_row] for path in paths]


def run_folder_examples(folder) -> tuple[Path | None, str]:
    """For a train.py run folder: a temporary folder (removed at exit) of a few images of the evaluation split its
    training_info.json records, one per class (`ppt_tools.core.data.evaluation_examples`: the images the model
    export shows), and where they come from. `(None, "")` for any other folder, and when the dataset cannot be read
    (said in one line on the console: the demo runs without examples)."""
    # `datasets` is needed here only; a Space brings its examples as files and never gets here.
    from ppt_tools.core.data import evaluation_examples, save_examples
    from ppt_tools.core.results import TRAINING_INFO_FILE

    info_path = Path(folder) / TRAINING_INFO_FILE
    if not info_path.is_file():
        return None, ""
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        images = evaluation_examples(info) if isinstance(info, dict) else []
    except USER_ERRORS as error:
        print(f"{PROG}: note: no examples from the evaluation split recorded in {info_path} ({one_line(error)})",
              file=sys.stderr, flush=True)
        return None, ""
    if not images:
        return None, ""
    target = Path(tempfile.mkdtemp(prefix="ppt-demo-examples-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    save_examples(target, images)
    dataset = info.get("dataset") or info.get("dataset_name")
    split = info.get("eval_split")
    return target, f"the evaluation split{f' ({split})' if split else ''} of {dataset}"


def build_demo(model_name_or_path: str, examples: str | os.PathLike | None = None, title: str | None = None,
               latency_rounds: int = 5, revision: str | None = None, trust_remote_code: bool = False) -> gr.Blocks:
    """The demo page for `model_name_or_path` (a local model folder or a Hub repo id).

    Args:
        model_name_or_path, revision, trust_remote_code: what `load_demo_model` loads, and whether the model's own
            code may run.
        examples: a folder of example images offered below the input (default: `examples/` in a local folder holding
            one, else, in a train.py run folder, images of the evaluation split its training_info.json records).
        title: the model's name on the page (default: `model_name_or_path`).
        latency_rounds: timed rounds of each setting per request.

    Returns:
        `gr.Blocks`; `.launch()` serves it. Requests run one at a time (the model's settings are changed per request).
    """
    model, processor = load_demo_model(model_name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    config = model.config
    title = title or str(model_name_or_path)
    source = "examples"
    if examples is None and (Path(model_name_or_path) / "examples").is_dir():
        examples = Path(model_name_or_path) / "examples"
    elif examples is None and Path(model_name_or_path).is_dir():
        examples, origin = run_folder_examples(model_name_or_path)
        source = f"examples from {origin}" if origin else source
    device = str(next(model.parameters()).device)
    if device == "cpu":
        device = f"CPU, {torch.get_num_threads()} threads"
    r_max = max_tokens_removed(config)
    default_r = default_tokens_removed(config)
    rows = example_rows(examples, [min(default_r, r_max), config.prune_threshold, config.score_function])
    lock = threading.Lock()  # compression_settings changes the shared model: one request at a time

    def run(image_path, tokens_removed, prune_threshold, score_function):
        try:
            rgb, notes = read_image(image_path, examples_offered=bool(rows))
            settings = checked_settings(model, tokens_removed, prune_threshold, score_function)
            with lock:
                result = compare(model, processor, rgb, settings, latency_rounds)
        except gr.Error:  # (a ValueError too) refused above: said once
            raise
        except USER_ERRORS as error:  # bad input that the checks above did not foresee
            raise refuse(one_line(error)) from None
        for note in notes:  # what was done to the image
            gr.Warning(note)
        for note in result.notes:  # the clamp: how the schedule works, not a fault
            gr.Info(note)
        lines = [f"- ⚠️ {note}" for note in notes] + [f"- ℹ️ {note}" for note in result.notes]
        status = "\n".join(["✓ done", *lines])
        return (status, result.top5_off, result.top5_on, result.maps, cost_table(result.details, device),
                result.details)

    functions = score_function_names(model)
    with gr.Blocks(title=f"PPT demo: {title}") as demo:
        gr.Markdown(INTRO)
        gr.Markdown(f"Model: `{title}`{f' at revision `{revision}`' if revision else ''}: "
                    f"{config.num_hidden_layers} layers, {config.image_size} px, {config.num_initial_tokens} tokens, "
                    f"reduction layers {list(config.reduction_layers)} (0-based), {dtype_name(model)}.")
        with gr.Row():
            with gr.Column(scale=1):
                image = with_readable_errors(gr.Image(type="filepath", image_mode=None, label="image",
                                                      elem_id="input-image", sources=["upload", "clipboard"],
                                                      height=300), describe=not_an_image)
                tokens = gr.Slider(0, r_max, value=min(default_r, r_max), step=1, label="tokens_removed (r)",
                                   info=f"removed at each reduction layer (at most {r_max}: half the patches; later "
                                        "layers clamp r to half of what is left)")
                threshold = gr.Number(value=config.prune_threshold, label="prune_threshold (τ)", minimum=0, step=1e-5,
                                      info="an image whose score variance is ≥ τ is pruned, else pooled "
                                           "(0 = always prune; a huge value = always pool)")
                score = gr.Dropdown(functions, value=config.score_function, label="score function")
                for control in (tokens, threshold):
                    with_readable_errors(control, describe=not_a_number(control.label))
                with_readable_errors(score)
                submit = gr.Button("Run PPT", variant="primary")
            with gr.Column(scale=2):
                status = gr.Markdown(label="status", elem_id="status")
                with gr.Row():
                    labels_off = gr.Label(num_top_classes=5, label="compression off: top-5")
                    labels_on = gr.Label(num_top_classes=5, label="PPT on: top-5")
                cost = gr.Markdown(elem_id="cost")
        maps = gr.Image(label="token maps, layer by layer", type="numpy", format="png", interactive=False,
                        elem_id="token-maps")
        with gr.Accordion("details (JSON)", open=False):
            details = gr.JSON(label="details")
        inputs = [image, tokens, threshold, score]
        outputs = [status, labels_off, labels_on, maps, cost, details]
        if rows:
            gr.Examples(rows, inputs=inputs, label=f"{source} (click one, then Run PPT)", elem_id="examples")
        submit.click(run, inputs=inputs, outputs=outputs, api_name="run", concurrency_limit=1)
    return demo


def port_number(text: str) -> int:
    """--port: a TCP port a server can listen on (checked here, before the model loads: gradio would fail only at
    launch, with a traceback)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 1 to 65535")
    return port


def main(argv=None) -> int:
    # The command-line layer (options, exit codes) is imported here: a Space imports this module without it.
    from ppt_tools.core.arguments import run_command

    parser = argparse.ArgumentParser(prog=PROG, description="Serve the PPT demo locally.", allow_abbrev=False)
    parser.add_argument("--model_name_or_path", required=True,
                        help="a local model folder (train.py output, export) or a Hub repo id")
    parser.add_argument("--revision", default=None,
                        help="the Hub repo's branch, tag or commit to load (a commit pins what runs)")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="run the model's own Python code (the .py files its config.json's auto_map names); "
                        "without it a PPT-DeiT folder or repo runs the installed modeling_ppt_deit")
    parser.add_argument("--examples", default=None, help="a folder of example images (default: those of the model "
                        "folder, or of the evaluation split a train.py run folder records)")
    parser.add_argument("--port", type=port_number, default=7860, help="the local port to serve on (1 to 65535)")
    parser.add_argument("--share", action="store_true", help="also serve a temporary public gradio.live link")
    args = parser.parse_args(argv)

    def serve():
        demo = build_demo(args.model_name_or_path, args.examples, revision=args.revision,
                          trust_remote_code=args.trust_remote_code)
        demo.launch(server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE)

    return run_command(PROG, serve)


if __name__ == "__main__":
    sys.exit(main())
