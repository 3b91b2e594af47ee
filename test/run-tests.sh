#!/usr/bin/env bash
#
# test/run-tests.sh: the full test run ("make test").
#
# As root (CI): install dependencies, build with warnings as errors, install
# the extension, then run as the unprivileged user "ethindex" (PostgreSQL
# refuses to run as root):
#   1. static analysis (make analyze: cppcheck)
#   2. brief fuzzing of the decoders (fuzz/run.sh; runs as root too)
#   3. the pg_regress suite (make installcheck, on a temporary instance)
#   4. the Python integration tests (test/integration/run.py)
#   5. pg_regress and some integration tests again, with the extension built
#      with sanitizers (SANITIZE=1, below)
# As an ordinary user: skip installing and user switching; build if the tree
# is writable and run both stages against the installed extension.
#
# Arguments are passed on to run.py (e.g. -k sigkill).  Environment:
#   SKIP_ANALYZE=1 / SKIP_FUZZ=1 / SKIP_REGRESS=1 / SKIP_INTEGRATION=1
#                                         skip a stage
#   FUZZ_SECONDS                          fuzzing per harness (default 15)
#   SKIP_BUILD=1                          do not build and install (use what
#                                         is installed)
#   ETHINDEX_KEEP_TMP=1                   keep the run's directory
#                                         (/tmp/ethindex-test-*: outputs,
#                                         pg_regress results, clusters) even
#                                         when everything passed
#   ETHINDEX_SUMMARY_FILE                 also write the summary line there
#   SANITIZE=1 (make test-sanitize)       instead of the build, install,
#                                         analysis and fuzzing: pg_regress
#                                         and the integration tests (those of
#                                         SANITIZE_MODULES, default all) with
#                                         the extension built with ASan and
#                                         UBSan, in a private copy of the
#                                         server (see "sanitizers" below),
#                                         in /tmp/ethindex-test-sanitize-*
#   SKIP_SANITIZE=1                       without it (and without
#                                         arguments), make test ends with
#                                         that run, for SANITIZE_MODULES
#                                         (default: fixtures faults security
#                                         upgrade; "" for all)
#
# The last line of output is "N passed, N failed"; the exit status is
# non-zero if anything failed.
#
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

TEST_USER=ethindex
SANITIZE=${SANITIZE:-0}
# Every run works in a directory of its own, so that two runs (of two
# checkouts, say) do not clobber each other; it is removed when everything
# passed and kept otherwise.
if [ "$SANITIZE" = 1 ]; then
	WORK="$(mktemp -d /tmp/ethindex-test-sanitize-XXXXXX)"
else
	WORK="$(mktemp -d /tmp/ethindex-test-XXXXXX)"
fi
passed=0
failed=0

stage() { printf '\n===== %s =====\n' "$*"; }

# The last "N passed, N failed" line of file $1 into ok and bad; without
# one, ok=0 and bad=$2.
read_summary() {
	local summary
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n1 || true)
	if [ -n "$summary" ]; then
		ok=${summary%% passed*}
		bad=${summary#*, }
		bad=${bad%% failed}
	else
		ok=0
		bad=$2
	fi
}

finish() {
	local line="$passed passed, $failed failed"
	if [ "$failed" -eq 0 ] && [ -z "${ETHINDEX_KEEP_TMP:-}" ]; then
		rm -rf "$WORK"
	else
		echo "run-tests: outputs kept in $WORK"
	fi
	if [ -n "${ETHINDEX_SUMMARY_FILE:-}" ]; then
		echo "$line" >"$ETHINDEX_SUMMARY_FILE" || true
	fi
	echo
	echo "$line"
	[ "$failed" -eq 0 ]
	exit $?
}

if [ "$(id -u)" -eq 0 ]; then
	as_user() { runuser -u "$TEST_USER" -- env PYTHONDONTWRITEBYTECODE=1 "$@"; }
	is_root=1
else
	as_user() { env PYTHONDONTWRITEBYTECODE=1 "$@"; }
	is_root=0
fi

# --- dependencies, build, install --------------------------------------------

if [ $is_root -eq 1 ]; then
	stage "dependencies"
	if ! test/install-deps.sh; then
		echo "run-tests: installing dependencies failed"
		failed=$((failed + 1))
		finish
	fi
fi

# SANITIZE=1 (make test-sanitize): see "sanitizers" below; the tree's own
# build and the installed extension are left alone.
if [ "$SANITIZE" = 1 ]; then
	SKIP_BUILD=1
	SKIP_ANALYZE=1
	SKIP_FUZZ=1
fi

if [ "${SKIP_BUILD:-0}" != 1 ] && { [ $is_root -eq 1 ] || [ -w "$root" ]; }; then
	stage "build (warnings are errors)"
	if ! make -j"$(nproc)" COPT='-Werror'; then
		echo "run-tests: build failed"
		failed=$((failed + 1))
		finish
	fi
fi

if [ $is_root -eq 1 ]; then
	if [ "${SKIP_BUILD:-0}" != 1 ]; then
		stage "install"
		if ! make install; then
			echo "run-tests: make install failed"
			failed=$((failed + 1))
			finish
		fi
	fi
	chown "$TEST_USER:$(id -gn "$TEST_USER")" "$WORK"
	chmod 755 "$WORK"
	# The test user must read the tree; a checkout under a private home
	# directory is copied to a place it can read.
	if ! runuser -u "$TEST_USER" -- test -r "$root/test/integration/run.py"; then
		echo "run-tests: $root is not readable by $TEST_USER, testing a copy in $WORK/tree"
		cp -a "$root" "$WORK/tree"
		chown -R "$TEST_USER" "$WORK/tree"
		root="$WORK/tree"
		cd "$root"
	fi
fi

# --- sanitizers (SANITIZE=1) -------------------------------------------------

# The extension built with AddressSanitizer and UndefinedBehaviorSanitizer
# (Makefile, SANITIZE=1: clang, the UBSan handlers in the ASan runtime), out
# of tree in $WORK/sanitize/build, and installed into a private copy of the
# server's installation, $WORK/sanitize/pg (PostgreSQL finds its libraries
# and share directory relative to its programs), whose "postgres" is a
# script that starts the real program (postgres.bin) with the ASan runtime
# preloaded.  pg_regress and the integration tests use that copy
# (--bindir, PG_BINDIR), so every server they start, and only the servers,
# run under the runtime.  Each report goes to a file in
# $WORK/sanitize/reports; the last stage fails if there is any.  ASan
# errors end the process (the server restarts as after a crash), UBSan
# reports do not.  The integration modules: $SANITIZE_MODULES (names
# without test_ and .py, space-separated), default all.
#
# Next to the runtime, a small library defines swift_demangle: without it
# the runtime hangs the server at start.  The first malloc initializes it,
# and that happens in libgpg-error's constructor (a dependency of
# libsystemd's), inside bindtextdomain, which holds glibc's _nl_state_lock;
# the runtime looks up swift_demangle with dlsym, and the dlerror() that
# follows the failed lookup translates its message, taking that lock again:
# the lock's count is corrupted, and the next bindtextdomain (in main())
# waits forever (google/sanitizers#1270).  A successful lookup leaves
# dlerror nothing to translate.  The symbolizer calls it only for Swift
# names, and NULL means "not demangled".
if [ "$SANITIZE" = 1 ]; then
	stage "build with sanitizers, install into a private copy of the server"
	san="$WORK/sanitize"
	san_cc="${SANITIZE_CC:-clang-14}"
	sys_config="${PG_CONFIG:-pg_config}"
	rm -rf "$san"
	mkdir -p "$san/pg" "$san/build/src"
	if [ $is_root -eq 1 ]; then
		install -d -o "$TEST_USER" -g "$(id -gn "$TEST_USER")" "$san/reports"
	else
		mkdir -p "$san/reports"
	fi
	sys_bindir="$("$sys_config" --bindir)" &&
		sys_share="$("$sys_config" --sharedir)" &&
		sys_include="$("$sys_config" --includedir)"
	san_ok=$?
	for d in "$(dirname "$sys_bindir")" "$sys_share"; do
		[ $san_ok -eq 0 ] || break
		mkdir -p "$san/pg$(dirname "$d")" && cp -a "$d" "$san/pg$(dirname "$d")/"
		san_ok=$?
	done
	if [ $san_ok -eq 0 ]; then
		mkdir -p "$san/pg$(dirname "$sys_include")" &&
			ln -s "$sys_include" "$san/pg$sys_include"
		san_ok=$?
	fi
	san_bindir="$san/pg$sys_bindir"
	san_make=(make -C "$san/build" -f "$root/Makefile" SANITIZE=1
	          SANITIZE_CC="$san_cc" PG_CONFIG="$san_bindir/pg_config")
	runtime="$("$san_cc" -print-file-name=libclang_rt.asan-x86_64.so)"
	if [ $san_ok -eq 0 ] && [ "$("$san_bindir/pg_config" --pkglibdir)" != "$san/pg$("$sys_config" --pkglibdir)" ]; then
		echo "run-tests: the copy of the server in $san/pg does not find its own libraries"
		san_ok=1
	fi
	if [ $san_ok -eq 0 ] && [ ! -f "$runtime" ]; then
		echo "run-tests: no ASan runtime ($runtime); libclang-rt-14-dev is needed"
		san_ok=1
	fi
	if [ $san_ok -eq 0 ]; then
		"${san_make[@]}" -j"$(nproc)" && "${san_make[@]}" install >/dev/null
		san_ok=$?
	fi
	if [ $san_ok -eq 0 ]; then
		cat >"$san/preload.c" <<'EOF'
/* see test/run-tests.sh, "sanitizers" */
#include <stddef.h>
#include <stdint.h>

char	   *swift_demangle(const char *name, size_t len, char *buf,
						   size_t *buflen, uint32_t flags);

char *
swift_demangle(const char *name, size_t len, char *buf, size_t *buflen,
			   uint32_t flags)
{
	return NULL;
}
EOF
		"$san_cc" -shared -fPIC -O2 -o "$san/preload.so" "$san/preload.c" &&
			mv "$san_bindir/postgres" "$san_bindir/postgres.bin" &&
			cat >"$san_bindir/postgres" <<EOF &&
#!/bin/sh
# test/run-tests.sh (SANITIZE=1): the server under the ASan runtime
export LD_PRELOAD="$runtime $san/preload.so"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:disable_coredump=1:log_path=$san/reports/report"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$san/reports/report"
exec "$san_bindir/postgres.bin" "\$@"
EOF
			chmod 755 "$san_bindir/postgres" &&
			timeout 60 "$san_bindir/postgres" -V
		san_ok=$?
	fi
	if [ $san_ok -ne 0 ]; then
		echo "run-tests: building or installing with sanitizers failed"
		failed=$((failed + 1))
		finish
	fi
	chmod -R a+rX "$san/pg" "$san/build"
	passed=$((passed + 1))
fi

# --- static analysis ---------------------------------------------------------

if [ "${SKIP_ANALYZE:-0}" != 1 ]; then
	stage "static analysis (make analyze: cppcheck)"
	if make analyze; then
		passed=$((passed + 1))
	else
		echo "run-tests: cppcheck reported problems"
		failed=$((failed + 1))
	fi
fi

# --- fuzzing -----------------------------------------------------------------

# The libFuzzer harnesses of the decoders, briefly (make fuzz and
# docs/fuzzing.md for longer runs): built with clang outside the PGXS build,
# into $WORK/fuzz, so that neither the tree nor fuzz/build and fuzz/work are
# touched; the regressions and seeds, then FUZZ_SECONDS (15) per harness,
# as many at a time as there are cores.
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
	fuzz_seconds="${FUZZ_SECONDS:-15}"
	stage "fuzzing (fuzz/run.sh, ${fuzz_seconds}s per harness)"
	fuzz_out="$WORK/fuzz"
	if ! mkdir -p "$fuzz_out" 2>/dev/null || [ ! -w "$fuzz_out" ]; then
		fuzz_out="$(mktemp -d /tmp/ethindex-fuzz-XXXXXX)"
	fi
	if FUZZ_SECONDS="$fuzz_seconds" FUZZ_JOBS="$(nproc)" \
		FUZZ_BUILD="$fuzz_out/build" FUZZ_WORK="$fuzz_out/work" fuzz/run.sh; then
		passed=$((passed + 1))
	else
		echo "run-tests: fuzzing found a problem (logs and crash inputs in $fuzz_out/work)"
		failed=$((failed + 1))
	fi
fi

# --- pg_regress --------------------------------------------------------------

if [ "${SKIP_REGRESS:-0}" != 1 ]; then
	stage "pg_regress (make installcheck)"
	outdir="$WORK/regress"
	as_user rm -rf "$outdir"
	as_user mkdir -p "$outdir"
	regress_make=(make)
	if [ "$SANITIZE" = 1 ]; then
		regress_make=("${san_make[@]}")
	fi
	as_user timeout 900 "${regress_make[@]}" installcheck REGRESS_OUTDIR="$outdir" 2>&1 | tee "$WORK/installcheck.out"
	rc=${PIPESTATUS[0]}
	ok=$(grep -cE '\.\.\. ok( |$)' "$WORK/installcheck.out" || true)
	bad=$(grep -cE '\.\.\. (FAILED|failed)' "$WORK/installcheck.out" || true)
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		echo "run-tests: make installcheck exited with status $rc"
		bad=1
	fi
	if [ -s "$outdir/regression.diffs" ]; then
		echo "----- $outdir/regression.diffs -----"
		cat "$outdir/regression.diffs"
		echo "----- end of regression.diffs -----"
	fi
	if [ "$rc" -ne 0 ] && [ -f "$outdir/log/postmaster.log" ]; then
		echo "----- tail of $outdir/log/postmaster.log -----"
		tail -n 50 "$outdir/log/postmaster.log"
	fi
	echo "pg_regress: $ok passed, $bad failed"
	passed=$((passed + ok))
	failed=$((failed + bad))
fi

# --- Python integration tests ------------------------------------------------

if [ "${SKIP_INTEGRATION:-0}" != 1 ]; then
	stage "integration tests (test/integration/run.py)"
	out="$WORK/integration.out"
	modules=()
	int_env=()
	int_timeout=1500
	if [ "$SANITIZE" = 1 ]; then
		for m in ${SANITIZE_MODULES:-}; do
			modules+=("$root/test/integration/test_$m.py")
		done
		int_env=(PG_BINDIR="$san_bindir")
		int_timeout=3000
	fi
	(cd "$WORK" && as_user env "${int_env[@]}" timeout --kill-after=30 $int_timeout \
		python3 -u "$root/test/integration/run.py" "$@" "${modules[@]}") 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	read_summary "$out" 0
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		echo "run-tests: integration runner exited with status $rc"
		bad=1
	fi
	passed=$((passed + ok))
	failed=$((failed + bad))
fi

# --- sanitizer reports -------------------------------------------------------

if [ "$SANITIZE" = 1 ]; then
	stage "sanitizer reports ($san/reports)"
	reports=$(find "$san/reports" -type f -size +0 | sort)
	if [ -n "$reports" ]; then
		for f in $reports; do
			echo "----- $f -----"
			head -n 80 "$f"
		done
		echo "run-tests: sanitizer reports: $(echo "$reports" | wc -l) (in $san/reports)"
		failed=$((failed + 1))
	else
		echo "none"
		passed=$((passed + 1))
	fi
fi

# --- sanitizers, a subset (make test) -----------------------------------------

# make test ends with the sanitizer run (SANITIZE=1, "sanitizers" above) of
# pg_regress and of the integration modules of SANITIZE_MODULES, by default
# a subset that takes about 4 minutes on 2 cores: the whole suite takes
# about 1.5 times as long as without sanitizers (make test-sanitize: 14-18
# minutes).  The subset: real mainnet data (fixtures), bad node input of
# every kind, failover and retries (faults), roles, URL redaction and the
# host policy (security), the update from 0.1 with both forms of the
# status functions (upgrade).  Not with arguments for run.py (a selection
# of tests).
if [ "$SANITIZE" != 1 ] && [ "${SKIP_SANITIZE:-0}" != 1 ] && [ $# -eq 0 ]; then
	san_modules="${SANITIZE_MODULES-fixtures faults security upgrade}"
	stage "sanitizers: make test-sanitize, modules: ${san_modules:-all}"
	san_summary="$(mktemp)"
	SANITIZE=1 SANITIZE_MODULES="$san_modules" ETHINDEX_SUMMARY_FILE="$san_summary" \
		"$root/test/run-tests.sh"
	read_summary "$san_summary" 1
	rm -f "$san_summary"
	passed=$((passed + ok))
	failed=$((failed + bad))
fi

finish
