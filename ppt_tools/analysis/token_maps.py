# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Token maps: what PPT did to an image, layer by layer, drawn over the image.

After each reduction layer every input patch is in one of three states, read from the layer's compression record
(`PPTCompressionRecord.token_sources`, present when the model runs with `track_sources=True`):

- **alone**: the token that carries it holds only this patch (nothing was merged into it);
- **merged**: its token holds several patches, pooled together at this layer or an earlier one;
- **pruned**: no token carries it any more; it was dropped at this layer or an earlier one.

`layer_maps` turns the records of one image into one `LayerMap` per reduction layer, `render_layer` paints one of
them over the image (merged tokens each in their own colour, a thin outline around every token, pruned patches
greyed and crossed: red when dropped at that layer), and `token_map_figure` lays out a batch as a grid with the
settings, each layer's policy and score variance against tau, and a legend. The analysis command
(`ppt-analysis visualize`) and the demo app (`ppt_tools.demo`) both draw with these.

    with model.compression_settings(track_sources=True):
        outputs = model(pixel_values, output_compression=True)
    figure = token_map_figure(model_view(pixel_values, processor), outputs, model.config)
    figure.savefig("token_maps.png")

Only torch, numpy, PIL and matplotlib are used (no pyplot: figures carry no global state, so threads may draw).
"""

from __future__ import annotations

import colorsys
import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from PIL import Image, ImageDraw


PRUNED_HERE_COLOUR = (215, 38, 38)  # the cross on a patch pruned at the panel's layer
PRUNED_BEFORE_COLOUR = (105, 105, 105)  # the cross on a patch pruned at an earlier layer
OUTLINE_COLOUR = (25, 25, 25)
MERGED_TINT = 0.55  # weight of a merged token's colour over the image (the rest is the image)


# ---- per-layer patch states ------------------------------------------------------------------------------------------


def patch_owners(sources: torch.Tensor, num_protected: int, grid: tuple[int, int]) -> torch.Tensor:
    """For one image, the token that covers each input patch.

    Args:
        sources: `[N_out, N_in]` 0/1 map of one image (`outputs.token_sources[b]` or a record's
            `token_sources[b]`), protected tokens first on both axes. Protected tokens (CLS, DIST) never take part
            in merging, so they only cover themselves.
        num_protected: CLS (and DIST) count.
        grid: `(rows, columns)` of patches.

    Returns:
        `[rows, columns]` long tensor: index of the non-protected token (0-based) covering the patch, -1 where the
        patch was pruned.
    """
    patch_sources = sources[num_protected:, num_protected:].float()  # [patch tokens, input patches]
    if patch_sources.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"sources cover {patch_sources.shape[1]} patches, but the grid {grid} has {grid[0] * grid[1]}")
    owners = patch_sources.argmax(dim=0)
    owners[patch_sources.sum(dim=0) == 0] = -1
    return owners.view(grid)


@dataclass
class LayerMap:
    """The patches of one image after one reduction layer.

    `owners[i, j]` is the token (0-based among the non-protected ones) that carries patch `(i, j)` after this layer,
    -1 if the patch was pruned here or before; `pruned_here` marks the patches this layer dropped. `policy` is
    "pruned" or "pooled", or None where the clamp (at most half the non-protected tokens per step) left nothing to
    remove; `score_variance` is the variance of the image's significance scores that chose it.
    """

    layer_index: int
    tokens_before: int
    tokens_after: int
    tokens_removed_configured: int
    owners: np.ndarray
    pruned_here: np.ndarray
    policy: str | None
    score_variance: float | None

    @property
    def tokens_removed(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def clamped(self) -> bool:
        """The clamp removed fewer tokens than configured (too few tokens left at this layer)."""
        return self.tokens_removed < self.tokens_removed_configured

    @property
    def pruned(self) -> np.ndarray:
        """`[rows, columns]` bool: patches no token carries any more (pruned here or before)."""
        return self.owners < 0

    @property
    def merged(self) -> np.ndarray:
        """`[rows, columns]` bool: patches whose token carries more than one patch."""
        counts = np.bincount(self.owners[self.owners >= 0].ravel(), minlength=1)
        sizes = np.where(self.owners >= 0, counts[np.clip(self.owners, 0, None)], 0)
        return sizes > 1


def patch_grid(config, pixel_values: torch.Tensor | None = None) -> tuple[int, int]:
    """`(rows, columns)` of patches: of `pixel_values` `[B, C, H, W]` when given, else of `config.image_size`."""
    patch_h, patch_w = _pair(config.patch_size)
    height, width = pixel_values.shape[-2:] if pixel_values is not None else _pair(config.image_size)
    return int(height) // patch_h, int(width) // patch_w


def layer_maps(outputs, config, index: int = 0, grid: tuple[int, int] | None = None) -> list[LayerMap]:
    """One `LayerMap` per reduction layer for image `index` of a batch.

    Args:
        outputs: the model's output of a pass with `output_compression=True` and `config.track_sources` on.
        config: the model's config (`num_protected_tokens`, `tokens_removed_at`, the patch grid).
        index: which image of the batch.
        grid: `(rows, columns)` of patches (default: that of `config.image_size`).

    Raises:
        ValueError: the records carry no source maps (source tracking was off) or there are none.
    """
    records = getattr(outputs, "compression", None)
    if records is None:
        raise ValueError("the outputs carry no compression records: run the model with output_compression=True")
    grid = patch_grid(config) if grid is None else grid
    layers = []
    covered = np.ones(grid, dtype=bool)
    for record in records:
        if record.token_sources is None:
            raise ValueError(
                "the compression records carry no token_sources: run the model with source tracking on, e.g. "
                "`with model.compression_settings(track_sources=True): model(pixel_values, output_compression=True)`"
            )
        owners = patch_owners(record.token_sources[index].detach().cpu(), config.num_protected_tokens, grid).numpy()
        pruned = None if record.pruned is None else bool(record.pruned[index])
        layers.append(
            LayerMap(
                layer_index=record.layer_index,
                tokens_before=record.tokens_before,
                tokens_after=record.tokens_after,
                tokens_removed_configured=config.tokens_removed_at(record.layer_index),
                owners=owners,
                pruned_here=covered & (owners < 0),
                policy=None if pruned is None else ("pruned" if pruned else "pooled"),
                score_variance=None if record.score_variance is None else float(record.score_variance[index]),
            )
        )
        covered = owners >= 0
    return layers


# ---- colours ---------------------------------------------------------------------------------------------------------


def group_colour(number: int) -> tuple[int, int, int]:
    """The `number`-th colour of merged tokens: hues a golden angle apart, in three saturation / value levels, so
    that colours drawn in sequence stay far apart."""
    hue = (0.08 + number * 0.618033988749895) % 1.0
    saturation, value = ((0.75, 0.95), (0.5, 1.0), (0.85, 0.8))[(number // 7) % 3]
    return tuple(int(round(255 * channel)) for channel in colorsys.hsv_to_rgb(hue, saturation, value))


def assign_colours(layers: Sequence[LayerMap]) -> list[dict[int, tuple[int, int, int]]]:
    """Per layer, a colour for each merged token (token index -> RGB), distinct within the layer.

    A token keeps the colour of the earlier token it overlaps most where that colour is still free, so a group that
    grows from layer to layer keeps its colour; larger tokens choose first.
    """
    assigned: list[dict[int, tuple[int, int, int]]] = []
    next_colour = 0
    previous_owners, previous_colours = None, {}
    for layer in layers:
        colours: dict[int, tuple[int, int, int]] = {}
        merged = layer.merged
        tokens = Counter(layer.owners[merged].ravel().tolist())
        for token, _ in sorted(tokens.items(), key=lambda item: (-item[1], item[0])):
            chosen = None
            if previous_owners is not None:
                overlap = Counter(previous_owners[layer.owners == token].ravel().tolist())
                for earlier, _ in overlap.most_common():
                    colour = previous_colours.get(earlier)
                    if colour is not None and colour not in colours.values():
                        chosen = colour
                        break
            if chosen is None:
                chosen = group_colour(next_colour)
                next_colour += 1
            colours[token] = chosen
        assigned.append(colours)
        previous_owners, previous_colours = layer.owners, colours
    return assigned


# ---- drawing one panel -------------------------------------------------------------------------------------------------


def model_view(pixel_values: torch.Tensor, processor=None) -> list[np.ndarray]:
    """The images as the model sees them (`[H, W, 3]` uint8 each): `pixel_values` `[B, 3, H, W]` with the image
    processor's normalisation undone (its `image_mean` / `image_std`, and `rescale_factor`; without a processor,
    ImageNet statistics). The patches of a token map line up with these, crops included."""
    pixels = pixel_values.detach().float().cpu()
    mean, std, scale = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 1 / 255
    if processor is not None:
        if getattr(processor, "do_normalize", True):
            mean, std = list(processor.image_mean), list(processor.image_std)
        else:
            mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        scale = processor.rescale_factor if getattr(processor, "do_rescale", True) else 1.0
    pixels = pixels * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    pixels = (pixels / scale).round().clamp(0, 255).to(torch.uint8)
    return [image.permute(1, 2, 0).numpy() for image in pixels]


def _as_array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)


def enlarge(image, grid: tuple[int, int], patch_pixels: int) -> np.ndarray:
    """The image at `patch_pixels` per patch (nearest neighbour: the pixels the model saw, only bigger)."""
    size = (grid[1] * patch_pixels, grid[0] * patch_pixels)
    return np.asarray(Image.fromarray(_as_array(image)).resize(size, Image.NEAREST), dtype=np.uint8)


def render_layer(image, layer: LayerMap, colours: dict[int, tuple[int, int, int]], patch_pixels: int = 32) -> np.ndarray:
    """One token map: `image` (what the model saw, `[H, W, 3]` uint8 or PIL) at `patch_pixels` per patch, with

    - patches of merged tokens tinted with their token's colour (`MERGED_TINT` of it over the image);
    - patches kept alone shown as they are;
    - pruned patches grey and crossed, red if `layer` pruned them, dark grey if an earlier layer did;
    - a thin dark outline around every token.

    Returns `[rows * patch_pixels, columns * patch_pixels, 3]` uint8.
    """
    owners = layer.owners
    rows, columns = owners.shape
    base = enlarge(image, (rows, columns), patch_pixels).astype(np.float32)
    owner_pixels = np.repeat(np.repeat(owners, patch_pixels, axis=0), patch_pixels, axis=1)
    merged_pixels = np.repeat(np.repeat(layer.merged, patch_pixels, axis=0), patch_pixels, axis=1)
    painted = base.copy()
    for token, colour in colours.items():
        mask = (owner_pixels == token) & merged_pixels
        painted[mask] = (1 - MERGED_TINT) * base[mask] + MERGED_TINT * np.asarray(colour, dtype=np.float32)
    pruned = owner_pixels < 0
    luminance = base[pruned] @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    painted[pruned] = (175 + 0.2 * (luminance - 128))[:, None]  # light grey, a trace of the image left
    canvas = Image.fromarray(painted.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)

    width = max(1, patch_pixels // 12)
    inset = max(1, patch_pixels // 6)
    for row, column in zip(*np.nonzero(owners < 0)):
        left, top = column * patch_pixels + inset, row * patch_pixels + inset
        right, bottom = (column + 1) * patch_pixels - 1 - inset, (row + 1) * patch_pixels - 1 - inset
        colour = PRUNED_HERE_COLOUR if layer.pruned_here[row, column] else PRUNED_BEFORE_COLOUR
        draw.line([(left, top), (right, bottom)], fill=colour, width=width)
        draw.line([(left, bottom), (right, top)], fill=colour, width=width)

    # Outlines: a line wherever two neighbouring patches belong to different tokens (pruned patches belong to none,
    # so a run of them has no lines inside), and around the panel.
    height_px, width_px = rows * patch_pixels, columns * patch_pixels
    for row in range(rows):
        for column in range(columns):
            here = owners[row, column]
            if column + 1 < columns and here != owners[row, column + 1] and max(here, owners[row, column + 1]) >= 0:
                x = (column + 1) * patch_pixels
                draw.line([(x, row * patch_pixels), (x, (row + 1) * patch_pixels - 1)], fill=OUTLINE_COLOUR)
            if row + 1 < rows and here != owners[row + 1, column] and max(here, owners[row + 1, column]) >= 0:
                y = (row + 1) * patch_pixels
                draw.line([(column * patch_pixels, y), ((column + 1) * patch_pixels - 1, y)], fill=OUTLINE_COLOUR)
    draw.rectangle([(0, 0), (width_px - 1, height_px - 1)], outline=OUTLINE_COLOUR)
    return np.asarray(canvas)


def format_threshold(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"


def panel_caption(layer: LayerMap, prune_threshold: float, num_protected: int = 1) -> str:
    """Three short lines under a panel: the layer and the policy it chose, the score variance against tau, the
    token count (and the clamp, when it removed fewer tokens than configured)."""
    if layer.policy is None:
        left = layer.tokens_before - num_protected
        return (f"after layer {layer.layer_index}: nothing removed\n"
                f"r = {layer.tokens_removed_configured} clamped to 0\n({left} patch tokens left, at most half go)")
    relation = "≥" if layer.policy == "pruned" else "<"
    clamp = f" (r = {layer.tokens_removed_configured} clamped)" if layer.clamped else ""
    return (f"after layer {layer.layer_index}: {layer.policy.upper()}\n"
            f"score variance {layer.score_variance:.2g} {relation} τ {format_threshold(prune_threshold)}\n"
            f"{layer.tokens_before} → {layer.tokens_after} tokens{clamp}")


def settings_line(config) -> str:
    layers = list(config.reduction_layers)
    removed = config.tokens_removed
    return (f"r = {removed} tokens removed at layers {', '.join(map(str, layers))} (0-based)  ·  "
            f"τ = {format_threshold(config.prune_threshold)}  ·  score function: {config.score_function}")


EXPLANATION = (
    "At each reduction layer an image chooses: if the variance of its token significance scores is ≥ τ it is PRUNED "
    "(its r least significant tokens are dropped), otherwise it is POOLED (r tokens are merged into similar ones)."
)


def legend_handles(patch_colour=(0.6, 0.6, 0.6)) -> tuple[list, list[str]]:
    """Legend entries of a token map figure: handles and labels."""
    def rgb(colour):
        return tuple(channel / 255 for channel in colour)

    grey = rgb((175, 175, 175))
    outline = rgb(OUTLINE_COLOUR)
    alone = Patch(facecolor=(0.93, 0.93, 0.93), edgecolor=outline, linewidth=0.8)
    merged = tuple(Patch(facecolor=rgb(group_colour(k)), edgecolor=outline, linewidth=0.8) for k in range(3))
    pruned_here = (Patch(facecolor=grey, edgecolor=outline, linewidth=0.8),
                   Line2D([], [], marker="x", color=rgb(PRUNED_HERE_COLOUR), linestyle="none", markersize=7, mew=1.8))
    pruned_before = (Patch(facecolor=grey, edgecolor=outline, linewidth=0.8),
                     Line2D([], [], marker="x", color=rgb(PRUNED_BEFORE_COLOUR), linestyle="none", markersize=7,
                            mew=1.8))
    handles = [alone, merged, pruned_here, pruned_before]
    labels = ["one patch, nothing merged into it", "merged token: its patches in one colour",
              "pruned at this layer", "pruned at an earlier layer"]
    return handles, labels


# ---- the figure --------------------------------------------------------------------------------------------------------


def token_map_figure(
    images: Sequence,
    outputs,
    config,
    *,
    grid: tuple[int, int] | None = None,
    image_titles: Sequence[str] | None = None,
    title: str | None = None,
    patch_pixels: int | None = None,
    panel_inches: float = 2.3,
    dpi: int = 100,
) -> Figure:
    """What PPT did to a batch of images: one row per image, the input then one panel per reduction layer.

    Args:
        images: the images as the model saw them, one per sample (`[H, W, 3]` uint8 arrays or PIL images at the
            model's input size; `model_view(pixel_values, processor)` makes them from `pixel_values`).
        outputs: the model's output with `output_compression=True` and source tracking on (see the module).
        config: the model's config (the settings in the title, the patch grid).
        grid: `(rows, columns)` of patches (default: that of `config.image_size`).
        image_titles: one line per image above its input panel (e.g. the prediction).
        title: the figure's title (default: "What PPT did to the image, layer by layer").
        patch_pixels: pixels per patch in the panels (default: panels about 256 px wide).
        panel_inches: width of one panel.
        dpi: the figure's resolution.

    Returns:
        A matplotlib `Figure` (no pyplot): `figure.savefig(path)` writes it, notebooks display it.
    """
    grid = patch_grid(config) if grid is None else grid
    logits = getattr(outputs, "logits", None)
    if logits is not None and len(images) != logits.shape[0]:
        raise ValueError(f"got {len(images)} images for a batch of {logits.shape[0]}")
    patch_pixels = patch_pixels or max(4, math.ceil(256 / grid[1]))
    per_image = [layer_maps(outputs, config, index, grid) for index in range(len(images))]
    num_rows, num_columns = len(images), 1 + max((len(maps) for maps in per_image), default=0)

    panel_height = panel_inches * grid[0] / grid[1]
    width = num_columns * panel_inches + 0.4
    # The footer holds the legend (one row of four entries, or two of two on a narrow figure) above the explanation.
    legend_columns = 4 if width > 8 else 2
    explanation = _wrap(EXPLANATION, int(width * 15))
    explanation_inches = 0.08 + 0.14 * (explanation.count("\n") + 1)
    legend_inches = 0.24 * (4 // legend_columns)
    caption_inches, header_inches, footer_inches = 0.62, 0.45, explanation_inches + 0.08 + legend_inches
    height = header_inches + num_rows * (panel_height + caption_inches) + footer_inches
    figure = Figure(figsize=(width, height), dpi=dpi)
    figure.subplots_adjust(left=0.2 / width, right=1 - 0.2 / width, top=1 - (header_inches + caption_inches) / height,
                           bottom=footer_inches / height, wspace=0.06, hspace=caption_inches / panel_height)
    axes = figure.subplots(num_rows, num_columns, squeeze=False)
    for row, (image, maps) in enumerate(zip(images, per_image)):
        axis = axes[row][0]
        axis.imshow(enlarge(image, grid, patch_pixels), interpolation="nearest")
        heading = f"input ({grid[0]}×{grid[1]} patches)"
        if image_titles is not None:
            heading = f"{image_titles[row]}\n{heading}"
        axis.set_title(heading, fontsize=8)
        for column, (layer, colours) in enumerate(zip(maps, assign_colours(maps)), start=1):
            axes[row][column].imshow(render_layer(image, layer, colours, patch_pixels), interpolation="nearest")
            axes[row][column].set_title(panel_caption(layer, config.prune_threshold, config.num_protected_tokens),
                                        fontsize=7.5)
        for axis in axes[row]:
            axis.set_axis_off()

    figure.suptitle(f"{title or 'What PPT did to the image, layer by layer'}\n{settings_line(config)}", fontsize=9.5,
                    y=1 - 0.08 / height, va="top")
    handles, labels = legend_handles()
    figure.legend(handles, labels, loc="lower center", ncol=legend_columns, fontsize=7.5, frameon=False,
                  handler_map={tuple: HandlerTuple(ndivide=None, pad=0.2)},
                  bbox_to_anchor=(0.5, (explanation_inches + 0.02) / height), borderaxespad=0.0)
    figure.text(0.5, 0.08 / height, explanation, ha="center", va="bottom", fontsize=7, color="#333333")
    return figure


def figure_pixels(figure: Figure) -> np.ndarray:
    """The figure drawn at its own dpi, `[height, width, 3]` uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _wrap(text: str, columns: int) -> str:
    return "\n".join(textwrap.wrap(text, max(40, columns)))


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


__all__ = [
    "LayerMap",
    "assign_colours",
    "enlarge",
    "figure_pixels",
    "group_colour",
    "layer_maps",
    "legend_handles",
    "model_view",
    "panel_caption",
    "patch_grid",
    "patch_owners",
    "render_layer",
    "settings_line",
    "token_map_figure",
]
