"""Configuration: a TOML file validated with pydantic.

An invalid config refuses to start. Every error names the field path
(``clusters[0].nodes[1].priority``) and the reason, so an operator can fix it
without reading the source. ``schema`` holds the sections and their rules,
``loading`` reads the file.
"""

from arbiter.config.arbiter import ArbiterSection
from arbiter.config.base import ConfigError
from arbiter.config.ha import HASection
from arbiter.config.listen import parse_listen
from arbiter.config.loading import from_dict, load
from arbiter.config.schema import (
    DEFAULT_ANNOUNCE,
    DEFAULT_FENCE,
    DEFAULT_RECOVER,
    APISection,
    ClusterConfig,
    Config,
    NodeConfig,
    SSHSection,
)

__all__ = [
    "DEFAULT_ANNOUNCE",
    "DEFAULT_FENCE",
    "DEFAULT_RECOVER",
    "APISection",
    "ArbiterSection",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "HASection",
    "NodeConfig",
    "SSHSection",
    "from_dict",
    "load",
    "parse_listen",
]
