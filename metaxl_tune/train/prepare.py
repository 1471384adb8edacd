"""Everything a run needs from the data: tokenizer, encoded splits (cached) and samples.

Raw files are parsed only when the cache lacks something: keys are built from cheap
fingerprints (file sizes and mtimes, generator version), so a cached search trial never
re-reads or re-tokenizes its data. Training splits are sampled before they are encoded (the
target's to ``target_size``, every source language's to ``source_size``, by ``data_seed``)
and the cache holds the sample, so memory and tokenizing follow the sizes asked, not the
files' (the splits are streams: `data.streams`). What a run actually uses (a split may hold
fewer examples than asked) is recorded in ``PreparedData.sizes``.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from transformers import PreTrainedTokenizerFast

from metaxl_tune.config import RunConfig
from metaxl_tune.data import NER_LABELS, SA_LABELS, SplitStreams, data_fingerprint, open_splits, sample_indices
from metaxl_tune.data.encoding import ENCODING_VERSION
from metaxl_tune.data.encoding import Batcher, cache_key, cached_encoding, encode_ner, encode_sa, tokenizer_fingerprint
from metaxl_tune.model.model_config import RANDOM_INIT
from metaxl_tune.model.pretrain import PRETRAINED, pretrained_model
from metaxl_tune.model.tokenizer import TOKENIZER_SAMPLE, load_tokenizer, tokenizer_texts, train_tiny_tokenizer

SPLITS = ("train", "dev", "test")


@dataclass
class PreparedData:
    tokenizer: PreTrainedTokenizerFast
    label_names: tuple[str, ...]
    target_train: Batcher
    target_dev: Batcher
    target_test: Batcher
    source_trains: list[Batcher]
    """One sampled training set per source language, in ``source_languages`` order (empty for
    target-only)."""
    source_languages: list[str]
    eval_max_length: int = 0
    """The sub-word length dev and test were encoded at (training splits: ``config.max_length``)."""

    @property
    def source_train(self) -> Batcher | None:
        """The first source language's training set (the only one for single-source runs)."""
        return self.source_trains[0] if self.source_trains else None

    @property
    def source_language(self) -> str:
        return ",".join(self.source_languages)

    def sizes(self) -> dict:
        """Examples actually used: ``{"source": {lang: n}, "target_train", "target_dev", "target_test"}``."""
        return {
            "source": {language: len(batcher) for language, batcher in zip(self.source_languages, self.source_trains)},
            "target_train": len(self.target_train),
            "target_dev": len(self.target_dev),
            "target_test": len(self.target_test),
        }


def size_params(sizes: dict) -> dict[str, int]:
    """``PreparedData.sizes()`` flattened into MLflow param names (``used.source_size.en``, ...)."""
    params = {f"used.source_size.{language}": count for language, count in sizes["source"].items()}
    params.update({
        "used.target_size": sizes["target_train"],
        "used.dev_size": sizes["target_dev"],
        "used.test_size": sizes["target_test"],
    })
    return params


def describe_sizes(sizes: dict) -> str:
    """One line for the console: what the run trains and evaluates on."""
    target = f"target {sizes['target_train']} train / {sizes['target_dev']} dev / {sizes['target_test']} test"
    sources = ", ".join(f"{language} {count}" for language, count in sizes["source"].items())
    return f"data: {target}" + (f"; source {sources}" if sources else "; no source data")


def _warn(message: str, progress: Callable[[str], None] | None) -> None:
    (progress or (lambda line: print(line, file=sys.stderr, flush=True)))(f"warning: {message}")


def _source_available(config: RunConfig, language: str) -> bool:
    # target-only never trains on source data, so a missing source folder is no error; the
    # hub and the synthetic generator have every language.
    return config.data in ("hub", "synthetic") or (Path(config.data) / language).is_dir()


def prepare_data(
    config: RunConfig, cache_dir: Path, *, progress: Callable[[str], None] | None = None,
    eval_max_length: int | None = None,
) -> PreparedData:
    """Training splits are encoded at ``max_length``, dev and test at ``eval_max_length``, as the
    reference's recipe trains at 200 sub-words and evaluates at 512, so long dev/test sentences
    are scored whole. ``eval_max_length`` is the length ``check_fit`` found the model takes
    (``ModelFit.eval_max_length``): a run and a search's data warm-up pass the one they already
    checked; only a caller that did not check (a test, a bench) leaves it to be checked here."""
    if eval_max_length is None:
        from metaxl_tune.model.fit import check_fit

        eval_max_length = check_fit(config).eval_max_length
    source_languages = config.source_languages if config.uses_source else []
    # The tiny tokenizer covers the sources even for target-only (when their data is there),
    # so the methods of an ablation share one vocabulary as they would share a pre-trained one.
    vocabulary_languages = [config.target] + [
        language for language in config.source_languages if config.uses_source or _source_available(config, language)
    ]
    fingerprints = {language: data_fingerprint(config, language) for language in vocabulary_languages}

    @lru_cache(maxsize=None)
    def raw(language: str) -> SplitStreams:
        splits = open_splits(config, language)
        if splits.note and progress is not None:
            progress(splits.note)  # read once per cache entry, so said when the files are read
        return splits

    tokenizer = _tokenizer(config, cache_dir, fingerprints, raw, progress)
    token_key = tokenizer_fingerprint(tokenizer)
    encode = encode_ner if config.task == "ner" else encode_sa

    def encoded(language: str, split: str, size: int | None = None):
        """The split encoded; a training split's seeded sample of ``size`` (None: all of it)."""
        length = config.max_length if split == "train" else eval_max_length
        sampled = {} if size is None else {"sample": (size, config.data_seed)}
        key = cache_key(
            data=fingerprints[language],
            split=split,
            tokenizer=token_key,
            max_length=length,
            task=config.task,
            encoding=ENCODING_VERSION,
            labels=(config.label_format_of(language), config.text_column, config.label_column),
            **sampled,
        )
        build = lambda: encode(_examples(raw(language), split, size, config.data_seed), tokenizer, length)  # noqa: E731
        return cached_encoding(cache_dir / "encoded" / key, build, progress=progress)

    def batcher(dataset, size: int | None = None, what: str = "", flag: str = "") -> Batcher:
        if size is not None and size > len(dataset):
            # Truthful sizes: say what is used instead of silently training on less.
            _warn(f"{what} holds {len(dataset)} examples, fewer than the {size} requested ({flag}); "
                  f"using {len(dataset)}", progress)
        return Batcher(dataset, tokenizer, config.task)

    # The target's splits are encoded first: a missing language fails before the source's work.
    target = {split: encoded(config.target, split, config.target_size if split == "train" else None) for split in SPLITS}
    source_trains = [
        batcher(encoded(language, "train", config.source_size), config.source_size, f"source {language} train",
                "--source-size")
        for language in source_languages
    ]
    return PreparedData(
        tokenizer=tokenizer,
        label_names=NER_LABELS if config.task == "ner" else SA_LABELS,
        target_train=batcher(target["train"], config.target_size, f"target {config.target} train", "--target-size"),
        target_dev=batcher(target["dev"]),
        target_test=batcher(target["test"]),
        source_trains=source_trains,
        source_languages=source_languages,
        eval_max_length=eval_max_length,
    )


def _examples(splits: SplitStreams, split: str, size: int | None, seed: int) -> list:
    """A whole split, or a training split's seeded sample: the same examples, in the same order,
    as sampling the whole split's list (``data.sample``), read without holding the rest."""
    stream = getattr(splits, split)
    if size is None:
        return list(stream)
    return stream.take(sample_indices(len(stream), size, seed))


def _tokenizer(config: RunConfig, cache_dir: Path, fingerprints: dict, raw,
               progress: Callable[[str], None] | None = None) -> PreTrainedTokenizerFast:
    if config.model == PRETRAINED:
        # The pre-trained model's own multilingual vocabulary, as with XLM-R.
        return load_tokenizer(pretrained_model(config, cache_dir))
    if config.model not in RANDOM_INIT:
        return load_tokenizer(config.model)
    # One tiny vocabulary per set of languages, whatever the method, so that the methods of
    # an ablation share it like they would share a pre-trained model's.
    directory = cache_dir / "tokenizers" / cache_key(data=sorted(fingerprints.values()), max_length=config.max_length,
                                                    sample=TOKENIZER_SAMPLE)
    if (directory / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(directory))
    texts = tokenizer_texts([raw(language) for language in fingerprints])
    if progress is not None:
        progress(f"training the tiny tokenizer on {len(texts)} sentences ({', '.join(fingerprints)}); cached for later runs")
    # Parallel trials may train it at once: each saves privately and renames into place.
    partial = directory.with_name(f"{directory.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    train_tiny_tokenizer(texts, partial, max_length=config.max_length)
    try:
        partial.rename(directory)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(str(directory))
