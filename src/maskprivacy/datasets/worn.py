"""Real masks worn in an external test set's photos: which photos, and which version they are.

An external set may say per photo whether a real mask is worn (its labels' ``masked`` column,
:mod:`maskprivacy.datasets.external`): the manifest then has ``worn`` (1 worn, 0 not, empty
where the row does not say), ``mask_type`` (``surgical``, ``n95``, ...; ``worn`` where only
"yes" is known, empty without a mask) and, where given, ``person``.

The photos split into versions (:func:`version_rows`):

- :data:`WORN` (``worn``): the photos with a real mask, scored as they are: never painted over;
- ``unmasked`` and each mask set of ``mask.sets``: the photos without a mask (or without the
  ``masked`` label), as aligned and with each synthetic mask painted on them, as for any set.

A set without the column has no ``worn`` version, and every photo is in the others, as before.
"""

from __future__ import annotations

import pandas as pd

WORN = "worn"  # the version of the photos that wear a real mask (and the manifest's column)
MASK_TYPE = "mask_type"  # the manifest's column: the worn mask's type ("" without a mask)
PERSON = "person"  # the manifest's column: who the photo shows, where the set says
UNSPECIFIED = "worn"  # mask_type of a photo whose label says only that a mask is worn


def worn_flags(manifest: pd.DataFrame) -> pd.Series:
    """Per manifest row: does the photo wear a real mask (False where the set does not say)."""
    if WORN not in manifest.columns:
        return pd.Series(False, index=manifest.index)
    return pd.to_numeric(manifest[WORN], errors="coerce").fillna(0).astype(int).eq(1)


def worn_files(manifest: pd.DataFrame) -> frozenset[str]:
    """The file names of the photos that wear a real mask."""
    return frozenset(manifest.loc[worn_flags(manifest), "file"])


def has_worn(manifest: pd.DataFrame) -> bool:
    return bool(worn_flags(manifest).any())


def version_rows(manifest: pd.DataFrame, version: str) -> pd.DataFrame:
    """The manifest's photos of ``version``: the worn ones for :data:`WORN`, the others for
    ``unmasked`` and every mask set (all photos for a set without real masks)."""
    worn = worn_flags(manifest)
    return manifest[worn if version == WORN else ~worn]
