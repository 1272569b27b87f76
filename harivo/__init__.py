"""HARIVO Explorer: a reference implementation of HARIVO (Kwon et al., ECCV 2024) on diffusers.

Paper: *HARIVO: Harnessing Text-to-Image Models for Video Generation*. The package holds the video model
(frozen T2I UNet + AnimateDiff-style temporal layers + mapping network + frame-wise tokens), the losses,
the mitigating-gradient sampler, attention capture, the shapes world and the training scripts.

`harivo.trace(pipe)` (from `harivo.tracing`, imported on first use so that `import harivo` stays light) records the
frame-wise cross-attention of a diffusers `AnimateDiffPipeline` or a `HarivoPipeline` call: docs/tracing.md.
"""

__version__ = "0.1.0"
__all__ = ["trace"]


def __getattr__(name: str):
    if name == "trace":
        from .tracing import trace

        globals()["trace"] = trace
        return trace
    raise AttributeError(f"module 'harivo' has no attribute {name!r}")
