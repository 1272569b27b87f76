"""Structural tests on the real SD1.5 / AnimateDiff configs with random weights (no downloads). Slow: run with
`python -m pytest -m slow`. Shapes and wiring only; 64×64 px and 2–3 frames keep it to a few minutes on a CPU."""

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from harivo.attention import spatial_attention_names
from harivo.config import HarivoConfig
from harivo.model import HarivoVideoModel
from harivo.pipeline import GenerationSettings, HarivoPipeline
from harivo.sampling import CFGSchedule
from harivo.tiny import scheduler_config, word_tokenizer

pytestmark = pytest.mark.slow

SD15_UNET = dict(  # runwayml/stable-diffusion-v1-5 unet/config.json
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
SD15_VAE = dict(  # vae/config.json
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512,
    scaling_factor=0.18215,
)
SD15_TEXT = dict(  # text_encoder/config.json (CLIP ViT-L/14 text tower)
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
)
ANIMATEDIFF_V2 = dict(  # guoyww/animatediff-motion-adapter-v1-5-2
    block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2, motion_num_attention_heads=8,
    motion_max_seq_length=32, use_motion_mid_block=True,
)


@pytest.fixture(scope="module")
def sd15():
    torch.manual_seed(0)
    tokenizer = word_tokenizer("a red circle moving left".split())
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, **SD15_TEXT)).eval()
    return dict(unet=UNet2DConditionModel(**SD15_UNET).eval(), vae=AutoencoderKL(**SD15_VAE).eval(),
                text_encoder=text_encoder, tokenizer=tokenizer, adapter=MotionAdapter(**ANIMATEDIFF_V2))


def test_sd15_video_model_structure(sd15):
    model = HarivoVideoModel.from_unet2d(sd15["unet"], sd15["adapter"], HarivoConfig(num_frames=3))
    assert model.config.text_dim == 768 and model.config.hspace_channels == 1280 and model.config.hspace_size == 8
    n_unet = sum(p.numel() for p in sd15["unet"].parameters())
    assert 855e6 < n_unet < 865e6  # SD1.5 UNet: 859.5 M
    n_motion = sum(p.numel() for n, p in model.unet.named_parameters() if "motion_modules" in n)
    assert 450e6 < n_motion < 460e6  # AnimateDiff v2 motion modules: 453 M
    assert len(spatial_attention_names(model.unet, "attn2")) == 16  # SD1.5's cross-attention layers
    assert len(spatial_attention_names(model.unet, "attn1", decoder_only=True)) == 9  # L_TRS layers (3 up blocks × 3)
    x = torch.randn(1, 4, 3, 8, 8)
    text = torch.randn(1, 77, 768)
    with torch.no_grad():
        assert model(x, 500, text).shape == x.shape
        assert model(x, 500, text, use_motion=False, use_frame_tokens=False).shape == x.shape
    head = model.make_projection_head()
    assert head(torch.randn(2, 1280, 8, 8)).shape == (2, 1280)


def test_sd15_pipeline_generates(sd15):
    model = HarivoVideoModel.from_unet2d(sd15["unet"], sd15["adapter"], HarivoConfig(num_frames=2))
    pipe = HarivoPipeline(sd15["vae"], sd15["text_encoder"], sd15["tokenizer"], model.eval(), DDIMScheduler(**scheduler_config()))
    out = pipe(GenerationSettings("a red circle moving left", num_frames=2, num_inference_steps=1, height=64, width=64,
                                  cfg=CFGSchedule()))
    assert out.frames.shape == (2, 64, 64, 3)
    assert out.attention.resolutions == ["8x8", "4x4", "2x2"]
