"""config.get and config.apply over the HTTP API of a real daemon (the demo site): the
change is recorded with the HTTP principal that made it."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.http.support import running_site, wait_until


def test_apply_over_http_records_the_user(tmp_path: Path) -> None:
    with running_site(tmp_path) as site:
        ops = site.client(token="ops-robot")
        got = ops.post("/api/v1/commands/config.get").json()
        assert got["ok"], got
        running = got["result"]
        assert "password_hash" in running["yaml"] and "scrypt" not in running["yaml"]
        text = site.config.read_text() + "# checked by the night shift\n"
        reply = ops.post("/api/v1/commands/config.apply",
                         {"yaml": text, "expected_hash": running["hash"],
                          "confirm": "manual"}).json()
        assert reply["ok"], reply
        assert reply["result"]["summary"] == "formatting only"

        def version_2() -> dict[str, object] | None:
            history = ops.post("/api/v1/commands/config.history").json()
            if not history.get("ok"):
                return None  # the reload is under way
            return next((v for v in history["result"]["versions"] if v["version"] == 2),
                        None)

        record = wait_until(version_2, 30, what="version 2 in the history")
        assert record["source"] == "config.apply via http token ops-robot"
        confirmed = wait_until(
            lambda: ops.post("/api/v1/commands/config.confirm", {"version": 2}).json()
            .get("ok"), 30, what="config.confirm once the reload is done")
        assert confirmed
