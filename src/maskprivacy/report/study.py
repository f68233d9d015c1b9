"""The report's "Which masks protect?" section: the train-set x test-set matrix as heat maps and
a table, one sentence per mask set, and how each mask type covers the face.

The numbers come from :func:`maskprivacy.analysis.matrix.study_matrix` and
:func:`maskprivacy.masks.coverage.coverage_summary` / :func:`~maskprivacy.masks.coverage.set_coverage`;
this module draws and writes them, and :func:`build` makes the whole section for ``compare``. Heat maps: one PNG per metric (sex accuracy, race
accuracy, age MAE), rows the training set, columns the test set, each cell the seed mean with its
difference from the baseline underneath; with ``demo=True`` they carry the red DEMO banner.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from maskprivacy.analysis import matrix as study_matrix
from maskprivacy.analysis.answer import fmt_p
from maskprivacy.analysis.matrix import ATTRS, METRIC
from maskprivacy.core.io import save_figure
from maskprivacy.masks import coverage as mask_coverage
from maskprivacy.masks import sets as mask_sets
from maskprivacy.masks.coverage import LANDMARK_GROUPS
from maskprivacy.report.markup import ci, img, table
from maskprivacy.report.plots import demo_banner

# per attribute: title, scale of the shown numbers, digits, colour map (bright = read better)
PANEL = {
    "sex": ("sex accuracy (%)", 100.0, 1, "viridis"),
    "race": ("race accuracy (%)", 100.0, 1, "viridis"),
    "age": ("age MAE (years)", 1.0, 2, "viridis_r"),
}
STATUS = {
    "protects": "protects",
    "significant_but_readable": "significant, still readable",
    "helps_the_attacker": "easier to read",
    "not_significant": "not significant",
}


def _axes(matrix: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The training sets (rows) and test sets (columns) the matrix has, in its order."""
    cells = matrix["cells"]
    rows = [s for s in matrix["data_sets"] if s in cells]
    cols = [s for s in matrix["data_sets"] if any(s in row for row in cells.values())]
    return rows, cols


def heatmap_figure(matrix: Mapping[str, Any], attr: str, demo: bool = False) -> Figure:
    """One metric over (training set, test set): the seed mean, and under it the paired
    difference from the baseline (the baseline cell is framed). Missing cells stay blank."""
    title, scale, digits, cmap = PANEL[attr]
    rows, cols = _axes(matrix)
    grid = np.full((len(rows), len(cols)), np.nan)
    text = [[""] * len(cols) for _ in rows]
    for i, tr in enumerate(rows):
        for j, te in enumerate(cols):
            cell = matrix["cells"][tr].get(te)
            if cell is None:
                continue
            grid[i, j] = scale * cell["metrics"][attr]["estimate"]
            text[i][j] = f"{grid[i, j]:.{digits}f}"
            if "difference" in cell:
                text[i][j] += f"\n{scale * cell['difference'][attr]['difference']:+.{digits}f}"
    fig = Figure(figsize=(1.3 * len(cols) + 2.8, 0.9 * len(rows) + 1.8))
    ax = fig.subplots()
    im = ax.imshow(grid, cmap=cmap, aspect="auto")
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(len(rows)):
        for j in range(len(cols)):
            if text[i][j]:
                dark = (grid[i, j] < mid) == (cmap == "viridis")
                colour = "white" if dark else "black"
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8, color=colour)
    base = matrix["baseline"]
    if base["train"] in rows and base["test"] in cols:
        i, j = rows.index(base["train"]), cols.index(base["test"])
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    ax.set_title(f"{title}, mean of {matrix['n_seeds']} seed(s); under it: minus the baseline")
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    bar.set_label(title, fontsize=8)
    fig.tight_layout()
    if demo:
        demo_banner(fig)
    return fig


def heatmaps_png(
    matrix: Mapping[str, Any], folder: str | os.PathLike, demo: bool = False
) -> list[Path]:
    """``study_<attr>_<metric>.png`` for sex, race and age in ``folder``; returns the paths."""
    paths = []
    for attr in ATTRS:
        path = Path(folder) / f"study_{attr}_{METRIC[attr]}.png"
        save_figure(heatmap_figure(matrix, attr, demo), path)
        paths.append(path)
    return paths


def levels_rows(matrix: Mapping[str, Any], attacker: str = "CNN") -> list[dict[str, Any]]:
    """Each data set's own model (trained and tested on it) as a row of
    :func:`maskprivacy.report.plots.levels_figure`: the baseline first, then every mask set."""
    rows = []
    for s in matrix["data_sets"]:
        cell = matrix["cells"].get(s, {}).get(s)
        if cell is not None:
            base = s == matrix["baseline"]["test"]
            label = f"{s} (no mask)" if base else f"{s}"
            rows.append({"label": label, "attacker": attacker, **cell["metrics"]})
    return rows


def matrix_table(matrix: Mapping[str, Any]) -> str:
    """Every (training set, test set): each metric's seed mean [95% CI], and its paired
    difference from the baseline [95% CI] with the Holm-adjusted p over faces and the verdict."""
    rows = []
    for tr, row in matrix["cells"].items():
        for te, cell in row.items():
            line: list[Any] = [tr, te, cell["condition"]]
            for attr in ATTRS:
                _, scale, digits, _ = PANEL[attr]
                m = cell["metrics"][attr]
                line.append(ci(m["estimate"], m["low"], m["high"], scale, digits))
                d = cell.get("difference", {}).get(attr)
                line.append(
                    "baseline"
                    if d is None
                    else f"{ci(d['difference'], d['low'], d['high'], scale, digits)}; "
                    f"p = {fmt_p(d['p_images_holm'])}; {STATUS[d['status']]}"
                )
            rows.append(line)
    header = ["trained on", "tested on", "condition"]
    for attr in ATTRS:
        header += [PANEL[attr][0], f"{attr}: minus baseline"]
    return table(rows, header)


def coverage_table(
    coverage: Mapping[str, Mapping[str, Any]], sets: Mapping[str, Mapping[str, Any]]
) -> str:
    """Per mask type, then per set (its types weighted as drawn): the share of the face left
    visible, of each landmark group under the mask, and of faces passing the geometry check."""
    rows = []
    for name, c in [*coverage.items(), *sets.items()]:
        what = (
            "set: " + ", ".join(f"{t} {100 * p:.0f}%" for t, p in c["types"].items())
            if "types" in c
            else "type"
        )
        rows.append(
            [
                name,
                what,
                f"{100 * c['face_visible']:.0f}",
                *[f"{100 * c['groups'][g]:.0f}" for g in LANDMARK_GROUPS],
                f"{100 * c['geometry_pass']:.0f}",
            ]
        )
    header = [
        "mask",
        "what",
        "face visible %",
        *[f"{g.replace('_', ' ')} covered %" for g in LANDMARK_GROUPS],
        "geometry check pass %",
    ]
    return table(rows, header)


def html_section(
    matrix: Mapping[str, Any],
    sentences: Mapping[str, str],
    heatmaps: Sequence[str | os.PathLike],
    coverage: Mapping[str, Mapping[str, Any]] | None = None,
    set_coverage: Mapping[str, Mapping[str, Any]] | None = None,
    n_coverage_faces: int | None = None,
) -> str:
    """The "Which masks protect?" section of the HTML report."""
    base = matrix["baseline"]
    said = "".join(f"<li>{html.escape(s)}</li>" for s in sentences.values())
    figures = "".join(img(Path(p)) for p in heatmaps)
    cov = ""
    if coverage:
        faces = f"{n_coverage_faces:,} test faces" if n_coverage_faces else "the test faces"
        cov = (
            "<h3>What each mask covers</h3><p>Each mask type drawn from the landmarks of "
            f"{html.escape(faces)}: the share of the face (inside the jaw line and the brows) "
            "it leaves visible, the share of each landmark group under it (within the geometry "
            "check's tolerance, so a landmark on its edge counts) and the share of faces that "
            "pass the geometry check (nose, mouth and chin covered, eyes clear).</p>"
            + coverage_table(coverage, set_coverage or {})
        )
    return (
        "<h2>Which masks protect?</h2>"
        f"<p>Models trained on each data set (rows) and tested on each (columns), on the same "
        f"{matrix['n_test']:,} test faces, each the mean of {matrix['n_seeds']} training run(s); "
        f"differences are paired against the baseline ({html.escape(base['condition'])}: "
        f"trained on {html.escape(base['train'])}, tested on {html.escape(base['test'])}), "
        "with 95% bootstrap intervals over faces and p-values Holm-adjusted over every test of "
        "this report. A mask is said to protect an attribute only where the change is "
        "significant and the attribute is no longer read far above chance.</p>"
        f"<ul>{said}</ul>{figures}{matrix_table(matrix)}{cov}"
    )


def build(
    statistics: Mapping[str, Any],
    conditions: Sequence[Mapping[str, str]],
    sets: Mapping[str, Any],
    faces: Sequence[Any],
    size: tuple[int, int],
    plots_dir: str | os.PathLike,
    demo: bool = False,
    max_faces: int | None = None,
) -> tuple[dict[str, Any], str]:
    """The study from compare's ``statistics``: the matrix, the sentences, the coverage of every
    mask type on ``faces`` (the test faces' landmarks in the aligned frame of ``size``: all of
    them, or ``max_faces`` evenly spaced; UTKFace's 2,178 test faces take 23 s for the five types
    on one core), heat maps written into ``plots_dir/study`` (apart from the
    report's gallery of plots: the section shows them).

    Returns ``(study, html)``: ``study`` for statistics.json (``matrix``, ``sentences``,
    ``coverage``: ``{"types", "sets", "n_faces"}``), ``html`` the report's section.
    """
    m = study_matrix.study_matrix(statistics, conditions, mask_sets.data_sets(sets))
    n = len(faces) if max_faces is None else min(max_faces, len(faces))
    pick = np.unique(np.linspace(0, len(faces) - 1, n).round())
    sample = [faces[int(i)] for i in pick] if len(faces) else []
    cov = mask_coverage.coverage_summary(sample, size) if sample else None
    set_cov = mask_coverage.set_coverage(cov, sets) if cov else None
    text = study_matrix.sentences(m, mask_sets.set_names(sets), set_cov)
    paths = heatmaps_png(m, Path(plots_dir) / "study", demo)
    study = {
        "matrix": m,
        "sentences": text,
        "coverage": {"types": cov, "sets": set_cov, "n_faces": len(sample)},
    }
    return study, html_section(m, text, paths, cov, set_cov, len(sample))
