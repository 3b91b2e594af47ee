"""
fixtures.py: load the recorded JSON-RPC responses under test/fixtures/ into
complete blocks, whatever envelope the source repository used.

A *fixture set* is a run of consecutive blocks for which the hydrated block
(eth_getBlockByNumber(n, true)) and every receipt are recorded.  load_set()
returns it as {block_number: (block_object, receipts_list)}, receipts in
transaction order, ready to be served by rpcserver.Chain or compared with the
rows ethindex stored.

Envelopes understood (see test/fixtures/PROVENANCE.md for which file uses
which):
  * bare result (a block object, a receipt object, a list of receipts);
  * one JSON-RPC envelope {"jsonrpc", "id", "result"};
  * a batch: a JSON array of envelopes;
  * erigon rpc-tests: a JSON array of {"request", "response"[, "test"]} where
    request/response are single envelopes or batches;
  * execution-apis .io files: "// comment", ">> request", "<< response" lines.

Every JSON object and array read from a fixture file is a Recorded or
RecordedList: it also carries its text as recorded (.raw: whitespace, key
order, escapes and number spellings of the file), which rpcserver serves
instead of a re-serialization, so that the decoder sees the recorded bytes.

Also: the ethereum-etl expected outputs (CSV or JSON lines) of a set, read as
lists of dicts (load_etl_expected).

Python 3.11 standard library only.
"""

import copy
import csv
import json
import json.decoder
import os
import re

FIXTURE_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "fixtures"))

_E = "erigon-rpc-tests/integration/mainnet/"
_ETL = "ethereum-etl/tests/resources/"
_X = "execution-apis/tests/"

# name -> description of one set.  "blocks" lists the block numbers the set
# consists of (files may hold more, e.g. a batch with a block whose receipts
# are not recorded).  "etl" names the ethereum-etl expected outputs, if any.
FIXTURE_SETS = {
    "mainnet-483920": {
        "era": "Frontier, Parity/OpenEthereum format (pre-Byzantium receipts with root, no type)",
        "blocks": [483920],
        "files": [
            _ETL + "test_export_blocks_job/block_with_logs/web3_response.eth_getBlockByNumber_0x76250_true.json",
            _ETL + "test_export_receipts_job/receipts_with_logs/web3_response.eth_getTransactionReceipt_0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8.json",
            _ETL + "test_export_receipts_job/receipts_with_logs/web3_response.eth_getTransactionReceipt_0x05287a561f218418892ab053adfb3d919860988b19458c570c5c30f51c146f02.json",
            _ETL + "test_export_receipts_job/receipts_with_logs/web3_response.eth_getTransactionReceipt_0x463d53f0ad57677a3b430a007c1c31d15d62c37fab5eee598551697c297c235c.json",
            _ETL + "test_export_receipts_job/receipts_with_logs/web3_response.eth_getTransactionReceipt_0xcea6f89720cc1d2f46cc7a935463ae0b99dd5fad9c91bb7357de5421511cee49.json",
        ],
        "etl": {
            "blocks": _ETL + "test_export_blocks_job/block_with_logs/expected_blocks.csv",
            "transactions": _ETL + "test_export_blocks_job/block_with_logs/expected_transactions.csv",
            "receipts": _ETL + "test_export_receipts_job/receipts_with_logs/expected_receipts.csv",
            "logs": _ETL + "test_export_receipts_job/receipts_with_logs/expected_logs.csv",
            "receipts_json": _ETL + "test_export_receipts_job/receipts_with_logs/expected_receipts.json",
            "logs_json": _ETL + "test_export_receipts_job/receipts_with_logs/expected_logs.json",
        },
    },
    "mainnet-1755634": {
        "era": "Homestead, Parity format; 1755634 is empty",
        "blocks": [1755634, 1755635],
        "files": [
            _ETL + "test_stream/blocks_1755634_1755635/web3_response.eth_getBlockByNumber_0x1ac9f2_true.json",
            _ETL + "test_stream/blocks_1755634_1755635/web3_response.eth_getBlockByNumber_0x1ac9f3_true.json",
            _ETL + "test_stream/blocks_1755634_1755635/web3_response.eth_getTransactionReceipt_0x2e3dcd051a91d3a694f6b8de2ac4b5fe7acdba55f58bcf8471ff00d4a430074d.json",
            _ETL + "test_stream/blocks_1755634_1755635/web3_response.eth_getTransactionReceipt_0x9a5437ec71b74ecf5930b406908ac6999966d38a86d1534b7190ece7599095eb.json",
        ],
        "etl": {
            "blocks": _ETL + "test_stream/blocks_1755634_1755635/expected_blocks.json",
            "transactions": _ETL + "test_stream/blocks_1755634_1755635/expected_transactions.json",
            "logs": _ETL + "test_stream/blocks_1755634_1755635/expected_logs.json",
        },
    },
    "mainnet-17000000": {
        "era": "Shanghai (before withdrawals were enabled), erigon format",
        "blocks": [17000000],
        "files": [
            _E + "eth_getBlockByHash/test_04.json",
            _E + "erigon_getBlockReceiptsByBlockHash/test_01.json",
        ],
    },
    "mainnet-18000000": {
        "era": "post-Shanghai with withdrawals, erigon format",
        "blocks": [18000000],
        "files": [
            _E + "eth_getBlockByNumber/test_08.json",
            _E + "eth_getBlockReceipts/test_02.json",
        ],
    },
    "hive-1": {
        "era": "execution-apis hive test chain block 1 (not mainnet): pre-Byzantium receipts in geth format",
        "blocks": [1],
        "files": [
            _X + "eth_getBlockByHash/get-block-by-hash.io",
            _X + "eth_getBlockReceipts/get-block-receipts-n.io",
        ],
    },
    "hive-54": {
        "era": "execution-apis hive test chain block 54 (not mainnet): Prague/Osaka header (blob gas, requestsHash)",
        "blocks": [54],
        "files": [
            _X + "eth_getBlockByNumber/get-latest.io",
            _X + "eth_getBlockReceipts/get-block-receipts-latest.io",
        ],
    },
}


def fixture_path(rel):
    return os.path.join(FIXTURE_DIR, rel)


# ---------------------------------------------------------------------------
# JSON values with the text they were read from
# ---------------------------------------------------------------------------

class Recorded(dict):
    """A JSON object read from a fixture; .raw is its text in the file, or
    None once it was changed through this object.  Copies (copy.copy,
    copy.deepcopy, dict(obj)) are plain.  Nested values are Recorded too:
    copy before editing them, as an edit inside does not reset .raw here."""

    def __init__(self, text=None, start=0, end=0):
        super().__init__()
        self._span = (text, start, end) if text is not None else None

    @property
    def raw(self):
        return self._span[0][self._span[1]:self._span[2]] if self._span else None

    def _changed(self):
        self._span = None

    def __setitem__(self, k, v):
        self._changed()
        super().__setitem__(k, v)

    def __delitem__(self, k):
        self._changed()
        super().__delitem__(k)

    def pop(self, *a):
        self._changed()
        return super().pop(*a)

    def popitem(self):
        self._changed()
        return super().popitem()

    def update(self, *a, **kw):
        self._changed()
        super().update(*a, **kw)

    def setdefault(self, k, v=None):
        if k not in self:
            self._changed()
        return super().setdefault(k, v)

    def clear(self):
        self._changed()
        super().clear()

    def __copy__(self):
        return dict(self)

    def __deepcopy__(self, memo):
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}


class RecordedList(list):
    """A JSON array read from a fixture, like Recorded."""

    def __init__(self, text=None, start=0, end=0):
        super().__init__()
        self._span = (text, start, end) if text is not None else None

    raw = Recorded.raw
    _changed = Recorded._changed

    def __setitem__(self, i, v):
        self._changed()
        super().__setitem__(i, v)

    def __delitem__(self, i):
        self._changed()
        super().__delitem__(i)

    def __iadd__(self, other):
        self._changed()
        return super().__iadd__(other)

    def append(self, v):
        self._changed()
        super().append(v)

    def extend(self, v):
        self._changed()
        super().extend(v)

    def insert(self, i, v):
        self._changed()
        super().insert(i, v)

    def pop(self, *a):
        self._changed()
        return super().pop(*a)

    def remove(self, v):
        self._changed()
        super().remove(v)

    def sort(self, **kw):
        self._changed()
        super().sort(**kw)

    def reverse(self):
        self._changed()
        super().reverse()

    def __copy__(self):
        return list(self)

    def __deepcopy__(self, memo):
        return [copy.deepcopy(v, memo) for v in self]


_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = json.JSONDecoder()


def _value(text, i):
    """The JSON value at text[i] (no whitespace before it): (value, end)."""
    c = text[i:i + 1]
    start = i
    if c == "{":
        obj = Recorded()
        i = _WS.match(text, i + 1).end()
        if text[i:i + 1] == "}":
            end = i + 1
        else:
            while True:
                if text[i:i + 1] != '"':
                    raise ValueError("expected a key at offset %d" % i)
                key, i = json.decoder.scanstring(text, i + 1)
                i = _WS.match(text, i).end()
                if text[i:i + 1] != ":":
                    raise ValueError("expected ':' at offset %d" % i)
                v, i = _value(text, _WS.match(text, i + 1).end())
                dict.__setitem__(obj, key, v)
                i = _WS.match(text, i).end()
                if text[i:i + 1] == ",":
                    i = _WS.match(text, i + 1).end()
                    continue
                if text[i:i + 1] != "}":
                    raise ValueError("expected ',' or '}' at offset %d" % i)
                end = i + 1
                break
        obj._span = (text, start, end)
        return obj, end
    if c == "[":
        lst = RecordedList()
        i = _WS.match(text, i + 1).end()
        if text[i:i + 1] == "]":
            end = i + 1
        else:
            while True:
                v, i = _value(text, i)
                list.append(lst, v)
                i = _WS.match(text, i).end()
                if text[i:i + 1] == ",":
                    i = _WS.match(text, i + 1).end()
                    continue
                if text[i:i + 1] != "]":
                    raise ValueError("expected ',' or ']' at offset %d" % i)
                end = i + 1
                break
        lst._span = (text, start, end)
        return lst, end
    return _SCALAR.raw_decode(text, i)


def loads_recorded(text):
    """json.loads(text), with every object and array a Recorded /
    RecordedList that knows its text."""
    v, end = _value(text, _WS.match(text, 0).end())
    if _WS.match(text, end).end() != len(text):
        raise ValueError("extra data at offset %d" % end)
    return v


# ---------------------------------------------------------------------------
# Envelopes
# ---------------------------------------------------------------------------

def _is_envelope(obj):
    return isinstance(obj, dict) and "jsonrpc" in obj and ("result" in obj or "error" in obj)


def _results_of(response):
    """Yield the results of one response: an envelope, a batch or a bare result."""
    if _is_envelope(response):
        if "result" in response:
            yield response["result"]
        return
    if isinstance(response, list) and response and all(_is_envelope(e) for e in response):
        for e in response:
            if "result" in e:
                yield e["result"]
        return
    yield response


def iter_results(path):
    """Every JSON-RPC result recorded in one file, whatever its envelope."""
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8")
    if path.endswith(".io"):
        for line in raw.splitlines():
            if line.startswith("<<"):
                yield from _results_of(loads_recorded(line[2:]))
        return
    doc = loads_recorded(raw)
    if isinstance(doc, list) and doc and all(isinstance(e, dict) and "response" in e for e in doc):
        for test in doc:
            yield from _results_of(test["response"])
        return
    yield from _results_of(doc)


def _is_block(obj):
    return isinstance(obj, dict) and "parentHash" in obj and "transactions" in obj and "number" in obj


def _is_receipt(obj):
    return isinstance(obj, dict) and "transactionHash" in obj and "cumulativeGasUsed" in obj


def classify(result):
    """Return ("block", obj), ("receipts", [obj...]) or (None, result)."""
    if _is_block(result):
        return "block", result
    if _is_receipt(result):
        return "receipts", [result]
    if isinstance(result, list) and result and all(_is_receipt(r) for r in result):
        return "receipts", result
    return None, result


# ---------------------------------------------------------------------------
# Sets
# ---------------------------------------------------------------------------

class FixtureError(Exception):
    pass


def load_files(paths, numbers=None):
    """
    Collect blocks and receipts from files and join them: returns
    {number: (block, receipts)} for every hydrated block whose receipts are
    all present (or restricted to "numbers", then each must be complete).
    Blocks and receipts are as recorded (Recorded); the receipts list is the
    recorded list itself when one list held them all, in order.
    """
    blocks = {}
    receipts = {}       # block hash -> {tx index: receipt}
    lists = {}          # block hash -> a list of receipts as recorded
    for p in paths:
        for result in iter_results(p):
            kind, obj = classify(result)
            if kind == "block":
                blocks[int(obj["number"], 16)] = obj
            elif kind == "receipts":
                for r in obj:
                    receipts.setdefault(r["blockHash"].lower(), {})[int(r["transactionIndex"], 16)] = r
                if isinstance(obj, list):
                    lists[obj[0]["blockHash"].lower()] = obj
    out = {}
    wanted = sorted(blocks) if numbers is None else numbers
    for n in wanted:
        b = blocks.get(n)
        if b is None:
            raise FixtureError("block %d not found in %s" % (n, ", ".join(paths)))
        txs = b["transactions"]
        if txs and not isinstance(txs[0], dict):
            if numbers is None:
                continue
            raise FixtureError("block %d has transaction hashes only" % n)
        by_index = receipts.get(b["hash"].lower(), {})
        if sorted(by_index) != list(range(len(txs))):
            if numbers is None:
                continue
            raise FixtureError("block %d has %d transactions but receipts for indexes %s"
                               % (n, len(txs), sorted(by_index)))
        rl = [by_index[i] for i in range(len(txs))]
        recorded = lists.get(b["hash"].lower())
        if recorded is not None and len(recorded) == len(rl) and \
                all(a is r for a, r in zip(recorded, rl)):
            rl = recorded       # served as the node sent the whole list
        for tx, r in zip(txs, rl):
            if tx["hash"].lower() != r["transactionHash"].lower():
                raise FixtureError("block %d: receipt %s does not match transaction %s"
                                   % (n, r["transactionHash"], tx["hash"]))
        out[n] = (b, rl)
    return out


def load_set(name):
    """{block_number: (block_object, receipts_list)} of one fixture set."""
    spec = FIXTURE_SETS[name]
    return load_files([fixture_path(p) for p in spec["files"]], spec["blocks"])


def set_names():
    return list(FIXTURE_SETS)


def load_etl_expected(name):
    """
    ethereum-etl's expected outputs of a set: {"blocks": [dict...], ...}
    with the CSV or JSON-lines values as strings / JSON values as recorded.
    CSV values stay strings ("" for missing); JSON-lines keep their types.
    """
    spec = FIXTURE_SETS[name].get("etl", {})
    out = {}
    for key, rel in spec.items():
        path = fixture_path(rel)
        with open(path, newline="") as f:
            if path.endswith(".csv"):
                out[key] = list(csv.DictReader(f))
            else:
                out[key] = [json.loads(line) for line in f if line.strip()]
    return out


if __name__ == "__main__":
    # Summary of every set: python3 test/lib/fixtures.py
    for name in FIXTURE_SETS:
        s = load_set(name)
        for n, (b, rl) in sorted(s.items()):
            print("%-18s block %-9d txs %-4d receipts %-4d logs %-4d withdrawals %s"
                  % (name, n, len(b["transactions"]), len(rl),
                     sum(len(r["logs"]) for r in rl),
                     len(b["withdrawals"]) if "withdrawals" in b else "-"))
        etl = load_etl_expected(name)
        if etl:
            print("%-18s etl expected: %s" % ("", {k: len(v) for k, v in etl.items()}))
