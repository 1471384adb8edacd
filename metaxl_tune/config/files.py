"""Building a RunConfig from values or a YAML file, with one line per problem.

A bad value names its origin (the file, or "config"), the field and what it accepts; built for
a command (``command_config``), a value its flags gave names the flag instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from metaxl_tune.common.origins import COMMAND_LINE, flag_for_field
from metaxl_tune.common.yaml_files import parse_yaml, read_yaml_text
from metaxl_tune.config.run_config import ConfigError, ConfigFileError, RunConfig, build_config, format_validation_error


def command_config(values: dict[str, Any], *, given: Any, config_file: str | Path | None = None) -> RunConfig:
    """The RunConfig of a command (train, search, ablate): ``values`` (its flags, over a preset's
    fields) over the YAML file ``config_file`` when one is named. An error about a value a flag
    gave (``given``: the flags' field names) names the flag (common.origins.flag_for_field); a
    config file's own bad value names the file, even where a flag overrides it: the file is what
    to change."""
    origin = str(config_file) if config_file is not None else COMMAND_LINE
    try:
        if config_file is not None:
            return load_config(config_file, values)
        return build_config(values, origin=origin)
    except ConfigFileError:
        raise
    except ConfigError as error:
        raise ConfigError(flag_for_field(str(error), given, origin)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (safe loading); ``overrides`` (e.g. CLI flags) replace its fields."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a config file" if path.is_dir() else "no such config file"
        raise ConfigError(f"{path}: {what}; --config needs a YAML file (e.g. one written by metaxl-tune best)")
    text = read_text_file(path, "--config needs a YAML file", ConfigError)
    values = parse_yaml(text, str(path), ConfigError) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: must be a mapping of config fields, not {type(values).__name__}")
    if not values:
        # An empty file trains on every default, which is never what naming a file asked for.
        raise ConfigError(f"{path}: the config file sets no field; write the fields to set "
                          "(e.g. a file written by metaxl-tune best) or drop --config")
    check_fields(values, origin=str(path))
    return build_config({**values, **(overrides or {})}, origin=str(path))


def check_fields(values: dict[str, Any], origin: str) -> None:
    """Every field of ``values`` alone: known names, types and ranges (not the checks across
    fields, which the flags that override some of them may still satisfy)."""
    try:
        RunConfig.model_validate(values)
    except ValidationError as error:
        # Field errors carry their field's location; the cross-field checks run only once every
        # field is valid, and carry none.
        if error.errors()[0]["loc"]:
            raise ConfigFileError(format_validation_error(error, origin)) from None


def read_text_file(path: str | Path, expected: str, error: type[ValueError] = ConfigError) -> str:
    """A user-named YAML file's content (at most common.yaml_files.MAX_YAML_BYTES), or one line
    naming the file when it cannot be read (not UTF-8, e.g. a binary file; unreadable; too
    large) -- ``expected`` says what it should be."""
    return read_yaml_text(path, expected, error)
