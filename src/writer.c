/*-------------------------------------------------------------------------
 *
 * writer.c
 *	  The per-chain writer background worker: takes decoded blocks from the
 *	  chain's queue and stores a batch of them, with the chain's progress
 *	  checkpoint, in one transaction.
 *
 *	  Rows go in with heap multi-insert, the path COPY FROM uses: per
 *	  partition a buffer of slots and a BulkInsertState, flushed with
 *	  table_multi_insert(), then index entries for the flushed tuples.  The
 *	  writer knows which partition each row belongs to (partitions are named
 *	  after their first block, see _ensure_partitions()), so no tuple
 *	  routing is needed.  Partitions are created in a transaction of their
 *	  own, one partition ahead of the rows.
 *
 *	  Correctness rests on the progress row: the batch must start at
 *	  chains.next_block and the first block's parent hash must equal
 *	  chains.last_hash; both are read FOR UPDATE in the same transaction
 *	  that inserts the rows and moves the checkpoint.  A crash at any point
 *	  leaves either all of a batch or none of it.
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

/* A partition being written in the current transaction */
typedef struct InsertTarget
{
	EthTable	table;
	int64		first_block;	/* the partition's lower bound */
	Relation	rel;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	TupleTableSlot *slots[WRITER_BUFFERED_TUPLES];
	int			nslots_created;
	int			nbuffered;
} InsertTarget;

typedef struct WriterState
{
	ChainSlot  *slot;
	char	   *ring;
	char		name[NAMEDATALEN];
	Oid			namespace_oid;
	bool		notnull[ETH_NUM_TABLES][64];
	int64		partitions_through;	/* partitions exist up to this block */
	MemoryContext batch_context;
} WriterState;

/* Progress row of the chain, read FOR UPDATE */
typedef struct Progress
{
	int64		chain_id;
	int64		next_block;
	bool		have_hash;
	uint8		last_hash[32];
	int64		partition_size;
} Progress;

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

static void
read_progress(WriterState *ws, Progress *progress)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	Datum		hash;

	args[0] = CStringGetTextDatum(ws->name);
	if (SPI_execute_with_args("SELECT chain_id, next_block, last_hash, partition_size "
							  "FROM ethindex.chains WHERE name = $1 FOR UPDATE",
							  1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read progress of chain \"%s\"", ws->name);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("chain \"%s\" does not exist", ws->name)));
	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	progress->chain_id = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	if (isnull)
		elog(ERROR, "chain \"%s\" has no chain id yet", ws->name);
	progress->next_block = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 2, &isnull));
	hash = SPI_getbinval(tuple, tupdesc, 3, &isnull);
	progress->have_hash = !isnull;
	if (!isnull)
	{
		bytea	   *b = DatumGetByteaPP(hash);

		if (VARSIZE_ANY_EXHDR(b) != 32)
			elog(ERROR, "stored last_hash of chain \"%s\" is not 32 bytes", ws->name);
		memcpy(progress->last_hash, VARDATA_ANY(b), 32);
	}
	progress->partition_size = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 4, &isnull));
}

static void
write_progress(WriterState *ws, int64 next_block, const uint8 *hash)
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
		elog(ERROR, "could not update progress of chain \"%s\"", ws->name);
}

/*
 * Make sure partitions exist up to and including "through" plus one more
 * partition, in a transaction of its own so that the lock on the parent
 * tables is held only briefly.
 */
static void
ensure_partitions(WriterState *ws, int64 chain_id, int64 partition_size,
				  int64 from, int64 through)
{
	Oid			argtypes[4] = {INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		args[4];

	if (through <= ws->partitions_through)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "creating partitions");

	args[0] = Int64GetDatum(chain_id);
	args[1] = Int64GetDatum(partition_size);
	args[2] = Int64GetDatum(from);
	args[3] = Int64GetDatum(through + partition_size);
	if (SPI_execute_with_args("SELECT ethindex._ensure_partitions($1, $2, $3, $4)",
							  4, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not create partitions for chain \"%s\"", ws->name);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* the last partition created ends at this block */
	ws->partitions_through = ((through + partition_size) / partition_size + 1) * partition_size - 1;
}

/* The partition of "table" holding "block", opened for this transaction. */
static InsertTarget *
get_target(WriterState *ws, List **targets, EthTable table,
		   const Progress *progress, int64 block)
{
	int64		first = (block / progress->partition_size) * progress->partition_size;
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
					progress->chain_id, (long long) first);
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
		target->slots[target->nslots_created++] = table_slot_create(target->rel, NULL);
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

/* Read chain_id and partition_size, outside the batch's transaction. */
static void
read_partitioning(WriterState *ws, Progress *progress)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	read_progress(ws, progress);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Store decoded blocks (consecutive, in order) in one transaction together
 * with the progress checkpoint.
 */
static void
store_batch(WriterState *ws, DecodedBlock *blocks, int nblocks)
{
	Progress	progress;
	int			first = 0;
	int64		transactions = 0;
	const uint8 *prev;
	List	   *targets = NIL;
	EState	   *estate;
	CommandId	cid;
	MemoryContext batch_context = CurrentMemoryContext;

	if (ws->partitions_through < blocks[nblocks - 1].number)
	{
		read_partitioning(ws, &progress);
		MemoryContextSwitchTo(batch_context);
		ensure_partitions(ws, progress.chain_id, progress.partition_size,
						  blocks[0].number, blocks[nblocks - 1].number);
		MemoryContextSwitchTo(batch_context);
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	MemoryContextSwitchTo(batch_context);
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "storing blocks");

	read_progress(ws, &progress);
	/* SPI calls leave SPI's procedure context current: work in ours */
	MemoryContextSwitchTo(batch_context);

	/* every row must be of the chain the checkpoint belongs to */
	for (int i = 0; i < nblocks; i++)
		if (DatumGetInt64(blocks[i].tables[ETH_TABLE_BLOCKS].values[BLK_CHAIN_ID]) != progress.chain_id)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("block " INT64_FORMAT " was decoded for chain id " INT64_FORMAT ", but chain \"%s\" has chain id " INT64_FORMAT,
							blocks[i].number,
							DatumGetInt64(blocks[i].tables[ETH_TABLE_BLOCKS].values[BLK_CHAIN_ID]),
							ws->name, progress.chain_id),
					 errhint("The chain was registered again while its workers ran; they restart.")));

	/* blocks a previous writer already stored are skipped */
	while (first < nblocks && blocks[first].number < progress.next_block)
		first++;
	if (first < nblocks)
	{
		if (blocks[first].number != progress.next_block)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("block " INT64_FORMAT " of chain \"%s\" arrived, but block " INT64_FORMAT " is the next to store",
							blocks[first].number, ws->name, progress.next_block)));

		prev = progress.have_hash ? progress.last_hash : NULL;
		for (int i = first; i < nblocks; i++)
		{
			if (i > first && blocks[i].number != blocks[i - 1].number + 1)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("block " INT64_FORMAT " of chain \"%s\" follows block " INT64_FORMAT " in the queue",
								blocks[i].number, ws->name, blocks[i - 1].number)));
			if (prev != NULL && memcmp(blocks[i].parent_hash, prev, 32) != 0)
				parent_mismatch(ws, &blocks[i], prev);
			prev = blocks[i].hash;
			transactions += blocks[i].transaction_count;
		}

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
				target = get_target(ws, &targets, (EthTable) t, &progress, blocks[i].number);
				for (int r = 0; r < rows->nrows; r++)
					add_row(ws, target, estate, cid,
							&rows->values[r * rows->natts],
							&rows->nulls[r * rows->natts],
							blocks[i].number);
			}
		}
		close_targets(targets, estate, cid);
		FreeExecutorState(estate);

		write_progress(ws, blocks[nblocks - 1].number + 1, blocks[nblocks - 1].hash);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(batch_context);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (first < nblocks)
		chain_record_commit(ws->slot, blocks[nblocks - 1].number,
							nblocks - first, (int) transactions);
}

static void
writer_detach(int code, Datum arg)
{
	ChainSlot  *slot = (ChainSlot *) DatumGetPointer(arg);

	SpinLockAcquire(&slot->mutex);
	slot->writer_pid = 0;
	SpinLockRelease(&slot->mutex);
}

/* Take up to ethindex.writer_batch_blocks records; NULL count if none came. */
static int
take_batch(WriterState *ws, DecodedBlock **blocks_out)
{
	int			max_blocks = ethindex_writer_batch_blocks;
	DecodedBlock *blocks = palloc(sizeof(DecodedBlock) * max_blocks);
	int			nblocks = 0;
	Size		bytes = 0;

	while (nblocks < max_blocks && bytes < WRITER_BATCH_BYTES)
	{
		Size		len;
		char	   *record = queue_take(&ws->slot->queue, ws->ring, &len,
										nblocks == 0 ? 1000 : 0);

		if (record == NULL)
			break;
		blockrec_read(record, len, &blocks[nblocks]);
		nblocks++;
		bytes += len;
	}
	*blocks_out = blocks;
	return nblocks;
}

void
ethindex_writer_main(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	WriterState ws;
	MemoryContext writer_context;

	memset(&ws, 0, sizeof(ws));
	strlcpy(ws.name, ((ChainWorkerArgs *) MyBgworkerEntry->bgw_extra)->name, sizeof(ws.name));
	ws.partitions_through = -1;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	ws.slot = chain_slot_attach(slotno, MyBgworkerEntry->bgw_extra);
	ws.ring = ethindex_queue_buffer(slotno);

	SpinLockAcquire(&ws.slot->mutex);
	ws.slot->writer_pid = MyProcPid;
	ws.slot->writer_started_at = GetCurrentTimestamp();
	SpinLockRelease(&ws.slot->mutex);
	on_shmem_exit(writer_detach, PointerGetDatum(ws.slot));

	BackgroundWorkerInitializeConnection(ethindex_database, NULL, 0);
	pgstat_report_appname(psprintf("ethindex writer %s", ws.name));

	writer_context = AllocSetContextCreate(TopMemoryContext, "ethindex writer",
										   ALLOCSET_DEFAULT_SIZES);
	ws.batch_context = AllocSetContextCreate(writer_context, "ethindex writer batch",
											 ALLOCSET_DEFAULT_SIZES);

	PG_TRY();
	{
		verify_schema(&ws);

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

			MemoryContextReset(ws.batch_context);
			MemoryContextSwitchTo(ws.batch_context);
			nblocks = take_batch(&ws, &blocks);
			if (nblocks > 0)
				store_batch(&ws, blocks, nblocks);
			MemoryContextSwitchTo(writer_context);
		}
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
