"""The ladder's rungs: the routes a question can be answered by, each known by what it adds to the base model.

Cost order, cheapest first (``RUNGS``; see ``verticalize.evaluate.gates`` for why):
  prompt    the base model, a system prompt and few-shot examples;
  rag       the base model with retrieved passages in the prompt;
  peft      the trained PEFT adapter;
  peft+rag  the adapter with retrieved passages;
  full      the full fine-tune (every weight trained).
Code asks a rung what it uses (``rung.uses_adapter``, ``rung.uses_knowledge_base``) instead of reading its name;
names are only for config (``eval.rungs``), file names and reports. ``Rung.parse`` turns a name into a rung.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnknownRungError(ValueError):
    """A rung name that is not one of ``RUNG_NAMES``; the message lists the known ones."""


@dataclass(frozen=True)
class Rung:
    name: str
    uses_adapter: bool = False         # answered with the trained PEFT adapter switched on
    uses_knowledge_base: bool = False  # retrieved passages are added to the question
    uses_full_model: bool = False      # answered by the full fine-tune (its own model, no adapter)
    uses_few_shot: bool = False        # few-shot examples from the training split go in the prompt

    @property
    def trained(self) -> bool:
        """Answered with trained weights (adapter or full fine-tune), not the base model."""
        return self.uses_adapter or self.uses_full_model

    @property
    def cost_rank(self) -> int:
        return RUNGS.index(self)

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def parse(name: "str | Rung") -> "Rung":
        """The rung called ``name`` (a rung is returned as it is); UnknownRungError names the known rungs."""
        if isinstance(name, Rung):
            return name
        rung = _BY_NAME.get(name)
        if rung is None:
            raise UnknownRungError(f"unknown rung {name!r}; rungs are {', '.join(RUNG_NAMES)}")
        return rung

    @staticmethod
    def serving(tuned: bool, rag: bool) -> "Rung":
        """The rung a gateway request is answered on: a tuned model (any served name but the base) or the base,
        with or without retrieval."""
        return next(r for r in RUNGS
                    if not r.uses_full_model and r.uses_adapter == tuned and r.uses_knowledge_base == rag)


PROMPT = Rung("prompt", uses_few_shot=True)
RAG = Rung("rag", uses_knowledge_base=True)
PEFT = Rung("peft", uses_adapter=True)
PEFT_RAG = Rung("peft+rag", uses_adapter=True, uses_knowledge_base=True)
FULL = Rung("full", uses_full_model=True)

RUNGS: tuple[Rung, ...] = (PROMPT, RAG, PEFT, PEFT_RAG, FULL)  # cost order, cheapest first
RUNG_NAMES: tuple[str, ...] = tuple(r.name for r in RUNGS)
# The ladder measured by default; the full fine-tune is added when one was trained.
DEFAULT_LADDER: tuple[str, ...] = tuple(r.name for r in RUNGS if not r.uses_full_model)
_BY_NAME = {r.name: r for r in RUNGS}


def is_rung(name: str) -> bool:
    return name in _BY_NAME
