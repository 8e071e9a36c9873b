"""Text utilities shared by every stage: normalisation, language detection, match tokens, duplicate keys.

Public API (small and stable; kb, data and evaluate use it):
    normalize(text) -> str                 full-width ASCII -> half-width, invisible characters removed, whitespace
                                           collapsed (paragraph breaks kept); CJK punctuation is kept as written
    is_cjk(ch) -> bool                     one character is a CJK ideograph, kana or hangul syllable
    CJK_RANGES, CJK_CHAR                   the one definition of "CJK character" (regex class body, compiled regex)
    HAN_RANGES                             its Han ideographs only (what jieba segments)
    detect_lang(text) -> "zh"|"en"|"mixed" by the share of CJK characters among CJK characters + Latin words
    tokens_for_match(text) -> list[str]    CJK characters one token each, numbers (decimals whole), other scripts
                                           lowercase words; letters and digits split (metrics, grounding, overlap)
    normalize_answer(text) -> str          SQuAD answer normalisation, CJK-aware (metrics compare answers with it)
    answer_key(text) -> str                normalize_answer without spaces: "passage contains answer" checks
    exact_key(text) -> str                 hash of the text ignoring case, whitespace and punctuation (exact dedup)
    NearDuplicateIndex(threshold, num_perm) MinHash-LSH over character n-grams (works for Chinese);
                                           .add (refuses a near duplicate) / .insert (always stores) / .query
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasketch import MinHash

__all__ = ["normalize", "is_cjk", "detect_lang", "tokens_for_match", "exact_key", "NearDuplicateIndex",
           "normalize_answer", "answer_key",
           "CJK_RANGES", "CJK_CHAR", "HAN_RANGES"]

# The one definition of a CJK character, for every stage (inside a regex character class: f"[{CJK_RANGES}]").
# Han ideographs: extension A, the basic block, compatibility ideographs, extensions B..H (U+20000..U+3134F).
HAN_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# CJK: the Han ideographs plus Japanese kana (hiragana, katakana, katakana extension) and hangul syllables.
CJK_RANGES = HAN_RANGES + "\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af"
CJK_CHAR = re.compile(f"[{CJK_RANGES}]")
_LATIN_WORD = re.compile(f"[^\\W\\d_{CJK_RANGES}]+")
# A token is one CJK character, a number (a decimal or dotted version whole: "4.8", "1.2.3"), or a run of other
# letters. Letters and digits are split ("GDP4.8亿" -> gdp, 4.8, 亿) so a number reads the same glued to a word
# or standing alone, as grounding and the number checks compare them.
_MATCH_TOKEN = re.compile(f"[{CJK_RANGES}]|\\d+(?:\\.\\d+)*|[^\\W\\d_{CJK_RANGES}]+")

# Full-width punctuation that carries Chinese sentence meaning (sentence/clause ends, brackets used in legal
# citations) stays as written so chunking and rules can rely on it; other full-width ASCII becomes half-width.
_KEEP_FULLWIDTH = set("！，：；？（）")
_TRANSLATE: dict[int, str | None] = {
    cp: chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F) if chr(cp) not in _KEEP_FULLWIDTH
}
_TRANSLATE.update({0x3000: " ", 0x00A0: " ", 0x2007: " ", 0x202F: " ", 0x2028: "\n", 0x2029: "\n\n", 0x0C: "\n\n",
                   0x0B: "\n", 0x0D: "\n"})
# Invisible characters that break matching (zero-width spaces/joiners, BOM, soft hyphen) and C0 controls.
_TRANSLATE.update({cp: None for cp in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD)})
_TRANSLATE.update({cp: None for cp in range(0x00, 0x20) if cp not in (0x09, 0x0A, 0x0B, 0x0C, 0x0D)})
_TRANSLATE[0x7F] = None

# Patterns match only what must change (not every single space or newline): most text is already clean.
_NEEDS_TRANSLATE = re.compile("[" + "".join(re.escape(chr(cp)) for cp in sorted(_TRANSLATE)) + "]")
_SPACES = re.compile(r"[ \t\u2000-\u200a\u205f]{2,}|[\t\u2000-\u200a\u205f]")
_TRAILING = re.compile(r" +\n *|\n +")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize(text: str) -> str:
    """Canonical form of document text.

    NFC composition; full-width letters, digits and symbols -> ASCII (Ａ１％ -> A1%) while ，。！？；：（） keep their
    Chinese form; ideographic and no-break spaces -> space; zero-width characters and control characters removed;
    runs of spaces/tabs -> one space; spaces at line ends removed; at most one blank line (paragraph breaks kept).
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    if _NEEDS_TRANSLATE.search(text):
        text = text.translate(_TRANSLATE)
    text = _SPACES.sub(" ", text)
    text = _TRAILING.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def is_cjk(ch: str) -> bool:
    """True when the single character ``ch`` is a CJK ideograph, Japanese kana or a hangul syllable."""
    return bool(CJK_CHAR.fullmatch(ch))


def detect_lang(text: str, zh_share: float = 0.8, en_share: float = 0.2) -> str:
    """"zh", "en" or "mixed" from the share of CJK characters among (CJK characters + Latin words).

    A CJK character counts like one Latin word, so Chinese prose with a few English terms stays "zh". Text with
    neither (digits only, empty) is "en".
    """
    cjk = len(CJK_CHAR.findall(text))
    words = len(_LATIN_WORD.findall(text))
    if cjk + words == 0:
        return "en"
    share = cjk / (cjk + words)
    if share >= zh_share:
        return "zh"
    if share <= en_share:
        return "en"
    return "mixed"


# --------------------------------------------------------------------------------------------- answers
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL = re.compile(r"\d\.\d")


def _is_punct(ch: str) -> bool:
    # Unicode categories P* (punctuation) and S* (symbols) cover ASCII and Chinese punctuation (，。、《》“”…).
    return unicodedata.category(ch)[0] in "PS"


def normalize_answer(text: str) -> str:
    """SQuAD normalisation, CJK-aware: NFKC (full-width → half-width), lower case, punctuation (Chinese too)
    removed except decimal points, English articles removed, white space collapsed. The one answer
    normalisation: evaluation metrics compare answers with it, ``answer_key`` finds answers in passages."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = _THOUSANDS.sub("", text)  # 1,000 → 1000
    # A decimal point is part of its number (3.5 is one token); every other punctuation mark separates words.
    text = "".join(" " if _is_punct(ch) and not (ch == "." and _DECIMAL.match(text, max(i - 1, 0))) else ch
                   for i, ch in enumerate(text))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_key(text: str) -> str:
    """``normalize_answer`` without spaces: what "this passage contains this answer" compares (the ladder's
    oracle passage, the knowledge base's relevant chunk), so "4 分钟。" is found in "…4分钟…"."""
    return normalize_answer(text).replace(" ", "")


def tokens_for_match(text: str) -> list[str]:
    """Tokens for overlap metrics: each CJK character alone, other scripts as lowercase words; punctuation dropped.

    "LoRA 的秩 r=8" -> ["lora", "的", "秩", "r", "8"]. Numbers are tokens of their own, split from letters they
    touch, and decimal numbers stay one token: "GDP4.8亿" -> ["gdp", "4.8", "亿"].
    """
    return _MATCH_TOKEN.findall(normalize(text).lower())


def _compact(text: str) -> str:
    """Text reduced to its match tokens run together: insensitive to case, spacing and punctuation."""
    return "".join(tokens_for_match(text))


def exact_key(text: str) -> str:
    """Key for exact deduplication: equal for texts that differ only in case, whitespace, punctuation or width."""
    return hashlib.sha1(_compact(text).encode("utf-8")).hexdigest()


class NearDuplicateIndex:
    """Near-duplicate detection with MinHash LSH over character n-grams of the compacted text.

    Character shingles work for Chinese (no word segmentation needed) and for English alike. Candidates from the
    LSH are confirmed with the estimated Jaccard similarity, so a returned id really is above ``threshold``.

        index = NearDuplicateIndex(threshold=0.85)
        index.add("a", text_a)       # -> None (added)
        index.add("b", text_b)       # -> "a" when text_b is a near duplicate of text_a (b is not added)
        index.insert("c", text_c)    # stored even when it is near a stored text (findable by later queries)
        index.query(text)            # -> ids of stored near duplicates of text, most similar first

    ``query`` and ``insert`` also take a MinHash from ``minhash(text)``, so a caller that queries and then stores
    the same text hashes it once.
    """

    def __init__(self, threshold: float = 0.85, num_perm: int = 128, ngram: int = 5, seed: int = 1):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        from datasketch import MinHash, MinHashLSH  # imported on first use: importing verticalize.text stays cheap

        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self.seed = seed
        # The LSH is tuned for recall (a lower threshold, false negatives weighted 9:1): its candidates are
        # confirmed with the estimated Jaccard below, so a false positive costs one comparison, a miss a duplicate.
        self._lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=num_perm, weights=(0.1, 0.9))
        self._hashes: dict[str, MinHash] = {}
        template = MinHash(num_perm=num_perm, seed=seed)
        self._permutations, self._scheme = template.permutations, template.scheme  # computed once, not per text

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, key: str) -> bool:
        return key in self._hashes

    def minhash(self, text: str) -> MinHash:
        # UTF-32 gives every character 4 bytes, so an n-character shingle is a plain byte slice (no per-shingle
        # encoding); crc32 is a stable (unlike hash()) and fast shingle hash, the permutations add the randomness.
        from datasketch import MinHash

        data = _compact(text).encode("utf-32-le")
        width, chars = 4 * self.ngram, len(data) // 4
        shingles = {data[i:i + width] for i in range(0, max(1, chars - self.ngram + 1) * 4, 4)}
        mh = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=zlib.crc32,
                     permutations=self._permutations, scheme=self._scheme)
        mh.update_batch(list(shingles))
        return mh

    def _as_minhash(self, text: str | MinHash) -> MinHash:
        from datasketch import MinHash

        return text if isinstance(text, MinHash) else self.minhash(text)

    def query(self, text: str | MinHash) -> list[str]:
        """Ids of stored texts whose estimated Jaccard similarity with ``text`` is at least the threshold, most
        similar first (ties by id)."""
        mh = self._as_minhash(text)
        scored = [(mh.jaccard(self._hashes[k]), k) for k in self._lsh.query(mh)]
        return [k for s, k in sorted(scored, key=lambda x: (-x[0], x[1])) if s >= self.threshold]

    def insert(self, key: str, text: str | MinHash) -> None:
        """Store ``text`` under ``key`` whether or not a near duplicate is stored already."""
        if key in self._hashes:
            raise ValueError(f"key '{key}' is already in the near-duplicate index")
        mh = self._as_minhash(text)
        self._lsh.insert(key, mh)
        self._hashes[key] = mh

    def add(self, key: str, text: str | MinHash) -> str | None:
        """Store ``text`` under ``key`` unless a near duplicate exists; return that duplicate's id (most similar)."""
        if key in self._hashes:
            raise ValueError(f"key '{key}' is already in the near-duplicate index")
        mh = self._as_minhash(text)
        found = self.query(mh)
        if found:
            return found[0]
        self.insert(key, mh)
        return None
