"""The error every config dataclass raises, shared by all rooms."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """Settings that cannot work, alone or together. The message names each setting by its
    config field or keyword argument (``node_threshold must be >= 0``); the command line
    rewrites those names into the flags that set them (``--node-threshold must be >= 0``)."""
