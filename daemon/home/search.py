"""Finding a device from the words a person used ("the lamp in the bedroom").

Postings (word -> device ids) of every device's name, area and kind words, kept
current as devices come and go, and a deletion index for near misses ("kitchn").
Finding a device costs a dictionary lookup per word and work proportional to the
devices that share a word, never a fuzzy comparison per word and device. The kind
words of each component are its own (`Component.synonyms`).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass

from daemon.home.components import REGISTRY
from daemon.home.device import Device

_STOP = frozenset({"the", "a", "an", "in", "on", "of", "my", "please", "room"})
_FUZZY_MIN, _FUZZY_MAX = 4, 24  # token lengths matched approximately (others exactly)
_FUZZY_RATIO = 0.8
_FUZZY_ENTRIES = 50_000  # near-miss index entries at most (a real home needs a few k)
_MEMO = 256  # words and areas remembered per index version


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", text.casefold()) if t and t not in _STOP]


def _fuzzy(token: str) -> bool:
    return _FUZZY_MIN <= len(token) <= _FUZZY_MAX and not token.isdigit()


def _variants(token: str) -> set[str]:
    """The token and every one-character deletion of it: two tokens that share one
    are at most a substitution, an insertion or a swap apart."""
    return {token} | {token[:i] + token[i + 1 :] for i in range(len(token))}


@dataclass(frozen=True)
class _Doc:
    name: tuple[str, ...]
    area: tuple[str, ...]
    kind: tuple[str, ...]
    folded_name: str


class SearchIndex:
    """Postings (token → device ids) of every device's name, area and kind words, and a
    deletion index for near misses ("kitchn"), kept current as devices come and go.

    A word matches a token exactly (score 1) or, for words of 4+ letters, a token
    sharing a deletion variant whose difflib ratio is at least 0.8 (score 0.9 x ratio),
    as before, only without comparing every word with every device.
    """

    def __init__(self) -> None:
        self.postings: dict[str, dict[str, set[str]]] = {"name": {}, "area": {}, "kind": {}}
        self.by_name: dict[str, set[str]] = {}  # casefolded name -> ids
        self.docs: dict[str, _Doc] = {}
        self.version = 0
        self._refs: Counter[str] = Counter()
        self._near: dict[str, set[str]] = {}  # deletion variant -> tokens
        self._near_entries = 0
        self._matches: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._areas: OrderedDict[str, frozenset[str] | None] = OrderedDict()

    def add(self, device: Device) -> None:
        """Index (or re-index) a device's name, area and kind words."""
        if device.id in self.docs:
            self.remove(device.id)
        component = REGISTRY.get(device.component)
        synonyms = component.synonyms if component is not None else ()
        kind = synonyms + tuple(_tokens(device.device_class or ""))
        doc = _Doc(
            tuple(_tokens(device.name)),
            tuple(_tokens(device.area or "")),
            kind,
            device.name.casefold(),
        )
        self.docs[device.id] = doc
        self.by_name.setdefault(doc.folded_name, set()).add(device.id)
        for field_name, words in (("name", doc.name), ("area", doc.area), ("kind", doc.kind)):
            postings = self.postings[field_name]
            for word in set(words):
                postings.setdefault(word, set()).add(device.id)
                self._refs[word] += 1
                if self._refs[word] == 1 and _fuzzy(word):
                    self._index_near(word)
        self._changed()

    def remove(self, device_id: str) -> None:
        """Drop a device from the index."""
        doc = self.docs.pop(device_id, None)
        if doc is None:
            return
        _discard(self.by_name, doc.folded_name, device_id)
        for field_name, words in (("name", doc.name), ("area", doc.area), ("kind", doc.kind)):
            postings = self.postings[field_name]
            for word in set(words):
                _discard(postings, word, device_id)
                self._refs[word] -= 1
                if self._refs[word] <= 0:
                    del self._refs[word]
                    if _fuzzy(word):
                        self._unindex_near(word)
        self._changed()

    def _index_near(self, word: str) -> None:
        variants = _variants(word)
        if self._near_entries + len(variants) > _FUZZY_ENTRIES:
            return  # a runaway inventory: exact matches still work
        for v in variants:
            self._near.setdefault(v, set()).add(word)
        self._near_entries += len(variants)

    def _unindex_near(self, word: str) -> None:
        variants = _variants(word)
        if word not in self._near.get(word, ()):
            return  # never indexed
        for v in variants:
            _discard(self._near, v, word)
        self._near_entries -= len(variants)

    def _changed(self) -> None:
        self.version += 1
        self._matches.clear()
        self._areas.clear()

    def match(self, word: str) -> dict[str, float]:
        """Known tokens this word may mean, with their scores."""
        hit = self._matches.get(word)
        if hit is not None:
            return hit
        found: dict[str, float] = {}
        if word in self._refs:
            found[word] = 1.0
        if _fuzzy(word):
            candidates: set[str] = set()
            for v in _variants(word):
                candidates |= self._near.get(v, set())
            for cand in candidates - {word}:
                ratio = difflib.SequenceMatcher(None, word, cand).ratio()
                if ratio >= _FUZZY_RATIO:
                    found[cand] = ratio * 0.9
        self._matches[word] = found
        if len(self._matches) > _MEMO:
            self._matches.popitem(last=False)
        return found

    def ids_with(self, field_name: str, word: str) -> set[str]:
        """Devices whose `field_name` words include one this word may mean."""
        postings = self.postings[field_name]
        out: set[str] = set()
        for token in self.match(word):
            out |= postings.get(token, set())
        return out

    def in_area(self, area: str) -> frozenset[str] | None:
        """Devices in `area`: all its words fit the device's area, or else its name.
        None when the area has no words (every device fits)."""
        if area in self._areas:
            return self._areas[area]
        want = set(_tokens(area))
        result: frozenset[str] | None = None
        if want:
            by_area: set[str] | None = None
            by_name: set[str] | None = None
            for word in want:
                a, n = self.ids_with("area", word), self.ids_with("name", word)
                by_area = a if by_area is None else by_area & a
                by_name = n if by_name is None else by_name & n
            result = frozenset((by_area or set()) | (by_name or set()))
        self._areas[area] = result
        if len(self._areas) > _MEMO:
            self._areas.popitem(last=False)
        return result

    def scores(self, query: str) -> dict[str, float]:
        """Every device the words fit at all, with how well (1.0 only for an exact name)."""
        out: dict[str, float] = {i: 1.0 for i in self.by_name.get(query.casefold(), ())}
        if query in self.docs:
            out[query] = 1.0
        words = _tokens(query)
        if not words:
            return out
        weights = (("name", 1.0), ("area", 0.9), ("kind", 0.6))
        total: dict[str, float] = {}
        for word, count in Counter(words).items():
            best: dict[str, float] = {}
            for token, score in self.match(word).items():
                for field_name, weight in weights:
                    value = score * weight
                    for dev_id in self.postings[field_name].get(token, ()):
                        if value > best.get(dev_id, 0.0):
                            best[dev_id] = value
            for dev_id, value in best.items():
                total[dev_id] = total.get(dev_id, 0.0) + count * value
        for dev_id, value in total.items():
            if dev_id not in out:
                out[dev_id] = value / len(words) * 0.97  # only an exact id/name is certain
        return out


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del index[key]


@dataclass(frozen=True)
class Match:
    """A device the words fit, and how well (1.0 only for its exact id or name)."""

    device: Device
    score: float


@dataclass(frozen=True)
class LookupFailure:
    """No single device fits the words used; the message says why and lists options."""

    message: str
    candidates: tuple[Device, ...] = ()

    def __str__(self) -> str:
        return self.message
