# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The analysis tools (`ppt-analysis ...`): policy statistics, calibration, sweeps, the score table,
plots and token maps. No timings are asserted."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from model_fixtures import tiny_config

from modeling_ppt_deit import PPTDeiTForImageClassification
from ppt_tools.analysis.__main__ import main
from ppt_tools.analysis.common import noise_batches
from ppt_tools.analysis.plots import pareto_front
from ppt_tools.analysis.policy import calibrate_threshold, collect_policy_records, overall_prune_fraction, policy_statistics
from ppt_tools.analysis.sweep import run_sweep, sweep_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


def test_sweep_on_tiny_model_writes_table_and_pngs(tiny_checkpoint, labelled_dataset, tmp_path):
    out = tmp_path / "sweep"
    main(["sweep", "--model_name_or_path", tiny_checkpoint, "--dataset_name", labelled_dataset, "--tokens_removed_values", "4", "8",
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
    assert main(["sweep", "--model_name_or_path", tiny_checkpoint, "--reduction_layer_sets", "1,7", "--no_speed",
                 "--tokens_removed_values", "8", "--output_dir", str(out), "--no_progress"]) == 2
    assert "reduction_layers" in capsys.readouterr().err
    assert not out.exists()


def test_sweep_and_calibration_leave_the_model_as_it_came():
    """Settings and mode: a model in training (one submodule left in eval by its owner) comes back so, and the
    measurements ran in eval mode (dropout on would make two passes differ)."""
    torch.manual_seed(0)
    model = PPTDeiTForImageClassification(tiny_config(prune_threshold=7e-5, hidden_dropout_prob=0.5)).train()
    model.classifier.eval()
    modes = {name: module.training for name, module in model.named_modules()}
    before = model.config.to_dict()
    points = sweep_grid([4, 8], [1e-4], [[1, 2], [0, 3]], ["ats", "entropy"])
    batches = noise_batches(model.config, 4, 4)
    rows = run_sweep(model, points, eval_batches=batches, speed=False, progress=False)
    assert rows == run_sweep(model, points, eval_batches=batches, speed=False, progress=False)
    assert len(rows) == len(points) and {row["final_tokens"] for row in rows} == {65, 57, 49}
    first = calibrate_threshold(model, batches, 0.5, progress=False)
    assert first == calibrate_threshold(model, batches, 0.5, progress=False)
    assert model.config.to_dict() == before
    assert {name: module.training for name, module in model.named_modules()} == modes


def test_score_table_equal_macs(tiny_checkpoint, labelled_dataset, tmp_path):
    out = tmp_path / "scores"
    main(["score-table", "--model_name_or_path", tiny_checkpoint, "--dataset_name", labelled_dataset, "--finetune_steps", "2",
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

    from ppt_tools.analysis.plots import pareto_plot

    rows = [{"x": 1.0, "y": 1.0, "policy": "a", "label": "a"}, {"x": 2.0, "y": 2.0, "policy": "b", "label": "b"}]
    path = pareto_plot(rows, "x", "y", str(tmp_path / "p.png"), "x", "y", lower_x_is_better=True)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    orange = (red > 230) & (green > 130) & (green < 200) & (blue > 60) & (blue < 140)  # C1 (#ff7f0e) at alpha 0.75
    assert orange.sum() > 20


@pytest.mark.parametrize("prune_threshold", [0.0, float("inf")])
def test_visualize_command_matches_the_model_record(tmp_path, prune_threshold, capsys):
    """Pruning only: r patches vanish per step; pooling only: nothing vanishes and the owners are the final tokens."""
    from PIL import Image

    image_path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(image_path)
    output = tmp_path / "map.png"
    assert main(["visualize", "--arch", "deit-tiny", "--image", str(image_path), "--output", str(output),
                 "--prune_threshold", str(prune_threshold)]) == 0
    assert Image.open(output).format == "PNG"
    printed = capsys.readouterr().out
    pruned_patches = int(printed.split("; ")[1].split(" of ")[0])
    # Pruning only keeps sizes at 1, so every removed token is one patch: 197 -> 147 -> 97 -> 49 (the last step is
    # clamped to r = 48) leaves 48 of the 196 patches.
    assert pruned_patches == (196 - 48 if prune_threshold == 0 else 0)
    assert ("pooled" in printed) == (prune_threshold != 0) and ("pruned (" in printed) == (prune_threshold == 0)


