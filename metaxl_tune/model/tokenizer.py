"""Tokenizers: the model's own from the hub or disk, or one trained with `tokenizers` for `tiny`.

The tiny tokenizer is trained on the run's text (source and target, all splits; labels are never
seen), the offline stand-in for a multilingual pre-trained vocabulary: every sentence of a
language up to TOKENIZER_SAMPLE, else a seeded sample of that many (the `tokenizers` trainer's
memory grows with its input: 10.5 GB for the 2.17 M sentences of a 100 MB file). It is cached by
the data fingerprint, so every trial of a search on the same data shares it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from metaxl_tune.data import ExampleStream, SplitStreams, sample_indices
from metaxl_tune.data.streams import take_sorted
from metaxl_tune.model.model_config import RANDOM_INIT, TINY, ModelError

TINY_VOCAB_SIZE = 4000
TOKENIZER_SAMPLE = 50_000
"""Sentences per language the tiny tokenizer trains on at most (train, dev and test together).
More than any split the tests, demos or the paper's WikiAnn languages hold (synthetic NER: 20,400
a language), so their vocabularies are those of all their sentences."""
TOKENIZER_SAMPLE_SEED = 0
"""Fixed, not the run's data seed: one vocabulary per data, whatever the seeds of its runs."""
_SPECIALS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}


def _backend(model) -> Tokenizer:
    backend = Tokenizer(model)
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return backend


def _save(backend: Tokenizer, directory: Path, *, max_length: int) -> PreTrainedTokenizerFast:
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=_SPECIALS["bos"],
        eos_token=_SPECIALS["eos"],
        cls_token=_SPECIALS["bos"],
        sep_token=_SPECIALS["eos"],
        unk_token=_SPECIALS["unk"],
        pad_token=_SPECIALS["pad"],
        mask_token=_SPECIALS["mask"],
        model_max_length=max_length,
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return tokenizer


# Special-token ids match XLM-R's layout (<s>=0, <pad>=1, </s>=2, <unk>=3) and the tiny config.
_SPECIAL_LIST = [_SPECIALS[key] for key in ("bos", "pad", "eos", "unk", "mask")]


def tokenizer_texts(languages: list[SplitStreams]) -> list[str]:
    """Per language, the text of every sentence of train, dev and test in order, or, past
    TOKENIZER_SAMPLE of them, a seeded sample of that many, in file order."""
    texts: list[str] = []
    for splits in languages:
        streams: list[ExampleStream] = list(splits.all())
        total = sum(len(stream) for stream in streams)
        if total <= TOKENIZER_SAMPLE:
            examples = (example for stream in streams for example in stream)
        else:
            examples = take_sorted(streams, sorted(sample_indices(total, TOKENIZER_SAMPLE, TOKENIZER_SAMPLE_SEED)))
        texts.extend(" ".join(getattr(example, "tokens", None) or [example.text]) for example in examples)
    return texts


def train_tiny_tokenizer(texts: Iterable[str], directory: Path, *, max_length: int) -> PreTrainedTokenizerFast:
    """Train a WordPiece tokenizer with XLM-R's special tokens and save it to ``directory``."""
    from metaxl_tune.common.interruptible import run_interruptibly

    backend = _backend(models.WordPiece(unk_token=_SPECIALS["unk"]))
    trainer = trainers.WordPieceTrainer(vocab_size=TINY_VOCAB_SIZE, special_tokens=_SPECIAL_LIST, show_progress=False)
    # Native code that ignores Ctrl-C until it returns (minutes on a large file).
    run_interruptibly(lambda: backend.train_from_iterator(texts, trainer=trainer), name="tokenizer-training")
    return _save(backend, directory, max_length=max_length)


def build_word_tokenizer(
    texts: Iterable[str], directory: Path, *, max_length: int, vocab_size: int
) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer whose vocabulary is chosen, not trained: the most frequent words
    (ties by spelling) plus every character as a start and a continuation piece, so a rarer
    word is spelled out. Unlike the `tokenizers` trainer, whose choice among equally frequent
    merges varies from run to run, the same texts always give the same vocabulary."""
    splitter = _backend(models.WordPiece(unk_token=_SPECIALS["unk"]))
    counts: dict[str, int] = {}
    for text in texts:
        for word, _ in splitter.pre_tokenizer.pre_tokenize_str(splitter.normalizer.normalize_str(text)):
            counts[word] = counts.get(word, 0) + 1
    characters = sorted({character for word in counts for character in word})
    vocab = [*_SPECIAL_LIST, *characters, *(f"##{character}" for character in characters)]
    known = set(vocab)
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in known:
            vocab.append(word)
    model = models.WordPiece(vocab={token: index for index, token in enumerate(vocab)}, unk_token=_SPECIALS["unk"])
    return _save(_backend(model), directory, max_length=max_length)


TINY_SPECIAL_TOKENS = 2
"""<s> and </s> around every sequence: the tiny tokenizer's single-sequence template below."""


def special_tokens_added(name: str) -> int:
    """How many special tokens the model's tokenizer adds to one sequence."""
    if name in RANDOM_INIT:
        # Randomly initialised models (tiny, base-random) train the tiny tokenizer on their data
        # (train/prepare.py): never a hub tokenizer, which an offline machine cannot load.
        return TINY_SPECIAL_TOKENS
    return load_tokenizer(name).num_special_tokens_to_add(pair=False)


def load_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """The pre-trained model's fast tokenizer (word alignment for NER needs a fast one)."""
    from transformers import AutoTokenizer  # imports torch: only where a hub or saved model's tokenizer is read

    from metaxl_tune.model.hub_quiet import quiet_hub

    try:
        with quiet_hub(name) as hub:
            tokenizer = AutoTokenizer.from_pretrained(name, **hub)
    except (OSError, ValueError):
        raise ModelError(
            f"cannot load the tokenizer of '{name}'; pass --model with a local model directory, "
            f"or --model {TINY} for offline runs"
        ) from None
    if not tokenizer.is_fast:
        raise ModelError(f"model '{name}' has no fast tokenizer, which NER label alignment needs")
    return tokenizer
