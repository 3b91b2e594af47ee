#!/usr/bin/env python3
"""
rpcserver.py: a small Ethereum JSON-RPC server for ethindex's tests, with
fault injection.

Vocabulary
  chain     one URL path /chain/<name>, served either from blocks held in
            memory (replay: Chain) or by forwarding to an upstream node such
            as anvil (proxy: ProxyChain).  "/" is the default chain: the
            upstream given to RpcServer(upstream=...), else the only chain.
  call      one JSON-RPC request object; an HTTP request carries one call or
            a batch (JSON array) of calls.
  fault     a rule that damages the answer to matching calls: matched by
            chain, method and/or block number, applied "count" times (one per
            HTTP request) or until cleared.

Fault kinds (Fault.KINDS):
  transport, affect the whole HTTP response when any call in it matches:
    http_status      status=500|429|503..., optional body, retry_after
    malformed_json   body cut to "keep" bytes (default: half)
    close            connection closed without an answer
    delay            seconds=... before answering (the answer is intact)
    replace_bytes    the first occurrence of find=<text> in the body replaced
                     by the bytes replace_hex=<hex> (any bytes, e.g. not UTF-8)
  content, affect the matching call's answer only:
    null_result      "result": null
    rpc_error        "error": {code (default -32000), message}
    method_not_found rpc_error -32601 "the method X does not exist/is not available"
    remove_field     path="hash" | "transactions.0.value" | "*.transactionHash"
    replace_field    path=..., value=<any JSON value>
    drop_item        index=-1: remove one element of a list result (a receipt)
  A path is dot-separated keys into the result; integers index lists, "*"
  means every element.

Use as a module:
    srv = RpcServer(57010)
    srv.add_chain(Chain("a", 900001, blocks))   # {n: (block, receipts)}
    srv.start(); url = srv.chain_url("a")
    fid = srv.add_fault("null_result", method="eth_getBlockByNumber", block=5)
    srv.counts(method="eth_getTransactionReceipt", chain="a")
    srv.clear_faults(fid); srv.stop()
or over HTTP: POST /_control {"op": "add_fault", "kind": ..., ...}, ops
add_fault, clear_faults, faults, stats, reset_stats, set_head, requests,
counts, max_concurrency (the most HTTP requests to a chain in flight at once:
RpcServer.max_concurrency(), also request_times() and in_flight()).

As a CLI: python3 rpcserver.py --port 57000 --chain main=mainnet-18000000:900001
          [--synth syn=30:900100] [--upstream http://127.0.0.1:8545]
          [--proxy name=URL]

Python 3.11 standard library only.  One thread per connection, HTTP/1.1
keep-alive with Content-Length.
"""

import argparse
import collections
import copy
import http.client
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

JSONRPC_PARSE_ERROR = -32700
JSONRPC_INVALID_REQUEST = -32600
JSONRPC_METHOD_NOT_FOUND = -32601
JSONRPC_INVALID_PARAMS = -32602


def _hex(n):
    return hex(n)


def json_text(obj):
    """The JSON text to serve for a result: the recorded text of a value read
    from a fixture file (fixtures.Recorded: .raw), a list of such values
    joined, else a compact serialization."""
    raw = getattr(obj, "raw", None)
    if raw is not None:
        return raw
    if isinstance(obj, list) and obj and all(getattr(o, "raw", None) is not None for o in obj):
        return "[" + ",".join(o.raw for o in obj) + "]"
    return json.dumps(obj, separators=(",", ":"))


def _parse_block_tag(value, head, tags=None):
    """Block number from a QUANTITY or a tag; None if not a number.  "tags"
    maps "safe" and "finalized" to numbers (default: the head)."""
    if isinstance(value, dict):
        value = value.get("blockNumber")
    if not isinstance(value, str):
        return None
    if value in ("safe", "finalized") and tags is not None:
        return tags.get(value)
    if value in ("latest", "pending", "safe", "finalized"):
        return head
    if value == "earliest":
        return 0
    if value.startswith(("0x", "0X")) and len(value) <= 18:
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------
# Chains
# ---------------------------------------------------------------------------

class Chain:
    """
    A replayed chain: {number: (block_object, receipts_list)} in memory.
    The head (eth_blockNumber) is the highest block unless set with
    set_head(); blocks above the head answer null, as a node would.  The
    "safe" and "finalized" tags answer the error a node without them gives
    unless set with set_finality().
    """

    is_proxy = False

    def __init__(self, name, chain_id, blocks=None, head=None):
        self.name = name
        self.chain_id = chain_id
        self.lock = threading.Lock()
        self.blocks = {}
        self.by_hash = {}
        self.tx_loc = {}
        self._head = head
        self.tags = {}          # "safe", "finalized" -> block number
        self._cache = {}
        for n, (b, rl) in sorted((blocks or {}).items()):
            self.add_block(b, rl)

    def add_block(self, block, receipts):
        n = int(block["number"], 16)
        with self.lock:
            self.blocks[n] = (block, receipts)
            self.by_hash[block["hash"].lower()] = n
            for i, tx in enumerate(block["transactions"]):
                h = tx["hash"] if isinstance(tx, dict) else tx
                self.tx_loc[h.lower()] = (n, i)
            self._cache = {k: v for k, v in self._cache.items() if k[1] != n}

    @property
    def head(self):
        if self._head is not None:
            return self._head
        return max(self.blocks) if self.blocks else 0

    def set_head(self, head):
        """Pretend the node is at "head" (None: the highest block held)."""
        self._head = head

    def set_finality(self, safe=None, finalized=None):
        """Answer the "safe" and "finalized" tags with these blocks (None:
        the error of a node without them)."""
        self.tags = {k: v for k, v in (("safe", safe), ("finalized", finalized))
                     if v is not None}

    def _visible(self, n):
        return n is not None and n <= self.head and n in self.blocks

    def block_of_call(self, method, params):
        """Block number a call is about, or None."""
        try:
            if method in ("eth_getBlockByNumber", "eth_getBlockReceipts",
                          "eth_getBlockTransactionCountByNumber"):
                p = params[0]
                if isinstance(p, str) and len(p) == 66:
                    return self.by_hash.get(p.lower())
                if isinstance(p, dict) and "blockHash" in p:
                    return self.by_hash.get(p["blockHash"].lower())
                return _parse_block_tag(p, self.head, self.tags)
            if method == "eth_getBlockByHash":
                return self.by_hash.get(params[0].lower())
            if method in ("eth_getTransactionReceipt", "eth_getTransactionByHash"):
                loc = self.tx_loc.get(params[0].lower())
                return loc[0] if loc else None
        except (IndexError, AttributeError, TypeError):
            return None
        return None

    def call(self, method, params):
        """
        Answer one call: returns (result_object, result_json_text).  The
        object is shared: copy before modifying.  Raises RpcError.
        """
        if not isinstance(params, list):
            params = [] if params is None else [params]
        if method == "eth_chainId":
            return self._plain(_hex(self.chain_id))
        if method == "net_version":
            return self._plain(str(self.chain_id))
        if method == "eth_blockNumber":
            return self._plain(_hex(self.head))
        if method == "web3_clientVersion":
            return self._plain("ethindex-rpcserver/0.1")
        if method == "eth_syncing":
            return self._plain(False)
        if method in ("eth_getBlockByNumber", "eth_getBlockByHash"):
            if len(params) < 1:
                raise RpcError(JSONRPC_INVALID_PARAMS, "missing value for required argument 0")
            full = bool(params[1]) if len(params) > 1 else False
            if params[0] in ("safe", "finalized") and params[0] not in self.tags:
                raise RpcError(-32000, "%s block not found" % params[0])
            n = self.block_of_call(method, params)
            if not self._visible(n):
                return self._plain(None)
            return self._cached(("block" if full else "header", n),
                                lambda: self._block_obj(n, full))
        if method == "eth_getBlockReceipts":
            if len(params) < 1:
                raise RpcError(JSONRPC_INVALID_PARAMS, "missing value for required argument 0")
            n = self.block_of_call(method, params)
            if not self._visible(n):
                return self._plain(None)
            return self._cached(("receipts", n), lambda: self.blocks[n][1])
        if method in ("eth_getTransactionReceipt", "eth_getTransactionByHash"):
            if len(params) < 1 or not isinstance(params[0], str):
                raise RpcError(JSONRPC_INVALID_PARAMS, "missing value for required argument 0")
            loc = self.tx_loc.get(params[0].lower())
            if loc is None or not self._visible(loc[0]):
                return self._plain(None)
            n, i = loc
            if method == "eth_getTransactionReceipt":
                return self._cached(("receipt", n, i), lambda: self.blocks[n][1][i])
            return self._cached(("tx", n, i), lambda: self.blocks[n][0]["transactions"][i])
        raise RpcError(JSONRPC_METHOD_NOT_FOUND,
                       "the method %s does not exist/is not available" % method)

    def _block_obj(self, n, full):
        b = self.blocks[n][0]
        if full:
            return b
        b = dict(b)
        b["transactions"] = [t["hash"] if isinstance(t, dict) else t for t in b["transactions"]]
        return b

    @staticmethod
    def _plain(obj):
        return obj, json.dumps(obj)

    def _cached(self, key, make):
        hit = self._cache.get(key)
        if hit is None:
            obj = make()
            hit = (obj, json_text(obj))
            self._cache[key] = hit
        return hit


class ProxyChain:
    """Forwards every HTTP request body unchanged to an upstream URL."""

    is_proxy = True

    def __init__(self, name, upstream, timeout=30):
        self.name = name
        self.upstream = upstream
        u = urllib.parse.urlsplit(upstream)
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.https = u.scheme == "https"
        self.path = (u.path or "/") + (("?" + u.query) if u.query else "")
        self.timeout = timeout
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            c = cls(self.host, self.port, timeout=self.timeout)
            self.local.conn = c
        return c

    def forward(self, body):
        """POST body upstream: (status, response bytes).  Raises OSError."""
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request("POST", self.path, body=body,
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    self.local.conn = None
                return r.status, data
            except (OSError, http.client.HTTPException):
                c.close()
                self.local.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

class Fault:
    TRANSPORT = ("http_status", "malformed_json", "close", "delay", "replace_bytes")
    CONTENT = ("null_result", "rpc_error", "method_not_found", "remove_field",
               "replace_field", "drop_item")
    KINDS = TRANSPORT + CONTENT

    _next_id = 1
    _id_lock = threading.Lock()

    def __init__(self, kind, method=None, block=None, chain=None, count=None, **params):
        if kind not in self.KINDS:
            raise ValueError("unknown fault kind %r (known: %s)" % (kind, ", ".join(self.KINDS)))
        if kind in ("remove_field", "replace_field") and "path" not in params:
            raise ValueError("fault %s needs path=" % kind)
        if kind == "replace_field" and "value" not in params:
            raise ValueError("fault replace_field needs value=")
        with Fault._id_lock:
            self.id = Fault._next_id
            Fault._next_id += 1
        self.kind = kind
        self.methods = None if method is None else (
            {method} if isinstance(method, str) else set(method))
        self.blocks = None if block is None else (
            {block} if isinstance(block, int) else set(block))
        self.chain = chain
        self.count = count          # None: until cleared
        self.params = params
        self.applied = 0

    def matches(self, chain, method, block):
        if self.chain is not None and self.chain != chain:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        if self.blocks is not None and block not in self.blocks:
            return False
        return True

    def describe(self):
        return {"id": self.id, "kind": self.kind,
                "method": sorted(self.methods) if self.methods else None,
                "block": sorted(self.blocks) if self.blocks else None,
                "chain": self.chain, "count": self.count,
                "applied": self.applied, "params": self.params}

    # content faults: (result, error) -> (result, error)
    def apply_content(self, method, result, error):
        k, p = self.kind, self.params
        if k == "null_result":
            return None, None
        if k == "rpc_error":
            return None, {"code": p.get("code", -32000),
                          "message": p.get("message", "injected error")}
        if k == "method_not_found":
            return None, {"code": JSONRPC_METHOD_NOT_FOUND,
                          "message": "the method %s does not exist/is not available" % method}
        if error is not None or result is None:
            return result, error
        result = copy.deepcopy(result)
        if k == "remove_field":
            _edit_path(result, p["path"].split("."), remove=True)
        elif k == "replace_field":
            _edit_path(result, p["path"].split("."), value=p["value"])
        elif k == "drop_item" and isinstance(result, list) and result:
            del result[p.get("index", -1)]
        return result, error


def _edit_path(obj, parts, remove=False, value=None):
    """Remove or replace the member(s) at a dotted path; missing paths are ignored."""
    key, rest = parts[0], parts[1:]
    if isinstance(obj, list):
        if key == "*":
            idxs = range(len(obj))
        else:
            try:
                i = int(key)
            except ValueError:
                return
            if not -len(obj) <= i < len(obj):
                return
            idxs = [i]
        for i in idxs:
            if rest:
                _edit_path(obj[i], rest, remove, value)
            elif remove:
                obj[i] = None
            else:
                obj[i] = copy.deepcopy(value)
    elif isinstance(obj, dict):
        keys = list(obj) if key == "*" else [key]
        for k in keys:
            if rest:
                if k in obj:
                    _edit_path(obj[k], rest, remove, value)
            elif remove:
                obj.pop(k, None)
            else:
                obj[k] = copy.deepcopy(value)


def _block_of_result(result):
    """Block number a result is about (proxy mode, when params do not say)."""
    try:
        if isinstance(result, dict):
            if "parentHash" in result and "number" in result:
                return int(result["number"], 16)
            if "blockNumber" in result and result["blockNumber"]:
                return int(result["blockNumber"], 16)
        if isinstance(result, list) and result and isinstance(result[0], dict) \
                and result[0].get("blockNumber"):
            return int(result[0]["blockNumber"], 16)
    except (TypeError, ValueError):
        pass
    return None


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ethindex-rpcserver/0.1"
    timeout = 120               # idle keep-alive connections end eventually
    disable_nagle_algorithm = True  # headers and body are separate writes

    def log_message(self, fmt, *args):
        if self.server.owner.verbose:
            sys.stderr.write("rpcserver: " + (fmt % args) + "\n")

    def setup(self):
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def do_GET(self):
        if self.path.rstrip("/") == "/_control":
            self._send(200, json.dumps(self.server.owner._control({"op": "stats"})).encode())
        else:
            self._send(405, b'{"error":"use POST"}')

    def do_POST(self):
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/_control":
            try:
                reply = owner._control(json.loads(body or b"{}"))
                self._send(200, json.dumps(reply).encode())
            except Exception as e:              # report, keep serving
                self._send(400, json.dumps({"error": "%s: %s" % (type(e).__name__, e)}).encode())
            return
        owner._handle_rpc(self, path, body)

    def _send(self, status, data, headers=None, close=False):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # a client that hangs up (a stopped worker, the cluster shutting
        # down) is normal here; anything else is worth a traceback
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class RpcServer:
    def __init__(self, port=0, host="127.0.0.1", upstream=None, chains=None,
                 verbose=False, log_size=100000):
        self.host = host
        self.port = port
        self.verbose = verbose
        self.chains = {}
        self.default = ProxyChain("default", upstream) if upstream else None
        self.lock = threading.Lock()
        self.faults = []
        self.log = collections.deque(maxlen=log_size)
        self.counter = collections.Counter()         # (chain, method, block) -> calls
        self.http_requests = collections.Counter()   # chain -> HTTP requests
        self.faults_applied = collections.Counter()  # (chain, kind) -> times
        # every HTTP request to a chain: [start, end (None while in flight),
        # chain, frozenset of its methods], times of time.monotonic()
        self.flights = collections.deque(maxlen=log_size)
        self._conns = set()
        self._httpd = None
        self._thread = None
        for c in chains or ():
            self.add_chain(c)

    # ---- set-up -----------------------------------------------------------
    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def chain_url(self, name):
        return "%s/chain/%s" % (self.url, name)

    def add_chain(self, chain):
        self.chains[chain.name] = chain
        return chain

    def add_proxy(self, name, upstream):
        return self.add_chain(ProxyChain(name, upstream))

    def set_head(self, chain, head):
        self.chains[chain].set_head(head)

    def start(self):
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="rpcserver-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _track(self, conn, add):
        with self.lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # ---- faults -----------------------------------------------------------
    def add_fault(self, kind, method=None, block=None, chain=None, count=None, **params):
        """Add a fault; returns its id.  count=None: until clear_faults()."""
        f = Fault(kind, method=method, block=block, chain=chain, count=count, **params)
        with self.lock:
            self.faults.append(f)
        return f.id

    def clear_faults(self, fault_id=None):
        with self.lock:
            if fault_id is None:
                self.faults = []
            else:
                self.faults = [f for f in self.faults if f.id != fault_id]

    def list_faults(self):
        with self.lock:
            return [f.describe() for f in self.faults]

    # ---- statistics -------------------------------------------------------
    def counts(self, method=None, chain=None, block=None):
        """Number of calls received matching method / chain / block."""
        with self.lock:
            return sum(v for (c, m, b), v in self.counter.items()
                       if (method is None or m == method)
                       and (chain is None or c == chain)
                       and (block is None or b == block))

    def requests(self, method=None, chain=None, since=None):
        """Call log entries: dicts with t, chain, method, params, block, faults."""
        with self.lock:
            return [e for e in self.log
                    if (method is None or e["method"] == method)
                    and (chain is None or e["chain"] == chain)
                    and (since is None or e["t"] >= since)]

    def reset_stats(self):
        with self.lock:
            self.log.clear()
            self.counter.clear()
            self.http_requests.clear()
            self.faults_applied.clear()
            self.flights = collections.deque((f for f in self.flights if f[1] is None),
                                             maxlen=self.flights.maxlen)

    def _flights_of(self, chain, method, since):
        return [f for f in self.flights
                if f[2] == chain and (method is None or method in f[3])
                and (since is None or f[0] >= since)]

    def request_times(self, chain, method=None, since=None):
        """(start, end) of every HTTP request to "chain" (with a call of
        "method", if given) that arrived at or after "since", in arrival
        order; end is None while the request is in flight.  Times are
        time.monotonic() of this process."""
        with self.lock:
            return [(f[0], f[1]) for f in self._flights_of(chain, method, since)]

    def in_flight(self, chain, method=None):
        """HTTP requests to "chain" (with a call of "method") being served now."""
        with self.lock:
            return sum(1 for f in self._flights_of(chain, method, None) if f[1] is None)

    def max_concurrency(self, chain, method=None, since=None):
        """The most HTTP requests to "chain" (with a call of "method", if
        given) that were in flight at once, counting only requests that
        arrived at or after "since" (time.monotonic(); None: all kept).  A
        request is in flight from the moment its body has been read until
        its answer has been written (or its connection closed), delays of
        faults included.  Requests that arrived before "since" do not count,
        so a client's aborted requests still being answered do not either."""
        with self.lock:
            events = []
            for start, end, _, _ in self._flights_of(chain, method, since):
                events.append((start, 1))
                if end is not None:
                    events.append((end, -1))
        events.sort(key=lambda e: (e[0], e[1]))   # an end before a start at the same time
        now = peak = 0
        for _, d in events:
            now += d
            peak = max(peak, now)
        return peak

    def stats(self):
        with self.lock:
            per_method = collections.Counter()
            for (c, m, b), v in self.counter.items():
                per_method["%s %s" % (c, m)] += v
            return {"calls": dict(per_method),
                    "http_requests": dict(self.http_requests),
                    "faults_applied": {"%s %s" % k: v for k, v in self.faults_applied.items()},
                    "faults": [f.describe() for f in self.faults]}

    # ---- control endpoint ---------------------------------------------------
    def _control(self, req):
        op = req.pop("op", None)
        if op == "add_fault":
            return {"id": self.add_fault(req.pop("kind"), **req)}
        if op == "clear_faults":
            self.clear_faults(req.get("id"))
            return {"ok": True}
        if op == "faults":
            return {"faults": self.list_faults()}
        if op == "stats":
            return self.stats()
        if op == "reset_stats":
            self.reset_stats()
            return {"ok": True}
        if op == "set_head":
            self.set_head(req["chain"], req.get("head"))
            return {"ok": True}
        if op == "requests":
            return {"requests": self.requests(req.get("method"), req.get("chain"), req.get("since"))}
        if op == "counts":
            return {"count": self.counts(req.get("method"), req.get("chain"), req.get("block"))}
        if op == "max_concurrency":
            return {"max_concurrency": self.max_concurrency(req["chain"], req.get("method"))}
        raise ValueError("unknown op %r" % op)

    # ---- JSON-RPC -----------------------------------------------------------
    def _route(self, path):
        if path.startswith("/chain/"):
            return self.chains.get(path[len("/chain/"):])
        if path in ("", "/"):
            if self.default is not None:
                return self.default
            if len(self.chains) == 1:
                return next(iter(self.chains.values()))
        return None

    def _handle_rpc(self, h, path, body):
        chain = self._route(path)
        if chain is None:
            h._send(404, json.dumps({"jsonrpc": "2.0", "id": None, "error": {
                "code": JSONRPC_METHOD_NOT_FOUND, "message": "no chain at %s" % path}}).encode())
            return
        cname = chain.name
        try:
            parsed = json.loads(body)
            methods = frozenset(c.get("method") for c in
                                (parsed if isinstance(parsed, list) else [parsed])
                                if isinstance(c, dict) and isinstance(c.get("method"), str))
        except ValueError:
            methods = frozenset()
        flight = [time.monotonic(), None, cname, methods]
        with self.lock:
            self.http_requests[cname] += 1
            self.flights.append(flight)
        try:
            self._answer_rpc(h, chain, cname, body)
        finally:
            flight[1] = time.monotonic()

    def _answer_rpc(self, h, chain, cname, body):
        try:
            req = json.loads(body)
        except ValueError:
            h._send(200, json.dumps({"jsonrpc": "2.0", "id": None, "error": {
                "code": JSONRPC_PARSE_ERROR, "message": "parse error"}}).encode())
            return
        batch = isinstance(req, list)
        calls = req if batch else [req]
        if batch and not calls:
            h._send(200, json.dumps({"jsonrpc": "2.0", "id": None, "error": {
                "code": JSONRPC_INVALID_REQUEST, "message": "empty batch"}}).encode())
            return

        # answers: list of [id, result_obj, result_text or None, error, block]
        answers = []
        if chain.is_proxy:
            try:
                status, data = chain.forward(body)
            except (OSError, http.client.HTTPException) as e:
                h._send(502, json.dumps({"error": "upstream: %s" % e}).encode())
                return
            up = None
            if status == 200:
                try:
                    up = json.loads(data)
                except ValueError:
                    up = None
            ups = (up if isinstance(up, list) else [up]) if up is not None else None
            if ups is None or len(ups) != len(calls) or any(not isinstance(u, dict) for u in ups):
                # not something we can take apart: log, maybe fault, pass through
                self._record(cname, calls, [None] * len(calls))
                if self._transport(h, cname, calls, [None] * len(calls), data):
                    return
                h._send(status, data)
                return
            by_id = {}
            for u in ups:
                by_id.setdefault(json.dumps(u.get("id")), []).append(u)
            for i, c in enumerate(calls):
                key = json.dumps(c.get("id") if isinstance(c, dict) else None)
                u = by_id[key].pop(0) if by_id.get(key) else ups[i]
                res = u.get("result")
                blk = self._call_block(chain, c, res)
                answers.append([c.get("id") if isinstance(c, dict) else None,
                                res, None, u.get("error"), blk])
            passthrough = data
        else:
            for c in calls:
                if not isinstance(c, dict) or not isinstance(c.get("method"), str):
                    answers.append([c.get("id") if isinstance(c, dict) else None, None, None,
                                    {"code": JSONRPC_INVALID_REQUEST, "message": "invalid request"},
                                    None])
                    continue
                params = c.get("params", [])
                blk = chain.block_of_call(c["method"], params if isinstance(params, list) else [])
                try:
                    res, text = chain.call(c["method"], params)
                    answers.append([c.get("id"), res, text, None, blk])
                except RpcError as e:
                    answers.append([c.get("id"), None, None,
                                    {"code": e.code, "message": e.message}, blk])
            passthrough = None

        blocks = [a[4] for a in answers]
        self._record(cname, calls, blocks)

        # content faults, per call
        changed = False
        with self.lock:
            faults = [f for f in self.faults if f.kind in Fault.CONTENT]
        hit = set()
        for c, a in zip(calls, answers):
            method = c.get("method") if isinstance(c, dict) else None
            for f in faults:
                if f.matches(cname, method, a[4]):
                    a[1], a[3] = f.apply_content(method, a[1], a[3])
                    a[2] = None
                    changed = True
                    hit.add(f)
        self._consume(cname, hit)

        if passthrough is not None and not changed:
            data = passthrough
        else:
            parts = []
            for rid, res, text, err, _ in answers:
                if err is not None:
                    parts.append(json.dumps({"jsonrpc": "2.0", "id": rid, "error": err},
                                            separators=(",", ":")))
                else:
                    if text is None:
                        text = json.dumps(res, separators=(",", ":"))
                    parts.append('{"jsonrpc":"2.0","id":%s,"result":%s}'
                                 % (json.dumps(rid), text))
            data = ("[" + ",".join(parts) + "]" if batch else parts[0]).encode()

        if self._transport(h, cname, calls, blocks, data):
            return
        h._send(200, data)

    def _call_block(self, chain, call, result):
        if not isinstance(call, dict):
            return None
        params = call.get("params") or []
        m = call.get("method")
        b = None
        if m in ("eth_getBlockByNumber", "eth_getBlockReceipts") and params:
            b = _parse_block_tag(params[0], None)
        if b is None:
            b = _block_of_result(result)
        return b

    def _record(self, cname, calls, blocks):
        now = time.time()
        with self.lock:
            for c, b in zip(calls, blocks):
                m = c.get("method") if isinstance(c, dict) else None
                self.counter[(cname, m, b)] += 1
                self.log.append({"t": now, "chain": cname, "method": m,
                                 "params": c.get("params") if isinstance(c, dict) else None,
                                 "block": b})

    def _consume(self, cname, hit):
        """Count one application of each fault in "hit"; drop exhausted ones."""
        if not hit:
            return
        with self.lock:
            for f in hit:
                f.applied += 1
                self.faults_applied[(cname, f.kind)] += 1
                if f.count is not None:
                    f.count -= 1
            self.faults = [f for f in self.faults if f.count is None or f.count > 0]

    def _transport(self, h, cname, calls, blocks, data):
        """Apply transport faults; True when the response has been dealt with."""
        with self.lock:
            faults = [f for f in self.faults if f.kind in Fault.TRANSPORT]
        hit = []
        for f in faults:
            for c, b in zip(calls, blocks):
                m = c.get("method") if isinstance(c, dict) else None
                if f.matches(cname, m, b):
                    hit.append(f)
                    break
        if not hit:
            return False
        self._consume(cname, set(hit))
        for f in hit:
            if f.kind == "delay":
                time.sleep(float(f.params.get("seconds", 1.0)))
        for f in hit:
            p = f.params
            if f.kind == "close":
                h.close_connection = True
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return True
            if f.kind == "http_status":
                status = int(p.get("status", 500))
                body = p.get("body")
                if body is None:
                    body = http.client.responses.get(status, "error")
                headers = {}
                if "retry_after" in p:
                    headers["Retry-After"] = str(p["retry_after"])
                h._send(status, body.encode() if isinstance(body, str) else body, headers)
                return True
            if f.kind == "replace_bytes":
                h._send(200, data.replace(p["find"].encode(), bytes.fromhex(p["replace_hex"]), 1))
                return True
            if f.kind == "malformed_json":
                keep = p.get("keep")
                keep = len(data) // 2 if keep is None else min(int(keep), len(data))
                h._send(200, data[:keep])
                return True
        return False


# ---------------------------------------------------------------------------
# Client helper and CLI
# ---------------------------------------------------------------------------

def control(url, op, **kw):
    """Call POST <url>/_control from another process."""
    import urllib.request
    kw["op"] = op
    req = urllib.request.Request(url.rstrip("/") + "/_control", data=json.dumps(kw).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=57000)
    ap.add_argument("--chain", action="append", default=[], metavar="NAME=SET[:CHAIN_ID]",
                    help="replay a fixture set from test/lib/fixtures.py")
    ap.add_argument("--synth", action="append", default=[], metavar="NAME=BLOCKS[:CHAIN_ID]",
                    help="replay a synthetic chain from test/lib/synthchain.py")
    ap.add_argument("--upstream", help="default chain (/) proxies to this URL")
    ap.add_argument("--proxy", action="append", default=[], metavar="NAME=URL")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)

    srv = RpcServer(a.port, a.host, upstream=a.upstream, verbose=a.verbose)
    next_id = 900000
    for spec in a.chain:
        import fixtures
        name, rest = spec.split("=", 1)
        set_name, _, cid = rest.partition(":")
        next_id += 1
        srv.add_chain(Chain(name, int(cid) if cid else next_id, fixtures.load_set(set_name)))
    for spec in a.synth:
        import synthchain
        name, rest = spec.split("=", 1)
        n, _, cid = rest.partition(":")
        next_id += 1
        cid = int(cid) if cid else next_id
        srv.add_chain(Chain(name, cid, synthchain.generate(int(n), chain_id=cid)))
    for spec in a.proxy:
        name, url = spec.split("=", 1)
        srv.add_proxy(name, url)
    srv.start()
    for name in srv.chains:
        print("chain %s: %s" % (name, srv.chain_url(name)), flush=True)
    if srv.default:
        print("default: %s -> %s" % (srv.url, a.upstream), flush=True)
    print("control: %s/_control" % srv.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    srv.stop()


if __name__ == "__main__":
    main()
