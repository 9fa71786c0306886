"""The one place the running config lives (issue 33).

A reload used to assign the new config unit by unit (``observer.config = fencer.config
= …``): a unit left out of that line kept the old config, and no test noticed. Every
unit of the round now reads ``config`` from one ``CurrentConfig``, which the reload
swaps once. A unit built on its own (tests, tools) may still be handed a plain
``Config``: it gets a holder of its own.
"""

from __future__ import annotations

from arbiter.config import Config


class CurrentConfig:
    def __init__(self, config: Config):
        self._config = config

    @property
    def config(self) -> Config:
        return self._config

    def swap(self, config: Config) -> None:
        self._config = config


def holder(source: Config | CurrentConfig) -> CurrentConfig:
    return source if isinstance(source, CurrentConfig) else CurrentConfig(source)


class ReadsConfig:
    """A unit that reads the running config: ``self.config`` is always the current one."""

    _current: CurrentConfig

    @property
    def config(self) -> Config:
        return self._current.config
