"""dlib face detection and 68-point landmarks, loaded once per process."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

PREDICTOR_NAME = "shape_predictor_68_face_landmarks.dat"


def default_predictor_path() -> Path:
    """The 68-point model shipped by ``face-recognition-models`` (or Debian's libdlib-data).

    The package is located with ``importlib`` rather than imported, because its import needs
    ``pkg_resources`` (setuptools < 82).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / "models" / PREDICTOR_NAME)
    candidates.append(Path("/usr/share/dlib") / PREDICTOR_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"{PREDICTOR_NAME} not found (looked in {', '.join(map(str, candidates))}). "
        "Install it with `pip install face-recognition-models` (or Debian's libdlib-data), "
        "or set `align.predictor` in params.yaml to the file's path."
    )


@functools.lru_cache(maxsize=4)
def models(predictor: str | None = None):
    """(detector, shape predictor), cached per process."""
    import dlib

    path = Path(predictor) if predictor else default_predictor_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"align.predictor: {path} does not exist; download dlib's {PREDICTOR_NAME} "
            "or leave align.predictor empty to use the one from face-recognition-models."
        )
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


def detect_landmarks(
    rgb: np.ndarray, upsample: tuple[int, ...] = (0, 1), predictor: str | None = None
) -> tuple[np.ndarray | None, str]:
    """68 landmarks (x, y) of the largest frontal face, and how it was found.

    Tries each upsample level in turn (the first that finds a face wins). Returns
    ``(None, "no_face")`` when none does.
    """
    import dlib

    detector, shape_predictor = models(predictor)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    for up in upsample:
        rects = detector(rgb, up)
        if len(rects):
            rect = max(rects, key=lambda r: r.width() * r.height())
            shape = shape_predictor(
                rgb, dlib.rectangle(rect.left(), rect.top(), rect.right(), rect.bottom())
            )
            pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            return pts, f"upsample{up}"
    return None, "no_face"


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right eye (image left, points 36-41) and left eye (42-47)."""
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
