# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""A screenshot of the demo app after it ran one of its examples, as a person sees it (the README's picture).

    python scripts/app_screenshot.py outputs/hub/ppt-deit-digits --title me/ppt-deit-digits \
        --output docs/figures/app_digits.png --colours 128

Serves `ppt_tools.demo.build_demo(checkpoint)` on localhost, opens it in headless Chromium (the system
`chromium`, driven by playwright), clicks the first example and "Run PPT", waits for the token maps and saves the page down to them.
Needs the `.[demo]` extra, playwright and Debian's `chromium`.
"""

from __future__ import annotations

import argparse
import io
import shutil
import socket
import sys

from PIL import Image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a model folder (with examples/) or Hub repo id")
    parser.add_argument("--examples", default=None, help="a folder of example images (default: checkpoint/examples)")
    parser.add_argument("--title", default=None, help="the model's name on the page (default: checkpoint)")
    parser.add_argument("--output", default="app.png")
    parser.add_argument("--width", type=int, default=1200, help="browser window width in pixels")
    parser.add_argument("--colours", type=int, default=None, help="store with a palette of this many colours")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from ppt_tools.demo import build_demo

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium executable: apt-get install -y chromium", file=sys.stderr)
        return 1
    demo = build_demo(args.model_name_or_path, args.examples, title=args.title)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.locator("#examples tbody tr").first.click()
            page.locator("#input-image img").first.wait_for(state="visible", timeout=30_000)
            page.get_by_role("button", name="Run PPT").click()
            page.locator("#token-maps img").wait_for(state="visible", timeout=120_000)
            page.wait_for_function("document.querySelector('#token-maps img').complete", timeout=30_000)
            # Down to the maps (page coordinates: the click on an example scrolled the page); the examples stay out.
            bottom = page.locator("#token-maps").evaluate("el => el.getBoundingClientRect().bottom + window.scrollY")
            png = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": args.width, "height": bottom + 12})
            browser.close()
    finally:
        demo.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if args.colours:
        image = image.quantize(colors=args.colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(args.output, optimize=True)
    print(f"wrote {args.output} ({image.width}x{image.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
