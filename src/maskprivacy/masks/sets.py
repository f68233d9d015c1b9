"""Mask sets: several masked data sets drawn from the same aligned faces and landmarks.

``mask.sets`` names each masked data set and the mask types it draws, with weights::

    sets:
      paper: {paper: 1}
      surgical: {surgical: 1}
      mixed: {surgical: 1, n95: 1, kn95: 1, cloth: 1}

Each set is its own ``mask`` job per shard (``data/mask/<set>/<shard>/``); every set reuses the
landmarks ``align`` computed once. A face's draw (type, colour, texture) depends on ``mask.seed``,
the file name and the set's weights, not on the set's name: a set ``{paper: 1}`` draws the same
images whatever it is called. The name ``unmasked`` is reserved for the aligned faces themselves;
``evaluate.conditions`` names training and test sets among ``unmasked`` and the sets
(:func:`data_sets`; the schema and :func:`maskprivacy.core.params.validate` check them;
:func:`study_conditions` builds the full train-set x test-set matrix).

Plain Python (no numpy): the Snakefile uses it to name the jobs. The types and weights are
checked by the schema and where they are drawn (:func:`maskprivacy.masks.choice.normalise_choice`);
how each type covers a face is :mod:`maskprivacy.masks.coverage`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

UNMASKED = "unmasked"  # the aligned faces: a data set name no mask set may take
# a set name is a path part and a Snakemake wildcard value: a letter, then letters, digits or _
NAME = re.compile(r"[a-z][a-z0-9_]*")


def set_names(sets: Any) -> list[str]:
    """The names of ``mask.sets``, in its order, else ``ValueError`` saying what is wrong."""
    if not isinstance(sets, Mapping) or not sets:
        raise ValueError(
            "mask.sets: expected a mapping of set name -> {mask type: weight}, "
            "e.g. {masked: {paper: 1}}"
        )
    for name in sets:
        if name == UNMASKED:
            raise ValueError(
                f"mask.sets: {UNMASKED!r} is reserved for the faces without a mask; "
                "name the set otherwise"
            )
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(
                f"mask.sets: set name {name!r} must be a lower-case letter followed by "
                "lower-case letters, digits or _ (it names folders and jobs)"
            )
    return list(sets)


def set_params(mask: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The ``mask`` stage's parameters for one set: the section with ``sets`` replaced by that
    set's ``types`` (what one ``mask`` job draws)."""
    if name not in set_names(mask["sets"]):
        raise ValueError(f"mask.sets has no set {name!r}; sets: {', '.join(mask['sets'])}")
    return {**{k: v for k, v in mask.items() if k != "sets"}, "types": mask["sets"][name]}


def data_sets(sets: Any) -> list[str]:
    """Every data set a model can be trained or tested on: ``unmasked``, then the mask sets."""
    return [UNMASKED, *set_names(sets)]


def used_sets(sets: Any, conditions: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """The sets of ``mask.sets`` some condition trains or tests on, in ``mask.sets``' order: the
    ones drawn (a set no condition names costs nothing; a preset given with ``--configfile``
    keeps the sets of params.yaml beside its own, and those are not drawn)."""
    named = {c[role] for c in conditions for role in ("train", "test")}
    return {s: sets[s] for s in set_names(sets) if s in named}


def study_conditions(sets: Any) -> list[dict[str, str]]:
    """Every (training set, test set) pair of ``unmasked`` and the sets, as evaluate conditions:
    a pair of one set is named after it, others ``<train>_to_<test>``."""
    names = data_sets(sets)
    return [
        {"name": train if train == test else f"{train}_to_{test}", "train": train, "test": test}
        for train in names
        for test in names
    ]


def by_set(paths: Iterable[str | Path]) -> dict[str, list[str]]:
    """Per-shard files of the mask stage (``data/mask/<set>/<shard>/<file>``) grouped by set, in
    the order given."""
    out: dict[str, list[str]] = {}
    for p in paths:
        out.setdefault(Path(p).parent.parent.name, []).append(str(p))
    return out
