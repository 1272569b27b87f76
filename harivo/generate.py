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

from tqdm.auto import tqdm

from . import compat, settings, sources, threads
from .config import check_fields
from .outputs import VideoOptions, save_output
from .pipeline import HarivoPipeline
from .settings import GenerationSettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harivo.generate", description=__doc__.split("\n")[0])
    # value flags left unset fall back to the model's recommended sampling settings (a checkpoint's config.json
    # "sampling"), then to GenerationSettings' defaults (App. D)
    settings.add_arguments(p.add_argument_group("generation settings (harivo.settings.GenerationSettings; "
                                                "CFG and α default to the checkpoint's measured best)"),
                           with_defaults=False)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: $HARIVO_THREADS, else the cores other processes leave free; "
                        "harivo/threads.py)")
    p.add_argument("--fps", type=int, default=VideoOptions.fps, help="frames per second of video.mp4")
    p.add_argument("--out", required=True, help="output folder")
    sources.add_model_arguments(p, sources.CLI_DEFAULTS)
    add = p.add_argument_group("conditions on the frozen T2I model (harivo.compat)")
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


def load_pipeline(args: argparse.Namespace) -> HarivoPipeline:
    """The model of the flags (`harivo.sources`), with an IP-Adapter when asked, placed on its device."""
    spec = sources.spec_from_args(args)
    pipe = sources.build(spec)
    if args.ip_adapter:
        compat.load_ip_adapter(pipe, args.ip_adapter, weight_name=args.ip_adapter_weight_name, scale=args.ip_scale)
    return sources.place(pipe, spec)


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
        choice = threads.ThreadChoice(args.threads)  # measured over the loading: the cores the load leaves
        settings.from_args(args).validate()  # the values given, before the slow loading
        check_fields(VideoOptions(fps=args.fps))
        pipe = load_pipeline(args)
        s = settings.from_args(args, pipe.sampling_defaults).validate()
        pipe.check(s)
        conditions = conditions_from_args(args, pipe, s)
        pipe.check_conditions(s, conditions)
        num_threads = choice.apply()
        bar = tqdm(total=s.num_inference_steps, desc="sampling", unit="step")
        out = pipe(s, callback=lambda info: bar.update(1), conditions=conditions)
        bar.close()
        path = save_output(out, args.out, fps=args.fps, extra={"model": pipe.name, "checkpoint": args.harivo_weights,
                                                               "torch_threads": num_threads,
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
