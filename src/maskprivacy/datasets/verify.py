"""Prove that the images are the published UTKFace files: compare names and sha256 with a manifest.

The project commits the manifest of the published "Aligned & Cropped Faces" set
(:data:`REFERENCES` ``["aligned"]``: 23,708 file names with the sha256 of their bytes, no images),
computed from a copy checked against independent public copies. The download stage compares
what it found with it, whatever the packaging (``UTKFace.tar.gz``, a ``.zip`` of it, a folder),
and reports

- **verified**: a published name whose bytes match;
- **missing**: a published name that is not there;
- **altered**: a published name whose bytes differ (re-encoded, cropped, truncated ...);
- **extra**: an image-named file that is not in the published set.

Other files (``.DS_Store``, ``__MACOSX/._*``, text files) and further copies of a name already
seen are not part of the comparison; they end in the rejects table of the download stage.

``download.verify`` chooses what a mismatch does: ``error`` (stop, nothing is written), ``warn``
(log it, go on) or ``off``. ``auto`` (the default) is ``error`` when the source is ``path`` or
``url``, the variant is ``aligned`` and at least one file carries a published name (so the
demo set and folders of other UTKFace-named images are reported as "not verified" instead of
failing), and ``off`` otherwise. No manifest of the in-the-wild set is committed, so ``wild``
can only be verified with ``off`` (``error``/``warn`` with it is a configuration error).

Rebuild the manifest (only ever from a copy known to be the published one)::

    python -m maskprivacy.datasets.verify build UTKFace.tar.gz src/maskprivacy/data/utkface_aligned_sha256.csv.gz
"""

from __future__ import annotations

import argparse
import gzip
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.core.io import sha256_file
from maskprivacy.core.labels import IMAGE_SUFFIXES
from maskprivacy.core.plumbing import atomic_path
from maskprivacy.datasets.archives import archive_kind, safe_extract
from maskprivacy.datasets.ingest import list_images

log = logging.getLogger(__name__)

MODES = ("auto", "error", "warn", "off")
VARIANTS = ("aligned", "wild")
REFERENCES = {"aligned": "utkface_aligned_sha256.csv.gz"}
# What the published aligned & cropped set holds (README of ../shared/data and the manifest).
PUBLISHED_ALIGNED_FILES = 23708
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
STATUSES = ("verified", "missing", "altered", "extra")
# How many names per status the JSON report lists (the CSV lists them all).
REPORT_LIST = 50


class VerificationError(RuntimeError):
    """The files differ from the published manifest and ``download.verify`` is ``error``."""


def reference_path(variant: str = "aligned") -> Path:
    """The committed manifest of ``variant`` (a ``file,sha256`` gzip CSV)."""
    if variant not in REFERENCES:
        raise ValueError(
            f"no published manifest is committed for download.variant {variant!r} "
            f"(only for {', '.join(REFERENCES)}); set download.verify to off"
        )
    return Path(str(resources.files("maskprivacy") / "data" / REFERENCES[variant]))


def load_reference(path: str | os.PathLike | None = None, variant: str = "aligned") -> pd.DataFrame:
    """The manifest as a DataFrame with columns ``file`` and ``sha256`` (sorted by file)."""
    path = Path(path) if path else reference_path(variant)
    ref = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(ref.columns) != ["file", "sha256"]:
        raise ValueError(f"{path}: want columns file,sha256, got {list(ref.columns)}")
    if ref["file"].duplicated().any():
        raise ValueError(f"{path}: duplicate file names")
    return ref.sort_values("file", kind="stable").reset_index(drop=True)


def is_junk(rel: str) -> bool:
    """Operating-system clutter that is not part of any data set (never 'extra')."""
    parts = rel.replace("\\", "/").split("/")
    name = parts[-1]
    return "__MACOSX" in parts or name.startswith("._") or name in JUNK_NAMES


def resolve_mode(
    mode: str, source: str, variant: str, names: Iterable[str], reference: pd.DataFrame | None
) -> tuple[str, str]:
    """The effective mode (``error``/``warn``/``off``) and why, for ``download.verify: mode``."""
    if mode not in MODES:
        raise ValueError(f"download.verify must be one of {MODES}, got {mode!r}")
    if variant not in VARIANTS:
        raise ValueError(f"download.variant must be one of {VARIANTS}, got {variant!r}")
    if mode == "off":
        return "off", "download.verify is off"
    if mode in ("error", "warn"):
        if variant not in REFERENCES:
            raise ValueError(
                f"download.verify is {mode!r} but no published manifest is committed for "
                f"download.variant {variant!r}; set download.verify to off (or auto)"
            )
        return mode, f"download.verify is {mode}"
    # auto
    if source not in ("path", "url"):
        return "off", f"download.source is {source!r}: not the published data set"
    if variant not in REFERENCES:
        return "off", f"no published manifest is committed for variant {variant!r}"
    assert reference is not None
    published = set(reference["file"])
    stems = {_stem(f) for f in published}
    if not any(n in published or _stem(n) in stems for n in names):
        return "off", "no file carries a published UTKFace name: not the published set"
    return "error", "download.verify is auto: source is path/url, variant aligned"


def _stem(name: str) -> str:
    """The name without the aligned set's ``.chip.jpg`` (the in-the-wild name)."""
    return name[: -len(".chip.jpg")] if name.endswith(".chip.jpg") else name


@dataclass
class Verification:
    """The outcome of comparing found files with the manifest."""

    mode: str
    why: str
    table: pd.DataFrame = field(default_factory=lambda: _empty_table())
    n_reference: int = 0
    n_compared: int = 0

    def counts(self) -> dict[str, int]:
        c = self.table["status"].value_counts() if len(self.table) else pd.Series(dtype=int)
        return {s: int(c.get(s, 0)) for s in STATUSES}

    @property
    def ok(self) -> bool:
        c = self.counts()
        return c["missing"] == c["altered"] == c["extra"] == 0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "why": self.why}
        if self.mode == "off":
            out["status"] = "not verified"
            return out
        c = self.counts()
        out |= {
            "status": "verified" if self.ok else "MISMATCH",
            "n_reference": self.n_reference,
            "n_compared": self.n_compared,
            **{f"n_{s}": c[s] for s in STATUSES},
        }
        for s in ("missing", "altered", "extra"):
            names = self.table.loc[self.table["status"] == s, "file"].tolist()
            if names:
                out[s] = names[:REPORT_LIST]
                if len(names) > REPORT_LIST:
                    out[s].append(f"... and {len(names) - REPORT_LIST} more (see the CSV)")
        return out

    def message(self) -> str:
        c = self.counts()
        lines = [
            f"the files are not the published UTKFace {self.n_reference:,} files: "
            f"{c['verified']:,} verified, {c['missing']:,} missing, {c['altered']:,} altered "
            f"(other bytes), {c['extra']:,} extra (not in the published set)."
        ]
        for s in ("missing", "altered", "extra"):
            names = self.table.loc[self.table["status"] == s, "file"].tolist()
            if names:
                more = f" (+{len(names) - 5} more)" if len(names) > 5 else ""
                lines.append(f"  {s}: {', '.join(names[:5])}{more}")
        extra = self.table.loc[self.table["status"] == "extra", "file"]
        missing = set(self.table.loc[self.table["status"] == "missing", "file"])
        if len(extra) and (extra + ".chip.jpg").isin(missing).mean() > 0.5:
            lines.append(
                "Most extra files are published names without '.chip.jpg': these look like the "
                "in-the-wild images; set download.variant to wild."
            )
        lines.append(
            "Get a complete, unmodified copy (UTKFace.tar.gz, or the .zip Kaggle serves) and "
            "point download.path at it; or, to use these files anyway, set download.verify to "
            "warn (or off) in params.yaml. The full list is in the verification table."
        )
        return "\n".join(lines)


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=["file", "status", "sha256", "expected_sha256", "path"])


def verify(
    found: pd.DataFrame, reference: pd.DataFrame, mode: str = "error", why: str = ""
) -> Verification:
    """Compare ``found`` (columns ``rel``, ``file``, ``sha256``) with the manifest.

    For each base name the first file by relative path counts (further copies are
    ``duplicate_name`` rejects of the download stage); junk (:func:`is_junk`) and files without
    an image suffix are left out. ``sha256`` may be empty for an unreadable file (altered).
    """
    if mode == "off":
        return Verification(mode, why or "off")
    f = found[~found["rel"].map(is_junk)]
    f = f[f["file"].str.lower().str.endswith(IMAGE_SUFFIXES)]
    f = f.sort_values("rel", kind="stable").drop_duplicates("file", keep="first")
    m = reference.merge(f[["file", "sha256", "rel"]], on="file", how="outer", suffixes=("_ref", ""))
    status = pd.Series("verified", index=m.index)
    status[m["rel"].isna()] = "missing"
    status[m["sha256_ref"].isna()] = "extra"
    both = m["rel"].notna() & m["sha256_ref"].notna()
    status[both & (m["sha256"].fillna("") != m["sha256_ref"])] = "altered"
    table = pd.DataFrame(
        {
            "file": m["file"],
            "status": status,
            "sha256": m["sha256"].fillna(""),
            "expected_sha256": m["sha256_ref"].fillna(""),
            "path": m["rel"].fillna(""),
        }
    )
    order = {s: i for i, s in enumerate(("missing", "altered", "extra", "verified"))}
    table = table.sort_values(
        ["status", "file"], key=lambda c: c.map(order) if c.name == "status" else c
    ).reset_index(drop=True)
    return Verification(mode, why, table, n_reference=len(reference), n_compared=len(f))


def other_variant_names(manifest: pd.DataFrame, variant: str) -> int:
    """How many kept names look like the other variant (aligned names end in .chip.jpg)."""
    chip = manifest["file"].str.endswith(".chip.jpg")
    return int((~chip).sum() if variant == "aligned" else chip.sum())


# --------------------------------------------------------------------------------------------
# Building the manifest
# --------------------------------------------------------------------------------------------


def build_reference(source: str | os.PathLike, out: str | os.PathLike) -> pd.DataFrame:
    """Hash every image of ``source`` (an archive or a folder) into a deterministic gzip CSV."""
    source = Path(source)
    with tempfile.TemporaryDirectory() as tmp:
        folder = source
        if source.is_file():
            if not archive_kind(source, sniff=True):
                raise ValueError(f"{source} is neither a folder nor a supported archive")
            folder = safe_extract(source, Path(tmp) / "x")
        rows = [
            (p.name, sha256_file(p))
            for p in list_images(folder)
            if p.name.lower().endswith(IMAGE_SUFFIXES)
            and not is_junk(p.relative_to(folder).as_posix())
        ]
    table = pd.DataFrame(rows, columns=["file", "sha256"]).sort_values("file", kind="stable")
    if table["file"].duplicated().any():
        raise ValueError(f"{source} holds several files of the same name")
    text = table.to_csv(index=False, lineterminator="\n").encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(text)
    with atomic_path(out, suffix=".gz") as tmp_out:
        tmp_out.write_bytes(buf.getvalue())
    return table.reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build or check the manifest of published files.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="hash every image of an archive or folder")
    b.add_argument("source", type=Path)
    b.add_argument("out", type=Path)
    c = sub.add_parser("check", help="compare an archive or folder with the committed manifest")
    c.add_argument("source", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "build":
        t = build_reference(args.source, args.out)
        print(f"wrote {args.out}: {len(t)} files")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        t = build_reference(args.source, Path(tmp) / "m.csv.gz")
    found = t.assign(rel=t["file"])
    v = verify(found, load_reference(), "error", "check")
    print(v.summary())
    return 0 if v.ok else 1


if __name__ == "__main__":
    sys.exit(main())
