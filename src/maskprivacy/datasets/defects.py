"""Label defects in UTKFace file names and the policy that handles them (``download.label_defects``).

The labels live in the file names (``[age]_[gender]_[race]_[date&time].jpg.chip.jpg``). Eight
published names are defective (README of the data); :func:`name_defect` sorts them into kinds:

- ``missing_field``: three fields, ``age_gender_datetime``: the race is missing (3 files);
- ``space_in_name``: white space inside the name (1 file, ``24_0_1_20170116220224657 .jpg...``);
- ``malformed_stamp``: the date/time field is not 17 digits, or ``jpg`` lost its dot (4 files).

A name whose age, gender or race field is not a valid number in range is not a defect of the
published set but not a UTKFace name at all: reason ``bad_name``, whatever the policy.

Policies (``download.label_defects``):

- ``drop``: every file with a defect is rejected (reason ``label_defect``, detail: the kind);
- ``fix`` (default): the corrections table (``download.label_fixes``; ``""`` = the committed
  ``src/maskprivacy/data/utkface_label_fixes.csv``) decides per file: ``keep`` it with the
  labels the table gives, or ``drop`` it (reason ``label_defect``, detail: the table's note).
  A defective name that the table does not list is rejected (``label_defect``) with a hint to
  add it. The table may also correct the labels of a well-formed name.

The committed table keeps the five names whose age, gender and race fields are intact (only the
date/time field or the extension is broken) and drops the three without a race field: no
byte-identical copy carries their race, and guessing a race from a face is exactly what this
project must not do. Rows are matched by the published (aligned & cropped) name, or by the same
name without ``.chip.jpg`` (the in-the-wild form). No file is ever renamed: the manifest keeps
the original name and notes the fix in ``name_note``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from maskprivacy.core.labels import AGE_MAX, RACES, LabelError, Labels, name_problem, parse_name

POLICIES = ("fix", "drop")
KINDS = {
    "missing_field": "three fields (age_gender_datetime): the race field is missing",
    "space_in_name": "white space in the file name",
    "malformed_stamp": "malformed date/time field or extension (want 17 digits then .jpg)",
}
FIX_COLUMNS = ["file", "defect", "action", "age", "sex", "race", "note"]
DEFAULT_FIXES = "utkface_label_fixes.csv"
_CANON = re.compile(r"^\d+_\d+_\d+_\d{17}\.(jpg|jpeg|png)(\.chip\.jpg)?$", re.IGNORECASE)


def default_fixes_path() -> Path:
    return Path(str(resources.files("maskprivacy") / "data" / DEFAULT_FIXES))


def name_defect(name: str) -> str:
    """The defect kind of a UTKFace-style name (a key of :data:`KINDS`), or ''."""
    parts = name.split("_")
    if (
        len(parts) == 3
        and parts[0].isdigit()
        and parts[1].isdigit()
        and re.match(r"^\d{8,}", parts[2])
    ):
        return "missing_field"
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return ""  # not a UTKFace name at all: bad_name
    if re.search(r"\s", name):
        return "space_in_name"
    if not _CANON.match(name):
        return "malformed_stamp"
    return ""


def _key(name: str) -> str:
    return name[: -len(".chip.jpg")] if name.endswith(".chip.jpg") else name


def load_fixes(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The corrections table, checked, indexed by the name without ``.chip.jpg``."""
    path = Path(path) if path else default_fixes_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"download.label_fixes names {str(path)!r}, which does not exist: give a CSV with "
            f'columns {",".join(FIX_COLUMNS)} (or "" for the committed table)'
        )
    t = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in FIX_COLUMNS if c not in t.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; want {FIX_COLUMNS}")
    problems = []
    for i, row in t.iterrows():
        where = f"{path} row {i + 2} ({row.file!r})"
        if row.action not in ("keep", "drop"):
            problems.append(f"{where}: action must be keep or drop, not {row.action!r}")
        if row.action == "keep":
            try:
                age, sex, race = int(row.age), int(row.sex), int(row.race)
            except ValueError:
                problems.append(f"{where}: keep needs whole-number age, sex and race")
                continue
            if not (0 <= age <= AGE_MAX and sex in (0, 1) and 0 <= race < len(RACES)):
                problems.append(f"{where}: labels {age}/{sex}/{race} out of range")
    t["key"] = t["file"].map(_key)
    if t["key"].duplicated().any():
        problems.append(
            f"{path}: a file is listed twice: {t.loc[t['key'].duplicated(), 'file'].tolist()}"
        )
    if problems:
        raise ValueError("bad corrections table:\n  " + "\n  ".join(problems))
    return t.set_index("key")


@dataclass(frozen=True)
class Decision:
    """What happens to one file name: kept with labels and a note, or rejected with a reason."""

    labels: Labels | None
    note: str = ""
    reason: str = ""
    detail: str = ""
    defect: str = ""
    action: str = ""  # for defects and table rows: kept, fixed, dropped

    @property
    def keep(self) -> bool:
        return self.labels is not None


@dataclass(frozen=True)
class DefectPolicy:
    """``download.label_defects`` with its corrections table."""

    mode: str = "fix"
    fixes: pd.DataFrame | None = None
    fixes_name: str = DEFAULT_FIXES

    @classmethod
    def from_params(cls, cfg: dict) -> DefectPolicy:
        mode = str(cfg.get("label_defects", "fix"))
        if mode not in POLICIES:
            raise ValueError(f"download.label_defects must be one of {POLICIES}, got {mode!r}")
        if mode == "drop":
            return cls("drop", None, "")
        raw = str(cfg.get("label_fixes") or "").strip()
        path = Path(raw).expanduser() if raw else default_fixes_path()
        return cls("fix", load_fixes(path), raw or DEFAULT_FIXES)

    def decide(self, name: str) -> Decision:
        kind = name_defect(name)
        labels: Labels | None = None
        if kind != "missing_field":
            try:
                labels = parse_name(name)
            except LabelError as err:
                return Decision(None, reason="bad_name", detail=str(err))
        row = None
        if self.mode == "fix" and self.fixes is not None:
            key = _key(name)
            if key in self.fixes.index:
                row = self.fixes.loc[key]
        if row is not None:
            what = f"{row.defect or kind or 'label fix'}: {row.note}".strip(": ")
            if row.action == "drop":
                return Decision(
                    None,
                    reason="label_defect",
                    detail=f"{what} (dropped by the corrections table {self.fixes_name})",
                    defect=kind or str(row.defect),
                    action="dropped",
                )
            fixed = Labels(age=int(row.age), sex=int(row.sex), race=int(row.race))
            changed = labels is not None and labels != fixed
            note = f"fixed by {self.fixes_name}: {what}"
            if changed:
                note += f" (labels {labels.age}/{labels.sex}/{labels.race} corrected)"
            return Decision(fixed, note=note, defect=kind, action="fixed")
        if not kind:
            assert labels is not None
            return Decision(labels, note=name_problem(name))
        if self.mode == "drop":
            detail = f"{kind}: {KINDS[kind]} (download.label_defects is drop)"
        else:
            detail = (
                f"{kind}: {KINDS[kind]}; not in the corrections table {self.fixes_name}: add a "
                "row there to keep it"
            )
        return Decision(None, reason="label_defect", detail=detail, defect=kind, action="dropped")


def defect_list(manifest: pd.DataFrame, rejects: pd.DataFrame) -> list[dict[str, str]]:
    """Every file whose name has a label defect, with what was done to it (kept, fixed by the
    policy, or dropped), from the download stage's manifest and rejects tables."""
    out = []
    notes = manifest[manifest["name_note"].fillna("").str.startswith("fixed by")]
    for f, note in zip(notes["file"], notes["name_note"], strict=True):
        out.append({"file": f, "defect": name_defect(f), "action": "kept", "detail": note})
    dropped = rejects[rejects["reason"] == "label_defect"]
    for f, detail in zip(dropped["file"], dropped["detail"], strict=True):
        out.append({"file": f, "defect": name_defect(f), "action": "dropped", "detail": detail})
    return sorted(out, key=lambda r: r["file"])
