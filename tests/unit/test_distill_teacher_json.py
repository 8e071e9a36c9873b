"""Parsing JSON out of chat-model replies: reasoning, fences, chatter, Python-style objects."""

from __future__ import annotations

import pytest

from verticalize.json_reply import ReplyParseError, parse_json_reply, strip_reasoning


@pytest.mark.parametrize("reply,expected", [
    ('{"answer": "30天"}', {"answer": "30天"}),
    ('<think>先想想 {"answer": "wrong"}</think>\n{"answer": "100元"}', {"answer": "100元"}),
    ('I thought hard.</think>{"answer": "x"}', {"answer": "x"}),  # reasoning whose opening tag was cut off
    ('Sure! Here it is:\n```json\n{"questions": ["a", "b"]}\n```\nAnything else?', {"questions": ["a", "b"]}),
    ('```\n[{"question": "q1"}]\n```', [{"question": "q1"}]),
    ('The result is {"answer": "use {braces} carefully"} - done.', {"answer": "use {braces} carefully"}),
    ('{"questions": ["a", "b",],}', {"questions": ["a", "b"]}),
    ("{'answer': 'it\\'s fine', 'ok': true, 'n': null}", {"answer": "it's fine", "ok": True, "n": None}),
    ('Here\'s what I found: {"answer": "true story", "flag": false}', {"answer": "true story", "flag": False}),
])
def test_json_is_found_and_parsed(reply: str, expected: object) -> None:
    assert parse_json_reply(reply) == expected


@pytest.mark.parametrize("reply", ["", "   ", "Sorry, I cannot help with that.", "<think>{\"a\": 1}</think>",
                                   '{"answer": "unterminated'])
def test_replies_without_json_raise_with_the_reply_kept(reply: str) -> None:
    with pytest.raises(ReplyParseError) as err:
        parse_json_reply(reply)
    assert err.value.reply == reply[:500]


def test_python_literal_repair_never_evaluates_code() -> None:
    with pytest.raises(ReplyParseError):
        parse_json_reply("{'a': __import__('os').getcwd()}")


def test_strip_reasoning_removes_every_think_block() -> None:
    assert strip_reasoning("<think>a</think>x<THINK>b</THINK>y") == "xy"
