"""
test_faults.py: ethindex under bad node behaviour.

A synthetic chain (test/lib/synthchain.py, 20 blocks with every transaction
type, logs and withdrawals) is served by a replay server; the chains under
test reach it through a second rpcserver in proxy mode, which injects the
faults.  Every test registers its own chain (own name, chain id, replay
chain and proxy path), so tests do not disturb each other.

For each class of bad input, injected for block N only and kept until
cleared: the chain goes to state 'error' with a last_error naming the
problem, indexed_through stays at N-1, nothing of block N is stored in any
table, the server log has the error and no crash; once the fault is cleared
the chain catches up and every row equals the node's data.

Also: eth_getBlockReceipts "method not found" -> per-transaction receipts;
failover to a second endpoint when the first refuses connections or always
answers HTTP 500; retries back off instead of hammering a failing endpoint;
a head that grows (null beyond the head is normal).

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
    try:
        replay = RpcServer(et.free_port(PORT_BASE, PORT_BASE + 10)).start()
        proxy = RpcServer(et.free_port(PORT_BASE + 10, PORT_BASE + 20)).start()
        cluster, tmpdir = et.start_extension_cluster(
            "ethindex-faults-", et.free_port(PORT_BASE + 20, PORT_BASE + 30), SETTINGS)
        _log_mark[0] = len(cluster.log_text())
    except BaseException:
        teardown_module()
        raise


def teardown_module(module=None):
    global cluster, replay, proxy
    try:
        et.stop_extension_cluster(cluster, tmpdir)
    finally:
        cluster = None
        for srv in (proxy, replay):
            if srv is not None:
                srv.stop()
        proxy = replay = None


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

lit = et.sql_literal


def next_name(label):
    """Name the next new_chain(label) will have (to set faults up first)."""
    return "f%02d-%s" % (_next_id[0] + 1, label)


def new_chain(label, urls=None, batch_size=1, start=True):
    """A fresh replay chain + proxy path + registered ethindex chain.
    urls: function of the chain name returning its rpc_urls (default: the
    proxy path only).  Returns (name, chain_id, replay_url, proxy_url)."""
    _next_id[0] += 1
    chain_id = CHAIN_ID_BASE + _next_id[0]
    name = "f%02d-%s" % (_next_id[0], label)
    replay.add_chain(Chain(name, chain_id, blocks))
    proxy.add_proxy(name, replay.chain_url(name))
    urls = urls(name) if urls else [proxy.chain_url(name)]
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s]::text[], chain_id => %d, start_block => 0, "
                 "confirmations => 0, poll_interval => '50 ms', batch_size => %d)"
                 % (lit(name), ", ".join(lit(u) for u in urls), chain_id, batch_size))
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


def rows_of_block(chain_id, n):
    return {t: int(cluster.scalar("SELECT count(*) FROM ethindex.%s WHERE chain_id = %d AND %s = %d"
                                  % (t, chain_id, "number" if t == "blocks" else "block_number", n)))
            for t in et.TABLES}


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
    block, clear, catch up, compare."""
    name, chain_id, replay_url, proxy_url = new_chain(label, start=False)
    fault = dict(fault)
    kind = fault.pop("kind")
    fid = proxy.add_fault(kind, chain=name, block=n, **fault)
    try:
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
        st = wait_error(name, expect)
        # The writer may still be committing blocks before n: wait for n-1.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (status(name)["indexed_through"] or -1) < n - 1:
            time.sleep(0.1)
        time.sleep(0.5)     # give a wrong implementation the chance to go further
        st_error = status(name)
        assert st_error["state"] == "error", st_error
        # nothing of block n, and never beyond it
        assert rows_of_block(chain_id, n) == {t: 0 for t in et.TABLES}, rows_of_block(chain_id, n)
        assert (st_error["indexed_through"] or -1) < n, st_error
        assert int(cluster.scalar("SELECT next_block FROM ethindex.chains WHERE name = %s"
                                  % lit(name))) == (st_error["indexed_through"] or -1) + 1
        log = cluster.log_text()
        assert all(e.lower() in log.lower() for e in expect), \
            "server log lacks %r:\n%s" % (expect, cluster.log_tail())
        assert_no_crash()
        applied = [f for f in proxy.list_faults() if f["id"] == fid][0]["applied"]
        assert applied >= 1
        # recovery
        proxy.clear_faults(fid)
        wait_for(name, NBLOCKS - 1)
        check_complete(name, chain_id, replay_url)
        st = status(name)
        assert st["indexed_through"] == NBLOCKS - 1, st
        deadline = time.monotonic() + 10
        while status(name)["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status(name)["state"] == "running", status(name)
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
    fault_case("http500", ["fetching blocks %d to %d" % (N, N), "HTTP status 500"], {"kind": "http_status", "status": 500})


def test_fault_http_429():
    fault_case("http429", ["fetching blocks %d to %d" % (N, N), "HTTP status 429"], {"kind": "http_status", "status": 429,
                                                 "retry_after": 1})


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


def _forged_lines(prefix):
    """Lines of the server log that start with a forged severity."""
    return [l for l in cluster.log_text().splitlines() if l.startswith(prefix)]


def test_fault_node_text_escaped():
    """A node's error text with a newline (a forged log line), non-ASCII and
    a control character: escaped in last_error and in the log."""
    fault_case("text", ['bad\\nLOG:  forged line \\xc3\\xa9 \\x01 end'],
               {"kind": "rpc_error", "method": "eth_getBlockByNumber", "code": -32000,
                "message": "bad\nLOG:  forged line \u00e9 \u0001 end"})
    assert _forged_lines("LOG:  forged") == []


def test_fault_http_body_escaped():
    """An HTTP error body with bytes that are no valid text and a newline."""
    fault_case("body", ["answered HTTP status 502: \\xff\\xfe\\nFATAL:  forged\\x00"],
               {"kind": "http_status", "status": 502, "body": b"\xff\xfe\nFATAL:  forged\x00"})
    assert _forged_lines("FATAL:  forged") == []


def test_fault_connection_closed():
    fault_case("closed", ["fetching blocks %d to %d" % (N, N), "failed"], {"kind": "close"})


def test_fault_timeout():
    fault_case("timeout", ["fetching blocks %d to %d" % (N, N), "timed out"], {"kind": "delay", "seconds": 5})


# ---------------------------------------------------------------------------
# receipts fallback, failover, backoff, head
# ---------------------------------------------------------------------------

def test_block_receipts_method_not_found_falls_back():
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
        assert "does not support eth_getBlockReceipts" in cluster.log_text()
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


def test_retry_backs_off():
    """A single endpoint that always answers HTTP 500: the fetcher retries
    with growing delays (< 50 requests in 5 s), reports the error, and
    recovers when the endpoint does."""
    pname = next_name("backoff")
    proxy.add_fault("http_status", chain=pname, status=500)
    try:
        name, chain_id, replay_url, _ = new_chain("backoff")
        wait_error(name, ["HTTP status 500"])
        t0 = time.monotonic()
        c0 = proxy.http_requests[name]
        time.sleep(5)
        c1 = proxy.http_requests[name]
        elapsed = time.monotonic() - t0
        assert c1 - c0 < 50, "%d requests in %.1fs: the fetcher hammers" % (c1 - c0, elapsed)
        assert c1 - c0 >= 2, "%d requests in %.1fs: the fetcher does not retry" % (c1 - c0, elapsed)
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
    an error, then follows the head to 19."""
    name, chain_id, replay_url, _ = new_chain("head", start=False)
    replay.set_head(name, 9)
    try:
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))
        wait_for(name, 9)
        time.sleep(1)
        st = status(name)
        assert st["indexed_through"] == 9 and st["last_error"] is None, st
        assert st["node_head"] == 9 and st["state"] == "running", st
        assert rows_of_block(chain_id, 10) == {t: 0 for t in et.TABLES}
        replay.set_head(name, None)
        wait_for(name, NBLOCKS - 1)
        check_complete(name, chain_id, replay_url)
        assert status(name)["last_error"] is None
    finally:
        stop_chain(name)


def test_refetch_the_node_cannot_serve():
    """A refetch whose blocks the endpoint keeps failing to give is tried
    again with backoff and ends with the error after 5 attempts; nothing is
    replaced; once the endpoint gives them, a new request succeeds."""
    name, chain_id, replay_url, proxy_url = new_chain("refetch", batch_size=4)
    wait_for(name, NBLOCKS - 1)
    before = rows_of_block(chain_id, 5)
    fault = proxy.add_fault("http_status", chain=name, block=5, status=500)
    try:
        rid = cluster.scalar("SELECT ethindex.refetch(%s, 4, 6)" % lit(name))
        cluster.wait_until("SELECT finished_at IS NOT NULL FROM ethindex.refetches WHERE id = %s"
                           % rid, timeout=ERROR_WAIT)
        row = cluster.query("SELECT * FROM ethindex.refetches WHERE id = %s" % rid)[0]
        assert row["next_block"] == 4 and "HTTP status 500" in (row["error"] or ""), row
        assert proxy.counts(method="eth_getBlockByNumber", chain=name, block=5) >= 5
        assert rows_of_block(chain_id, 5) == before
        log = cluster.log_text()
        assert "refetch %s failed at block 4, attempt 4 of 5" % rid in log, cluster.log_tail(20)
        assert "refetch %s gives up after 5 attempts" % rid in log, cluster.log_tail(20)
    finally:
        proxy.clear_faults(fault)
    rid = cluster.scalar("SELECT ethindex.refetch(%s, 4, 6)" % lit(name))
    cluster.wait_until("SELECT finished_at IS NOT NULL AND error IS NULL "
                       "FROM ethindex.refetches WHERE id = %s" % rid, timeout=ERROR_WAIT)
    check_complete(name, chain_id, replay_url)
    stop_chain(name)


def test_launcher_stayed_up():
    """Through all of the above, the launcher never failed (checked once,
    here, so that a launcher problem does not fail every test)."""
    since = cluster.log_text()[_log_mark[0]:]
    lines = [l for l in since.splitlines()
             if 'background worker "ethindex launcher"' in l or "invalid memory alloc" in l
             or ("ERROR:" in l and "ethindex launcher" in l)]
    assert not lines, "the launcher failed after setup:\n%s" % "\n".join(lines[:6])
