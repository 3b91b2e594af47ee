#!/usr/bin/env python3
"""
run.py: the integration test runner.

Discovers test/integration/test_*.py, runs each module's test_* functions in
source order (no arguments), with optional module-level setup_module() and
teardown_module(), prints "ok" or "FAIL" (with the traceback) per test and
ends with the line "N passed, N failed".  Exit status 0 only if nothing
failed.

Each test runs under a time limit (SIGALRM): DEFAULT_TIMEOUT seconds, or the
function's "timeout" attribute, or the module's TEST_TIMEOUT.  setup_module
gets the module's SETUP_TIMEOUT (default 600 s).  A failing setup_module
fails every test of its module; a failing teardown_module (a server that
does not shut down cleanly, for example) is a failure of its own.

--shuffle SEED runs the modules, and the tests of each module, in an order
drawn from SEED (printed), to show that no module or test depends on
another having run before it.  A module whose tests are the steps of one
scenario says so (TESTS_IN_ORDER = "why"); its tests keep their order, and
each still runs alone.

Usage: run.py [-k SUBSTRING] [-x] [--shuffle SEED] [module ...]
"""

import argparse
import glob
import importlib.util
import os
import random
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

DEFAULT_TIMEOUT = 300
DEFAULT_SETUP_TIMEOUT = 600


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("time limit exceeded")


def run_limited(fn, limit):
    """Call fn() with a SIGALRM time limit (seconds)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(limit))
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def load_module(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def tests_of(mod):
    fns = [f for n, f in vars(mod).items()
           if n.startswith("test_") and callable(f)
           and getattr(f, "__module__", None) == mod.__name__]
    return sorted(fns, key=lambda f: f.__code__.co_firstlineno)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", dest="substring", default=None,
                    help="run only tests whose 'module.test' name contains this")
    ap.add_argument("-x", dest="exitfirst", action="store_true",
                    help="stop at the first failure")
    ap.add_argument("--shuffle", dest="seed", type=int, default=None,
                    help="run modules and tests in an order drawn from this seed")
    ap.add_argument("modules", nargs="*",
                    help="test module files (default: test_*.py here)")
    args = ap.parse_args()

    paths = args.modules or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    rng = None
    if args.seed is not None:
        rng = random.Random(args.seed)
        rng.shuffle(paths)
        print("order drawn from seed %d" % args.seed, flush=True)
    passed = failed = 0
    t_all = time.monotonic()

    for path in paths:
        modname = os.path.splitext(os.path.basename(path))[0]
        try:
            mod = load_module(path)
        except Exception:
            print("FAIL %s (import)" % modname)
            traceback.print_exc(file=sys.stdout)
            failed += 1
            continue
        tests = [f for f in tests_of(mod)
                 if not args.substring or args.substring in "%s.%s" % (modname, f.__name__)]
        if not tests:
            continue
        if rng is not None and not getattr(mod, "TESTS_IN_ORDER", None):
            rng.shuffle(tests)
        print("== %s: %d test(s)" % (modname, len(tests)), flush=True)

        setup_error = None
        setup = getattr(mod, "setup_module", None)
        if setup:
            t0 = time.monotonic()
            try:
                run_limited(setup, getattr(mod, "SETUP_TIMEOUT", DEFAULT_SETUP_TIMEOUT))
                print("   setup_module done (%.1fs)" % (time.monotonic() - t0), flush=True)
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                setup_error = traceback.format_exc()
                print("FAIL %s.setup_module (%.1fs)" % (modname, time.monotonic() - t0))
                print(setup_error, flush=True)

        try:
            for fn in tests:
                name = "%s.%s" % (modname, fn.__name__)
                if setup_error:
                    print("FAIL %s (setup_module failed)" % name, flush=True)
                    failed += 1
                    continue
                limit = getattr(fn, "timeout", getattr(mod, "TEST_TIMEOUT", DEFAULT_TIMEOUT))
                t0 = time.monotonic()
                try:
                    run_limited(fn, limit)
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    failed += 1
                    print("FAIL %s (%.1fs)" % (name, time.monotonic() - t0))
                    print(traceback.format_exc(), flush=True)
                    if args.exitfirst:
                        break
                else:
                    passed += 1
                    print("ok   %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
        finally:
            teardown = getattr(mod, "teardown_module", None)
            if teardown:
                t0 = time.monotonic()
                try:
                    run_limited(teardown, 120)
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    failed += 1
                    print("FAIL %s.teardown_module (%.1fs)" % (modname, time.monotonic() - t0))
                    print(traceback.format_exc(), flush=True)
        if args.exitfirst and failed:
            break

    print("integration tests took %.1fs" % (time.monotonic() - t_all))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
