"""Where dlib's model files are (the landmark predictor, the face descriptor network), found
without importing dlib or the package that ships them."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def model_file(name: str, param: str) -> Path:
    """The dlib model file ``name`` shipped by ``face-recognition-models`` (or Debian's
    libdlib-data); ``param`` names the setting that can point at it instead (for the error).

    The package is located with ``importlib`` rather than imported, because its import needs
    ``pkg_resources`` (setuptools < 82).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / "models" / name)
    candidates.append(Path("/usr/share/dlib") / name)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"{name} not found (looked in {', '.join(map(str, candidates))}). "
        "Install it with `pip install face-recognition-models` (or Debian's libdlib-data), "
        f"or set `{param}` in params.yaml to the file's path."
    )
