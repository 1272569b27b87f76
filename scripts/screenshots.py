"""Screenshots of the explorer in a real browser, for the README and for checking the layout by eye.

    python scripts/screenshots.py --out assets/ [--checkpoints DIR]

Serves `app.py` on the real model registry (checkpoints/, or a tiny random model when there is none), drives
headless Chromium (Debian's /usr/bin/chromium via Playwright) through a generation with the default settings
(16 frames, the default model's recorded sampling: 12 steps for the shipped `full`) and writes:

    first-screen.png       the first screen at 1280x800 before any run (viewport only)
    explore.png            the Explore tab after Generate (full page)
    cross-attention.png    the cross-attention maps of that run (cross-attention-alone.png: without the frames)
    slices.png             the vertical-slice stack (Fig. 6) of that run
    mg-diagnostics.png     the MG / mapping-network statistics per step of that run
    compare.png            the Compare tab after "Run A vs B" (full page)
    ablation.png           the Ablation grid tab after running it (full page)

Needs `apt-get install -y chromium` (and fonts-noto-color-emoji, or the 🎲 and ⚠️ labels draw as boxes).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `app` lives in the repository root

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-dev-shm-usage"]
LOADED_IMAGE = ("sel => { const img = document.querySelector(sel); "
                "return img && img.src && img.complete && img.naturalWidth > 0; }")
LOADED_VIDEO = ("([sel, old]) => { const v = document.querySelector(sel); "
                "return v && v.src && v.src !== old && v.readyState >= 2 && v.videoWidth > 0; }")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_video(page, selector: str, old: str | None = None) -> str:
    page.wait_for_function(LOADED_VIDEO, arg=[selector, old])
    return page.locator(selector).get_attribute("src")


def wait_images(page, *selectors: str) -> None:
    for sel in selectors:
        page.wait_for_function(LOADED_IMAGE, arg=sel)


def check_no_error(page, where: str) -> None:
    errors = page.locator('[data-testid="toast-body"].error').all_inner_texts()
    if errors:
        raise RuntimeError(f"{where}: the app shows an error: {errors}")


def shoot(page, out: Path, name: str, element: str | None = None) -> Path:
    path = out / f"{name}.png"
    time.sleep(0.5)  # let the autoplaying video show a frame and the tab transition settle
    if element:
        page.locator(element).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}")
    return path


def click_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label, exact=True).click()


def take(url: str, out: Path, width: int, height: int, timeout_s: float) -> list[Path]:
    from playwright.sync_api import sync_playwright

    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(timeout_s * 1000)
        page = context.new_page()
        page.set_viewport_size({"width": 1280, "height": 800})  # a laptop's first screen, before any run
        page.goto(url)
        page.locator("#generate").wait_for()
        page.wait_for_timeout(1000)
        shots.append(out / "first-screen.png")
        page.screenshot(path=str(shots[-1]))  # the viewport only: what a visitor sees without scrolling
        page.set_viewport_size({"width": width, "height": height})
        page.locator("#generate").click()
        wait_video(page, "#video video")
        wait_images(page, "#strip img", "#overlay img", "#grid img")
        check_no_error(page, "Generate")
        shots.append(shoot(page, out, "explore"))
        shots.append(shoot(page, out, "cross-attention", "#tab-attention"))
        before = page.locator("#grid img").first.get_attribute("src")
        page.locator("#attention-overlay input").uncheck()  # the maps alone
        page.wait_for_function("([sel, old]) => { const i = document.querySelector(sel); return i && i.src !== old; }",
                               arg=["#grid img", before], timeout=60000)
        page.wait_for_timeout(500)
        shots.append(shoot(page, out, "cross-attention-alone", "#tab-attention"))
        page.locator("#attention-overlay input").check()
        click_tab(page, "Vertical slices (Fig. 6)")
        wait_images(page, "#slices img")
        shots.append(shoot(page, out, "slices", "#tab-slices"))
        click_tab(page, "MG diagnostics")
        wait_images(page, "#diagnostics img")
        shots.append(shoot(page, out, "mg-diagnostics", "#tab-diagnostics"))

        click_tab(page, "Compare A vs B")
        page.locator("#compare").click()
        wait_video(page, "#video-a video")
        wait_video(page, "#video-b video")
        wait_images(page, "#slices-a img", "#slices-b img")
        check_no_error(page, "Run A vs B")
        shots.append(shoot(page, out, "compare"))

        click_tab(page, "Ablation grid")
        page.locator("#ablate").click()
        wait_images(page, "#ablation-image img")
        check_no_error(page, "Run ablation grid")
        shots.append(shoot(page, out, "ablation"))
        browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the PNGs (created)")
    p.add_argument("--checkpoints", default=None,
                   help="checkpoints folder (default: $HARIVO_CHECKPOINTS or checkpoints/)")
    p.add_argument("--width", type=int, default=1600, help="browser viewport width (px)")
    p.add_argument("--height", type=int, default=1200, help="browser viewport height (px)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for each run")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        p.error(f"{CHROMIUM} not found: apt-get install -y chromium")

    import app
    from harivo import explorer as ex

    registry = ex.ModelRegistry(args.checkpoints)
    print(f"models: {', '.join(e.label for e in registry.entries)}")
    args.out.mkdir(parents=True, exist_ok=True)
    demo = app.build_demo(registry)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, theme=app.THEME)
    try:
        take(f"http://127.0.0.1:{port}/", args.out, args.width, args.height, args.timeout)
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
