"""One self-contained HTML report of an evaluation: the verdict first, then the evidence.

No CDN, no external file: plots are embedded as base64 PNGs, styles are inline. The first screen
holds the verdict table (per attacker and attribute: does the mask protect it, the change with
its interval, chance; :func:`verdict_table`) and the forest plot of every change from the
baseline; then a table of contents and the sections (:func:`render` lists them, in order, in
one place): the metrics of every condition, the paired comparisons, the second attacker, chance,
the method, the plots with sentence captions (:mod:`maskprivacy.report.captions`), the data, the
masks, the paper's protocol and the run's provenance. A red banner says when the figures come
from the demo data set.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import yaml

from maskprivacy.analysis import answer, paper_protocol
from maskprivacy.analysis.answer import fmt_p as _fmt_p
from maskprivacy.report import external as external_report
from maskprivacy.report import real_masks as real_masks_report
from maskprivacy.report.markup import ci, img, table
from maskprivacy.report.study import matrix_table as study_table_html

ALPHA = 0.05


def paper_protocol_section(
    statistics: dict[str, Any], params: dict[str, Any], real: bool = True
) -> str:
    """The report's "Paper protocol" section: the paper's figures beside this run's, the paired
    tests, the epoch each model kept, the run's protocol and what still differs
    (:func:`maskprivacy.analysis.paper_protocol.section`). ``real``: the run is on the published
    UTKFace files; on other faces (the demo set) the paper's figures and targets are left out,
    as comparing them would mean nothing."""
    s = paper_protocol.section(statistics, params)
    (fig_head, fig_rows), (test_head, test_rows) = s["figures"], s["tests"]
    diffs = "".join(f"<li>{html.escape(d)}</li>" for d in s["differences"])
    if not real:
        return (
            '<h2 id="paper-protocol">Paper protocol</h2>'
            f"<p>{html.escape(s['note'])} The paper's figures are set beside a run's only on the "
            "published UTKFace files (the download stage's verification); this run's faces are "
            f"not those ({html.escape(str(statistics.get('data_source')))}).</p>"
            f"<h3>Model kept</h3>{table(s['kept'][1], s['kept'][0])}"
            f"<h3>Protocol of this run</h3>{table(s['protocol'][1], s['protocol'][0])}"
        )
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


METRICS_HEADER = [
    "condition",
    "model",
    "sex acc. % [95% CI] ± SD",
    "sex bal. %",
    "race acc. % [95% CI] ± SD",
    "race bal. %",
    "age MAE, years [95% CI] ± SD",
    "age RMSE, years",
    "n",
]


def _model_row(name: str, label: str, m: dict[str, Any]) -> list[Any]:
    """One model's row (a seed's, or the seed ensemble's) of the metrics table."""
    return [
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


def _metrics_table(conds: dict[str, Any]) -> str:
    """Per condition: with several seeds, the mean over seeds (interval over test images, ± SD
    over seeds) and the seed ensemble, every seed's model in a table folded under it; with one
    seed, its model once."""
    rows, seed_rows = [], []
    for name, c in conds.items():
        n_seeds = len(c["seeds"])
        if n_seeds == 1:
            ((s, m),) = c["per_seed"].items()
            rows.append(_model_row(name, f"seed {s}", m))
            continue
        sm, sd = c["seed_mean"], c["sd"]
        rows.append(
            [
                name,
                f"mean of {n_seeds} seeds",
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
        rows.append(_model_row(name, "seed ensemble", c["ensemble"]))
        seed_rows += [_model_row(name, f"seed {s}", m) for s, m in c["per_seed"].items()]
    out = table(rows, METRICS_HEADER)
    if seed_rows:
        out += _folded("Every seed's model", table(seed_rows, METRICS_HEADER))
    return out


def _folded(summary: str, body: str) -> str:
    """``body`` folded away under a line that opens it."""
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


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
    seed_table = (
        _folded(
            "The difference of each training seed",
            table(seed_rows, ["comparison", "attribute", *[f"seed {s}" for s in seeds]]),
        )
        if len(seeds) > 1
        else ""
    )
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
{cmp_table}{seed_table}{study_table}"""


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


# --------------------------------------------------------------------------- the verdict

VERDICT_WORDS = {"yes": "yes", "no": "no", "not_shown": "not shown"}


def attackers(statistics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each attacker's statistics by its name: the CNN's, and the recognizer's where it ran."""
    out = {"CNN": statistics}
    if statistics.get("recognizer"):
        out["face recognizer"] = statistics["recognizer"]
    return out


def protects(v: dict[str, Any]) -> str:
    """Does the mask protect the attribute (one of :func:`answer.verdicts`' attributes)? ``yes``
    (a significant change after which it is no longer read far above chance), ``no`` (still read
    far above chance, or easier to read) or ``not_shown`` (no longer read far above chance, but
    the change is not significant)."""
    if v["status"] == "protects":
        return "yes"
    if v["far_above_chance"] or v["status"] == "helps_the_attacker":
        return "no"
    return "not_shown"


def verdict_rows(statistics: dict[str, Any]) -> list[list[str]]:
    """Per attacker and attribute: does the mask protect it, what the attacker reads under the
    primary comparison's condition and the baseline (seed means), the change [95% CI] and
    chance."""
    rows = []
    for name, st in attackers(statistics).items():
        v = st.get("answer") or answer.verdicts(st)
        if not v.get("comparison"):
            continue
        cond, base = st["conditions"][v["condition"]], st["conditions"][v["baseline"]]
        for attr, a in v["attributes"].items():
            k, unit, digits = (1, " years", 2) if attr == "age" else (100, "%", 1)
            diff_unit = " years" if attr == "age" else " pt"
            lo, hi = a["ci"]
            ch = st["chance"][attr]
            chance = (
                f"{ch['mae']:.2f} years (always {ch['guess']:g})"
                if attr == "age"
                else f"{100 * ch['accuracy']:.1f}% (always {ch['guess']})"
            )
            rows.append(
                [
                    name,
                    "age (MAE)" if attr == "age" else f"{attr} (accuracy)",
                    protects(a),
                    f"{k * cond['seed_mean'][attr]['estimate']:.{digits}f}{unit}",
                    f"{k * base['seed_mean'][attr]['estimate']:.{digits}f}{unit}",
                    f"{k * a['difference']:+.{digits}f}{diff_unit} [{k * lo:+.{digits}f}, "
                    f"{k * hi:+.{digits}f}]",
                    chance,
                ]
            )
    return rows


def verdict_table(statistics: dict[str, Any], note: bool = True) -> str:
    """The answer as one table (the report's first screen, and the landing text of Snakemake's
    report): per attacker and attribute, does the mask protect it, masked against unmasked,
    the change with its 95% interval over faces, and chance; with ``note``, what it means."""
    v = statistics.get("answer") or answer.verdicts(statistics)
    if not v.get("comparison"):
        return "<p>Only one condition was evaluated: there is no comparison to judge.</p>"
    cond, base = v["condition"], v["baseline"]
    head = [
        "attacker",
        "attribute",
        "does the mask protect it?",
        cond,
        base,
        "change [95% CI]",
        "chance",
    ]
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="v-{c}">{VERDICT_WORDS[c]}</td>' if i == 2 else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in verdict_rows(statistics)
    )
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    n = statistics["conditions"][cond]["n_test"]
    n_seeds = len(statistics.get("seeds") or [0])
    seeds = "one training seed" if n_seeds == 1 else f"the mean of {n_seeds} training seeds"
    out = f'<table class="verdict"><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>'
    if not note:
        return out
    return (
        f'{out}<p class="note">On the same {n:,} test faces, {seeds}; {html.escape(cond)}: '
        f"{html.escape(_definition(statistics, cond))}. <b>yes</b>: a significant change after "
        "which the attribute is no longer read far above chance; <b>no</b>: still read far "
        "above chance; <b>not shown</b>: near chance, but the change is not significant. "
        "Change: condition minus baseline, in points (accuracy) or years (MAE), Holm-tested "
        "(the Method section).</p>"
    )


def _definition(statistics: dict[str, Any], name: str) -> str:
    """'trained and tested on masked faces' for a condition of ``condition_definitions``."""
    d = next((c for c in statistics.get("condition_definitions", []) if c["name"] == name), None)
    if d is None:
        return "see the conditions' table"
    if d["train"] == d["test"]:
        return f"trained and tested on {d['test']} faces"
    return f"trained on {d['train']} faces, tested on {d['test']} faces"


VERDICT_STYLE = """table.verdict { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
table.verdict td, table.verdict th { border: 1px solid #ccc; padding: .25em .5em; text-align: right; white-space: nowrap; }
table.verdict th { background: #f3f3f3; } table.verdict td:last-child { white-space: normal; }
table.verdict td:nth-child(-n+3), table.verdict th:nth-child(-n+3) { text-align: left; }
td.v-yes { color: #116611; font-weight: bold; } td.v-no { color: #b00; font-weight: bold; }
td.v-not_shown { color: #666; font-weight: bold; }"""
# in a narrow column of another page (Snakemake's landing text): smaller, cells may wrap
NARROW_STYLE = """table.verdict { font-size: .8em; } table.verdict td, table.verdict th { white-space: normal; }"""


def verdict_fragment(statistics: dict[str, Any]) -> str:
    """:func:`verdict_table` alone with its own styles, for a page that is not this report and
    says the rest itself (the landing text of Snakemake's report, workflow/report/workflow.rst)."""
    return f"<style>{VERDICT_STYLE}\n{NARROW_STYLE}</style>{verdict_table(statistics, note=False)}"


# --------------------------------------------------------------------------- the page


def _conditions_table(statistics: dict[str, Any]) -> str:
    """What each condition is: the data its models trained on and the data they were tested on."""
    rows = [[c["name"], c["train"], c["test"]] for c in statistics.get("condition_definitions", [])]
    return table(rows, ["condition", "trained on", "tested on"]) if rows else ""


def provenance_section(run: dict[str, Any] | None, params: dict[str, Any]) -> str:
    """How the run was made (:func:`maskprivacy.report.provenance.collect`) and its parameters."""
    rows = []
    if run:
        wall = run.get("wall_min")
        rows = [
            ["date", run.get("date", "unknown")],
            ["commit", run.get("commit", "unknown")],
            ["command", run.get("command", "unknown")],
            ["machine", run.get("machine", "unknown")],
            [
                "wall time",
                "unknown" if wall is None else f"{wall:g} min (the command, to this report)",
            ],
            ["data", run.get("data", "unknown")],
        ]
    return (
        "<h2>This run</h2>"
        + (table(rows, ["", ""]) if rows else "")
        + f"<h3>Parameters</h3><pre>{html.escape(yaml.safe_dump(params, sort_keys=False))}</pre>"
    )


def _provenance_line(run: dict[str, Any] | None) -> str:
    """One line under the title: when, from which commit, by which command, on what."""
    if not run:
        return ""
    wall = run.get("wall_min")
    took = f", {wall:g} min" if wall is not None else ""
    return (
        f'<p class="run">{html.escape(str(run.get("date")))}, commit '
        f"<code>{html.escape(str(run.get('commit')))}</code>, "
        f"<code>{html.escape(str(run.get('command')))}</code> on "
        f"{html.escape(str(run.get('machine')))}{took}; data: "
        f'{html.escape(str(run.get("data", "unknown")))} (<a href="#run">this run</a>)</p>'
    )


def _real_utkface(statistics: dict[str, Any], run: dict[str, Any] | None) -> bool:
    """Whether the run's faces are the published UTKFace files (the download stage verified
    them); without that record, whether the data are not the demo set."""
    if run and "utkface" in run:
        return bool(run["utkface"])
    return statistics.get("data_source") != "demo"


def _plots(plot_dirs: list[Path]) -> tuple[Path | None, list[Path], list[Path]]:
    """The forest plot (compare's), the rest of compare's figures (the first folder) and every
    condition's and seed's (the other folders)."""
    mine = sorted(plot_dirs[0].glob("*.png")) if plot_dirs else []
    forest = next((p for p in mine if p.stem == "forest"), None)
    shown = [p for p in mine if p.stem not in ("forest", "masks")]
    order = {"comparison": 0, "learning_curves": 1}
    shown.sort(key=lambda p: (order.get(p.stem, 2), p.name))
    per_seed = [p for d in plot_dirs[1:] for p in sorted(d.glob("*.png"))]
    return forest, shown, per_seed


def render(
    statistics: dict[str, Any],
    params: dict[str, Any],
    plot_dirs: str | Path | list[str | Path],
    contact_sheets: list[str | Path] = (),
    data_report: dict[str, Any] | None = None,
    identity_sheet: str | Path | None = None,
    study_section: str = "",
    rejects_sheet: str | Path | None = None,
    run: dict[str, Any] | None = None,
) -> str:
    """The self-contained HTML page. ``plot_dirs``: compare's plots folder first (its
    ``forest.png`` heads the page), then each condition's (folded away); ``contact_sheets``
    (the mask stage's PNGs) show the masks; ``data_report`` (the split's) and
    ``identity_sheet`` give the identities section; ``study_section`` is the mask study's
    (:func:`maskprivacy.report.study.build`); ``rejects_sheet`` (the split's picture of the
    inputs align and mask rejected) follows the data counts; ``run`` is the run's provenance
    (:func:`maskprivacy.report.provenance.collect`, with ``data`` and ``utkface``)."""
    conds = statistics["conditions"]
    from maskprivacy.core.labels import RACES

    recall_rows = []
    for name, m in conds.items():
        rec = m["ensemble"]["race"]["per_class_recall"]
        recall_rows.append([name, *[("-" if r is None else f"{100 * r:.1f}") for r in rec]])
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
    split_table = table(
        [[k, v] for k, v in statistics.get("split_counts", {}).items()], ["part", "images"]
    )
    if isinstance(plot_dirs, str | Path):
        plot_dirs = [plot_dirs]
    forest, shown, per_seed = _plots([Path(d) for d in plot_dirs])
    plots_html = "".join(img(p) for p in shown) + (
        _folded(
            f"Every condition and seed: {len(per_seed)} confusion matrices and age plots",
            "".join(img(p) for p in per_seed),
        )
        if per_seed
        else ""
    )
    sheets = "".join(img(Path(p)) for p in contact_sheets if Path(p).is_file())
    rejects_html = (
        "<p>The inputs the align and mask stages rejected, each with its reason:</p>"
        + img(Path(rejects_sheet))
        if rejects_sheet and Path(rejects_sheet).is_file()
        else ""
    )
    cmp_table, seed_table = _comparison_tables(statistics)
    baseline = html.escape(str(statistics.get("baseline")))
    # The report's sections, in order: (anchor, title in the table of contents, HTML with its
    # own <h2>). A new section is one more entry here; one whose HTML is empty is left out,
    # with its entry in the table of contents.
    sections = [
        ("mask-study", "Which masks protect?", study_section),
        (
            "metrics",
            "Metrics per condition",
            f"<h2>Metrics per condition</h2>{_conditions_table(statistics)}{_metrics_table(conds)}",
        ),
        (
            "comparisons",
            "Paired comparisons",
            f"<h2>Paired comparisons with the baseline ({baseline})</h2>{cmp_table}{seed_table}",
        ),
        (
            "external",
            "External test sets",
            external_report.section(
                statistics.get("external"),
                statistics.get("condition_definitions", []),
                conds,
                statistics.get("recognizer"),
            ),
        ),
        (
            "real-masks",
            "Real masks",
            real_masks_report.section(
                statistics,
                {
                    n: real_masks_report.figure_path(plot_dirs[0], n)
                    for n in real_masks_report.sets_with_real_masks(statistics)
                },
            ),
        ),
        ("recognizer", "Second attacker", recognizer_section(statistics.get("recognizer"))),
        ("chance", "Chance", _chance_section(statistics)),
        ("method", "Method", _method_section(statistics)),
        ("plots", "Plots", f"<h2>Plots</h2>{plots_html}" if plots_html else ""),
        (
            "groups",
            "By race and mask type",
            f"<h2>Race recall per class (%), seed ensemble</h2>"
            f"{table(recall_rows, ['condition', *RACES])}"
            "<h2>By mask type (seed ensemble)</h2>"
            + table(
                mask_rows, ["condition", "mask type", "n", "sex acc. %", "race acc. %", "age MAE"]
            ),
        ),
        ("data", "Data", f"<h2>Data</h2>{split_table}{acc_table}{rejects_html}"),
        ("identities", "Identities", identity_section(data_report, identity_sheet)),
        (
            "masks",
            "The masks",
            "<h2>The masks</h2><p>Faces of the test run's data with every mask type drawn from "
            "their landmarks (the configured types are starred).</p>" + sheets
            if sheets
            else "",
        ),
        (
            "paper",
            "Paper protocol",
            paper_protocol_section(statistics, params, _real_utkface(statistics, run)),
        ),
        ("run", "This run", provenance_section(run, params)),
    ]
    sections = [(a, t, h) for a, t, h in sections if h]
    toc = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t, _ in sections)
    body = "\n".join(f'<section id="{a}">{h}</section>' for a, _, h in sections)
    forest_html = img(forest) if forest is not None else ""
    return _page(
        "maskprivacy report",
        f"""{_demo_banner(statistics)}{_provenance_line(run)}
<section id="answer"><h2 class="verdict">The answer: does the mask stop the attacker?</h2>
{verdict_table(statistics)}
{forest_html}
<p class="answer">{html.escape(answer.sentence(statistics))}</p></section>
<nav><b>Contents</b><ol>{toc}</ol></nav>
{body}
""",
    )


STYLE = f"""body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.2em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.6em; margin: .2em 0; }} h2.verdict {{ font-size: 1.2em; margin: .4em 0; }}
.demo {{ background: #fde8e8; color: #b00; border: 2px solid #b00; padding: .4em .6em; font-weight: bold; margin: .5em 0; }}
.run {{ color: #555; font-size: .85em; margin: .2em 0; }} .note {{ color: #444; font-size: .85em; margin: .3em 0 .8em; }}
.answer {{ background: #eef5ff; padding: .8em; border-left: 4px solid #36c; }}
table {{ border-collapse: collapse; margin: .8em 0; font-size: .9em; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
nav ol {{ columns: 3; margin: .3em 0 1em; }} nav {{ background: #f7f7f7; padding: .5em 1em; }}
details {{ margin: .6em 0; }} summary {{ cursor: pointer; color: #36c; }}
figure {{ display: block; margin: 1em 0; }} img {{ max-width: 100%; }}
figcaption {{ font-size: .9em; color: #333; max-width: 60em; }}
pre {{ background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }}
{VERDICT_STYLE}"""


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
    return f"""<h2>Metrics per condition</h2>{_conditions_table(statistics)}{_metrics_table(statistics["conditions"])}
<h2>Paired comparisons with the baseline ({html.escape(str(statistics.get("baseline")))})</h2>{cmp_table}{seed_table}"""


def answer_page(statistics: dict[str, Any]) -> str:
    """The answer alone (``results/compare/answer.html``, the "answer" of Snakemake's report):
    the verdict table, the sentence, the tables behind it, the second attacker's and chance."""
    return _page(
        "maskprivacy: the answer",
        f"""{_demo_banner(statistics)}
{verdict_table(statistics)}
<p class="answer">{html.escape(answer.sentence(statistics))}</p>
{_answer_tables(statistics)}
{recognizer_section(statistics.get("recognizer"))}
{_chance_section(statistics)}
""",
    )
