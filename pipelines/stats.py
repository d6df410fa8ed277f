"""Per-shard stage statistics and the funnel table built from them.

Every stage returns a ``StageStats``; its counts reconcile: ``docs_in == docs_kept + sum(dropped.values())``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class StageStats(BaseModel):
    """What one stage did to one shard (or, for global stages, to all of them)."""

    stage: str = Field(description="Stage name: extract, filter, dedup, pii, tokenize, train.")
    shard: str = Field(description="Shard id, or 'all' for global stages.")
    docs_in: int = 0
    docs_kept: int = 0
    dropped: dict[str, int] = Field(default_factory=dict, description="Dropped documents per reason.")
    bytes_in: int = 0
    bytes_out: int = 0
    tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, float | int | str] = Field(default_factory=dict, description="Stage-specific counters.")

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def check(self) -> StageStats:
        """Raise if the counts do not reconcile (in = kept + dropped); return self for chaining."""
        total = self.docs_kept + sum(self.dropped.values())
        if total != self.docs_in:
            raise ValueError(
                f"{self.stage}/{self.shard}: counts do not reconcile: in={self.docs_in} "
                f"kept={self.docs_kept} dropped={sum(self.dropped.values())} {self.dropped}"
            )
        return self

    def save(self, path: str | Path) -> None:
        """Write atomically (shards.atomic_write_bytes): a process killed mid-write never leaves half a JSON file."""
        from pipelines.shards import atomic_write_bytes  # shards' writers record these stats

        atomic_write_bytes(path, self.model_dump_json(indent=2).encode())

    @classmethod
    def load(cls, path: str | Path) -> StageStats:
        return cls.model_validate_json(Path(path).read_text())


def merge(stats: list[StageStats], stage: str | None = None) -> StageStats:
    """Sum shard-level stats into one row for the funnel."""
    out = StageStats(stage=stage or (stats[0].stage if stats else "?"), shard="all")
    for s in stats:
        out.docs_in += s.docs_in
        out.docs_kept += s.docs_kept
        out.bytes_in += s.bytes_in
        out.bytes_out += s.bytes_out
        out.tokens += s.tokens
        out.seconds += s.seconds
        for reason, n in s.dropped.items():
            out.drop(reason, n)
        for k, v in s.extra.items():
            if isinstance(v, (int, float)) and isinstance(out.extra.get(k, 0), (int, float)):
                out.extra[k] = out.extra.get(k, 0) + v
            else:
                out.extra[k] = v
    return out


def funnel_rows(stages: list[StageStats]) -> list[dict[str, object]]:
    """One row per stage and drop reason: the table flows publish and the CLI prints."""
    rows: list[dict[str, object]] = []
    for s in stages:
        rows.append(
            {
                "stage": s.stage,
                "docs_in": s.docs_in,
                "kept": s.docs_kept,
                "dropped": sum(s.dropped.values()),
                "reason": "",
                "tokens": s.tokens,
            }
        )
        for reason, n in sorted(s.dropped.items(), key=lambda kv: -kv[1]):
            rows.append({"stage": "", "docs_in": "", "kept": "", "dropped": n, "reason": reason, "tokens": ""})
    return rows


def funnel_markdown(stages: list[StageStats]) -> str:
    """The funnel as a Markdown table (Prefect artifact, report)."""
    lines = ["| stage | docs in | kept | dropped | reason |", "|---|---:|---:|---:|---|"]
    for r in funnel_rows(stages):
        lines.append(f"| {r['stage']} | {r['docs_in']} | {r['kept']} | {r['dropped']} | {r['reason']} |")
    return "\n".join(lines)
