"""One owner per setting (harivo.settings.GenerationSettings): the app over HTTP, the CLI and the Python API, given the
same settings, make the same video and record the same settings; α's default and range are the sampler's own
everywhere; what a run records and shows is what took effect."""

import json
import zipfile

import numpy as np
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

from conftest import served_app  # noqa: E402
from harivo import explorer as ex  # noqa: E402
from harivo import generate  # noqa: E402
from harivo.evaluate import EvalConfig  # noqa: E402
from harivo.pipeline import HarivoPipeline  # noqa: E402
from harivo.sampling import CFGSchedule, MGConfig  # noqa: E402
from harivo.settings import GenerationSettings, flat_range  # noqa: E402
from harivo.tiny import save_tiny_checkpoint  # noqa: E402

PROMPT = "a red circle is moving up on a gray background"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("models"))  # <root>/harivo on <root>/base


@pytest.fixture(scope="module")
def registry(checkpoint, tmp_path_factory):
    return ex.ModelRegistry(checkpoint.parent, cache_dir=tmp_path_factory.mktemp("cache"))  # offers "ckpt:harivo"


def test_app_cli_and_python_make_the_same_video_and_record_the_same_settings(checkpoint, registry, tmp_path):
    # the Python API
    settings = GenerationSettings(PROMPT, seed=3, num_frames=5, num_inference_steps=2, cfg=CFGSchedule(9.0, 5.0, 0.5),
                                  mg=MGConfig(alpha=150.0, symmetric=True), use_mapping=False)
    api = HarivoPipeline.from_checkpoint(checkpoint)(settings)
    # the CLI
    argv = ["--prompt", PROMPT, "--checkpoint", str(checkpoint), "--seed", "3", "--frames", "5", "--steps", "2",
            "--cfg-high", "9", "--cfg-low", "5", "--cfg-switch", "0.5", "--alpha", "150", "--mg-symmetric",
            "--no-mapping", "--out", str(tmp_path / "cli")]
    assert generate.main(argv) == 0
    cli_config = json.loads((tmp_path / "cli" / "config.json").read_text())
    # the app, over HTTP
    assert "ckpt:harivo" in registry.keys
    with served_app(registry, ex.RunRequest(prompt=PROMPT, num_frames=4, num_inference_steps=2)) as url:
        result = Client(url, verbose=False).predict(
            model="ckpt:harivo", prompt=PROMPT, seed=3, num_frames=5, num_inference_steps=2, cfg_high=9, cfg_low=5,
            cfg_switch=0.5, mg_alpha=150, mg_variant="symmetric (full Eq. 7)", use_mapping=False, api_name="/generate")
    with zipfile.ZipFile(result[-1]) as z:
        app_config = json.loads(z.read("config.json"))
        with z.open("frames.npy") as f:
            app_frames = np.load(f, allow_pickle=False)

    np.testing.assert_array_equal(np.load(tmp_path / "cli" / "frames.npy"), api.frames)
    np.testing.assert_array_equal(app_frames, api.frames)
    assert json.loads(json.dumps(api.settings)) == cli_config["settings"] == app_config["settings"]
    assert api.settings["mg"] == {"alpha": 150.0, "symmetric": True, "enabled": True}
    assert api.settings["use_mapping"] is False and api.settings["cfg"] == {"high": 9.0, "low": 5.0, "switch": 0.5}


def test_alpha_default_and_range_have_one_owner(registry):
    low, high = flat_range("mg_alpha")
    default = MGConfig().alpha
    assert (low, high) == (0.0, 300.0) and default == 40.0
    assert GenerationSettings().mg.alpha == ex.RunRequest().mg_alpha == EvalConfig().mg_alpha == default
    from harivo import settings as flags  # the CLI leaves α unset, then takes the model's recommendation or this
    assert flags.from_args(generate.build_parser().parse_args(["--prompt", "p", "--out", "o"])).mg.alpha == default
    MGConfig(alpha=high).validate()
    with pytest.raises(ValueError, match="alpha"):
        MGConfig(alpha=high + 1).validate()
    import app  # every α field of the page (Explore, Compare A and B) shows the settings' range and default

    assert (ex.NUMBERS["mg_alpha"].low, ex.NUMBERS["mg_alpha"].high) == (low, high)  # what the app accepts
    demo = app.build_demo(registry)
    fields = [b for b in demo.blocks.values() if getattr(b, "label", None) == "MG α"]
    assert len(fields) == 3
    assert all((f.info, f.value) == (f"{low:g} to {high:g}", default) for f in fields)


def test_mg_off_has_one_representation():
    assert MGConfig(alpha=0.0).enabled is False and MGConfig(alpha=0.0) == MGConfig(alpha=0.0, enabled=False)
    assert MGConfig(alpha=40.0, enabled=False).enabled is False and MGConfig().enabled is True


def test_the_run_records_and_shows_the_components_in_effect(registry):
    """Temporal layers off: the T2I branch has no frame tokens, so the record and the summary say they were off."""
    req = ex.RunRequest(prompt=PROMPT, model="ckpt:harivo", num_frames=4, num_inference_steps=2, use_motion=False)
    result = ex.run_generation(registry, req, write_bundle=False)
    assert result.settings["use_motion"] is False and result.settings["use_frame_tokens"] is False
    text = ex.summary(result)
    assert "frame tokens off" in text and "temporal layers off" in text and "frame tokens on" not in text
    assert "frame" not in result.attention.token_kinds  # nor does the grid claim any
    on = ex.run_generation(registry, ex.RunRequest(prompt=PROMPT, model="ckpt:harivo", num_frames=4,
                                                   num_inference_steps=2), write_bundle=False)
    assert "frame tokens on" in ex.summary(on) and on.settings["use_frame_tokens"] is True


def test_attention_views_on_the_frames_or_alone(registry):
    result = ex.run_generation(registry, ex.RunRequest(prompt=PROMPT, model="ckpt:harivo", num_frames=4,
                                                       num_inference_steps=2), write_bundle=False)
    on = ex.render_attention(result, overlay=True)
    off = ex.render_attention(result, overlay=False)
    for key in ("token", "grid"):
        assert on[key].ndim == 3 and off[key].ndim == 3 and not np.array_equal(on[key], off[key])
    dark = ex.render_attention(ex.RunResult(**{**result.__dict__, "frames": np.zeros_like(result.frames)}),
                               overlay=False)
    np.testing.assert_array_equal(dark["token"], off["token"])  # alone: the frames do not show through
    assert ex.render_views(result, ex.ViewOptions(overlay=False))["token"].shape == off["token"].shape
