"""The HTML pieces every section of the report is made of: a table, an embedded PNG, a value with
its interval. The report is one self-contained page (no CDN, no external file)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(path: Path, caption: str | None = None) -> str:
    """The PNG at ``path``, embedded, under its caption (default: the sentence
    :mod:`maskprivacy.report.captions` has for its name, else the name)."""
    from maskprivacy.report.captions import caption as sentence

    data = base64.b64encode(path.read_bytes()).decode()
    text = html.escape(sentence(path.stem) if caption is None else caption)
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{text}</figcaption></figure>'


def ci(v: float, lo: float | None, hi: float | None, scale: float, digits: int) -> str:
    if lo is None or hi is None:
        return f"{scale * v:.{digits}f}"
    return f"{scale * v:.{digits}f} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
