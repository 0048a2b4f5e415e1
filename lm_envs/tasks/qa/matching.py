"""Answer checking for short-answer QA: SQuAD/TriviaQA-style normalisation, alias match, abstention.

**Normalisation** (:func:`normalize_answer`, the SQuAD/TriviaQA recipe plus number words), in order:

1. Unicode NFKC, lower case; typographic apostrophes and quotes become ASCII;
2. hyphens and slashes become spaces (``twenty-one`` -> ``twenty one``);
3. punctuation is removed (``don't`` -> ``dont``), except a ``.`` or ``,`` between two digits,
   which is kept for decimals (``3.5``) and dropped for thousands separators (``1,000`` -> ``1000``);
4. runs of English number words become digits (``twenty one`` -> ``21``, ``one hundred and five``
   -> ``105``; ``zero`` to ``nineteen``, the tens, ``hundred``, ``thousand``, ``million``);
5. the articles ``a``, ``an``, ``the`` are removed and whitespace is collapsed.

**Alias match** (:func:`is_correct`): the prediction is correct when its normalised text equals the
normalised text of the answer or of any alias (exact match after normalisation, as SQuAD's EM and
TriviaQA's alias-EM; no substring credit, so "Velmora or Tarsh" is not correct for ``Velmora``).

**Prediction** (:func:`extract_prediction`): the first non-blank line of the completion, stripped;
a leading ``Answer:`` label is dropped.

**Abstention** (:func:`is_abstention`): the prediction abstains when its *phrase-normalised* text
(lower case, ASCII apostrophes, punctuation removed, whitespace collapsed; no article or number
rewriting) contains one of the phrase-normalised abstention phrases as a run of whole words. So
``"I don't know."``, ``"Sorry, I'm not sure."`` and ``"I don't know, maybe Velmora"`` abstain (a
hedge with a guess is an abstention, never a correct answer), ``"Knowles"`` does not (whole words
only). The default phrase set is :data:`ABSTENTION_PHRASES`; pass ``phrases=`` to change it.

Example:
    >>> normalize_answer("The Twenty-One Pilots!")
    '21 pilots'
    >>> is_correct(" velmora.", "Velmora", ["Velmora City"]), is_correct("Tarsh", "Velmora")
    (True, False)
    >>> is_abstention("I don't know."), is_abstention("Sorry, I am not sure"), is_abstention("Knowles")
    (True, True, False)
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Sequence

__all__ = [
    "ABSTENTION_PHRASES",
    "DEFAULT_ABSTENTION",
    "AbstentionDetector",
    "extract_prediction",
    "is_abstention",
    "is_correct",
    "normalize_answer",
    "normalize_phrase",
]

DEFAULT_ABSTENTION = "I don't know."
"""The abstention the task's gold solutions use for questions the model cannot know."""

ABSTENTION_PHRASES: tuple[str, ...] = (
    "I don't know",
    "I do not know",
    "I'm not sure",
    "I am not sure",
    "not sure",
    "I cannot answer",
    "I can't answer",
    "I am unable to answer",
    "I'm unable to answer",
    "I have no idea",
    "no idea",
    "I don't have that information",
    "I do not have that information",
    "I cannot say",
    "I can't say",
    "I'm not certain",
    "I am not certain",
    "cannot be determined",
    "I'd rather not guess",
)
"""Default phrases that mark an abstention (matched as whole words after :func:`normalize_phrase`)."""

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
_PUNCT = set(string.punctuation) | {"\u2013", "\u2014", "\u2026", "\u00bf", "\u00a1"}
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_DIGIT_SEP_RE = re.compile(r"(?<=\d)([.,])(?=\d)")

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"thousand": 1000, "million": 1_000_000}


def _number_words(words: Sequence[str]) -> list[str]:
    """Replace each maximal run of number words by its value in digits (``and`` inside a run is kept out)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] not in _UNITS and words[i] not in _TENS:
            out.append(words[i])
            i += 1
            continue
        total, current, j = 0, 0, i
        while j < len(words):
            w = words[j]
            if w in _UNITS or w in _TENS:
                current += _UNITS.get(w, 0) + _TENS.get(w, 0)
            elif w == "hundred" and current:
                current *= 100
            elif w in _SCALES and (current or total):
                total += max(current, 1) * _SCALES[w]
                current = 0
            elif w == "and" and j + 1 < len(words) and (words[j + 1] in _UNITS or words[j + 1] in _TENS) and j > i:
                pass  # "one hundred and five"
            else:
                break
            j += 1
        out.append(str(total + current))
        i = j
    return out


def _strip_punctuation(text: str, keep_numbers: bool) -> str:
    if keep_numbers:  # 3.5 stays a decimal, 1,000 becomes 1000
        text = _DIGIT_SEP_RE.sub(lambda m: "\x00" if m.group(1) == "." else "", text)
    text = "".join(" " if ch in "-/" else ch for ch in text)
    text = "".join(ch for ch in text if ch not in _PUNCT)
    return text.replace("\x00", ".")


def normalize_answer(text: str) -> str:
    """Normalise an answer for exact match (see the module docstring for the steps).

    Example:
        >>> normalize_answer("  One hundred and five  "), normalize_answer("1,000"), normalize_answer("3.5 km")
        ('105', '1000', '3.5 km')
        >>> normalize_answer("An Apple, the PIE")
        'apple pie'
    """
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    text = _strip_punctuation(text, keep_numbers=True)
    words = _number_words(text.split())
    return " ".join(_ARTICLES_RE.sub(" ", " ".join(words)).split())


def normalize_phrase(text: str) -> str:
    """Normalise text for abstention-phrase matching: lower case, no punctuation, single spaces.

    Example:
        >>> normalize_phrase("I\u2019m NOT sure...")
        'im not sure'
    """
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    return " ".join(_strip_punctuation(text, keep_numbers=False).split())


def extract_prediction(completion: str) -> str:
    """The answer a completion gives: its first non-blank line, stripped, without an ``Answer:`` label.

    Example:
        >>> extract_prediction("\\n Velmora.\\nQuestion: more")
        'Velmora.'
        >>> extract_prediction("Answer: 1843")
        '1843'
    """
    for line in completion.splitlines():
        line = line.strip()
        if line:
            if line.lower().startswith("answer:"):
                line = line[len("answer:") :].strip()
            return line
    return ""


def is_correct(prediction: str, answer: str, aliases: Iterable[str] = ()) -> bool:
    """Whether ``prediction`` matches ``answer`` or an alias after :func:`normalize_answer`.

    An empty normalised prediction is never correct.

    Example:
        >>> is_correct("the year 1843", "1843", ["year 1843"]), is_correct("", "")
        (True, False)
    """
    pred = normalize_answer(prediction)
    if not pred:
        return False
    return any(pred == normalize_answer(gold) for gold in (answer, *aliases))


class AbstentionDetector:
    """Detects abstentions by whole-word phrase containment (see the module docstring).

    Args:
        phrases: The abstention phrases (default :data:`ABSTENTION_PHRASES`); each must normalise
            to a non-empty string.

    Example:
        >>> d = AbstentionDetector(["no clue"])
        >>> d("I have no clue!"), d("I don't know")
        (True, False)
    """

    def __init__(self, phrases: Iterable[str] | None = None) -> None:
        raw = tuple(ABSTENTION_PHRASES if phrases is None else phrases)
        if isinstance(phrases, str):
            raise TypeError("phrases must be a list of strings, e.g. ['I don't know'], not one string.")
        if not raw:
            raise ValueError("the abstention phrase set is empty; give at least one phrase, e.g. ['I don't know'].")
        normalized = []
        for phrase in raw:
            if not isinstance(phrase, str) or not normalize_phrase(phrase):
                raise ValueError(f"abstention phrase {phrase!r} is empty after normalisation; use words.")
            normalized.append(f" {normalize_phrase(phrase)} ")
        self.phrases = raw
        self._normalized = tuple(dict.fromkeys(normalized))

    def __call__(self, prediction: str) -> bool:
        text = f" {normalize_phrase(prediction)} "
        return any(p in text for p in self._normalized)

    def __repr__(self) -> str:
        return f"AbstentionDetector({len(self.phrases)} phrases)"


_DEFAULT_DETECTOR = AbstentionDetector()


def is_abstention(prediction: str, phrases: Iterable[str] | None = None) -> bool:
    """Whether ``prediction`` abstains (contains an abstention phrase as whole words).

    Example:
        >>> is_abstention("Honestly, I have no idea."), is_abstention("Noah Idea"), is_abstention("maybe", ["maybe"])
        (True, False, True)
    """
    detector = _DEFAULT_DETECTOR if phrases is None else AbstentionDetector(phrases)
    return detector(prediction)
