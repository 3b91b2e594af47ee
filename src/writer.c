/*-------------------------------------------------------------------------
 *
 * writer.c
 *	  The per-chain insert workers ("writers"): each takes a run of
 *	  consecutive decoded blocks from the chain's queue and stores them in
 *	  one transaction; ethindex.insert_workers of them run side by side.
 *
 *	  Rows go in with heap multi-insert, the path COPY FROM uses: per
 *	  partition a buffer of slots and a BulkInsertState, flushed with
 *	  table_multi_insert(), then index entries for the flushed tuples (if
 *	  the partition has indexes yet).  The writer knows which partition each
 *	  row belongs to (partitions are named after their first block, see
 *	  _ensure_partitions()), so no tuple routing is needed.  Partitions are
 *	  created in a transaction of their own, one partition ahead of the rows.
 *
 *	  The checkpoint (chains.next_block, last_hash) stays contiguous while
 *	  batches commit out of order:
 *	    - a batch that starts at the checkpoint moves it, in the same
 *	      transaction as its rows, past itself and past every batch already
 *	      committed right after it (the "pending ranges" of the chain's
 *	      slot), checking parent hashes at each junction;
 *	    - a batch that starts above the checkpoint commits its rows only and
 *	      is then announced as a pending range;
 *	    - both the announcement and the move of the checkpoint are followed,
 *	      under the slot's spinlock, by a check whether a pending range now
 *	      starts at the checkpoint; whoever sees one moves the checkpoint in
 *	      a small transaction of its own.  Of two writers racing, at least
 *	      the later one sees the other's change, so no range is forgotten;
 *	    - when the table of pending ranges is full, a writer waits to
 *	      announce, unless the checkpoint has reached its own range: then it
 *	      moves the checkpoint over it itself (no one else knows of it).
 *	  The progress row is locked FOR UPDATE only at the end of a batch, so
 *	  the writers insert in parallel and serialize just for the checkpoint.
 *	  A range is announced only after its transaction committed, so the
 *	  checkpoint never covers uncommitted rows.  Rows committed above the
 *	  checkpoint by a run that then stopped are deleted by the next run's
 *	  fetcher before it fetches them again (_discard_above_checkpoint()).
 *
 *	  When the checkpoint passes the end of a partition loaded without
 *	  indexes (ethindex.defer_indexes), the writer that moved it builds the
 *	  partition's indexes once it has no more checkpoint moves to make, one
 *	  transaction per partition, while the other writers go on; a range
 *	  another writer is already indexing is skipped.
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

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "blockrec.h"
#include "decode.h"
#include "ethindex.h"

/* Tuples buffered per partition before a multi-insert */
#define WRITER_BUFFERED_TUPLES	1000
/* Bytes of queue records a writer takes into one transaction at most */
#define WRITER_BATCH_BYTES		((Size) 256 * 1024 * 1024)
/* The first insert worker indexes the partial partition after this long idle */
#define WRITER_IDLE_INDEX_MS	10000

/* A partition being written in the current transaction */
typedef struct InsertTarget
{
	EthTable	table;
	int64		first_block;	/* the partition's lower bound */
	Relation	rel;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	TupleDesc	slot_desc;		/* unpinned copy of the partition's descriptor */
	TupleTableSlot *slots[WRITER_BUFFERED_TUPLES];
	int			nslots_created;
	int			nbuffered;
} InsertTarget;

typedef struct WriterState
{
	ChainSlot  *slot;
	char	   *ring;
	char		name[NAMEDATALEN];
	int			index;			/* insert worker number, 0 .. nwriters - 1 */
	Oid			namespace_oid;
	bool		notnull[ETH_NUM_TABLES][64];
	/* the chain's immutable configuration, read with the first batch */
	bool		have_config;
	int64		chain_id;
	int64		partition_size;
	int			confirmations;
	int64		partitions_through;	/* partitions exist up to this block */
	/* checkpoint moves this worker committed since it last indexed, -1 none */
	int64		moved_from;
	int64		moved_to;
	MemoryContext batch_context;
} WriterState;

/* The checkpoint: chains.next_block and last_hash */
typedef struct Checkpoint
{
	int64		chain_id;
	int64		next_block;
	bool		have_hash;
	uint8		last_hash[32];
} Checkpoint;

/*
 * Check that the catalog's tables have the column layout the decoder
 * produces (schema.h), and remember the NOT NULL columns.
 */
static void
verify_schema(WriterState *ws)
{
	StartTransactionCommand();
	ws->namespace_oid = get_namespace_oid("ethindex", false);
	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		const EthTableDesc *desc = &eth_tables[t];
		Oid			relid = get_relname_relid(desc->name, ws->namespace_oid);
		Relation	rel;
		TupleDesc	tupdesc;

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("table ethindex.%s does not exist", desc->name)));
		rel = table_open(relid, AccessShareLock);
		tupdesc = RelationGetDescr(rel);
		if (tupdesc->natts != desc->natts)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table ethindex.%s has %d columns, ethindex expects %d",
							desc->name, tupdesc->natts, desc->natts),
					 errhint("The table was altered, or the extension's library and SQL script do not match.")));
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute attr = TupleDescAttr(tupdesc, a);

			if (attr->attisdropped || attr->atttypid != desc->columns[a].typid ||
				strcmp(NameStr(attr->attname), desc->columns[a].name) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("column %d of table ethindex.%s is \"%s\" of type %s, ethindex expects \"%s\" of type %s",
								a + 1, desc->name, NameStr(attr->attname),
								format_type_be(attr->atttypid),
								desc->columns[a].name,
								format_type_be(desc->columns[a].typid)),
						 errhint("The table was altered, or the extension's library and SQL script do not match.")));
			ws->notnull[t][a] = attr->attnotnull;
		}
		table_close(rel, AccessShareLock);
	}
	CommitTransactionCommand();
}

/* Run "work" in a transaction of its own, with SPI and a snapshot. */
static void
run_in_transaction(WriterState *ws, const char *activity,
				   void (*work) (WriterState *ws, void *arg), void *arg)
{
	MemoryContext outer = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	MemoryContextSwitchTo(outer);
	work(ws, arg);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Read the checkpoint, FOR UPDATE if "lock": the lock serializes the moves
 * of the checkpoint between the insert workers.
 */
static void
read_checkpoint(WriterState *ws, Checkpoint *cp, bool lock)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	Datum		hash;
	MemoryContext outer = CurrentMemoryContext;

	args[0] = CStringGetTextDatum(ws->name);
	if (SPI_execute_with_args(lock ?
							  "SELECT chain_id, next_block, last_hash "
							  "FROM ethindex.chains WHERE name = $1 FOR UPDATE" :
							  "SELECT chain_id, next_block, last_hash "
							  "FROM ethindex.chains WHERE name = $1",
							  1, argtypes, args, NULL, !lock, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the checkpoint of chain \"%s\"", ws->name);
	MemoryContextSwitchTo(outer);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("chain \"%s\" does not exist", ws->name)));
	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	cp->chain_id = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	if (isnull)
		elog(ERROR, "chain \"%s\" has no chain id yet", ws->name);
	cp->next_block = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 2, &isnull));
	hash = SPI_getbinval(tuple, tupdesc, 3, &isnull);
	cp->have_hash = !isnull;
	if (!isnull)
	{
		bytea	   *b = DatumGetByteaPP(hash);

		if (VARSIZE_ANY_EXHDR(b) != 32)
			elog(ERROR, "stored last_hash of chain \"%s\" is not 32 bytes", ws->name);
		memcpy(cp->last_hash, VARDATA_ANY(b), 32);
	}
	if (cp->chain_id != ws->chain_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("chain \"%s\" now has chain id " INT64_FORMAT ", its workers started with chain id " INT64_FORMAT,
						ws->name, cp->chain_id, ws->chain_id),
				 errhint("The chain was registered again while its workers ran; they restart.")));
}

static void
write_checkpoint(WriterState *ws, int64 next_block, const uint8 *hash)
{
	Oid			argtypes[3] = {INT8OID, BYTEAOID, TEXTOID};
	Datum		args[3];
	bytea	   *b = palloc(VARHDRSZ + 32);

	SET_VARSIZE(b, VARHDRSZ + 32);
	memcpy(VARDATA(b), hash, 32);
	args[0] = Int64GetDatum(next_block);
	args[1] = PointerGetDatum(b);
	args[2] = CStringGetTextDatum(ws->name);
	if (SPI_execute_with_args("UPDATE ethindex.chains SET next_block = $1, last_hash = $2 "
							  "WHERE name = $3",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_processed != 1)
		elog(ERROR, "could not update the checkpoint of chain \"%s\"", ws->name);
}

/* Read chain_id, partition_size and confirmations (fixed at add_chain()). */
static void
read_config_work(WriterState *ws, void *arg)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	Datum		chain_id;

	args[0] = CStringGetTextDatum(ws->name);
	if (SPI_execute_with_args("SELECT chain_id, partition_size, confirmations "
							  "FROM ethindex.chains WHERE name = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the configuration of chain \"%s\"", ws->name);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("chain \"%s\" does not exist", ws->name)));
	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	chain_id = SPI_getbinval(tuple, tupdesc, 1, &isnull);
	if (isnull)
		return;					/* the fetcher has not learned it yet */
	ws->chain_id = DatumGetInt64(chain_id);
	ws->partition_size = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 2, &isnull));
	ws->confirmations = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 3, &isnull));
	ws->have_config = true;
}

typedef struct PartitionRange
{
	int64		from;
	int64		through;
} PartitionRange;

static void
ensure_partitions_work(WriterState *ws, void *arg)
{
	PartitionRange *range = (PartitionRange *) arg;
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
	if (SPI_execute_with_args("SELECT ethindex._ensure_partitions($1, $2, $3, $4, $5)",
							  5, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not create partitions for chain \"%s\"", ws->name);
}

/*
 * Make sure partitions exist up to and including "through" plus one more
 * partition, in a transaction of its own so that the locks are held only
 * briefly.
 */
static void
ensure_partitions(WriterState *ws, int64 from, int64 through)
{
	PartitionRange range;

	if (through <= ws->partitions_through)
		return;
	range.from = from;
	range.through = through + ws->partition_size;
	run_in_transaction(ws, "creating partitions", ensure_partitions_work, &range);
	/* the last partition created ends at this block */
	ws->partitions_through = (range.through / ws->partition_size + 1) * ws->partition_size - 1;
}

typedef struct IndexRequest
{
	int64		below;			/* partitions with blocks below this one */
	bool		include_partial;	/* also one the checkpoint is inside */
	List	   *first_blocks;	/* out: partitions to index, as int64 */
} IndexRequest;

static void
find_unindexed_work(WriterState *ws, void *arg)
{
	IndexRequest *req = (IndexRequest *) arg;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	MemoryContext outer = CurrentMemoryContext;

	args[0] = Int64GetDatum(ws->chain_id);
	args[1] = Int64GetDatum(req->below);
	if (SPI_execute_with_args(req->include_partial ?
							  "SELECT first_block FROM ethindex.partitions "
							  "WHERE chain_id = $1 AND indexed_at IS NULL AND first_block < $2 "
							  "ORDER BY first_block" :
							  "SELECT first_block FROM ethindex.partitions "
							  "WHERE chain_id = $1 AND indexed_at IS NULL AND last_block < $2 "
							  "ORDER BY first_block",
							  2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the partitions of chain \"%s\"", ws->name);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		first = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(outer);
		int64	   *copy = palloc(sizeof(int64));

		*copy = first;
		req->first_blocks = lappend(req->first_blocks, copy);
		MemoryContextSwitchTo(old);
	}
}

typedef struct IndexJob
{
	int64		first_block;
	int			built;			/* out: indexes built, -1 if another worker builds */
} IndexJob;

static void
index_partition_work(WriterState *ws, void *arg)
{
	IndexJob   *job = (IndexJob *) arg;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	bool		isnull;

	args[0] = Int64GetDatum(ws->chain_id);
	args[1] = Int64GetDatum(job->first_block);
	/* without waiting: a range another worker is indexing is skipped */
	if (SPI_execute_with_args("SELECT ethindex._index_partition($1, $2, false)",
							  2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not index a partition of chain \"%s\"", ws->name);
	job->built = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Build the deferred indexes of the partitions wholly below "below" (or,
 * with include_partial, of every partition holding blocks below it), one
 * transaction per partition.
 */
static void
index_partitions(WriterState *ws, int64 below, bool include_partial)
{
	IndexRequest req;
	ListCell   *lc;

	req.below = below;
	req.include_partial = include_partial;
	req.first_blocks = NIL;
	run_in_transaction(ws, "looking for partitions to index", find_unindexed_work, &req);
	foreach(lc, req.first_blocks)
	{
		int64		first = *(int64 *) lfirst(lc);
		TimestampTz started = GetCurrentTimestamp();
		long		secs;
		int			usecs;
		char	   *activity = psprintf("indexing partitions of blocks " INT64_FORMAT " to " INT64_FORMAT,
										first, first + ws->partition_size - 1);
		IndexJob	job;

		job.first_block = first;
		job.built = 0;
		run_in_transaction(ws, activity, index_partition_work, &job);
		if (job.built <= 0)
			continue;			/* another insert worker is on it, or was */
		TimestampDifference(started, GetCurrentTimestamp(), &secs, &usecs);
		ereport(LOG,
				(errmsg("ethindex chain \"%s\": indexed the partitions of blocks " INT64_FORMAT " to " INT64_FORMAT " in %ld.%01d s",
						ws->name, first, first + ws->partition_size - 1,
						secs, usecs / 100000)));
	}
}

/* The partition of "table" holding "block", opened for this transaction. */
static InsertTarget *
get_target(WriterState *ws, List **targets, EthTable table, int64 block)
{
	int64		first = (block / ws->partition_size) * ws->partition_size;
	ListCell   *lc;
	InsertTarget *target;
	char	   *name;
	Oid			relid;

	foreach(lc, *targets)
	{
		target = (InsertTarget *) lfirst(lc);
		if (target->table == table && target->first_block == first)
			return target;
	}

	name = psprintf("%s_" INT64_FORMAT "_%012lld", eth_tables[table].name,
					ws->chain_id, (long long) first);
	relid = get_relname_relid(name, ws->namespace_oid);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("partition ethindex.%s for block " INT64_FORMAT " of chain \"%s\" does not exist",
						name, block, ws->name),
				 errhint("Partitions are created by ethindex._ensure_partitions(); do not drop them while the chain runs.")));

	target = palloc0(sizeof(InsertTarget));
	target->table = table;
	target->first_block = first;
	target->rel = table_open(relid, RowExclusiveLock);
	if (RelationGetDescr(target->rel)->natts != eth_tables[table].natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition ethindex.%s does not have the columns of table ethindex.%s",
						name, eth_tables[table].name)));
	target->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(target->rri, target->rel, 1, NULL, 0);
	ExecOpenIndices(target->rri, false);
	target->bistate = GetBulkInsertState();
	*targets = lappend(*targets, target);
	return target;
}

/* Insert the buffered tuples of a partition and their index entries. */
static void
flush_target(InsertTarget *target, EState *estate, CommandId cid)
{
	if (target->nbuffered == 0)
		return;

	table_multi_insert(target->rel, target->slots, target->nbuffered, cid, 0,
					   target->bistate);
	for (int i = 0; i < target->nbuffered; i++)
	{
		if (target->rri->ri_NumIndices > 0)
		{
			List	   *recheck;

			recheck = ExecInsertIndexTuples(target->rri, target->slots[i], estate,
											false, false, NULL, NIL);
			list_free(recheck);
		}
		ExecClearTuple(target->slots[i]);
	}
	target->nbuffered = 0;
	ResetPerTupleExprContext(estate);
}

static void
add_row(WriterState *ws, InsertTarget *target, EState *estate, CommandId cid,
		const Datum *values, const bool *nulls, int64 block)
{
	const EthTableDesc *desc = &eth_tables[target->table];
	TupleTableSlot *slot;

	for (int a = 0; a < desc->natts; a++)
		if (nulls[a] && ws->notnull[target->table][a])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of table ethindex.%s for block " INT64_FORMAT,
							desc->columns[a].name, desc->name, block)));

	if (target->nbuffered == target->nslots_created)
	{
		/*
		 * Slots made from the relcache's descriptor would each pin it in
		 * the resource owner, thousands of entries under one key per batch;
		 * a copy is not reference-counted.
		 */
		if (target->slot_desc == NULL)
			target->slot_desc = CreateTupleDescCopy(RelationGetDescr(target->rel));
		target->slots[target->nslots_created++] =
			MakeSingleTupleTableSlot(target->slot_desc, table_slot_callbacks(target->rel));
	}
	slot = target->slots[target->nbuffered];
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * desc->natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * desc->natts);
	ExecStoreVirtualTuple(slot);
	target->nbuffered++;
	if (target->nbuffered == WRITER_BUFFERED_TUPLES)
		flush_target(target, estate, cid);
}

static void
close_targets(List *targets, EState *estate, CommandId cid)
{
	ListCell   *lc;

	foreach(lc, targets)
	{
		InsertTarget *target = (InsertTarget *) lfirst(lc);

		flush_target(target, estate, cid);
		ExecCloseIndices(target->rri);
		table_finish_bulk_insert(target->rel, 0);
		FreeBulkInsertState(target->bistate);
		for (int i = 0; i < target->nslots_created; i++)
			ExecDropSingleTupleTableSlot(target->slots[i]);
		table_close(target->rel, NoLock);
	}
}

static void
parent_mismatch(WriterState *ws, const DecodedBlock *block, const uint8 *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("parent hash mismatch at block " INT64_FORMAT " of chain \"%s\"",
					block->number, ws->name),
			 errdetail("Block " INT64_FORMAT " names parent %s, but block " INT64_FORMAT " was stored with hash %s.",
					   block->number, eth_bytes_to_hex(block->parent_hash, 32),
					   block->number - 1, eth_bytes_to_hex(expected, 32))));
}

/*
 * Follow the pending ranges (and "own", a committed range not announced
 * yet, if given) that continue the checkpoint (*next, hash): move it past
 * each, checking that the range's first block names the checkpoint's hash
 * as its parent.
 */
static void
merge_pending(WriterState *ws, int64 *next, uint8 *hash, bool *have_hash,
			  const PendingRange *own)
{
	PendingRange ranges[ETHINDEX_MAX_PENDING_RANGES + 1];
	int			n;
	bool		found;

	SpinLockAcquire(&ws->slot->mutex);
	n = ws->slot->npending;
	memcpy(ranges, ws->slot->pending, sizeof(PendingRange) * n);
	SpinLockRelease(&ws->slot->mutex);
	if (own != NULL)
		ranges[n++] = *own;

	do
	{
		found = false;
		for (int i = 0; i < n; i++)
		{
			if (ranges[i].first != *next)
				continue;
			if (*have_hash && memcmp(ranges[i].first_parent_hash, hash, 32) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("parent hash mismatch at block " INT64_FORMAT " of chain \"%s\"",
								ranges[i].first, ws->name),
						 errdetail("Block " INT64_FORMAT " names parent %s, but block " INT64_FORMAT " was stored with hash %s.",
								   ranges[i].first, eth_bytes_to_hex(ranges[i].first_parent_hash, 32),
								   ranges[i].first - 1, eth_bytes_to_hex(hash, 32))));
			*next = ranges[i].last + 1;
			memcpy(hash, ranges[i].last_hash, 32);
			*have_hash = true;
			found = true;
			break;
		}
	} while (found);
}

/* Is there a pending range starting at the checkpoint?  Spinlock held. */
static bool
checkpoint_can_move(ChainSlot *slot)
{
	if (slot->checkpoint_next < 0)
		return false;
	for (int i = 0; i < slot->npending; i++)
		if (slot->pending[i].first == slot->checkpoint_next)
			return true;
	return false;
}

/*
 * The checkpoint was committed at "next": publish it, forget the pending
 * ranges below it, and tell whether another range continues it.
 */
static bool
publish_checkpoint(WriterState *ws, int64 next)
{
	ChainSlot  *slot = ws->slot;
	bool		can_move;
	int			kept = 0;

	SpinLockAcquire(&slot->mutex);
	slot->checkpoint_next = Max(slot->checkpoint_next, next);
	slot->stored_through = slot->checkpoint_next - 1;
	for (int i = 0; i < slot->npending; i++)
		if (slot->pending[i].last >= slot->checkpoint_next)
			slot->pending[kept++] = slot->pending[i];
	slot->npending = kept;
	can_move = checkpoint_can_move(slot);
	SpinLockRelease(&slot->mutex);
	return can_move;
}

/* Remember that this worker committed a move of the checkpoint. */
static void
note_move(WriterState *ws, int64 old_next, int64 new_next)
{
	if (new_next <= old_next)
		return;
	if (ws->moved_from < 0 || old_next < ws->moved_from)
		ws->moved_from = old_next;
	ws->moved_to = Max(ws->moved_to, new_next);
}

/*
 * After this worker's moves of the checkpoint (and only then, so that no
 * pending range waits for an index build): build the deferred indexes of
 * the partitions the checkpoint passed.
 */
static void
index_passed_partitions(WriterState *ws)
{
	int64		from = ws->moved_from;
	int64		to = ws->moved_to;

	ws->moved_from = ws->moved_to = -1;
	if (from >= 0 && from / ws->partition_size != to / ws->partition_size)
		index_partitions(ws, to, false);
}

typedef struct CheckpointMove
{
	const PendingRange *own;	/* a committed, unannounced range, or NULL */
	int64		old_next;
	int64		new_next;
} CheckpointMove;

static void
move_checkpoint_work(WriterState *ws, void *arg)
{
	CheckpointMove *move = (CheckpointMove *) arg;
	Checkpoint	cp;
	int64		next;
	uint8		hash[32];
	bool		have_hash;

	read_checkpoint(ws, &cp, true);
	next = cp.next_block;
	memcpy(hash, cp.last_hash, 32);
	have_hash = cp.have_hash;
	merge_pending(ws, &next, hash, &have_hash, move->own);
	if (next != cp.next_block)
		write_checkpoint(ws, next, hash);
	move->old_next = cp.next_block;
	move->new_next = next;
}

/*
 * Move the checkpoint once, in a transaction of its own, past the pending
 * ranges (and "own") that continue it; tell whether another range continues
 * it then.
 */
static bool
move_checkpoint_once(WriterState *ws, const PendingRange *own)
{
	CheckpointMove move;

	move.own = own;
	run_in_transaction(ws, "moving the checkpoint", move_checkpoint_work, &move);
	note_move(ws, move.old_next, move.new_next);
	return publish_checkpoint(ws, move.new_next);
}

/*
 * Announce a range committed above the checkpoint; tell whether a pending
 * range (this one or another) now continues the checkpoint.
 *
 * While the table of pending ranges is full, wait, unless the checkpoint
 * has come to this very range (its writer committed the batch before and
 * found the table full too): then move the checkpoint over it directly,
 * since nobody else can.
 */
static bool
announce_pending(WriterState *ws, const PendingRange *own)
{
	ChainSlot  *slot = ws->slot;

	for (;;)
	{
		bool		can_move;
		bool		at_checkpoint;

		SpinLockAcquire(&slot->mutex);
		if (slot->npending < Min(ethindex_max_pending_ranges, ETHINDEX_MAX_PENDING_RANGES))
		{
			slot->pending[slot->npending++] = *own;
			can_move = checkpoint_can_move(slot);
			SpinLockRelease(&slot->mutex);
			return can_move;
		}
		at_checkpoint = slot->checkpoint_next == own->first;
		SpinLockRelease(&slot->mutex);

		if (at_checkpoint)
			return move_checkpoint_once(ws, own);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Store a run of consecutive decoded blocks in one transaction; move the
 * checkpoint in it if the run starts at the checkpoint.
 */
static void
store_batch(WriterState *ws, DecodedBlock *blocks, int nblocks)
{
	Checkpoint	cp;
	int			first = 0;
	int64		transactions = 0;
	List	   *targets = NIL;
	EState	   *estate;
	CommandId	cid;
	MemoryContext batch_context = CurrentMemoryContext;
	const DecodedBlock *last = &blocks[nblocks - 1];
	bool		in_order;
	int64		new_next = 0;
	uint8		new_hash[32];
	bool		have_hash = true;
	bool		can_move;

	/* every row must be of the chain the workers were started for */
	for (int i = 0; i < nblocks; i++)
		if (DatumGetInt64(blocks[i].tables[ETH_TABLE_BLOCKS].values[BLK_CHAIN_ID]) != ws->chain_id)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("block " INT64_FORMAT " was decoded for chain id " INT64_FORMAT ", but chain \"%s\" has chain id " INT64_FORMAT,
							blocks[i].number,
							DatumGetInt64(blocks[i].tables[ETH_TABLE_BLOCKS].values[BLK_CHAIN_ID]),
							ws->name, ws->chain_id),
					 errhint("The chain was registered again while its workers ran; they restart.")));
	/* the queue delivers runs of consecutive, linked blocks */
	for (int i = 1; i < nblocks; i++)
	{
		if (blocks[i].number != blocks[i - 1].number + 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("block " INT64_FORMAT " of chain \"%s\" follows block " INT64_FORMAT " in the queue",
							blocks[i].number, ws->name, blocks[i - 1].number)));
		if (memcmp(blocks[i].parent_hash, blocks[i - 1].hash, 32) != 0)
			parent_mismatch(ws, &blocks[i], blocks[i - 1].hash);
	}

	ensure_partitions(ws, blocks[0].number, last->number);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	MemoryContextSwitchTo(batch_context);
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "storing blocks");

	/* blocks a previous run already stored are skipped */
	read_checkpoint(ws, &cp, false);
	MemoryContextSwitchTo(batch_context);
	while (first < nblocks && blocks[first].number < cp.next_block)
		first++;
	if (first == nblocks)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(batch_context);
		pgstat_report_activity(STATE_IDLE, NULL);
		return;
	}
	for (int i = first; i < nblocks; i++)
		transactions += blocks[i].transaction_count;

	estate = CreateExecutorState();
	cid = GetCurrentCommandId(true);
	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		for (int i = first; i < nblocks; i++)
		{
			DecodedRows *rows = &blocks[i].tables[t];
			InsertTarget *target;

			if (rows->nrows == 0)
				continue;
			target = get_target(ws, &targets, (EthTable) t, blocks[i].number);
			for (int r = 0; r < rows->nrows; r++)
				add_row(ws, target, estate, cid,
						&rows->values[r * rows->natts],
						&rows->nulls[r * rows->natts],
						blocks[i].number);
		}
	}
	close_targets(targets, estate, cid);
	FreeExecutorState(estate);

	/* now serialize with the other writers for the checkpoint */
	read_checkpoint(ws, &cp, true);
	MemoryContextSwitchTo(batch_context);
	if (cp.next_block > blocks[first].number)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("block " INT64_FORMAT " of chain \"%s\" was stored twice",
						blocks[first].number, ws->name),
				 errdetail("The checkpoint moved to block " INT64_FORMAT " while this insert worker stored it.",
						   cp.next_block)));
	in_order = cp.next_block == blocks[first].number;
	if (in_order)
	{
		if (cp.have_hash && memcmp(blocks[first].parent_hash, cp.last_hash, 32) != 0)
			parent_mismatch(ws, &blocks[first], cp.last_hash);
		new_next = last->number + 1;
		memcpy(new_hash, last->hash, 32);
		merge_pending(ws, &new_next, new_hash, &have_hash, NULL);
		write_checkpoint(ws, new_next, new_hash);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(batch_context);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* only now, committed, may the batch count for the checkpoint */
	chain_record_commit(ws->slot, nblocks - first, (int) transactions);
	if (in_order)
	{
		note_move(ws, cp.next_block, new_next);
		can_move = publish_checkpoint(ws, new_next);
	}
	else
	{
		PendingRange own;

		elog(DEBUG1, "ethindex chain \"%s\": insert worker %d committed blocks " INT64_FORMAT " to " INT64_FORMAT " ahead of the checkpoint",
			 ws->name, ws->index, blocks[first].number, last->number);
		own.first = blocks[first].number;
		own.last = last->number;
		memcpy(own.first_parent_hash, blocks[first].parent_hash, 32);
		memcpy(own.last_hash, last->hash, 32);
		can_move = announce_pending(ws, &own);
	}
	while (can_move)
		can_move = move_checkpoint_once(ws, NULL);
	index_passed_partitions(ws);
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

/*
 * Take a run of up to ethindex.writer_batch_blocks consecutive records;
 * returns 0 if none came within a second.
 */
static int
take_batch(WriterState *ws, DecodedBlock **blocks_out)
{
	int			max_blocks = ethindex_writer_batch_blocks;
	DecodedBlock *blocks = palloc(sizeof(DecodedBlock) * max_blocks);
	char	  **records = palloc(sizeof(char *) * max_blocks);
	Size	   *lens = palloc(sizeof(Size) * max_blocks);
	int			nblocks;

	nblocks = queue_take_batch(&ws->slot->queue, ws->ring, max_blocks,
							   WRITER_BATCH_BYTES, records, lens, 1000);
	for (int i = 0; i < nblocks; i++)
		blockrec_read(records[i], lens[i], &blocks[i]);
	*blocks_out = blocks;
	return nblocks;
}

static void
read_start_work(WriterState *ws, void *arg)
{
	Checkpoint *cp = (Checkpoint *) arg;

	read_config_work(ws, NULL);
	if (ws->have_config)
		read_checkpoint(ws, cp, false);
}

/*
 * Read the chain's configuration, once its chain id is known (a chain
 * registered without one learns it from the node in the fetcher); the first
 * insert worker also indexes partitions that a previous run completed but
 * did not index.  With "required", a missing chain id is an error (a batch
 * arrived, so the fetcher must have stored it).
 */
static void
writer_load_config(WriterState *ws, bool required)
{
	Checkpoint	cp;

	run_in_transaction(ws, "reading chain configuration", read_start_work, &cp);
	if (!ws->have_config)
	{
		if (required)
			elog(ERROR, "chain \"%s\" has no chain id yet", ws->name);
		return;
	}
	(void) publish_checkpoint(ws, cp.next_block);
	if (ws->index == 0)
		index_partitions(ws, cp.next_block, false);
}

/* Take batches from the queue and store them, until an error or a signal. */
static void
writer_loop(WriterState *ws, MemoryContext writer_context)
{
	TimestampTz progress_at = GetCurrentTimestamp();
	int64		seen_next = -1;
	bool		idle_indexed = false;

	/* the first worker finishes what an earlier run left unindexed */
	if (ws->index == 0)
		writer_load_config(ws, false);

	for (;;)
	{
		DecodedBlock *blocks;
		int			nblocks;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(ws->batch_context);
		MemoryContextSwitchTo(ws->batch_context);
		nblocks = take_batch(ws, &blocks);
		if (nblocks > 0)
		{
			if (!ws->have_config)
				writer_load_config(ws, true);
			store_batch(ws, blocks, nblocks);
		}
		else if (ws->index == 0 && ws->have_config)
		{
			/*
			 * The chain is idle when the checkpoint has not moved and the
			 * queue stayed empty for a while (the node stalls, or the chain
			 * caught up inside a partition created for backfill): then index
			 * what has been stored, the partial partition too.
			 */
			int64		next;
			int32		queued;
			Size		queued_bytes;

			SpinLockAcquire(&ws->slot->mutex);
			next = ws->slot->checkpoint_next;
			SpinLockRelease(&ws->slot->mutex);
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
				index_partitions(ws, next, true);
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

	BackgroundWorkerInitializeConnection(ethindex_database, NULL, 0);
	pgstat_report_appname(psprintf("ethindex writer %d %s", ws.index, ws.name));

	/*
	 * Timeouts set for the database or role would abort index builds and
	 * waits for the checkpoint row midway, restarting the chain in a loop.
	 */
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);

	writer_context = AllocSetContextCreate(TopMemoryContext, "ethindex writer",
										   ALLOCSET_DEFAULT_SIZES);
	ws.batch_context = AllocSetContextCreate(writer_context, "ethindex writer batch",
											 ALLOCSET_DEFAULT_SIZES);

	PG_TRY();
	{
		MemoryContextSwitchTo(writer_context);
		verify_schema(&ws);

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
