"""
test_refetch.py: ethindex.gaps() finds rows deleted by hand and
ethindex.refetch() puts them back from the node, against a real anvil node.

  - gaps() of a complete chain is empty, with and without the row check;
  - rows deleted by hand (whole blocks, the logs of one block, the
    transactions and logs of another) are reported as ranges;
  - refetch() replaces the rows of a range batch by batch: the gaps are gone
    and every column equals the node's again; requests made while the chain
    is stopped are served when it starts;
  - a refetch whose blocks the node has since replaced (a reorganization
    not seen yet) does not splice the other branch in: the request ends with
    an error and the rows stay; the reorganization is rolled back when the
    next block comes;
  - refetch() refuses ranges outside start_block .. indexed_through.

ETHINDEX_REFETCH_PORT_BASE (58000) picks the ports.
"""

import os
import time

from ethindex_test import (Anvil, AnvilTransactions, PsqlError, compare_chain, free_port,
                           sql_literal, start_extension_cluster, stop_extension_cluster)

CHAIN = "rf"
CHAIN_ID = 31337
TEST_TIMEOUT = 120

cluster = None
tmpdir = None
anvil = None
txs = None


def sc(sql):
    return cluster.scalar(sql)


def head_indexed():
    head = anvil.head()
    ok = sc("SELECT ethindex.wait_for(%s, %d, '60 seconds')" % (sql_literal(CHAIN), head))
    assert ok == "t", (cluster.chain_status(CHAIN), cluster.log_tail(30))
    return head


def check_chain(first, last):
    problems = compare_chain(cluster, anvil.url, CHAIN_ID, first, last)
    assert not problems, "%d mismatches:\n%s" % (len(problems), "\n".join(problems[:40]))


def gaps(check_rows=False):
    return [(r["first_block"], r["last_block"], r["problem"]) for r in cluster.query(
        "SELECT * FROM ethindex.gaps(%s, %s)" % (sql_literal(CHAIN), "true" if check_rows else "false"))]


def delete_rows(table, first, last):
    column = "number" if table == "blocks" else "block_number"
    cluster.psql("DELETE FROM ethindex.%s WHERE chain_id = %d AND %s BETWEEN %d AND %d"
                 % (table, CHAIN_ID, column, first, last))


def refetch(first, last, timeout=60):
    """Request a refetch and wait until it is finished; returns its row."""
    rid = int(sc("SELECT ethindex.refetch(%s, %d, %d)" % (sql_literal(CHAIN), first, last)))
    deadline = time.monotonic() + timeout
    while True:
        row = cluster.query("SELECT * FROM ethindex.refetches WHERE id = %d" % rid)[0]
        if row["finished_at"] is not None:
            return row
        assert time.monotonic() < deadline, (row, cluster.chain_status(CHAIN), cluster.log_tail(30))
        time.sleep(0.05)


def fresh_chain():
    """The chain registered afresh (an earlier registration removed with its
    data, reorganizations and refetch requests), started and indexed through
    the node's head: each test starts from an intact chain."""
    cluster.remove_all_chains()
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, batch_size => 4); "
                 "SELECT ethindex.start(%s)"
                 % (sql_literal(CHAIN), sql_literal(anvil.url), CHAIN_ID, sql_literal(CHAIN)))
    head = head_indexed()
    assert gaps(True) == []
    return head


def setup_module():
    global cluster, tmpdir, anvil, txs
    base = int(os.environ.get("ETHINDEX_REFETCH_PORT_BASE", "58000"))
    cluster, tmpdir = start_extension_cluster("ethindex-refetch-", free_port(base, base + 50))
    anvil = Anvil(free_port(base + 50, base + 70), logdir=tmpdir)
    txs = AnvilTransactions(anvil, tmpdir)
    txs.mine_blocks(30, all_types=True)
    check_chain(0, fresh_chain())


def teardown_module():
    if anvil is not None:
        anvil.stop()
    stop_extension_cluster(cluster, tmpdir)


def delete_some_rows():
    """Blocks 5-7 wholly, the logs of 12, the transactions and logs of 20-21."""
    for table in ("blocks", "transactions", "logs", "withdrawals"):
        delete_rows(table, 5, 7)
    delete_rows("logs", 12, 12)
    delete_rows("transactions", 20, 21)
    delete_rows("logs", 20, 21)


def test_no_gaps():
    fresh_chain()
    assert gaps() == [] and gaps(True) == []


def test_gaps_of_rows_deleted_by_hand():
    fresh_chain()
    delete_some_rows()
    assert gaps() == [(5, 7, "missing blocks")]
    assert gaps(True) == [(5, 7, "missing blocks"), (12, 12, "missing or extra rows"),
                          (20, 21, "missing or extra rows")]


def test_refetch_replaces_the_rows():
    head = fresh_chain()
    delete_some_rows()
    assert len(gaps(True)) == 3
    row = refetch(5, 21)
    assert row["error"] is None and row["next_block"] == 22, row
    assert gaps(True) == []
    check_chain(0, head)


def test_refetch_requested_while_stopped():
    fresh_chain()
    cluster.psql("SELECT ethindex.stop(%s)" % sql_literal(CHAIN))
    cluster.wait_until("SELECT state = 'stopped' AND fetcher_pid IS NULL FROM ethindex.chain_status "
                       "WHERE name = %s" % sql_literal(CHAIN), timeout=30)
    for table in ("blocks", "transactions", "logs"):
        delete_rows(table, 2, 2)
    rid = sc("SELECT ethindex.refetch(%s, 2, 3)" % sql_literal(CHAIN))
    # over more than two of the launcher's 1 s turns (which would start a
    # fetcher for it), the stopped chain gets none and the request waits
    until = time.monotonic() + 2.5
    while time.monotonic() < until:
        assert sc("SELECT r.finished_at IS NULL AND s.fetcher_pid IS NULL "
                  "FROM ethindex.refetches r, ethindex.chain_status s "
                  "WHERE r.id = %s AND s.name = %s" % (rid, sql_literal(CHAIN))) == "t"
        time.sleep(0.1)
    assert gaps(True) == [(2, 2, "missing blocks")]
    cluster.psql("SELECT ethindex.start(%s)" % sql_literal(CHAIN))
    cluster.wait_until("SELECT finished_at IS NOT NULL AND error IS NULL "
                       "FROM ethindex.refetches WHERE id = %s" % rid, timeout=60)
    assert gaps(True) == []
    check_chain(0, head_indexed())


def test_refetch_of_a_replaced_branch_fails():
    """The node replaced the last blocks; no new block yet, so the chain has
    not seen it.  A refetch of them must not mix the branches."""
    head = fresh_chain()
    stored = cluster.query("SELECT number, hash FROM ethindex.blocks WHERE chain_id = %d "
                           "ORDER BY number" % CHAIN_ID)
    anvil.rpc("anvil_reorg", [3, [[txs.simple(500)[0], 0]]])
    row = refetch(head - 2, head - 1)
    assert row["error"] is not None and "the stored block %d names parent" % head in row["error"], row
    # up to indexed_through: the last block is checked against the checkpoint
    row = refetch(head - 2, head)
    assert row["error"] is not None and \
        "the node's block %d has hash" % head in row["error"] and \
        "the last block of the checkpoint" in row["error"], row
    assert cluster.query("SELECT number, hash FROM ethindex.blocks WHERE chain_id = %d "
                         "ORDER BY number" % CHAIN_ID) == stored
    # the next block brings the reorganization to light
    head = txs.mine_blocks(1, start=600)
    head_indexed()
    assert cluster.query("SELECT fork_block, depth FROM ethindex.reorgs") == \
        [{"fork_block": head - 4, "depth": 3}]
    check_chain(0, head)


def test_refetch_needs_a_stored_block_to_check_against():
    """A batch whose last block and the block after it are both missing
    cannot be checked against the stored chain: the request fails, and a
    range that ends at a stored block repairs the gap."""
    fresh_chain()
    for table in ("blocks", "transactions", "logs", "withdrawals"):
        delete_rows(table, 8, 10)
    row = refetch(8, 9)
    assert row["error"] is not None and "blocks 9 and 10 are not stored" in row["error"], row
    row = refetch(8, 10)
    assert row["error"] is None, row
    assert gaps(True) == []
    check_chain(0, head_indexed())


def test_refetch_refuses_bad_ranges():
    fresh_chain()
    through = int(cluster.chain_status(CHAIN)["indexed_through"])
    for args, message in (
            ("%d, %d" % (through, through + 1),
             'block %d of chain "rf" is above indexed_through %d' % (through + 1, through)),
            ("5, 4", 'invalid block range 5 to 4 for chain "rf"'),
            ("-1, 4", 'invalid block range -1 to 4 for chain "rf"')):
        try:
            cluster.psql("SELECT ethindex.refetch('rf', %s)" % args)
        except PsqlError as e:
            assert message in str(e), (message, str(e))
        else:
            raise AssertionError("refetch(%s) did not fail" % args)
    try:
        cluster.psql("SELECT ethindex.refetch('nope', 1, 2)")
    except PsqlError as e:
        assert 'chain "nope" does not exist' in str(e), e
    else:
        raise AssertionError("refetch of an unknown chain did not fail")
