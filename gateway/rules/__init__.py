"""On-device rules: alarms (threshold, rate, stale, offline, fault codes, external sources)
and energy quotas, evaluated on every batch inside its commit transaction.

Importing this package registers the ``rules`` component (config key ``rules:``) and the
built-in alarm converters. See gateway/rules/README.md.
"""

from gateway.rules.component import RulesComponent
from gateway.rules.converters import AlarmSignal, register_converter, unregister_converter

__all__ = ["AlarmSignal", "RulesComponent", "register_converter", "unregister_converter"]
