"""The mask study: every (training set, test set) as a matrix, read from the report's statistics.

``compare`` scores every condition of ``evaluate.conditions`` on the same test faces and pairs
each with the baseline (``compare.baseline``, the model trained and tested on ``unmasked`` faces)
over faces and across seeds, with Holm-Bonferroni over every test of the report
(:mod:`maskprivacy.analysis.compare`, :mod:`maskprivacy.analysis.stats`). This module arranges
those numbers by training set (rows) and test set (columns), among ``unmasked`` and the sets of
``mask.sets`` (:mod:`maskprivacy.masks.sets`):

- per cell: sex and race accuracy and age MAE, the mean over the seeds' models with its 95%
  bootstrap interval over test faces, and the seed ensemble's;
- per cell but the baseline: the paired difference against the baseline on the same faces, its
  interval, the Holm-adjusted p-values and the verdict of :func:`maskprivacy.analysis.answer.
  verdicts` (``protects``, ``significant_but_readable``, ``helps_the_attacker``,
  ``not_significant``: "protects" only where the change is significant, towards privacy and the
  attribute is no longer read far above chance);
- one sentence per mask set (:func:`sentences`), about the model trained and tested on it (the
  attacker who knows the mask), with what a model trained without masks reads from its faces.

:func:`matrix_metrics` gives the matrix flat for ``results/metrics.json`` (``dvc metrics diff``
shows ``study.<train>.<test>.sex_accuracy`` and so on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from maskprivacy.analysis import answer

ATTRS = ("sex", "race", "age")
METRIC = {"sex": "accuracy", "race": "accuracy", "age": "mae"}


def _cell_metrics(cond: Mapping[str, Any]) -> dict[str, Any]:
    """Seed mean (with its interval) and seed ensemble of one condition, per attribute."""
    out: dict[str, Any] = {}
    for attr in ATTRS:
        m, e = cond["seed_mean"][attr], cond["ensemble"][attr]
        out[attr] = {
            "metric": METRIC[attr],
            "estimate": m["estimate"],
            "low": m["low"],
            "high": m["high"],
            "ensemble": e[METRIC[attr]],
        }
    return out


def study_matrix(
    statistics: Mapping[str, Any],
    conditions: Sequence[Mapping[str, str]],
    data_sets: Sequence[str],
) -> dict[str, Any]:
    """The train-set x test-set matrix of the conditions in ``statistics`` (compare's).

    ``conditions`` are ``evaluate.conditions``, ``data_sets`` the row and column order
    (``unmasked``, then the mask sets: :func:`maskprivacy.masks.sets.data_sets`). A cell no
    condition fills is absent. Returns ``{"data_sets", "baseline": {"condition", "train",
    "test"}, "n_test", "n_seeds", "cells": {train: {test: cell}}}``; a cell holds its
    ``condition``, ``metrics`` and, but for the baseline, ``difference`` (per attribute: the
    difference, its interval, the Holm-adjusted p-values and the verdict).
    """
    defs = {c["name"]: c for c in conditions}
    base = statistics["baseline"]
    if base not in defs:
        raise ValueError(f"study: the baseline {base!r} is not one of evaluate.conditions")
    known = set(data_sets)
    cells: dict[str, dict[str, Any]] = {}
    for name, cond in statistics["conditions"].items():
        d = defs[name]
        if d["train"] not in known or d["test"] not in known:
            raise ValueError(f"study: condition {name!r} uses a set outside {list(data_sets)}")
        if d["test"] in cells.get(d["train"], {}):
            other = cells[d["train"]][d["test"]]["condition"]
            raise ValueError(
                f"study: conditions {other!r} and {name!r} both train on {d['train']!r} "
                f"and test on {d['test']!r}"
            )
        cell: dict[str, Any] = {"condition": name, "metrics": _cell_metrics(cond)}
        if name != base:
            cell["difference"] = _difference(statistics, name)
        cells.setdefault(d["train"], {})[d["test"]] = cell
    order = {s: i for i, s in enumerate(data_sets)}
    return {
        "data_sets": list(data_sets),
        "baseline": {"condition": base, "train": defs[base]["train"], "test": defs[base]["test"]},
        "n_test": int(statistics["conditions"][base]["n_test"]),
        "n_seeds": len(statistics["seeds"]),
        "cells": {
            tr: dict(sorted(row.items(), key=lambda kv: order[kv[0]]))
            for tr, row in sorted(cells.items(), key=lambda kv: order[kv[0]])
        },
    }


def _difference(statistics: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The comparison of condition ``name`` with the baseline, with answer.verdicts' verdict."""
    key = f"{name}_vs_{statistics['baseline']}"
    cmp = statistics["comparisons"][key]
    one = {  # the statistics of this one comparison: answer.verdicts judges it
        "comparisons": {key: cmp},
        "conditions": {name: statistics["conditions"][name]},
        "chance": statistics["chance"],
        "alpha": statistics["alpha"],
        "multiple_testing": statistics.get("multiple_testing"),
    }
    v = answer.verdicts(one)["attributes"]
    return {
        attr: {
            "difference": c["difference"],
            "low": c["ci"]["low"],
            "high": c["ci"]["high"],
            "p_images_holm": v[attr]["p_images_holm"],
            "p_seeds_holm": v[attr]["p_seeds_holm"],
            "status": v[attr]["status"],
        }
        for attr, c in cmp.items()
    }


def _value(attr: str, m: Mapping[str, Any]) -> str:
    if attr == "age":
        return f"age MAE {m['estimate']:.2f} years"
    return f"{attr} accuracy {100 * m['estimate']:.1f}%"


def _change(attr: str, d: Mapping[str, Any]) -> str:
    scale, unit, digits = (1.0, "years", 2) if attr == "age" else (100.0, "points", 1)
    text = f"{scale * d['difference']:+.{digits}f} {unit}"
    if d["low"] is not None and d["high"] is not None:
        text += f", 95% CI {scale * d['low']:+.{digits}f} to {scale * d['high']:+.{digits}f}"
    return f"{text}; p = {answer.fmt_p(d['p_images_holm'])}"


def _verdict(diff: Mapping[str, Any]) -> str:
    """The verdict in words, by status (the rules of :mod:`maskprivacy.analysis.answer`)."""
    by = answer.by_status(diff)
    parts = []
    if w := by.get("protects"):
        they = "it is" if len(w) == 1 else "they are"
        parts.append(f"it protects {answer.join_words(w)} ({they} no longer read far above chance)")
    if w := by.get("significant_but_readable"):
        them = "it" if len(w) == 1 else "them"
        parts.append(
            f"its effect on {answer.join_words(w)} is significant but leaves {them} readable far above chance"
        )
    if w := by.get("helps_the_attacker"):
        parts.append(f"it makes {answer.join_words(w)} significantly easier to read")
    if w := by.get("not_significant"):
        parts.append(f"the change in {answer.join_words(w, 'or')} is not significant")
    return "; ".join(parts)


def _coverage_text(cov: Mapping[str, Any]) -> str:
    covered = [g.replace("_", " ") for g, v in cov["groups"].items() if v >= 0.5]
    return (
        f"It leaves {100 * cov['face_visible']:.0f}% of the face visible and covers "
        f"{answer.join_words(covered) if covered else 'no landmark group'} (landmarks under the mask on "
        "most faces)."
    )


def sentences(
    matrix: Mapping[str, Any],
    sets: Sequence[str],
    coverage: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """One sentence per mask set: the model trained and tested on it against the baseline, each
    attribute's value and paired change (Holm-adjusted), the verdict (never "protects" where the
    attribute is still read far above chance), what a model trained without masks reads from
    its faces, and with ``coverage`` (:func:`maskprivacy.masks.sets.set_coverage`) what the mask
    leaves visible. A set no condition tests on (or whose cell is the baseline) gets none."""
    cells, base = matrix["cells"], matrix["baseline"]
    out: dict[str, str] = {}
    for s in sets:
        own = cells.get(s, {}).get(s)
        naive = cells.get(base["train"], {}).get(s)
        cell = own or naive
        if cell is None or "difference" not in cell:  # untested, or the baseline itself
            continue
        who = f"models trained on {s} faces" if own else f"models trained on {base['train']} faces"
        values = "; ".join(
            f"{_value(a, cell['metrics'][a])} ({_change(a, cell['difference'][a])})" for a in ATTRS
        )
        text = (
            f"{s}: on {matrix['n_test']:,} test faces with {s} masks, {who} reach {values}, "
            f"against the baseline ({base['condition']}, Holm-adjusted p over faces); "
            f"{_verdict(cell['difference'])}."
        )
        if own and naive:
            text += (
                " A model trained without masks reaches "
                + ", ".join(_value(a, naive["metrics"][a]) for a in ATTRS)
                + " on them."
            )
        if coverage and s in coverage:
            text += " " + _coverage_text(coverage[s])
        out[s] = text
    return out


def matrix_metrics(matrix: Mapping[str, Any]) -> dict[str, Any]:
    """The matrix flat for ``results/metrics.json``: ``{train: {test: {"sex_accuracy",
    "race_accuracy", "age_mae", and but for the baseline "<metric>_diff"}}}`` (seed means)."""
    out: dict[str, Any] = {}
    for train, row in matrix["cells"].items():
        for test, cell in row.items():
            flat: dict[str, Any] = {}
            for attr in ATTRS:
                key = f"{attr}_{METRIC[attr]}"
                flat[key] = cell["metrics"][attr]["estimate"]
                if "difference" in cell:
                    flat[f"{key}_diff"] = cell["difference"][attr]["difference"]
            out.setdefault(train, {})[test] = flat
    return out
