/*-------------------------------------------------------------------------
 *
 * partitions.c
 *	  Partitions of a chain's data tables, for its insert workers: creating
 *	  them ahead of the rows, and building the indexes that were deferred
 *	  while they were loaded.
 *
 *	  Partitions are created in a short transaction of their own, one
 *	  partition ahead of the rows (ethindex._ensure_partitions(), serialized
 *	  between the workers by an advisory lock).  A partition that lies
 *	  wholly in the backfill (its last block was already at or below the
 *	  node's head minus confirmations when it was created) is created without
 *	  indexes if ethindex.defer_indexes is on; the others are indexed at
 *	  creation.
 *
 *	  When the checkpoint passes the end of an unindexed partition, the
 *	  worker that moved it builds its indexes once it has no more
 *	  checkpoint moves to make (ethindex._index_partition(), one
 *	  transaction per block range; a range another worker is indexing is
 *	  skipped).  Insert worker 0 also indexes, at start, what an earlier run
 *	  completed but did not index, and, when the chain has been idle for a
 *	  while, the partial partition it stopped in.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/partitions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/timestamp.h"

#include "spiutil.h"
#include "writer.h"

typedef struct PartitionRange
{
	WriterState *ws;
	int64		from;
	int64		through;
} PartitionRange;

static void
ensure_partitions_work(void *arg)
{
	PartitionRange *range = (PartitionRange *) arg;
	WriterState *ws = range->ws;
	Oid			argtypes[5] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		args[5];
	int64		node_head;
	int64		defer_through = -1;

	SpinLockAcquire(&ws->slot->mutex);
	node_head = ws->slot->node_head;
	SpinLockRelease(&ws->slot->mutex);
	/* partitions the fetcher can fill without waiting for the node */
	if (ethindex_defer_indexes && node_head >= 0)
		defer_through = node_head - ws->confirmations;

	args[0] = Int64GetDatum(ws->chain_id);
	args[1] = Int64GetDatum(ws->partition_size);
	args[2] = Int64GetDatum(range->from);
	args[3] = Int64GetDatum(range->through);
	args[4] = Int64GetDatum(defer_through);
	spi_run("SELECT ethindex._ensure_partitions($1, $2, $3, $4, $5)",
			5, argtypes, args, NULL, false, 1);
}

/*
 * Make sure partitions exist from "from" through "through", plus one more
 * partition, in a transaction of its own so that the locks are held only
 * briefly.
 */
void
partitions_ensure(WriterState *ws, int64 from, int64 through)
{
	PartitionRange range;

	if (through <= ws->partitions_through)
		return;
	range.ws = ws;
	range.from = from;
	range.through = through + ws->partition_size;
	run_in_transaction("creating partitions", ensure_partitions_work, &range);
	/* the last partition created ends at this block */
	ws->partitions_through = (range.through / ws->partition_size + 1) * ws->partition_size - 1;
}

typedef struct IndexRequest
{
	WriterState *ws;
	int64		below;			/* partitions with blocks below this one */
	bool		include_partial;	/* also one the checkpoint is inside */
	List	   *first_blocks;	/* out: partitions to index, as int64 */
} IndexRequest;

static void
find_unindexed_work(void *arg)
{
	IndexRequest *req = (IndexRequest *) arg;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];

	args[0] = Int64GetDatum(req->ws->chain_id);
	args[1] = Int64GetDatum(req->below);
	spi_run(req->include_partial ?
			"SELECT first_block FROM ethindex.partitions "
			"WHERE chain_id = $1 AND indexed_at IS NULL AND first_block < $2 "
			"ORDER BY first_block" :
			"SELECT first_block FROM ethindex.partitions "
			"WHERE chain_id = $1 AND indexed_at IS NULL AND last_block < $2 "
			"ORDER BY first_block",
			2, argtypes, args, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64	   *first = palloc(sizeof(int64));

		*first = spi_get_int64(i, 1, &isnull);
		req->first_blocks = lappend(req->first_blocks, first);
	}
}

typedef struct IndexJob
{
	WriterState *ws;
	int64		first_block;
	int			built;			/* out: indexes built, -1 if another worker builds */
} IndexJob;

static void
index_partition_work(void *arg)
{
	IndexJob   *job = (IndexJob *) arg;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	bool		isnull;

	args[0] = Int64GetDatum(job->ws->chain_id);
	args[1] = Int64GetDatum(job->first_block);
	/* without waiting: a range another worker is indexing is skipped */
	spi_run("SELECT ethindex._index_partition($1, $2, false)",
			2, argtypes, args, NULL, false, 1);
	job->built = (int) spi_get_int64(0, 1, &isnull);
}

/*
 * Build the deferred indexes of the partitions wholly below "below" (or,
 * with include_partial, of every partition holding blocks below it), one
 * transaction per partition.
 */
void
partitions_index(WriterState *ws, int64 below, bool include_partial)
{
	IndexRequest req;
	ListCell   *lc;

	req.ws = ws;
	req.below = below;
	req.include_partial = include_partial;
	req.first_blocks = NIL;
	run_in_transaction("looking for partitions to index", find_unindexed_work, &req);
	foreach(lc, req.first_blocks)
	{
		int64		first = *(int64 *) lfirst(lc);
		TimestampTz started = GetCurrentTimestamp();
		long		secs;
		int			usecs;
		char	   *activity = psprintf("indexing partitions of blocks " INT64_FORMAT " to " INT64_FORMAT,
										first, first + ws->partition_size - 1);
		IndexJob	job;

		job.ws = ws;
		job.first_block = first;
		job.built = 0;
		run_in_transaction(activity, index_partition_work, &job);
		if (job.built <= 0)
			continue;			/* another insert worker is on it, or was */
		TimestampDifference(started, GetCurrentTimestamp(), &secs, &usecs);
		ereport(LOG,
				(errmsg("ethindex chain \"%s\": indexed the partitions of blocks " INT64_FORMAT " to " INT64_FORMAT " in %ld.%01d s",
						ws->name, first, first + ws->partition_size - 1,
						secs, usecs / 100000)));
	}
}

/*
 * After this worker's moves of the checkpoint (and only then, so that no
 * pending range waits for an index build): build the deferred indexes of
 * the partitions the checkpoint passed.
 */
void
partitions_index_passed(WriterState *ws)
{
	int64		from = ws->moved_from;
	int64		to = ws->moved_to;

	ws->moved_from = ws->moved_to = -1;
	if (from >= 0 && from / ws->partition_size != to / ws->partition_size)
		partitions_index(ws, to, false);
}
