"""One self-contained HTML report of an evaluation: the answer first, then the evidence.

No CDN, no external file: plots are embedded as base64 PNGs, styles are inline. The first
paragraph states the answer in one sentence with its numbers and p-values; a red banner says when
the figures come from the demo data set.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import yaml

ALPHA = 0.05
_ATTR_TEXT = {"sex": "sex accuracy", "race": "race accuracy", "age": "age MAE"}
_TEST_TEXT = {"mcnemar_exact": "McNemar", "wilcoxon_signed_rank": "Wilcoxon"}


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _fmt_value(attr: str, v: float) -> str:
    return f"{v:.2f} years" if attr == "age" else f"{100 * v:.1f}%"


def _join(words: list[str], last: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def answer_sentence(statistics: dict[str, Any], alpha: float = ALPHA) -> str:
    """'Masks protect X and Y (...), not Z (...)' for the masked->masked vs baseline comparison
    (or the first comparison there is)."""
    comps = statistics.get("comparisons", {})
    if not comps:
        return "Only one condition was evaluated, so there is no paired comparison to report."
    name = next((k for k in comps if k.startswith("masked_vs_")), next(iter(comps)))
    cmp = comps[name]
    protected, not_protected, parts = [], [], []
    for attr in ("sex", "race", "age"):
        c = cmp[attr]
        p = c["test"]["p_value"]
        worse = c["difference"] > 0 if attr == "age" else c["difference"] < 0
        (protected if worse and p < alpha else not_protected).append(attr)
        parts.append(
            f"{_ATTR_TEXT[attr]} {_fmt_value(attr, c['a'])} -> {_fmt_value(attr, c['b'])} "
            f"({_TEST_TEXT.get(c['test']['name'], c['test']['name'])} p = {_fmt_p(p)})"
        )
    cond, base = name.split("_vs_")
    n = cmp["sex"]["n"]
    verdict = (
        f"a mask protects {_join(protected)} significantly"
        if protected
        else "a mask protects no attribute significantly"
    )
    if protected and not_protected:
        verdict += f", but not {_join(not_protected, 'or')}"
    return (
        f"On the same {n:,} test faces, going from {base} to {cond}: {'; '.join(parts)}. "
        f"At alpha = {alpha}, {verdict}."
    )


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.stem)}</figcaption></figure>'


def identity_section(data_report: dict[str, Any] | None, sheet: str | Path | None = None) -> str:
    """Identities (``split.group_by``): the identity groups, their sizes, how many test faces
    have their identity in train under each split, and the contact sheet near the threshold."""
    info = (data_report or {}).get("identity") or {}
    if info.get("group_by") != "identity":
        return (
            "<h2>Identities</h2><p>The split keeps byte and near copies of a photo on one side "
            "(<code>split.group_by: duplicates</code>), not every photo of one person: a test "
            "face's owner may also be in train. Run with <code>split.group_by: identity</code> "
            "(<code>--configfile presets/identity.yaml</code>) to group faces by identity and "
            "measure that leakage.</p>"
        )
    ids, dup, own = (
        info["identities"],
        info["leakage_duplicates_split"],
        info["leakage_identity_split"],
    )

    def share(leak: dict[str, Any]) -> str:
        s = leak["share"]
        return f"{leak['test_faces_with_identity_in_train']:,} of {leak['test_faces']:,}" + (
            f" ({100 * s:.1f}%)" if s is not None else ""
        )

    sizes = _table(
        [[k, v["groups"], v["faces"]] for k, v in ids["by_size"].items()],
        ["faces per identity", "identities", "faces"],
    )
    leak = _table(
        [
            ["duplicates only (split.group_by: duplicates)", share(dup)],
            ["identities (this run's split)", share(own)],
        ],
        ["split keeping together", "test faces whose identity is also in train"],
    )
    sweep = _table(
        [
            [
                t,
                v["identities"],
                v["faces_in_shared_identities"],
                v["largest"],
                f"{v['largest_share'] or 0:.1%}",
            ]
            for t, v in info.get("by_threshold", {}).items()
        ],
        ["threshold", "identities", "faces sharing one", "largest", "largest share"],
    )
    picture = _img(Path(sheet)) if sheet and Path(sheet).is_file() else ""
    return (
        "<h2>Identities</h2>"
        f"<p>This run's split keeps each identity on one side: faces whose dlib descriptors lie "
        f"closer than {info['threshold']} are one person (connected components, merged with "
        f"duplicate groups). {info['faces_described']:,} faces form {ids['groups']:,} "
        f"identities; {ids['groups_with_several_faces']:,} of them have several faces "
        f"({ids['faces_in_such_groups']:,} faces); the largest have {ids['largest'][:5]} faces "
        f"({100 * (ids['largest_share'] or 0):.1f}% of faces in the largest). "
        f"{info['faces_without_descriptor']} faces had no descriptor (split rejects).</p>"
        f"{sizes}{leak}<p>Linked pairs chain (connected components): how the identities grow "
        f"with the threshold.</p>{sweep}<p>The sheet shows the largest groups and the pairs just "
        "under and just over the threshold: judge there whether the threshold joins one person "
        f"and separates two.</p>{picture}"
    )


def render(
    statistics: dict[str, Any],
    params: dict[str, Any],
    plot_dirs: str | Path | list[str | Path],
    contact_sheets: list[str | Path] = (),
    data_report: dict[str, Any] | None = None,
    identity_sheet: str | Path | None = None,
) -> str:
    """The self-contained HTML page; ``contact_sheets`` (the mask stage's PNGs) show the masks;
    ``data_report`` (the split's) and ``identity_sheet`` give the identities section."""
    demo = bool(statistics.get("demo"))
    conds = statistics["conditions"]
    rows = []
    for name, m in conds.items():
        rows.append(
            [
                name,
                f"{100 * m['sex']['accuracy']:.1f} [{100 * m['sex']['accuracy_low']:.1f}, {100 * m['sex']['accuracy_high']:.1f}]",
                f"{100 * m['sex']['balanced_accuracy']:.1f}",
                f"{100 * m['race']['accuracy']:.1f} [{100 * m['race']['accuracy_low']:.1f}, {100 * m['race']['accuracy_high']:.1f}]",
                f"{100 * m['race']['balanced_accuracy']:.1f}",
                f"{m['age']['mae']:.2f} [{m['age']['mae_low']:.2f}, {m['age']['mae_high']:.2f}]",
                f"{m['age']['rmse']:.2f}",
                m["n_test"],
            ]
        )
    metrics_table = _table(
        rows,
        [
            "condition",
            "sex acc. % [95% CI]",
            "sex bal. %",
            "race acc. % [95% CI]",
            "race bal. %",
            "age MAE [95% CI]",
            "age RMSE",
            "n",
        ],
    )
    crow = []
    for cname, cmp in statistics.get("comparisons", {}).items():
        for attr in ("sex", "race", "age"):
            c = cmp[attr]
            unit = 1 if attr == "age" else 100
            crow.append(
                [
                    cname,
                    attr,
                    c["metric"],
                    f"{unit * c['a']:.2f}",
                    f"{unit * c['b']:.2f}",
                    f"{unit * c['difference']:+.2f} [{unit * c['ci']['low']:+.2f}, {unit * c['ci']['high']:+.2f}]",
                    c["test"]["name"],
                    _fmt_p(c["test"]["p_value"]),
                ]
            )
    cmp_table = _table(
        crow,
        [
            "comparison",
            "attribute",
            "metric",
            "baseline",
            "condition",
            "difference [95% CI]",
            "test",
            "p",
        ],
    )
    recall_rows = []
    from .labels import RACES

    for name, m in conds.items():
        rec = m["race"]["per_class_recall"]
        recall_rows.append([name, *[("-" if r is None else f"{100 * r:.1f}") for r in rec]])
    recall_table = _table(recall_rows, ["condition", *RACES])
    acc = statistics.get("accounting", {})
    acc_rows = [[k, v] for k, v in acc.get("rejected_by_stage_and_reason", {}).items()]
    acc_table = _table(
        [
            ["inputs", acc.get("inputs")],
            ["in split", acc.get("in_split")],
            ["rejected", acc.get("rejected")],
            *acc_rows,
        ],
        ["files", "count"],
    )
    mask_rows = [
        [
            cond,
            mtype,
            r["n"],
            f"{100 * r['sex_accuracy']:.1f}",
            f"{100 * r['race_accuracy']:.1f}",
            f"{r['age_mae']:.2f}",
        ]
        for cond, types in statistics.get("by_mask_type", {}).items()
        for mtype, r in types.items()
    ]
    mask_table = _table(
        mask_rows, ["condition", "mask type", "n", "sex acc. %", "race acc. %", "age MAE"]
    )
    split_table = _table(
        [[k, v] for k, v in statistics.get("split_counts", {}).items()], ["part", "images"]
    )
    if isinstance(plot_dirs, str | Path):
        plot_dirs = [plot_dirs]
    plots = "".join(_img(p) for d in plot_dirs for p in sorted(Path(d).glob("*.png")))
    sheets = "".join(_img(Path(p)) for p in contact_sheets if Path(p).is_file())
    masks_section = (
        "<h2>The masks</h2><p>Faces of the test run's data with every mask type drawn from their "
        "landmarks (the configured types are starred).</p>" + sheets
        if sheets
        else ""
    )
    alpha = float(statistics.get("alpha", ALPHA))
    banner = (
        '<div class="demo">DEMO DATA: synthetic faces with labels tied to painted cues, not UTKFace. '
        "These figures test the machinery, not faces.</div>"
        if demo
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>maskprivacy report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
.demo {{ background: #fde8e8; color: #b00; border: 2px solid #b00; padding: .6em; font-weight: bold; margin: 1em 0; }}
.answer {{ font-size: 1.2em; background: #eef5ff; padding: .8em; border-left: 4px solid #36c; }}
table {{ border-collapse: collapse; margin: .8em 0; font-size: .9em; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: .5em; }} img {{ max-width: 100%; }}
pre {{ background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }}
</style></head><body>
<h1>Does a face mask protect sex, race and age from a deep network?</h1>
{banner}
<p class="answer">{html.escape(answer_sentence(statistics, alpha))}</p>
<h2>Metrics per condition</h2>{metrics_table}
<h2>Paired comparisons with the baseline ({html.escape(str(statistics.get("baseline")))})</h2>{cmp_table}
<p>McNemar's exact test on per-image correctness (sex, race); Wilcoxon signed-rank test on per-image
absolute age errors; percentile bootstrap intervals over test images.</p>
<h2>Race recall per class (%)</h2>{recall_table}
<h2>By mask type</h2>{mask_table}
<h2>Data</h2>{split_table}{acc_table}
{identity_section(data_report, identity_sheet)}
{masks_section}
<h2>Plots</h2>{plots}
<h2>Parameters</h2><pre>{html.escape(yaml.safe_dump(params, sort_keys=False))}</pre>
</body></html>
"""
