"""The embedded demo data set: UTKFace-named faces built offline from public-domain photos.

UTKFace may not be redistributed and nothing can be downloaded in CI, so the demo set is made
at run time from two public-domain portraits that ship inside dependencies: matplotlib's
``grace_hopper.jpg`` and scikit-image's ``astronaut.png`` (Eileen Collins, NASA). Each image is
a random variant (crop, scale, rotation, flip, colour, blur) of one of them.

The labels are *learnable by construction*: each is tied to a visible cue painted on the face
before the variant is made, so the cue moves with the face through alignment:

- **sex**: a global colour cast, warm (red up, blue down) for 0 and cool for 1;
- **race**: a coloured disc on the forehead, one hue per class (red, green, blue, yellow, magenta);
- **age**: a dark bar across the chin whose length is proportional to the age.

The age cue sits where a mask goes and the other two do not, so on demo data a mask should hide
age but not sex or race: the pipeline's figures on the demo set test the machinery, not faces.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from tqdm import tqdm

from maskprivacy.core.labels import utk_name
from maskprivacy.core.plumbing import no_bar

RACE_RGB = ((220, 30, 30), (30, 200, 30), (30, 60, 230), (235, 220, 30), (220, 40, 220))
STAMP0 = 20260101000000000
SIZE = 200
AGE_RANGE = (1, 90)
# The 68 landmarks (x y, in pixels) of the two portraits, as the detection cascade of
# maskprivacy.faces.detect finds them (tests/test_download.py checks that it still does). They
# are fixed here so that the demo set, and the download stage, do not depend on that cascade.
PORTRAIT_LANDMARKS = {
    "grace_hopper": (
        "175 198 180 223 186 247 192 269 201 291 214 309 233 321 253 328 276 330 299 327 322 318 "
        "342 305 358 287 368 264 372 240 373 213 373 185 183 186 191 171 207 164 225 164 242 169 "
        "283 166 298 157 317 154 336 159 349 171 265 189 265 206 265 222 266 238 245 247 255 250 "
        "267 253 279 250 289 246 205 198 214 192 225 191 238 196 226 199 215 200 292 193 303 186 "
        "316 185 327 189 317 193 305 194 230 280 244 273 258 271 268 273 278 271 293 272 309 273 "
        "293 285 279 289 268 290 258 290 244 287 235 279 258 278 268 279 279 278 303 274 278 278 "
        "268 280 258 279"
    ),
    "astronaut": (
        "179 104 180 116 181 127 182 139 185 151 191 161 200 169 210 176 221 178 233 177 244 171 "
        "253 163 261 154 265 143 268 132 270 120 272 108 187 93 192 88 200 87 208 89 216 92 236 93 "
        "244 90 252 90 260 92 265 98 226 102 225 111 225 119 225 127 214 131 219 133 224 135 229 "
        "133 234 132 195 101 200 98 207 99 212 104 206 104 200 104 238 105 243 101 250 101 255 104 "
        "250 106 244 106 201 140 210 139 218 139 224 141 230 140 237 140 245 141 237 151 229 155 "
        "223 156 216 155 208 150 204 141 218 143 223 144 229 143 242 142 229 150 223 151 217 150"
    ),
}


def portraits() -> dict[str, Image.Image]:
    """The two public-domain portraits, by the names of :data:`PORTRAIT_LANDMARKS`."""
    import matplotlib.cbook
    import skimage.data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = Image.open(f).convert("RGB")
    astronaut = Image.fromarray(skimage.data.astronaut()).convert("RGB")
    return {"grace_hopper": hopper, "astronaut": astronaut}


def eye_centres(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right eye (image left, points 36-41) and left eye (42-47)."""
    return pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)


@functools.lru_cache(maxsize=1)
def base_faces() -> tuple[tuple[Image.Image, np.ndarray], ...]:
    """The two public-domain portraits with their 68 landmarks."""
    return tuple(
        (im, np.array(PORTRAIT_LANDMARKS[name].split(), dtype=np.float64).reshape(68, 2))
        for name, im in portraits().items()
    )


def paint_cues(image: Image.Image, pts: np.ndarray, age: int, sex: int, race: int) -> Image.Image:
    """Paint the three label cues onto a copy of a base portrait (see module docstring)."""
    im = image.copy()
    draw = ImageDraw.Draw(im)
    left, right = eye_centres(pts)
    iod = float(np.hypot(*(right - left)))
    eyes_mid = (left + right) / 2
    up = (eyes_mid - pts[8]) / np.linalg.norm(eyes_mid - pts[8])  # chin -> eyes direction
    # race: disc on the forehead
    c = eyes_mid + up * 0.75 * iod
    r = 0.3 * iod
    draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=RACE_RGB[race])
    # age: bar across the chin, centred on the chin, length proportional to age
    chin = pts[8] + up * 0.35 * iod
    across = np.array([up[1], -up[0]])
    half = 0.1 * iod + (age / AGE_RANGE[1]) * 0.8 * iod
    thick = 0.12 * iod
    a, b = chin - across * half, chin + across * half
    n = up * thick
    draw.polygon([tuple(a - n), tuple(b - n), tuple(b + n), tuple(a + n)], fill=(15, 15, 15))
    # sex: global colour cast
    arr = np.asarray(im).astype(np.float32)
    gain = np.array([1.18, 1.0, 0.82]) if sex == 0 else np.array([0.82, 1.0, 1.18])
    return Image.fromarray(np.clip(arr * gain, 0, 255).astype(np.uint8))


def variant(
    image: Image.Image, pts: np.ndarray, rng: np.random.Generator, size: int = SIZE
) -> Image.Image:
    """A random crop/scale/rotation/flip/colour/blur of a portrait, framed like UTKFace."""
    left, right = eye_centres(pts)
    iod = float(np.hypot(*(right - left)))
    centre = pts.mean(axis=0) + rng.normal(0, 0.08 * iod, 2)
    side = iod * rng.uniform(3.0, 3.8)
    theta = np.deg2rad(rng.uniform(-12, 12))
    s = side / size
    c, si = np.cos(theta) * s, np.sin(theta) * s
    # output (u, v) -> input: centre + R(theta) S ((u, v) - size/2)
    a, b = c, -si
    d, e = si, c
    off = size / 2
    coeffs = (a, b, centre[0] - a * off - b * off, d, e, centre[1] - d * off - e * off)
    out = image.transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.85, 1.15))
    blur = rng.uniform(0, 1.0)
    if blur > 0.3:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    return out


def sample_labels(rng: np.random.Generator) -> tuple[int, int, int]:
    return int(rng.integers(*AGE_RANGE, endpoint=True)), int(rng.integers(2)), int(rng.integers(5))


def generate(
    folder: str | Path, n_images: int = 320, seed: int = 0, progress: bool = True
) -> list[Path]:
    """Write ``n_images`` UTKFace-named demo JPEGs into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bases = base_faces()
    paths = []
    for i in tqdm(range(n_images), desc="demo", unit="img", disable=no_bar(progress)):
        age, sex, race = sample_labels(rng)
        image, pts = bases[int(rng.integers(len(bases)))]
        out = variant(paint_cues(image, pts, age, sex, race), pts, rng)
        path = folder / utk_name(age, sex, race, STAMP0 + i)
        out.save(path, quality=92)
        paths.append(path)
    return paths
