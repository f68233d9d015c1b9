"""Published runs: each real-data run's metrics kept in the repository, and the documentation's
tables made from them by a command, never typed.

``results/reference/<run>/`` holds, per published run:

- ``metrics.json``: the run's ``results/metrics.json`` as it was (a DVC metrics file: dvc.yaml
  lists every one, so ``dvc metrics show``, ``dvc metrics diff`` and ``dvc exp show`` put a
  later run's ``results/metrics.json`` beside it, under the same keys);
- ``statistics.json``: compare's statistics, less what only the HTML report draws (per-group
  tables), from which the tables are made;
- ``run.json``: how it was made: the command, the machine, the date, the wall time, the commit.

Commands (from the repository root):

    python -m maskprivacy_workflow.published add cpu-study --command "snakemake --cores all \\
        --configfile presets/cpu.yaml" --machine "2-core AMD EPYC, no GPU" --wall-min 58
    python -m maskprivacy_workflow.published render          # fill the published blocks
    python -m maskprivacy_workflow.published render --check  # exit 1 if a block is stale

A published block in README.md or docs/*.md is the text between
``<!-- BEGIN published: NAME -->`` and ``<!-- END published: NAME -->``. NAME is a published
run's folder name (its tables; for the mask study its matrices), ``RUN.short`` (two sentences
for a front page), ``RUN.paper`` (the paper's published figures beside the run's, with the paired
tests: ``maskprivacy.analysis.paper_protocol.table``), ``RUN.real`` (real masks against painted
ones and none, on the run's external sets with real masks: ``maskprivacy.report.real_masks``),
``RUN.ladder`` (the attacker ladder: the mask's cost by attacker strength, its trend and
sentence, from the run's ``results/ladder/ladder.json``: ``maskprivacy.report.ladder``) or
``A.vs.B`` (two runs that differ in their split, side by side); a block whose run is not
published says so.

The figures of :data:`FIGURES` (``docs/img/``) are made the same way, by the same command, from
the same published metrics (the mask strip from the demo set's portrait), and checked the same
way: each is rendered where a page links to it, and ``render --check`` fails when the committed
file differs from what the metrics give.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

REFERENCE = Path("results/reference")
BLOCK = re.compile(
    r"(<!-- BEGIN published: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- END published: (?P=name) -->)",
    re.S,
)
PAGES = ("README.md", "docs/*.md")
# statistics.json keys the tables need (the rest is the HTML report's)
KEPT = (
    "data_source",
    "seeds",
    "conditions",
    "comparisons",
    "chance",
    "multiple_testing",
    "alpha",
    "baseline",
    "answer",
    "accounting",
    "split_counts",
    "condition_definitions",
    "study",
    "recognizer",
    "external",
    "ladder",
)


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def add(
    name: str,
    workdir: Path,
    root: Path,
    command: str,
    machine: str,
    wall_min: float | None,
    note: str = "",
) -> Path:
    """Copy a finished run's metrics and statistics from ``workdir`` into
    ``root/results/reference/name`` with ``run.json``; returns that folder."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise SystemExit(f"published: a run's name is letters, digits, '.', '-', '_': {name!r}")
    metrics = workdir / "results/metrics.json"
    stats = workdir / "results/compare/statistics.json"
    for f in (metrics, stats):
        if not f.is_file():
            raise SystemExit(f"published: {f} is missing: finish the run first (snakemake)")
    statistics = json.loads(stats.read_text())
    ladder = workdir / "results/ladder/ladder.json"  # ladder.rungs: the attacker ladder
    if ladder.is_file():
        statistics["ladder"] = json.loads(ladder.read_text())
    if statistics.get("data_source") == "demo":
        raise SystemExit("published: that run is on the demo set; publish real-data runs only")
    out = root / REFERENCE / name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(metrics, out / "metrics.json")
    if ladder.is_file():  # the rungs side by side under `dvc metrics show`, beside the study's
        kept_metrics = json.loads(metrics.read_text())
        kept_metrics["ladder"] = json.loads((ladder.parent / "metrics.json").read_text())
        (out / "metrics.json").write_text(json.dumps(kept_metrics, indent=1) + "\n")
    kept = {k: statistics[k] for k in KEPT if k in statistics}
    (out / "statistics.json").write_text(json.dumps(kept, indent=1, allow_nan=False) + "\n")
    from maskprivacy.analysis.answer import sentence

    run = {
        "name": name,
        "date": date.today().isoformat(),
        "command": command,
        "machine": machine,
        "wall_min": wall_min,
        "commit": _git_commit(workdir),
        "answer": sentence(statistics),
        # the second attacker (recognize.enabled): its own sentence, Holm over its own tests
        "recognizer_answer": sentence(statistics["recognizer"])
        if "recognizer" in statistics
        else None,
        "note": note,
    }
    (out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    return out


# ------------------------------------------------------------------------------------------
# Rendering


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pct_ci(e: Mapping[str, Any]) -> str:
    return f"{100 * e['estimate']:.1f}% [{100 * e['low']:.1f}, {100 * e['high']:.1f}]"


def _years_ci(e: Mapping[str, Any]) -> str:
    return f"{e['estimate']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def condition_table(st: Mapping[str, Any], attacker: str = "") -> str:
    """Each condition: seed-mean sex, race (balanced) accuracy and age MAE with 95% intervals
    over test faces, and the seed ensemble's figures."""
    from maskprivacy.analysis.paper_protocol import markdown

    body = []
    for name, c in st["conditions"].items():
        sm, ens = c["seed_mean"], c["ensemble"]
        body.append(
            [
                name,
                f"{_pct_ci(sm['sex'])}",
                f"{_pct_ci(sm['race'])} ({_pct(c['mean']['race']['balanced_accuracy'])})",
                _years_ci(sm["age"]),
                f"{_pct(ens['sex']['accuracy'])} / {_pct(ens['race']['accuracy'])} / "
                f"{ens['age']['mae']:.2f}",
            ]
        )
    n_seeds = len(st["seeds"])
    header = [
        f"condition{attacker}",
        f"sex acc. [95% CI] ({'one seed' if n_seeds == 1 else f'mean of {n_seeds} seeds'})",
        "race acc. [95% CI] (balanced)",
        "age MAE, years [95% CI]",
        "seed ensemble: sex / race / MAE",
    ]
    return markdown(body, header)


def comparison_table(st: Mapping[str, Any]) -> str:
    """Each condition minus the baseline on the same faces: difference [95% CI], Holm-adjusted
    p over faces, and (two seeds or more) Holm-adjusted p across seeds."""
    from maskprivacy.analysis.paper_protocol import markdown

    body = []
    for name, cmp in st["comparisons"].items():
        cells = []
        for attr in ("sex", "race", "age"):
            c = cmp[attr]
            unit, fmt, u = (1, "+.2f", "") if attr == "age" else (100, "+.1f", " pt")
            seeds = c.get("across_seeds") or {}
            cells.append(
                f"{unit * c['difference']:{fmt}}{u} [{unit * c['ci']['low']:{fmt}}, "
                f"{unit * c['ci']['high']:{fmt}}], p_Holm {_p(c['test'].get('p_holm'))}"
                + (
                    f" (seeds: {_p(seeds.get('p_holm'))})"
                    if seeds.get("p_holm") is not None
                    else ""
                )
            )
        body.append([name.replace("_vs_", " − "), *cells])
    return markdown(body, ["comparison", "sex accuracy", "race accuracy", "age MAE"])


def chance_line(st: Mapping[str, Any]) -> str:
    ch = st["chance"]
    return (
        f"Chance (no face looked at): sex {_pct(ch['sex']['accuracy'])} (always "
        f"{ch['sex']['guess']}), race {_pct(ch['race']['accuracy'])} (always "
        f"{ch['race']['guess']}), age MAE {ch['age']['mae']:.2f} (always {ch['age']['guess']:g} "
        "years)."
    )


def _change(attr: str, x: float) -> str:
    """A difference as the tables print it: age in years, accuracies in points."""
    return f"{x:+.2f}" if attr == "age" else f"{100 * x:+.1f} pt"


def _value(attr: str, m: Mapping[str, Any]) -> str:
    return f"{m['estimate']:.2f}" if attr == "age" else f"{100 * m['estimate']:.1f}"


def study_tables(study: Mapping[str, Any]) -> str:
    """The mask study (compare's ``statistics["study"]``), short enough for a page: per
    attribute the train-set x test-set matrix of seed means, then per mask set the model
    trained and tested on it against the baseline (paired difference, Holm-adjusted p over
    faces, the verdict). Every condition's intervals are in the HTML report and statistics.json."""
    from maskprivacy.analysis.paper_protocol import markdown

    mat = study["matrix"]
    sets, cells = mat["data_sets"], mat["cells"]
    out = []
    for attr, what in (
        ("sex", "sex accuracy, %"),
        ("race", "race accuracy, %"),
        ("age", "age MAE, years"),
    ):
        body = []
        for tr in sets:
            row = cells.get(tr, {})
            vals = []
            for te in sets:
                cell = row.get(te)
                v = "-" if cell is None else _value(attr, cell["metrics"][attr])
                vals.append(f"**{v}**" if tr == te and cell is not None else v)
            body.append([tr, *vals])
        out += [
            f"{what[0].upper()}{what[1:]} (rows: trained on; columns: tested on; seed mean):",
            "",
        ]
        out += [markdown(body, ["trained on", *sets]), ""]
    from maskprivacy.report.study import STATUS  # the HTML report's words for each verdict

    body = []
    for s in sets:
        d = cells.get(s, {}).get(s, {}).get("difference")
        if not d:
            continue
        row = [s]
        for attr in ("sex", "race", "age"):
            c = d[attr]
            row.append(
                f"{_change(attr, c['difference'])}, p_Holm {_p(c['p_images_holm'])} "
                f"({STATUS.get(c['status'], c['status'])})"
            )
        body.append(row)
    base = mat["baseline"]["condition"]
    out += [
        f"Trained and tested on each mask set, minus `{base}` on the same {mat['n_test']:,} faces:",
        "",
        markdown(body, ["mask set", "sex accuracy", "race accuracy", "age MAE"]),
    ]
    return "\n".join(out)


def split_comparison(a: Path, b: Path) -> str:
    """Two published runs that differ in how faces were split (e.g. identity-disjoint against
    duplicate-grouped): each condition both have, on the seeds both trained, per run. The test
    faces differ, so the figures are compared with their 95% intervals, not paired."""
    from maskprivacy.analysis.paper_protocol import markdown, pct_ci, years_ci

    runs = []
    for folder in (a, b):
        runs.append(
            (
                folder.name,
                json.loads((folder / "statistics.json").read_text()),
            )
        )
    seeds = sorted(set(runs[0][1]["seeds"]) & set(runs[1][1]["seeds"]), key=int)
    if not seeds:
        return f"*({a.name} and {b.name} share no seed: nothing to compare)*\n"
    shared = [c for c in runs[0][1]["conditions"] if c in runs[1][1]["conditions"]]
    body = []
    for cond in shared:
        for name, st in runs:
            counts = st.get("split_counts", {})
            per = [st["conditions"][cond]["per_seed"][str(s)] for s in seeds]
            mean = {  # the shared seeds' mean of each figure and of its interval's ends
                attr: {
                    k: sum(p[attr][k] for p in per) / len(per)
                    for k, v in per[0][attr].items()
                    if isinstance(v, int | float)
                }
                for attr in ("sex", "race", "age")
            }
            cells = [pct_ci(mean["sex"]), pct_ci(mean["race"]), years_ci(mean["age"], "mae")]
            body.append(
                [cond, name, f"{counts.get('train', 0):,} / {counts.get('test', 0):,}", *cells]
            )
    which = "seed " + ", ".join(str(s) for s in seeds)
    return (
        markdown(
            body,
            [
                "condition",
                "run",
                "train / test faces",
                f"sex acc. % [95% CI] ({which})",
                "race acc. % [95% CI]",
                "age MAE [95% CI]",
            ],
        )
        + "\n"
    )


def render_run(folder: Path, shown: str) -> str:
    """The Markdown of one published run (``shown``: its folder as the page names it)."""
    run = json.loads((folder / "run.json").read_text())
    st = json.loads((folder / "statistics.json").read_text())
    wall = f", {run['wall_min']:g} min wall" if run.get("wall_min") else ""
    counts = st.get("split_counts", {})
    split = " / ".join(f"{counts[k]:,}" for k in ("train", "val", "test") if k in counts)
    parts = [
        f"*{run['date']}, `{run['command']}` on {run['machine']}{wall}, commit "
        f"{run.get('commit') or '?'}; split (train / val / test) {split}; metrics in "
        f"`{shown}/`.*",
        "",
        *(
            [f"- {t}" for t in st["study"]["sentences"].values()]
            if st.get("study", {}).get("sentences")
            else [f"> {run['answer']}"]
        ),
        "",
        *(
            [study_tables(st["study"])]
            if st.get("study")
            else [condition_table(st), "", comparison_table(st)]
        ),
        "",
        chance_line(st),
    ]
    if st.get("recognizer"):
        rec = st["recognizer"]
        parts += ["", "The face recognizer's embedding (second attacker):", ""]
        if run.get("recognizer_answer"):
            parts += [f"> {run['recognizer_answer']}", ""]
        if rec.get("study"):
            parts += [study_tables(rec["study"])]
        else:
            if "conditions" in rec:
                parts += [condition_table(rec, " (recognizer)"), ""]
            if "comparisons" in rec:
                parts += [comparison_table(rec)]
    if run.get("note"):
        parts += ["", run["note"]]
    return "\n".join(parts).rstrip() + "\n"


def real_masks_block(folder: Path) -> str:
    """The real-mask comparison of a published run with an external set of real masks: per set,
    each attacker's sentence, each version's scores and the tests
    (:mod:`maskprivacy.report.real_masks`), under the run's provenance."""
    from maskprivacy.analysis.paper_protocol import markdown
    from maskprivacy.report import real_masks as rm

    run = json.loads((folder / "run.json").read_text())
    st = json.loads((folder / "statistics.json").read_text())
    names = rm.sets_with_real_masks(st)
    if not names:
        return f"*(the published run `{folder.name}` has no external set with real masks)*\n"
    wall = f", {run['wall_min']:g} min wall" if run.get("wall_min") else ""
    parts = [
        f"*{run['date']}, `{run['command']}` on {run['machine']}{wall}, commit "
        f"{run.get('commit') or '?'}; metrics in `{(REFERENCE / folder.name).as_posix()}/`.*",
        "",
    ]
    for name in names:
        pairs = rm.attacker_sets(st, name)
        parts += [f"> {rm.sentence(name, s, attacker)}" for attacker, s in pairs] + [""]
        header = ["attacker", "trained on", "version", "attribute", "n", "score [95% CI]"]
        header += ["balanced acc. [95% CI]", "recall per class"]
        parts += [markdown([r for a, s in pairs for r in rm.version_rows(a, s)], header), ""]
        header = ["attacker", "trained on", "attribute", "comparison", "units"]
        header += ["difference [95% CI], p_Holm", "verdict"]
        parts += [markdown([r for a, s in pairs for r in rm.comparison_rows(a, s)], header)]
    if run.get("note"):
        parts += ["", run["note"]]
    return "\n".join(parts).rstrip() + "\n"


def ladder_block(folder: Path) -> str:
    """The attacker ladder of a published run: its sentence, the figure's link is the page's;
    one row per rung (attacker, input side, epochs, training minutes, unmasked score and the
    mask's cost with 95% intervals) and each attribute's trend."""
    from maskprivacy.analysis.paper_protocol import markdown
    from maskprivacy.report import ladder as lad

    run = json.loads((folder / "run.json").read_text())
    st = json.loads((folder / "statistics.json").read_text())
    if "ladder" not in st:
        return f"*(the published run `{folder.name}` has no attacker ladder)*\n"
    ladder = st["ladder"]
    wall = f", {run['wall_min']:g} min wall" if run.get("wall_min") else ""
    parts = [
        f"*{run['date']}, `{run['command']}` on {run['machine']}{wall}, commit "
        f"{run.get('commit') or '?'}; {ladder['n_test']:,} test faces, seed {ladder['seed']}; "
        f"metrics in `{(REFERENCE / folder.name).as_posix()}/` (key `ladder`).*",
        "",
        f"> {ladder['sentence']}",
        "",
        markdown(lad.table_rows(ladder), lad.HEADER),
        "",
        markdown(lad.trend_rows(ladder), lad.TREND_HEADER),
    ]
    if run.get("note"):
        parts += ["", run["note"]]
    return "\n".join(parts).rstrip() + "\n"


def study_short(st: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    """A mask study for a front page: which mask sets protect which attribute from a network
    trained on them (the verdicts of its own cell against the baseline), and what it read."""
    mat = st["study"]["matrix"]
    cells, base = mat["cells"], mat["baseline"]
    own = {s: cells[s][s] for s in mat["data_sets"] if "difference" in cells.get(s, {}).get(s, {})}
    protects = {
        s: [a for a in ("sex", "race", "age") if c["difference"][a]["status"] == "protects"]
        for s, c in own.items()
    }
    if any(protects.values()):
        head = (
            "; ".join(f"{s} protects {' and '.join(a)}" for s, a in protects.items() if a)
            + "; no other set protects an attribute"
        )
    else:
        head = f"None of the {len(own)} mask sets protects sex, race or age"

    def figures(c: Mapping[str, Any]) -> str:
        m = c["metrics"]
        return (
            f"{_pct(m['sex']['estimate'])} / {_pct(m['race']['estimate'])} / "
            f"{m['age']['estimate']:.2f}"
        )

    ch = st["chance"]
    n_seeds = mat["n_seeds"]
    seeds = "one seed" if n_seeds == 1 else f"mean of {n_seeds} seeds"
    listed = "".join(f"- {s}: {figures(c)}\n" for s, c in own.items())
    return (
        f"**{head}** from a network trained on masked faces.\n"
        f"On {mat['n_test']:,} real test faces ({run['date']}, {seeds}), it read sex / race / "
        f"age MAE (years) from faces with each mask set:\n\n{listed}\n"
        f"Unmasked: {figures(cells[base['train']][base['test']])}; chance: "
        f"{_pct(ch['sex']['accuracy'])} / {_pct(ch['race']['accuracy'])} / {ch['age']['mae']:.2f}.\n"
    )


def short_answer(folder: Path) -> str:
    """Two sentences for a front page: whether the mask stopped the attacker (every attribute
    still far above chance, compare's verdict), the masked and unmasked figures and chance."""
    from maskprivacy.analysis.answer import join_words

    st = json.loads((folder / "statistics.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    if st.get("study"):
        return study_short(st, run)
    verdict = st["answer"]["attributes"]
    cond, base = st["answer"]["condition"], st["answer"]["baseline"]
    m, b = st["conditions"][cond]["seed_mean"], st["conditions"][base]["seed_mean"]
    ch = st["chance"]
    readable = [a for a in ("sex", "race", "age") if verdict[a]["far_above_chance"]]
    word = "No" if len(readable) == 3 else "Not entirely" if readable else "Yes"
    figures = [
        f"{a} {_pct(m[a]['estimate'])} (unmasked {_pct(b[a]['estimate'])}, chance "
        f"{_pct(ch[a]['accuracy'])})"
        for a in ("sex", "race")
    ]
    figures.append(
        f"age MAE {m['age']['estimate']:.2f} years (unmasked {b['age']['estimate']:.2f}, chance "
        f"{ch['age']['mae']:.2f})"
    )
    n = st["conditions"][cond]["n_test"]
    naive = st["conditions"].get("unmasked_to_masked", {}).get("seed_mean")
    tail = (
        f"A model that never saw a mask does worse on masked faces (race "
        f"{_pct(naive['race']['estimate'])}, age MAE {naive['age']['estimate']:.2f}).\n"
        if naive
        else ""
    )
    read = (
        f"still read {join_words(readable)} from masked faces far above chance"
        if readable
        else "read none of sex, race and age far above chance"
    )
    # one sentence a line, each short enough for a front page
    return (
        f"**{word}.** On {n:,} real test faces ({run['date']}), a network trained on masked faces "
        f"{read}:\n{', '.join(figures)}.\n{tail}"
    )


def _unpublished(*folders: Path) -> str | None:
    """The block's text when a run it shows is not published yet, else None."""
    missing = [f.name for f in folders if not (f / "run.json").is_file()]
    return f"*(no published run `{'`, `'.join(missing)}` yet)*\n" if missing else None


def render_block(name: str, root: Path) -> str:
    if ".vs." in name:  # two published runs side by side (split_comparison)
        a, b = (root / REFERENCE / n for n in name.split(".vs.", 1))
        return _unpublished(a, b) or split_comparison(a, b)
    if name.endswith(".paper"):  # the paper's figures beside the run's
        from maskprivacy.analysis.paper_protocol import table

        folder = root / REFERENCE / name.removesuffix(".paper")
        if note := _unpublished(folder):
            return note
        run = json.loads((folder / "run.json").read_text())
        return table([(f"{run['name']} ({run['date']})", folder / "statistics.json")])
    if name.endswith(".short"):
        folder = root / REFERENCE / name.removesuffix(".short")
        return _unpublished(folder) or short_answer(folder)
    if name.endswith(".ladder"):  # the attacker ladder: the mask's cost by attacker strength
        folder = root / REFERENCE / name.removesuffix(".ladder")
        return _unpublished(folder) or ladder_block(folder)
    if name.endswith(".real"):  # real masks against painted ones and none (external sets)
        folder = root / REFERENCE / name.removesuffix(".real")
        return _unpublished(folder) or real_masks_block(folder)
    folder = root / REFERENCE / name
    if not (folder / "run.json").is_file():
        return (
            f"*(no published run `{name}` yet: see docs/results.md for the runs still to come)*\n"
        )
    return render_run(folder, (REFERENCE / name).as_posix())


def pages(root: Path) -> list[Path]:
    out: list[Path] = []
    for pattern in PAGES:
        out += sorted(root.glob(pattern))
    return [p for p in out if p.is_file()]


# ------------------------------------------------------------------------------------------
# Figures

# path in the repository -> (what it shows, the published run it is made from)
FIGURES = {
    "docs/img/answer.svg": ("answer", "cpu-study-tta"),
    "docs/img/mask-study.svg": ("study", "mask-study-cpu"),
    "docs/img/masks.png": ("masks", None),
    "docs/img/ladder.svg": ("ladder", "ladder-cpu"),
}
ANSWER_CONDITIONS = ("unmasked", "masked", "unmasked_to_masked")
ATTACKER_NAMES = {
    "CNN": "CNN trained on the faces",
    "face recognizer": "face recognizer + linear heads",
}


def mask_strip(image: Any, landmarks: Any, seed: int = 0, thumb: int = 180) -> Any:
    """One face unmasked and with every mask type drawn from its landmarks, side by side, each
    named under it (a PIL image). The face is cropped to a square around its landmarks first."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from maskprivacy.masks.choice import image_rng
    from maskprivacy.masks.geometry import MASK_TYPES
    from maskprivacy.masks.paint import render

    pts = np.asarray(landmarks, dtype=float)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    side = 1.5 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.12 * side
    box = (cx - side / 2, cy - side / 2)
    size = 224
    scale = size / side
    face = image.convert("RGB").transform(
        (size, size),
        Image.Transform.EXTENT,
        (box[0], box[1], box[0] + side, box[1] + side),
        Image.Resampling.BICUBIC,
    )
    lm = (pts - np.array(box)) * scale
    cells = [("no mask", face)]
    for t in MASK_TYPES:
        cells.append((t, render(face, lm, t, image_rng(seed, f"mask_strip:{t}")).image))
    font = ImageFont.load_default(size=max(11, thumb // 11))
    cap = thumb // 6
    strip = Image.new("RGB", (thumb * len(cells), thumb + cap), "white")
    draw = ImageDraw.Draw(strip)
    for j, (name, im) in enumerate(cells):
        strip.paste(im.resize((thumb, thumb), Image.Resampling.LANCZOS), (j * thumb, 0))
        w = draw.textlength(name, font=font)
        draw.text((j * thumb + (thumb - w) / 2, thumb + 3), name, fill=(40, 40, 40), font=font)
    return strip


def figure_bytes(kind: str, folder: Path | None) -> bytes:
    """The bytes of one figure of :data:`FIGURES`: ``answer`` (what each attacker reads from
    unmasked and masked faces, and a model that never saw a mask, with chance), ``study``
    (each mask set's own model against chance) from the published run in ``folder``, or
    ``masks`` (the demo set's portrait with every mask type)."""
    import io

    from maskprivacy.report import plots

    if kind == "masks":
        from maskprivacy.datasets.demo import base_faces

        image, landmarks = base_faces()[0]
        buf = io.BytesIO()
        mask_strip(image, landmarks).save(buf, format="png", optimize=True)
        return buf.getvalue()
    st = json.loads((folder / "statistics.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    if kind == "ladder":
        from maskprivacy.report.ladder import ladder_figure

        lad = st["ladder"]
        title = (
            f"The mask's cost by attacker: {lad['n_test']:,} real UTKFace test faces "
            f"({run['date']}), seed {lad['seed']}, 95% intervals"
        )
        return plots.svg_bytes(ladder_figure(lad, title))
    if kind == "study":
        from maskprivacy.report.study import levels_rows

        mat = st["study"]["matrix"]
        seeds = "one seed" if mat["n_seeds"] == 1 else f"mean of {mat['n_seeds']} seeds"
        rows = levels_rows(mat, ATTACKER_NAMES["CNN"])
        title = (
            f"Each mask set's own CNN (trained and tested on it): {mat['n_test']:,} real UTKFace "
            f"test faces, {seeds}, 95% intervals"
        )
    else:
        by = {ATTACKER_NAMES["CNN"]: st}
        if st.get("recognizer"):
            by[ATTACKER_NAMES["face recognizer"]] = st["recognizer"]
        rows = plots.condition_rows(by, st.get("condition_definitions", []), ANSWER_CONDITIONS)
        n = st["conditions"]["masked"]["n_test"]
        n_seeds = len(st["seeds"])
        seeds = "one seed" if n_seeds == 1 else f"mean of {n_seeds} seeds"
        title = f"{n:,} real UTKFace test faces ({run['date']}), {seeds}, 95% intervals"
    fig = plots.levels_figure(rows, st["chance"], title)
    return plots.svg_bytes(fig)


def _same_figure(path: Path, new: bytes) -> bool:
    """Whether the committed figure at ``path`` is ``new``: the same bytes, or for a PNG the
    same picture within rounding (a drawing's floats may differ in their last bit elsewhere)."""
    if not path.is_file():
        return False
    old = path.read_bytes()
    if old == new or path.suffix != ".png":
        return old == new
    import io

    import numpy as np
    from PIL import Image

    a, b = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB"), dtype=int) for x in (old, new))
    return a.shape == b.shape and float((np.abs(a - b) > 2).mean()) <= 0.001


def linked_figures(root: Path) -> list[str]:
    """The figures of :data:`FIGURES` that a page links to (from README.md or docs/*.md)."""
    text = "".join(p.read_text() for p in pages(root))
    return [f for f in FIGURES if Path(f).name in text and f"img/{Path(f).name}" in text]


def render_figures(root: Path, check: bool = False) -> list[Path]:
    """Make every figure a page links to; with ``check`` write nothing and return the stale
    ones. A figure whose run is not published is left as it is."""
    stale = []
    for rel in linked_figures(root):
        kind, run = FIGURES[rel]
        folder = root / REFERENCE / run if run else None
        if folder is not None and not (folder / "run.json").is_file():
            continue
        new = figure_bytes(kind, folder)
        path = root / rel
        if not _same_figure(path, new):
            stale.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(new)
    return stale


def render(root: Path, check: bool = False) -> list[Path]:
    """Fill every published block and make every linked figure; with ``check`` write nothing
    and return the stale pages and figures."""
    stale = []
    for page in pages(root):
        text = page.read_text()

        def fill(m: re.Match) -> str:
            return m.group(1) + render_block(m["name"], root) + m.group(4)

        new = BLOCK.sub(fill, text)
        if new != text:
            stale.append(page)
            if not check:
                page.write_text(new)
    return stale + render_figures(root, check)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m maskprivacy_workflow.published")
    ap.add_argument("--root", type=Path, default=Path("."), help="the repository (default: .)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="publish a finished run's metrics under results/reference/")
    a.add_argument("name")
    a.add_argument("--workdir", type=Path, default=Path("."), help="the run's folder")
    a.add_argument("--command", required=True, help="the command that made the run")
    a.add_argument("--machine", required=True, help="what it ran on")
    a.add_argument("--wall-min", type=float, default=None, help="wall time, minutes")
    a.add_argument("--note", default="", help="a sentence printed under the tables")
    r = sub.add_parser("render", help="fill the published blocks of README.md and docs/*.md")
    r.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    args = ap.parse_args(argv)
    if args.cmd == "add":
        out = add(
            args.name, args.workdir, args.root, args.command, args.machine, args.wall_min, args.note
        )
        print(f"published {out}; now: python -m maskprivacy_workflow.published render")
        return 0
    stale = render(args.root, check=args.check)
    if args.check and stale:
        names = ", ".join(str(p) for p in stale)
        print(
            f"stale published blocks or figures in {names}: run python -m "
            "maskprivacy_workflow.published render",
            file=sys.stderr,
        )
        return 1
    for p in stale:
        print(f"updated {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
