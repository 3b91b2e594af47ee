"""
test_flow.py: a full queue holds the fetcher back without failing its
requests.

The insert worker is held up (a session keeps ethindex.partitions locked,
so the worker cannot create the chain's first partitions) until the queue of 1 MB is full
and the fetcher has been waiting for room for more than twice
ethindex.rpc_timeout.  The requests the fetcher had in flight when it
started waiting must not time out: the fetcher drives them while it waits
(before, it slept on the queue, and they failed as timeouts of the
endpoint, as during every long index build).  Checked: the fetcher waited
for room in the queue, the chain then completes with no error recorded, and
every row equals the node's data.

A second chain shows the bound on the memory of responses: with
ethindex.max_bytes_in_flight at 1 MB and responses of about 300 kB (one
block each, four requests in flight), responses that would pass the limit
fail their request with an error that names the setting, and the chain still
completes with every row equal to the node's data.

Run:  runuser -u ethindex -- python3 test/integration/run.py -k flow
"""

import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import ethindex_test as et          # noqa: E402
import synthchain                   # noqa: E402
from pgwire import PgConnection     # noqa: E402
from rpcserver import Chain        # noqa: E402

PORT_BASE = 59700       # default of ETHINDEX_FLOW_PORT_BASE (start_replay_cluster)
CHAIN = "flow"
CHAIN_ID = 940001
NBLOCKS = 200
BATCH = 50              # blocks per request: responses of about 15 MB
BLOCK_INPUT = 150000    # bytes of transaction input per block
RPC_TIMEOUT_MS = 5000
MEM_CHAIN = "mem"
MEM_CHAIN_ID = 940002
TEST_TIMEOUT = 120

SETTINGS = {
    "ethindex.queue_size": "1MB",
    "ethindex.insert_workers": 1,
    "ethindex.max_requests_in_flight": 4,
    "ethindex.rpc_timeout": RPC_TIMEOUT_MS,
    "ethindex.retry_max_delay": 500,
}

cluster = None
replay = None
tmpdir = None


def padded_chain(chain_id=CHAIN_ID):
    """The synthetic chain with BLOCK_INPUT bytes of transaction input per
    block with transactions: a few such blocks fill the queue, and a
    response is larger than what the kernel buffers for a socket, so that
    it is only complete if the fetcher reads it."""
    chain = synthchain.generate(NBLOCKS, chain_id=chain_id)
    for number, (block, _receipts) in chain.items():
        txs = block["transactions"]
        for i, tx in enumerate(txs):
            tx["input"] = synthchain.data_bytes(BLOCK_INPUT // len(txs), "pad", number, i)
    return chain


def warm_up(url):
    """Ask the replay server for every block and receipt list once, so that
    it has them serialized: the 15 MB responses must not take the server
    longer than the request time limit to produce on a loaded machine."""
    calls = []
    for n in range(NBLOCKS):
        calls.append({"jsonrpc": "2.0", "id": 2 * n, "method": "eth_getBlockByNumber",
                      "params": [hex(n), True]})
        calls.append({"jsonrpc": "2.0", "id": 2 * n + 1, "method": "eth_getBlockReceipts",
                      "params": [hex(n)]})
    req = urllib.request.Request(url, data=json.dumps(calls).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        assert len(json.loads(r.read())) == len(calls)


def setup_module(module=None):
    global cluster, replay, tmpdir
    cluster, tmpdir, replay, _ = et.start_replay_cluster(
        "flow", PORT_BASE, SETTINGS,
        chains=[Chain(CHAIN, CHAIN_ID, padded_chain()),
                Chain(MEM_CHAIN, MEM_CHAIN_ID, padded_chain(MEM_CHAIN_ID))])
    try:
        warm_up(replay.chain_url(CHAIN))
    except BaseException:
        teardown_module()
        raise


def teardown_module(module=None):
    global cluster, replay
    try:
        et.stop_replay_cluster(cluster, tmpdir, replay)
    finally:
        cluster = replay = None


lit = et.sql_literal


def fetcher_activity():
    return cluster.scalar(
        "SELECT a.query FROM pg_stat_activity a JOIN ethindex.chain_status s "
        "ON a.pid = s.fetcher_pid WHERE s.name = %s" % lit(CHAIN))


def test_full_queue_keeps_requests_alive():
    mark = cluster.log_position()
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, batch_size => %d)"
                 % (lit(CHAIN), lit(replay.chain_url(CHAIN)), CHAIN_ID, BATCH))
    blocker = PgConnection(cluster.basedir, cluster.port, "ethindex_test")
    try:
        blocker.query("BEGIN")
        # the insert worker registers the chain's first partitions before
        # it stores a block: it waits for this lock
        blocker.query("LOCK TABLE ethindex.partitions IN EXCLUSIVE MODE")
        cluster.psql("SELECT ethindex.start(%s)" % lit(CHAIN))

        cluster.wait_until("SELECT a.query = 'waiting for room in the queue' "
                           "FROM pg_stat_activity a JOIN ethindex.chain_status s "
                           "ON a.pid = s.fetcher_pid WHERE s.name = %s" % lit(CHAIN), timeout=60)
        st = cluster.chain_status(CHAIN)
        assert int(st["queued_bytes"]) > 512 * 1024, st
        assert st["indexed_through"] is None, st

        # hold the queue full for more than twice the request time limit,
        # checking that the fetcher goes on waiting (it has not failed)
        waited_from = time.monotonic()
        while time.monotonic() - waited_from < 2.5 * RPC_TIMEOUT_MS / 1000:
            assert fetcher_activity() == "waiting for room in the queue", \
                cluster.chain_status(CHAIN)
            time.sleep(0.2)
        blocker.query("ROLLBACK")
    finally:
        blocker.close()

    ok = cluster.scalar("SELECT ethindex.wait_for(%s, %d, '60 s')" % (lit(CHAIN), NBLOCKS - 1))
    st = cluster.chain_status(CHAIN)
    assert ok == "t", (st, cluster.log_tail(30))
    assert st["last_error"] is None, st
    assert "timed out" not in cluster.log_since(mark), cluster.log_tail(30)
    problems = et.compare_chain(cluster, replay.chain_url(CHAIN), CHAIN_ID, 0, NBLOCKS - 1)
    assert not problems, "\n".join(problems[:30])


def test_responses_in_memory_are_bounded():
    cluster.psql("ALTER SYSTEM SET ethindex.max_bytes_in_flight = '1MB'")
    cluster.psql("SELECT pg_reload_conf()")
    # Every 8th block answered 0.3 s late: the responses of the requests
    # after it arrive while it is outstanding, and the fetcher holds them
    # (it queues in block order), 25 times for 0.3 s, which the samples of
    # response_bytes cannot all miss (a fast server leaves no response
    # held long enough to be seen).
    slow = replay.add_fault("delay", chain=MEM_CHAIN, method="eth_getBlockByNumber",
                            block=list(range(4, NBLOCKS, 8)), seconds=0.3)
    try:
        responses_in_memory_are_bounded()
    finally:
        replay.clear_faults(slow)
        cluster.psql("ALTER SYSTEM RESET ethindex.max_bytes_in_flight")
        cluster.psql("SELECT pg_reload_conf()")


def responses_in_memory_are_bounded():
    cluster.wait_until("SELECT current_setting('ethindex.max_bytes_in_flight') = '1MB'",
                       timeout=10)
    mark = cluster.log_position()
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, batch_size => 1); "
                 "SELECT ethindex.start(%s)"
                 % (lit(MEM_CHAIN), lit(replay.chain_url(MEM_CHAIN)), MEM_CHAIN_ID,
                    lit(MEM_CHAIN)))
    peak = seen = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        st = cluster.chain_status(MEM_CHAIN)
        peak = max(peak, int(st["response_bytes"] or 0))
        seen += int(st["response_bytes"] or 0) > 0
        if st["indexed_through"] is not None and int(st["indexed_through"]) == NBLOCKS - 1:
            break
        time.sleep(0.02)
    st = cluster.chain_status(MEM_CHAIN)
    assert st["indexed_through"] is not None and int(st["indexed_through"]) == NBLOCKS - 1, \
        (st, cluster.log_tail(30))
    log = cluster.log_since(mark)
    assert "the chain's responses in memory reached ethindex.max_bytes_in_flight (1024 kB)" \
        in log, cluster.log_tail(30)
    # never more than the limit and one response's buffer (512 kB) beyond it
    print("   response_bytes: %d samples above 0, peak %d kB" % (seen, peak // 1024), flush=True)
    assert 0 < peak <= 1536 * 1024, peak
    problems = et.compare_chain(cluster, replay.chain_url(MEM_CHAIN), MEM_CHAIN_ID, 0,
                                NBLOCKS - 1)
    assert not problems, "\n".join(problems[:30])
