"""What a user's spoken answer says: yes, no, something else, or a PIN (pure text rules).

Used only on the one utterance that answers the model's question about one
sensitive action (daemon.home.consent decides which utterance that is). The rules
err towards doing nothing: a negative anywhere wins, and an answer that says more
than "yes" (another request, a question, the TV's quiz show) is not a yes.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable
from typing import Literal

# Matched as whole words or word sequences, case-insensitively.
AFFIRMATIVE: tuple[str, ...] = (
    # English
    "yes", "yeah", "yep", "yup", "sure", "ok", "okay", "confirm", "confirmed", "i confirm",
    "go ahead", "do it", "affirmative", "correct", "absolutely", "please do",
    # German, Dutch
    "ja", "jawohl", "genau", "bestätigt", "mach das", "doe maar",
    # French
    "oui", "ouais", "d'accord", "vas-y", "allez-y",
    # Spanish, Italian, Portuguese
    "sí", "sì", "sim", "claro", "vale", "dale", "certo", "va bene",
)
NEGATIVE: tuple[str, ...] = (
    # English (and every "...n't": don't, won't, shouldn't)
    "no", "not", "nope", "nah", "don't", "dont", "do not", "stop", "cancel", "wait",
    "never", "negative", "abort", "hold on",
    # German, Dutch
    "nein", "nicht", "kein", "keine", "stopp", "halt", "abbrechen", "warte", "nee", "niet",
    "wacht",
    # French
    "non", "pas", "arrête", "annule", "attends",
    # Spanish, Italian, Portuguese
    "cancela", "espera", "annulla", "aspetta", "ferma", "não", "nao", "pare",
)
# Words that may stand beside a yes without making it another request.
FILLERS: frozenset[str] = frozenset(
    (
        "please", "thanks", "thank", "you", "it", "that", "this", "now", "go", "ahead",
        "right", "alright", "all", "fine", "well", "oh", "um", "uh", "hm", "hmm", "er",
        "so", "much", "lot", "very", "great", "for",
        "the", "a", "my", "pin", "code", "is", "it's", "its", "yes", "sure", "just",
        "bitte", "danke", "merci", "por", "favor", "gracias", "grazie", "obrigado", "obrigada",
    )
)
# Spoken digits, for a PIN said as words.
DIGIT_WORDS: dict[str, str] = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
    "null": "0", "eins": "1", "zwei": "2", "drei": "3", "vier": "4", "fünf": "5",
    "sechs": "6", "sieben": "7", "acht": "8", "neun": "9",
}
# A question is never a yes ("Is it okay?", "Sure?"): its mark, or a question's form
# when the transcript has no punctuation ("is that right", "can you open it").
QUESTION_MARKS = ("?", "\u00bf", "\uff1f")  # and the Spanish and full-width marks
QUESTION_OPENERS: frozenset[str] = frozenset(
    (
        "is", "are", "am", "was", "were", "do", "does", "did", "can", "could", "shall",
        "should", "will", "would", "may", "might", "must", "have", "has", "what", "why",
        "how", "when", "where", "who", "which", "whose", "ist", "sind", "soll", "kann",
        "est-ce",
    )
)
_ASKED_OF = frozenset(("it", "that", "this", "you", "i", "we", "they", "he", "she", "there"))
_WORD = re.compile(r"[\w'-]+")
_CLAUSE = re.compile(r"[,.;:!\u3001\u3002]")
MIN_PIN_DIGITS = 4  # tools.confirm_pin is 4-12 digits: fewer said is no PIN attempt
MAX_ANSWER_CHARS = 400  # an answer is short; more is not an answer


def words(text: str) -> list[str]:
    """Lower-case words, apostrophes normalised, edge dashes and quotes dropped."""
    tokens = [t.strip("-'") for t in _WORD.findall(text.replace("\u2019", "'").casefold())]
    return [t for t in tokens if t]


def _phrases(items: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(w.casefold().split()) for w in items)


_YES = _phrases(AFFIRMATIVE)
_NO = _phrases(NEGATIVE)


def _spans(tokens: list[str], phrases: tuple[tuple[str, ...], ...]) -> set[int]:
    """Indexes of the tokens covered by any of the phrases."""
    covered: set[int] = set()
    for phrase in phrases:
        n = len(phrase)
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i : i + n]) == phrase:
                covered.update(range(i, i + n))
    return covered


def is_negative(tokens: list[str]) -> bool:
    """A no anywhere in the words (a "no" phrase or any "n't"); it outweighs any yes."""
    return bool(_spans(tokens, _NO)) or any(t.endswith("n't") for t in tokens)


def is_question(text: str, tokens: list[str]) -> bool:
    """A question mark, a question's first word, or a clause that opens inverted ("is
    it", "can you"), the yes words aside: "yes, that is it" is no question, "yes, is
    it?" and "okay is that right" are."""
    if any(mark in text for mark in QUESTION_MARKS):
        return True
    if tokens[0] in QUESTION_OPENERS and 0 not in _spans(tokens, _YES):
        return True
    for clause in _CLAUSE.split(text):
        toks = words(clause)
        yes = _spans(toks, _YES)
        plain = [t for i, t in enumerate(toks) if i not in yes]
        if len(plain) >= 2 and plain[0] in QUESTION_OPENERS and plain[1] in _ASKED_OF:
            return True
    return False


def spoken_answer(text: str) -> bool | None:
    """True for a yes, False for a no (a no anywhere wins), None for neither."""
    tokens = words(text)
    if is_negative(tokens):
        return False
    return True if _spans(tokens, _YES) else None


Reading = Literal["yes", "no", "other", "empty"]


def read_answer(text: str, allowed: Iterable[str] = ()) -> Reading:
    """What one answering utterance says.

    `yes`: at least one affirmative and nothing but affirmatives, fillers and the
    `allowed` words (the action and the device's name: "yes, unlock the front door").
    `no`: any negative. `other`: anything else (another request, a question even
    with a yes in it, a quiz show on the TV). `empty`: no words at all (a cough).
    """
    text = text[:MAX_ANSWER_CHARS]
    tokens = words(text)
    if not tokens:
        return "empty"
    if is_negative(tokens):
        return "no"
    if is_question(text, tokens):
        return "other"
    yes = _spans(tokens, _YES)
    if not yes:
        return "other"
    extra = FILLERS | {w.casefold() for w in allowed}
    if all(i in yes or t in extra for i, t in enumerate(tokens)):
        return "yes"
    return "other"


def spoken_digits(text: str) -> str:
    """Every digit said in the text, in order: "1 2 3 4", "1234", "one two three four"."""
    out: list[str] = []
    for token in words(text[:MAX_ANSWER_CHARS]):
        if token.isdigit():  # also full-width or Arabic-Indic digits
            out.append("".join(str(unicodedata.digit(c)) for c in token))
        elif token in DIGIT_WORDS:
            out.append(DIGIT_WORDS[token])
    return "".join(out)


def pin_matches(text: str, pin: str, allowed: Iterable[str] = ()) -> bool | None:
    """True when the digits said are exactly the PIN, False when other digits were said,
    None when fewer digits were said than any PIN has ("yes, open garage 2", "that
    one": a yes, not a wrong PIN). The digits of the device's name (`allowed`) may
    stand beside the PIN. Compared in constant time."""
    said = spoken_digits(text)
    if len(said) < MIN_PIN_DIGITS:
        return None
    # the device's number, said once before or after the PIN ("door 2, 7 3 9 1")
    numbers = {spoken_digits(t) for t in allowed} - {""}
    rest = [said] + [said[len(n):] for n in numbers if said.startswith(n)] + [
        said[: -len(n)] for n in numbers if said.endswith(n)]
    matched = [secrets.compare_digest(r.encode(), pin.encode()) for r in rest]
    if any(matched):
        return True
    if "" in rest:
        return None  # "yes, Apartment 1204": only the name's digits, no PIN attempt
    return False  # also "2 1 0 0" beside "Garage 2": a guess, counted


def redact_digits(text: str) -> str:
    """The text with every digit, and every spoken digit word, replaced by '#'.

    A spoken PIN must not reach the transcript kept for Home Assistant or the logs.
    """
    def sub(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.casefold().strip("-'") in DIGIT_WORDS:
            return "#"
        return re.sub(r"\d", "#", token)

    return _WORD.sub(sub, text)
