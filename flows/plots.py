"""Images for run artifacts: the funnel as a bar chart, any PNG as a markdown image the Prefect UI shows inline."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from pipelines.stats import StageStats

KEPT_COLOUR = "#2a7ab9"
# Drop reasons: matplotlib's tab10 without its blue (the kept bar's) and its grey (the long tail's, OTHER_COLOUR).
DROP_COLOURS = ("#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
OTHER_COLOUR = "#bdbdbd"


def funnel_png(stats: list[StageStats]) -> bytes:
    """Documents kept per stage, with each stage's drops stacked by reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    names = [s.stage for s in stats]
    ax.barh(names, [s.docs_kept for s in stats], color=KEPT_COLOUR, label="kept")
    left = [s.docs_kept for s in stats]
    reasons = sorted({r for s in stats for r in s.dropped}, key=lambda r: -sum(s.dropped.get(r, 0) for s in stats))
    shown = reasons if len(reasons) <= len(DROP_COLOURS) else reasons[: len(DROP_COLOURS) - 1]
    bars = [(r, [s.dropped.get(r, 0) for s in stats], c) for r, c in zip(shown, DROP_COLOURS, strict=False)]
    if len(reasons) > len(shown):  # the long tail in one grey bar, so every document is drawn
        tail = [sum(n for r, n in s.dropped.items() if r not in shown) for s in stats]
        bars.append(("other reasons", tail, OTHER_COLOUR))
    for reason, widths, colour in bars:
        ax.barh(names, widths, left=left, label=reason, color=colour)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def markdown_image(png: bytes | Path, alt: str) -> str:
    data = png.read_bytes() if isinstance(png, Path) else png
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})"
