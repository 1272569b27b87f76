"""harivo.viz: Fig. 6 slice stacks pixel-exact on a synthetic moving bar, overlays, plots, figure export."""

import numpy as np
import pytest

from harivo import viz
from harivo.viz import plt

F, H, W = 8, 6, 12  # frames, height, width of the synthetic video


def moving_bar() -> np.ndarray:
    """A white bar two columns wide on black, one column to the right per frame: frame j covers [j, j + 2)."""
    video = np.zeros((F, H, W, 3), np.uint8)
    for j in range(F):
        video[j, :, j : j + 2] = 255
    video[:, 0, :, 1] = 40  # a marked top row, so a vertical flip would show
    return video


@pytest.mark.parametrize("scale", [1, 3])
def test_slice_stack_is_pixel_exact(scale):
    video = moving_bar()
    x_red, x_green = 3, 7
    img = viz.slice_stack(video, x_red, x_green, scale=scale)
    layout = viz.slice_layout(F, H, W, scale)
    assert img.shape == (*layout["shape"], 3) and img.dtype == np.uint8
    boxes = layout["boxes"]

    def panel(name):
        x0, y0, x1, y1 = boxes[name]
        return img[y0:y1, x0:x1][::scale, ::scale]  # undo the nearest upscaling

    # the strips: column x of frame j at strip column j; the bar crosses x during frames x-1 and x
    for name, x in (("red", x_red), ("green", x_green)):
        strip = panel(name)
        assert strip.shape == (H, F, 3)
        expected = video[:, :, x].transpose(1, 0, 2)  # (h, f, 3)
        np.testing.assert_array_equal(strip, expected)
        bright = np.flatnonzero(strip[H // 2, :, 0] == 255)
        assert list(bright) == [x - 1, x]
        # each upscaled block is constant (nearest upscaling, nothing invented)
        x0, y0, x1, y1 = boxes[name]
        np.testing.assert_array_equal(img[y0:y1, x0:x1], viz.upscale(expected, scale))
    # first and last frames, untouched on the chosen columns themselves
    for name, j in (("first", 0), ("last", F - 1)):
        x0, y0, x1, y1 = boxes[name]
        full = img[y0:y1, x0:x1]
        for x in (x_red, x_green):
            np.testing.assert_array_equal(full[:, x * scale : (x + 1) * scale], viz.upscale(video[j], scale)[:, x * scale : (x + 1) * scale])
    # markers: red and green lines right next to the columns on both frames, ticks in the margin, strip borders
    b = layout["border"]
    for name in ("first", "last"):
        x0, y0, x1, y1 = boxes[name]
        for x, colour in ((x_red, viz.RED), (x_green, viz.GREEN)):
            left, right = x0 + x * scale - 1, x0 + (x + 1) * scale
            assert tuple(img[(y0 + y1) // 2, left]) == colour
            assert tuple(img[(y0 + y1) // 2, right]) == colour
            assert tuple(img[y0 - 1, x0 + x * scale]) == colour  # tick above the frame
            assert tuple(img[y1, x0 + x * scale]) == colour  # and below
    for name, colour in (("red", viz.RED), ("green", viz.GREEN)):
        x0, y0, x1, y1 = boxes[name]
        assert tuple(img[y0 - b, x0]) == colour and tuple(img[y1, x1]) == colour and tuple(img[y0, x0 - 1]) == colour
    # white gaps between panels
    assert (img[:, boxes["first"][2] : boxes["red"][0] - b] == 255).all()


def test_slice_stack_short_segments_and_float_input():
    video = moving_bar()
    img = viz.slice_stack(video.astype(np.float32) / 255.0, 2, 5, scale=2, y_range=(1, 4))
    layout = viz.slice_layout(F, H, W, 2, (1, 4))
    x0, y0, x1, y1 = layout["boxes"]["red"]
    assert (y1 - y0, x1 - x0) == (3 * 2, F * 2)
    np.testing.assert_array_equal(img[y0:y1:2, x0:x1:2], video[:, 1:4, 2].transpose(1, 0, 2))


def test_slice_stack_default_scale_is_readable_and_bad_columns_are_refused():
    img = viz.slice_stack(moving_bar(), 0, W - 1)
    assert img.shape[0] >= viz.MIN_SIZE
    with pytest.raises(ValueError, match="x_red"):
        viz.slice_stack(moving_bar(), W, 1)
    with pytest.raises(ValueError, match="x_green"):
        viz.slice_stack(moving_bar(), 1, -1)
    with pytest.raises(ValueError, match="frames"):
        viz.slice_stack(np.zeros((4, 4, 3)), 1, 2)


def test_heat_overlay_shapes_and_normalisation():
    video = moving_bar()
    maps = np.zeros((F, 3, 4), np.float32)
    maps[:, 1, 2] = np.arange(F)  # one hot spot that grows over time
    out = viz.heat_overlay(video, maps, alpha=1.0, cmap="gray")
    assert out.shape == (F, H, W, 3) and out.dtype == np.float32  # maps upscaled to the frame size
    assert 0 <= out.min() and out.max() <= 1
    # normalised per token across frames (maps at frame size: no interpolation): last frame 1, first frame 0
    full = np.zeros((F, H, W), np.float32)
    full[:, 2, 5] = np.arange(F) + 3.0
    out = viz.heat_overlay(video, full, alpha=1.0, cmap="gray")
    top = F - 1 + 3.0  # min 0 (everywhere else), max at the last frame
    assert out[-1, 2, 5] == pytest.approx([1, 1, 1], abs=1e-6)
    for j in (0, F // 2):
        assert out[j, 2, 5, 0] == pytest.approx((j + 3) / top, abs=2e-3)  # comparable across frames
    assert out[:, 0].max() == pytest.approx(0.0, abs=1e-6)
    # alpha = 0: the frames themselves
    np.testing.assert_allclose(viz.heat_overlay(video, maps, alpha=0.0), video / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match="maps"):
        viz.heat_overlay(video, maps[:3])


def test_resize_maps_bilinear_matches_torch():
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(0).random((2, 3, 5)).astype(np.float32)
    ours = viz.resize_maps(maps, (12, 20))
    ref = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(12, 20), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(ours, ref[:, 0].numpy(), atol=1e-5)


def test_frame_strip_and_grid():
    video = moving_bar()
    strip = viz.frame_strip(video, scale=2, gap=1, max_cols=4)
    assert strip.shape == (2 * H * 2 + 1, 4 * W * 2 + 3, 3)
    np.testing.assert_array_equal(strip[: H * 2 : 2, : W * 2 : 2], video[0])
    maps = np.random.default_rng(0).random((F, 3, 3, 4)).astype(np.float32)
    tokens, kinds = ["<sot>", "bar", "<f1>", "<f2>"], ["text", "text", "frame", "frame"]
    for rows in ("tokens", "frames"):
        image = viz.figure_to_array(viz.attention_grid(video, maps, tokens, kinds, rows=rows))
        assert image.ndim == 3 and image.shape[2] == 3 and image.std() > 0
    with pytest.raises(ValueError, match="rows"):
        viz.attention_grid(video, maps, tokens, kinds, rows="cols")


def test_plots_render():
    cfg = viz.figure_to_array(viz.cfg_schedule_figure([12.5, 12.5, 7.5], [901, 601, 301], 0.7))
    steps = [{"median_d": 10.0 / (i + 1), "g_norm": 0.1 / (i + 1), "mapping_abs_diff": 0.01} for i in range(5)]
    mg = viz.figure_to_array(viz.diagnostics_figure(steps, alpha=40))
    off = viz.figure_to_array(viz.diagnostics_figure([{"mapping_abs_diff": 0.0}] * 3))
    # MG on, but no step moved x_t (e.g. a tiny random model: ‖G‖ = 0): nothing to draw on a log axis, no error
    still = viz.figure_to_array(viz.diagnostics_figure([{"median_d": 0.0, "g_norm": 0.0}] * 3, alpha=40))
    skipped = viz.figure_to_array(viz.diagnostics_figure([{"median_d": 0.0, "g_norm": 0.0}] + steps, alpha=40))
    for image in (cfg, mg, off, still, skipped):
        assert image.ndim == 3 and image.std() > 0


def test_ablation_figure_exports_png_and_pdf(tmp_path):
    video = moving_bar()
    rows = [("α = 0", video), ("α = 40", video[::-1].copy()), ("α = 150", video)]
    paths = viz.save_figure(viz.ablation_figure(rows, 3, 7, title="moving bar"), tmp_path / "ablation")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    png, pdf = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape[1] > image.shape[0]  # rows of frames + a wide slice stack
    assert (np.all(image == viz.RED, axis=-1)).any() and (np.all(image == viz.GREEN, axis=-1)).any()


def test_attention_grid_carries_a_colour_bar_and_its_normalisation():
    frames = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    maps = np.random.default_rng(1).random((4, 8, 8, 2))
    fig = viz.attention_grid(frames, maps, ["red", "<f1>"], ["text", "frame"])
    texts = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert texts == viz.ATTENTION_NORMALISATION and "min–max normalised over all its frames" in texts
    bars = [ax for ax in fig.axes if ax.get_label() == "colour bar"]
    assert len(bars) == 1 and [t for t in bars[0].get_xticks()] == [0, 0.5, 1]
    # the grid's colours are those normalised values: a token's largest value is the colour bar's top colour
    assert np.isclose(viz.normalise_per_token(maps).max(axis=(0, 1, 2)), 1).all()
    plt.close(fig)


@pytest.mark.parametrize("overlay", [True, False])
def test_chosen_token_view_carries_the_grid_colour_bar_and_note(overlay):
    frames = np.random.default_rng(0).random((10, 16, 16, 3)).astype(np.float32)
    maps = np.random.default_rng(1).random((10, 8, 8))
    fig = viz.token_attention_figure(frames, maps, "circle", overlay=overlay, title="mean over steps")
    texts = " ".join(t.get_text() for t in fig.texts if t is not fig._suptitle).replace("\n", " ")
    assert texts == viz.ATTENTION_NORMALISATION
    bars = [ax for ax in fig.axes if ax.get_label() == "colour bar"]
    assert len(bars) == 1 and list(bars[0].get_xticks()) == [0, 0.5, 1]
    assert fig._suptitle.get_text() == "“circle” · mean over steps"
    assert [t.get_text() for t in fig.axes[0].texts] == [str(i) for i in range(1, 11)]  # every frame numbered
    image = viz.figure_to_array(fig)
    assert image.ndim == 3 and image.std() > 0
    with pytest.raises(ValueError, match="maps"):
        viz.token_attention_figure(frames, maps[:3], "circle")


def test_grid_and_token_view_draw_the_maps_alone_when_asked():
    frames = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    maps = np.random.default_rng(1).random((4, 8, 8, 2))
    for draw in (lambda f, o: viz.attention_grid(f, maps, ["red", "<f1>"], ["text", "frame"], overlay=o),
                 lambda f, o: viz.token_attention_figure(f, maps[..., 0], "red", overlay=o)):
        alone = viz.figure_to_array(draw(frames, False))
        assert np.array_equal(alone, viz.figure_to_array(draw(1 - frames, False)))  # frames do not show
        assert not np.array_equal(viz.figure_to_array(draw(frames, True)), viz.figure_to_array(draw(1 - frames, True)))
