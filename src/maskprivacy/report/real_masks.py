"""The report's section "Real masks": on each external set whose photos wear real masks, what
a real mask, a painted one and no mask leave an attacker to read (each version's accuracy with
its interval, against the set's own chance), the tests of real - none, painted - none and real -
painted, and one sentence: do painted masks overstate or understate what a real mask costs?

The same sentence goes to ``results/metrics.json`` (``real_masks``), the HTML report and the
landing page of Snakemake's report (through compare's ``fragments/real_masks.html``); the figure is
``results/compare/plots/real_masks/real_masks_<set>.png``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maskprivacy.analysis.real_masks import NONE, painted_vs_real
from maskprivacy.core.io import save_figure
from maskprivacy.datasets.worn import WORN
from maskprivacy.report.markup import img, table

ATTACKERS = (("CNN", "external"), ("recognizer", "recognizer_external"))
UNIT = {"sex": "accuracy", "race": "accuracy", "age": "MAE"}


def sets_with_real_masks(statistics: Mapping[str, Any]) -> list[str]:
    return sorted(n for n, s in statistics.get("external", {}).items() if "real_masks" in s)


def attacker_sets(statistics: Mapping[str, Any], name: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(attacker, the set's external statistics) for the CNN and, where it ran, the recognizer."""
    out = [("CNN", statistics["external"][name])]
    rec = statistics.get("recognizer", {}).get("external", {})
    if name in rec and "real_masks" in rec[name]:
        out.append(("recognizer", rec[name]))
    return out


def headline_train(s: Mapping[str, Any]) -> str:
    """The model the sentence speaks of: the one trained on masked faces (``masked``, the paper's
    attacker) where there is one, else the first."""
    trains = sorted({r["train"] for r in s["real_masks"]["comparisons"]})
    return "masked" if "masked" in trains else trains[0]


def _version_metric(s: Mapping[str, Any], version: str, train: str, attr: str) -> dict | None:
    for r in s["results"]:
        if r["version"] == version and r["train"] == train and attr in r["ensemble"]:
            return r["ensemble"][attr]
    return None


def _interval(
    m: Mapping[str, Any] | None, key: str, scale: float
) -> tuple[float, float, float] | None:
    """(estimate, low, high) of ``m[key]`` times ``scale`` (``None`` without an estimate); a
    bound ``m`` lacks (``<key>_low``, ``<key>_high``) is the estimate."""
    if not m or m.get(key) is None:
        return None
    est = float(m[key])
    return tuple(
        scale * (est if m.get(k) is None else float(m[k]))
        for k in (key, f"{key}_low", f"{key}_high")
    )


def _value(m: Mapping[str, Any] | None, attr: str) -> tuple[float, float, float] | None:
    """(estimate, low, high) of an attribute's metric, in % for accuracy, years for MAE."""
    return _interval(m, *(("mae", 1.0) if attr == "age" else ("accuracy", 100.0)))


def _fmt(attr: str, v: tuple[float, float, float] | None) -> str:
    if v is None:
        return "–"
    unit = " years" if attr == "age" else "%"
    d = 2 if attr == "age" else 1
    return f"{v[0]:.{d}f}{unit} [{v[1]:.{d}f}, {v[2]:.{d}f}]"


def sentence(name: str, s: Mapping[str, Any], attacker: str = "CNN") -> str:
    """One sentence per set and attacker: each attribute's score with a real, a painted and no
    mask (the model trained on masked faces), and whether painted masks overstate or understate
    what a real mask costs this attacker."""
    rm = s["real_masks"]
    train = headline_train(s)
    painted = sorted({r["b"] for r in rm["comparisons"] if r["a"] == WORN and r["b"] != NONE})
    parts = []
    readings = []
    for attr in rm["attributes"]:
        real = _value(_version_metric(s, WORN, train, attr), attr)
        none = _value(_version_metric(s, NONE, train, attr), attr)
        paint = [_value(_version_metric(s, p, train, attr), attr) for p in painted]
        what = "MAE" if attr == "age" else "accuracy"
        paint_txt = ", ".join(f"{p} {_fmt(attr, v)}" for p, v in zip(painted, paint, strict=True))
        ch = rm["chance"][attr]
        if attr == "age":
            chance_txt = f"chance {ch['mae']:.2f} years"
        else:
            bal = [_balanced(_version_metric(s, v, train, attr)) for v in (WORN, NONE)]
            chance_txt = (
                f"balanced {bal[0]} and {bal[1]}; chance: always {ch['majority']} "
                f"{100 * ch['accuracy']:.1f}%, balanced {100 * ch['balanced_accuracy']:.0f}%"
            )
        parts.append(
            f"{attr} {what} {_fmt(attr, real)} with a real mask, {_fmt(attr, none)} without "
            f"({chance_txt}), painted: {paint_txt}"
        )
        pv = painted_vs_real(rm, train, attr)
        if pv is not None:
            rows = "; ".join(f"real - {r['b']} {_diff(attr, r)}" for r in pv["rows"])
            readings.append(f"{attr}: {pv['reading']} ({rows})")
    who = f"the {attacker}" if attacker == "CNN" else "the recognizer"
    unit = (
        f"{rm['persons']} persons"
        if rm["unit"] == "persons"
        else f"{sum(rm['photos'].values())} photos"
    )
    return (
        f"On {name} ({unit}; {rm['photos']['worn']} photos with a real mask, "
        f"{rm['photos']['not_worn']} without), {who} trained on {train} faces read "
        + "; ".join(parts)
        + ". Do painted masks overstate or understate what a real mask costs it? "
        + ("; ".join(readings) if readings else "not tested")
        + f" (Holm over this attacker's {len(rm['comparisons'])} comparisons on the set, "
        f"alpha {rm['alpha']:g}; intervals over {rm['unit']})."
    )


def _balanced(m: Mapping[str, Any] | None) -> str:
    """Balanced accuracy's estimate, in %."""
    v = _interval(m, "balanced_accuracy", 100.0)
    return "–" if v is None else f"{v[0]:.1f}%"


def _diff(attr: str, r: Mapping[str, Any]) -> str:
    if r["difference"] is None:
        return "not tested"
    scale, unit, d = (1.0, " years", 2) if attr == "age" else (100.0, " pt", 1)
    p = r["p_holm"]
    p_txt = "–" if p is None else (f"{p:.2g}" if p >= 0.001 else "< 0.001")
    return (
        f"{scale * r['difference']:+.{d}f}{unit} [{scale * r['low']:+.{d}f}, "
        f"{scale * r['high']:+.{d}f}], p_Holm {p_txt}"
    )


def comparison_rows(attacker: str, s: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for r in s["real_masks"]["comparisons"]:
        rows.append(
            [
                attacker,
                r["train"],
                r["attribute"],
                r["comparison"],
                f"{r['n']} {r['unit']}",
                _diff(r["attribute"], r),
                r["verdict"],
            ]
        )
    return rows


def version_rows(attacker: str, s: Mapping[str, Any]) -> list[list[Any]]:
    """Each version's score per model and attribute, with balanced accuracy and each class's
    recall (the set's classes may be very unbalanced)."""
    rm = s["real_masks"]
    out = []
    for r in s["results"]:
        for attr in rm["attributes"]:
            m = r["ensemble"].get(attr)
            if not m:
                continue
            bal = recall = "–"
            if attr != "age":
                bal = _fmt(attr, _interval(m, "balanced_accuracy", 100.0))
                recall = ", ".join(
                    f"{k} {100 * v:.0f}%"
                    for k, v in m.get("per_class_recall", {}).items()
                    if v is not None
                )
            out.append(
                [
                    attacker,
                    r["train"],
                    r["version"],
                    attr,
                    m.get("n", "–"),
                    _fmt(attr, _value(m, attr)),
                    bal,
                    recall,
                ]
            )
    return out


def figure_path(plots: str | Path, name: str) -> Path:
    """Where compare draws a set's figure: ``<plots>/real_masks/real_masks_<set>.png`` (a folder
    of its own, so the HTML report's list of compare's figures does not show it twice)."""
    return Path(plots) / "real_masks" / f"real_masks_{name}.png"


def rejects_path(plots: str | Path, name: str) -> Path:
    """Where compare draws a set's photos that align or mask could not use, with their reasons."""
    return Path(plots) / "real_masks" / f"rejects_{name}.png"


def model_label(attacker: str, train: str) -> str:
    """A model, for the figure: 'recognizer trained on masked faces'; the one trained on
    ``unmasked`` faces with a second line, '(never saw a mask)'."""
    never = "\n(never saw a mask)" if train == NONE else ""
    return f"{attacker} trained on {train} faces{never}"


def figure_rows(
    name: str, statistics: Mapping[str, Any]
) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The figure's rows, top to bottom: (attacker, training set, the set's statistics for the
    attacker) for each attacker (:func:`attacker_sets`) and each model it scored on the set, the
    one that never saw a mask (trained on ``unmasked``) first."""
    return [
        (attacker, train, s)
        for attacker, s in attacker_sets(statistics, name)
        for train in sorted({r["train"] for r in s["results"]}, key=lambda t: (t != NONE, t))
    ]


def figure(name: str, statistics: Mapping[str, Any]) -> Any:
    """A set's figure (:class:`matplotlib.figure.Figure`): a row per model
    (:func:`figure_rows`), a panel per attribute, each version's score (real mask red, no mask
    blue, painted masks orange) with its 95% interval and the set's chance level dashed; the
    panels of an attribute share their scale, so the models compare at a glance."""
    from matplotlib.figure import Figure

    rows = figure_rows(name, statistics)
    attrs = rows[0][2]["real_masks"]["attributes"]
    versions = {
        attacker: [NONE, WORN, *sorted({r["version"] for r in s["results"]} - {NONE, WORN})]
        for attacker, _, s in rows
    }
    height = sum(0.45 * len(versions[attacker]) + 1.0 for attacker, _, _ in rows)
    fig = Figure(figsize=(4.6 * len(attrs), height + 0.8))
    axes = fig.subplots(len(rows), len(attrs), sharex="col", squeeze=False)
    for j, attr in enumerate(attrs):
        bounds: list[float] = []
        for i, (attacker, train, s) in enumerate(rows):
            ax, vs = axes[i][j], versions[attacker]
            for y, version in enumerate(vs):
                v = _value(_version_metric(s, version, train, attr), attr)
                if v is None:
                    continue
                colour = {WORN: "tab:red", NONE: "tab:blue"}.get(version, "tab:orange")
                ax.errorbar(
                    v[0], y, xerr=[[v[0] - v[1]], [v[2] - v[0]]], fmt="o", color=colour, capsize=3
                )
                ax.annotate(
                    f"{v[0]:.{2 if attr == 'age' else 1}f}",
                    (v[2], y),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                    color=colour,
                )
                bounds += [v[1], v[2]]
            ch = s["real_masks"]["chance"][attr]
            level = ch["mae"] if attr == "age" else 100 * ch["accuracy"]
            ax.axvline(level, color="grey", ls="--", lw=1)
            ax.text(level, -0.5, "chance ", color="grey", fontsize=8, ha="right", va="top")
            bounds.append(level)
            labels = [
                "no mask" if v == NONE else "real mask" if v == WORN else f"painted: {v}"
                for v in vs
            ]
            ax.set_yticks(range(len(vs)), labels if j == 0 else [""] * len(vs))
            ax.set_ylim(len(vs) - 0.4, -0.6)
            ax.set_title(f"{attr}: {model_label(attacker, train)}", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
        if attr == "age":
            axes[0][j].set_xlim(0, max(bounds) * 1.12)
        else:
            axes[0][j].set_xlim(max(0.0, min(bounds) - 8), 100)
        axes[-1][j].set_xlabel(f"{attr} MAE, years" if attr == "age" else f"{attr} accuracy, %")
    fig.suptitle(
        f"{name}: real masks against painted and none, per model (95% intervals; dashed: chance)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def figure_png(name: str, statistics: Mapping[str, Any], path: str | Path) -> Path:
    """Write :func:`figure` to ``path`` (PNG); returns the path."""
    save_figure(figure(name, statistics), path, dpi=110)
    return Path(path)


def section(statistics: Mapping[str, Any], figures: Mapping[str, str | Path] | None = None) -> str:
    """The HTML section ('' without a set with real masks): per set, the sentence for each
    attacker, the figure (``figures``: set -> its PNG, :func:`figure_path`), each version's
    scores and the tests."""
    names = sets_with_real_masks(statistics)
    if not names:
        return ""
    parts = [
        '<h2 id="real-masks">Real masks</h2><p>Photos of the same people with and without a mask '
        "they wear: the photos with a real mask are scored as they are (never painted over), the "
        "photos without one as they are (no mask) and with each painted mask set. Seed ensemble, "
        "95% bootstrap intervals; tests over persons where the set names them (each person's "
        "mean), Holm over each attacker's comparisons on the set; chance: the set's own majority "
        "class.</p>"
    ]
    for name in names:
        pairs = attacker_sets(statistics, name)
        parts.append(f"<h3>{html.escape(name)}</h3>")
        for attacker, s in pairs:
            parts.append(f"<p><b>{html.escape(sentence(name, s, attacker))}</b></p>")
        if figures and name in figures and Path(figures[name]).is_file():
            parts.append(img(Path(figures[name])))  # its caption: report.captions
            rejected = rejects_path(Path(figures[name]).parents[1], name)
            if rejected.is_file():
                parts.append(img(rejected))
        rows = [row for attacker, s in pairs for row in version_rows(attacker, s)]
        parts.append(
            table(
                rows,
                [
                    "attacker",
                    "trained on",
                    "version",
                    "attribute",
                    "n",
                    "score [95% CI]",
                    "balanced acc. [95% CI]",
                    "recall per class",
                ],
            )
        )
        rows = [row for attacker, s in pairs for row in comparison_rows(attacker, s)]
        parts.append(
            table(
                rows,
                [
                    "attacker",
                    "trained on",
                    "attribute",
                    "comparison",
                    "units",
                    "difference [95% CI], p_Holm",
                    "verdict",
                ],
            )
        )
    return "".join(parts)


def metrics_summary(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """``results/metrics.json``'s ``real_masks``: per set and attacker, each comparison's
    difference and Holm p, and the sentence."""
    out: dict[str, Any] = {}
    for name in sets_with_real_masks(statistics):
        for attacker, s in attacker_sets(statistics, name):
            block = out.setdefault(name, {}).setdefault(attacker, {})
            for r in s["real_masks"]["comparisons"]:
                key = f"{r['train']}.{r['attribute']}.{r['a']}_minus_{r['b']}"
                block[key] = {"difference": r["difference"], "p_holm": r["p_holm"]}
            block["answer"] = sentence(name, s, attacker)
    return out


def landing(statistics: Mapping[str, Any]) -> str:
    """The sentences of every set and attacker, as HTML paragraphs (the landing page of
    Snakemake's report)."""
    return "".join(
        f"<p>{html.escape(sentence(name, s, attacker))}</p>"
        for name in sets_with_real_masks(statistics)
        for attacker, s in attacker_sets(statistics, name)
    )
