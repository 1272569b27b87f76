"""Video model: tied frozen T2I weights, identity mapping at init, frame-token layout, save/load."""

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel

from harivo.model import HarivoVideoModel
from harivo.modules import FrameTokenGenerator, MappingNetwork, ProjectionHead

from conftest import build_model


def test_mapping_network_is_identity_at_init():
    m = MappingNetwork(channels=4, hidden_channels=8, heads=2, head_dim=8)
    x = torch.randn(2, 4, 6, 5, 7)
    assert torch.equal(m(x), x)
    # and it is not a constant identity: once trained (here: perturbed) it mixes frames
    with torch.no_grad():
        m.proj_out.weight.normal_()
    y = m(x)
    assert not torch.allclose(y, x)
    x2 = x.clone()
    x2[:, :, 0] += torch.randn_like(x2[:, :, 0])  # change frame 0 only (not by a constant: LayerNorm removes that) → other frames move too (temporal attention)
    assert not torch.allclose(m(x2)[:, :, 3], y[:, :, 3])


def test_frame_tokens_layout_and_text_untouched():
    gen = FrameTokenGenerator(text_dim=8, max_text_len=6, num_tokens=3, num_frames=4)
    text = torch.randn(2, 6, 8)
    out = gen(text)
    assert out.shape == (2 * 4, 6 + 3, 8)  # (b f) (M+K) D
    tokens = gen.frame_tokens(text)  # (b, f, K, D)
    for b in range(2):
        for f in range(4):
            row = out[b * 4 + f]  # batch-major, as repeat_interleave(num_frames, dim=0)
            assert torch.equal(row[:6], text[b])  # text tokens untouched
            assert torch.equal(row[6:], tokens[b, f])
    assert not torch.allclose(tokens[:, 0], tokens[:, 1])  # frame-wise: different per frame
    # other frame counts: resampled along frames, end points kept
    resampled = gen.frame_tokens(text, 7)
    assert resampled.shape == (2, 7, 3, 8)
    assert torch.allclose(resampled[:, 0], tokens[:, 0]) and torch.allclose(resampled[:, -1], tokens[:, -1])
    with pytest.raises(ValueError, match="text_tokens"):
        gen(torch.randn(2, 5, 8))


def test_projection_head_shape():
    g = ProjectionHead(channels=6, spatial_size=3)
    assert g(torch.randn(5, 6, 3, 3)).shape == (5, 6)
    with pytest.raises(ValueError, match="h-space"):
        g(torch.randn(5, 6, 4, 4))


def test_t2i_weights_tied_and_frozen(tiny):
    model = build_model(tiny)
    motion = model.unet
    for name, p in tiny.unet.named_parameters():
        assert motion.get_parameter(name) is p  # one copy of the T2I weights
        assert not p.requires_grad
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        "motion_modules" in n or n.startswith(("mapping_network.", "frame_token_generator.")) for n in trainable
    )


def test_motion_off_is_t2i_model_per_frame(tiny):
    model = build_model(tiny)
    x = torch.randn(2, 4, 3, 8, 8)
    text = torch.randn(2, 77, 16)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        eps = model(x, t, text, use_motion=False, use_mapping=False, use_frame_tokens=False)
        for b in range(2):
            for f in range(3):
                ref = tiny.unet(x[b : b + 1, :, f], t[b : b + 1], encoder_hidden_states=text[b : b + 1]).sample
                assert torch.allclose(eps[b : b + 1, :, f], ref, atol=1e-5)
        video = model(x, t, text, use_mapping=False, use_frame_tokens=False)
    assert not torch.allclose(video, eps, atol=1e-4)  # the (random) motion modules act


def test_zero_motion_outputs_make_video_branch_equal_t2i_branch(tiny):
    model = build_model(tiny)
    with torch.no_grad():
        for name, p in model.unet.named_parameters():
            if "motion_modules" in name and "proj_out" in name:
                p.zero_()
        x, text = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 77, 16)
        video = model(x, 500, text, use_frame_tokens=False)
        image = model(x, 500, text, use_motion=False, use_frame_tokens=False)
    assert torch.allclose(video, image, atol=1e-5)


def test_switched_off_components_raise_when_missing(tiny):
    model = build_model(tiny, use_mapping=False, use_frame_tokens=False)
    assert model.mapping_network is None and model.frame_token_generator is None
    x, text = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 77, 16)
    with pytest.raises(ValueError, match="use_mapping"):
        model(x, 1, text, use_mapping=True)
    with pytest.raises(ValueError, match="use_frame_tokens"):
        model(x, 1, text, use_frame_tokens=True)
    with pytest.raises(ValueError, match="sample"):
        model(x[0], 1, text)


def test_save_load_round_trip(tiny, tmp_path):
    model = build_model(tiny)
    with torch.no_grad():  # make the trained parts non-trivial
        for p in model.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "ckpt")
    tiny.unet.save_pretrained(tmp_path / "base" / "unet")
    # the motion adapter is a plain diffusers MotionAdapter
    adapter = MotionAdapter.from_pretrained(tmp_path / "ckpt" / "motion_adapter")
    assert adapter.config.motion_max_seq_length == 32
    loaded = HarivoVideoModel.from_pretrained(tmp_path / "ckpt", base_model=str(tmp_path / "base"))
    state, state2 = model.state_dict(), loaded.state_dict()
    assert state.keys() == state2.keys()
    for k in state:
        assert torch.equal(state[k], state2[k]), k
    x, text = torch.randn(1, 4, 4, 8, 8), torch.randn(1, 77, 16)
    with torch.no_grad():
        assert torch.equal(model(x, 300, text), loaded(x, 300, text))
    assert not any(f.suffix in (".bin", ".pt", ".pth", ".ckpt") for f in (tmp_path / "ckpt").rglob("*"))


def test_load_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match="checkpoint"):
        HarivoVideoModel.from_pretrained(tmp_path / "missing", unet2d=tiny.unet)
    model = build_model(tiny)
    model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "harivo.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="harivo.safetensors"):
        HarivoVideoModel.from_pretrained(tmp_path / "ckpt", unet2d=UNet2DConditionModel(**tiny.unet.config))
    (tmp_path / "ckpt" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="config.json"):
        HarivoVideoModel.from_pretrained(tmp_path / "ckpt", unet2d=tiny.unet)
