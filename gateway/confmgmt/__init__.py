"""Remote configuration: managed config versions with a health gate, rollback, history and
a boot record (see docs/fleet.md, "Remote configuration").

- :mod:`gateway.confmgmt.versions`: the files under ``<state_dir>/config`` (atomic writes).
- :mod:`gateway.confmgmt.boot`: which file the daemon runs, and the crash-loop rollback.
- :mod:`gateway.confmgmt.component`: the ``config.*`` commands and the health gate.
- :mod:`gateway.confmgmt.diff`: the readable diff of two configs.
"""
