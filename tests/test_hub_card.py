# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The model card: metadata and model-index parse, numbers equal the result files, usage code runs as written."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from huggingface_hub import ModelCard, metadata_load

from hub_fixtures import ALL_RESULTS, BENCHMARK, REPO_ID, TRAINING_INFO, china_photo, make_tmpdir, run_python
from hub_fixtures import trained_export
from ppt_tools.export.card import EXAMPLE_IMAGE_URL, normalize_results, pin_usage


def _table_row(card_text: str, label_start: str) -> list[str]:
    line = next(line for line in card_text.splitlines() if line.startswith(f"| {label_start}"))
    return [cell.strip() for cell in line.strip().strip("|").split("|")][1:]


def test_card_metadata_parses_with_model_index():
    export = trained_export()
    readme = export.folder / "README.md"
    metadata = metadata_load(readme)
    assert metadata["pipeline_tag"] == "image-classification"
    assert metadata["library_name"] == "transformers"
    assert metadata["license"] == "apache-2.0"
    assert metadata["base_model"] == TRAINING_INFO["base_model"]
    assert metadata["datasets"] == [TRAINING_INFO["dataset"]]
    assert {"vision", "image-classification", "token-pruning", "token-merging", "ppt", "deit"} <= set(metadata["tags"])
    # A 10-class CIFAR-10 model exported without example images: no widget examples (the Hub's ImageNet photos would
    # not fit its task; tests/test_space_publish.py checks a digits model's own examples).
    assert "widget" not in metadata

    card = ModelCard.load(readme)
    (result,) = card.data.eval_results  # top-1 only: no result file has top-5
    assert result.task_type == "image-classification"
    assert result.dataset_type == TRAINING_INFO["dataset"] and result.dataset_split == TRAINING_INFO["eval_split"]
    assert result.metric_type == "accuracy"
    assert result.metric_value == ALL_RESULTS["eval_accuracy"]
    assert metadata["model-index"][0]["results"][0]["metrics"][0]["value"] == ALL_RESULTS["eval_accuracy"]


def test_card_numbers_equal_the_result_files():
    export = trained_export()
    text = (export.folder / "README.md").read_text()
    ppt = BENCHMARK["ppt"]
    baseline = BENCHMARK["baseline"]
    # Independent formatting of the fixture numbers: percent with 2 decimals, M-scaled MACs, 1-decimal img/s.
    assert _table_row(text, "**PPT") == [
        f"{ALL_RESULTS['eval_accuracy'] * 100:.2f}%",
        "not measured",
        f"{ppt['params'] / 1e3:.2f} k",
        f"{ppt['macs'] / 1e6:.2f} MMACs",
        f"{2 * ppt['macs'] / 1e6:.2f} MFLOPs",
        f"{ppt['throughput']:.1f} img/s",
    ]
    assert _table_row(text, "Baseline") == [
        f"{baseline['accuracy'] * 100:.2f}%",
        "not measured",
        f"{baseline['params'] / 1e3:.2f} k",
        f"{baseline['macs'] / 1e6:.2f} MMACs",
        f"{2 * baseline['macs'] / 1e6:.2f} MFLOPs",
        f"{baseline['throughput']:.1f} img/s",
    ]
    assert BENCHMARK["hardware"] in text and f"batch size {BENCHMARK['throughput_batch_size']}" in text
    assert f"Speed-up: {ppt['throughput'] / baseline['throughput']:.2f}x" in text
    assert "`all_results.json`" in text and "`benchmark.json`" in text
    # The training table shows what was given, and marks what was not.
    assert "| Epochs | 2 |" in text and "| Learning rate | 0.001 |" in text and "| Seed | not recorded |" in text

    stored = json.loads((export.folder / "results.json").read_text())
    assert stored["raw"] == {"all_results.json": ALL_RESULTS, "benchmark.json": BENCHMARK}
    assert stored["results"]["accuracy"] == ALL_RESULTS["eval_accuracy"]
    assert stored["results"]["baseline_macs"] == baseline["macs"]


def test_card_states_settings_citations_and_pinning():
    export = trained_export()
    text = (export.folder / "README.md").read_text()
    config = export.model.config
    assert f"| `reduction_layers` (0-based) | {config.reduction_layers} |" in text
    assert f"| `tokens_removed` per reduction layer | {config.tokens_removed} |" in text
    assert "| `score_function` | `ats` |" in text
    assert "65 tokens, 57 after layer 1, 49 after layer 2" in text  # 8x8 patches + CLS, r = 8 twice
    for key in ("@article{wu2023ppt", "@inproceedings{bolya2023tome", "@inproceedings{touvron2021deit"):
        assert key in text
    assert "trust_remote_code=True" in text and "pin `revision`" in text
    assert "## Limitations" in text


def test_missing_measurements_are_shown_as_missing(tmp_path):
    from ppt_tools.export.card import build_model_card

    config = trained_export().model.config
    card = build_model_card(config, normalize_results({"eval_accuracy": 0.5}), {}, stock_class="ViTForImageClassification",
                            num_parameters=1000)
    ppt_row = _table_row(card.text, "**PPT")
    assert ppt_row[0] == "50.00%" and ppt_row[1:] == ["not measured"] * 5
    assert _table_row(card.text, "Baseline") == ["not measured"] * 6
    assert card.data.eval_results is None  # no dataset given: no model-index entry can be formed
    assert "Throughput measured" not in card.text


def test_normalize_results_maps_aliases_nested_files_and_rejects_bad_values():
    assert normalize_results({"eval_accuracy": 0.7, "eval_top5_accuracy": 0.9, "gmacs": 2.94, "device": "H100",
                              "baseline_eval_accuracy": 0.8, "baseline_gmacs": 4.6}) == {
        "accuracy": 0.7, "top5_accuracy": 0.9, "macs": pytest.approx(2.94e9), "hardware": "H100",
        "baseline_accuracy": 0.8, "baseline_macs": pytest.approx(4.6e9),
    }
    assert normalize_results({"ppt": {"throughput": 10}, "baseline": {"throughput": 5}}) == {
        "throughput": 10, "baseline_throughput": 5
    }
    with pytest.raises(ValueError, match="'accuracy'"):
        normalize_results({"accuracy": "0.7"})
    with pytest.raises(ValueError, match="baseline_macs"):
        normalize_results({"baseline_macs": float("nan")})


def test_pin_usage_rewrites_repo_and_revision():
    text = (trained_export().folder / "README.md").read_text()
    pinned = pin_usage(text, "someone/other", "0123abcd" * 5)
    assert REPO_ID not in pinned and pinned.count('repo_id = "someone/other"') == 2
    assert pinned.count(f'revision = "{"0123abcd" * 5}"') == 2 and 'revision = "main"' not in pinned
    assert 'model="someone/other"' in pinned


RUN_CARD_SNIPPETS = textwrap.dedent(
    """
    import sys
    snippets = sys.argv[1:]
    for index, code in enumerate(snippets):
        print(f"--- snippet {index}", flush=True)
        exec(compile(code, f"<card snippet {index}>", "exec"), {"__name__": "__main__"})
    """
)


@pytest.mark.slow
def test_card_usage_code_runs_as_written_offline():
    """Each python block of the card runs in a fresh offline process, with only the repo id and the image URL
    pointed at local copies (the folder, a real photo)."""
    export = trained_export()
    text = (export.folder / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(snippets) == 3
    image_path = make_tmpdir("ppt-card-") / "china.jpg"
    china_photo().save(image_path)
    local = [s.replace(f'"{REPO_ID}"', json.dumps(str(export.folder))).replace(EXAMPLE_IMAGE_URL, str(image_path))
             for s in snippets]
    assert all(REPO_ID not in s and EXAMPLE_IMAGE_URL not in s for s in local)
    done = run_python(RUN_CARD_SNIPPETS, args=local)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    labels = set(export.model.config.id2label.values())
    assert lines[1] in labels  # the first snippet prints the predicted label ...
    assert re.fullmatch(r"layer 1: 65 -> 57 tokens \((pruned|pooled)\)", lines[2])  # ... and the compression
    assert re.fullmatch(r"layer 2: 57 -> 49 tokens \((pruned|pooled)\)", lines[3])


def test_train_py_result_keys_are_read():
    """train.py's all_results.json names the compression-off run `eval_baseline_*` and the PPT cost `ppt_gmacs`."""
    from ppt_tools.export.card import normalize_results

    results = normalize_results({
        "eval_accuracy": 0.975, "eval_top5_accuracy": 1.0, "eval_baseline_accuracy": 0.9694,
        "eval_baseline_top5_accuracy": 0.9972, "ppt_gmacs": 0.0195, "baseline_gmacs": 0.0227, "epoch": 30.0,
    })
    assert results["accuracy"] == 0.975 and results["baseline_accuracy"] == 0.9694
    assert results["top5_accuracy"] == 1.0 and results["baseline_top5_accuracy"] == 0.9972
    assert results["macs"] == pytest.approx(0.0195e9) and results["baseline_macs"] == pytest.approx(0.0227e9)


def test_a_real_benchmark_report_fills_the_card(tmp_path):
    """benchmark.py's own JSON (models/<name>/throughput/median, machine) is read as written, and a report of
    another model is refused."""
    from ppt_tools.benchmark import main as benchmark_main
    from ppt_tools.export.publish import export_folder
    from hub_fixtures import tiny_image_processor, tiny_trained_model

    model = tiny_trained_model(prune_threshold=7e-5)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    benchmark_main(["--model_name_or_path", str(checkpoint), "--batch_size", "2", "--warmup", "0", "--rounds", "1",
                    "--latency_rounds", "1", "--latency_iterations", "1", "--no_memory", "--no_stock",
                    "--output_dir", str(tmp_path / "bench"), "--no_progress"])
    report_path = tmp_path / "bench" / "benchmark_inference.json"
    report = json.loads(report_path.read_text())
    results = normalize_results(report)
    ppt, baseline = report["models"]["ppt"], report["models"]["baseline"]
    assert results["params"] == ppt["parameters"] and results["macs"] == ppt["macs"]
    assert results["throughput"] == ppt["throughput"]["median"]
    assert results["baseline_throughput"] == baseline["throughput"]["median"]
    assert results["throughput_batch_size"] == 2 and report["machine"]["cpu"] in results["hardware"]

    # one round has no spread to judge: the timings are noisy, and the card takes them only when told to
    assert report["models"]["ppt"]["throughput"]["noisy"]
    folder = export_folder(model, tiny_image_processor(), tmp_path / "export", results=[report_path],
                           allow_noisy_timings=True)
    ppt_row = _table_row(folder.joinpath("README.md").read_text(), "**PPT")
    assert "not measured" not in ppt_row[2:]  # parameters, MACs, FLOPs, throughput
    assert ppt_row[5] == f"{ppt['throughput']['median']:.1f} img/s (noisy)"
    folder = export_folder(model, tiny_image_processor(), tmp_path / "export", results=[report_path])
    assert _table_row(folder.joinpath("README.md").read_text(), "**PPT")[5] == "not measured (noisy)"

    other = tiny_trained_model(prune_threshold=7e-5, hidden_size=48)
    with pytest.raises(ValueError, match="measured on another model"):
        export_folder(other, tiny_image_processor(), tmp_path / "other", results=[report_path])
    assert not (tmp_path / "other").exists()


def test_the_split_comes_from_train_py_results_when_training_info_lacks_it():
    from ppt_tools.export.card import build_model_card

    config = trained_export().model.config
    results = normalize_results({"eval_accuracy": 0.5, "eval_split": "train (held out 20%)"})
    card = build_model_card(config, results, {"dataset": "digits"}, stock_class="ViTForImageClassification",
                            num_parameters=1000)
    assert "split `train (held out 20%)`" in card.text
    assert card.data.eval_results[0].dataset_split == "train (held out 20%)"


def noisy_or_not_report(ppt_rounds: list[float], baseline_rounds: list[float]) -> dict:
    """A benchmark.py report as it writes it, with synthetic timings (2 threads on 8 quiet CPUs, batch 16)."""
    from ppt_tools.core.timing import TimingStats

    def timing(rounds):
        return TimingStats(16, 1, rounds, threads=2, cpus=8, load_before=0.1, load_after=2.0).to_dict()

    return {"mode": "inference", "batch_size": 16, "dtype": "fp32",
            "machine": {"cpu": "Test CPU 9000", "torch_threads": 2, "logical_cpus": 8},
            "models": {"ppt": {"throughput": timing(ppt_rounds)}, "baseline": {"throughput": timing(baseline_rounds)}}}


TIGHT_PPT, TIGHT_BASELINE = [300.0, 301.0, 299.0, 300.0, 302.0], [200.0, 201.0, 199.0, 200.0, 202.0]
WIDE = [26.5, 549.5, 300.0, 400.0, 60.0]  # quartiles 60 and 400 around 300


def _card(results, **kwargs):
    from ppt_tools.export.card import build_model_card

    return build_model_card(trained_export().model.config, results, {}, stock_class="ViTForImageClassification",
                            num_parameters=1000, **kwargs).text


def test_the_card_states_machine_threads_batch_and_dtype_beside_the_speed():
    results = normalize_results(noisy_or_not_report(TIGHT_PPT, TIGHT_BASELINE))
    assert (results["hardware"], results["threads"], results["dtype"]) == ("Test CPU 9000", 2, "fp32")
    text = _card(results)
    context = "batch 16, fp32, Test CPU 9000, 2 threads"
    assert f"Speed-up: 1.50x (PPT / baseline throughput; {context})." in text
    assert f"| Throughput ({context}) |" in text
    assert _table_row(text, "**PPT")[5] == "300.0 img/s" and _table_row(text, "Baseline")[5] == "200.0 img/s"


def test_publish_keeps_a_noisy_speedup_out_of_the_card_unless_told():
    from ppt_tools.export.card import noisy_timings

    results = normalize_results(noisy_or_not_report(WIDE, TIGHT_BASELINE))
    reason = "rounds spread 113% of the median (over 10%)"
    assert results["throughput_noise"] == reason and "baseline_throughput_noise" not in results
    assert noisy_timings(results) == [f"PPT throughput: {reason}"]
    text = _card(results)
    assert "1.50x" not in text and "300.0 img/s" not in text
    assert f"Speed-up: not measured (noisy: PPT throughput: {reason})." in text
    assert _table_row(text, "**PPT")[5] == "not measured (noisy)"
    assert _table_row(text, "Baseline")[5] == "200.0 img/s"  # the quiet figure stays
    text = _card(results, allow_noisy_timings=True)
    assert (f"Speed-up: 1.50x (PPT / baseline throughput; batch 16, fp32, Test CPU 9000, 2 threads, noisy: PPT "
            f"throughput: {reason})." in text)
    assert _table_row(text, "**PPT")[5] == "300.0 img/s (noisy)"
