"""Stage 1 of the project: the tiny Stable-Diffusion-shaped text-to-image model of the shapes world, trained
from scratch (`python -m harivo.train.t2i`, whose docstring says what each stage does).

    config      T2IConfig, its validation and the command-line flags
    data        rendered frames (VAE stage); cached latents, captions and object masks (UNet stage)
    resume      where a stage starts: its training state (--resume), an exported pipeline (--init-from), scratch
    vae         the VAE stage: loss, held-out metrics, loop, export to run_dir/vae
    unet        the UNet stage: loss, setup, loop (text encoder + UNet + EMA)
    export      output_dir: the StableDiffusionPipeline folder and its training.json
    evaluation  sample grids during training and --eval (the checker's reading of sampled images)

The model builders themselves (VAE, text encoder, UNet, EMA, caption probe) are in `harivo.train.t2i_models`; the
config, state, RNG and loss-curve helpers shared with stage 2 in `harivo.train.utils`.
"""
