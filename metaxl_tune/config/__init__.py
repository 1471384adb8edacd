"""The one typed run config, RunConfig, that flows CLI -> trial -> MLflow params -> `best` export -> `train`.

run_config.py holds the fields and their checks; files.py reads YAML configs and builds a
command's config (its errors naming the flag at fault); method_options.py refuses options a
method or task ignores; checkpoint_every.py parses checkpoint_every; identity.py gives a config's
stable id (the hash of its searched values). May import only common.
"""

from metaxl_tune.config.checkpoint_every import (  # noqa: F401
    DEFAULT_CHECKPOINT_EVERY,
    CheckpointEvery,
)
from metaxl_tune.config.run_config import (  # noqa: F401
    Task,
    Method,
    ThetaUpdate,
    RTNCombine,
    RTNInit,
    Hypergradient,
    LabelFormat,
    SourceStrategy,
    Precision,
    Attention,
    Placement,
    PLACEMENT_HELP,
    METHODS,
    RTN_METHODS,
    METHODS_USING,
    TASK_DEFAULTS,
    POSITIVE_FIELDS,
    TASKS_USING,
    ConfigError,
    ConfigFileError,
    RunConfig,
    format_validation_error,
    build_config,
)
from metaxl_tune.config.method_options import (  # noqa: F401
    ignored_by_method,
    refuse_ignored_options,
    ignored_by_task,
    refuse_task_ignored_options,
)
from metaxl_tune.config.files import (  # noqa: F401
    load_config,
    command_config,
    check_fields,
    read_text_file,
)
