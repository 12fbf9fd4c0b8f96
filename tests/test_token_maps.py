# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""ppt_tools.analysis.token_maps: the per-layer patch states read from hand-built compression records (a 4x4 grid whose
merges and prunes are chosen by hand), the pixels of a rendered panel, the figure's panels and captions, and the same
maps from the real model's source tracking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from model_fixtures import pixels, tiny_model

from modeling_ppt_deit import PPTDeiTConfig
from modeling_ppt_deit.modeling_ppt_deit import PPTCompressionRecord
from ppt_tools.analysis.token_maps import (
    PRUNED_BEFORE_COLOUR,
    PRUNED_HERE_COLOUR,
    assign_colours,
    layer_maps,
    patch_owners,
    render_layer,
    token_map_figure,
)


# A 4x4 patch grid (16 patches + CLS), r = 4 at layers 0 and 1.
GRID_CONFIG = dict(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16, image_size=16,
                   patch_size=4, num_labels=3, reduction_layers=[0, 1], tokens_removed=4)


def sources_of(groups: list[list[int]], num_patches: int = 16) -> torch.Tensor:
    """`[1, 1 + len(groups), 1 + num_patches]` source map: CLS, then one token per group of patch indices."""
    sources = torch.zeros(1 + len(groups), 1 + num_patches)
    sources[0, 0] = 1
    for token, group in enumerate(groups, start=1):
        sources[token, [1 + patch for patch in group]] = 1
    return sources.unsqueeze(0)


# Layer 0 pools: patches (0, 1), (2, 3), (4, 5), (8, 9) become one token each (16 -> 12 patch tokens).
LAYER0_GROUPS = [[0, 1], [2, 3], [4, 5], [6], [7], [8, 9], [10], [11], [12], [13], [14], [15]]
# Layer 1 prunes 4 tokens: the merged (0, 1) and patches 13, 14, 15 (12 -> 8 patch tokens).
LAYER1_GROUPS = [[2, 3], [4, 5], [6], [7], [8, 9], [10], [11], [12]]


class Outputs:
    """What the functions read of a model output: `compression` and `logits`."""

    def __init__(self, records, batch=1):
        self.compression = tuple(records)
        self.logits = torch.zeros(batch, 3)


def hand_built_outputs():
    return Outputs([
        PPTCompressionRecord(score_variance=torch.tensor([1e-6]), pruned=torch.tensor([False]), layer_index=0,
                             tokens_before=17, tokens_after=13, token_sources=sources_of(LAYER0_GROUPS)),
        PPTCompressionRecord(score_variance=torch.tensor([3e-4]), pruned=torch.tensor([True]), layer_index=1,
                             tokens_before=13, tokens_after=9, token_sources=sources_of(LAYER1_GROUPS)),
    ])


def as_grid(patches) -> np.ndarray:
    mask = np.zeros(16, dtype=bool)
    mask[list(patches)] = True
    return mask.reshape(4, 4)


def test_patch_owners_by_hand():
    # CLS + 4 patches (2x2 grid): token 0 = patches {0, 3}, token 1 = patch {1}; patch 2 was pruned.
    sources = torch.tensor([[1, 0, 0, 0, 0],
                            [0, 1, 0, 0, 1],
                            [0, 0, 1, 0, 0]])
    assert patch_owners(sources, 1, (2, 2)).tolist() == [[0, 1], [-1, 0]]
    with pytest.raises(ValueError, match="grid"):
        patch_owners(sources, 1, (3, 3))


def test_layer_maps_read_merges_and_prunes_from_the_records():
    config = PPTDeiTConfig(**GRID_CONFIG, prune_threshold=1e-4)
    first, second = layer_maps(hand_built_outputs(), config)
    assert (first.policy, second.policy) == ("pooled", "pruned")
    assert (first.tokens_removed, second.tokens_removed) == (4, 4) and not first.clamped
    np.testing.assert_array_equal(first.merged, as_grid([0, 1, 2, 3, 4, 5, 8, 9]))
    np.testing.assert_array_equal(first.pruned, as_grid([]))
    np.testing.assert_array_equal(second.pruned, as_grid([0, 1, 13, 14, 15]))
    np.testing.assert_array_equal(second.pruned_here, as_grid([0, 1, 13, 14, 15]))
    np.testing.assert_array_equal(second.merged, as_grid([2, 3, 4, 5, 8, 9]))
    # Each merged pair shares one token; different pairs have different tokens.
    owners = second.owners.ravel()
    assert owners[2] == owners[3] and owners[4] == owners[5] and owners[8] == owners[9]
    assert len({owners[2], owners[4], owners[8]}) == 3
    # A group keeps its colour from one layer to the next; the colours within a layer differ.
    first_colours, second_colours = assign_colours([first, second])
    assert second_colours[owners[4]] == first_colours[first.owners.ravel()[4]]
    assert len(set(second_colours.values())) == len(second_colours) == 3


def test_layer_maps_refuse_records_without_sources():
    config = PPTDeiTConfig(**GRID_CONFIG)
    record = PPTCompressionRecord(layer_index=0, tokens_before=17, tokens_after=13)
    with pytest.raises(ValueError, match="track_sources"):
        layer_maps(Outputs([record]), config)
    with pytest.raises(ValueError, match="output_compression"):
        layer_maps(object(), config)


def test_rendered_panel_crosses_pruned_patches_and_tints_merged_ones():
    """A white image: a patch pruned at this layer carries a red cross on grey, one pruned before a dark-grey cross,
    a merged pair one shared tint, a patch alone stays white."""
    config = PPTDeiTConfig(**GRID_CONFIG)
    outputs = hand_built_outputs()
    first, second = layer_maps(outputs, config)
    colours = assign_colours([first, second])[1]
    image = np.full((16, 16, 3), 255, dtype=np.uint8)
    earlier = type(second)(**{**vars(second), "pruned_here": as_grid([13, 14, 15])})  # (0, 1) pruned "before"
    panel = render_layer(image, earlier, colours, patch_pixels=24).astype(int)

    def patch(index):
        row, column = divmod(index, 4)
        return panel[row * 24:(row + 1) * 24, column * 24:(column + 1) * 24]

    def has_colour(block, colour):
        return bool((np.abs(block - np.asarray(colour)).sum(-1) <= 3).any())

    assert has_colour(patch(15), PRUNED_HERE_COLOUR) and not has_colour(patch(15), PRUNED_BEFORE_COLOUR)
    assert has_colour(patch(0), PRUNED_BEFORE_COLOUR) and not has_colour(patch(0), PRUNED_HERE_COLOUR)
    assert abs(int(patch(15)[12, 3].mean()) - 175 - 0.2 * 127) <= 2  # grey away from the cross
    assert (patch(10)[3:-3, 3:-3] == 255).all()  # alone: the image as it is (inside the outlines)
    tint_2, tint_3, tint_4 = patch(2)[12, 12], patch(3)[12, 12], patch(4)[12, 12]
    assert (tint_2 == tint_3).all() and not (tint_2 == tint_4).all() and not (tint_2 == 255).all()
    # A dark outline between patches 10 and 11 (two tokens); none between patches 2 and 3 (one token).
    assert (panel[2 * 24 + 12, 3 * 24] < 60).all()
    assert (panel[12, 3 * 24] == tint_2).all()


def test_figure_has_an_input_and_one_panel_per_reduction_layer_for_each_image():
    config = PPTDeiTConfig(**GRID_CONFIG, prune_threshold=1e-4)
    outputs = hand_built_outputs()
    outputs.compression = tuple(
        PPTCompressionRecord(**{**vars(record), "score_variance": record.score_variance.repeat(2),
                                "pruned": record.pruned.repeat(2), "token_sources": record.token_sources.repeat(2, 1, 1)})
        for record in outputs.compression)
    outputs.logits = torch.zeros(2, 3)
    images = [np.zeros((16, 16, 3), dtype=np.uint8)] * 2
    figure = token_map_figure(images, outputs, config, image_titles=["first", "second"])
    assert isinstance(figure, Figure)
    drawn = [axis for axis in figure.axes if axis.images]
    assert len(drawn) == 2 * (len(config.reduction_layers) + 1)
    titles = [axis.get_title() for axis in drawn]
    assert titles[0].startswith("first") and titles[3].startswith("second")
    assert "POOLED" in titles[1] and "<" in titles[1] and "τ 0.0001" in titles[1]
    assert "PRUNED" in titles[2] and "≥" in titles[2] and "13 → 9 tokens" in titles[2]
    assert "τ = 0.0001" in figure._suptitle.get_text() and "score function: ats" in figure._suptitle.get_text()
    assert len(figure.legends) == 1 and len(figure.legends[0].get_texts()) == 4
    with pytest.raises(ValueError, match="3 images for a batch of 2"):
        token_map_figure(images + images[:1], outputs, config)


def test_maps_of_the_real_model_follow_its_source_tracking():
    """The tiny model (8x8 patches, r = 8 at layers 1 and 2): each panel's pruned and merged patches are those of the
    record's own source map, the last panel is the model's final one, and tokens per panel add up."""
    model = tiny_model()
    batch = pixels(batch=2)
    for threshold in (0.0, float("inf")):
        with torch.no_grad(), model.compression_settings(track_sources=True, prune_threshold=threshold):
            outputs = model(batch, output_compression=True)
        for index in range(2):
            maps = layer_maps(outputs, model.config, index)
            assert [layer.layer_index for layer in maps] == [1, 2]
            for layer in maps:
                assert layer.policy == ("pruned" if threshold == 0.0 else "pooled")
                kept_tokens = len(np.unique(layer.owners[layer.owners >= 0]))
                assert kept_tokens == layer.tokens_after - model.config.num_protected_tokens
                assert int(layer.pruned.sum()) == (8 * (layer.layer_index) if threshold == 0.0 else 0)
                assert int(layer.merged.sum()) == (0 if threshold == 0.0 else int(
                    (outputs.compression[layer.layer_index - 1].token_sizes[index, 1:] > 1).float()
                    @ outputs.compression[layer.layer_index - 1].token_sizes[index, 1:]))
            final = patch_owners(outputs.token_sources[index], 1, (8, 8)).numpy()
            np.testing.assert_array_equal(maps[-1].owners, final)
    figure = token_map_figure([np.zeros((32, 32, 3), np.uint8)] * 2, outputs, model.config)
    assert len([axis for axis in figure.axes if axis.images]) == 2 * 3
