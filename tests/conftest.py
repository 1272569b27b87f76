import contextlib
import socket

import pytest
import torch

from harivo.config import HarivoConfig
from harivo.model import HarivoVideoModel
from harivo.pipeline import HarivoPipeline
from harivo.tiny import tiny_components

torch.set_num_threads(1)  # tiny models: threads cost more than they bring, and CI has 2 cores


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: real-scale structural tests (minutes); run with -m slow")


@pytest.fixture
def tiny():
    return tiny_components(seed=0)


def build_model(tiny, **overrides) -> HarivoVideoModel:
    cfg = dict(num_frames=4, mapping_hidden_channels=8, mapping_heads=2, mapping_head_dim=8)
    cfg.update(overrides)
    return HarivoVideoModel.from_unet2d(tiny.unet, tiny.motion_adapter, HarivoConfig(**cfg))


def build_pipeline(tiny, **overrides) -> HarivoPipeline:
    return HarivoPipeline(tiny.vae, tiny.text_encoder, tiny.tokenizer, build_model(tiny, **overrides).eval(), tiny.scheduler)


@contextlib.contextmanager
def served_app(registry, defaults):
    """The app over `registry` on a free localhost port (as `python app.py` serves it); yields its URL."""
    import app

    demo = app.build_demo(registry, defaults=defaults)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, theme=app.THEME)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
