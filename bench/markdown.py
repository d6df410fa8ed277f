"""Shared by the benchmark scripts: write one generated section of a Markdown results file."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, text: str, begin: str, end: str) -> None:
    """Replace the section between the ``begin`` and ``end`` markers of ``path`` with ``text`` (which carries both
    markers), or append it when the file has no such section yet. The rest of the file is kept as it is."""
    text = text if text.endswith("\n") else text + "\n"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + text + old[old.index(end) + len(end) :].removeprefix("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def publish(report: str, write: Path | None, begin: str, end: str) -> None:
    """Print a generated report and, when ``write`` names a results file, replace its section there."""
    print(report)
    if write:
        replace_section(write, report, begin, end)
