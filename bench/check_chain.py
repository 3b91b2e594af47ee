#!/usr/bin/env python3
"""check_chain.py: consistency checks of the chain synthnode serves.

Owns the validation of synthnode's output only (not part of the benchmark
run): fetches blocks FROM..TO from URL with eth_getBlockByNumber(n, true) and
eth_getBlockReceipts(n) and checks JSON validity, strict hex formats
(quantities without leading zeros, even-length data, hash/address lengths),
receipt i against transaction i, cumulative gas, block-wide logIndex, parent
hash chain, block bloom = OR of receipt blooms, and the type-specific fields.

usage: check_chain.py URL FROM TO [CHAIN_ID]
"""
import json
import re
import sys
import urllib.request

QTY = re.compile(r"^0x(0|[1-9a-f][0-9a-f]*)$")
DATA = re.compile(r"^0x([0-9a-f]{2})*$")

errors = []


def err(msg):
    errors.append(msg)
    if len(errors) < 30:
        print("ERROR:", msg, file=sys.stderr)


def qty(where, v, maxbits=256):
    if not isinstance(v, str) or not QTY.match(v):
        err(f"{where}: bad quantity {v!r}")
        return 0
    x = int(v, 16)
    if x.bit_length() > maxbits:
        err(f"{where}: quantity too large {v}")
    return x


def data(where, v, nbytes=None):
    if not isinstance(v, str) or not DATA.match(v):
        err(f"{where}: bad data {v!r}")
        return
    if nbytes is not None and len(v) != 2 + 2 * nbytes:
        err(f"{where}: expected {nbytes} bytes, got {(len(v) - 2) // 2}")


def rpc(url, calls):
    body = json.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                       for i, (m, p) in enumerate(calls)]).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
    replies = json.loads(raw)
    replies.sort(key=lambda r: r["id"])
    return [r["result"] for r in replies], len(raw)


def check_block(n, b, rs, chain_id, prev_hash):
    w = f"block {n}"
    for k in ["baseFeePerGas", "blobGasUsed", "difficulty", "excessBlobGas", "gasLimit",
              "gasUsed", "number", "size", "timestamp"]:
        qty(f"{w}.{k}", b[k])
    for k in ["hash", "parentHash", "sha3Uncles", "stateRoot", "transactionsRoot", "receiptsRoot",
              "mixHash", "withdrawalsRoot", "parentBeaconBlockRoot", "requestsHash"]:
        data(f"{w}.{k}", b[k], 32)
    data(f"{w}.miner", b["miner"], 20)
    data(f"{w}.logsBloom", b["logsBloom"], 256)
    data(f"{w}.nonce", b["nonce"], 8)
    data(f"{w}.extraData", b["extraData"])
    if int(b["number"], 16) != n:
        err(f"{w}: number {b['number']}")
    if prev_hash is not None and b["parentHash"] != prev_hash:
        err(f"{w}: parentHash does not chain")
    if b["uncles"] != []:
        err(f"{w}: uncles")
    if len(b["withdrawals"]) != 16:
        err(f"{w}: withdrawals")
    for i, wd in enumerate(b["withdrawals"]):
        for k in ["index", "validatorIndex", "amount"]:
            qty(f"{w}.withdrawals[{i}].{k}", wd[k], 64)
        data(f"{w}.withdrawals[{i}].address", wd["address"], 20)
    txs = b["transactions"]
    if len(txs) != len(rs):
        err(f"{w}: {len(txs)} transactions, {len(rs)} receipts")
    cumulative = 0
    log_index = 0
    bloom = 0
    blob_gas = 0
    base_fee = int(b["baseFeePerGas"], 16)
    for i, (t, r) in enumerate(zip(txs, rs)):
        wt = f"{w}.tx[{i}]"
        ty = qty(f"{wt}.type", t["type"])
        for k in ["nonce", "gas", "value", "gasPrice", "v", "r", "s", "chainId",
                  "transactionIndex", "blockNumber", "blockTimestamp"]:
            qty(f"{wt}.{k}", t[k])
        data(f"{wt}.hash", t["hash"], 32)
        data(f"{wt}.blockHash", t["blockHash"], 32)
        data(f"{wt}.from", t["from"], 20)
        data(f"{wt}.input", t["input"])
        if t["to"] is not None:
            data(f"{wt}.to", t["to"], 20)
        if t["blockHash"] != b["hash"] or t["blockNumber"] != b["number"] \
                or t["blockTimestamp"] != b["timestamp"] or int(t["transactionIndex"], 16) != i:
            err(f"{wt}: block reference / index")
        if int(t["chainId"], 16) != chain_id:
            err(f"{wt}: chainId")
        if ty == 0:
            if "yParity" in t or int(t["v"], 16) not in (chain_id * 2 + 35, chain_id * 2 + 36):
                err(f"{wt}: legacy v {t['v']}")
        else:
            qty(f"{wt}.yParity", t["yParity"])
            if t["v"] != t["yParity"] or t["yParity"] not in ("0x0", "0x1"):
                err(f"{wt}: yParity/v")
            if not isinstance(t["accessList"], list):
                err(f"{wt}: accessList")
            for e in t["accessList"]:
                data(f"{wt}.accessList.address", e["address"], 20)
                for key in e["storageKeys"]:
                    data(f"{wt}.accessList.storageKey", key, 32)
            if ty == 1 and not 1 <= len(t["accessList"]) <= 2:
                err(f"{wt}: type 1 accessList size")
        if ty >= 2:
            maxfee = qty(f"{wt}.maxFeePerGas", t["maxFeePerGas"])
            tip = qty(f"{wt}.maxPriorityFeePerGas", t["maxPriorityFeePerGas"])
            if int(t["gasPrice"], 16) != min(maxfee, base_fee + tip):
                err(f"{wt}: effective gasPrice")
        if ty == 3:
            qty(f"{wt}.maxFeePerBlobGas", t["maxFeePerBlobGas"])
            if not 1 <= len(t["blobVersionedHashes"]) <= 2 or t["to"] is None:
                err(f"{wt}: blob fields")
            for h in t["blobVersionedHashes"]:
                data(f"{wt}.blobVersionedHashes", h, 32)
                if not h.startswith("0x01"):
                    err(f"{wt}: versioned hash version")
            blob_gas += 131072 * len(t["blobVersionedHashes"])
        if ty == 4:
            if len(t["authorizationList"]) != 1:
                err(f"{wt}: authorizationList")
            a = t["authorizationList"][0]
            for k in ["chainId", "nonce", "yParity", "r", "s"]:
                qty(f"{wt}.auth.{k}", a[k])
            data(f"{wt}.auth.address", a["address"], 20)

        wr = f"{w}.receipt[{i}]"
        for k in ["cumulativeGasUsed", "gasUsed", "effectiveGasPrice", "status", "type",
                  "transactionIndex", "blockNumber"]:
            qty(f"{wr}.{k}", r[k])
        data(f"{wr}.logsBloom", r["logsBloom"], 256)
        if (r["transactionHash"], r["transactionIndex"], r["blockHash"], r["blockNumber"],
                r["type"], r["from"], r["to"]) != (t["hash"], t["transactionIndex"], b["hash"],
                                                  b["number"], t["type"], t["from"], t["to"]):
            err(f"{wr}: does not match its transaction")
        if r["effectiveGasPrice"] != t["gasPrice"]:
            err(f"{wr}: effectiveGasPrice != gasPrice")
        used = int(r["gasUsed"], 16)
        if used > int(t["gas"], 16):
            err(f"{wr}: gasUsed > gas")
        cumulative += used
        if int(r["cumulativeGasUsed"], 16) != cumulative:
            err(f"{wr}: cumulativeGasUsed")
        created = t["to"] is None and r["status"] == "0x1"
        if (r["contractAddress"] is not None) != created:
            err(f"{wr}: contractAddress")
        if r["contractAddress"] is not None:
            data(f"{wr}.contractAddress", r["contractAddress"], 20)
        if r["status"] not in ("0x0", "0x1") or (r["status"] == "0x0" and r["logs"]):
            err(f"{wr}: status/logs")
        if ty == 3:
            if int(r["blobGasUsed"], 16) != 131072 * len(t["blobVersionedHashes"]):
                err(f"{wr}: blobGasUsed")
            qty(f"{wr}.blobGasPrice", r["blobGasPrice"])
        rb = int(r["logsBloom"], 16)
        if (rb != 0) != bool(r["logs"]):
            err(f"{wr}: bloom vs logs")
        bloom |= rb
        for j, lg in enumerate(r["logs"]):
            wl = f"{wr}.logs[{j}]"
            data(f"{wl}.address", lg["address"], 20)
            data(f"{wl}.data", lg["data"])
            if len(lg["data"]) > 2 + 512:
                err(f"{wl}: data too long")
            if not 0 <= len(lg["topics"]) <= 4:
                err(f"{wl}: topics")
            for tp in lg["topics"]:
                data(f"{wl}.topic", tp, 32)
            if int(lg["logIndex"], 16) != log_index or not QTY.match(lg["logIndex"]):
                err(f"{wl}: logIndex {lg['logIndex']} != {log_index}")
            log_index += 1
            if (lg["blockHash"], lg["blockNumber"], lg["transactionHash"], lg["transactionIndex"],
                    lg["blockTimestamp"], lg["removed"]) != (b["hash"], b["number"], t["hash"],
                                                            t["transactionIndex"], b["timestamp"], False):
                err(f"{wl}: references")
    if int(b["gasUsed"], 16) != cumulative or cumulative > int(b["gasLimit"], 16):
        err(f"{w}: gasUsed {b['gasUsed']} vs receipts {hex(cumulative)}")
    if int(b["logsBloom"], 16) != bloom:
        err(f"{w}: block bloom is not the OR of receipt blooms")
    if int(b["blobGasUsed"], 16) != blob_gas:
        err(f"{w}: blobGasUsed")
    return len(txs), log_index


def main():
    url, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    chain_id = int(sys.argv[4]) if len(sys.argv) > 4 else 1337
    prev = None
    ntx = nlogs = nbytes = 0
    types = {}
    for n in range(lo, hi + 1):
        (b, rs), size = rpc(url, [("eth_getBlockByNumber", [hex(n), True]),
                                  ("eth_getBlockReceipts", [hex(n)])])
        t, l = check_block(n, b, rs, chain_id, prev)
        for tx in b["transactions"]:
            types[tx["type"]] = types.get(tx["type"], 0) + 1
        prev = b["hash"]
        ntx += t
        nlogs += l
        nbytes += size
    # single-call paths: a receipt and a transaction by hash, unknown method, past head
    (rc, tx, blk, missing), _ = rpc(url, [("eth_getTransactionReceipt", [b["transactions"][7]["hash"]]),
                                          ("eth_getTransactionByHash", [b["transactions"][7]["hash"]]),
                                          ("eth_getBlockByHash", [b["hash"], False]),
                                          ("eth_getBlockByNumber", ["0xffffffffff", True])])
    if rc != rs[7] or tx != b["transactions"][7] or blk["transactions"][7] != tx["hash"] or missing is not None:
        err("single lookups")
    print(json.dumps({"blocks": hi - lo + 1, "transactions": ntx, "logs": nlogs,
                      "bytes_per_tx": round(nbytes / max(ntx, 1)), "types": types,
                      "errors": len(errors)}))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
