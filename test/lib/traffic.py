#!/usr/bin/env python3
"""
traffic.py: a steady, bounded flow of mixed transactions for an anvil node
(used by "make demo").

Sends eth_sendTransaction from anvil's unlocked development accounts: legacy,
EIP-2930 and EIP-1559 transfers, calls into a log contract (deployed first)
that emit logs with 0-4 topics, and an occasional reverting call.  Stops on
SIGINT/SIGTERM, after --count transactions or --duration seconds, or when its
parent process goes away.

Usage: traffic.py --url http://127.0.0.1:8545 [--rate 30] [--count N]
                  [--duration S]
"""

import argparse
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ethindex_test import ANVIL_ACCOUNTS, RpcError, log_contract_init, rpc_call  # noqa: E402

stop = False


def _stop(signum, frame):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, default=30.0, help="transactions per second")
    ap.add_argument("--count", type=int, default=1_000_000, help="stop after this many")
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    parent = os.getppid()
    accounts = [a for a, _ in ANVIL_ACCOUNTS]
    rnd = random.Random(7)

    def rpc(method, params):
        return rpc_call(args.url, method, params, timeout=10)

    # Deploy the log contract and wait until it is mined.
    h = rpc("eth_sendTransaction", [{"from": accounts[0], "gas": hex(1_000_000),
                                     "data": "0x" + log_contract_init().hex()}])
    deadline = time.monotonic() + 60
    contract = None
    while contract is None and not stop:
        r = rpc("eth_getTransactionReceipt", [h])
        if r is not None:
            contract = r["contractAddress"]
            break
        if time.monotonic() > deadline:
            sys.exit("traffic: log contract was not mined within 60 s")
        time.sleep(0.2)

    sent = errors = 0
    t0 = time.monotonic()
    interval = 1.0 / args.rate if args.rate > 0 else 0
    next_at = t0
    while not stop and sent < args.count:
        if args.duration is not None and time.monotonic() - t0 > args.duration:
            break
        if os.getppid() != parent:
            break
        sender = accounts[rnd.randrange(1, len(accounts))]
        kind = rnd.randrange(10)
        if kind < 2:
            tx = {"from": sender, "to": accounts[rnd.randrange(len(accounts))],
                  "value": hex(rnd.randrange(1, 10**16)), "type": "0x0",
                  "gasPrice": hex(3 * 10**9)}
        elif kind == 2:
            tx = {"from": sender, "to": accounts[0], "value": hex(rnd.randrange(1, 10**15)),
                  "type": "0x1", "gasPrice": hex(3 * 10**9),
                  "accessList": [{"address": contract, "storageKeys": ["0x" + "00" * 32]}]}
        elif kind == 3:
            tx = {"from": sender, "to": accounts[rnd.randrange(len(accounts))],
                  "value": hex(rnd.randrange(1, 10**17))}
        elif kind == 9 and rnd.random() < 0.2:
            tx = {"from": sender, "to": contract, "data": "0xff", "gas": hex(60_000)}
        else:
            n = rnd.randrange(5)
            payload = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 100)))
            tx = {"from": sender, "to": contract, "data": "0x%02x" % n + payload.hex(),
                  "gas": hex(100_000)}
        try:
            rpc("eth_sendTransaction", [tx])
            sent += 1
        except RpcError as e:
            errors += 1
            if not args.quiet and errors <= 5:
                print("traffic: %s" % e, file=sys.stderr)
            if errors > 1000:
                sys.exit("traffic: too many errors")
            time.sleep(0.5)
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    if not args.quiet:
        print("traffic: sent %d transactions (%d errors)" % (sent, errors), file=sys.stderr)


if __name__ == "__main__":
    main()
