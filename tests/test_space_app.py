# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The demo app (ppt_tools.demo), served on localhost and driven the way a person's browser or a script drives
it: through `gradio_client` (a real HTTP client) and, in one test, headless Chromium clicking in the page.

Expectations are independent of the app: predictions are the model's own (the checkpoint loaded and run here), the
maps are the figure `ppt_tools.analysis.token_maps` draws from that run, and the MACs are `ppt_tools.core.cost.analytic_cost`'s."""

from __future__ import annotations

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
from ppt_tools.core.preprocessing import whole_image_processor  # noqa: E402
from ppt_tools.analysis.token_maps import figure_pixels, model_view, token_map_figure  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The tiny PPT-DeiT (8x8 patches, r = 8 at layers 1 and 2) with an image processor, and an example image."""
    folder = tmp_path_factory.mktemp("demo_checkpoint")
    model = tiny_model()
    model.config.id2label = {index: f"class {index}" for index in range(10)}
    model.config.label2id = {label: index for index, label in model.config.id2label.items()}
    model.save_pretrained(folder)
    whole_image_processor(32, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]).save_pretrained(folder)
    examples = folder / "examples"
    examples.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(examples / "noise.png")
    return folder


@pytest.fixture(scope="module")
def served(checkpoint):
    """The app on a free localhost port, and a client connected to it."""
    from ppt_tools.demo import build_demo

    demo = build_demo(str(checkpoint), latency_rounds=2)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, max_file_size="25mb",
                quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


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
    _, client = served
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


def test_bad_input_is_a_message_in_the_page(served, tmp_path):
    _, client = served
    rng = np.random.default_rng(2)

    def run(path, tokens_removed=8, prune_threshold=7e-5, score_function="ats"):
        return client.predict(handle_file(str(path)), tokens_removed, prune_threshold, score_function,
                              api_name="/run")

    def refused(path, **kwargs) -> str:
        with pytest.raises(AppError) as caught:
            run(path, **kwargs)
        message = str(caught.value)
        assert "Traceback" not in message and "File \"" not in message
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
    """The page itself: Chromium loads it, clicks the bundled example and Run PPT, and the token maps image appears.
    The screenshot is kept in the test's folder (app.png)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium executable: install Debian's `chromium` package (apt-get install -y chromium; "
                    ".ci/run does when apt works)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    url, _ = served
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
