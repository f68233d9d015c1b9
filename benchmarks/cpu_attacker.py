"""The CPU attacker by time-to-accuracy: which network, input size, precision, memory layout and
compilation reach the best validation sex / race / age within a fixed CPU time per model.

Two phases, one run, on the images and split of a finished pipeline run (``--workdir``: a
folder with ``data/split/split.csv`` and ``data/align/*/images``, or a mask set's
``data/mask/<set>/*/images`` with ``--dataset``):

1. speed: for every configuration, the ``train`` stage's own step (``Trainer`` on real uint8
   images, gathered and augmented as the stage does) against its CPU ceiling (the same
   Trainer's bare optimiser steps on synthetic, already-normalised images: no data work), in
   alternating blocks (``--rounds``), so that both see the same drift of the CPU's speed; the
   median ratio is printed. Beside them, the contiguous memory layout's ceiling (and, with
   ``--compile``, the compiled one): these change speed only, so they are compared here;
2. accuracy: each (network, input size, precision) is trained with the ``train`` stage's own
   loop (``train_models``: same augmentation, warm-up cosine schedule, AdamW) for as many epochs
   as its measured speed fits into ``--budget-min`` minutes, the schedule spanning those epochs,
   and scored on the validation part. Prints, per configuration: epochs, minutes, img/s beside
   the ceiling measured in this run, and validation sex / race accuracy and age MAE.

    python benchmarks/cpu_attacker.py --workdir . --budget-min 8 \\
        --configs resnet18:64:bf16 resnet18:80:bf16 resnet34:64:bf16 resnet18:64:fp32

``--train-limit`` trains on the first N training faces (a quicker, smaller proxy; the table
says so). Nothing here changes a tracked parameter: the chosen configuration goes into
``presets/cpu.yaml`` by hand, with the table in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import traceback
from pathlib import Path

import pandas as pd
import torch

from maskprivacy.core.compute import Compute
from maskprivacy.core.io import read_table
from maskprivacy.model.config import TrainConfig, autocast
from maskprivacy.model.images import labels_tensor, load_images
from maskprivacy.model.loop import make_optimizer, make_trainer, train_models
from maskprivacy.model.network import build_model


def parse_config(text: str) -> dict:
    """``arch:size:precision`` (e.g. ``resnet18:64:bf16``)."""
    parts = text.split(":")
    if len(parts) != 3 or parts[2] not in ("bf16", "fp32") or not parts[1].isdigit():
        raise argparse.ArgumentTypeError(
            f"--configs: {text!r} is not arch:size:precision, e.g. resnet18:64:bf16"
        )
    return {"arch": parts[0], "image_size": int(parts[1]), "precision": parts[2]}


def image_folders(workdir: Path, dataset: str) -> list[Path]:
    base = workdir / "data" / ("align" if dataset == "unmasked" else f"mask/{dataset}")
    folders = sorted(p / "images" for p in base.iterdir() if (p / "images").is_dir())
    if not folders:
        raise SystemExit(f"cpu_attacker: no {base}/*/images: run the pipeline's data stages first")
    return folders


def ceiling(cfg: dict, batch: int, steps: int, channels_last: bool, compile_: bool) -> float:
    """Images/s of bare optimiser steps on synthetic normalised images (no data work), in one
    memory layout (and compiled or not): the layout comparison of the table."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tc = TrainConfig(arch=cfg["arch"], image_size=cfg["image_size"], batch_size=batch)
    model = build_model(cfg["arch"], "", 8).to(memory_format=fmt)
    opt = make_optimizer(model, tc, torch.device("cpu"))
    fwd = torch.compile(model) if compile_ else model
    x = torch.randn(batch, 3, cfg["image_size"], cfg["image_size"]).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch,))
    dev = torch.device("cpu")

    def step() -> None:
        with autocast(dev, cfg["precision"]):
            loss = torch.nn.functional.cross_entropy(fwd(x)[:, :2].float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up (and compilation)
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def step_speed(
    cfg: dict, batch: int, steps: int, rounds: int, images: torch.Tensor, y: torch.Tensor
) -> dict:
    """The train stage's step against its own ceiling, measured in alternation.

    One :class:`~maskprivacy.model.loop.Trainer` (the model, fused AdamW, schedule and loss of
    the train stage) takes, ``rounds`` times, ``steps`` bare optimiser steps on synthetic images
    already normalised (the ceiling: no data work), then ``steps`` full steps on real uint8
    images (gather, augmentation, channels-last, autocast). A CPU's speed drifts over minutes
    (boost clocks, the other tenants of a VM: one 10-step figure after another differed by 25%
    here), so a ceiling timed once and a step timed later compare two machines; in alternation
    both see the same drift. Returns the medians over the rounds: ceiling and step images/s,
    and the step's ratio to the ceiling."""
    tc = TrainConfig(arch=cfg["arch"], image_size=cfg["image_size"], batch_size=batch, epochs=1)
    tr = make_trainer(tc, Compute(device="cpu", precision=cfg["precision"], compile=False), 100)
    gen = torch.Generator().manual_seed(0)
    size = cfg["image_size"]
    x_syn = torch.randn(batch, 3, size, size, generator=gen)
    y_syn = y[torch.randint(0, len(y), (batch,), generator=gen)]

    def bare() -> None:
        tr.step(x_syn, y_syn, augment=False)

    def full() -> None:
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        tr.step(images[idx], y[idx])

    def timed(fn) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        return time.perf_counter() - t0

    for fn in (bare, full):  # warm-up
        fn()
        fn()
    t_bare, t_full = [], []
    for _ in range(max(1, rounds)):
        t_bare.append(timed(bare))
        t_full.append(timed(full))
    n = steps * batch
    return {
        "ceiling_img_s": statistics.median(n / t for t in t_bare),
        "pipeline_img_s": statistics.median(n / t for t in t_full),
        "ratio": statistics.median(b / f for b, f in zip(t_bare, t_full, strict=True)),
        "rounds": len(t_bare),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("."))
    ap.add_argument("--dataset", default="unmasked", help="unmasked, or a mask set's name")
    ap.add_argument(
        "--configs",
        nargs="+",
        type=parse_config,
        default=[parse_config(c) for c in ("resnet18:64:bf16", "resnet18:64:fp32")],
    )
    ap.add_argument("--budget-min", type=float, default=8.0, help="CPU minutes per model")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--steps", type=int, default=8, help="timed steps of each speed figure")
    ap.add_argument(
        "--rounds", type=int, default=5, help="alternations of ceiling and step (median taken)"
    )
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (slow)")
    ap.add_argument("--train-limit", type=int, default=0, help="first N training faces only")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--speed-only", action="store_true", help="phase 1 only: no training, no validation"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = read_table(args.workdir / "data/split/split.csv")
    tr = split[split["split"] == "train"].sort_values("file", kind="stable")
    va = split[split["split"] == "val"].sort_values("file", kind="stable")
    if args.train_limit:
        tr = tr.iloc[: args.train_limit]
    folders = image_folders(args.workdir, args.dataset)
    rows = []
    cpu = f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"{cpu}; {len(tr)} training and {len(va)} validation faces ({args.dataset})")
    by_size: dict[int, tuple] = {}
    for cfg in args.configs:
        size = cfg["image_size"]
        if size not in by_size:
            x_tr = load_images(folders, tr["file"].tolist(), size, progress=False)
            x_va = load_images(folders, va["file"].tolist(), size, progress=False)
            by_size[size] = (x_tr, labels_tensor(tr), x_va, labels_tensor(va))
        x_tr, y_tr, x_va, y_va = by_size[size]
        name = f"{cfg['arch']} {size} px {cfg['precision']}"
        row: dict = {**cfg, "batch_size": args.batch_size}
        # 1. speed: the train stage's step against its ceiling, in alternation (channels-last, as
        # the stage trains); the contiguous layout's (and the compiled) ceiling beside it
        row.update(step_speed(cfg, args.batch_size, args.steps, args.rounds, x_tr, y_tr))
        row["ceiling_channels_last"] = row["ceiling_img_s"]
        variants = [("contiguous", False, False)]
        if args.compile:
            variants.append(("channels_last+compile", True, True))
        for label, cl, comp in variants:
            try:
                row[f"ceiling_{label}"] = ceiling(cfg, args.batch_size, args.steps, cl, comp)
            except Exception as exc:  # e.g. no C++ compiler for inductor: report, go on
                print(f"{name}: {label} failed: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                row[f"ceiling_{label}"] = None
        if args.speed_only:
            rows.append(row)
            print(
                f"{name}: step {row['pipeline_img_s']:.0f} img/s = {row['ratio']:.2f} x its "
                f"ceiling {row['ceiling_img_s']:.0f} (median of {row['rounds']} rounds); "
                f"contiguous ceiling {row['ceiling_contiguous'] or 0:.0f}",
                flush=True,
            )
            continue
        # 2. accuracy within the budget: as many epochs as the measured speed fits
        epochs = max(1, math.floor(args.budget_min * 60 * row["pipeline_img_s"] / len(tr)))
        tc = TrainConfig(
            arch=cfg["arch"],
            image_size=size,
            batch_size=args.batch_size,
            epochs=epochs,
            lr=args.lr,
            seed=0,
        )
        t0 = time.perf_counter()
        fit = train_models(
            tc,
            Compute(device="cpu", precision=cfg["precision"], compile=False, eval_batch_size=512),
            x_tr,
            y_tr,
            x_va,
            y_va,
            progress=False,
            name=name,
        )
        row["train_min"] = (time.perf_counter() - t0) / 60
        last = fit.history.iloc[-1]
        row.update(
            epochs=epochs,
            train_img_s=float(pd.to_numeric(fit.history["images_per_s"]).median()),
            val_sex_acc=float(last["val_sex_acc"]),
            val_race_acc=float(last["val_race_acc"]),
            val_age_mae=float(last["val_age_mae"]),
        )
        rows.append(row)
        print(
            f"{name}: {epochs} epochs in {row['train_min']:.1f} min, train {row['train_img_s']:.0f}"
            f" img/s (a step: {row['pipeline_img_s']:.0f} img/s = {row['ratio']:.2f} x its ceiling "
            f"{row['ceiling_img_s']:.0f}, {row['rounds']} rounds); val sex "
            f"{100 * row['val_sex_acc']:.1f}%, race {100 * row['val_race_acc']:.1f}%, "
            f"age MAE {row['val_age_mae']:.2f}",
            flush=True,
        )
    print()
    if args.speed_only:
        print(speed_table(rows))
    else:
        print(table(rows, args.budget_min, len(tr), bool(args.train_limit)))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=1))
    return 0


def table(rows: list[dict], budget: float, n_train: int, limited: bool) -> str:
    """The Markdown table of the sweep, best validation race accuracy first."""
    head = (
        f"budget {budget:g} CPU min per model, {n_train} training faces"
        + (" (a subset: --train-limit)" if limited else "")
        + "\n\n| network | input | precision | epochs | min | train img/s (epochs) | step img/s "
        "| ceiling img/s (channels-last / contiguous) | step / ceiling | val sex | val race "
        "| val age MAE |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for r in sorted(rows, key=lambda r: -r["val_race_acc"]):
        cont = r.get("ceiling_contiguous")
        lines.append(
            f"| {r['arch']} | {r['image_size']} px | {r['precision']} | {r['epochs']} | "
            f"{r['train_min']:.1f} | {r['train_img_s']:.0f} | {r['pipeline_img_s']:.0f} | "
            f"{r['ceiling_channels_last'] or 0:.0f} / {cont or 0:.0f} | {r['ratio']:.2f} | "
            f"{100 * r['val_sex_acc']:.1f}% | {100 * r['val_race_acc']:.1f}% | "
            f"{r['val_age_mae']:.2f} |"
        )
    return "\n".join(lines)


def speed_table(rows: list[dict]) -> str:
    """The Markdown table of ``--speed-only``: each step against its ceiling."""
    lines = [
        "| network | input | precision | step img/s | ceiling img/s (channels-last / contiguous) "
        "| step / ceiling |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cont = r.get("ceiling_contiguous")
        lines.append(
            f"| {r['arch']} | {r['image_size']} px | {r['precision']} | "
            f"{r['pipeline_img_s']:.0f} | {r['ceiling_img_s']:.0f} / {cont or 0:.0f} | "
            f"{r['ratio']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
