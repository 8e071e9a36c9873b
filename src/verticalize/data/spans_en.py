"""English answer spans and the questions around them (the ``spans`` generator's Latin-script half).

A sentence is cleaned (parentheses and bracketed citations out of the question text), cut into segments at
commas, semicolons, colons and dashes (a comma inside a name list "Denmark, Iceland and Norway" or a number stays),
and the segments are read as clauses: an introductory phrase ("In 1066,"), a main clause (subject + verb + rest),
coordinated clauses (", and it continued …": subject inherited or resolved), relative clauses after a name
(", Rollo, who agreed …"), appositives after a name (", Normandy, a region in France," → a definition) and a
leading condition ("If …, …"). There is no tagger: verbs are found with a small lexicon (auxiliaries, common
irregular and regular verbs with their forms) and "-ed" words; names are capitalised word sequences, typed by
their head word (University → organisation, River → place, King → person), by a role noun before them ("their
leader Rollo"), by a verb after them ("Rollo agreed") or by a locative preposition ("in Normandy").

A question replaces the span (with its preposition or article where the wh-phrase absorbs them) in the clause.
When the span ends the clause it is fronted: after an auxiliary ("When was the castle built?"), with do-support
when the verb's base form is known ("In what year did William conquer England?"); otherwise it stays in place
("The Rhine is how many km long?").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from verticalize.data.rules_base import strip_end
from verticalize.data.spans_base import MAX_A_WORDS, Context, SpanPair

# ---------------------------------------------------------------------------------------------- lexicon
_AUX = {"is", "are", "was", "were", "has", "have", "had", "can", "could", "will", "would", "shall", "should", "may",
        "might", "must", "does", "do", "did"}

_IRREGULAR = (
    "arise arose arisen|awake awoke awoken|bear bore borne|beat beat beaten|become became become|begin began begun|"
    "bind bound bound|break broke broken|bring brought brought|build built built|buy bought bought|catch caught "
    "caught|choose chose chosen|come came come|cost cost cost|cut cut cut|deal dealt dealt|draw drew drawn|drive "
    "drove driven|eat ate eaten|fall fell fallen|feed fed fed|feel felt felt|fight fought fought|find found found|"
    "flee fled fled|fly flew flown|forbid forbade forbidden|forget forgot forgotten|forgive forgave forgiven|"
    "freeze froze frozen|get got got|give gave given|go went gone|grow grew grown|hang hung hung|hear heard heard|"
    "hide hid hidden|hold held held|keep kept kept|know knew known|lead led led|leave left left|lend lent lent|"
    "lose lost lost|make made made|mean meant meant|meet met met|overcome overcame overcome|overthrow overthrew "
    "overthrown|pay paid paid|rebuild rebuilt rebuilt|ride rode ridden|ring rang rung|rise rose risen|run ran run|"
    "say said said|see saw seen|seek sought sought|sell sold sold|send sent sent|shake shook shaken|shine shone "
    "shone|shoot shot shot|show showed shown|sing sang sung|sink sank sunk|sit sat sat|slay slew slain|sleep slept "
    "slept|speak spoke spoken|spend spent spent|spring sprang sprung|stand stood stood|steal stole stolen|stick "
    "stuck stuck|strike struck struck|swear swore sworn|sweep swept swept|swim swam swum|take took taken|teach "
    "taught taught|tear tore torn|tell told told|think thought thought|throw threw thrown|undergo underwent "
    "undergone|understand understood understood|uphold upheld upheld|wake woke woken|wear wore worn|win won won|"
    "withdraw withdrew withdrawn|write wrote written")
_REGULAR = (
    "accept achieve acquire add adopt affect agree aim allow announce appear apply appoint approve argue arrive ask "
    "assess assign assume attack attempt attend attribute award base believe belong call capture carry cause "
    "celebrate change charge claim close collect combine compare complete comprise conclude conduct confirm conquer "
    "consider consist constitute construct contain continue contribute convert convict create cross crown decide "
    "declare decline decrease defeat defend define deliver demand demonstrate deny depend describe design destroy "
    "detect determine develop die differ discover discuss display divide dominate donate earn elect emerge employ "
    "enable encourage end enter establish estimate evaluate evolve examine exceed exist expand expect explain "
    "explore export express extend face fail fill finish flow follow force form found gain grant graduate happen "
    "help host identify ignore implement import improve include increase indicate influence inform inherit "
    "introduce invade invent investigate involve join judge kill land last launch learn limit link live locate "
    "look maintain manage marry measure mention merge migrate move name need note observe obtain occupy offer open "
    "operate oppose order organise organize originate own participate pass perform place play possess predict "
    "prepare present preserve prevent proceed produce promote propose protect prove provide publish purchase raise "
    "reach receive recognise recognize record recover reduce reflect refuse reign reject relate release rely "
    "remain remove rename repeat replace report represent require rescue resign resolve respond restore result "
    "retain retire return reveal review rule sail save score separate serve settle share sign start state stay "
    "study succeed suffer suggest supply support surround survive sustain swear target tend test train transform "
    "treat try turn unite use vary visit vote want warn witness work yield")
_DOUBLING = "admit ban commit control drop occur permit plan prefer refer ship stop submit transfer travel"


def _regular_forms(base: str, doubled: bool) -> tuple[str, str]:
    """(third person singular, past) of a regular verb."""
    if re.search(r"(?:s|sh|ch|x|z|o)$", base):
        third = base + "es"
    elif re.search(r"[^aeiou]y$", base):
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    if base.endswith("e"):
        past = base + "d"
    elif re.search(r"[^aeiou]y$", base):
        past = base[:-1] + "ied"
    elif doubled:
        past = base + base[-1] + "ed"
    else:
        past = base + "ed"
    return third, past


def _build_lexicon() -> dict[str, tuple[str, str]]:
    """word → (base form, form): form is base, 3sg, past, pp or past/pp."""
    lex: dict[str, tuple[str, str]] = {}
    doubling = set(_DOUBLING.split())
    for base in set(_REGULAR.split()) | doubling:
        third, past = _regular_forms(base, base in doubling)
        lex.setdefault(third, (base, "3sg"))
        lex.setdefault(past, (base, "past/pp"))
    for entry in _IRREGULAR.split("|"):
        base, past, pp = entry.split()
        third, _ = _regular_forms(base, False)
        lex[third] = (base, "3sg")
        lex[past] = (base, "past" if past != pp else "past/pp")
        lex.setdefault(pp, (base, "pp"))
    return lex


_VERBS = _build_lexicon()
_NOT_VERBS = {"red", "bed", "hundred", "seed", "need", "speed", "feed", "breed", "sacred", "naked", "wicked",
              "kindred", "shed", "led", "wed", "fled", "bred", "greed", "creed", "steed", "weed", "reed", "deed",
              "embed", "bled", "shred", "sled", "sped", "united", "limited", "based", "related", "detailed",
              "advanced", "varied", "aged", "skilled", "armed", "noted", "talented", "renowned"}

_DETERMINERS = {"the", "a", "an", "this", "that", "these", "those", "its", "his", "her", "their", "our", "my",
                "your", "some", "many", "most", "all", "each", "every", "both", "no", "several", "such", "other",
                "any", "few", "more", "less", "of", "and", "or", "to", "in", "on", "at", "by", "for", "with", "from",
                "as", "than", "very", "well", "well-"}
_FUNCTION = _DETERMINERS | {"into", "onto", "upon", "over", "under", "between", "among", "through", "during",
                            "after", "before", "since", "until", "about", "against", "within", "without", "near",
                            "across", "around", "toward", "towards", "which", "who", "whom", "whose", "where", "when",
                            "while", "although", "though", "because", "if", "so", "but", "not", "also", "then",
                            "there", "here", "it", "they", "he", "she", "we", "you", "i", "via", "per", "whereas",
                            "including", "like", "unlike", "along", "beyond", "behind", "above", "below", "despite",
                            "throughout", "off", "out", "up", "down"}
_PREPOSITIONS = {"in", "on", "at", "by", "for", "with", "from", "to", "into", "onto", "upon", "over", "under",
                 "between", "among", "through", "during", "after", "before", "since", "until", "about", "against",
                 "within", "without", "near", "across", "around", "toward", "towards", "via", "of", "throughout",
                 "along", "beyond", "behind", "above", "below", "inside", "outside", "like", "despite", "following"}
_LOCATIVE = {"in", "at", "inside", "within", "throughout"}
_ADVERBS = {"here", "also", "then", "later", "still", "often", "never", "already", "soon", "once", "first", "only",
            "thus",
            "therefore", "however", "now", "ever", "even", "always", "sometimes", "initially", "subsequently",
            "eventually", "gradually", "finally", "mainly", "largely", "primarily", "generally", "usually",
            "currently", "previously", "originally", "formerly", "recently", "traditionally"}
_PRONOUNS = {"it", "he", "she", "they"}
# Generic subjects that a following pronoun usually stands for (legal and clinical prose).
_PERSON_ACTORS = {"claimant", "defendant", "appellant", "respondent", "applicant", "plaintiff", "petitioner",
                  "accused", "judge", "patient", "author", "applicants", "claimants", "defendants", "appellants",
                  "respondents", "patients", "authors", "investigators", "participants", "employer", "employee",
                  "tenant", "landlord", "buyer", "seller", "borrower", "lender", "insurer", "insured", "victim",
                  "witness", "doctor", "surgeon", "physician", "nurse", "child", "mother", "father", "man", "woman"}
_THING_ACTORS = {"court", "tribunal", "committee", "panel", "board", "study", "trial", "drug", "treatment",
                 "company", "government", "council", "agency", "authority", "commission", "review", "analysis",
                 "cohort", "group", "programme", "program", "policy", "contract", "agreement", "act", "regulation",
                 "law", "judgment", "decision", "order", "vaccine", "therapy", "intervention", "device", "test"}
_POSSESSIVES = {"its", "his", "her", "their"}
_DOC_NOUNS = {"study", "article", "paper", "report", "review", "trial", "analysis", "judgment", "judgement",
              "decision", "case", "book", "film", "album", "species", "company", "city", "work", "survey",
              "guideline", "policy", "document", "programme", "program", "project", "law", "act", "regulation"}
_STOP_CAPS = {"The", "A", "An", "In", "On", "At", "By", "For", "From", "To", "Of", "This", "That", "These", "Those",
              "It", "He", "She", "They", "We", "I", "His", "Her", "Its", "Their", "Our", "However", "But", "And",
              "Or", "As", "After", "Before", "During", "Although", "When", "While", "If", "Since", "With", "Under",
              "Through", "Following", "Despite", "There", "Also", "Many", "Some", "Most", "Each", "Both", "All",
              "Several", "Such", "Other", "Further", "Furthermore", "Moreover", "Thus", "Then", "Here", "Today",
              "Later", "Unlike", "Like", "Between", "Among", "Until", "Once", "Because", "Whereas", "According",
              "Upon", "Within", "Without", "Over", "Around", "Across", "Into", "Only", "Even", "No", "Not", "Yes",
              "What", "Which", "Who", "Where", "How", "Why", "Whose", "Whom", "Every", "Any", "One"}
_MONTHS = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov",
           "Dec", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
_LANGUAGES = {"Latin", "Greek", "English", "French", "German", "Dutch", "Spanish", "Italian", "Arabic", "Chinese",
              "Norse", "Russian", "Portuguese", "Japanese", "Hebrew", "Persian", "Turkish", "Welsh", "Irish",
              "Gaelic", "Sanskrit", "Swedish", "Danish", "Norwegian", "Polish", "Czech", "Hindi", "Korean"}
_DIRECTIONS = {"North", "South", "East", "West", "Northern", "Southern", "Eastern", "Western", "Central",
               "Northeast", "Northwest", "Southeast", "Southwest", "Upper", "Lower", "Middle"}
_ORG_HEADS = {"University", "College", "School", "Institute", "Academy", "Company", "Corporation", "Corp", "Inc",
              "Ltd", "LLC", "Group", "Bank", "Council", "Court", "Tribunal", "Committee", "Commission", "Ministry",
              "Department", "Agency", "Authority", "Office", "Board", "Association", "Society", "Union", "Party",
              "Church", "Army", "Navy", "Force", "Forces", "Foundation", "Trust", "Hospital", "Museum", "Library",
              "League", "Club", "Federation", "Organisation", "Organization", "Parliament", "Senate", "Congress",
              "Assembly", "Government", "Police", "Service", "Centre", "Center", "Laboratory", "Press", "Order",
              "Abbey", "Monastery", "Diocese", "Dynasty", "House", "Team", "Orchestra", "Network", "Alliance"}
_PLACE_HEADS = {"River", "Sea", "Ocean", "Lake", "Mountain", "Mountains", "Mount", "Island", "Islands", "Valley",
                "Bay", "Gulf", "Strait", "Peninsula", "City", "County", "Province", "State", "Kingdom", "Republic",
                "Empire", "Region", "Street", "Road", "Avenue", "Square", "Park", "Forest", "Desert", "Coast",
                "Canal", "Basin", "Delta", "Hills", "Plain", "Plateau", "Duchy", "Town", "Village", "Castle",
                "Bridge", "Harbour", "Harbor", "Port", "Channel", "Graben", "Gorge", "Glacier"}
_PLACE_WORDS = {"Alps", "Falls", "Isles", "Land", "Lowlands", "Highlands"}  # a place, but no "which …" head
_EVENT_HEADS = {"Period", "Era", "Age", "Epoch", "Dynasty", "Battle", "War", "Treaty", "Revolution", "Conquest",
                "Crusade", "Siege", "Act", "Agreement",
                "Convention", "Olympics", "Games", "Cup", "Championship", "Conference", "Summit", "Festival", "Award",
                "Prize", "Rebellion", "Uprising", "Massacre", "Invasion", "Declaration", "Charter", "Accord",
                "Protocol", "Trial", "Study", "Survey", "Reform", "Movement"}
_PERSON_TITLES = {"King", "Queen", "Prince", "Princess", "Duke", "Duchess", "Count", "Countess", "Earl", "Lord",
                  "Lady", "Sir", "Dame", "Pope", "Saint", "St", "Bishop", "Archbishop", "Emperor", "Empress",
                  "President", "Chancellor", "General", "Colonel", "Captain", "Admiral", "Dr", "Mr", "Mrs", "Ms",
                  "Professor", "Prof", "Judge", "Justice", "Senator", "Governor", "Mayor", "Rev", "Abbot", "Baron",
                  "Tsar", "Czar", "Sultan", "Caliph", "Khan", "Marquis", "Viscount", "Pharaoh", "Cardinal",
                  "Lieutenant",
                  "Sergeant", "Major", "Chief", "Prime", "Minister"}
_PLURAL_PLACES = {"Netherlands", "Alps", "Pyrenees", "Highlands", "Lowlands", "Americas", "Philippines", "Balkans",
                  "Marches", "Andes", "Rockies", "Carpathians", "Apennines", "Vosges", "Ardennes", "Midlands"}
_ROLE_NOUNS = {"leader", "king", "queen", "son", "daughter", "father", "mother", "wife", "husband", "brother",
               "sister", "founder", "author", "poet", "writer", "painter", "composer", "scientist", "chief", "ruler",
               "successor", "heir", "nephew", "niece", "cousin", "grandson", "granddaughter", "uncle", "aunt",
               "president", "emperor", "duke", "bishop", "pope", "director", "chairman", "minister", "commander",
               "general", "captain", "judge", "justice", "professor", "dr", "mr", "mrs", "ms", "lord", "count",
               "architect", "inventor", "explorer", "saint", "prince", "princess", "predecessor", "descendant",
               "ancestor", "mentor", "student", "pupil", "colleague", "rival", "ally", "player", "coach", "manager"}
_PERSON_VERBS = {"said", "says", "wrote", "writes", "died", "dies", "married", "marries", "argued", "argues",
                 "claimed", "claims", "stated", "reigned", "ruled", "succeeded", "led", "leads", "fought",
                 "founded", "became", "was", "is", "had", "has", "believed", "proposed", "described", "discovered",
                 "invented", "painted", "composed", "defeated", "conquered", "agreed", "refused", "returned",
                 "announced", "declared", "explained", "noted", "reported", "won", "lost", "born"}
_PERSON_NOUNS = {"people", "person", "man", "woman", "men", "women", "king", "queen", "leader", "politician",
                 "player", "writer", "author", "poet", "artist", "scientist", "actor", "actress", "singer",
                 "footballer", "ruler", "son", "daughter", "member", "painter", "composer", "philosopher",
                 "physician", "surgeon", "lawyer", "judge", "soldier", "general", "duke", "bishop", "saint", "monk",
                 "priest", "emperor", "prince", "princess", "chief", "founder", "president", "minister", "engineer",
                 "architect", "mathematician", "physicist", "chemist", "biologist", "economist", "historian",
                 "explorer", "inventor", "merchant", "warrior", "knight", "noble", "nobleman", "descendant",
                 "descendants", "mercenary", "mercenaries", "group", "tribe", "nation", "family"}
_SUBORDINATORS = {"if", "when", "once", "unless", "although", "though", "while", "because", "since", "after",
                  "before", "as", "whereas", "until", "whenever", "wherever"}
_ORDINAL_WORDS = ("first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|"
                  "fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|twenty-first")

# ---------------------------------------------------------------------------------------------- patterns
_CAPWORD = r"(?:[A-Z](?:[\w'’-]|\.(?=[A-Z]))*\.?|[A-Z])"
_CONNECT = r"(?:of|de|du|des|la|le|von|van|der|den|da|di|del|y|the)"
_CAPSEQ = rf"{_CAPWORD}(?:\s+(?:{_CONNECT}\s+(?:the\s+)?)?{_CAPWORD})*"
_CAPSEQ_RE = re.compile(rf"(?<![\w'’-]){_CAPSEQ}")
_CAPSEQ_FULL = re.compile(_CAPSEQ)
# A name list whose commas must not cut segments: "Denmark, Iceland and Norway".
_NAME_LIST = re.compile(rf"(?<![\w'’-]){_CAPSEQ}(?:,\s+{_CAPSEQ})+,?\s+(?:and|or)\s+{_CAPSEQ}")
_WORD_RE = re.compile(r"[A-Za-z0-9](?:[\w'’-]|\.(?=\w))*")
_SEGMENT_BREAK = re.compile(r"\s*;\s*|\s*:\s+|\s+[–-]{1,2}\s+|\s*—\s*|,\s+")
_PAREN = re.compile(r"\s*(?:\([^()]*\)|\[[^\[\]]*\])")

_NUM = r"(?<![\w.,/])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w/]|[.,]\d)"
_MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
          r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?")
_SCALE = r"(?:\s(?:million|billion|thousand|trillion))?"
_UNITS = (r"km²|km2|km|kilometres|kilometers|kilometre|kilometer|miles|mile|mi|metres|meters|metre|meter|m|cm|mm|"
          r"nm|µm|ft|feet|foot|inches|kg|kilograms|g|grams|mg|µg|mcg|ng|lb|lbs|pounds|tonnes|tons|t|litres|liters|"
          r"l|L|ml|mL|dL|°C|°F|degrees|hectares|ha|acres|square kilometres|square kilometers|square miles|sq mi|"
          r"hours|hour|h|hrs|minutes|minute|min|seconds|second|s|days|day|weeks|week|months|month|years|year|"
          r"mmHg|mmol/L|mg/dL|mg/kg|µmol/L|IU|units|Hz|kHz|MHz|GHz|W|kW|MW|GW|V|kV|bp|kb|Mb|knots|mph|km/h")
_QUANTITY = re.compile(
    rf"(?P<q>(?:(?:about|approximately|around|nearly|almost|over|more than|less than|fewer than|up to|at least|"
    rf"at most|some|roughly|only|just)\s+)?)"
    rf"(?P<v>(?:[$£€¥]\s?{_NUM}{_SCALE})|(?:{_NUM}{_SCALE}\s?(?:%|percent\b|per cent\b))"
    rf"|(?:{_NUM}{_SCALE}\s?(?:US\s)?(?:dollars|euros|pounds sterling|yuan|francs|marks|livres|crowns)\b)"
    rf"|(?:{_NUM}{_SCALE}\s?(?P<unit>{_UNITS})(?![\w/]))"
    rf"|(?:(?P<count>{_NUM}{_SCALE}|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|"
    rf"thirty|forty|fifty|hundreds of|thousands of|dozens of)\s+(?P<noun>[a-z][a-z-]{{2,}})))"
    rf"(?P<adj>\s+(?:long|wide|high|deep|tall|old|thick|large|away)\b)?")
_YEAR = re.compile(r"(?P<prep>\b(?i:in|by|since|until|till|before|after|around|circa|c\.|from|during|about)\s+)?"
                   r"(?P<v>(?:the\s+(?:year|early|late|mid|mid-)\s*)?(?<![\d,.])\d{3,4})"
                   r"(?![\d,.]\d|\s*[-–]\s*\d|s\b)")
_DATE = re.compile(rf"(?P<prep>\b(?i:on|in|by|before|after|until|since|from|during)\s+)?"
                   rf"(?P<v>(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?"
                   rf"{_MONTH},?\s+\d{{4}}|{_MONTH}\s+\d{{4}}|\d{{4}}-\d{{2}}-\d{{2}}))(?![\d-])")
_CENTURY = re.compile(rf"(?P<prep>\b(?:in|by|since|until|before|after|from|during|around)\s+)?(?:the\s+)?"
                      rf"(?P<v>(?:(?:early|late|mid|mid-)\s*)?(?:\d{{1,2}}(?:st|nd|rd|th)|{_ORDINAL_WORDS})"
                      rf"(?:\s+(?:and|or|to)\s+(?:\d{{1,2}}(?:st|nd|rd|th)|{_ORDINAL_WORDS}))?"
                      rf"(?:\s|-)(?:centuries|century)(?:\s+(?:BC|AD|BCE|CE))?)", re.IGNORECASE)
_DECADE = re.compile(r"(?P<prep>\b(?i:in|by|since|until|before|after|from|during)\s+)?(?:the\s+)?"
                     r"(?P<v>(?:early\s+|late\s+|mid-)?\d{3}0s)\b")
_TERM = re.compile(r"\b(?P<lead>(?:also\s+)?(?:known|referred to|described|designated|classified) as|called|named|"
                   r"termed|nicknamed|dubbed|titled|entitled)\s+(?P<v>[\"“][^\"”]{2,60}[\"”]|"
                   rf"{_CAPSEQ}|(?:the\s+|a\s+|an\s+)?[a-z][\w-]*(?:\s+[a-z][\w-]*){{0,2}})")
_CAUSE = re.compile(r"\s+(?P<lead>because of|because|due to|owing to|as a result of|thanks to)\s+(?P<v>.{3,})$")
_ACRONYM = re.compile(r"(?P<long>(?:[A-Za-z][\w'-]*\s+){0,8}[A-Za-z][\w'-]*)\s+\((?P<acr>[A-Za-z][A-Za-z0-9-]{1,9})\)")
_CONDITION_START = re.compile(r"^(?P<kw>If|When|Once|Unless|Whenever|In case|In the event that)\s+(?P<cond>.+)$")
_REFERENCE_LIKE = re.compile(r"\d+\s*[;:]\s*\d+|\bpp?\.\s*\d|\bvol\.|\bno\.\s*\d|\bibid\b|\bISBN\b|\bISSN\b", re.I)


@dataclass
class _Span:
    """An answer span in one part of a clause: ``[a, b)`` is what the wh-phrase replaces (the span with the
    preposition or article the phrase absorbs); ``front`` is the fronted phrase (None: stays in place), ``tail``
    a preposition stranded by fronting, ``subj`` the phrase when the span is the whole subject."""

    kind: str
    answer: str
    a: int
    b: int
    wh: str
    front: str | None = None
    tail: str = ""
    subj: str | None = None


@dataclass
class _Clause:
    intro: str
    subject: str      # resolved: a pronoun replaced by its antecedent
    rest: str         # from the verb to the end of the clause
    named: bool       # the subject names something (a capitalised word that is not just sentence-initial)
    topic: bool       # the subject is the document's/previous sentence's subject (do not ask for it)


# ---------------------------------------------------------------------------------------------- entry point
def sentence_pairs(sentence: str, ctx: Context) -> list[SpanPair]:
    """Pairs for one English sentence; updates ``ctx.referent`` with the sentence's named subject."""
    raw = re.sub(r"^(?:And|But|So|Yet|Or)\s+", "", strip_end(sentence))
    if not _usable_sentence(raw):
        return []
    out = [SpanPair("term", q, a, sentence) for q, a in _acronym_pairs(raw)]
    if re.search(r"\b(?:as follows|the following)\b", raw):
        return out  # a list lead: its items are elsewhere
    text = _clean(raw)
    clauses, definitions, condition = _read_clauses(_segments(text), ctx)
    out += [SpanPair("definition", q, a, sentence) for q, a in definitions]
    if condition:
        out.append(SpanPair("condition", condition[0], condition[1], sentence))
    for clause in clauses:
        out += [SpanPair(k, q, a, sentence) for k, q, a in _clause_pairs(clause, ctx)]
        definition = _copula_definition(clause, ctx)
        if definition:
            out.append(SpanPair("definition", definition[0], definition[1], sentence))
    out = [p for p in (_anchor(pair, ctx) for pair in out) if p is not None]
    if clauses:
        first = clauses[0]
        if first.named and _head_is_name(first.subject) and len(first.subject.split()) <= 8:
            ctx.referent = first.subject
        elif not first.topic:
            ctx.referent = None  # "The biggest city on the Rhine …": a following "It" is the title, if anything
        head = _head_word(first.subject).lower()
        ctx.actor = first.subject if head in _PERSON_ACTORS | _THING_ACTORS and not first.named else ""
    return out


def _anchor(pair: SpanPair, ctx: Context) -> SpanPair | None:
    """The pair with a question that names something a corpus can tell apart (a proper name, an acronym),
    else the question framed by the document title ("In Smith v Jones, the defendant appealed to which court?",
    "Regarding the Rhine, …" for a short topic title),
    else None: "The defendant appealed to which court?" could be asked of any judgment."""
    words = re.findall(r"[\w'’-]+", pair.question)
    if any(w[0].isupper() for w in words[1:]) or words and words[0] in ctx.proper_words:
        return pair
    if not ctx.title:
        return None
    title = _title_np(ctx.title, ctx)
    frame = "In" if len(ctx.title.split()) >= 3 or re.search(r"\sv\.?\s", ctx.title) else "Regarding"
    question = f"{frame} {title}, {_mid(pair.question, ctx)}"
    return SpanPair(pair.kind, question, pair.answer, pair.sentence)


def _usable_sentence(raw: str) -> bool:
    words = _WORD_RE.findall(raw)
    if len(words) < 5 or not re.search(r"[a-z]", raw):
        return False
    if _REFERENCE_LIKE.search(raw) or re.search(r"[▪■•|]|https?://|www\.|\bet al\b|\bdoi\b", raw, re.I):
        return False
    visible = [ch for ch in raw if not ch.isspace()]
    if sum(ch.isdigit() or not ch.isalnum() for ch in visible) > 0.3 * len(visible):
        return False
    caps = sum(w[0].isupper() for w in words)
    return not (len(words) >= 6 and caps > 0.6 * len(words))  # a title, a reference or a heading


def _clean(raw: str) -> str:
    text = _PAREN.sub("", raw)
    text = re.sub(r"\s+([,;:])", r"\1", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def _segments(text: str) -> list[str]:
    """Segments at clause punctuation; commas inside name lists are kept."""
    protected = _NAME_LIST.sub(lambda m: m.group(0).replace(",", "\x01"), text)
    parts = [p.replace("\x01", ",").strip(" ,") for p in _SEGMENT_BREAK.split(protected)]
    return [p for p in parts if p]


def _words(text: str) -> list[re.Match]:
    return list(_WORD_RE.finditer(text))


def _is_verbal(word: str) -> bool:
    """A word that belongs to a verb group (an auxiliary, a known verb form, an "-ed" form, an adverb, "not")."""
    lw = word.lower()
    return (lw in _AUX or lw in _VERBS or lw in ("not", "been", "being", "be") or lw in _ADVERBS
            or bool(re.fullmatch(r"[a-z]{3,}ed", lw)) and lw not in _NOT_VERBS or lw.endswith("ly") and len(lw) > 4)


def _verb_index(words: list[re.Match]) -> int | None:
    """Index of the first word that reads as a finite verb (or a participle after an auxiliary)."""
    for i, m in enumerate(words):
        w = m.group(0)
        lw = w.lower()
        prev = words[i - 1].group(0).lower() if i else ""
        nxt = words[i + 1].group(0).lower() if i + 1 < len(words) else ""
        if w[0].isupper() and i > 0:
            continue
        if lw in _AUX:
            return i
        if prev in _DETERMINERS or prev in _PREPOSITIONS or prev.endswith("ing") and len(prev) > 4 or nxt in _AUX:
            continue  # "the armed forces", "denoting notes", "The Albanian forces could"
        info = _VERBS.get(lw)
        if info and info[1] == "3sg" and nxt == "of" and info[0] != "consist":
            continue  # "the upper reaches of", "the forms of": a plural noun
        if info and (info[1] != "3sg" or i > 0 and not prev.isdigit()):
            return i
        if re.fullmatch(r"[a-z]{3,}ed", w) and lw not in _NOT_VERBS:
            return i
    return None


@dataclass
class _Segment:
    text: str        # without leading adverbs and conjunction
    kind: str        # clause (subject + verb), vp (verb first), np, pp (prepositional/participial), rel, sub
    conj: bool       # it started with "and"/"but"/…
    words: list[re.Match]
    verb: int | None


def _classify(seg: str) -> _Segment:
    core = seg
    conj = False
    while True:
        m = re.match(r"^(?P<w>[A-Za-z]+)\s+(?P<rest>.+)$", core)
        if not m:
            break
        w = m.group("w").lower()
        if w in ("and", "but", "or", "yet", "nor", "so", "then"):
            conj = True
        elif not (w in _ADVERBS or w.endswith("ly") and len(w) > 4 and w not in ("early", "only", "family", "italy")):
            break
        core = m.group("rest")
    words = _words(core)
    first = words[0].group(0).lower() if words else ""
    second = words[1].group(0).lower() if len(words) > 1 else ""
    vi = _verb_index(words)
    if first in ("who", "which", "whom", "whose", "where", "when") or first in _PREPOSITIONS and second in (
            "which", "whom", "whose"):
        kind = "rel"
    elif first in _SUBORDINATORS - {"after", "before", "since", "until", "as"} and vi is not None:
        kind = "sub"
    elif first in ("after", "before", "since", "until", "as") and vi is not None and vi > 1:
        kind = "sub"
    elif vi is None:
        kind = "pp" if first in _PREPOSITIONS or first.endswith("ing") or first in ("according", "despite") \
            else "np"
    elif vi == 0:
        kind = "vp"
    elif first in ("a", "an") and (words[vi].group(0).endswith("ed")
                                   or _VERBS.get(words[vi].group(0).lower(), ("", ""))[1] in ("pp", "past/pp")):
        kind = "np"  # "a scale introduced in 1939": a reduced relative, not a clause
    elif first.endswith("ing") and first not in ("king", "ring", "thing", "spring", "wing") and not words[0].group(
            0)[0].isupper() or first in ("having", "being") or words[0].group(0).endswith("ing") and vi > 0:
        kind = "pp"  # "Having spent time at the court of Henry I, …", "initiating a style known as …"
    else:
        kind = "clause"
    return _Segment(core, kind, conj, words, vi)


@dataclass
class _ClauseReading:
    """What ``_read_clauses`` has read of a sentence's segments so far."""

    clauses: list[_Clause] = field(default_factory=list)
    definitions: list[tuple[str, str]] = field(default_factory=list)
    intro: list[str] = field(default_factory=list)
    pending_np: str = ""            # a subject waiting for its verb ("Normandy, a region in France, was …")
    sentence_subject: str = ""

    def intro_text(self) -> str:
        """The leading phrases, for the first clause only."""
        return ", ".join(self.intro) if not self.clauses else ""


def _read_clauses(segments: list[str], ctx: Context
                  ) -> tuple[list[_Clause], list[tuple[str, str]], tuple[str, str] | None]:
    """A sentence's segments read as (main clauses, definitions from its appositives, the pair of a leading
    condition or None)."""
    r = _ClauseReading()
    condition: tuple[str, str] | None = None
    past = any(re.search(r"\b(?:was|were|had|did)\b|\b[a-z]{3,}ed\b", s) for s in segments)
    classified = [_classify(s) for s in segments]
    for i, seg in enumerate(classified):
        raw = segments[i]
        if not seg.words:
            continue
        prev = classified[i - 1] if i else None
        prev_name = _last_name(segments[i - 1]) if i and prev.kind != "pp" else ""
        if i == 0 and len(segments) > 1:
            m = _CONDITION_START.match(raw)
            if m:
                condition = _condition_pair(m, segments[1], ctx)
                continue
        if seg.kind == "rel":
            _read_relative(r, seg, prev_name, segments[i - 1] if i else "", ctx)
        elif seg.kind == "pp":
            _read_phrase(r, seg)
        elif seg.kind == "np":
            _read_noun_phrase(r, seg, prev_name, classified[i + 1] if i + 1 < len(classified) else None, past, ctx)
        elif seg.kind != "sub":
            _read_main(r, seg, ctx)
    return r.clauses, r.definitions, condition


def _read_relative(r: _ClauseReading, seg: _Segment, prev_name: str, prev_text: str, ctx: Context) -> None:
    """", who …" / ", which …" right after a name: a clause about that name."""
    first = seg.words[0].group(0).lower()
    body = seg.text[seg.words[1].start():] if len(seg.words) > 1 else ""
    bwords = _words(body)
    if first in ("who", "which") and prev_name and bwords and _verb_index(bwords) == 0:
        name = f"the {prev_name}" if re.search(rf"\bthe\s+{re.escape(prev_name)}$", prev_text) else prev_name
        r.clauses.append(_Clause("", name, _cut_relative(body), True, _is_topic(prev_name, ctx)))


def _read_phrase(r: _ClauseReading, seg: _Segment) -> None:
    """A participle or prepositional phrase: an intro before the first clause, or a short tail of the last one."""
    if not r.clauses and not r.pending_np:
        r.intro.append(seg.text)
    elif r.clauses and not r.pending_np and len(seg.words) <= 6 and seg.words[0].group(0).lower() in _PREPOSITIONS:
        last = r.clauses[-1]
        r.clauses[-1] = _Clause(last.intro, last.subject, f"{last.rest}, {seg.text}", last.named, last.topic)


def _read_noun_phrase(r: _ClauseReading, seg: _Segment, prev_name: str, nxt: _Segment | None, past: bool,
                      ctx: Context) -> None:
    """A noun phrase: an appositive (a definition), or the subject of a verb phrase still to come."""
    appositive = not seg.conj and _appositive(seg.text, prev_name, nxt)
    if appositive:
        r.definitions.append(_appositive_pair(prev_name, seg.text, past, ctx))
        return
    if (prev_name or r.pending_np and _CAPSEQ_FULL.fullmatch(seg.text)) and len(seg.words) <= 4 and not seg.conj:
        if r.pending_np and not prev_name and ctx.title and _head_word(r.pending_np).lower() in _PERSON_ACTORS \
                and _is_person_name(seg.text):
            # "The claimant, Mr John Smith, …" → "Who was the claimant in Smith v Jones?"
            r.definitions.append((f"Who {'was' if past else 'is'} {_mid(r.pending_np, ctx)} in {ctx.title}?",
                                  seg.text))
        return  # "Bohemond, Robert's son, …", "their duke, William the Conqueror, …": appositives
    r.pending_np = seg.text


def _read_main(r: _ClauseReading, seg: _Segment, ctx: Context) -> None:
    """A verb phrase (after a pending subject, or sharing the last clause's subject) or a clause of its own."""
    if seg.kind == "vp":
        if r.pending_np:
            clause = _main_clause(f"{r.pending_np} {seg.text}", ctx, sentence_subject=r.sentence_subject,
                                  intro=r.intro_text())
            r.pending_np = ""
        elif seg.conj and r.clauses:
            clause = _Clause("", r.clauses[-1].subject, _cut_relative(seg.text), r.clauses[-1].named,
                             r.clauses[-1].topic)
        else:
            clause = None
    else:  # a clause with its own subject
        clause = _main_clause(seg.text, ctx, intro=r.intro_text(), sentence_subject=r.sentence_subject)
        r.pending_np = ""
    if clause:
        r.clauses.append(clause)
        r.sentence_subject = r.sentence_subject or clause.subject


_RELATIVE_CUT = re.compile(r"\s+(?:who|which|whom|whose)\b|\s+that\s+(?=(?:is|are|was|were|has|have|had|can|could|"
                           r"will|would|[a-z]+ed|[a-z]+s)\b)"
                           r"|\s+(?:where|when)\s+(?=(?:the|a|an|it|they|he|she|[A-Z])\b)")


def _cut_relative(rest: str) -> str:
    """A clause's rest without a relative clause it runs into ("a river that begins in …" → "a river") or a
    second clause joined by "and" ("had developed and the choir achieved fame …" → "had developed")."""
    m = _RELATIVE_CUT.search(rest)
    rest = rest[: m.start()] if m else rest
    for m in re.finditer(r"\s+(?:and|but)\s+(?=(?:the|a|an|its|his|her|their|this|these|it|they|he|she"
                         r"|[A-Z][\w'’-]*)\s)", rest):
        tail = _words(rest[m.end():])
        vi = _verb_index(tail)
        if vi is not None and 1 <= vi <= 3 and not any(w.group(0).lower() in _PREPOSITIONS for w in tail[:vi]):
            return rest[: m.start()]
    return rest


_INTRO_IN_SUBJECT = re.compile(
    r"^(?P<intro>(?:in|on|at|by|during|after|before|since|from|until|around)\s+(?:the\s+)?(?:(?:early|late|mid|"
    r"first|second|half|of|the|summer|winter|spring|autumn|year|years|[a-z]+)\s+){0,3}?(?:\d{3,4}s?|\d{1,2}"
    r"(?:st|nd|rd|th)\s+centur(?:y|ies)))\s+(?P<subj>(?:the\s+|a\s+|an\s+)?[A-Za-z].*)$", re.IGNORECASE)
_INDEFINITE = {"something", "anything", "nothing", "everything", "someone", "anyone", "everyone", "nobody",
               "somebody", "everybody", "none", "another", "others", "one", "we", "i", "you", "us", "both", "either",
               "neither", "each", "most", "all", "many", "several", "some", "which", "what", "who", "where", "few"}


def _main_clause(seg: str, ctx: Context, *, intro: str = "", sentence_subject: str = "") -> _Clause | None:
    words = _words(seg)
    vi = _verb_index(words)
    if vi is None or vi == 0:
        return None
    subj_words = words[:vi]
    # Adverbs between subject and verb belong to the verb phrase ("The Normans initially settled").
    while len(subj_words) > 1 and (subj_words[-1].group(0).lower() in _ADVERBS
                                   or subj_words[-1].group(0).endswith("ly") and subj_words[-1].group(0).islower()):
        subj_words = subj_words[:-1]
    subject = seg[: subj_words[-1].end()].strip()
    rest = _cut_relative(seg[subj_words[-1].end():].strip())
    first = subj_words[0].group(0).lower()
    if first in _PREPOSITIONS:
        # "In 1066 William invaded England", "by 1066 Normandy had been …": the intro ends after the time.
        m = _INTRO_IN_SUBJECT.match(subject)
        if not m:
            return None
        intro, subject = (f"{intro}, " if intro else "") + m.group("intro"), m.group("subj")
    lwords = [w.lower() for w in re.findall(r"[\w'’-]+", subject)]
    if subject[:1].isdigit() or re.match(r"^(?:it|this)\s+(?:is|was)\b.*\bthat\b", f"{subject} {rest}", re.I):
        return None  # "30 km downstream of Duisburg is located …", "It is along the Lower Rhine that …"
    if len(lwords) > 10 or not lwords or set(lwords) & {"which", "who", "that", "whom", "whose"} \
            or lwords[0] in _INDEFINITE or lwords[0].endswith("ing") and lwords[0] != "king" \
            or " and " in f" {subject.lower()} " and not _is_named(subject, ctx):
        return None
    resolved, topic = _resolve(subject, ctx, sentence_subject)
    if not resolved:
        return None
    return _Clause(intro, resolved, rest, _is_named(resolved, ctx), topic)


def _is_plural(np: str) -> bool:
    head = _head_word(np)
    return " and " in np or head.endswith("s") and not head.endswith(("ss", "us", "is")) or head.lower() in (
        "people", "clergy", "police", "children", "men", "women")


def _head_word(np: str) -> str:
    """The head of a noun phrase: the word before its first preposition ("the zeal of the Normans" → zeal,
    "The biggest city on the river Rhine" → city) or its last word."""
    words = re.findall(r"[\w'’-]+", np)
    for i, w in enumerate(words):
        if i > 0 and w.lower() in _PREPOSITIONS:
            words = words[:i]
            break
    return words[-1] if words else ""


def _head_is_name(np: str) -> bool:
    head = _head_word(np)
    return bool(head) and head[0].isupper()


def _is_topic(np: str, ctx: Context) -> bool:
    def bare(s: str) -> str:
        return re.sub(r"^the\s+", "", s.strip(), flags=re.IGNORECASE).casefold()

    return bare(np) in {bare(t) for t in (ctx.title, ctx.referent or "") if t}


def _resolve(subject: str, ctx: Context, sentence_subject: str) -> tuple[str, bool]:
    """The subject with a pronoun replaced by its antecedent, and whether it is the topic; ("", _) to skip."""
    words = subject.split()
    first = words[0].lower()
    antecedent = sentence_subject or _title_np(ctx.antecedent(), ctx)
    if first in _PRONOUNS and not sentence_subject and ctx.actor and (first == "they") == _is_plural(ctx.actor) \
            and (first in ("he", "she")) == (_head_word(ctx.actor).lower() in _PERSON_ACTORS):
        antecedent = ctx.actor  # "The court found … It awarded …"
    if first in _PRONOUNS:
        tail = " ".join(words[1:])
        if tail and not all(w.lower() in _ADVERBS or w.lower() in _PREPOSITIONS or w.lower() == "turn"
                            for w in words[1:]):
            return "", False
        if not antecedent or (first == "they") != _is_plural(antecedent) and first != "he" and first != "she":
            # a number mismatch ("They" after "The zeal of the Normans"): try the title, else skip
            antecedent = _title_np(ctx.title, ctx) if ctx.title and (first == "they") == _is_plural(ctx.title) else ""
        if not antecedent:
            return "", False
        return (f"{antecedent} {tail}".strip() if tail else antecedent), True
    if first in _POSSESSIVES and len(words) > 1:
        if not antecedent:
            return "", False
        return f"the {' '.join(words[1:])} of {_mid(antecedent, ctx)}", False
    if first in ("this", "these", "that", "those", "such"):
        if len(words) >= 2 and words[1].lower() in _DOC_NOUNS and ctx.title:
            return ctx.title, True
        return "", False
    return subject, _is_topic(subject, ctx)


def _title_np(name: str, ctx: Context) -> str:
    """A title as the text writes it inside a sentence: "Rhine" → "the Rhine" when the text says "the Rhine"."""
    if name and name == ctx.title and not name.lower().startswith("the ") \
            and re.search(rf"\bthe\s+{re.escape(name)}\b", ctx.text, re.IGNORECASE):
        return f"the {name}"
    return name


def _is_named(subject: str, ctx: Context) -> bool:
    for i, w in enumerate(subject.split()):
        clean = w.strip("\"“”'’,")
        if not clean or not clean[0].isupper():
            continue
        if i == 0 and (clean in _STOP_CAPS or clean.lower() in ctx.lowercase_words and clean not in ctx.proper_words):
            continue
        return True
    return False


def _mid(phrase: str, ctx: Context) -> str:
    """A phrase as it reads inside a question: "The Normans" → "the Normans", "Earlier settlers" → "earlier …"."""
    first, _, rest = phrase.partition(" ")
    lower = first.lower()
    if first in _STOP_CAPS or first[:1].isupper() and not first.isupper() and first not in ctx.proper_words and (
            lower in ctx.lowercase_words or lower in _FUNCTION or lower in _ADVERBS or lower in _PERSON_ACTORS
            or lower in _THING_ACTORS
            or re.fullmatch(r"[a-z]+(?:er|est|ly|ing|ed)", lower) and not rest[:1].isupper()):
        first = lower
    return f"{first} {rest}".strip()


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


_DANGLING = {"and", "or", "but", "the", "a", "an", "of", "which", "who", "that", "whose", "its", "their", "his",
             "her", "as", "than"}


def _question(text: str) -> str | None:
    text = re.sub(r"\s{2,}", " ", text).strip(" ,;:")
    text = re.sub(r"\s+([,;:])", r"\1", text)
    words = re.findall(r"[\w'’-]+", text)
    if not words or words[-1].lower() in _DANGLING:
        return None
    if not any(w.lower() in _AUX or w.lower() in _VERBS or re.fullmatch(r"[a-z]{3,}ed", w) for w in words):
        return None  # no verb: a fragment ("The upper reaches of what?")
    return _cap(text) + "?"


# ---------------------------------------------------------------------------------------------- clause questions
_POST_CUT = re.compile(r",\s|\s+(?:and|but|while|whereas|which|who|whose|whom|after|before|although|because|"
                       r"including|as well as|so that|until|thereby|making|leading|resulting)\s")
_ADVERBIAL_FRONTS = re.compile(r"^(?:When|Where|In what year|Around what year|In which (?:century|centuries|decade)|"
                               r"Until when|Since when|By what year|Before what year|After what year|On what date|"
                               r"How (?:long|wide|high|deep|tall|old|thick|large|far away))\b")


def _clause_pairs(clause: _Clause, ctx: Context) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    subject = clause.subject
    rest = clause.rest
    verb_m = _WORD_RE.match(rest)
    if not verb_m or len(_words(rest)) < 2:
        return out
    verb = verb_m.group(0)
    intro = clause.intro
    short_intro = f"{_cap(intro)}, " if intro and len(intro.split()) <= 6 else ""
    for span in _spans(rest, ctx):
        if span.a < verb_m.end():
            continue
        pre, post = rest[: span.a].strip(), rest[span.b:].strip()
        question = None
        middle = rest[verb_m.end(): span.a].strip()
        if not post and span.front and _frontable(span, middle):
            question = _fronted(span, verb, subject, middle, ctx, short_intro)
        if question is None:
            cut = _POST_CUT.search(" " + post + " ") if post else None
            post = post[: max(0, cut.start() - 1)].strip() if cut else post
            lead = f"{short_intro}{_mid(subject, ctx)}" if short_intro else subject
            question = _question(f"{lead} {pre} {span.wh} {post}")
        if question:
            out.append((span.kind, question, span.answer))
    if not clause.topic and not _is_topic(subject, ctx):
        for span in _spans(subject, ctx):
            if span.subj and span.a == 0 and span.b == len(subject) and len(_words(rest)) >= 3:
                cut = _POST_CUT.search(" " + rest + " ")
                body = rest[: max(0, cut.start() - 1)].strip() if cut and cut.start() > 1 else rest
                lead = f"{short_intro}{span.subj.lower()}" if short_intro else span.subj
                question = _question(f"{lead} {body}")
                if question:
                    out.append((span.kind, question, span.answer))
    if intro:
        for span in _spans(intro, ctx):
            question = None
            if span.front and span.a == 0 and span.b == len(intro) and _ADVERBIAL_FRONTS.match(span.front):
                question = _fronted(span, verb, subject, rest[verb_m.end():].strip(), ctx, "")
            if question is None:
                replaced = f"{intro[: span.a]}{span.wh}{intro[span.b:]}"
                question = _question(f"{subject} {rest} {_mid(replaced, ctx)}")
            if question:
                out.append((span.kind, question, span.answer))
    cause = _CAUSE.search(" " + rest)
    if cause and len(cause.group("v").split()) <= MAX_A_WORDS:
        start = max(cause.start() - 1, verb_m.end())
        middle = rest[verb_m.end(): start].strip()
        question = _fronted(_Span("cause", cause.group("v"), start, len(rest), "", front="Why"),
                            verb, subject, middle, ctx, short_intro)
        if question:
            out.append(("cause", question, cause.group("v")))
    return out


def _frontable(span: _Span, middle: str) -> bool:
    """Fronting is safe when the span hangs on the verb: an adverbial of time/place/measure, or a span right
    after the verb group (not after a noun it modifies: "the Byzantine general Alexius" stays in place)."""
    if span.front and span.front.startswith("Of "):
        return False
    words = re.findall(r"[\w'’-]+", middle)
    if re.search(r"\b(?:and|or|but)\s+[a-z]+(?:s|ed)\b", middle) and any(
            _VERBS.get(w.lower()) for w in words[words.index("and") + 1:] if "and" in words):
        return False  # "flows through X and redistributes into Y": a second verb phrase
    if words and words[-1].lower() in _ADVERBS | {"fully", "up", "down", "out", "off"}:
        return False  # "Where was the Rhine fully?"
    if _ADVERBIAL_FRONTS.match(span.front or "") and span.kind != "number":
        return len(words) <= 8
    if not words:
        return True
    last = words[-1]
    if span.kind == "number":
        return all(_is_verbal(w) for w in words)
    return _is_verbal(last) and len(words) <= 6


def _fronted(span: _Span, verb: str, subject: str, middle: str, ctx: Context, intro: str) -> str | None:
    """The question with the span fronted: "<Wh> <aux> <subject> <middle>?" or do-support with a known verb
    ("In what year did William invade England?"); None when neither fits."""
    lverb = verb.lower()
    subj = _mid(subject, ctx)
    front = span.front.lower() if intro and not span.front.startswith(("I ",)) else span.front
    words = middle.split()
    if lverb in ("has", "have", "had") and not (words and (_VERBS.get(words[0].lower(), ("", ""))[1] in (
            "pp", "past/pp") or words[0].lower() in ("been", "not") or re.fullmatch(r"[a-z]+ed", words[0]))):
        do = "did" if lverb == "had" else ("does" if lverb == "has" else "do")
        body = f"{front} {do} {subj} have {middle}"
    elif lverb in _AUX:
        body = f"{front} {lverb} {subj} {middle}"
    else:
        info = _VERBS.get(lverb)
        if not info or info[1] == "pp":
            return None
        base, form = info
        do = "did" if form.startswith("past") else ("does" if form == "3sg" else "do")
        body = f"{front} {do} {subj} {base} {middle}"
    return _question(f"{intro}{body} {span.tail}")


# ---------------------------------------------------------------------------------------------- spans
def _prev_word(text: str, pos: int) -> tuple[str, int]:
    """The word ending right before ``pos`` (lower-cased) and its start (or ("", pos))."""
    m = re.search(r"([A-Za-z][\w'’.-]*)\s+$", text[:pos])
    return (m.group(1).lower(), m.start(1)) if m else ("", pos)


def _next_word(text: str, pos: int) -> str:
    m = re.match(r"\s*([\w'’-]+)", text[pos:])
    return m.group(1) if m else ""


def _spans(text: str, ctx: Context) -> list[_Span]:
    """Non-overlapping answer spans of one clause part, dates/numbers before names, in reading order."""
    found: list[_Span] = []
    for extract in (_date_spans, _quantity_spans, _term_spans, _name_spans):
        for span in extract(text, ctx):
            if all(span.b <= f.a or span.a >= f.b for f in found):
                found.append(span)
    return sorted(found, key=lambda s: s.a)


def _with_prep(text: str, start: int) -> tuple[str, int]:
    """The preposition right before ``start`` (after an optional "the") and where the absorbed region starts."""
    word, pos = _prev_word(text, start)
    if word == "the":
        word2, pos2 = _prev_word(text, pos)
        if word2 in _PREPOSITIONS:
            return word2, pos2
        return "", pos
    if word in _PREPOSITIONS:
        return word, pos
    return "", start


def _date_spans(text: str, ctx: Context) -> list[_Span]:
    out: list[_Span] = []
    taken: list[tuple[int, int]] = []

    def add(span: _Span) -> None:
        if all(span.b <= a or span.a >= b for a, b in taken):
            taken.append((span.a, span.b))
            out.append(span)

    for m in _DATE.finditer(text):
        prep = (m.group("prep") or "").strip().lower()
        a = m.start("prep") if m.group("prep") else m.start("v")
        if prep in ("on", "in", ""):
            wh, front = ("when", "When") if prep else ("what date", None)
        else:
            wh, front = f"{prep} what date", f"{_cap(prep)} what date"
        add(_Span("date", m.group("v"), a, m.end("v"), wh, front))
    for m in _CENTURY.finditer(text):
        prep = (m.group("prep") or "").strip().lower()
        a = m.start("prep") if m.group("prep") else m.start()
        plural = "centuries" in m.group("v").lower()
        noun = "centuries" if plural else "century"
        wh = f"{prep} which {noun}".strip()
        add(_Span("year", m.group("v"), a, m.end("v"), wh, _cap(wh) if prep else None))
    for m in _DECADE.finditer(text):
        prep = (m.group("prep") or "").strip().lower()
        a = m.start("prep") if m.group("prep") else m.start()
        wh = f"{prep} which decade".strip()
        add(_Span("year", m.group("v"), a, m.end("v"), wh, _cap(wh) if prep else None))
    for m in _YEAR.finditer(text):
        prep = (m.group("prep") or "").strip().lower()
        digits = re.search(r"\d{3,4}", m.group("v")).group(0)
        year = int(digits)
        nxt = _next_word(text, m.end("v"))
        if not prep or not 500 <= year <= 2100:
            continue
        if nxt and nxt[0].islower() and nxt.lower() not in _FUNCTION and _VERBS.get(nxt.lower()) is None \
                and not nxt.endswith("ed"):
            continue  # "in 2000 patients": a count, not a year
        if prep == "from" and re.match(r"\s*(?:to|until|–|-)\s*\d", text[m.end("v"):]):
            continue  # a range
        a = m.start("prep")
        if prep == "in":
            wh, front = "in what year", "In what year"
        elif prep in ("during",):
            wh, front = "in what year", "In what year"
        elif prep in ("c.", "circa", "around", "about"):
            wh, front = "around what year", "Around what year"
        else:
            wh, front = f"{prep} what year", f"{_cap(prep)} what year"
        add(_Span("year", m.group("v").replace("the year ", "").strip(), a, m.end("v"), wh, front))
    return out


def _quantity_spans(text: str, ctx: Context) -> list[_Span]:
    out: list[_Span] = []
    for m in _QUANTITY.finditer(text):
        value = m.group("v")
        if re.search(r"\d{4}", value) and not re.search(r"[$£€¥%,.]|\d{5}", value) and m.group("noun"):
            year = int(re.search(r"\d{4}", value).group(0))
            if 1000 <= year <= 2100:
                continue  # "1066 saw …"
        before = text[max(0, m.start() - 12): m.start()]
        if re.search(r"[=<>±≤≥]\s*$|\b(?:CI|OR|HR|RR|p|n|no|No|vol|page|pp)\.?\s*$", before):
            continue
        after = text[m.end(): m.end() + 3]
        if re.match(r"\s*[-–]\s*\d", after) or re.match(r"\s*[-–]", text[m.end("v"):]):
            continue  # a range "2.47–2.86": ask about it whole or not at all
        qualifier = m.group("q") or ""
        answer = (qualifier + value).strip()
        a, b = m.start(), m.end("v")
        adj = (m.group("adj") or "").strip()
        if adj:
            b = m.end("adj")
        noun = m.group("noun")
        label, _ = _prev_word(text, m.start())
        if (noun or not m.group("unit")) and label and label not in _FUNCTION and not _is_verbal(label) \
                and not re.search(r"[$£€¥%]|percent", value) and label not in ("least", "most", "than", "about"):
            continue  # "type 2 diabetes", "phase 3", "Article 12": a label, not a quantity
        if noun:
            if noun in _FUNCTION or noun in _VERBS or noun.endswith(("ly", "ed", "ing")) and noun not in ("offspring",):
                continue
            count = m.group("count")
            if count and count.isdigit() and len(count) == 1 and noun in ("times",):
                pass
            wh = f"how many {noun}"
        elif re.search(r"%|percent|per cent", value):
            wh = "what percentage"
        elif re.search(r"[$£€¥]|dollars|euros|pounds|yuan|francs|marks|livres|crowns", value):
            wh = "how much"
        else:
            unit = m.group("unit") or ""
            wh = f"how {adj}" if adj and adj != "away" else f"how many {unit}"
            if adj == "away":
                wh = "how far away"
        if adj and noun:
            continue
        out.append(_Span("number", answer, a, b, wh, _cap(wh)))
    return out


def _term_spans(text: str, ctx: Context) -> list[_Span]:
    out: list[_Span] = []
    for m in _TERM.finditer(text):
        value = m.group("v").strip()
        words = value.split()
        if not words or words[-1].lower() in _FUNCTION or words[0].lower() in _FUNCTION | {"them", "him", "her",
                                                                                          "us", "me"} \
                or len(words) > 6:
            continue
        nxt = _next_word(text, m.end("v"))
        if nxt and nxt[0].islower() and nxt.lower() not in _FUNCTION and not _is_verbal(nxt):
            continue  # "known as Norman-Arab architecture": the name modifies a noun
        if value[0] not in "\"“" and not value[0].isupper():
            # a lower-case phrase must end the clause ("is called a gyre"), or it is only the start of one
            if text[m.end("v"):].strip():
                continue
        answer = value.strip("\"“”")
        out.append(_Span("term", answer, m.start("v"), m.end("v"), "what", "What"))
    return out


def _name_spans(text: str, ctx: Context) -> list[_Span]:
    out: list[_Span] = []
    spans = []
    for m in _CAPSEQ_RE.finditer(text):
        start, value = m.start(), m.group(0)
        while True:
            first, _, tail = value.partition(" ")
            if first.rstrip(".") in _STOP_CAPS or first in _MONTHS:
                if not tail:
                    value = ""
                    break
                start += len(first) + 1
                value = tail
                continue
            break
        value = re.sub(r"\s+(?:of|de|du|des|la|le|von|van|der|den|da|di|del|y|the)$", "", value)
        lead = re.match(r"^(?:(?:the|of|and)\s+)+", value)
        if lead:
            start += lead.end()
            value = value[lead.end():]
        if not value:
            continue
        spans.append((start, start + len(value), value))
    # Merge a comma/and list of names into one span: "Denmark, Iceland and Norway".
    merged: list[tuple[int, int, str]] = []
    for s in spans:
        if merged and re.fullmatch(r",\s+|,?\s+(?:and|or)\s+", text[merged[-1][1]: s[0]]):
            merged[-1] = (merged[-1][0], s[1], text[merged[-1][0]: s[1]])
        else:
            merged.append(s)
    for start, end, value in merged:
        if "," in value and not re.search(r"\s(?:and|or)\s", value):
            for piece in value.split(", "):  # a comma pair without "and" is two names, not a list
                pos = text.find(piece, start)
                out += _typed_name(text, pos, pos + len(piece), piece, ctx)
            continue
        out += _typed_name(text, start, end, value, ctx)
    return out


def _typed_name(text: str, start: int, end: int, value: str, ctx: Context) -> list[_Span]:
    items = [i for i in re.split(r",\s+(?:and\s+|or\s+)?|\s+(?:and|or)\s+", value) if i]
    words = items[0].split() if len(items) > 1 else value.split()
    nxt = _next_word(text, end)
    rest_after = text[end:]
    possessive = bool(re.match(r"['’]s?\b", rest_after))
    if _not_a_name(start, value, words, nxt, possessive, ctx):
        return []
    prep, absorb = _with_prep(text, start)
    prev, prev_pos = _prev_word(text, start)
    before = re.search(r"([A-Z][\w'’-]*)\s+(?:in|of|for)\s+(?:the\s+)?$", text[:start])
    if before and before.group(1) in _EVENT_HEADS | _ORG_HEADS | _PERSON_TITLES | {"Medal", "Doctor", "Master",
                                                                                  "Bachelor", "Chair", "Degree"}:
        return []  # "the Nobel Prize in Physics", "the Ministry of Health": the rest of a longer name
    kind = _name_kind(words, value, prev, prep, nxt, text, start)
    if prev and prev not in _FUNCTION and not _is_verbal(prev) and prev not in _ROLE_NOUNS and not prep:
        return []  # inside a noun phrase: "the successful Siege of Antioch", "the Byzantine general Alexius"
    if re.search(r"\bwhether\s", text[:start]):
        return []
    if kind is None:
        return []
    has_the = prev == "the"
    a = prev_pos if has_the else start
    if possessive:
        if kind not in ("person", "org"):
            return []
        b = end + len(re.match(r"['’]s?", rest_after).group(0))
        return [_Span(kind, value, a, b, "whose", None)]
    return _name_span(kind, value, words, prep, absorb, a, end, has_the)


def _not_a_name(start: int, value: str, words: list[str], nxt: str, possessive: bool, ctx: Context) -> bool:
    """Whether the capitalised ``value`` (its ``words``; ``nxt`` the word after it) is no name to ask about."""
    if all(w in _MONTHS or w in _DIRECTIONS for w in words) or _is_topic(value, ctx):
        return True  # months, directions, and the document's own subject (asking for it teaches nothing)
    at_sentence_start = start == 0
    if at_sentence_start and len(words) == 1 and value.lower() in ctx.lowercase_words:
        return True
    if (value in _LANGUAGES or any(w in _LANGUAGES for w in words[-1:])) and not any(
            w in _PLACE_HEADS | _ORG_HEADS for w in words) or len(words) == 1 and re.search(r"(?:ity|ism)$", value):
        return True
    if len(words) == 1 and len(value) <= 1:
        return True
    # a modifier: "Norse raiders", "the Norman language"
    return bool(nxt) and not possessive and nxt[0].islower() and nxt.lower() not in _FUNCTION \
        and nxt.lower() not in _VERBS and not re.fullmatch(r"[a-z]+ed", nxt) and not nxt.lower().endswith("ly")


def _name_span(kind: str, value: str, words: list[str], prep: str, absorb: int, a: int, end: int,
               has_the: bool) -> list[_Span]:
    """The span of a typed name with the wh-phrase that asks for it (after ``prep``, "" if none): the span runs
    from ``absorb`` (the preposition included) or ``a`` (a "the" included) to ``end``."""
    head = _head(words, kind)
    if kind == "person":
        if prep:
            return [_Span(kind, value, absorb, end, f"{prep} whom", f"{_cap(prep)} whom", subj="Who")]
        return [_Span(kind, value, a, end, "who", "Who", subj="Who")]
    if kind == "place":
        if prep in _LOCATIVE:
            return [_Span(kind, value, absorb, end, "where", "Where")]
        if prep == "from":
            return [_Span(kind, value, absorb, end, "from where", "Where", tail="from")]
        if prep in ("to", "into", "towards", "toward"):
            wh = f"which {head.lower()}" if head else "where"
            return [_Span(kind, value, absorb if not head else a, end, wh if head else "where",
                          _cap(f"{prep} {wh}") if head else "Where")]
        wh = f"which {head.lower()}" if head else "which place"
        front = _cap(f"{prep} {wh}" if prep else wh)
        return [_Span(kind, value, absorb if prep else a, end, f"{prep} {wh}".strip(), front,
                      subj=_cap(wh) if head else None)]
    if kind in ("org", "event"):
        wh = f"which {head.lower()}" if head else "which organisation"
        front = _cap(f"{prep} {wh}" if prep else wh)
        return [_Span("org" if kind == "org" else "name", value, absorb if prep else a, end,
                      f"{prep} {wh}".strip(), front, subj=_cap(wh))]
    # An untyped name: only where "what" fits (after a preposition or a verb, multiword or "the X").
    if prep and (len(words) > 1 or has_the):
        return [_Span("name", value, absorb, end, f"{prep} what", f"{_cap(prep)} what")]
    return []


def _head(words: list[str], kind: str) -> str:
    heads = {"org": _ORG_HEADS, "place": _PLACE_HEADS, "event": _EVENT_HEADS}.get(kind, set())
    for w in words:
        if w in heads:
            return w
    if kind == "event" and re.search(r"cene$", words[-1]):
        return "epoch"
    return ""


def _name_kind(words: list[str], value: str, prev: str, prep: str, nxt: str, text: str, start: int) -> str | None:
    if any(w in _ORG_HEADS for w in words) or (value.isupper() and 2 <= len(value) <= 6 and prev == "the"):
        return "org"
    if any(w in _EVENT_HEADS for w in words):
        return "event"
    if any(w in _PLACE_HEADS | _PLACE_WORDS for w in words) and not words[0] in _PERSON_TITLES:
        return "place"
    if re.search(r"cene$", value):
        return "event"  # "the Pleistocene", "the Miocene": geological epochs
    if words[0].rstrip(".") in ("Saint", "St") and prep in _LOCATIVE:
        return "place"
    if words[0].rstrip(".") in _PERSON_TITLES and len(words) > 1:
        return "person" if words[1] != "of" else None  # "King of the Canary Islands" is a title, not a person
    if len(words) == 2 and re.fullmatch(r"[IVX]{1,5}", words[-1]):
        return "person"  # "Roger II", "Charles III"
    if len(words) >= 3 and any(w in ("de", "van", "von", "da", "di", "del", "du", "der") for w in words):
        return "person"  # "Guy de Lusignan", "Enrique Pérez de Guzmán"
    if prev in _ROLE_NOUNS or nxt.lower() in _PERSON_VERBS and nxt.lower() not in ("was", "is", "had", "has"):
        return "person"
    if re.search(r"\b(?:was|is)\s+born\b", text[start:start + len(value) + 12]):
        return "person"
    if prev == "the" and len(words) == 1 and re.search(r"(?:ans|ians|ks|ngs|ons|ths|ts|ars|ines|ers|ites|ds)$",
                                                       value) and value not in _PLURAL_PLACES:
        return "person"  # a people: "the Normans", "the Franks"
    if prep in _LOCATIVE | {"from", "into", "across", "through", "near", "via", "towards"} and len(words) <= 3 \
            and not value.isupper():
        return "place"
    if prep in ("to", "by", "like", "unlike", "with", "for", "as"):
        return None  # "to Herodotus", "by the Alter Rhein": a person or a place, it cannot be told
    return "name"


def _is_person_name(value: str) -> bool:
    words = value.split()
    return len(words) >= 2 and (words[0].rstrip(".") in _PERSON_TITLES or all(w[0].isupper() for w in words)) \
        and not any(w in _ORG_HEADS | _PLACE_HEADS | _EVENT_HEADS for w in words)


def _last_name(segment: str) -> str:
    """The capitalised name that ends ``segment`` ("…, their leader Rollo" → "Rollo"), or ""."""
    m = re.search(rf"({_CAPSEQ})$", segment)
    if not m:
        return ""
    name = m.group(1)
    first = name.split()[0]
    if first in _STOP_CAPS:
        name = " ".join(name.split()[1:])
    return name if name and name.split()[0] not in _STOP_CAPS else ""


# ---------------------------------------------------------------------------------------------- definitions
def _appositive(seg: str, name: str, following: "_Segment | None") -> bool:
    """Whether ``seg`` is an appositive of the name ending the segment before it ("Normandy, a region in France")."""
    if not name or not re.match(r"^(?:a|an|the|one of the)\s+[a-z]", seg):
        return False
    words = _words(seg)
    if len(words) > 10 or _verb_index(words) is not None or re.search(r"\b(?:and|or)\b", seg):
        return False
    if following is not None and following.conj and following.kind == "np":
        return False  # a list of noun phrases, not an appositive
    return True


def _appositive_pair(name: str, appositive: str, past: bool, ctx: Context) -> tuple[str, str]:
    head = re.sub(r"^(?:a|an|the|one of the)\s+", "", appositive).split()
    person = any(w.lower() in _PERSON_NOUNS for w in head[:3])
    if person:
        return f"Who {'was' if past else 'is'} {name}?", appositive
    return f"What is {name}?", appositive


def _copula_definition(clause: _Clause, ctx: Context) -> tuple[str, str] | None:
    """ "X is/was a Y" → ("What is X?", "a Y"), the predicate cut to at most 12 words at a clause word."""
    m = re.match(r"^(?P<be>is|are|was|were)\s+(?P<pred>(?:a|an|the|one of the|one of)\s+.+)$", clause.rest)
    if not m or not (clause.named or clause.topic):
        return None
    if len(clause.subject.split()) > 6 or re.search(r"\b(?:which|who|that)\b", clause.subject):
        return None
    pred = m.group("pred")
    if len(pred.split()) > MAX_A_WORDS:
        cut = re.search(r"\s(?:who|which|that|where|whose|in which)\s", pred)
        if not cut:
            return None
        pred = pred[: cut.start()]
    words = pred.split()
    if len(words) < 3 or words[-1].lower() in _FUNCTION:
        return None
    if re.match(r"^(?:a|an|the)\s+(?:result|part|kind|type|sort|number|lot|way|member|one|same)\s+of\b", pred) \
            and len(words) <= 4:
        return None
    head = re.sub(r"^(?:a|an|the|one of the|one of)\s+(?:\w+\s+)?", "", pred).split()[:1]
    who = bool(head) and (head[0].lower() in _PERSON_NOUNS
                          or pred.split()[1].lower() in _PERSON_NOUNS if len(pred.split()) > 1 else False)
    wh = "Who" if who else "What"
    return f"{wh} {m.group('be')} {_mid(clause.subject, ctx)}?", pred


def _acronym_pairs(raw: str) -> list[tuple[str, str]]:
    """ "polymerase chain reaction (PCR)" → ("What does PCR stand for?", "polymerase chain reaction")."""
    out = []
    for m in _ACRONYM.finditer(raw):
        acr = m.group("acr")
        letters = [c.lower() for c in acr if c.isupper()]
        if len(letters) < 2 or sum(c.isupper() for c in acr) < max(2, len(acr) // 2):
            continue
        words = m.group("long").split()
        picked: list[str] = []
        need = list(letters)
        for w in reversed(words):
            if not need:
                break
            parts = [p for p in re.split(r"-", w) if p]
            initials = [p[0].lower() for p in parts]
            if w.lower() in ("of", "and", "the", "for", "in", "to", "on", "with", "a", "an"):
                if picked:
                    picked.insert(0, w)
                continue
            if need[-len(initials):] == initials:
                need = need[: -len(initials)]
                picked.insert(0, w)
            elif need[-1] == initials[0]:
                need = need[:-1]
                picked.insert(0, w)
            else:
                break
        while picked and picked[0].lower() in ("of", "and", "the", "for", "in", "to", "on", "with", "a", "an"):
            picked.pop(0)
        if need or not picked:
            continue
        long_form = " ".join(picked)
        out.append((f"What does {acr} stand for?", long_form))
    return out


def _condition_pair(m: re.Match, consequence: str, ctx: Context) -> tuple[str, str] | None:
    cond = m.group("cond").strip()
    cons = re.sub(r"^then\s+", "", consequence).strip()
    cwords = _words(cond)
    if not cwords or len(_words(cons)) > MAX_A_WORDS or len(_words(cons)) < 3 or _verb_index(_words(cons)) is None:
        return None
    first = cwords[0].group(0).lower()
    if first in _PRONOUNS:
        antecedent = ctx.antecedent()
        if not antecedent:
            return None
        cond = _mid(antecedent, ctx) + cond[cwords[0].end():]
    kw = m.group("kw").lower()
    kw = "if" if kw in ("in case", "in the event that") else kw
    if kw == "unless":
        return None
    return f"What happens {kw} {cond}?", cons
