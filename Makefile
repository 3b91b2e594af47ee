# Makefile for ethindex (PGXS)

MODULE_big = ethindex
EXTENSION = ethindex
DATA = sql/ethindex--0.1.sql sql/ethindex--0.2.sql sql/ethindex--0.3.sql \
	sql/ethindex--0.1--0.2.sql sql/ethindex--0.2--0.3.sql
PGFILEDESC = "ethindex - Ethereum indexer inside PostgreSQL"

OBJS = \
	src/ethindex.o \
	src/schema.o \
	src/status.o \
	src/blockrec.o \
	src/decode.o \
	src/decode_sql.o \
	src/decode_speed.o \
	src/queue.o \
	src/rpc.o \
	src/hostpolicy.o \
	src/jsonrpc.o \
	src/spiutil.o \
	src/launcher.o \
	src/fetcher.o \
	src/sizing.o \
	src/headpoll.o \
	src/fork.o \
	src/writer.o \
	src/insert.o \
	src/checkpoint.o \
	src/partitions.o \
	src/sqlfuncs.o

PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Werror
SHLIB_LINK = -lcurl -ljansson

REGRESS = schema interface progress decode response
REGRESS_OPTS = --inputdir=$(srcdir) --outputdir=$(REGRESS_OUTDIR) \
	--temp-instance=$(REGRESS_OUTDIR)/tmp_check \
	--temp-config=$(srcdir)/test/regress.conf
REGRESS_OUTDIR ?= test/tmp/regress

# Rebuild objects whose headers changed (.deps/, as PostgreSQL's own
# --enable-depend): the workers share structs across files.
override autodepend = yes

# SANITIZE=1: build with AddressSanitizer and UndefinedBehaviorSanitizer
# (make test-sanitize does, out of tree, against a private copy of the
# server; see test/run-tests.sh).  With clang, whose ASan runtime has the
# UBSan handlers too (gcc's libubsan is a runtime of its own, whose reports
# cannot go to the same files as ASan's); the library needs that runtime
# preloaded into the server.  No JIT bitcode (code inlined by the JIT would
# be unchecked), and no _FORTIFY_SOURCE (ASan does not check __memcpy_chk
# and the like).
ifeq ($(SANITIZE),1)
SANITIZE_CC ?= clang-14
override with_llvm = no
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

ifeq ($(SANITIZE),1)
override CC = $(SANITIZE_CC)
override CFLAGS := $(filter-out -O2 -fexcess-precision=standard -Wimplicit-fallthrough=3 \
	-Wcast-function-type -Wno-format-truncation -Wno-stringop-truncation,$(CFLAGS)) \
	-O1 -Wno-ignored-attributes -Wno-compound-token-split-by-macro \
	-fsanitize=address,undefined -fno-omit-frame-pointer
override CPPFLAGS += -U_FORTIFY_SOURCE
SHLIB_LINK += -fsanitize=address,undefined
endif

.PHONY: test test-sanitize demo bench deps analyze
deps:
	test/install-deps.sh

test:
	test/run-tests.sh

# the tests with the extension built with sanitizers (see test/run-tests.sh)
test-sanitize:
	SANITIZE=1 test/run-tests.sh

demo:
	test/demo.sh

bench:
	bench/bench.sh $(BENCH_ARGS)

# Static analysis (part of "make test"): cppcheck over every source file.
# The libcurl and jansson version guards see the versions Debian 12 ships.
CPPCHECK_FLAGS = --quiet --enable=warning,portability --inline-suppr --std=c99 \
	--error-exitcode=1 --suppress=missingIncludeSystem \
	-I src -I $(shell $(PG_CONFIG) --includedir-server) -D__x86_64__ -D__GNUC__=12 \
	-DLIBCURL_VERSION_NUM=0x075800 -DJANSSON_VERSION_HEX=0x020e00
analyze:
	cppcheck $(CPPCHECK_FLAGS) src/*.c

# libFuzzer harnesses of the decoders (fuzz/; built by fuzz/Makefile with
# clang, never by PGXS): build, regressions, then FUZZ_SECONDS (default 20)
# of fuzzing per harness; see docs/fuzzing.md.
.PHONY: fuzz
fuzz:
	fuzz/run.sh
