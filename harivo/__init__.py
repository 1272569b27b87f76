"""HARIVO Explorer: a reference implementation of HARIVO (Kwon et al., ECCV 2024) on diffusers.

Paper: *HARIVO: Harnessing Text-to-Image Models for Video Generation*. The package holds the video model
(frozen T2I UNet + AnimateDiff-style temporal layers + mapping network + frame-wise tokens), the losses,
the mitigating-gradient sampler, attention capture, the shapes world and the training scripts.
"""

__version__ = "0.1.0"
