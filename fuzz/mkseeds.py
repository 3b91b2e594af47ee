#!/usr/bin/env python3
"""
fuzz/mkseeds.py OUTDIR: write the seed inputs the harnesses start from that
are derived from the fixtures already in the repository (test/fixtures/,
see test/fixtures/PROVENANCE.md; sql/decode.sql), into

  OUTDIR/seeds/block/     block NUL receipts: every fixture set of
                          test/lib/fixtures.py, big blocks cut down to a few
                          transactions (and their receipts, renumbered),
                          small changes of one set that reach rarer paths,
                          and the hand-made block of sql/decode.sql (types
                          0-4)
  OUTDIR/full/block/      the same sets uncut (run once, not mutated: too big
                          to fuzz quickly)
  OUTDIR/seeds/envelope/  JSON-RPC envelopes and batches as the fetcher gets
                          them (ids out of order, errors, nulls)
  OUTDIR/seeds/jsonrpc/   quantity envelopes, block headers, hydrated blocks
  OUTDIR/seeds/hex/       one byte ("max" of eth_printable) and a value

The byte-for-byte copies from the shared corpus are in fuzz/corpus/ (see
fuzz/corpus/SOURCES.md).  Python 3 standard library only; output is
deterministic.
"""

import copy
import json
import os
import re
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

import fixtures  # noqa: E402  (test/lib/fixtures.py)

# Transactions kept of the big blocks: a few runs that cover the kinds in
# them (legacy, EIP-1559, contract creation, many logs, access lists).
CUT = 6
MAX_TX = 6000


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def pair(block, receipts):
    return compact(block) + b"\0" + compact(receipts)


def cut_block(block, receipts, indexes):
    """The block with only the transactions at indexes, renumbered."""
    b = dict(block)
    txs = []
    rcs = []
    for new, old in enumerate(indexes):
        tx = dict(block["transactions"][old])
        rc = dict(receipts[old])
        tx["transactionIndex"] = hex(new)
        rc["transactionIndex"] = hex(new)
        rc["logs"] = [dict(lg, transactionIndex=hex(new)) if "transactionIndex" in lg else dict(lg)
                      for lg in rc["logs"]]
        txs.append(tx)
        rcs.append(rc)
    b["transactions"] = txs
    return b, rcs


def interesting_runs(block, receipts):
    """
    A few runs of CUT transactions worth keeping: the first ones, and those
    around a contract creation, the receipt with the most logs and an access
    list; transactions bigger than MAX_TX bytes (with their receipt) are
    left out, so that seeds stay small enough to mutate quickly.
    """
    txs = block["transactions"]
    ok = [i for i in range(len(txs))
          if len(compact(txs[i])) + len(compact(receipts[i])) <= MAX_TX]
    marks = [ok[0]] if ok else []
    for i in ok:
        if txs[i].get("to") is None:
            marks.append(i)
            break
    if ok:
        marks.append(max(ok, key=lambda i: len(receipts[i]["logs"])))
    for i in ok:
        if txs[i].get("accessList"):
            marks.append(i)
            break
    runs = []
    for m in marks:
        k = ok.index(m)
        lo = max(0, min(k - CUT // 2, len(ok) - CUT))
        run = ok[lo:lo + CUT]
        if run not in runs:
            runs.append(run)
    return runs


def decode_sql_block():
    """The block and receipts of sql/decode.sql, as the SQL builds them."""
    with open(os.path.join(ROOT, "sql", "decode.sql")) as f:
        sql = f.read()
    m = re.search(r"INSERT INTO src VALUES \(replace\(\$json\$(.*?)\$json\$, 'BLOOM', '0x' \|\| repeat\('00', 256\)\), "
                  r"replace\(\$json\$(.*?)\$json\$, 'BLOOM', '0x' \|\| repeat\('00', 255\) \|\| '01'\)\);", sql, re.S)
    if not m:
        return None
    b = m.group(1).replace("BLOOM", "0x" + "00" * 256)
    r = m.group(2).replace("BLOOM", "0x" + "00" * 255 + "01")
    return b.strip().encode() + b"\0" + r.strip().encode()


def variants(block, receipts):
    """
    Small changes of a valid block and its receipts that reach the decoder's
    rarer paths, which mutations seldom find from the fixtures: the decimal
    blockTimestamp anvil sends (and one too big), "data" for "input", null
    withdrawals, and each array the decoder requires missing or of another
    type.
    """
    def with_receipts(change):
        r = copy.deepcopy(receipts)
        change(r)
        return block, r

    def with_block(change):
        b = copy.deepcopy(block)
        change(b)
        return b, receipts

    ts = int(block["timestamp"], 16)
    logged = next(i for i, rc in enumerate(receipts) if rc["logs"])

    def decimal_timestamps(r):
        for rc in r:
            rc["blockTimestamp"] = ts
            for lg in rc["logs"]:
                lg["blockTimestamp"] = ts

    def data_for_input(b):
        tx = b["transactions"][0]
        tx["data"] = tx.pop("input")

    out = {
        "anvil-decimal-timestamps": with_receipts(decimal_timestamps),
        "data-for-input": with_block(data_for_input),
        "no-transactions": with_block(lambda b: b.pop("transactions")),
        "withdrawals-object": with_block(lambda b: b.update(withdrawals={})),
        "withdrawals-null": with_block(lambda b: b.update(withdrawals=None)),
        "access-list-string": with_block(lambda b: b["transactions"][0].update(accessList="0x")),
        "decimal-timestamp-too-big": with_receipts(lambda r: r[0].update(blockTimestamp=10 ** 19)),
        "receipt-without-logs": with_receipts(lambda r: r[logged].pop("logs")),
        "logs-object": with_receipts(lambda r: r[logged].update(logs={})),
        "log-without-topics": with_receipts(lambda r: r[logged]["logs"][0].pop("topics")),
        "topics-string": with_receipts(lambda r: r[logged]["logs"][0].update(topics="0x")),
        "removed-string": with_receipts(lambda r: r[logged]["logs"][0].update(removed="false")),
        "removed-true": with_receipts(lambda r: r[logged]["logs"][0].update(removed=True)),
    }
    return out


def write(outdir, sub, name, data):
    d = os.path.join(outdir, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def io_responses(rel):
    """The "<<" lines of an execution-apis .io file, as they are."""
    with open(fixtures.fixture_path(rel), "rb") as f:
        return [line[2:].strip() for line in f.read().splitlines() if line.startswith(b"<<")]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: mkseeds.py OUTDIR")
    out = sys.argv[1]

    # --- block ------------------------------------------------------------
    sets = {}
    for name in fixtures.set_names():
        for number, (block, receipts) in sorted(fixtures.load_set(name).items()):
            sets["%s-%d" % (name, number)] = (block, receipts)
            write(out, "full/block", "%s-%d" % (name, number), pair(block, receipts))
            if len(block["transactions"]) <= CUT:
                write(out, "seeds/block", "%s-%d" % (name, number), pair(block, receipts))
                continue
            for k, run in enumerate(interesting_runs(block, receipts)):
                b, r = cut_block(block, receipts, run)
                write(out, "seeds/block", "%s-%d-cut%d" % (name, number, k), pair(b, r))
    for name, (b, r) in variants(*sets["hive-54-54"]).items():
        write(out, "seeds/block", "hive-54-" + name, pair(b, r))
    sql = decode_sql_block()
    if sql:
        write(out, "seeds/block", "decode-sql-types-0-4", sql)
        write(out, "full/block", "decode-sql-types-0-4", sql)

    # --- envelope ---------------------------------------------------------
    etl = "ethereum-etl/tests/resources/"
    for rel in ["test_stream/blocks_1755634_1755635/web3_response.eth_getBlockByNumber_0x1ac9f2_true.json",
                "test_stream/blocks_1755634_1755635/web3_response.eth_getBlockByNumber_latest_false.json",
                "test_stream/blocks_1755634_1755635/web3_response.eth_getTransactionReceipt_"
                "0x9a5437ec71b74ecf5930b406908ac6999966d38a86d1534b7190ece7599095eb.json"]:
        with open(fixtures.fixture_path(etl + rel), "rb") as f:
            write(out, "seeds/envelope", "etl-" + os.path.basename(rel)[:60], f.read())
    for rel in ["execution-apis/tests/eth_getBlockByHash/get-block-by-hash.io",
                "execution-apis/tests/eth_getBlockReceipts/get-block-receipts-n.io"]:
        for k, line in enumerate(io_responses(rel)):
            write(out, "seeds/envelope", "hive-" + os.path.basename(rel) + "-%d" % k, line)

    # the fetcher's batch for block n: id 2b is the block, 2b+1 its receipts;
    # answered out of order, once with receipts refused
    b1, r1 = sets["hive-1-1"]
    b0, r0 = sets["mainnet-1755634-1755634"]
    batch = [{"jsonrpc": "2.0", "id": 3, "result": r1}, {"jsonrpc": "2.0", "id": 0, "result": b0},
             {"jsonrpc": "2.0", "id": 2, "result": b1}, {"jsonrpc": "2.0", "id": 1, "result": r0}]
    write(out, "seeds/envelope", "batch-out-of-order", compact(batch))
    refused = [{"jsonrpc": "2.0", "id": 0, "result": b0},
               {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601,
                "message": "the method eth_getBlockReceipts does not exist/is not available"}}]
    write(out, "seeds/envelope", "batch-method-not-found", compact(refused))
    write(out, "seeds/envelope", "batch-one-error",
          b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid \\"batch\\" \\u00e9\\ud83d\\ude00\\n"}}')
    write(out, "seeds/envelope", "batch-string-ids-null",
          b'[{"id":"7","jsonrpc":"2.0","result":null},{"jsonrpc":"2.0","result":"0x1","id":8},'
          b'{"jsonrpc":"2.0","id":9,"error":"rate limited","result":[]}]')

    # --- jsonrpc ----------------------------------------------------------
    write(out, "seeds/jsonrpc", "chainid", b'{"jsonrpc":"2.0","id":1,"result":"0x1"}')
    write(out, "seeds/jsonrpc", "blocknumber", b'{"jsonrpc":"2.0","id":1,"result":"0x112a880"}')
    write(out, "seeds/jsonrpc", "error",
          b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"header not found"}}')
    for name in ["hive-1-1", "mainnet-1755634-1755635", "mainnet-483920-483920"]:
        write(out, "seeds/jsonrpc", "block-" + name, compact(sets[name][0]))
    header = dict(sets["hive-54-54"][0])
    header["transactions"] = [tx["hash"] for tx in header["transactions"]]
    write(out, "seeds/jsonrpc", "header-hive-54", compact(header))
    write(out, "seeds/jsonrpc", "finality-batch",
          compact([{"jsonrpc": "2.0", "id": 1, "result": header}, {"jsonrpc": "2.0", "id": 0, "result": None}]))

    # --- hex --------------------------------------------------------------
    b, r = sets["mainnet-18000000-18000000"]
    values = [b["number"], '"%s"' % b["number"], b["hash"], '"%s"' % b["hash"].upper().replace("0X", "0x"),
              b["gasLimit"], "0x0", "0x7fffffffffffffff", "0x8000000000000000", b["extraData"],
              b["transactions"][0]["input"][:200],
              "execution reverted: \\ \n\t\r \x01\x7f\xc3\xa9 ...",
              "the method eth_getBlockReceipts does not exist/is not available"]
    for k, v in enumerate(values):
        for mx in (200, 8):
            write(out, "seeds/hex", "value-%d-max%d" % (k, mx), bytes([mx]) + v.encode())


if __name__ == "__main__":
    main()
