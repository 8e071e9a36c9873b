"""The knowledge-base quality score of seed 003: quality = log(effective tokens) × information density.

The seed names the two terms without defining them; the definitions used here, and why:

**Effective tokens E** — the content tokens the corpus really contributes. Tokens are jieba words for Han text
and lowercase words for other scripts (``text.analyze``: every word once, no search sub-words);
punctuation and whitespace never count, and stopwords (function and question words) are removed because they carry
no domain knowledge. Two kinds of repeated text are not counted: (1) the overlap between neighbouring chunks of a
document (an artefact of chunking, located exactly through each chunk's ``start`` offset), and (2) every sentence
after its first occurrence in the corpus (normalised: NFKC, case, whitespace and punctuation ignored), which removes
duplicated passages and boilerplate such as repeated headers, footers and disclaimers. The logarithm (natural) then
rewards more knowledge with diminishing returns, as the seed intends.

**Information density D** ∈ [0, 1] — the share of distinct word trigrams among all word trigrams of the content
tokens, computed with chunk overlap removed but duplicates kept. 1.0 means no three-word sequence repeats; copied
passages, templates and boilerplate push it towards 0. Trigrams rather than words because single words repeat in
any natural text (Zipf's law), so a distinct-word share measures vocabulary size and falls with corpus length,
while repeated word trigrams are rare in non-redundant prose and are a direct sign of duplicated content. Trigrams
rather than a compression ratio because zlib only sees 32 KB back (duplicates far apart go unnoticed) and byte-level
ratios differ between UTF-8 Chinese and Latin text, which would make zh and en corpora incomparable. Corpora too
small for any trigram fall back to the distinct-word share.

The score is ln(E)·D (0 when E < 1). It compares corpora and versions of one corpus (more unique knowledge:
higher; more duplication: lower); it is not a calibrated probability.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from typing import Any, Iterator, Sequence

import numpy as np

from verticalize.kb.text import STOPWORDS, Analyzed, analyze_many, fold

_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|\n+|(?<=\.)\s+")
_NOT_WORD = re.compile(r"[\W_]+")

DEFINITION = ("score = ln(effective_tokens) × density; effective_tokens = content tokens (jieba/word, no "
              "stopwords or punctuation) after removing chunk overlap and repeated sentences; density = distinct "
              "word trigrams / all word trigrams (overlap removed, duplicates kept)")


def kb_quality(chunks: Sequence[dict[str, Any]], analyzed: Sequence[Analyzed] | None = None) -> dict[str, Any]:
    """Seed 003's knowledge-base quality score and its components, for chunks in the ingest contract.

    ``analyzed`` (aligned with ``chunks``: ``text.analyze(chunk["text"])``) saves segmenting the text again.
    """
    if analyzed is None:
        analyzed = analyze_many([c["text"] for c in chunks])
    seen_sentences: set[int] = set()  # hashes of normalised sentences: ints, not strings, for large corpora
    effective = raw = repeated_sentences = sentences = overlap_chars = 0
    word_ids: dict[str, int] = {}
    trigram_keys: list[np.ndarray] = []
    docs: set[str] = set()
    for index, doc_id, skip in _overlap_free(chunks):
        docs.add(doc_id)
        overlap_chars += skip
        chunk_ids: list[int] = []
        for key, tokens in _sentences(chunks[index]["text"], analyzed[index], skip):
            sentences += 1
            raw += len(tokens)
            chunk_ids.extend(word_ids.setdefault(t, len(word_ids)) for t in tokens)
            if hash(key) in seen_sentences:
                repeated_sentences += 1
            else:
                seen_sentences.add(hash(key))
                effective += len(tokens)
        if len(chunk_ids) >= 3:
            trigram_keys.append(_trigram_keys(np.asarray(chunk_ids, dtype=np.int64)))
    trigrams_total = sum(len(k) for k in trigram_keys)
    if trigrams_total:
        density = len(np.unique(np.concatenate(trigram_keys))) / trigrams_total
    else:
        density = len(word_ids) / raw if raw else 0.0
    score = math.log(effective) * density if effective >= 1 else 0.0
    return {
        "score": round(score, 4),
        "effective_tokens": effective,
        "density": round(density, 4),
        "content_tokens": raw,
        "sentences": sentences,
        "repeated_sentences": repeated_sentences,
        "overlap_chars_removed": overlap_chars,
        "chunks": len(chunks),
        "documents": len(docs),
        "definition": DEFINITION,
    }


def _trigram_keys(ids: np.ndarray) -> np.ndarray:
    """One int64 per word trigram: three 21-bit word ids side by side (exact up to 2 million distinct words)."""
    ids = ids & 0x1FFFFF
    return (ids[:-2] << 42) | (ids[1:-1] << 21) | ids[2:]


def _sentences(text: str, analyzed: Analyzed, skip: int) -> Iterator[tuple[str, list[str]]]:
    """(normalised sentence key, its content tokens) for the sentences of ``text`` after its first ``skip`` chars.

    Token offsets are those of the folded text (NFKC + lowercase), which has the length of ``text`` except for
    rare compatibility characters; a token straddling a cut only moves one word between neighbours.
    """
    tokens, starts = analyzed
    folded = fold(text)
    bounds = [(m.start(), m.end()) for m in _SENTENCE_END.finditer(folded)] + [(len(folded), len(folded))]
    prev_end = 0
    for sep_start, sep_end in bounds:
        begin, pos, prev_end = max(prev_end, skip), sep_start, sep_end
        if begin >= pos:
            continue
        lo, hi = bisect.bisect_left(starts, begin), bisect.bisect_left(starts, pos)
        content = [t for t in tokens[lo:hi] if t not in STOPWORDS]
        if content:
            yield _NOT_WORD.sub("", folded[begin:pos]), content


def _overlap_free(chunks: Sequence[dict[str, Any]]) -> Iterator[tuple[int, str, int]]:
    """(chunk index, doc_id, characters at its start already covered by earlier chunks of its document).

    Chunks are ordered by ``start`` within each document; a chunk without a usable offset is taken whole.
    """
    by_doc: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(chunks):
        by_doc[str(c.get("doc_id") or c.get("source") or c.get("id"))].append(i)
    for doc_id, indices in by_doc.items():
        positioned = sorted((i for i in indices if isinstance(chunks[i].get("start"), int)),
                            key=lambda i: chunks[i]["start"])
        covered_end = -1
        for i in positioned:
            start, length = chunks[i]["start"], len(chunks[i]["text"])
            yield i, doc_id, min(length, max(0, covered_end - start))
            covered_end = max(covered_end, start + length)
        for i in indices:
            if not isinstance(chunks[i].get("start"), int):
                yield i, doc_id, 0
