"""
test_faults.py: ethindex under bad node behaviour.

A synthetic chain (test/lib/synthchain.py, 20 blocks with every transaction
type, logs and withdrawals) is served by a replay server; the chains under
test reach it through a second rpcserver in proxy mode, which injects the
faults.  Every test registers its own chain (own name, chain id, replay
chain and proxy path), so tests do not disturb each other.

For each class of bad input, injected for block N only and kept until
cleared: the chain goes to state 'error' with a last_error naming the
problem, indexed_through stays at N-1 while the fetcher goes on asking for
block N (the node sees it asked again), nothing of block N or beyond is
stored in any table, the server log (from the test's start) has the error
and no crash; once the fault is cleared the chain catches up and every row
equals the node's data.

The same with adaptive requests (batch_size NULL) and the bad block in the
middle of a request of many blocks: the blocks before it in that request
are stored, the retries start at it with half as many blocks each time.

Also: eth_getBlockReceipts "method not found" -> per-transaction receipts;
failover to a second endpoint when the first refuses connections or always
answers HTTP 500; retries back off (100 ms doubling up to
ethindex.retry_max_delay, measured at the node) instead of hammering a
failing endpoint; a head that grows (nothing is fetched beyond the head).

Run:  runuser -u ethindex -- python3 test/integration/run.py -k faults
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import ethindex_test as et          # noqa: E402
import synthchain                   # noqa: E402
from rpcserver import Chain, RpcServer  # noqa: E402

PORT_BASE = int(os.environ.get("ETHINDEX_FAULTS_PORT_BASE", "57050"))
NBLOCKS = 20            # blocks 0..19
N = 13                  # the faulty block: 4 transactions, logs, a withdrawal
                        # (and not the first block of a fetch window)
CHAIN_ID_BASE = 910000
SETUP_TIMEOUT = 180
TEST_TIMEOUT = 180
ERROR_WAIT = 60
CATCHUP_WAIT = 90

SETTINGS = {
    "ethindex.max_chains": 16,
    "ethindex.retry_max_delay": 1000,   # ms: keep recovery after clearing quick
    "ethindex.rpc_timeout": 3000,       # ms: the timeout case
}

cluster = None
replay = None           # RpcServer serving the synthetic chains
proxy = None            # RpcServer in proxy mode: the faults
tmpdir = None
blocks = None           # the synthetic chain
_next_id = [0]
_log_mark = [0]         # server log offset after setup


def setup_module(module=None):
    global cluster, replay, proxy, tmpdir, blocks
    blocks = synthchain.generate(NBLOCKS, chain_id=CHAIN_ID_BASE)
    b = blocks[N][0]
    assert len(b["transactions"]) >= 3 and b["withdrawals"], "block N must have txs and withdrawals"
    cluster, tmpdir, replay, proxy = et.start_replay_cluster("faults", PORT_BASE, SETTINGS,
                                                             proxy=True)
    _log_mark[0] = cluster.log_position()


def teardown_module(module=None):
    global cluster, replay, proxy
    try:
        et.stop_replay_cluster(cluster, tmpdir, replay, proxy)
    finally:
        cluster = replay = proxy = None


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

lit = et.sql_literal


def next_name(label):
    """Name the next new_chain(label) will have (to set faults up first)."""
    return "f%02d-%s" % (_next_id[0] + 1, label)


def new_chain(label, urls=None, batch_size=1, start=True, chain_blocks=None, head=None):
    """A fresh replay chain (chain_blocks, default the module's 20 blocks;
    its head at "head", None: the last block) + proxy path + registered
    ethindex chain (batch_size None: adaptive).  urls: function of the
    chain name returning its rpc_urls (default: the proxy path only).
    Returns (name, chain_id, replay_url, proxy_url)."""
    _next_id[0] += 1
    chain_id = CHAIN_ID_BASE + _next_id[0]
    name = "f%02d-%s" % (_next_id[0], label)
    replay.add_chain(Chain(name, chain_id, blocks if chain_blocks is None else chain_blocks,
                           head=head))
    proxy.add_proxy(name, replay.chain_url(name))
    urls = urls(name) if urls else [proxy.chain_url(name)]
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s]::text[], chain_id => %d, start_block => 0, "
                 "confirmations => 0, poll_interval => '50 ms', batch_size => %s)"
                 % (lit(name), ", ".join(lit(u) for u in urls), chain_id,
                    "NULL" if batch_size is None else "%d" % batch_size))
    if start:
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
    return name, chain_id, replay.chain_url(name), proxy.chain_url(name)


def status(name):
    return cluster.chain_status(name)


def wait_for(name, block, timeout=CATCHUP_WAIT):
    ok = cluster.scalar("SELECT ethindex.wait_for(%s, %d, '%d s')" % (lit(name), block, timeout))
    assert ok == "t", ("chain %s did not reach block %d in %ds; status %r; proxy %r\n"
                       "--- server log tail ---\n%s"
                       % (name, block, timeout, status(name), proxy.stats(), cluster.log_tail()))


def rows_of_block(chain_id, n, op="="):
    """Rows per table of block n (op ">=": of block n and every block above)."""
    return {t: int(cluster.scalar("SELECT count(*) FROM ethindex.%s WHERE chain_id = %d AND %s %s %d"
                                  % (t, chain_id, "number" if t == "blocks" else "block_number",
                                     op, n)))
            for t in et.TABLES}


NO_ROWS = {t: 0 for t in et.TABLES}


def wait_status(name, pred, timeout):
    """Wait until pred(status) holds; returns the last status either way."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(name)
        if pred(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def wait_requests_for(name, block, more, timeout=ERROR_WAIT):
    """Wait until the node has been asked for "block" (eth_getBlockByNumber)
    "more" more times."""
    def asked():
        return proxy.counts(method="eth_getBlockByNumber", chain=name, block=block)
    c0 = asked()
    deadline = time.monotonic() + timeout
    while asked() < c0 + more:
        if time.monotonic() > deadline:
            raise AssertionError("chain %s: block %d asked for %d more times in %ds, want %d "
                                 "(the fetcher does not retry it); status %r"
                                 % (name, block, asked() - c0, timeout, more, status(name)))
        time.sleep(0.05)


def wait_running(name, timeout=10):
    cluster.wait_until("SELECT state = 'running' FROM ethindex.chain_status WHERE name = %s"
                       % lit(name), timeout=timeout)


def check_complete(name, chain_id, replay_url, last=NBLOCKS - 1):
    problems = et.compare_chain(cluster, replay_url, chain_id, 0, last)
    assert not problems, "%s: %d mismatches:\n%s" % (name, len(problems), "\n".join(problems[:40]))


def stop_chain(name):
    cluster.stop_chain(name)


def assert_no_crash():
    cluster.assert_no_crash()


def wait_error(name, expect, timeout=ERROR_WAIT):
    """Wait for state 'error' with a last_error containing every string of
    "expect" (case-insensitive); returns the status row."""
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = status(name)
        err = (st["last_error"] or "").lower()
        if st["state"] == "error" and all(e.lower() in err for e in expect):
            return st
        time.sleep(0.1)
    raise AssertionError("chain %s: no error matching %r within %ds; last status %r\n"
                         "--- server log tail ---\n%s"
                         % (name, expect, timeout, st, cluster.log_tail()))


def fault_case(label, expect, fault, n=N):
    """The common scenario: persistent fault for block n, error, no partial
    block, nothing beyond it while the fetcher retries, clear, catch up,
    compare."""
    mark = cluster.log_position()
    name, chain_id, replay_url, proxy_url = new_chain(label, start=False)
    fault = dict(fault)
    kind = fault.pop("kind")
    fid = proxy.add_fault(kind, chain=name, block=n, **fault)
    try:
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
        wait_error(name, expect)
        # the insert workers may still be committing the blocks before n
        wait_status(name, lambda st: (st["indexed_through"] or -1) >= n - 1, 30)
        # the fetcher goes on asking for block n (with the blocks after it
        # in flight, batch_size 1): two more failed attempts, then look
        wait_requests_for(name, n, 2)
        st_error = status(name)
        assert st_error["state"] == "error", st_error
        # nothing of block n, and nothing beyond it
        assert rows_of_block(chain_id, n, ">=") == NO_ROWS, rows_of_block(chain_id, n, ">=")
        assert (st_error["indexed_through"] or -1) < n, st_error
        assert int(cluster.scalar("SELECT next_block FROM ethindex.chains WHERE name = %s"
                                  % lit(name))) == (st_error["indexed_through"] or -1) + 1
        log = cluster.log_since(mark).lower()
        assert all(e.lower() in log for e in expect), \
            "server log (since the test started) lacks %r:\n%s" % (expect, cluster.log_tail())
        assert_no_crash()
        applied = [f for f in proxy.list_faults() if f["id"] == fid][0]["applied"]
        assert applied >= 3, applied
        # recovery
        proxy.clear_faults(fid)
        wait_for(name, NBLOCKS - 1)
        check_complete(name, chain_id, replay_url)
        st = status(name)
        assert st["indexed_through"] == NBLOCKS - 1, st
        wait_running(name)
        assert_no_crash()
        # Checked last so that a failure here does not hide the others:
        # every block before the bad one is stored while the fault lasts.
        assert st_error["indexed_through"] == n - 1, \
            ("while block %d was bad, indexed_through was %r, want %d (blocks before the bad one "
             "are held back); status then: %r" % (n, st_error["indexed_through"], n - 1, st_error))
    finally:
        proxy.clear_faults(fid)
        stop_chain(name)
    return st


# ---------------------------------------------------------------------------
# bad input, one class per test
# ---------------------------------------------------------------------------

def test_fault_malformed_json():
    fault_case("malformed", ["malformed JSON"],
               {"kind": "malformed_json", "method": "eth_getBlockByNumber"})


def test_fault_invalid_utf8_in_access_list():
    # bytes that are not UTF-8 in a string of a field stored as jsonb
    fault_case("utf8", ['invalid byte sequence for encoding "UTF8": 0xff'],
               {"kind": "replace_bytes", "method": "eth_getBlockByNumber",
                "find": '"storageKeys":["',
                "replace_hex": '"storageKeys":["'.encode().hex() + "ff"})


def test_fault_missing_block_hash():
    fault_case("nohash", ['missing field "hash" in block %d' % N],
               {"kind": "remove_field", "method": "eth_getBlockByNumber", "path": "hash"})


def test_fault_mistyped_gas_used_number():
    fault_case("gasnum", ['field "gasUsed" of block %d must be a JSON string' % N],
               {"kind": "replace_field", "method": "eth_getBlockByNumber", "path": "gasUsed",
                "value": 21000})


def test_fault_bad_hex_timestamp():
    fault_case("badhex", ['invalid hex in field "timestamp" of block %d' % N],
               {"kind": "replace_field", "method": "eth_getBlockByNumber", "path": "timestamp",
                "value": "0xzz"})


def test_fault_oversized_value():
    fault_case("bigvalue", ['field "value" of transaction 0 of block %d is out of range' % N],
               {"kind": "replace_field", "method": "eth_getBlockByNumber",
                "path": "transactions.0.value", "value": "0x" + "f" * 70})


def test_fault_oversized_gas_used():
    fault_case("biggas", ['field "gasUsed" of block %d is out of range' % N],
               {"kind": "replace_field", "method": "eth_getBlockByNumber", "path": "gasUsed",
                "value": "0x10000000000000000"})


def test_fault_receipt_dropped():
    fault_case("rcptdrop", ["block %d has 4 transactions but 3 receipts" % N],
               {"kind": "drop_item", "method": "eth_getBlockReceipts", "index": -1})


def test_fault_receipt_hash_changed():
    fault_case("rcpthash", ['field "transactionHash" of receipt 1 of block %d does not match' % N],
               {"kind": "replace_field", "method": "eth_getBlockReceipts",
                "path": "1.transactionHash", "value": "0x" + "ab" * 32})


def test_fault_http_500():
    fault_case("http500", ["fetching blocks %d to %d" % (N, N), "HTTP status 500"],
               {"kind": "http_status", "status": 500})


def test_fault_http_429():
    fault_case("http429", ["fetching blocks %d to %d" % (N, N), "HTTP status 429"],
               {"kind": "http_status", "status": 429})


def test_fault_null_block_at_or_below_head():
    fault_case("nullblock", ["returned null for block %d" % N],
               {"kind": "null_result", "method": "eth_getBlockByNumber"})


def test_fault_null_receipts():
    fault_case("nullrcpt", ["returned null for block %d" % N],
               {"kind": "null_result", "method": "eth_getBlockReceipts"})


def test_fault_jsonrpc_error():
    fault_case("rpcerr", ["injected failure for block %d" % N],
               {"kind": "rpc_error", "method": "eth_getBlockByNumber", "code": -32000,
                "message": "injected failure for block %d" % N})


def _forged_lines(prefix, mark):
    """Lines of the server log after "mark" that start with a forged severity."""
    return [l for l in cluster.log_since(mark).splitlines() if l.startswith(prefix)]


def test_fault_node_text_escaped():
    """A node's error text with a newline (a forged log line), non-ASCII and
    a control character: escaped in last_error and in the log."""
    mark = cluster.log_position()
    fault_case("text", ['bad\\nLOG:  forged line \\xc3\\xa9 \\x01 end'],
               {"kind": "rpc_error", "method": "eth_getBlockByNumber", "code": -32000,
                "message": "bad\nLOG:  forged line \u00e9 \u0001 end"})
    assert _forged_lines("LOG:  forged", mark) == []


def test_fault_http_body_escaped():
    """An HTTP error body with bytes that are no valid text and a newline."""
    mark = cluster.log_position()
    fault_case("body", ["answered HTTP status 502: \\xff\\xfe\\nFATAL:  forged\\x00"],
               {"kind": "http_status", "status": 502, "body": b"\xff\xfe\nFATAL:  forged\x00"})
    assert _forged_lines("FATAL:  forged", mark) == []


def test_fault_connection_closed():
    fault_case("closed", ["fetching blocks %d to %d" % (N, N), "failed"], {"kind": "close"})


def test_fault_timeout():
    fault_case("timeout", ["fetching blocks %d to %d" % (N, N), "timed out"],
               {"kind": "delay", "seconds": 5})


# ---------------------------------------------------------------------------
# receipts fallback, failover, backoff, head
# ---------------------------------------------------------------------------

def test_block_receipts_method_not_found_falls_back():
    mark = cluster.log_position()
    name, chain_id, replay_url, proxy_url = new_chain("fallback", start=False)
    proxy.add_fault("method_not_found", chain=name, method="eth_getBlockReceipts")
    try:
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
        wait_for(name, NBLOCKS - 1)
        check_complete(name, chain_id, replay_url)
        ntx = sum(len(b["transactions"]) for b, _ in blocks.values())
        per_tx = proxy.counts(method="eth_getTransactionReceipt", chain=name)
        assert per_tx >= ntx, "only %d eth_getTransactionReceipt calls for %d txs" % (per_tx, ntx)
        # every transaction's receipt was asked for
        asked = {e["params"][0].lower() for e in proxy.requests("eth_getTransactionReceipt", name)}
        want = {t["hash"].lower() for b, _ in blocks.values() for t in b["transactions"]}
        assert want <= asked, want - asked
        # the endpoint is remembered: eth_getBlockReceipts is not asked for every block
        assert proxy.counts(method="eth_getBlockReceipts", chain=name) < NBLOCKS, proxy.stats()
        assert "does not support eth_getBlockReceipts" in cluster.log_since(mark), \
            cluster.log_tail()
        assert status(name)["last_error"] is None, status(name)
        assert_no_crash()
    finally:
        proxy.clear_faults()
        stop_chain(name)


def test_failover_first_endpoint_refuses_connections():
    closed = et.free_port(PORT_BASE + 30, PORT_BASE + 40)      # nobody listens there
    # the good endpoint is the replay server directly
    name, chain_id, replay_url, _ = new_chain(
        "failrefuse", urls=lambda n: ["http://127.0.0.1:%d/" % closed, replay.chain_url(n)])
    try:
        wait_for(name, NBLOCKS - 1)
        check_complete(name, chain_id, replay_url)
        assert str(replay.port) in (status(name)["endpoint"] or ""), status(name)
        assert_no_crash()
    finally:
        stop_chain(name)


def test_failover_first_endpoint_http_500():
    pname = next_name("fail500")
    proxy.add_fault("http_status", chain=pname, status=500)     # every request, until cleared
    try:
        name, chain_id, replay_url, proxy_url = new_chain(
            "fail500", urls=lambda n: [proxy.chain_url(n), replay.chain_url(n)])
        assert name == pname
        wait_for(name, NBLOCKS - 1)
        check_complete(name, chain_id, replay_url)
        assert str(replay.port) in (status(name)["endpoint"] or ""), status(name)
        # the failing endpoint was tried, but not for every block
        n500 = proxy.http_requests[name]
        assert 1 <= n500 < NBLOCKS, n500
        assert_no_crash()
    finally:
        proxy.clear_faults()
        stop_chain(pname)


RETRY_MAX_DELAY = SETTINGS["ethindex.retry_max_delay"] / 1000.0


def test_retry_backs_off():
    """A single endpoint that always answers HTTP 500: the fetcher retries,
    waiting 100 ms, doubling up to ethindex.retry_max_delay (1 s here),
    between attempts (docs/operations.md), reports the error, and recovers
    when the endpoint does.  Measured at the node: the times its requests
    arrive.  Bounds with margins: a loaded machine makes the gaps longer
    (the upper bounds leave seconds), an early wake of the fetcher one of
    them shorter."""
    pname = next_name("backoff")
    proxy.add_fault("http_status", chain=pname, status=500)
    nreq = 9
    try:
        name, chain_id, replay_url, _ = new_chain("backoff")
        wait_error(name, ["HTTP status 500"])
        deadline = time.monotonic() + 60
        while len(proxy.request_times(name)) < nreq:
            assert time.monotonic() < deadline, \
                "the fetcher does not retry: %r" % proxy.request_times(name)
            time.sleep(0.05)
        starts = [t for t, _ in proxy.request_times(name)][:nreq]
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        print("   gaps between attempts (s): %s" % ", ".join("%.2f" % g for g in gaps), flush=True)
        # every attempt is one request (eth_chainId first); after the k-th
        # failure the fetcher waits 100 ms << (k - 1), at most 1 s: gaps of
        # 0.1, 0.2, 0.4, 0.8, 1, 1, 1, 1 s.  The wait ends early when the
        # fetcher's latch is set (seen once at 0.16 s for 0.2 s), so only
        # bounds that one early wake cannot break:
        want = [min(0.1 * 2 ** k, RETRY_MAX_DELAY) for k in range(len(gaps))]
        # no hammering: 5.5 s in all (at 100 ms each it would be 0.8 s)
        assert sum(gaps) >= 0.6 * sum(want), \
            ("%d attempts in %.2fs, want at least %.2fs (60 %% of %.1fs): %r"
             % (nreq, sum(gaps), 0.6 * sum(want), sum(want), gaps))
        # the delays grow: the later ones are about 1 s, the first ones short
        late = sorted(gaps[-4:])
        assert (late[1] + late[2]) / 2 >= 0.9 * RETRY_MAX_DELAY, gaps
        assert min(gaps[:2]) < 0.5, gaps
        # capped at retry_max_delay: the last three would be 3.2, 6.4, 12.8 s uncapped
        assert sum(gaps[-3:]) < 3 * RETRY_MAX_DELAY + 4, gaps
        st = status(name)
        assert st["indexed_through"] is None and st["state"] == "error", st
        proxy.clear_faults()
        wait_for(name, NBLOCKS - 1, timeout=30)
        check_complete(name, chain_id, replay_url)
        assert_no_crash()
    finally:
        proxy.clear_faults()
        stop_chain(pname)


def test_head_grows_null_beyond_head_is_normal():
    """The node reports head 9 (null above it): ethindex stops at 9 without
    an error and asks for nothing above the head while the node's head stays
    there, then follows the head to 19."""
    name, chain_id, replay_url, _ = new_chain("head", start=False)
    replay.set_head(name, 9)
    try:
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
        wait_for(name, 9)
        # the fetcher follows the head: three more polls find it at 9
        polls = proxy.counts(method="eth_blockNumber", chain=name)
        deadline = time.monotonic() + 30
        while proxy.counts(method="eth_blockNumber", chain=name) < polls + 3:
            assert time.monotonic() < deadline, proxy.stats()
            time.sleep(0.05)
        wait_running(name)
        st = status(name)
        assert st["indexed_through"] == 9 and st["last_error"] is None, st
        assert st["node_head"] == 9 and st["state"] == "running", st
        assert rows_of_block(chain_id, 10, ">=") == NO_ROWS
        assert proxy.counts(method="eth_getBlockByNumber", chain=name, block=10) == 0, \
            proxy.requests("eth_getBlockByNumber", name)[-5:]
        replay.set_head(name, None)
        wait_for(name, NBLOCKS - 1)
        check_complete(name, chain_id, replay_url)
        assert status(name)["last_error"] is None
    finally:
        stop_chain(name)


_long_chain = []


def long_chain():
    """200 synthetic blocks (2 to 16 kB of JSON each): adaptive requests
    grow to many blocks."""
    if not _long_chain:
        _long_chain.append(synthchain.generate(200, chain_id=CHAIN_ID_BASE))
    return _long_chain[0]


def block_batches(name):
    """The block numbers of each HTTP request for blocks, in arrival order."""
    batches, last_t = [], None
    for e in proxy.requests("eth_getBlockByNumber", name):
        if e["block"] is None or not str(e["params"][0]).startswith("0x"):
            continue
        if e["t"] != last_t:
            batches.append([])
            last_t = e["t"]
        batches[-1].append(e["block"])
    return batches


def test_bad_block_inside_adaptive_request():
    """batch_size NULL (adaptive): a bad block in the middle of a request of
    many blocks.  The chain follows a head at block 59 until the requests
    have grown to 8 blocks or more; then the head moves to 199, so that the
    next request starts at block 60 and holds block 63, whose "hash" field
    the node leaves out.  Blocks 60 to 62 of that request are stored (the
    fetcher decodes and queues a response block by block), nothing at or
    beyond block 63; every retry starts at block 63 with half the blocks of
    the attempt before (at least 1); once the fault is cleared the chain
    completes and equals the node's data."""
    nblocks, first_head, bad = 200, 59, 63
    mark = cluster.log_position()
    name, chain_id, replay_url, _ = new_chain("inside", batch_size=None, chain_blocks=long_chain(),
                                              head=first_head)
    fid = None
    try:
        cluster.wait_until("SELECT indexed_through = %d AND request_blocks >= 8 "
                           "FROM ethindex.chain_status WHERE name = %s"
                           % (first_head, lit(name)), timeout=CATCHUP_WAIT)
        fid = proxy.add_fault("remove_field", chain=name, method="eth_getBlockByNumber",
                              block=bad, path="hash")
        replay.set_head(name, None)
        expect = 'missing field "hash" in block %d' % bad
        wait_error(name, [expect])
        wait_status(name, lambda st: (st["indexed_through"] or -1) >= bad - 1, 30)
        wait_requests_for(name, bad, 3)
        st_error = status(name)
        assert st_error["state"] == "error", st_error
        assert rows_of_block(chain_id, bad, ">=") == NO_ROWS, rows_of_block(chain_id, bad, ">=")
        assert expect in cluster.log_since(mark), cluster.log_tail()
        with_bad = [b for b in block_batches(name) if bad in b]
        first, retries = with_bad[0], with_bad[1:]
        # the scenario: the bad block in the middle of a request of many blocks
        assert first[0] == first_head + 1 and len(first) >= 8, first
        assert len(retries) >= 3, with_bad
        sizes = [len(first)] + [len(b) for b in retries]
        for b in retries:
            assert b[0] == bad, "a retry does not start at the bad block: %r" % (b,)
        for prev, nxt in zip(sizes, sizes[1:]):
            assert nxt == max(prev // 2, 1), "blocks per attempt %r: not halved" % sizes
        assert st_error["indexed_through"] == bad - 1, \
            ("blocks %d to %d, before the bad block in its request, are not all stored: "
             "status %r" % (first[0], bad - 1, st_error))
        print("   blocks per attempt at block %d: %s" % (bad, sizes), flush=True)
        proxy.clear_faults(fid)
        wait_for(name, nblocks - 1)
        check_complete(name, chain_id, replay_url, nblocks - 1)
        wait_running(name)
        assert_no_crash()
    finally:
        if fid is not None:
            proxy.clear_faults(fid)
        stop_chain(name)


def test_refetch_the_node_cannot_serve():
    """A refetch whose blocks the endpoint keeps failing to give is tried
    again with backoff and ends with the error after 5 attempts; nothing is
    replaced; once the endpoint gives them, a new request succeeds."""
    mark = cluster.log_position()
    name, chain_id, replay_url, proxy_url = new_chain("refetch", batch_size=4)
    wait_for(name, NBLOCKS - 1)
    before = rows_of_block(chain_id, 5)
    fault = proxy.add_fault("http_status", chain=name, block=5, status=500)
    try:
        rid = int(cluster.scalar("SELECT ethindex.refetch(%s, 4, 6)" % lit(name)))
        cluster.wait_until("SELECT finished_at IS NOT NULL FROM ethindex.refetches WHERE id = %d"
                           % rid, timeout=ERROR_WAIT)
        row = cluster.query("SELECT * FROM ethindex.refetches WHERE id = %d" % rid)[0]
        assert row["next_block"] == 4 and "HTTP status 500" in (row["error"] or ""), row
        assert proxy.counts(method="eth_getBlockByNumber", chain=name, block=5) >= 5
        assert rows_of_block(chain_id, 5) == before
        log = cluster.log_since(mark)
        assert "refetch %d failed at block 4, attempt 4 of 5" % rid in log, cluster.log_tail(20)
        assert "refetch %d gives up after 5 attempts" % rid in log, cluster.log_tail(20)
    finally:
        proxy.clear_faults(fault)
    rid = int(cluster.scalar("SELECT ethindex.refetch(%s, 4, 6)" % lit(name)))
    cluster.wait_until("SELECT finished_at IS NOT NULL AND error IS NULL "
                       "FROM ethindex.refetches WHERE id = %d" % rid, timeout=ERROR_WAIT)
    check_complete(name, chain_id, replay_url)
    stop_chain(name)


def test_launcher_stayed_up():
    """Through all of the above, the launcher never failed (checked once,
    here, so that a launcher problem does not fail every test)."""
    since = cluster.log_since(_log_mark[0])
    lines = [l for l in since.splitlines()
             if 'background worker "ethindex launcher"' in l or "invalid memory alloc" in l
             or ("ERROR:" in l and "ethindex launcher" in l)]
    assert not lines, "the launcher failed after setup:\n%s" % "\n".join(lines[:6])
