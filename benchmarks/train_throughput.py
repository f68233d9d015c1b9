"""Training throughput: the hardware ceiling against the pipeline's own training loop, one run.

1. ceiling: the configured model, precision, resolution and batch, one optimiser step after
   another on synthetic, already-normalised images resident on the device (no data work at all);
2. pipeline: the same model and step as the ``train`` stage (``maskprivacy.model.loop.Trainer``) on
   real images held as uint8 on the device, gathered by a shuffled index and augmented there;
3. eval: inference images/s of ``maskprivacy.model.predict.predict`` on the same images.

Both training figures are steady state (warm-up steps, and compilation, are excluded and timed
separately). Prints a table and the ratio; ``--json`` writes the figures. Runs on CPU with small
sizes so CI can run it for a few steps:

    python benchmarks/train_throughput.py --device cpu --arch resnet18 --image-size 64 \\
        --batch-size 16 --steps 3 --images tests-made-folder-or-omit
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import torch

from maskprivacy.model.config import TrainConfig, resolve_device
from maskprivacy.model.images import load_images
from maskprivacy.model.loop import make_trainer
from maskprivacy.model.predict import predict
from maskprivacy.stages.entry import Compute


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_steps(fn, n: int, device: torch.device) -> float:
    """Seconds for ``n`` calls of ``fn`` (device-synchronised at both ends only)."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return time.perf_counter() - t0


def real_images(folder: str | None, n: int, size: int, seed: int) -> torch.Tensor:
    """Up to ``n`` decoded images from ``folder`` (any JPEG/PNG), or seeded noise if none."""
    if folder:
        files = sorted(
            p.name for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".png")
        )
        if files:
            files = (files * (n // len(files) + 1))[:n]
            return load_images(folder, files, size, workers=16, progress=False)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def measure(args: argparse.Namespace, compile_: bool) -> dict:
    cfg = TrainConfig(
        arch=args.arch, batch_size=args.batch_size, image_size=args.image_size, epochs=1, seed=0
    )
    compute = Compute(device=args.device, precision=args.precision, compile=compile_)
    steps = args.warmup + args.steps
    tr = make_trainer(cfg, compute, steps_per_epoch=10 * steps)
    dev = tr.device
    b, s = cfg.batch_size, cfg.image_size
    # 1. ceiling: normalised float images already on the device, fixed batch
    x_syn = torch.randn(b, 3, s, s, device=dev)
    y_syn = (
        torch.stack(
            [torch.randint(0, 2, (b,)), torch.randint(0, 5, (b,)), torch.randint(1, 90, (b,))], 1
        )
        .float()
        .to(dev)
    )
    t_first = timed_steps(lambda: tr.step(x_syn, y_syn, augment=False), 1, dev)  # compiles
    timed_steps(lambda: tr.step(x_syn, y_syn, augment=False), args.warmup, dev)
    t_ceiling = timed_steps(lambda: tr.step(x_syn, y_syn, augment=False), args.steps, dev)
    # 2. pipeline: uint8 images on the device, shuffled gather + device augmentation + step
    images = real_images(args.images, args.n_images, s, 0).to(dev)
    labels = (
        torch.stack(
            [
                torch.randint(0, 2, (len(images),)),
                torch.randint(0, 5, (len(images),)),
                torch.randint(1, 90, (len(images),)),
            ],
            1,
        )
        .float()
        .to(dev)
    )
    gen = torch.Generator(device=dev).manual_seed(0)

    def pipeline_step() -> None:
        idx = torch.randint(0, len(images), (b,), device=dev, generator=gen)
        tr.step(images[idx], labels[idx])

    t_aug_first = timed_steps(pipeline_step, 1, dev)
    timed_steps(pipeline_step, args.warmup, dev)
    t_pipe = timed_steps(pipeline_step, args.steps, dev)
    # 3. eval throughput
    n_eval = min(len(images), args.eval_images)
    predict(
        tr.model, images[: min(n_eval, 64)], tr.augment, dev, args.eval_batch_size, tr.precision
    )
    sync(dev)
    t0 = time.perf_counter()
    predict(tr.model, images[:n_eval], tr.augment, dev, args.eval_batch_size, tr.precision)
    sync(dev)
    t_eval = time.perf_counter() - t0
    n = args.steps * b
    return {
        "compile": compile_,
        "first_step_s": round(t_first, 2),
        "first_pipeline_step_s": round(t_aug_first, 2),
        "ceiling_img_s": n / t_ceiling,
        "pipeline_img_s": n / t_pipe,
        "ratio": t_ceiling / t_pipe,
        "eval_img_s": n_eval / t_eval,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    ap.add_argument("--images", default=None, help="folder of real images (default: noise)")
    ap.add_argument("--n-images", type=int, default=4096)
    ap.add_argument("--eval-images", type=int, default=4096)
    ap.add_argument("--eval-batch-size", type=int, default=512)
    ap.add_argument("--compile", choices=["off", "on", "both"], default="off")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    rows = []
    for c in modes:
        try:
            rows.append(measure(args, c))
        except Exception as exc:  # e.g. no compiler for torch.compile: report, keep the rest
            print(f"{'compiled' if c else 'eager'} run failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
    if not rows:
        return 1
    print(
        f"device: {name}; torch {torch.__version__}; {args.arch}, batch {args.batch_size}, "
        f"{args.image_size} px, precision {args.precision}, {args.steps} timed steps"
    )
    print(
        f"{'mode':<9}{'ceiling img/s':>15}{'pipeline img/s':>16}{'ratio':>8}{'eval img/s':>12}"
        f"{'1st step s':>12}{'peak GiB':>10}"
    )
    for r in rows:
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        print(
            f"{'compiled' if r['compile'] else 'eager':<9}{r['ceiling_img_s']:>15.1f}"
            f"{r['pipeline_img_s']:>16.1f}{r['ratio']:>8.3f}{r['eval_img_s']:>12.1f}"
            f"{r['first_step_s']:>12.1f}{mem:>10}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": name,
                    "torch": torch.__version__,
                    "args": vars(args) | {"json": str(args.json)},
                    "rows": rows,
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
