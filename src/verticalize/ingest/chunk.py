"""Structure-aware chunking: headings and legal articles start chunks, paragraphs are preferred break points,
sentences (。！？； and . ! ?) are the smallest unit, and only an over-long sentence is cut inside.

Every chunk is an exact slice of the document: ``text[chunk.start:chunk.end] == chunk.text``. Overlap repeats
whole sentences from the end of the previous chunk (up to ``overlap`` characters) and never crosses a heading or
an article boundary, so a chunk never mixes two articles because of overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = "一二三四五六七八九十百千零〇两\\d"
MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
ZH_HEADING = re.compile(rf"^第[{_NUM}]+(编|部分|章|节)(?:\s+(.*))?$")
# Short title lines numbered "一、" or "2.1.3" (plain-text reports); "（一）" is left alone: inside a legal
# article it numbers list items, not sections.
NUMBERED_HEADING = re.compile(r"^(?:([一二三四五六七八九十]+)、|(\d+(?:\.\d+)+)\.?\s|(Chapter|CHAPTER|Part|PART)\s+[\dIVXLC]+\b)")
ARTICLE = re.compile(rf"^(?:第[{_NUM}]+条(?:之[一二三四五六七八九十]+)?|(?:Article|ARTICLE|Art\.)\s+\d+)")
_ZH_LEVEL = {"编": 1, "部分": 1, "章": 2, "节": 3}
_NUMBERED_MAX_CHARS = 30
_SENTENCE_END = re.compile(r"[。！？；!?]+[”’」』）)\]】\"']*|\.(?=\s)")
_CLAUSE_BREAK = re.compile(r"[，、,：:]|\s")
_HEADING_MAX_CHARS = 40


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    title: str
    text: str


@dataclass(frozen=True)
class _Segment:
    start: int
    end: int
    kind: str  # "heading" | "article" | "para" (first sentence of a line) | "sent"
    level: int = 0
    heading: str = ""


def _heading(line: str) -> tuple[int, str] | None:
    m = MD_HEADING.match(line)
    if m:
        return len(m.group(1)), m.group(2)
    m = ZH_HEADING.match(line)
    if m and len(line) <= _HEADING_MAX_CHARS and not _SENTENCE_END.search(m.group(2) or ""):
        return _ZH_LEVEL[m.group(1)], line.strip()
    m = NUMBERED_HEADING.match(line)
    if m and len(line) <= _NUMBERED_MAX_CHARS and not _SENTENCE_END.search(line) and not line.endswith(("，", ",")):
        if m.group(1):
            return 2, line
        if m.group(2):
            return min(6, 2 + m.group(2).count(".")), line
        return (1 if m.group(3).lower() == "part" else 2), line
    return None


def _split_long(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Cut [start, end) into pieces of at most ``limit`` characters, after a comma or space where one exists."""
    pieces = []
    while end - start > limit:
        window = text[start + limit // 2:start + limit]
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(window)]
        cut = start + limit // 2 + breaks[-1] if breaks else start + limit
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def segments(text: str, chunk_chars: int) -> list[_Segment]:
    """The document as a flat list of sentence-level segments tagged with the structure they start."""
    out: list[_Segment] = []
    pos = 0
    for line in text.split("\n"):
        line_start, stripped = pos, line.strip()
        pos += len(line) + 1
        if not stripped:
            continue
        offset = line_start + (len(line) - len(line.lstrip()))
        heading = _heading(stripped)
        if heading:
            out.append(_Segment(offset, offset + len(stripped), "heading", *heading))
            continue
        kind = "article" if ARTICLE.match(stripped) else "para"
        sent_start = offset
        ends = [offset + m.end() for m in _SENTENCE_END.finditer(stripped)] + [offset + len(stripped)]
        for sent_end in ends:
            if sent_end <= sent_start:
                continue
            for a, b in _split_long(text, sent_start, sent_end, chunk_chars):
                out.append(_Segment(a, b, kind))
                kind = "sent"
            sent_start = sent_end
    return out


class _Packer:
    """Greedy packing of segments into chunks; the state of the chunk being built."""

    def __init__(self, text: str, chunk_chars: int, overlap: int, min_chars: int):
        self.text, self.limit, self.overlap, self.min_chars = text, chunk_chars, overlap, min_chars
        self.path: list[tuple[int, str]] = []
        self.chunks: list[tuple[int, int, str]] = []
        self._reset(None)

    def _reset(self, start: int | None, carried: list[_Segment] | None = None) -> None:
        self.start = start
        self.members: list[_Segment] = list(carried or [])
        self.title = self._path_title() if carried else None

    def _path_title(self) -> str:
        return " > ".join(h for _, h in self.path)

    @property
    def end(self) -> int:
        return self.members[-1].end if self.members else (self.start or 0)

    def add(self, seg: _Segment) -> None:
        if seg.kind in ("heading", "article") and self.title is not None:  # a chunk with content ends here
            if self.end - self.start >= self.min_chars:
                self.flush()
            elif not self._merge_back() and seg.kind == "heading" and self.chunks:
                self.flush()  # too small, but a chunk never runs on across a heading
            # else: a tiny article ("第三条 删除。") or preamble (a title line) runs on into the next chunk
        if seg.kind == "heading":
            self.path = [p for p in self.path if p[0] < seg.level] + [(seg.level, seg.heading)]
        if self.start is None:
            self._reset(seg.start)
        elif seg.end - self.start > self.limit:
            self._break_for_size(seg)
        self.members.append(seg)
        if seg.kind != "heading" and self.title is None:
            self.title = self._path_title()

    def _merge_back(self) -> bool:
        """Append a too-small chunk to the previous one when both sit under the same heading and it still fits."""
        if not self.chunks:
            return False
        start, end, title = self.chunks[-1]
        if title != self.title or end > self.start or self.end - start > self.limit:
            return False
        self.chunks[-1] = (start, self.end, title)
        self._reset(None)
        return True

    def _break_for_size(self, seg: _Segment) -> None:
        # Prefer a paragraph start in the chunk's second half; else break before ``seg``.
        cut_index = len(self.members)
        for i in range(len(self.members) - 1, 0, -1):
            member = self.members[i]
            if member.start - self.start < self.limit // 2:
                break
            if member.kind in ("para", "article") and seg.end - member.start <= self.limit:
                cut_index = i
                break
        kept, carried = self.members[:cut_index], self.members[cut_index:]
        cut = carried[0].start if carried else kept[-1].end
        self.members = kept
        self.flush(end=cut)
        # Overlap: whole sentences from the end of the emitted chunk, never reaching back over an article or
        # heading start, and only when the next chunk still fits.
        hard = [i for i, m in enumerate(kept) if m.kind in ("heading", "article")]
        first = max(1, hard[-1] if hard else 1)
        overlap = [m for m in kept[first:] if m.start >= cut - self.overlap] if self.overlap else []
        if overlap and seg.end - overlap[0].start > self.limit:
            overlap = []
        carried = overlap + carried
        self._reset(carried[0].start if carried else seg.start, carried)

    def flush(self, end: int | None = None) -> None:
        if self.start is not None and self.members:
            self.chunks.append((self.start, end if end is not None else self.end, self.title or self._path_title()))
        self._reset(None)

    def finish(self) -> list[tuple[int, int, str]]:
        if self.start is not None and self.members:
            if self.title is None and self.chunks:
                return self.chunks  # trailing headings with no text under them carry nothing to retrieve
            tiny = self.title is not None and self.end - self.start < self.min_chars
            if not (tiny and self._merge_back()):
                self.flush()
        return self.chunks


def chunk_text(text: str, chunk_chars: int = 600, overlap: int = 80, min_chars: int = 20) -> list[Chunk]:
    """Chunks of ``text`` (already cleaned) with heading-path titles and exact character offsets."""
    packer = _Packer(text, chunk_chars, overlap, min_chars)
    for seg in segments(text, chunk_chars):
        packer.add(seg)
    out = []
    for start, end, title in packer.finish():
        piece = text[start:end]
        lead = len(piece) - len(piece.lstrip())
        piece = piece.strip()
        if piece:
            out.append(Chunk(start + lead, start + lead + len(piece), title, piece))
    return out
