/*-------------------------------------------------------------------------
 *
 * insert.c
 *	  Storing the rows of decoded blocks with heap multi-insert, the path
 *	  COPY FROM uses, inside the caller's transaction.
 *
 *	  Per partition a buffer of slots and a BulkInsertState, flushed with
 *	  table_multi_insert(), then index entries for the flushed tuples (if
 *	  the partition has indexes yet).  The partition of a row is known from
 *	  its block number (partitions are named after their first block, see
 *	  ethindex._ensure_partitions()), so no tuple routing is needed.  The
 *	  partitions must exist (partitions.c creates them ahead of the rows).
 *
 *	  Before storing anything an insert worker checks that the catalog has
 *	  the column layout the decoder produces (schema.h).
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/insert.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "writer.h"

/* Tuples buffered per partition before a multi-insert */
#define INSERT_BUFFERED_TUPLES	1000

/* A partition being written in the current transaction */
typedef struct InsertTarget
{
	EthTable	table;
	int64		first_block;	/* the partition's lower bound */
	Relation	rel;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	TupleDesc	slot_desc;		/* unpinned copy of the partition's descriptor */
	TupleTableSlot *slots[INSERT_BUFFERED_TUPLES];
	int			nslots_created;
	int			nbuffered;
} InsertTarget;

/*
 * Check that the catalog's tables have the column layout the decoder
 * produces (schema.h), and remember the NOT NULL columns.
 */
void
insert_verify_schema(WriterState *ws)
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
	if (target->nbuffered == INSERT_BUFFERED_TUPLES)
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

/*
 * Insert the rows of consecutive blocks, table after table, in the current
 * transaction.
 */
void
insert_block_rows(WriterState *ws, DecodedBlock *blocks, int nblocks)
{
	List	   *targets = NIL;
	EState	   *estate = CreateExecutorState();
	CommandId	cid = GetCurrentCommandId(true);

	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		for (int i = 0; i < nblocks; i++)
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
}
