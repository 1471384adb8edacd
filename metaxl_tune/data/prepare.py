"""Everything a run needs from the data: tokenizer, encoded splits (cached) and samples.

Raw files are parsed only when the cache lacks something: keys are built from cheap
fingerprints (file sizes and mtimes, generator version), so a cached search trial never
re-reads or re-tokenizes its data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from transformers import PreTrainedTokenizerFast

from metaxl_tune.config import RunConfig
from metaxl_tune.data import NER_LABELS, SA_LABELS, Splits, data_fingerprint, load_splits, sample
from metaxl_tune.data.encoding import Batcher, cache_key, cached_encoding, encode_ner, encode_sa, tokenizer_fingerprint
from metaxl_tune.languages import resolve_source
from metaxl_tune.model.backbone import TINY
from metaxl_tune.model.pretrain import PRETRAINED, pretrained_model
from metaxl_tune.model.tokenizer import load_tokenizer, train_tiny_tokenizer

SPLITS = ("train", "dev", "test")


@dataclass
class PreparedData:
    tokenizer: PreTrainedTokenizerFast
    label_names: tuple[str, ...]
    target_train: Batcher
    target_dev: Batcher
    target_test: Batcher
    source_train: Batcher | None
    source_language: str


def _example_texts(splits: Splits) -> list[str]:
    return [" ".join(getattr(e, "tokens", None) or [e.text]) for part in (splits.train, splits.dev, splits.test) for e in part]


def prepare_data(
    config: RunConfig, cache_dir: Path, *, progress: Callable[[str], None] | None = None
) -> PreparedData:
    source_language = resolve_source(config.source, config.target)
    languages = (config.target, source_language)
    fingerprints = {language: data_fingerprint(config, language) for language in languages}

    @lru_cache(maxsize=None)
    def raw(language: str) -> Splits:
        return load_splits(config, language)

    tokenizer = _tokenizer(config, cache_dir, fingerprints, raw)
    token_key = tokenizer_fingerprint(tokenizer)
    encode = encode_ner if config.task == "ner" else encode_sa

    def encoded(language: str, split: str):
        key = cache_key(
            data=fingerprints[language],
            split=split,
            tokenizer=token_key,
            max_length=config.max_length,
            task=config.task,
            labels=(config.label_format, config.text_column, config.label_column),
        )
        build = lambda: encode(getattr(raw(language), split), tokenizer, config.max_length)  # noqa: E731
        return cached_encoding(cache_dir / "encoded" / key, build, progress=progress)

    def batcher(dataset, size: int | None = None) -> Batcher:
        if size is not None:
            dataset = dataset.select(sample(list(range(len(dataset))), size, config.data_seed))
        return Batcher(dataset, tokenizer, config.task)

    # The target's splits are encoded first: a missing language fails before the source's work.
    target = {split: encoded(config.target, split) for split in SPLITS}
    source_train = (
        batcher(encoded(source_language, "train"), config.source_size) if config.uses_source else None
    )
    return PreparedData(
        tokenizer=tokenizer,
        label_names=NER_LABELS if config.task == "ner" else SA_LABELS,
        target_train=batcher(target["train"], config.target_size),
        target_dev=batcher(target["dev"]),
        target_test=batcher(target["test"]),
        source_train=source_train,
        source_language=source_language,
    )


def _tokenizer(config: RunConfig, cache_dir: Path, fingerprints: dict, raw) -> PreTrainedTokenizerFast:
    if config.model == PRETRAINED:
        # The pre-trained model's own multilingual vocabulary, as with XLM-R.
        return load_tokenizer(pretrained_model(config, cache_dir))
    if config.model != TINY:
        return load_tokenizer(config.model)
    # One tiny vocabulary per (target, source) pair, whatever the method, so that the
    # methods of an ablation share it like they would share a pre-trained model's.
    directory = cache_dir / "tokenizers" / cache_key(data=sorted(fingerprints.values()), max_length=config.max_length)
    if (directory / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(directory))
    texts = [text for language in fingerprints for text in _example_texts(raw(language))]
    # Parallel trials may train it at once: each saves privately and renames into place.
    partial = directory.with_name(f"{directory.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    train_tiny_tokenizer(texts, partial, max_length=config.max_length)
    try:
        partial.rename(directory)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(str(directory))
