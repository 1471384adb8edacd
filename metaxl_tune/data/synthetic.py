"""Deterministic synthetic NER and SA data for any language code, for offline demos and tests.

Sentences come from one small grammar rendered through each language's lexicon and word
order (see `lexicon`), so a source and a target language share structure and entity names but
few surface forms, and joint training on source + 100 target examples beats the 100 alone.

NER: one or two clauses "subject verb object [adjunct]" of 8-20 tokens. The verb fixes the
entity types it takes (a person visits a place, an organisation hires a person), entities may
come with a cue word ("the minister Maru Tessa", "the city Kirsa"), and adjuncts put places
after location prepositions, so an entity's type can be told from its name, its cue, its
verb and its position. NER_LABELS tags in BIO.

SA: reviews of 6-25 words made of evaluative clauses ("the phone was very good", "I did not
like the hotel") and neutral ones. The label is drawn first (classes alternate, so splits
are balanced); each evaluative clause agrees with it, except for one contrasting clause in
some three-clause reviews, and a clause may express its polarity as a negated opposite.

Sizes: train 20000 sentences (NER) or 5000 reviews (SA), dev 200, test 200. The same
language always gives the same data; every split has its own seed. The languages are
`common.languages.SYNTHETIC_LANGUAGES`; any other code is refused.
"""

from __future__ import annotations

import random
from bisect import bisect
from functools import cache
from itertools import accumulate

from metaxl_tune.common.languages import synthetic_language_problem
from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import NerExample, SaExample
from metaxl_tune.data.lexicon import Language, language, seeded_rng, shared_lexicon
from metaxl_tune.data.streams import ListStream, SplitStreams

SIZES: dict[str, dict[str, int]] = {
    "ner": {"train": 20000, "dev": 200, "test": 200},
    "sa": {"train": 5000, "dev": 200, "test": 200},
}
NER_LENGTH = (8, 20)
SA_WORDS = (6, 25)
# Share of name parts drawn from the language's local names rather than the shared gazetteer.
_LOCAL_NAME_RATE = 0.25
# Subject type, verb category, object type; "NOUN" is a common noun phrase.
_FRAMES: tuple[tuple[str, str, str], ...] = (
    ("PER", "verb_per_loc", "LOC"),
    ("PER", "verb_per_org", "ORG"),
    ("ORG", "verb_org_per", "PER"),
    ("ORG", "verb_org_loc", "LOC"),
    ("PER", "verb_per_per", "PER"),
    ("PER", "verb_noun", "NOUN"),
    ("ORG", "verb_noun", "NOUN"),
    ("NOUN", "verb_noun", "NOUN"),
)
_CUES = {"PER": "cue_per", "ORG": "cue_org", "LOC": "cue_loc"}

Tagged = list[tuple[str, str]]  # (token, tag) pairs


def synthetic_splits(task: str, code: str) -> SplitStreams:
    """Streams over examples generated once per process (a fixed size, whatever is asked)."""
    check_synthetic_language(code)
    return SplitStreams(**{split: ListStream(f"synthetic {task} {code} ({split} split)", examples)
                           for split, examples in _generate(task, code).items()})


def check_synthetic_language(code: str) -> None:
    """A DataError naming the languages there are, unless ``code`` is one of them (RunConfig
    refuses the others first; this guards direct callers)."""
    problem = synthetic_language_problem(code)
    if problem:
        raise DataError(problem)


@cache
def _generate(task: str, code: str) -> dict[str, tuple]:
    lang = language(code)
    generated = {}
    for split, size in SIZES[task].items():
        rng = seeded_rng(task, code, split)
        if task == "ner":
            generated[split] = tuple(_ner_sentence(rng, lang) for _ in range(size))
        else:
            generated[split] = tuple(_review(rng, lang, label=index % 2) for index in range(size))
    return generated


@cache
def _zipf_weights(count: int) -> tuple[float, ...]:
    # Natural word frequencies: a few words are frequent, most are rare.
    return tuple(accumulate(1.0 / (rank + 1) for rank in range(count)))


def _word(rng: random.Random, lang: Language, category: str) -> str:
    # What rng.choices does, without its per-call overhead (this is the generator's hot spot).
    words = lang.words[category]
    weights = _zipf_weights(len(words))
    return words[bisect(weights, rng.random() * weights[-1], 0, len(words) - 1)]


# ---- NER ------------------------------------------------------------------------------------


def _ner_sentence(rng: random.Random, lang: Language) -> NerExample:
    while True:
        tagged = _clause(rng, lang)
        if rng.random() < 0.4:
            tagged += [(_word(rng, lang, "conj"), "O")] + _clause(rng, lang)
        tagged.append((".", "O"))
        if NER_LENGTH[0] <= len(tagged) <= NER_LENGTH[1]:
            tokens, tags = zip(*tagged)
            return NerExample(tokens, tags)


def _clause(rng: random.Random, lang: Language) -> Tagged:
    subject_type, verb_category, object_type = rng.choice(_FRAMES)
    subject = _phrase(rng, lang, subject_type)
    verb = [(_word(rng, lang, verb_category), "O")]
    obj = _phrase(rng, lang, object_type)
    adjunct = _adjunct(rng, lang)
    if lang.order == "SOV":
        return subject + obj + adjunct + verb
    if lang.order == "VSO":
        return verb + subject + obj + adjunct
    return subject + verb + obj + adjunct


def _adjunct(rng: random.Random, lang: Language) -> Tagged:
    draw = rng.random()
    if draw < 0.35:
        preposition, phrase = _word(rng, lang, "prep_loc"), _phrase(rng, lang, "LOC")
    elif draw < 0.6:
        preposition, phrase = _word(rng, lang, "prep_time"), [(str(rng.randint(1900, 2024)), "O")]
    else:
        return []
    marker = [(preposition, "O")]
    return phrase + marker if lang.postpositions else marker + phrase


def _phrase(rng: random.Random, lang: Language, kind: str) -> Tagged:
    if kind == "NOUN":
        noun = [(_word(rng, lang, "noun"), "O")]
        if rng.random() < 0.5:
            adjective = [(_word(rng, lang, "adj"), "O")]
            noun = adjective + noun if lang.adj_first else noun + adjective
        return [(_word(rng, lang, "det"), "O")] + noun
    name = _name(rng, lang, kind)
    tagged = [(token, ("B-" if i == 0 else "I-") + kind) for i, token in enumerate(name)]
    if rng.random() < 0.5:
        cue = _word(rng, lang, _CUES[kind])
        if lang.adj_first:
            return [(_word(rng, lang, "det"), "O"), (cue, "O")] + tagged
        return tagged + [(cue, "O")]
    return tagged


def _name(rng: random.Random, lang: Language, kind: str) -> list[str]:
    if kind == "PER":
        shape = rng.random()
        parts = ["first", "surname"] if shape < 0.7 else ["first"] if shape < 0.85 else ["surname"]
    elif kind == "ORG":
        # Some organisations are named after places, so a place name alone does not settle the type.
        parts = ["place" if rng.random() < 0.15 else "org"]
        if rng.random() < 0.25:
            parts.append("org")
        if rng.random() < 0.6:
            parts.append("org_suffix")
    else:
        parts = (["place_prefix"] if rng.random() < 0.2 else []) + ["place"]
    return [_name_part(rng, lang, part) for part in parts]


def _name_part(rng: random.Random, lang: Language, part: str) -> str:
    if part in lang.local_names and rng.random() < _LOCAL_NAME_RATE:
        return rng.choice(lang.local_names[part])
    return rng.choice(shared_lexicon().names[part])


# ---- SA -------------------------------------------------------------------------------------


def _review(rng: random.Random, lang: Language, label: int) -> SaExample:
    while True:
        clauses = [_evaluation(rng, lang, polarity) for polarity in _polarities(rng, label)]
        clauses += [_neutral(rng, lang) for _ in range(rng.choice((0, 0, 1, 2)))]
        rng.shuffle(clauses)
        if SA_WORDS[0] <= sum(map(len, clauses)) <= SA_WORDS[1]:
            return SaExample(" ".join(" ".join(clause) + " ." for clause in clauses), label)


def _polarities(rng: random.Random, label: int) -> list[int]:
    count = rng.choices((1, 2, 3), weights=(0.2, 0.5, 0.3))[0]
    polarities = [label] * count
    if count == 3 and rng.random() < 0.3:
        polarities[0] = 1 - label
    return polarities


def _evaluation(rng: random.Random, lang: Language, polarity: int) -> list[str]:
    negated = rng.random() < 0.15
    positive_word = bool(polarity) != negated
    negation = [_word(rng, lang, "neg")] if negated else []
    product = [_word(rng, lang, "det"), _word(rng, lang, "product")]
    if rng.random() < 0.75:
        intensifier = [_word(rng, lang, "intens")] if rng.random() < 0.3 else []
        predicate = negation + intensifier + [_word(rng, lang, "sent_pos" if positive_word else "sent_neg")]
        copula = [_word(rng, lang, "copula")]
        return product + predicate + copula if lang.order == "SOV" else product + copula + predicate
    verb = negation + [_word(rng, lang, "verb_pos" if positive_word else "verb_neg")]
    return _transitive(lang, [_word(rng, lang, "pron")], verb, product)


def _neutral(rng: random.Random, lang: Language) -> list[str]:
    product = [_word(rng, lang, "det"), _word(rng, lang, "product")]
    if rng.random() < 0.5:
        adjective = [_word(rng, lang, "adj")]
        product = product[:1] + (adjective + product[1:] if lang.adj_first else product[1:] + adjective)
    return _transitive(lang, [_word(rng, lang, "pron")], [_word(rng, lang, "verb_use")], product)


def _transitive(lang: Language, subject: list[str], verb: list[str], obj: list[str]) -> list[str]:
    if lang.order == "SOV":
        return subject + obj + verb
    if lang.order == "VSO":
        return verb + subject + obj
    return subject + verb + obj


# ---- unlabelled text ------------------------------------------------------------------------


def unlabelled_text(code: str, count: int, *, seed: int) -> list[str]:
    """``count`` unlabelled sentences of ``code`` for pre-training (``--model tiny-pretrained``):
    NER sentences and reviews alternately, from their own seed, so they are fresh draws of the
    grammar rather than the train/dev/test examples."""
    lang = language(code)
    rng = seeded_rng("pretrain", code, seed)
    texts = []
    for index in range(count):
        if index % 2 == 0:
            texts.append(" ".join(_ner_sentence(rng, lang).tokens))
        else:
            texts.append(_review(rng, lang, label=index // 2 % 2).text)
    return texts
