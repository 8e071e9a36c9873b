"""Ingest end to end on a mixed Chinese/English corpus with broken files: every file accounted for, PII gone,
structure kept, stable ids, deduplication, strict mode and the CLI."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verticalize.artifacts import read_jsonl
from verticalize.cli import app
from verticalize.config import IngestConfig
from verticalize.ingest import IngestError, ingest
from verticalize.pii import luhn_valid

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
VALID_ID = "11010519491231002" + "10X98765432"[sum(int(d) * w for d, w in zip("11010519491231002", _WEIGHTS)) % 11]
INVALID_ID = VALID_ID[:17] + ("1" if VALID_ID[17] != "1" else "2")
CARD = next(f"622202020000123456{d}" for d in range(10) if luhn_valid(f"622202020000123456{d}"))
BAD_CARD = CARD[:-1] + str((int(CARD[-1]) + 1) % 10)

LAW = f"""# 个人贷款管理办法

## 第一章 总则

第一条 为了规范商业银行个人贷款业务行为，加强个人贷款业务审慎经营管理，促进个人贷款业务健康发展，制定本办法。
第二条 借款人应当提供真实、完整的申请材料。借款人张三，身份证号{VALID_ID}，联系电话13812345678，邮箱zhangsan@example.com。
第三条 贷款人不得发放无指定用途的个人贷款。还款账户为{CARD}；旧账号{BAD_CARD}已注销；登记号码{INVALID_ID}有误。

## 第二章 受理与调查

第四条 贷款人应当建立借款人合理的收入偿债比例控制机制，结合借款人收入、负债、支出、贷款用途、担保情况等因素，合理确定贷款金额和期限。
第五条 贷款调查包括但不限于借款人基本情况、收入情况、借款用途、还款来源、担保人担保能力等内容。
"""
NEAR_A = ("第八条 贷款人应当对借款人的还款能力进行持续监测，发现借款人经营状况恶化、收入明显下降或者涉及重大诉讼的，"
          "应当及时采取提前收回贷款、追加担保等风险控制措施，并将有关情况记录在案。")
NEAR_B = NEAR_A.replace("记录在案", "记录存档")


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF (Helvetica text, one content stream per page) written by hand."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None,
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        ops = "BT /F1 11 Tf 14 TL 72 760 Td " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
        objects.append(f"<< /Length {len(ops)} >>\nstream\n{ops}\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
                       f"/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def make_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Credit Handbook", level=1)
    document.add_heading("Repayment", level=2)
    document.add_paragraph("The borrower must repay principal and interest monthly. Late payments incur a penalty "
                           "of 0.05 percent per day on the overdue amount.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Term", "Rate"
    table.cell(1, 0).text, table.cell(1, 1).text = "12 months", "4.35%"
    document.save(path)


def build_corpus(root: Path) -> dict[str, str]:
    """Write the fixture corpus; returns file name -> expected status or skip reason."""
    (root / "zh").mkdir(parents=True)
    (root / "zh" / "law.md").write_text(LAW, encoding="utf-8")
    (root / "zh" / "law_copy.md").write_text(LAW, encoding="utf-8")
    (root / "zh" / "gbk.txt").write_bytes("第六条 借款人应当按合同约定用途使用贷款，不得挪用。\n".encode("gbk"))
    (root / "zh" / "big5.txt").write_bytes("第七條 貸款人應當按照合同約定發放貸款，並監督貸款用途。\n".encode("big5"))
    (root / "zh" / "near_a.txt").write_text(NEAR_A, encoding="utf-8")
    (root / "zh" / "near_b.txt").write_text(NEAR_B, encoding="utf-8")
    text16 = "第九条 本办法由银行业监督管理机构负责解释。\nThis rule takes effect on the date of issue.\n"
    (root / "utf16_bom.txt").write_bytes(codecs.BOM_UTF16_LE + text16.encode("utf-16-le"))
    (root / "utf16_nobom.txt").write_bytes("第十条 本办法自发布之日起施行。\nRepealed rules: none.\n".encode("utf-16-be"))
    pdf_pages = [["ACME Bank Confidential", f"Section {i}: loan review step {i} requires a signed form.",
                  f"Reviewers record the outcome {'ABCDE'[i]} in the ledger.", f"Page {i} of 4"] for i in range(4)]
    (root / "report.pdf").write_bytes(make_pdf(pdf_pages))
    make_docx(root / "handbook.docx")
    (root / "page.html").write_text(
        "<html><head><title>Rates</title><script>var secret='nope';</script></head><body>"
        "<nav>Home | About</nav><h1>Deposit rates</h1><p>Demand deposits earn 0.25 percent a year.</p>"
        "<h2>Fixed</h2><p>One-year fixed deposits earn 1.75 percent, contact ops@bank.cn for details.</p>"
        "<footer>Copyright</footer></body></html>", encoding="utf-8")
    (root / "faq.csv").write_text("question,answer\n什么是LTV,贷款价值比\nWhat is APR,annual percentage rate\n",
                                  encoding="utf-8")
    (root / "passages.jsonl").write_text(
        json.dumps({"title": "罚息", "text": "逾期贷款按合同利率加收百分之五十的罚息。"}, ensure_ascii=False) + "\n"
        + "{not json\n"
        + json.dumps({"title": "展期", "text": "借款人可以在贷款到期前申请展期一次。"}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.md").write_text(" \n\n\u3000\n", encoding="utf-8")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R\nstream garbage")
    (root / "big.txt").write_text("大" * 20000, encoding="utf-8")  # 60 KB > max_file_mb below
    (root / "image.xyz").write_bytes(b"\x89PNG")
    (root / ".hidden.txt").write_text("ignored", encoding="utf-8")
    return {
        "zh/law.md": "ok", "zh/law_copy.md": "duplicate", "zh/gbk.txt": "ok", "zh/big5.txt": "ok",
        "zh/near_a.txt": "ok", "zh/near_b.txt": "ok", "utf16_bom.txt": "ok", "utf16_nobom.txt": "ok",
        "report.pdf": "ok", "handbook.docx": "ok", "page.html": "ok", "faq.csv": "ok", "passages.jsonl": "ok",
        "empty.txt": "empty", "blank.md": "empty", "binary.txt": "binary", "corrupt.pdf": "corrupt",
        "big.txt": "too_large", "image.xyz": "unsupported",
    }


CFG = IngestConfig(max_file_mb=0.05, chunk_chars=200, chunk_overlap=40)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("docs")
    expected = build_corpus(root)
    out = tmp_path_factory.mktemp("run") / "ingest"
    manifest = ingest([str(root)], out, CFG)
    return root, out, manifest, expected


def _by_source(rows):
    return {r["source"]: r for r in rows}


def test_every_file_accounted_for(corpus):
    _, _, manifest, expected = corpus
    files = {f["source"]: f for f in manifest["files"]}
    assert set(files) == set(expected)
    assert {s: (f["status"] if f["status"] == "ok" else f["reason"]) for s, f in files.items()} == expected
    counts = manifest["counts"]
    assert counts["files"] == 19 and counts["files_ok"] == 12 and counts["hidden_ignored"] == 1
    assert counts["skipped_by_reason"] == {"unsupported": 1, "too_large": 1, "empty": 2, "binary": 1,
                                           "corrupt": 1, "duplicate": 1}
    assert files["zh/law_copy.md"]["detail"] == "same content as zh/law.md"
    assert "ingest.max_file_mb=0.05" in files["big.txt"]["detail"]
    assert files["zh/gbk.txt"]["encoding"] == "gb18030" and files["zh/big5.txt"]["encoding"] == "big5"
    assert files["utf16_nobom.txt"]["encoding"] == "utf-16-be" and files["utf16_bom.txt"]["encoding"] == "utf-16"
    assert files["passages.jsonl"]["warnings"] == ["1 malformed JSON line(s) skipped: 2"]


def test_documents_decoded_and_cleaned(corpus):
    _, out, _, _ = corpus
    docs = _by_source(read_jsonl(out / "documents.jsonl"))
    assert docs["zh/gbk.txt"]["text"] == "第六条 借款人应当按合同约定用途使用贷款，不得挪用。"
    assert docs["zh/big5.txt"]["text"].startswith("第七條 貸款人應當")
    assert docs["utf16_nobom.txt"]["text"] == "第十条 本办法自发布之日起施行。\nRepealed rules: none."
    assert docs["utf16_bom.txt"]["lang"] == "mixed" and docs["zh/law.md"]["lang"] == "zh"
    pdf = docs["report.pdf"]["text"]
    assert "loan review step 2 requires a signed form." in pdf
    assert "Confidential" not in pdf and "Page" not in pdf              # header and footer removed
    html = docs["page.html"]
    assert html["title"] == "Rates" and "secret" not in html["text"] and "Home | About" not in html["text"]
    assert "# Deposit rates" in html["text"] and "## Fixed" in html["text"]
    assert "Term | Rate" in docs["handbook.docx"]["text"]
    assert docs["passages.jsonl#L1"]["title"] == "罚息" and "passages.jsonl#L3" in docs
    assert "question: 什么是LTV; answer: 贷款价值比" in docs["faq.csv"]["text"]
    for doc in docs.values():
        assert len(doc["doc_id"]) == 12


def test_pii_redacted_everywhere(corpus):
    _, out, manifest, _ = corpus
    raw = (out / "chunks.jsonl").read_text(encoding="utf-8") + (out / "documents.jsonl").read_text(encoding="utf-8")
    for secret in (VALID_ID, CARD, "13812345678", "zhangsan@example.com", "ops@bank.cn"):
        assert secret not in raw
    assert INVALID_ID in raw and BAD_CARD in raw                       # failed checksums are not PII
    assert "身份证号[ID_CARD]，联系电话[PHONE]，邮箱[EMAIL]" in raw and "还款账户为[BANK_CARD]" in raw
    assert manifest["counts"]["pii"] == {"bank_card": 1, "email": 2, "id_card": 1, "mobile": 1}
    assert not any(VALID_ID in json.dumps(v) for v in manifest.values())  # no mapping kept in the manifest


def test_chunks_follow_structure_and_slice_documents(corpus):
    _, out, _, _ = corpus
    docs = {d["doc_id"]: d for d in read_jsonl(out / "documents.jsonl")}
    chunks = list(read_jsonl(out / "chunks.jsonl"))
    for c in chunks:
        assert docs[c["doc_id"]]["text"][c["start"]:c["start"] + len(c["text"])] == c["text"]
        assert c["id"].startswith(c["doc_id"] + ":") and c["lang"] in ("zh", "en", "mixed")
    law = [c for c in chunks if c["source"] == "zh/law.md"]
    firsts = [c["text"].split("\n")[-1][:3] if c["text"].startswith("#") else c["text"][:3] for c in law]
    assert firsts == ["第一条", "第二条", "第三条", "第四条", "第五条"]
    assert law[0]["title"] == "个人贷款管理办法 > 第一章 总则" and law[-1]["title"].endswith("第二章 受理与调查")
    docx_chunk = next(c for c in chunks if c["source"] == "handbook.docx")
    assert docx_chunk["title"] == "Credit Handbook > Repayment"


def test_near_duplicate_chunk_dropped(corpus):
    _, out, manifest, _ = corpus
    sources = {c["source"] for c in read_jsonl(out / "chunks.jsonl")}
    assert "zh/near_a.txt" in sources and "zh/near_b.txt" not in sources
    assert manifest["counts"]["dedup"]["near"] == 1
    assert manifest["dedup_examples"][0]["kind"] == "near"
    assert next(f for f in manifest["files"] if f["source"] == "zh/near_b.txt")["duplicate_chunks"] == 1


def test_ids_stable_across_reruns(corpus, tmp_path):
    root, out, _, _ = corpus
    again = ingest([str(root)], tmp_path / "ingest", CFG)
    assert (tmp_path / "ingest" / "chunks.jsonl").read_bytes() == (out / "chunks.jsonl").read_bytes()
    assert again["counts"]["chunks"] > 10


def test_strict_refuses_and_keeps_previous_output(corpus, tmp_path):
    root, _, _, _ = corpus
    out = tmp_path / "ingest"
    ingest([str(root / "zh" / "law.md")], out, CFG, strict=True)
    before = (out / "chunks.jsonl").read_bytes()
    with pytest.raises(IngestError) as err:
        ingest([str(root)], out, CFG, strict=True)
    message = str(err.value)
    assert "7 of 19 input file(s) were skipped" in message
    assert "corrupt.pdf: corrupt" in message and "binary.txt: binary" in message and "big.txt: too_large" in message
    assert (out / "chunks.jsonl").read_bytes() == before
    assert not list(out.glob("*.tmp"))


def test_glob_and_pii_off(corpus, tmp_path):
    root, _, _, _ = corpus
    cfg = IngestConfig(pii={"enabled": False}, dedup="none")
    manifest = ingest([str(root / "zh" / "*.md")], tmp_path / "ingest", cfg)
    assert [f["source"] for f in manifest["files"]] == ["law.md", "law_copy.md"]
    assert VALID_ID in (tmp_path / "ingest" / "chunks.jsonl").read_text(encoding="utf-8")
    assert manifest["counts"]["pii"] == {}


def test_cli_ingest_show_and_errors(corpus, tmp_path):
    root, _, _, _ = corpus
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["ingest", str(root / "zh"), "--run", str(run), "--set", "ingest.chunk_chars=300"])
    assert result.exit_code == 0, result.output
    assert "ingested 5 of 6 files" in result.output and "id_card 1" in result.output
    assert json.loads((run / "ingest" / "manifest.json").read_text())["config"]["chunk_chars"] == 300
    shown = runner.invoke(app, ["ingest", "show", str(run)])
    assert shown.exit_code == 0 and "law_copy.md" in shown.output and "duplicate" in shown.output
    missing = runner.invoke(app, ["ingest", str(tmp_path / "nowhere"), "--run", str(run)])
    assert missing.exit_code == 2 and "document source not found" in missing.output
    assert "Traceback" not in missing.output
    strict = runner.invoke(app, ["ingest", str(root / "zh"), "--run", str(run), "--strict"])
    assert strict.exit_code == 2 and "law_copy.md: duplicate" in strict.output
    bad_kind = runner.invoke(app, ["ingest", str(root / "zh"), "--run", str(run), "--set", "ingest.pii.kinds=[iban]"])
    assert bad_kind.exit_code == 2 and "unknown PII kind" in bad_kind.output


def test_oversize_checked_before_reading(tmp_path):
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as fh:  # sparse 200 MB file: size is known without writing or reading it
        fh.truncate(200 * 1024 * 1024)
    manifest = ingest([str(tmp_path)], tmp_path / "out", IngestConfig())
    assert manifest["files"][0]["reason"] == "too_large" and manifest["files"][0]["bytes"] == 200 * 1024 * 1024
    assert os.path.getsize(tmp_path / "out" / "chunks.jsonl") == 0
