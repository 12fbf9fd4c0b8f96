# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The cost model, the timing and memory tools (ppt_eval) and benchmark.py. No timings are asserted."""

from __future__ import annotations

import csv
import json
import os
import sys
import time

import pytest
import torch
from model_fixtures import DEIT_S, tiny_config
from torch.utils.flop_counter import FlopCounterMode

from ppt_tools import benchmark
from ppt_tools.benchmark import main
from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification
from ppt_tools.core.cost import analytic_cost, flop_count, relative_difference
from ppt_tools.core.models import build_named_model, build_stock_model
from ppt_tools.core import timing
from ppt_tools.core.results import describe_machine, machine_done, machine_info
from ppt_tools.core.timing import TensorMemoryTracker, TimingStats, time_interleaved


def deit_small_config(**ppt) -> PPTDeiTConfig:
    return PPTDeiTConfig(**DEIT_S, num_labels=1000, **ppt)


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
@pytest.mark.slow
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


@pytest.mark.slow
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


def test_named_architectures_get_the_authors_schedule():
    model = build_named_model("deit-tiny", image_size=384, num_labels=10)
    config = model.config
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (192, 3, 12)
    assert config.image_size == 384 and config.reduction_layers == [3, 6, 9] and config.tokens_removed == 50
    assert {name: getattr(config, name) for name in PPTDeiTConfig.compression_defaults()} == \
        PPTDeiTConfig.compression_defaults()  # no settings given: the config's own (the authors' DeiT-S schedule)
    with pytest.raises(ValueError, match="deit-small"):
        build_named_model("deit-huge")


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
    # the settle pause comes before each measurement and is not timed
    started = time.perf_counter()
    settled = time_interleaved({"a": lambda: None, "b": lambda: None}, batch_size=1, warmup=0, rounds=2, progress=False,
                               settle_seconds=0.05)
    assert time.perf_counter() - started >= 4 * 0.05
    assert all(rate > 200 for stats in settled.values() for rate in stats.images_per_second)  # not 1 / 0.05 = 20
    stats = TimingStats(8, 1, [10.0, 20.0, 30.0, 40.0, 50.0])
    assert stats.median == 30.0 and (stats.minimum, stats.maximum) == (10.0, 50.0)
    assert stats.iqr == (20.0, 40.0)
    assert stats.median_latency_ms == pytest.approx(1000 * 8 / 30)


# ---- the noise verdict (synthetic timings: nothing here is timed) --------------------------------------------------

TIGHT = [100.0, 101.0, 99.0, 100.0, 102.0]  # quartiles 100 and 101 around a median of 100: 1%
WIDE = [26.5, 549.5, 100.0, 300.0, 60.0]  # the range: IQR 240 of a median of 100


def test_a_wide_spread_is_noisy_a_tight_one_is_not():
    quiet = dict(threads=2, cpus=8, load_before=0.3, load_after=2.4)
    tight, wide = TimingStats(8, 1, TIGHT, **quiet), TimingStats(8, 1, WIDE, **quiet)
    assert tight.spread == pytest.approx(1 / 100) and not tight.noisy and tight.noise == []
    assert wide.spread == pytest.approx((300 - 60) / 100) and wide.noisy
    assert wide.noise == ["rounds spread 240% of the median (over 10%)"]
    # two rounds: max - min over the median; one round has no spread to judge
    assert TimingStats(8, 1, [100.0, 130.0]).noise == ["rounds spread 26% of the median (over 10%)"]
    assert TimingStats(8, 1, [100.0]).noise == ["a single round: its spread is unknown"]
    data = wide.to_dict()  # the JSON: the existing fields, and the verdict beside them
    assert data["median"] == 100.0 and (data["q1"], data["q3"]) == (60.0, 300.0) and data["images_per_second"] == WIDE
    assert data["noisy"] is True and data["noise"] == wide.noise and data["spread"] == pytest.approx(2.4)
    assert (data["threads"], data["cpus"], data["load_before"], data["load_after"]) == (2, 8, 0.3, 2.4)


@pytest.mark.parametrize("load_before, load_after, busy", [
    (6.4, 7.0, False),  # 6.4 runnable besides a 2-thread measurement on 8 CPUs, 6 free: within the 0.5 of slack
    (6.6, 7.0, "6.60"),  # over it: busy
    (0.2, 8.8, "6.80"),  # load that came during the rounds: 8.8 after, less the measurement's own 2 threads
    (0.2, 8.4, False),  # 8.4 after is the measurement's 2 threads and 6.4 besides: not busy
    (None, None, False),  # no load average (Windows): no load verdict
])
def test_high_load_makes_a_timing_noisy(load_before, load_after, busy):
    stats = TimingStats(8, 1, TIGHT, threads=2, cpus=8, load_before=load_before, load_after=load_after)
    assert stats.noisy == bool(busy)
    if busy:
        assert stats.noise == [f"machine busy: load average {busy} besides the measurement, with 2 thread(s) on 8 CPUs"]


def test_time_interleaved_records_threads_cpus_and_the_load_around_the_rounds(monkeypatch):
    readings = iter([0.25, 100.0])
    monkeypatch.setattr(timing, "load_average", lambda: next(readings))
    stats = time_interleaved({"a": lambda: None}, batch_size=1, warmup=1, rounds=3, progress=False, threads=3)["a"]
    assert (stats.threads, stats.cpus, stats.load_before, stats.load_after) == (3, os.cpu_count(), 0.25, 100.0)
    assert stats.noisy and any(reason.startswith("machine busy: load average 97.00") for reason in stats.noise)


def test_the_machine_record_holds_the_load_before_and_after():
    info = machine_info("cpu")
    assert info["cpu"] and info["torch_threads"] == torch.get_num_threads()
    assert info["load_average_before"] == pytest.approx(os.getloadavg()[0], abs=5)
    assert "load_average_after" not in info
    machine_done(info)
    assert isinstance(info["load_average_after"], float)
    assert f"load {info['load_average_before']:.2f} -> {info['load_average_after']:.2f}" in describe_machine(info)


def synthetic_models(ppt_rounds: list[float], baseline_rounds: list[float]) -> dict:
    quiet = dict(threads=2, cpus=8, load_before=0.1, load_after=2.1)

    def entry(macs: int, rounds: list[float]) -> dict:
        return {"parameters": 5_000_000, "macs": macs, "flops": 2 * macs, "tokens_per_layer": [[197, 147]],
                "throughput": TimingStats(8, 1, rounds, **quiet).to_dict()}

    return {"baseline": entry(4_000_000_000, baseline_rounds), "ppt": entry(3_000_000_000, ppt_rounds)}


def test_a_ratio_of_a_noisy_timing_is_noisy_and_the_table_marks_it():
    tight = benchmark.compute_ratios(synthetic_models(TIGHT, TIGHT))["ppt_vs_baseline"]
    assert tight["speedup"] == pytest.approx(1.0) and tight["speedup_noise"] == [] and tight["noisy"] is False
    models = synthetic_models(WIDE, TIGHT)
    noisy = benchmark.compute_ratios(models)["ppt_vs_baseline"]
    assert noisy["noisy"] is True and noisy["speedup_noise"] == ["ppt: rounds spread 240% of the median (over 10%)"]
    results = {"mode": "inference", "models": models, "ratios": {"ppt_vs_baseline": noisy}}
    headers, rows = benchmark.table(results)
    baseline_row, ppt_row = (dict(zip(headers, row)) for row in rows)
    assert baseline_row["img/s median"] == "100.0"  # tight: unmarked
    assert ppt_row["img/s median"] == "~100.0" and ppt_row["speed-up"] == "~1.00"
    lines = benchmark.notes(results)
    assert "~ noisy ppt throughput: rounds spread 240% of the median (over 10%)" in lines
    assert any(line.startswith("ppt_vs_baseline: ") and "throughput speed-up ~1.00x" in line for line in lines)
    assert not any("baseline throughput" in line for line in lines)


def test_benchmark_reaches_the_compression_step_through_the_models_public_api():
    import ast

    tree = ast.parse(open(benchmark.__file__).read())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    model_modules = {name for name in imported if name.startswith("modeling_ppt_deit")}
    assert model_modules == {"modeling_ppt_deit"}


# ---- the run command ---------------------------------------------------------------------------------------------


def test_run_reports_baseline_ppt_and_stock(tiny_checkpoint, labelled_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    main(["--model_name_or_path", tiny_checkpoint, "--dataset_name", labelled_dataset, "--batch_size", "2", "--warmup", "0",
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
        assert entry["accuracy"]["num_samples"] == 8 and entry["accuracy"]["split"] == "validation"
    # same weights, compression off: the stock model classifies exactly as our baseline
    assert models["stock_sdpa"]["accuracy"] == models["baseline"]["accuracy"]
    assert models["ppt"]["tokens_per_layer"][-1] == [49, 49]
    ratios = report["ratios"]["ppt_vs_baseline"]
    assert ratios["macs_reduction_pct"] == pytest.approx(100 * (1 - models["ppt"]["macs"] / models["baseline"]["macs"]))
    assert "speedup" in ratios and "top1_change_points" in ratios
    # every timing records its spread and verdict, the ratios theirs, the machine the load around the run
    for entry in models.values():
        for figure in (entry["throughput"], entry["latency_ms"]):
            assert {"spread", "noisy", "noise"} <= set(figure) and figure["noisy"] == bool(figure["noise"])
        assert entry["throughput"]["threads"] == report["machine"]["torch_threads"]
    assert ratios["noisy"] == bool(ratios["speedup_noise"] or ratios["latency_speedup_noise"])
    assert {"load_average_before", "load_average_after", "cpu", "torch_threads"} <= set(report["machine"])
    with open(out / "benchmark_inference.csv") as handle:
        assert [row["model"] for row in csv.DictReader(handle)] == ["baseline", "ppt", "stock_sdpa"]
    assert (out / "benchmark_inference.md").read_text().startswith("| model |")


def test_run_train_mode_cost_and_memory(tiny_checkpoint, tmp_path):
    out = tmp_path / "train"
    # remove half the tokens before the first MLP (prune only): the memory saving must show even on a tiny model
    main(["--model_name_or_path", tiny_checkpoint, "--mode", "train", "--batch_size", "4", "--warmup", "0", "--rounds", "1",
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


def test_step_cost_mode_times_the_step_against_its_layer(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "step"
    assert main(["--model_name_or_path", tiny_checkpoint, "--mode", "step_cost", "--batch_size", "2", "--rounds", "1",
                 "--warmup", "0", "--no_progress", "--output_dir", str(out)]) == 0
    step = json.loads((out / "benchmark_step_cost.json").read_text())["step_cost"]
    assert (step["layer_index"], step["tokens"], step["tokens_removed"]) == (1, 65, 8)  # the first reduction layer
    assert step["step_share_of_layer"] == pytest.approx(
        (step["attention_statistics_ms"] + step["compression_step_ms"]) / step["layer_ms"])
    # the layer's halves at every token count of the tiny schedule (65 tokens, then r=8 at layers 1 and 2)
    assert sorted(step["layer_ms_by_tokens"], key=int) == ["49", "57", "65"]
    halves = {name: timing["median_latency_ms"] for name, timing in step["timings"].items() if "_half@" in name}
    assert step["encoder_layers_ms"]["uncompressed"] == pytest.approx(
        4 * (halves["attention_half@65"] + halves["mlp_half@65"]))
    assert step["encoder_layers_ms"]["ppt_with_free_step"] == pytest.approx(
        halves["attention_half@65"] * 2 + halves["attention_half@57"] + halves["attention_half@49"]
        + halves["mlp_half@65"] + halves["mlp_half@57"] + halves["mlp_half@49"] * 2)
    assert step["layer_macs_ratio"] > 1
    out = capsys.readouterr().out
    assert "scores + policy + prune + pool" in out and "layer at 57 tokens, no step" in out
    assert "free-step ceiling" in out


def test_the_layer_fit_recovers_a_fixed_and_a_per_token_cost():
    fit = benchmark.fit_fixed_and_per_token({197: 0.5 + 0.01 * 197, 147: 0.5 + 0.01 * 147, 49: 0.5 + 0.01 * 49})
    assert fit["fixed_ms"] == pytest.approx(0.5) and fit["per_token_ms"] == pytest.approx(0.01)
    assert fit["fixed_share_at_most_tokens"] == pytest.approx(0.5 / 2.47)
    assert benchmark.fit_fixed_and_per_token({197: 3.0}) is None


@pytest.mark.parametrize("fit, printed", [
    ({"fixed_ms": 0.4, "per_token_ms": 0.0136, "fixed_share_at_most_tokens": 0.13}, "0.40 ms + 13.60 us x n"),
    ({"fixed_ms": -2.2, "per_token_ms": 0.0197, "fixed_share_at_most_tokens": -1.35}, "too noisy"),
    ({"fixed_ms": 2.1, "per_token_ms": -0.0037, "fixed_share_at_most_tokens": 1.51}, "too noisy"),
])
def test_step_cost_notes_print_the_fit_only_when_it_makes_sense(fit, printed):
    step = {"layer_index": 3, "tokens": 197, "tokens_removed": 50, "layer_fit": fit,
            "timings": {"layer": {"images_per_second": [1.0] * 5}},
            "encoder_layers_ms": {"uncompressed": 37.3, "ppt_with_free_step": 25.4},
            "free_step_ceiling": 37.3 / 25.4, "layer_macs_ratio": 1.58}
    lines = benchmark.notes({"mode": "step_cost", "batch_size": 1, "step_cost": step})
    assert any(printed in line for line in lines)
    assert any("at most 1.47x" in line for line in lines)


def test_a_checkpoint_without_compression_is_measured_with_the_default_schedule(tmp_path, capsys):
    """A model trained with compression off has nothing to compare with its baseline: the benchmark measures the
    authors' schedule on it (and says what it needs when that schedule does not fit)."""
    small = tmp_path / "small"
    build_named_model("deit-tiny", image_size=224, num_labels=10, reduction_layers=[]).save_pretrained(small)
    assert main(["--model_name_or_path", str(small), "--cost_only", "--no_stock", "--no_flop_check", "--no_progress"]) == 0
    assert "PPT: reduction_layers=[3, 6, 9] tokens_removed=50" in capsys.readouterr().out
    tiny = tmp_path / "tiny"
    PPTDeiTForImageClassification(tiny_config(reduction_layers=[])).save_pretrained(tiny)
    assert main(["--model_name_or_path", str(tiny), "--cost_only", "--no_progress"]) == 2
    assert "has compression off and the default schedule does not fit it" in capsys.readouterr().err


# ---- the ONNX Runtime backend ----------------------------------------------------------------------------------------

ONNX_RUN = ["--batch_size", "2", "--warmup", "0", "--rounds", "2", "--latency_rounds", "1", "--latency_iterations", "1",
            "--threads", "1", "--no_progress", "--no_flop_check", "--no_memory"]


@pytest.mark.slow
def test_onnxruntime_backend_times_ppt_and_stock_graphs_interleaved(tiny_checkpoint, tmp_path, capsys):
    """PPT and the stock model are exported (same weights), checked against PyTorch and timed in ONNX Runtime in the
    same rounds as the eager models; a second run reuses the files, a changed tau re-exports the PPT graph only."""
    pytest.importorskip("onnxruntime")
    onnx_dir, out = tmp_path / "onnx", tmp_path / "run"  # the folder is created
    argv = ["--model_name_or_path", tiny_checkpoint, "--backend", "onnxruntime", "--onnx_dir", str(onnx_dir), *ONNX_RUN]
    assert main([*argv, "--output_dir", str(out)]) == 0
    assert "ppt_onnx_vs_stock_onnx" in capsys.readouterr().out
    report = json.loads((out / "benchmark_inference.json").read_text())
    models = report["models"]
    assert set(models) == {"baseline", "ppt", "stock_sdpa", "ppt_onnx", "stock_onnx"}
    for name in ("ppt_onnx", "stock_onnx"):
        assert len(models[name]["throughput"]["images_per_second"]) == 2 and models[name]["latency_ms"]["median"] > 0
    assert models["ppt_onnx"]["macs"] == models["ppt"]["macs"] < models["stock_onnx"]["macs"]
    assert {"speedup", "latency_speedup"} <= set(report["ratios"]["ppt_onnx_vs_stock_onnx"])
    onnx = report["onnxruntime"]
    assert onnx["intra_op_threads"] == 1 and onnx["providers"][0] == "CPUExecutionProvider" and onnx["opset"] == 18
    assert "ms pause before each measurement" in report["timing_method"]
    assert all(difference < 1e-4 for difference in onnx["max_abs_logits_difference_vs_pytorch"].values())
    assert not any(entry["reused"] for entry in onnx["files"].values())
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["ppt.onnx", "stock.onnx"]
    with open(out / "benchmark_inference.csv") as handle:
        assert [row["model"] for row in csv.DictReader(handle)][-2:] == ["ppt_onnx", "stock_onnx"]

    assert main([*argv, "--output_dir", str(out), "--overwrite_output_dir"]) == 0  # the same results file again
    files = json.loads((out / "benchmark_inference.json").read_text())["onnxruntime"]["files"]
    assert files["ppt_onnx"]["reused"] and files["stock_onnx"]["reused"]
    assert main([*argv, "--output_dir", str(out), "--overwrite_output_dir", "--prune_threshold", "0"]) == 0
    files = json.loads((out / "benchmark_inference.json").read_text())["onnxruntime"]["files"]
    assert not files["ppt_onnx"]["reused"] and files["stock_onnx"]["reused"]


def test_onnxruntime_backend_refuses_what_it_cannot_do(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    base = ["--model_name_or_path", tiny_checkpoint, "--backend", "onnxruntime", *ONNX_RUN]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "ppt.onnx").write_bytes(b"someone else's file")
    cases = [
        (["--mode", "train"], "times inference; it cannot run with --mode train"),
        (["--cost_only"], "cannot run with --cost_only"),
        (["--no_stock"], "drop --no_stock"),
        (["--dtype", "bf16"], "exports fp32 graphs; got --dtype bf16"),
        (["--onnx_opset", "17"], "opset 17 is not supported"),
        (["--onnx_dir", str(foreign / "ppt.onnx")], "ppt.onnx' exists and is not a folder"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, message
    assert main(["--model_name_or_path", tiny_checkpoint, "--onnx_graph_report", *ONNX_RUN]) == 2
    assert "belong to --backend onnxruntime" in capsys.readouterr().err
    pytest.importorskip("onnxruntime")
    assert main([*base, "--onnx_dir", str(foreign)]) == 2  # a file it did not write is not replaced
    assert "was not written by benchmark.py" in capsys.readouterr().err
    assert (foreign / "ppt.onnx").read_bytes() == b"someone else's file" and len(list(foreign.iterdir())) == 1
    # without the extra: one line naming the install command (eager runs never import onnxruntime)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(base) == 2
    assert 'onnxruntime not installed): pip install ".[onnx]"' in capsys.readouterr().err


def test_eager_benchmark_does_not_import_onnx():
    """benchmark.py runs without the onnx extra: importing it and parsing an eager run imports none of it."""
    import subprocess

    code = ("import sys; from ppt_tools import benchmark; from ppt_tools.core.arguments import parse_into; "
            "parse_into(benchmark.BenchmarkArguments, ['--arch', 'deit-tiny'], 'benchmark.py'); "
            "print(sorted(m for m in ('onnx', 'onnxscript', 'onnxruntime') if m in sys.modules))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
