/*-------------------------------------------------------------------------
 *
 * ethindex.h
 *	  Shared declarations of ethindex: vocabulary, GUC variables, limits and
 *	  the shared-memory state that the launcher, fetchers, writers and SQL
 *	  functions use to talk to each other.
 *
 *	  Vocabulary (used in code, SQL and docs alike):
 *	    chain     a registered row of ethindex.chains: one Ethereum network
 *	              reached through one or more endpoints.
 *	    endpoint  one JSON-RPC URL of a chain.
 *	    launcher  the static background worker that starts and stops the
 *	              per-chain workers.
 *	    fetcher   the per-chain worker that polls the endpoints, decodes
 *	              blocks and receipts and puts them into the chain's queue.
 *	    writer    the per-chain worker that takes decoded blocks from the
 *	              queue and stores them, with the progress checkpoint, in one
 *	              transaction per batch.
 *	    slot      a chain's entry in shared memory (status and queue).
 *
 *	  Locking protocol of struct ChainSlot:
 *	    - in_use, name and generation are written only by the launcher while
 *	      holding EthindexShared->lock exclusively; readers take it shared.
 *	      Workers read them once at start (their slot is not reused before
 *	      they have exited).
 *	    - the status fields below "mutex" are written by the chain's workers
 *	      and read by SQL functions, both under the spinlock "mutex", for a
 *	      few instructions at a time.
 *	    - the queue has its own LWLock (see queue.h).
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/ethindex.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_H
#define ETHINDEX_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "postmaster/bgworker.h"
#include "storage/spin.h"

#include "queue.h"

/* Limits and defaults (GUC ranges are in ethindex.c) */
#define ETHINDEX_MAX_ENDPOINTS		8	/* endpoints per chain, see add_chain() */
#define ETHINDEX_ERROR_LEN			1024	/* bytes of last_error kept */
#define ETHINDEX_RATE_WINDOW		60	/* seconds of the blocks/s, tx/s window */
#define ETHINDEX_LAUNCHER_NAPTIME_MS 1000	/* launcher polls chains this often */
#define ETHINDEX_RESTART_MIN_MS		1000	/* first delay before restarting a failed chain */
#define ETHINDEX_RESTART_MAX_MS		60000	/* cap of that delay */
#define ETHINDEX_MAX_INSERT_WORKERS	8	/* max of ethindex.insert_workers */
#define ETHINDEX_MAX_PENDING_RANGES	64	/* committed batches awaiting the checkpoint */

/* GUC variables (ethindex.c) */
extern char *ethindex_database;
extern int	ethindex_max_chains;
extern int	ethindex_queue_size_kb;
extern int	ethindex_rpc_timeout_ms;
extern int	ethindex_max_requests_in_flight;
extern int	ethindex_writer_batch_blocks;
extern int	ethindex_retry_max_ms;
extern int	ethindex_insert_workers;
extern bool ethindex_defer_indexes;
extern int	ethindex_max_pending_ranges;

/* Run state of a chain as seen by its workers */
typedef enum ChainRunState
{
	CHAIN_STATE_IDLE = 0,		/* slot has no workers */
	CHAIN_STATE_STARTING,		/* workers launched, no block fetched yet */
	CHAIN_STATE_RUNNING,
	CHAIN_STATE_ERROR			/* last attempt failed; retrying */
} ChainRunState;

/*
 * A batch of blocks an insert worker committed ahead of the checkpoint
 * (out of order): its rows are stored, chains.next_block does not cover it
 * yet.  See writer.c for the protocol.
 */
typedef struct PendingRange
{
	int64		first;
	int64		last;
	uint8		first_parent_hash[32];
	uint8		last_hash[32];
} PendingRange;

typedef struct ChainSlot
{
	/* written by the launcher under EthindexShared->lock */
	bool		in_use;
	char		name[NAMEDATALEN];
	uint32		generation;		/* bumped at every (re)start of the workers */

	slock_t		mutex;			/* protects the fields below */
	ChainRunState state;
	int64		node_head;		/* latest head reported by the node, -1 unknown */
	int64		stored_through; /* last block committed by the writer, -1 none */
	pid_t		fetcher_pid;
	pid_t		writer_pids[ETHINDEX_MAX_INSERT_WORKERS];
	int			nwriters;		/* insert workers of this generation */
	int			request_blocks; /* blocks per request, as the fetcher adapts it */
	int			window_limit;	/* requests in flight the fetcher allows itself */
	char		endpoint[256];	/* endpoint in use */
	char		last_error[ETHINDEX_ERROR_LEN];
	TimestampTz last_error_at;
	TimestampTz writer_started_at;
	/* committed blocks and transactions per second of the last minute */
	int64		rate_second[ETHINDEX_RATE_WINDOW];
	int32		rate_blocks[ETHINDEX_RATE_WINDOW];
	int32		rate_transactions[ETHINDEX_RATE_WINDOW];

	/* commit coordination of the insert workers (writer.c) */
	int64		checkpoint_next;	/* chains.next_block as last committed, -1 unknown */
	int			npending;
	PendingRange pending[ETHINDEX_MAX_PENDING_RANGES];

	BlockQueue	queue;			/* decoded blocks from fetcher to writers */
} ChainSlot;

typedef struct EthindexShared
{
	LWLock	   *lock;			/* protects slot assignment */
	pid_t		launcher_pid;	/* 0 when no launcher runs */
	Latch	   *launcher_latch;
	int			nslots;
	ChainSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} EthindexShared;

extern EthindexShared *ethindex_shared;

/* What the launcher passes to a chain's workers in bgw_extra */
typedef struct ChainWorkerArgs
{
	char		name[NAMEDATALEN];
	uint32		generation;		/* the slot's generation they belong to */
	int			writer_index;	/* insert workers: 0 .. nwriters - 1 */
} ChainWorkerArgs;

StaticAssertDecl(sizeof(ChainWorkerArgs) <= BGW_EXTRALEN,
				 "ChainWorkerArgs must fit in bgw_extra");

/* ethindex.c */
extern void ethindex_check_loaded(void);
extern void ethindex_wake_launcher(void);
extern void ethindex_request_launcher_wakeup(void);
extern char *ethindex_queue_buffer(int slotno);

/* status helpers (status.c) */
extern ChainSlot *chain_slot_attach(int slotno, const char *bgw_extra);
extern void chain_set_state(ChainSlot *slot, ChainRunState state);
extern void chain_report_error(ChainSlot *slot, const char *message);
extern void chain_report_error_data(ChainSlot *slot, ErrorData *edata);
extern void chain_record_commit(ChainSlot *slot, int blocks, int transactions);

/* launcher.c, fetcher.c, writer.c: background worker entry points */
extern PGDLLEXPORT void ethindex_launcher_main(Datum main_arg);
extern PGDLLEXPORT void ethindex_fetcher_main(Datum main_arg);
extern PGDLLEXPORT void ethindex_writer_main(Datum main_arg);

#endif							/* ETHINDEX_H */
