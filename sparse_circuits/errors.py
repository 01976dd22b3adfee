"""The error every config dataclass raises and the warning of a result likely to mislead,
shared by all rooms."""

from __future__ import annotations

__all__ = ["ConfigError", "CircuitWarning"]


class ConfigError(ValueError):
    """Settings that cannot work, alone or together. The message names each setting by its
    config field or keyword argument (``node_threshold must be >= 0``); the command line
    rewrites those names into the flags that set them (``--node-threshold must be >= 0``)."""


class CircuitWarning(UserWarning):
    """A result that is computed right but likely to mislead (an ill-conditioned faithfulness,
    a circuit carried by its error nodes). The message is one line: what was measured, the
    likely cause and the remedy; the command line prints it as ``warning: ...``."""
