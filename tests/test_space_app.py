# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The demo app (ppt_tools.demo), served on localhost and driven the way a person's browser or a script drives
it: through `gradio_client` (a real HTTP client) and, in one test, headless Chromium clicking in the page.

Expectations are independent of the app: predictions are the model's own (the checkpoint loaded and run here), the
maps are the figure `ppt_tools.analysis.token_maps` draws from that run, and the MACs are `ppt_tools.core.cost.analytic_cost`'s."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
from helpers import free_port
from model_fixtures import tiny_model
from PIL import Image


gr = pytest.importorskip("gradio", reason="gradio is not installed: pip install -e '.[demo]'")
gradio_client = pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from ppt_tools.core.cost import analytic_cost  # noqa: E402
from ppt_tools.core.data import load_digits_dataset  # noqa: E402
from ppt_tools.core.preprocessing import whole_image_processor  # noqa: E402
from ppt_tools.analysis.token_maps import figure_pixels, model_view, token_map_figure  # noqa: E402


def save_tiny_model(folder):
    """The tiny PPT-DeiT (8x8 patches, r = 8 at layers 1 and 2) with an image processor, as save_pretrained writes
    it: with its code files and config.json's auto_map."""
    model = tiny_model()
    model.config.id2label = {index: f"class {index}" for index in range(10)}
    model.config.label2id = {label: index for index, label in model.config.id2label.items()}
    model.save_pretrained(folder)
    whole_image_processor(32, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A train.py run folder on the digits: the tiny model and the training_info.json train.py writes (the dataset
    and the evaluation split it used); no example images."""
    folder = save_tiny_model(tmp_path_factory.mktemp("demo_checkpoint"))
    (folder / "training_info.json").write_text(json.dumps(
        {"dataset_name": "scikit-learn digits", "eval_split": "test", "image_column": "image",
         "label_column": "label", "epochs": 1}))
    return folder


@pytest.fixture(scope="module")
def served(checkpoint):
    """The app on a free localhost port, a client connected to it, and the app."""
    from ppt_tools.demo import build_demo

    demo = build_demo(str(checkpoint), latency_rounds=2)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, max_file_size="25mb",
                quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", Client(f"http://127.0.0.1:{port}/", verbose=False), demo
    finally:
        demo.close()


def example_images(demo) -> tuple[str, list[np.ndarray]]:
    """The label and the images of the page's examples (its `gr.Examples`, as the page offers them)."""
    found = [block for block in demo.blocks.values() if isinstance(block, gr.Dataset)]
    if not found:
        return "", []
    (dataset,) = found
    paths = [sample[0]["path"] if isinstance(sample[0], dict) else sample[0] for sample in dataset.raw_samples]
    return dataset.label, [np.asarray(Image.open(path).convert("RGB")) for path in paths]


def first_test_digit_of_each_label(count=4) -> list[np.ndarray]:
    """Independently of the demo: the digits' test split (the one split rule), the first image of each new label in
    row order."""
    found, seen = [], set()
    for row in load_digits_dataset()["test"]:
        if row["label"] not in seen:
            seen.add(row["label"])
            found.append(np.asarray(row["image"].convert("RGB")))
        if len(found) == count:
            break
    return found


def direct_run(checkpoint, image: Image.Image, **settings):
    """What the model itself says: the checkpoint loaded here, compression off and on, and the figure of its maps."""
    from modeling_ppt_deit import PPTDeiTForImageClassification
    from transformers import AutoImageProcessor

    model = PPTDeiTForImageClassification.from_pretrained(checkpoint).eval()
    processor = AutoImageProcessor.from_pretrained(checkpoint)
    pixel_values = processor(images=[image], return_tensors="pt").pixel_values
    with torch.no_grad(), model.compression_settings(**settings):
        with model.compression_settings(reduction_layers=[]):
            off = model(pixel_values).logits[0].softmax(-1)
        with model.compression_settings(track_sources=True):
            outputs = model(pixel_values, output_compression=True)
        config = model.config.with_compression()
    on = outputs.logits[0].softmax(-1)
    predicted = int(on.argmax())
    figure = token_map_figure(model_view(pixel_values, processor), outputs, config,
                              image_titles=[f"PPT predicts class {predicted} ({float(on[predicted]):.1%})"])
    return off, on, figure_pixels(figure), config, outputs


def top5_of(label_output) -> list[tuple[str, float]]:
    return [(entry["label"], entry["confidence"]) for entry in label_output["confidences"]]


def expected_top5(probabilities) -> list[tuple[str, float]]:
    values, indices = probabilities.topk(5)
    return [(f"class {int(index)}", float(value)) for value, index in zip(values, indices)]


@pytest.mark.parametrize("prune_threshold", [0.0, 1e9])
def test_client_gets_the_models_predictions_maps_and_macs(served, checkpoint, tmp_path, prune_threshold):
    _, client, _ = served
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    image.save(tmp_path / "photo.png")
    status, off, on, maps_path, cost_text, details = client.predict(
        handle_file(str(tmp_path / "photo.png")), 12, prune_threshold, "ats", api_name="/run")

    settings = dict(tokens_removed=12, prune_threshold=prune_threshold, score_function="ats")
    direct_off, direct_on, direct_maps, config, outputs = direct_run(checkpoint, image, **settings)
    for got, expected in ((top5_of(off), expected_top5(direct_off)), (top5_of(on), expected_top5(direct_on))):
        assert [label for label, _ in got] == [label for label, _ in expected]
        np.testing.assert_allclose([p for _, p in got], [p for _, p in expected], rtol=1e-5, atol=1e-7)
    assert off["label"] == expected_top5(direct_off)[0][0] and on["label"] == expected_top5(direct_on)[0][0]

    # The maps: the input and one panel per reduction layer, each layer with the policy the model chose; the page's
    # image is the figure drawn from the model's own run, pixel for pixel.
    assert details["panels"] == ["input", "after layer 1", "after layer 2"]
    policy = "pruned" if prune_threshold == 0.0 else "pooled"
    assert [layer["policy"] for layer in details["layers"]] == [policy, policy]
    assert [record.tokens_after for record in outputs.compression] == [layer["tokens_after"] for layer in
                                                                        details["layers"]] == [53, 41]
    np.testing.assert_array_equal(np.asarray(Image.open(maps_path).convert("RGB")), direct_maps)

    # MACs: the cost model of these settings and of compression off; both latencies measured.
    assert details["macs_on"] == analytic_cost(config).macs
    assert details["macs_off"] == analytic_cost(config.with_compression(reduction_layers=[])).macs
    assert details["macs_on"] < details["macs_off"]
    assert details["latency_ms_on"] > 0 and details["latency_ms_off"] > 0
    assert f"{details['macs_off'] / 1e6:.2f} M" in cost_text and "ms" in cost_text
    assert status.startswith("✓")

    # The latency's spread beside its median, and the dtype the model ran in (saved in float32).
    assert details["dtype"] == "float32" and "float32" in cost_text
    for setting in ("off", "on"):
        fastest, slowest = details[f"latency_ms_range_{setting}"]
        assert 0 < fastest <= details[f"latency_ms_{setting}"] <= slowest
        assert f"{details[f'latency_ms_{setting}']:.2f} ms ({fastest:.2f}–{slowest:.2f})" in cost_text


def test_latency_spread_is_the_fastest_and_slowest_round():
    """Per-call times of rounds measured at 500, 250 and 400 images/s: 2, 4 and 2.5 ms; the median 2.5 ms."""
    from ppt_tools.core.timing import TimingStats
    from ppt_tools.demo import cost_table

    off, on = TimingStats(1, 4, [500.0, 250.0, 400.0]), TimingStats(1, 4, [1000.0, 800.0])
    assert off.latency_range_ms == [2.0, 4.0] and on.latency_range_ms == [1.0, 1.25]
    details = {"macs_off": 2e6, "macs_on": 1e6, "latency_ms_off": off.median_latency_ms,
               "latency_ms_on": on.median_latency_ms, "latency_ms_range_off": off.latency_range_ms,
               "latency_ms_range_on": on.latency_range_ms, "dtype": "bfloat16", "latency_rounds": 3,
               "latency_iterations": 4}
    table = cost_table(details, "CPU, 2 threads")
    assert "| 2.50 ms (2.00–4.00) |" in table and "| 1.11 ms (1.00–1.25) (2.25× the speed) |" in table
    assert "(CPU, 2 threads, bfloat16)" in table


def test_a_run_folder_offers_images_of_its_evaluation_split(served):
    """train.py's run folder records the digits and their test split: the page offers the first test image of each
    label, and an empty input points at them."""
    _, client, demo = served
    label, images = example_images(demo)
    expected = first_test_digit_of_each_label()
    assert len(images) == len(expected) == 4
    for got, pixels in zip(images, expected):
        np.testing.assert_array_equal(got, pixels)
    assert "the evaluation split (test) of scikit-learn digits" in label
    with pytest.raises(AppError, match=r"Upload an image \(or pick one of the examples below\) first"):
        client.predict(None, 8, 7e-5, "ats", api_name="/run")


def test_a_folder_without_examples_offers_none_and_says_so(tmp_path, capfd):
    """A model folder without examples or training_info.json: no examples, and the empty-input message does not
    point at any; a folder of example images given is offered as it is."""
    from ppt_tools.demo import build_demo

    folder = save_tiny_model(tmp_path / "model")
    demo = build_demo(str(folder), latency_rounds=1)
    assert example_images(demo) == ("", [])
    (run,) = [fn.fn for fn in demo.fns.values() if fn.api_name == "run"]
    capfd.readouterr()
    with pytest.raises(gr.Error) as caught:
        run(None, 8, 7e-5, "ats")
    assert caught.value.message == "Upload an image first."
    assert capfd.readouterr().err == "ppt-demo: refused: Upload an image first.\n"

    examples = tmp_path / "mine"
    examples.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(examples / "noise.png")
    label, images = example_images(build_demo(str(folder), examples=examples, latency_rounds=1))
    assert label.startswith("examples") and len(images) == 1
    np.testing.assert_array_equal(images[0], noise)


def test_bad_input_is_a_message_in_the_page(served, tmp_path, capfd):
    _, client, demo = served
    rng = np.random.default_rng(2)

    def run(path, tokens_removed=8, prune_threshold=7e-5, score_function="ats"):
        return client.predict(handle_file(str(path)), tokens_removed, prune_threshold, score_function,
                              api_name="/run")

    def refused(path, **kwargs) -> str:
        capfd.readouterr()
        with pytest.raises(AppError) as caught:
            run(path, **kwargs)
        message = str(caught.value)
        assert "Traceback" not in message and "File \"" not in message
        # On the server's console: the same message in one line, no traceback.
        assert capfd.readouterr().err == f"ppt-demo: refused: {message}\n"
        return message

    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    assert "notes.txt is not an image this demo can read" in refused(text_file)
    truncated = tmp_path / "cut.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    assert "cut.png" in refused(truncated)

    huge = tmp_path / "huge.png"
    Image.new("RGB", (8000, 6000), (10, 20, 30)).save(huge)  # 48 megapixels, a small file
    assert "8000×6000 pixels (48 megapixels)" in refused(huge) and "up to 40 megapixels" in refused(huge)

    rgb = tmp_path / "rgb.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(rgb)
    # Out of the controls' range (a script can send what the page's controls cannot): gradio's own checks name them.
    assert "Value 40 is greater than maximum value 32" in refused(rgb, tokens_removed=40)
    assert "no_such_score" in refused(rgb, score_function="no_such_score")
    assert "Value -1.0 is less than minimum value 0" in refused(rgb, prune_threshold=-1.0)
    # A string for a number, a fraction of a token, a threshold the model's config refuses.
    assert refused(rgb, tokens_removed="eight") == "tokens_removed (r) must be a number, got 'eight'."
    assert refused(rgb, prune_threshold="x" * 1000).startswith("prune_threshold (τ) must be a number, got 'xxx")
    assert len(refused(rgb, prune_threshold="x" * 1000)) < 150  # a client's text is quoted short
    assert refused(rgb, tokens_removed=8.5) == "tokens_removed must be a whole number, got 8.5."
    # A threshold the model's config refuses (NaN: JSON cannot carry it, so the app's function is called directly).
    (run_fn,) = [fn.fn for fn in demo.fns.values() if fn.api_name == "run"]
    capfd.readouterr()
    with pytest.raises(gr.Error) as caught:
        run_fn(str(rgb), 8, float("nan"), "ats")
    assert caught.value.message.startswith("These settings cannot run: prune_threshold=nan must be >= 0")
    assert capfd.readouterr().err == f"ppt-demo: refused: {caught.value.message}\n"

    # Converted, and said so; the run goes on.
    grey = tmp_path / "grey.png"
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), mode="L").save(grey)
    status, *_ = run(grey)
    assert "grey.png is a grayscale image (mode L): converted to RGB" in status
    rgba = tmp_path / "clear.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), mode="RGBA").save(rgba)
    status, *_ = run(rgba)
    assert "clear.png has transparency (mode RGBA)" in status

    # r = 32 at layer 1 leaves 32 patch tokens; layer 2 removes at most half of them: 16.
    status, *_, details = run(rgb, tokens_removed=32)
    assert "r = 32 is more than layer 2 can remove: at most half of the 32 patch tokens left there go, so it " \
           "removes 16" in status
    assert [layer["tokens_after"] for layer in details["layers"]] == [33, 17]


def test_page_in_headless_chromium_runs_an_example_and_shows_the_maps(served, tmp_path):
    """The page itself: Chromium loads it, clicks the first example (a digit of the run's test split) and Run PPT,
    and the token maps image appears. The screenshot is kept in the test's folder (app.png)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium executable: install Debian's `chromium` package (apt-get install -y chromium; "
                    ".ci/run does when apt works)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    url, _, _ = served
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, wait_until="networkidle")
            example = page.locator("#examples tbody tr").first
            example.wait_for(state="visible", timeout=30_000)
            example.click()
            page.locator("#input-image img").first.wait_for(state="visible", timeout=30_000)
            page.get_by_role("button", name="Run PPT").click()
            maps = page.locator("#token-maps img")
            maps.wait_for(state="visible", timeout=60_000)
            deadline = time.time() + 30
            while time.time() < deadline and not maps.evaluate("img => img.complete && img.naturalWidth > 0"):
                time.sleep(0.2)
            natural = maps.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            status_text = page.locator("#status").inner_text()
        finally:
            browser.close()
    assert natural[0] > 400 and natural[1] > 200
    assert status_text.startswith("✓ done")


# ---- whose code runs -------------------------------------------------------------------------------------------------


def plant_canary(folder, canary) -> None:
    """Code that announces itself when imported, in the folder's own configuration file (the first of its files that
    transformers imports for its auto_map)."""
    code = folder / "configuration_ppt_deit.py"
    code.write_text(code.read_text() + f"\nimport pathlib\npathlib.Path({str(canary)!r}).write_text('ran')\n")


def test_a_folders_own_code_runs_only_with_trust_remote_code(tmp_path):
    """A train.py output and an export both carry PPT-DeiT's code files and an auto_map naming them; the code in the
    folder is never imported unless asked."""
    from hub_fixtures import trained_export

    from ppt_tools.demo import load_demo_model

    canary = tmp_path / "canary"
    run = save_tiny_model(tmp_path / "run")
    export = tmp_path / "export"
    shutil.copytree(trained_export().folder, export)
    for folder in (run, export):
        plant_canary(folder, canary)
        assert "auto_map" in json.loads((folder / "config.json").read_text())
        # A PPT-DeiT folder: the installed classes, the folder's code not imported.
        model, _ = load_demo_model(str(folder))
        assert type(model).__module__ == "modeling_ppt_deit.modeling_ppt_deit" and not canary.exists()

    # A folder whose config maps to code of its own that is not PPT-DeiT's: refused, naming the flag.
    other = tmp_path / "other"
    shutil.copytree(run, other)
    config = json.loads((other / "config.json").read_text())
    config.update(model_type="custom_vit", auto_map={"AutoConfig": "configuration_ppt_deit.CustomConfig",
                                                     "AutoModelForImageClassification": "modeling_ppt_deit.Custom"})
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="needs its own Python code .* pass --trust_remote_code") as caught:
        load_demo_model(str(other))
    assert "\n" not in str(caught.value) and not canary.exists()

    # Asked to: the export's own code runs, as transformers runs it (a model type of transformers' own, vit, with an
    # auto_map), and it is the model the demo serves.
    model, _ = load_demo_model(str(export), trust_remote_code=True)
    assert canary.read_text() == "ran" and type(model).__module__.startswith("transformers_modules.")


def test_the_command_line_refuses_a_folder_that_needs_its_own_code_in_one_line(tmp_path, capsys):
    from ppt_tools.demo import main

    folder = save_tiny_model(tmp_path / "other")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom_vit", auto_map={"AutoModelForImageClassification": "modeling_x.Custom"})
    (folder / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["--model_name_or_path", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ppt-demo: error: {str(folder)!r} needs its own Python code") and err.count("\n") == 1
    assert "--trust_remote_code" in err


def test_a_hub_id_loads_at_the_revision_given(tmp_path, monkeypatch):
    """A Hub cache holding two commits of one repo, main at the newer: `revision` loads the older one, without it
    main. (Offline: the cache is what the Hub would serve.)"""
    from huggingface_hub import constants

    from ppt_tools.demo import load_demo_model

    source = save_tiny_model(tmp_path / "model")
    repo = tmp_path / "hub" / "models--someone--tiny"
    for commit, name in (("a" * 40, "old"), ("b" * 40, "new")):
        snapshot = repo / "snapshots" / commit
        shutil.copytree(source, snapshot)
        config = json.loads((snapshot / "config.json").read_text())
        config["id2label"] = {str(index): f"{name} {index}" for index in range(10)}
        config["label2id"] = {f"{name} {index}": index for index in range(10)}
        (snapshot / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    pinned, _ = load_demo_model("someone/tiny", revision="a" * 40)
    latest, _ = load_demo_model("someone/tiny")
    assert pinned.config.id2label[0] == "old 0" and latest.config.id2label[0] == "new 0"
    assert type(pinned).__module__ == "modeling_ppt_deit.modeling_ppt_deit"  # no remote code without the flag
