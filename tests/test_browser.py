"""The app in a real browser (Playwright + Debian's /usr/bin/chromium, headless), on a tiny random checkpoint:
type a prompt, Generate, wait for the video and the pictures to load, toggle MG and see the automatic re-run; and
a real-shaped model (SD1.5 / AnimateDiff's structure, tiny channels, saved to folders and listed by a YAML file)
selected in the page, generating, with the attention maps at each resolution and the slice stack.

What the HTTP tests in test_app.py cannot see: that the page renders, that the wiring reaches the DOM (video
plays, images load), that a toggle re-runs. Full-page screenshots go to the test's tmp dir and, when
$HARIVO_SCREENSHOTS is set, there too. Skipped when chromium or playwright is missing (.ci/run installs it).
"""

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run the "
                "browser test; .ci/run does", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")

from conftest import served_app  # noqa: E402
from harivo import explorer as ex  # noqa: E402

PROMPT = "a blue square is moving down on a white background"
SMALL = dict(num_frames=4, num_inference_steps=2)
# Root in CI/containers needs --no-sandbox; the rest keeps chromium off the network and quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-dev-shm-usage"]
PICTURES = ("strip", "overlay", "grid")  # on screen after a run; the slice stack is in the next inner tab
TIMEOUT_MS = 60_000  # a generous bound for one tiny run on a busy 2-core machine (it takes ~1 s)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    registry = ex.ModelRegistry(root / "no-checkpoints", cache_dir=root / "cache", tiny_frames=4)
    with served_app(registry, ex.RunRequest(prompt="a red circle is moving up on a gray background", **SMALL)) as address:
        yield address


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()
        browser.close()


def save_screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("HARIVO_SCREENSHOTS"):
        out = Path(os.environ["HARIVO_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)
    return path


def element_pixels(locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"), dtype=np.float32)


def wait_for_results(page, old_video: str | None = None) -> str:
    """Waits until the video (a new one when `old_video` is given) and every picture have loaded; returns the
    video's src."""
    page.wait_for_function(
        """old => { const v = document.querySelector('#video video');
                    return v && v.src && v.src !== old && v.readyState >= 2 && v.videoWidth > 0; }""",
        arg=old_video)
    for name in PICTURES:
        wait_for_image(page, name)
    return page.locator("#video video").get_attribute("src")


def wait_for_image(page, elem_id: str) -> None:
    page.wait_for_function("id => { const img = document.querySelector(`#${id} img`); "
                           "return img && img.src && img.complete && img.naturalWidth > 0; }", arg=elem_id)


def assert_picture(page, elem_id: str) -> None:
    img = page.locator(f"#{elem_id} img")
    natural = img.evaluate("im => [im.naturalWidth, im.naturalHeight]")
    assert min(natural) > 16, (elem_id, natural)
    assert element_pixels(img).std() > 1.0, f"{elem_id} looks like a single flat colour"


def click_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label, exact=True).click()


def error_toasts(page) -> list[str]:
    return page.locator('[data-testid="toast-body"].error').all_inner_texts()


def test_generate_then_toggle_mg_in_a_real_browser(url, page, tmp_path):
    page.goto(url)
    prompt = page.locator("#prompt textarea")
    prompt.fill(PROMPT)
    assert page.locator("#use-mg input[type=checkbox]").is_checked()
    assert page.locator("#auto-rerun input[type=checkbox]").is_checked()
    page.locator("#generate").click()
    first_video = wait_for_results(page)
    page.wait_for_function("() => document.querySelector('#summary').innerText.includes('MG α=40')")
    summary = page.locator("#summary").inner_text()
    seed = f"seed {ex.RunRequest().seed}"  # the app's first seed (request.EXAMPLE_SEED)
    assert seed in summary and "4 frames" in summary and "untrained" in summary.lower()
    assert not error_toasts(page)
    save_screenshot(page, tmp_path, "explore-generated")

    # The pictures are images with content, not flat placeholders; the slice stack is upscaled.
    for name in PICTURES:
        assert_picture(page, name)
    assert element_pixels(page.locator("#video video")).std() > 0.5, "the video shows a flat colour"
    click_tab(page, "Vertical slices (Fig. 6)")
    wait_for_image(page, "slices")
    assert_picture(page, "slices")
    assert page.locator("#slices img").evaluate("im => im.naturalHeight") >= 256
    click_tab(page, "Cross-attention maps")

    # MG off: with "re-run" on, the toggle alone re-runs on the same seed.
    page.locator("#use-mg input[type=checkbox]").click()
    page.wait_for_function("() => document.querySelector('#summary').innerText.includes('MG off')")
    second_video = wait_for_results(page, old_video=first_video)
    assert second_video != first_video
    assert seed in page.locator("#summary").inner_text()
    assert not error_toasts(page)
    save_screenshot(page, tmp_path, "explore-mg-off")


def test_out_of_range_number_is_refused_not_changed(url, page):
    """Typing 0 DDIM steps or α −3 into the page: the boxes keep what was typed (nothing clamps it), and Generate is
    refused with a toast naming the field and its range; with good values the page runs again."""
    page.goto(url)
    rerun = page.locator("#auto-rerun input[type=checkbox]")
    if rerun.is_checked():  # no background re-run still sampling when the module's server shuts down
        rerun.click()
    steps = page.locator("#steps input[type=number]")
    alpha = page.locator("#alpha input[type=number]")
    steps.fill("0")
    steps.press("Enter")
    alpha.fill("-3")
    alpha.press("Tab")
    page.locator("#generate").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"toast-body\"].error')]"
                           ".some(t => t.innerText.includes('DDIM steps'))")
    toasts = " ".join(error_toasts(page))
    assert "DDIM steps: expected a whole number from 1 to 50, got 0" in toasts, toasts
    assert steps.input_value() == "0" and alpha.input_value() == "-3"  # as typed, not clamped
    assert page.locator("#video video").count() == 0  # and nothing was generated
    steps.fill("2")  # and the page still works after it
    alpha.fill("40")
    page.locator("#generate").click()
    wait_for_results(page)


# ------------------------------------------------------------------------------ a real-shaped model (issue 31)
REAL_NAME = "harivo-tiny"
RESOLUTIONS = ("8x8", "4x4", "2x2", "1x1")  # 64 px on SD1.5's block structure: 8×8 latents, mid block 1×1


@pytest.fixture(scope="module")
def real_url(tmp_path_factory):
    """The app with an embedded model (it opens the page) and, from a YAML list, a random model with SD1.5 /
    AnimateDiff's block structure and tiny channels, saved to folders as a real one is (`harivo.tiny.REAL_SHAPED`)."""
    from harivo.tiny import save_real_shaped, save_tiny_checkpoint

    root = tmp_path_factory.mktemp("real")
    save_real_shaped(root / "real", harivo=dict(num_frames=4, mapping_hidden_channels=8, mapping_heads=2,
                                                mapping_head_dim=8))
    save_tiny_checkpoint(root / "checkpoints")
    (root / "models.yaml").write_text(f"- {{name: {REAL_NAME}, base_model: real/base, harivo_weights: real/harivo}}\n")
    registry = ex.ModelRegistry(root / "checkpoints", cache_dir=root / "cache",
                                models=ex.read_models(root / "models.yaml"))
    assert registry.default_key != f"{ex.REAL_PREFIX}{REAL_NAME}"
    with served_app(registry, ex.RunRequest(prompt=PROMPT, **SMALL)) as address:
        yield address


def choose(page, elem_id: str, option: str) -> None:
    """Pick `option` in the Gradio dropdown `#elem_id` as a visitor does: open it, click the option."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_function("([id, v]) => document.querySelector(`#${id} input`).value === v", arg=[elem_id, option])


def test_a_real_shaped_model_in_a_real_browser(real_url, page, tmp_path):
    """Select the real-shaped model in the page, read what a run will cost, generate, and find the video, the
    attention maps at each resolution and the slice stack."""
    page.goto(real_url)
    page.locator("#model input").click()
    option = page.get_by_role("option").filter(has_text=REAL_NAME)
    label = option.inner_text().strip()
    option.click()
    page.wait_for_function("() => document.querySelector('#model-info').innerText.includes('64×64 px by default')")
    page.wait_for_function("() => document.querySelector('#cost').innerText.includes('measured by the first run')")
    assert page.locator("#model input").input_value() == label and "HARIVO weights" in label
    steps = page.locator("#steps input[type=number]")  # a model without recorded sampling opens with App. D's 25
    page.wait_for_function("() => document.querySelector('#steps input[type=number]').value === '25'")
    steps.fill("2")
    steps.press("Enter")
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#generate").click()
    wait_for_results(page)
    page.wait_for_function("name => document.querySelector('#summary').innerText.includes(name)", arg=REAL_NAME)
    assert "4 frames" in page.locator("#summary").inner_text() and not error_toasts(page)
    cost = page.locator("#cost").inner_text()
    assert "4 frames × 64×64 px × 2 steps on cpu (float32)" in cost
    page.wait_for_function("() => document.querySelector('#cost').innerText.includes('scaled from the last run here')")
    save_screenshot(page, tmp_path, "real-model-generated")
    for resolution in RESOLUTIONS:  # the attention of every resolution the UNet has
        old = page.locator("#overlay img").get_attribute("src")
        choose(page, "source", f"resolution {resolution}")
        page.wait_for_function("old => { const im = document.querySelector('#overlay img');"
                               " return im && im.src !== old && im.complete && im.naturalWidth > 0; }", arg=old)
        assert_picture(page, "overlay")
    click_tab(page, "Vertical slices (Fig. 6)")
    wait_for_image(page, "slices")
    assert_picture(page, "slices")
    assert not error_toasts(page)
    save_screenshot(page, tmp_path, "real-model-slices")
