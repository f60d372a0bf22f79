"""Run configuration: the typed schema (:mod:`.schema`), its validation (:mod:`.validation`) and the task names
a config may give (:mod:`.task_names`), re-exported here as ``featdistill.config``."""

from .schema import (
    Alpha,
    CompareConfig,
    DataConfig,
    DistillConfig,
    DistillOptions,
    ModelConfig,
    OutputConfig,
    RunConfig,
    TeacherSpec,
    TrainConfig,
    check_key,
    load_config,
    parse_config,
)
from .validation import REQUIRED, ConfigError, apply_overrides, check_options, import_plugins, safe_yaml

__all__ = [
    "REQUIRED",
    "Alpha",
    "CompareConfig",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "DistillOptions",
    "ModelConfig",
    "OutputConfig",
    "RunConfig",
    "TeacherSpec",
    "TrainConfig",
    "apply_overrides",
    "check_key",
    "check_options",
    "import_plugins",
    "load_config",
    "parse_config",
    "safe_yaml",
]
