"""Evaluation figures: confusion matrices, age scatter plots, learning curves, comparison bars.

Each ``*_png`` function builds a figure with the matching ``*_figure`` function, writes it as a
PNG with :func:`maskprivacy.core.io.save_figure` (atomic) and returns the path. With ``demo=True``
(figures made from the embedded demo data set) every figure carries :data:`DEMO_TEXT` in red,
so a demo picture can never pass for a result on UTKFace.

Figures are built as :class:`matplotlib.figure.Figure` objects (not through pyplot's global
state) on the non-interactive Agg backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from maskprivacy.core.io import save_figure  # noqa: E402

DEMO_TEXT = "DEMO DATA: synthetic labels, not UTKFace"
# Per-epoch validation columns drawn by learning_curves_*, with their panel titles.
VAL_METRICS = (
    ("val_sex_acc", "validation sex accuracy"),
    ("val_race_acc", "validation race accuracy"),
    ("val_age_mae", "validation age MAE (years)"),
)


def demo_banner(fig: Figure) -> Text:
    """Add the red 'DEMO DATA' banner across the top of ``fig``; returns the text artist."""
    return fig.text(
        0.5,
        1.0,
        DEMO_TEXT,
        ha="center",
        va="bottom",
        color="red",
        fontsize=13,
        fontweight="bold",
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "#fff0f0", "edgecolor": "red"},
    )


def _finish(fig: Figure, demo: bool) -> Figure:
    if demo:
        demo_banner(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    save_figure(fig, path)
    return Path(path)


# --------------------------------------------------------------------------- confusion matrix


def confusion_matrix_figure(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    labels: Sequence[str],
    title: str,
    demo: bool = False,
) -> Figure:
    """Confusion matrix coloured by row-normalised rate (recall per true class), counts written.

    Rows are true classes, columns predicted classes. A row with no images stays blank (0).
    """
    cm = np.asarray(confusion, dtype=float)
    k = len(labels)
    if cm.shape != (k, k):
        raise ValueError(f"confusion of shape {cm.shape} does not match {k} labels")
    rows = cm.sum(axis=1, keepdims=True)
    rate = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)

    side = 2.2 + 0.75 * k
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    im = ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of true class")
    for i in range(k):
        for j in range(k):
            txt = f"{int(cm[i, j])}"
            if rows[i, 0] > 0:
                txt += f"\n{rate[i, j]:.0%}"
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=9,
                color="white" if rate[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(k), labels, rotation=30 if k > 2 else 0, ha="right" if k > 2 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    n = int(cm.sum())
    acc = float(np.trace(cm) / n) if n else float("nan")
    ax.set_title(f"{title}\n(n = {n}, accuracy = {acc:.3f})")
    fig.tight_layout()
    return _finish(fig, demo)


def confusion_matrix_png(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    labels: Sequence[str],
    title: str,
    path: str | os.PathLike,
    demo: bool = False,
) -> Path:
    """Write :func:`confusion_matrix_figure` to ``path`` (PNG); returns the path."""
    return _save(confusion_matrix_figure(confusion, labels, title, demo), path)


# --------------------------------------------------------------------------- age scatter


def age_scatter_figure(y_true: Any, y_pred: Any, title: str, demo: bool = False) -> Figure:
    """Predicted against true age with the identity line, and a residuals panel beside it."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length: {t.shape}, {p.shape}")
    res = p - t
    n = len(t)
    alpha = float(np.clip(30.0 / np.sqrt(max(n, 1)), 0.15, 0.8))

    fig = Figure(figsize=(10.5, 4.6))
    ax, axr = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    lo = float(min(t.min(), p.min(), 0.0)) if n else 0.0
    hi = float(max(t.max(), p.max())) if n else 1.0
    pad = 0.03 * (hi - lo or 1.0)
    lim = (lo - pad, hi + pad)
    ax.scatter(t, p, s=10, alpha=alpha, color="tab:blue", edgecolors="none")
    ax.plot(lim, lim, color="black", lw=1, ls="--", label="identity (perfect)")
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_aspect("equal")
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("predicted age (years)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)

    axr.scatter(t, res, s=10, alpha=alpha, color="tab:orange", edgecolors="none")
    axr.axhline(0.0, color="black", lw=1, ls="--")
    if n:
        axr.axhline(
            float(res.mean()), color="tab:red", lw=1, label=f"mean residual {res.mean():+.1f}"
        )
        axr.legend(loc="upper right", fontsize=8)
    axr.set_xlim(lim)
    axr.set_xlabel("true age (years)")
    axr.set_ylabel("residual: predicted - true (years)")
    axr.grid(alpha=0.3)
    if n:
        mae, rmse = float(np.abs(res).mean()), float(np.sqrt((res**2).mean()))
        sub = f"n = {n}, MAE = {mae:.2f}, RMSE = {rmse:.2f} years"
    else:
        sub = "n = 0"
    fig.suptitle(f"{title}\n{sub}")
    fig.tight_layout()
    return _finish(fig, demo)


def age_scatter_png(
    y_true: Any, y_pred: Any, title: str, path: str | os.PathLike, demo: bool = False
) -> Path:
    """Write :func:`age_scatter_figure` to ``path`` (PNG); returns the path."""
    return _save(age_scatter_figure(y_true, y_pred, title, demo), path)


# --------------------------------------------------------------------------- learning curves


def learning_curves_figure(
    history: pd.DataFrame | Mapping[str, pd.DataFrame], demo: bool = False
) -> Figure:
    """Per-epoch losses (train solid, validation dashed) and validation metrics of one or more runs.

    ``history`` is one table or a mapping run name -> table, each with columns ``epoch`` and
    ``train_loss`` and optionally ``val_loss``, ``val_sex_acc``, ``val_race_acc``,
    ``val_age_mae``; one panel is drawn for losses and one for each validation metric that any
    run has.
    """
    runs = {"run": history} if isinstance(history, pd.DataFrame) else dict(history)
    if not runs:
        raise ValueError("learning_curves: no histories given")
    for name, df in runs.items():
        missing = {"epoch", "train_loss"} - set(df.columns)
        if missing:
            raise ValueError(f"learning_curves: run {name!r} lacks columns {sorted(missing)}")
    panels = [(c, t) for c, t in VAL_METRICS if any(c in df.columns for df in runs.values())]
    n_panels = 1 + len(panels)
    fig = Figure(figsize=(4.2 * n_panels, 3.8))
    axes = np.atleast_1d(fig.subplots(1, n_panels, squeeze=False)[0])
    colours = [f"C{i}" for i in range(10)]

    ax = axes[0]
    for i, (name, df) in enumerate(runs.items()):
        c = colours[i % len(colours)]
        ax.plot(df["epoch"], df["train_loss"], color=c, ls="-", marker=".", label=f"{name} train")
        if "val_loss" in df.columns:
            ax.plot(df["epoch"], df["val_loss"], color=c, ls="--", marker=".", label=f"{name} val")
    ax.set_title("loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("multitask loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    for ax, (col, ptitle) in zip(axes[1:], panels, strict=True):
        for i, (name, df) in enumerate(runs.items()):
            if col in df.columns:
                c = colours[i % len(colours)]
                ax.plot(df["epoch"], df[col], color=c, marker=".", label=name)
        ax.set_title(ptitle)
        ax.set_xlabel("epoch")
        ax.set_ylabel("years" if col.endswith("mae") else "accuracy")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _finish(fig, demo)


def learning_curves_png(
    history: pd.DataFrame | Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    demo: bool = False,
) -> Path:
    """Write :func:`learning_curves_figure` to ``path`` (PNG); returns the path."""
    return _save(learning_curves_figure(history, demo), path)


# --------------------------------------------------------------------------- comparison bars


def _none_to_nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def comparison_bars_figure(rows: Sequence[Mapping[str, Any]], demo: bool = False) -> Figure:
    """Grouped bars (one bar per condition) with bootstrap-interval error bars.

    ``rows`` are dicts ``{condition, attribute, metric, estimate, low, high}``. One panel per
    attribute (in order of first appearance); within a panel, one group per metric. A missing
    (``None``) ``low``/``high`` draws no error bar.
    """
    if not rows:
        raise ValueError("comparison_bars: no rows given")
    df = pd.DataFrame(list(rows))
    missing = {"condition", "attribute", "metric", "estimate", "low", "high"} - set(df.columns)
    if missing:
        raise ValueError(f"comparison_bars: rows lack keys {sorted(missing)}")
    for c in ("estimate", "low", "high"):
        df[c] = [_none_to_nan(v) for v in df[c]]
    attributes = list(dict.fromkeys(df["attribute"]))
    conditions = list(dict.fromkeys(df["condition"]))
    colours = {c: f"C{i % 10}" for i, c in enumerate(conditions)}

    fig = Figure(figsize=(3.6 * len(attributes) + 0.8, 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(attributes), squeeze=False)[0])
    width = 0.8 / max(1, len(conditions))
    nan = float("nan")
    for ax, attr in zip(axes, attributes, strict=True):
        sub = df[df["attribute"] == attr]
        metrics = list(dict.fromkeys(sub["metric"]))
        for j, cond in enumerate(conditions):
            xs, ys, err_lo, err_hi = [], [], [], []
            for m_i, metric in enumerate(metrics):
                hit = sub[(sub["condition"] == cond) & (sub["metric"] == metric)]
                if hit.empty:
                    continue
                r = hit.iloc[0]
                xs.append(m_i - 0.4 + width * (j + 0.5))
                ys.append(r["estimate"])
                # NaN (no interval) draws no error bar.
                err_lo.append(max(0.0, r["estimate"] - r["low"]) if np.isfinite(r["low"]) else nan)
                err_hi.append(
                    max(0.0, r["high"] - r["estimate"]) if np.isfinite(r["high"]) else nan
                )
            if not xs:
                continue
            bars = ax.bar(
                xs,
                ys,
                width * 0.92,
                yerr=[err_lo, err_hi],
                capsize=4,
                color=colours[cond],
                label=cond,
                error_kw={"elinewidth": 1.2},
            )
            ax.bar_label(
                bars, fmt="%.3g", fontsize=9, label_type="center", color="white", fontweight="bold"
            )
        ax.set_xticks(range(len(metrics)), metrics)
        ax.set_title(attr)
        top = np.nanmax(sub[["estimate", "high"]].to_numpy(float))
        if np.isfinite(top) and top > 0:
            ax.set_ylim(0, top * 1.12)
        if all(str(m).endswith("accuracy") for m in metrics):
            ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("estimate with bootstrap CI")
    handles = [Patch(facecolor=colours[c], label=c) for c in conditions]
    fig.legend(handles=handles, loc="lower center", ncol=len(conditions), bbox_to_anchor=(0.5, 0))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _finish(fig, demo)


def comparison_bars_png(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, demo: bool = False
) -> Path:
    """Write :func:`comparison_bars_figure` to ``path`` (PNG); returns the path."""
    return _save(comparison_bars_figure(rows, demo), path)


def group_heatmap_figure(table: pd.DataFrame, title: str, demo: bool = False) -> Figure:
    """Per-group differences (condition - baseline) on a race x age-bucket grid, one panel each
    for sex accuracy, race accuracy (points) and age MAE (years); cells show n underneath."""
    from maskprivacy.core.labels import AGE_BUCKETS, RACES

    panels = [
        ("sex_acc_diff", "sex accuracy (pt)", 100.0),
        ("race_acc_diff", "race accuracy (pt)", 100.0),
        ("age_mae_diff", "age MAE (years)", 1.0),
    ]
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    for ax, (col, label, scale) in zip(axes, panels, strict=True):
        grid = np.full((len(RACES), len(AGE_BUCKETS)), np.nan)
        counts = np.zeros_like(grid)
        for r in table.itertuples():
            grid[int(r.race), int(r.age_bucket)] = getattr(r, col) * scale
            counts[int(r.race), int(r.age_bucket)] = r.n
        lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
        cmap = "RdBu_r" if col == "age_mae_diff" else "RdBu"
        im = ax.imshow(grid, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:+.1f}\nn={int(counts[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(AGE_BUCKETS)), [b[0] for b in AGE_BUCKETS], rotation=45, ha="right")
        ax.set_yticks(range(len(RACES)), RACES)
        ax.set_title(label)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title)
    return _finish(fig, demo)


def group_heatmap_png(
    table: pd.DataFrame, title: str, path: str | os.PathLike, demo: bool = False
) -> Path:
    return _save(group_heatmap_figure(table, title, demo), path)
