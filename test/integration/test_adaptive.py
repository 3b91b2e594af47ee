"""
test_adaptive.py: adaptive request sizing of the fetcher.

Synthetic chains (test/lib/synthchain.py) are served by a replay server;
ethindex reaches them through a second rpcserver in proxy mode, which
injects faults (delays, HTTP 429/500) and records the blocks of every
JSON-RPC batch it forwards.  Every test registers its own chain (own name,
chain id, replay chain and proxy path).

What is checked (outcomes only, never speed):
  * batch_size NULL with small blocks: chain_status.request_blocks grows far
    above 1 and the node sees batches of many blocks;
  * batch_size NULL with blocks of about 1.5 MB: requests stay at a few
    blocks;
  * a fixed batch_size is honoured: request_blocks equals it and every
    batch but the last has exactly that many blocks;
  * requests in flight, as the node (the proxy) sees them: with a slow node
    (a fixed delay per request) several block requests are served at once;
    lowering ethindex.max_requests_in_flight with a reload while the
    fetcher runs bounds them from then on; persistent HTTP 500 or 429
    answers for one block bring them down to one at a time (and, when
    adaptive, the blocks per request down), and once the fault is cleared
    the window grows again: the node serves several at once once more;
and every time, every row of every block equals the node's data.

Run:  runuser -u ethindex -- python3 test/integration/run.py -k adaptive
"""

import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import ethindex_test as et          # noqa: E402
import synthchain                   # noqa: E402
from rpcserver import Chain, RpcServer  # noqa: E402

PORT_BASE = 57150       # default of ETHINDEX_ADAPTIVE_PORT_BASE (start_replay_cluster)
CHAIN_ID_BASE = 920000
MAX_IN_FLIGHT = 8       # ethindex.max_requests_in_flight: the window's upper bound
ADAPT_MAX_BLOCKS = 100  # fetcher.c
SETUP_TIMEOUT = 180
TEST_TIMEOUT = 300
CATCHUP_WAIT = 120
ERROR_WAIT = 60
BLOCK_METHOD = "eth_getBlockReceipts"   # in every block request, in no head poll

SETTINGS = {
    "ethindex.max_chains": 8,
    "ethindex.max_requests_in_flight": MAX_IN_FLIGHT,
    "ethindex.retry_max_delay": 1000,   # ms: keep recovery after clearing quick
    "ethindex.rpc_timeout": 5000,
}

cluster = None
replay = None           # RpcServer serving the synthetic chains
proxy = None            # RecordingProxy: faults and batch log
tmpdir = None
_next_id = [0]
_log_mark = [0]         # server log offset after setup
_chains = {}            # (kind, nblocks) -> generated blocks


class RecordingProxy(RpcServer):
    """An RpcServer that also records, per chain, the block numbers of the
    eth_getBlockByNumber calls of every batch it receives (one list per
    HTTP request, in arrival order)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = collections.defaultdict(list)

    def _handle_rpc(self, h, path, body):
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        if isinstance(req, list) and path.startswith("/chain/"):
            numbers = [int(c["params"][0], 16) for c in req
                       if isinstance(c, dict) and c.get("method") == "eth_getBlockByNumber"
                       and str(c["params"][0]).startswith("0x")]
            if numbers:
                with self.lock:
                    self.batches[path[len("/chain/"):]].append(numbers)
        super()._handle_rpc(h, path, body)

    def batches_of(self, chain):
        with self.lock:
            return list(self.batches[chain])


def small_blocks(n):
    """The synthetic chain as it is: 2 to 16 kB of JSON per block."""
    key = ("small", n)
    if key not in _chains:
        _chains[key] = synthchain.generate(n, chain_id=CHAIN_ID_BASE)
    return _chains[key]


def large_blocks(n, block_bytes=1500000):
    """The synthetic chain with transaction inputs padded so that every
    block with transactions is about block_bytes of JSON (every sixth block
    has none and stays small)."""
    key = ("large", n)
    if key not in _chains:
        chain = synthchain.generate(n, chain_id=CHAIN_ID_BASE)
        for number, (block, receipts) in chain.items():
            txs = block["transactions"]
            for i, tx in enumerate(txs):
                nbytes = block_bytes // 2 // len(txs)
                tx["input"] = synthchain.data_bytes(nbytes, "pad", number, i)
        _chains[key] = chain
    return _chains[key]


def setup_module(module=None):
    global cluster, replay, proxy, tmpdir
    cluster, tmpdir, replay, proxy = et.start_replay_cluster(
        "adaptive", PORT_BASE, SETTINGS, proxy=RecordingProxy)
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
    return "a%02d-%s" % (_next_id[0] + 1, label)


def new_chain(label, blocks, batch_size=None, head=None):
    """A fresh replay chain (its head at "head", None: the last block) +
    proxy path + registered and started ethindex chain.  Returns (name,
    chain_id, replay_url)."""
    _next_id[0] += 1
    chain_id = CHAIN_ID_BASE + _next_id[0]
    name = "a%02d-%s" % (_next_id[0], label)
    replay.add_chain(Chain(name, chain_id, blocks, head=head))
    proxy.add_proxy(name, replay.chain_url(name))
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s]::text[], chain_id => %d, start_block => 0, "
                 "confirmations => 0, poll_interval => '50 ms', batch_size => %s)"
                 % (lit(name), lit(proxy.chain_url(name)), chain_id,
                    "NULL" if batch_size is None else str(int(batch_size))))
    cluster.psql("SELECT ethindex.start(%s)" % lit(name))
    return name, chain_id, replay.chain_url(name)


def status(name):
    return cluster.chain_status(name)


class Watch:
    """Samples chain_status and keeps the extremes of the sizing columns."""

    def __init__(self, name):
        self.name = name
        self.samples = []

    def sample(self):
        st = status(self.name)
        self.samples.append((st["request_blocks"], st["request_window"], st["state"],
                             st["indexed_through"]))
        rb, rw = st["request_blocks"], st["request_window"]
        assert rb is None or 1 <= rb <= ADAPT_MAX_BLOCKS, st
        assert rw is None or 1 <= rw <= MAX_IN_FLIGHT, st
        return st

    def until(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            st = self.sample()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError("chain %s: no %s within %ds; last status %r; "
                                     "last samples %r; proxy %r\n--- server log tail ---\n%s"
                                     % (self.name, what, timeout, st, self.samples[-10:],
                                        proxy.stats(), cluster.log_tail()))
            time.sleep(0.05)

    def max_blocks(self):
        return max((s[0] for s in self.samples if s[0] is not None), default=None)

    def max_window(self):
        return max((s[1] for s in self.samples if s[1] is not None), default=None)


def summary(label, watch, name):
    """One line on what happened, for the test output."""
    sizes = [len(b) for b in proxy.batches_of(name)]
    print("   %s: %d requests, blocks per request %s%s; request_blocks max %s, "
          "request_window max %s" % (label, len(sizes), sizes[:16], " ..." if len(sizes) > 16 else "",
                                     watch.max_blocks(), watch.max_window()), flush=True)


def wait_complete(watch, last):
    return watch.until(lambda st: st["indexed_through"] == last, CATCHUP_WAIT,
                       "indexed_through = %d" % last)


def check_complete(name, chain_id, replay_url, last):
    problems = et.compare_chain(cluster, replay_url, chain_id, 0, last)
    assert not problems, "%s: %d mismatches:\n%s" % (name, len(problems), "\n".join(problems[:40]))


def check_batches_cover(name, last):
    """Every block 0..last was asked for in some batch, nothing beyond."""
    asked = set()
    for b in proxy.batches_of(name):
        assert b == list(range(b[0], b[0] + len(b))), "batch not consecutive: %r" % b
        asked.update(b)
    assert asked == set(range(last + 1)), sorted(set(range(last + 1)) ^ asked)[:20]


def stop_chain(name):
    cluster.stop_chain(name)


def assert_no_crash():
    cluster.assert_no_crash()


# ---------------------------------------------------------------------------
# blocks per request
# ---------------------------------------------------------------------------

def test_small_blocks_grow_requests():
    nblocks = 600
    name, chain_id, replay_url = new_chain("small", small_blocks(nblocks))
    try:
        w = Watch(name)
        st = wait_complete(w, nblocks - 1)
        summary("small blocks", w, name)
        batches = proxy.batches_of(name)
        sizes = [len(b) for b in batches]
        # starts small, then (about 9 kB per block against a 4 MB target)
        # goes to the most blocks per request
        assert sizes[0] <= 2, sizes[:10]
        assert max(sizes) >= 50, sizes
        assert max(sizes) <= ADAPT_MAX_BLOCKS, sizes
        assert st["request_blocks"] >= 50, (st, w.samples[-10:])
        assert w.max_blocks() >= 50, w.samples
        # far fewer requests than blocks
        assert len(batches) < nblocks / 10, (len(batches), sizes)
        check_batches_cover(name, nblocks - 1)
        check_complete(name, chain_id, replay_url, nblocks - 1)
        assert status(name)["last_error"] is None, status(name)
        assert_no_crash()
    finally:
        stop_chain(name)


def test_large_blocks_keep_requests_small():
    nblocks = 24
    name, chain_id, replay_url = new_chain("large", large_blocks(nblocks))
    try:
        w = Watch(name)
        st = wait_complete(w, nblocks - 1)
        summary("large blocks", w, name)
        sizes = [len(b) for b in proxy.batches_of(name)]
        # about 1.5 MB per block (every sixth small) against 4 MB: 2 to 4
        assert sizes[0] <= 2, sizes
        assert max(sizes) <= 5, sizes
        assert 1 <= st["request_blocks"] <= 5, (st, w.samples)
        assert w.max_blocks() <= 5, w.samples
        check_batches_cover(name, nblocks - 1)
        check_complete(name, chain_id, replay_url, nblocks - 1)
        assert status(name)["last_error"] is None, status(name)
        assert_no_crash()
    finally:
        stop_chain(name)


def test_response_size_limit():
    """A response larger than ethindex.max_response_size fails its request
    with an error that says so; nothing of those blocks is stored; with a
    higher limit the chain completes."""
    nblocks = 6
    cluster.psql("ALTER SYSTEM SET ethindex.max_response_size = '1MB'; SELECT pg_reload_conf()")
    name, chain_id, replay_url = new_chain("limit", large_blocks(nblocks), batch_size=1)
    try:
        cluster.wait_until("SELECT last_error LIKE '%%exceeds ethindex.max_response_size (1024 kB)%%' "
                           "FROM ethindex.chain_status WHERE name = %s" % et.sql_literal(name),
                           timeout=60)
        # block 0 has no transactions and is small: stored; block 1 is not
        assert int(cluster.scalar("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d "
                                  "AND number >= 1" % chain_id)) == 0
        cluster.psql("ALTER SYSTEM RESET ethindex.max_response_size; SELECT pg_reload_conf()")
        st = wait_complete(Watch(name), nblocks - 1)
        assert st["indexed_through"] == nblocks - 1, st
        check_complete(name, chain_id, replay_url, nblocks - 1)
    finally:
        cluster.psql("ALTER SYSTEM RESET ethindex.max_response_size; SELECT pg_reload_conf()")
        stop_chain(name)


def test_fixed_batch_size_is_honoured():
    nblocks, batch = 50, 7
    name, chain_id, replay_url = new_chain("fixed", small_blocks(nblocks), batch_size=batch)
    try:
        w = Watch(name)
        st = wait_complete(w, nblocks - 1)
        assert st["request_blocks"] == batch, st
        # before the fetcher has started, the slot shows nothing (NULL)
        assert {s[0] for s in w.samples if s[0] is not None} == {batch}, w.samples
        batches = proxy.batches_of(name)
        for b in batches:
            assert b[0] % batch == 0, "batch does not start at a multiple of %d: %r" % (batch, b)
            if b[-1] != nblocks - 1:
                assert len(b) == batch, "batch of %d blocks, want %d: %r" % (len(b), batch, b)
        assert len(batches) == (nblocks + batch - 1) // batch, [len(b) for b in batches]
        check_batches_cover(name, nblocks - 1)
        check_complete(name, chain_id, replay_url, nblocks - 1)
        assert_no_crash()
    finally:
        stop_chain(name)


def test_receipts_fallback_with_adaptive_blocks():
    """An endpoint without eth_getBlockReceipts: per-transaction receipts,
    with adaptive blocks per request."""
    nblocks = 120
    mark = cluster.log_position()
    pname = next_name("fallback")
    fid = proxy.add_fault("method_not_found", chain=pname, method="eth_getBlockReceipts")
    try:
        name, chain_id, replay_url = new_chain("fallback", small_blocks(nblocks))
        assert name == pname
        w = Watch(name)
        st = wait_complete(w, nblocks - 1)
        summary("fallback", w, name)
        assert st["request_blocks"] > 1 and w.max_blocks() >= 20, w.samples
        assert max(len(b) for b in proxy.batches_of(name)) >= 20
        proxy.clear_faults(fid)
        check_batches_cover(name, nblocks - 1)
        check_complete(name, chain_id, replay_url, nblocks - 1)
        assert "does not support eth_getBlockReceipts" in cluster.log_since(mark), \
            cluster.log_tail()
        assert status(name)["last_error"] is None, status(name)
        assert_no_crash()
    finally:
        proxy.clear_faults(fid)
        stop_chain(pname)


# ---------------------------------------------------------------------------
# requests in flight
# ---------------------------------------------------------------------------

def set_max_in_flight(n):
    """Set ethindex.max_requests_in_flight and reload; returns once the
    server has it (the fetcher gets it with the SIGHUP)."""
    cluster.set(ethindex__max_requests_in_flight=n)
    cluster.psql("SELECT pg_reload_conf()")
    cluster.wait_until("SELECT current_setting('ethindex.max_requests_in_flight') = '%d'" % n,
                       timeout=10)


def block_requests_since(name, since):
    return len(proxy.request_times(name, BLOCK_METHOD, since=since))


def test_max_requests_in_flight_pins_the_window():
    """ethindex.max_requests_in_flight lowered with a reload while the
    fetcher runs: from then on the node never has more block requests of
    the chain in flight at once, and it has that many."""
    pin = 2
    nblocks, first_part = 200, 80       # blocks 0..79 before the reload
    pname = next_name("pin")
    # a slow node: requests in flight at once pay, the window stays full
    delay_id = proxy.add_fault("delay", chain=pname, method="eth_getBlockByNumber", seconds=0.05)
    try:
        name, chain_id, replay_url = new_chain("pin", small_blocks(nblocks), batch_size=1,
                                               head=first_part - 1)
        assert name == pname
        w = Watch(name)
        w.until(lambda st: st["indexed_through"] == first_part - 1, CATCHUP_WAIT,
                "indexed_through = %d" % (first_part - 1))
        before = proxy.max_concurrency(name, BLOCK_METHOD)
        assert before > pin, \
            ("with ethindex.max_requests_in_flight %d the node never had more than %d block "
             "requests in flight at once" % (MAX_IN_FLIGHT, before))
        # the fetcher is running (following the head at block 79): lower the bound
        set_max_in_flight(pin)
        w.until(lambda st: st["request_window"] <= pin, 30, "request_window <= %d" % pin)
        since = time.monotonic()
        replay.set_head(name, None)
        wait_complete(w, nblocks - 1)
        after = proxy.max_concurrency(name, BLOCK_METHOD, since=since)
        nreq = block_requests_since(name, since)
        print("   pinned: at most %d block requests in flight at once before the reload, "
              "%d in %d requests after it" % (before, after, nreq), flush=True)
        assert nreq >= nblocks - first_part, nreq
        assert after == pin, \
            ("after lowering ethindex.max_requests_in_flight to %d while the fetcher ran, the "
             "node had up to %d block requests in flight at once" % (pin, after))
        proxy.clear_faults(delay_id)
        check_complete(name, chain_id, replay_url, nblocks - 1)
        assert_no_crash()
    finally:
        proxy.clear_faults(delay_id)
        stop_chain(pname)
        set_max_in_flight(MAX_IN_FLIGHT)


def wait_requests_of_block(name, block, more, timeout):
    """Wait until the node has seen "more" further requests for "block"."""
    c0 = proxy.counts(method=BLOCK_METHOD, chain=name, block=block)
    deadline = time.monotonic() + timeout
    while proxy.counts(method=BLOCK_METHOD, chain=name, block=block) < c0 + more:
        if time.monotonic() > deadline:
            raise AssertionError("chain %s: the node saw %d requests for block %d in %ds, "
                                 "want %d; status %r" % (
                                     name, proxy.counts(method=BLOCK_METHOD, chain=name,
                                                        block=block) - c0,
                                     block, timeout, more, status(name)))
        time.sleep(0.05)


def batches_with(name, block):
    return [b for b in proxy.batches_of(name) if block in b]


def fault_shrinks_window(label, fault, nblocks, bad, batch_size, delay=0.1):
    """A node that takes "delay" seconds per block request (concurrency
    pays), and answers every request with block "bad" with the given fault
    until cleared.  Checked at the node (the proxy): several block requests
    in flight at once before the fault; one at a time while it lasts; more
    than one again after it is cleared (the window grows back)."""
    pname = next_name(label)
    delay_id = proxy.add_fault("delay", chain=pname, method="eth_getBlockByNumber",
                               seconds=delay)
    fault = dict(fault)
    fid = proxy.add_fault(fault.pop("kind"), chain=pname, block=bad, **fault)
    try:
        name, chain_id, replay_url = new_chain(label, small_blocks(nblocks),
                                               batch_size=batch_size)
        assert name == pname
        w = Watch(name)
        # every block before the bad one is stored, and the fetcher is at it
        w.until(lambda st: st["indexed_through"] == bad - 1 and st["state"] == "error",
                ERROR_WAIT, "indexed_through = %d and state error" % (bad - 1))
        peak_before = proxy.max_concurrency(name, BLOCK_METHOD)
        assert peak_before >= 3, \
            "the node never had more than %d block requests in flight at once" % peak_before
        # From here every attempt starts at the bad block and fails; each
        # failure halves the window (at most MAX_IN_FLIGHT = 8): after 4
        # more attempts it is 1.  Then the node must see one block request
        # at a time.
        wait_requests_of_block(name, bad, 4, ERROR_WAIT)
        since = time.monotonic()
        wait_requests_of_block(name, bad, 3, ERROR_WAIT)
        failing = proxy.max_concurrency(name, BLOCK_METHOD, since=since)
        st = status(name)
        assert st["state"] == "error" and st["indexed_through"] == bad - 1, st
        assert failing == 1, \
            ("while every attempt failed at block %d the node still had up to %d block "
             "requests in flight at once (the window did not shrink to 1)" % (bad, failing))
        assert st["request_window"] == 1, st
        sizes = [len(b) for b in batches_with(name, bad)]
        if batch_size is not None:
            assert {s[0] for s in w.samples if s[0] is not None} == {batch_size}, w.samples
            assert set(sizes) == {batch_size}, sizes
        else:
            # the blocks per request came down as well
            peak_blocks = max(len(b) for b in proxy.batches_of(name))
            assert peak_blocks >= 8 and sizes[-1] <= peak_blocks // 4, (peak_blocks, sizes)
            assert st["request_blocks"] <= peak_blocks // 4, (peak_blocks, st)
        # the fault cleared (the node as slow as before): the window grows again
        proxy.clear_faults(fid)
        since = time.monotonic()
        st = w.until(lambda st: proxy.max_concurrency(name, BLOCK_METHOD, since=since) >= 2
                     or st["indexed_through"] == nblocks - 1,
                     CATCHUP_WAIT, "2 block requests in flight at once after the fault")
        regrown = proxy.max_concurrency(name, BLOCK_METHOD, since=since)
        assert regrown >= 2, \
            ("after the fault was cleared the node saw only %d block request at a time up to "
             "block %d: the window did not grow again" % (regrown, nblocks - 1))
        proxy.clear_faults(delay_id)
        wait_complete(w, nblocks - 1)
        print("   %s: block requests in flight at once: %d before the fault, %d while "
              "failing, %d after; blocks per request of the failing requests %s"
              % (label, peak_before, failing, regrown, sizes[:12]), flush=True)
        summary(label, w, name)
        check_complete(name, chain_id, replay_url, nblocks - 1)
        w.until(lambda st: st["state"] == "running", 30, "state running")
        assert_no_crash()
        return w
    finally:
        proxy.clear_faults(fid)
        proxy.clear_faults(delay_id)
        stop_chain(pname)


def test_http_500_shrinks_and_regrows_window():
    fault_shrinks_window("w500", {"kind": "http_status", "status": 500},
                         nblocks=300, bad=220, batch_size=2)


def test_http_429_shrinks_window_and_blocks():
    fault_shrinks_window("w429", {"kind": "http_status", "status": 429},
                         nblocks=500, bad=330, batch_size=None, delay=0.15)


def test_launcher_stayed_up():
    """The launcher never failed after setup (it may exit once before the
    database exists)."""
    log = cluster.log_since(_log_mark[0])
    lines = [l for l in log.splitlines()
             if 'background worker "ethindex launcher"' in l and "exited" in l]
    assert not lines, "the launcher failed:\n%s" % "\n".join(lines[:6])
