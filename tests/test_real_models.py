"""Real models in the app (issue 31): a YAML list (and `python app.py`'s flags, the CLI's) offering diffusers
folders beside the embedded models, on a tiny *real-shaped* model (SD1.5 / AnimateDiff's block structure, tiny
channels; `harivo.tiny.REAL_SHAPED`) saved to folders, no downloads: listed, components it lacks shown off with the
reason, the cost said before a run, and a generation through the HTTP API with attention maps at every resolution
and the slice stack. The same on the SD1.5 / AnimateDiff-v2 configuration (random weights) is `-m slow`."""

import zipfile

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

from conftest import served_app  # noqa: E402
from harivo import explorer as ex  # noqa: E402
from harivo import generate, sources  # noqa: E402
from harivo.tiny import save_real_shaped, save_tiny_checkpoint  # noqa: E402

PROMPT = "a red circle is moving up on a gray background"
SMALL = dict(num_frames=4, num_inference_steps=2)
TINY_HARIVO = dict(num_frames=4, mapping_hidden_channels=8, mapping_heads=2, mapping_head_dim=8)
RESOLUTIONS = ["8x8", "4x4", "2x2", "1x1"]  # 64 px: 8×8 latents, three downsamplings (the mid block is 1×1)
MODELS_YAML = """
models:
  - name: animatediff-tiny
    base_model: real/base
    motion_adapter: real/motion_adapter
    dtype: float32
  - name: harivo-tiny
    base_model: real/base
    harivo_weights: real/harivo
    lora: lora
    lora_scale: 0.5
    height: 64
    width: 64
"""


def make_lora(base, folder):
    """A random diffusers-format LoRA on the real-shaped UNet's attention."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(3)
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    save_real_shaped(root / "real", harivo=TINY_HARIVO)
    make_lora(root / "real" / "base", root / "lora")
    save_tiny_checkpoint(root / "checkpoints")  # an embedded model beside them: checkpoints/harivo
    (root / "models.yaml").write_text(MODELS_YAML)
    return root


@pytest.fixture(scope="module")
def registry(folder):
    return ex.ModelRegistry(folder / "checkpoints", cache_dir=folder / "cache",
                            models=ex.read_models(folder / "models.yaml"))


@pytest.fixture(scope="module")
def url(registry):
    with served_app(registry, ex.RunRequest(prompt=PROMPT, **SMALL)) as address:
        yield address


def test_the_yaml_models_are_listed_beside_the_embedded_ones(registry, folder):
    assert registry.keys == ["ckpt:harivo", "real:animatediff-tiny", "real:harivo-tiny"]
    assert registry.default_key == "ckpt:harivo"  # the embedded world opens the page unless the list says otherwise
    labels = {e.key: e.label for e in registry.entries}
    assert labels["real:animatediff-tiny"] == "animatediff-tiny — base + motion_adapter (no HARIVO weights)"
    assert labels["real:harivo-tiny"] == "harivo-tiny — base + HARIVO weights harivo + LoRA lora ×0.5"
    spec = registry.entry("real:harivo-tiny").spec  # relative paths are read from the YAML file's folder
    assert spec.harivo_weights == str((folder / "real" / "harivo").resolve())
    assert spec.lora == str((folder / "lora").resolve())
    (folder / "with-default.yaml").write_text(MODELS_YAML + "default: harivo-tiny\nembedded: false\n")
    only = ex.ModelRegistry(folder / "checkpoints", models=ex.read_models(folder / "with-default.yaml"))
    assert only.keys == ["real:animatediff-tiny", "real:harivo-tiny"] and only.default_key == "real:harivo-tiny"


def test_components_a_model_lacks_are_off_with_the_reason(registry):
    plain = registry.capabilities("real:animatediff-tiny")
    assert not plain["mapping"] and not plain["frame_tokens"]
    assert plain["missing"] == {"mapping": "no HARIVO weights (plain AnimateDiff)",
                                "frame_tokens": "no HARIVO weights (plain AnimateDiff)"}
    info = ex.model_info(plain)
    assert "Mapping network and frame-wise tokens off: no HARIVO weights (plain AnimateDiff)." in info
    assert "runs on cpu, float32" in info and "Up to 32 frames, 64×64 px" in info
    import app  # the page: both toggles off and disabled, the reason under each

    updates = app.Handlers(registry, ex.CancelFlags()).change_model("real:animatediff-tiny")
    for toggle in updates[1:3]:
        assert (toggle["value"], toggle["interactive"]) == (False, False)
        assert toggle["info"] == "no HARIVO weights (plain AnimateDiff)"
    full = registry.capabilities("real:harivo-tiny")
    assert full["mapping"] and full["frame_tokens"] and full["missing"] == {}
    assert (full["width"], full["size_multiple"], full["max_frames"]) == (64, 64, 32)
    pipe = registry.get("real:harivo-tiny")
    assert any("lora" in n for n, _ in pipe.model.t2i_unet.named_modules())  # the LoRA is in
    assert full["vae_slicing"] and full["decode_chunk_size"] == 8  # the spec's 24 GB defaults


def test_the_cost_is_said_before_a_run_and_estimated_after_one(registry):
    key = "real:animatediff-tiny"
    note = ex.typed_cost(registry, key, 16, 25, None, None)
    assert "16 frames × 64×64 px × 25 steps on cpu (float32): 50 UNet passes" in note
    assert "weights 1.1 MB" in note and "measured by the first run" in note
    assert ex.typed_cost(registry, key, 16, 25, 100, None) is None  # a size the run would refuse: no note
    ex.run_generation(registry, ex.RunRequest(prompt=PROMPT, model=key, **SMALL), write_bundle=False)
    last = registry.costs.last(key)
    assert (last.steps, last.frames, last.height, last.width) == (2, 4, 64, 64) and last.seconds > 0
    note = ex.typed_cost(registry, key, 8, 2, None, None)
    assert "scaled from the last run here (2 steps, 4 × 64×64 px:" in note
    assert f"≈ {2 * last.seconds:.1f} s" in note  # twice the frames: twice the time


def test_generate_through_the_http_api_at_every_resolution(url, registry):
    """The documented /generate on the real-shaped HARIVO model: the video, the slice stack, and the attention maps
    of each resolution (the bundle records them all)."""
    client = Client(url, verbose=False)
    overlays = {}
    for source in ["mean of all resolutions"] + [f"resolution {r}" for r in RESOLUTIONS]:
        video, strip, overlay, grid, slices, cfg, mg, flicker, summary, bundle = client.predict(
            prompt=PROMPT, seed=1, model="real:harivo-tiny", attention_source=source, height=64, width=64, **SMALL,
            api_name="/generate")
        overlays[source] = np.asarray(Image.open(overlay).convert("RGB"))
        assert overlays[source].std() > 0
    assert open(video, "rb").read()[4:8] == b"ftyp"
    assert "harivo-tiny — base + HARIVO weights" in summary and "mapping on" in summary and "frame tokens on" in summary
    assert np.asarray(Image.open(slices)).std() > 0 and np.asarray(Image.open(slices)).shape[0] >= 256
    result = ex.load_bundle(bundle)
    assert result.frames.shape == (4, 64, 64, 3) and result.attention.resolutions == RESOLUTIONS
    assert "<f1>" in result.attention.tokens  # HARIVO's frame tokens
    assert len({o.tobytes() for o in overlays.values()}) == len(overlays)  # each resolution its own maps
    with zipfile.ZipFile(bundle) as z:
        assert {"video.mp4", "attention.npz", "config.json"} <= set(z.namelist())
    # the plain AnimateDiff model: its toggles are off in effect, named in the summary
    *_, summary, bundle = client.predict(prompt=PROMPT, model="real:animatediff-tiny", **SMALL, api_name="/generate")
    assert "mapping off" in summary and "frame tokens off" in summary
    assert ex.load_bundle(bundle).attention.resolutions == RESOLUTIONS


def test_a_size_the_model_cannot_make_is_refused_naming_the_field(url):
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match=r"Height \(px\): expected a whole number from 64 to 4096, a multiple of 64 "
                                        r"\(0: the model's 64\), got 100"):
        client.predict(prompt=PROMPT, model="real:animatediff-tiny", height=100, **SMALL, api_name="/generate")
    with pytest.raises(Exception, match=r"red column x: expected a whole number from 0 to 63, got 64"):
        client.predict(prompt=PROMPT, model="real:animatediff-tiny", width=64, x_red=64, **SMALL, api_name="/generate")


BAD_LISTS = [
    ("- {name: a, base_model: b, motion_adapter: m, dtype: float8}", r"model 1 \('a'\): dtype: expected one of"),
    ("- {name: a, base_model: b, motion_adaptor: m}", r"model 1 \('a'\): motion_adaptor: not a model field"),
    ("- {name: a, base_model: b, motion_adapter: m, harivo_weights: w}", "motion_adapter: leave it out"),
    ("- {name: a, motion_adapter: m}", "base_model: a motion adapter needs a base model"),
    ("- {base_model: b, motion_adapter: m}", "model 1: name: expected a non-empty name"),
    ("- {name: a, base_model: b}", "motion_adapter: expected base_model \\+ motion_adapter, or harivo_weights"),
    ("- {name: a, harivo_weights: w, decode_chunk_size: 0}", "decode_chunk_size: expected a value >= 1, got 0"),
    ("- {name: a, harivo_weights: w, height: 4}", "height: expected a value >= 8, got 4"),
    ("- {name: a, harivo_weights: w, vae_slicing: maybe}", "vae_slicing: expected true or false"),
    ("- {name: a, harivo_weights: w}\n- {name: a, harivo_weights: v}", "name: 'a' is given twice"),
    ("models: {name: a}", "expected a list of models"),
    ("models: []\nembeded: true", "embeded: expected some of"),
    ("- [", "not valid YAML"),
]


@pytest.mark.parametrize("text, message", BAD_LISTS, ids=[m[:30] for _, m in BAD_LISTS])
def test_a_bad_model_list_is_refused_naming_the_entry_and_field(tmp_path, text, message):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        ex.read_models(path)


def test_the_app_takes_the_clis_model_flags(folder, registry):
    base, adapter = str(folder / "real" / "base"), str(folder / "real" / "motion_adapter")
    flags = ["--base-model", base, "--motion-adapter", adapter, "--dtype", "float32", "--no-vae-slicing",
             "--decode-chunk-size", "4", "--cpu-offload", "--lora", "x", "--lora-scale", "0.3"]
    app_args = ex.build_parser().parse_args(flags + ["--name", "mine", "--models", str(folder / "models.yaml")])
    models = ex.models_from_args(app_args, env={})
    assert [s.name for s in models.specs] == ["animatediff-tiny", "harivo-tiny", "mine"]
    cli_args = generate.build_parser().parse_args(flags + ["--prompt", "p", "--out", "o"])
    assert models.specs[-1] == sources.spec_from_args(cli_args, name="mine")  # one set of flags, one meaning
    assert (models.specs[-1].vae_slicing, models.specs[-1].decode_chunk_size) == (False, 4)
    # defaults: the app's are sized for a 16-frame 512² video on a 24 GB GPU, the CLI keeps its own
    app_default = ex.build_parser().parse_args(["--harivo-weights", "w"])
    cli_default = generate.build_parser().parse_args(["--harivo-weights", "w", "--prompt", "p", "--out", "o"])
    assert sources.spec_from_args(app_default) == sources.ModelSpec(harivo_weights="w")
    assert (cli_default.dtype, cli_default.vae_slicing, cli_default.decode_chunk_size) == ("float32", False, 16)
    assert sources.ModelSpec(device="cuda").resolved_dtype() == "float16"
    assert sources.ModelSpec(device="cpu").resolved_dtype() == "float32"
    env = ex.models_from_args(ex.build_parser().parse_args([]), env={ex.MODELS_ENV: str(folder / "models.yaml")})
    assert len(env.specs) == 2  # a Space passes no flags: $HARIVO_MODELS
    with pytest.raises(ValueError, match="motion_adapter: --base-model needs"):
        ex.models_from_args(ex.build_parser().parse_args(["--base-model", base]), env={})
    with pytest.raises(ValueError, match="default: expected one of"):
        ex.ModelRegistry(folder / "checkpoints", models=ex.ModelList(default="nope"))
    gpu = ex.ModelList([sources.ModelSpec(name="g", harivo_weights="w", device="cuda")])
    assert ex.ModelRegistry(folder / "checkpoints", models=gpu).concurrency == 1  # one 512² run at a time on a GPU
    assert registry.concurrency == 2  # CPUs: 2 (a basic Space's cores)


@pytest.mark.slow
def test_sd15_animatediff_configuration_in_the_app(tmp_path):
    """The SD1.5 / AnimateDiff-v2 configuration with random weights, saved to folders (no download), listed by
    the app and generating at 64 px through the HTTP API with attention maps at every resolution and the slice
    stack."""
    from harivo.bench.cases import ANIMATEDIFF_V2, SD15_TEXT, SD15_UNET, SD15_VAE

    save_real_shaped(tmp_path / "sd15", dict(unet=SD15_UNET, vae=SD15_VAE, text=SD15_TEXT, adapter=ANIMATEDIFF_V2))
    (tmp_path / "models.yaml").write_text("- {name: sd15, base_model: sd15/base, motion_adapter: sd15/motion_adapter,"
                                          " height: 64, width: 64}\n")
    registry = ex.ModelRegistry(tmp_path / "none", cache_dir=tmp_path / "cache",
                                models=ex.read_models(tmp_path / "models.yaml"))
    assert registry.keys == ["real:sd15"]
    caps = registry.capabilities("real:sd15")
    assert caps["size_multiple"] == 64 and caps["native"] == 512 and caps["width"] == 64
    assert 2.5 * 2**30 < caps["weights_bytes"] / 2 < 3.0 * 2**30  # ≈ 1.47 G parameters: 2.7 GB in float16
    with served_app(registry, ex.RunRequest(prompt="a red circle", num_frames=2, num_inference_steps=1)) as url:
        client = Client(url, verbose=False)
        video, strip, overlay, grid, slices, cfg, mg, flicker, summary, bundle = client.predict(
            prompt="a red circle moving left", model="real:sd15", num_frames=2, num_inference_steps=1,
            attention_source="resolution 1x1", api_name="/generate")
    result = ex.load_bundle(bundle)
    assert result.frames.shape == (2, 64, 64, 3) and result.attention.resolutions == RESOLUTIONS
    assert np.asarray(Image.open(overlay)).std() > 0 and np.asarray(Image.open(slices)).std() > 0
    for r in RESOLUTIONS:  # every resolution's maps, drawn from the bundle as the page draws them
        assert ex.render_attention(result, source=f"resolution {r}")["token"].std() > 0
    assert open(video, "rb").read()[4:8] == b"ftyp"


def test_the_spaces_model_list_parses_and_writes_out_the_defaults():
    from pathlib import Path

    models = ex.read_models(Path(__file__).resolve().parents[1] / "configs" / "space-models.yaml")
    assert [s.name for s in models.specs] == ["sd15-animatediff"] and models.default == "sd15-animatediff"
    spec = models.specs[0]
    assert spec == sources.ModelSpec(name=spec.name, base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
                                     motion_adapter="guoyww/animatediff-motion-adapter-v1-5-2")  # hub ids kept
