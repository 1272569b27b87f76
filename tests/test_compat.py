"""Add-ons on the frozen T2I model (harivo.compat, paper §1 / Fig. 7) on tiny random weights: LoRA, DreamBooth base
swap, ControlNet on all or some frames, IP-Adapter; and the pipeline's memory switches. Numbers, not just shapes:
LoRA == the peft-adapted T2I UNet / text encoder; ControlNet on all frames and IP-Adapter == diffusers'
AnimateDiff pipelines; sparse ControlNet == zero residuals elsewhere; switches off == baseline."""

import copy
import warnings

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffControlNetPipeline, AnimateDiffPipeline, ControlNetModel, DDIMScheduler, StableDiffusionPipeline
from PIL import Image

from harivo import compat
from harivo.generate import main as generate_main
from harivo.pipeline import GenerationSettings
from harivo.sampling import CFGSchedule, MGConfig
from harivo.tiny import tiny_components

from conftest import build_pipeline

PROMPT = "a red circle is moving left to right on a gray background"


def plain(**kw) -> GenerationSettings:
    """Mapping, frame tokens, MG off and constant CFG: the settings under which HARIVO == AnimateDiff."""
    base = dict(seed=3, num_frames=4, num_inference_steps=3, cfg=CFGSchedule.constant(7.5), mg=MGConfig(enabled=False),
                use_mapping=False, use_frame_tokens=False)
    base.update(kw)
    return GenerationSettings(PROMPT, **base)


def full(**kw) -> GenerationSettings:
    base = dict(seed=3, num_frames=4, num_inference_steps=2, mg=MGConfig(alpha=40))
    base.update(kw)
    return GenerationSettings(PROMPT, **base)


def save_sd(components, folder):
    StableDiffusionPipeline(vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
                            unet=components.unet, scheduler=components.scheduler, safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(folder, safe_serialization=True)


# --------------------------------------------------------------------------------------------------------- LoRA
def make_lora(tiny, folder):
    """A random diffusers-format LoRA (UNet + text encoder) and the peft-adapted copies it came from."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(7)
    unet, te = copy.deepcopy(tiny.unet), copy.deepcopy(tiny.text_encoder)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    # peft itself (transformers' own add_adapter wants peft >= 0.22, newer than what is installable here)
    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                       target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]), te)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet),
                                              text_encoder_lora_layers=get_peft_model_state_dict(te))
    return unet.eval(), te.eval()


def test_lora_on_both_branches_and_the_text_encoder(tiny, tmp_path):
    pipe = build_pipeline(tiny)
    before = pipe(full(capture_attention=False)).frames
    motion = {k: v.clone() for k, v in pipe.model.unet.state_dict().items() if "motion_modules" in k}
    base_weights = {k: v.clone() for k, v in tiny.unet.state_dict().items()}
    lora_unet, lora_te = make_lora(tiny, tmp_path / "lora")
    counts = compat.load_lora(pipe, tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    assert counts["unet"] == counts["t2i_unet"] > 0 and counts["text_encoder"] > 0
    # text encoder == the peft-adapted one
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(pipe.encode_prompt(PROMPT)[0], lora_te(ids)[0], atol=1e-5)
        # T2I branch == the peft-adapted T2I UNet on every frame
        x, text = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 77, 16)
        eps = pipe.model(x, 500, text, use_motion=False, use_mapping=False, use_frame_tokens=False)
        ref = lora_unet(x[0].permute(1, 0, 2, 3), torch.tensor([500] * 3), encoder_hidden_states=text.expand(3, -1, -1)).sample
        assert torch.allclose(eps[0].permute(1, 0, 2, 3), ref, atol=1e-5)
    after = pipe(full(capture_attention=True)).frames
    assert np.abs(after - before).max() > 1e-3
    for k, v in pipe.model.unet.state_dict().items():  # motion modules untouched
        if k in motion:
            assert torch.equal(v, motion[k]), k
    assert all(torch.equal(base_weights[k.replace(".base_layer", "")], v)  # T2I weights untouched (LoRA is beside them)
               for k, v in pipe.model.t2i_unet.state_dict().items() if "lora" not in k)
    assert not any(p.requires_grad for p in pipe.model.t2i_unet.parameters())


def test_lora_scale_zero_is_no_lora(tiny, tmp_path):
    make_lora(tiny, tmp_path / "lora")
    lora_pipe = build_pipeline(tiny)
    a = lora_pipe(full(capture_attention=False)).frames
    compat.load_lora(lora_pipe, tmp_path / "lora", scale=0.0)
    assert np.abs(lora_pipe(full(capture_attention=False)).frames - a).max() <= 1e-6
    with pytest.raises(ValueError, match="lora"):
        compat.load_lora(lora_pipe, tmp_path / "nothing")


# -------------------------------------------------------------------------------------------- DreamBooth swap
def test_swap_base_model_keeps_the_harivo_networks(tiny, tmp_path):
    other = tiny_components(seed=1)  # same shapes, other weights: a "DreamBooth" of the tiny base
    save_sd(other, tmp_path / "dreambooth")
    pipe = build_pipeline(tiny)
    with torch.no_grad():
        pipe.model.mapping_network.proj_out.weight.normal_(0, 0.1)  # a "trained" mapping network
    before = pipe(full(capture_attention=False)).frames
    swapped = compat.swap_base_model(pipe, str(tmp_path / "dreambooth"))
    old, new = pipe.model, swapped.model
    for k, v in new.t2i_unet.state_dict().items():
        assert torch.equal(v, other.unet.state_dict()[k]), k
    for k, v in swapped.text_encoder.state_dict().items():
        assert torch.equal(v, other.text_encoder.state_dict()[k]), k
    old_motion = {k: v for k, v in old.unet.state_dict().items() if "motion_modules" in k}
    new_state = new.unet.state_dict()
    assert old_motion and all(torch.equal(new_state[k], v) for k, v in old_motion.items())
    assert new.unet.conv_in.weight is new.t2i_unet.conv_in.weight  # spatial weights tied again
    for name in ("mapping_network", "frame_token_generator"):
        a, b = getattr(old, name).state_dict(), getattr(new, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert np.abs(swapped(full(capture_attention=False)).frames - before).max() > 1e-3
    assert np.abs(pipe(full(capture_attention=False)).frames - before).max() == 0  # the old pipeline is unchanged
    narrow = tiny_components(seed=0)
    narrow.unet = type(tiny.unet)(**{**tiny.unet.config, "block_out_channels": (8, 16), "norm_num_groups": 4})
    save_sd(narrow, tmp_path / "narrow")
    with pytest.raises(ValueError, match="base_model"):
        compat.swap_base_model(pipe, str(tmp_path / "narrow"))


# ------------------------------------------------------------------------------------------------- ControlNet
def make_controlnet(tiny, seed=0) -> ControlNetModel:
    """ControlNet from the tiny UNet, zero convolutions made random (zero ones would hide every bug)."""
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(tiny.unet, conditioning_embedding_out_channels=(8, 16))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                p.normal_(0, 0.05)
    return net.eval()


def control_images(n, size=16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def test_controlnet_all_frames_matches_animatediff_controlnet_pipeline(tiny):
    pipe = build_pipeline(tiny)
    net = make_controlnet(tiny)
    images = control_images(4)
    ad = AnimateDiffControlNetPipeline(vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer,
                                       unet=pipe.model.unet, motion_adapter=tiny.motion_adapter, controlnet=net,
                                       scheduler=DDIMScheduler(**tiny.scheduler.config))
    ad.set_progress_bar_config(disable=True)
    expected = ad(PROMPT, num_frames=4, num_inference_steps=3, guidance_scale=7.5, height=16, width=16,
                  conditioning_frames=[Image.fromarray(i) for i in images],
                  generator=torch.Generator().manual_seed(3), output_type="np").frames[0]
    out = pipe(plain(), conditions=[compat.ControlNetCondition(net, to_tensor(images))])
    assert np.abs(out.frames - expected).max() <= 1e-4
    assert np.abs(pipe(plain()).frames - expected).max() > 1e-3  # the ControlNet does act


def test_sparse_controlnet_is_zero_on_unconditioned_frames(tiny):
    net = make_controlnet(tiny)
    images = to_tensor(control_images(4))
    sample, text = torch.randn(2, 4, 4, 8, 8), torch.randn(2, 77, 16)
    with torch.no_grad():
        dense = compat.ControlNetCondition(net, images).unet_kwargs(sample, 400, text, 0, 3, True)
        sparse = compat.ControlNetCondition(net, images[[0, 3]], [0, 3]).unet_kwargs(sample, 400, text, 0, 3, True)
    for d, s in zip(dense["down_block_additional_residuals"] + [dense["mid_block_additional_residual"]],
                    sparse["down_block_additional_residuals"] + [sparse["mid_block_additional_residual"]]):
        d, s = d.unflatten(0, (2, 4)), s.unflatten(0, (2, 4))  # (b, f, C, h, w)
        assert torch.allclose(s[:, [0, 3]], d[:, [0, 3]], atol=1e-6)  # conditioned frames: the dense residuals
        assert torch.count_nonzero(s[:, [1, 2]]) == 0 and torch.count_nonzero(d[:, [1, 2]]) > 0
    pipe = build_pipeline(tiny)
    base = pipe(full(capture_attention=False)).frames
    out = pipe(full(), conditions=[compat.ControlNetCondition(net, images[[0, 3]], [0, 3])])  # HARIVO parts on
    assert out.frames.shape == base.shape and np.abs(out.frames - base).max() > 1e-3
    off = pipe(full(capture_attention=False), conditions=[compat.ControlNetCondition(net, images[[0, 3]], [0, 3], scale=0.0)])
    assert np.abs(off.frames - base).max() <= 1e-6
    t2i = pipe(full(use_motion=False), conditions=[compat.ControlNetCondition(net, images[[0]], [0])])
    assert t2i.frames.shape == base.shape


def test_controlnet_bad_input_names_the_argument(tiny):
    pipe, net = build_pipeline(tiny), make_controlnet(tiny)
    images = to_tensor(control_images(4))
    for condition, field in (
        (compat.ControlNetCondition(net, images[:3]), "control_images"),
        (compat.ControlNetCondition(net, images[:2], [0, 4]), "control_frames"),
        (compat.ControlNetCondition(net, images[:2], [1, 1]), "control_frames"),
        (compat.ControlNetCondition(net, torch.rand(4, 3, 8, 8)), "control_images"),
        (compat.ControlNetCondition(net, images, scale=-1.0), "control_scale"),
    ):
        with pytest.raises(ValueError, match=field):
            pipe(plain(), conditions=[condition])


# ------------------------------------------------------------------------------------------------- IP-Adapter
def make_ip_adapter(unet, image_dim=12, seed=0) -> dict:
    """A random IP-Adapter in the layout of h94/IP-Adapter's ip-adapter_sd15: image_proj (Linear to 4 tokens +
    LayerNorm) and to_k_ip/to_v_ip for every cross-attention layer, numbered 1, 3, 5 ... in the T2I UNet's order."""
    g = torch.Generator().manual_seed(seed)
    d = unet.config.cross_attention_dim
    state = {"image_proj": {"proj.weight": torch.randn(4 * d, image_dim, generator=g) * 0.2,
                            "proj.bias": torch.zeros(4 * d), "norm.weight": torch.ones(d), "norm.bias": torch.zeros(d)},
             "ip_adapter": {}}
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            hidden = unet.get_submodule(name[: -len(".processor")]).to_k.out_features
            state["ip_adapter"][f"{key}.to_k_ip.weight"] = torch.randn(hidden, d, generator=g) * 0.2
            state["ip_adapter"][f"{key}.to_v_ip.weight"] = torch.randn(hidden, d, generator=g) * 0.2
            key += 2
    return state


def test_ip_adapter_matches_animatediff_pipeline(tiny):
    pipe = build_pipeline(tiny)
    without = pipe(plain()).frames
    compat.load_ip_adapter(pipe, make_ip_adapter(tiny.unet), scale=0.8)
    image_embeds = torch.randn(1, 12, generator=torch.Generator().manual_seed(1))
    ad = AnimateDiffPipeline(vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer, unet=pipe.model.unet,
                             motion_adapter=tiny.motion_adapter, scheduler=DDIMScheduler(**tiny.scheduler.config))
    ad.set_progress_bar_config(disable=True)
    embeds = torch.stack([torch.zeros_like(image_embeds), image_embeds])  # (2, 1, D): [uncond, cond]
    expected = ad(PROMPT, num_frames=4, num_inference_steps=3, guidance_scale=7.5, ip_adapter_image_embeds=[embeds],
                  generator=torch.Generator().manual_seed(3), output_type="np").frames[0]
    out = pipe(plain(), conditions=[compat.IPAdapterCondition(image_embeds)])
    assert np.abs(out.frames - expected).max() <= 1e-4
    assert out.attention is None and any("IP-Adapter" in n for n in out.notes)
    with pytest.raises(ValueError, match="conditions"):
        pipe(plain())  # a loaded IP-Adapter needs its image prompt
    # HARIVO parts on, both branches
    assert pipe(full(), conditions=[compat.IPAdapterCondition(image_embeds)]).frames.shape == (4, 16, 16, 3)
    assert pipe(full(use_motion=False), conditions=[compat.IPAdapterCondition(image_embeds)]).frames.shape == (4, 16, 16, 3)
    compat.unload_ip_adapter(pipe)
    assert np.abs(pipe(plain()).frames - without).max() <= 1e-6


def test_ip_adapter_scale_zero_is_no_ip_adapter(tiny):
    pipe = build_pipeline(tiny)
    base = pipe(full(capture_attention=False)).frames
    compat.load_ip_adapter(pipe, make_ip_adapter(tiny.unet), scale=0.0)
    out = pipe(full(), conditions=[compat.IPAdapterCondition(torch.randn(1, 12))])
    assert np.abs(out.frames - base).max() <= 1e-5
    compat.set_ip_adapter_scale(pipe.model.unet, 1.0)
    out = pipe(full(), conditions=[compat.IPAdapterCondition(torch.randn(1, 12))])
    assert np.abs(out.frames - base).max() > 1e-3
    with pytest.raises(ValueError, match="ip_adapter"):
        compat.load_ip_adapter(pipe, {"image_proj": {}, "ip_adapter": {}})


# ---------------------------------------------------------------------------------------------- memory switches
def test_memory_switches_do_not_change_the_video(tiny):
    pipe = build_pipeline(tiny)
    base = pipe(full()).frames
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pipe.enable_cpu_offload("cuda") is torch.cuda.is_available()
    assert torch.cuda.is_available() or any("cpu_offload" in str(w.message) for w in caught)
    assert pipe.enable_attention_slicing() > 0
    pipe.enable_vae_slicing()
    pipe.decode_chunk_size = 1
    assert np.abs(pipe(full()).frames - base).max() <= 1e-5
    bf16 = build_pipeline(tiny).to(dtype=torch.bfloat16)
    a, b = bf16(full()).frames, bf16(full()).frames
    assert np.isfinite(a).all() and np.array_equal(a, b) and np.abs(a - base).max() < 0.25  # same seed, same video


# ----------------------------------------------------------------------------------------------------- the CLI
def test_cli_animatediff_with_controlnet_lora_and_ip_adapter(tiny, tmp_path):
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    save_sd(tiny, tmp_path / "sd")
    tiny.motion_adapter.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    make_controlnet(tiny).save_pretrained(tmp_path / "controlnet", safe_serialization=True)
    make_lora(tiny, tmp_path / "lora")
    ip = make_ip_adapter(tiny.unet)
    (tmp_path / "ip" / "models").mkdir(parents=True)
    save_file({f"{h}.{k}": v for h, part in ip.items() for k, v in part.items()},
              tmp_path / "ip" / "models" / "ip-adapter_sd15.safetensors")
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=16, intermediate_size=32, projection_dim=12,
                                                   num_hidden_layers=1, num_attention_heads=2, image_size=32,
                                                   patch_size=8)).save_pretrained(tmp_path / "ip" / "models" / "image_encoder")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "ip" / "models" / "image_encoder")
    for i, image in enumerate(control_images(2)):
        Image.fromarray(image).save(tmp_path / f"c{i}.png")
    Image.fromarray(control_images(1, 40)[0]).save(tmp_path / "prompt.png")
    args = ["--prompt", PROMPT, "--seed", "1", "--base-model", str(tmp_path / "sd"), "--motion-adapter",
            str(tmp_path / "adapter"), "--frames", "4", "--steps", "2", "--dtype", "float32", "--vae-slicing",
            "--attention-slicing", "--decode-chunk-size", "2", "--cpu-offload", "--lora", str(tmp_path / "lora"),
            "--lora-scale", "0.5", "--controlnet", str(tmp_path / "controlnet"), "--control-images",
            str(tmp_path / "c0.png"), str(tmp_path / "c1.png"), "--control-frames", "0,3", "--ip-adapter",
            str(tmp_path / "ip"), "--ip-image", str(tmp_path / "prompt.png"), "--out", str(tmp_path / "out")]
    assert generate_main(args) == 0
    frames = np.load(tmp_path / "out" / "frames.npy")
    assert frames.shape == (4, 16, 16, 3) and np.isfinite(frames).all()
    import json

    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["args"]["control_frames"] == "0,3" and config["args"]["lora_scale"] == 0.5
    bad = args[:-2] + ["--control-frames", "0,9", "--out", str(tmp_path / "bad")]
    assert generate_main(bad) == 2


def test_cli_harivo_weights_on_another_base_and_errors(tmp_path, capsys):
    from harivo.tiny import save_tiny_checkpoint

    checkpoint = save_tiny_checkpoint(tmp_path)
    save_sd(tiny_components(seed=1), tmp_path / "dreambooth")
    common = ["--prompt", PROMPT, "--frames", "4", "--steps", "1", "--no-attention"]
    assert generate_main(common + ["--harivo-weights", str(checkpoint), "--out", str(tmp_path / "a")]) == 0
    assert generate_main(common + ["--harivo-weights", str(checkpoint), "--base-model", str(tmp_path / "dreambooth"),
                                   "--out", str(tmp_path / "b")]) == 0
    assert generate_main(common + ["--checkpoint", str(checkpoint), "--dreambooth", str(tmp_path / "dreambooth"),
                                   "--out", str(tmp_path / "c")]) == 0
    a, b, c = (np.load(tmp_path / d / "frames.npy") for d in "abc")
    assert np.abs(a - b).max() > 1e-3 and np.abs(a - c).max() > 1e-3  # c: the other UNet + text encoder, old VAE
    # swapping every part == loading the checkpoint on the other base
    from harivo.pipeline import HarivoPipeline

    swapped = compat.swap_base_model(HarivoPipeline.from_checkpoint(checkpoint), str(tmp_path / "dreambooth"),
                                     parts=("unet", "text_encoder", "vae"))
    direct = HarivoPipeline.from_checkpoint(checkpoint, base_model=str(tmp_path / "dreambooth"))
    assert np.abs(swapped(full()).frames - direct(full()).frames).max() <= 1e-6
    assert not (tmp_path / "a" / "attention.npz").exists()
    capsys.readouterr()
    assert generate_main(common + ["--motion-adapter", str(checkpoint / "motion_adapter"), "--out", str(tmp_path / "d")]) == 2
    assert "base_model" in capsys.readouterr().err
    assert generate_main(common + ["--checkpoint", str(checkpoint), "--controlnet", str(tmp_path), "--out",
                                   str(tmp_path / "e")]) == 2
    assert "control_images" in capsys.readouterr().err
