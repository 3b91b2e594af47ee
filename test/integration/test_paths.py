"""
test_paths.py: paths the documentation promises that no other module
exercises through the workers, each checked by its outcome.

One cluster (ethindex.max_chains = 3, ethindex.queue_size = 1MB, the
smallest) and one replay server (test/lib/rpcserver.py) serving synthetic
chains (test/lib/synthchain.py); every test registers chains of its own
(own names, chain ids and seeds) and stops them, and waits until their
slots are free, before it ends, so that each runs alone (-k) and in any
order.

  - uncles and logs' "removed": blocks with uncle hashes (difficulty and
    total difficulty of pre-merge blocks) and logs with "removed": false or
    without it are stored equal to the node's data; a log with "removed":
    true stops the chain at that block (decode error, nothing of the block
    stored) until the node serves the block without it;
  - a chain registered without chain_id takes the node's eth_chainId: it is
    stored in ethindex.chains and the rows are in that id's partitions; a
    second chain whose node reports an id another chain has stays in error
    and stores nothing;
  - the queue: hundreds of blocks, several times the queue's size, pass
    through the 1 MB ring (wrapping around it) and are stored equal to the
    node's; a block whose decoded record is larger than the queue is an
    error naming the queue and ethindex.queue_size, nothing of it or after
    it is stored, and once the node serves a smaller block the chain goes
    on; a refetch of such a block ends with that error instead of failing
    forever, and the chain follows the head meanwhile;
  - ethindex.defer_indexes = off: every partition, backfill ones included,
    has its twelve indexes from the transaction that creates it;
  - ethindex.max_chains: a chain started when every slot is taken waits in
    'starting' with a WARNING naming it (one per chain, each chain named),
    the running chains go on, and it runs once a slot is free;
  - DROP EXTENSION while chains run (one backfilling, one at the head): the
    workers exit, the launcher stays, no crash and no repeated errors, and
    CREATE EXTENSION again indexes again; also when it comes while an insert
    worker has inserted head block N+1 and waits for the one storing block N
    (held up by a lock), which then needs the checkpoint row: DROP EXTENSION
    waits for them instead of failing with a deadlock.

ETHINDEX_PATHS_PORT_BASE (58600) picks the ports (start_replay_cluster:
replay server base..+10, cluster base+20..+30).

Run:  runuser -u ethindex -- python3 test/integration/run.py -k paths
"""

import copy
import hashlib
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import ethindex_test as et          # noqa: E402
import synthchain                   # noqa: E402
from pgwire import PgConnection    # noqa: E402
from rpcserver import Chain           # noqa: E402

PORT_BASE = 58600       # default of ETHINDEX_PATHS_PORT_BASE (start_replay_cluster)
CHAIN_ID_BASE = 930000
MAX_CHAINS = 3
QUEUE_BYTES = 1024 * 1024
SETUP_TIMEOUT = 120
TEST_TIMEOUT = 120
WAIT = 60

SETTINGS = {
    "ethindex.max_chains": MAX_CHAINS,
    "ethindex.queue_size": "1MB",       # the smallest queue there is
    "ethindex.retry_max_delay": 500,    # ms: recovery after a fault is quick
    "ethindex.rpc_timeout": 5000,
}

cluster = None
tmpdir = None
replay = None
_next = [0]

lit = et.sql_literal


def setup_module(module=None):
    global cluster, tmpdir, replay
    cluster, tmpdir, replay, _ = et.start_replay_cluster("paths", PORT_BASE, SETTINGS)


def teardown_module(module=None):
    global cluster, replay
    try:
        et.stop_replay_cluster(cluster, tmpdir, replay)
    finally:
        cluster = replay = None


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def sc(sql):
    return cluster.scalar(sql)


def new_chain(label, chain_id, blocks, register_id=True, start=True, **options):
    """A replay chain of "blocks" (synthchain.generate() output) whose node
    reports chain_id, and an ethindex chain reading it (registered with that
    chain id unless register_id is false).  Returns (name, chain_id, url,
    replay Chain)."""
    _next[0] += 1
    name = "p%02d-%s" % (_next[0], label)
    chain = replay.add_chain(Chain(name, chain_id, blocks))
    url = replay.chain_url(name)
    opts = {"start_block": 0, "poll_interval": "'50 ms'"}
    opts.update(options)
    args = ", ".join("%s => %s" % kv for kv in opts.items())
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s]%s, %s)"
                 % (lit(name), lit(url),
                    ", chain_id => %d" % chain_id if register_id else "", args))
    if start:
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
    return name, chain_id, url, chain


def synth(n, seed, chain_id, **kw):
    return synthchain.generate(n, chain_id=chain_id, seed=seed, **kw)


def status(name):
    return cluster.chain_status(name)


def wait_for(name, block, timeout=WAIT):
    ok = sc("SELECT ethindex.wait_for(%s, %d, '%d s')" % (lit(name), block, timeout))
    assert ok == "t", ("chain %s did not reach block %d in %ds; status %r\n"
                       "--- server log tail ---\n%s"
                       % (name, block, timeout, status(name), cluster.log_tail()))


def wait_error(name, expect, timeout=WAIT):
    """Wait for state 'error' with a last_error containing every string of
    "expect"; returns the status row."""
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = status(name)
        err = st["last_error"] or ""
        if st["state"] == "error" and all(e in err for e in expect):
            return st
        time.sleep(0.05)
    raise AssertionError("chain %s: no error with %r within %ds; last status %r\n"
                         "--- server log tail ---\n%s"
                         % (name, expect, timeout, st, cluster.log_tail()))


def check_chain(chain_id, url, first, last):
    problems = et.compare_chain(cluster, url, chain_id, first, last)
    assert not problems, "chain id %d: %d mismatches:\n%s" % (
        chain_id, len(problems), "\n".join(problems[:40]))


def rows_from(chain_id, first):
    """Rows of every table at or above block "first"."""
    return {t: int(sc("SELECT count(*) FROM ethindex.%s WHERE chain_id = %d AND %s >= %d"
                      % (t, chain_id, "number" if t == "blocks" else "block_number", first)))
            for t in et.TABLES}


def slot_free(name):
    return "SELECT count(*) = 0 FROM ethindex._runtime_state() WHERE name = %s" % lit(name)


def stop_chains(*names):
    """Stop the chains and wait until their workers are gone and their slots free."""
    for name in names:
        cluster.stop_chain(name)
    for name in names:
        cluster.wait_until(slot_free(name), timeout=30)


def data(nbytes, *parts):
    """nbytes of deterministic data as 0x-hex."""
    return "0x" + hashlib.shake_256(repr(parts).encode()).hexdigest(nbytes)


def big_blocks(blocks, input_bytes, numbers=None):
    """Give every transaction of the blocks (or of "numbers") an input of
    about input_bytes; returns the blocks."""
    for n, (b, _) in blocks.items():
        if numbers is not None and n not in numbers:
            continue
        for i, tx in enumerate(b["transactions"]):
            tx["input"] = data(input_bytes + 32 * i, "big", n, i)
    return blocks


# ---------------------------------------------------------------------------
# 1. uncles and logs' "removed"
# ---------------------------------------------------------------------------

def test_uncles_and_removed_logs():
    cid = CHAIN_ID_BASE + 100
    blocks = synth(12, "uncles", cid)
    uncled = {2: 2, 5: 1, 9: 2}
    for n, count in uncled.items():
        b = blocks[n][0]
        b["uncles"] = [synthchain.h32("uncle", n, k) for k in range(count)]
        b["sha3Uncles"] = synthchain.h32("uncles-root", n)
        b["difficulty"] = hex(0x2d5e8f3a91b + n)
        b["totalDifficulty"] = hex(58750003716598352816469 + n)
    # logs without "removed" (older nodes) next to "removed": false
    without = 0
    for n, (b, receipts) in blocks.items():
        for r in receipts:
            for k, lg in enumerate(r["logs"]):
                if (n + k) % 2:
                    del lg["removed"]
                    without += 1
    bad = 7
    bad_logs = [lg for r in blocks[bad][1] for lg in r["logs"]]
    assert bad_logs and without > 3, "the synthetic chain must have logs"
    bad_logs[-1]["removed"] = True

    name, chain_id, url, chain = new_chain("uncles", cid, blocks, batch_size=3)
    try:
        st = wait_error(name, ["removed log in block %d" % bad])
        wait_for(name, bad - 1)
        st = status(name)
        assert st["indexed_through"] == bad - 1, st
        assert rows_from(chain_id, bad) == {t: 0 for t in et.TABLES}, rows_from(chain_id, bad)
        assert 'has "removed": true' in st["last_error"], st

        # the node comes round: the log is not removed after all
        bad_logs[-1]["removed"] = False
        chain.add_block(*blocks[bad])
        wait_for(name, 11)
        check_chain(chain_id, url, 0, 11)
        stored = cluster.query("SELECT number, cardinality(uncles) AS n FROM ethindex.blocks "
                               "WHERE chain_id = %d AND cardinality(uncles) > 0 ORDER BY number"
                               % chain_id)
        assert {r["number"]: r["n"] for r in stored} == uncled, stored
        assert sc("SELECT count(*) FILTER (WHERE removed) || '/' || count(*) FROM ethindex.logs "
                  "WHERE chain_id = %d" % chain_id) == "0/%d" % sum(
                      len(r["logs"]) for _, rl in blocks.values() for r in rl)
        cluster.assert_no_crash()
    finally:
        stop_chains(name)


# ---------------------------------------------------------------------------
# 2. chain id from the node
# ---------------------------------------------------------------------------

def test_chain_id_learned_from_node():
    cid = CHAIN_ID_BASE + 200
    first, last = 995, 1009             # two partitions of 1000 blocks
    blocks = synth(last - first + 1, "learned", cid, start=first)
    name, chain_id, url, _ = new_chain("learned", cid, blocks, register_id=False,
                                       start_block=first, partition_size=1000)
    other = None
    try:
        wait_for(name, last)
        assert sc("SELECT chain_id FROM ethindex.chains WHERE name = %s" % lit(name)) == str(cid)
        assert status(name)["chain_id"] == cid
        # the rows are in that chain id's partitions
        for table, column in (("blocks", "number"), ("transactions", "block_number"),
                              ("logs", "block_number"), ("withdrawals", "block_number")):
            parts = cluster.query(
                "SELECT c.relname AS part, count(*) AS n FROM ethindex.%s t "
                "JOIN pg_class c ON c.oid = t.tableoid "
                "WHERE %s BETWEEN %d AND %d GROUP BY 1 ORDER BY 1" % (table, column, first, last))
            assert [p["part"] for p in parts] == [
                "%s_%d_%012d" % (table, cid, lo) for lo in (0, 1000)], parts
        assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d" % cid) == "15"
        assert [r["first_block"] for r in cluster.query(
            "SELECT first_block FROM ethindex.partitions WHERE chain_id = %d "
            "ORDER BY first_block" % cid)][:2] == [0, 1000]
        check_chain(cid, url, first, last)
        assert 'ethindex chain "%s" has chain id %d (from the node)' % (name, cid) \
            in cluster.log_text()

        # a second chain without chain_id whose node reports the same id
        mark = cluster.log_position()
        other, _, _, _ = new_chain("same-id", cid, synth(5, "same-id", cid),
                                   register_id=False)
        st = wait_error(other, ['chain "%s" reports chain id %d, which chain "%s" already has'
                                % (other, cid, name)])
        assert st["chain_id"] is None and st["indexed_through"] is None, st
        assert sc("SELECT chain_id FROM ethindex.chains WHERE name = %s" % lit(other)) is None
        cluster.wait_for_log('which chain "%s" already has' % name, since=mark)
        # nothing stored for it: the first chain's rows are all there is
        check_chain(cid, url, first, last)
        assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d" % cid) == "15"
        cluster.assert_no_crash()
    finally:
        stop_chains(*[n for n in (name, other) if n])


# ---------------------------------------------------------------------------
# 3. the queue: wrap-around and a block larger than the queue
# ---------------------------------------------------------------------------

def test_queue_wraps_around_many_times():
    """The insert workers are held back (by a lock) until the queue is full,
    then let go, storing one block per transaction: the fetcher, waiting
    with a decoded block that does not fit, puts it at the start of the ring
    as soon as a record there is taken, while the ring still holds records
    up to its end (a wrap), and goes on from there.  More than four queues
    of data pass through the ring."""
    cid = CHAIN_ID_BASE + 300
    nblocks = 160
    blocks = big_blocks(synth(nblocks, "wrap", cid), 12000)
    set_writer_batch_blocks(1)
    holder = PgConnection(cluster.basedir, cluster.port, "ethindex_test")
    name = None
    try:
        # no partition can be attached while this lock is held
        holder.query("BEGIN")
        holder.query("LOCK TABLE ethindex.transactions IN SHARE MODE")
        name, chain_id, url, _ = new_chain("wrap", cid, blocks)
        cluster.wait_until("SELECT queued_bytes > %d FROM ethindex.chain_status "
                           "WHERE name = %s" % (QUEUE_BYTES * 3 // 4, lit(name)), timeout=WAIT)
        st = status(name)
        assert st["indexed_through"] is None, st
        holder.query("COMMIT")
        wait_for(name, nblocks - 1)
        check_chain(chain_id, url, 0, nblocks - 1)
        # and that without an error or a restart of the workers
        end = status(name)
        assert end["last_error"] is None and end["writer_pids"] == st["writer_pids"] \
            and end["fetcher_pid"] == st["fetcher_pid"], (st, end)
        volume = int(sc("SELECT sum(octet_length(input)) FROM ethindex.transactions "
                        "WHERE chain_id = %d" % chain_id))
        assert volume > 4 * QUEUE_BYTES, "only %d bytes went through the queue" % volume
        cluster.assert_no_crash()
    finally:
        holder.close()
        if name:
            stop_chains(name)
        set_writer_batch_blocks(100)


def oversize_block(blocks, n):
    """A copy of block n (same hash) with a transaction input larger than
    the queue."""
    b, receipts = copy.deepcopy(blocks[n])
    assert b["transactions"], "block %d needs a transaction" % n
    b["transactions"][0]["input"] = data(QUEUE_BYTES + 4096, "huge", n)
    return b, receipts


def test_block_larger_than_queue():
    cid = CHAIN_ID_BASE + 400
    blocks = synth(10, "oversize", cid)
    n = 5
    served = dict(blocks)
    served[n] = oversize_block(blocks, n)
    name, chain_id, url, chain = new_chain("oversize", cid, served, batch_size=2)
    try:
        st = wait_error(name, ["does not fit in the queue of %d bytes" % QUEUE_BYTES,
                               "Increase ethindex.queue_size."])
        assert re.search(r"decoded block of \d+ bytes does not fit", st["last_error"]), st
        wait_for(name, n - 1)
        assert status(name)["indexed_through"] == n - 1
        assert rows_from(chain_id, n) == {t: 0 for t in et.TABLES}, rows_from(chain_id, n)
        assert "does not fit in the queue of %d bytes" % QUEUE_BYTES in cluster.log_text()

        chain.add_block(*blocks[n])         # the node serves a block that fits
        wait_for(name, 9)
        check_chain(chain_id, url, 0, 9)
        cluster.assert_no_crash()
    finally:
        stop_chains(name)


def test_refetch_of_block_larger_than_queue():
    cid = CHAIN_ID_BASE + 500
    blocks = synth(14, "refetch-oversize", cid)
    n = 5
    chain_blocks = {k: v for k, v in blocks.items() if k < 10}
    name, chain_id, url, chain = new_chain("rf-oversize", cid, chain_blocks, batch_size=2)
    try:
        wait_for(name, 9)
        chain.add_block(*oversize_block(blocks, n))
        rid = int(sc("SELECT ethindex.refetch(%s, %d, %d)" % (lit(name), n, n)))
        # the head goes on meanwhile
        for k in range(10, 14):
            chain.add_block(*blocks[k])
        wait_for(name, 13)
        cluster.wait_until("SELECT finished_at IS NOT NULL FROM ethindex.refetches WHERE id = %d"
                           % rid, timeout=WAIT)
        err = sc("SELECT error FROM ethindex.refetches WHERE id = %d" % rid) or ""
        assert "does not fit in the queue of %d bytes" % QUEUE_BYTES in err, err
        # nothing replaced: the stored block is the one that fitted
        chain.add_block(*blocks[n])
        check_chain(chain_id, url, 0, 13)
        # and the chain is not left failing: it follows the head
        chain.add_block(*synth(15, "refetch-oversize", cid)[14])
        wait_for(name, 14)
        cluster.wait_until("SELECT state = 'running' FROM ethindex.chain_status WHERE name = %s"
                           % lit(name), timeout=WAIT)
        cluster.assert_no_crash()
    finally:
        stop_chains(name)


# ---------------------------------------------------------------------------
# 4. ethindex.defer_indexes = off
# ---------------------------------------------------------------------------

INDEXES_PER_RANGE = 12


def set_defer_indexes(on):
    cluster.set(ethindex__defer_indexes=on)
    cluster.psql("SELECT pg_reload_conf()")
    # a new backend is forked by the postmaster: once it sees the value,
    # so do workers started from now on
    cluster.wait_until("SELECT current_setting('ethindex.defer_indexes') = '%s'"
                       % ("on" if on else "off"), timeout=10)


def set_writer_batch_blocks(n):
    cluster.set(ethindex__writer_batch_blocks=n)
    cluster.psql("SELECT pg_reload_conf()")
    cluster.wait_until("SELECT current_setting('ethindex.writer_batch_blocks') = '%d'" % n,
                       timeout=10)


def index_counts(chain_id):
    """{first_block: indexes of the range's four partitions}."""
    rows = cluster.query(
        "SELECT p.first_block, (SELECT count(*) FROM pg_index i WHERE i.indrelid IN ("
        "  SELECT format('ethindex.%%I', ethindex._partition_name(t, p.chain_id, p.first_block))"
        "::regclass FROM unnest(ARRAY['blocks','transactions','logs','withdrawals']) t)) AS n "
        "FROM ethindex.partitions p WHERE p.chain_id = %d ORDER BY 1" % chain_id)
    return {r["first_block"]: r["n"] for r in rows}


def test_defer_indexes_off():
    cid = CHAIN_ID_BASE + 600
    first, last = 1985, 2009
    blocks = synth(last - first + 1, "nodefer", cid, start=first)
    stop_at = 1995
    set_defer_indexes(False)
    name = None
    try:
        name, chain_id, url, chain = new_chain("nodefer", cid, blocks, start=False,
                                               start_block=first, partition_size=1000,
                                               batch_size=3)
        fid = replay.add_fault("null_result", method="eth_getBlockByNumber", chain=name,
                               block=stop_at)
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
        # the chain stops inside partition 1000..1999, which lies wholly
        # below the node's head: with deferred indexes it would have none
        # until complete
        wait_error(name, ["block %d" % stop_at])
        wait_for(name, stop_at - 1)
        assert status(name)["indexed_through"] == stop_at - 1
        parts = cluster.query("SELECT first_block, indexed_at = created_at AS at_creation "
                              "FROM ethindex.partitions WHERE chain_id = %d ORDER BY 1" % cid)
        assert [p["first_block"] for p in parts] == [1000, 2000], parts
        assert all(p["at_creation"] for p in parts), parts
        assert status(name)["unindexed_partitions"] == 0, status(name)
        counts = index_counts(cid)
        assert counts == {1000: INDEXES_PER_RANGE, 2000: INDEXES_PER_RANGE}, counts
        # and used while the chain is stuck in the range
        tx = blocks[1990][0]["transactions"][0]["hash"]
        plan = sc("SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT * FROM "
                  "ethindex.transactions WHERE chain_id = %d AND block_number BETWEEN 1985 AND "
                  "1994 AND hash = '\\x%s'" % (cid, tx[2:]))
        assert "transactions_%d_000000001000_hash_idx" % cid in plan, plan

        replay.clear_faults(fid)
        wait_for(name, last)
        check_chain(cid, url, first, last)
        parts = cluster.query("SELECT first_block, indexed_at = created_at AS at_creation "
                              "FROM ethindex.partitions WHERE chain_id = %d ORDER BY 1" % cid)
        assert all(p["at_creation"] for p in parts), parts
        counts = index_counts(cid)
        assert all(v == INDEXES_PER_RANGE for v in counts.values()), counts
        cluster.assert_no_crash()
    finally:
        replay.clear_faults()
        if name:
            stop_chains(name)
        set_defer_indexes(True)


# ---------------------------------------------------------------------------
# 5. more chains than ethindex.max_chains
# ---------------------------------------------------------------------------

def slot_warning(name):
    return ('ethindex cannot start chain "%s": all %d chain slots are in use'
            % (name, MAX_CHAINS))


def test_more_chains_than_slots():
    assert sc("SELECT count(*) FROM ethindex._runtime_state()") == "0", \
        "slots taken before the test: %s" % sc("SELECT string_agg(name, ',') FROM ethindex._runtime_state()")
    running = []
    waiting = []
    try:
        for k in range(MAX_CHAINS):
            cid = CHAIN_ID_BASE + 700 + k
            running.append(new_chain("slot%d" % k, cid, synth(10, "slot%d" % k, cid), batch_size=4))
        for name, _, _, _ in running:
            wait_for(name, 9)
        mark = cluster.log_position()
        for k in range(2):
            cid = CHAIN_ID_BASE + 710 + k
            waiting.append(new_chain("wait%d" % k, cid, synth(10, "wait%d" % k, cid), batch_size=4))
            # each chain left without a slot is named, once
            cluster.wait_for_log(slot_warning(waiting[-1][0]), since=mark, timeout=30)
        for name, cid, _, _ in waiting:
            st = status(name)
            assert st["state"] == "starting" and st["fetcher_pid"] is None \
                and st["indexed_through"] is None, st
            assert rows_from(cid, 0) == {t: 0 for t in et.TABLES}

        # the running chains go on
        for k, (name, cid, url, chain) in enumerate(running):
            more = synth(16, "slot%d" % k, cid)
            for n in range(10, 16):
                chain.add_block(*more[n])
        for name, cid, url, _ in running:
            wait_for(name, 15)
            check_chain(cid, url, 0, 15)
            assert status(name)["state"] == "running", status(name)
        log = cluster.log_text()[mark:]
        for name, _, _, _ in waiting:
            assert log.count(slot_warning(name)) == 1, log
            assert status(name)["state"] == "starting"
        assert "HINT:  Increase ethindex.max_chains." in log

        # a slot is freed: the first waiting chain gets it, the other still waits
        stop_chains(running[0][0])
        for name, cid, url, _ in waiting[:1]:
            wait_for(name, 9)
            check_chain(cid, url, 0, 9)
        st = status(waiting[1][0])
        assert st["state"] == "starting" and st["fetcher_pid"] is None, st
        stop_chains(running[1][0])
        wait_for(waiting[1][0], 9)
        check_chain(waiting[1][1], waiting[1][2], 0, 9)
        cluster.assert_no_crash()
    finally:
        stop_chains(*[c[0] for c in running + waiting])


# ---------------------------------------------------------------------------
# 6. DROP EXTENSION while chains run
# ---------------------------------------------------------------------------

def ethindex_workers():
    return cluster.query("SELECT pid, backend_type, application_name FROM pg_stat_activity "
                         "WHERE backend_type IN ('ethindex fetcher', 'ethindex writer')")


def launcher_pid():
    return sc("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ethindex launcher'")


def test_drop_extension_while_chains_run():
    live_id = CHAIN_ID_BASE + 800
    back_id = CHAIN_ID_BASE + 801
    live_blocks = synth(10, "drop-live", live_id)
    back_blocks = big_blocks(synth(300, "drop-back", back_id), 4000)
    launcher = launcher_pid()
    assert launcher is not None
    names = []
    try:
        live, _, live_url, live_chain = new_chain("drop-live", live_id, live_blocks)
        back, _, back_url, _ = new_chain("drop-back", back_id, back_blocks, batch_size=5)
        names = [live, back]
        replay.add_fault("delay", chain=back, seconds=0.2)   # backfill in progress
        wait_for(live, 9)
        cluster.wait_until("SELECT indexed_through >= 20 FROM ethindex.chain_status "
                           "WHERE name = %s" % lit(back), timeout=WAIT)
        assert (status(back)["indexed_through"] or 0) < 299
        assert len(ethindex_workers()) == 2 * 3, ethindex_workers()
        mark = cluster.log_position()

        cluster.psql("DROP EXTENSION ethindex", timeout=60)

        # the workers exit, the launcher stays
        cluster.wait_until("SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type "
                           "IN ('ethindex fetcher', 'ethindex writer')", timeout=30)
        assert launcher_pid() == launcher
        replay.clear_faults()

        # again: the same chains index from the start
        cluster.psql("CREATE EXTENSION ethindex")
        names = []
        more = synth(12, "drop-live", live_id)
        for n in (10, 11):
            live_chain.add_block(*more[n])
        for nm, url, cid in ((live, live_url, live_id), (back, back_url, back_id)):
            cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, "
                         "batch_size => 20)" % (lit(nm), lit(url), cid))
            cluster.psql("SELECT ethindex.start(%s)" % lit(nm))
            names.append(nm)
        wait_for(live, 11)
        wait_for(back, 299)
        check_chain(live_id, live_url, 0, 11)
        check_chain(back_id, back_url, 0, 299)
        assert launcher_pid() == launcher

        cluster.assert_no_crash()
        log = cluster.log_text()[mark:]
        # at most one error per worker that found its table gone, none
        # repeated while the chains were set up and indexed again
        errors = [l for l in log.splitlines() if re.match(r".*\b(ERROR|FATAL|PANIC):", l)
                  and "terminating background worker" not in l]
        gone = [l for l in errors if re.search(
            r"could not open relation with OID \d+|relation \S+ does not exist|"
            r"(table|partition) ethindex\.\S+ (for block \d+ of chain \S+ )?does not exist", l)]
        assert errors == gone and len(gone) <= 6, \
            "errors after DROP EXTENSION:\n%s" % "\n".join(errors)
        # stopped by the launcher, not restarted as after a failure
        assert "restarting the chain" not in log, log
    finally:
        replay.clear_faults()
        if names:
            stop_chains(*names)


def test_drop_extension_while_a_writer_waits_its_turn():
    """DROP EXTENSION while an insert worker holding head block N+1 waits
    for the one holding block N to move the checkpoint (head blocks commit
    in block order), and that one is slower (here: held up by a lock)."""
    cid = CHAIN_ID_BASE + 900
    blocks = synth(13, "turn", cid)
    assert blocks[11][0]["withdrawals"] and not blocks[12][0]["withdrawals"] \
        and blocks[12][0]["transactions"]
    set_writer_batch_blocks(1)
    name = None
    holder = None
    try:
        name, _, url, chain = new_chain("turn", cid, {n: blocks[n] for n in range(11)})
        wait_for(name, 10)
        holder = PgConnection(cluster.basedir, cluster.port, "ethindex_test")
        holder.query("BEGIN")
        holder.query("LOCK TABLE ethindex.withdrawals_%d_000000000000 IN SHARE MODE" % cid)
        chain.add_block(*blocks[11])
        chain.add_block(*blocks[12])
        cluster.wait_until("SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = "
                           "'ethindex writer' AND query = 'waiting for the checkpoint to reach "
                           "block 12'", timeout=WAIT)
        cluster.wait_until("SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = "
                           "'ethindex writer' AND wait_event_type = 'Lock'", timeout=WAIT)
        result = {}

        def drop():
            try:
                cluster.psql("DROP EXTENSION ethindex", timeout=40)
                result["ok"] = True
            except Exception as e:          # noqa: BLE001
                result["error"] = e
        t = threading.Thread(target=drop)
        t.start()
        cluster.wait_until("SELECT count(*) = 1 FROM pg_stat_activity WHERE query = "
                           "'DROP EXTENSION ethindex' AND wait_event_type = 'Lock'", timeout=WAIT)
        holder.query("COMMIT")
        t.join(60)
        assert result.get("ok"), (result, cluster.query(
            "SELECT pid, backend_type, wait_event_type, wait_event, query, "
            "pg_blocking_pids(pid) AS blocked_by FROM pg_stat_activity "
            "WHERE backend_type LIKE 'ethindex%' OR query LIKE 'DROP%'"))
        cluster.wait_until("SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type "
                           "IN ('ethindex fetcher', 'ethindex writer')", timeout=30)
        cluster.psql("CREATE EXTENSION ethindex")
        cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d)"
                     % (lit(name), lit(url), cid))
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
        wait_for(name, 12)
        check_chain(cid, url, 0, 12)
        cluster.assert_no_crash()
    finally:
        if holder is not None:
            holder.close()
        if name and sc("SELECT count(*) FROM pg_extension WHERE extname = 'ethindex'") == "1" \
                and sc("SELECT count(*) FROM ethindex.chains WHERE name = %s" % lit(name)) == "1":
            stop_chains(name)
        set_writer_batch_blocks(100)
