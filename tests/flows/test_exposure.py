"""Exposure: a credential in the environment appears nowhere lmpipe writes or records, and the PII the pii stage
scrubs is gone from the final token shards.

    pytest -m slow tests/flows/test_exposure.py

One real ``lmpipe refresh --input WARC --data-root D`` through Prefect's ephemeral API, with a planted secret (a
unique random marker) in each credential variable a user may have set: AWS keys, Hugging Face and GitHub tokens,
Prefect's API auth string (client and server side: the ephemeral server then enforces it). The WARC is built here:
real news articles (the ground-truth text of ../shared/data/extraction/aeb) as HTML pages, into which sentences
carrying one planted PII value each (e-mail, phones, IPv4/IPv6, card, IBANs, SSN, bitcoin address, MAC, NINO: every
default ``PIIConfig.entities`` type) are written. Then:

- no secret (nor its base64) is in any file under the data root (shards, manifests, stats, reports), any file of
  PREFECT_HOME (the ephemeral API's SQLite database: flow-run parameters, task runs, logs, artifacts, events) or
  the command's output; the database's flow-run parameters, logs and artifacts are read as well, so the scan is
  known to cover what a leak would go into;
- every token shard (``.bin`` and ``.tokens.parquet``), decoded with the run's tokenizer, holds none of the planted
  PII but each planted sentence with the typed placeholder in the PII's place: the documents carrying PII were kept
  through filter and dedup, and scrubbed exactly where the PII was.
"""

from __future__ import annotations

import base64
import gzip
import html
import io
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from pipelines.config import TokenizeConfig
from pipelines.pii import placeholder
from pipelines.token_shards import read_token_bin

pytestmark = pytest.mark.slow

SECRET_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "HF_TOKEN",
    "GITHUB_TOKEN",
    "PREFECT_API_AUTH_STRING",
)
# One value per entity type of the default PIIConfig (phones, IPs and IBANs in two forms), each one a presidio
# recognizer accepts (checksums, formats).
PII = [
    ("EMAIL_ADDRESS", "morgan.hale.4417@mailbox-quarry.com"),
    ("PHONE_NUMBER", "+1 212-555-0147"),
    ("PHONE_NUMBER", "+44 20 7946 0321"),
    ("IP_ADDRESS", "81.2.69.142"),
    ("IP_ADDRESS", "2606:4700:4700::1111"),
    ("CREDIT_CARD", "4539 1488 0343 6467"),
    ("IBAN_CODE", "GB33 BUKB 2020 1555 5555 55"),
    ("IBAN_CODE", "DE89370400440532013000"),
    ("US_SSN", "536-22-8741"),
    ("CRYPTO", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
    ("MAC_ADDRESS", "3C:22:FB:7A:91:0D"),
    ("UK_NINO", "JG 10 37 23 A"),
]
PAGES = 6  # articles, two planted sentences each
PLANTED = "Readers with questions about file {n:02d} can reach the desk at {value} during office hours."


def planted_sentence(n: int, value: str) -> str:
    return PLANTED.format(n=n, value=value)


def articles(shared_data: Path) -> list[tuple[str, list[str]]]:
    """(url, paragraphs) of real news articles of a few thousand characters, in a fixed order."""
    truth = json.loads((shared_data / "extraction" / "aeb" / "ground-truth.json").read_text())
    chosen = []
    for key in sorted(truth):
        body = truth[key]["articleBody"]
        paragraphs = [p.strip() for p in body.split("\n") if len(p.strip()) > 80]
        if 3000 <= len(body) <= 8000 and len(paragraphs) >= 5:
            chosen.append((truth[key]["url"], paragraphs))
    return chosen[:PAGES]


def build_warc(path: Path, pages: list[tuple[str, list[str]]]) -> None:
    """One gzipped WARC of HTML responses: each article with two planted sentences in its second paragraph."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for i, (url, paragraphs) in enumerate(pages):
            paragraphs = list(paragraphs)
            planted = [planted_sentence(n, value) for n, (_, value) in enumerate(PII) if n // 2 == i]
            paragraphs[1] = " ".join([paragraphs[1], *planted])
            body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paragraphs)
            title = html.escape(paragraphs[0][:60])
            page = (
                f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head>"
                f"<body><header><nav><a href='/'>Home</a></nav></header><main><article><h1>{title}</h1>\n{body}"
                "</article></main><footer>All rights reserved.</footer></body></html>"
            ).encode()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(
                writer.create_warc_record(url, "response", payload=io.BytesIO(page), http_headers=headers)
            )


def leaked(data: bytes, planted: dict[str, str]) -> list[str]:
    """The variables whose planted value is in ``data``: as it is, its random part in any case, or base64."""
    low = data.lower()
    found = []
    for var, value in planted.items():
        token = value.rsplit("-", 1)[-1].encode()
        if value.encode() in data or token in low or base64.b64encode(value.encode()) in data:
            found.append(var)
    return found


def contents(path: Path) -> bytes:
    """A file's bytes; for a Parquet file (compressed pages) also its decoded rows."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        data += repr(pq.read_table(path).to_pylist()).encode()
    return data


def decoded_documents(tokens: Path) -> tuple[list[str], list[str]]:
    """Every document of the token shards, decoded with the run's tokenizer: from the .bin shards (split at the
    end-of-text token) and from the Parquet token shards."""
    tok = Tokenizer.from_file(str(tokens / "tokenizer.json"))
    eot = tok.token_to_id(TokenizeConfig().eot_token)
    from_bin = []
    for shard in sorted(tokens.glob("*.bin")):
        ids = read_token_bin(shard)
        assert ids[0] == eot  # every document is preceded by it
        from_bin += [
            tok.decode(p[1:].tolist(), skip_special_tokens=False) for p in np.split(ids, np.flatnonzero(ids == eot))[1:]
        ]
    from_parquet = []
    for shard in sorted(tokens.glob("*.tokens.parquet")):
        rows = pq.read_table(shard, columns=["tokens"]).column("tokens").to_pylist()
        from_parquet += [tok.decode(t, skip_special_tokens=False) for t in rows]
    return from_bin, from_parquet


def test_no_secret_or_planted_pii_leaves_a_refresh(shared_data: Path, tmp_path: Path) -> None:
    pages = articles(shared_data)
    assert len(pages) == PAGES
    warc = tmp_path / "planted.warc.gz"
    build_warc(warc, pages)
    with gzip.open(warc) as f:  # the PII is in the input as bytes (so its absence later is the scrub's doing)
        raw = f.read().decode()
    assert all(value in raw for _, value in PII)

    planted = {var: f"planted-{var.lower()}-{secrets.token_hex(16)}" for var in SECRET_VARS}
    # user:password; the ephemeral server gets it too, so it enforces the auth the client sends (a team's setup)
    planted["PREFECT_API_AUTH_STRING"] = "admin:" + planted["PREFECT_API_AUTH_STRING"]
    planted["PREFECT_SERVER_API_AUTH_STRING"] = planted["PREFECT_API_AUTH_STRING"]
    home, root = tmp_path / "prefect", tmp_path / "data"
    env = {**os.environ, **planted, "PREFECT_HOME": str(home), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "flows.cli", "refresh", "--input", str(warc), "--data-root", str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # (1) No secret in the command's output, or any file of the data root or of PREFECT_HOME.
    assert not leaked((proc.stdout + proc.stderr).encode(), planted)
    files = [p for d in (root, home) for p in sorted(d.rglob("*")) if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in files) and any(p.suffix == ".parquet" for p in files)
    found = {str(p.relative_to(tmp_path)): hits for p in files if (hits := leaked(contents(p), planted))}
    assert not found, found
    # The database holds the run's parameters (the whole config), logs and artifacts: what a leak would go into.
    with sqlite3.connect(home / "prefect.db") as db:
        parameters = [row[0] for row in db.execute("SELECT parameters FROM flow_run")]
        logs = [row[0] for row in db.execute("SELECT message FROM log")]
        artifacts = [
            row[0] for row in db.execute("SELECT coalesce(data, '') || coalesce(description, '') FROM artifact")
        ]
    assert any(str(root) in p and str(warc) in p for p in parameters)
    assert any("data-refresh" in m for m in logs) and any("Data funnel" in a for a in artifacts)
    assert not leaked("\n".join(parameters + logs + artifacts).encode(), planted)
    # Nor is the PII: only the stages before pii (extract, filter, dedup shards) may hold it.
    prefect_bytes = b"".join(p.read_bytes() for p in files if home in p.parents) + (proc.stdout + proc.stderr).encode()
    assert not [value for _, value in PII if value.encode() in prefect_bytes]

    # (2) The planted documents survived filter and dedup, and the pii stage scrubbed them.
    crawl = root / "sample"
    scrubbed = pq.read_table(crawl / "pii" / "planted.parquet", columns=["url", "text"]).to_pylist()
    assert {url for url, _ in pages} <= {r["url"] for r in scrubbed}
    texts = [r["text"] for r in scrubbed]
    assert not [value for _, value in PII if any(value in t for t in texts)]

    from_bin, from_parquet = decoded_documents(crawl / "tokens")
    assert sorted(from_bin) == sorted(from_parquet) == sorted(texts)  # the decoding is right, and complete
    assert not [value for _, value in PII if any(value in d for d in from_bin)]
    for n, (entity, _) in enumerate(PII):
        assert sum(planted_sentence(n, placeholder(entity)) in d for d in from_bin) == 1, (n, entity)
