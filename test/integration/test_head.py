"""
test_head.py: following the head of a chain that mines at a steady interval
(anvil --block-time 0.5, transactions in every block from test/lib/traffic.py),
through the project's RPC proxy, which counts the calls.

  - the head-poll schedule learns the block interval and polls around the
    next block's arrival: far fewer eth_blockNumber calls than one every
    poll_interval (50 ms), at least one per block, and
    chain_status.head_requests_per_minute says how many;
  - the visibility rule at the head: sampled continuously by a reader, no
    row above indexed_through is ever visible once the chain has caught up;
  - every new block is announced on ethindex_blocks, in order, each range
    continuing the one before.

ETHINDEX_HEAD_PORT_BASE (58200) picks the ports.
"""

import json
import os
import subprocess
import sys
import time

from ethindex_test import (Anvil, TEST_DIR, compare_chain, free_port, sql_literal,
                           start_extension_cluster, stop_extension_cluster, stop_process)
from pgwire import PgConnection
from rpcserver import RpcServer

CHAIN = "head"
CHAIN_ID = 31337
BLOCK_TIME = 0.5
POLL_MS = 50
WINDOW = 15.0           # seconds of counting

cluster = None
tmpdir = None
anvil = None
server = None
traffic = None
listener = None


def setup_module():
    global cluster, tmpdir, anvil, server, traffic, listener
    base = int(os.environ.get("ETHINDEX_HEAD_PORT_BASE", "58200"))
    cluster, tmpdir = start_extension_cluster("ethindex-head-", free_port(base, base + 50))
    anvil = Anvil(free_port(base + 50, base + 70), extra_args=["--block-time", str(BLOCK_TIME)],
                  logdir=tmpdir)
    server = RpcServer(free_port(base + 70, base + 90))
    server.add_proxy("anvil", anvil.url)
    server.start()
    traffic = subprocess.Popen([sys.executable, os.path.join(TEST_DIR, "lib", "traffic.py"),
                                "--url", anvil.url, "--rate", "20", "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener = PgConnection(cluster.basedir, cluster.port, "ethindex_test")
    listener.listen("ethindex_blocks")
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, "
                 "poll_interval => '%d ms'); SELECT ethindex.start(%s)"
                 % (sql_literal(CHAIN), sql_literal(server.chain_url("anvil")), CHAIN_ID,
                    POLL_MS, sql_literal(CHAIN)))
    ok = cluster.scalar("SELECT ethindex.wait_for(%s, %d, '60 seconds')"
                        % (sql_literal(CHAIN), anvil.head()))
    assert ok == "t", cluster.log_tail(30)


def teardown_module():
    if listener is not None:
        listener.close()
    if traffic is not None:
        stop_process(traffic)
    if server is not None:
        server.stop()
    if anvil is not None:
        anvil.stop()
    stop_extension_cluster(cluster, tmpdir)


def test_polls_around_the_next_block():
    time.sleep(5)           # the schedule learns the interval from a few blocks
    reader = PgConnection(cluster.basedir, cluster.port, "ethindex_test")
    visible_above = []
    samples = 0
    head0 = anvil.head()
    server.reset_stats()
    t0 = time.monotonic()
    try:
        # a reader all along: one snapshot per statement
        while time.monotonic() - t0 < WINDOW:
            row = reader.query(
                "SELECT (SELECT next_block - 1 FROM ethindex.chains WHERE name = 'head'), "
                "(SELECT max(number) FROM ethindex.blocks WHERE chain_id = %d), "
                "(SELECT max(block_number) FROM ethindex.transactions WHERE chain_id = %d)"
                % (CHAIN_ID, CHAIN_ID))[0]
            through, top_block, top_tx = (int(v) if v is not None else -1 for v in row)
            samples += 1
            if top_block > through or top_tx > through:
                visible_above.append(row)
    finally:
        reader.close()
    elapsed = time.monotonic() - t0
    polls = server.counts(method="eth_blockNumber", chain="anvil")
    blocks = anvil.head() - head0
    uniform = elapsed * 1000 / POLL_MS
    print("   %d head polls for %d blocks in %.1f s (every %d ms: %d); %d reader samples"
          % (polls, blocks, elapsed, POLL_MS, uniform, samples))
    assert visible_above == [], visible_above[:5]
    assert samples > 50, samples
    assert blocks >= WINDOW / BLOCK_TIME / 2, blocks
    # about 3 polls a block once the interval is learned (polling while
    # learning would be every 50 ms); a margin for a loaded machine
    assert blocks / 2 <= polls < uniform * 0.6, (polls, blocks, uniform)
    per_minute = cluster.chain_status(CHAIN)["head_requests_per_minute"]
    assert per_minute is not None and 0 < per_minute < 60000 / POLL_MS * 0.6, per_minute


def test_blocks_announced_in_order():
    head = anvil.head()
    ok = cluster.scalar("SELECT ethindex.wait_for(%s, %d, '30 seconds')" % (sql_literal(CHAIN), head))
    assert ok == "t"
    through = int(cluster.chain_status(CHAIN)["indexed_through"])
    # notifications arrive a moment after the commit
    listener.wait_for(lambda n: json.loads(n.payload)["last"] >= through, timeout=10)
    last = None
    for n in listener.notifications():
        p = json.loads(n.payload)
        assert p["first"] == (0 if last is None else last + 1), (last, p)
        last = p["last"]
        if last >= through:
            break
    assert last == through, (last, through)
    problems = compare_chain(cluster, anvil.url, CHAIN_ID, max(0, through - 40), through)
    assert not problems, problems[:20]
