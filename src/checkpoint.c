/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  The checkpoint of a chain (chains.next_block and last_hash: every block
 *	  below next_block is stored, the last one with hash last_hash) as its
 *	  insert workers move it, roll it back, and announce it.
 *
 *	  Batches commit out of order during backfill, in block order at the
 *	  head, and the checkpoint stays contiguous:
 *	    - a batch that starts at the checkpoint moves it, in the same
 *	      transaction as its rows, past itself and past every batch already
 *	      committed right after it (the "pending ranges" of the chain's
 *	      slot), checking parent hashes at each junction;
 *	    - a batch that starts above the checkpoint commits its rows only and
 *	      is then announced as a pending range (backfill only: a batch with
 *	      blocks fetched at the head, BLOCK_ORDERED, first waits until the
 *	      checkpoint reaches it, so once a chain has caught up no row above
 *	      the checkpoint is visible);
 *	    - the announcement and every move of the checkpoint are followed, in
 *	      one hold of the slot's commit_lock, by a check whether a pending
 *	      range now starts at the checkpoint; whoever sees one moves the
 *	      checkpoint in a small transaction of its own.  Of two workers
 *	      racing, at least the later one sees the other's change, so no
 *	      range is forgotten;
 *	    - when the table of pending ranges is full, a worker waits to
 *	      announce, unless the checkpoint has reached its own range: then it
 *	      moves the checkpoint over it itself (no one else knows of it).
 *	  The progress row is locked FOR UPDATE only at the end of a batch, so
 *	  the workers insert in parallel and serialize only for the checkpoint.
 *	  A range is announced only after its transaction committed, so the
 *	  checkpoint never covers uncommitted rows.  Waits sleep on the slot's
 *	  commit_cv; see shared.h for the protocol.
 *
 *	  Every move of the checkpoint sends a notification on channel
 *	  ethindex_blocks at commit, and records how far the node's "safe" and
 *	  "finalized" blocks cover what is stored (chains.safe_through,
 *	  finalized_through).
 *
 *	  Rollback: the fetcher queues a RollbackRequest once everything it
 *	  queued before is stored.  The worker that takes it deletes the rows of
 *	  every block above the fork block from all data tables (rows committed
 *	  above the checkpoint included), records the reorganization in
 *	  ethindex.reorgs, rewinds the checkpoint to the fork block and sends a
 *	  notification on ethindex_reorgs, all in one transaction.  It never
 *	  crosses the finalized block.
 *
 *	  At start, insert worker 0 deletes the rows an earlier run committed
 *	  above the checkpoint (out-of-order batches whose predecessors were
 *	  lost in a crash or a stop), stores the chain id the fetcher learned
 *	  for a chain registered without one, and only then lets the fetcher
 *	  start (checkpoint_start).
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/checkpoint.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "spiutil.h"
#include "writer.h"

/* the data tables whose rows hang off a block, with their block column */
static const char *const row_tables[] = {"transactions", "logs", "withdrawals"};

static bytea *
hash_bytea(const uint8 *hash)
{
	bytea	   *b = palloc(VARHDRSZ + 32);

	SET_VARSIZE(b, VARHDRSZ + 32);
	memcpy(VARDATA(b), hash, 32);
	return b;
}

void
parent_mismatch(WriterState *ws, int64 number, const uint8 *parent, const uint8 *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("parent hash mismatch at block " INT64_FORMAT " of chain \"%s\"",
					number, ws->name),
			 errdetail("Block " INT64_FORMAT " names parent %s, but block " INT64_FORMAT " was stored with hash %s.",
					   number, eth_bytes_to_hex(parent, 32),
					   number - 1, eth_bytes_to_hex(expected, 32))));
}

/*
 * Read the checkpoint, FOR UPDATE if "lock": the lock serializes the moves
 * of the checkpoint between the insert workers.
 */
void
checkpoint_read(WriterState *ws, Checkpoint *cp, bool lock)
{
	bool		isnull;
	int64		chain_id;

	spi_read_chain(lock ?
				   "SELECT chain_id, next_block, last_hash, finalized_through "
				   "FROM ethindex.chains WHERE name = $1 FOR UPDATE" :
				   "SELECT chain_id, next_block, last_hash, finalized_through "
				   "FROM ethindex.chains WHERE name = $1",
				   ws->name, lock);
	chain_id = spi_get_int64(0, 1, &isnull);
	if (isnull)
		elog(ERROR, "chain \"%s\" has no chain id yet", ws->name);
	if (chain_id != ws->chain_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("chain \"%s\" now has chain id " INT64_FORMAT ", its workers started with chain id " INT64_FORMAT,
						ws->name, chain_id, ws->chain_id),
				 errhint("The chain was registered again while its workers ran; they restart.")));
	cp->next_block = spi_get_int64(0, 2, &isnull);
	cp->have_hash = spi_get_hash(0, 3, cp->last_hash);
	cp->finalized_through = spi_get_int64(0, 4, &isnull);
	if (isnull)
		cp->finalized_through = -1;
}

/* Tell listeners, at commit, that blocks first..last are stored. */
static void
notify_blocks(WriterState *ws, int64 first, int64 last, const uint8 *last_hash)
{
	char	   *payload;

	payload = psprintf("{\"chain\":\"%s\",\"chain_id\":" INT64_FORMAT ",\"first\":" INT64_FORMAT ",\"last\":" INT64_FORMAT ",\"last_hash\":\"%s\"}",
					   ws->name, ws->chain_id, first, last, eth_bytes_to_hex(last_hash, 32));
	Async_Notify("ethindex_blocks", payload);
}

/*
 * Move the checkpoint from old_next to new_next (the last block stored
 * has hash "hash"), with the finality marks the fetcher last published,
 * in the current transaction, which holds the checkpoint row's lock.
 */
static void
checkpoint_write(WriterState *ws, int64 old_next, int64 new_next, const uint8 *hash)
{
	Oid			argtypes[5] = {INT8OID, BYTEAOID, INT8OID, INT8OID, TEXTOID};
	Datum		args[5];

	SpinLockAcquire(&ws->slot->mutex);
	args[2] = Int64GetDatum(ws->slot->node_safe);
	args[3] = Int64GetDatum(ws->slot->node_finalized);
	SpinLockRelease(&ws->slot->mutex);
	args[0] = Int64GetDatum(new_next);
	args[1] = PointerGetDatum(hash_bytea(hash));
	args[4] = CStringGetTextDatum(ws->name);
	if (spi_run("UPDATE ethindex.chains SET next_block = $1, last_hash = $2, "
				"safe_through = CASE WHEN least($3, $1 - 1) >= start_block "
				"THEN greatest(safe_through, least($3, $1 - 1)) ELSE safe_through END, "
				"finalized_through = CASE WHEN least($4, $1 - 1) >= start_block "
				"THEN greatest(finalized_through, least($4, $1 - 1)) ELSE finalized_through END "
				"WHERE name = $5",
				5, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "could not update the checkpoint of chain \"%s\"", ws->name);
	if (new_next > old_next)
		notify_blocks(ws, old_next, new_next - 1, hash);
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

	LWLockAcquire(&ws->slot->commit_lock, LW_SHARED);
	n = ws->slot->npending;
	memcpy(ranges, ws->slot->pending, sizeof(PendingRange) * n);
	LWLockRelease(&ws->slot->commit_lock);
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
				parent_mismatch(ws, ranges[i].first, ranges[i].first_parent_hash, hash);
			*next = ranges[i].last + 1;
			memcpy(hash, ranges[i].last_hash, 32);
			*have_hash = true;
			found = true;
			break;
		}
	} while (found);
}

/* Is there a pending range starting at the checkpoint?  commit_lock held. */
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
 * The checkpoint was committed at "next": publish it (rewinding it too, for
 * a rollback), forget the pending ranges below it, wake the waiters, and
 * tell whether another range continues it.
 */
static bool
publish_checkpoint(WriterState *ws, int64 next, bool rewind)
{
	ChainSlot  *slot = ws->slot;
	bool		can_move;
	int			kept = 0;

	LWLockAcquire(&slot->commit_lock, LW_EXCLUSIVE);
	if (rewind)
	{
		slot->checkpoint_next = next;
		slot->npending = 0;
	}
	else
		slot->checkpoint_next = Max(slot->checkpoint_next, next);
	for (int i = 0; i < slot->npending; i++)
		if (slot->pending[i].last >= slot->checkpoint_next)
			slot->pending[kept++] = slot->pending[i];
	slot->npending = kept;
	can_move = checkpoint_can_move(slot);
	LWLockRelease(&slot->commit_lock);
	ConditionVariableBroadcast(&slot->commit_cv);
	return can_move;
}

/* The checkpoint as last published (-1 unknown). */
int64
checkpoint_published(WriterState *ws)
{
	int64		next;

	LWLockAcquire(&ws->slot->commit_lock, LW_SHARED);
	next = ws->slot->checkpoint_next;
	LWLockRelease(&ws->slot->commit_lock);
	return next;
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

typedef struct CheckpointMove
{
	WriterState *ws;
	const PendingRange *own;	/* a committed, unannounced range, or NULL */
	int64		old_next;
	int64		new_next;
} CheckpointMove;

/*
 * In the transaction that holds the checkpoint row's lock: move the
 * checkpoint "cp" over the pending ranges (and "own") that continue it and
 * write it if it moved.  Returns the new next block.
 */
static int64
advance_checkpoint(WriterState *ws, const Checkpoint *cp, const PendingRange *own)
{
	int64		next = cp->next_block;
	uint8		hash[32];
	bool		have_hash = cp->have_hash;

	memcpy(hash, cp->last_hash, 32);
	merge_pending(ws, &next, hash, &have_hash, own);
	if (next != cp->next_block)
		checkpoint_write(ws, cp->next_block, next, hash);
	return next;
}

static void
move_checkpoint_work(void *arg)
{
	CheckpointMove *move = (CheckpointMove *) arg;
	Checkpoint	cp;

	checkpoint_read(move->ws, &cp, true);
	move->old_next = cp.next_block;
	move->new_next = advance_checkpoint(move->ws, &cp, move->own);
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

	move.ws = ws;
	move.own = own;
	run_in_transaction("moving the checkpoint", move_checkpoint_work, &move);
	note_move(ws, move.old_next, move.new_next);
	return publish_checkpoint(ws, move.new_next, false);
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
	bool		result;

	ConditionVariablePrepareToSleep(&slot->commit_cv);
	for (;;)
	{
		bool		at_checkpoint;

		LWLockAcquire(&slot->commit_lock, LW_EXCLUSIVE);
		if (slot->npending < Min(ethindex_max_pending_ranges, ETHINDEX_MAX_PENDING_RANGES))
		{
			slot->pending[slot->npending++] = *own;
			result = checkpoint_can_move(slot);
			LWLockRelease(&slot->commit_lock);
			break;
		}
		at_checkpoint = slot->checkpoint_next == own->first;
		LWLockRelease(&slot->commit_lock);

		if (at_checkpoint)
		{
			ConditionVariableCancelSleep();
			return move_checkpoint_once(ws, own);
		}
		ConditionVariableTimedSleep(&slot->commit_cv, 1000, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();
	return result;
}

/*
 * A batch with blocks fetched at the head commits in block order: wait
 * until the checkpoint reaches its first block.  The blocks before it are
 * held by other insert workers, which do not wait for this one.
 */
void
checkpoint_wait_turn(WriterState *ws, int64 first)
{
	ChainSlot  *slot = ws->slot;
	bool		reported = false;

	ConditionVariablePrepareToSleep(&slot->commit_cv);
	for (;;)
	{
		int64		next;

		LWLockAcquire(&slot->commit_lock, LW_SHARED);
		next = slot->checkpoint_next;
		LWLockRelease(&slot->commit_lock);
		if (next >= first)
			break;
		if (!reported)
		{
			pgstat_report_activity(STATE_RUNNING,
								   psprintf("waiting for the checkpoint to reach block " INT64_FORMAT, first));
			reported = true;
		}
		ConditionVariableTimedSleep(&slot->commit_cv, 1000, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();
	if (reported)
		pgstat_report_activity(STATE_RUNNING, "storing blocks");
}

/*
 * The end of a batch's transaction, after its rows are inserted: lock the
 * checkpoint row and, if the batch starts at the checkpoint, move it (with
 * the pending ranges that continue it).  What happened is left in *commit
 * for checkpoint_after_commit().
 */
void
checkpoint_commit_batch(WriterState *ws, DecodedBlock *blocks, int nblocks,
						BatchCommit *commit)
{
	Checkpoint	cp;
	DecodedBlock *first = &blocks[0];
	DecodedBlock *last = &blocks[nblocks - 1];

	checkpoint_read(ws, &cp, true);
	if (cp.next_block > first->number)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("block " INT64_FORMAT " of chain \"%s\" was stored twice",
						first->number, ws->name),
				 errdetail("The checkpoint moved to block " INT64_FORMAT " while this insert worker stored it.",
						   cp.next_block)));
	commit->range.first = first->number;
	commit->range.last = last->number;
	memcpy(commit->range.first_parent_hash, first->parent_hash, 32);
	memcpy(commit->range.last_hash, last->hash, 32);
	commit->old_next = cp.next_block;
	commit->in_order = cp.next_block == first->number;
	/* in order: the batch continues the checkpoint, like a pending range */
	commit->new_next = commit->in_order ?
		advance_checkpoint(ws, &cp, &commit->range) : cp.next_block;
}

/*
 * After a batch committed: publish the checkpoint it moved, or announce the
 * batch as a pending range, then move the checkpoint as long as a pending
 * range continues it.
 */
void
checkpoint_after_commit(WriterState *ws, const BatchCommit *commit)
{
	bool		can_move;

	if (commit->in_order)
	{
		note_move(ws, commit->old_next, commit->new_next);
		can_move = publish_checkpoint(ws, commit->new_next, false);
	}
	else
	{
		elog(DEBUG1, "ethindex chain \"%s\": insert worker %d committed blocks " INT64_FORMAT " to " INT64_FORMAT " ahead of the checkpoint",
			 ws->name, ws->index, commit->range.first, commit->range.last);
		can_move = announce_pending(ws, &commit->range);
	}
	while (can_move)
		can_move = move_checkpoint_once(ws, NULL);
}

/* ---- start-up ---------------------------------------------------------- */

typedef struct StartWork
{
	WriterState *ws;
	int64		learned_chain_id;	/* to store, 0 if the chain has one */
	Checkpoint *cp;
	int64		discarded;
} StartWork;

/* Store the chain id the fetcher learned; the registry's id must be free. */
static void
store_chain_id(WriterState *ws, int64 chain_id)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];

	args[0] = Int64GetDatum(chain_id);
	args[1] = CStringGetTextDatum(ws->name);
	spi_run("SELECT name FROM ethindex.chains WHERE chain_id = $1 AND name <> $2",
			2, argtypes, args, NULL, true, 1);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("chain \"%s\" reports chain id " INT64_FORMAT ", which chain \"%s\" already has",
						ws->name, chain_id,
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errhint("Fix the endpoints of one of the chains.")));
	/* the chain would start at its start_block and delete what is there */
	spi_run("SELECT 1 FROM ethindex.blocks WHERE chain_id = $1 LIMIT 1",
			1, argtypes, args, NULL, true, 1);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("chain \"%s\" reports chain id " INT64_FORMAT ", which has data from an earlier registration",
						ws->name, chain_id),
				 errhint("Register the chain again with chain_id => " INT64_FORMAT " and existing_data => 'continue' or 'drop'.",
						 chain_id)));
	spi_run("UPDATE ethindex.chains SET chain_id = $1 WHERE name = $2 AND chain_id IS NULL",
			2, argtypes, args, NULL, false, 0);
	ereport(LOG,
			(errmsg("ethindex chain \"%s\" has chain id " INT64_FORMAT " (from the node)",
					ws->name, chain_id)));
}

/*
 * Delete the rows of blocks at or above the checkpoint: batches an earlier
 * run committed ahead of the checkpoint and whose predecessors it lost.
 */
static int64
discard_above(WriterState *ws, int64 next_block)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	bool		isnull;

	args[0] = Int64GetDatum(ws->chain_id);
	args[1] = Int64GetDatum(next_block);
	spi_run("SELECT ethindex._discard_above_checkpoint($1, $2)",
			2, argtypes, args, NULL, false, 1);
	return spi_get_int64(0, 1, &isnull);
}

/*
 * Every partition of the chain id must hold partition_size blocks: rows are
 * put into the partition named after their block's range, which would
 * otherwise not be the one whose bounds hold them.
 */
static void
check_partition_size(WriterState *ws)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	bool		isnull;

	args[0] = Int64GetDatum(ws->chain_id);
	args[1] = Int64GetDatum(ws->partition_size);
	spi_run("SELECT last_block - first_block + 1 FROM ethindex.partitions "
			"WHERE chain_id = $1 AND (last_block - first_block + 1 <> $2 OR first_block % $2 <> 0)",
			2, argtypes, args, NULL, true, 1);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chain \"%s\" has partition_size " INT64_FORMAT ", but its chain id has partitions of " INT64_FORMAT " blocks",
						ws->name, ws->partition_size, spi_get_int64(0, 1, &isnull)),
				 errhint("Register the chain again with the partitions' size, or with existing_data => 'drop'.")));
}

static void
start_work(void *arg)
{
	StartWork  *work = (StartWork *) arg;
	WriterState *ws = work->ws;

	if (work->learned_chain_id != 0)
		store_chain_id(ws, work->learned_chain_id);
	checkpoint_read(ws, work->cp, true);
	check_partition_size(ws);
	work->discarded = discard_above(ws, work->cp->next_block);
}

/* Wait for the chain id the fetcher learns from the node. */
static int64
wait_learned_chain_id(WriterState *ws)
{
	ChainSlot  *slot = ws->slot;
	int64		chain_id;

	pgstat_report_activity(STATE_RUNNING, "waiting for the chain id from the node");
	ConditionVariablePrepareToSleep(&slot->commit_cv);
	for (;;)
	{
		LWLockAcquire(&slot->commit_lock, LW_SHARED);
		chain_id = slot->learned_chain_id;
		LWLockRelease(&slot->commit_lock);
		if (chain_id != 0)
			break;
		ConditionVariableTimedSleep(&slot->commit_cv, 1000, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();
	pgstat_report_activity(STATE_IDLE, NULL);
	return chain_id;
}

/*
 * Insert worker 0's start-up repair, before the fetcher may fetch: store
 * the chain id if the chain was registered without one (the fetcher learns
 * it from the node), delete what an earlier run committed above the
 * checkpoint, and publish the checkpoint with "ready".  ws->chain_id is 0
 * when the chain has no chain id yet.
 */
void
checkpoint_start(WriterState *ws, Checkpoint *cp)
{
	StartWork	work;

	work.ws = ws;
	work.cp = cp;
	work.learned_chain_id = 0;
	if (ws->chain_id == 0)
	{
		work.learned_chain_id = wait_learned_chain_id(ws);
		ws->chain_id = work.learned_chain_id;
	}
	run_in_transaction("deleting blocks above the checkpoint", start_work, &work);
	if (work.discarded > 0)
		ereport(LOG,
				(errmsg("ethindex chain \"%s\": discarded " INT64_FORMAT " blocks stored above the checkpoint at block " INT64_FORMAT,
						ws->name, work.discarded, cp->next_block),
				 errdetail("An earlier run committed them out of order and stopped before the blocks below them were stored; they are fetched again.")));

	LWLockAcquire(&ws->slot->commit_lock, LW_EXCLUSIVE);
	ws->slot->checkpoint_next = cp->next_block;
	ws->slot->npending = 0;
	ws->slot->ready = true;
	LWLockRelease(&ws->slot->commit_lock);
	ConditionVariableBroadcast(&ws->slot->commit_cv);
}

/* ---- rollback ---------------------------------------------------------- */

typedef struct RollbackWork
{
	WriterState *ws;
	const RollbackRequest *request;
	int64		reorg_id;		/* out */
	int64		deleted_blocks; /* out */
} RollbackWork;

static int
compare_int64_key(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* Tell listeners, at commit, about a reorganization. */
static void
notify_reorg(WriterState *ws, const RollbackRequest *rq, int64 reorg_id)
{
	char	   *payload;

	payload = psprintf("{\"chain\":\"%s\",\"chain_id\":" INT64_FORMAT ",\"reorg_id\":" INT64_FORMAT ",\"fork_block\":" INT64_FORMAT ",\"depth\":" INT64_FORMAT ",\"old_head\":" INT64_FORMAT ",\"old_head_hash\":\"%s\",\"new_head_hash\":\"%s\"}",
					   ws->name, ws->chain_id, reorg_id, rq->fork_block,
					   rq->old_head - rq->fork_block, rq->old_head,
					   eth_bytes_to_hex(rq->old_head_hash, 32),
					   eth_bytes_to_hex(rq->new_head_hash, 32));
	Async_Notify("ethindex_reorgs", payload);
}

/*
 * Delete the blocks above the fork block; returns their hashes in block
 * order as a bytea[] Datum, and their number in *count.
 */
static Datum
delete_blocks_above(WriterState *ws, int64 fork_block, int64 *count)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	int64	   *keys;
	Datum	   *hashes;
	uint64		n;

	args[0] = Int64GetDatum(ws->chain_id);
	args[1] = Int64GetDatum(fork_block);
	spi_run("DELETE FROM ethindex.blocks WHERE chain_id = $1 AND number > $2 "
			"RETURNING number, hash", 2, argtypes, args, NULL, false, 0);
	n = SPI_processed;
	/* pairs of (number, row index), sorted by number */
	keys = palloc(sizeof(int64) * 2 * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		keys[2 * i] = spi_get_int64(i, 1, &isnull);
		keys[2 * i + 1] = (int64) i;
	}
	qsort(keys, n, sizeof(int64) * 2, compare_int64_key);
	hashes = palloc(sizeof(Datum) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		uint8		hash[32];

		if (!spi_get_hash((uint64) keys[2 * i + 1], 2, hash))
			elog(ERROR, "stored block without hash");
		hashes[i] = PointerGetDatum(hash_bytea(hash));
	}
	*count = (int64) n;
	return PointerGetDatum(construct_array(hashes, (int) n, BYTEAOID, -1, false, TYPALIGN_INT));
}

static void
rollback_work(void *arg)
{
	RollbackWork *work = (RollbackWork *) arg;
	WriterState *ws = work->ws;
	const RollbackRequest *rq = work->request;
	int64		fork = rq->fork_block;
	Checkpoint	cp;
	Datum		orphaned;
	bool		isnull;
	bool		have_fork_hash = fork >= ws->start_block;

	checkpoint_read(ws, &cp, true);
	if (cp.next_block - 1 != rq->old_head ||
		(cp.have_hash && memcmp(cp.last_hash, rq->old_head_hash, 32) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("cannot roll back chain \"%s\" to block " INT64_FORMAT ": the checkpoint is not where the fetcher found the reorganization",
						ws->name, fork),
				 errdetail("The fetcher found it above block " INT64_FORMAT ", the checkpoint is at block " INT64_FORMAT ".",
						   rq->old_head, cp.next_block - 1)));
	if (cp.finalized_through >= 0 && fork < cp.finalized_through)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("refusing to roll back chain \"%s\" to block " INT64_FORMAT ", below its finalized block " INT64_FORMAT,
						ws->name, fork, cp.finalized_through),
				 errdetail("%s reported a branch that replaces blocks " INT64_FORMAT " to " INT64_FORMAT ".",
						   rq->endpoint, fork + 1, rq->old_head)));
	if (have_fork_hash)
	{
		Oid			argtypes[2] = {INT8OID, INT8OID};
		Datum		args[2];
		uint8		stored[32];

		args[0] = Int64GetDatum(ws->chain_id);
		args[1] = Int64GetDatum(fork);
		spi_run("SELECT hash FROM ethindex.blocks WHERE chain_id = $1 AND number = $2",
				2, argtypes, args, NULL, true, 1);
		if (SPI_processed != 1 || !spi_get_hash(0, 1, stored) ||
			memcmp(stored, rq->fork_hash, 32) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("cannot roll back chain \"%s\" to block " INT64_FORMAT ": the stored block is not the fork block",
							ws->name, fork),
					 errdetail("The fork block has hash %s.", eth_bytes_to_hex(rq->fork_hash, 32))));
	}

	/* the rows: blocks first (their hashes are the record), then the rest */
	orphaned = delete_blocks_above(ws, fork, &work->deleted_blocks);
	for (int t = 0; t < lengthof(row_tables); t++)
	{
		Oid			argtypes[2] = {INT8OID, INT8OID};
		Datum		args[2];

		args[0] = Int64GetDatum(ws->chain_id);
		args[1] = Int64GetDatum(fork);
		spi_run(psprintf("DELETE FROM ethindex.%s WHERE chain_id = $1 AND block_number > $2",
						 row_tables[t]),
				2, argtypes, args, NULL, false, 0);
	}

	/* the record */
	{
		Oid			argtypes[10] = {INT8OID, TEXTOID, INT8OID, BYTEAOID, INT4OID,
			BYTEAOID, BYTEAOID, BYTEAARRAYOID, TEXTOID, TIMESTAMPTZOID};
		Datum		args[10];
		char		nulls[10];

		memset(nulls, ' ', sizeof(nulls));
		args[0] = Int64GetDatum(ws->chain_id);
		args[1] = CStringGetTextDatum(ws->name);
		args[2] = Int64GetDatum(fork);
		args[3] = PointerGetDatum(hash_bytea(rq->fork_hash));
		nulls[3] = have_fork_hash ? ' ' : 'n';
		args[4] = Int32GetDatum((int32) (rq->old_head - fork));
		args[5] = PointerGetDatum(hash_bytea(rq->old_head_hash));
		args[6] = PointerGetDatum(hash_bytea(rq->new_head_hash));
		args[7] = orphaned;
		args[8] = CStringGetTextDatum(rq->endpoint);
		args[9] = TimestampTzGetDatum(rq->detected_at);
		if (spi_run("INSERT INTO ethindex.reorgs (chain_id, chain, fork_block, fork_hash, "
					"depth, old_head_hash, new_head_hash, orphaned_hashes, endpoint, "
					"detected_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
					"RETURNING id",
					10, argtypes, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING ||
			SPI_processed != 1)
			elog(ERROR, "could not record the reorganization of chain \"%s\"", ws->name);
		work->reorg_id = spi_get_int64(0, 1, &isnull);
	}

	/* the checkpoint, back at the fork block */
	{
		Oid			argtypes[3] = {INT8OID, BYTEAOID, TEXTOID};
		Datum		args[3];
		char		nulls[3] = {' ', have_fork_hash ? ' ' : 'n', ' '};

		args[0] = Int64GetDatum(fork + 1);
		args[1] = PointerGetDatum(hash_bytea(rq->fork_hash));
		args[2] = CStringGetTextDatum(ws->name);
		if (spi_run("UPDATE ethindex.chains SET next_block = $1, last_hash = $2, "
					"safe_through = CASE WHEN safe_through IS NULL OR safe_through < $1 THEN safe_through "
					"WHEN $1 - 1 >= start_block THEN $1 - 1 END "
					"WHERE name = $3",
					3, argtypes, args, nulls, false, 0) != SPI_OK_UPDATE ||
			SPI_processed != 1)
			elog(ERROR, "could not rewind the checkpoint of chain \"%s\"", ws->name);
	}
	notify_reorg(ws, rq, work->reorg_id);
}

/*
 * Roll back a reorganization: see the file header.  The fetcher queued the
 * request after everything before it was stored, and queues nothing more
 * until it is done, so no other insert worker holds a batch.
 */
void
checkpoint_rollback(WriterState *ws, const RollbackRequest *request)
{
	RollbackWork work;
	TimestampTz started = GetCurrentTimestamp();
	long		secs;
	int			usecs;

	work.ws = ws;
	work.request = request;
	work.reorg_id = 0;
	work.deleted_blocks = 0;
	run_in_transaction(psprintf("rolling back blocks " INT64_FORMAT " to " INT64_FORMAT,
								request->fork_block + 1, request->old_head),
					   rollback_work, &work);
	(void) publish_checkpoint(ws, request->fork_block + 1, true);
	TimestampDifference(started, GetCurrentTimestamp(), &secs, &usecs);
	ereport(LOG,
			(errmsg("ethindex chain \"%s\": rolled back a reorganization of depth " INT64_FORMAT " to block " INT64_FORMAT " in %ld ms (reorg " INT64_FORMAT ")",
					ws->name, request->old_head - request->fork_block,
					request->fork_block, secs * 1000 + usecs / 1000, work.reorg_id),
			 errdetail("Deleted " INT64_FORMAT " blocks; the node's block " INT64_FORMAT " is now %s, reported by %s.",
					   work.deleted_blocks, request->old_head,
					   eth_bytes_to_hex(request->new_head_hash, 32), request->endpoint)));
}
