"""Config: one YAML file, validated with pydantic v2.

Import :func:`gateway.config.loader.load_config` and :mod:`gateway.config.site` directly; this
package stays import-light because drivers import :mod:`gateway.config.base`.
"""

from gateway.config.errors import EX_CONFIG, ConfigError, ConfigIssue

__all__ = ["EX_CONFIG", "ConfigError", "ConfigIssue"]
