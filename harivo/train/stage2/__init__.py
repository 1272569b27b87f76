"""Stage 2 of the project: HARIVO trained on top of the frozen stage-1 T2I model, one run per Table 1 row
(`python -m harivo.train`, whose docstring says what is trained and written; its training loop is there too).

    config           the variants, TrainConfig, its validation and the command-line flags
    base             the frozen T2I pipeline (folder or hub id) and its fingerprints
    data             the training videos, VAE- and text-encoded once into cache_dir (or streamed)
    training_module  the inflated video model, the projection head g and the L_DC queue (Eq. 5's passes)
    run              Run, setup (build / resume) and one optimizer step
    resume           the training state: may a run resume it, restoring it, writing it
    samples          the sample videos of the fixed prompts, judged by the checker
    export           out/: the checkpoint, training.json and the loss curves

The losses are in `harivo.train.losses`, the video model in `harivo.model`, the helpers shared with stage 1 (config
from YAML + flags, lr schedule, step RNG, training state, loss curves) in `harivo.train.utils`.
"""
