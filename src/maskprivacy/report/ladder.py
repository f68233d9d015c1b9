"""The attacker ladder shown: its figure (the mask's cost against each attacker's unmasked
score, the fitted trend and the reference attackers) and its table, from the ladder stage's
statistics (``results/ladder/ladder.json``) or a published run's; the same code serves the
pipeline's figure, the HTML fragment and the published block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from maskprivacy.analysis.ladder import ATTRS, REFERENCES, predict, with_interval  # noqa: E402

REUSED = " (the study's, reused)"
TITLES = {"sex": "sex", "race": "race", "age": "age"}


def rung_label(name: str, rung: Mapping[str, Any]) -> str:
    """A rung's short name for a figure: ``R18 48px``, ``R18 48px 16ep``, ``recognizer``."""
    if rung.get("attacker") == "recognizer":
        return "recognizer"
    arch = str(rung.get("arch", name)).replace("resnet", "R")
    label = f"{arch} {rung.get('image_size')}px"
    if rung.get("longer"):
        label += f" {rung.get('epochs')}ep"
    return label


def _scale(attr: str) -> float:
    return 1.0 if attr == "age" else 100.0


def _point(ax: Any, x: float, y: float, low: float, high: float, **style: Any) -> None:
    """One point at ``(x, y)`` with its interval ``[low, high]`` drawn as an error bar."""
    ax.errorbar(x, y, yerr=[[y - low], [high - y]], capsize=3, **style)


LABEL_PT = 8  # font size of a rung's label, points


def _label_points(ax: Any, labels: list[tuple[float, float, str, str]]) -> None:
    """Each rung's name beside its point, moved up or down (with a leader line) until it
    overlaps no point and no name placed before it: rungs of like strength and cost sit close
    together."""
    ax.autoscale_view()
    to_px = ax.transData.transform
    pt = ax.figure.dpi / 72  # display pixels per point
    h = 1.25 * LABEL_PT * pt
    placed = [  # x0, y0, x1, y1 in px of each point's marker, then of each name placed
        (px - 4 * pt, py - 4 * pt, px + 4 * pt, py + 4 * pt)
        for px, py in (to_px((x, y)) for x, y, _, _ in labels)
    ]
    tries = [(5, 5)] + [(5, 5 + sign * step * 11) for step in range(1, 8) for sign in (-1, 1)]
    for x, y, text, colour in sorted(labels, key=lambda item: -to_px((item[0], item[1]))[1]):
        px, py = to_px((x, y))
        w = 0.6 * LABEL_PT * pt * len(text)
        for dx, dy in tries:
            box = (px + dx * pt, py + dy * pt, px + dx * pt + w, py + dy * pt + h)
            if not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed
            ):
                break
        placed.append(box)
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=(dx, dy),
            fontsize=LABEL_PT,
            color=colour,
            arrowprops=None
            if (dx, dy) == tries[0]
            else {"arrowstyle": "-", "color": colour, "lw": 0.5, "alpha": 0.6},
        )


def ladder_figure(ladder: Mapping[str, Any], title: str) -> Figure:
    """One panel per attribute: each rung's cost (masked - unmasked, 95% interval) against its
    unmasked score, the weighted trend with its 95% band, zero cost, the GPU run (drawn, not
    fitted) and the paper's level (the unmasked score at which the trend meets the paper's
    masked score). Stronger attackers sit to the right in every panel (age: MAE falls to the
    right)."""
    fig = Figure(figsize=(13.5, 4.4))
    axes = fig.subplots(1, 3)
    rungs = ladder["rungs"]
    for ax, attr in zip(axes, ATTRS, strict=True):
        k = _scale(attr)
        t = ladder["trends"][attr]
        xs = []
        labels: list[tuple[float, float, str, str]] = []
        for name, r in rungs.items():
            s = r["stats"][attr]
            x, c = k * s["unmasked"]["estimate"], s["cost"]
            y = k * c["estimate"]
            colour = "#7b3294" if r.get("attacker") == "recognizer" else "#0571b0"
            _point(ax, x, y, k * c["low"], k * c["high"], fmt="o", color=colour, ms=6)
            labels.append((x, y, rung_label(name, r), colour))
            xs.append(x)
        gpu = REFERENCES["gpu"][attr]
        gx, gy = k * gpu["unmasked"], k * gpu["cost"]
        _point(
            ax,
            gx,
            gy,
            k * gpu["cost_low"],
            k * gpu["cost_high"],
            fmt="D",
            mfc="white",
            color="#ca0020",
            ms=6,
            label=REFERENCES["gpu"]["label"],
        )
        xs.append(gx)
        trend = t["trend"]
        paper = t["at"].get("paper")
        if paper is not None:
            xs.append(k * paper["x"])
        if trend is not None:
            lo_x, hi_x = min(xs), max(xs)
            pad = 0.05 * (hi_x - lo_x or 1.0)
            grid = np.linspace(lo_x - pad, hi_x + pad, 60)
            pred = [predict(trend, g / k) for g in grid]
            ax.plot(
                grid,
                [k * p["estimate"] for p in pred],
                color="#404040",
                lw=1.2,
                label="weighted trend, 95% band",
            )
            ax.fill_between(
                grid,
                [k * p["low"] for p in pred],
                [k * p["high"] for p in pred],
                color="#404040",
                alpha=0.12,
                lw=0,
            )
        if paper is not None:
            px_, py = k * paper["x"], k * paper["estimate"]
            ax.axvline(px_, color="#e66101", ls=":", lw=1)
            _point(
                ax,
                px_,
                py,
                k * paper["low"],
                k * paper["high"],
                fmt="*",
                color="#e66101",
                ms=11,
                label="paper's level (trend solved at its masked score)",
            )
        ax.axhline(0, color="#888888", lw=0.8, ls="--")
        unit = "years" if attr == "age" else "pt"
        if attr == "age":
            ax.set_xlabel("unmasked MAE, years (stronger attacker \u2192)")
            ax.invert_xaxis()
            ax.set_ylabel(f"mask's cost: MAE masked \u2212 unmasked, {unit}")
        else:
            ax.set_xlabel(f"unmasked {attr} accuracy, % (stronger attacker \u2192)")
            ax.set_ylabel(f"mask's cost: accuracy masked \u2212 unmasked, {unit}")
        verdict = {
            "less": "stronger attackers lose less",
            "more": "stronger attackers lose more",
            "unclear": "no dependence shown",
        }[t["direction"]]
        ax.set_title(f"{TITLES[attr]}: {verdict}", fontsize=10)
        ax.grid(alpha=0.25)
        _label_points(ax, labels)
    legend: dict[str, Any] = {}  # every panel's entries, once (the paper's level may be in one)
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(
        list(legend.values()),
        list(legend),
        loc="lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.04),
    )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig


def table_rows(ladder: Mapping[str, Any]) -> list[list[str]]:
    """One row per rung: its attacker, input side, epochs, its two models' training minutes and
    their last epoch's seconds (a reused rung's are the study's), and per attribute the unmasked
    score and the mask's cost with their 95% intervals."""
    rows = []
    for name, r in ladder["rungs"].items():
        row = [
            name,
            "face recognizer + heads"
            if r.get("attacker") == "recognizer"
            else str(r["arch"]) + (REUSED if r.get("reused") else ""),
            "-" if r.get("attacker") == "recognizer" else f"{r['image_size']}",
            "-" if r.get("attacker") == "recognizer" else f"{r['epochs']}",
            f"{r['train_seconds'] / 60:.1f}" if r.get("train_seconds") else "-",
            f"{r['epoch_seconds']:.0f}" if r.get("epoch_seconds") else "-",
        ]
        for attr in ATTRS:
            s = r["stats"][attr]
            row += [with_interval(attr, s["unmasked"], False), with_interval(attr, s["cost"], True)]
        rows.append(row)
    return rows


HEADER = [
    "rung",
    "attacker",
    "px",
    "epochs",
    "train min",
    "s/epoch",
    "sex acc. %",
    "sex cost pt",
    "race acc. %",
    "race cost pt",
    "age MAE",
    "age cost years",
]


TREND_HEADER = [
    "attribute",
    "rungs",
    "slope [95% CI]",
    "stronger attackers",
    "cost at the GPU run's level: trend [95% CI] / measured",
    "cost at the paper's level [95% CI]",
    "slope, CNN rungs alone",
]


def _slope(attr: str, tr: Mapping[str, Any]) -> str:
    if attr == "age":
        return (
            f"{tr['slope']:+.2f} [{tr['slope_low']:+.2f}, {tr['slope_high']:+.2f}] "
            "years per year of MAE"
        )
    return (
        f"{10 * tr['slope']:+.2f} [{10 * tr['slope_low']:+.2f}, "
        f"{10 * tr['slope_high']:+.2f}] pt per 10 pt"
    )


def trend_rows(ladder: Mapping[str, Any]) -> list[list[str]]:
    """Per attribute: the weighted trend's slope (cost per 10 pt of unmasked accuracy; age: per
    year of unmasked MAE; positive in both: stronger attackers lose less),
    the direction, and the cost the trend predicts at the reference attackers."""
    rows = []
    for attr in ATTRS:
        t = ladder["trends"][attr]
        tr = t["trend"]
        if tr is None:
            rows.append([attr, str(len(ladder["rungs"])), "-", "too few rungs", "-", "-", "-"])
            continue
        slope = _slope(attr, tr)
        alone = (t.get("cnn_only") or {}).get("trend")
        words = {"less": "lose less", "more": "lose more", "unclear": "no dependence shown"}
        gpu, paper = t["at"].get("gpu"), t["at"].get("paper")
        rows.append(
            [
                attr,
                str(tr["n"]),
                slope,
                words[t["direction"]],
                "-"
                if gpu is None
                else f"{with_interval(attr, gpu, True)} / {with_interval(attr, {'estimate': gpu['measured'], 'low': gpu['measured_low'], 'high': gpu['measured_high']}, True)}",
                "-"
                if paper is None
                else f"{with_interval(attr, paper, True)} (unmasked {with_interval(attr, {'estimate': paper['x']}, False)})",
                "-" if alone is None else _slope(attr, alone),
            ]
        )
    return rows
