/*-------------------------------------------------------------------------
 *
 * writer.c
 *	  The per-chain insert workers ("writers"): each takes a run of records
 *	  from the chain's queue and stores it; ethindex.insert_workers of them
 *	  run side by side.
 *
 *	  A run of consecutive blocks is stored in one transaction: rows with
 *	  heap multi-insert (insert.c), then the checkpoint (checkpoint.c).
 *	  Blocks the fetcher marked BLOCK_ORDERED (fetched at the head) commit
 *	  in block order; backfill blocks may commit ahead of the checkpoint.
 *	  A batch of refetched blocks replaces the stored rows of blocks below
 *	  the checkpoint, for ethindex.refetch().  A rollback request rolls back
 *	  a reorganization.
 *
 *	  Insert worker 0 runs the start-up repair before the fetcher fetches
 *	  (checkpoint_start), indexes what an earlier run left unindexed, and
 *	  indexes the partial partition when the chain has been idle for a
 *	  while (partitions.c).
 *
 *	  Any error ends the worker (after publishing the error in the chain's
 *	  status); the launcher restarts the chain, and the fetcher starts again
 *	  from the committed checkpoint.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/writer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "blockrec.h"
#include "spiutil.h"
#include "writer.h"

/* Bytes of queue records a writer takes into one transaction at most */
#define WRITER_BATCH_BYTES		((Size) 256 * 1024 * 1024)
/* The first insert worker indexes the partial partition after this long idle */
#define WRITER_IDLE_INDEX_MS	10000

/* ---- configuration ------------------------------------------------------ */

static void
read_config_work(void *arg)
{
	WriterState *ws = (WriterState *) arg;
	bool		isnull;
	int64		chain_id;

	spi_read_chain("SELECT chain_id, start_block, partition_size, confirmations "
				   "FROM ethindex.chains WHERE name = $1", ws->name, false);
	ws->start_block = spi_get_int64(0, 2, &isnull);
	ws->partition_size = spi_get_int64(0, 3, &isnull);
	ws->confirmations = (int) spi_get_int64(0, 4, &isnull);
	chain_id = spi_get_int64(0, 1, &isnull);
	if (isnull)
		return;					/* the fetcher has not learned it yet */
	ws->chain_id = chain_id;
	ws->have_config = true;
}

/*
 * Read the chain's configuration; with "required", a chain without a chain
 * id is an error (blocks arrived, so insert worker 0 has stored it).
 */
static void
writer_load_config(WriterState *ws, bool required)
{
	run_in_transaction("reading chain configuration", read_config_work, ws);
	if (!ws->have_config && required)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chain \"%s\" has no chain id yet", ws->name),
				 errhint("Its chain id is stored when its workers start; they restart.")));
}

/*
 * Insert worker 0 at start: the repair that must precede fetching, then
 * the index builds an earlier run left undone.
 */
static void
writer_start(WriterState *ws)
{
	Checkpoint	cp;

	writer_load_config(ws, false);
	checkpoint_start(ws, &cp);
	if (!ws->have_config)
		writer_load_config(ws, true);
	partitions_index(ws, cp.next_block, false);
}

/* ---- storing ------------------------------------------------------------ */

typedef struct StoreWork
{
	WriterState *ws;
	DecodedBlock *blocks;
	int			nblocks;
	bool		ordered;
	BatchCommit commit;
} StoreWork;

static void
store_work(void *arg)
{
	StoreWork  *work = (StoreWork *) arg;

	insert_block_rows(work->ws, work->blocks, work->nblocks);
	if (work->ordered)
		checkpoint_wait_turn(work->ws, work->blocks[0].number);
	checkpoint_commit_batch(work->ws, work->blocks, work->nblocks, &work->commit);
}

/* Check that a run of blocks is of this chain and linked block to block. */
static void
check_run(WriterState *ws, DecodedBlock *blocks, int nblocks)
{
	for (int i = 0; i < nblocks; i++)
		if (DatumGetInt64(blocks[i].tables[ETH_TABLE_BLOCKS].values[BLK_CHAIN_ID]) != ws->chain_id)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("block " INT64_FORMAT " was decoded for chain id " INT64_FORMAT ", but chain \"%s\" has chain id " INT64_FORMAT,
							blocks[i].number,
							DatumGetInt64(blocks[i].tables[ETH_TABLE_BLOCKS].values[BLK_CHAIN_ID]),
							ws->name, ws->chain_id),
					 errhint("The chain was registered again while its workers ran; they restart.")));
	for (int i = 1; i < nblocks; i++)
	{
		if (blocks[i].number != blocks[i - 1].number + 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("block " INT64_FORMAT " of chain \"%s\" follows block " INT64_FORMAT " in the queue",
							blocks[i].number, ws->name, blocks[i - 1].number)));
		if (memcmp(blocks[i].parent_hash, blocks[i - 1].hash, 32) != 0)
			parent_mismatch(ws, blocks[i].number, blocks[i].parent_hash, blocks[i - 1].hash);
	}
}

/*
 * Store a run of consecutive blocks in one transaction, moving the
 * checkpoint in it if the run starts at the checkpoint.
 */
static void
store_blocks(WriterState *ws, DecodedBlock *blocks, int nblocks, bool ordered)
{
	StoreWork	work;
	int64		transactions = 0;

	check_run(ws, blocks, nblocks);
	partitions_ensure(ws, blocks[0].number, blocks[nblocks - 1].number);
	for (int i = 0; i < nblocks; i++)
		transactions += blocks[i].transaction_count;

	work.ws = ws;
	work.blocks = blocks;
	work.nblocks = nblocks;
	work.ordered = ordered;
	run_in_transaction("storing blocks", store_work, &work);

	/* only now, committed, may the batch count for the checkpoint */
	chain_record_commit(ws->slot, nblocks, (int) transactions);
	checkpoint_after_commit(ws, &work.commit);
	partitions_index_passed(ws);
}

/* ---- refetching --------------------------------------------------------- */

typedef struct ReplaceWork
{
	WriterState *ws;
	const ReplaceRecordHeader *header;
	DecodedBlock *blocks;
	char	   *failure;		/* out: why the request failed, or NULL */
	bool		finished;		/* out: these blocks completed the request */
} ReplaceWork;

/*
 * Why refetched blocks may not replace the stored ones, or NULL.  They must
 * lie below the checkpoint, their first block must name the stored block
 * before it as its parent, and their last block must be the stored chain's
 * block at its height: the block the stored block after it (or the
 * checkpoint) names, or the stored block itself.  Blocks are linked by
 * hashes, so a last block that is the stored one makes every block of the
 * run the stored one's: a refetch never splices in another branch.
 */
static char *
replace_failure(ReplaceWork *work, const Checkpoint *cp)
{
	WriterState *ws = work->ws;
	DecodedBlock *first = &work->blocks[0];
	DecodedBlock *last = &work->blocks[work->header->nblocks - 1];
	Oid			argtypes[4] = {INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		args[4];
	bool		top_checked = false;
	uint8		stored_last[32];
	bool		have_stored_last = false;

	if (last->number >= cp->next_block)
		return psprintf("block " INT64_FORMAT " is not below the checkpoint at block " INT64_FORMAT,
						last->number, cp->next_block);
	if (last->number == cp->next_block - 1 && cp->have_hash)
	{
		if (memcmp(last->hash, cp->last_hash, 32) != 0)
			return psprintf("the node's block " INT64_FORMAT " has hash %s, but the stored one, the last block of the checkpoint, has hash %s",
							last->number, eth_bytes_to_hex(last->hash, 32),
							eth_bytes_to_hex(cp->last_hash, 32));
		top_checked = true;
	}
	args[0] = Int64GetDatum(ws->chain_id);
	args[1] = Int64GetDatum(first->number - 1);
	args[2] = Int64GetDatum(last->number);
	args[3] = Int64GetDatum(last->number + 1);
	/* not read-only: a snapshot taken now, after the checkpoint row's lock */
	spi_run("SELECT number, hash, parent_hash FROM ethindex.blocks "
			"WHERE chain_id = $1 AND number IN ($2, $3, $4)",
			4, argtypes, args, NULL, false, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		number = spi_get_int64(i, 1, &isnull);
		uint8		hash[32];
		uint8		parent[32];

		(void) spi_get_hash(i, 2, hash);
		(void) spi_get_hash(i, 3, parent);
		if (number == first->number - 1 && memcmp(hash, first->parent_hash, 32) != 0)
			return psprintf("the node's block " INT64_FORMAT " names parent %s, but the stored block " INT64_FORMAT " has hash %s",
							first->number, eth_bytes_to_hex(first->parent_hash, 32),
							number, eth_bytes_to_hex(hash, 32));
		if (number == last->number + 1)
		{
			if (memcmp(parent, last->hash, 32) != 0)
				return psprintf("the node's block " INT64_FORMAT " has hash %s, but the stored block " INT64_FORMAT " names parent %s",
								last->number, eth_bytes_to_hex(last->hash, 32),
								number, eth_bytes_to_hex(parent, 32));
			top_checked = true;
		}
		if (number == last->number)
		{
			memcpy(stored_last, hash, 32);
			have_stored_last = true;
		}
	}
	if (!top_checked && have_stored_last)
	{
		if (memcmp(stored_last, last->hash, 32) != 0)
			return psprintf("the node's block " INT64_FORMAT " has hash %s, but the stored one has hash %s",
							last->number, eth_bytes_to_hex(last->hash, 32),
							eth_bytes_to_hex(stored_last, 32));
		top_checked = true;
	}
	if (!top_checked)
		return psprintf("blocks " INT64_FORMAT " and " INT64_FORMAT " are not stored, so the node's blocks cannot be checked against the stored chain; refetch a range that ends at or before a stored block",
						last->number, last->number + 1);
	return NULL;
}

static void
fail_refetch(int64 refetch_id, const char *failure)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];

	args[0] = Int64GetDatum(refetch_id);
	args[1] = CStringGetTextDatum(failure);
	spi_run("UPDATE ethindex.refetches SET finished_at = now(), error = $2 WHERE id = $1",
			2, argtypes, args, NULL, false, 0);
}

static void
replace_work(void *arg)
{
	ReplaceWork *work = (ReplaceWork *) arg;
	WriterState *ws = work->ws;
	int			nblocks = work->header->nblocks;
	Checkpoint	cp;
	Oid			argtypes[3] = {INT8OID, INT8OID, INT8OID};
	Datum		args[3];
	bool		isnull;
	int64		to_block;
	int64		next_block;

	/* the checkpoint row's lock keeps rollbacks and other commits out */
	checkpoint_read(ws, &cp, true);
	args[0] = Int64GetDatum(work->header->refetch_id);
	spi_run("SELECT to_block, next_block FROM ethindex.refetches "
			"WHERE id = $1 AND finished_at IS NULL FOR UPDATE",
			1, argtypes, args, NULL, false, 1);
	if (SPI_processed != 1)
		return;					/* removed meanwhile */
	to_block = spi_get_int64(0, 1, &isnull);
	next_block = spi_get_int64(0, 2, &isnull);

	if (nblocks == 0)
		work->failure = pstrdup(work->header->error);
	else if (work->blocks[0].number != next_block)
		work->failure = psprintf("the fetcher sent block " INT64_FORMAT " where block " INT64_FORMAT " was due",
								 work->blocks[0].number, next_block);
	else
		work->failure = replace_failure(work, &cp);
	if (work->failure != NULL)
	{
		fail_refetch(work->header->refetch_id, work->failure);
		return;
	}

	args[0] = Int64GetDatum(ws->chain_id);
	args[1] = Int64GetDatum(work->blocks[0].number);
	args[2] = Int64GetDatum(work->blocks[nblocks - 1].number);
	for (int t = 0; t < ETH_NUM_TABLES; t++)
		spi_run(psprintf("DELETE FROM ethindex.%s WHERE chain_id = $1 AND %s BETWEEN $2 AND $3",
						 eth_tables[t].name, eth_tables[t].block_column),
				3, argtypes, args, NULL, false, 0);
	insert_block_rows(ws, work->blocks, nblocks);

	args[0] = Int64GetDatum(work->header->refetch_id);
	args[1] = Int64GetDatum(work->blocks[nblocks - 1].number + 1);
	spi_run("UPDATE ethindex.refetches SET next_block = $2, "
			"finished_at = CASE WHEN $2 > to_block THEN now() END WHERE id = $1",
			2, argtypes, args, NULL, false, 0);
	work->finished = work->blocks[nblocks - 1].number >= to_block;
}

/*
 * Replace the stored rows of a batch of refetched blocks (ethindex.refetch())
 * in one transaction, with the request's progress; a batch that does not fit
 * the stored chain ends the request with an error instead.
 */
static void
replace_blocks(WriterState *ws, char *record, Size len)
{
	ReplaceWork work;

	work.ws = ws;
	work.header = blockrec_read_replace(record, len, &work.blocks);
	work.failure = NULL;
	work.finished = false;
	if (work.header->nblocks > 0)
		check_run(ws, work.blocks, work.header->nblocks);
	run_in_transaction("replacing refetched blocks", replace_work, &work);
	if (work.failure != NULL)
		ereport(LOG,
				(errmsg("ethindex chain \"%s\": refetch " INT64_FORMAT " failed: %s",
						ws->name, work.header->refetch_id, work.failure)));
	else if (work.finished)
		ereport(LOG,
				(errmsg("ethindex chain \"%s\": refetch " INT64_FORMAT " finished",
						ws->name, work.header->refetch_id)));
}

/* ---- the loop ----------------------------------------------------------- */

/*
 * Store the records taken from the queue in queue order: runs of
 * consecutive blocks, batches of refetched blocks, rollback requests.
 */
static void
process_records(WriterState *ws, char **records, Size *lens, int nrecords)
{
	DecodedBlock *blocks = palloc(sizeof(DecodedBlock) * nrecords);
	int			i = 0;

	while (i < nrecords)
	{
		QueueRecordKind kind = blockrec_kind(records[i], lens[i]);
		bool		ordered = false;
		int			n = 0;

		if (kind == QUEUE_RECORD_ROLLBACK)
		{
			checkpoint_rollback(ws, blockrec_read_rollback(records[i], lens[i]));
			i++;
			continue;
		}
		if (kind == QUEUE_RECORD_REPLACE)
		{
			replace_blocks(ws, records[i], lens[i]);
			i++;
			continue;
		}
		while (i + n < nrecords &&
			   blockrec_kind(records[i + n], lens[i + n]) == QUEUE_RECORD_BLOCK)
		{
			uint8		flags;

			blockrec_read(records[i + n], lens[i + n], &blocks[n], &flags);
			ordered |= (flags & BLOCK_ORDERED) != 0;
			n++;
		}
		store_blocks(ws, blocks, n, ordered);
		i += n;
	}
}

/* This process's insert worker number, for writer_detach() */
static int	my_writer_index = -1;

/* Runs at exit, after an error unwound main's stack: use no stack data. */
static void
writer_detach(int code, Datum arg)
{
	ChainSlot  *slot = (ChainSlot *) DatumGetPointer(arg);

	SpinLockAcquire(&slot->mutex);
	slot->writer_pids[my_writer_index] = 0;
	SpinLockRelease(&slot->mutex);
}

/* Take records from the queue and store them, until an error or a signal. */
static void
writer_loop(WriterState *ws, MemoryContext writer_context)
{
	int			max_records = ethindex_writer_batch_blocks;
	char	  **records = palloc(sizeof(char *) * ETHINDEX_MAX_WRITER_BATCH);
	Size	   *lens = palloc(sizeof(Size) * ETHINDEX_MAX_WRITER_BATCH);
	TimestampTz progress_at = GetCurrentTimestamp();
	int64		seen_next = -1;
	bool		idle_indexed = false;

	if (ws->index == 0)
		writer_start(ws);

	for (;;)
	{
		int			nrecords;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			max_records = ethindex_writer_batch_blocks;
		}

		MemoryContextReset(ws->batch_context);
		MemoryContextSwitchTo(ws->batch_context);
		nrecords = queue_take_batch(&ws->slot->queue, ws->ring, max_records,
									WRITER_BATCH_BYTES, records, lens, 1000);
		if (nrecords > 0)
		{
			if (!ws->have_config)
				writer_load_config(ws, true);
			process_records(ws, records, lens, nrecords);
			queue_finish(&ws->slot->queue);
		}
		else if (ws->index == 0 && ws->have_config)
		{
			/*
			 * The chain is idle when the checkpoint has not moved and the
			 * queue stayed empty for a while (the node stalls, or the chain
			 * caught up inside a partition created for backfill): then index
			 * what has been stored, the partial partition too.
			 */
			int64		next = checkpoint_published(ws);
			int32		queued;
			Size		queued_bytes;

			queue_stats(&ws->slot->queue, &queued, &queued_bytes);
			if (next != seen_next || queued > 0)
			{
				seen_next = next;
				progress_at = GetCurrentTimestamp();
				idle_indexed = false;
			}
			else if (!idle_indexed && next >= 0 &&
					 TimestampDifferenceExceeds(progress_at, GetCurrentTimestamp(),
												WRITER_IDLE_INDEX_MS))
			{
				partitions_index(ws, next, true);
				idle_indexed = true;
			}
		}
		MemoryContextSwitchTo(writer_context);
	}
}

void
ethindex_writer_main(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	WriterState ws;
	MemoryContext writer_context;

	memset(&ws, 0, sizeof(ws));
	strlcpy(ws.name, ((ChainWorkerArgs *) MyBgworkerEntry->bgw_extra)->name, sizeof(ws.name));
	ws.index = ((ChainWorkerArgs *) MyBgworkerEntry->bgw_extra)->writer_index;
	ws.partitions_through = -1;
	ws.moved_from = ws.moved_to = -1;
	if (ws.index < 0 || ws.index >= ETHINDEX_MAX_INSERT_WORKERS)
		elog(FATAL, "invalid insert worker number %d", ws.index);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	ws.slot = chain_slot_attach(slotno, MyBgworkerEntry->bgw_extra);
	ws.ring = ethindex_queue_buffer(slotno);

	SpinLockAcquire(&ws.slot->mutex);
	ws.slot->writer_pids[ws.index] = MyProcPid;
	if (ws.index == 0)
		ws.slot->writer_started_at = GetCurrentTimestamp();
	SpinLockRelease(&ws.slot->mutex);
	my_writer_index = ws.index;
	on_shmem_exit(writer_detach, PointerGetDatum(ws.slot));

	ethindex_worker_connect(psprintf("ethindex writer %d %s", ws.index, ws.name));

	writer_context = AllocSetContextCreate(TopMemoryContext, "ethindex writer",
										   ALLOCSET_DEFAULT_SIZES);
	ws.batch_context = AllocSetContextCreate(writer_context, "ethindex writer batch",
											 ALLOCSET_DEFAULT_SIZES);

	PG_TRY();
	{
		MemoryContextSwitchTo(writer_context);
		insert_verify_schema(&ws);

		writer_loop(&ws, writer_context);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* publish the error for chain_status, then let the worker die */
		MemoryContextSwitchTo(writer_context);
		edata = CopyErrorData();
		chain_report_error_data(ws.slot, edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
}
