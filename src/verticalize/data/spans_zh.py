"""Chinese answer spans and the questions around them (the ``spans`` generator's CJK half).

A sentence is cleaned (（…）/(…) asides out of the question text) and cut into clauses at ，；： (not inside
《》“”「」); a clause without a verb that leads the next one (a time or place lead: "1980年12月4日，") is read
with it. jieba's part-of-speech tags give the names — nr (person), ns (place), nt (organisation), Latin words —
and the subject (the noun phrase before the first verb); regexes give dates and years, numbers with measure words
and ordinals (第8代), and definitions ("X是Y", "X，法国政治家，…", "X又称Y").

jieba's dictionary tags many common words as names (华丽/nr, 叶子/nr, 馆藏/ns, 普通/nz), so a name must also
look like one: a person is a rare word (dictionary frequency ≤ 150), a "·" name, three or more characters without
a thing's suffix (菌, 松, 部…), or follows a role noun (作家, 国王, 妻子…); a place has a place suffix (省, 市, 河…)
or follows a locative word (在, 位于, 生于…); nz (other proper nouns) is not used. Names inside 《》, next to
an enumeration comma (、) or glued to a stray character (a cut name) are not asked for.

The question is the clause with the span replaced by an interrogative that fits it: 谁, 哪里 / 哪个国家 / 哪个省,
哪个机构 / 哪家公司 / 哪所大学, 何时, 哪一年, 多少+量词, 第几+量词, 什么. Chinese keeps the interrogative in place.
A clause without a subject ("2010年至2011年任法国国民议会副议长") gets the sentence's subject, else the previous
sentence's named subject or the document title, in front ("让-皮埃尔·巴利冈何时任…"); a verbless clause then
gets 是 ("德川氏的家臣" → "松平康忠是谁的家臣？"). A pronoun subject (他, 她们, 其, 该公司, 本鱼) is replaced the
same way; a relational or attribute subject (父亲, 首都, 面积, 头长) gets its owner ("松平康忠的父亲是谁？").
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import NamedTuple

from verticalize.data.rules_base import strip_end
from verticalize.data.spans_base import MAX_A_CJK, Context, SpanPair, cjk_length
from verticalize.text import HAN_RANGES

_CN_DIGIT = "零〇一二两三四五六七八九十百千万亿"
_PAREN = re.compile(r"\s*(?:（[^（）]*）|\([^()]*\)|【[^【】]*】|\[[^\[\]]*\])")
_MARKUP = re.compile(r"-\{|\}-|zh-han[st]|formula_|_\d|\{\{|\}\}|<[a-z/]")
_CLAUSE_BREAK = "，；：,;:"
_PRONOUN = re.compile(r"^(?:他们|她们|它们|牠们|其|他|她|它|牠)")
_DEMONSTRATIVE = re.compile(f"^(?:该|此|这|本)(?=[{HAN_RANGES}])")
_TIME_DEMONSTRATIVE = re.compile(r"^(?:本|该|此|这)(?:年|月|日|次|届|期|季|周|时|后|前|外|处|地|类|种)")
_LEADING = re.compile(r"^(?:但是|但|然而|而且|并且|并|而|且|因此|所以|于是|此后|后来|随后|之后|同时|另外|此外|因而|"
                      r"最终|最后|其后|当时|当初|目前|现在|如今|同年|次年|翌年|不久|其中|结果|期间|又|也|还|亦|则|即|便|就|故|遂)")
_RELATIONAL = set((
    "父亲 母亲 妻子 丈夫 儿子 女儿 长子 次子 兄弟 姐妹 哥哥 弟弟 姐姐 妹妹 祖父 祖母 正室 继室 首都 首府 面积 人口 总部 "
    "创始人 创办人 作者 主席 校长 院长 会长 总裁 董事长 前身 口号 官方语言 货币 简称 原名 本名 学名 别名 英文名 全称 长度 "
    "高度 海拔 流域 全长 总长 源头 前任 继任者 继承人 主教练 队长 首任 导演 编剧 主演 制作人 发行商 开发商 创作者 所在地 "
    "发源地 原型 国籍 职业 宗教 座右铭 吉祥物 主场 校训 祖籍 出生地 病因 症状 疗效 发病率 死亡率 校园 馆藏 藏书").split())
_ATTRIBUTE_END = tuple("高长宽重径期率量积龄色形")
_ROLE_NOUNS = set((
    "作家 导演 编剧 演员 歌手 教练 总统 主席 国王 皇帝 皇后 王子 公主 首相 总理 部长 市长 省长 校长 将军 选手 球员 诗人 "
    "画家 作曲家 科学家 学者 教授 博士 先生 女士 丈夫 妻子 儿子 女儿 父亲 母亲 哥哥 弟弟 姐姐 妹妹 兄长 叔叔 叔父 侄子 "
    "孙子 家臣 大臣 丞相 太子 创始人 董事长 总裁 搭档 对手 队友 义父 祖父 作者 法官 律师 医生 被告 原告 上诉人 被上诉人 "
    "申请人 被申请人 当事人 代理人 院士 主编 领袖 国君 君主 女王 太后 贵妃 之子 之女").split())
_LOCATIVE = ("在", "于", "位于", "到", "从", "自", "来自", "生于", "出生于", "前往", "抵达", "迁往", "迁至", "分布于",
             "分布在", "访问", "出访", "遍布", "流经", "发源于", "途经", "移居", "定居", "返回", "回到", "进入", "离开",
             "飞往", "驶往", "至", "赴", "落户", "坐落于", "位在", "葬于", "逝于", "卒于", "流入", "注入")
_PLACE_VERBS = {"生于", "出生于", "位于", "来自", "分布于", "分布在", "坐落于", "定居", "移居", "前往", "抵达", "迁往",
                "迁至", "流经", "发源于", "葬于", "逝于", "卒于", "流入", "注入", "途经", "位在", "落户", "遍布"}
_SURNAMES = set("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
                "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
                "司欧上诸皇令慕宇长夏端公尉澹闻濮东赫仇桓")
_TRANSLIT = set("斯尔特克娜亚拉德罗维夫基卡里奥伊尼安蒂莱莉丝米多格兹普布塔索洛诺贝佩马西汉森姆勒霍")
_THING_END = tuple("菌松树花草科属目纲鱼鸟虫兽病症酸素部局院宫馆寺庙殿楼桥路街门车船舰机药剂器洞果")
_PLACE_SUFFIX = [("国", "哪个国家"), ("省", "哪个省"), ("市", "哪个城市"), ("县", "哪个县"), ("州", "哪个州"),
                 ("岛", "哪个岛"), ("河", "哪条河"), ("江", "哪条江"), ("湖", "哪个湖"), ("山", "哪座山"),
                 ("区", "哪个区"), ("镇", "哪个镇"), ("村", "哪个村"), ("郡", "哪个郡"), ("洲", "哪个洲"),
                 ("半岛", "哪个半岛"), ("寺", "哪座寺庙"), ("乡", "哪个乡")]
# a suffix that is one character long names the kind only on a longer name ("得克萨斯州", not "广州")
_SHORT_SUFFIX_MIN = {"州": 3, "城": 3, "区": 3, "山": 2, "国": 2}
_NOT_PLACES = set("全国 各国 两国 出国 回国 该国 本国 外国 祖国 爱国 建国 监国 开国 立国 治国 万国 诸国 邻国 他国 我国 "
                  "敌国 小国 大国 强国 王国 帝国 全省 全市 全县 本市 该市 本省 该省 市区 城区 地区 山区 江山 河山 下山 上山 "
                  "出海 入海 沿海 港湾".split())
_ORG_SUFFIX = [("有限公司", "哪家公司"), ("公司", "哪家公司"), ("集团", "哪家集团"), ("大学", "哪所大学"),
               ("学院", "哪所学院"), ("学校", "哪所学校"), ("中学", "哪所学校"), ("医院", "哪家医院"),
               ("银行", "哪家银行"), ("人民法院", "哪个法院"), ("法院", "哪个法院"), ("检察院", "哪个检察院"),
               ("政党", "哪个政党"), ("党", "哪个政党"), ("议会", "哪个机构"), ("委员会", "哪个机构"),
               ("研究所", "哪个机构"), ("研究院", "哪个机构"), ("研究中心", "哪个机构"), ("协会", "哪个机构"),
               ("学会", "哪个机构"), ("政府", "哪个机构"), ("管理局", "哪个机构"), ("铁路局", "哪个机构"),
               ("局", "哪个机构"), ("厅", "哪个机构"), ("署", "哪个机构"), ("基金会", "哪个机构"),
               ("博物馆", "哪个机构"), ("俱乐部", "哪家俱乐部"), ("球队", "哪支球队"), ("乐队", "哪支乐队"),
               ("出版社", "哪家出版社"), ("电视台", "哪家电视台"), ("报社", "哪家报社"), ("组织", "哪个组织"),
               ("联盟", "哪个组织"), ("国军", "哪支军队"), ("大军", "哪支军队"), ("联军", "哪支军队"),
               ("红军", "哪支军队"), ("志愿军", "哪支军队"), ("解放军", "哪支军队"), ("十字军", "哪支军队")]
_PERSON_END = tuple("人者家手师将王帝官长相士主妃后臣君侯公氏")
_PERSON_WORDS = {"运动员", "演员", "议员", "球员", "队员", "委员", "官员", "研究员", "职员", "飞行员", "宇航员",
                 "武将", "诗人", "皇帝", "女儿", "儿子", "妻子", "丈夫"}
_NOT_PERSON_WORDS = {"成员", "会员", "对象", "工具", "主人公", "家族", "国家", "大家", "专家组", "人口"}
_UNITS = ("平方公里|平方千米|平方米|公里|千米|公顷|厘米|毫米|米|公斤|千克|毫克|克|吨|毫升|升|万元|亿元|元|美元|欧元|英镑|"
          "日元|港元|倍|万人|亿人|人次|人|名|位|个|种|次|岁|周岁|天|小时|分钟|秒|座|件|所|家|部|本|场|届|项|条|架|辆|"
          "艘|层|株|只|头|匹|枚|摄氏度|户|间|棵|首|集|章|节|卷|册|篇|份|台|颗|支|队|贯文|贯|石|胜|球|代|任|"
          "亿|万")
_NUMBER = re.compile(rf"(?P<ord>第)?(?P<v>(?<![\d.A-Za-z\-])(?:\d+(?:,\d{{3}})*(?:\.\d+)?|[{_CN_DIGIT}]+)(?![\d.])"
                     rf"\s*(?P<unit>%|％|{_UNITS}))(?![A-Za-z\d])")
_DURATION_YEARS = re.compile(rf"(?P<v>(?<![\d.年])(?:\d{{1,2}}|[{_CN_DIGIT}]{{1,3}})\s*(?:个)?年)(?=后|间|之久|来|内|多|半)"
                             rf"|(?<=时隔|长达|历时|为期|经过|用了|执政|在位|服役|任期)(?P<w>(?:\d{{1,2}}|[{_CN_DIGIT}]{{1,3}})\s*年)")
_YMD = r"\d{3,4}年(?:\d{1,2}月(?:\d{1,2}日)?)?"
_DATE = re.compile(rf"(?P<v>\d{{3,4}}年代|(?:公元前?)?\d{{1,2}}世纪(?:\d0年代|初|末|中叶|上半叶|下半叶)?"
                   rf"|{_YMD}(?:\s*(?:[至到－—~-]|起至)\s*(?:{_YMD}|\d{{1,2}}月(?:\d{{1,2}}日)?|\d{{1,2}}日))?"
                   rf"|(?<![\d年])\d{{1,2}}月\d{{1,2}}日|[〇零一二三四五六七八九]{{4}}年(?:[一二三四五六七八九十]{{1,2}}月"
                   rf"(?:[一二三四五六七八九十]{{1,3}}日)?)?)"
                   rf"(?![\d年月度代])")
_TERM = re.compile(r"(?P<lead>又称|又名|简称|俗称|别称|旧称|原名|英文名|全称|通称|亦称|也称|昵称|学名|本名)(?:为|是)?"
                   r"(?P<v>[“「\"]?[^，。；：、“”「」\"]{1,20}?[”」\"]?)$")
_CONDITION = re.compile(r"^(?P<kw>如果|若|倘若|假如|一旦|如若|假若)(?P<cond>.{4,30})$")
_CAUSE = re.compile(r"^(?:但|而|并且|并|且)?(?P<kw>由于|因为)(?P<v>.{3,20})$")
_NOUNISH = ("n", "nr", "nrfg", "nrt", "ns", "nt", "nz", "ng", "nl", "eng", "j", "vn", "an", "s", "l", "bk")
_NAME_FLAGS = {"nr": "person", "nrfg": "person", "nrt": "person", "ns": "place", "nt": "org", "eng": "name"}
_CONDITION_WORD = re.compile(f"(?:^|[^{HAN_RANGES}]|[{HAN_RANGES}])(?:若|如果|假如|倘若|一旦|如若)(?!干)")
_EXAMPLE_LEAD = re.compile(r"^(?:如|例如|比如|譬如|包括|诸如|像|以及|及|和|与|或)")


class _Tok(NamedTuple):
    word: str
    flag: str
    start: int
    end: int


@dataclass
class _Span:
    kind: str
    answer: str
    a: int        # the region of the clause the interrogative replaces
    b: int
    wh: str


_POSSEG = None


def _posseg():
    global _POSSEG
    if _POSSEG is None:
        import jieba
        import jieba.posseg as posseg

        jieba.setLogLevel(logging.WARNING)
        _POSSEG = posseg
    return _POSSEG


def _freq(word: str) -> int:
    """jieba's dictionary frequency of ``word`` (0 when it is not in the dictionary)."""
    import jieba

    return jieba.dt.FREQ.get(word) or 0


def _tokens(text: str) -> list[_Tok]:
    """jieba tokens with offsets; a 《…》 title is one token (flag "bk") and a "·" name one nr token."""
    return list(_cached_tokens(text))


@functools.lru_cache(maxsize=4096)
def _cached_tokens(text: str) -> tuple[_Tok, ...]:
    raw, pos = [], 0
    for pair in _posseg().cut(text):
        raw.append(_Tok(pair.word, pair.flag, pos, pos + len(pair.word)))
        pos += len(pair.word)
    out: list[_Tok] = []
    i = 0
    while i < len(raw):
        t = raw[i]
        if t.word == "《":
            j = i
            while j < len(raw) and raw[j].word != "》":
                j += 1
            if j < len(raw):
                out.append(_Tok(text[t.start: raw[j].end], "bk", t.start, raw[j].end))
                i = j + 1
                continue
        if _name_piece(t):
            # a transliterated name: pieces joined by "·" ("维多利亚·阿扎伦卡", "弗拉维娅·佩内塔")
            j, dotted = i, False
            while True:
                k = j
                while k + 1 < len(raw) and _name_piece(raw[k + 1]):
                    k += 1
                if k + 2 < len(raw) and raw[k + 1].word in _DOTS and _name_piece(raw[k + 2]):
                    j, dotted = k + 2, True
                    continue
                if dotted:
                    j = k
                break
            if dotted:
                out.append(_Tok(text[t.start: raw[j].end], "nr", t.start, raw[j].end))
                i = j + 1
                continue
        out.append(t)
        i += 1
    return tuple(out)


_DOTS = ("·", "•", "‧", "・")


_HAN_WORD = re.compile(f"[{HAN_RANGES}]+")


def _is_han(word: str) -> bool:
    return bool(_HAN_WORD.fullmatch(word))


def _name_piece(t: _Tok) -> bool:
    return t.flag in ("nr", "nrt", "nrfg", "ns", "nz") or t.flag == "x" and _is_han(t.word) and len(t.word) == 1


# ---------------------------------------------------------------------------------------------- entry point
@dataclass
class _SentenceSubject:
    """The sentence's subject, once a clause has given it, and whether it names something (then it becomes what a
    pronoun in the next sentence stands for)."""

    text: str = ""
    named: bool = False


@dataclass
class _PlacedClause:
    """A clause with its subject in place: ``body`` is the clause with a pronoun subject resolved, ``prefix`` the
    subject put before a clause that has none of its own (``has_subject`` False), ``body[subj_start:subj_end]``
    the clause's own subject."""

    lead: str
    clause: str
    toks: list[_Tok]
    verbless: bool
    has_subject: bool = False
    prefix: str = ""
    body: str = ""
    subj_start: int = 0
    subj_end: int = 0


def sentence_pairs(sentence: str, ctx: Context) -> list[SpanPair]:
    """Pairs for one Chinese sentence; updates ``ctx.referent`` with the sentence's named subject."""
    raw = strip_end(sentence)
    if not _usable_sentence(raw):
        return []
    text = _PAREN.sub("", raw).strip("，,；; ")
    tokens = _tokens(text)
    clauses = _clauses(text, tokens)
    if not clauses:
        return []
    out: list[SpanPair] = []
    antecedent = ctx.antecedent()
    subject = _SentenceSubject()
    for k, bounds in enumerate(clauses):
        placed = _place_clause(text, tokens, k, bounds, subject, antecedent, ctx)
        if placed is not None:
            out += _placed_clause_pairs(placed, subject.text, antecedent, ctx, sentence)
    lead_def = _appositive_lead(text, clauses, ctx)
    if lead_def:
        out.append(SpanPair("definition", lead_def[0], lead_def[1], sentence))
    out += [p for p in _condition_cause(text, clauses, subject.text or antecedent, sentence)
            if _anchored(p.question, ctx)]
    if subject.text and subject.named:
        ctx.referent = subject.text
    elif subject.text and subject.text != antecedent:
        ctx.referent = None
    return out


def _place_clause(text: str, tokens: list[_Tok], k: int, bounds: tuple[int, int, int], subject: _SentenceSubject,
                  antecedent: str, ctx: Context) -> _PlacedClause | None:
    """Clause ``k`` (``bounds``: start, start of its main part, end) with its subject in place, or None when it
    gives no pairs; the first clause that has or gets a subject sets the sentence's ``subject``."""
    start, main_start, end = bounds
    lead, clause = text[start:main_start].rstrip("，,"), text[main_start:end]
    toks = [_Tok(t.word, t.flag, t.start - main_start, t.end - main_start) for t in tokens
            if t.start >= main_start and t.end <= end]
    if not toks or _EXAMPLE_LEAD.match(clause) and k > 0:
        return None  # "如沙门氏菌、…": examples of the previous clause, not a statement
    if re.match(r"^(?:此|这|该)(?:[\d一二三四五六七八九十]|是|时|后|前|外)|^(?:本|该|此|这)(?:年|月|日|次|届|期|季|周)"
                r"|^[\d一二三四五六七八九十两]+(?:支|个|名|位|家|所|座|种|项)", clause) \
            or _CONDITION_WORD.search(clause):
        return None  # "此10年后…", "这是…": no thing to name; "…若含有…": half of a condition
    placed = _PlacedClause(lead, clause, toks, verbless=not any(_is_verb(t) for t in toks), body=clause)
    found = _subject(clause, toks, ctx)
    if found:
        return _resolve_own_subject(placed, found, subject, antecedent, ctx)
    return _borrow_subject(placed, subject, antecedent)


def _resolve_own_subject(placed: _PlacedClause, found: tuple[int, int], subject: _SentenceSubject,
                         antecedent: str, ctx: Context) -> _PlacedClause | None:
    """A clause with a subject of its own: a pronoun there is replaced by what it stands for (None: unresolved)."""
    clause, toks = placed.clause, placed.toks
    subj_start, subj_end = found
    own = clause[subj_start:subj_end]
    resolved = _resolve_subject(own, clause, subj_start, toks, ctx, subject.text or antecedent)
    if resolved is None:
        return None
    body = clause
    if resolved != own:
        body = clause[:subj_start] + resolved + clause[subj_end:]
        shift = len(resolved) - len(own)
        toks = [_Tok(t.word, t.flag, t.start + shift, t.end + shift) if t.start >= subj_end
                else _Tok(t.word, "x", t.start, t.end) for t in toks]
        subj_end = subj_start + len(resolved)
    if not subject.text:
        subject.text = body[subj_start:subj_end]
        subject.named = _named(subject.text, toks, ctx) or resolved != own
        if resolved != own and resolved.endswith("的" + own):
            subject.text = resolved[: -len(own) - 1]  # "X的父亲": the next clause is about X
    placed.has_subject, placed.body, placed.toks = True, body, toks
    placed.subj_start, placed.subj_end = subj_start, subj_end
    return placed


def _borrow_subject(placed: _PlacedClause, subject: _SentenceSubject, antecedent: str) -> _PlacedClause | None:
    """A clause without a subject of its own gets the sentence's (or the antecedent) in front (None: none known)."""
    prefix = subject.text or antecedent
    if not prefix:
        return None
    if prefix in placed.clause:
        prefix = ""  # the clause names it already ("在芙蓉洞的东端有…")
    elif _needs_copula(placed.toks):
        prefix += "是"
        placed.verbless = False
    if not subject.text:
        subject.text, subject.named = antecedent, True
    placed.prefix = prefix
    return placed


def _placed_clause_pairs(placed: _PlacedClause, subject: str, antecedent: str, ctx: Context,
                         sentence: str) -> list[SpanPair]:
    """The pairs of one clause with its subject in place: its spans, its lead's, a definition and a term."""
    lead, prefix, body, toks = placed.lead, placed.prefix, placed.body, placed.toks
    subj_start, subj_end = placed.subj_start, placed.subj_end
    topic = bool(antecedent) and body[subj_start:subj_end] in (antecedent, ctx.title)
    pairs = [] if placed.verbless else _clause_pairs(prefix, body, toks, subj_start, subj_end, topic, ctx)
    if lead:
        pairs = [(kind, (lead + "，" + q if not prefix else prefix + lead + "，" + q[len(prefix):])
                  if len(lead) <= 12 else q, a) for kind, q, a in pairs]
        pairs += _lead_pairs(lead, prefix, body, subj_start, subj_end, ctx)
    out = [SpanPair(kind, q, a, sentence) for kind, q, a in pairs if _anchored(q, ctx)]
    definition = _definition(prefix, body, toks, subj_start, subj_end, ctx)
    if definition and not lead:
        out.append(SpanPair("definition", definition[0], definition[1], sentence))
    term = _TERM.search(body)
    owner = (prefix[:-1] if prefix.endswith("是") else prefix) or body[subj_start:subj_end]
    if term and (term.start() <= subj_start or not placed.has_subject):
        owner = subject if subject and subject not in placed.clause else antecedent  # "，又称蓝线白𫚭": the sentence's subject
    if term and owner and not lead:
        answer = term.group("v").strip("“”「」\"")
        if answer and not answer[0].isdigit():
            out.append(SpanPair("term", f"{owner}{term.group('lead')}什么？", answer, sentence))
    return out


def _needs_copula(toks: list[_Tok]) -> bool:
    """A clause that is only a noun phrase ("德川氏的家臣", "社会党议员") reads after its subject with 是."""
    if not toks or any(_is_verb(t) for t in toks) or any(t.flag in ("m", "t", "p") for t in toks):
        return False
    return toks[-1].flag.startswith("n") or toks[-1].flag in ("bk", "eng")


_WH = re.compile("|".join(sorted({re.escape(w) for _, w in _PLACE_SUFFIX + _ORG_SUFFIX} | {
    "谁", "哪里", "何时", "哪一年", "哪个世纪", "哪个年代", "什么", "百分之多少", "哪个机构", "哪个国家",
    f"多少[{HAN_RANGES}]?", f"几[{HAN_RANGES}]?", f"第几[{HAN_RANGES}]?"}, key=len, reverse=True)))


def _anchored(question: str, ctx: Context) -> bool:
    """A question names something a corpus can tell apart: the title or the current subject, a name, a 《title》,
    a Latin name or a year. "预赛阶段多少名运动员分为10组比赛？" names nothing and is ambiguous."""
    for known in (ctx.title, ctx.referent or ""):
        if known and known in question:
            return True
    if "《" in question or re.search(r"\d{4}年|[A-Z][A-Za-z]+", question):
        return True
    toks = _tokens(_WH.sub("", question))
    return any(_name_kind(t, toks[i - 1] if i else None, None) for i, t in enumerate(toks))


def _lead_pairs(lead: str, prefix: str, body: str, subj_start: int, subj_end: int,
                ctx: Context) -> list[tuple[str, str, str]]:
    """A date that is the whole time lead of a clause is asked after the clause's subject: "2009年，美国食品和药物
    管理局批准…" → "美国食品和药物管理局哪一年批准…？" (or "…何时…")."""
    m = re.fullmatch(r"(?P<pre>在|于|自|从)?(?P<date>.+?)(?P<post>间|期间|之间|时|以来|起)?", lead)
    if not m:
        return []
    spans = _date_spans(m.group("date"), [], ctx)
    if len(spans) != 1 or spans[0].answer != m.group("date"):
        return []
    span = spans[0]
    wh = span.wh if not m.group("post") or m.group("post") in ("间", "期间", "之间", "时") else span.wh + m.group("post")
    if prefix:
        subject, predicate = prefix[:-1] if prefix.endswith("是") else prefix, body
    else:
        subject, predicate = body[:subj_end], body[subj_end:]
    if not subject or not predicate:
        return []
    return [(span.kind, f"{subject}{wh}{predicate}？", span.answer)]


def _usable_sentence(raw: str) -> bool:
    if cjk_length(raw) < 6 or _MARKUP.search(raw) or "参见" in raw or "..." in raw or "…" in raw:
        return False
    if re.search(r"[▪■•|]|https?://|www\.", raw):
        return False
    visible = [ch for ch in raw if not ch.isspace()]
    symbols = sum(ch.isdigit() or (not ch.isalnum() and ch not in "，。；：、“”《》（）·") for ch in visible)
    return symbols <= 0.35 * len(visible)


def _clauses(text: str, tokens: list[_Tok]) -> list[tuple[int, int, int]]:
    """Clauses as (start, main start, end) offsets, cut at ，；： outside brackets and quotes; time/place leads
    without a verb ("1980年12月4日，…") are kept with the clause they lead, the main part starting after them."""
    bounds, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "《“「『（(【":
            depth += 1
        elif ch in "》”」』）)】" and depth:
            depth -= 1
        elif ch in _CLAUSE_BREAK and depth == 0:
            if i > start:
                bounds.append((start, i))
            start = i + 1
    if start < len(text):
        bounds.append((start, len(text)))
    bounds = [(a, b) for a, b in bounds if text[a:b].strip()]
    merged: list[tuple[int, int, int]] = []
    lead_start: int | None = None
    for n, (a, b) in enumerate(bounds):
        toks = [t for t in tokens if t.start >= a and t.end <= b]
        if n + 1 < len(bounds) and _is_lead(toks, chained=lead_start is not None):
            lead_start = a if lead_start is None else lead_start
            continue
        merged.append((lead_start if lead_start is not None else a, a, b))
        lead_start = None
    return merged


def _is_lead(toks: list[_Tok], chained: bool = False) -> bool:
    """A time or place lead ("1980年12月4日", "在2005年比利时大奖赛中", "18世纪时"): no verb, ends in a time word;
    after a lead, any verbless clause ending in one ("…，泰国国王拉玛九世62岁生日那天，")."""
    if not toks or any(_is_verb(t) for t in toks):
        return False
    text = "".join(t.word for t in toks)
    return bool(re.search(r"(?:年|月|日|世纪|年代|时|后|前|中|间|期间|以来|初|末|那天|至今|当天|同年)$", text)) and (
        chained or toks[0].flag in ("m", "t", "p", "f") or bool(re.match(r"^\d", text)))


_VERB_WORDS = {"是", "为", "有", "任", "兼任", "出任", "曾任", "历任", "升任", "改任", "转任", "当选", "毕业", "出生",
               "去世", "逝世", "成立", "创立", "建立", "开幕", "闭幕", "开业", "上映", "出版", "发行", "结婚", "离婚",
               "退休", "就任", "加入", "参加", "获得", "获奖", "死亡", "病逝", "即位", "登基", "继位", "称帝", "又名",
               "又称", "简称", "别称", "俗称", "原名"}


def _is_verb(tok: _Tok) -> bool:
    return tok.flag.startswith("v") and tok.flag != "vn" or tok.word in _VERB_WORDS


def _subject(clause: str, toks: list[_Tok], ctx: Context) -> tuple[int, int] | None:
    """(start, end) of the clause's subject, the noun phrase before its first verb; leading connectives,
    adverbs and time/place leads are skipped. None when the clause has no subject of its own."""
    i = _subject_index(clause, toks)
    if i >= len(toks):
        return None
    start = toks[i].start
    for known in (ctx.title, ctx.referent or ""):
        if known and clause.startswith(known, start):
            rest = [t for t in toks if t.start >= start + len(known)]
            if rest and rest[0].flag != "uj":
                return start, start + len(known)
    m = _PRONOUN.match(clause[start:])
    if m:
        return start, start + m.end()
    if _TIME_DEMONSTRATIVE.match(clause[start:]) or re.match(r"^(?:此|这|该)(?:[\d一二三四五六七八九十]|是)",
                                                            clause[start:]):
        return None
    m = _DEMONSTRATIVE.match(clause[start:])
    if m:
        tok = toks[i]
        if tok.end - tok.start > 1 and tok.flag.startswith("n"):
            return start, tok.end  # "本鱼" is one token
        if i + 1 < len(toks) and toks[i + 1].flag.startswith("n"):
            return start, toks[i + 1].end
        return start, start + 1
    end = _noun_phrase_end(toks, i, start)
    if end == start:
        return None
    return _subject_before_verb(toks, start, end)


def _subject_index(clause: str, toks: list[_Tok]) -> int:
    """Index of the clause's first token after its leading connectives and adverbs ("此后", "但是", "最终"), a
    time lead ("2010年至2011年", "508年") and a time or place lead ("在2005年比利时大奖赛中"); len(toks) if none."""
    i = 0
    pos = 0
    while i < len(toks):  # leading connectives and adverbs: "此后", "但是", "最终"
        m = _LEADING.match(clause[pos:])
        if m and toks[i].start == pos and toks[i].end <= pos + m.end() + 1 and toks[i].flag in ("c", "d", "t", "r",
                                                                                                "zg", "p", "f"):
            i += 1
            pos = toks[i].start if i < len(toks) else len(clause)
            continue
        if toks[i].flag in ("c", "d", "ad") and i + 1 < len(toks):
            i += 1
            pos = toks[i].start
            continue
        break
    # a time lead: "2010年至2011年", "508年", "在2005年比利时大奖赛中"
    j = i
    while j < len(toks) and (toks[j].flag in ("m", "t") or toks[j].word in ("年", "月", "日", "至", "到", "起")):
        j += 1
    if j > i:
        i = j
    while i < len(toks) and toks[i].word in ("，", ",", " "):
        i += 1
    if i < len(toks) and toks[i].word in ("在", "于") and toks[i].flag == "p":
        k = i + 1
        while k < len(toks) and not (toks[k].flag == "f" or toks[k].word in ("时", "期间", "以来")):
            if _is_verb(toks[k]) or toks[k].word in ("，",):
                k = len(toks)
                break
            k += 1
        if k < len(toks):
            i = k + 1
    while i < len(toks) and toks[i].word in ("，", ",", " "):
        i += 1
    return i


def _noun_phrase_end(toks: list[_Tok], i: int, start: int) -> int:
    """End of the noun phrase that starts at token ``i`` (``start`` when there is none)."""
    end = start
    for n in range(i, len(toks)):
        t = toks[n]
        if n == i and t.word in ("各", "每", "所有", "全部", "多数", "部分", "许多") and n + 1 < len(toks) \
                and toks[n + 1].flag.startswith("n"):
            end = t.end
            continue
        if n > i and t.word in ("等", "等人"):
            end = t.end
            continue
        if t.flag in _NOUNISH or t.word in ("·", "-") or t.flag in ("m", "q", "b", "a", "uj", "f", "x") and (
                n > i or t.flag == "m"):
            if t.flag == "uj" and (n + 1 >= len(toks) or toks[n + 1].flag not in _NOUNISH):
                break
            if t.flag == "x" and not _is_han(t.word) and t.word not in ("%", "％", "·"):
                break
            end = t.end
            continue
        break
    return end


def _subject_before_verb(toks: list[_Tok], start: int, end: int) -> tuple[int, int] | None:
    """The noun phrase ``start:end`` as the clause's subject (an adjective predicate after it cut off), or None
    when no verb follows it or it does not end like a noun."""
    inside = [t for t in toks if start <= t.start and t.end <= end]
    while len(inside) > 1 and inside[-1].flag in ("a", "b") and inside[-2].flag.startswith("n"):
        inside.pop()  # "果实长约…": an adjective predicate after the subject
        end = inside[-1].end
    rest = [t for t in toks if t.start >= end]
    if rest and rest[0].flag in ("m", "q") and any(_is_verb(t) for t in rest[1:4]):
        pass  # "佩内塔七次参加美网": a count before the verb
    elif not rest or not (_is_verb(rest[0]) or rest[0].flag in ("p", "d", "c", "ad", "zg", "a", "t")):
        return None
    if len(rest[0].word) == 1 and rest[0].flag in ("x", "g", "ng", "zg", "yg", "rg"):
        return None  # the segmenter cut a name here ("耶律|厮不")
    last = [t for t in toks if t.end <= end][-1]
    if last.flag in ("uj", "m", "q", "f", "a", "b") or not last.flag.startswith(("n", "eng", "bk", "j", "vn", "l")) \
            and not _is_han(last.word):
        return None
    return start, end


def _named(subject: str, toks: list[_Tok], ctx: Context) -> bool:
    if subject in (ctx.title, ctx.referent) or "《" in subject:
        return True
    return any(_name_kind(t, None, None) for t in toks if t.end <= len(subject))


def _resolve_subject(subject: str, clause: str, start: int, toks: list[_Tok], ctx: Context,
                     antecedent: str) -> str | None:
    """The subject with a pronoun/demonstrative replaced; a relational noun gets its owner; None: skip."""
    m = _PRONOUN.match(subject)
    if m:
        if not antecedent:
            return None
        tail = subject[m.end():]
        if m.group(0) == "其":
            return f"{antecedent}的{tail}" if tail else antecedent
        return antecedent + tail
    demonstrative = _DEMONSTRATIVE.match(clause[start:])
    if demonstrative:
        noun = subject[1:]
        if not noun:
            return None  # "这是…", "此10年后…": an event or a time, not a thing with a name
        return antecedent or None
    if ctx.title and ctx.title.endswith(subject) and 2 <= len(subject) < len(ctx.title):
        return ctx.title  # "公园开放" in the document on 乍都节公园
    own = [t for t in toks if start <= t.start < start + len(subject)]
    attribute = len(own) == 1 and own[0].flag == "n" and len(subject) <= 3 and subject.endswith(_ATTRIBUTE_END)
    if antecedent and (subject in _RELATIONAL or attribute) and subject not in (ctx.title, antecedent):
        return f"{antecedent}的{subject}"
    return subject


# ---------------------------------------------------------------------------------------------- spans
def _clause_pairs(prefix: str, body: str, toks: list[_Tok], subj_start: int, subj_end: int, topic: bool,
                  ctx: Context) -> list[tuple[str, str, str]]:
    out = []
    for span in _spans(body, toks, ctx):
        in_subject = span.a < subj_end and span.b > subj_start
        if in_subject and (topic or span.b > subj_end or span.a < subj_start):
            continue  # do not ask for the topic itself; a span must not cut the subject
        if in_subject and not prefix and not _anchored(body[span.b:], ctx):
            continue  # "谁夺得冠军？": which contest? the rest must name something
        if cjk_length(body[: span.a] + body[span.b:]) < 3:
            continue  # "马克·茨柏克沃斯基何时？": the clause says nothing but the answer
        if span.kind in ("date", "year") and span.b <= subj_start and subj_end > subj_start and not prefix:
            # "518年九月高英去探望…" → "高英哪一年九月去探望…": the time moves after the subject
            question = body[subj_start:subj_end] + body[: span.a] + span.wh + body[span.b:subj_start] + body[subj_end:]
            out.append((span.kind, question.strip("，,；; ") + "？", span.answer))
            continue
        question = prefix + body[: span.a] + span.wh + body[span.b:]
        question = question.strip("，,；; ") + "？"
        out.append((span.kind, question, span.answer))
    return out


def _spans(text: str, toks: list[_Tok], ctx: Context) -> list[_Span]:
    found: list[_Span] = []
    for extract in (_date_spans, _number_spans, _name_spans):
        for span in extract(text, toks, ctx):
            if all(span.b <= f.a or span.a >= f.b for f in found) and not _in_title(span, toks):
                found.append(span)
    return sorted(found, key=lambda s: s.a)


def _in_title(span: _Span, toks: list[_Tok]) -> bool:
    return any(t.flag == "bk" and t.start < span.b and span.a < t.end for t in toks)


def _date_spans(text: str, toks: list[_Tok], ctx: Context) -> list[_Span]:
    out = []
    for m in _DATE.finditer(text):
        v = m.group("v")
        if re.match(r"\s*(?:和|及|与|、|或)\s*\d", text[m.end("v"):]) or re.search(r"(?:和|及|与|、|或)\s*$",
                                                                                   text[: m.start("v")]):
            continue  # one date of several ("2005年和2006年")
        if "世纪" in v:
            kind, wh = "year", "哪个世纪"
        elif v.endswith("年代"):
            kind, wh = "year", "哪个年代"
        elif re.fullmatch(r"\d{3,4}年|[〇零一二三四五六七八九]{4}年", v):
            if re.fullmatch(r"\d{3}年", v) and text[m.end("v"): m.end("v") + 1] in ("前", "后", "来", "间"):
                continue  # "800年前": a span of time, not a year
            kind, wh = "year", "哪一年"
        else:
            kind, wh = "date", "何时"
        out.append(_Span(kind, v, m.start("v"), m.end("v"), wh))
    return out


def _number_spans(text: str, toks: list[_Tok], ctx: Context) -> list[_Span]:
    out = []
    for m in _NUMBER.finditer(text):
        value, unit = m.group("v"), m.group("unit")
        number = value[: len(value) - len(unit)].strip()
        before = text[max(0, m.start() - 1): m.start()]
        after = text[m.end(): m.end() + 1]
        chinese = bool(re.fullmatch(rf"[{_CN_DIGIT}]+", number))
        if chinese and (unit in ("亿", "万", "石", "度", "部", "本", "队", "支", "胜", "球", "家", "代", "任", "头")
                        or re.fullmatch(r"[一两]", number) and not m.group("ord")):
            continue  # 一种/一个 (an article), 十分 (very), 一部分, 万一 …
        if chinese and re.search(r"[一二三四五六七八九十数几上近逾]$", before):
            continue
        if unit in ("代", "任", "届") and not m.group("ord"):
            continue
        if before and before in "年月" and unit not in ("%", "％"):
            continue
        if after and after in "年月日" and unit in ("个",):
            continue
        if "、" in (before, after) or text[m.end(): m.end() + 1] == "、" or before in ("×", "x", "X", "*", "/"):
            continue  # one value of an enumeration, or a factor ("4×50米")
        if m.group("ord"):
            out.append(_Span("number", m.group(0), m.start(), m.end(), "第几" + unit))
            continue
        if unit in ("%", "％"):
            out.append(_Span("number", value, m.start("v"), m.end("v"), "百分之多少"))
            continue
        small = number.isdigit() and int(number) <= 10 or bool(re.fullmatch(r"[二三四五六七八九十]", number))
        wh = ("几" if small and unit in ("个", "种", "位", "名", "次", "座", "项", "部", "本", "所", "家", "条")
              else "多少") + unit
        out.append(_Span("number", value, m.start("v"), m.end("v"), wh))
    for m in _DURATION_YEARS.finditer(text):
        group = "v" if m.group("v") else "w"
        out.append(_Span("number", m.group(group), m.start(group), m.end(group), "多少年"))
    return out


def _name_kind(t: _Tok, prev: _Tok | None, nxt: _Tok | None) -> str | None:
    """The kind of the name token ``t`` when it really looks like a name (see the module doc), else None."""
    word, flag = t.word, t.flag
    after_locative = prev is not None and prev.word in _LOCATIVE
    if flag == "eng":
        if len(word) < 2 or word.lower() in ("formula", "zh", "hans", "hant", "math", "ref", "nbsp", "px", "http"):
            return None
        return "name" if (word[0].isupper() or any(ch.isdigit() for ch in word)) else None
    if flag == "nt":
        return "org"
    if flag in ("nr", "nrfg", "nrt"):
        if after_locative and (word.endswith(tuple("宫馆寺庙殿楼堂院城")) or prev.word in _PLACE_VERBS):
            return "place"
        if word.endswith(_THING_END) or word.endswith(("者", "员", "家", "手", "师", "人")) or len(word) < 2:
            return None
        if any(word.endswith(suffix) for suffix, _ in _PLACE_SUFFIX) and len(word) >= 3:
            return "place"
        freq = _freq(word)
        if "·" in word or prev is not None and prev.word in _ROLE_NOUNS:
            return "person"
        if len(word) >= 3 and (0 < freq <= 100 or word[0] in _SURNAMES and freq <= 3000
                               or freq == 0 and any(ch in _TRANSLIT for ch in word)):
            return "person"
        if len(word) == 2 and freq <= 150 and word[0] in _SURNAMES:
            return "person"
        return None
    if flag == "ns":
        if word in _NOT_PLACES or len(word) < 2:
            return None
        if after_locative or any(word.endswith(s) for s, _ in _PLACE_SUFFIX) or word.endswith(tuple("湾港城")):
            return "place"
        return None
    return None


def _name_spans(text: str, toks: list[_Tok], ctx: Context) -> list[_Span]:
    out: list[_Span] = []
    i = 0
    protected = [(m.start(), m.end()) for known in (ctx.title, ctx.referent or "") if known
                 for m in re.finditer(re.escape(known), text)]
    while i < len(toks):
        if toks[i].flag not in _NAME_FLAGS:
            i += 1
            continue
        value, start, end, kind, j = _name_run(text, toks, i)
        if kind is not None and not any(a < end and start < b for a, b in protected) \
                and not _not_a_name_here(text, toks, i, j, kind, end):
            wh = _wh(kind, value, toks[i - 1] if i > 0 else None)
            if wh:
                out.append(_Span(kind, value, start, end, wh))
        i = j
    return out


def _name_run(text: str, toks: list[_Tok], i: int) -> tuple[str, int, int, str | None, int]:
    """The name that starts at token ``i``: (value, start, end, kind, index of the token after it)."""
    t = toks[i]
    prev = toks[i - 1] if i > 0 else None
    # adjacent name tokens make one name ("长峰真弓", "Queen Sirikit Park"); the last decides the kind
    j = i + 1
    while j < len(toks):
        n = toks[j]
        if n.word == " " and t.flag == "eng" and j + 1 < len(toks) and toks[j + 1].flag == "eng":
            j += 2
            continue
        if n.flag in _NAME_FLAGS and (n.flag == "eng") == (t.flag == "eng"):
            j += 1
            continue
        break
    start, end = t.start, toks[j - 1].end
    value = text[start:end]
    last = _Tok(value, toks[j - 1].flag if j - 1 > i else t.flag, start, end)
    kind = _name_kind(last if j - 1 == i else _Tok(value, last.flag, start, end), prev, None)
    # an organisation named by its suffix ("泰国国家铁路局", "法国国民议会")
    k = j
    while k < len(toks) and toks[k].flag in ("n", "nt", "ns", "j", "l") and k - j < 3:
        k += 1
        joined = text[start: toks[k - 1].end]
        if _org_wh(joined):
            value, end, kind, j = joined, toks[k - 1].end, "org", k
            break
    return value, start, end, kind, j


def _not_a_name_here(text: str, toks: list[_Tok], i: int, j: int, kind: str, end: int) -> bool:
    """Whether the name in tokens [i, j) (ending at ``end``) is no name to ask about where it stands."""
    t = toks[i]
    prev = toks[i - 1] if i > 0 else None
    nxt = toks[j] if j < len(toks) else None
    if nxt is not None and (nxt.flag.startswith("n") or nxt.flag in _MODIFIED_FLAGS) \
            and not (kind == "org" and nxt.word in _MEMBER_WORDS):
        return True  # a modifier: "澳洲南部", "韩国Nexon", "联合国世界自然遗产" (but "社会党议员" asks for the party)
    if nxt is not None and nxt.word in ("人", "族", "语", "式", "型", "派", "版", "系", "籍") \
            or text[end:end + 2] in ("之役", "之战", "之乱", "之变", "事件"):
        return True  # "萨尔浒之役": the name of an event, not a person
    if _in_enumeration(toks, i, j):
        return True  # one item of an enumeration: the question would have several answers
    glued = [x for x in (prev, nxt) if x is not None and (
        x.word in ("-", "－") or _is_han(x.word) and len(x.word) == 1 and x.flag in _GLUED_FLAGS)]
    if glued:
        return True  # a name cut by the segmenter ("宣武帝元恪" → "武帝元", "长宗我部元亲" → "长宗")
    # a formula ("SO₃²⁻", "M1 40公厘") or a gloss after a Chinese word ("外观 Appearance")
    return t.flag == "eng" and bool(re.match(r"[\s\d₀-₉⁰-⁹⁺⁻]", text[end:end + 1] or "x") and re.match(
        r"\s*[\d₀-₉⁰-⁹⁺⁻]", text[end:end + 3]) or prev is not None and prev.word == " ")


_MODIFIED_FLAGS = ("eng", "f", "s", "q", "m", "b", "vn", "l", "j")  # after a name: the name modifies it
_GLUED_FLAGS = {"x", "g", "ng", "n", "nr", "ns", "nrt", "j", "zg", "yg", "rg", "tg", "ag", "vg", "dg", "e", "q", "r",
                "a"}  # a lone character of these next to a name: the segmenter cut a longer name
_MEMBER_WORDS = {"议员", "成员", "党员", "委员", "候补委员", "代表", "主席", "总统", "领袖", "秘书长", "副议长", "议长"}


def _in_enumeration(toks: list[_Tok], i: int, j: int) -> bool:
    """Whether tokens [i, j) are (in) one item of a 、 list: a 、 is reached before any verb or punctuation."""
    joiners = ("及", "和", "与", "或", "以及", "跟", "同", "/", "／")
    if j + 1 < len(toks) and toks[j].word in joiners and toks[j + 1].flag in _NAME_FLAGS:
        return True
    if i >= 2 and toks[i - 1].word in joiners and (toks[i - 2].flag in _NAME_FLAGS or any(
            t.word == "、" for t in toks[:i - 1])):
        return True
    if j < len(toks) and toks[j].word in ("/", "／") or i and toks[i - 1].word in ("/", "／"):
        return True
    for step, rng in ((-1, range(i - 1, -1, -1)), (1, range(j, len(toks)))):
        for n in rng:
            w = toks[n].word
            if w == "、":
                return True
            if _is_verb(toks[n]) or w in "，。；：,;:（）()" or toks[n].flag in ("p", "c"):
                break
    return False


def _org_wh(name: str) -> str:
    if name.endswith(("冠军", "亚军", "季军", "干部")):
        return ""
    for suffix, wh in _ORG_SUFFIX:
        if name.endswith(suffix) and len(name) >= len(suffix) + (2 if suffix == "党" else 3 if len(suffix) == 1 else 2):
            return wh
    return ""


def _wh(kind: str, value: str, prev: _Tok | None) -> str:
    if kind == "person":
        return "谁"
    if kind == "org":
        return _org_wh(value) or "哪个机构"
    if kind == "place":
        for suffix, wh in _PLACE_SUFFIX:
            if value.endswith(suffix) and len(value) > max(len(suffix), _SHORT_SUFFIX_MIN.get(suffix, 1)):
                return wh
        return "哪里"
    if prev is not None and prev.word in ("由", "被", "受", "经"):
        return "谁"
    return "什么"


# ---------------------------------------------------------------------------------------------- definitions
def _definition(prefix: str, body: str, toks: list[_Tok], subj_start: int, subj_end: int,
                ctx: Context) -> tuple[str, str] | None:
    """ "X是Y" → ("X是什么？", "Y") (谁 when Y is a kind of person)."""
    if prefix.endswith("是"):
        return None
    subject = prefix or body[subj_start:subj_end]
    predicate = body if prefix else body[subj_end:]
    if not subject or len(subject) > 16 or subj_start > 0 and not prefix:
        return None
    m = re.match(r"^(?P<adv>(?:也|亦|则|就|便|乃|即|正|原本|本来|原来|仍|现在|目前|曾经|曾)?)是(?P<y>[^，。；：]{2,})$",
                 predicate)
    if not m:
        return None
    y = m.group("y")
    if y.endswith("的") or re.match(r"^(?:否|不|因为|由于|在|于|从|为了|指|由|被|对|把|将|以|又名|又称|别名|亦称)", y):
        return None
    if cjk_length(y) > MAX_A_CJK or "是" in subject:
        return None
    ytoks = _tokens(y)
    if not ytoks or ytoks[0].flag in ("v", "d", "ad", "p", "c", "r") or not ytoks[-1].flag.startswith(("n", "eng")) \
            or ytoks[-1].flag == "nr" and len(ytoks) == 1:
        return None
    head = ytoks[-1].word
    who = _is_person_noun(head) or ("·" in subject and head not in _NOT_PERSON_WORDS)
    return f"{subject}{m.group('adv')}{'是谁' if who else '是什么'}？", y


def _is_person_noun(head: str) -> bool:
    return (any(head.endswith(w) for w in _PERSON_WORDS) or head in _ROLE_NOUNS
            or head.endswith(_PERSON_END) and len(head) >= 2) and head not in _NOT_PERSON_WORDS


def _appositive_lead(text: str, clauses: list[tuple[int, int]], ctx: Context) -> tuple[str, str] | None:
    """ "让-皮埃尔·巴利冈，法国政治家，社会党议员": the first clause only the subject's name, the second a
    description without a verb → ("让-皮埃尔·巴利冈是谁？", "法国政治家")."""
    if len(clauses) < 2:
        return None
    name = text[clauses[0][0]: clauses[0][2]]
    description = text[clauses[1][0]: clauses[1][2]]
    if name not in (ctx.title, ctx.referent or "") or not 2 <= cjk_length(description) <= MAX_A_CJK:
        return None
    toks = _tokens(description)
    if not toks or any(_is_verb(t) for t in toks) or not toks[-1].flag.startswith("n"):
        return None
    if re.match(r"^(?:又名|又称|简称|别称|俗称|原名|英文名|全称|通称|亦称|也称|昵称|学名|本名)", description):
        return None
    wh = "是谁" if _is_person_noun(toks[-1].word) or "·" in name else "是什么"
    return f"{name}{wh}？", description


def _condition_cause(text: str, clauses: list[tuple[int, int]], subject: str, sentence: str) -> list[SpanPair]:
    out = []
    if len(clauses) < 2:
        return out
    first = text[clauses[0][0]: clauses[0][2]]
    second = text[clauses[1][0]: clauses[1][2]]
    m = _CONDITION.match(first)
    if m:
        consequence = re.sub(r"^(?:则|那么|就|便|将)", "", second).strip()
        if 2 <= cjk_length(consequence) <= MAX_A_CJK:
            out.append(SpanPair("condition", f"{first}，会怎样？", consequence, sentence))
    m = _CAUSE.match(first)
    if m and 4 <= cjk_length(second) <= 30:
        effect = re.sub(r"^(?:故|所以|因此|因而|于是|才|便|就|而)", "", second)
        toks = _tokens(effect)
        has_subject = bool(toks) and (toks[0].flag in _NAME_FLAGS or toks[0].flag.startswith("n"))
        effect = effect if has_subject else (subject + effect if subject else "")
        if effect:
            out.append(SpanPair("cause", f"为什么{effect}？", m.group("v"), sentence))
    return out
