# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Tests of the measurement tool (ppt_benchmark / benchmark.py). No timings are asserted."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification
from ppt_benchmark.accuracy import top_k_correct
from ppt_benchmark.calibrate import calibrate_threshold, collect_policy_records, overall_prune_fraction, policy_statistics
from ppt_benchmark.cli import main
from ppt_benchmark.cost import analytic_cost, flop_count, relative_difference
from ppt_benchmark.models import build_model, build_stock_model
from ppt_benchmark.plots import pareto_front
from ppt_benchmark.speed import TensorMemoryTracker, TimingStats, time_interleaved
from ppt_benchmark.sweep import sweep_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def deit_small_config(**ppt) -> PPTDeiTConfig:
    return PPTDeiTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                         image_size=224, patch_size=16, num_labels=1000, **ppt)


def tiny_config(**ppt) -> PPTDeiTConfig:
    settings = {"reduction_layers": [1, 2], "tokens_removed": 8, **ppt}
    return PPTDeiTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                         image_size=32, patch_size=4, num_labels=10, **settings)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt")
    PPTDeiTForImageClassification(tiny_config()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(24)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    data = datasets.Dataset.from_dict({"image": images, "label": [i % 10 for i in range(24)]}, features=features)
    path = tmp_path_factory.mktemp("data")
    datasets.DatasetDict({"train": data.select(range(16)), "validation": data.select(range(16, 24))}).save_to_disk(str(path))
    return str(path)


# ---- cost model --------------------------------------------------------------------------------------------------


def test_deit_small_macs_match_the_paper():
    baseline = analytic_cost(deit_small_config(reduction_layers=[]))
    ppt = analytic_cost(deit_small_config(reduction_layers=[3, 6, 9], tokens_removed=50))
    assert round(baseline.macs / 1e9, 2) == 4.60
    assert round(ppt.macs / 1e9, 2) == 2.94
    assert [n for n, _ in ppt.tokens_per_layer] == [197] * 4 + [147] * 3 + [97] * 3 + [49] * 2
    assert ppt.tokens_per_layer[3] == (197, 147) and ppt.tokens_per_layer[9] == (97, 49)
    assert baseline.flops == 2 * baseline.macs and baseline.compression_macs == 0


def test_cost_model_by_hand_on_one_layer():
    config = PPTDeiTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                           image_size=8, patch_size=4, num_labels=3, reduction_layers=[0], tokens_removed=1,
                           prune_threshold=0.0)
    cost = analytic_cost(config)
    n, m, d = 5, 4, 8  # 4 patches + CLS; r = 1
    assert cost.layers[0].macs == 4 * n * d * d + 2 * n * n * d + 2 * m * d * 32
    assert cost.patch_embedding_macs == 4 * 3 * 16 * 8 and cost.head_macs == 8 * 3
    assert cost.compression_macs == n * d  # tau = 0: CLS row only, no bipartite similarity


@pytest.mark.parametrize(
    "ppt",
    [
        {"reduction_layers": []},
        {"reduction_layers": [3, 6, 9], "tokens_removed": 50, "prune_threshold": 7e-5, "score_function": "ats"},
        {"reduction_layers": [3, 6, 9], "tokens_removed": 50, "prune_threshold": 0.0, "score_function": "entropy"},
    ],
    ids=["baseline", "ppt-ats", "prune-entropy"],
)
def test_flop_counter_agrees_with_cost_model_deit_small(ppt):
    torch.manual_seed(0)
    model = PPTDeiTForImageClassification(deit_small_config(**ppt)).eval()
    pixel_values = torch.randn(1, 3, 224, 224)
    cost = analytic_cost(model.config)
    counted = flop_count(model, pixel_values)
    assert relative_difference(counted.flops_per_image, cost.flops) < 0.01
    # with the compression step's small matmuls accounted, the count is exact
    assert counted.flops_per_image == cost.total_flops
    assert any("scaled_dot_product" in op for op in counted.by_operator)


def test_stock_flop_counter_misses_cpu_sdpa_so_we_register_it():
    """Without our formula for the CPU SDPA kernel, the counter would be >1% short: the check would fail."""
    torch.manual_seed(0)
    model = PPTDeiTForImageClassification(deit_small_config(reduction_layers=[])).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 224, 224))
    if not hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        pytest.skip("this torch has no CPU flash SDPA kernel")
    assert relative_difference(counter.get_total_flops(), analytic_cost(model.config).flops) > 0.01


# ---- models ------------------------------------------------------------------------------------------------------


def test_stock_comparator_has_the_same_weights():
    torch.manual_seed(0)
    model = PPTDeiTForImageClassification(tiny_config(reduction_layers=[])).eval()
    stock = build_stock_model(model)
    assert type(stock).__name__ == "ViTForImageClassification"
    assert stock.config._attn_implementation == "sdpa"
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(stock(pixel_values).logits, model(pixel_values).logits)


def test_named_architectures():
    model = build_model(arch="deit-tiny", image_size=384, num_labels=10)
    config = model.config
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (192, 3, 12)
    assert config.image_size == 384 and config.reduction_layers == [3, 6, 9] and config.tokens_removed == 50
    with pytest.raises(ValueError, match="deit-small"):
        build_model(arch="deit-huge")


# ---- speed and memory helpers ------------------------------------------------------------------------------------


def test_memory_tracker_counts_live_storages():
    tracker = TensorMemoryTracker()
    with tracker:
        a = torch.ones(1000, 1000)  # 4 MB
        b = a * 2  # 4 MB more
        del a
        c = b + 1  # 8 MB live again, peak stays 8 MB
        view = c.view(-1)  # a view allocates nothing
    assert tracker.peak == 8_000_000
    assert tracker.current == 8_000_000
    del b, c, view


def test_timing_stats_and_interleaving_order():
    calls = []
    timing = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, batch_size=4,
                              warmup=1, rounds=3, iterations=2, progress=False)
    # warm-up A B, then A B interleaved round by round, the order rotated every round (AB, BA, AB)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert len(timing["a"].images_per_second) == 3
    stats = TimingStats(8, 1, [10.0, 20.0, 30.0, 40.0, 50.0])
    assert stats.median == 30.0 and (stats.minimum, stats.maximum) == (10.0, 50.0)
    assert stats.iqr == (20.0, 40.0)
    assert stats.median_latency_ms == pytest.approx(1000 * 8 / 30)


def test_top_k_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 1])
    assert top_k_correct(logits, labels, 1) == 1
    assert top_k_correct(logits, labels, 2) == 2
    assert top_k_correct(logits, labels, 5) == 3  # k larger than the classes: everything is in the top k


def test_pareto_front():
    points = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (4.0, 70.0), (2.5, 40.0)]
    assert pareto_front(points, lower_x_is_better=True) == [0, 1, 3]
    assert pareto_front(points, lower_x_is_better=False) == [3]


# ---- policy statistics and calibration ---------------------------------------------------------------------------


def _noise_batches(count=2, size=8):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 32, 32, generator=generator), torch.zeros(size, dtype=torch.long)) for _ in range(count)]


def test_policy_statistics_follow_the_threshold():
    torch.manual_seed(0)
    model = PPTDeiTForImageClassification(tiny_config(prune_threshold=0.0)).eval()
    batches = _noise_batches()
    stats = policy_statistics(collect_policy_records(model, batches))
    assert [s["layer_index"] for s in stats] == [1, 2]
    assert all(s["fraction_pruned"] == 1.0 and s["num_samples"] == 16 for s in stats)
    assert stats[0]["tokens_before"] == 65 and stats[0]["tokens_after"] == 57
    model.configure_compression(prune_threshold=math.inf)
    assert all(s["fraction_pruned"] == 0.0 for s in policy_statistics(collect_policy_records(model, batches)))
    # a tau between the smallest and largest variance splits the samples
    records = collect_policy_records(model, batches)
    variances = torch.cat([entry["variance"] for entry in records.values()])
    model.configure_compression(prune_threshold=float(variances.median()))
    assert 0.0 < overall_prune_fraction(collect_policy_records(model, batches)) < 1.0


def test_calibration_hits_the_target_fraction():
    torch.manual_seed(0)
    model = PPTDeiTForImageClassification(tiny_config(prune_threshold=7e-5)).eval()
    batches = _noise_batches()
    result = calibrate_threshold(model, batches, 0.5, progress=False)
    assert model.config.prune_threshold == 7e-5  # restored
    assert abs(result.achieved_prune_fraction - 0.5) <= 1 / 32 + 1e-9  # 32 decisions: 16 samples x 2 layers
    model.configure_compression(prune_threshold=result.prune_threshold)
    assert overall_prune_fraction(collect_policy_records(model, batches)) == pytest.approx(result.achieved_prune_fraction)
    assert calibrate_threshold(model, batches, 1.0, progress=False).prune_threshold == 0.0
    assert math.isinf(calibrate_threshold(model, batches, 0.0, progress=False).prune_threshold)
    with pytest.raises(ValueError, match="target_prune_fraction"):
        calibrate_threshold(model, batches, 1.5)


# ---- sweeps ------------------------------------------------------------------------------------------------------


def test_sweep_grid_adds_reference_policies_once():
    points = sweep_grid([4, 8], [1e-4], [[1, 2]], ["ats", "entropy"])
    policies = [p.policy for p in points]
    assert policies[0] == "baseline"
    # per r: tau=1e-4 x 2 scores, tau=0 x 2 scores, tau=inf once (pooling ignores scores)
    assert len(points) == 1 + 2 * 5
    assert policies.count("pool only (ToMe)") == 2 and policies.count("prune only (top-k)") == 4


def test_sweep_on_tiny_model_writes_table_and_pngs(tiny_checkpoint, tiny_dataset, tmp_path):
    out = tmp_path / "sweep"
    main(["sweep", "--checkpoint", tiny_checkpoint, "--dataset", tiny_dataset, "--tokens_removed_values", "4", "8",
          "--prune_threshold_values", "1e-4", "--reduction_layer_sets", "1,2", "--score_functions", "ats", "cls_attention",
          "--batch_size", "4", "--warmup", "0", "--rounds", "1", "--output_dir", str(out), "--no_progress"])
    with open(out / "sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 + 2 * 5
    assert rows[0]["policy"] == "baseline" and rows[0]["final_tokens"] == "65"
    assert {row["final_tokens"] for row in rows[1:]} == {"57", "49"}
    macs = {row["tokens_removed"]: float(row["gmacs"]) for row in rows}
    assert macs["8"] < macs["4"] < macs["0"]
    assert all(0.0 <= float(row["top1"]) <= 100.0 and float(row["images_per_second"]) > 0 for row in rows)
    for name in ("pareto_macs.png", "pareto_throughput.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    data = json.loads((out / "sweep.json").read_text())
    assert len(data["rows"]) == len(rows)
    assert (out / "sweep.md").read_text().count("\n") == len(rows) + 2


def test_sweep_rejects_bad_setting_before_writing(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["sweep", "--checkpoint", tiny_checkpoint, "--reduction_layer_sets", "1,7", "--no_speed",
                 "--output_dir", str(out), "--no_progress"]) == 2
    assert "reduction_layers" in capsys.readouterr().err
    assert not out.exists()


# ---- the run command ---------------------------------------------------------------------------------------------


def test_run_reports_baseline_ppt_and_stock(tiny_checkpoint, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    main(["--checkpoint", tiny_checkpoint, "--dataset", tiny_dataset, "--batch_size", "2", "--warmup", "0",
          "--rounds", "2", "--latency_rounds", "1", "--latency_iterations", "1", "--output_dir", str(out), "--no_progress"])
    printed = capsys.readouterr().out
    assert "stock_sdpa" in printed and "ppt_vs_baseline" in printed
    report = json.loads((out / "benchmark_inference.json").read_text())
    models = report["models"]
    assert set(models) == {"baseline", "ppt", "stock_sdpa"}
    assert models["ppt"]["macs"] < models["baseline"]["macs"] == models["stock_sdpa"]["macs"]
    for entry in models.values():
        # exact once the compression step's matmuls are counted (on a model this small they are >1% of the cost)
        assert entry["counter_vs_cost_model_with_overhead"] == 0
        assert len(entry["throughput"]["images_per_second"]) == 2
        assert entry["peak_memory_mib"] > 0
        assert entry["accuracy"]["num_samples"] == 8
    # same weights, compression off: the stock model classifies exactly as our baseline
    assert models["stock_sdpa"]["accuracy"] == models["baseline"]["accuracy"]
    assert models["ppt"]["tokens_per_layer"][-1] == [49, 49]
    ratios = report["ratios"]["ppt_vs_baseline"]
    assert ratios["macs_reduction_pct"] == pytest.approx(100 * (1 - models["ppt"]["macs"] / models["baseline"]["macs"]))
    assert "speedup" in ratios and "top1_change_points" in ratios
    with open(out / "benchmark_inference.csv") as handle:
        assert [row["model"] for row in csv.DictReader(handle)] == ["baseline", "ppt", "stock_sdpa"]


def test_run_train_mode_cost_and_memory(tiny_checkpoint, tmp_path):
    out = tmp_path / "train"
    # remove half the tokens before the first MLP (prune only): the memory saving must show even on a tiny model
    main(["--checkpoint", tiny_checkpoint, "--mode", "train", "--batch_size", "4", "--warmup", "0", "--rounds", "1",
          "--reduction_layers", "0", "--tokens_removed", "32", "--prune_threshold", "0", "--no_stock",
          "--output_dir", str(out), "--no_progress"])
    report = json.loads((out / "benchmark_train.json").read_text())
    baseline, ppt = report["models"]["baseline"], report["models"]["ppt"]
    assert set(report["models"]) == {"baseline", "ppt"}
    # backward costs about twice the forward: a training step is ~3x the forward FLOPs
    assert 2.5 < baseline["counter_train_step_flops"] / baseline["counter_flops"] < 3.5
    assert ppt["counter_train_step_flops"] < baseline["counter_train_step_flops"]
    # training keeps activations for backward: fewer tokens, less memory
    assert ppt["peak_memory_mib"] < baseline["peak_memory_mib"]


def test_run_rejects_bad_options(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--arch", "deit-huge"])
    assert main(["--checkpoint", tiny_checkpoint, "--batch_size", "0", "--output_dir", str(tmp_path / "x")]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_score_table_equal_macs(tiny_checkpoint, tiny_dataset, tmp_path):
    out = tmp_path / "scores"
    main(["score-table", "--checkpoint", tiny_checkpoint, "--dataset", tiny_dataset, "--finetune_steps", "2",
          "--finetune_batch_size", "8", "--calibrate_prune_fraction", "0.5", "--output_dir", str(out), "--no_progress"])
    rows = json.loads((out / "score_table.json").read_text())["rows"]
    assert [row["setting"] for row in rows] == ["baseline", "ats", "cls_attention", "entropy"]
    assert len({row["gmacs"] for row in rows[1:]}) == 1 and rows[1]["gmacs"] < rows[0]["gmacs"]
    assert all("top1_finetuned" in row for row in rows)
    # each score function got its own tau (their score variances live on different scales)
    taus = [row["prune_threshold"] for row in rows[1:]]
    assert len(set(taus)) == 3 and all(0 < tau < math.inf for tau in taus)
    assert "Command: `" in (out / "score_table.md").read_text()


def test_pareto_plot_draws_every_group(tmp_path):
    """The second group is drawn hollow: its orange (C1) edges must reach the PNG, not vanish with the face."""
    import numpy as np
    from PIL import Image

    from ppt_benchmark.plots import pareto_plot

    rows = [{"x": 1.0, "y": 1.0, "policy": "a", "label": "a"}, {"x": 2.0, "y": 2.0, "policy": "b", "label": "b"}]
    path = pareto_plot(rows, "x", "y", str(tmp_path / "p.png"), "x", "y", lower_x_is_better=True)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    orange = (red > 230) & (green > 130) & (green < 200) & (blue > 60) & (blue < 140)  # C1 (#ff7f0e) at alpha 0.75
    assert orange.sum() > 20


def test_patch_owners_by_hand():
    from ppt_benchmark.visualize import patch_owners

    # CLS + 4 patches (2x2 grid) -> CLS, token A = patches {0, 3}, token B = patch {1}; patch 2 was pruned.
    sources = torch.tensor([[1, 0, 0, 0, 0],
                            [0, 1, 0, 0, 1],
                            [0, 0, 1, 0, 0]])
    assert patch_owners(sources, 1, (2, 2)).tolist() == [[0, 1], [-1, 0]]
    with pytest.raises(ValueError, match="grid"):
        patch_owners(sources, 1, (3, 3))


def test_token_map_marks_pruned_patches_even_on_black():
    """A black 2x2-patch image: pruned patch (1, 0) is crossed out in red; kept patches stay black."""
    from PIL import Image

    from ppt_benchmark.visualize import PRUNED_COLOUR, draw_token_map

    image = Image.new("RGB", (8, 8))
    canvas = draw_token_map(image, torch.tensor([[0, 0], [-1, 0]]), scale=1)
    token_map = np.asarray(canvas)[:, 8 + 8:]  # right of the original and the 8 px gap
    assert tuple(token_map[4, 0]) == PRUNED_COLOUR and tuple(token_map[7, 3]) == PRUNED_COLOUR  # the diagonals
    assert not token_map[:4].any()  # the top row (token 0) is black and unmarked


@pytest.mark.parametrize("prune_threshold", [0.0, float("inf")])
def test_visualize_command_matches_the_model_record(tmp_path, prune_threshold, capsys):
    """Pruning only: r patches vanish per step; pooling only: nothing vanishes and the owners are the final tokens."""
    from PIL import Image

    from ppt_benchmark.cli import main

    image_path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(image_path)
    output = tmp_path / "map.png"
    assert main(["visualize", "--arch", "deit-tiny", "--image", str(image_path), "--output", str(output),
                 "--prune_threshold", str(prune_threshold)]) == 0
    assert Image.open(output).size == (448 * 2 + 8, 448)
    printed = capsys.readouterr().out
    pruned_patches = int(printed.split("; ")[1].split(" of ")[0])
    # Pruning only keeps sizes at 1, so every removed token is one patch: 197 -> 147 -> 97 -> 49 (the last step is
    # clamped to r = 48) leaves 48 of the 196 patches.
    assert pruned_patches == (196 - 48 if prune_threshold == 0 else 0)
    assert ("pooled" in printed) == (prune_threshold != 0) and ("pruned (" in printed) == (prune_threshold == 0)


def test_no_progress_also_silences_transformers_bars(tiny_checkpoint, capsys):
    from transformers.utils import logging as transformers_logging

    try:
        assert main(["--checkpoint", tiny_checkpoint, "--cost_only", "--no_progress"]) == 0
        assert "Loading weights" not in capsys.readouterr().err
    finally:
        transformers_logging.enable_progress_bar()
    assert main(["--checkpoint", tiny_checkpoint, "--cost_only"]) == 0
    assert "Loading weights" in capsys.readouterr().err  # the bar this test silences does exist
