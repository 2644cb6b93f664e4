"""The local HTTP API, technician dashboard, ``/metrics`` and health endpoints (aiohttp).

It reads the same command registry and device status as MQTT and the CLI, and sees the data
through one pipeline observer that keeps the last value of each point: it never sits on the
polling path. See docs/http-api.md.

The component registers from :mod:`gateway.http.component`; this package itself imports
nothing, so ``fieldgate --help`` (which installs :mod:`gateway.http.cli`) stays light.
"""
