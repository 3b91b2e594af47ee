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
 *	    insert worker ("writer" in code): one of the per-chain workers
 *	              that take decoded blocks from the queue and store them,
 *	              with the progress checkpoint, one transaction per batch.
 *	    slot      a chain's entry in shared memory (status and queue).
 *	    checkpoint chains.next_block and last_hash: every block below
 *	              next_block is stored, the last with hash last_hash.
 *	    reorganization (reorg) blocks stored at the head that the node
 *	              replaced with another branch; rolled back to the fork
 *	              block, the last block both branches share.
 *
 *	  The shared-memory layouts and their locking protocol are in shared.h.
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

#include "postmaster/bgworker.h"

#include "queue.h"
#include "shared.h"

/*
 * The library's version (default_version of ethindex.control), and the
 * versions of the extension's SQL it can run: the earlier ones too, so that
 * chains go on between installing a new library and ALTER EXTENSION UPDATE.
 */
#define ETHINDEX_VERSION			"0.3"
#define ETHINDEX_SQL_VERSIONS		{"0.1", "0.2", "0.3"}

/* Limits and defaults (GUC ranges are in ethindex.c) */
#define ETHINDEX_MAX_ENDPOINTS		8	/* endpoints per chain, see add_chain() */
#define ETHINDEX_LAUNCHER_NAPTIME_MS 1000	/* launcher polls chains this often */
#define ETHINDEX_RESTART_MIN_MS		1000	/* first delay before restarting a failed chain */
#define ETHINDEX_RESTART_MAX_MS		60000	/* cap of that delay */
#define ETHINDEX_MAX_WRITER_BATCH	10000	/* max of ethindex.writer_batch_blocks */

/* GUC variables (ethindex.c) */
extern char *ethindex_database;
extern int	ethindex_max_chains;
extern int	ethindex_queue_size_kb;
extern int	ethindex_rpc_timeout_ms;
extern int	ethindex_max_response_kb;
extern int	ethindex_max_bytes_in_flight_kb;
extern int	ethindex_max_requests_in_flight;
extern int	ethindex_writer_batch_blocks;
extern int	ethindex_retry_max_ms;
extern int	ethindex_insert_workers;
extern bool ethindex_defer_indexes;
extern int	ethindex_max_pending_ranges;

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
extern bool ethindex_sql_version_supported(const char *version);
extern void ethindex_worker_connect(const char *appname);
extern void ethindex_wake_launcher(void);
extern void ethindex_request_launcher_wakeup(void);
extern void ethindex_request_fetcher_wakeup(const char *chain);
extern char *ethindex_queue_buffer(int slotno);

/* status helpers (status.c) */
extern ChainSlot *chain_slot_attach(int slotno, const char *bgw_extra);
extern void chain_set_state(ChainSlot *slot, ChainRunState state);
extern void chain_report_error(ChainSlot *slot, const char *message);
extern void chain_report_error_data(ChainSlot *slot, ErrorData *edata);
extern void chain_record_commit(ChainSlot *slot, int blocks, int transactions);
extern void chain_record_head_request(ChainSlot *slot);

/* launcher.c, fetcher.c, writer.c: background worker entry points */
extern PGDLLEXPORT void ethindex_launcher_main(Datum main_arg);
extern PGDLLEXPORT void ethindex_fetcher_main(Datum main_arg);
extern PGDLLEXPORT void ethindex_writer_main(Datum main_arg);

#endif							/* ETHINDEX_H */
