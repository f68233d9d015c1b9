"""One self-contained HTML report of an evaluation: the answer first, then the evidence.

No CDN, no external file: plots are embedded as base64 PNGs, styles are inline. The first
paragraph states the answer (:mod:`maskprivacy.analysis.answer`) with its effect sizes, intervals,
Holm-adjusted p-values and chance levels; then the metrics of every seed's model, their mean and
the seed ensemble, the comparisons over faces and across seeds, chance, and the method. A red
banner says when the figures come from the demo data set.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import yaml

from maskprivacy.analysis import answer, paper_protocol
from maskprivacy.analysis.answer import fmt_p as _fmt_p
from maskprivacy.report import external as external_report
from maskprivacy.report.markup import ci, img, table
from maskprivacy.report.study import matrix_table as study_table_html

ALPHA = 0.05


def paper_protocol_section(statistics: dict[str, Any], params: dict[str, Any]) -> str:
    """The report's "Paper protocol" section: the paper's figures beside this run's, the paired
    tests, the epoch each model kept, the run's protocol and what still differs
    (:func:`maskprivacy.analysis.paper_protocol.section`)."""
    s = paper_protocol.section(statistics, params)
    (fig_head, fig_rows), (test_head, test_rows) = s["figures"], s["tests"]
    diffs = "".join(f"<li>{html.escape(d)}</li>" for d in s["differences"])
    return (
        '<h2 id="paper-protocol">Paper protocol</h2>'
        f"<p>{html.escape(s['note'])} The paper reports masked faces only; the unmasked row is our "
        "own baseline under the same protocol.</p>"
        f"{table(fig_rows, fig_head)}<p>{html.escape(s['gap'])}</p>"
        f"<h3>Paired tests (same test faces)</h3>{table(test_rows, test_head)}"
        f"<h3>Model kept</h3>{table(s['kept'][1], s['kept'][0])}"
        f"<h3>Protocol of this run</h3>{table(s['protocol'][1], s['protocol'][0])}"
        f"<h3>What still differs from the paper's data</h3><ul>{diffs}</ul>"
    )


def _metric_ci(m: dict[str, Any], key: str, scale: float, digits: int) -> str:
    """``m[key]`` with its interval ``m[key_low]``, ``m[key_high]`` (one evaluate metrics block)."""
    return ci(m[key], m[f"{key}_low"], m[f"{key}_high"], scale, digits)


def _sd(v: float | None, scale: float, digits: int) -> str:
    return "" if v is None else f" ± {scale * v:.{digits}f}"


def _metrics_table(conds: dict[str, Any]) -> str:
    """Per condition: the mean over seeds (interval over test images, ± SD over seeds), the seed
    ensemble, then every seed's model."""
    rows = []
    for name, c in conds.items():
        sm, sd = c["seed_mean"], c["sd"]
        n_seeds = len(c["seeds"])
        rows.append(
            [
                name,
                f"mean of {n_seeds} seed{'s' if n_seeds > 1 else ''}",
                ci(sm["sex"]["estimate"], sm["sex"]["low"], sm["sex"]["high"], 100, 1)
                + _sd(sd["sex"]["accuracy"], 100, 1),
                f"{100 * c['mean']['sex']['balanced_accuracy']:.1f}",
                ci(sm["race"]["estimate"], sm["race"]["low"], sm["race"]["high"], 100, 1)
                + _sd(sd["race"]["accuracy"], 100, 1),
                f"{100 * c['mean']['race']['balanced_accuracy']:.1f}",
                ci(sm["age"]["estimate"], sm["age"]["low"], sm["age"]["high"], 1, 2)
                + _sd(sd["age"]["mae"], 1, 2),
                f"{c['mean']['age']['rmse']:.2f}",
                c["n_test"],
            ]
        )
        models = [("ensemble", c["ensemble"])] if n_seeds > 1 else []
        models += [(f"seed {s}", m) for s, m in c["per_seed"].items()]
        for label, m in models:
            rows.append(
                [
                    name,
                    label,
                    _metric_ci(m["sex"], "accuracy", 100, 1),
                    f"{100 * m['sex']['balanced_accuracy']:.1f}",
                    _metric_ci(m["race"], "accuracy", 100, 1),
                    f"{100 * m['race']['balanced_accuracy']:.1f}",
                    _metric_ci(m["age"], "mae", 1, 2),
                    f"{m['age']['rmse']:.2f}",
                    m["n_test"],
                ]
            )
    return table(
        rows,
        [
            "condition",
            "model",
            "sex acc. % [95% CI] ± SD",
            "sex bal. %",
            "race acc. % [95% CI] ± SD",
            "race bal. %",
            "age MAE [95% CI] ± SD",
            "age RMSE",
            "n",
        ],
    )


def _comparison_tables(statistics: dict[str, Any]) -> tuple[str, str]:
    """Every comparison: the difference over faces and across seeds with both tests (raw and
    Holm-adjusted p), the ensemble's difference; and each seed's difference."""
    rows, seed_rows = [], []
    seeds = statistics.get("seeds") or []
    for cname, cmp in statistics.get("comparisons", {}).items():
        for attr, c in cmp.items():
            k = 1 if attr == "age" else 100
            t, e = c["across_seeds"], c["ensemble"]
            across = (
                f"{k * t['mean']:+.2f}{_sd(t['sd'], k, 2)} [{k * t['low']:+.2f}, {k * t['high']:+.2f}]"
                if t["low"] is not None
                else f"{k * t['mean']:+.2f}{_sd(t['sd'], k, 2)}"
            )
            rows.append(
                [
                    cname,
                    attr,
                    c["metric"],
                    f"{k * c['a']:.2f}",
                    f"{k * c['b']:.2f}",
                    f"{k * c['difference']:+.2f} [{k * c['ci']['low']:+.2f}, {k * c['ci']['high']:+.2f}]",
                    f"{_fmt_p(c['test']['p_value'])} / {_fmt_p(c['test'].get('p_holm'))}",
                    across,
                    f"{_fmt_p(t['p_value'])} / {_fmt_p(t.get('p_holm'))}",
                    f"{k * e['difference']:+.2f} [{k * e['ci']['low']:+.2f}, {k * e['ci']['high']:+.2f}]",
                ]
            )
            seed_rows.append([cname, attr, *[f"{k * r['difference']:+.2f}" for r in c["per_seed"]]])
    cmp_table = table(
        rows,
        [
            "comparison",
            "attribute",
            "metric",
            "baseline",
            "condition",
            "difference [95% CI over faces]",
            "p over faces (raw / Holm)",
            "across seeds: mean ± SD [95% t-interval]",
            "p across seeds (raw / Holm)",
            "ensemble difference [95% CI]",
        ],
    )
    seed_table = table(seed_rows, ["comparison", "attribute", *[f"seed {s}" for s in seeds]])
    return cmp_table, seed_table


def _chance_section(statistics: dict[str, Any]) -> str:
    ch = statistics.get("chance")
    if not ch:
        return ""
    v = statistics.get("answer") or answer.verdicts(statistics)
    rows = []
    for attr in ("sex", "race"):
        bar = v.get("attributes", {}).get(attr, {}).get("chance_bar")
        rows.append(
            [
                attr,
                ch[attr]["rule"],
                ch[attr]["guess"],
                f"accuracy {100 * ch[attr]['accuracy']:.1f}%",
                "" if bar is None else f"lower bound >= {100 * bar:.1f}%",
            ]
        )
    bar = v.get("attributes", {}).get("age", {}).get("chance_bar")
    rows.append(
        [
            "age",
            ch["age"]["rule"],
            f"{ch['age']['guess']:g}",
            f"MAE {ch['age']['mae']:.2f}",
            "" if bar is None else f"upper bound <= {bar:.2f}",
        ]
    )
    return "<h2>Chance</h2>" + table(
        rows, ["attribute", "guess", "value", "on the test faces", "far above chance when"]
    )


def _method_section(statistics: dict[str, Any]) -> str:
    n_seeds = len(statistics.get("seeds") or [0])
    mt = statistics.get("multiple_testing") or {}
    alpha = float(statistics.get("alpha", ALPHA))
    seeds_text = (
        f"Each training set was trained {n_seeds} times (train.seeds), each seed with its own "
        "initial weights, augmentation and batch order; seed s of one training set is paired "
        "with seed s of the other (the same initial weights and random streams). "
        if n_seeds > 1
        else "Each training set was trained once (train.seeds has one seed): the spread across "
        "training runs is not measured and the test across seeds is not available. "
    )
    return f"""<h2>Method</h2><p>{html.escape(seeds_text)}Every model is tested on the same test
faces. Scores are per image: 1 or 0 for a right or wrong sex or race, the absolute error in years
for age. A comparison reports the condition's metric minus the baseline's, averaged over the seeds'
models; per image, d = its score under the condition minus under the baseline, each averaged over
the seeds, so that the difference is the mean of d. <b>Over test faces</b>: a percentile bootstrap
95% interval of the mean of d (images resampled, pairs kept) and a paired sign-flip permutation
test of mean(d) = 0 (scipy.stats.permutation_test; exact for few non-zero differences, else
random sign patterns, p never below 2/(resamples + 1)). It conditions on the trained models.
<b>Across training runs</b>: a paired t-test and t-interval on the per-seed differences, which see
how much the gap moves when the recipe is trained again (at least two seeds). Both tests are of
the very number reported, so the sentence's direction is the tested direction. <b>Multiple
testing</b>: Holm-Bonferroni over all {mt.get("m", 0)} p-values of this report (both tests of
every comparison and attribute); the sentence calls a change significant when every test of it is
below alpha = {alpha:g} after adjustment. <b>Seed ensemble</b>: the mean of the seeds' models'
outputs (class probabilities, age), the strongest attacker here; its intervals are bootstrap
intervals over faces, with no test. <b>Chance</b>: always guessing the training part's majority
class or median age; an attribute is read far above chance when the seed mean's or the ensemble's
95% interval clears it by compare.chance_margin (see the Chance table). "Protects" is said only of
a significant change towards privacy that leaves the attribute no longer read far above chance.
Intervals are not adjusted for multiplicity.</p>"""


def _recognizer_answer(statistics: dict[str, Any]) -> str:
    """The recognizer's answer sentence, under the CNN's at the top of the report."""
    rec = statistics.get("recognizer")
    if not rec:
        return ""
    return (
        '<p class="answer"><b>An off-the-shelf face recognizer</b> (dlib\'s descriptors, '
        f"scikit-learn heads; see below): {html.escape(answer.sentence(rec))}</p>"
    )


def recognizer_section(rec: dict[str, Any] | None) -> str:
    """The second attacker (``recognize.enabled``): an off-the-shelf face recognizer's
    descriptors read by scikit-learn heads, with the CNN's statistics (its own Holm family)."""
    if not rec:
        return ""
    cmp_table, seed_table = _comparison_tables(rec)
    miss = rec.get("no_descriptor") or {}
    missing = (
        f" {miss['n']:,} face versions had no descriptor (results/recognize/rejects.csv): "
        "left out of the heads' training, predicted from the training prior on test."
        if miss.get("n")
        else ""
    )
    study = rec.get("study")
    study_table = (
        "<h3>Recognizer: every training set x test set</h3>" + study_table_html(study["matrix"])
        if study
        else ""
    )
    mt = rec.get("multiple_testing") or {}
    return f"""<h2>Second attacker: an off-the-shelf face recognizer</h2>
<p>The same question for an attacker who trains no network: it reads dlib's face recognition
network (<code>dlib_face_recognition_resnet_model_v1.dat</code>), 128 numbers per face as the
attacker sees it (unmasked, or with the mask), with scikit-learn heads: logistic regression for
sex and race, ridge regression for age, each standardised and regularised by cross-validation on
the training part (recognize.cv, recognize.strengths), one set of heads per training set and
seed, tested on the same test faces and conditions as the CNN. Its statistics are the CNN's
(paired tests over faces and across seeds); Holm-Bonferroni runs over the recognizer's own
{mt.get("m", 0)} tests, apart from the CNN's, so each attacker's answer stands on its own.
With linear heads the seeds differ only by the folds that choose the regularisation: the spread
across seeds is small, often nil (docs/recognizer.md).{missing}</p>
<p class="answer">{html.escape(answer.sentence(rec))}</p>
<h3>Recognizer: metrics per condition</h3>{_metrics_table(rec["conditions"])}
<h3>Recognizer: paired comparisons with the baseline ({html.escape(str(rec.get("baseline")))})</h3>
{cmp_table}<h3>Recognizer: the difference of each seed</h3>{seed_table}{study_table}"""


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

    sizes = table(
        [[k, v["groups"], v["faces"]] for k, v in ids["by_size"].items()],
        ["faces per identity", "identities", "faces"],
    )
    leak = table(
        [
            ["duplicates only (split.group_by: duplicates)", share(dup)],
            ["identities (this run's split)", share(own)],
        ],
        ["split keeping together", "test faces whose identity is also in train"],
    )
    sweep = table(
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
    picture = img(Path(sheet)) if sheet and Path(sheet).is_file() else ""
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
    study_section: str = "",
    rejects_sheet: str | Path | None = None,
) -> str:
    """The self-contained HTML page; ``contact_sheets`` (the mask stage's PNGs) show the masks;
    ``data_report`` (the split's) and ``identity_sheet`` give the identities section;
    ``study_section`` is the mask study's (:func:`maskprivacy.report.study.build`), after the
    answer; ``rejects_sheet`` (the split's picture of the inputs align and mask rejected) follows
    the data counts."""
    conds = statistics["conditions"]
    recall_rows = []
    from maskprivacy.core.labels import RACES

    for name, m in conds.items():
        rec = m["ensemble"]["race"]["per_class_recall"]
        recall_rows.append([name, *[("-" if r is None else f"{100 * r:.1f}") for r in rec]])
    recall_table = table(recall_rows, ["condition", *RACES])
    acc = statistics.get("accounting", {})
    acc_rows = [[k, v] for k, v in acc.get("rejected_by_stage_and_reason", {}).items()]
    acc_table = table(
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
    mask_table = table(
        mask_rows, ["condition", "mask type", "n", "sex acc. %", "race acc. %", "age MAE"]
    )
    split_table = table(
        [[k, v] for k, v in statistics.get("split_counts", {}).items()], ["part", "images"]
    )
    if isinstance(plot_dirs, str | Path):
        plot_dirs = [plot_dirs]
    plots = "".join(img(p) for d in plot_dirs for p in sorted(Path(d).glob("*.png")))
    sheets = "".join(img(Path(p)) for p in contact_sheets if Path(p).is_file())
    rejects_html = (
        "<p>The inputs the align and mask stages rejected, each with its reason:</p>"
        + img(Path(rejects_sheet))
        if rejects_sheet and Path(rejects_sheet).is_file()
        else ""
    )
    masks_section = (
        "<h2>The masks</h2><p>Faces of the test run's data with every mask type drawn from their "
        "landmarks (the configured types are starred).</p>" + sheets
        if sheets
        else ""
    )
    return _page(
        "maskprivacy report",
        f"""{_demo_banner(statistics)}
<p class="answer">{html.escape(answer.sentence(statistics))}</p>
{study_section}
{_recognizer_answer(statistics)}
{_answer_tables(statistics)}
{external_report.section(statistics.get("external"), statistics.get("condition_definitions", []), conds, statistics.get("recognizer"))}
{recognizer_section(statistics.get("recognizer"))}
{_chance_section(statistics)}
{_method_section(statistics)}
{paper_protocol_section(statistics, params)}
<h2>Race recall per class (%), seed ensemble</h2>{recall_table}
<h2>By mask type (seed ensemble)</h2>{mask_table}
<h2>Data</h2>{split_table}{acc_table}{rejects_html}
{identity_section(data_report, identity_sheet)}
{masks_section}
<h2>Plots</h2>{plots}
<h2>Parameters</h2><pre>{html.escape(yaml.safe_dump(params, sort_keys=False))}</pre>
""",
    )


STYLE = """body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
.demo { background: #fde8e8; color: #b00; border: 2px solid #b00; padding: .6em; font-weight: bold; margin: 1em 0; }
.answer { font-size: 1.2em; background: #eef5ff; padding: .8em; border-left: 4px solid #36c; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: .5em; } img { max-width: 100%; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }"""


def _page(title: str, body: str) -> str:
    """A self-contained page under the question."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
{STYLE}
</style></head><body>
<h1>Does a face mask protect sex, race and age from a deep network?</h1>
{body}</body></html>
"""


def _demo_banner(statistics: dict[str, Any]) -> str:
    if not statistics.get("demo"):
        return ""
    return (
        '<div class="demo">DEMO DATA: synthetic faces with labels tied to painted cues, not UTKFace. '
        "These figures test the machinery, not faces.</div>"
    )


def _answer_tables(statistics: dict[str, Any]) -> str:
    """The tables behind the answer: each condition's metrics, the paired comparisons with the
    baseline and each seed's difference."""
    cmp_table, seed_table = _comparison_tables(statistics)
    return f"""<h2>Metrics per condition</h2>{_metrics_table(statistics["conditions"])}
<h2>Paired comparisons with the baseline ({html.escape(str(statistics.get("baseline")))})</h2>{cmp_table}
<h3>The difference of each training seed</h3>{seed_table}"""


def answer_page(statistics: dict[str, Any]) -> str:
    """The answer alone (``results/compare/answer.html``, the "answer" of Snakemake's report): the
    sentence, the tables behind it and chance."""
    return _page(
        "maskprivacy: the answer",
        f"""{_demo_banner(statistics)}
<p class="answer">{html.escape(answer.sentence(statistics))}</p>
{_answer_tables(statistics)}
{_chance_section(statistics)}
""",
    )
