"""Extract throughput: lmpipe's extract stage vs datatrove's own WARC → trafilatura pipeline, same files, same cores.

    .venv/bin/pip install faust-cchardet python-magic   # datatrove's WarcReader needs them (not lmpipe deps)
    .venv/bin/python bench/extract_throughput.py --write bench/RESULTS.md

Workload: ``--files`` WARC files, each ``--copies`` byte-concatenated copies of aeb-articles.warc.gz (181 real
article pages), plus every other shared WARC that both readers accept (datatrove's task dies on clueweb09-pywarc and on
the truncated resiliparse/clipped). Each configuration runs in a fresh child process pinned (sched_setaffinity) to
``procs`` cores, so "per core" means what it says: a system's sandbox worker and its reader share those cores.

- datatrove: WarcReader → Trafilatura(favour_precision=True, deduplicate=True, FineWeb's settings) → JsonlWriter,
  by LocalPipelineExecutor(tasks=procs, workers=procs).
- lmpipe: ``run_extract`` once per file (one shard per WARC, as the flows do) in a process pool of ``procs``.
- lmpipe-fineweb: the same with ``strategy=fineweb, fallback=none`` (FineWeb's extraction, lmpipe's plumbing).

docs/s counts the workload's HTTP response records (the same number for every system) over wall time. Peak memory
is the largest sum of PSS over the child's whole process tree (RSS with pages shared copy-on-write split between
the processes sharing them), sampled from /proc every 0.25 s; CPU s is summed over that tree. F1 comes from a
separate run on aeb-articles.warc.gz alone (trafilatura's duplicate cache would otherwise see the copies), scored
by bench/aeb_score.py. Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: bench/ is not a package

from bench.aeb_score import DEFAULT_AEB, jsonl_predictions, load_truth, parquet_predictions, score  # noqa: E402

SHARED_WARC = DEFAULT_AEB.parents[1] / "warc"
AEB_WARC = SHARED_WARC / "aeb-articles.warc.gz"
SYSTEMS = ("datatrove", "lmpipe", "lmpipe-fineweb")
# Shared WARCs datatrove's reader cannot get through (its whole task fails): warcio rejects clueweb09-pywarc's headers,
# and the truncated gzip of resiliparse/clipped raises EOFError. lmpipe reads both (the rest / up to the cut).
WARCIO_REJECTS = ("clueweb09-pywarc", "clipped.warc.gz")
NOTES_MARKER = "<!-- generated above by bench/extract_throughput.py; notes below are kept on re-runs -->"
TIMEOUT_SECONDS = 10.0  # per page, the same for both systems (datatrove's default is 1 s, lmpipe's 10 s)


def build_workload(workdir: Path, files: int, copies: int, extra: bool = True) -> Path:
    """``files`` × (``copies`` × aeb-articles) + the other shared WARCs, in ``workdir/in``."""
    indir = workdir / "in"
    indir.mkdir(parents=True)
    aeb = AEB_WARC.read_bytes()
    for i in range(files):
        # gzip members concatenate: a multi-member .warc.gz is a valid WARC with every record repeated
        (indir / f"00-aeb-x{copies}-{i}.warc.gz").write_bytes(aeb * copies)
    if extra:
        for path in sorted(SHARED_WARC.rglob("*.warc.gz")):
            if path != AEB_WARC and not any(r in str(path) for r in WARCIO_REJECTS):
                shutil.copyfile(path, indir / f"10-{path.parent.name}-{path.name}")
    return indir


def count_responses(indir: Path) -> int:
    from pipelines.warc import WarcReadReport, iter_responses

    n = 0
    for path in sorted(indir.glob("*.warc.gz")):
        report = WarcReadReport(records={})
        n += sum(1 for _ in iter_responses(str(path), report))
    return n


# ---- the child side: one system, one configuration ------------------------------------------------------------


def _lmpipe_one(args: tuple[str, str, dict]) -> dict:
    from pipelines.config import ExtractConfig
    from pipelines.extract import run_extract

    path, out, overrides = args
    stats = run_extract([path], out, ExtractConfig(timeout_seconds=TIMEOUT_SECONDS, **overrides))
    return stats.model_dump()


def run_child(system: str, procs: int, indir: Path, outdir: Path) -> dict:
    """Runs in the benchmark's child process; returns counts (time and memory are measured by the parent)."""
    os.sched_setaffinity(0, list(range(procs)))
    files = sorted(str(p) for p in indir.glob("*.warc.gz"))
    if system == "datatrove":
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.extractors import Trafilatura
        from datatrove.pipeline.readers import WarcReader
        from datatrove.pipeline.writers import JsonlWriter

        LocalPipelineExecutor(
            pipeline=[
                WarcReader(str(indir), glob_pattern="*.warc.gz"),
                Trafilatura(favour_precision=True, deduplicate=True, timeout=TIMEOUT_SECONDS),
                JsonlWriter(str(outdir)),
            ],
            tasks=procs,
            workers=procs,
            logging_dir=str(outdir.parent / f"{outdir.name}-logs"),
            skip_completed=False,
        ).run()
        kept = 0
        for path in outdir.glob("*.jsonl.gz"):
            import gzip

            with gzip.open(path, "rt") as f:
                kept += sum(1 for _ in f)
        return {"kept": kept}
    overrides = {"strategy": "fineweb", "fallback": "none"} if system == "lmpipe-fineweb" else {}
    jobs = [(p, str(outdir / f"{Path(p).name.removesuffix('.warc.gz')}.parquet"), overrides) for p in files]
    if procs == 1:
        results = [_lmpipe_one(j) for j in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("forkserver")) as pool:
            results = list(pool.map(_lmpipe_one, jobs))
    dropped: dict[str, int] = {}
    for r in results:
        for k, v in r["dropped"].items():
            dropped[k] = dropped.get(k, 0) + v
    return {"kept": sum(r["docs_kept"] for r in results), "docs_in": sum(r["docs_in"] for r in results), **dropped}


# ---- the parent side: launch, sample the process tree, collect -------------------------------------------------


def sample_tree_pss(root: int, cpu_ticks: dict[int, int]) -> dict[int, int]:
    """Memory (bytes) of ``root`` and each of its descendants, by pid; records each one's CPU ticks in ``cpu_ticks``.

    Memory is PSS (proportional set size): a forked worker shares its parent's pages copy-on-write, and summing RSS
    would count those twice. CPU comes from /proc too because getrusage(RUSAGE_CHILDREN) misses processes their
    parent never waits for (a forkserver and its workers).
    """
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    pss, stack = {}, [root]
    page = os.sysconf("SC_PAGE_SIZE")
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        fields = stats.get(pid)
        if not fields:
            continue
        # fields after the command name: state ppid ... utime stime (14th, 15th of stat) ... rss (24th, pages)
        cpu_ticks[pid] = max(cpu_ticks.get(pid, 0), int(fields[11]) + int(fields[12]))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                pss[pid] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pss[pid] = int(fields[21]) * page
    return pss


def measure(system: str, procs: int, indir: Path, workdir: Path, docs: int) -> dict:
    """Run one configuration in a child process; wall time, CPU time, peak tree PSS and the child's counts."""
    outdir = workdir / f"out-{system}-{procs}-{indir.name}"
    cmd = [sys.executable, __file__, "_child", system, str(procs), str(indir), str(outdir)]
    t0 = time.perf_counter()
    log = outdir.with_name(outdir.name + ".log")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    peak, cpu_ticks = 0, {}
    while proc.poll() is None:
        peak = max(peak, sum(sample_tree_pss(proc.pid, cpu_ticks).values()))
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{system} with {procs} procs failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    cpu = sum(cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")  # misses at most the last 0.25 s of each process
    counts = json.loads(out.strip().splitlines()[-1])
    return {
        "system": system,
        "procs": procs,
        "docs": docs,
        "wall_s": wall,
        "cpu_s": cpu,
        "docs_per_s": docs / wall,
        "docs_per_s_core": docs / wall / procs,
        "peak_mb": peak / 2**20,
        "outdir": str(outdir),
        **counts,
    }


def aeb_f1(system: str, workdir: Path) -> tuple[float, float, float]:
    """F1 / P / R of one system's extraction of aeb-articles.warc.gz alone (fresh process, 1 core)."""
    indir = workdir / f"f1-in-{system}"
    indir.mkdir()
    shutil.copyfile(AEB_WARC, indir / AEB_WARC.name)
    run = measure(system, 1, indir, workdir, 181)
    truth = load_truth()
    out = Path(run["outdir"])
    if system == "datatrove":
        pred = jsonl_predictions(sorted(out.glob("*.jsonl.gz")), truth)
    else:
        pred = parquet_predictions(next(out.glob("*.parquet")), truth)
    s = score(system, truth, pred)
    return s.f1, s.precision, s.recall


def lmpipe_variant_f1(workdir: Path) -> list[tuple[str, str, float, float, float, float]]:
    """AEB F1 and stage seconds of lmpipe's strategy × fallback settings (in-process, one shard each)."""
    from pipelines.config import ExtractConfig
    from pipelines.extract import run_extract

    truth = load_truth()
    rows = []
    for strategy in ("fineweb", "fast_first"):
        for fallback in ("none", "baseline", "readability", "justext"):
            out = workdir / f"variant-{strategy}-{fallback}.parquet"
            stats = run_extract([str(AEB_WARC)], str(out), ExtractConfig(strategy=strategy, fallback=fallback))
            s = score("", truth, parquet_predictions(out, truth))
            rows.append((strategy, fallback, s.f1, s.precision, s.recall, stats.seconds))
    return rows


def render(args: argparse.Namespace, runs: list[dict], f1: dict, rss: list[dict], variants: list, docs: int) -> str:
    cmd = "python bench/extract_throughput.py " + " ".join(sys.argv[1:])
    lines = [
        "# Extract benchmarks",
        "",
        f"Produced by `.venv/bin/{cmd}` on {os.cpu_count()} cores ({time.strftime('%Y-%m-%d')}); "
        f"see the script's docstring for the method. Each configuration ran {args.repeat}× (interleaved); the "
        "table shows its fastest run.",
        "",
        f"## Throughput: lmpipe vs datatrove (workload: {docs} HTTP responses, {args.files} files × "
        f"{args.copies} copies of aeb-articles + the other shared WARCs)",
        "",
        "| system | procs (= cores) | wall s | CPU s | docs/s | docs/s/core | × datatrove | × per run (wall) "
        "| × per run (CPU s) | peak PSS MB | kept | AEB F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    base = {r["procs"]: r["docs_per_s"] for r in runs if r["system"] == "datatrove"}
    for r in runs:
        lines.append(
            f"| {r['system']} | {r['procs']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['docs_per_s']:.1f} | "
            f"{r['docs_per_s_core']:.1f} | {r['docs_per_s'] / base[r['procs']]:.2f} | "
            f"{' '.join(f'{w:.2f}' for w, _ in r.get('ratios', []))} | "
            f"{' '.join(f'{c:.2f}' for _, c in r.get('ratios', []))} | {r['peak_mb']:.0f} | "
            f"{r['kept']} | {f1[r['system']][0]:.3f} |"
        )
    lines += ["", "AEB F1 / precision / recall of each system on aeb-articles.warc.gz alone:", ""]
    for system, (f, p, r) in f1.items():
        lines.append(f"- {system}: F1 {f:.3f}, P {p:.3f}, R {r:.3f}")
    if rss:
        lines += [
            "",
            "## Peak memory (PSS) against WARC size (lmpipe, 1 process, one file of k concatenated copies of aeb)",
            "",
            "| copies | WARC MB | responses | wall s | peak PSS MB |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in rss:
            row = (r["copies"], f"{r['warc_mb']:.0f}", r["docs"], f"{r['wall_s']:.1f}", f"{r['peak_mb']:.0f}")
            lines.append("| " + " | ".join(map(str, row)) + " |")
    lines += ["", "Memory against WARC size: bench/extract_memory.py, its own section below."]
    if variants:
        lines += [
            "",
            "## lmpipe extraction settings on AEB (181 pages; one run each, stage seconds are single-run timings)",
            "",
            "| strategy | fallback | F1 | precision | recall | stage s |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for strategy, fallback, f, p, r, secs in variants:
            lines.append(f"| {strategy} | {fallback} | {f:.3f} | {p:.3f} | {r:.3f} | {secs:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        system, procs, indir, outdir = argv[1], int(argv[2]), Path(argv[3]), Path(argv[4])
        print(json.dumps(run_child(system, procs, indir, outdir)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=4, help="WARC files of concatenated aeb copies")
    parser.add_argument("--copies", type=int, default=4, help="aeb-articles copies per file")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process (= core) counts")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration; the fastest is reported")
    parser.add_argument(
        "--rss-copies", type=int, nargs="*", default=[], help="sizes for a peak-PSS table (see bench/extract_memory.py)"
    )
    parser.add_argument("--no-variants", action="store_true", help="skip the strategy × fallback F1 table")
    parser.add_argument("--write", type=Path, help="write the Markdown report here (e.g. bench/RESULTS.md)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lmpipe-bench-") as tmp:
        workdir = Path(tmp)
        indir = build_workload(workdir, args.files, args.copies)
        docs = count_responses(indir)
        history: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.repeat):  # interleaved, so a burst of load elsewhere on the machine hits all systems
            for procs in args.procs:
                for system in args.systems:
                    run = measure(system, procs, indir, workdir, docs)
                    print(json.dumps(run), file=sys.stderr)
                    history.setdefault((system, procs), []).append(run)
        runs = []
        for (_, procs), reps in history.items():
            dt = history.get(("datatrove", procs), [])
            # each repetition's speed-up over datatrove's run of the same repetition: (wall, CPU s)
            ratios = [(d["wall_s"] / r["wall_s"], d["cpu_s"] / r["cpu_s"]) for d, r in zip(dt, reps, strict=False)]
            runs.append({**min(reps, key=lambda r: r["wall_s"]), "ratios": ratios})
        f1 = {system: aeb_f1(system, workdir) for system in args.systems}
        rss = []
        for copies in args.rss_copies:
            d = build_workload(workdir / f"rss-{copies}", 1, copies, extra=False)
            n = count_responses(d)
            r = measure("lmpipe", 1, d, workdir, n)
            rss.append({"copies": copies, "warc_mb": copies * AEB_WARC.stat().st_size / 2**20, **r})
            print(json.dumps(rss[-1]), file=sys.stderr)
        variants = [] if args.no_variants else lmpipe_variant_f1(workdir)
        report = render(args, runs, f1, rss, variants, docs)
    print(report)
    if args.write:
        # Notes written by hand below the marker (profiles, what was tried) survive a re-run.
        old = args.write.read_text() if args.write.exists() else ""
        notes = old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else NOTES_MARKER + "\n"
        args.write.write_text(report + "\n" + notes)
    return 0


if __name__ == "__main__":  # datatrove's LocalPipelineExecutor starts its workers with forkserver
    sys.exit(main())
