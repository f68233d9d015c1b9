"""The captions of every figure, one source for both reports: ``results/report.html`` (through
:func:`caption`) and Snakemake's report (``workflow/report/*.rst``, made by :func:`rst_files`
and checked against it by a test).

A caption is a title and a sentence. Its fields (``{condition}``, ``{seed}``, ...) come from the
figure's file name in the HTML report and from Snakemake's wildcards in the .rst templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RST = Path("workflow/report")


@dataclass(frozen=True)
class Caption:
    """``pattern``: the figure's name (file stem; Snakemake's ``figure`` wildcard may carry a
    folder) as a regular expression whose groups are the fields; ``jinja``: each field as the
    .rst template computes it from ``figure`` and ``snakemake.wildcards``."""

    rst: str  # the .rst file of Snakemake's report
    pattern: str
    title: str
    text: str
    jinja: tuple[tuple[str, str], ...] = ()

    def fields(self, name: str) -> dict[str, str] | None:
        m = re.fullmatch(self.pattern, name.rsplit("/", 1)[-1])
        return None if m is None else m.groupdict()


_GROUPS = 'figure[7:].split("_vs_")'
CAPTIONS = (
    Caption(
        "compare_fragments",
        r"verdict",
        "The answer",
        "for each attacker and attribute, does the mask protect it (yes: a significant change "
        "after which it is no longer read far above chance; no: still read far above chance; "
        "not shown: near chance, but the change is not significant), what it reads from masked "
        "and from unmasked faces, the change with its 95% interval over faces, and chance.",
    ),
    Caption(
        "compare_plots",
        r"forest",
        "Every change from the unmasked baseline",
        "each condition minus the baseline on the same test faces, for both attackers: sex and "
        "race accuracy in points, age MAE in years, each with its 95% interval over faces. A "
        "filled dot is significant after Holm, a hollow one is not; a dotted line marks the "
        "change that would leave the attribute at chance.",
    ),
    Caption(
        "compare_plots",
        r"comparison",
        "What each attacker reads",
        "sex and race accuracy (%) and age MAE (years) under every condition, the mean of the "
        "seeds' models with its 95% interval over faces; dashed: chance (always the training "
        "majority, or the training median age).",
    ),
    Caption(
        "compare_plots",
        r"learning_curves",
        "Learning curves",
        "every model (training set and seed) per epoch: the loss on the training (solid) and "
        "validation (dashed) faces, then validation sex and race accuracy (%) and age MAE "
        "(years); dotted: chance.",
    ),
    Caption(
        "compare_plots",
        r"groups_(?P<condition>.+)_vs_(?P<baseline>[^_]+)",
        "Group heat map",
        "whom the mask hides more: {condition} minus {baseline} in each race and age group (seed ensemble): sex and race "
        "accuracy in points, age MAE in years, the number of test faces in each cell; red: the "
        "group is read worse than under {baseline}.",
        (("condition", f"{_GROUPS}[0]"), ("baseline", f"{_GROUPS}[1]")),
    ),
    Caption(
        "compare_plots",
        r"study_(?P<attr>[a-z]+)_(?P<metric>[a-z]+)",
        "Mask study",
        "{attr} as read by models trained on each data set (rows) and tested on each "
        "(columns), on the same test faces (accuracy in %, MAE in years): the seed mean, and "
        "under it its difference from the baseline (framed).",
        (("attr", 'figure.split("_")[1]'),),
    ),
    Caption(
        "compare_plots",
        r"real_masks_(?P<set>\w+)",
        "Real masks",
        "on the external set {set}, what each model (one row each: trained on unmasked faces, "
        "which never saw a mask, and on masked faces; the recognizer's too where it ran) reads "
        "from photos with a real mask (red), without one (blue) and with each painted mask set "
        "(orange), each with its 95% interval; dashed: the set's own chance level (its majority "
        "class).",
        (("set", 'figure.split("_", 2)[2]'),),
    ),
    Caption(
        "compare_fragments",
        r"real_masks",
        "Real masks",
        "for each external set with real masks and each attacker: what a model trained on masked "
        "faces reads with a real mask, without one and with each painted mask, and whether painted "
        "masks overstate or understate what a real mask costs the attacker.",
    ),
    Caption(
        "compare_plots",
        r"rejects_(?P<set>\w+)",
        "Photos align or mask could not use",
        "on the external set {set}, each photo as it came in, with the reason it was rejected "
        "(no_face: no detector found a face, also on a padded copy and, for a photo with a real "
        "mask, at a lowered threshold; landmarks_implausible; too_small; decode_error).",
        (("set", 'figure.split("_", 1)[1]'),),
    ),
    Caption(
        "compare_plots",
        r"masks|contact_sheet",
        "The masks",
        "faces of this run with every mask type drawn from their landmarks; the types the mask "
        "set draws are starred.",
    ),
    Caption(
        "evaluate_plots",
        r"confusion_(?P<attr>sex|race)_(?P<condition>.+)_seed(?P<seed>\d+)",
        "Errors by class",
        "the confusion matrix of {attr} under {condition}, the model of seed {seed}: rows the "
        "true class, columns the prediction, coloured by the share of each true class, counts "
        "written in.",
        (
            ("attr", 'figure.split("_")[1]'),
            ("condition", "snakemake.wildcards.condition"),
            ("seed", "snakemake.wildcards.seed"),
        ),
    ),
    Caption(
        "evaluate_plots",
        r"age_(?P<condition>.+)_seed(?P<seed>\d+)",
        "Age errors",
        "predicted against true age (years) under {condition}, the model of seed {seed}, with "
        "the identity line; right: each face's error.",
        (("condition", "snakemake.wildcards.condition"), ("seed", "snakemake.wildcards.seed")),
    ),
    Caption(
        "ladder",
        r"ladder",
        "The mask's cost by attacker strength",
        "for each attacker of the ladder (ladder.rungs, one seed, and the recognizer's heads), "
        "the mask's cost (masked minus unmasked on the same test faces, 95% bootstrap interval) "
        "against its unmasked accuracy (age: MAE, stronger to the right); the line is a weighted "
        "straight-line fit with its 95% band; the red diamond is the GPU run of 2026-11-27 "
        "(drawn, not fitted), the orange star the trend where its masked score meets the "
        "paper's (the paper gives no unmasked model). A line that nears zero cost to the "
        "right: stronger attackers lose less to the mask.",
    ),
    Caption(
        "data_rejects",
        r"rejects",
        "Inputs the align and mask stages rejected",
        "each as it came in, with its reason (no_face: no detector found a face with a face's "
        "landmarks; landmarks_implausible: faces found, none with landmarks shaped like a "
        "face's; decode_error; mask_error). results/data/report.json counts every reject.",
    ),
    Caption(
        "data_identities",
        r"identities",
        "Identities",
        "the largest groups of faces joined as one person by their dlib descriptors, and pairs "
        "just under and just over split.identity_threshold.",
    ),
    Caption(
        "data_labels",
        r"labels",
        "Labels of the faces that reached the split",
        "counts per sex, race and age group in the train, validation and test parts.",
    ),
    Caption(
        "data_near_duplicates",
        r"near_duplicates",
        "Near duplicates",
        "pairs of images whose perceptual hashes differ by few bits, on both sides of "
        "download.near_threshold; copies of one photo are kept on one side of the split.",
    ),
)


def find(name: str) -> tuple[Caption, dict[str, str]] | None:
    """The caption of the figure ``name`` (a file stem) and its fields; None if it has none."""
    for c in CAPTIONS:
        fields = c.fields(name)
        if fields is not None:
            return c, fields
    return None


def caption(name: str) -> str:
    """'Title: sentence.' for the figure ``name`` (a file stem); the name itself if unknown."""
    hit = find(name)
    if hit is None:
        return name
    c, fields = hit
    return f"{c.title}: {c.text.format(**fields)}"


def rst_text(rst: str) -> str:
    """The .rst template of Snakemake's report ``workflow/report/<rst>.rst``: each caption of
    that file, chosen by the figure's name where there are several."""
    mine = [c for c in CAPTIONS if c.rst == rst]
    head = [
        ".. Made by maskprivacy.report.captions (python -m maskprivacy.report.captions):",
        "   edit the captions there, not here.",
        "",
    ]

    def body(c: Caption) -> str:
        jinja = {k: "{{ " + v + " }}" for k, v in c.jinja}
        return f"**{c.title}**: {c.text.format(**jinja)}"

    if len(mine) == 1:
        return "\n".join([*head, body(mine[0]), ""])
    lines = [*head, '{% set figure = snakemake.wildcards.figure.split("/")[-1] %}']
    for i, c in enumerate(mine):
        lines += [f"{{% {'if' if i == 0 else 'elif'} {_jinja_test(c.pattern)} %}}", body(c)]
    lines += ["{% else %}", "``{{ figure }}``.", "{% endif %}", ""]
    return "\n".join(lines)


def _jinja_test(pattern: str) -> str:
    """A Jinja test for a caption's pattern: one of its words, or its literal head."""
    if re.fullmatch(r"\w+(\|\w+)*", pattern):
        return f"figure in {pattern.split('|')!r}"
    head = re.split(r"[(\\\[.]", pattern, maxsplit=1)[0]
    return f'figure == "{head}"' if head == pattern else f'figure.startswith("{head}")'


def rst_files() -> dict[str, str]:
    """Every generated .rst file: its path (under ``workflow/report``) and text."""
    names = dict.fromkeys(c.rst for c in CAPTIONS)
    return {f"{RST}/{n}.rst": rst_text(n) for n in names}


def main(argv: list[str] | None = None) -> int:
    """Write the .rst captions (``--check``: exit 1 if one differs) from the repository root."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    stale = [p for p, t in rst_files().items() if not Path(p).is_file() or Path(p).read_text() != t]
    if "--check" in args:
        for p in stale:
            print(f"{p} is stale: run python -m maskprivacy.report.captions", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        Path(p).write_text(rst_files()[p])
        print(f"updated {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
