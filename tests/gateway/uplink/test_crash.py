"""kill -9 the gateway process while it forwards: nothing committed is lost, the last will
goes out, and a birth message follows each restart."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Sample
from gateway.store import Store
from gateway.store.db import SEQ_GAP_EVENT, read_stats
from gateway.store.seqmark import read_mark
from tests.gateway.uplink.helpers import BASE, GW, site
from tests.gateway.uplink.wirecheck import Received, WireRecorder
from tests.support.app import write_config
from tests.support.daemon import go, prestart
from tests.support.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[3]


def spawn(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def status_of(got: Received, boot: int, state: str) -> list[dict[str, Any]]:
    return [s for s in got.status if s["boot"] == boot and s["state"] == state]


def born(boot: int) -> Callable[[Received], bool]:
    return lambda g: bool(status_of(g, boot, "online"))


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for pipe in (proc.stdin, proc.stderr):
        if pipe is not None:
            pipe.close()


async def test_last_will_on_kill_and_birth_after_restart(mosquitto: Mosquitto,
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path, site(mosquitto, devices=1, interval=0.2))
    async with WireRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        proc = spawn(config)
        try:
            await rec.wait_for(lambda g: bool(status_of(g, 1, "online")), 20, "birth of boot 1")
        finally:
            kill(proc)
        await rec.wait_for(lambda g: bool(status_of(g, 1, "offline")), 10, "last will")
        [will] = status_of(rec.got, 1, "offline")
        assert will["reason"] == "lost"
        proc = spawn(config)
        try:
            await rec.wait_for(lambda g: bool(status_of(g, 2, "online")), 20, "birth of boot 2")
        finally:
            proc.terminate()
            assert proc.wait(15) == 0
        await rec.wait_for(lambda g: bool(status_of(g, 2, "offline")), 10, "offline on stop")
        assert status_of(rec.got, 2, "offline")[0]["reason"] == "shutdown"
        order = [(s["boot"], s["state"]) for s in rec.got.status]
        assert order.index((1, "offline")) < order.index((2, "online"))
    rec.assert_valid()


class Killed(Exception):
    """Ends a transaction as a kill -9 would: nothing of it commits."""


async def test_rows_a_kill_interrupts_are_never_read_for_sending(tmp_path: Path) -> None:
    """The uplink reads the store on the connection the pipeline writes on. A row read
    before its COMMIT and then lost to a kill was sent under a number the next start
    announces as skipped (seq_gap): seen once in the 200-kill test on a loaded machine.
    Readers see only committed rows."""
    path = tmp_path / "b.db"
    store, again = Store(path), Store(path)
    await store.open()
    try:
        await store.append_samples([Sample("m", f"p{i}", 1_000 + i, 1.0) for i in range(5)])
        rows = [Sample("m", f"q{i}", 2_000 + i, 2.0) for i in range(10)]
        read: list[tuple[int, int]] = []
        with pytest.raises(Killed):
            async with store.transaction() as tx:
                assert await store.append_samples(rows, tx) == (6, 15)
                # what the forwarder does while the pipeline's transaction is open
                read += [(c.seq_first, c.seq_last)
                         for c in await store.read_telemetry_raw(0, 100)]
                read += [(c.seq_first, c.seq_last) for c in await store.read_telemetry(5, 100)]
                raise Killed
        assert read == [(1, 5)], "rows not committed were read"
        # the restart after the kill (the killed run's connection is left as it was)
        await again.open()
        await again.register_consumer("t")
        [gap] = [e.event.body for e in await again.read_events("t", 100)
                 if e.event.type == SEQ_GAP_EVENT]
        assert gap["seq_first"] == 6, "6.. were reserved, not committed: skipped"
        assert all(last < gap["seq_first"] for _first, last in read), "sent, then skipped"
        assert (await again.append_samples(rows))[0] == gap["seq_last"] + 1
    finally:
        await again.close()  # nothing to do if it did not open
        await store.conn.close()  # not store.close(): a kill writes no clean mark


#: 120 by default, to keep the whole suite inside CI's 15 minutes (it was 200: about 130 s of the
#: suite's 640); FIELDGATE_KILLS=200 or more for a longer run.
KILLS = int(os.environ.get("FIELDGATE_KILLS", "120"))


@pytest.mark.slow
@pytest.mark.timeout(120 + 10 * KILLS)
async def test_a_hundred_and_twenty_kills_lose_nothing(mosquitto: Mosquitto,
                                                      tmp_path: Path) -> None:
    """120 kill -9s (``FIELDGATE_KILLS``) while forwarding: a reference receiver
    (docs/wire-format.md) gets every committed sample; each restart announces exactly the
    reserved numbers it skips (seq_gap: from where the committed data ended to the durable
    mark), and none of them was sent; repeats are only of data not yet acknowledged when the
    gateway was killed."""
    from tests.gateway.uplink.test_receiver import RefRecorder

    rng = random.Random(20)
    cfg = site(mosquitto, devices=2, interval=0.02, extra_points=20, max_samples=200, window=8)
    config = write_config(tmp_path, cfg)
    store_path = tmp_path / "state" / "buffer.sqlite3"
    # (acked, next_seq, reserved) found in the store and its sequence mark after each kill
    ends: list[tuple[int, int, int]] = []
    repeats_by_boot: list[list[int]] = []
    t0 = time.monotonic()
    async with RefRecorder(mosquitto.host, mosquitto.port, BASE) as rec:
        ready = prestart(config, "--log-level", "WARNING")
        for boot in range(1, KILLS + 1):
            rec.ref.repeat_seqs = []
            proc = go(ready)
            ready = prestart(config, "--log-level", "WARNING")  # imports while this one runs
            try:
                await rec.wait_for(born(boot), 60, f"birth of boot {boot}")
                # kill at a random point of the stream (about 0..0.8 s of data), measured in
                # rows forwarded rather than in time, so a slow machine kills as often mid-way
                target = rec.count() + rng.randint(0, 1_700)
                await rec.wait_for(lambda _g, t=target: rec.count() >= t, 60, f"{target} rows")
            finally:
                kill(proc)
            stats, mark = read_stats(store_path), read_mark(store_path)
            assert mark is not None
            ends.append((stats.acked_seq, stats.next_seq, mark.reserved))
            repeats_by_boot.append(rec.ref.repeat_seqs)
        per_kill = (time.monotonic() - t0) / KILLS
        kill(ready)
        # A final clean run without devices forwards what the kills left in the buffer.
        final = dict(cfg, devices=[{**d, "enabled": False} for d in cfg["devices"]])
        config = write_config(tmp_path, final)
        rec.ref.repeat_seqs = []
        proc = spawn(config)
        try:
            await rec.wait_for(lambda g: bool(status_of(g, KILLS + 1, "online")), 60,
                               "birth of the final run")
            # this start skipped the numbers the last kill left reserved: the sequence is
            # over at the last committed sample, ends[-1][1] - 1
            committed = read_stats(store_path).next_seq - 1
            store_id = read_stats(store_path).store_id
            last = ends[-1][1] - 1
            await rec.wait_for(lambda g: rec.ref.high[(GW, store_id)] >= last, 60,
                               f"seq {last}")
            # a boot killed before its first commit reserved no block: the next start
            # skips nothing and announces nothing
            skipped = [(next_seq, reserved - 1) for _a, next_seq, reserved in ends
                       if reserved > next_seq]
            await rec.wait_for(lambda g: len(rec.ref.of_type("seq_gap")) == len(skipped),
                               60, "the seq_gap of the last kill")
        finally:
            proc.terminate()
            code = proc.wait(15)
            err = proc.stderr.read().decode() if proc.stderr else ""
        assert code == 0, err
        repeats_by_boot.append(rec.ref.repeat_seqs)
    stats = read_stats(store_path)
    ref = rec.ref
    assert stats.acked_seq == last, "0 missing: every committed sample was acknowledged"
    assert stats.next_seq - 1 == committed
    assert ref.reused == [] and ref.unannounced_gaps() == []
    assert [k for k in ref.samples] == [(GW, store_id)], "one store, one stream"
    gaps = ref.gaps[(GW, store_id)]
    announced = sorted((g["body"]["seq_first"], g["body"]["seq_last"])
                       for g in ref.of_type("seq_gap"))
    assert all(g["body"]["reason"] == "unclean_stop" for g in ref.of_type("seq_gap"))
    assert announced == skipped, "each restart announces exactly the numbers it skips"
    # A boot killed after it reserved a block but before it committed anything under it
    # sent nothing under it: the receiver sees its range and the one before as one run.
    joined: list[tuple[int, int]] = []
    for first, last in announced:
        if joined and first == joined[-1][1] + 1:
            joined[-1] = (joined[-1][0], last)
        else:
            joined.append((first, last))
    # the last range ends the stream (the final run has no devices): no gap follows it
    assert gaps == joined[:-1], (sorted(set(gaps) ^ set(joined[:-1]))[:5], joined[:5])
    rows = ref.all_samples()
    extra = [tuple(r) for r in rows if r[1].startswith("sim_")]  # random value per poll
    assert len(set(extra)) == len(extra), "no sample delivered under two numbers"
    assert sum(len(v) for v in ref.samples.values()) + sum(b - a + 1 for a, b in announced) == \
        committed, "every number is a sample received or a number announced as skipped"
    for boot, seqs in enumerate(repeats_by_boot[1:], start=1):  # boot 1 resends nothing
        acked_at_kill = ends[boot - 1][0]
        assert all(s > acked_at_kill for s in seqs), "only unacknowledged data is sent again"
    print(f"{KILLS} kills, {per_kill:.2f} s per kill; {committed} numbers, {len(rows)} "
          f"samples, {ref.repeats} sent again after kills; {len(skipped)} restarts skipped "
          f"numbers, {len(joined)} runs of skipped numbers")
    for boot in range(1, KILLS + 1):  # every kill left a last will, every start a birth
        assert status_of(rec.got, boot, "online") and status_of(rec.got, boot, "offline")
    rec.assert_valid()
