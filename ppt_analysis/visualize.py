# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Draw what PPT did to one image: which patches were pruned, which were pooled together.

`patch_owners` turns a model's `token_sources` into a patch grid that says, for every input patch, which final
token carries it (or -1 when it was pruned). `draw_token_map` paints that grid over the image: each final token's
patches in their mean colour, pruned patches dark, borders between tokens.

    python -m ppt_analysis visualize --checkpoint outputs/digits --image photo.png --output token_map.png
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from ppt_eval.arguments import MachineArguments, ModelSourceArguments, PPTArguments
from ppt_eval.preprocessing import load_image_processor
from ppt_eval.results import atomic_path

from .common import load_placed_model


def patch_owners(sources: torch.Tensor, num_protected: int, grid: tuple[int, int]) -> torch.Tensor:
    """For one image, the final token that covers each input patch.

    Args:
        sources: `[N_out, N_in]` 0/1 map of one image (`outputs.token_sources[b]`), protected tokens first on both
            axes. Protected tokens (CLS, DIST) never take part in merging, so they only cover themselves.
        num_protected: CLS (and DIST) count.
        grid: `(rows, columns)` of patches.

    Returns:
        `[rows, columns]` long tensor: index of the final non-protected token (0-based) covering the patch, -1 where
        the patch was pruned.
    """
    patch_sources = sources[num_protected:, num_protected:].float()  # [final patch tokens, input patches]
    if patch_sources.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"sources cover {patch_sources.shape[1]} patches, but the grid {grid} has {grid[0] * grid[1]}")
    owners = patch_sources.argmax(dim=0)
    owners[patch_sources.sum(dim=0) == 0] = -1
    return owners.view(grid)


PRUNED_COLOUR = (220, 40, 40)


def draw_token_map(image: Image.Image, owners: torch.Tensor, scale: int = 1) -> Image.Image:
    """The image (already at the model's input size) beside its token map, enlarged `scale` times.

    Each final token's patches are filled with their mean colour, pruned patches are darkened and crossed out in
    red (so that they show on dark backgrounds too), and white lines separate patches of different tokens.
    """
    rows, columns = owners.shape
    width, height = image.size
    patch_h, patch_w = height // rows, width // columns
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    painted = pixels.copy()
    owner_grid = owners.numpy()
    for token in np.unique(owner_grid):
        mask = np.kron(owner_grid == token, np.ones((patch_h, patch_w), dtype=bool))
        if token < 0:
            painted[mask] = pixels[mask] * 0.2
        else:
            painted[mask] = pixels[mask].mean(axis=0)
    token_map = Image.fromarray(painted.clip(0, 255).astype(np.uint8))
    original = image.convert("RGB")
    if scale != 1:
        size = (width * scale, height * scale)
        token_map, original = token_map.resize(size, Image.NEAREST), original.resize(size, Image.NEAREST)
    draw = ImageDraw.Draw(token_map)
    step_h, step_w = patch_h * scale, patch_w * scale
    for row in range(rows):
        for column in range(columns):
            if owner_grid[row, column] < 0:
                left, top = column * step_w, row * step_h
                right, bottom = left + step_w - 1, top + step_h - 1
                draw.line([(left, top), (right, bottom)], fill=PRUNED_COLOUR)
                draw.line([(left, bottom), (right, top)], fill=PRUNED_COLOUR)
            if column + 1 < columns and owner_grid[row, column] != owner_grid[row, column + 1]:
                x = (column + 1) * step_w
                draw.line([(x, row * step_h), (x, (row + 1) * step_h)], fill=(255, 255, 255))
            if row + 1 < rows and owner_grid[row, column] != owner_grid[row + 1, column]:
                y = (row + 1) * step_h
                draw.line([(column * step_w, y), ((column + 1) * step_w, y)], fill=(255, 255, 255))
    canvas = Image.new("RGB", (original.width * 2 + 8, original.height), (255, 255, 255))
    canvas.paste(original, (0, 0))
    canvas.paste(token_map, (original.width + 8, 0))
    return canvas


# Extensions --output may have, and the PIL format each is written in (those this PIL can write).
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                  ".webp": "WEBP"}


def output_formats() -> dict[str, str]:
    Image.init()
    return {ext: name for ext, name in OUTPUT_FORMATS.items() if name in Image.SAVE}


def load_image(path: str) -> Image.Image:
    """The RGB image at `path`; `FileNotFoundError` / `ValueError` naming the path when it is none."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--image {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"--image {path!r} is a folder; give one image file")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as error:  # PIL's UnidentifiedImageError, a truncated file, no permission
        raise ValueError(f"--image {path!r} is not an image PIL can read ({error})") from None


def check_output(path: str) -> str:
    """Check --output before any work: a known image extension, in a folder that exists. Returns the PIL format."""
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


def save_image_atomically(image: Image.Image, path: str, image_format: str) -> None:
    """Write via a temporary file in the same folder, so a failure never leaves half an image."""
    with atomic_path(path) as temporary:
        image.save(temporary, format=image_format)


@dataclass
class VisualizeArguments(MachineArguments, PPTArguments, ModelSourceArguments):
    """Draw which patches one image pruned and which it pooled together, beside the image."""

    image: str | None = field(default=None, metadata={"help": "An image file.", "required": True})
    output: str = field(default="token_map.png", metadata={
        "help": "The picture to write, side by side: the image | its token map (.png, .jpg, ...)."})

    def validate(self) -> None:
        check_output(self.output)  # bad paths fail here, before the model loads
        load_image(self.image)


def run(args: VisualizeArguments) -> int:
    image_format = check_output(args.output)
    image = load_image(args.image)
    model, device = load_placed_model(args)
    model.configure_compression(track_sources=True)
    config = model.config
    processor = load_image_processor(args.checkpoint, config.image_size)  # its own, or resize + ImageNet stats
    pixel_values = processor(images=image, return_tensors="pt").pixel_values
    with torch.no_grad():
        outputs = model(pixel_values.to(device=device, dtype=next(model.parameters()).dtype), output_compression=True)
    patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
    owners = patch_owners(outputs.token_sources[0].cpu(), config.num_protected_tokens, grid)
    shown = image.resize((grid[1] * patch, grid[0] * patch), Image.BICUBIC)
    scale = max(1, 448 // shown.width)
    save_image_atomically(draw_token_map(shown, owners, scale=scale), args.output, image_format)
    for step in outputs.compression:
        if step.pruned is None:
            print(f"layer {step.layer_index}: {step.tokens_before} tokens, too few left to remove any")
            continue
        policy = "pruned" if bool(step.pruned[0]) else "pooled"
        print(f"layer {step.layer_index}: {step.tokens_before} -> {step.tokens_after} tokens, {policy} "
              f"(score variance {float(step.score_variance[0]):.3g} vs tau {config.prune_threshold:g})")
    predicted = int(outputs.logits[0].argmax())
    label = config.id2label.get(predicted, str(predicted))
    print(f"prediction: {label}; {int((owners < 0).sum())} of {owners.numel()} patches pruned, "
          f"{len(torch.unique(owners[owners >= 0]))} tokens left; wrote {args.output}")
    return 0
