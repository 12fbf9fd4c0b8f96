# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Draw what PPT did to one or more images, layer by layer: which patches each reduction layer pruned, which it
pooled together, and why (the image's score variance against tau).

The figure is `ppt_tools.analysis.token_maps.token_map_figure` (one row per image: the input, then one panel per reduction
layer; a title with the settings and a legend); this command runs the model with source tracking on and saves it.

    ppt-analysis visualize --model_name_or_path outputs/digits --image digit.png --output token_maps.png
    ppt-analysis visualize --arch deit-small --image a.jpg b.jpg --output maps.png --png_colours 64
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ppt_tools.core.arguments import MachineArguments, ModelSourceArguments, PPTArguments
from ppt_tools.core.preprocessing import load_image_processor
from ppt_tools.core.outputs import FILE, OutputTarget
from ppt_tools.analysis.token_maps import figure_pixels, layer_maps, model_view, patch_grid, patch_owners, token_map_figure

from .common import load_placed_model


__all__ = ["VisualizeArguments", "check_output", "load_image", "patch_owners", "run", "token_map_figure"]

# Extensions --output may have, and the matplotlib format each is written in.
OUTPUT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg", ".tif": "tiff",
                  ".tiff": "tiff", ".webp": "webp"}


def output_formats() -> dict[str, str]:
    from matplotlib.figure import Figure

    supported = Figure().canvas.get_supported_filetypes()
    return {ext: name for ext, name in OUTPUT_FORMATS.items() if ext[1:] in supported}


def load_image(path: str) -> Image.Image:
    """The RGB image at `path`; `FileNotFoundError` / `ValueError` naming the path when it is none."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--image {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"--image {path!r} is a folder; give one image file")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:  # not an image, truncated, no permission, too large
        raise ValueError(f"--image {path!r} is not an image PIL can read ({error})") from None


def check_output(path: str) -> str:
    """Check --output before any work: a known image extension, in a folder that exists. Returns the format."""
    if os.path.isdir(path):
        raise ValueError(f"--output {path!r} is a folder; give an image file name")
    formats = output_formats()
    extension = os.path.splitext(path)[1].lower()
    if extension not in formats:
        found = f"the extension {extension!r}" if extension else "no extension"
        raise ValueError(f"--output {path!r} has {found}; use one of the image formats {', '.join(formats)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--output {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--output {path!r}: the folder {folder!r} is not writable")
    return formats[extension]


def save_figure_atomically(figure, output: OutputTarget, file_format: str, png_colours: int | None = None) -> None:
    """Write through the output's staging file (`ppt_tools.core.outputs`), so a failure never leaves half an image.
    With `png_colours`, a PNG is stored with a palette of that many colours (a few times smaller, for documents)."""
    with output.staging() as temporary:
        if png_colours is None or file_format != "png":
            figure.savefig(temporary, format=file_format)
            return
        palette = Image.fromarray(figure_pixels(figure)).quantize(colors=png_colours, method=Image.Quantize.MEDIANCUT,
                                                   dither=Image.Dither.NONE)
        palette.save(temporary, format="PNG", optimize=True)


def model_description(args) -> str:
    """The model in the figure's title; random weights (--arch) are said so, since their maps show no learned
    attention."""
    return f"{args.model_name}, random weights: untrained attention" if args.arch else args.model_name


@dataclass
class VisualizeArguments(MachineArguments, PPTArguments, ModelSourceArguments):
    """Draw, layer by layer, which patches images pruned and which they pooled together (one row per image)."""

    image: list[str] = field(default=None, metadata={"help": "One or more image files (one row each).",
                                                     "required": True})
    output: str = field(default="token_maps.png", metadata={
        "help": "The figure to write (.png, .jpg, .pdf, .svg, ...)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output file."})
    dpi: int = field(default=100, metadata={"help": "Resolution of the figure (dots per inch)."})
    png_colours: int | None = field(default=None, metadata={
        "help": "Store a .png with a palette of this many colours (2-256): a few times smaller, for documents."})

    def validate(self) -> None:
        check_output(self.output)  # bad paths fail here, before the model loads
        for path in self.image:
            load_image(path)
            if os.path.exists(self.output) and os.path.samefile(path, self.output):
                raise ValueError(f"--output {self.output!r} is the --image {path!r}; give another --output")
        if os.path.lexists(self.output) and not self.overwrite:
            raise ValueError(f"--output {self.output!r} exists; it is left as it is: give another --output, or "
                             "--overwrite to replace it")
        if self.dpi < 10:
            raise ValueError(f"--dpi {self.dpi} must be >= 10")
        if self.png_colours is not None and not 2 <= self.png_colours <= 256:
            raise ValueError(f"--png_colours {self.png_colours} must be between 2 and 256")


def run(args: VisualizeArguments) -> int:
    with OutputTarget(args.output, kind=FILE) as output:  # one writer of --output at a time
        return draw(args, output)


def draw(args: VisualizeArguments, output: OutputTarget) -> int:
    file_format = check_output(args.output)
    images = [load_image(path) for path in args.image]
    model, device = load_placed_model(args)
    config = model.config
    processor = load_image_processor(args.model_name_or_path, config.image_size)  # its own, or resize + ImageNet stats
    pixel_values = processor(images=images, return_tensors="pt").pixel_values
    with torch.no_grad(), model.compression_settings(track_sources=True):
        outputs = model(pixel_values.to(device=device, dtype=next(model.parameters()).dtype), output_compression=True)
    grid = patch_grid(config, pixel_values)
    probabilities = outputs.logits.float().softmax(-1).cpu()
    titles, summaries = [], []
    for index, path in enumerate(args.image):
        predicted = int(probabilities[index].argmax())
        label = config.id2label.get(predicted, str(predicted))
        titles.append(f"{os.path.basename(path)}: predicted {label} ({float(probabilities[index, predicted]):.1%})")
        summaries.append((path, label, layer_maps(outputs, config, index, grid)))

    figure = token_map_figure(model_view(pixel_values, processor), outputs, config, grid=grid, image_titles=titles,
                              title=f"What PPT did to {'the image' if len(images) == 1 else 'each image'}, layer by "
                                    f"layer ({model_description(args)})", dpi=args.dpi)
    save_figure_atomically(figure, output, file_format, args.png_colours)

    for path, label, maps in summaries:
        print(f"{path}:")
        for layer in maps:
            if layer.policy is None:
                print(f"  layer {layer.layer_index}: {layer.tokens_before} tokens, too few left to remove any")
                continue
            clamp = f" (r = {layer.tokens_removed_configured} clamped to {layer.tokens_removed})" if layer.clamped else ""
            print(f"  layer {layer.layer_index}: {layer.tokens_before} -> {layer.tokens_after} tokens, {layer.policy} "
                  f"(score variance {layer.score_variance:.3g} vs tau {config.prune_threshold:g}){clamp}")
        final = maps[-1].owners if maps else patch_owners(outputs.token_sources[0], config.num_protected_tokens, grid)
        final = np.asarray(final)
        print(f"  prediction: {label}; {int((final < 0).sum())} of {final.size} patches pruned, "
              f"{len(np.unique(final[final >= 0]))} tokens left")
    print(f"wrote {args.output}")
    return 0
