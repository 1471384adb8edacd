"""The one typed run config that flows CLI -> trial -> MLflow params -> `best` export -> `train`.

Every field has a docstring (shown by ``metaxl-tune train --help``) and is validated when the
config is built, so a bad value fails before any data is read or any model is loaded, with
one line naming the field and what it accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from metaxl_tune.languages import RELATED_SOURCE, is_language_code

Task = Literal["ner", "sa"]
Method = Literal["target-only", "jt", "jt-rtn", "metaxl"]
ThetaUpdate = Literal["algorithm1", "recompute"]
LabelFormat = Literal["auto", "binary", "stars", "polarity"]
# An RTN placement: a layer index (0 = after the embeddings, k = after encoder layer k) or a
# depth-relative name, resolved against the model when it is built ("middle" = depth // 2).
Placement = Union[int, Literal["middle", "last"]]

METHODS: tuple[str, ...] = ("target-only", "jt", "jt-rtn", "metaxl")
RTN_METHODS: frozenset[str] = frozenset({"jt-rtn", "metaxl"})

# Paper protocol (DESIGN.md section 2) per task: batch, max length, RTN bottleneck, source size.
TASK_DEFAULTS: dict[str, dict[str, int]] = {
    "ner": {"batch_size": 16, "max_length": 200, "rtn_bottleneck": 384, "source_size": 5000},
    "sa": {"batch_size": 12, "max_length": 256, "rtn_bottleneck": 192, "source_size": 1000},
}


class ConfigError(ValueError):
    """A config value is invalid; the message is one line naming the field to change."""


class RunConfig(BaseModel):
    """Everything that determines one training run (and so one search trial)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    task: Task = "ner"
    """Task: 'ner' (WikiAnn entity F1) or 'sa' (positive-class F1)."""
    target: str = "tk"
    """Target (low-resource) language code, e.g. tk, qu, fa."""
    source: str = "en"
    """Source language: a language code, 'en', or 'related' (paper Table 1: tk->tr, qu->es, ...)."""
    method: Method = "metaxl"
    """Training method: target-only, jt (joint training), jt-rtn (JT with RTN, plain SGD) or metaxl."""
    model: str = "xlm-roberta-base"
    """Encoder: a Hugging Face hub name, a local directory, 'tiny' (random-init, offline) or
    'tiny-pretrained' (tiny, pre-trained offline by MLM on the synthetic languages; built once, cached)."""
    data: str = "hub"
    """Data: 'hub' (WikiAnn from the Hugging Face hub), 'synthetic', or a local directory."""
    label_format: LabelFormat = "auto"
    """SA label format: auto (detect), binary (positive/negative or 0/1), stars (MARC 1-5), polarity (-2..2)."""
    text_column: str | None = None
    """SA text column name (default: detect text, review_body, sentence, review)."""
    label_column: str | None = None
    """SA label column name (default: detect label, stars, polarity, sentiment)."""
    rtn_layers: list[Placement] = Field(default_factory=lambda: ["last"])
    """RTN placements: layer indices (0 = after embeddings) or 'middle'/'last', e.g. [0, 'last']."""
    rtn_bottleneck: int | None = None
    """RTN bottleneck size r (default: 384 for NER, 192 for SA)."""
    rtn_gate: bool = False
    """RTN with a sigmoid gate: the RTN outputs d+1 units, the last one gates the other d."""
    rtn_detach_input: bool = False
    """Feed the RTN a detached hidden state, as the reference code does (the residual keeps the
    gradient path). With several placements the detach also cuts phi's path through later RTN
    inputs, so phi's gradient is then a surrogate rather than the exact hypergradient."""
    lr: float = 3e-5
    """Main (encoder) learning rate for Adam with linear warm-up."""
    meta_lr: float = 3e-5
    """Meta learning rate beta for the RTN's Adam optimizer."""
    lookahead_lr: float | None = None
    """Look-ahead step size alpha for theta' (default: the main optimizer's current lr)."""
    portion: int = 2
    """Split of the target batch: 1/portion is the meta batch, the rest joins the training loss."""
    theta_update: ThetaUpdate = "algorithm1"
    """theta update: 'algorithm1' reuses the source gradient; 'recompute' re-runs it with the new phi."""
    warmup_ratio: float = 0.1
    """Fraction of all steps spent in linear learning-rate warm-up (both optimizers)."""
    max_grad_norm: float | None = 10.0
    """Clip the theta gradient to this norm before the main step (reference code: 10); null = off."""
    epochs: int = 20
    """Training epochs; the epoch with the best dev F1 is reported."""
    batch_size: int | None = None
    """Examples per source and per target batch (default: 16 for NER, 12 for SA)."""
    max_length: int | None = None
    """Maximum sub-word sequence length (default: 200 for NER, 256 for SA)."""
    source_size: int | None = None
    """Source training examples sampled (default: 5000 for NER, 1000 for SA)."""
    target_size: int = 100
    """Target training examples sampled."""
    seed: int = 42
    """Seed for model initialisation, RTN, dropout and batch order."""
    data_seed: int = 42
    """Seed for sampling the source and target training sets."""
    device: str = "auto"
    """Device: auto (cuda if available), cpu, cuda or cuda:N."""

    @field_validator("target")
    @classmethod
    def _target_is_code(cls, value: str) -> str:
        if not is_language_code(value):
            raise ValueError(f"must be a language code such as tk or qu (got {value!r})")
        return value

    @field_validator("source")
    @classmethod
    def _source_is_code(cls, value: str) -> str:
        if value != "related" and not is_language_code(value):
            raise ValueError(f"must be a language code, 'en' or 'related' (got {value!r})")
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

    @model_validator(mode="after")
    def _cross_field_checks(self) -> "RunConfig":
        positive = {
            "rtn_bottleneck": self.rtn_bottleneck,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "source_size": self.source_size,
            "target_size": self.target_size,
            "portion": self.portion,
        }
        for name, value in positive.items():
            if value is None or value < 1:
                raise _field_error(name, f"must be a positive integer (got {value})")
        for name in ("lr", "meta_lr"):
            if getattr(self, name) <= 0:
                raise _field_error(name, f"must be > 0 (got {getattr(self, name)})")
        if self.lookahead_lr is not None and self.lookahead_lr <= 0:
            raise _field_error("lookahead_lr", f"must be > 0 or null (got {self.lookahead_lr})")
        if not 0 <= self.warmup_ratio < 1:
            raise _field_error("warmup_ratio", f"must be in [0, 1) (got {self.warmup_ratio})")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise _field_error("max_grad_norm", f"must be > 0 or null (got {self.max_grad_norm})")
        if self.portion > self.batch_size:
            raise _field_error(
                "portion", f"must be <= batch_size ({self.batch_size}) so the meta batch is not empty"
            )
        if self.source == "related" and self.target not in RELATED_SOURCE:
            known = ", ".join(f"{t}->{s}" for t, s in RELATED_SOURCE.items())
            raise _field_error(
                "source", f"'related' is defined for {known}; pass a language code for {self.target}"
            )
        if self.source == self.target:
            raise _field_error("source", f"must differ from target ({self.target})")
        return self

    # ---- convenience ---------------------------------------------------------------------

    @property
    def uses_rtn(self) -> bool:
        return self.method in RTN_METHODS

    @property
    def uses_source(self) -> bool:
        return self.method != "target-only"

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


def _field_error(field: str, message: str) -> ValueError:
    return ValueError(f"{field}: {message}")


def format_validation_error(error: ValidationError, origin: str = "config") -> str:
    """One line for the first problem: ``origin: field: what is allowed``."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown field (known: {', '.join(RunConfig.model_fields)})"
    elif first["type"] == "literal_error":
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


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (safe loading); ``overrides`` (e.g. CLI flags) replace its fields."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: must be a mapping of config fields, not {type(values).__name__}")
    return build_config({**values, **(overrides or {})}, origin=str(path))
