"""Hard cases of real-world photos made from UTKFace-named faces, and how the ``align`` and
``mask`` code covers them (docs/wild-faces.md).

There is no labelled in-the-wild set to test ``align`` on, so :func:`generate` makes one: each
face (a UTKFace "aligned & cropped" file, its labels in its name) is pasted onto a larger
background (low-frequency colour noise, a gradient, or another photo cut into shuffled tiles and
blurred, so it holds no face), with its edges feathered, as one *kind* of hard case
(:data:`KINDS`):

- ``rotated``: rolled 15-45 degrees either way;
- ``small``: a face of about 50-90 pixels, anywhere;
- ``off_centre``: near an edge or a corner;
- ``turned``: a perspective squeeze, one side of the face narrower and shorter (a head turned);
- ``mirrored``: flipped left to right, rolled up to 10 degrees;
- ``two_faces``: a second, smaller face of another file cut by the picture's edge;
- ``combined``: rolled 15-45 degrees, small, off-centre, sometimes mirrored.

The set is seeded (files chosen by a hash of the seed and the name, so the same archive gives
the same set in any order) and comes with the same labels in every format the ``external``
stage reads (CSV, TSV, JSON records, JSON keyed by file, an Adience-like folder layout with a
tab-separated fold file for ``file_template``) and a ``truth.csv`` with each picture's kind and
where its labelled face is (centre and side in pixels), so :func:`measure` can tell a face
found from the wrong face kept.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from maskprivacy.core.labels import LabelError, parse_name
from maskprivacy.core.plumbing import atomic_dir
from maskprivacy.datasets.archives import read_files

KINDS = ("rotated", "small", "off_centre", "turned", "mirrored", "two_faces", "combined")
BACKGROUNDS = ("noise", "gradient", "texture")
SEXES = ("Male", "Female")  # UTKFace's gender 0, 1
RACES = ("White", "Black", "Asian", "Indian", "Others")  # UTKFace's race 0-4
# Adience's age groups (its fold files give them as "(25, 32)"); other ages stay numbers
ADIENCE_AGES = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
ADIENCE_TEMPLATE = "faces/{user_id}/coarse_tilt_aligned_face.{face_id}.{original_image}"
SUFFIXES = (".jpg", ".jpeg", ".png")
# Where the face's centre sits in a UTKFace aligned crop, as fractions of its side (the
# centroid of the 68 landmarks of its faces is at about x 0.50, y 0.55).
FACE_CENTRE = (0.50, 0.55)
SPARE = 16  # faces picked beyond those needed, in case some do not decode


def _key(seed: int, name: str) -> str:
    return hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()


def iter_faces(source: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of each image of ``source`` (a folder, a .tar/.tar.gz or a .zip) whose
    name parses as UTKFace's ``age_gender_race_date.jpg``."""

    def wanted(base: str) -> bool:
        if base.startswith(".") or not base.lower().endswith(SUFFIXES):
            return False
        try:
            parse_name(base)
        except LabelError:
            return False
        return True

    return read_files(source, wanted)


def pick(source: str | os.PathLike, k: int, seed: int) -> list[tuple[str, bytes]]:
    """The ``k`` faces of ``source`` with the smallest hash of ``seed`` and name (one per name),
    in that order: the same choice whatever the order of the archive."""
    heap: list[tuple[str, str, bytes]] = []  # max-heap by key, through negated ordering
    seen: set[str] = set()
    for name, data in iter_faces(source):
        if name in seen:
            continue
        seen.add(name)
        key = _key(seed, name)
        item = (_neg(key), name, data)
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return [(name, data) for _, name, data in sorted(heap, reverse=True)]


def _neg(key: str) -> str:
    """A string that sorts in the reverse order of the hex digest ``key``."""
    return key.translate(str.maketrans("0123456789abcdef", "fedcba9876543210"))


def _decodes(data: bytes) -> bool:
    try:
        _decode(data)
    except Exception:  # PIL raises many types for broken files
        return False
    return True


def _decode(data: bytes) -> Image.Image:
    import io

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def background(kind: str, size: int, rng: np.random.Generator, photo: Image.Image | None):
    """A ``size`` x ``size`` background without a face: ``noise`` (low-frequency colour noise),
    ``gradient`` or ``texture`` (``photo`` cut into 8 x 8 shuffled tiles, blurred)."""
    if kind == "texture" and photo is not None:
        tiles, side = 8, size // 8
        im = photo.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im)
        blocks = [
            arr[i * side : (i + 1) * side, j * side : (j + 1) * side]
            for i in range(tiles)
            for j in range(tiles)
        ]
        order = rng.permutation(len(blocks))
        rows = [
            np.concatenate([blocks[order[i * tiles + j]] for j in range(tiles)], axis=1)
            for i in range(tiles)
        ]
        im = Image.fromarray(np.concatenate(rows, axis=0)).resize((size, size))
        return im.filter(ImageFilter.GaussianBlur(6))
    if kind == "gradient":
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.linspace(0, 1, size)
        angle = rng.uniform(0, np.pi)
        g = np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]
        g = (g - g.min()) / max(g.max() - g.min(), 1e-9)
        arr = a + (b - a) * g[..., None]
    else:
        low = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
        arr = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC))
        arr = arr.astype(float)
    arr = arr + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _feather(side: int) -> Image.Image:
    """An alpha mask for a pasted face: opaque, fading out over its outer 8%."""
    m = Image.new("L", (side, side), 0)
    inset = max(2, int(0.08 * side))
    ImageDraw.Draw(m).rectangle((inset, inset, side - 1 - inset, side - 1 - inset), fill=255)
    return m.filter(ImageFilter.GaussianBlur(max(1, inset // 2)))


def _turn(face: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, float]:
    """``face`` squeezed as if turned: one side kept, the other 0.55-0.75 as wide and 0.8-0.9 as
    tall (a perspective map). Returns the image (RGBA) and the centre's new x as a fraction."""
    w, h = face.size
    squeeze, short = rng.uniform(0.55, 0.75), rng.uniform(0.8, 0.9)
    new_w = int(round(w * (1 + squeeze) / 2))
    dy = 0.5 * h * (1 - short)
    right = rng.random() < 0.5  # which side goes away
    # output corners -> input corners (PIL's PERSPECTIVE wants output -> input coefficients)
    if right:
        dst = [(0, 0), (new_w, dy), (new_w, h - dy), (0, h)]
    else:
        dst = [(0, dy), (new_w, 0), (new_w, h), (0, h - dy)]
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    coeffs = _perspective(dst, src)
    out = face.convert("RGBA").transform(
        (new_w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC
    )
    # the face centre (x 0.5 of the input) moves towards the squeezed side
    cx = _apply_perspective(_perspective(src, dst), (0.5 * w, FACE_CENTRE[1] * h))[0]
    return out, cx / new_w


def _perspective(src: list, dst: list) -> list[float]:
    """The 8 coefficients mapping points ``src`` onto ``dst`` (PIL's PERSPECTIVE layout)."""
    a = []
    b = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return np.linalg.solve(np.array(a, float), np.array(b, float)).tolist()


def _apply_perspective(c: list[float], p: tuple[float, float]) -> tuple[float, float]:
    x, y = p
    d = c[6] * x + c[7] * y + 1
    return (c[0] * x + c[1] * y + c[2]) / d, (c[3] * x + c[4] * y + c[5]) / d


def _patch(face: Image.Image, side: int, angle: float, mirror: bool, turned, rng):
    """The face as an RGBA patch ``side`` px across (before rotation), feathered, mirrored,
    turned and rotated by ``angle`` degrees; and the face centre's offset from the patch's
    centre in pixels."""
    im = face.resize((side, side), Image.Resampling.LANCZOS)
    if mirror:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im = im.convert("RGBA")
    im.putalpha(_feather(side))
    fx = FACE_CENTRE[0]
    if turned:
        im, fx = _turn(im, rng)
    w, h = im.size
    off = np.array([(fx - 0.5) * w, (FACE_CENTRE[1] - 0.5) * h])
    if angle:
        im = im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        t = np.radians(angle)  # PIL rotates counter-clockwise; y points down
        rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        off = rot @ off
    return im, off


def _place(canvas: Image.Image, patch: Image.Image, centre: tuple[float, float]) -> None:
    w, h = patch.size
    canvas.paste(patch, (int(round(centre[0] - w / 2)), int(round(centre[1] - h / 2))), patch)


def _draw_kind(kind: str, rng: np.random.Generator, size: int) -> dict[str, Any]:
    """The random parameters of one picture of ``kind``."""
    u = rng.uniform
    sign = 1 if rng.random() < 0.5 else -1
    p: dict[str, Any] = {"angle": 0.0, "mirror": False, "turned": False, "second": False}
    if kind == "rotated":
        p.update(side=int(u(0.32, 0.48) * size), angle=sign * u(15, 45), where="centre")
    elif kind == "small":
        p.update(side=int(u(56, 100)), where="anywhere")
    elif kind == "off_centre":
        p.update(side=int(u(0.27, 0.40) * size), where="edge")
    elif kind == "turned":
        p.update(side=int(u(0.32, 0.48) * size), turned=True, where="centre")
    elif kind == "mirrored":
        p.update(side=int(u(0.27, 0.48) * size), mirror=True, angle=u(-10, 10), where="centre")
    elif kind == "two_faces":
        p.update(side=int(u(0.34, 0.48) * size), angle=u(-10, 10), where="centre", second=True)
    elif kind == "combined":
        p.update(
            side=int(u(70, 130)),
            angle=sign * u(15, 45),
            mirror=bool(rng.random() < 0.5),
            where="edge",
        )
    else:
        raise ValueError(f"unknown hard-case kind {kind!r}; one of {list(KINDS)}")
    return p


def _centre(where: str, extent: tuple[int, int], size: int, rng) -> tuple[float, float]:
    """Where a patch of ``extent`` goes: near the centre, anywhere inside, or near an edge."""
    w, h = extent
    lo = np.array([w / 2, h / 2]) + 2
    hi = np.array([size - w / 2, size - h / 2]) - 2
    hi = np.maximum(hi, lo)
    if where == "centre":
        c = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    elif where == "anywhere":
        c = rng.uniform(lo, hi)
    else:  # near an edge: one coordinate at its bound, the other anywhere
        c = rng.uniform(lo, hi)
        axis = int(rng.integers(2))
        c[axis] = lo[axis] if rng.random() < 0.5 else hi[axis]
    return float(np.clip(c[0], lo[0], hi[0])), float(np.clip(c[1], lo[1], hi[1]))


def compose(
    kind: str,
    face: Image.Image,
    rng: np.random.Generator,
    size: int = 448,
    back: Image.Image | None = None,
    second: Image.Image | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """One hard-case picture of ``kind`` made of ``face`` on ``back`` (``size`` square): the
    picture and where its face is (``face_x``, ``face_y``: centre; ``face_side``: the pasted
    crop's side, pixels; for ``two_faces`` also ``second_x``, ``second_y``, ``second_side``)."""
    p = _draw_kind(kind, rng, size)
    canvas = (back if back is not None else Image.new("RGB", (size, size), (128, 128, 128))).copy()
    truth: dict[str, Any] = {"angle": round(float(p["angle"]), 2), "mirrored": p["mirror"]}
    if p["second"]:
        if second is None:
            raise ValueError("two_faces needs a second face")
        s2 = int(p["side"] * rng.uniform(0.45, 0.7))
        patch2, off2 = _patch(second, s2, float(rng.uniform(-10, 10)), False, False, rng)
        w2, _ = patch2.size
        cut = rng.uniform(0.2, 0.45)  # this share of the second face lies outside the picture
        x = -w2 / 2 + (1 - cut) * w2 if rng.random() < 0.5 else size + w2 / 2 - (1 - cut) * w2
        y = float(rng.uniform(0.25, 0.75) * size)
        _place(canvas, patch2, (x, y))
        truth.update(second_x=x + off2[0], second_y=y + off2[1], second_side=s2)
    patch, off = _patch(face, p["side"], float(p["angle"]), p["mirror"], p["turned"], rng)
    cx, cy = _centre(p["where"], patch.size, size, rng)
    if p["second"]:  # keep the main face clear of the second one's side
        cx = float(np.clip(cx, 0.4 * size, 0.6 * size))
    _place(canvas, patch, (cx, cy))
    truth.update(face_x=cx + off[0], face_y=cy + off[1], face_side=p["side"])
    return canvas, {k: round(v, 1) if isinstance(v, float) else v for k, v in truth.items()}


def adience_age(age: int) -> str:
    """An age as Adience's fold files give it: its group ``(25, 32)``, or the number."""
    for lo, hi in ADIENCE_AGES:
        if lo <= age <= hi:
            return f"({lo}, {hi})"
    return str(age)


def generate(
    source: str | os.PathLike,
    out: str | os.PathLike,
    n: int = 420,
    seed: int = 0,
    size: int = 448,
    kinds: tuple[str, ...] = KINDS,
    quality: int = 90,
) -> dict[str, Any]:
    """Make ``n`` hard-case pictures (``kinds`` in turn, shuffled) from the faces of ``source``
    into the folder ``out`` (replaced atomically):

    - ``images/hard_<k>.jpg``, and the same files (hard links) under
      ``adience/faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>``;
    - ``labels.csv``, ``labels.tsv``, ``labels_records.json`` (a list), ``labels_by_file.json``
      (keyed by file): ``file``, ``gender``, ``race``, ``age`` of the labelled face;
    - ``adience/fold_0_data.txt`` (tab-separated: ``user_id``, ``original_image``, ``face_id``,
      ``age`` as Adience's groups, ``gender`` m/f), for ``file_template``
      :data:`ADIENCE_TEMPLATE`;
    - ``truth.csv``: each picture's kind, source file, background and where its faces are;
    - ``external.yaml``: an ``evaluate.external`` entry per label format.

    Returns a summary (counts per kind and background).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    kinds = tuple(kinds)
    for k in kinds:
        _draw_kind(k, np.random.default_rng(0), size)  # raises on an unknown kind
    rng = np.random.default_rng(seed)
    order = [kinds[i % len(kinds)] for i in range(n)]
    order = [order[i] for i in rng.permutation(n)]
    n_second = order.count("two_faces")
    n_texture = n  # at most one background photo per picture
    picked = pick(source, n + n_second + n_texture + SPARE, seed)
    pool = [(name, data) for name, data in picked if _decodes(data)]  # broken files: skipped
    if len(pool) < n + n_second + 1:
        raise ValueError(
            f"{source}: {len(pool)} UTKFace-named faces, {n + n_second + 1} needed for n={n}"
        )
    faces, rest = pool[:n], pool[n:]
    seconds, photos = rest[:n_second], rest[n_second:]
    out = Path(out)
    rows, truth = [], []
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        j = 0
        for k, ((name, data), kind) in enumerate(zip(faces, order, strict=True)):
            r = np.random.default_rng([seed, k])
            bg_kind = BACKGROUNDS[int(r.integers(len(BACKGROUNDS)))] if photos else "noise"
            photo = _decode(photos[k % len(photos)][1]) if bg_kind == "texture" else None
            second = None
            if kind == "two_faces":
                second_name, second_data = seconds[j]
                second, j = _decode(second_data), j + 1
            pic, where = compose(
                kind, _decode(data), r, size, background(bg_kind, size, r, photo), second
            )
            file = f"hard_{k:04d}.jpg"
            pic.save(tmp / "images" / file, format="JPEG", quality=quality)
            lab = parse_name(name)
            rows.append(
                {
                    "file": file,
                    "gender": SEXES[lab.sex],
                    "race": RACES[lab.race],
                    "age": lab.age,
                }
            )
            truth.append(
                {
                    "file": file,
                    "kind": kind,
                    "source": name,
                    "second_source": second_name if kind == "two_faces" else "",
                    "background": bg_kind,
                    **where,
                }
            )
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "labels.csv", index=False)
        table.to_csv(tmp / "labels.tsv", index=False, sep="\t")
        records = table.to_dict(orient="records")
        (tmp / "labels_records.json").write_text(json.dumps(records, indent=1) + "\n")
        keyed = {r["file"]: {k: v for k, v in r.items() if k != "file"} for r in records}
        (tmp / "labels_by_file.json").write_text(json.dumps(keyed, indent=1) + "\n")
        _adience(tmp, table)
        truth_df = pd.DataFrame(truth)
        truth_df.to_csv(tmp / "truth.csv", index=False)
        (tmp / "external.yaml").write_text(external_yaml(out))
    return {
        "n": n,
        "seed": seed,
        "size": size,
        "kinds": truth_df["kind"].value_counts().sort_index().to_dict(),
        "backgrounds": truth_df["background"].value_counts().sort_index().to_dict(),
        "undecodable_skipped": len(picked) - len(pool),
        "out": str(out),
    }


def _adience(tmp: Path, table: pd.DataFrame) -> None:
    """The Adience-like layout: the same pictures (hard links, else copies) under
    ``adience/faces/<user_id>/...`` and a tab-separated fold file."""
    fold = []
    for i, r in enumerate(table.itertuples(index=False)):
        user, face_id, original = f"user{i % 7}", i + 1, f"{i:06d}_{r.file.split('.')[0]}.jpg"
        rel = ADIENCE_TEMPLATE.format(user_id=user, face_id=face_id, original_image=original)
        target = tmp / "adience" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp / "images" / r.file, target)
        except OSError:
            target.write_bytes((tmp / "images" / r.file).read_bytes())
        fold.append(
            {
                "user_id": user,
                "original_image": original,
                "face_id": face_id,
                "age": adience_age(int(r.age)),
                "gender": "m" if r.gender == "Male" else "f",
            }
        )
    pd.DataFrame(fold).to_csv(tmp / "adience" / "fold_0_data.txt", index=False, sep="\t")


def external_yaml(out: Path) -> str:
    """``evaluate.external`` entries for the set in ``out``, one per label format."""
    entries = {
        "hard_csv": {"path": f"{out}/images", "labels": f"{out}/labels.csv"},
        "hard_tsv": {"path": f"{out}/images", "labels": f"{out}/labels.tsv"},
        "hard_json": {"path": f"{out}/images", "labels": f"{out}/labels_records.json"},
        "hard_json_keyed": {"path": f"{out}/images", "labels": f"{out}/labels_by_file.json"},
        "hard_adience": {
            "path": f"{out}/adience",
            "labels": f"{out}/adience/fold_0_data.txt",
            "file_template": ADIENCE_TEMPLATE,
            "unknown": {"sex": ["u"], "age": ["None"]},
        },
    }
    import yaml

    return yaml.safe_dump({"evaluate": {"external": entries}}, sort_keys=False)


# --- measuring: the package's align + mask on the set --------------------------------------


def verdict(pts: np.ndarray | None, row: pd.Series | dict) -> str:
    """Is the face found (landmarks ``pts`` in the picture) the labelled one? ``right_face``
    (its centre within 0.35 of the pasted crop's side from the labelled face's centre),
    ``second_face`` (nearer the other face of a two-face picture) or ``elsewhere``."""
    c = np.asarray(pts, float).mean(axis=0)
    d = float(np.hypot(c[0] - row["face_x"], c[1] - row["face_y"]))
    if d <= 0.35 * float(row["face_side"]):
        return "right_face"
    sx = row.get("second_x")
    if sx is not None and not pd.isna(sx):
        d2 = float(np.hypot(c[0] - sx, c[1] - row["second_y"]))
        if d2 < d:
            return "second_face"
    return "elsewhere"


def measure(
    folder: str | os.PathLike,
    align_cfg: dict[str, Any],
    mask_cfg: dict[str, Any],
    work: str | os.PathLike,
    limit: int | None = None,
) -> tuple[pd.DataFrame, float]:
    """Run the package's ``align`` (:func:`maskprivacy.faces.align.align_one`) and ``mask``
    (:func:`maskprivacy.masks.apply.mask_file`) on each picture of a set made by
    :func:`generate` in ``folder``, in this process, writing the aligned and masked faces under
    ``work``. Returns one row per picture (``kind``, ``outcome``: ``covered``, or what went
    wrong: align's or mask's reject reason, ``second_face``, ``elsewhere``; ``route``,
    ``detail``, ``cpu_s``) and the CPU seconds of the whole run
    (:func:`maskprivacy.faces.cnn.cpu_seconds`)."""
    from maskprivacy.faces import align, cnn
    from maskprivacy.faces import detect as faces
    from maskprivacy.masks import apply

    folder, work = Path(folder), Path(work)
    truth = pd.read_csv(folder / "truth.csv")
    if limit:
        truth = truth.head(limit)
    (work / "align").mkdir(parents=True, exist_ok=True)
    (work / "mask").mkdir(parents=True, exist_ok=True)
    prepared = apply.choices(mask_cfg)
    faces.load_models(align_cfg.get("predictor") or None, align_cfg.get("detector", "cascade+cnn"))
    rows = []
    t_all = cnn.cpu_seconds()
    for r in truth.to_dict(orient="records"):
        path = folder / "images" / r["file"]
        t0 = cnn.cpu_seconds()
        res = align.align_one(path, align_cfg)
        row = {"file": r["file"], "kind": r["kind"], "route": res.get("route", ""), "detail": ""}
        if not res["ok"]:
            row.update(outcome=res["reason"], detail=res["detail"])
        else:
            aligned = work / "align" / r["file"]
            res["image"].save(aligned, format="JPEG", quality=int(align_cfg["jpeg_quality"]))
            m = apply.mask_file((str(aligned), str(work / "mask"), res["landmarks"], prepared))
            which = verdict(res["source_landmarks"], r)
            if which != "right_face":
                row.update(outcome=which)
            elif not m["ok"]:
                row.update(outcome=m["reason"], detail=m["detail"])
            else:
                row.update(outcome="covered", geometry_ok=m["geometry_ok"])
        row["cpu_s"] = cnn.cpu_seconds() - t0
        rows.append(row)
    return pd.DataFrame(rows), cnn.cpu_seconds() - t_all


def coverage(results: pd.DataFrame) -> pd.DataFrame:
    """Per kind (and ``all``): pictures, covered (aligned and masked, the labelled face), the
    share covered, and the count of each other outcome."""
    tab = pd.crosstab(results["kind"], results["outcome"])
    tab.loc["all"] = tab.sum()
    if "covered" not in tab:
        tab["covered"] = 0
    tab.insert(0, "n", tab.sum(axis=1))
    tab.insert(1, "coverage", (tab["covered"] / tab["n"]).round(4))
    return tab
