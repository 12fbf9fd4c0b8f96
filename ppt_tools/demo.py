# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The PPT demo: a Gradio app that runs PPT itself on an image (the Hub widget cannot: it runs no custom code).

    from ppt_tools.demo import build_demo
    build_demo("outputs/digits").launch()                  # a local model folder
    build_demo("me/ppt-deit-small").launch()               # a Hub repo (its remote code: trust_remote_code=True)

    ppt-demo outputs/digits           # the same from the command line

For an image (uploaded, or one of the bundled examples) and the chosen `tokens_removed`, `prune_threshold` and score
function it shows, compression off next to compression on: the top-5 labels with probabilities, the per-layer token
maps (`ppt_tools.analysis.token_maps`), the MACs per image (`ppt_tools.core.cost`) and the latency of both measured here, interleaved
(`ppt_tools.core.timing`). Bad input (a file that is no image, a huge image, settings the model refuses) is a message in
the page, never a traceback; a grayscale or transparent image is converted and says so, and so does an r that the
clamp reduces.

A Space runs this module as it is: `ppt-publish ... --space` writes a Space folder holding `app.py`
(which calls `build_demo`), this file as `space_app.py`, the few modules it imports (`ppt_tools.core.cost`,
`ppt_tools.core.timing`, `ppt_tools.analysis.token_maps` and the model package they use) and example images. So this module imports
nothing of this project but those. gradio is imported here and nowhere else (the `.[demo]` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import AutoImageProcessor, AutoModelForImageClassification

from ppt_tools.core.cost import analytic_cost
from ppt_tools.core.timing import time_interleaved
from ppt_tools.analysis.token_maps import figure_pixels, layer_maps, model_view, patch_grid, token_map_figure


# Larger images are refused before decoding (an upload of a 100-megapixel photo would take seconds and gigabytes to
# decode, only to be resized to 224 px).
MAX_MEGAPIXELS = 40
MAX_FILE_SIZE = "25mb"
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


# ---- the model -------------------------------------------------------------------------------------------------------


def load_demo_model(checkpoint: str):
    """The PPT classifier and image processor of `checkpoint`, a local model folder or a Hub repo id.

    An exported repo (or a Hub repo id) loads with its own remote code (`trust_remote_code=True`); a local training
    output (`model_type` "ppt_deit", no `auto_map`) loads with the installed `modeling_ppt_deit`.
    """
    config_path = Path(checkpoint) / "config.json"
    local = config_path.is_file()
    looks_local = os.path.exists(checkpoint) or str(checkpoint).startswith(("/", ".", "~")) or os.sep + os.sep in \
        str(checkpoint) or str(checkpoint).count("/") > 1
    if looks_local and not local:
        raise ValueError(f"{str(checkpoint)!r} is not a model folder (no config.json there); give a model folder "
                         "(train.py output, an export) or a Hub repo id like 'user/name'")
    if local and "auto_map" not in json.loads(config_path.read_text(encoding="utf-8")):
        from modeling_ppt_deit import PPTDeiTForImageClassification

        model = PPTDeiTForImageClassification.from_pretrained(checkpoint)
    else:
        try:
            model = AutoModelForImageClassification.from_pretrained(checkpoint, trust_remote_code=True)
        except OSError as error:  # not found on the Hub, offline without a cached copy, no weights
            where = "" if local else " (tried as a Hub repo id)"
            raise OSError(f"{checkpoint!r} could not be loaded{where}: {' '.join(str(error).split())}") from error
    if getattr(model.config, "model_type", None) != "ppt_deit" or not hasattr(model, "compression_settings"):
        raise ValueError(f"{checkpoint!r} did not load as a PPT-DeiT model (got {type(model).__name__}); the demo "
                         "needs a PPT-DeiT checkpoint or export (with trust_remote_code)")
    processor = AutoImageProcessor.from_pretrained(checkpoint)
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


def read_image(path: str | None) -> tuple[Image.Image, list[str]]:
    """The RGB image at `path` and what was done to make it one (notes for the page). `gr.Error` with a message
    a person understands for no image, a file that is none, a damaged one, or one over `MAX_MEGAPIXELS`."""
    if not path:
        raise gr.Error("Upload an image (or pick one of the examples below) first.")
    name = os.path.basename(str(path))
    try:
        image = Image.open(path)
    except Image.DecompressionBombError:
        raise gr.Error(f"{name} is far too large to decode safely; this demo takes images up to {MAX_MEGAPIXELS} "
                       "megapixels.") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise gr.Error(f"{name} is not an image this demo can read: upload a PNG, JPEG, WebP, GIF or BMP file.") \
            from None
    with image:
        width, height = image.size
        if width * height > MAX_MEGAPIXELS * 1_000_000:
            raise gr.Error(f"{name} is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); this demo "
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
            raise gr.Error(f"{name} could not be decoded ({error}): the file is damaged or truncated.") from None
    if min(rgb.size) < 1:
        raise gr.Error(f"{name} has no pixels.")
    return rgb, notes


def checked_settings(model, tokens_removed, prune_threshold, score_function) -> dict:
    """The settings of the form as the model's config takes them; `gr.Error` naming the bad one."""
    try:
        removed = int(tokens_removed)
        if removed != tokens_removed:
            raise ValueError
    except (TypeError, ValueError):
        raise gr.Error(f"tokens_removed must be a whole number, got {tokens_removed!r}.") from None
    if prune_threshold is None:
        raise gr.Error("prune_threshold (τ) is empty: give a number ≥ 0 (0 = always prune).")
    settings = {"tokens_removed": removed, "prune_threshold": float(prune_threshold),
                "score_function": str(score_function)}
    try:
        model.config.with_compression(**settings)
    except ValueError as error:
        raise gr.Error(f"These settings cannot run: {error}") from None
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
    """The MACs and latency of both, as a Markdown table."""
    def macs(value):
        return f"{value / 1e9:.3f} G" if value >= 1e8 else f"{value / 1e6:.2f} M"

    saved = 1 - details["macs_on"] / details["macs_off"]
    speedup = details["latency_ms_off"] / details["latency_ms_on"]
    return (
        "| | MACs per image | latency (median) |\n|---|---|---|\n"
        f"| compression off | {macs(details['macs_off'])} | {details['latency_ms_off']:.2f} ms |\n"
        f"| PPT on | {macs(details['macs_on'])} ({saved:.0%} fewer) | {details['latency_ms_on']:.2f} ms "
        f"({speedup:.2f}× the speed) |\n\n"
        f"MACs from the cost model (`ppt_tools.core.cost`); latency measured now on this machine ({device}), one image, "
        f"{details['latency_rounds']} rounds of {details['latency_iterations']} calls each, interleaved."
        + (" Here PPT ran slower: in a model this small the compression step can cost about what the removed tokens "
           "save, and a few rounds on a busy machine vary; DeiT-sized models gain the speed." if speedup < 1 else "")
    )


# ---- the page --------------------------------------------------------------------------------------------------------


def with_readable_errors(image: gr.Image) -> gr.Image:
    """`image` whose own decoding of an upload (a file that is no image, a decompression bomb) fails with a message
    in the page; gradio's own would show a bare "Error". (A wrapper on the instance rather than a subclass: gradio
    writes a .pyi stub beside the module of every component subclass, also in a read-only Space.)"""
    decode = image.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except gr.Error:
            raise
        except Image.DecompressionBombError:
            raise gr.Error(f"The image is far too large to decode safely; this demo takes images up to "
                           f"{MAX_MEGAPIXELS} megapixels.") from None
        except Exception:  # UnidentifiedImageError, OSError, ... from decoding an upload
            name = os.path.basename(getattr(payload, "orig_name", None) or getattr(payload, "path", "") or "the file")
            raise gr.Error(f"{name} is not an image this demo can read: upload a PNG, JPEG, WebP, GIF or BMP file.") \
                from None

    image.preprocess = preprocess
    return image


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


def build_demo(checkpoint: str, examples: str | os.PathLike | None = None, title: str | None = None,
               latency_rounds: int = 5) -> gr.Blocks:
    """The demo page for `checkpoint` (a local model folder or a Hub repo id).

    Args:
        checkpoint: what `load_demo_model` loads.
        examples: a folder of example images offered below the input (default: `examples/` in `checkpoint` when it is
            a local folder holding one).
        title: the model's name on the page (default: `checkpoint`).
        latency_rounds: timed rounds of each setting per request.

    Returns:
        `gr.Blocks`; `.launch()` serves it. Requests run one at a time (the model's settings are changed per request).
    """
    model, processor = load_demo_model(checkpoint)
    config = model.config
    if examples is None and (Path(checkpoint) / "examples").is_dir():
        examples = Path(checkpoint) / "examples"
    device = str(next(model.parameters()).device)
    if device == "cpu":
        device = f"CPU, {torch.get_num_threads()} threads"
    lock = threading.Lock()  # compression_settings changes the shared model: one request at a time

    def run(image_path, tokens_removed, prune_threshold, score_function):
        rgb, notes = read_image(image_path)
        settings = checked_settings(model, tokens_removed, prune_threshold, score_function)
        with lock:
            result = compare(model, processor, rgb, settings, latency_rounds)
        for note in notes:  # what was done to the image
            gr.Warning(note)
        for note in result.notes:  # the clamp: how the schedule works, not a fault
            gr.Info(note)
        lines = [f"- ⚠️ {note}" for note in notes] + [f"- ℹ️ {note}" for note in result.notes]
        status = "\n".join(["✓ done", *lines])
        return (status, result.top5_off, result.top5_on, result.maps, cost_table(result.details, device),
                result.details)

    r_max = max_tokens_removed(config)
    default_r = default_tokens_removed(config)
    functions = score_function_names(model)
    with gr.Blocks(title=f"PPT demo: {title or checkpoint}") as demo:
        gr.Markdown(INTRO)
        gr.Markdown(f"Model: `{title or checkpoint}`: {config.num_hidden_layers} layers, {config.image_size} px, "
                    f"{config.num_initial_tokens} tokens, reduction layers {list(config.reduction_layers)} (0-based).")
        with gr.Row():
            with gr.Column(scale=1):
                image = with_readable_errors(gr.Image(type="filepath", image_mode=None, label="image",
                                                      elem_id="input-image", sources=["upload", "clipboard"],
                                                      height=300))
                tokens = gr.Slider(0, r_max, value=min(default_r, r_max), step=1, label="tokens_removed (r)",
                                   info=f"removed at each reduction layer (at most {r_max}: half the patches; later "
                                        "layers clamp r to half of what is left)")
                threshold = gr.Number(value=config.prune_threshold, label="prune_threshold (τ)", minimum=0, step=1e-5,
                                      info="an image whose score variance is ≥ τ is pruned, else pooled "
                                           "(0 = always prune; a huge value = always pool)")
                score = gr.Dropdown(functions, value=config.score_function, label="score function")
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
        rows = example_rows(examples, [min(default_r, r_max), config.prune_threshold, config.score_function])
        if rows:
            gr.Examples(rows, inputs=inputs, label="examples (click one, then Run PPT)", elem_id="examples")
        submit.click(run, inputs=inputs, outputs=outputs, api_name="run", concurrency_limit=1)
    return demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ppt-demo", description="Serve the PPT demo locally.")
    parser.add_argument("--model_name_or_path", required=True,
                        help="a local model folder (train.py output, export) or a Hub repo id")
    parser.add_argument("--examples", default=None, help="a folder of example images")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also serve a temporary public gradio.live link")
    args = parser.parse_args(argv)
    try:
        demo = build_demo(args.model_name_or_path, args.examples)
    except (OSError, ValueError) as error:
        print(f"ppt-demo: error: {error}", file=sys.stderr)
        return 1
    demo.launch(server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
