"""The paper's table beside ours: Seneviratne et al. (AJCAI 2021) and our runs, row by row.

- :data:`PAPER`: the authors' published figures (masked ResNet-50s on UTKFace, their uniform split).
- :func:`model_selection`: which epoch each ``train`` job kept and on what validation score (the
  keys ``select``, ``kept_epoch``, ``kept_on``, ``kept_score`` of
  ``results/train/<set>/report.json``; a report without them kept the last epoch).
- :func:`protocol` and :func:`rows`: what one run did, and its conditions as table rows (sex,
  race, age MAE and RMSE, 7-group age accuracy, each with its 95% interval).
- :func:`section`: what the report's "Paper protocol" section says, as data (its HTML is
  :func:`maskprivacy.report.html.paper_protocol_section`).
- ``python -m maskprivacy.analysis.paper_protocol table LABEL=results/compare/statistics.json ...``: the
  README's table from the ``statistics.json`` of several runs (one per preset); a run whose file
  does not exist yet is written "pending GPU run", never as numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Seneviratne et al. (2021), masked faces, one ResNet-50 per attribute: sex and race accuracy on
# their uniform split (94.01% and 82.20% on their random split), age MAE and RMSE as published.
PAPER = {
    "label": "paper: Seneviratne et al. 2021 (their data; sex, race on their uniform split)",
    "sex": 0.9465,
    "race": 0.8312,
    "age_mae": 6.21,
    "age_rmse": 8.33,
}
PENDING = "pending GPU run"
HEADER = [
    "run",
    "condition",
    "sex acc. % [95% CI]",
    "race acc. % [95% CI]",
    "age MAE [95% CI]",
    "age RMSE [95% CI]",
    "7-group age acc. % [95% CI]",
    "n",
]
TEST_HEADER = [
    "run",
    "comparison",
    "sex diff. pt [95% CI], paired p",
    "race diff. pt [95% CI], paired p",
    "age MAE diff. years [95% CI], paired p",
]
# What still differs between the paper's data and ours, whatever the preset.
DATA_DIFFERENCES = (
    "Their faces come from UTKFace's in-the-wild release (their scripts read a folder "
    "UTKface_inthewild/cropped), each masked where dlib found it, at the photo's own scale, "
    "position and roll; ours are the aligned and cropped release, re-aligned by the eye centres "
    "to one frame (align.eye_y, align.eye_distance) before the mask is drawn.",
    "Their polygon is drawn with a hard edge on integer landmarks (OpenCV fillPoly); ours is the "
    "same polygon on sub-pixel landmarks with an anti-aliased edge.",
    "Their split orders images within an age by directory listing and races by the order they "
    "were met; ours by file name and race code (same runs of 10, same 8 / 1 / 1 cut).",
    "Their label files were taken as named; ours fix or drop the known label defects "
    "(download.label_defects) and, except in presets/paper_keepdups.yaml, drop copies of one "
    "photo (download.duplicates, download.near_duplicates).",
    "Their exact training recipe (optimiser, schedule, augmentation, epochs, initial weights) is "
    "not ours: ours is train.* of the preset.",
)


# --------------------------------------------------------------------------------------------
# What one run did


def model_selection(reports: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per training set: ``select``, ``kept_epoch`` (1-based), ``kept_on``, ``kept_score``.

    A report without ``select`` comes from a train stage that always kept the last epoch: it
    gets ``select: "last"`` and, where the report has it, the last epoch's number.
    """
    out = {}
    for name, rep in sorted(reports.items()):
        select = rep.get("select")
        if select is None:
            epoch = rep.get("epoch")
            out[name] = {
                "select": "last",
                "kept_epoch": int(epoch) if isinstance(epoch, int | float) else None,
                "kept_on": None,
                "kept_score": None,
            }
        else:
            score = rep.get("kept_score")
            out[name] = {
                "select": str(select),
                "kept_epoch": rep.get("kept_epoch"),
                "kept_on": rep.get("kept_on"),
                "kept_score": float(score) if score is not None else None,
            }
            if rep.get("kept_by_task"):  # the paper's protocol: each network on its own score
                out[name]["kept_by_task"] = {
                    t: {"epoch": k.get("epoch"), "on": k.get("on"), "score": k.get("score")}
                    for t, k in rep["kept_by_task"].items()
                }
    return out


def load_model_selection(paths: Mapping[str, str | Path]) -> dict[str, dict[str, Any]]:
    """:func:`model_selection` of the train reports at ``paths`` (training set -> report.json)."""
    return model_selection({n: json.loads(Path(p).read_text()) for n, p in paths.items()})


def selection_text(sel: Mapping[str, Any]) -> str:
    """'best_val: epoch 31 of the run, on val_score = 0.874' or 'last epoch (12)'."""
    epoch = sel.get("kept_epoch")
    if sel.get("select", "last") == "last":
        return "last epoch" + (f" ({epoch})" if epoch is not None else "")
    if epoch is None:
        return f"{sel['select']}: epoch not recorded"
    by_task = sel.get("kept_by_task")
    if by_task:  # "best_val: sex epoch 31 (val_sex_acc = 0.91), race epoch 28 (...), ..."
        return f"{sel['select']}: " + ", ".join(
            f"{t} epoch {k['epoch']} ({k['on']}"
            + (f" = {k['score']:.4g})" if k.get("score") is not None else ")")
            for t, k in by_task.items()
        )
    score = sel.get("kept_score")
    on = sel.get("kept_on") or "the validation score"
    return f"{sel['select']}: epoch {epoch}, on {on}" + (
        f" = {score:.4g}" if score is not None else ""
    )


def protocol(params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a run that the paper's protocol fixes, read from its parameters."""
    d, m, s, t = (params.get(k) or {} for k in ("download", "mask", "split", "train"))
    sets = {
        name: ", ".join(
            str(k) if len(types) == 1 else f"{k} (weight {v:g})" for k, v in types.items()
        )
        for name, types in (m.get("sets") or {}).items()
    }
    return {
        "data": f"{d.get('source')} ({d.get('variant', 'aligned')})",
        "mask types": next(iter(sets.values()))
        if len(sets) == 1
        else "; ".join(f"{name}: {types}" for name, types in sets.items()),
        "split": s.get("method", "stratified"),
        "duplicates / near duplicates": f"{d.get('duplicates')} / {d.get('near_duplicates')}",
        "train protocol": t.get("protocol", "multitask"),
        "model selection": t.get("select", "last"),
        "network": f"{t.get('arch')} at {t.get('image_size')} px, {t.get('epochs')} epochs, "
        f"weights: {t.get('weights') or 'from scratch'}",
    }


def is_paper_protocol(params: Mapping[str, Any]) -> bool:
    """Does the run follow the paper's protocol (the polygon alone in every mask set, uniform
    split, one model per attribute, best on validation)?"""
    sets = (params.get("mask") or {}).get("sets")
    only_paper = (
        isinstance(sets, Mapping)
        and bool(sets)
        and all(isinstance(t, Mapping) and list(t) == ["paper"] for t in sets.values())
    )
    t = params.get("train") or {}
    return (
        only_paper
        and (params.get("split") or {}).get("method") == "uniform"
        and t.get("protocol") == "paper"
        and t.get("select") == "best_val"
    )


# --------------------------------------------------------------------------------------------
# Rows


def pct_ci(m: Mapping[str, Any] | None, key: str = "accuracy") -> str:
    if not m or m.get(key) is None:
        return "-"
    if m.get(f"{key}_low") is None:
        return f"{100 * m[key]:.1f}"
    return f"{100 * m[key]:.1f} [{100 * m[f'{key}_low']:.1f}, {100 * m[f'{key}_high']:.1f}]"


def years_ci(m: Mapping[str, Any], key: str) -> str:
    if m.get(f"{key}_low") is None:
        return f"{m[key]:.2f}"
    return f"{m[key]:.2f} [{m[f'{key}_low']:.2f}, {m[f'{key}_high']:.2f}]"


def one_view(m: Mapping[str, Any]) -> Mapping[str, Any]:
    """A condition of compare's statistics as one set of metrics: the model itself with one seed;
    with several, the mean over seeds with the interval over faces of the seed-averaged score (the
    RMSE and 7-group accuracy as plain means over seeds)."""
    if "per_seed" not in m:
        return m
    seeds = [str(s) for s in m["seeds"]]
    if len(seeds) == 1:
        return m["per_seed"][seeds[0]]
    sm, mean = m["seed_mean"], m["mean"]

    def ci(attr: str, key: str) -> dict[str, Any]:
        e = sm[attr]
        return {key: e["estimate"], f"{key}_low": e["low"], f"{key}_high": e["high"]}

    return {
        "sex": ci("sex", "accuracy"),
        "race": ci("race", "accuracy"),
        "age": {**ci("age", "mae"), "rmse": mean["age"]["rmse"]},
        **({"age_group": dict(mean["age_group"])} if "age_group" in mean else {}),
        "n_test": m["n_test"],
        "n_seeds": len(seeds),
    }


def condition_row(label: str, name: str, m: Mapping[str, Any]) -> list[str]:
    """One condition of one run: sex, race, age MAE, RMSE, 7-group accuracy with 95% CIs."""
    m = one_view(m)
    n_seeds = m.get("n_seeds")
    return [
        label,
        name if not n_seeds else f"{name} (mean of {n_seeds} seeds)",
        pct_ci(m["sex"]),
        pct_ci(m["race"]),
        years_ci(m["age"], "mae"),
        years_ci(m["age"], "rmse"),
        pct_ci(m.get("age_group")) if m.get("age_group") else "- (no 7-group model)",
        f"{m['n_test']:,}",
    ]


def paper_row() -> list[str]:
    return [
        PAPER["label"],
        "masked",
        f"{100 * PAPER['sex']:.2f}",
        f"{100 * PAPER['race']:.2f}",
        f"{PAPER['age_mae']:.2f}",
        f"{PAPER['age_rmse']:.2f}",
        "-",
        "-",
    ]


def rows(label: str, statistics: Mapping[str, Any] | None, conditions=("unmasked", "masked")):
    """The rows of one run (``statistics`` of its compare stage); ``None``: a pending run."""
    if statistics is None:
        return [[label, c, PENDING, PENDING, PENDING, PENDING, PENDING, "-"] for c in conditions]
    conds = statistics["conditions"]
    return [condition_row(label, c, conds[c]) for c in conditions if c in conds]


def test_rows(label: str, statistics: Mapping[str, Any] | None) -> list[list[str]]:
    """Paired tests of every comparison of a run: differences [95% CI] and p-values."""
    if statistics is None:
        return [[label, "masked_vs_unmasked", PENDING, PENDING, PENDING]]
    out = []
    for name, cmp in statistics.get("comparisons", {}).items():
        cells = []
        for attr in ("sex", "race", "age"):
            c = cmp[attr]
            unit, fmt = (1, "+.2f") if attr == "age" else (100, "+.1f")
            p = c["test"]["p_value"]
            cells.append(
                f"{unit * c['difference']:{fmt}} [{unit * c['ci']['low']:{fmt}}, "
                f"{unit * c['ci']['high']:{fmt}}], p = {p:.2g}"
            )
        out.append([label, name, *cells])
    return out


def gap_to_paper(statistics: Mapping[str, Any], condition: str = "masked") -> dict[str, Any]:
    """Our masked figures minus the paper's, and whether each meets the issue's target (within
    one point of their sex and race accuracy, age MAE at or under theirs)."""
    m = statistics["conditions"].get(condition)
    if m is None:
        return {}
    m = one_view(m)
    sex = 100 * (m["sex"]["accuracy"] - PAPER["sex"])
    race = 100 * (m["race"]["accuracy"] - PAPER["race"])
    mae = m["age"]["mae"] - PAPER["age_mae"]
    return {
        "condition": condition,
        "sex_points": sex,
        "race_points": race,
        "age_mae_years": mae,
        "sex_within_1pt": sex >= -1,
        "race_within_1pt": race >= -1,
        "age_mae_at_or_under": mae <= 0,
    }


# --------------------------------------------------------------------------------------------
# The report's section and the README's table


def section(statistics: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """What the report's "Paper protocol" section says, as data (the HTML is
    :func:`maskprivacy.report.html.paper_protocol_section`): the paper's figures beside this
    run's (``figures``: header and rows), the paired tests (``tests``), the epoch each model kept
    (``kept``), how far this run is from the paper (``gap``), whether it follows the paper's
    protocol (``note``), the run's protocol (``protocol``) and what still differs
    (``differences``)."""
    proto = protocol(params)
    faithful = is_paper_protocol(params)
    label = "this run" + (" (paper protocol)" if faithful else f" ({proto['train protocol']})")
    conds = [c for c in ("unmasked", "masked") if c in statistics.get("conditions", {})]
    sel = statistics.get("model_selection") or {}
    gap = gap_to_paper(statistics)
    gap_text = (
        f"Masked, this run minus the paper: sex {gap['sex_points']:+.1f} pt, race "
        f"{gap['race_points']:+.1f} pt, age MAE {gap['age_mae_years']:+.2f} years. Target "
        "(within one point of their sex and race, MAE at or under theirs): "
        + ", ".join(
            f"{k} {'met' if gap[v] else 'not met'}"
            for k, v in (
                ("sex", "sex_within_1pt"),
                ("race", "race_within_1pt"),
                ("age", "age_mae_at_or_under"),
            )
        )
        + "."
        if gap
        else ""
    )
    note = (
        "This run follows the paper's protocol."
        if faithful
        else "This run does not follow the paper's protocol (presets/paper.yaml does): "
        "compare its figures with the paper's with care."
    )
    return {
        "note": note,
        "figures": (HEADER, [paper_row(), *rows(label, statistics, conds)]),
        "gap": gap_text,
        "tests": (TEST_HEADER, test_rows(label, statistics)),
        "kept": (
            ["training set", "kept"],
            [[n, selection_text(s)] for n, s in sel.items()]
            or [["(no train reports)", "last epoch"]],
        ),
        "protocol": (["setting", "this run"], [[k, v] for k, v in proto.items()]),
        "differences": list(DATA_DIFFERENCES),
    }


def markdown(body: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(lines)


def table(runs: Sequence[tuple[str, str | Path]]) -> str:
    """The README's table (markdown): the paper, then each run's unmasked and masked rows, then
    their paired tests; a run whose statistics file is missing is "pending GPU run"."""
    loaded = [
        (label, json.loads(Path(p).read_text()) if Path(p).is_file() else None) for label, p in runs
    ]
    body = [paper_row()]
    for label, st in loaded:
        body += rows(label, st)
    tests = [r for label, st in loaded for r in test_rows(label, st)]
    return markdown(body, HEADER) + "\n\n" + markdown(tests, TEST_HEADER) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m maskprivacy.analysis.paper_protocol")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="the README's table from runs' statistics.json")
    t.add_argument(
        "runs",
        nargs="+",
        metavar="LABEL=PATH",
        help="a run's label and its results/compare/statistics.json (missing: pending)",
    )
    args = ap.parse_args(argv)
    runs = []
    for item in args.runs:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            ap.error(f"expected LABEL=PATH, got {item!r}")
        runs.append((label, path))
    sys.stdout.write(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
