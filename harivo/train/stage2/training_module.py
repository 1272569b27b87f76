"""Stage 2's networks: the frozen base UNet inflated into a `HarivoVideoModel` for a Table 1 variant (AnimateDiff
motion modules, fresh with zero-initialised output projections or from a pretrained `MotionAdapter`; mapping
network and frame-token generator where the variant has them), the projection head g and the L_DC negative
queue, all in one `TrainingModule` whose forward is one step's passes of Eq. 5.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from harivo.config import LossConfig
from harivo.train.losses import NegativeQueue, training_step
from harivo.model import HarivoVideoModel
from harivo.train.stage2.base import BaseModel, model_folder
from harivo.train.stage2.config import TrainConfig, variant_configs


def make_motion_adapter(unet2d: nn.Module, cfg: TrainConfig):
    """An AnimateDiff MotionAdapter shaped for `unet2d`, output projections zero-initialised (AnimateDiff's
    `zero_initialize`), so the inflated model starts as the T2I model applied frame by frame."""
    from diffusers import MotionAdapter

    channels = tuple(unet2d.config.block_out_channels)
    heads = cfg.motion_num_attention_heads
    if any(c % heads for c in channels):
        raise ValueError(f"motion_num_attention_heads: must divide every UNet channel count {channels}, got {heads}")
    adapter = MotionAdapter(
        block_out_channels=channels, motion_layers_per_block=unet2d.config.layers_per_block,
        motion_num_attention_heads=heads, motion_norm_num_groups=unet2d.config.norm_num_groups,
        motion_max_seq_length=cfg.motion_max_seq_length, use_motion_mid_block=cfg.use_motion_mid_block,
    )
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if name.split(".")[-2] == "proj_out":
                p.zero_()
    return adapter


def pretrained_motion_adapter(unet2d: nn.Module, cfg: TrainConfig):
    """An AnimateDiff MotionAdapter (folder or hub id) to start the motion modules from, checked against the UNet."""
    from harivo.model import load_motion_adapter

    source = str(model_folder(cfg.motion_adapter, "motion_adapter"))
    adapter = load_motion_adapter(source)
    if tuple(adapter.config.block_out_channels) != tuple(unet2d.config.block_out_channels):
        raise ValueError(f"motion_adapter: built for UNet channels {tuple(adapter.config.block_out_channels)}, the "
                         f"base UNet has {tuple(unet2d.config.block_out_channels)}")
    if adapter.config.motion_max_seq_length < cfg.num_frames:
        raise ValueError(f"motion_adapter: covers at most {adapter.config.motion_max_seq_length} frames, "
                         f"num_frames is {cfg.num_frames}")
    return adapter


def warm_start(model: HarivoVideoModel, folder: str, variant: str) -> None:
    """Load a HARIVO checkpoint folder's shipped parts (motion modules, mapping network, frame-token generator)
    into `model`, which must be of the same Table 1 variant (the same parts): the warm start of a long run."""
    from harivo import fileio
    from harivo.model import ADAPTER_DIR, CONFIG_NAME, WEIGHTS_NAME, load_motion_adapter

    path = Path(folder)
    if not (path / CONFIG_NAME).is_file():
        raise ValueError(f"init_from: expected a HARIVO checkpoint folder with {CONFIG_NAME}, got {folder!r}")
    saved = fileio.read_json(path / CONFIG_NAME, what="init_from config.json").get("variant")
    if saved != variant:
        raise ValueError(f"init_from: {folder!r} is a {saved!r} checkpoint, this run trains {variant!r}")
    adapter = load_motion_adapter(str(path / ADAPTER_DIR), what="init_from")
    motion = {k: v for k, v in model.unet.state_dict().items() if "motion_modules" in k}
    state = adapter.state_dict()
    if set(state) != set(motion) or any(state[k].shape != motion[k].shape for k in motion):
        raise ValueError(f"init_from: the motion modules in {folder!r} do not fit this model (other UNet channels, "
                         f"heads or frame count)")
    model.unet.load_state_dict(state, strict=False)
    model.load_harivo_state_dict(fileio.load_tensors(path / WEIGHTS_NAME, what="init_from harivo.safetensors"))


class TrainingModule(nn.Module):
    """The video model, the projection head g and the L_DC queue; `forward` = one step's passes of Eq. 5.
    One module, so that `accelerator.prepare` (DDP) wraps every trainable parameter."""

    def __init__(self, model: HarivoVideoModel, projection_head: nn.Module | None, loss_config: LossConfig,
                 noise_scheduler, queue: NegativeQueue | None):
        super().__init__()
        self.model, self.projection_head = model, projection_head  # registered in this order: the optimizer's
        self.loss_config, self.noise_scheduler, self.queue = loss_config, noise_scheduler, queue

    def forward(self, latents: torch.Tensor, text_embeds: torch.Tensor, generator: torch.Generator,
                min_timestep: int | None = None):
        """`min_timestep`: draw this step's timesteps from [min_timestep, T) (the verb phase); None = the config's."""
        loss_config = self.loss_config
        if min_timestep is not None:
            loss_config = dataclasses.replace(loss_config, min_timestep=min_timestep)
        out = training_step(self.model, latents, text_embeds, self.noise_scheduler, loss_config,
                            self.projection_head, self.queue, generator)
        return out.loss, out.terms

    def trainable(self) -> dict[str, nn.Parameter]:
        """Name → parameter of everything that trains, in a fixed order (the optimizer's order)."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}


def enable_gradient_checkpointing(model: HarivoVideoModel, loss_cfg: LossConfig) -> None:
    """Checkpoint the UNet blocks, except, with L_TRS, the decoder's spatial transformers: L_TRS takes their
    self-attention maps (with gradients) through processors that `training_step` removes before backward, so a
    recomputation in backward would not replay what the first pass saved (torch's CheckpointError)."""
    model.unet.enable_gradient_checkpointing()
    model.t2i_unet.enable_gradient_checkpointing()
    if loss_cfg.use_trs:
        for name, module in model.unet.named_modules():
            parts = name.split(".")
            if len(parts) == 4 and parts[0] == "up_blocks" and parts[2] == "attentions":
                module.gradient_checkpointing = False


def build_training_module(cfg: TrainConfig, base: BaseModel) -> TrainingModule:
    """Inflate the frozen base UNet for `cfg.variant`; weights are a pure function of cfg.seed."""
    from diffusers import DDPMScheduler

    native = base.unet.config.sample_size * base.vae_factor
    levels = len(base.unet.config.block_out_channels) - 1
    multiple = base.vae_factor * 2**levels
    if cfg.video_size % multiple or cfg.video_size > native:
        # below the native size is fine (the paper trains SD1.5, native 512², at 256²), above it is not
        raise ValueError(f"video_size: the base UNet works on videos of at most {native}px whose side is a multiple "
                         f"of {multiple}px, got {cfg.video_size}")
    harivo_cfg, loss_cfg = variant_configs(cfg, base.tokenizer.model_max_length)
    torch.manual_seed(cfg.seed)
    adapter = pretrained_motion_adapter(base.unet, cfg) if cfg.motion_adapter else make_motion_adapter(base.unet, cfg)
    model = HarivoVideoModel.from_unet2d(base.unet, adapter, harivo_cfg)
    if cfg.init_from:
        warm_start(model, cfg.init_from, cfg.variant)
    model.config.hspace_size = cfg.video_size // base.vae_factor // 2**levels  # h-space at the training size (g)
    head = model.make_projection_head() if loss_cfg.use_dc else None
    queue = NegativeQueue(loss_cfg.dc_queue_size, harivo_cfg.hspace_channels) if loss_cfg.use_dc else None
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model, loss_cfg)
    noise_scheduler = DDPMScheduler.from_config(base.scheduler_config)
    return TrainingModule(model, head, loss_cfg, noise_scheduler, queue)

