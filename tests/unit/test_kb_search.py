"""Building, searching and reopening the knowledge base on mixed Chinese/English chunks written here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from verticalize.config import KBConfig
from verticalize.kb import KBError, KBNotFoundError, build_kb, open_kb, read_chunks

DOCS = {
    "credit/card_fees.md": ("信用卡 > 年费", "信用卡年费为每年100元。持卡人在一年内刷卡满六次，次年年费免收。"),
    "credit/loans.md": ("贷款 > 申请材料", "贷款申请应当提供收入证明和身份证件。借款人不得将贷款用于股票投资。"),
    "credit/overdue.md": ("", "第十二条 如果贷款逾期超过90天，银行应当停止计息并转入不良资产管理。"),
    "ops/runbook.md": ("Runbook > Restart", "To restart the payment service run systemctl restart payment, then "
                                           "check the logs in /var/log/payment for errors."),
    "ops/backup.md": ("Runbook > Backup", "Nightly backups of the ledger database are kept for 30 days and "
                                          "verified every Sunday."),
    "ops/api.md": ("接口说明", "调用 Payment API 接口时，如果请求超时（timeout 超过 30 秒），客户端应当重试三次。"),
}


def doc_id(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def chunk_rows() -> list[dict]:
    return [{"id": f"{doc_id(src)}:0000", "doc_id": doc_id(src), "source": src, "title": title, "text": text,
             "start": 0, "lang": "zh"} for src, (title, text) in DOCS.items()]


def write_chunks(path: Path, rows: list[dict], extra_lines: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kb")
    build_kb(write_chunks(root / "ingest" / "chunks.jsonl", chunk_rows()), root / "kb", KBConfig())
    return root / "kb"


@pytest.mark.parametrize("query, source", [
    ("信用卡年费怎么免收？", "credit/card_fees.md"),
    ("申请贷款需要什么材料", "credit/loans.md"),
    ("逾期多久停止计息", "credit/overdue.md"),
    ("How do I restart the payment service?", "ops/runbook.md"),
    ("how long are ledger backups kept", "ops/backup.md"),
    ("API 接口超时 怎么办", "ops/api.md"),       # mixed-script query
    ("ＳＹＳＴＥＭＣＴＬ", "ops/runbook.md"),      # full-width letters match after NFKC
])
def test_known_queries_rank_the_right_chunk_first(built: Path, query: str, source: str):
    hits = open_kb(built).search(query, 3)
    assert hits and hits[0].source == source, [(h.source, h.score) for h in hits]
    assert hits[0].doc_id == doc_id(source) and hits[0].chunk_id == f"{doc_id(source)}:0000"
    assert hits[0].text == DOCS[source][1]
    assert all(a.score >= b.score > 0 for a, b in zip(hits, hits[1:]))


def test_persistence_round_trip_gives_identical_hits(tmp_path: Path):
    from verticalize.kb.local import LocalBackend

    rows = chunk_rows()
    backend = LocalBackend.create(KBConfig())
    backend.build(rows)
    before = backend.search("贷款 逾期 restart", 6)
    manifest = build_kb(write_chunks(tmp_path / "chunks.jsonl", rows), tmp_path / "kb", KBConfig())
    after = open_kb(tmp_path / "kb").search("贷款 逾期 restart", 6)
    assert [(h.chunk_id, h.score) for h in after] == [(h.chunk_id, h.score) for h in before]
    assert len(after) >= 3
    assert manifest["counts"] == {"chunks": 6, "refused": 0, "documents": 6}
    assert manifest["backend"] == "local" and manifest["index"]["vocabulary"] > 30
    on_disk = json.loads((tmp_path / "kb" / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["quality"]["score"] == manifest["quality"]["score"] > 0
    for name in ("chunks.jsonl", "chunks.offsets.npy", "bm25/vocab.index.json"):
        assert (tmp_path / "kb" / name).is_file(), name
    # The run directory works as well as the kb directory.
    assert open_kb(tmp_path).search("backups", 1) == open_kb(tmp_path / "kb").search("backups", 1)


def test_edge_queries(built: Path):
    kb = open_kb(built)
    assert kb.search("   ", 3) == []
    assert kb.search("quantum chromodynamics 量子色动力学", 3) == []   # nothing matches: no zero-score filler
    assert len(kb.search("贷款 restart 信用卡 backups api 第十二条", 50)) == 6  # k beyond the corpus size
    assert len(kb.search("贷款")) <= KBConfig().top_k                        # default k from the config
    with pytest.raises(KBError, match="positive integer"):
        kb.search("贷款", 0)


def test_bad_rows_are_refused_with_reasons_and_the_rest_indexed(tmp_path: Path):
    rows = chunk_rows()
    path = write_chunks(tmp_path / "chunks.jsonl", rows, [
        "{not json", json.dumps({"id": "x:0001", "text": "  "}), json.dumps(rows[0]), json.dumps(["a list"])])
    manifest = build_kb(path, tmp_path / "kb", KBConfig())
    assert manifest["counts"]["chunks"] == 6 and manifest["counts"]["refused"] == 4
    reasons = {r["line"]: r["reason"] for r in manifest["refused"]}
    assert reasons[7].startswith("not valid JSON")
    assert reasons[8] == "missing or empty 'text'"
    assert reasons[9] == f"duplicate chunk id '{rows[0]['id']}' (first on line 1)"
    assert reasons[10].startswith("not a JSON object")
    # --strict refuses the build and leaves the knowledge base built above as it was.
    with pytest.raises(KBError, match=r"--strict: 4 row\(s\) of .*\n  line 7: not valid JSON"):
        build_kb(path, tmp_path / "kb", KBConfig(), strict=True)
    assert (tmp_path / "kb" / "manifest.json").is_file()
    assert open_kb(tmp_path / "kb").search("ledger backups", 1)[0].source == "ops/backup.md"


def test_missing_or_unusable_input_gives_clear_errors(tmp_path: Path):
    with pytest.raises(KBNotFoundError, match="run `verticalize ingest` first"):
        build_kb(tmp_path / "nope.jsonl", tmp_path / "kb", KBConfig())
    bad = write_chunks(tmp_path / "bad.jsonl", [], ["{oops"])
    with pytest.raises(KBError, match=r"no usable chunks .*1 refused: line 1: not valid JSON"):
        build_kb(bad, tmp_path / "kb", KBConfig())
    assert not (tmp_path / "kb").exists()
    with pytest.raises(KBError, match="none of the 1 chunks has an indexable word"):
        build_kb(write_chunks(tmp_path / "stop.jsonl", [{"id": "s:0000", "text": "的了是。。。"}]), tmp_path / "kb",
                 KBConfig())
    with pytest.raises(KBError, match="unknown kb.backend 'elastic'; registered backends: local"):
        build_kb(write_chunks(tmp_path / "ok.jsonl", chunk_rows()), tmp_path / "kb", KBConfig(backend="elastic"))
    with pytest.raises(KBNotFoundError, match="kb build"):
        open_kb(tmp_path / "kb")


def test_read_chunks_keeps_order_and_fields(tmp_path: Path):
    chunks, refused = read_chunks(write_chunks(tmp_path / "c.jsonl", chunk_rows()))
    assert refused == [] and [c["source"] for c in chunks] == list(DOCS)


def test_rebuild_while_open_keeps_the_open_kb_working(tmp_path: Path):
    rows = chunk_rows()
    chunks = write_chunks(tmp_path / "chunks.jsonl", rows)
    build_kb(chunks, tmp_path / "kb", KBConfig())
    serving = open_kb(tmp_path / "kb")
    before = serving.search("ledger backups", 2)
    # Rebuild in place with different content, as `kb build` does while a server is running.
    write_chunks(chunks, [dict(r, text=r["text"] + " 新增内容") for r in rows[:3]])
    build_kb(chunks, tmp_path / "kb", KBConfig())
    assert serving.search("ledger backups", 2) == before  # old index and chunk store still readable
    assert open_kb(tmp_path / "kb").search("ledger backups", 2) == []  # the new KB has no backup chunk
    assert not list((tmp_path / "kb").glob("bm25.*"))  # staging and old directories are gone
