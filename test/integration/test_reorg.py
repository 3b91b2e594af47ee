"""
test_reorg.py: reorganizations during the live tail, against real anvil nodes.

Two anvil nodes (chain ids 31337 and 31338), each indexed by one chain: "tail0"
with confirmations 0 and "tail3" with confirmations 3.  For several random
seeds, each chain goes through reorganizations of depths 1 to 10 (3 to 10
with confirmations 3) made three ways: anvil_reorg (the last blocks replaced, same height), anvil_rollback
followed by a longer new branch, and evm_revert to a snapshot followed by new
blocks; both branches carry transactions of every type (0-4; the anvil_reorg
branches types 0-2, which is what it takes).  After every reorganization the
test checks:
  - the stored rows equal the node's canonical chain, every column (the
    oracle of ethindex_test.compare_chain), with no gap and nothing above the
    checkpoint;
  - ethindex.reorgs got exactly the rows the test expects from the hashes it
    saw before and after (fork block, depth, orphaned hashes, old and new
    head hashes), or none when the replaced blocks were not stored yet
    (confirmations);
  - a LISTEN client (test/lib/pgwire.py) received notifications that replay
    into exactly the stored chain: block ranges that continue each other,
    reorganizations that rewind to their fork block.

Then: a reorganization deeper than max_reorg_depth stops the chain with an
error naming the depth and the blocks and deletes nothing (and is rolled back
once max_reorg_depth is raised); and a reorganization found while insert
workers hold batches committed above the checkpoint (the batch at the
checkpoint is held up by a lock the test takes) waits for them and rolls back
their rows too.

ETHINDEX_REORG_PORT_BASE (57600) picks the ports.
"""

import json
import os
import random
import shutil
import subprocess
import tempfile
import time

from ethindex_test import (Anvil, AnvilTransactions, compare_chain, free_port,
                           sql_literal, start_extension_cluster,
                           stop_extension_cluster)
from pgwire import PgConnection

TEST_TIMEOUT = 300
SETUP_TIMEOUT = 120
SEEDS = (7, 19, 42)
OPS_PER_SEED = 4
KINDS = ("reorg", "rollback", "revert")

cluster = None
tmpdir = None
listener = None
chains = {}             # name -> Tail


class Tail:
    """One anvil node and the chain that indexes it."""

    def __init__(self, name, chain_id, confirmations, port, extra_args=()):
        self.name = name
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.anvil = Anvil(port, extra_args=["--chain-id", str(chain_id)] + list(extra_args),
                           logdir=tmpdir)
        self.txs = AnvilTransactions(self.anvil, tmpdir)
        self.reorgs_seen = 0        # rows of ethindex.reorgs checked so far
        self.serial = 0             # varies the transactions

    def register(self, **options):
        opts = "".join(", %s => %s" % (k, v) for k, v in options.items())
        cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, "
                     "confirmations => %d%s); SELECT ethindex.start(%s)"
                     % (sql_literal(self.name), sql_literal(self.anvil.url), self.chain_id,
                        self.confirmations, opts, sql_literal(self.name)))

    def mine(self, n, all_types=False):
        self.serial += n
        return self.txs.mine_blocks(n, start=self.serial, all_types=all_types)

    def target(self):
        return self.anvil.head() - self.confirmations

    def wait_caught_up(self, timeout=60):
        target = self.target()
        ok = cluster.scalar("SELECT ethindex.wait_for(%s, %d, '%d seconds')"
                            % (sql_literal(self.name), target, timeout))
        assert ok == "t", "chain %s did not reach block %d: %r\n%s" % (
            self.name, target, cluster.chain_status(self.name), cluster.log_tail(40))
        return target

    def node_hash(self, n):
        return self.anvil.rpc("eth_getBlockByNumber", [hex(n), False])["hash"]

    def stored_hashes(self, first, last):
        return {r["number"]: "0x" + r["h"] for r in cluster.query(
            "SELECT number, encode(hash, 'hex') AS h FROM ethindex.blocks "
            "WHERE chain_id = %d AND number BETWEEN %d AND %d" % (self.chain_id, first, last))}

    def new_reorgs(self):
        rows = cluster.query(
            "SELECT id, fork_block, depth, encode(old_head_hash, 'hex') AS old_head, "
            "encode(new_head_hash, 'hex') AS new_head, "
            "array(SELECT '0x' || encode(h, 'hex') FROM unnest(orphaned_hashes) h) AS orphaned "
            "FROM ethindex.reorgs WHERE chain_id = %d ORDER BY id" % self.chain_id)
        fresh = rows[self.reorgs_seen:]
        self.reorgs_seen = len(rows)
        return fresh


def check_stored(tail, first=0):
    """The stored chain equals the node's up to the target; nothing else is
    stored and there is no gap."""
    last = tail.wait_caught_up()
    problems = compare_chain(cluster, tail.anvil.url, tail.chain_id, first, last)
    assert not problems, "%s: %d mismatches in blocks %d..%d:\n%s" % (
        tail.name, len(problems), first, last, "\n".join(problems[:40]))
    for table, col in (("blocks", "number"), ("transactions", "block_number"),
                       ("logs", "block_number"), ("withdrawals", "block_number")):
        above = cluster.scalar("SELECT count(*) FROM ethindex.%s WHERE chain_id = %d AND %s > %d"
                               % (table, tail.chain_id, col, last))
        assert above == "0", "%s: %s rows of %s above block %d" % (tail.name, above, table, last)
    gaps = cluster.query("SELECT * FROM ethindex.gaps(%s, true)" % sql_literal(tail.name))
    assert gaps == [], gaps
    return last


def reorganize(tail, kind, depth, rnd):
    """Replace the node's last `depth` blocks by a longer branch, in one of
    three ways; returns the number of blocks the old branch had."""
    a = tail.anvil
    head = a.head()
    if kind == "reorg":
        offsets = sorted(rnd.randrange(depth) for _ in range(3))
        txs = tail.txs.simple(tail.serial + 1000)
        a.rpc("anvil_reorg", [depth, [[tx, off] for tx, off in zip(txs, offsets)]])
        assert a.head() == head
    elif kind == "rollback":
        a.rpc("anvil_rollback", [depth])
        assert a.head() == head - depth
        tail.mine(depth, all_types=True)
    else:
        # the snapshot was taken `depth` blocks ago (see prepare())
        assert a.rpc("evm_revert", [tail.snapshot]) is True
        assert a.head() == head - depth
        tail.mine(depth, all_types=True)
    # the new branch becomes longer than the stored one
    tail.mine(1 + tail.confirmations)
    return head


def prepare(tail, kind, depth, rnd):
    """Mine the old branch, ending with `depth` blocks the reorganization
    will replace (after a snapshot for "revert"), and wait until stored."""
    tail.mine(rnd.randint(1, 3))
    if kind == "revert":
        tail.snapshot = tail.anvil.rpc("evm_snapshot")
    tail.mine(depth, all_types=True)
    return tail.wait_caught_up()


def run_scenario(tail, seed, depths):
    rnd = random.Random(seed)
    for i, depth in enumerate(depths):
        kind = KINDS[(i + seed) % len(KINDS)]
        stored_head = prepare(tail, kind, depth, rnd)
        before = tail.stored_hashes(stored_head - 12, stored_head)
        reorganize(tail, kind, depth, rnd)
        check_stored(tail, first=max(0, stored_head - 15))

        # the expected fork block: the last stored block the node still has
        fork = stored_head
        while fork in before and tail.node_hash(fork) != before[fork]:
            fork -= 1
        rows = tail.new_reorgs()
        what = "%s seed %d op %d: %s of depth %d with the stored head at %d" % (
            tail.name, seed, i, kind, depth, stored_head)
        if fork == stored_head:
            assert rows == [], "%s: no stored block was replaced, yet %r" % (what, rows)
            continue
        assert len(rows) == 1, "%s: expected one reorganization, got %r" % (what, rows)
        row = rows[0]
        assert row["fork_block"] == fork and row["depth"] == stored_head - fork, (what, row)
        assert row["orphaned"] == [before[n] for n in range(fork + 1, stored_head + 1)], (what, row)
        assert "0x" + row["old_head"] == before[stored_head], (what, row)
        assert "0x" + row["new_head"] == tail.node_hash(stored_head), (what, row)
        print("   %s: fork at %d, depth %d" % (what, fork, stored_head - fork))


def check_notifications(tail):
    """Replaying the notifications of the chain as an application would
    gives exactly the stored chain and its reorganizations."""
    through = int(cluster.chain_status(tail.name)["indexed_through"])
    # notifications arrive a moment after the commit
    listener.wait_for(lambda n: json.loads(n.payload)["chain"] == tail.name and
                      n.channel == "ethindex_blocks" and
                      json.loads(n.payload)["last"] >= through, timeout=10)
    last = last_hash = None
    reorg_ids = []
    for n in listener.notifications():
        p = json.loads(n.payload)
        if p["chain"] != tail.name:
            continue
        if n.channel == "ethindex_blocks":
            expected_first = 0 if last is None else last + 1
            assert p["first"] == expected_first and p["last"] >= p["first"], (expected_first, p)
            last, last_hash = p["last"], p["last_hash"]
        else:
            assert n.channel == "ethindex_reorgs", n
            assert p["old_head"] == last and p["fork_block"] < last, (last, p)
            assert p["depth"] == last - p["fork_block"], p
            last = p["fork_block"]
            last_hash = None
            reorg_ids.append(p["reorg_id"])
    assert last == through, (last, through)
    assert last_hash == tail.stored_hashes(through, through)[through]
    rows = [r["id"] for r in cluster.query("SELECT id FROM ethindex.reorgs WHERE chain_id = %d "
                                           "ORDER BY id" % tail.chain_id)]
    assert reorg_ids == rows, (reorg_ids, rows)
    return len(reorg_ids)


def setup_module():
    global cluster, tmpdir, listener
    base = int(os.environ.get("ETHINDEX_REORG_PORT_BASE", "57600"))
    # runs of at most 10 blocks per transaction, so that a batch held up
    # below the checkpoint leaves others committed above it (last test)
    cluster, tmpdir = start_extension_cluster("ethindex-reorg-", free_port(base, base + 50),
                                              settings={"ethindex.writer_batch_blocks": 10})
    listener = PgConnection(cluster.basedir, cluster.port, "ethindex_test")
    listener.listen("ethindex_blocks", "ethindex_reorgs")
    for name, chain_id, confirmations, offset in (("tail0", 31337, 0, 50), ("tail3", 31338, 3, 60)):
        tail = Tail(name, chain_id, confirmations, free_port(base + offset, base + offset + 10))
        tail.mine(3, all_types=True)
        tail.register()
        chains[name] = tail


def teardown_module():
    if listener is not None:
        listener.close()
    for tail in chains.values():
        tail.anvil.stop()
    stop_extension_cluster(cluster, tmpdir)


def _depths(first, seeds):
    """Depths first to 10 in a random order, each at least once, spread over
    the seeds' scenarios."""
    rnd = random.Random(first)
    depths = list(range(first, 11))
    depths += [rnd.randint(first, 10) for _ in range(len(seeds) * OPS_PER_SEED - len(depths))]
    rnd.shuffle(depths)
    return [depths[i * OPS_PER_SEED:(i + 1) * OPS_PER_SEED] for i in range(len(seeds))]


def test_reorgs_at_the_head():
    tail = chains["tail0"]
    check_stored(tail)
    # (the deeper-than-max test may have recorded one on this chain before)
    earlier = int(cluster.scalar("SELECT count(*) FROM ethindex.reorgs WHERE chain_id = %d"
                                 % tail.chain_id))
    for seed, depths in zip(SEEDS, _depths(1, SEEDS)):
        run_scenario(tail, seed, depths)
    check_stored(tail)
    assert check_notifications(tail) == earlier + len(SEEDS) * OPS_PER_SEED


test_reorgs_at_the_head.timeout = 600


def test_reorgs_with_confirmations():
    tail = chains["tail3"]
    check_stored(tail)
    seeds = SEEDS[:2]
    for seed, depths in zip(seeds, _depths(3, seeds)):
        run_scenario(tail, seed + 1, depths)
    check_stored(tail)
    rolled_back = check_notifications(tail)
    # a reorganization of 3 blocks replaces blocks not stored yet
    assert 0 < rolled_back < len(seeds) * OPS_PER_SEED, rolled_back


test_reorgs_with_confirmations.timeout = 600


def test_deeper_than_max_reorg_depth():
    """A reorganization deeper than max_reorg_depth: error state naming the
    depth and the blocks, nothing deleted; raising the limit rolls it back."""
    tail = chains["tail0"]
    stored_head = prepare(tail, "reorg", 8, random.Random(1))
    cluster.psql("SELECT ethindex.stop('tail0'); "
                 "SELECT ethindex.alter_chain('tail0', max_reorg_depth => 5); "
                 "SELECT ethindex.start('tail0')")
    before = cluster.query("SELECT number, hash FROM ethindex.blocks WHERE chain_id = %d "
                           "ORDER BY number" % tail.chain_id)
    reorgs_before = cluster.scalar("SELECT count(*) FROM ethindex.reorgs")
    reorganize(tail, "reorg", 8, random.Random(2))
    cluster.wait_until("SELECT last_error LIKE '%max_reorg_depth%' FROM ethindex.chain_status "
                       "WHERE name = 'tail0'", timeout=30)
    st = cluster.chain_status("tail0")
    assert st["state"] == "error", st
    err = st["last_error"]
    assert ("reorganization of depth 8 of chain \"tail0\" exceeds max_reorg_depth 5" in err and
            "replaced blocks %d to %d" % (stored_head - 7, stored_head) in err), err
    assert st["indexed_through"] == stored_head, st
    assert cluster.query("SELECT number, hash FROM ethindex.blocks WHERE chain_id = %d "
                         "ORDER BY number" % tail.chain_id) == before
    assert cluster.scalar("SELECT count(*) FROM ethindex.reorgs") == reorgs_before

    cluster.psql("SELECT ethindex.stop('tail0'); "
                 "SELECT ethindex.alter_chain('tail0', max_reorg_depth => 64); "
                 "SELECT ethindex.start('tail0')")
    check_stored(tail, first=max(0, stored_head - 20))
    rows = tail.new_reorgs()
    assert [(r["fork_block"], r["depth"]) for r in rows] == [(stored_head - 8, 8)], rows
    cluster.wait_until("SELECT state = 'running' FROM ethindex.chain_status WHERE name = 'tail0'")
    check_notifications(tail)


def test_reorg_with_batches_above_the_checkpoint():
    """While the batch at the checkpoint cannot commit (a lock the test
    holds), later batches commit above it; a reorganization found then waits
    for them, and its rollback deletes their rows too."""
    base = int(os.environ.get("ETHINDEX_REORG_PORT_BASE", "57600"))
    # finality far behind the head: anvil finalizes two "epochs" back
    tail = Tail("ooo", 31339, 0, free_port(base + 70, base + 80),
                extra_args=["--slots-in-an-epoch", "1024"])
    chains["ooo"] = tail
    # block 999, the first of the chain, alone in its partition, has the
    # only transactions; the test locks its partition of transactions
    tail.anvil.mine(998 - tail.anvil.head())
    tail.mine(1)
    tail.anvil.mine(302)
    head = tail.anvil.head()
    cluster.psql("SELECT ethindex._ensure_partitions(%d, 1000, 999, 999)" % tail.chain_id)
    locker = subprocess.Popen(
        [os.path.join(cluster.bindir, "psql"), "-X", "-q", "-d", "ethindex_test", "-v",
         "ON_ERROR_STOP=1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=cluster.env(), text=True)
    try:
        # held until psql's stdin closes
        locker.stdin.write("BEGIN; LOCK TABLE ethindex.transactions_%d_000000000000 "
                           "IN ACCESS EXCLUSIVE MODE;\n" % tail.chain_id)
        locker.stdin.flush()
        cluster.wait_until("SELECT count(*) = 1 FROM pg_locks WHERE relation = "
                           "'ethindex.transactions_%d_000000000000'::regclass AND granted"
                           % tail.chain_id, timeout=20)
        cluster.psql("SELECT ethindex.add_chain('ooo', ARRAY[%s], chain_id => %d, "
                     "start_block => 999, partition_size => 1000, batch_size => 10); "
                     "SELECT ethindex.start('ooo')" % (sql_literal(tail.anvil.url), tail.chain_id))
        # the blocks up to the head are queued; all but the batch at the
        # checkpoint and the last (which commits in block order) are stored
        cluster.wait_until("SELECT count(*) >= 270 FROM ethindex.blocks WHERE chain_id = %d "
                           "AND number BETWEEN 1000 AND %d" % (tail.chain_id, head), timeout=60)
        assert cluster.chain_status("ooo")["indexed_through"] is None
        old = {n: tail.node_hash(n) for n in range(head - 29, head + 1)}
        above = tail.stored_hashes(head - 29, head)
        assert len(above) >= 10 and all(above[n] == old[n] for n in above), above

        reorganize(tail, "reorg", 30, random.Random(3))
        cluster.wait_until("SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = "
                           "'ethindex fetcher' AND query = 'waiting for the insert workers "
                           "before a rollback'", timeout=30)
        # nothing rolled back yet: the batches above the checkpoint are there
        assert tail.stored_hashes(head - 29, head) == above
    finally:
        locker.stdin.close()
        locker.wait(10)
    check_stored(tail, first=999)
    rows = tail.new_reorgs()
    assert len(rows) == 1, rows
    assert rows[0]["fork_block"] == head - 30 and rows[0]["depth"] == 30, rows
    assert rows[0]["orphaned"] == [old[n] for n in range(head - 29, head + 1)], rows
    assert cluster.scalar("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d"
                          % tail.chain_id) == str(tail.target() - 999 + 1)
