/*-------------------------------------------------------------------------
 *
 * fetcher.c
 *	  The per-chain fetcher background worker: polls the chain's endpoints
 *	  for new blocks, fetches each block with its full transactions and its
 *	  receipts, decodes them (decode.c), checks that each names the block
 *	  before it as its parent, and puts them in order into the chain's
 *	  queue for the insert workers.
 *
 *	  It never writes a table.  At start it reads the chain's configuration;
 *	  if the chain has no chain id yet it learns it from the node and hands
 *	  it to insert worker 0 through the slot, then waits until that worker
 *	  has finished the start-up repair (shared.h), and reads the checkpoint
 *	  and the hashes of the last blocks stored.  No transaction is open
 *	  while the network is used; from then on the fetcher tracks the next
 *	  block to fetch itself.
 *
 *	  Requests: a window of HTTP requests in flight, each a JSON-RPC batch
 *	  of consecutive blocks with eth_getBlockByNumber(n, true) and
 *	  eth_getBlockReceipts(n), sized by sizing.c.  An endpoint that does not
 *	  know eth_getBlockReceipts is remembered and asked for per-transaction
 *	  receipts (batched eth_getTransactionReceipt) instead.  The blocks of a
 *	  request that reaches the head (the node's head minus confirmations)
 *	  are marked BLOCK_ORDERED: they commit in block order.
 *
 *	  The head: during a backfill it is polled every HEAD_REFRESH_MS; once
 *	  caught up, when headpoll.c says, together with the node's "safe" and
 *	  "finalized" blocks every FINALITY_POLL_MS.  An endpoint whose head
 *	  stays below the blocks queued for LAGGING_SWITCH_MS is left for the
 *	  next one.
 *
 *	  A block whose parent is not the block queued before it stops the
 *	  window; fork.c rolls the reorganization back (or refuses to).  Once
 *	  caught up, the fetcher also serves ethindex.refetch() requests, a
 *	  batch at a time, each batch one queue record stored by one insert
 *	  worker, the next queued once it is stored.
 *
 *	  Failures (transport, HTTP status, JSON-RPC errors, bad or missing
 *	  data) raise an ERROR that the main loop catches: it is logged,
 *	  published in the chain's status, the next endpoint is tried, and after
 *	  a full round of failing endpoints the fetcher waits with exponential
 *	  backoff.  A block is queued only when it decoded completely.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/fetcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "blockrec.h"
#include "fetcher.h"
#include "jsonrpc.h"
#include "spiutil.h"

/* JSON-RPC error codes meaning "no such method" (standard and common variants) */
#define JSONRPC_METHOD_NOT_FOUND	(-32601)

#define HEAD_REFRESH_MS		1000	/* head poll period while backfilling */
#define FINALITY_POLL_MS	2000	/* "safe" and "finalized" asked this often */
#define LAGGING_SWITCH_MS	10000	/* an endpoint behind this long is left */
#define REFETCH_ATTEMPTS	5	/* failed batches before a refetch gives up */
#define NO_FINALITY_RETRY_MS 600000	/* finality asked again after this long */

/* One block being fetched */
typedef struct PendingBlock
{
	int64		number;
	const RpcReply *block;
	const RpcReply *receipts;
	char	   *fallback_receipts;	/* receipts array built from single receipts */
	size_t		fallback_len;
} PendingBlock;

/* ---- configuration and start-up ------------------------------------------ */

/* Milliseconds of an interval (poll_interval: at most an hour). */
static long
interval_ms(Interval *interval)
{
	return (long) (interval->time / 1000 +
				   ((int64) interval->month * DAYS_PER_MONTH + interval->day) *
				   SECS_PER_DAY * 1000);
}

static void
load_configuration_work(void *arg)
{
	FetcherState *st = (FetcherState *) arg;
	bool		isnull;
	Datum		datum;
	ArrayType  *array;
	Datum	   *elems;
	int			nelems;

	spi_read_chain("SELECT chain_id, start_block, confirmations, poll_interval, batch_size, "
				   "(SELECT array_agg(url ORDER BY position) FROM ethindex.endpoints e "
				   " WHERE e.chain = c.name), max_reorg_depth "
				   "FROM ethindex.chains c WHERE name = $1", st->name, false);

	st->chain_id = spi_get_int64(0, 1, &isnull);	/* 0 when NULL */
	st->start_block = spi_get_int64(0, 2, &isnull);
	st->confirmations = (int) spi_get_int64(0, 3, &isnull);
	datum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
	st->poll_interval_ms = Max(interval_ms(DatumGetIntervalP(datum)), 1);
	st->batch_size = (int) spi_get_int64(0, 5, &isnull);	/* 0: adaptive */
	datum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull);
	if (isnull)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chain \"%s\" has no JSON-RPC endpoint", st->name)));
	array = DatumGetArrayTypeP(datum);
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
	st->nendpoints = Min(nelems, ETHINDEX_MAX_ENDPOINTS);
	for (int i = 0; i < st->nendpoints; i++)
	{
		st->endpoints[i].url = TextDatumGetCString(elems[i]);
		st->endpoints[i].display = rpc_url_for_display(st->endpoints[i].url, i + 1);
	}
	st->max_reorg_depth = (int) spi_get_int64(0, 7, &isnull);
}

/*
 * The start-up handshake (shared.h): hand a chain id learned from the node
 * to insert worker 0, wait until it has repaired what an earlier run left,
 * then read the checkpoint and the recent hashes.
 */
static void
fetcher_begin(FetcherState *st)
{
	ChainSlot  *slot = st->slot;

	if (st->chain_id == 0)
	{
		fetcher_verify_endpoint(st, st->current);	/* learns st->chain_id */
		LWLockAcquire(&slot->commit_lock, LW_EXCLUSIVE);
		slot->learned_chain_id = st->chain_id;
		LWLockRelease(&slot->commit_lock);
		ConditionVariableBroadcast(&slot->commit_cv);
	}

	pgstat_report_activity(STATE_RUNNING, "waiting for insert worker 0 to start");
	ConditionVariablePrepareToSleep(&slot->commit_cv);
	for (;;)
	{
		bool		ready;

		LWLockAcquire(&slot->commit_lock, LW_SHARED);
		ready = slot->ready;
		LWLockRelease(&slot->commit_lock);
		if (ready)
			break;
		ConditionVariableTimedSleep(&slot->commit_cv, 1000, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();

	fork_load_hashes(st);
	st->next_to_request = st->next_block;
	st->ready = true;
	ereport(LOG,
			(errmsg("ethindex fetcher for chain \"%s\" started at block " INT64_FORMAT,
					st->name, st->next_block)));
}

/* ---- calls ------------------------------------------------------------------ */

static void
append_call(StringInfo buf, int64 id, const char *method, const char *params)
{
	appendStringInfo(buf, "{\"jsonrpc\":\"2.0\",\"id\":" INT64_FORMAT
					 ",\"method\":\"%s\",\"params\":%s}", id, method, params);
}

/*
 * POST a JSON-RPC body to an endpoint and return the response (its length
 * in *len); a failure ("what" names the call) raises an error.
 */
char *
fetcher_call(FetcherState *st, int endpoint, const char *body, const char *what,
			 size_t *len)
{
	RpcRequest	request;
	RpcRequest *requests[1] = {&request};
	char	   *failure;

	rpc_request_init(&request, st->endpoints[endpoint].url, st->endpoints[endpoint].display);
	appendStringInfoString(&request.body, body);
	rpc_perform(st->rpc, requests, 1);
	failure = rpc_request_failure(&request);
	if (failure)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s failed for chain \"%s\": %s", what, st->name, failure)));
	*len = request.response_len;
	return request.response;
}

/* One JSON-RPC call without parameters whose result is a quantity. */
static int64
quantity_call(FetcherState *st, int endpoint, const char *method)
{
	StringInfoData body;
	char	   *response;
	size_t		len;

	initStringInfo(&body);
	append_call(&body, 1, method, "[]");
	response = fetcher_call(st, endpoint, body.data, method, &len);
	return jsonrpc_quantity_result(response, len, method, st->endpoints[endpoint].display);
}

/* Check the chain id of an endpoint, or learn it when the chain has none. */
void
fetcher_verify_endpoint(FetcherState *st, int endpoint)
{
	Endpoint   *ep = &st->endpoints[endpoint];
	int64		node_chain_id;

	if (ep->verified)
		return;
	node_chain_id = quantity_call(st, endpoint, "eth_chainId");
	if (st->chain_id == 0)
		st->chain_id = node_chain_id;
	else if (st->chain_id != node_chain_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("chain id mismatch for chain \"%s\": configured " INT64_FORMAT ", but %s reports " INT64_FORMAT,
						st->name, st->chain_id, ep->display, node_chain_id),
				 errhint("Register the chain again with the right chain_id, or fix its endpoints with ethindex.alter_chain().")));
	ep->verified = true;
}

/* The quantity in a reply of a batch, or an error. */
static int64
reply_quantity(FetcherState *st, RpcReply *reply, const char *method)
{
	int64		value;

	if (reply->is_error)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s failed for chain \"%s\": %s answered error %d: %s",
						method, st->name, st->endpoints[st->current].display,
						reply->error_code, reply->error_message ? reply->error_message : "")));
	if (reply->result_is_null ||
		!eth_parse_quantity_int64(reply->result, reply->result_len, &value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("%s from %s returned no valid quantity",
						method, st->endpoints[st->current].display)));
	return value;
}

/* An endpoint without "safe" and "finalized" blocks is not asked for a while. */
static void
endpoint_without_finality(Endpoint *ep)
{
	ep->no_finality_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														NO_FINALITY_RETRY_MS);
}

/*
 * A finality tag's block in a reply of the head poll: false (and the
 * endpoint remembered as having none for a while) when it answers an error
 * or null.
 */
static bool
reply_finality(FetcherState *st, RpcReply *reply, const char *tag, int64 *number, uint8 *hash)
{
	Endpoint   *ep = &st->endpoints[st->current];

	if (!reply->is_error &&
		jsonrpc_block_header(reply->result, reply->result_len, number, hash, tag, ep->display))
		return true;
	ereport(LOG,
			(errmsg("ethindex chain \"%s\": %s reports no \"%s\" block, so finality is not tracked with it for now",
					st->name, ep->display, tag)));
	endpoint_without_finality(ep);
	return false;
}

/*
 * Poll the node's head, with its "safe" and "finalized" blocks in the same
 * request every FINALITY_POLL_MS, and publish them.
 */
static void
refresh_head(FetcherState *st)
{
	Endpoint   *ep = &st->endpoints[st->current];
	TimestampTz now = GetCurrentTimestamp();
	bool		finality = now >= ep->no_finality_until &&
		TimestampDifferenceExceeds(st->finality_checked_at, now, FINALITY_POLL_MS);
	int64		head;
	int64		safe = -1;

	if (!finality)
		head = quantity_call(st, st->current, "eth_blockNumber");
	else
	{
		const char *body = "[{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"eth_blockNumber\",\"params\":[]},"
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getBlockByNumber\",\"params\":[\"safe\",false]},"
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"eth_getBlockByNumber\",\"params\":[\"finalized\",false]}]";
		char	   *response;
		size_t		len;
		RpcReply   *replies;
		int			nreplies;
		RpcReply   *byid[3] = {NULL, NULL, NULL};
		int64		number;
		uint8		hash[32];

		response = fetcher_call(st, st->current, body, "eth_blockNumber", &len);
		nreplies = eth_split_rpc_response(response, len, &replies);
		for (int i = 0; i < nreplies; i++)
			if (replies[i].id >= 0 && replies[i].id < 3)
				byid[replies[i].id] = &replies[i];
		if (byid[0] == NULL)
		{
			/* perhaps no batches here: the next polls ask for the head alone */
			endpoint_without_finality(ep);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("%s answered no eth_blockNumber for chain \"%s\"", ep->display, st->name),
					 errdetail("The head was asked for with the \"safe\" and \"finalized\" blocks in one batch; finality is not asked of this endpoint for a while.")));
		}
		head = reply_quantity(st, byid[0], "eth_blockNumber");
		st->finality_checked_at = now;
		if (byid[1] != NULL && byid[2] != NULL &&
			reply_finality(st, byid[1], "safe", &number, hash))
		{
			safe = number;
			if (reply_finality(st, byid[2], "finalized", &number, hash))
				fork_note_finality(st, number, hash);
		}
		else
			endpoint_without_finality(ep);
	}
	chain_record_head_request(st->slot);

	st->head = head;
	st->head_checked_at = GetCurrentTimestamp();
	SpinLockAcquire(&st->slot->mutex);
	st->slot->node_head = head;
	if (safe >= 0)
		st->slot->node_safe = safe;
	strlcpy(st->slot->endpoint, ep->display, sizeof(st->slot->endpoint));
	SpinLockRelease(&st->slot->mutex);
}

/*
 * An endpoint whose head stays below the blocks queued (a lagging or
 * syncing node) is left for the next one, if there is one.
 */
static void
check_lagging(FetcherState *st)
{
	TimestampTz now = GetCurrentTimestamp();

	if (st->head >= st->next_block - 1 || st->nendpoints < 2)
	{
		st->lagging_since = 0;
		return;
	}
	if (st->lagging_since == 0)
		st->lagging_since = now;
	else if (TimestampDifferenceExceeds(st->lagging_since, now, LAGGING_SWITCH_MS))
	{
		int			next = (st->current + 1) % st->nendpoints;

		ereport(LOG,
				(errmsg("ethindex chain \"%s\": %s stays at block " INT64_FORMAT ", below block " INT64_FORMAT " already stored; using %s",
						st->name, st->endpoints[st->current].display, st->head,
						st->next_block - 1, st->endpoints[next].display)));
		st->current = next;
		st->lagging_since = 0;
		st->head = -1;
	}
}

/* ---- blocks ------------------------------------------------------------------ */

/* Append calls for blocks first .. first + nblocks - 1 to a batch body. */
static void
append_block_calls(StringInfo body, int64 first, int nblocks, bool with_receipts)
{
	appendStringInfoChar(body, '[');
	for (int b = 0; b < nblocks; b++)
	{
		int64		number = first + b;
		char		params[64];

		if (b > 0)
			appendStringInfoChar(body, ',');
		snprintf(params, sizeof(params), "[\"0x%" INT64_MODIFIER "x\",true]", number);
		append_call(body, 2 * (int64) b, "eth_getBlockByNumber", params);
		if (with_receipts)
		{
			snprintf(params, sizeof(params), "[\"0x%" INT64_MODIFIER "x\"]", number);
			appendStringInfoChar(body, ',');
			append_call(body, 2 * (int64) b + 1, "eth_getBlockReceipts", params);
		}
	}
	appendStringInfoChar(body, ']');
}

/* The reply to request "id" (eth_find_reply), or raise an error. */
static const RpcReply *
reply_by_id(FetcherState *st, const RpcReply *replies, int nreplies, int64 id,
			const char *method, int64 block)
{
	const RpcReply *reply = eth_find_reply(replies, nreplies, id);

	if (reply == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("%s answered no %s for block " INT64_FORMAT " of chain \"%s\"",
						st->endpoints[st->current].display, method, block, st->name),
				 errdetail("The JSON-RPC batch response lacks the reply with id " INT64_FORMAT ".", id)));
	return reply;
}

static void
check_reply(FetcherState *st, const RpcReply *reply, const char *method, int64 block)
{
	if (reply->is_error)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s for block " INT64_FORMAT " of chain \"%s\" failed: %s answered error %d: %s",
						method, block, st->name, st->endpoints[st->current].display,
						reply->error_code, reply->error_message ? reply->error_message : "")));
	if (reply->result_is_null)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s returned null for block " INT64_FORMAT " of chain \"%s\", at or below the head " INT64_FORMAT " it reported",
						st->endpoints[st->current].display, block, st->name, st->head),
				 errdetail("The node may lag behind its own head; the block is fetched again.")));
}

static bool
is_method_not_found(const RpcReply *reply)
{
	if (!reply->is_error)
		return false;
	if (reply->error_code == JSONRPC_METHOD_NOT_FOUND)
		return true;
	/* some providers use other codes with a telling message */
	return reply->error_message != NULL &&
		(strstr(reply->error_message, "not supported") != NULL ||
		 strstr(reply->error_message, "does not exist") != NULL ||
		 strstr(reply->error_message, "not found") != NULL) &&
		strstr(reply->error_message, "eth_getBlockReceipts") != NULL;
}

/*
 * Per-transaction receipts for a block whose endpoint lacks
 * eth_getBlockReceipts: one batch of eth_getTransactionReceipt, assembled
 * into the array that eth_getBlockReceipts would have returned.
 */
static void
fetch_single_receipts(FetcherState *st, PendingBlock *pb)
{
	RpcReply   *replies;
	int			nreplies;
	int			ntx;
	char	  **hashes;
	StringInfoData out;

	hashes = jsonrpc_transaction_hashes(pb->block->result, pb->block->result_len,
										pb->number, &ntx);
	initStringInfo(&out);
	appendStringInfoChar(&out, '[');
	if (ntx > 0)
	{
		StringInfoData body;
		char	   *response;
		size_t		len;

		initStringInfo(&body);
		appendStringInfoChar(&body, '[');
		for (int i = 0; i < ntx; i++)
		{
			char		params[80];

			snprintf(params, sizeof(params), "[\"%s\"]", hashes[i]);
			if (i > 0)
				appendStringInfoChar(&body, ',');
			append_call(&body, (int64) i, "eth_getTransactionReceipt", params);
		}
		appendStringInfoChar(&body, ']');
		response = fetcher_call(st, st->current, body.data,
								psprintf("eth_getTransactionReceipt for block " INT64_FORMAT, pb->number),
								&len);
		nreplies = eth_split_rpc_response(response, len, &replies);
		for (int i = 0; i < ntx; i++)
		{
			const RpcReply *reply = reply_by_id(st, replies, nreplies, (int64) i,
												"eth_getTransactionReceipt", pb->number);

			check_reply(st, reply, "eth_getTransactionReceipt", pb->number);
			if (i > 0)
				appendStringInfoChar(&out, ',');
			appendBinaryStringInfo(&out, reply->result, reply->result_len);
		}
	}
	appendStringInfoChar(&out, ']');
	pb->fallback_receipts = out.data;
	pb->fallback_len = out.len;
}

/*
 * Decode block "number", the b-th of a batch response of append_block_calls()
 * (with_receipts as asked; falls back to single receipts when the endpoint
 * lacks eth_getBlockReceipts, and sets *with_receipts false then).
 */
static void
decode_batch_block(FetcherState *st, RpcReply *replies, int nreplies, int b,
				   int64 number, bool *with_receipts, DecodedBlock *decoded)
{
	Endpoint   *endpoint = &st->endpoints[st->current];
	PendingBlock pb;
	const char *receipts;
	size_t		receipts_len;

	memset(&pb, 0, sizeof(pb));
	pb.number = number;
	pb.block = reply_by_id(st, replies, nreplies, 2 * (int64) b,
						   "eth_getBlockByNumber", number);
	check_reply(st, pb.block, "eth_getBlockByNumber", number);
	if (*with_receipts)
	{
		pb.receipts = reply_by_id(st, replies, nreplies, 2 * (int64) b + 1,
								  "eth_getBlockReceipts", number);
		if (is_method_not_found(pb.receipts))
		{
			ereport(LOG,
					(errmsg("ethindex chain \"%s\": %s does not support eth_getBlockReceipts, using eth_getTransactionReceipt",
							st->name, endpoint->display)));
			endpoint->no_block_receipts = true;
			*with_receipts = false;
		}
		else
			check_reply(st, pb.receipts, "eth_getBlockReceipts", number);
	}
	if (!*with_receipts)
		fetch_single_receipts(st, &pb);
	receipts = pb.fallback_receipts ? pb.fallback_receipts : pb.receipts->result;
	receipts_len = pb.fallback_receipts ? pb.fallback_len : pb.receipts->result_len;
	eth_decode_block(decoded, st->chain_id, number,
					 pb.block->result, pb.block->result_len,
					 receipts, receipts_len);
}

/*
 * Reserve room for a record in the queue, waiting while it is full.  The
 * wait drives the requests in flight (their sockets and timers, with the
 * latch that the insert workers set when they free room), so that a full
 * queue, during an index build for example, does not let them time out.
 */
static char *
reserve_queue_room(FetcherState *st, Size size)
{
	BlockQueue *queue = &st->slot->queue;
	char	   *dst;

	if ((dst = queue_try_reserve(queue, st->ring, size)) != NULL)
		return dst;
	pgstat_report_activity(STATE_RUNNING, "waiting for room in the queue");
	while (rpc_in_flight(st->rpc) > 0)
	{
		queue_prepare_to_wait_for_room(queue);
		if ((dst = queue_try_reserve(queue, st->ring, size)) != NULL)
			break;
		rpc_wait(st->rpc, 1000);
	}
	ConditionVariableCancelSleep();
	/* nothing in flight any more: a plain sleep on the queue */
	if (dst == NULL)
		dst = queue_reserve(queue, st->ring, size);
	pgstat_report_activity(STATE_RUNNING, "decoding blocks");
	return dst;
}

/* Put a decoded block into the queue (waits while the queue is full). */
static void
queue_decoded(FetcherState *st, const DecodedBlock *decoded, uint8 flags)
{
	Size		size = blockrec_size(decoded);
	char	   *dst = reserve_queue_room(st, size);

	blockrec_write(decoded, flags, dst, size);
	queue_commit(&st->slot->queue, st->ring, size);
}

/*
 * Queue the next block, unless its parent is not the block queued before
 * it: then remember the mismatch and return false (fork.c takes over).
 */
static bool
queue_next_block(FetcherState *st, const DecodedBlock *decoded, bool ordered)
{
	uint8		prev[32];

	if (hashes_last(&st->hashes, prev) && memcmp(decoded->parent_hash, prev, 32) != 0)
	{
		st->mismatch_block = decoded->number;
		memcpy(st->mismatch_parent, decoded->parent_hash, 32);
		return false;
	}
	fork_check_finality(st, decoded->number, decoded->hash);
	queue_decoded(st, decoded, ordered ? BLOCK_ORDERED : 0);
	hashes_push(&st->hashes, decoded->number, decoded->hash);
	st->next_block = decoded->number + 1;
	return true;
}

/* ---- the window ------------------------------------------------------------ */

/* Put a request for blocks [first, first + nblocks) in flight. */
static void
start_window_request(FetcherState *st, int64 first, int nblocks, bool ordered)
{
	Endpoint   *endpoint = &st->endpoints[st->current];
	WindowRequest *w = &st->window[(st->window_first + st->window_count) % WINDOW_MAX];
	MemoryContext old;

	w->first = first;
	w->nblocks = nblocks;
	w->with_receipts = !endpoint->no_block_receipts;
	w->ordered = ordered;
	w->context = AllocSetContextCreate(st->fetcher_context, "ethindex fetcher request",
									   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(w->context);
	rpc_request_init(&w->request, endpoint->url, endpoint->display);
	append_block_calls(&w->request.body, first, nblocks, w->with_receipts);
	MemoryContextSwitchTo(old);

	/* counted before starting, so that reset_window() frees it on error */
	st->window_count++;
	st->next_to_request = first + nblocks;
	rpc_start(st->rpc, &w->request);
}

/* Forget every request in flight (after an error or a reorganization). */
static void
reset_window(FetcherState *st)
{
	rpc_abort_all(st->rpc);
	for (int i = 0; i < st->window_count; i++)
	{
		WindowRequest *w = &st->window[(st->window_first + i) % WINDOW_MAX];

		MemoryContextDelete(w->context);
	}
	st->window_first = 0;
	st->window_count = 0;
	st->next_to_request = st->next_block;
}

/*
 * Check, decode and queue the blocks of the oldest request, block after
 * block, so that the blocks before a bad one are stored.  The request is
 * removed from the window when all its blocks are queued.  Returns false
 * when a block's parent is not the block queued before it.
 */
static bool
process_window_request(FetcherState *st)
{
	WindowRequest *w = &st->window[st->window_first];
	char	   *failure = rpc_request_failure(&w->request);
	RpcReply   *replies;
	int			nreplies;
	bool		with_receipts = w->with_receipts;
	MemoryContext old;

	if (failure)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("fetching blocks " INT64_FORMAT " to " INT64_FORMAT " of chain \"%s\" failed: %s",
						w->first, w->first + w->nblocks - 1, st->name, failure)));

	pgstat_report_activity(STATE_RUNNING, "decoding blocks");
	/* the replies live as long as the response; each block's work is reset */
	old = MemoryContextSwitchTo(w->context);
	nreplies = eth_split_rpc_response(w->request.response, w->request.response_len, &replies);
	MemoryContextSwitchTo(old);
	for (int b = 0; b < w->nblocks; b++)
	{
		DecodedBlock decoded;

		decode_batch_block(st, replies, nreplies, b, w->first + b, &with_receipts, &decoded);
		if (!queue_next_block(st, &decoded, w->ordered))
			return false;
		MemoryContextReset(st->loop_context);
	}
	pgstat_report_activity(STATE_IDLE, NULL);

	sizing_request_done(st, w);
	rpc_release(st->rpc, &w->request);
	MemoryContextDelete(w->context);
	st->window_first = (st->window_first + 1) % WINDOW_MAX;
	st->window_count--;
	return true;
}

/* ---- refetches -------------------------------------------------------------- */

/*
 * The oldest unfinished refetch request of the chain (refetch_id 0: none),
 * with its progress as the insert workers committed it.
 */
static void
next_refetch_work(void *arg)
{
	FetcherState *st = (FetcherState *) arg;
	bool		isnull;

	spi_read_chain("SELECT r.id, r.next_block, r.to_block FROM ethindex.chains c "
				   "LEFT JOIN LATERAL (SELECT id, next_block, to_block FROM ethindex.refetches "
				   "WHERE chain = c.name AND finished_at IS NULL ORDER BY id LIMIT 1) r ON true "
				   "WHERE c.name = $1", st->name, false);
	st->refetch_id = spi_get_int64(0, 1, &isnull);
	st->refetch_next = spi_get_int64(0, 2, &isnull);
	st->refetch_to = spi_get_int64(0, 3, &isnull);
}

/* Queue a record of refetched blocks (none: the request failed) and wait until it is stored. */
static void
queue_refetched(FetcherState *st, const DecodedBlock *blocks, int nblocks, const char *error)
{
	Size		size = blockrec_replace_size(blocks, nblocks);
	char	   *dst = reserve_queue_room(st, size);

	blockrec_write_replace(blocks, nblocks, st->refetch_id, error, dst, size);
	queue_commit(&st->slot->queue, st->ring, size);
	/* the next batch follows from the progress committed with this one */
	pgstat_report_activity(STATE_RUNNING, "waiting for refetched blocks to be stored");
	queue_wait_drained(&st->slot->queue);
}

/*
 * Fetch and decode the next batch of the request being served, at most
 * half a queue of records; returns the number of blocks.
 */
static int
fetch_refetch_batch(FetcherState *st, DecodedBlock **blocks)
{
	int64		first = st->refetch_next;
	int			nblocks = (int) Min((int64) Max(st->request_blocks, 1),
									st->refetch_to - first + 1);
	bool		with_receipts = !st->endpoints[st->current].no_block_receipts;
	Size		size = 0;
	StringInfoData body;
	char	   *response;
	size_t		len;
	RpcReply   *replies;
	int			nreplies;
	int			n;

	initStringInfo(&body);
	append_block_calls(&body, first, nblocks, with_receipts);
	response = fetcher_call(st, st->current, body.data, "refetching blocks", &len);
	nreplies = eth_split_rpc_response(response, len, &replies);
	*blocks = palloc(sizeof(DecodedBlock) * nblocks);
	for (n = 0; n < nblocks; n++)
	{
		decode_batch_block(st, replies, nreplies, n, first + n, &with_receipts, &(*blocks)[n]);
		size += MAXALIGN(blockrec_size(&(*blocks)[n])) + 64;
		if (n > 0 && size > queue_max_record(&st->slot->queue) / 2)
			break;				/* the rest in the next batch */
	}

	/*
	 * A block whose record alone is larger than the queue: a failure of
	 * this batch (raised here, where refetch_step() counts it, so that the
	 * request ends with it), not of the fetcher when it queues the record.
	 */
	queue_check_record_fits(&st->slot->queue, blockrec_replace_size(*blocks, n));
	return n;
}

/*
 * Once caught up: one batch of the oldest unfinished refetch request,
 * queued as one record that one insert worker stores (it checks that the
 * blocks fit the stored chain), and waited for.  A batch the endpoints fail
 * to give is tried again with backoff, without holding up the head; after
 * REFETCH_ATTEMPTS failures the request ends with the error.  Returns false
 * when there was nothing to do.
 */
static bool
refetch_step(FetcherState *st)
{
	uint32		generation;
	MemoryContext outer = CurrentMemoryContext;
	DecodedBlock *volatile blocks = NULL;
	volatile int nblocks = 0;
	char	   *volatile failure = NULL;

	SpinLockAcquire(&st->slot->mutex);
	generation = st->slot->refetch_generation;
	SpinLockRelease(&st->slot->mutex);
	if (generation != st->refetch_generation)
	{
		st->refetch_generation = generation;
		st->refetch_lookup = true;
	}
	if (st->refetch_id == 0 && !st->refetch_lookup)
		return false;
	if (st->refetch_attempts > 0 && GetCurrentTimestamp() < st->refetch_retry_at)
		return false;
	/* what was queued is stored: its progress is in the table */
	run_in_transaction("looking for refetch requests", next_refetch_work, st);
	st->refetch_lookup = st->refetch_id != 0;
	if (st->refetch_id == 0)
		return false;
	if (st->refetch_id != st->refetch_failing_id)
		st->refetch_attempts = 0;

	pgstat_report_activity(STATE_RUNNING, "refetching blocks");
	PG_TRY();
	{
		DecodedBlock *fetched;

		nblocks = fetch_refetch_batch(st, &fetched);
		blocks = fetched;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(outer);
		edata = CopyErrorData();
		FlushErrorState();
		failure = psprintf("%s%s%s", edata->message, edata->detail ? " " : "",
						   edata->detail ? edata->detail : "");
		FreeErrorData(edata);
	}
	PG_END_TRY();

	if (failure == NULL)
	{
		queue_refetched(st, blocks, nblocks, NULL);
		st->refetch_attempts = 0;
		return true;
	}
	st->refetch_failing_id = st->refetch_id;
	if (++st->refetch_attempts >= REFETCH_ATTEMPTS)
	{
		ereport(WARNING,
				(errmsg("ethindex chain \"%s\": refetch " INT64_FORMAT " gives up after %d attempts: %s",
						st->name, st->refetch_id, st->refetch_attempts, failure)));
		queue_refetched(st, NULL, 0, failure);
		st->refetch_attempts = 0;
		return true;
	}
	ereport(LOG,
			(errmsg("ethindex chain \"%s\": refetch " INT64_FORMAT " failed at block " INT64_FORMAT ", attempt %d of %d: %s",
					st->name, st->refetch_id, st->refetch_next, st->refetch_attempts,
					REFETCH_ATTEMPTS, failure)));
	chain_report_error(st->slot, failure);
	st->refetch_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   Min((long) ethindex_retry_max_ms,
														   1000L << st->refetch_attempts));
	st->current = (st->current + 1) % st->nendpoints;
	st->head = -1;
	return false;
}

/* ---- the loop --------------------------------------------------------------- */

/* Wait on the latch; returns early when it is set. */
static void
fetcher_sleep(long timeout_ms)
{
	int			rc;

	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   timeout_ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static void
fetcher_detach(int code, Datum arg)
{
	ChainSlot  *slot = (ChainSlot *) DatumGetPointer(arg);

	SpinLockAcquire(&slot->mutex);
	slot->fetcher_pid = 0;
	slot->fetcher_latch = NULL;
	SpinLockRelease(&slot->mutex);
}

/*
 * One turn of the loop: keep the window of requests full, process the
 * oldest when it has arrived, or wait for the node.
 */
static void
fetcher_step(FetcherState *st)
{
	int64		target;
	int			max_inflight;
	bool		caught_up;
	TimestampTz now;

	if (!st->ready)
	{
		fetcher_begin(st);
		return;
	}

	/* the upper bound may have been lowered by a reload */
	st->window_limit = Min(st->window_limit, sizing_window_cap());
	sizing_publish(st);
	max_inflight = st->window_limit;

	fetcher_verify_endpoint(st, st->current);

	now = GetCurrentTimestamp();
	caught_up = st->window_count == 0 && st->next_to_request > st->head - st->confirmations;
	if (st->head < 0 ||
		(caught_up ? now >= st->next_poll_at :
		 TimestampDifferenceExceeds(st->head_checked_at, now, HEAD_REFRESH_MS)))
	{
		refresh_head(st);
		now = GetCurrentTimestamp();
		if (caught_up)
			headpoll_observe(&st->schedule, st->head, now);
		st->next_poll_at = TimestampTzPlusMilliseconds(now, headpoll_delay(&st->schedule, now));
		check_lagging(st);
	}
	target = st->head - st->confirmations;

	if (st->window_count == 0 && st->next_to_request > target)
	{
		long		secs;
		int			usecs;

		/* caught up: the chain is healthy, wait for the next block */
		bool		refetched = refetch_step(st);

		st->failures = 0;
		sizing_epoch_restart(st);	/* idle time is no measure of the window */
		chain_set_state(st->slot, CHAIN_STATE_RUNNING);
		if (refetched)
			return;
		TimestampDifference(GetCurrentTimestamp(), st->next_poll_at, &secs, &usecs);
		if (secs > 0 || usecs > 0)
			fetcher_sleep(secs * 1000 + (usecs + 999) / 1000);
		return;
	}

	/*
	 * New requests only while the queue has room (responses waiting for
	 * queue space would only add to the fetcher's memory) and the
	 * responses held are below ethindex.max_bytes_in_flight.
	 */
	if (st->window_count < max_inflight && st->next_to_request <= target)
	{
		int32		queued;
		Size		queued_bytes;

		queue_stats(&st->slot->queue, &queued, &queued_bytes);
		while (st->window_count < max_inflight && st->next_to_request <= target &&
			   (st->window_count == 0 ||
				(queued_bytes < st->slot->queue.capacity / 2 &&
				 rpc_held_bytes(st->rpc) < (size_t) ethindex_max_bytes_in_flight_kb * 1024)))
		{
			int			nblocks = (int) Min(st->request_blocks,
											target - st->next_to_request + 1);

			if (st->epoch_start == 0)
				st->epoch_start = GetCurrentTimestamp();
			/* a request that reaches the head: its blocks commit in order */
			start_window_request(st, st->next_to_request, nblocks,
								 st->next_to_request + nblocks - 1 >= target);
		}
	}
	/* head reached or queue half full: the window is not what limits */
	if (st->window_count < max_inflight)
		st->epoch_limited = true;

	if (!st->window[st->window_first].request.done)
	{
		pgstat_report_activity(STATE_RUNNING, "fetching blocks");
		rpc_wait(st->rpc, 1000);
		return;
	}
	if (!process_window_request(st))
	{
		reset_window(st);
		fork_roll_back(st);
		return;
	}
	st->failures = 0;
	chain_set_state(st->slot, CHAIN_STATE_RUNNING);
}

void
ethindex_fetcher_main(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	FetcherState st;
	sigjmp_buf	local_sigjmp_buf;
	MemoryContext fetcher_context;

	memset(&st, 0, sizeof(st));
	strlcpy(st.name, ((ChainWorkerArgs *) MyBgworkerEntry->bgw_extra)->name, sizeof(st.name));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	st.slot = chain_slot_attach(slotno, MyBgworkerEntry->bgw_extra);
	st.ring = ethindex_queue_buffer(slotno);
	st.head = -1;
	st.mismatch_block = -1;
	st.node_finalized = -1;
	st.pending_finalized = -1;
	st.finalized_through = -1;

	SpinLockAcquire(&st.slot->mutex);
	st.slot->fetcher_pid = MyProcPid;
	st.slot->fetcher_latch = MyLatch;
	st.slot->fetcher_started_at = GetCurrentTimestamp();
	st.refetch_generation = st.slot->refetch_generation;
	SpinLockRelease(&st.slot->mutex);
	st.refetch_lookup = true;	/* requests may wait from before */
	on_shmem_exit(fetcher_detach, PointerGetDatum(st.slot));

	ethindex_worker_connect(psprintf("ethindex fetcher %s", st.name));

	fetcher_context = AllocSetContextCreate(TopMemoryContext, "ethindex fetcher",
											ALLOCSET_DEFAULT_SIZES);
	st.loop_context = AllocSetContextCreate(fetcher_context, "ethindex fetcher loop",
											ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(fetcher_context);
	jsonrpc_init_allocator();

	run_in_transaction("reading chain configuration", load_configuration_work, &st);
	if (st.nendpoints == 0)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chain \"%s\" has no JSON-RPC endpoint", st.name)));
	st.rpc = rpc_client_create(fetcher_context);
	st.fetcher_context = fetcher_context;
	st.window = MemoryContextAllocZero(fetcher_context, sizeof(WindowRequest) * WINDOW_MAX);
	hashes_init(&st.hashes, st.max_reorg_depth + 1, fetcher_context);
	headpoll_init(&st.schedule, (double) st.poll_interval_ms);
	sizing_init(&st);

	/*
	 * Errors of one attempt land here: report, switch endpoint, back off,
	 * and start over from the first block not yet queued.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		ErrorData  *edata;
		long		delay;
		bool		fetching;

		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		LWLockReleaseAll();
		ConditionVariableCancelSleep();
		pgstat_report_wait_end();
		AbortOutOfAnyTransaction();
		queue_cancel_reservation(&st.slot->queue);
		MemoryContextSwitchTo(fetcher_context);
		edata = CopyErrorData();
		FlushErrorState();
		chain_report_error_data(st.slot, edata);
		FreeErrorData(edata);
		fetching = st.window_count > 0;
		reset_window(&st);
		sizing_failed(&st, fetching);
		st.mismatch_block = -1;
		MemoryContextReset(st.loop_context);
		RESUME_INTERRUPTS();

		st.failures++;
		st.current = (st.current + 1) % st.nendpoints;
		st.head = -1;
		st.lagging_since = 0;
		/* no wait while other endpoints have not been tried this round */
		if (st.failures >= st.nendpoints)
		{
			int			shift = Min(st.failures - st.nendpoints, 16);

			delay = Min((long) ethindex_retry_max_ms, 100L << shift);
			fetcher_sleep(delay);
		}
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(st.loop_context);
		MemoryContextSwitchTo(st.loop_context);
		fetcher_step(&st);
		MemoryContextSwitchTo(fetcher_context);
	}
}
