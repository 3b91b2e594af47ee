"""
synthchain.py: a deterministic synthetic Ethereum chain for ethindex's tests.

generate(n_blocks) returns {number: (block_object, receipts_list)} shaped like
geth's eth_getBlockByNumber(n, true) / eth_getBlockReceipts(n) answers in the
Prague era: every transaction type (0 legacy EIP-155, 1 access list, 2
EIP-1559, 3 blob, 4 set-code), logs with 0 to 4 topics and empty data,
contract creations, failed transactions, withdrawals, empty blocks, values
above 2^64.

The data is internally consistent where an indexer can check it: parent
hashes chain, transaction/receipt hashes, indexes and block references
agree, cumulativeGasUsed adds up to the block's gasUsed, log indexes run
through the block, the block logsBloom is the OR of the receipt blooms.
Hashes are SHA3-256 of a description (not Keccak of RLP), so they are not
the real hashes of the content; blooms are pseudo-random bits.

Same arguments, same chain: nothing depends on time or randomness.
Python 3.11 standard library only.
"""

import hashlib

ZERO_BLOOM = "0x" + "00" * 256
EMPTY_UNCLES = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"


def h32(*parts):
    """A deterministic 32-byte hash as 0x-hex."""
    return "0x" + hashlib.sha3_256("|".join(str(p) for p in parts).encode()).hexdigest()


def addr(*parts):
    return "0x" + hashlib.sha3_256(("addr|" + "|".join(str(p) for p in parts)).encode()).hexdigest()[:40]


def q(n):
    """QUANTITY encoding."""
    return hex(n)


def data_bytes(nbytes, *parts):
    out = b""
    i = 0
    while len(out) < nbytes:
        out += hashlib.sha3_256(("data|%d|" % i + "|".join(map(str, parts))).encode()).digest()
        i += 1
    return "0x" + out[:nbytes].hex()


def bloom(*parts):
    """256-byte pseudo bloom with a few bits set."""
    b = bytearray(256)
    d = hashlib.sha3_256(("bloom|" + "|".join(map(str, parts))).encode()).digest()
    for i in range(0, 6, 2):
        bit = int.from_bytes(d[i:i + 2], "big") & 2047
        b[255 - bit // 8] |= 1 << (bit % 8)
    return b


def generate(n_blocks=30, chain_id=1337, start=0, seed="ethindex", genesis_parent=None):
    """
    Blocks start .. start+n_blocks-1.  Block k has (k*7+3) % 6 transactions
    (0 to 5; some blocks empty), transactions have 0-3 logs.
    """
    out = {}
    parent = genesis_parent or h32(seed, "parent-of", start)
    log_total = 0
    wd_index = 1000
    for n in range(start, start + n_blocks):
        bhash = h32(seed, chain_id, "block", n)
        ts = 1700000000 + 12 * n
        base_fee = 7_000_000_000 + (n * 104729) % 3_000_000_000
        ntx = (n * 7 + 3) % 6
        txs, receipts = [], []
        cumulative = 0
        block_bloom = bytearray(256)
        log_index = 0
        blob_gas_used = 0
        for i in range(ntx):
            ttype = [2, 0, 2, 1, 3, 4, 2][(n + i) % 7]
            txh = h32(seed, chain_id, "tx", n, i)
            frm = addr(seed, "from", (n + i) % 11)
            create = (n + i) % 13 == 5 and ttype in (0, 1, 2)
            to = None if create else addr(seed, "to", (n * 3 + i) % 17)
            value = [0, 10 ** 18, 123456789, (1 << 70) + n, 1][(n + i) % 5]
            gas = 21000 + ((n + i) * 7919) % 300000
            gas_used = 21000 + ((n + i) * 4219) % (gas - 20999)
            prio = 1_000_000_000 + (i * 1000)
            tx = {
                "blockHash": bhash,
                "blockNumber": q(n),
                "blockTimestamp": q(ts),
                "from": frm,
                "gas": q(gas),
                "hash": txh,
                "input": "0x" if (n + i) % 4 == 0 else data_bytes(4 + ((n + i) % 3) * 32, n, i),
                "nonce": q((n * 5 + i) % 1000),
                "to": to,
                "transactionIndex": q(i),
                "value": q(value),
                "type": q(ttype),
                "r": "0x" + h32("r", n, i)[2:].lstrip("0"),
                "s": "0x" + h32("s", n, i)[3:].lstrip("0"),
            }
            parity = (n + i) % 2
            if ttype == 0:
                tx["gasPrice"] = q(base_fee + prio)
                eff = base_fee + prio
                tx["chainId"] = q(chain_id)
                tx["v"] = q(chain_id * 2 + 35 + parity)
            else:
                tx["chainId"] = q(chain_id)
                tx["v"] = q(parity)
                tx["yParity"] = q(parity)
                tx["accessList"] = [] if (n + i) % 2 else [
                    {"address": addr("al", n, i),
                     "storageKeys": [h32("sk", n, i, 0), h32("sk", n, i, 1)]}]
                if ttype == 1:
                    tx["gasPrice"] = q(base_fee + prio)
                    eff = base_fee + prio
                else:
                    maxfee = base_fee * 2 + prio
                    tx["maxFeePerGas"] = q(maxfee)
                    tx["maxPriorityFeePerGas"] = q(prio)
                    eff = base_fee + prio
                    tx["gasPrice"] = q(eff)
                if ttype == 3:
                    tx["maxFeePerBlobGas"] = q(3_000_000_000 + n)
                    tx["blobVersionedHashes"] = ["0x01" + h32("blob", n, i, k)[4:] for k in range(1 + n % 2)]
                    blob_gas_used += 131072 * len(tx["blobVersionedHashes"])
                if ttype == 4:
                    tx["authorizationList"] = [{
                        "chainId": q(chain_id), "address": addr("auth", n, i),
                        "nonce": q(n), "yParity": q(parity),
                        "r": "0x" + h32("ar", n, i)[2:].lstrip("0"),
                        "s": "0x" + h32("as", n, i)[3:].lstrip("0")}]
            txs.append(tx)

            cumulative += gas_used
            nlogs = (n + 2 * i) % 4
            logs = []
            rbloom = bytearray(256)
            for k in range(nlogs):
                ntopics = (n + i + k) % 5
                log = {
                    "address": addr(seed, "contract", (n + k) % 5),
                    "topics": [h32("topic", n, i, k, t) for t in range(ntopics)],
                    "data": "0x" if k == 1 else data_bytes(32 * (1 + k), "log", n, i, k),
                    "blockNumber": q(n),
                    "blockHash": bhash,
                    "blockTimestamp": q(ts),
                    "transactionHash": txh,
                    "transactionIndex": q(i),
                    "logIndex": q(log_index),
                    "removed": False,
                }
                log_index += 1
                log_total += 1
                lb = bloom(n, i, k)
                for j in range(256):
                    rbloom[j] |= lb[j]
                logs.append(log)
            for j in range(256):
                block_bloom[j] |= rbloom[j]
            status = 0 if (n + i) % 9 == 4 else 1
            r = {
                "blockHash": bhash,
                "blockNumber": q(n),
                "contractAddress": addr("created", n, i) if create else None,
                "cumulativeGasUsed": q(cumulative),
                "effectiveGasPrice": q(eff),
                "from": frm,
                "gasUsed": q(gas_used),
                "logs": logs,
                "logsBloom": "0x" + rbloom.hex(),
                "status": q(status),
                "to": to,
                "transactionHash": txh,
                "transactionIndex": q(i),
                "type": q(ttype),
            }
            if ttype == 3:
                r["blobGasUsed"] = q(131072 * len(tx["blobVersionedHashes"]))
                r["blobGasPrice"] = q(1 + n % 3)
            receipts.append(r)

        withdrawals = []
        for w in range(n % 3):
            withdrawals.append({"index": q(wd_index), "validatorIndex": q(500000 + wd_index),
                                "address": addr("wd", wd_index), "amount": q(17000000 + wd_index * 3)})
            wd_index += 1
        block = {
            "baseFeePerGas": q(base_fee),
            "blobGasUsed": q(blob_gas_used),
            "difficulty": "0x0",
            "excessBlobGas": q((n * 131072) % 786432),
            "extraData": data_bytes(n % 33, "extra", n) if n % 33 else "0x",
            "gasLimit": q(30_000_000),
            "gasUsed": q(cumulative),
            "hash": bhash,
            "logsBloom": "0x" + block_bloom.hex(),
            "miner": addr(seed, "miner", n % 3),
            "mixHash": h32(seed, "mix", n),
            "nonce": "0x0000000000000000",
            "number": q(n),
            "parentBeaconBlockRoot": h32(seed, "beacon", n),
            "parentHash": parent,
            "receiptsRoot": h32(seed, "receipts", n),
            "requestsHash": h32(seed, "requests", n),
            "sha3Uncles": EMPTY_UNCLES,
            "size": q(600 + 150 * ntx),
            "stateRoot": h32(seed, "state", n),
            "timestamp": q(ts),
            "transactions": txs,
            "transactionsRoot": h32(seed, "txroot", n),
            "uncles": [],
            "withdrawals": withdrawals,
            "withdrawalsRoot": h32(seed, "wdroot", n),
        }
        out[n] = (block, receipts)
        parent = bhash
    return out


if __name__ == "__main__":
    import json
    import sys
    chain = generate(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
    for n, (b, rl) in sorted(chain.items()):
        print(n, len(b["transactions"]), "txs", sum(len(r["logs"]) for r in rl), "logs",
              [t["type"] for t in b["transactions"]], len(json.dumps(b)))
