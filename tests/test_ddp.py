"""Training at scale, in miniature: `harivo.train` under DDP (2 CPU processes, gloo) on a WebVid-style CSV of mp4
files, streamed (decoded + VAE-encoded step by step) as configs/sd15-webvid.yaml does.

Each process draws another batch (the step generator is keyed by the process index), so both ending with the
*same* trainable weights shows that the gradients were all-reduced; the T2I weights stay bit-identical."""

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from harivo.train import loop as train
from harivo.train.stage2.base import load_base, model_folder
from harivo.train.stage2.config import TrainConfig, validate
from harivo.train.stage2.run import make_batch, setup
from harivo.train.stage2.training_module import build_training_module
from harivo.tiny import save_tiny_checkpoint

from test_webvid import write_csv, write_video

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moving_square(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.full((n, size, size, 3), rng.integers(0, 255, 3), np.uint8)
    for k in range(n):
        frames[k, 4:12, 2 + k : 10 + k] = rng.integers(0, 255, 3)
    return frames


def _worker(rank: int, port: int, fields: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    run = train.train(TrainConfig(**fields), accelerator=acc, log=lambda *_: None)
    save_file({k: v.detach().contiguous() for k, v in run.params.items()}, f"{out}/trainable{rank}.safetensors")
    save_file({k: v.contiguous() for k, v in run.raw.model.t2i_unet.state_dict().items()}, f"{out}/t2i{rank}.safetensors")
    with open(f"{out}/info{rank}.json", "w") as f:
        json.dump({"num_processes": acc.num_processes, "backend": str(acc.state.backend),
                   "wrapped": type(run.module).__name__, "step": run.step}, f)


def test_ddp_two_processes_stream_webvid(tmp_path):
    save_tiny_checkpoint(tmp_path)  # tmp_path/base: tiny SD folder, 16 px videos (VAE ×2, 8×8 latents)
    (tmp_path / "videos").mkdir()
    rows = []
    for i in range(4):
        write_video(tmp_path / "videos" / f"{i}.mp4", moving_square(8, 20, i), fps=8)
        rows.append({"videoid": str(i), "name": "a red square is moving left to right", "path": f"videos/{i}.mp4"})
    write_csv(tmp_path / "webvid.csv", rows)
    fields = dict(variant="full", base_model=str(tmp_path / "base"), data=str(tmp_path / "webvid.csv"),
                  stream_data=True, data_workers=2, webvid_fps=4.0, train_videos=4, num_frames=4, video_size=16,
                  batch_size=1, max_steps=2, lr=1e-3, lr_warmup_steps=0, log_every=1, checkpoint_every=100,
                  sample_every=0, mapping_hidden_channels=8, mapping_heads=2, mapping_head_dim=8,
                  motion_num_attention_heads=2, out=str(tmp_path / "out"), run_dir=str(tmp_path / "run"),
                  cache_dir=str(tmp_path / "cache"))
    validate(TrainConfig(**fields))
    mp.spawn(_worker, args=(free_port(), fields, str(tmp_path)), nprocs=WORLD, join=True)

    info = [json.loads((tmp_path / f"info{r}.json").read_text()) for r in range(WORLD)]
    assert all(i == {"num_processes": 2, "backend": "gloo", "wrapped": "DistributedDataParallel", "step": 2} for i in info)
    init = build_training_module(TrainConfig(**fields), load_base(fields["base_model"])).trainable()
    w0, w1 = (load_file(tmp_path / f"trainable{r}.safetensors") for r in range(WORLD))
    assert set(w0) == set(w1) == set(init)
    for name in init:
        assert torch.equal(w0[name], w1[name]), name  # all-reduced gradients: the same update on both processes
    changed = [n for n in init if not torch.equal(w0[n], init[n].detach())]
    for prefix in ("model.unet.", "model.mapping_network.", "model.frame_token_generator.", "projection_head."):
        assert any(n.startswith(prefix) for n in changed), prefix
    base_unet = load_base(fields["base_model"]).unet.state_dict()
    for r in range(WORLD):
        t2i = load_file(tmp_path / f"t2i{r}.safetensors")
        assert set(t2i) == set(base_unet)
        assert all(torch.equal(t2i[k], base_unet[k]) for k in t2i)  # T2I weights unchanged
    exported = json.loads((tmp_path / "out" / "training.json").read_text())
    assert exported["num_processes"] == 2 and exported["steps"] == 2 and exported["videos_seen"] == 4


@pytest.fixture(scope="module")
def webvid_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("webvid-world")
    save_tiny_checkpoint(root)
    (root / "videos").mkdir()
    rows = []
    for i in range(3):
        write_video(root / "videos" / f"{i}.mp4", moving_square(8, 20, i), fps=8)
        rows.append({"videoid": str(i), "name": f"a {['red', 'blue', 'green'][i]} square is moving left to right",
                     "path": f"videos/{i}.mp4"})
    (root / "videos" / "broken.mp4").write_bytes(b"not a video" * 50)
    write_csv(root / "webvid.csv", rows)
    write_csv(root / "with-broken.csv", rows + [{"videoid": "9", "name": "broken", "path": "videos/broken.mp4"}])
    return root


def small_cfg(root, **overrides) -> TrainConfig:
    fields = dict(variant="full", base_model=str(root / "base"), data=str(root / "webvid.csv"), webvid_fps=4.0,
                  train_videos=3, num_frames=4, video_size=16, batch_size=2, sample_every=0, log_every=1,
                  mapping_hidden_channels=8, mapping_heads=2, mapping_head_dim=8, motion_num_attention_heads=2,
                  cache_dir=str(root / "cache"))
    fields.update(overrides)
    return validate(TrainConfig(**fields)).resolved()


def test_streamed_batches_equal_the_cached_ones(webvid_world, tmp_path):
    from harivo.train.utils import step_generator

    quiet = lambda *_: None  # noqa: E731
    cached = setup(small_cfg(webvid_world, run_dir=str(tmp_path / "a")), log=quiet)
    streamed = setup(small_cfg(webvid_world, stream_data=True, run_dir=str(tmp_path / "b")), log=quiet)
    assert len(cached.data) == len(streamed.data) == 3
    for step in range(3):
        lat_c, emb_c = make_batch(cached, step_generator(0, step))
        lat_s, emb_s = make_batch(streamed, step_generator(0, step))
        assert lat_s.shape == lat_c.shape == (2, 4, 4, 8, 8)
        # the cache stores float16 latents; the stream keeps float32
        assert torch.allclose(lat_s, lat_c, atol=2e-3 * float(lat_c.abs().max())), step
        assert torch.allclose(emb_s, emb_c, atol=1e-5), step
    streamed.data.close()


def test_stream_replaces_broken_videos(webvid_world):
    from harivo.data.stream import StreamingVideos
    from harivo.data.webvid import WebVidDataset

    base = load_base(str(webvid_world / "base"))
    ds = WebVidDataset(webvid_world / "with-broken.csv", num_frames=4, fps=4.0, size=16)
    data = StreamingVideos(ds, base.vae, base.text_encoder, base.tokenizer, torch.device("cpu"), workers=1)
    pixels, captions = data.videos([3, 0])
    assert pixels.shape == (2, 3, 4, 16, 16) and data.skipped == 1 and captions[0] != "broken"
    data.close()


def test_motion_adapter_init_and_training_below_native_size(webvid_world, tmp_path):
    from diffusers import MotionAdapter

    from harivo.tiny import tiny_components

    adapter = tiny_components(seed=3).motion_adapter  # same UNet channels as the tiny base
    adapter.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    cfg = small_cfg(webvid_world, motion_adapter=str(tmp_path / "adapter"), video_size=8, run_dir=str(tmp_path / "r"))
    module = build_training_module(cfg, load_base(cfg.base_model))
    motion = {k: v for k, v in module.model.unet.state_dict().items() if "motion_modules" in k}
    assert motion and all(torch.equal(v, adapter.state_dict()[k]) for k, v in motion.items())
    assert module.model.config.hspace_size == 2  # 8 px → 4×4 latents → 2×2 h-space: g sized for it
    latents, embeds = torch.randn(2, 4, 4, 4, 4), torch.randn(2, 77, 16)
    loss, terms = module(latents, embeds, torch.Generator().manual_seed(0))
    assert set(terms) == {"total", "simple", "trs", "reg", "dc"} and torch.isfinite(loss)
    other = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_num_attention_heads=2,
                          motion_norm_num_groups=4)
    other.save_pretrained(tmp_path / "other", safe_serialization=True)
    with pytest.raises(ValueError, match="motion_adapter"):
        build_training_module(small_cfg(webvid_world, motion_adapter=str(tmp_path / "other")),
                              load_base(cfg.base_model))
    with pytest.raises(ValueError, match="video_size"):
        build_training_module(small_cfg(webvid_world, video_size=10), load_base(cfg.base_model))


def test_base_model_hub_id_fails_clearly_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network here anyway: fail fast
    with pytest.raises(ValueError, match="base_model.*no-such-owner/no-such-model"):
        model_folder("no-such-owner/no-such-model")
    (tmp_path / "models" / "sd").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert model_folder("models/sd") == Path("models/sd")  # existing local folders stay local
    with pytest.raises(ValueError, match="stream_data"):
        validate(TrainConfig(stream_data=True))
