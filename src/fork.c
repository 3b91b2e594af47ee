/*-------------------------------------------------------------------------
 *
 * fork.c
 *	  The fetcher's side of reorganizations and finality: the hashes of the
 *	  blocks it queued last, the node's finalized block checked against
 *	  them, and a parent hash mismatch turned into a rollback.
 *
 *	  Every block the fetcher queues must name the block queued before it as
 *	  its parent.  When the node's next block does not, the node has
 *	  replaced blocks the fetcher queued (a reorganization), or it is a node
 *	  that lags or follows another branch.  fork_roll_back():
 *
 *	  1. Finds the fork block: the highest block whose hash on the node
 *	     equals the one queued, comparing headers of the current endpoint
 *	     from the top down, in batches (8, then 32, 128, 256 blocks), as far
 *	     as the hashes kept reach (max(max_reorg_depth + 1, 1024) blocks),
 *	     so that a refusal can name the depth.
 *	  2. Refuses, with an error naming the depth and the blocks and deleting
 *	     nothing: a reorganization deeper than the chain's max_reorg_depth,
 *	     one that would roll back a finalized block (the node's, or one
 *	     stored as finalized), or one no endpoint confirms.
 *	  3. Confirms a reorganization deeper than REORG_UNCONFIRMED_DEPTH
 *	     blocks: another endpoint must have the new branch's block at the
 *	     old head's height; with a single endpoint, the endpoint's own
 *	     finalized block must be below the fork and, where the fetcher knows
 *	     it, equal to the stored one (a node on another history is not
 *	     trusted).  A node whose head is below the blocks queued never gets
 *	     here: the fetcher fetches nothing from it.
 *	  4. Waits until the insert workers have stored everything queued
 *	     before, queues a rollback request (the insert worker that takes it
 *	     deletes the rows above the fork block, records the reorganization
 *	     and rewinds the checkpoint in one transaction, see checkpoint.c),
 *	     waits until it is done, and continues from the block after the
 *	     fork block on the new branch.
 *
 *	  Finality: the node's "finalized" block is trusted only when its hash
 *	  is the one queued at that height (checked at once if it was queued,
 *	  or when it is); the verified number is published in the slot, and the
 *	  insert workers record how far the stored blocks are finalized.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/fork.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "fetcher.h"
#include "jsonrpc.h"
#include "queue.h"
#include "spiutil.h"

/* A reorganization this deep or shallower is rolled back without confirmation */
#define REORG_UNCONFIRMED_DEPTH 2
/* Fewest hashes of queued blocks kept (to check the finalized block) */
#define HASHES_KEPT_MIN			1024
/* Headers of the first batch of the fork search; later ones grow fourfold */
#define FORK_SEARCH_FIRST		8
#define FORK_SEARCH_MAX			256

/* ---- the hashes of recent blocks --------------------------------------- */

void
hashes_init(HashRing *ring, int capacity, MemoryContext context)
{
	ring->first = 0;
	ring->count = 0;
	ring->start = 0;
	ring->capacity = Max(capacity, HASHES_KEPT_MIN);
	ring->hashes = MemoryContextAlloc(context, sizeof(uint8[32]) * ring->capacity);
}

/* Remember the hash of block "number", which follows the last one kept. */
void
hashes_push(HashRing *ring, int64 number, const uint8 *hash)
{
	if (ring->count > 0 && number != ring->first + ring->count)
		ring->count = 0;		/* not contiguous: start over */
	if (ring->count == 0)
	{
		ring->first = number;
		ring->start = 0;
	}
	if (ring->count == ring->capacity)
	{
		ring->start = (ring->start + 1) % ring->capacity;
		ring->first++;
		ring->count--;
	}
	memcpy(ring->hashes[(ring->start + ring->count) % ring->capacity], hash, 32);
	ring->count++;
}

bool
hashes_get(const HashRing *ring, int64 number, uint8 *hash)
{
	if (number < ring->first || number >= ring->first + ring->count)
		return false;
	memcpy(hash, ring->hashes[(ring->start + (number - ring->first)) % ring->capacity], 32);
	return true;
}

/* The hash of the last block kept; false when none is. */
bool
hashes_last(const HashRing *ring, uint8 *hash)
{
	return ring->count > 0 && hashes_get(ring, ring->first + ring->count - 1, hash);
}

/* Forget the blocks above "last". */
void
hashes_truncate(HashRing *ring, int64 last)
{
	if (last < ring->first)
		ring->count = 0;
	else if (last < ring->first + ring->count)
		ring->count = (int) (last - ring->first + 1);
}

typedef struct LoadHashes
{
	FetcherState *st;
	bool		have_last_hash;
	uint8		last_hash[32];
} LoadHashes;

static void
load_hashes_work(void *arg)
{
	LoadHashes *load = (LoadHashes *) arg;
	FetcherState *st = load->st;
	Oid			argtypes[3] = {INT8OID, INT8OID, INT8OID};
	Datum		args[3];
	bool		isnull;
	int64		first;

	spi_read_chain("SELECT next_block, last_hash, finalized_through FROM ethindex.chains "
				   "WHERE name = $1", st->name, false);
	st->next_block = spi_get_int64(0, 1, &isnull);
	load->have_last_hash = spi_get_hash(0, 2, load->last_hash);
	st->finalized_through = spi_get_int64(0, 3, &isnull);
	if (isnull)
		st->finalized_through = -1;

	first = Max(st->start_block, st->next_block - st->hashes.capacity);
	args[0] = Int64GetDatum(st->chain_id);
	args[1] = Int64GetDatum(first);
	args[2] = Int64GetDatum(st->next_block - 1);
	spi_run("SELECT number, hash FROM ethindex.blocks "
			"WHERE chain_id = $1 AND number BETWEEN $2 AND $3 ORDER BY number",
			3, argtypes, args, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		uint8		hash[32];

		if (spi_get_hash(i, 2, hash))
			hashes_push(&st->hashes, spi_get_int64(i, 1, &isnull), hash);
	}
}

/*
 * Read the checkpoint and the hashes of the blocks stored below it (up to
 * the capacity of the ring), after insert worker 0's start-up repair.
 */
void
fork_load_hashes(FetcherState *st)
{
	LoadHashes	load;
	uint8		last[32];

	load.st = st;
	st->hashes.count = 0;
	run_in_transaction("reading recent block hashes", load_hashes_work, &load);

	/*
	 * The checkpoint is the truth about the last block stored, even if its
	 * row was deleted by hand: the ring must end with it.
	 */
	if (!load.have_last_hash)
		st->hashes.count = 0;
	else if (!hashes_last(&st->hashes, last) ||
			 st->hashes.first + st->hashes.count != st->next_block ||
			 memcmp(last, load.last_hash, 32) != 0)
	{
		st->hashes.count = 0;
		hashes_push(&st->hashes, st->next_block - 1, load.last_hash);
	}
}

/* ---- finality ------------------------------------------------------------ */

static void
publish_finalized(FetcherState *st, int64 number)
{
	st->node_finalized = number;
	SpinLockAcquire(&st->slot->mutex);
	st->slot->node_finalized = number;
	SpinLockRelease(&st->slot->mutex);
}

static void
finalized_mismatch(FetcherState *st, int64 number, const uint8 *node, const uint8 *stored)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("%s reports block " INT64_FORMAT " of chain \"%s\" as finalized with hash %s, but the block stored is %s",
					st->endpoints[st->current].display, number, st->name,
					eth_bytes_to_hex(node, 32), eth_bytes_to_hex(stored, 32)),
			 errdetail("The stored chain is not the one the node finalized; nothing is marked finalized beyond block " INT64_FORMAT ".",
					   st->node_finalized),
			 errhint("A reorganization below a finalized block is never rolled back: check the endpoints, then refetch or re-index the blocks above the last block both agree on.")));
}

/*
 * The node reports "number" with "hash" as its finalized block: verify it
 * against the block queued at that height, now or when it is queued.
 */
void
fork_note_finality(FetcherState *st, int64 number, const uint8 *hash)
{
	uint8		queued[32];

	if (number <= st->node_finalized)
		return;
	if (hashes_get(&st->hashes, number, queued))
	{
		if (memcmp(queued, hash, 32) != 0)
			finalized_mismatch(st, number, hash, queued);
		publish_finalized(st, number);
		st->pending_finalized = -1;
	}
	else if (number >= st->next_block)
	{
		/* checked when it is queued; one at a time */
		if (st->pending_finalized < 0)
		{
			st->pending_finalized = number;
			memcpy(st->pending_finalized_hash, hash, 32);
		}
	}
	else
		publish_finalized(st, number);	/* below the hashes kept: trusted */
}

/* A block is being queued: check it if it is the finalized block awaited. */
void
fork_check_finality(FetcherState *st, int64 number, const uint8 *hash)
{
	if (number != st->pending_finalized)
		return;
	if (memcmp(hash, st->pending_finalized_hash, 32) != 0)
		finalized_mismatch(st, number, st->pending_finalized_hash, hash);
	st->pending_finalized = -1;
	publish_finalized(st, number);
}

/* ---- headers ------------------------------------------------------------- */

/*
 * Hashes of blocks lo..hi from one endpoint (eth_getBlockByNumber without
 * transactions, one batch); found[i] false where the node answered null.
 */
static void
fetch_header_hashes(FetcherState *st, int endpoint, int64 lo, int64 hi,
					uint8 (*hashes)[32], bool *found)
{
	StringInfoData body;
	char	   *response;
	size_t		len;
	RpcReply   *replies;
	int			nreplies;
	const char *display = st->endpoints[endpoint].display;

	initStringInfo(&body);
	appendStringInfoChar(&body, '[');
	for (int64 x = lo; x <= hi; x++)
		appendStringInfo(&body, "%s{\"jsonrpc\":\"2.0\",\"id\":" INT64_FORMAT ",\"method\":\"eth_getBlockByNumber\",\"params\":[\"0x%" INT64_MODIFIER "x\",false]}",
						 x > lo ? "," : "", x - lo, x);
	appendStringInfoChar(&body, ']');
	response = fetcher_call(st, endpoint, body.data, "eth_getBlockByNumber", &len);
	nreplies = eth_split_rpc_response(response, len, &replies);
	for (int64 x = lo; x <= hi; x++)
	{
		const RpcReply *reply = eth_find_reply(replies, nreplies, x - lo);
		char	   *what = psprintf("block " INT64_FORMAT, x);
		int64		number;

		if (reply == NULL || reply->is_error)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%s answered no header for block " INT64_FORMAT " of chain \"%s\"%s%s",
							display, x, st->name, reply ? ": " : "",
							reply && reply->error_message ? reply->error_message : "")));
		found[x - lo] = jsonrpc_block_header(reply->result, reply->result_len, &number,
											 hashes[x - lo], what, display);
		if (found[x - lo] && number != x)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s answered block " INT64_FORMAT " when asked for block " INT64_FORMAT " of chain \"%s\"",
							display, number, x, st->name)));
	}
}

/* The finalized block of an endpoint: false if it reports none. */
static bool
fetch_finalized(FetcherState *st, int endpoint, int64 *number, uint8 *hash)
{
	char	   *response;
	size_t		len;
	RpcReply   *replies;
	int			nreplies;

	response = fetcher_call(st, endpoint,
							"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"eth_getBlockByNumber\",\"params\":[\"finalized\",false]}",
							"eth_getBlockByNumber(\"finalized\")", &len);
	nreplies = eth_split_rpc_response(response, len, &replies);
	if (nreplies != 1 || replies[0].is_error)
		return false;
	return jsonrpc_block_header(replies[0].result, replies[0].result_len, number, hash,
								"the finalized block", st->endpoints[endpoint].display);
}

/* ---- finding and confirming the fork ------------------------------------- */

/*
 * The fork block below old_head on the current endpoint: the highest block
 * whose hash there is the one queued (start_block - 1 if none is, when the
 * hashes kept reach back to start_block).  Also the node's hash at old_head.
 * A reorganization deeper than the hashes kept is an error.
 */
static int64
find_fork(FetcherState *st, int64 old_head, uint8 *new_head_hash)
{
	int64		lowest = Max(st->hashes.first, st->start_block);
	int64		hi = old_head;
	int			batch = FORK_SEARCH_FIRST;

	pgstat_report_activity(STATE_RUNNING, "looking for the fork block of a reorganization");
	while (hi >= lowest)
	{
		int64		lo = Max(lowest, hi - batch + 1);
		uint8		(*hashes)[32] = palloc(sizeof(uint8[32]) * (hi - lo + 1));
		bool	   *found = palloc(sizeof(bool) * (hi - lo + 1));

		fetch_header_hashes(st, st->current, lo, hi, hashes, found);
		for (int64 x = hi; x >= lo; x--)
		{
			uint8		queued[32];

			if (!found[x - lo])
				ereport(ERROR,
						(errcode(ERRCODE_NO_DATA_FOUND),
						 errmsg("%s returned null for block " INT64_FORMAT " of chain \"%s\", below block " INT64_FORMAT " it returned",
								st->endpoints[st->current].display, x, st->name, old_head + 1),
						 errdetail("The node may be syncing or load-balanced; the block is fetched again.")));
			if (x == old_head)
				memcpy(new_head_hash, hashes[x - lo], 32);
			if (hashes_get(&st->hashes, x, queued) && memcmp(queued, hashes[x - lo], 32) == 0)
				return x;
		}
		hi = lo - 1;
		batch = Min(batch * 4, FORK_SEARCH_MAX);
	}
	if (lowest <= st->start_block)
		return st->start_block - 1;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("reorganization of chain \"%s\" at block " INT64_FORMAT " is deeper than " INT64_FORMAT " blocks",
					st->name, old_head + 1, old_head - lowest + 1),
			 errdetail("%s has other blocks than those stored from block " INT64_FORMAT " to block " INT64_FORMAT "; nothing was deleted.",
					   st->endpoints[st->current].display, lowest, old_head),
			 errhint("Check the endpoint; if the chain really was reorganized this deep, re-index it from a block before the fork.")));
	return -1;					/* keep compiler quiet */
}

/*
 * Confirm a reorganization deeper than REORG_UNCONFIRMED_DEPTH found on the
 * current endpoint (see the file header); an error if it cannot be.
 */
static void
confirm_branch(FetcherState *st, int64 fork, int64 old_head, const uint8 *new_head_hash)
{
	Endpoint   *current = &st->endpoints[st->current];
	StringInfoData others;
	uint8		stored[32];
	int64		depth = old_head - fork;
	int64		finalized;
	uint8		finalized_hash[32];

	initStringInfo(&others);
	(void) hashes_get(&st->hashes, old_head, stored);
	for (int e = 0; e < st->nendpoints; e++)
	{
		MemoryContext outer = CurrentMemoryContext;
		uint8		hash[32];
		bool		found = false;
		volatile bool failed = false;

		if (e == st->current)
			continue;
		/* an endpoint that fails is one that does not confirm */
		PG_TRY();
		{
			fetcher_verify_endpoint(st, e);
			fetch_header_hashes(st, e, old_head, old_head, &hash, &found);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(outer);
			edata = CopyErrorData();
			FlushErrorState();
			appendStringInfo(&others, "%s%s failed: %s", others.len ? "; " : "",
							 st->endpoints[e].display, edata->message);
			FreeErrorData(edata);
			failed = true;
		}
		PG_END_TRY();
		if (failed)
			continue;
		if (found && memcmp(hash, new_head_hash, 32) == 0)
		{
			ereport(LOG,
					(errmsg("ethindex chain \"%s\": %s confirms the reorganization of depth " INT64_FORMAT " reported by %s",
							st->name, st->endpoints[e].display, depth, current->display)));
			return;
		}
		appendStringInfo(&others, "%s%s has %s", others.len ? "; " : "",
						 st->endpoints[e].display,
						 !found ? "no such block yet" :
						 memcmp(hash, stored, 32) == 0 ? "the stored block" :
						 psprintf("block %s", eth_bytes_to_hex(hash, 32)));
	}
	if (st->nendpoints > 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("reorganization of depth " INT64_FORMAT " of chain \"%s\" reported by %s is not confirmed",
						depth, st->name, current->display),
				 errdetail("%s has block " INT64_FORMAT " %s on a branch from block " INT64_FORMAT "; %s.  Nothing was rolled back.",
						   current->display, old_head, eth_bytes_to_hex(new_head_hash, 32),
						   fork, others.data),
				 errhint("An endpoint that lags or follows another branch does not trigger a rollback; the chain tries again.")));

	/* a single endpoint: its own finalized block */
	if (GetCurrentTimestamp() < current->no_finality_until ||
		!fetch_finalized(st, st->current, &finalized, finalized_hash))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("reorganization of depth " INT64_FORMAT " of chain \"%s\" reported by %s cannot be confirmed",
						depth, st->name, current->display),
				 errdetail("Blocks " INT64_FORMAT " to " INT64_FORMAT " would be rolled back, but the endpoint reports no finalized block and there is no other endpoint.  Nothing was rolled back.",
						   fork + 1, old_head),
				 errhint("Add a second endpoint to the chain (ethindex.alter_chain()) to confirm reorganizations deeper than %d blocks.",
						 REORG_UNCONFIRMED_DEPTH)));
	if (fork < finalized)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("refusing to roll back chain \"%s\" to block " INT64_FORMAT ", below the finalized block " INT64_FORMAT " of %s",
						st->name, fork, finalized, current->display),
				 errdetail("The endpoint reports a branch replacing blocks " INT64_FORMAT " to " INT64_FORMAT ".  Nothing was rolled back.",
						   fork + 1, old_head)));
	if (hashes_get(&st->hashes, finalized, stored) && memcmp(stored, finalized_hash, 32) != 0)
		finalized_mismatch(st, finalized, finalized_hash, stored);
}

/* ---- rolling back ---------------------------------------------------------- */

/*
 * The fetcher found, at st->mismatch_block, a block whose parent is not the
 * block queued before it: roll back to the fork block (see the file
 * header), or raise an error that leaves everything as it is.
 */
void
fork_roll_back(FetcherState *st)
{
	int64		old_head = st->mismatch_block - 1;
	Endpoint   *current = &st->endpoints[st->current];
	RollbackRequest *request;
	uint8		new_head_hash[32];
	uint8		old_head_hash[32];
	int64		fork;
	int64		depth;
	TimestampTz detected_at = GetCurrentTimestamp();

	if (!hashes_last(&st->hashes, old_head_hash) ||
		st->hashes.first + st->hashes.count - 1 != old_head)
		elog(ERROR, "no hash kept for block " INT64_FORMAT " of chain \"%s\"", old_head, st->name);
	fork = find_fork(st, old_head, new_head_hash);
	depth = old_head - fork;
	if (depth == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s gave inconsistent answers for chain \"%s\"",
						current->display, st->name),
				 errdetail("Its block " INT64_FORMAT " names parent %s, but its block " INT64_FORMAT " is the stored one, %s.",
						   st->mismatch_block, eth_bytes_to_hex(st->mismatch_parent, 32),
						   old_head, eth_bytes_to_hex(old_head_hash, 32)),
				 errhint("The block is fetched again.")));
	if (depth > st->max_reorg_depth)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("reorganization of depth " INT64_FORMAT " of chain \"%s\" exceeds max_reorg_depth %d",
						depth, st->name, st->max_reorg_depth),
				 errdetail("%s replaced blocks " INT64_FORMAT " to " INT64_FORMAT " (the last block both branches share is block " INT64_FORMAT "); nothing was deleted.",
						   current->display, fork + 1, old_head, fork),
				 errhint("If the reorganization is real, raise max_reorg_depth with ethindex.alter_chain() and restart the chain.")));
	if (fork < Max(st->finalized_through, st->node_finalized))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("refusing to roll back chain \"%s\" to block " INT64_FORMAT ", below its finalized block " INT64_FORMAT,
						st->name, fork, Max(st->finalized_through, st->node_finalized)),
				 errdetail("%s reports a branch replacing blocks " INT64_FORMAT " to " INT64_FORMAT ".  Nothing was rolled back.",
						   current->display, fork + 1, old_head)));
	if (depth > REORG_UNCONFIRMED_DEPTH)
		confirm_branch(st, fork, old_head, new_head_hash);

	ereport(LOG,
			(errmsg("ethindex chain \"%s\": reorganization of depth " INT64_FORMAT " at block " INT64_FORMAT ", rolling back to block " INT64_FORMAT,
					st->name, depth, fork + 1, fork),
			 errdetail("%s has block " INT64_FORMAT " %s, the stored one is %s.",
					   current->display, old_head, eth_bytes_to_hex(new_head_hash, 32),
					   eth_bytes_to_hex(old_head_hash, 32))));

	/* everything queued before is stored first, then the rollback alone */
	pgstat_report_activity(STATE_RUNNING, "waiting for the insert workers before a rollback");
	queue_wait_drained(&st->slot->queue);
	request = (RollbackRequest *) queue_reserve(&st->slot->queue, st->ring, sizeof(RollbackRequest));
	memset(request, 0, sizeof(RollbackRequest));
	request->common.kind = QUEUE_RECORD_ROLLBACK;
	request->fork_block = fork;
	if (fork >= st->start_block)
		(void) hashes_get(&st->hashes, fork, request->fork_hash);
	request->old_head = old_head;
	memcpy(request->old_head_hash, old_head_hash, 32);
	memcpy(request->new_head_hash, new_head_hash, 32);
	request->detected_at = detected_at;
	strlcpy(request->endpoint, current->display, sizeof(request->endpoint));
	queue_commit(&st->slot->queue, st->ring, sizeof(RollbackRequest));
	pgstat_report_activity(STATE_RUNNING, "waiting for the rollback");
	queue_wait_drained(&st->slot->queue);
	pgstat_report_activity(STATE_IDLE, NULL);

	hashes_truncate(&st->hashes, fork);
	st->next_block = fork + 1;
	st->next_to_request = fork + 1;
	st->mismatch_block = -1;
	if (st->pending_finalized > fork)
		st->pending_finalized = -1;
	/* the node's "safe" block is asked again before the new branch counts as safe */
	SpinLockAcquire(&st->slot->mutex);
	st->slot->node_safe = Min(st->slot->node_safe, fork);
	SpinLockRelease(&st->slot->mutex);
}
