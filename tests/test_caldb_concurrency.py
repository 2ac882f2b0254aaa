"""caldb under contention: 8 processes adding masters and recording products at once.

Each worker adds records of its own and, on purpose, records whose SHA-256 another worker may be
adding at the same moment, in single adds and small batches, and records products that link the
calibrations it got back. Afterwards every count has to add up: no error reached a worker, no row
was lost or duplicated, every product has its links. ``CCDFLOW_CONCURRENCY_SECONDS`` shortens the
run (30 s by default, as the caldb issue asks). Also: a duplicate add racing an uncommitted one,
and a process killed in the middle of a batch.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import threading
import time
import traceback
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import text

from ccdflow.caldb import CalDB
from tests.conftest import fake_calibration_fields, make_meta

N_PROCESSES = 8
SECONDS = float(os.environ.get("CCDFLOW_CONCURRENCY_SECONDS", "30"))
#: Files every worker adds now and then: the same content arriving from several places at once.
SHARED = [hashlib.sha256(f"shared-{i}".encode()).hexdigest() for i in range(60)]
KINDS = ("bias", "dark", "flat")


def _sha(worker: int, n: int) -> str:
    return hashlib.sha256(f"worker-{worker}-{n}".encode()).hexdigest()


def _fields(sha: str) -> dict:
    # Content decides the metadata, so two workers adding one SHA-256 send identical records.
    seeded = random.Random(sha)
    kind = seeded.choice(KINDS)
    return fake_calibration_fields(
        sha, type=kind, obs_time=datetime(2026, 1, 1) + timedelta(hours=seeded.randrange(24 * 90)),
        filter="V" if kind == "flat" else None, exposure_time=60.0 if kind == "dark" else 0.0,
    )


def _receipt(kind: str, cal_id: int):
    from ccdflow.caldb.selection import Candidate, Receipt

    return Receipt(kind, {}, {}, [Candidate(cal_id, f"/masters/{cal_id}.fits", True, cost=0.0)],
                   selected_id=cal_id)


def worker(url: str, index: int, seconds: float, start, results) -> None:
    """Add and record until the deadline; report what was done (or the traceback)."""
    import ccdflow.caldb.connection as connection

    report = {"index": index, "ids": {}, "created": 0, "adds": 0, "products": [], "retried": 0,
              "error": None}
    transient = connection.is_transient

    def counting(exc):  # how often a lock error was retried inside the caldb
        hit = transient(exc)
        report["retried"] += hit
        return hit

    connection.is_transient = counting
    rng = random.Random(index)
    try:
        db = CalDB(url)
        start.wait()
        deadline, n = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            n += 1
            shas = [rng.choice(SHARED) if rng.random() < 0.3 else _sha(index, n)]
            if n % 7 == 0:  # now and then a batch, with a duplicate inside it too
                shas += [_sha(index, -n), rng.choice(SHARED), shas[0]]
            done = (db.add_records([_fields(s) for s in shas]) if len(shas) > 1
                    else [db.add_fields(_fields(shas[0]))])
            for sha, result in zip(shas, done, strict=True):
                assert report["ids"].setdefault(sha, result.id) == result.id, sha
                report["created"] += result.created
                report["adds"] += 1
            if n % 2 == 0:
                links = {kind: report["ids"][rng.choice(list(report["ids"]))]
                         for kind in rng.sample(KINDS, rng.randint(1, 3))}
                meta = make_meta(path=f"raw_{index}_{n}.fits")
                pid = db.record_product(f"/reduced/{index}_{n}.fits", meta,
                                        {k: _receipt(k, c) for k, c in links.items()})
                report["products"].append((pid, links))
        db.close()
    except BaseException:
        report["error"] = traceback.format_exc()
    results.put(report)


def run_workers(url: str, seconds: float) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(N_PROCESSES + 1), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, i, seconds, start, results))
             for i in range(N_PROCESSES)]
    for p in procs:
        p.start()
    start.wait(timeout=120)  # everyone has imported and opened the caldb: go
    reports = [results.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return reports


def test_eight_processes_add_and_record_at_once(caldb_url):
    CalDB.create(caldb_url).close()
    reports = run_workers(caldb_url, SECONDS)

    errors = [f"worker {r['index']}:\n{r['error']}" for r in reports if r["error"]]
    assert not errors, "\n".join(errors)
    assert all(r["adds"] > 0 and r["products"] for r in reports)

    db = CalDB(caldb_url)
    with db.sessions.reader.connect() as conn:
        rows = dict(conn.execute(text("SELECT sha256, id FROM calibration")).all())
        n_inputs = conn.execute(text("SELECT count(*) FROM calibration_input")).scalar()
        ingests = Counter(conn.execute(text(
            "SELECT calibration_id FROM calibration_event WHERE action = 'ingest'")).scalars())
        n_products = conn.execute(text("SELECT count(*) FROM product")).scalar()
        links = set(conn.execute(text(
            "SELECT product_id, type, calibration_id FROM product_calibration")).all())
    db.close()

    attempted = {sha for r in reports for sha in r["ids"]}
    assert set(rows) == attempted  # nothing lost, nothing extra (sha256 is unique)
    assert sum(r["created"] for r in reports) == len(rows)  # each row created exactly once
    for r in reports:  # a duplicate add returned the id of the row that won
        assert {sha: rows[sha] for sha in r["ids"]} == r["ids"]
    assert n_inputs == 3 * len(rows)  # no half records
    assert set(ingests) == set(rows.values()) and set(ingests.values()) == {1}
    recorded = [(pid, kind, cal) for r in reports for pid, used in r["products"]
                for kind, cal in used.items()]
    assert n_products == sum(len(r["products"]) for r in reports)
    assert links == set(recorded) and len(recorded) == len(links)
    shared_hits = Counter(sha for r in reports for sha in r["ids"] if sha in SHARED)
    assert max(shared_hits.values()) > 1  # the duplicate race really happened
    print(f"\n{caldb_url.split(':')[0]}: {len(rows)} calibrations, {n_products} products, "
          f"{sum(r['adds'] for r in reports)} adds, {sum(r['retried'] for r in reports)} retried "
          f"lock errors, {SECONDS:g} s x {N_PROCESSES} processes")


def test_a_duplicate_add_racing_an_uncommitted_one_gets_the_winners_id(caldb_url):
    from ccdflow.caldb.bulk import insert_batch

    first, second = CalDB.create(caldb_url), CalDB(caldb_url)
    sha, inserted, release, outcome = "d" * 64, threading.Event(), threading.Event(), {}

    def slow_writer(session):  # inserts, then holds its transaction open until released
        done = insert_batch(session, [fake_calibration_fields(sha)], "a", datetime(2026, 1, 1), {})
        inserted.set()
        release.wait(30)
        return done

    winner = threading.Thread(target=lambda: outcome.setdefault("first", first.sessions.write(slow_writer)))
    winner.start()
    assert inserted.wait(30)
    racer = threading.Thread(target=lambda: outcome.setdefault(
        "second", second.add_fields(fake_calibration_fields(sha, path="/elsewhere/copy.fits"))))
    racer.start()
    time.sleep(0.5)  # the racer is now waiting on the winner's lock (unique index or write lock)
    assert racer.is_alive()
    release.set()
    winner.join(30)
    racer.join(30)
    (cal_id, created), = outcome["first"]
    assert created and (outcome["second"].id, outcome["second"].created) == (cal_id, False)
    assert [r["sha256"] for r in second.list()] == [sha]
    first.close()
    second.close()


def ingest_forever(url: str, started) -> None:
    """Add batches of 200 records (3 inputs each) until killed."""
    db = CalDB(url)
    for n in range(10**6):
        db.add_records([fake_calibration_fields(_sha(n, k)) for k in range(200)])
        started.set()


def test_a_process_killed_mid_ingest_leaves_no_half_record(caldb_url):
    CalDB.create(caldb_url).close()
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    proc = ctx.Process(target=ingest_forever, args=(caldb_url, started))
    proc.start()
    assert started.wait(120)
    time.sleep(random.uniform(0.2, 1.0))  # somewhere inside a later batch
    proc.kill()
    proc.join(30)
    db = CalDB(caldb_url)
    with db.sessions.reader.connect() as conn:
        n_cal = conn.execute(text("SELECT count(*) FROM calibration")).scalar()
        per_record = set(conn.execute(text(
            "SELECT (SELECT count(*) FROM calibration_input i WHERE i.calibration_id = c.id), "
            "(SELECT count(*) FROM calibration_event e WHERE e.calibration_id = c.id) "
            "FROM calibration c")).all())
    assert n_cal > 0 and n_cal % 200 == 0  # whole batches only
    assert per_record == {(3, 1)}
    assert db.add_fields(fake_calibration_fields("f" * 64)).created  # no lock left behind
    db.close()
