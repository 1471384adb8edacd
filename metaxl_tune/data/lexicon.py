"""Synthetic languages: one shared set of concepts, and each language's own words for them.

Every language expresses the same concepts (nouns, verbs by the entity types they take,
adjectives, entity cue words such as titles and place types, sentiment words) but draws its
words from its own sound inventory, seeded by the language code, and orders them its own way
(SVO / SOV / VSO, adjective before or after the noun, pre- or postpositions). What languages
share is what real languages share: entity names (one large gazetteer, as names are written
alike across Wikipedias; each language adds local names of its own) and a fraction of
loanwords among the cue and sentiment words. A model can thus carry structure and names over
from a source language while still having to learn most of the target's surface forms.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cache

# Part of every synthetic data fingerprint: bump it whenever generated data changes.
GENERATOR_VERSION = "1"

# Concepts per category; the grammar in `synthetic` picks among them.
CONCEPTS: dict[str, int] = {
    "det": 2,
    "conj": 3,
    "prep_loc": 4,
    "prep_time": 2,
    "noun": 120,
    "adj": 60,
    "verb_per_loc": 10,
    "verb_per_org": 10,
    "verb_org_per": 8,
    "verb_org_loc": 8,
    "verb_per_per": 8,
    "verb_noun": 30,
    "cue_per": 20,
    "cue_org": 16,
    "cue_loc": 16,
    "pron": 3,
    "copula": 1,
    "neg": 1,
    "intens": 8,
    "product": 60,
    "verb_use": 20,
    "sent_pos": 100,
    "sent_neg": 100,
    "verb_pos": 12,
    "verb_neg": 12,
}
# Fraction of a category's concepts that every language writes the same way (loanwords).
# Sentiment words share half: with less, a bag-of-words learner gains only a point or two
# from 1000 source reviews, too little for transfer to show reliably in small demos.
LOANWORD_SHARE: dict[str, float] = {
    "noun": 0.1,
    "product": 0.3,
    "cue_per": 0.3,
    "cue_org": 0.3,
    "cue_loc": 0.3,
    "sent_pos": 0.5,
    "sent_neg": 0.5,
    "verb_pos": 0.5,
    "verb_neg": 0.5,
}
# Name parts: the shared gazetteer is large, so 100 target sentences see a small part of it
# while thousands of source sentences see most of it.
SHARED_NAMES: dict[str, int] = {
    "first": 400,
    "surname": 600,
    "org": 500,
    "org_suffix": 12,
    "place": 800,
    "place_prefix": 20,
}
LOCAL_NAMES: dict[str, int] = {"first": 80, "surname": 120, "org": 100, "place": 160}
_FUNCTION_WORDS = frozenset({"det", "conj", "prep_loc", "prep_time", "pron", "copula", "neg"})

_ONSETS = tuple("ptkbdgmnlrsvfhzjwcxq") + ("sh", "ch", "th", "ng", "kh", "ts")
_VOWELS = ("a", "e", "i", "o", "u")
_EXTRA_VOWELS = ("y", "aa", "ei", "ou", "ie", "oo")
_CODAS = ("n", "m", "r", "l", "s", "k", "t")


@dataclass(frozen=True)
class Phonology:
    """A sound inventory: words are onset-vowel(-coda) syllables over it."""

    onsets: tuple[str, ...]
    vowels: tuple[str, ...]
    codas: tuple[str, ...]
    coda_rate: float

    def word(self, rng: random.Random, syllables: int) -> str:
        parts = []
        for _ in range(syllables):
            parts.append(rng.choice(self.onsets) + rng.choice(self.vowels))
            if self.codas and rng.random() < self.coda_rate:
                parts.append(rng.choice(self.codas))
        return "".join(parts)


# Loanwords and names use one neutral inventory, so they look alike in every language.
_SHARED_PHONOLOGY = Phonology(
    onsets=("b", "d", "k", "l", "m", "n", "p", "r", "s", "t", "v"), vowels=_VOWELS, codas=("n", "r", "s"), coda_rate=0.25
)


@dataclass(frozen=True)
class Language:
    """One synthetic language: a word per concept, local names, and its word order."""

    code: str
    words: dict[str, tuple[str, ...]]
    local_names: dict[str, tuple[str, ...]]
    order: str
    adj_first: bool
    postpositions: bool


@dataclass(frozen=True)
class SharedLexicon:
    """What all languages share: loanwords (by concept index) and the name gazetteer."""

    loanwords: dict[str, dict[int, str]]
    names: dict[str, tuple[str, ...]]


def seeded_rng(*parts: object) -> random.Random:
    """A Random seeded from ``parts`` the same way in every process (unlike ``hash``)."""
    digest = hashlib.sha256("|".join(map(str, (GENERATOR_VERSION, *parts))).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@cache
def shared_lexicon() -> SharedLexicon:
    rng = seeded_rng("shared")
    taken: set[str] = set()
    names = {
        part: tuple(_fresh(rng, _SHARED_PHONOLOGY, (2, 3), taken).capitalize() for _ in range(count))
        for part, count in SHARED_NAMES.items()
    }
    loanwords = {}
    for category, share in LOANWORD_SHARE.items():
        chosen = sorted(rng.sample(range(CONCEPTS[category]), round(share * CONCEPTS[category])))
        loanwords[category] = {index: _fresh(rng, _SHARED_PHONOLOGY, (2, 3), taken) for index in chosen}
    return SharedLexicon(loanwords, names)


@cache
def language(code: str) -> Language:
    rng = seeded_rng("language", code)
    phonology = Phonology(
        onsets=tuple(rng.sample(_ONSETS, rng.randint(9, 14))),
        vowels=tuple(rng.sample(_VOWELS, 3) + rng.sample(_EXTRA_VOWELS, rng.randint(0, 2))),
        codas=tuple(rng.sample(_CODAS, rng.randint(0, 3))),
        coda_rate=rng.uniform(0.1, 0.4),
    )
    shared = shared_lexicon()
    taken = {word.lower() for names in shared.names.values() for word in names}
    taken |= {word for words in shared.loanwords.values() for word in words.values()}
    words = {}
    for category, count in CONCEPTS.items():
        loans = shared.loanwords.get(category, {})
        lengths = (1, 2) if category in _FUNCTION_WORDS else (2, 3)
        words[category] = tuple(loans.get(i) or _fresh(rng, phonology, lengths, taken) for i in range(count))
    local_names = {
        part: tuple(_fresh(rng, phonology, (2, 3), taken).capitalize() for _ in range(count))
        for part, count in LOCAL_NAMES.items()
    }
    order = rng.choices(("SVO", "SOV", "VSO"), weights=(0.45, 0.45, 0.1))[0]
    # Verb-final languages mostly have postpositions, as in the world's languages.
    postpositions = (order == "SOV") == (rng.random() < 0.8)
    return Language(code, words, local_names, order, rng.random() < 0.5, postpositions)


def _fresh(rng: random.Random, phonology: Phonology, lengths: tuple[int, int], taken: set[str]) -> str:
    while True:
        word = phonology.word(rng, rng.randint(*lengths))
        if word not in taken:
            taken.add(word)
            return word
