"""Text folding and the retrieval tokenizer for mixed Chinese/other-script text.

Han runs are segmented by jieba; every other script is split into lowercase words (Unicode letters and digits,
a decimal point between digits kept). Text is NFKC-folded first, so full-width letters, digits and punctuation
match their half-width forms. A small stopword list for both languages drops function and question words, which
otherwise dominate short questions ("什么", "哪些", "what", "which") and match every chunk.

jieba is the slow part of indexing (~0.1–0.3 MB/s per core), so a chunk is segmented once (``analyze``: precise
words with offsets) and both the index terms (``search_terms``) and the quality score are derived from that, and
large corpora are analysed in several processes (``analyze_many``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import threading
import unicodedata
from typing import Literal, Sequence

from verticalize.text import HAN_RANGES as _HAN  # Han ideographs: the runs jieba segments

# Other scripts: words of letters/digits; a decimal point between digits stays inside the token (3.5, v2.0).
_TOKEN_RUNS = re.compile(rf"([{_HAN}]+)|([^\W_{_HAN}]+(?:\.[0-9]+)*)")

STOPWORDS_ZH = frozenset("""
的 了 是 在 和 与 及 或 也 都 就 而 被 把 这 那 之 其 等 个 着 过 给 向 从 对 于 以 为 由 将 并 且 但 即 则 所 该 此
我 你 他 她 它 我们 你们 他们 她们 它们 吗 呢 吧 啊 呀 么 嘛 哦 什么 哪 哪个 哪些 哪里 怎么 怎样 如何 为什么 为何
多少 几 谁 何 何时 是否 有没有 还是 这个 那个 这些 那些 一个 一种 有 没有 会 能 可以 要 就是 还 又 很 最 更 已经
""".split())

STOPWORDS_EN = frozenset("""
a an the of to in on at by for with from as into about and or but not no nor so if then than that this these those
is are was were be been being am do does did doing have has had having it its it's he she they them their his her
we us our you your i me my what which who whom whose when where why how can could would should will shall may might
there here also such any all each both either some
""".split())

STOPWORDS = STOPWORDS_ZH | STOPWORDS_EN

Mode = Literal["search", "precise"]
Analyzed = tuple[list[str], list[int]]  # precise tokens (stopwords kept) and their offsets in fold(text)

# Below this many texts a process pool costs more than it saves.
PARALLEL_MIN_TEXTS = 2000
_BATCH = 500

_jieba_lock = threading.Lock()
_jieba_ready = False


def _jieba():
    """jieba's default tokenizer, initialised once and quietly (its dictionary load logs to stderr otherwise)."""
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba_ready = True
    return jieba


def fold(text: str) -> str:
    """NFKC + lowercase: full-width forms become half-width, case is folded."""
    if not unicodedata.is_normalized("NFKC", text):  # the check is ~100x cheaper than normalising CJK text
        text = unicodedata.normalize("NFKC", text)
    return text.lower()


def analyze(text: str) -> Analyzed:
    """Precise tokens of ``fold(text)`` (each word once, stopwords kept, no punctuation) and their offsets."""
    jieba = _jieba()
    folded = fold(text)
    tokens: list[str] = []
    starts: list[int] = []
    for m in _TOKEN_RUNS.finditer(folded):
        if m.group(1):
            pos = m.start()
            for w in jieba.cut(m.group(1), HMM=True):  # the words of a Han run cover it contiguously
                tokens.append(w)
                starts.append(pos)
                pos += len(w)
        else:
            tokens.append(m.group(2))
            starts.append(m.start())
    return tokens, starts


def search_terms(tokens: Sequence[str], keep_stopwords: bool = False) -> list[str]:
    """Index/query terms from precise tokens, as jieba's search mode makes them: each word plus the dictionary
    2- and 3-character words inside it (中华人民共和国 → 中华, 华人, 人民, 共和, 共和国, 中华人民共和国), so a
    question that uses a shorter form of a compound still matches."""
    freq = _jieba().dt.FREQ
    out: list[str] = []
    for w in tokens:
        if len(w) > 2:
            out.extend(g for g in (w[i:i + 2] for i in range(len(w) - 1)) if freq.get(g))
        if len(w) > 3:
            out.extend(g for g in (w[i:i + 3] for i in range(len(w) - 2)) if freq.get(g))
        out.append(w)
    return out if keep_stopwords else [t for t in out if t not in STOPWORDS]


def tokenize(text: str, *, mode: Mode = "search", keep_stopwords: bool = False) -> list[str]:
    """Retrieval tokens of ``text``: search terms (mode="search") or each word once (mode="precise")."""
    tokens, _ = analyze(text)
    if mode == "search":
        return search_terms(tokens, keep_stopwords)
    return tokens if keep_stopwords else [t for t in tokens if t not in STOPWORDS]


def _analyze_batch(texts: list[str]) -> list[Analyzed]:
    return [analyze(t) for t in texts]


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def analyze_many(texts: Sequence[str], workers: int = 0) -> list[Analyzed]:
    """``analyze`` over many texts, in ``workers`` processes (0: one per core, up to 8) for large inputs.

    Processes are forked after jieba is initialised, so they share its dictionary instead of each loading it;
    where fork is unavailable the work stays in this process.
    """
    workers = workers or default_workers()
    _jieba()
    if workers <= 1 or len(texts) < PARALLEL_MIN_TEXTS or "fork" not in multiprocessing.get_all_start_methods():
        return [analyze(t) for t in texts]
    batches = [list(texts[i:i + _BATCH]) for i in range(0, len(texts), _BATCH)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return [a for batch in pool.imap(_analyze_batch, batches) for a in batch]
