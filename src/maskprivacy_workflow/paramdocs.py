"""The parameter reference of docs/parameters.md, generated from the schema and params.yaml.

Every key the schema (``workflow/schemas/params.schema.yaml``) allows gets a row: its value in
``params.yaml`` (or the schema's default where params.yaml leaves it out), what the schema
allows, and the comment params.yaml gives it. The table lives between the markers
``<!-- BEGIN generated: parameters -->`` and ``<!-- END generated: parameters -->`` of
docs/parameters.md; the prose around it is written by hand.

    python -m maskprivacy_workflow.paramdocs            # rewrite the table in docs/parameters.md
    python -m maskprivacy_workflow.paramdocs --check    # exit 1 if the table is stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from maskprivacy_workflow import generated

NAME = "parameters"
BEGIN = f"<!-- BEGIN generated: {NAME} -->"
END = f"<!-- END generated: {NAME} -->"
DOC = Path("docs/parameters.md")
SCHEMA = Path("workflow/schemas/params.schema.yaml")
PARAMS = Path("params.yaml")
KEY = re.compile(r"^(\s*)([A-Za-z_][\w]*):(.*)$")
LONG = 48  # a value longer than this, written out, is shown as "see params.yaml"


def comments(text: str) -> dict[str, str]:
    """Each key's comment in a commented YAML file, by dotted path: the comment on the key's line
    plus the comment-only lines after it; a line of a key the caller does not document (a set's
    name under ``mask.sets``) is folded into the caller's choice later, so every line is kept
    under its own path here."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last = None
    for line in text.splitlines():
        m = KEY.match(line)
        if m:
            indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key))
            last = ".".join(k for _, k in stack)
            found[last] = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        elif line.strip().startswith("#") and last is not None and line.startswith(" "):
            found[last] = (found[last] + " " + line.strip().lstrip("#").strip()).strip()
        elif not line.startswith(" "):
            last = None  # a top-level comment block belongs to no key
    return {k: re.sub(r"\s+", " ", v.lstrip("#").strip()) for k, v in found.items()}


def resolve(node: dict, root: dict) -> dict:
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**resolve(target, root), **{k: v for k, v in node.items() if k != "$ref"}}


def scalar(v: Any) -> str:
    if v is True or v is False:
        return str(v).lower()
    return str(v)


def allowed(node: dict, root: dict) -> str:
    """What the schema allows, in a few words."""
    node = resolve(node, root)
    if "enum" in node:
        return " | ".join(dict.fromkeys(scalar(v) for v in node["enum"]))
    if "oneOf" in node:
        return "; or ".join(allowed(n, root) for n in node["oneOf"])
    if "const" in node:
        return scalar(node["const"])
    kind = node.get("type", "")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    bounds = [
        f"{op} {node[k]}"
        for k, op in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if k in node
    ]
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`")
    if kind == "array" or "items" in node:
        n = [node.get("minItems"), node.get("maxItems")]
        size = f"{n[0]}" if n[0] is not None and n[0] == n[1] else f"{n[0]} or more" if n[0] else ""
        items = allowed(node.get("items", {}), root)
        return f"list of {size + ' ' if size else ''}({items})".replace("()", "(any)")
    if kind == "object" or "properties" in node or "additionalProperties" in node:
        if node.get("properties"):
            return "keys " + ", ".join(node["properties"])
        return "name -> settings"
    return " ".join([kind or "any", ", ".join(bounds)]).strip()


def shown(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    text = text.removesuffix("...").strip()
    return "see params.yaml" if len(text) > LONG else f"`{text}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def rows(schema: dict, params: dict, notes: dict[str, str]) -> list[str]:
    """The markdown: one table per section of the schema."""
    out: list[str] = []
    known = schema_keys(schema)
    for section, sub in schema["properties"].items():
        sub = resolve(sub, schema)
        head = f"### `{section}`"
        out += ["", head, ""]
        if notes.get(section):
            out += [cell(notes[section]), ""]
        out += ["| key | params.yaml | allowed | meaning |", "| --- | --- | --- | --- |"]
        values = params.get(section, {}) or {}
        for key, node in (sub.get("properties") or {}).items():
            out.append(
                row(f"{section}.{key}", key in values, values.get(key), node, schema, notes, known)
            )
            inner = resolve(node, schema).get("properties") or {}
            children = values.get(key) if isinstance(values.get(key), dict) else {}
            for child, cnode in inner.items():
                path = f"{section}.{key}.{child}"
                if path in notes:  # written on lines of their own in params.yaml: a row each
                    out.append(
                        row(
                            path,
                            child in children,
                            children.get(child),
                            cnode,
                            schema,
                            notes,
                            known,
                        )
                    )
    return out


def row(
    path: str,
    present: bool,
    value: Any,
    node: dict,
    schema: dict,
    notes: dict[str, str],
    known: set[str],
) -> str:
    """One key's row; ``known``: every dotted path the schema names."""
    node = resolve(node, schema)
    if present:
        val = shown(value)
    elif "default" in node:
        val = f"not set (default {shown(node['default'])})"
    else:
        val = "not set"
    # the lines of a set's name (mask.sets.masked) continue their parent's comment
    extra = [v for k, v in notes.items() if k.startswith(path + ".") and k not in known]
    meaning = " ".join([notes.get(path, ""), *extra]).strip()
    return (
        "| "
        + " | ".join(cell(c) for c in (f"`{path}`", val, allowed(node, schema), meaning))
        + " |"
    )


def schema_keys(schema: dict, node: dict | None = None, prefix: str = "") -> set[str]:
    node = resolve(node if node is not None else schema, schema)
    keys = set()
    for key, sub in (node.get("properties") or {}).items():
        path = f"{prefix}{key}"
        keys.add(path)
        keys |= schema_keys(schema, sub, path + ".")
    return keys


def render(root: Path) -> str:
    """docs/parameters.md with its generated table brought up to date."""
    schema = yaml.safe_load((root / SCHEMA).read_text())
    text = (root / PARAMS).read_text()
    table = rows(schema, yaml.safe_load(text), comments(text))
    doc = (root / DOC).read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC}: the markers {BEGIN} and {END} are missing")
    before, rest = doc.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    generated = "\n".join(
        [
            "<!-- made by `python -m maskprivacy_workflow.paramdocs` from the schema and"
            " params.yaml: edit those, then rerun it -->",
            *table,
            "",
        ]
    )
    return f"{before}{BEGIN}\n{generated}{END}{after}"


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv,
        doc=__doc__,
        module="maskprivacy_workflow.paramdocs",
        target=str(DOC),
        render=render,
        stale=f"its parameter table no longer matches {SCHEMA} and {PARAMS}",
        fresh="the schema and params.yaml",
    )


if __name__ == "__main__":
    sys.exit(main())
