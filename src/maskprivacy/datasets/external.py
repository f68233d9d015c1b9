"""External test sets: faces that are not UTKFace, with their labels in a file of any convention.

An external set is a folder or an archive (.tar.gz, .zip, ...: extracted with the download
stage's safe extraction and limits) of face images, and a labels file with one row per image: a
column naming the file (its path inside the folder or archive; a path that only ends the same
way, such as ``val/1.jpg`` for ``fairface/val/1.jpg``, matches too when only one file does) and
any of sex, age, age group and race, under any column names and values that the label map knows.

The labels file is a CSV, a TSV (``.tsv``, ``.tab``, or a ``.txt`` whose first line has tabs
and no comma, as Adience's ``fold_0_data.txt``) or a JSON file (a list of records, or an object
keyed by file name whose values are the labels); ``format`` says which when the name does not.
``file_template`` builds the file name from several columns (Adience:
``faces/{user_id}/coarse_tilt_aligned_face.{face_id}.{original_image}``). ``unknown`` lists, per
label column, values that mean "unknown" (Adience's gender ``u``): such a value leaves that
label out for the row, which keeps its other labels (a row left with none is ``no_labels``).

The label map (:data:`LABEL_MAP`, ``src/maskprivacy/data/external_label_map.csv``; extended per
set with ``columns`` and ``values``) maps:

- column names, case and spaces ignored: ``file``/``filename``/``image``/``path``/... to
  ``file``, ``gender`` to ``sex``, ``ethnicity`` to ``race``, ``age_range``/``age_bin`` to
  ``age_group``; a column named exactly as the canonical name wins over an alias;
- sex: ``Male``/``M``/``man``/``0`` to male, ``Female``/``F``/``woman``/``1`` to female (0 and 1
  in UTKFace's convention: 0 = male);
- race: UTKFace's five (names or indices 0-4) and FairFace's seven: White, Black, East Asian and
  Southeast Asian (-> Asian), Indian, Middle Eastern and Latino_Hispanic (-> Others, which
  UTKFace describes as "Hispanic, Latino, Middle Eastern");
- values are compared in lower case with ``_``, ``-`` and runs of spaces read as one space.

Ages (in ``age`` or ``age_group``) are a number of years (exact: scored by MAE), or a range:
``20-29``, ``(25, 32)`` or ``(25-32)`` (Adience), ``25 to 32``, ``more than 70`` / ``over 70`` /
``70+`` (70 to 116, UTKFace's oldest): scored as a group accuracy and as the error to the range
(:mod:`maskprivacy.analysis.external`). A row may give both an exact age and a range; they must
agree.

Every CSV row and every file ends in exactly one place: the manifest (a kept image with its row)
or the rejects table (stage ``external``): ``no_file_name`` (a row without a file),
``file_missing`` (a row whose file is not in the set), ``ambiguous_file`` (a row whose path ends
several files), ``duplicate_row`` (a file listed again with the same labels; the first row is
kept), ``duplicate_row_conflict`` (a file listed again with other labels: every row of it),
``unknown_label`` (a value the map does not know, or an age outside 0-116), ``label_conflict``
(an exact age outside the row's range), ``no_labels`` (a row with no label at all),
``no_label_row`` (a file no row names), ``not_an_image_name``, ``duplicate_name`` (two paths
that flatten to one name), ``unreadable``, and the listing's reasons for links and special files
(see :func:`maskprivacy.datasets.ingest.list_entries`). A file named by a rejected row is
accounted for by that row. Decoding is left to ``align``, as for UTKFace.

Images are copied flat into the output folder (``a/b.jpg`` becomes ``a__b.jpg``) so that the
``align`` and ``mask`` stages read them as they read UTKFace's; the manifest has ``file`` (that
flat name), ``sex`` (0 male, 1 female), ``race`` (0-4, UTKFace's order), ``age`` (exact years),
``age_low``/``age_high`` (the range, inclusive), each empty when the set does not give it, and
``sha256``, ``source`` (the path in the set) and ``row`` (the CSV line).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.core.io import rejects_frame, sha256_file, write_table
from maskprivacy.core.labels import AGE_MAX, RACES, SEXES
from maskprivacy.core.plumbing import atomic_dir, remove_stale
from maskprivacy.datasets.archives import ArchiveLimits, archive_kind, safe_extract
from maskprivacy.datasets.ingest import list_entries, not_an_image, reject
from maskprivacy.datasets.worn import MASK_TYPE, PERSON, WORN

STAGE = "external"
LABEL_MAP = "external_label_map.csv"
CANONICAL = ("file", "sex", "age", "age_group", "race", "masked", "person")
LABELS = ("sex", "race", "age", "age_group")  # what an attacker reads: a row needs one of them
SET_LABELS = (*LABELS, "masked")  # labels a set may give for every photo (set_labels)
MANIFEST_COLUMNS = [
    "file",
    "sex",
    "race",
    "age",
    "age_low",
    "age_high",
    WORN,
    MASK_TYPE,
    PERSON,
    "sha256",
    "source",
    "row",
]
NO_MASK = "none"  # the masked label's value for a photo without a mask
FLAT_SEP = "__"

_RANGE = re.compile(r"^\(?\s*(\d+)\s*(?:-|\u2013|,|to)\s*(\d+)\s*\)?$")
_OVER = re.compile(r"^(?:more than|over|above|>=?)\s*(\d+)$|^(\d+)\s*\+$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


class LabelValueError(ValueError):
    """A label value that the map does not know; the message says which and why."""


def normalise(value: Any) -> str:
    """A label value or column name as the map compares it: lower case, ``_``/``-``/spaces as
    one space, a whole number written as a float (``1.0``) as the integer."""
    text = re.sub(r"[\s_\-]+", " ", str(value)).strip().lower()
    return re.sub(r"^(\d+)\.0+$", r"\1", text)


def _column_key(name: str) -> str:
    return normalise(name).replace(" ", "_")


@dataclass(frozen=True)
class LabelMap:
    """Column names and label values of other conventions, mapped to UTKFace's."""

    columns: Mapping[str, str]  # column key -> canonical column
    sex: Mapping[str, int]  # normalised value -> 0 male / 1 female
    race: Mapping[str, int]  # normalised value -> index of RACES
    chosen: Mapping[str, str]  # canonical column -> the set's column name (overrides)
    unknown: Mapping[str, frozenset[str]] = field(default_factory=dict)  # column -> "unknown"s
    masked: Mapping[str, str] = field(default_factory=dict)  # value -> mask type, worn or none
    fixed: Mapping[str, str] = field(default_factory=dict)  # label -> its value for every photo

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        columns: Mapping[str, str] | None = None,
        values: Mapping[str, Mapping[str, str]] | None = None,
        unknown: Mapping[str, Any] | None = None,
        set_labels: Mapping[str, Any] | None = None,
    ) -> LabelMap:
        """The committed table (or ``path``), with a set's ``columns`` (canonical name -> its
        column), ``values`` (attribute -> {its value: a sex or race name or index}) and
        ``unknown`` (canonical label column -> the values that mean "unknown": a row with one
        keeps its other labels, e.g. ``{sex: [u]}`` for Adience). ``values`` may also map the
        ``masked`` column's values: to a mask type (``surgical``, ...: worn), ``worn`` (a mask,
        type not said) or ``none``."""
        if path is None:
            table = pd.read_csv(
                resources.files("maskprivacy") / "data" / LABEL_MAP,
                dtype=str,
                keep_default_na=False,
            )
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        maps: dict[str, dict[str, Any]] = {"column": {}, "sex": {}, "race": {}, "masked": {}}
        for kind, value, label in zip(table["kind"], table["value"], table["label"], strict=True):
            if kind not in maps:
                raise ValueError(f"{path or LABEL_MAP}: unknown kind {kind!r}")
            maps[kind][_column_key(value) if kind == "column" else normalise(value)] = label
        for attr, given in (values or {}).items():
            if attr not in ("sex", "race", "masked"):
                raise ValueError(
                    f"values: only sex, race and masked values can be mapped, not {attr!r}"
                )
            maps[attr].update({normalise(k): str(v) for k, v in given.items()})
        chosen = dict(columns or {})
        strange = sorted(set(chosen) - set(CANONICAL))
        if strange:
            raise ValueError(f"columns: {strange} are not among {list(CANONICAL)}")
        unknown_sets = {}
        for attr, given in (unknown or {}).items():
            if attr not in LABELS:
                raise ValueError(f"unknown: {attr!r} is not a label column {list(LABELS)}")
            given = [given] if isinstance(given, str | int) else list(given)
            unknown_sets[attr] = frozenset(normalise(v) for v in given)
        fixed = {str(k): str(v).strip() for k, v in (set_labels or {}).items()}
        strange = sorted(set(fixed) - set(SET_LABELS))
        if strange:
            raise ValueError(f"set_labels: {strange} are not among {list(SET_LABELS)}")
        out = cls(
            fixed=fixed,
            unknown=unknown_sets,
            columns=maps["column"],
            sex={k: _index(v, SEXES, "sex") for k, v in maps["sex"].items()},
            race={k: _index(v, RACES, "race") for k, v in maps["race"].items()},
            chosen=chosen,
            masked={k: _mask_type(v) for k, v in maps["masked"].items()},
        )
        for attr, raw in fixed.items():  # a value the map does not know is the config's error
            try:
                _mapped(out, attr, raw)
            except LabelValueError as err:
                raise ValueError(f"set_labels.{attr}: {err}") from err
        return out

    def resolve_columns(self, header: list[str], where: str) -> dict[str, str]:
        """Canonical column -> the CSV's column; a column named exactly as the canonical name
        wins over an alias; two aliases of one name, or no file column, are errors."""
        found: dict[str, list[str]] = {}
        for col in header:
            canon = self.columns.get(_column_key(col))
            if canon is not None:
                found.setdefault(canon, []).append(col)
        out = {}
        for canon, cols in found.items():
            exact = [c for c in cols if _column_key(c) == canon]
            if len(exact) == 1 or len(cols) == 1:
                out[canon] = (exact or cols)[0]
            else:
                out[canon] = ""  # ambiguous unless chosen below
        for canon, col in self.chosen.items():
            if col not in header:
                raise ValueError(
                    f"{where}: columns.{canon} names {col!r}, not a column of {header}"
                )
            out[canon] = col
        ambiguous = sorted(c for c, col in out.items() if not col)
        if ambiguous:
            raise ValueError(
                f"{where}: several columns read as {ambiguous} ({[found[c] for c in ambiguous]}); "
                "say which with the set's `columns` (e.g. columns: {file: image_path})"
            )
        if "file" not in out:
            raise ValueError(
                f"{where}: no column names the image file (columns: {header}); name it with the "
                "set's `columns: {file: <column>}`"
            )
        if not set(out) & set(LABELS) and not set(self.fixed) & set(LABELS):
            raise ValueError(
                f"{where}: no label column (sex, age, age group or race) among {header}; map "
                "one with the set's `columns`, or give one for every photo with `set_labels`"
            )
        return out

    def mask(self, raw: str) -> str:
        """A ``masked`` value as a mask type (``surgical``, ...), ``worn`` (a mask, type not
        said) or ``none``; raises :class:`LabelValueError` for a value the map does not know."""
        key = normalise(raw)
        if key not in self.masked:
            raise LabelValueError(
                f"masked value {raw!r} is not in the label map (known: {sorted(self.masked)}); "
                f"add it with the set's `values: {{masked: {{{raw!r}: <a mask type such as "
                "surgical, n95, kn95, cloth; worn (a mask, type not said); or none>}}`"
            )
        return self.masked[key]

    def value(self, attr: str, raw: str) -> int:
        """The index of a sex or race value, or raise :class:`LabelValueError`."""
        table = self.sex if attr == "sex" else self.race
        key = normalise(raw)
        if key not in table:
            raise LabelValueError(
                f"{attr} value {raw!r} is not in the label map (known: {sorted(table)}); add it "
                f"with the set's `values: {{{attr}: {{{raw!r}: <label>}}}}`"
            )
        return table[key]


def _mask_type(label: str) -> str:
    """A label map's ``masked`` label: a mask type in lower case, ``worn`` or ``none``."""
    text = normalise(label)
    if not text or not re.fullmatch(r"[a-z0-9 ]+", text):
        raise ValueError(f"label map: masked label {label!r} is not a mask type, worn or none")
    return text.replace(" ", "_")


def _index(label: str, names: tuple[str, ...], attr: str) -> int:
    text = normalise(label)
    lowered = [n.lower() for n in names]
    if text in lowered:
        return lowered.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    raise ValueError(f"label map: {attr} label {label!r} is not one of {list(names)}")


def parse_age(raw: str) -> tuple[float | None, int | None, int | None]:
    """``(exact, low, high)`` of an age cell: a number of years is exact (no range), a range
    gives ``low``/``high`` (inclusive) and no exact age. Raises :class:`LabelValueError`."""
    text = re.sub(r"\s+", " ", str(raw)).strip().lower()
    if _NUMBER.match(text):
        age = float(text)
        if age > AGE_MAX:
            raise LabelValueError(f"age {raw!r} is outside 0-{AGE_MAX}")
        return age, None, None
    if m := _RANGE.match(text):
        low, high = int(m.group(1)), int(m.group(2))
    elif m := _OVER.match(text):
        low, high = int(m.group(1) or m.group(2)), AGE_MAX
    else:
        raise LabelValueError(
            f"age {raw!r} is neither a number of years nor a range (20-29, (25, 32), more than 70)"
        )
    if not low <= high <= AGE_MAX:
        raise LabelValueError(f"age range {raw!r} is not low <= high within 0-{AGE_MAX}")
    return None, low, high


class _Conflict(LabelValueError):
    """Two labels of one row that cannot both hold (an exact age outside the row's range)."""


class _NoLabels(LabelValueError):
    """A row that gives no label at all."""


def _mapped(lmap: LabelMap, attr: str, raw: str) -> Any:
    """One label cell mapped: a sex or race index, an age ``(exact, low, high)`` or a mask type
    (or ``none``); raises :class:`LabelValueError`."""
    if attr in ("sex", "race"):
        return lmap.value(attr, raw)
    if attr == "masked":
        return lmap.mask(raw)
    return parse_age(raw)


def row_labels(row: Mapping[str, str], cols: Mapping[str, str], lmap: LabelMap) -> dict[str, Any]:
    """The mapped labels of one CSV row (absent ones are None), with the set's labels for every
    photo (``lmap.fixed``, ``set_labels``) where the row gives none: a row that gives another
    value is a conflict. ``worn`` (1, 0 or None: not said) and ``mask_type`` come from the
    ``masked`` column, ``person`` from the person column. Raises LabelValueError."""
    out: dict[str, Any] = {
        "sex": None,
        "race": None,
        "age": None,
        "age_low": None,
        "age_high": None,
    }

    def given(attr: str) -> str:
        """The row's value of ``attr`` (empty when absent or one that means unknown), else the
        set's value for every photo; the two must agree."""
        raw = row[cols[attr]].strip() if attr in cols else ""
        raw = "" if normalise(raw) in lmap.unknown.get(attr, ()) else raw
        fixed = lmap.fixed.get(attr, "")
        if raw and fixed and _mapped(lmap, attr, raw) != _mapped(lmap, attr, fixed):
            raise _Conflict(f"{attr} {raw!r} and the set's {attr} {fixed!r} (set_labels) disagree")
        return raw or fixed

    for attr in ("sex", "race"):
        if raw := given(attr):
            out[attr] = lmap.value(attr, raw)
    for attr in ("age", "age_group"):
        if raw := given(attr):
            exact, low, high = parse_age(raw)
            if exact is not None:
                if out["age"] is not None and out["age"] != exact:
                    raise _Conflict(f"age {out['age']:g} and {attr} {raw!r} disagree")
                out["age"] = exact
            else:
                if out["age_low"] is not None and (out["age_low"], out["age_high"]) != (low, high):
                    raise _Conflict(
                        f"age range {out['age_low']}-{out['age_high']} and {attr} {raw!r} disagree"
                    )
                out["age_low"], out["age_high"] = low, high
    if out["age"] is not None and out["age_low"] is not None:
        if not out["age_low"] <= out["age"] <= out["age_high"]:
            raise _Conflict(
                f"age {out['age']:g} is outside its range {out['age_low']}-{out['age_high']}"
            )
    if all(v is None for v in out.values()):
        raise _NoLabels("no label given")
    kind = lmap.mask(raw) if (raw := given("masked")) else None
    out[WORN] = None if kind is None else int(kind != NO_MASK)
    out[MASK_TYPE] = "" if kind in (None, NO_MASK) else kind
    person = row[cols["person"]].strip() if "person" in cols else ""
    out[PERSON] = person or None
    return out


LABEL_FORMATS = ("auto", "csv", "tsv", "json")
_TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")


def label_format(path: str | os.PathLike, fmt: str = "auto") -> str:
    """The format of a labels file: ``fmt`` unless ``auto``; else ``json`` for ``.json``,
    ``tsv`` for ``.tsv``/``.tab``, and for any other name (Adience's ``fold_0_data.txt``)
    ``tsv`` when its first line has a tab and no comma, else ``csv``."""
    if fmt != "auto":
        if fmt not in LABEL_FORMATS:
            raise ValueError(f"labels format {fmt!r} is not one of {list(LABEL_FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
    except OSError:
        return "csv"  # read_labels says why it cannot be read
    return "tsv" if "\t" in first and "," not in first else "csv"


def _json_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A JSON labels file as records: a list of objects, or an object keyed by file name whose
    values are objects of labels (the key becomes the ``file`` column)."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(
            f"cannot read the labels JSON {path}: {type(err).__name__}: {err}"
        ) from err
    if isinstance(data, dict):
        records = []
        for key, value in data.items():
            if not isinstance(value, dict):
                raise ValueError(
                    f"labels JSON {path}: {key!r} maps to {type(value).__name__}, not an object "
                    "of labels (expected {file: {label: value, ...}, ...})"
                )
            records.append({**value, "file": key})
        return records
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(
            f"labels JSON {path}: expected a list of records or an object keyed by file name"
        )
    return data


def _cell(value: Any) -> str:
    """A JSON value as the text a CSV cell would hold (null -> empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        raise ValueError(f"a label value must be text or a number, not {value!r}")
    return str(value)


def read_labels(path: str | os.PathLike, fmt: str = "auto") -> pd.DataFrame:
    """The labels file (CSV, TSV or JSON: :func:`label_format`) as text (nothing converted),
    with ``_line``: the row's line in a CSV or TSV file, the record's number (1-based, after
    the header's line 1, so the first record is 2 as a CSV's first row is) in a JSON file."""
    kind = label_format(path, fmt)
    if kind == "json":
        records = _json_records(path)
        try:
            rows = [{str(k): _cell(v) for k, v in r.items()} for r in records]
        except ValueError as err:
            raise ValueError(f"labels JSON {path}: {err}") from err
        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = pd.DataFrame(rows, columns=columns, dtype=str).fillna("")
    else:
        try:
            table = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                encoding="utf-8-sig",
                sep="\t" if kind == "tsv" else ",",
            )
        except (
            OSError,
            UnicodeDecodeError,
            pd.errors.ParserError,
            pd.errors.EmptyDataError,
        ) as err:
            raise ValueError(
                f"cannot read the labels {kind.upper()} {path}: {type(err).__name__}: {err}"
            ) from err
    table.columns = [str(c).strip() for c in table.columns]
    return table.assign(_line=range(2, len(table) + 2))


TEMPLATE_COLUMN = "_file_from_template"


def apply_file_template(table: pd.DataFrame, template: str, where: str) -> pd.DataFrame:
    """Add the file name built from ``template`` (``{column}`` fields, e.g. Adience's
    ``faces/{user_id}/coarse_tilt_aligned_face.{face_id}.{original_image}``) as
    :data:`TEMPLATE_COLUMN`; a row with an empty field gets no name (``no_file_name``)."""
    fields = _TEMPLATE_FIELD.findall(template)
    if not fields:
        raise ValueError(f"{where}: file_template {template!r} names no {{column}}")
    missing = [f for f in fields if f not in table.columns]
    if missing:
        raise ValueError(
            f"{where}: file_template names {missing}, not columns of "
            f"{[c for c in table.columns if c != '_line']}"
        )

    def build(row: Mapping[str, str]) -> str:
        values = {f: str(row[f]).strip() for f in fields}
        if not all(values.values()):
            return ""
        return _TEMPLATE_FIELD.sub(lambda m: values[m.group(1)], template)

    names = [build(r) for r in table[fields].to_dict("records")]
    return table.assign(**{TEMPLATE_COLUMN: names})


def flat_name(rel: str) -> str:
    """The flat image name of a path inside the set (``a/b.jpg`` -> ``a__b.jpg``)."""
    return rel.replace("/", FLAT_SEP)


def _norm_path(text: str) -> str:
    p = text.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p.strip("/")


def _reject(file: str, reason: str, detail: str) -> dict[str, str]:
    return reject(file, reason, detail, STAGE)


def _suffix_index(rels: list[str]) -> dict[str, list[str]]:
    """Every trailing part of each path (``a/b/c.jpg``, ``b/c.jpg``, ``c.jpg``) -> the paths."""
    index: dict[str, list[str]] = {}
    for rel in rels:
        parts = rel.split("/")
        for k in range(len(parts)):
            index.setdefault("/".join(parts[k:]), []).append(rel)
    return index


def match_rows(
    table: pd.DataFrame, cols: Mapping[str, str], lmap: LabelMap, rels: list[str], labels_name: str
) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]], set[str]]:
    """Match the CSV rows to the set's files: ``(kept, rejects, named)``: the labels of each kept
    file (by its path in the set), the rejected rows, and every file a row names."""
    index = _suffix_index(rels)
    kept: dict[str, dict[str, Any]] = {}
    first: dict[str, tuple[int, tuple]] = {}
    rejects: list[dict[str, str]] = []
    conflicted: dict[str, list[int]] = {}
    named: set[str] = set()
    for row in table.to_dict("records"):
        line = row["_line"]
        where = f"{labels_name} line {line}"
        path = _norm_path(row[cols["file"]])
        if not path:
            rejects.append(_reject(f"{labels_name}:{line}", "no_file_name", f"{where}: no file"))
            continue
        hits = sorted(set(index.get(path, [])))
        if path in hits:
            hits = [path]
        if not hits:
            rejects.append(_reject(path, "file_missing", f"{where} names {path!r}: not in the set"))
            continue
        if len(hits) > 1:
            detail = f"{where} names {path!r}, which ends {len(hits)} files: {hits[:3]}"
            rejects.append(_reject(path, "ambiguous_file", detail))
            named.update(hits)
            continue
        rel = hits[0]
        named.add(rel)
        try:
            labels = row_labels(row, cols, lmap)
        except _NoLabels as err:
            rejects.append(_reject(rel, "no_labels", f"{where}: {err}"))
            continue
        except _Conflict as err:
            rejects.append(_reject(rel, "label_conflict", f"{where}: {err}"))
            continue
        except LabelValueError as err:
            rejects.append(_reject(rel, "unknown_label", f"{where}: {err}"))
            continue
        key = tuple(labels.values())
        if rel in conflicted:
            conflicted[rel].append(line)
        elif rel in first:
            line0, key0 = first[rel]
            if key == key0:
                detail = f"{where} repeats line {line0} with the same labels (line {line0} kept)"
                rejects.append(_reject(rel, "duplicate_row", detail))
            else:
                conflicted[rel] = [line0, line]
                del kept[rel]
        else:
            first[rel] = (line, key)
            kept[rel] = {**labels, "row": line}
    for rel, lines in conflicted.items():
        for line in lines:
            detail = (
                f"{labels_name} line {line}: {rel} is listed on lines {lines} with other labels"
            )
            rejects.append(_reject(rel, "duplicate_row_conflict", detail))
    return kept, rejects, named


def ingest(
    source: str | os.PathLike,
    labels: str | os.PathLike,
    images_out: str | os.PathLike,
    lmap: LabelMap | None = None,
    limits: ArchiveLimits | None = None,
    fmt: str = "auto",
    file_template: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read an external set (folder or archive) and its labels file (CSV, TSV or JSON:
    :func:`read_labels`; ``file_template``: the file name built from columns,
    :func:`apply_file_template`); copy the kept images flat into ``images_out`` (atomically);
    return ``(manifest, rejects, summary)``."""
    source, labels, images_out = Path(source), Path(labels), Path(images_out)
    lmap = lmap if lmap is not None else LabelMap.load()
    if not source.exists():
        raise FileNotFoundError(f"external set {source} does not exist")
    table = read_labels(labels, fmt)
    where = f"labels {label_format(labels, fmt).upper()} {labels}"
    if file_template:
        if "file" in lmap.chosen:
            raise ValueError(f"{where}: give columns.file or file_template, not both")
        table = apply_file_template(table, file_template, where)
        lmap = replace(lmap, chosen={**lmap.chosen, "file": TEMPLATE_COLUMN})
    cols = lmap.resolve_columns([c for c in table.columns if c != "_line"], where)
    images_out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(images_out, ".{name}.work.*")
    with tempfile.TemporaryDirectory(
        prefix=f".{images_out.name}.work.", dir=images_out.parent
    ) as work:
        if source.is_dir():
            folder, extracted = source, False
        elif archive_kind(source, sniff=True):
            folder, extracted = safe_extract(source, Path(work) / "set", limits), True
        else:
            raise ValueError(f"external set {source} is neither a folder nor an archive")
        labels_real = os.path.realpath(labels)
        entries = [e for e in list_entries(folder) if os.path.realpath(e.path) != labels_real]
        rejects = [_reject(e.rel, e.reason, e.detail) for e in entries if e.reason]
        files = {e.rel: e.path for e in entries if not e.reason}
        images = {}
        for rel, path in files.items():
            if detail := not_an_image(rel):
                rejects.append(_reject(rel, "not_an_image_name", detail))
            else:
                images[rel] = path
        kept, row_rejects, named = match_rows(table, cols, lmap, sorted(images), labels.name)
        rejects += row_rejects
        for rel in sorted(set(images) - named):
            detail = f"no row of {labels.name} names it"
            rejects.append(_reject(rel, "no_label_row", detail))
        rows = []
        taken: dict[str, str] = {}
        with atomic_dir(images_out) as tmp:
            for rel in sorted(kept):
                name = flat_name(rel)
                if name in taken:
                    detail = f"{rel} and {taken[name]} are both named {name} once flattened"
                    rejects.append(_reject(rel, "duplicate_name", detail))
                    continue
                try:
                    digest = sha256_file(images[rel])
                    # an extracted archive is ours to move from; a user's folder is copied
                    (os.replace if extracted else shutil.copy2)(images[rel], tmp / name)
                except OSError as err:
                    rejects.append(_reject(rel, "unreadable", f"{type(err).__name__}: {err}"))
                    continue
                taken[name] = rel
                rows.append({"file": name, **kept[rel], "sha256": digest, "source": rel})
    manifest = _manifest(rows)
    rejected = rejects_frame(rejects)
    summary = _summary(table, entries, manifest, rejected, cols, source)
    summary["unknown_labels"] = {
        attr: sum(normalise(v) in values for v in table[cols[attr]])
        for attr, values in sorted(lmap.unknown.items())
        if attr in cols
    }
    return manifest, rejected, summary


def _manifest(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    for c in ("sex", "race", "age_low", "age_high", WORN, "row"):
        df[c] = df[c].astype("Int64")
    df[MASK_TYPE] = df[MASK_TYPE].fillna("").astype(str)
    age = pd.to_numeric(df["age"], errors="coerce")
    whole = age.dropna()
    df["age"] = age.astype("Int64") if (whole == whole.round()).all() else age
    return df.sort_values("file", kind="stable").reset_index(drop=True)


def _summary(
    table: pd.DataFrame,
    entries: list[Any],
    manifest: pd.DataFrame,
    rejects: pd.DataFrame,
    cols: Mapping[str, str],
    source: Path,
) -> dict[str, Any]:
    def counts(attr: str, names: tuple[str, ...]) -> dict[str, int]:
        got = manifest[attr].dropna().astype(int)
        return {names[k]: int(n) for k, n in sorted(Counter(got).items())}

    worn = manifest[WORN]
    return {
        "source": str(source),
        "columns": dict(cols),
        "n_rows": len(table),
        "n_entries": len(entries),
        "n_images": len(manifest),
        "n_rejects": len(rejects),
        "rejects_by_reason": dict(sorted(Counter(rejects["reason"]).items())),
        "labels": {
            "sex": counts("sex", SEXES),
            "race": counts("race", RACES),
            "age_exact": int(manifest["age"].notna().sum()),
            "age_range": int(manifest["age_low"].notna().sum()),
        },
        "real_masks": {
            "worn": int(worn.eq(1).sum()),
            "not_worn": int(worn.eq(0).sum()),
            "not_said": int(worn.isna().sum()),
            "types": dict(sorted(Counter(manifest.loc[worn.eq(1), MASK_TYPE]).items())),
            "persons": int(manifest[PERSON].dropna().nunique()),
        },
    }


def label_map(cfg: Mapping[str, Any]) -> LabelMap:
    """The label map of one set's params (``columns``, ``values``, ``unknown``,
    ``set_labels``)."""
    return LabelMap.load(
        columns=cfg.get("columns"),
        values=cfg.get("values"),
        unknown=cfg.get("unknown"),
        set_labels=cfg.get("set_labels"),
    )


def says_worn(cfg: Mapping[str, Any]) -> bool:
    """Does the set say which photos wear a real mask (a ``masked`` column, or ``set_labels``
    giving it)? Read from its labels file's header when the workflow is planned, so that such a
    set gets the ``worn`` version's jobs; False when the file cannot be read yet (the
    ``external`` job will say why)."""
    lmap = label_map(cfg)
    if "masked" in lmap.fixed:
        return True
    try:
        table = read_labels(cfg["labels"], cfg.get("format", "auto"))
    except (OSError, ValueError):
        return False
    if cfg.get("file_template"):
        lmap = replace(lmap, chosen={k: v for k, v in lmap.chosen.items() if k != "file"})
    header = [c for c in table.columns if c != "_line"]
    found = {lmap.columns.get(_column_key(c)) for c in header}
    chosen = lmap.chosen.get("masked")
    return "masked" in found or (chosen is not None and chosen in header)


def run(
    cfg: Mapping[str, Any],
    images_out: str | os.PathLike,
    manifest_out: str | os.PathLike,
    rejects_out: str | os.PathLike,
) -> dict[str, Any]:
    """Ingest one external set given by its params (``path``, ``labels``, optional ``columns``,
    ``values``, ``unknown``, ``format``, ``file_template``, ``max_member_mb``, ``max_total_gb``);
    write the images, manifest and rejects."""
    lmap = label_map(cfg)
    limits = ArchiveLimits.from_params(dict(cfg))
    manifest, rejects, summary = ingest(
        cfg["path"],
        cfg["labels"],
        images_out,
        lmap,
        limits,
        cfg.get("format", "auto"),
        cfg.get("file_template") or None,
    )
    write_table(manifest_out, manifest)
    write_table(rejects_out, rejects)
    if manifest.empty:
        raise ValueError(
            f"external set {cfg['path']}: no image kept of {summary['n_rows']} label rows "
            f"(rejects by reason: {summary['rejects_by_reason']}; see {rejects_out})"
        )
    return summary
