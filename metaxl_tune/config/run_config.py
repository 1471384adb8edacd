"""The one typed run config that flows CLI -> trial -> MLflow params -> `best` export -> `train`.

Every field has a docstring (shown by ``metaxl-tune train --help``) and is validated when the
config is built, so a bad value fails before any data is read or any model is loaded, with
one line naming the field and what it accepts.

Over ~400 lines as one job, the fields and their checks: each field's docstring is its flag's
help (CLI flags are generated from them), and pydantic's validators live in the model's own
class, so what every field accepts is read in one place. Building a config from files and
flags is files.py's job; the options a method ignores, method_options.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from metaxl_tune.config.checkpoint_every import DEFAULT_CHECKPOINT_EVERY, CheckpointEvery
from metaxl_tune.common.languages import RELATED_SOURCE, is_language_code, synthetic_language_problem

Task = Literal["ner", "sa"]
Method = Literal["target-only", "jt", "jt-rtn", "metaxl"]
ThetaUpdate = Literal["algorithm1", "recompute"]
RTNCombine = Literal["mixture", "stack"]
RTNInit = Literal["xavier-normal", "xavier-uniform"]
Hypergradient = Literal["exact", "finite-difference"]
LabelFormat = Literal["auto", "binary", "stars", "polarity"]
SourceStrategy = Literal["mixed", "sequential", "round-robin", "uniform", "bandit"]
Precision = Literal["fp32", "bf16", "fp16"]
Attention = Literal["sdpa", "eager"]
# An RTN placement: a layer index (0 = after the embeddings, k = after encoder layer k) or a
# depth-relative name, resolved against the model when it is built ("middle" = depth // 2).
Placement = Union[int, Literal["middle", "last"]]

PLACEMENT_HELP = (
    "use layer indices 0..N (0 = after the embeddings, N = the encoder's depth, e.g. 12 for "
    "xlm-roberta-base, 4 for tiny), middle or last"
)

METHODS: tuple[str, ...] = ("target-only", "jt", "jt-rtn", "metaxl")
RTN_METHODS: frozenset[str] = frozenset({"jt-rtn", "metaxl"})

# Fields only some methods read (bilevel.Learner, trainer.Run); every other method ignores
# them. RTN fields: the RTN and its optimizer (jt-rtn trains phi by plain SGD on the joint
# loss, paper section 4.4). MetaXL fields: the look-ahead step and target split of Algorithm 1,
# the detached RTN input and theta's clipping (the reference's step_metaxl detaches and clips;
# step_jt_metaxl, step_gold_only and step_gold_mix do neither). jt_rtn_residual: JT w/ RTN only.
# Source fields: target-only never reads source data.
METHODS_USING: dict[str, tuple[str, ...]] = {
    **{
        name: ("jt-rtn", "metaxl")
        for name in (
            "rtn_layers", "rtn_bottleneck", "rtn_gate", "meta_lr", "rtn_per_source", "rtn_combine", "finetune_epochs",
            "rtn_init",
        )
    },
    **{
        name: ("metaxl",)
        for name in ("lookahead_lr", "portion", "theta_update", "hypergradient", "rtn_detach_input", "max_grad_norm")
    },
    "jt_rtn_residual": ("jt-rtn",),
    **{
        name: ("jt", "jt-rtn", "metaxl")
        for name in ("source", "source_size", "source_strategy", "source_label_format")
    },
}

# Paper protocol (DESIGN.md section 2) per task: batch, max length, RTN bottleneck, source size;
# the evaluation length is the reference recipe's (NER: --train_max_seq_length 200 for training,
# --max_seq_length 512 for dev/test; SA: 256 for both).
TASK_DEFAULTS: dict[str, dict[str, int]] = {
    "ner": {"batch_size": 16, "max_length": 200, "eval_max_length": 512, "rtn_bottleneck": 384, "source_size": 5000},
    "sa": {"batch_size": 12, "max_length": 256, "eval_max_length": 256, "rtn_bottleneck": 192, "source_size": 1000},
}


# Integer fields that must be >= 1. The task-dependent ones are None only until the task's
# defaults fill them (RunConfig._task_defaults), so a None that reaches the check is an error.
POSITIVE_FIELDS: tuple[str, ...] = (
    "rtn_bottleneck", "epochs", "batch_size", "max_length", "eval_max_length", "source_size", "target_size", "portion",
)

INTEGER_BOUNDS: dict[str, tuple[int | None, int]] = {
    # Seeds feed torch, NumPy and Python generators: 32 bits is what all of them take whole.
    "seed": (0, 2**32 - 1),
    "data_seed": (0, 2**32 - 1),
    # Past these no value can be meant: an epoch count of 2**63 trains for ever, a batch of 2**63
    # examples grows memory until the machine stops (each is said at parse time, naming the flag).
    "epochs": (1, 10_000),
    "finetune_epochs": (None, 10_000),  # its lower bound depends on the method (_cross_field_checks)
    "batch_size": (1, 4_096),
    "source_size": (1, 10_000_000),
    "target_size": (1, 10_000_000),
}
"""Inclusive ranges of integer fields (the model-dependent ones, rtn_bottleneck and the lengths,
are checked against the model by model/fit.py)."""
RATE_FLOOR = 1e-12
"""The smallest learning rate accepted (lr, meta_lr, lookahead_lr): below it an fp32 step of a
unit-scale weight rounds to nothing, so a run would "train" at an effective rate of 0."""

# Fields only one task reads: the SA readers' label formats and columns (data/sa.py). An NER
# run would accept them and change nothing, so they are refused as a method's ignored fields are.
TASKS_USING: dict[str, tuple[str, ...]] = {
    name: ("sa",) for name in ("label_format", "source_label_format", "text_column", "label_column")
}


class ConfigError(ValueError):
    """A config value is invalid; the message is one line naming the field to change."""


class ConfigFileError(ConfigError):
    """A config file's own value is invalid (whatever flags override it): the file is to change."""


class RunConfig(BaseModel):
    """Everything that determines one training run (and so one search trial)."""

    # allow_inf_nan=False: a NaN or infinite rate, decay or norm is refused when parsed, naming the
    # field, instead of surfacing as a diverged run or a PyTorch error after the data is tokenized.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)

    task: Task = "ner"
    """Task: 'ner' (WikiAnn entity F1) or 'sa' (positive-class F1)."""
    target: str = "tk"
    """Target (low-resource) language code, e.g. tk, qu, fa."""
    source: str = "en"
    """Source language(s): a code, 'related' (paper Table 1: tk->tr, qu->es, ...) or a comma list
    such as 'en,tr' or 'en,related'; each source language is sampled to source_size."""
    source_strategy: SourceStrategy = "mixed"
    """Several source languages: mixed (default, the reference's: every language's sample joined into
    one set, shuffled each epoch, so a batch mixes languages and one RTN serves them all), or one
    language per batch (our extensions): sequential (one language's batches after another each
    epoch), round-robin, uniform (seeded draw) or bandit (EXP3 rewarded by the meta-loss decrease).
    With one source language all of them are the same."""
    rtn_per_source: bool = False
    """One RTN per source language instead of one shared RTN (our extension; needs a one-language-per-
    batch source_strategy). The reference's --meta_per_lang builds one RTN set per language but its
    merged loader always passes set 0, so the other sets never train; with mixed and several source
    languages this flag is refused rather than restated."""
    method: Method = "metaxl"
    """Training method: target-only, jt (joint training), jt-rtn (JT with RTN, plain SGD) or metaxl."""
    model: str = "xlm-roberta-base"
    """Encoder: a Hugging Face hub name, a local directory, 'tiny' (random-init, offline),
    'tiny-pretrained' (tiny, pre-trained offline by MLM on the synthetic languages; built once, cached)
    or 'base-random' (xlm-roberta-base's shape, random-init, offline: for cost measurements)."""
    data: str = "hub"
    """Data: 'hub' (WikiAnn from the Hugging Face hub), 'synthetic', or a local directory."""
    label_format: LabelFormat = "auto"
    """SA label format: auto (detect), binary (positive/negative or 0/1), stars (MARC 1-5), polarity (-2..2)."""
    source_label_format: LabelFormat | None = None
    """SA label format of the source language(s) (default: label_format), e.g. stars for a MARC
    source under a SentiPers (polarity) target; auto detects it per language."""
    text_column: str | None = None
    """SA text column name (default: detect text, review_body, sentence, review)."""
    label_column: str | None = None
    """SA label column name (default: detect label, stars, polarity, sentiment)."""
    rtn_layers: list[Placement] = Field(default_factory=lambda: ["last"])
    """RTN placements: layer indices (0 = after embeddings) or 'middle'/'last', e.g. [0, 'last']."""
    rtn_bottleneck: int | None = None
    """RTN bottleneck size r (default: 384 for NER, 192 for SA); at most 4 x the model's hidden size
    (or the task default, where that is larger: tiny's hidden size is 64)."""
    rtn_gate: bool = True
    """RTN with a sigmoid gate: the RTN outputs d+1 units and sigmoid of the last one scales the other
    d (default true: the reference recipe's --tied --transfer_component_add_weights); false = ungated."""
    rtn_detach_input: bool = True
    """MetaXL only (jt-rtn never detaches, as step_jt_metaxl). Feed the RTN a detached hidden state,
    h + g(h.detach()) (default true: the reference's step_metaxl; the residual keeps theta's gradient
    path). false = h + g(h): theta's gradient also flows through g's Jacobian, and with several
    stacked placements phi's gradient reaches the later RTN inputs (with the detach, phi's gradient
    there is the reference's surrogate)."""
    rtn_init: RTNInit = "xavier-normal"
    """RTN weight initialisation, biases zero: xavier-normal (the reference's Raptors.init_weights)
    or xavier-uniform."""
    rtn_combine: RTNCombine = "mixture"
    """Several placements: 'mixture' (reference) runs the source batch through the encoder once, re-runs
    the layers above each placement with that placement's RTN alone and mixes the losses by softmax of
    learned logits; 'stack' applies every RTN in one chained forward. Identical for one placement."""
    jt_rtn_residual: bool = False
    """JT w/ RTN only: add the RTN output to the hidden state (h + g(h), the paper's RTN form, as
    MetaXL does) instead of replacing h by it. Default false is the reference's (mlt.py:
    step_jt_metaxl hands the RTN output, gated with rtn_gate, to the layers above)."""
    hypergradient: Hypergradient = "exact"
    """phi's gradient in MetaXL: 'exact' (second-order, through theta') or 'finite-difference' (DARTS
    central difference, no second-order graph)."""
    lr: float = 3e-5
    """Main (encoder) learning rate for Adam with linear warm-up (at least 1e-12)."""
    meta_lr: float = 3e-5
    """Meta learning rate beta for the RTN's Adam optimizer (at least 1e-12)."""
    lookahead_lr: float | None = None
    """Look-ahead step size alpha for theta' (default: the main optimizer's current lr; at least 1e-12)."""
    portion: int = 2
    """Split of the target batch (reference): the first n // portion examples join the training loss,
    the rest are the meta batch; portion 1 (our extension) sends all of it to the meta batch."""
    theta_update: ThetaUpdate = "recompute"
    """theta update: 'recompute' (the reference's step_metaxl) steps theta on the training loss
    recomputed with the updated phi (only the layers above the RTN re-run); 'algorithm1' (the paper's
    Algorithm 1) reuses the gradient taken at the old phi."""
    warmup_ratio: float = 0.1
    """Fraction of all steps spent in linear learning-rate warm-up (both optimizers)."""
    weight_decay: float = 5e-4
    """L2 weight decay of both Adam optimizers (theta's and phi's), as in the reference (5e-4)."""
    max_grad_norm: float | None = 10.0
    """MetaXL only: clip the theta gradient to this norm before the main step (reference step_metaxl:
    10); null = off. target-only, jt and jt-rtn never clip, as the reference's steps for them."""
    epochs: int = 20
    """Training epochs (1 to 10,000); the epoch with the best dev F1 is reported."""
    finetune_epochs: int = 0
    """Back-off fine-tuning (paper 4.6; reference --do_finetune): epochs run after the MetaXL/JT-RTN
    epochs on source + target with the RTN applied and frozen, starting (as the reference) from the
    best-dev epoch's theta and phi; best dev epoch picked over both stages."""
    batch_size: int | None = None
    """Examples per source and per target batch (default: 16 for NER, 12 for SA; at most 4,096)."""
    max_length: int | None = None
    """Maximum sub-word sequence length of the training batches (default: 200 for NER, 256 for SA); at
    most the model's position embeddings (512 for XLM-R), 4096 for tiny (which sizes its table from it)."""
    eval_max_length: int | None = None
    """Maximum sub-word length of the dev and test sentences (default: the reference's 512 for NER,
    256 for SA); capped, with a notice, to the model's position embeddings. Words past it count as O."""
    source_size: int | None = None
    """Source training examples sampled per source language (default: 5000 for NER, 1000 for SA; at most 10,000,000)."""
    target_size: int = 100
    """Target training examples sampled (at most 10,000,000)."""
    seed: int = 42
    """Seed for model initialisation, RTN, dropout and batch order (0 to 2**32 - 1)."""
    data_seed: int = 42
    """Seed for sampling the source and target training sets (0 to 2**32 - 1)."""
    device: str = "auto"
    """Device: auto (cuda if available), cpu, cuda or cuda:N."""
    checkpoint_every: str = DEFAULT_CHECKPOINT_EVERY
    """Resume checkpoints: every N epochs ('2') or at the first epoch end N minutes after the last
    ('10m', the default: every epoch or 10 minutes, whichever is later); always the final epoch."""
    model_artifacts: bool = True
    """Upload the best-dev weights (best/best.safetensors) to the trial's MLflow run when it ends."""
    precision: Precision = "fp32"
    """Forward precision: fp32 (exact), bf16 or fp16 autocast (fp32 master weights; fp16 adds loss scaling)."""
    attention: Attention = "sdpa"
    """Attention kernels: sdpa (fused where only first-order gradients are taken) or eager everywhere."""

    @field_validator("target")
    @classmethod
    def _target_is_code(cls, value: str) -> str:
        if not is_language_code(value):
            raise ValueError(f"must be a language code such as tk or qu (got {value!r})")
        return value

    @field_validator("source")
    @classmethod
    def _source_is_code(cls, value: str) -> str:
        for part in value.split(","):
            if part != "related" and not is_language_code(part):
                raise ValueError(f"must be language codes or 'related', comma-separated, e.g. en,tr (got {value!r})")
        return value

    @field_validator("rtn_layers", mode="before")
    @classmethod
    def _layers_are_placements(cls, value: Any) -> Any:
        # Checked before pydantic's union matching, whose own wording ("rtn_layers.0.int: Input
        # should be a valid integer") names neither the field's flag nor the allowed names.
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list of placements such as [last] or [0, last] (got {value!r})")
        for layer in value:
            if not _is_placement(layer):
                raise ValueError(f"{layer!r} is not a placement; {PLACEMENT_HELP}")
        return value

    @field_validator("rtn_layers")
    @classmethod
    def _layers_valid(cls, value: list[Placement]) -> list[Placement]:
        if not value:
            raise ValueError("needs at least one placement, e.g. [last] or [0, last]")
        for layer in value:
            if isinstance(layer, int) and layer < 0:
                raise ValueError(f"layer indices start at 0 (after the embeddings); got {layer}")
        if len(set(map(str, value))) != len(value):
            raise ValueError(f"lists a placement twice: {value}")
        return value

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _checkpoint_every_valid(cls, value: Any) -> str:
        return str(CheckpointEvery.parse(value))

    @field_validator("device")
    @classmethod
    def _device_valid(cls, value: str) -> str:
        head, _, index = value.partition(":")
        if head not in {"auto", "cpu", "cuda"} or (index and (head != "cuda" or not index.isdigit())):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N (got {value!r})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, values: Any) -> Any:
        # Fill the task-dependent defaults here so that a dumped config holds the resolved
        # numbers and reloads to the identical object.
        if not isinstance(values, dict):
            return values
        task = values.get("task", "ner")
        defaults = TASK_DEFAULTS.get(task, {})
        return {**values, **{k: v for k, v in defaults.items() if values.get(k) is None}}

    @field_validator(*POSITIVE_FIELDS)
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        # Single-field ranges are field validators, so that a config file's own values are
        # checked whole even where a flag later overrides them (load_config).
        if value is None or value < 1:
            raise ValueError(f"must be a positive integer (got {value})")
        return value

    @field_validator(*INTEGER_BOUNDS)
    @classmethod
    def _within_bounds(cls, value: int | None, info: Any) -> int | None:
        low, high = INTEGER_BOUNDS[info.field_name]
        if value is not None and value > high:
            raise ValueError(f"must be at most {high:,} (got {value})")
        if value is not None and low is not None and value < low:
            raise ValueError(f"must be in [{low}, {high:,}] (got {value})")
        return value

    @field_validator("lr", "meta_lr")
    @classmethod
    def _above_zero(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"must be > 0 (got {value})")
        if value < RATE_FLOOR:
            raise ValueError(f"must be >= {RATE_FLOOR:g}, the smallest rate that still moves a weight (got {value:g})")
        return value

    @field_validator("lookahead_lr", "max_grad_norm")
    @classmethod
    def _above_zero_or_null(cls, value: float | None, info: Any) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"must be > 0 or null (got {value})")
        if value is not None and info.field_name == "lookahead_lr" and value < RATE_FLOOR:
            raise ValueError(f"must be >= {RATE_FLOOR:g}, the smallest rate that still moves a weight (got {value:g})")
        return value

    @field_validator("weight_decay")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"must be >= 0 (got {value})")
        return value

    @field_validator("warmup_ratio")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError(f"must be in [0, 1) (got {value})")
        return value

    @model_validator(mode="after")
    def _cross_field_checks(self) -> "RunConfig":
        if self.portion > self.batch_size:
            raise _field_error(
                "portion", f"must be <= batch_size ({self.batch_size}) so the training share n // portion is not empty"
            )
        if "related" in self.source.split(",") and self.target not in RELATED_SOURCE:
            known = ", ".join(f"{t}->{s}" for t, s in RELATED_SOURCE.items())
            raise _field_error(
                "source", f"'related' is defined for {known}; pass a language code for {self.target}"
            )
        languages = self.source_languages
        if len(set(languages)) != len(languages):
            raise _field_error("source", f"names a language twice once 'related' is resolved ({','.join(languages)})")
        if self.target in languages:
            raise _field_error("source", f"must differ from target ({self.target})")
        if self.data == "synthetic":
            # Sources too, even for target-only: the tiny tokenizer reads them where they exist.
            for field, language in (("target", self.target), *(("source", language) for language in languages)):
                problem = synthetic_language_problem(language)
                if problem:
                    raise _field_error(field, problem)
        if self.rtn_per_source and self.uses_rtn and self.source_strategy == "mixed" and len(languages) > 1:
            raise _field_error(
                "rtn_per_source",
                "needs batches of one language, but source_strategy mixed (the default) mixes them (the reference then "
                "uses RTN set 0 for all); drop --rtn-per-source or pass --source-strategy sequential, "
                "round-robin, uniform or bandit",
            )
        if self.finetune_epochs < 0 or (self.finetune_epochs and not self.uses_rtn):
            raise _field_error(
                "finetune_epochs",
                f"must be 0, or >= 1 with an RTN method (jt-rtn, metaxl); got {self.finetune_epochs} with {self.method}",
            )
        return self

    # ---- convenience ---------------------------------------------------------------------

    @property
    def uses_rtn(self) -> bool:
        return self.method in RTN_METHODS

    def label_format_of(self, language: str) -> str:
        """The SA label format ``language``'s files are read with: the target's, or the sources'."""
        if language == self.target or self.source_label_format is None:
            return self.label_format
        return self.source_label_format

    def label_format_flag(self, language: str) -> str:
        """The flag that sets ``language``'s label format, for error messages."""
        return "--label-format" if language == self.target else "--source-label-format"

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole run: the training stage, then the back-off fine-tuning stage."""
        return self.epochs + self.finetune_epochs

    @property
    def rtn_residual(self) -> bool:
        """h + g(h) (metaxl; jt-rtn with jt_rtn_residual), or g(h) replacing h (jt-rtn, the reference's)."""
        return self.method != "jt-rtn" or self.jt_rtn_residual

    @property
    def rtn_detached(self) -> bool:
        """Whether the RTN reads a detached hidden state: only MetaXL's (rtn_detach_input); JT w/ RTN
        back-propagates through it (reference step_jt_metaxl)."""
        return self.method == "metaxl" and self.rtn_detach_input

    @property
    def uses_source(self) -> bool:
        return self.method != "target-only"

    @property
    def source_languages(self) -> list[str]:
        """The source language codes, in the order given, with 'related' resolved (Table 1)."""
        return [RELATED_SOURCE[self.target] if part == "related" else part for part in self.source.split(",")]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    def replace(self, **changes: Any) -> "RunConfig":
        """A new validated config with ``changes`` applied (task defaults re-resolved if task changes)."""
        values = self.to_dict()
        if "task" in changes and changes["task"] != self.task:
            for key in TASK_DEFAULTS[self.task]:
                if values.get(key) == TASK_DEFAULTS[self.task][key] and key not in changes:
                    values[key] = None
        values.update(changes)
        return build_config(values)


def _is_placement(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and (value.strip() in ("middle", "last") or value.strip().isdigit())


def _field_error(field: str, message: str) -> ValueError:
    return ValueError(f"{field}: {message}")


def format_validation_error(error: ValidationError, origin: str = "config") -> str:
    """One line for the first problem: ``origin: field: what is allowed (got value)``."""
    first = error.errors()[0]
    # Pydantic's location runs into union branches ("rtn_layers.0.int"); the field is what the
    # user can change, and the list index is kept for list fields.
    parts = [str(part) for part in first["loc"]]
    location = ".".join(parts[:2] if len(parts) > 1 and parts[1].isdigit() else parts[:1])
    message = first["msg"].removeprefix("Value error, ")
    kind = first["type"]
    if kind == "extra_forbidden":
        message = f"unknown field (known: {', '.join(RunConfig.model_fields)})"
    elif kind not in ("value_error", "missing") and not isinstance(first.get("input"), dict):
        # Type and choice errors: pydantic's wording does not repeat the rejected value.
        message = f"{message} (got {first['input']!r})"
    if not location:
        return f"{origin}: {message}"
    return f"{origin}: {location}: {message}"


def build_config(values: dict[str, Any], origin: str = "config") -> RunConfig:
    """Validate ``values`` into a RunConfig; raise ConfigError with one line on failure."""
    try:
        return RunConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, origin)) from None
