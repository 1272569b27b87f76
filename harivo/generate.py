"""`python -m harivo.generate`: text → video with HARIVO, from the command line.

    python -m harivo.generate --prompt "a red circle is moving left to right on a gray background" --seed 0 \
        --variant full --out outputs/red-circle

Writes `video.mp4`, `frames.npy` (float32, (f, h, w, 3) in [0, 1]), `config.json` (every setting in effect, seed,
versions) and `attention.npz` (frame-wise cross-attention maps) into --out (`harivo.outputs`). The generation
flags are made from `harivo.settings.GenerationSettings`, which owns their defaults and ranges.

Real scale: any SD1.5-family diffusers folder or hub id + an AnimateDiff MotionAdapter (plain AnimateDiff with
HARIVO's training-free parts: MG, CFG schedule, attention maps), optionally with trained HARIVO weights:

    python -m harivo.generate --base-model stable-diffusion-v1-5/stable-diffusion-v1-5 \
        --motion-adapter guoyww/animatediff-motion-adapter-v1-5-2 --dtype float16 --height 512 --width 512 \
        --prompt "a corgi running on the beach" --out outputs/corgi
    python -m harivo.generate --base-model SD15 --harivo-weights checkpoints/harivo-sd15-webvid --height 256 ...

Add-ons on the frozen T2I model (`harivo.compat`): --lora, --dreambooth, --controlnet (all or some frames),
--ip-adapter.
"""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm.auto import tqdm

from . import compat, settings, threads
from .config import check_fields
from .outputs import VideoOptions, save_output
from .pipeline import DEFAULT_CHECKPOINTS, VARIANTS, HarivoPipeline
from .settings import GenerationSettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harivo.generate", description=__doc__.split("\n")[0])
    # value flags left unset fall back to the model's recommended sampling settings (a checkpoint's config.json
    # "sampling"), then to GenerationSettings' defaults (App. D)
    settings.add_arguments(p.add_argument_group("generation settings (harivo.settings.GenerationSettings; "
                                                "CFG and α default to the checkpoint's measured best)"),
                           with_defaults=False)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: $HARIVO_THREADS, else half the CPUs; harivo/threads.py)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--variant", choices=VARIANTS, help="embedded shapes-world model (default: full)")
    src.add_argument("--checkpoint", "--harivo-weights", dest="checkpoint",
                     help="a HARIVO checkpoint folder (motion_adapter/, harivo.safetensors, config.json)")
    src.add_argument("--motion-adapter", help="plain AnimateDiff: a diffusers MotionAdapter folder or hub id (needs --base-model)")
    p.add_argument("--base-model", help="SD1.5-family diffusers folder or hub id (overrides the checkpoint's base)")
    p.add_argument("--fps", type=int, default=VideoOptions.fps, help="frames per second of video.mp4")
    p.add_argument("--out", required=True, help="output folder")
    mem = p.add_argument_group("device and memory")
    mem.add_argument("--device", help="cuda, cuda:1, cpu ... (default: cuda if available)")
    mem.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="model weights (fp16/bf16 on a GPU)")
    mem.add_argument("--cpu-offload", action="store_true", help="keep models on the CPU, each on the GPU only while it runs")
    mem.add_argument("--attention-slicing", action="store_true", help="spatial attention a few heads at a time")
    mem.add_argument("--vae-slicing", action="store_true", help="decode one frame at a time")
    mem.add_argument("--decode-chunk-size", type=int, default=16, help="frames per VAE decode call")
    add = p.add_argument_group("add-ons on the frozen T2I model (harivo.compat)")
    add.add_argument("--lora", help="LoRA folder, .safetensors file or hub id (diffusers format)")
    add.add_argument("--lora-weight-name", help="file name inside a LoRA folder / hub repo")
    add.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength")
    add.add_argument("--dreambooth", help="another SD1.5-family folder (DreamBooth): its UNet and text encoder")
    add.add_argument("--controlnet", help="diffusers ControlNetModel folder or hub id")
    add.add_argument("--control-images", nargs="+", help="condition images (one per conditioned frame) or one .npy of frames")
    add.add_argument("--control-frames", help="comma-separated frame indices the images condition (default: all frames)")
    add.add_argument("--control-scale", type=float, default=1.0, help="ControlNet conditioning scale")
    add.add_argument("--ip-adapter", help="IP-Adapter .safetensors, folder or hub id (h94/IP-Adapter layout)")
    add.add_argument("--ip-adapter-weight-name", default="ip-adapter_sd15.safetensors", help="file in the IP-Adapter folder")
    add.add_argument("--image-encoder", help="CLIP image encoder folder (default: <ip-adapter>/models/image_encoder)")
    add.add_argument("--ip-image", help="the image prompt")
    add.add_argument("--ip-scale", type=float, default=0.6, help="IP-Adapter strength")
    return p


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_pipeline(args: argparse.Namespace) -> HarivoPipeline:
    if args.motion_adapter:
        if not args.base_model:
            raise ValueError("base_model: --motion-adapter needs --base-model (an SD1.5-family folder or hub id)")
        pipe = HarivoPipeline.from_animatediff(args.base_model, args.motion_adapter)
    elif args.checkpoint:
        pipe = HarivoPipeline.from_checkpoint(args.checkpoint, base_model=args.base_model)
    elif args.base_model:  # an embedded variant's HARIVO networks on another base (same shapes-world sizes)
        pipe = HarivoPipeline.from_checkpoint(DEFAULT_CHECKPOINTS / f"harivo-shapes-{args.variant or 'full'}", args.base_model)
    else:
        pipe = HarivoPipeline.from_variant(args.variant or "full")
    if args.dreambooth:
        pipe = compat.swap_base_model(pipe, args.dreambooth)
    if args.lora:
        compat.load_lora(pipe, args.lora, weight_name=args.lora_weight_name, scale=args.lora_scale)
    if args.ip_adapter:
        compat.load_ip_adapter(pipe, args.ip_adapter, weight_name=args.ip_adapter_weight_name, scale=args.ip_scale)
    return place(pipe, args)


def place(pipe: HarivoPipeline, args: argparse.Namespace) -> HarivoPipeline:
    """Device, dtype and the memory switches."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.decode_chunk_size < 1:
        raise ValueError(f"decode_chunk_size: expected an integer >= 1, got {args.decode_chunk_size}")
    pipe.to(None if args.cpu_offload else device, DTYPES[args.dtype])
    if args.cpu_offload:
        pipe.enable_cpu_offload(device)
    if args.attention_slicing:
        pipe.enable_attention_slicing()
    if args.vae_slicing:
        pipe.enable_vae_slicing()
    pipe.decode_chunk_size = args.decode_chunk_size
    return pipe


def conditions_from_args(args: argparse.Namespace, pipe: HarivoPipeline, s: GenerationSettings) -> list:
    conditions = []
    height, width = pipe.output_size(s)
    if args.controlnet:
        if not args.control_images:
            raise ValueError("control_images: --controlnet needs --control-images")
        frames = None
        if args.control_frames:
            try:
                frames = [int(i) for i in args.control_frames.split(",") if i.strip()]
            except ValueError:
                raise ValueError(f"control_frames: expected comma-separated integers, got {args.control_frames!r}") from None
        net = compat.load_controlnet(args.controlnet, dtype=pipe.model.unet.dtype)
        conditions.append(compat.ControlNetCondition(net.to(pipe.device), compat.read_images(args.control_images, height, width),
                                                     frames, args.control_scale))
    elif args.control_images or args.control_frames:
        raise ValueError("controlnet: --control-images/--control-frames need --controlnet")
    if args.ip_adapter:
        if not args.ip_image:
            raise ValueError("ip_image: --ip-adapter needs --ip-image (the image prompt)")
        from PIL import Image

        encoder, processor = compat.load_image_encoder(args.image_encoder or args.ip_adapter)
        try:
            image = Image.open(args.ip_image).convert("RGB")
        except OSError as e:
            raise ValueError(f"ip_image: cannot read {args.ip_image!r} ({e})") from None
        conditions.append(compat.IPAdapterCondition(compat.encode_image(encoder, processor, image)))
    elif args.ip_image:
        raise ValueError("ip_adapter: --ip-image needs --ip-adapter")
    return conditions


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        threads.apply(args.threads)
        settings.from_args(args).validate()  # the values given, before the slow loading
        check_fields(VideoOptions(fps=args.fps))
        pipe = load_pipeline(args)
        s = settings.from_args(args, pipe.sampling_defaults).validate()
        pipe.check(s)
        conditions = conditions_from_args(args, pipe, s)
        pipe.check_conditions(s, conditions)
        bar = tqdm(total=s.num_inference_steps, desc="sampling", unit="step")
        out = pipe(s, callback=lambda info: bar.update(1), conditions=conditions)
        bar.close()
        path = save_output(out, args.out, fps=args.fps, extra={"model": pipe.name, "checkpoint": args.checkpoint,
                                                               "variant": args.variant, "args": vars(args)})
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in out.notes:
        print(f"note: {note}")
    print(f"wrote {path}/video.mp4, frames.npy, config.json" + (", attention.npz" if out.attention is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
