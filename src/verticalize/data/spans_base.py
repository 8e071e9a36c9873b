"""What the ``spans`` generator and its language modules (``spans_en``, ``spans_zh``) share: the length limits
of a pair, the proposed pair (``SpanPair``), the reading context of a sentence (``Context``) and how a text's
length is counted. ``spans.py`` picks a language module per sentence and imports this module; the language
modules import it too (never ``spans.py``), so the dependency is one-way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from verticalize.text import is_cjk

MAX_Q_WORDS, MIN_Q_WORDS = 25, 4
MAX_Q_CJK, MIN_Q_CJK = 40, 6
MAX_A_WORDS, MAX_A_CJK = 12, 20
# A question built from a long sentence must be a short clause of it, not the sentence with one span swapped.
LONG_SENTENCE_WORDS, LONG_SENTENCE_CJK = 20, 30
MAX_VERBATIM_SHARE = 0.75

# A Latin word or number, as the limits count them.
WORD = re.compile(r"[A-Za-z0-9][\w'’.-]*")


@dataclass(frozen=True)
class SpanPair:
    """A proposed pair: ``kind`` becomes ``spans:<kind>``; ``sentence`` is the sentence it was read from."""

    kind: str
    question: str
    answer: str
    sentence: str


@dataclass
class Context:
    """What a language module needs beyond the sentence: the document title (usable as a subject, or ""), the
    named subject of the previous sentence (what a pronoun most likely refers to; None after a sentence whose
    subject was a generic noun phrase: the title is the fallback then), the chunk's text, the words it writes
    in lower case and the capitalised words it writes inside a sentence (names, not sentence starts)."""

    title: str
    text: str
    referent: str | None = None
    lowercase_words: frozenset[str] = field(default_factory=frozenset)
    proper_words: frozenset[str] = field(default_factory=frozenset)
    actor: str = ""  # a generic subject a pronoun may stand for ("The court … It held …")

    def antecedent(self) -> str:
        """What a pronoun (or a missing subject) at the start of the current sentence stands for: the previous
        sentence's named subject, else the document title ("" when neither is known)."""
        return self.referent or self.title


def cjk_length(text: str) -> int:
    """Length of a Chinese text for the limits: CJK characters plus Latin words and numbers (one each)."""
    return sum(1 for ch in text if is_cjk(ch)) + len(WORD.findall(text))


def word_count(text: str) -> int:
    return len(WORD.findall(text))
