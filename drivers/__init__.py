"""Protocol drivers. Each subpackage registers itself by name in :mod:`drivers.base`."""
