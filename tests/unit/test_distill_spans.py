"""The spans generator (answer-first questions of many kinds) and the per-kind share cap of the distilled set."""

from __future__ import annotations

import random
import re

import pytest

from verticalize.config import Config, DataConfig
from verticalize.data.balance import cap_kind_shares, kind_cap
from verticalize.data.generators import Generator, make_generators
from verticalize.data.rules import RulesGenerator
from verticalize.data.schema import make_example
from verticalize.data.spans import SpanGenerator, document_title


def _chunk(text: str, *, cid: str = "doc:0000", title: str = "", source: str = "docs/x.md", start: int = 0) -> dict:
    return {"id": cid, "doc_id": cid.split(":")[0], "source": source, "title": title, "text": text, "start": start}


def _pairs(text: str, max_per_chunk: int = 50, **kw) -> list[tuple[str, str, str]]:
    gen = SpanGenerator(max_per_chunk=max_per_chunk)
    return [(e["meta"]["generator"], e["meta"]["question"], e["meta"]["answer"])
            for e in gen.generate([_chunk(text, **kw)])]


EN_CASES = [
    ("William conquered England in 1066.", ("spans:year", "In what year did William conquer England?", "1066")),
    ("The castle was built by the Normans in 1078.",
     ("spans:year", "In what year was the castle built by the Normans?", "1078")),
    ("Paris is the capital of France.", ("spans:definition", "What is Paris?", "the capital of France")),
    ("The Rhine flows into the North Sea at Rotterdam.",
     ("spans:place", "Where does the Rhine flow into the North Sea?", "Rotterdam")),
    ("The Rhine flows into the North Sea at Rotterdam.",
     ("spans:place", "The Rhine flows into which sea at Rotterdam?", "North Sea")),
    ("Polymerase chain reaction (PCR) is used to amplify DNA.",
     ("spans:term", "What does PCR stand for?", "Polymerase chain reaction")),
    ("In April 1191 Richard the Lion-hearted left Messina with a large fleet.",
     ("spans:date", "When did Richard the Lion-hearted leave Messina with a large fleet?", "April 1191")),
]

ZH_CASES = [
    ("鲁迅于1881年出生于浙江绍兴。", ("spans:year", "鲁迅于哪一年出生于浙江绍兴？", "1881年")),
    ("鲁迅于1881年出生于浙江绍兴。", ("spans:place", "鲁迅于1881年出生于哪里？", "浙江绍兴")),
    ("北京大学位于北京市海淀区。", ("spans:place", "北京大学位于哪个区？", "北京市海淀区")),
    ("北京大学位于北京市海淀区。", ("spans:org", "哪所大学位于北京市海淀区？", "北京大学")),
    ("猴面包树是一种锦葵科猴面包树属的大型落叶乔木。",
     ("spans:definition", "猴面包树是什么？", "一种锦葵科猴面包树属的大型落叶乔木")),
]


@pytest.mark.parametrize("text, expected", EN_CASES + ZH_CASES)
def test_sentence_gives_the_expected_pair(text: str, expected: tuple[str, str, str]) -> None:
    assert expected in _pairs(text)


def test_a_pronoun_subject_is_replaced_by_the_document_title() -> None:
    # "She" opens the chunk: no sentence before it names her, so the title (mentioned by the chunk) stands in.
    pairs = _pairs("She won the Nobel Prize in Physics in 1903. Marie Curie was born in Warsaw.", title="Marie Curie")
    assert ("spans:year", "In what year did Marie Curie win the Nobel Prize in Physics?", "1903") in pairs
    assert ("spans:place", "Where was Marie Curie born?", "Warsaw") in pairs
    zh = _pairs("他于1990年毕业于北京大学。张伟是一名律师。", title="张伟")
    assert ("spans:year", "张伟于哪一年毕业于北京大学？", "1990年") in zh
    assert ("spans:org", "张伟于1990年毕业于哪所大学？", "北京大学") in zh
    assert all(not q.startswith(("She ", "他")) for _, q, _ in pairs + zh)


def test_a_pronoun_takes_the_previous_sentences_named_subject() -> None:
    pairs = _pairs("The Normans were a people of northern France. They settled in Normandy in 911.")
    assert ("spans:year", "In what year did the Normans settle in Normandy?", "911") in pairs


def test_a_pronoun_without_antecedent_or_usable_title_is_skipped() -> None:
    # The title is not mentioned by the chunk, so it cannot stand for "It": nothing is asked about the sentence.
    assert _pairs("It was founded in 1209 by scholars who left Oxford.", title="University of Cambridge") == []
    assert _pairs("该公司成立于1998年。", title="腾讯") == []


def test_generic_subject_is_framed_by_the_title() -> None:
    text = ("Smith v Jones [2019] EWHC 1234 (QB)\n\nThe claimant, Mr John Smith, sued the defendant. "
            "The defendant appealed to the Court of Appeal.")
    pairs = _pairs(text, source="judgments/smith.txt")
    assert ("spans:org", "In Smith v Jones, the defendant appealed to which court?", "Court of Appeal") in pairs
    assert ("spans:definition", "Who is the claimant in Smith v Jones?", "Mr John Smith") in pairs


@pytest.mark.parametrize("text", [
    "MJA 210 (7) ▪ 2019\n\nCI: 2.47-2.86\n\n1. what date?",
    "具体事实如下：\n1、何时？\n2、多少？",
    "Table 3 | 2.47 | 2.86 | 0.04",
    "References\n\n[1] Smith J, Jones K. Metformin. Lancet 2019;12:34-40.",
])
def test_fragments_and_debris_give_nothing(text: str) -> None:
    assert _pairs(text) == []


def test_questions_are_well_formed_and_answers_are_spans_of_the_chunk() -> None:
    text = ("The Normans were descended from Norse raiders and pirates from Denmark, Iceland and Norway. "
            "Richard's fleet arrived in the port of Limassol on 1 May 1191. The Rhine is about 1,230 km long. "
            "The Duchy of Normandy was established by the treaty of Saint-Clair-sur-Epte in 911.\n\n"
            "尤金袋鼠分布在澳洲南部岛屿。1628年，船难的生还者在西澳发现了尤金袋鼠。尤金袋鼠共有三个亚种。"
            "芙蓉洞于2002年被列为中国国家4A级旅游景区。")
    gen = SpanGenerator(max_per_chunk=50)
    examples = list(gen.generate([_chunk(text, title="Normans")]))
    assert len(examples) >= 6
    for ex in examples:
        q, a = ex["meta"]["question"], ex["meta"]["answer"]
        assert a in text and a.casefold() not in q.casefold()
        assert q.endswith(("?", "？")) and not re.match(r"\s*\d+\s*[.、)）]", q)
        assert ex["meta"]["generator"].startswith("spans:") and ex["meta"]["chunk_ids"] == ["doc:0000"]
    kinds = {ex["meta"]["generator"] for ex in examples}
    assert len(kinds) >= 4  # many kinds, not one answer shape


def test_per_chunk_cap_takes_kinds_round_robin() -> None:
    text = ("William conquered England in 1066. Paris is the capital of France. "
            "Polymerase chain reaction (PCR) is used to amplify DNA. The Rhine flows into the North Sea at Rotterdam. "
            "Richard's fleet arrived in the port of Limassol on 1 May 1191.")
    every = _pairs(text)
    capped = _pairs(text, max_per_chunk=3)
    assert len(capped) == 3 and len({k for k, _, _ in capped}) == 3  # three pairs, three kinds
    assert set(capped) <= set(every)
    assert _pairs(text, max_per_chunk=0) == []


def test_output_is_deterministic_and_order_independent() -> None:
    chunks = [_chunk("William conquered England in 1066. Paris is the capital of France.", cid="a:0000"),
              _chunk("鲁迅于1881年出生于浙江绍兴。北京大学位于北京市海淀区。", cid="b:0000")]
    first = list(SpanGenerator().generate(chunks))
    again = list(SpanGenerator().generate(chunks))
    reordered = list(SpanGenerator().generate(chunks[::-1]))
    assert first == again
    assert sorted(e["id"] for e in first) == sorted(e["id"] for e in reordered)


def test_report_counts_kinds_and_empty_chunks() -> None:
    gen = SpanGenerator()
    list(gen.generate([_chunk("William conquered England in 1066."), _chunk("▪ (7) ▪", cid="doc:0001")]))
    counts = gen.report()["counts"]
    assert counts["chunks"] == 2 and counts["chunks_without_pairs"] == 1 and counts["kind:year"] == 1


def test_document_title_sources() -> None:
    assert document_title(_chunk("The Rhine flows north.", title="Rhine > Course")) == "Rhine"
    assert document_title(_chunk("the rhine is long. The Rhine flows north.", source="docs/rhine.txt")) == "Rhine"
    assert document_title(_chunk("Methods\n\nWe did it.", title="Methods")) == ""  # a section name
    assert document_title(_chunk("Nothing here.", source="docs/x.md")) == ""        # "x" is not in the text
    assert document_title(_chunk("Smith v Jones [2019] EWHC 1 (QB)\n\nThe court held.")) == "Smith v Jones"


# ---------------------------------------------------------------------------------------------- kind cap
def _examples(counts: dict[str, int]) -> list[dict]:
    out = []
    for kind, n in counts.items():
        for i in range(n):
            out.append(make_example(f"Question {kind} {i}?", f"answer {i}", kind="synthetic", generator=kind,
                                    source="s.md", doc_id="d", chunk_ids=["d:0000"]))
    return out


def test_kind_cap_drops_the_surplus_of_a_dominant_kind() -> None:
    examples = _examples({"rules:percent": 88, "spans:person": 50, "spans:date": 40, "rules:definition": 30,
                          "rules:cloze": 30})
    kept, dropped = cap_kind_shares(examples, 0.25, seed=7)
    assert dict(dropped) == {"quantity": 38}  # 50 of 88 kept: 50 / 200 = 25 % of what is kept
    by_kind = {k: sum(e["meta"]["generator"] == k for e in kept) for k in ("rules:percent", "spans:person")}
    assert by_kind == {"rules:percent": 50, "spans:person": 50}
    assert len(kept) == 200 and max(by_kind.values()) / len(kept) <= 0.25
    assert [e["id"] for e in kept] == [e["id"] for e in examples if e in kept]  # input order kept


def test_kind_cap_never_goes_below_a_uniform_share() -> None:
    # Two kinds: a 25 % cap would keep 10 of 90; the floor is a uniform share, 50 of 100.
    kept, dropped = cap_kind_shares(_examples({"rules:percent": 90, "spans:date": 10}), 0.25)
    assert dict(dropped) == {"quantity": 40} and len(kept) == 60
    # One kind, or a cap of 1: nothing is dropped.
    assert cap_kind_shares(_examples({"spans:date": 30}), 0.25)[1] == {}
    assert cap_kind_shares(_examples({"a": 90, "b": 10}), 1.0)[1] == {}
    assert kind_cap({"a": 80, "b": 5, "c": 5, "d": 5, "e": 5}, 0.25) == 20  # floor 100 / 5
    assert kind_cap({"a": 10, "b": 10, "c": 10}, 0.25) is None               # balanced already


def test_kind_cap_is_on_the_answer_shape_across_generators() -> None:
    # Dates from two generators are one shape: together 60 of 100, capped as one (to the floor of a uniform
    # share over the 4 shapes present, 25; per generator name neither would have been cut).
    examples = _examples({"rules:date": 30, "spans:year": 30, "spans:person": 20, "rules:cloze": 10,
                          "spans:definition": 10})
    kept, dropped = cap_kind_shares(examples, 0.25, seed=1)
    assert set(dropped) == {"time"}
    times = sum(e["meta"]["generator"] in ("rules:date", "spans:year") for e in kept)
    assert times == 25 and dropped["time"] == 35


def test_kind_cap_is_deterministic_for_a_seed() -> None:
    examples = _examples({"rules:percent": 60, "spans:date": 10, "spans:person": 10, "rules:list": 10})
    kept, _ = cap_kind_shares(examples, 0.25, seed=3)
    shuffled = examples[:]
    random.Random(0).shuffle(shuffled)
    kept_shuffled, _ = cap_kind_shares(shuffled, 0.25, seed=3)
    assert {e["id"] for e in kept} == {e["id"] for e in kept_shuffled}
    other_seed, _ = cap_kind_shares(examples, 0.25, seed=4)
    assert {e["id"] for e in other_seed} != {e["id"] for e in kept}


def test_distil_applies_the_kind_cap_and_reports_it(tmp_path) -> None:
    from verticalize.data.build import distil

    class _OneShape:
        name = "one"

        def generate(self, chunks):
            for chunk in chunks:
                for i in range(9):
                    yield make_example(f"What percentage {i}?", "5%", kind="synthetic", generator="one:percent",
                                       chunk=chunk)
                for kind in ("one:date", "one:person", "one:cloze"):
                    yield make_example(f"Which {kind}?", "in 1066", kind="synthetic", generator=kind, chunk=chunk)

        def report(self):
            return {}

    chunk = _chunk("The fee is 5% per year, in 1066.")
    cfg = Config.model_validate({"project": {"run_dir": str(tmp_path)}, "data": {"max_kind_share": 0.25}})
    kept, report = distil([chunk], cfg, generators=[_OneShape()])
    assert report["kind_cap_drops"] == {"quantity": 6}  # 12 made; ceil(12 / 4) = 3 percent pairs kept
    assert sum(e["meta"]["generator"] == "one:percent" for e in kept) == 3 and report["kept"] == 6


# ---------------------------------------------------------------------------------------------- registration
def test_offline_is_the_default_and_names_rules_plus_spans() -> None:
    cfg = DataConfig()
    assert cfg.generator == "offline" and cfg.max_kind_share == 0.25
    gens = make_generators(cfg)
    assert [type(g) for g in gens] == [RulesGenerator, SpanGenerator]
    assert all(isinstance(g, Generator) for g in gens)
    [spans] = make_generators(DataConfig(generator="spans", max_per_chunk=7))
    assert isinstance(spans, SpanGenerator) and spans.name == "spans" and spans.max_per_chunk == 7
    [rules] = make_generators(DataConfig(generator="rules"))
    assert isinstance(rules, RulesGenerator)
    with pytest.raises(ValueError):
        DataConfig(max_kind_share=0)
