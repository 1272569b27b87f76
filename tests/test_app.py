"""The app over HTTP with gradio_client, on a tiny random checkpoint (never the trained ones): the documented
/generate endpoint, per-user isolation under concurrency, determinism, errors, bundles, cancel."""

import dataclasses
import json
import shutil
import threading
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from conftest import served_app  # noqa: E402
from harivo import explorer as ex  # noqa: E402

PROMPT = "a red circle is moving up on a gray background"
SMALL = dict(num_frames=4, num_inference_steps=2)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return ex.ModelRegistry(root / "no-checkpoints", cache_dir=root / "cache", tiny_frames=4)


@pytest.fixture(scope="module")
def url(registry):
    with served_app(registry, ex.RunRequest(prompt=PROMPT, **SMALL)) as address:
        yield address


def generate(client: Client, **kwargs):
    values = dict(prompt=PROMPT, seed=0, **SMALL)
    values.update(kwargs)
    return client.predict(**values, api_name="/generate")


def bundle_frames(path) -> np.ndarray:
    with zipfile.ZipFile(path) as z:
        with z.open("frames.npy") as f:
            return np.load(f, allow_pickle=False)


def test_registry_falls_back_to_a_labelled_tiny_model(registry):
    assert registry.keys == [ex.TINY_KEY] and registry.untrained_only
    assert "untrained" in registry.entry(ex.TINY_KEY).label


def test_generate_endpoint_returns_video_and_figures(url):
    client = Client(url, verbose=False)
    names = [p["label"] for p in client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["returns"]]
    assert names[:2] == ["Video", "Frames"] and "Vertical-slice stack" in names
    video, strip, overlay, grid, slices, cfg, mg, flicker, summary, bundle = generate(client, seed=3)
    data = open(video, "rb").read()
    assert data[4:8] == b"ftyp" and len(data) > 1000  # an mp4
    for path in (strip, overlay, grid, slices, cfg, mg):
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.ndim == 3 and min(image.shape[:2]) > 16 and image.std() > 0
    assert np.asarray(Image.open(slices)).shape[0] >= 256  # upscaled so that a 16×16 video stays readable
    assert isinstance(flicker, float) or flicker is None
    assert "seed 3" in summary and "untrained" in summary.lower()
    with zipfile.ZipFile(bundle) as z:
        assert set(ex.BUNDLE_FILES) <= set(z.namelist())
        config = json.loads(z.read("config.json"))
    assert config["settings"]["seed"] == 3 and config["settings"]["num_frames"] == 4
    assert bundle_frames(bundle).shape == (4, 16, 16, 3)


def test_concurrent_clients_get_their_own_results(url, registry):
    """Two users at once, different settings: each gets exactly the video of its own settings."""
    a = dict(seed=1, use_mg=True, mg_alpha=150, use_mapping=True)
    b = dict(seed=2, use_mg=False, use_mapping=False, use_frame_tokens=False, num_frames=5, cfg_high=3.0)
    clients = [Client(url, verbose=False) for _ in range(2)]
    jobs = [c.submit(**{**dict(prompt=PROMPT, **SMALL), **kw}, api_name="/generate") for c, kw in zip(clients, (a, b))]
    results = [job.result(timeout=120) for job in jobs]
    pipe = registry.get(ex.TINY_KEY)
    for kw, result in zip((a, b), results):
        req = ex.RunRequest(**{**dict(prompt=PROMPT, model=ex.TINY_KEY, **SMALL), **kw})
        expected = pipe(req.settings(capture_attention=False)).frames
        got = bundle_frames(result[-1])
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert f"seed {kw['seed']}" in result[8]
    assert bundle_frames(results[0][-1]).shape[0] == 4 and bundle_frames(results[1][-1]).shape[0] == 5


def test_generate_answers_first_with_the_video_then_with_everything(registry, url):
    """The page's wait is until the first answer: the video (its mp4 written) with the first screen's views; the
    second adds the grid, slices, MG plot and the bundle, of the same run."""
    stages = list(ex.run_in_stages(registry, ex.RunRequest(prompt=PROMPT, seed=1, **SMALL)))
    assert [done for *_, done in stages] == [False, True]
    (first, first_views, _), (last, views, _) = stages
    assert first is last and set(first_views) == {"view", *ex.FIRST_VIEWS}
    assert {"strip", "token", "grid", "slices", "diagnostics"} <= set(views)
    np.testing.assert_array_equal(views["strip"], first_views["strip"])  # drawn once, kept
    assert last.video.stat().st_size > 1000 and last.bundle.exists()
    np.testing.assert_array_equal(bundle_frames(last.bundle), last.frames)
    job = Client(url, verbose=False).submit(prompt=PROMPT, seed=1, **SMALL, api_name="/generate")
    final = job.result()
    answers = job.outputs()
    assert len(answers) == 2 and open(answers[0][0], "rb").read(8)[4:8] == b"ftyp"  # the video comes first
    assert answers[-1] == final and final[-1].endswith(".zip")


def test_same_seed_and_settings_give_the_same_video(url):
    client = Client(url, verbose=False)
    first = bundle_frames(generate(client, seed=7, mg_alpha=40)[-1])
    second = bundle_frames(generate(client, seed=7, mg_alpha=40)[-1])
    np.testing.assert_array_equal(first, second)


def test_each_run_takes_the_registrys_thread_choice_and_threads_do_not_change_the_video(registry):
    """The app gives each run the cores the load leaves (`threads.ThreadChoice`), so one seed may run on 1 thread and
    then on 2: the video changes by float rounding only (bit-equal at one thread count: the test above), and the run
    records the count, to be reproduced bit for bit with `--threads`."""
    from harivo.threads import LoadMonitor, ThreadChoice

    before, req = torch.get_num_threads(), ex.RunRequest(prompt=PROMPT, seed=5, num_frames=4, num_inference_steps=3)
    videos = {}
    try:
        for n in (2, 1):
            registry.threads = ThreadChoice(n, env={})
            torch.set_num_threads(3)
            result = ex.run_generation(registry, req, write_bundle=False)
            assert torch.get_num_threads() == n and result.threads == n
            videos[n] = result.frames
    finally:
        registry.threads = None
        torch.set_num_threads(before)
    np.testing.assert_allclose(videos[1], videos[2], rtol=0, atol=1e-5)
    # by the load (unknown here: half of 4 cores); two runs at once, each in its own thread (torch's count is per
    # thread), share those: the second takes its half, and the first takes its half at its next step
    registry.threads = ThreadChoice(None, monitor=LoadMonitor(4, stat=lambda: None), env={})
    started, release, seen = threading.Event(), threading.Event(), {}

    def first_run():
        with registry.running() as runs:
            seen["alone"] = (runs, torch.get_num_threads())
            started.set()
            release.wait(30)
            registry.rebalance()  # what the run does between two steps
            seen["shared"] = torch.get_num_threads()

    first = threading.Thread(target=first_run)
    try:
        first.start()
        assert started.wait(30)
        with registry.running() as runs:
            seen["second"] = (runs, torch.get_num_threads())
            release.set()
            first.join(30)
    finally:
        release.set()
        registry.threads = None
        torch.set_num_threads(before)
    assert seen == {"alone": (1, 2), "second": (2, 1), "shared": 1}


MAX_SEED = 2**63 - 1
MG_CHOICES = "'Algorithm 1 \\(one-sided\\)', 'symmetric \\(full Eq. 7\\)'"
# One bad value each, as /generate receives it, and the one message it gets: the field's label in the page, what the
# field accepts (its range), what came. Nothing is clamped or rounded: 0 steps is not 1 step, 2.5 is not 2.
BAD_VALUES = [
    (dict(prompt="   "), r"Prompt: expected text of 1 to \d+ tokens, got '   '"),
    (dict(prompt=""), r"Prompt: expected text of 1 to \d+ tokens, got ''"),
    (dict(prompt="a red circle " * 40), r"Prompt: expected text of 1 to \d+ tokens, got 1\d\d tokens"),
    (dict(negative_prompt="red " * 90), r"Negative prompt: expected text of 0 to \d+ tokens, got 90 tokens"),
    (dict(seed=-3), rf"Seed: expected a whole number from 0 to {MAX_SEED}, got -3"),
    (dict(seed=2.5), rf"Seed: expected a whole number from 0 to {MAX_SEED}, got 2.5"),
    (dict(num_frames=99), r"Frames: expected a whole number from 2 to \d+, got 99"),
    (dict(num_frames=1), r"Frames: expected a whole number from 2 to \d+, got 1"),
    (dict(num_inference_steps=0), "DDIM steps: expected a whole number from 1 to 50, got 0"),
    (dict(num_inference_steps=51), "DDIM steps: expected a whole number from 1 to 50, got 51"),
    (dict(num_inference_steps=2.5), "DDIM steps: expected a whole number from 1 to 50, got 2.5"),
    (dict(fps=0), "fps: expected a whole number from 1 to 24, got 0"),
    (dict(fps=25), "fps: expected a whole number from 1 to 24, got 25"),
    (dict(mg_alpha=-3), "MG α: expected a number from 0 to 300, got -3"),
    (dict(mg_alpha=301), "MG α: expected a number from 0 to 300, got 301"),
    (dict(cfg_high=0.5), r"CFG high scale \(t > switch·T\): expected a number from 1 to 20, got 0.5"),
    (dict(cfg_high=25), r"CFG high scale \(t > switch·T\): expected a number from 1 to 20, got 25"),
    (dict(cfg_low=0), "CFG low scale: expected a number from 1 to 20, got 0"),
    (dict(cfg_low=21), "CFG low scale: expected a number from 1 to 20, got 21"),
    (dict(cfg_switch=1.5), r"CFG switch \(fraction of T\): expected a number from 0 to 1, got 1.5"),
    (dict(cfg_switch=-0.1), r"CFG switch \(fraction of T\): expected a number from 0 to 1, got -0.1"),
    (dict(model="no-such-model"), "Model: expected one of 'tiny', got 'no-such-model'"),
    (dict(mg_variant="sideways"), f"MG gradient: expected one of {MG_CHOICES}, got 'sideways'"),
    (dict(x_red=16), "red column x: expected a whole number from 0 to 15, got 16"),
]


@pytest.mark.parametrize("kwargs, message", BAD_VALUES, ids=[f"{next(iter(k))}={next(iter(k.values()))!r}"[:40]
                                                             for k, _ in BAD_VALUES])
def test_a_bad_value_is_refused_naming_its_field_and_range(url, kwargs, message, capfd):
    client = Client(url, verbose=False)
    capfd.readouterr()
    with pytest.raises(Exception, match=message):
        generate(client, **kwargs)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err  # a user's mistake is not a server error: nothing in the log


def test_the_server_serves_the_next_request_after_refusals(url):
    client = Client(url, verbose=False)
    for kwargs, message in BAD_VALUES[::4]:
        with pytest.raises(Exception, match=message):
            generate(client, **kwargs)
    # a good request right after, at the edges of the ranges (not clamped: exactly what was asked)
    *_, summary, bundle = generate(client, seed=MAX_SEED, num_inference_steps=1, mg_alpha=300, cfg_switch=1,
                                   fps=24, mg_variant="symmetric (full Eq. 7)", num_frames=4.0)
    assert f"seed {MAX_SEED}" in summary
    with zipfile.ZipFile(bundle) as z:
        settings = json.loads(z.read("config.json"))["settings"]
    assert settings["num_inference_steps"] == 1 and settings["num_frames"] == 4
    assert settings["mg"] == {"alpha": 300.0, "symmetric": True, "enabled": True} and settings["cfg"]["switch"] == 1


def test_compare_and_ablation_refuse_the_same_way(url):
    client = Client(url, verbose=False)
    shared = dict(prompt=PROMPT, seed=1, **SMALL)
    with pytest.raises(Exception, match=r"MG α \(B\): expected a number from 0 to 300, got 400"):
        client.predict(**shared, b_mg_alpha=400, api_name="/compare")
    with pytest.raises(Exception, match=r"Model \(A\): expected one of 'tiny', got 'nope'"):
        client.predict(**shared, a_model="nope", api_name="/compare")
    with pytest.raises(Exception, match="Rows: expected one of 'variants', 'alpha', got 'diagonal'"):
        client.predict(mode="diagonal", **shared, api_name="/ablation")
    with pytest.raises(Exception, match="DDIM steps: expected a whole number from 1 to 50, got 0"):
        client.predict(mode="alpha", **{**shared, "num_inference_steps": 0}, api_name="/ablation")


def test_no_field_of_the_page_clamps_what_the_visitor_types(registry):
    """Every number the visitor sets is a gr.Number without bounds (a gr.Slider clamps a typed value in the browser,
    and a bounded component refuses it without its label once an update has copied it): the handlers refuse it,
    naming the label the page shows and the range shown under it."""
    import gradio as gr

    import app

    demo = app.build_demo(registry, defaults=ex.RunRequest(prompt=PROMPT, **SMALL))
    blocks = list(demo.blocks.values())
    assert not [b for b in blocks if isinstance(b, gr.Slider)]
    numbers = [b for b in blocks if isinstance(b, gr.Number) and b.interactive is not False]
    assert numbers and all(n.minimum is None and n.maximum is None and n.precision is None for n in numbers)
    labels = {b.label for b in blocks if getattr(b, "label", None)}
    assert set(ex.LABELS.values()) <= labels  # each error names a label the page shows
    by_label = {n.label: n for n in numbers}
    assert by_label["DDIM steps"].info == "1 to 50" and by_label["MG α"].info == "0 to 300"
    assert by_label["Frames"].info == f"2 to {registry.capabilities(ex.TINY_KEY)['max_frames']}"


def test_bundle_loads_back(url):
    client = Client(url, verbose=False)
    bundle = generate(client, seed=5)[-1]
    video, strip, overlay, grid, slices, cfg, mg, flicker, summary, again = client.predict(
        handle_file(bundle), api_name="/load_bundle")
    assert open(video, "rb").read()[4:8] == b"ftyp"
    assert "Loaded from" in summary and "seed 5" in summary
    for path in (strip, overlay, grid, slices, mg):
        assert np.asarray(Image.open(path)).std() > 0
    np.testing.assert_array_equal(bundle_frames(again), bundle_frames(bundle))


def test_ablation_endpoint_exports_png_and_pdf(url):
    client = Client(url, verbose=False)
    image, files = client.predict(mode="alpha", x_red=3, x_green=12, prompt=PROMPT, seed=4, **SMALL, api_name="/ablation")
    assert np.asarray(Image.open(image)).std() > 0
    suffixes = sorted(str(f).rsplit(".", 1)[-1] for f in files)
    assert suffixes == ["pdf", "png"]


def test_compare_endpoint_runs_a_and_b_on_one_seed(url):
    client = Client(url, verbose=False)
    video_a, slices_a, summary_a, video_b, slices_b, summary_b = client.predict(
        prompt=PROMPT, seed=9, **SMALL, a_use_mg=False, b_use_mg=True, b_mg_alpha=150, api_name="/compare")
    assert "seed 9" in summary_a and "seed 9" in summary_b
    assert "MG off" in summary_a and "MG α=150" in summary_b
    for path in (video_a, video_b):
        assert open(path, "rb").read()[4:8] == b"ftyp"


def test_cancel_stops_sampling_after_the_current_step(registry):
    flags = ex.CancelFlags()
    event = flags.start("session-1")
    other = flags.start("session-2")
    assert flags.cancel("session-1") and event.is_set() and not other.is_set()  # per session
    result = ex.run_generation(registry, ex.RunRequest(prompt=PROMPT, num_frames=4, num_inference_steps=5),
                               cancel=event, write_bundle=False)
    assert result.cancelled and len(result.steps) == 0 and any("cancelled after 0 of 5" in n for n in result.notes)
    flags.finish("session-1", event)
    assert not flags.cancel("session-1")


def test_unknown_words_are_listed_with_the_known_ones(registry):
    _, _, warnings = ex.check_request(registry, ex.RunRequest(prompt="a red unicorn is moving up", **SMALL))
    assert len(warnings) == 1 and "unicorn" in warnings[0] and "circle" in warnings[0]


def test_shipped_shapes_models_come_with_the_motion_note(tmp_path, registry):
    import re

    import gradio as gr

    import app

    assert ex.miniature_note(registry) is None  # the tiny random model has its own warning
    folder = tmp_path / "harivo-shapes-baseline"
    (folder / "motion_adapter").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "harivo.safetensors").write_bytes(b"")
    reg = ex.ModelRegistry(tmp_path, cache_dir=tmp_path / "cache")
    summary, details = ex.miniature_note(reg)
    # one line saying what the visitor is looking at; the details (short bullets) folded away under it
    assert summary == ex.MINIATURE_NOTE and "\n" not in summary and len(summary) <= 140
    assert "Miniature HARIVO" in summary and "what they can and cannot do" in summary
    bullets = details.splitlines()
    assert len(bullets) == len(ex.MINIATURE_DETAILS) and all(b.startswith("- ") for b in bullets)
    assert ex.FEATURED_CHECKPOINT in details and "the default" in details and "row C" in details
    # no link the browser could not follow: a Space serves the app, not the repository's files
    assert all(target.startswith("https://") for target in re.findall(r"\]\(([^)]*)\)", details))
    with gr.Blocks() as demo:
        app._header(reg)
    folds = [b for b in demo.blocks.values() if isinstance(b, gr.Accordion)]
    assert [(f.elem_id, f.open, f.label.endswith(summary)) for f in folds] == [("miniature-note", False, True)]
    assert [b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "miniature-details"] == [details]
    assert reg.default_key == "baseline"  # the only model
    featured = tmp_path / ex.FEATURED_CHECKPOINT  # HARIVO's full model opens the app when shipped
    shutil.copytree(folder, featured)
    reg = ex.ModelRegistry(tmp_path, cache_dir=tmp_path / "cache")
    assert reg.default_key == "full" and reg.keys == ["full", "baseline"]
    assert reg.entry("full").label == "D · C + frame-wise tokens (HARIVO) — harivo-shapes-full"


def test_unfinished_checkpoints_say_so(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "training.json").write_text(json.dumps({"finished": False, "steps": 400, "max_steps": 1500}))
    assert ex.training_note(folder) == " (unfinished: 400/1500 training steps)"
    (folder / "training.json").write_text(json.dumps({"finished": False, "steps": 1600, "max_steps": 1500,
                                                      "verb_phase_steps": 600}))  # stopped in the verb phase
    assert ex.training_note(folder) == " (unfinished: 1600/2100 training steps)"
    (folder / "training.json").write_text(json.dumps({"finished": True, "steps": 1500, "max_steps": 1500}))
    assert ex.training_note(folder) == ""
    assert ex.training_note(tmp_path / "missing") == ""


def test_table1_rows_have_one_naming_everywhere(tmp_path):
    """The dropdown, the ablation figure's row labels, the evaluation report and the results table
    (docs/results.md) name the Table 1 rows
    with the same strings, all from harivo.config.TABLE1."""
    from pathlib import Path

    from harivo import evaluate
    from harivo.config import TABLE1, table1_label

    labels = {v: table1_label(v) for v in TABLE1}
    assert labels["baseline"] == "A · AnimateDiff baseline" and labels["full+mg"] == "D + MG · D + MG sampling"
    for v in ("baseline", "trs-dc", "mapping", "full"):  # the dropdown shows each shipped variant by its row
        folder = tmp_path / f"harivo-shapes-{v}"
        (folder / "motion_adapter").mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "harivo.safetensors").write_bytes(b"")
    reg = ex.ModelRegistry(tmp_path, cache_dir=tmp_path / "cache")
    shown = {e.key: e.label for e in reg.entries}
    for v in ("baseline", "trs-dc", "mapping", "full"):
        assert shown[v].startswith(labels[v]) and shown[v].endswith(v)
    plan = ex.ablation_plan(reg, "variants", ex.RunRequest(prompt="a red circle is moving up on a gray background"))
    assert [label for label, _ in plan] == [labels[v] for v in TABLE1]
    assert [(r.model, r.use_mg) for _, r in plan] == [("baseline", False), ("trs-dc", False), ("mapping", False),
                                                       ("full", False), ("full", True)]
    assert evaluate.TABLE1_ROW == {v: row for v, (row, _) in TABLE1.items()}
    results = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()  # linked from README
    for v, label in labels.items():
        assert f"| {label} |" in results, f"the results table does not name {v} as {label!r}"
    with pytest.raises(ValueError, match="variant"):
        table1_label("row-e")


def test_example_prompts_show_whole_on_their_buttons():
    from harivo.data.shapes import ShapeSpec, is_held_out

    seen, held_out = ex.example_prompts()
    assert len(seen) == 6 and len(held_out) == 4
    assert all(len(p) <= ex.EXAMPLE_MAX_CHARS for p in seen + held_out)
    assert not any(is_held_out(ShapeSpec.from_caption(p)) for p in seen)
    assert all(is_held_out(ShapeSpec.from_caption(p)) for p in held_out)
    assert len({ShapeSpec.from_caption(p).motion for p in seen}) >= 4  # the examples show several verbs


def test_a_model_opens_with_the_sampling_it_was_measured_best_at(tmp_path):
    import app
    from harivo.tiny import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "models")
    config = json.loads((ckpt / "config.json").read_text())
    sampling = {"cfg_low": 2.5, "mg_alpha": 60, "num_inference_steps": 12}
    (ckpt / "config.json").write_text(json.dumps({**config, "sampling": sampling}))
    reg = ex.ModelRegistry(ckpt.parent, cache_dir=tmp_path / "cache")
    key = reg.default_key
    caps = reg.capabilities(key)
    assert caps["sampling"] == {"cfg_low": 2.5, "mg_alpha": 60.0, "num_inference_steps": 12}
    assert isinstance(caps["sampling"]["num_inference_steps"], int)
    assert ex.default_request(reg).num_inference_steps == 12 and ex.default_request(reg).mg_alpha == 60.0
    demo = app.build_demo(reg)
    boxes = {c.elem_id: c.value for c in demo.blocks.values() if getattr(c, "elem_id", None) in ("alpha", "steps")}
    assert boxes == {"alpha": 60.0, "steps": 12}
    updates = app.Handlers(reg, ex.CancelFlags()).change_model(key)
    # cfg_high, cfg_low, cfg_switch, mg_alpha, num_inference_steps
    assert [u["value"] for u in updates[-5:]] == [12.5, 2.5, 0.7, 60.0, 12]
    assert "CFG low 2.5, MG α 60, DDIM steps 12" in updates[3]
    with pytest.raises(ValueError, match="num_inference_steps"):
        (ckpt / "config.json").write_text(json.dumps({**config, "sampling": {"num_inference_steps": 2.5}}))
        ex.ModelRegistry(ckpt.parent, cache_dir=tmp_path / "cache2").capabilities(key)


def test_the_ablation_grid_runs_the_chosen_models_family(tmp_path):
    """Rows: the members of the chosen checkpoint's family (`<prefix><variant><suffix>`) in the checkpoints folder,
    whatever else is there; a missing member is left out and the figure says so; each row names its folder."""
    from harivo.config import table1_label
    from harivo.tiny import save_tiny_checkpoint

    made = save_tiny_checkpoint(tmp_path / "models")  # models/harivo on models/base
    for name in ("harivo-band-baseline-verb", "harivo-band-full-verb", "harivo-shapes-mapping", "harivo-shapes-full"):
        shutil.copytree(made, made.parent / name)
    reg = ex.ModelRegistry(made.parent, cache_dir=tmp_path / "cache")
    band = "ckpt:harivo-band-full-verb"
    assert band in reg.keys
    assert ex.split_variant("harivo-band-trs-dc-verb") == ("harivo-band-", "trs-dc", "-verb")
    family = ex.model_family(reg, band)
    assert family.pattern == "harivo-band-{variant}-verb"
    assert family.members == {"baseline": "ckpt:harivo-band-baseline-verb", "full": band}
    assert family.missing == ("harivo-band-trs-dc-verb", "harivo-band-mapping-verb")
    assert ex.model_family(reg, "full").pattern == "harivo-shapes-{variant}"
    assert ex.model_family(reg, "ckpt:harivo") is None

    req = ex.RunRequest(prompt=PROMPT, seed=2, **SMALL)
    plan = ex.ablation_plan(reg, "variants", dataclasses.replace(req, model=band))
    assert [(label, r.model, r.use_mg) for label, r in plan] == [
        (table1_label("baseline"), "ckpt:harivo-band-baseline-verb", False), (table1_label("full"), band, False),
        (table1_label("full+mg"), band, True)]
    plan = ex.ablation_plan(reg, "variants", dataclasses.replace(req, model="full"))  # the shipped family
    assert [(r.model, r.use_mg) for _, r in plan] == [("mapping", False), ("full", False), ("full", True)]
    plan = ex.ablation_plan(reg, "variants", dataclasses.replace(req, model="ckpt:harivo"))  # no family
    assert {r.model for _, r in plan} == {"ckpt:harivo"} and len(plan) == 4

    res = ex.run_ablation(reg, "variants", dataclasses.replace(req, model=band), out_stem=tmp_path / "grid")
    assert [label.split("\n") for label, _ in res.rows] == [
        [table1_label("baseline"), "harivo-band-baseline-verb"], [table1_label("full"), "harivo-band-full-verb"],
        [table1_label("full+mg"), "harivo-band-full-verb"]]
    assert "harivo-band-{variant}-verb" in res.title
    assert "left out: harivo-band-trs-dc-verb, harivo-band-mapping-verb" in res.title
    res = ex.run_ablation(reg, "alpha", dataclasses.replace(req, model="ckpt:harivo"), out_stem=tmp_path / "alpha")
    assert all(label.endswith("\nharivo") for label, _ in res.rows) and res.title.endswith("on harivo")

    with served_app(reg, req) as address:  # the app's endpoint, on the model chosen in Explore
        image, files = Client(address, verbose=False).predict(mode="variants", model=band, prompt=PROMPT, seed=2,
                                                              **SMALL, api_name="/ablation")
    assert np.asarray(Image.open(image)).std() > 0 and len(files) == 2


def test_the_cfg_plot_runs_on_the_selected_models_timesteps(registry):
    """The plot shows the steps the model's own scheduler runs: with trailing spacing (the shipped T2I's) 5 steps
    are 999 … 199 and two of them lie above 0.7T; SD1.5's leading spacing gives 801 … 1 and one."""
    import app
    from harivo.explorer.views import schedule_timesteps
    from harivo.tiny import scheduler_config

    trailing = {**scheduler_config(), "timestep_spacing": "trailing"}
    assert schedule_timesteps(5, trailing) == [999, 799, 599, 399, 199]
    assert schedule_timesteps(5) == [801, 601, 401, 201, 1]
    key = registry.default_key
    config = registry.get(key).scheduler.config
    assert np.array_equal(app.cfg_plot(registry, key, 12.5, 0.7, 7.5, 5),
                          ex.render_cfg_schedule(12.5, 0.7, 7.5, 5, config))
    assert not np.array_equal(ex.render_cfg_schedule(12.5, 0.7, 7.5, 5, trailing),
                              ex.render_cfg_schedule(12.5, 0.7, 7.5, 5, scheduler_config()))
