"""Reading the README and docs/ as a reader and a link checker see them, and the generated
files whose figures they quote (bench/results.json, reports/metrics.json, ...)."""

from __future__ import annotations

import csv
import functools
import json
import re
from typing import Any

from . import ROOT

DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]

FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)


def _markdown(doc: str) -> str:
    """The doc without its fenced code blocks (a `# comment` there is no heading)."""
    return FENCED.sub("", (ROOT / doc).read_text())


def prose(doc: str) -> str:
    """The doc's text with every run of whitespace one space, as a reader sees it."""
    return " ".join((ROOT / doc).read_text().split())


def links(doc: str) -> list[str]:
    """The targets of the doc's links and pictures that point inside the project."""
    text = re.sub(r"`[^`]+`", "", _markdown(doc))
    return [
        target
        for target in LINK.findall(text)
        if not target.startswith(("http://", "https://", "mailto:"))
    ]


def anchors(doc: str) -> set[str]:
    """The doc's headings as GitHub names their anchors (`## Set up` -> `set-up`)."""
    seen: dict[str, int] = {}
    for heading in HEADING.findall(_markdown(doc)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def quoted(doc: str) -> list[str]:
    """The doc's block quotes, one item (`> - ...` or a paragraph) each, a trailing `; ...`
    or `...` (where a quote is cut short) left off."""
    text = "\n".join(
        line[1:].strip() for line in (ROOT / doc).read_text().splitlines() if line[:1] == ">"
    )
    items = re.split(r"\n(?=- )|\n\n", text)
    return [re.sub(r"(; )?\.\.\.$", "", " ".join(item.split())) for item in items if item]


@functools.cache
def source(path: str) -> Any:
    """A generated file: JSON as it is, history.csv as {epoch: {column: value}}, else text."""
    text = (ROOT / path).read_text()
    if path.endswith(".json"):
        return json.loads(text)
    if path.endswith("history.csv"):
        rows = csv.DictReader(text.splitlines())
        return {row["epoch"]: {k: float(v) for k, v in row.items()} for row in rows}
    return text


def figure(data: Any, key: Any) -> Any:
    """One figure of a source: a path of keys (`training/peers/notebook, JAX/epoch_s`), or a
    function of the whole source for a figure derived from others."""
    if callable(key):
        return key(data)
    for part in key.split("/"):
        data = data[part]
    return data
