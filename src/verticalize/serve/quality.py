"""Rolling quality signals computed per request, cheaply, with no model: refusals and out-of-domain queries.

Out-of-domain: the share of the query's character bigrams (CJK) / words (other scripts) never seen in the
training questions. A query mostly made of unseen units is unlike what the adapter was trained on; the share of
such queries rising over time is the cue to collect new data (seed 003, step 7).
"""

from __future__ import annotations

import re
from typing import Iterable

from verticalize.answering import PromptStyle, is_refusal
from verticalize.text import CJK_CHAR

_WORD = re.compile(r"[a-z0-9]+")


def units(text: str) -> set[str]:
    text = text.lower()
    cjk = "".join(ch for ch in text if CJK_CHAR.match(ch))
    out = {cjk[i:i + 2] for i in range(len(cjk) - 1)}
    out.update(w for w in _WORD.findall(text) if len(w) > 2)
    return out


class QualitySignals:
    def __init__(self, training_questions: Iterable[str] = (), ood_threshold: float = 0.7,
                 style: PromptStyle | None = None):
        self.style = style
        self.vocab: set[str] = set()
        for q in training_questions:
            self.vocab |= units(q)
        self.ood_threshold = ood_threshold

    def is_refusal(self, answer: str) -> bool:
        """The ladder's refusal test (``answering.is_refusal``), so the served refusal share is the measured one."""
        return is_refusal(answer, self.style)

    def unseen_share(self, query: str) -> float | None:
        u = units(query)
        if not u or not self.vocab:
            return None
        return sum(1 for x in u if x not in self.vocab) / len(u)

    def is_out_of_domain(self, query: str) -> bool:
        share = self.unseen_share(query)
        return share is not None and share >= self.ood_threshold
