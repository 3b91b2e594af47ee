"""
test_backfill.py: a backfill with several insert workers and deferred
indexes.

A synthetic chain of 2,500 blocks (test/lib/synthchain.py: every
transaction type, logs, withdrawals) is served by the replay server; the
cluster runs 4 insert workers per chain taking batches of 3 blocks, so
batches commit out of order, with room for a single batch ahead of the
checkpoint (so that workers wait for it, and a worker whose batch reached
the checkpoint before it could announce it must move the checkpoint itself),
and partitions of 1,000 blocks.

- Partitions wholly below the node's head are loaded without indexes; the
  checkpoint passing a partition's end builds its primary keys and indexes;
  the partition at the head is indexed when created.  While the node fails
  at block 1,500, the partial partition stays unindexed but queryable, and
  once the insert workers have been idle for a while it is indexed anyway.
- Out-of-order commits happen (DEBUG1 log lines) and the checkpoint stays
  contiguous: every row equals the node's data, no gap, no duplicate.
- Rows committed above the checkpoint by an earlier run are discarded at the
  next start and fetched again.
- A reader's open transaction on the data tables does not hold up the
  creation of partitions.

Every test registers the chain afresh (register(): the chain removed with
its data if it exists, then added and started), so each runs alone
(run.py -k NAME) and in any order.  Rows are compared with what the replay
server serves (compare_chain and the source blocks), never with other values
the insert workers wrote.

Run:  runuser -u ethindex -- python3 test/integration/run.py -k backfill
"""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import ethindex_test as et          # noqa: E402
import synthchain                   # noqa: E402
from pgwire import PgConnection       # noqa: E402
from rpcserver import Chain           # noqa: E402

PORT_BASE = 57300       # default of ETHINDEX_BACKFILL_PORT_BASE (start_replay_cluster)
NBLOCKS = 2500
PARTITION = 1000
STALL = 1500            # the node fails from this block until cleared
CHAIN = "backfill"
CHAIN_ID = 930001
INDEXES_PER_PARTITION = 12      # over the four tables, primary keys included

SETTINGS = {
    "ethindex.insert_workers": 4,
    "ethindex.writer_batch_blocks": 3,
    # one batch at most ahead of the checkpoint: the workers often find the
    # table of pending ranges full, also with their own range at the checkpoint
    "ethindex.max_pending_ranges": 1,
    "ethindex.retry_max_delay": 500,
    "log_min_messages": "debug1",
}

cluster = None
replay = None
tmpdir = None
blocks = {}             # what the replay server serves: {n: (block, receipts)}
lit = et.sql_literal


def setup_module(module=None):
    global cluster, replay, tmpdir, blocks
    blocks = synthchain.generate(NBLOCKS, chain_id=CHAIN_ID)
    cluster, tmpdir, replay, _ = et.start_replay_cluster(
        "backfill", PORT_BASE, SETTINGS, chains=[Chain(CHAIN, CHAIN_ID, blocks)])


def teardown_module(module=None):
    global cluster, replay
    try:
        et.stop_replay_cluster(cluster, tmpdir, replay)
    finally:
        cluster = replay = None


def sc(sql):
    return cluster.scalar(sql)


def status():
    return cluster.chain_status(CHAIN)


def wait_for(block, timeout=120):
    ok = sc("SELECT ethindex.wait_for(%s, %d, %s)" % (lit(CHAIN), block, lit("%d s" % timeout)))
    assert ok == "t", "chain did not reach block %d; status %r\n%s" % (
        block, status(), cluster.log_tail(60))


def stopped_sql():
    return ("SELECT state = 'stopped' AND fetcher_pid IS NULL "
            "AND coalesce(cardinality(writer_pids), 0) = 0 FROM ethindex.chain_status "
            "WHERE name = %s" % lit(CHAIN))


def stop_chain():
    cluster.psql("SELECT ethindex.stop(%s)" % lit(CHAIN))
    cluster.wait_until(stopped_sql(), timeout=30)


def register(stall=None):
    """The chain registered afresh and started: an earlier registration is
    stopped and removed with its data, the replay server's faults cleared
    (with stall, the node fails from that block until cleared).  Returns the
    server log position before the start."""
    if sc("SELECT count(*) FROM ethindex.chains WHERE name = %s" % lit(CHAIN)) == "1":
        stop_chain()
        cluster.psql("SELECT ethindex.remove_chain(%s, drop_data => true)" % lit(CHAIN))
    assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d" % CHAIN_ID) == "0"
    assert sc("SELECT count(*) FROM ethindex.partitions WHERE chain_id = %d" % CHAIN_ID) == "0"
    replay.clear_faults()
    if stall is not None:
        replay.add_fault("http_status", chain=CHAIN, block=stall, status=500)
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, "
                 "confirmations => 0, poll_interval => '50 ms', partition_size => %d)"
                 % (lit(CHAIN), lit(replay.chain_url(CHAIN)), CHAIN_ID, PARTITION))
    mark = cluster.log_position()
    cluster.psql("SELECT ethindex.start(%s)" % lit(CHAIN))
    return mark


def log_since(mark):
    with open(cluster.logfile, "r", errors="replace") as f:
        f.seek(mark)
        return f.read()


def source_counts(first=0, last=NBLOCKS - 1):
    """Rows per table the replay server's blocks first..last make."""
    sel = [blocks[n] for n in range(first, last + 1)]
    return {"blocks": len(sel),
            "transactions": sum(len(b["transactions"]) for b, _ in sel),
            "logs": sum(len(r["logs"]) for _, rl in sel for r in rl),
            "withdrawals": sum(len(b.get("withdrawals") or []) for b, _ in sel)}


def stored_counts():
    return {t: int(sc("SELECT count(*) FROM ethindex.%s WHERE chain_id = %d" % (t, CHAIN_ID)))
            for t in et.TABLES}


def partition_indexes(first_block):
    """Indexes and primary keys of the four partitions starting at first_block."""
    suffix = "_%d_%012d" % (CHAIN_ID, first_block)
    n_idx = int(sc("SELECT count(*) FROM pg_indexes WHERE schemaname = 'ethindex' "
                   "AND tablename ~ %s" % lit(suffix + "$")))
    n_pk = int(sc("SELECT count(*) FROM pg_constraint WHERE contype = 'p' "
                  "AND conrelid::regclass::text ~ %s" % lit(suffix + "$")))
    return n_idx, n_pk


def check_exact(first, last):
    """Every column of every row of blocks first..last equals the blocks the
    replay server serves (the oracle of compare_chain, fed from the source
    blocks rather than over HTTP, which takes 20 s for the whole chain)."""
    expected = {t: [] for t in et.TABLES}
    for n in range(first, last + 1):
        rows = et.expected_rows(blocks[n][0], blocks[n][1], CHAIN_ID)
        for t in et.TABLES:
            expected[t].extend(rows[t])
    problems = et.compare_rows(expected, et.stored_rows(cluster, CHAIN_ID, first, last))
    assert not problems, "%d mismatches:\n%s" % (len(problems), "\n".join(problems[:30]))
    assert sc("SELECT count(*) = count(DISTINCT number) AND count(*) = %d "
              "FROM ethindex.blocks WHERE chain_id = %d AND number BETWEEN %d AND %d"
              % (last - first + 1, CHAIN_ID, first, last)) == "t"


def test_deferred_indexes_and_stall():
    mark = register(stall=STALL)
    wait_for(STALL - 1)

    # the complete partition was indexed when the checkpoint passed its end
    cluster.wait_until("SELECT indexed_at IS NOT NULL FROM ethindex.partitions "
                       "WHERE chain_id = %d AND first_block = 0" % CHAIN_ID, timeout=60)
    assert partition_indexes(0) == (INDEXES_PER_PARTITION, 4)
    # the partial one (created for backfill: its end was below the head) is
    # not indexed yet, but its rows are visible
    parts = cluster.query("SELECT first_block, indexed_at IS NOT NULL AS indexed "
                          "FROM ethindex.partitions WHERE chain_id = %d ORDER BY 1" % CHAIN_ID)
    assert parts[:2] == [{"first_block": 0, "indexed": True},
                         {"first_block": 1000, "indexed": False}], parts
    assert partition_indexes(1000) == (0, 0)
    st = status()
    assert st["unindexed_partitions"] >= 1, st
    assert st["indexed_through"] == STALL - 1, st
    assert len(st["writer_pids"]) == 4, st
    assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d "
              "AND number BETWEEN 1000 AND %d" % (CHAIN_ID, STALL - 1)) == str(STALL - 1000)
    log = log_since(mark)
    assert re.search(r'indexed the partitions of blocks 0 to 999 in', log), cluster.log_tail(40)

    # idle insert workers index the partial partition after a while
    cluster.wait_until("SELECT indexed_at IS NOT NULL FROM ethindex.partitions "
                       "WHERE chain_id = %d AND first_block = 1000" % CHAIN_ID, timeout=60)
    assert partition_indexes(1000) == (INDEXES_PER_PARTITION, 4)

    # the node recovers: the chain completes, creating a partition while a
    # reader's transaction holds the tables (partitions are attached, which
    # readers do not block); partitions at the head were indexed when created
    assert sc("SELECT count(*) FROM ethindex.partitions WHERE chain_id = %d "
              "AND first_block = 3000" % CHAIN_ID) == "0"
    reader = PgConnection(cluster.basedir, cluster.port, "ethindex_test")
    try:
        reader.query("BEGIN; SELECT count(*) FROM ethindex.blocks; "
                     "SELECT count(*) FROM ethindex.transactions")
        replay.clear_faults()
        wait_for(NBLOCKS - 1)
        assert sc("SELECT count(*) FROM ethindex.partitions WHERE chain_id = %d "
                  "AND first_block = 3000" % CHAIN_ID) == "1"
    finally:
        reader.close()
    cluster.wait_until("SELECT unindexed_partitions = 0 FROM ethindex.chain_status "
                       "WHERE name = %s" % lit(CHAIN), timeout=60)
    for first in (0, 1000, 2000):
        assert partition_indexes(first) == (INDEXES_PER_PARTITION, 4), first
    assert not re.search(r'indexed the partitions of blocks 2000 to 2999', log_since(mark))
    check_exact(0, NBLOCKS - 1)
    assert stored_counts() == source_counts()
    # and what the replay server answers over HTTP around the stall
    problems = et.compare_chain(cluster, replay.chain_url(CHAIN), CHAIN_ID, STALL - 20, STALL + 20)
    assert not problems, "\n".join(problems[:30])


test_deferred_indexes_and_stall.timeout = 400


def test_out_of_order_commits():
    """Several insert workers committed batches ahead of the checkpoint, and
    the checkpoint still covers exactly the stored blocks, which are the
    node's."""
    mark = register()
    wait_for(NBLOCKS - 1)
    ahead = re.findall(r'insert worker \d committed blocks (\d+) to (\d+) ahead of the checkpoint',
                       log_since(mark))
    assert ahead, "no batch was committed out of order:\n" + cluster.log_tail(40)
    for first, last in ahead:
        assert int(first) <= int(last) < NBLOCKS
    assert status()["indexed_through"] == NBLOCKS - 1
    row = cluster.query("SELECT next_block, '0x' || encode(last_hash, 'hex') AS last_hash "
                        "FROM ethindex.chains WHERE name = %s" % lit(CHAIN))[0]
    assert row == {"next_block": NBLOCKS, "last_hash": blocks[NBLOCKS - 1][0]["hash"]}, row
    check_exact(0, NBLOCKS - 1)
    assert stored_counts() == source_counts()


def test_discard_above_checkpoint():
    """Rows above the checkpoint (what a stopped run committed ahead of a
    lost batch) are deleted at the next start and fetched again."""
    register()
    wait_for(NBLOCKS - 1)
    stop_chain()
    back = NBLOCKS - 100
    cluster.psql("UPDATE ethindex.chains SET next_block = %d, last_hash = decode(%s, 'hex') "
                 "WHERE name = %s" % (back, lit(blocks[back - 1][0]["hash"][2:]), lit(CHAIN)))
    # the rows above the checkpoint are there (and get deleted, not kept)
    assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d AND number >= %d"
              % (CHAIN_ID, back)) == "100"
    ctids = sc("SELECT string_agg(ctid::text, ',' ORDER BY number) FROM ethindex.blocks "
               "WHERE chain_id = %d AND number >= %d" % (CHAIN_ID, back))
    replay.reset_stats()
    mark = cluster.log_position()
    cluster.psql("SELECT ethindex.start(%s)" % lit(CHAIN))
    wait_for(NBLOCKS - 1)
    log = log_since(mark)
    assert 'discarded 100 blocks stored above the checkpoint at block %d' % back in log, \
        cluster.log_tail(40)
    # the discarded blocks were fetched again (and only blocks from the checkpoint on)
    fetched = {n for n in range(NBLOCKS)
               if replay.counts(method="eth_getBlockByNumber", chain=CHAIN, block=n)}
    assert set(range(back, NBLOCKS)) <= fetched, sorted(set(range(back, NBLOCKS)) - fetched)
    assert min(fetched) >= back, min(fetched)
    assert sc("SELECT string_agg(ctid::text, ',' ORDER BY number) FROM ethindex.blocks "
              "WHERE chain_id = %d AND number >= %d" % (CHAIN_ID, back)) != ctids
    check_exact(back - 10, NBLOCKS - 1)
    # no row lost or doubled anywhere: the counts are the node's
    assert stored_counts() == source_counts()


def test_interrupted_index_build_resumes():
    """A partition left without its indexes (a build interrupted by a stop
    or a crash) is indexed by the next run as soon as it starts, even with
    nothing new to store."""
    register()
    wait_for(NBLOCKS - 1)
    cluster.wait_until("SELECT unindexed_partitions = 0 FROM ethindex.chain_status "
                       "WHERE name = %s" % lit(CHAIN), timeout=60)
    assert partition_indexes(1000) == (INDEXES_PER_PARTITION, 4)
    stop_chain()
    suffix = "_%d_%012d" % (CHAIN_ID, 1000)
    for table in ("blocks", "transactions", "logs", "withdrawals"):
        cluster.psql("ALTER TABLE ethindex.%s%s DROP CONSTRAINT %s%s_pkey"
                     % (table, suffix, table, suffix))
    for (idx,) in [(r["indexname"],) for r in cluster.query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'ethindex' "
            "AND tablename ~ %s" % lit(suffix + "$"))]:
        cluster.psql("DROP INDEX ethindex.%s" % idx)
    cluster.psql("UPDATE ethindex.partitions SET indexed_at = NULL "
                 "WHERE chain_id = %d AND first_block = 1000" % CHAIN_ID)
    assert partition_indexes(1000) == (0, 0)
    cluster.psql("SELECT ethindex.start(%s)" % lit(CHAIN))
    cluster.wait_until("SELECT unindexed_partitions = 0 FROM ethindex.chain_status "
                       "WHERE name = %s" % lit(CHAIN), timeout=60)
    assert partition_indexes(1000) == (INDEXES_PER_PARTITION, 4)
    # the indexes are usable: a lookup by a transaction hash the node has
    # finds its row, through the hash index
    block, _ = blocks[1500]
    assert block["transactions"], "synthetic block 1500 has no transaction"
    h = block["transactions"][0]["hash"][2:]
    cluster.psql("ANALYZE ethindex.transactions%s" % suffix)   # autovacuum's job, done now
    query = ("SELECT transaction_index FROM ethindex.transactions WHERE chain_id = %d "
             "AND block_number BETWEEN 1000 AND 1999 AND hash = decode(%s, 'hex')"
             % (CHAIN_ID, lit(h)))
    plan = sc("EXPLAIN (COSTS OFF) " + query)
    assert "transactions%s_hash_idx" % suffix in plan, plan
    assert sc(query) == "0"
