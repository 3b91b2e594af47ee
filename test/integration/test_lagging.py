"""
test_lagging.py: an endpoint that lags behind, or follows an older branch, never
makes ethindex roll back.

The chain has two endpoints, #1 and #2 in messages: anvil (behind the project's RPC server as a
proxy, so that the test can make it fail) and a replay of an older branch of
the same anvil chain: blocks the node had before evm_revert replaced them.
The replayed branch forks below the stored head and is longer than it.

  - The replay serving a head below the stored one: the fetcher finds
    nothing to fetch there, rolls nothing back, and leaves the endpoint after
    a while for the other one.
  - anvil down: the fetcher fails over to the replay, finds that its next
    block does not follow the stored chain, and looks for a confirmation of
    the reorganization from anvil, which fails: nothing is rolled back.
  - anvil up again but failing eth_blockNumber: anvil answers the
    confirmation with the stored block: nothing is rolled back.
Afterwards ethindex follows anvil, the stored chain equals anvil's in every
column, and ethindex.reorgs is empty.

ETHINDEX_LAGGING_PORT_BASE (57800) picks the ports.
"""

import os
import time

from ethindex_test import (Anvil, AnvilTransactions, compare_chain, fetch_block, free_port,
                           sql_literal, start_extension_cluster, stop_extension_cluster)
from rpcserver import Chain, RpcServer

# test_follows_the_node_afterwards is the scenario's last step: the blocks it
# has the node mine take the stored head past the older branch, which the
# other tests need to be the longer one.  Each test still runs alone.
TESTS_IN_ORDER = "the last test moves the stored head past the older branch"

CHAIN = "lag"
CHAIN_ID = 31337
TEST_TIMEOUT = 180

cluster = None
tmpdir = None
anvil = None
server = None
txs = None
state = {}


def sc(sql):
    return cluster.scalar(sql)


def stored_hashes():
    return sc("SELECT string_agg(encode(hash, 'hex'), ',' ORDER BY number) FROM ethindex.blocks "
              "WHERE chain_id = %d" % CHAIN_ID)


def wait_for(block, timeout=60):
    ok = sc("SELECT ethindex.wait_for(%s, %d, '%d seconds')" % (sql_literal(CHAIN), block, timeout))
    assert ok == "t", (cluster.chain_status(CHAIN), cluster.log_tail(40))


def wait_error(*parts, timeout=60):
    """Wait until the chain's last_error contains every part; return it (it
    changes as the fetcher goes on trying)."""
    deadline = time.monotonic() + timeout
    while True:
        err = cluster.chain_status(CHAIN)["last_error"] or ""
        if all(p in err for p in parts):
            return err
        assert time.monotonic() < deadline, "no error with %r; last: %s\n%s" % (
            parts, err, cluster.log_tail(30))
        time.sleep(0.05)


def assert_nothing_rolled_back():
    assert sc("SELECT count(*) FROM ethindex.reorgs") == "0", \
        cluster.query("SELECT * FROM ethindex.reorgs")
    assert stored_hashes() == state["hashes"]
    assert cluster.chain_status(CHAIN)["indexed_through"] == state["head"]


def setup_module():
    global cluster, tmpdir, anvil, server, txs
    base = int(os.environ.get("ETHINDEX_LAGGING_PORT_BASE", "57800"))
    cluster, tmpdir = start_extension_cluster("ethindex-lagging-", free_port(base, base + 50))
    anvil = Anvil(free_port(base + 50, base + 70), logdir=tmpdir)
    txs = AnvilTransactions(anvil, tmpdir)

    # the old branch: 10 blocks above the snapshot, recorded, then reverted
    fork = txs.mine_blocks(12, all_types=True)
    snapshot = anvil.rpc("evm_snapshot")
    old_head = txs.mine_blocks(10, start=100)
    old = {n: fetch_block(anvil.url, n) for n in range(0, old_head + 1)}
    assert anvil.rpc("evm_revert", [snapshot]) is True
    # the new branch: 7 blocks, shorter than the old one
    head = txs.mine_blocks(7, start=200, all_types=True)
    assert fork < head < old_head
    assert fetch_block(anvil.url, fork)[0]["hash"] == old[fork][0]["hash"]
    assert fetch_block(anvil.url, fork + 1)[0]["hash"] != old[fork + 1][0]["hash"]

    server = RpcServer(free_port(base + 70, base + 90))
    server.add_proxy("anvil", anvil.url)
    server.add_chain(Chain("old", CHAIN_ID, old))
    server.start()
    state.update(fork=fork, head=head, old_head=old_head)

    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s, %s], chain_id => %d); "
                 "SELECT ethindex.start(%s)"
                 % (sql_literal(CHAIN), sql_literal(server.chain_url("anvil")),
                    sql_literal(server.chain_url("old")), CHAIN_ID, sql_literal(CHAIN)))
    wait_for(head)
    problems = compare_chain(cluster, anvil.url, CHAIN_ID, 0, head)
    assert not problems, problems[:20]
    state["hashes"] = stored_hashes()


def teardown_module():
    if server is not None:
        server.stop()
    if anvil is not None:
        anvil.stop()
    stop_extension_cluster(cluster, tmpdir)


def test_endpoint_below_the_stored_head():
    """The replay at a head below the stored one: nothing to fetch there, no
    rollback, and the endpoint is left after a while."""
    since = cluster.log_position()
    server.set_head("old", state["head"] - 3)
    fault = server.add_fault("http_status", chain="anvil", method="eth_blockNumber", status=503)
    try:
        cluster.wait_for_log("#2 stays at block %d, below block %d already stored"
                             % (state["head"] - 3, state["head"]), since=since)
    finally:
        server.clear_faults(fault)
        server.set_head("old", None)
    assert_nothing_rolled_back()


def test_older_branch_while_the_node_is_down():
    """anvil down: the replay's longer older branch is not confirmed."""
    fault = server.add_fault("http_status", chain="anvil", status=500)
    try:
        err = wait_error("reorganization of depth %d of chain \"lag\" reported by "
                         % (state["head"] - state["fork"]),
                         "#2 is not confirmed", "#1 failed",
                         "Nothing was rolled back")
        assert "branch from block %d" % state["fork"] in err, err
        assert_nothing_rolled_back()
    finally:
        server.clear_faults(fault)


def test_older_branch_denied_by_the_node():
    """anvil answers, but not its head: the replay's branch is not
    confirmed, anvil has the stored block."""
    fault = server.add_fault("http_status", chain="anvil", method="eth_blockNumber", status=503)
    try:
        wait_error("#2 is not confirmed", "#1 has the stored block")
        assert_nothing_rolled_back()
    finally:
        server.clear_faults(fault)


def test_follows_the_node_afterwards():
    head = txs.mine_blocks(3, start=300)
    wait_for(head)
    problems = compare_chain(cluster, anvil.url, CHAIN_ID, 0, head)
    assert not problems, problems[:20]
    assert sc("SELECT count(*) FROM ethindex.reorgs") == "0"
    assert sc("SELECT count(*) FROM ethindex.gaps(%s, true)" % sql_literal(CHAIN)) == "0"
