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
from matplotlib.lines import Line2D  # noqa: E402
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
    ax.set_title(f"{title}\n(n = {n}, accuracy {100 * acc:.1f}%)")
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
    history: pd.DataFrame | Mapping[str, pd.DataFrame],
    demo: bool = False,
    chance: Mapping[str, Any] | None = None,
) -> Figure:
    """Per-epoch losses (train solid, validation dashed) and validation metrics of one or more runs.

    ``history`` is one table or a mapping run name -> table, each with columns ``epoch`` and
    ``train_loss`` and optionally ``val_loss``, ``val_sex_acc``, ``val_race_acc``,
    ``val_age_mae``; one panel is drawn for losses and one for each validation metric that any
    run has, two panels a row, accuracies in %, one legend for all panels under them. With
    ``chance`` (compare's ``statistics["chance"]``) each metric's panel has its chance line.
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
    n_cols = min(2, n_panels)
    n_rows = -(-n_panels // n_cols)
    fig = Figure(figsize=(4.6 * n_cols, 3.3 * n_rows + 0.35 * (1 + len(runs) // 3)))
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False).ravel())
    colours = [f"C{i}" for i in range(10)]

    ax = axes[0]
    for i, df in enumerate(runs.values()):
        c = colours[i % len(colours)]
        ax.plot(df["epoch"], df["train_loss"], color=c, ls="-", marker=".")
        if "val_loss" in df.columns:
            ax.plot(df["epoch"], df["val_loss"], color=c, ls="--", marker=".")
    ax.set_title("loss (solid: training, dashed: validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("multitask loss")
    ax.grid(alpha=0.3)

    for ax, (col, ptitle) in zip(axes[1:], panels, strict=False):
        attr = col.split("_")[1]
        scale = 1.0 if col.endswith("mae") else 100.0
        for i, df in enumerate(runs.values()):
            if col in df.columns:
                c = colours[i % len(colours)]
                ax.plot(df["epoch"], scale * df[col], color=c, marker=".")
        if chance and attr in chance:
            line = chance_value(chance, attr)
            ax.axhline(line, color="grey", ls=":", lw=1.2)
            ax.annotate(
                chance_text(chance, attr),
                (0.01, line),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color="dimgrey",
                va="bottom",
            )
        ax.set_title(ptitle)
        ax.set_xlabel("epoch")
        ax.set_ylabel("years" if col.endswith("mae") else "accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    for ax in axes[:n_panels]:
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [
        Line2D([], [], color=colours[i % len(colours)], marker=".", label=name)
        for i, name in enumerate(runs)
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(runs), 3), fontsize=8, frameon=False
    )
    fig.tight_layout(rect=(0, 0.05 * (1 + len(runs) // 3) / n_rows, 1, 1))
    return _finish(fig, demo)


def learning_curves_png(
    history: pd.DataFrame | Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    demo: bool = False,
    chance: Mapping[str, Any] | None = None,
) -> Path:
    """Write :func:`learning_curves_figure` to ``path`` (PNG); returns the path."""
    return _save(learning_curves_figure(history, demo, chance), path)


# --------------------------------------------------------------------------- levels and differences

ATTRS = ("sex", "race", "age")
# per attribute: the axis label with its unit, and the scale of the shown numbers
AXIS = {
    "sex": ("sex accuracy (%)", 100.0),
    "race": ("race accuracy (%)", 100.0),
    "age": ("age MAE (years; lower = read better)", 1.0),
}
CHANGE_AXIS = {
    "sex": "sex accuracy change (points)",
    "race": "race accuracy change (points)",
    "age": "age MAE change (years)",
}
MARKERS = "osD^v"


def chance_value(chance: Mapping[str, Any], attr: str) -> float:
    """Chance as the figures show it: accuracy in %, MAE in years."""
    c = chance[attr]
    return float(c["mae"]) if attr == "age" else 100.0 * float(c["accuracy"])


def chance_text(chance: Mapping[str, Any], attr: str) -> str:
    """'chance 52.2% (always male)', 'chance 14.95 years (always 29)'."""
    c = chance[attr]
    if attr == "age":
        return f"chance {c['mae']:.2f} years (always {c['guess']:g})"
    return f"chance {100 * c['accuracy']:.1f}% (always {c['guess']})"


def condition_label(name: str, definitions: Sequence[Mapping[str, str]] = ()) -> str:
    """A condition's name with what it means, for a figure: 'unmasked_to_masked: masked faces,
    a model that never saw a mask'."""
    d = next((c for c in definitions if c.get("name") == name), None)
    if d is None:
        return name
    train, test = d["train"], d["test"]
    if train == test == "unmasked":
        return f"{name}:\nno mask (the baseline)"
    trained = "never saw a mask" if train == "unmasked" else f"trained on {train} faces"
    return f"{name}:\n{test} faces, {trained}"


def condition_rows(
    attackers: Mapping[str, Mapping[str, Any]],
    definitions: Sequence[Mapping[str, str]] = (),
    names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The rows :func:`levels_figure` draws from compare's statistics: per condition (``names``,
    default every one) and attacker (``{"CNN": statistics, "face recognizer": ...}``), the seed
    mean of each attribute with its 95% interval over faces."""
    rows = []
    first = next(iter(attackers.values()))
    for name in names or list(first["conditions"]):
        for attacker, st in attackers.items():
            cond = st["conditions"].get(name)
            if cond is not None:
                label = condition_label(name, definitions)
                rows.append({"label": label, "attacker": attacker, **cond["seed_mean"]})
    return rows


def _rows_y(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], list[float]]:
    """Row labels top to bottom, the attackers, and each row's y (attackers side by side)."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    attackers = list(dict.fromkeys(r["attacker"] for r in rows))
    k = len(attackers)
    step = 0.7 / k if k > 1 else 0.0
    ys = [
        labels.index(r["label"]) + step * (attackers.index(r["attacker"]) - (k - 1) / 2)
        for r in rows
    ]
    return labels, attackers, ys


def _interval(m: Mapping[str, Any], scale: float) -> tuple[float, float, float]:
    est = scale * _none_to_nan(m.get("estimate"))
    lo, hi = (scale * _none_to_nan(m.get(k)) for k in ("low", "high"))
    return est, (est - lo if np.isfinite(lo) else 0.0), (hi - est if np.isfinite(hi) else 0.0)


def levels_figure(
    rows: Sequence[Mapping[str, Any]],
    chance: Mapping[str, Any] | None = None,
    title: str | None = None,
    demo: bool = False,
) -> Figure:
    """What each attacker reads, per condition: sex and race accuracy (%) and age MAE (years),
    each a dot (the seed mean) with its 95% interval, and chance (always the training majority
    or median) dashed. ``rows``: ``{label, attacker, sex, race, age}``, each attribute
    ``{estimate, low, high}`` (accuracy a fraction, MAE in years; a missing interval draws none),
    as :func:`condition_rows` makes them."""
    if not rows:
        raise ValueError("levels: no rows given")
    labels, attackers, ys = _rows_y(rows)
    fig = Figure(figsize=(10.5, (0.62 if len(attackers) > 1 else 0.42) * len(labels) + 1.9))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, attr in zip(axes, ATTRS, strict=True):
        name, scale = AXIS[attr]
        values = []
        for r, y in zip(rows, ys, strict=True):
            if attr not in r:
                continue
            est, lo, hi = _interval(r[attr], scale)
            i = attackers.index(r["attacker"])
            ax.errorbar(
                est,
                y,
                xerr=[[lo], [hi]],
                fmt=MARKERS[i % len(MARKERS)],
                color=f"C{i}",
                ms=6,
                capsize=3,
                lw=1.4,
            )
            ax.annotate(
                f"{est:.{2 if attr == 'age' else 1}f}",
                (est + hi, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=f"C{i}",
            )
            values += [est - lo, est + hi]
        if chance and attr in chance:
            line = chance_value(chance, attr)
            ax.axvline(line, color="grey", ls="--", lw=1.2)
            right = attr == "age"  # age's chance sits at the right end: its text left of the line
            ax.annotate(
                chance_text(chance, attr).replace(" (", "\n("),
                (line, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-3 if right else 3, -3),
                textcoords="offset points",
                ha="right" if right else "left",
                va="top",
                fontsize=7.5,
                color="dimgrey",
            )
            values.append(line)
        if values and attr != "age":
            ax.set_xlim(max(0.0, min(values) - 8), 100)
        elif values:
            ax.set_xlim(0, max(values) * 1.12)
        ax.set_xlabel(name)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8.5)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)
    if len(attackers) > 1:
        handles = [
            Line2D([], [], color=f"C{i}", marker=MARKERS[i % len(MARKERS)], ls="", label=a)
            for i, a in enumerate(attackers)
        ]
        fig.legend(handles=handles, loc="lower center", ncol=len(attackers), frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if len(attackers) > 1 else 0, 1, 1))
    return _finish(fig, demo)


def levels_png(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    chance: Mapping[str, Any] | None = None,
    title: str | None = None,
    demo: bool = False,
) -> Path:
    """Write :func:`levels_figure` to ``path`` (PNG); returns the path."""
    return _save(levels_figure(rows, chance, title, demo), path)


def forest_figure(
    attackers: Mapping[str, Mapping[str, Any]],
    definitions: Sequence[Mapping[str, str]] = (),
    demo: bool = False,
) -> Figure:
    """Every difference from the baseline, per attacker (``{"CNN": statistics, ...}``, each
    with ``comparisons``, ``conditions`` and ``chance``): sex and race accuracy in points, age
    MAE in years, each with its 95% interval over faces; a filled dot is significant after Holm
    (the test over faces), a hollow one is not. Zero is no change; each attacker's dotted line
    is the change that would leave it at chance (always the majority, or the median age)."""
    rows = []
    for attacker, st in attackers.items():
        for cname, cmp in (st.get("comparisons") or {}).items():
            name = cname.rsplit("_vs_", 1)[0]
            rows.append(
                {
                    "label": condition_label(name, definitions),
                    "attacker": attacker,
                    "alpha": float(st.get("alpha", 0.05)),
                    **cmp,
                }
            )
    if not rows:
        raise ValueError("forest: no comparison given")
    labels, names, ys = _rows_y(rows)
    fig = Figure(figsize=(10.5, 0.62 * len(labels) + 2.1))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, attr in zip(axes, ATTRS, strict=True):
        scale = 1.0 if attr == "age" else 100.0
        ax.axvline(0.0, color="black", lw=1)
        for r, y in zip(rows, ys, strict=True):
            c = r.get(attr)
            if c is None:
                continue
            est = scale * c["difference"]
            lo, hi = scale * c["ci"]["low"], scale * c["ci"]["high"]
            i = names.index(r["attacker"])
            p = c["test"].get("p_holm", c["test"].get("p_value"))
            filled = p is not None and p < r["alpha"]
            ax.errorbar(
                est,
                y,
                xerr=[[est - lo], [hi - est]],
                fmt=MARKERS[i % len(MARKERS)],
                color=f"C{i}",
                mfc=f"C{i}" if filled else "white",
                ms=6,
                capsize=3,
                lw=1.4,
            )
            ax.annotate(
                f"{est:+.{2 if attr == 'age' else 1}f}",
                (hi, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=f"C{i}",
            )
        for i, st in enumerate(attackers.values()):
            base = st["conditions"].get(st.get("baseline", "unmasked"))
            if base is None or not st.get("chance"):
                continue
            line = chance_value(st["chance"], attr) - scale * base["seed_mean"][attr]["estimate"]
            ax.axvline(line, color=f"C{i}", ls=":", lw=1.4)
        ax.set_xlabel(CHANGE_AXIS[attr])
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8.5)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)
    handles = [
        Line2D([], [], color=f"C{i}", marker=MARKERS[i % len(MARKERS)], ls="", label=a)
        for i, a in enumerate(names)
    ]
    handles += [
        Line2D([], [], color="grey", marker="o", ls="", label="significant (Holm)"),
        Line2D([], [], color="grey", marker="o", mfc="white", ls="", label="not significant"),
        Line2D([], [], color="grey", ls=":", lw=1.4, label="the change to chance"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8.5)
    fig.suptitle("Change from the unmasked baseline, 95% intervals over faces", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _finish(fig, demo)


def forest_png(
    attackers: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    definitions: Sequence[Mapping[str, str]] = (),
    demo: bool = False,
) -> Path:
    """Write :func:`forest_figure` to ``path`` (PNG); returns the path."""
    return _save(forest_figure(attackers, definitions, demo), path)


def svg_bytes(fig: Figure) -> bytes:
    """``fig`` as SVG, the same bytes for the same figure (no date, fixed ids, text kept as
    text): what a committed figure is checked against."""
    import io

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "maskprivacy", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def _none_to_nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def group_heatmap_figure(table: pd.DataFrame, title: str, demo: bool = False) -> Figure:
    """Per-group differences (condition - baseline) on a race x age-bucket grid, one panel each
    for sex accuracy, race accuracy (points) and age MAE (years); cells show n underneath. Red
    is a group the condition reads worse than the baseline (the mask hides more), blue better;
    each colour bar has its unit and a few ticks, clear of the next panel."""
    from matplotlib.ticker import MaxNLocator

    from maskprivacy.core.labels import AGE_BUCKETS, RACES

    panels = [
        ("sex_acc_diff", "sex accuracy change", "points", 100.0),
        ("race_acc_diff", "race accuracy change", "points", 100.0),
        ("age_mae_diff", "age MAE change", "years", 1.0),
    ]
    fig = Figure(figsize=(13, 4.4), layout="constrained")
    fig.get_layout_engine().set(wspace=0.06)
    axes = fig.subplots(1, 3)
    for ax, (col, label, unit, scale) in zip(axes, panels, strict=True):
        grid = np.full((len(RACES), len(AGE_BUCKETS)), np.nan)
        counts = np.zeros_like(grid)
        for r in table.itertuples():
            grid[int(r.race), int(r.age_bucket)] = getattr(r, col) * scale
            counts[int(r.race), int(r.age_bucket)] = r.n
        lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 0.0
        lim = max(float(lim), 1.0 if unit == "points" else 0.5)  # no bar of +-0.05 points
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
                        color="white" if abs(grid[i, j]) > 0.6 * lim else "black",
                    )
        ages = [f"{lo}-{hi}" if hi < 100 else f"{lo}+" for _, lo, hi in AGE_BUCKETS]
        ax.set_xticks(range(len(AGE_BUCKETS)), ages, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(RACES)), RACES)
        ax.set_xlabel("age group (years)")
        ax.set_title(f"{label} ({unit})")
        bar = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
        bar.locator = MaxNLocator(5)
        bar.formatter.set_useOffset(False)
        bar.update_ticks()
        bar.set_label(f"{unit}; red: read worse", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(title + ("\n" if demo else ""))  # on demo data, clear of the banner above
    return _finish(fig, demo)


def group_heatmap_png(
    table: pd.DataFrame, title: str, path: str | os.PathLike, demo: bool = False
) -> Path:
    return _save(group_heatmap_figure(table, title, demo), path)
