"""Answer normalisation and scoring, shared by data generation, training and evaluation.

``is_correct`` accepts what a model is likely to say: the option text ("The second tone"), its letter ("B",
"(b)", "Option B"), a sentence that names exactly one option, digits or number words ("twelve", "forty-two"),
all case- and punctuation-insensitive.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from ..config import LETTERS

if TYPE_CHECKING:
    from ..data.manifest import Item


_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUES = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if i >= 2}
_LETTER_RE = re.compile(r"^\(?(?:(?:option|answer|choice)\s*:?\s*)?\(?([a-j])[).:]?(?:\s+(.*)|$)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


def number_to_words(n: int) -> str:
    """English words for an integer in [-999999, 999999], e.g. 42 -> 'forty-two'."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _UNITS[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS[tens] + (f"-{_UNITS[unit]}" if unit else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_UNITS[hundreds]} hundred" + (f" and {number_to_words(rest)}" if rest else "")
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        sep = " and " if 0 < rest < 100 else " "
        return f"{number_to_words(thousands)} thousand" + (f"{sep}{number_to_words(rest)}" if rest else "")
    raise ValueError(f"number_to_words supports |n| < 1000000, got {n}")


def words_to_number(text: str) -> int | None:
    """Parse English number words ('forty-two', 'one hundred and five', 'minus three'); None if not a number."""
    words = re.sub(r"[-,]", " ", text.lower()).split()
    words = [w for w in words if w != "and"]
    if not words:
        return None
    sign = 1
    if words[0] in ("minus", "negative"):
        sign, words = -1, words[1:]
    total = current = 0
    seen = False
    for w in words:
        if w in _WORD_VALUES:
            current += _WORD_VALUES[w]
        elif w == "hundred" and seen:
            current *= 100
        elif w == "thousand" and seen:
            total, current = total + current * 1000, 0
        else:
            return None
        seen = True
    return sign * (total + current) if seen else None


def normalise_answer(text: str) -> str:
    """Lower-case, strip accents, punctuation and extra spaces; keep digits, letters, '-' and '.' in numbers."""
    text = "".join(c if c.isascii() else " " for c in unicodedata.normalize("NFKD", str(text))
                   if not unicodedata.combining(c))  # accents dropped, other symbols become spaces
    text = text.lower().strip()
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # full stops, not decimal points
    text = re.sub(r"[^a-z0-9.\-+ ]", " ", text)
    text = re.sub(r"(?<![a-z0-9])-(?![0-9])|(?<=[a-z])-(?=[0-9])", " ", text)  # dashes used as punctuation
    return " ".join(text.split())


def parse_number(text: str) -> float | None:
    """A number from digits ('12', '-3.5', '1,200') or words ('twelve'), or None."""
    t = normalise_answer(text.replace(",", "")) if re.search(r"\d,\d", text) else normalise_answer(text)
    for prefix in ("the answer is ", "answer ", "it is ", "its ", "it s ", "about ", "approximately "):
        if t.startswith(prefix):
            t = t[len(prefix):]
    if _NUMBER_RE.match(t):
        return float(t)
    value = words_to_number(t)
    return float(value) if value is not None else None


def normalise_number(value: float) -> str:
    """Canonical text of a numeric answer: integers without a decimal point, others to 6 significant digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def choice_index(choices: list[str], reply: str) -> int | None:
    """Which option ``reply`` picks: by exact text, by letter, or by naming exactly one option; else None."""
    norm = [normalise_answer(c) for c in choices]
    r = normalise_answer(reply)
    if r in norm:
        return norm.index(r)
    m = _LETTER_RE.match(reply.strip())
    if m and LETTERS.index(m.group(1).upper()) < len(choices):
        i = LETTERS.index(m.group(1).upper())
        rest = normalise_answer(m.group(2) or "")
        if not rest or rest == norm[i] or _names(rest, norm[i]):
            return i
    named = [i for i, c in enumerate(norm) if c and _names(r, c)]
    # an option contained in a longer named option ("low" in "very low") does not count on its own
    named = [i for i in named if not any(j != i and norm[i] in norm[j] for j in named)]
    return named[0] if len(named) == 1 else None


def _names(text: str, option: str) -> bool:
    """True when ``option`` appears in ``text`` as whole words."""
    return re.search(rf"(?<![a-z0-9]){re.escape(option)}(?![a-z0-9])", text) is not None


def is_correct(item: Item, reply_answer: str) -> bool:
    """Whether ``reply_answer`` (the text after ``</think>``) answers ``item`` correctly."""
    if reply_answer is None:
        return False
    if item.answer_type == "choice":
        assert item.choices is not None
        i = choice_index(item.choices, reply_answer)
        return i is not None and normalise_answer(item.choices[i]) == normalise_answer(item.answer)
    if item.answer_type == "number":
        got, want = parse_number(reply_answer), parse_number(item.answer)
        return got is not None and want is not None and abs(got - want) <= 1e-6 * max(1.0, abs(want))
    want = normalise_answer(item.answer)
    got = normalise_answer(reply_answer)
    for prefix in ("the answer is ", "the word is ", "answer ", "it is ", "it was "):
        if got.startswith(prefix):
            got = got[len(prefix):]
    return got == want or (got.startswith("the ") and got[4:] == want)
