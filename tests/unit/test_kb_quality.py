"""Seed 003's knowledge-base quality score: ln(effective tokens) × density, on constructed corpora."""

import math

from verticalize.kb import kb_quality

PASSAGES = [
    "信用卡年费为每年100元，持卡人一年内刷卡满六次可免次年年费。",
    "贷款申请应当提供收入证明和身份证件，借款人不得将贷款用于股票投资。",
    "Nightly backups of the ledger database are kept for thirty days and verified every Sunday.",
    "To restart the payment service run systemctl restart payment and read the error logs.",
]


def rows(texts, prefix="d"):
    return [{"id": f"{prefix}{i}:0000", "doc_id": f"{prefix}{i}", "source": f"{prefix}{i}.md", "text": t,
             "start": 0} for i, t in enumerate(texts)]


def test_duplicates_lower_density_and_score_but_not_effective_tokens():
    clean = kb_quality(rows(PASSAGES))
    duplicated = kb_quality(rows(PASSAGES) + rows(PASSAGES, prefix="copy"))
    assert clean["density"] == 1.0
    assert duplicated["density"] < 0.55  # every trigram now appears twice
    assert duplicated["effective_tokens"] == clean["effective_tokens"]
    assert duplicated["content_tokens"] == 2 * clean["content_tokens"]
    assert duplicated["repeated_sentences"] == clean["sentences"]
    assert duplicated["score"] < clean["score"]
    assert clean["score"] == round(math.log(clean["effective_tokens"]) * clean["density"], 4)


def test_chunk_overlap_is_not_counted_twice():
    text = PASSAGES[0] + PASSAGES[1]
    whole = kb_quality([{"id": "a:0000", "doc_id": "a", "text": text, "start": 0}])
    # Two chunks of the same document overlapping by 10 characters (as ingest's chunk_overlap makes them).
    cut = 40
    split = kb_quality([{"id": "a:0001", "doc_id": "a", "text": text[cut - 10:], "start": cut - 10},
                        {"id": "a:0000", "doc_id": "a", "text": text[:cut], "start": 0}])
    assert split["overlap_chars_removed"] == 10
    assert split["chunks"] == 2 and split["documents"] == 1
    assert abs(split["effective_tokens"] - whole["effective_tokens"]) <= 1  # a word cut at the seam may split


def test_stopwords_and_punctuation_are_not_content():
    q = kb_quality(rows(["的了是在，。！？ the of and to"]))
    assert q["effective_tokens"] == 0 and q["score"] == 0.0


def test_more_unique_knowledge_scores_higher():
    assert kb_quality(rows(PASSAGES))["score"] > kb_quality(rows(PASSAGES[:2]))["score"] > 0
    assert "trigrams" in kb_quality(rows(PASSAGES))["definition"]


def test_repeated_sentences_are_found_across_paragraph_breaks():
    text = "信用卡年费为每年100元。\n\n贷款申请应当提供收入证明。\n\n信用卡年费为每年100元。"
    q = kb_quality(rows([text]))
    once = kb_quality(rows(["信用卡年费为每年100元。\n\n贷款申请应当提供收入证明。"]))
    assert q["sentences"] == 3 and q["repeated_sentences"] == 1
    assert q["effective_tokens"] == once["effective_tokens"] < q["content_tokens"]
