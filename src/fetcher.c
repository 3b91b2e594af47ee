/*-------------------------------------------------------------------------
 *
 * fetcher.c
 *	  The per-chain fetcher background worker: polls the chain's endpoints
 *	  for new blocks, fetches each block with its full transactions and its
 *	  receipts, decodes them (decode.c), checks parent-hash continuity, and
 *	  puts the decoded blocks in order into the chain's queue for the
 *	  writer.
 *
 *	  No transaction is open while the network is used: the chain's
 *	  configuration and progress are read in a short transaction at start.
 *	  From then on the fetcher tracks the next block to fetch itself; the
 *	  writer is the one that commits progress.
 *
 *	  Requests: a window of HTTP requests in flight, each a JSON-RPC batch
 *	  of consecutive blocks with eth_getBlockByNumber(n, true) and
 *	  eth_getBlockReceipts(n).  An endpoint that does not know
 *	  eth_getBlockReceipts is remembered and asked for per-transaction
 *	  receipts (batched eth_getTransactionReceipt) instead.
 *
 *	  Request sizing adapts to the chain and the node; the current values
 *	  are published in the slot (chain_status.request_blocks and
 *	  request_window):
 *
 *	  - Blocks per request.  A non-NULL chains.batch_size is used as is.
 *	    NULL (adaptive): the first request asks for one block; every
 *	    completed request updates a moving average of response bytes per
 *	    block (weight 1/4 for the newest request), and new requests ask for
 *	    ADAPT_TARGET_BYTES / average blocks, clamped to 1 ..
 *	    ADAPT_MAX_BLOCKS, growing at most twofold per completed request.  A
 *	    failed attempt while blocks were being fetched halves that number
 *	    and caps it there (a provider may limit batch length or response
 *	    size); the cap doubles again after every ADAPT_CEILING_RECOVERY
 *	    successful requests.
 *
 *	  - Requests in flight ("window"), between 1 and the manual upper bound
 *	    ethindex.max_requests_in_flight (at most WINDOW_MAX); it starts at the
 *	    upper bound (a local node serves concurrent requests at once; a
 *	    provider that cannot says so with errors or growing latency).
 *	    Completed requests are measured in epochs of at least
 *	    Max(2 * window, ADAPT_EPOCH_REQUESTS) requests and
 *	    ADAPT_EPOCH_MIN_MS: throughput (response bytes per second of wall
 *	    time) and latency (request seconds per response byte).  After each
 *	    epoch: if throughput grew by more than ADAPT_GAIN_PERCENT over the
 *	    previous epoch (or there is none to compare with), the window grows
 *	    by one; otherwise, if latency is more than ADAPT_SLOW_FACTOR times
 *	    the lowest seen since the last failure (the node queues requests
 *	    without serving more), the window is halved; otherwise it is kept,
 *	    and after ADAPT_PROBE_EPOCHS such epochs it grows by one to probe.
 *	    Every failed attempt halves the window and forgets the measurements.
 *	    Epochs in which the window could not be filled (head reached, queue
 *	    more than half full) measure something else and are discarded.
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

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "blockrec.h"
#include "decode.h"
#include "ethindex.h"
#include "jsonrpc.h"
#include "rpc.h"

/* JSON-RPC error codes meaning "no such method" (standard and common variants) */
#define JSONRPC_METHOD_NOT_FOUND	(-32601)

/*
 * Adaptive request sizing (see the file header).  4 MB per response keeps a
 * mainnet backfill at a few blocks per request (a block with its receipts
 * is 0.2 to 2 MB of JSON) and lets empty blocks of a dev chain go to
 * ADAPT_MAX_BLOCKS; it is far below RPC_MAX_RESPONSE and the response
 * limits of public providers, and a full window of such responses is
 * modest next to ethindex.queue_size.  100 blocks are 200 calls, under the
 * batch limit (often 1000 calls) of common nodes and providers.
 */
#define ADAPT_TARGET_BYTES		(4.0 * 1024 * 1024)	/* response size aimed at */
#define ADAPT_MAX_BLOCKS		100 /* most blocks per adaptive request */
#define ADAPT_FIRST_BLOCKS		1	/* blocks of the first adaptive request */
#define ADAPT_CEILING_RECOVERY	32	/* successful requests before the ceiling doubles */
#define ADAPT_EPOCH_REQUESTS	4	/* fewest completed requests of an epoch */
#define ADAPT_EPOCH_MIN_MS		100 /* shortest epoch */
#define ADAPT_GAIN_PERCENT		10	/* throughput gain that earns one more request */
#define ADAPT_SLOW_FACTOR		2.0 /* latency growth that halves the window */
#define ADAPT_PROBE_EPOCHS		8	/* epochs kept before probing one more request */

typedef struct Endpoint
{
	char	   *url;
	char	   *display;		/* url without credentials, for messages */
	bool		verified;		/* eth_chainId checked */
	bool		no_block_receipts;	/* eth_getBlockReceipts unsupported */
} Endpoint;

typedef struct FetcherState
{
	ChainSlot  *slot;
	char	   *ring;
	char		name[NAMEDATALEN];

	/* configuration, read at start */
	int64		chain_id;		/* 0 until known */
	int64		start_block;
	int			confirmations;
	long		poll_interval_ms;
	int			batch_size;
	Endpoint	endpoints[ETHINDEX_MAX_ENDPOINTS];
	int			nendpoints;
	int			current;		/* endpoint in use */

	/* progress */
	int64		next_block;		/* next block to queue */
	bool		have_prev;
	uint8		prev_hash[32];	/* hash of block next_block - 1 */
	int64		head;			/* node's head, -1 unknown */
	TimestampTz head_checked_at;

	int			failures;		/* consecutive failed attempts */
	RpcClient  *rpc;
	MemoryContext fetcher_context;
	MemoryContext loop_context;

	/* requests in flight, oldest first (a ring of WINDOW_MAX) */
	struct WindowRequest *window;
	int			window_first;
	int			window_count;
	int64		next_to_request;	/* first block not yet requested */

	/* request sizing, see the file header */
	int			request_blocks; /* blocks per new request */
	int			window_limit;	/* requests allowed in flight */
	int			published_blocks;	/* values last shown in the slot */
	int			published_window;
	int			blocks_ceiling; /* adaptive: most blocks after failures */
	int			ceiling_successes;	/* successful requests since lowered */
	double		bytes_per_block;	/* moving average; 0 unknown */
	TimestampTz epoch_start;	/* 0: starts with the next request */
	int			epoch_requests; /* completed in this epoch */
	double		epoch_bytes;	/* their response bytes */
	double		epoch_seconds;	/* their latencies, summed */
	bool		epoch_limited;	/* the window could not be kept full */
	double		prev_throughput;	/* bytes/s of the last epoch; 0 none */
	double		base_latency;	/* lowest seconds per byte; 0 none */
	int			held_epochs;	/* epochs without a change of window */
} FetcherState;

/*
 * One HTTP request of the window: a JSON-RPC batch for blocks
 * [first, first + nblocks).  Its body and response live in "context".
 */
typedef struct WindowRequest
{
	int64		first;
	int			nblocks;
	bool		with_receipts;	/* eth_getBlockReceipts calls included */
	MemoryContext context;
	RpcRequest	request;
} WindowRequest;

#define WINDOW_MAX	64			/* max of ethindex.max_requests_in_flight */

/* One block being fetched in a window */
typedef struct PendingBlock
{
	int64		number;
	RpcReply   *block;
	RpcReply   *receipts;
	char	   *fallback_receipts;	/* receipts array built from single receipts */
	size_t		fallback_len;
} PendingBlock;

static void
load_configuration(FetcherState *st)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	Datum		urls;
	ArrayType  *array;
	Datum	   *elems;
	int			nelems;
	MemoryContext outer = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "reading chain configuration");

	args[0] = CStringGetTextDatum(st->name);
	if (SPI_execute_with_args("SELECT chain_id, start_block, confirmations, "
							  "(extract(epoch FROM poll_interval) * 1000)::bigint, "
							  "batch_size, rpc_urls, next_block, last_hash "
							  "FROM ethindex.chains WHERE name = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read configuration of chain \"%s\"", st->name);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("chain \"%s\" does not exist", st->name)));

	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;

	st->chain_id = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	if (isnull)
		st->chain_id = 0;
	st->start_block = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 2, &isnull));
	st->confirmations = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 3, &isnull));
	st->poll_interval_ms = (long) DatumGetInt64(SPI_getbinval(tuple, tupdesc, 4, &isnull));
	st->batch_size = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 5, &isnull));
	if (isnull)
		st->batch_size = 0;		/* adaptive */
	urls = SPI_getbinval(tuple, tupdesc, 6, &isnull);
	st->next_block = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 7, &isnull));
	{
		Datum		hash = SPI_getbinval(tuple, tupdesc, 8, &isnull);

		st->have_prev = !isnull;
		if (!isnull)
		{
			bytea	   *b = DatumGetByteaPP(hash);

			if (VARSIZE_ANY_EXHDR(b) != 32)
				elog(ERROR, "stored last_hash of chain \"%s\" is not 32 bytes", st->name);
			memcpy(st->prev_hash, VARDATA_ANY(b), 32);
		}
	}

	array = DatumGetArrayTypeP(urls);
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
	st->nendpoints = Min(nelems, ETHINDEX_MAX_ENDPOINTS);
	for (int i = 0; i < st->nendpoints; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(outer);

		st->endpoints[i].url = TextDatumGetCString(elems[i]);
		st->endpoints[i].display = rpc_url_for_display(st->endpoints[i].url);
		MemoryContextSwitchTo(old);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Insert workers commit batches out of order; rows of blocks at or above the
 * checkpoint are what a stopped or crashed run committed ahead of a batch
 * it lost.  Delete them before fetching from the checkpoint again.  Runs
 * before anything is queued, so no insert worker of this run has written.
 */
static void
discard_above_checkpoint(FetcherState *st)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	bool		isnull;
	int64		discarded = 0;
	MemoryContext outer = CurrentMemoryContext;

	if (st->chain_id == 0)
		return;					/* nothing was ever stored */

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "discarding blocks above the checkpoint");
	args[0] = Int64GetDatum(st->chain_id);
	args[1] = Int64GetDatum(st->next_block);
	if (SPI_execute_with_args("SELECT ethindex._discard_above_checkpoint($1, $2)",
							  2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not discard uncheckpointed blocks of chain \"%s\"", st->name);
	discarded = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (discarded > 0)
		ereport(LOG,
				(errmsg("ethindex chain \"%s\": discarded " INT64_FORMAT " blocks stored above the checkpoint at block " INT64_FORMAT,
						st->name, discarded, st->next_block),
				 errdetail("An earlier run committed them out of order and stopped before the blocks below them were stored; they are fetched again.")));
}

/* Record the chain id reported by the node for a chain registered without one. */
static void
store_chain_id(FetcherState *st, int64 chain_id)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	MemoryContext outer = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	args[0] = Int64GetDatum(chain_id);
	args[1] = CStringGetTextDatum(st->name);
	if (SPI_execute_with_args("UPDATE ethindex.chains SET chain_id = $1 "
							  "WHERE name = $2 AND chain_id IS NULL",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not store the chain id of chain \"%s\"", st->name);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
}

static void
append_call(StringInfo buf, int64 id, const char *method, const char *params)
{
	appendStringInfo(buf, "{\"jsonrpc\":\"2.0\",\"id\":" INT64_FORMAT
					 ",\"method\":\"%s\",\"params\":%s}", id, method, params);
}

/*
 * One JSON-RPC call to the current endpoint whose result is a quantity.
 */
static int64
quantity_call(FetcherState *st, const char *method)
{
	Endpoint   *endpoint = &st->endpoints[st->current];
	RpcRequest	request;
	RpcRequest *requests[1] = {&request};
	char	   *failure;

	rpc_request_init(&request, endpoint->url);
	append_call(&request.body, 1, method, "[]");
	rpc_perform(st->rpc, requests, 1);

	failure = rpc_request_failure(&request);
	if (failure)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s failed for chain \"%s\": %s", method, st->name, failure)));
	return jsonrpc_quantity_result(request.response, request.response_len,
								   method, endpoint->display);
}

/* Check (or learn) the chain id of the current endpoint. */
static void
verify_endpoint(FetcherState *st)
{
	Endpoint   *endpoint = &st->endpoints[st->current];
	int64		node_chain_id;

	if (endpoint->verified)
		return;
	node_chain_id = quantity_call(st, "eth_chainId");
	if (st->chain_id == 0)
	{
		store_chain_id(st, node_chain_id);
		st->chain_id = node_chain_id;
		ereport(LOG,
				(errmsg("ethindex chain \"%s\" has chain id " INT64_FORMAT " (from %s)",
						st->name, node_chain_id, endpoint->display)));
		/* data kept from an earlier registration may lie above the checkpoint */
		discard_above_checkpoint(st);
	}
	else if (st->chain_id != node_chain_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("chain id mismatch for chain \"%s\": configured " INT64_FORMAT ", but %s reports " INT64_FORMAT,
						st->name, st->chain_id, endpoint->display, node_chain_id),
				 errhint("Register the chain again with the right chain_id, or fix its rpc_urls.")));
	endpoint->verified = true;
}

static void
refresh_head(FetcherState *st)
{
	int64		head = quantity_call(st, "eth_blockNumber");

	st->head = head;
	st->head_checked_at = GetCurrentTimestamp();
	SpinLockAcquire(&st->slot->mutex);
	st->slot->node_head = head;
	strlcpy(st->slot->endpoint, st->endpoints[st->current].display,
			sizeof(st->slot->endpoint));
	SpinLockRelease(&st->slot->mutex);
}

/* Find the reply with the given id, or raise an error. */
static RpcReply *
reply_by_id(FetcherState *st, RpcReply *replies, int nreplies, int64 id,
			const char *method, int64 block)
{
	/* replies normally come in request order: try the likely place first */
	for (int i = 0; i < nreplies; i++)
		if (replies[i].id == id)
			return &replies[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("%s answered no %s for block " INT64_FORMAT " of chain \"%s\"",
					st->endpoints[st->current].display, method, block, st->name),
			 errdetail("The JSON-RPC batch response lacks the reply with id " INT64_FORMAT ".", id)));
	return NULL;				/* keep compiler quiet */
}

static void
check_reply(FetcherState *st, RpcReply *reply, const char *method, int64 block)
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
is_method_not_found(RpcReply *reply)
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
	RpcRequest	request;
	RpcRequest *requests[1] = {&request};
	RpcReply   *replies;
	int			nreplies;
	int			ntx;
	char	  **hashes;
	char	   *failure;
	StringInfoData out;

	hashes = jsonrpc_transaction_hashes(pb->block->result, pb->block->result_len,
										pb->number, &ntx);
	initStringInfo(&out);
	appendStringInfoChar(&out, '[');
	if (ntx > 0)
	{
		rpc_request_init(&request, st->endpoints[st->current].url);
		appendStringInfoChar(&request.body, '[');
		for (int i = 0; i < ntx; i++)
		{
			char		params[80];

			snprintf(params, sizeof(params), "[\"%s\"]", hashes[i]);
			if (i > 0)
				appendStringInfoChar(&request.body, ',');
			append_call(&request.body, (int64) i, "eth_getTransactionReceipt", params);
		}
		appendStringInfoChar(&request.body, ']');
		rpc_perform(st->rpc, requests, 1);
		failure = rpc_request_failure(&request);
		if (failure)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("eth_getTransactionReceipt failed for block " INT64_FORMAT " of chain \"%s\": %s",
							pb->number, st->name, failure)));
		nreplies = eth_split_rpc_response(request.response, request.response_len, &replies);
		for (int i = 0; i < ntx; i++)
		{
			RpcReply   *reply = reply_by_id(st, replies, nreplies, (int64) i,
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

/* Decode one fetched block and put it into the queue. */
static void
queue_block(FetcherState *st, PendingBlock *pb)
{
	DecodedBlock decoded;
	const char *receipts = pb->fallback_receipts ? pb->fallback_receipts : pb->receipts->result;
	size_t		receipts_len = pb->fallback_receipts ? pb->fallback_len : pb->receipts->result_len;
	Size		size;
	char	   *dst;

	eth_decode_block(&decoded, st->chain_id, pb->number,
					 pb->block->result, pb->block->result_len,
					 receipts, receipts_len);

	if (st->have_prev && memcmp(decoded.parent_hash, st->prev_hash, 32) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("parent hash mismatch at block " INT64_FORMAT " of chain \"%s\"",
						pb->number, st->name),
				 errdetail("Block " INT64_FORMAT " names parent %s, but block " INT64_FORMAT " was stored with hash %s.",
						   pb->number, eth_bytes_to_hex(decoded.parent_hash, 32),
						   pb->number - 1, eth_bytes_to_hex(st->prev_hash, 32)),
				 errhint("The chain was reorganized below the indexed blocks; this version of ethindex does not roll back stored blocks.")));

	size = blockrec_size(&decoded);
	dst = queue_reserve(&st->slot->queue, st->ring, size);
	blockrec_write(&decoded, dst, size);
	queue_commit(&st->slot->queue, st->ring, size);

	st->next_block = pb->number + 1;
	memcpy(st->prev_hash, decoded.hash, 32);
	st->have_prev = true;
}

/* Put a request for blocks [first, first + nblocks) in flight. */
static void
start_window_request(FetcherState *st, int64 first, int nblocks)
{
	Endpoint   *endpoint = &st->endpoints[st->current];
	WindowRequest *w = &st->window[(st->window_first + st->window_count) % WINDOW_MAX];
	MemoryContext old;

	w->first = first;
	w->nblocks = nblocks;
	w->with_receipts = !endpoint->no_block_receipts;
	w->context = AllocSetContextCreate(st->fetcher_context, "ethindex fetcher request",
									   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(w->context);
	rpc_request_init(&w->request, endpoint->url);
	appendStringInfoChar(&w->request.body, '[');
	for (int b = 0; b < nblocks; b++)
	{
		int64		number = first + b;
		char		params[64];

		if (b > 0)
			appendStringInfoChar(&w->request.body, ',');
		snprintf(params, sizeof(params), "[\"0x%" INT64_MODIFIER "x\",true]", number);
		append_call(&w->request.body, 2 * (int64) b, "eth_getBlockByNumber", params);
		if (w->with_receipts)
		{
			snprintf(params, sizeof(params), "[\"0x%" INT64_MODIFIER "x\"]", number);
			appendStringInfoChar(&w->request.body, ',');
			append_call(&w->request.body, 2 * (int64) b + 1, "eth_getBlockReceipts", params);
		}
	}
	appendStringInfoChar(&w->request.body, ']');
	MemoryContextSwitchTo(old);

	/* counted before starting, so that reset_window() frees it on error */
	st->window_count++;
	st->next_to_request = first + nblocks;
	rpc_start(st->rpc, &w->request);
}

/* Forget every request in flight (after an error). */
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

/* The manual upper bound of the window (ethindex.max_requests_in_flight). */
static int
window_cap(void)
{
	return Min(ethindex_max_requests_in_flight, WINDOW_MAX);
}

/* Show the current request sizing in the chain's status, if it changed. */
static void
publish_sizing(FetcherState *st)
{
	if (st->request_blocks == st->published_blocks &&
		st->window_limit == st->published_window)
		return;
	SpinLockAcquire(&st->slot->mutex);
	st->slot->request_blocks = st->request_blocks;
	st->slot->window_limit = st->window_limit;
	SpinLockRelease(&st->slot->mutex);
	st->published_blocks = st->request_blocks;
	st->published_window = st->window_limit;
}

/* Start a new measuring epoch with the next request put in flight. */
static void
epoch_restart(FetcherState *st)
{
	st->epoch_start = 0;
	st->epoch_requests = 0;
	st->epoch_bytes = 0;
	st->epoch_seconds = 0;
	st->epoch_limited = false;
}

static void
sizing_init(FetcherState *st)
{
	st->blocks_ceiling = ADAPT_MAX_BLOCKS;
	st->request_blocks = st->batch_size > 0 ? st->batch_size : ADAPT_FIRST_BLOCKS;
	st->window_limit = window_cap();
	epoch_restart(st);
	publish_sizing(st);
}

/*
 * A failed attempt: halve the window and, when adaptive and blocks were
 * being fetched, the ceiling of blocks per request; forget the
 * measurements, which may be of another endpoint.  Runs in the error path:
 * only arithmetic and the spinlock.
 */
static void
sizing_failed(FetcherState *st, bool fetching)
{
	st->window_limit = Max(Min(st->window_limit, window_cap()) / 2, 1);
	if (st->batch_size <= 0 && fetching)
	{
		st->blocks_ceiling = Max(st->request_blocks / 2, 1);
		st->request_blocks = st->blocks_ceiling;
		st->ceiling_successes = 0;
	}
	st->prev_throughput = 0;
	st->base_latency = 0;
	st->held_epochs = 0;
	epoch_restart(st);
	publish_sizing(st);
}

/* The end of an epoch: adjust the window (see the file header). */
static void
finish_epoch(FetcherState *st, TimestampTz now)
{
	double		elapsed = (double) (now - st->epoch_start) / USECS_PER_SEC;
	double		throughput = st->epoch_bytes / elapsed;
	double		latency = st->epoch_seconds / st->epoch_bytes;
	bool		gain;
	bool		slow;
	int			old_limit = st->window_limit;

	gain = st->prev_throughput <= 0 ||
		throughput > st->prev_throughput * (1.0 + ADAPT_GAIN_PERCENT / 100.0);
	slow = st->base_latency > 0 && latency > st->base_latency * ADAPT_SLOW_FACTOR;
	if (st->base_latency <= 0 || latency < st->base_latency)
		st->base_latency = latency;
	st->prev_throughput = throughput;

	if (gain)
		st->window_limit++;
	else if (slow)
		st->window_limit /= 2;
	else if (++st->held_epochs >= ADAPT_PROBE_EPOCHS)
		st->window_limit++;
	st->window_limit = Max(Min(st->window_limit, window_cap()), 1);
	if (st->window_limit != old_limit)
		st->held_epochs = 0;

	epoch_restart(st);
	/* the requests in flight belong to the new epoch */
	st->epoch_start = now;
}

/*
 * Account for a request whose blocks are all queued: adapt the blocks per
 * request to the response size, and the window to the measured epoch.
 */
static void
sizing_request_done(FetcherState *st, WindowRequest *w)
{
	TimestampTz now = GetCurrentTimestamp();

	if (st->batch_size <= 0)
	{
		double		sample = (double) w->request.response_len / w->nblocks;
		double		wanted;

		if (st->bytes_per_block <= 0)
			st->bytes_per_block = sample;
		else
			st->bytes_per_block += (sample - st->bytes_per_block) / 4;

		if (++st->ceiling_successes >= ADAPT_CEILING_RECOVERY)
		{
			st->blocks_ceiling = Min(st->blocks_ceiling * 2, ADAPT_MAX_BLOCKS);
			st->ceiling_successes = 0;
		}
		wanted = ADAPT_TARGET_BYTES / Max(st->bytes_per_block, 1.0);
		wanted = Min(wanted, (double) st->blocks_ceiling);
		wanted = Min(wanted, 2.0 * st->request_blocks);
		st->request_blocks = Max((int) wanted, 1);
	}

	if (st->epoch_start != 0)
	{
		st->epoch_requests++;
		st->epoch_bytes += (double) w->request.response_len;
		st->epoch_seconds += w->request.seconds;
		if (st->epoch_requests >= Max(2 * st->window_limit, ADAPT_EPOCH_REQUESTS) &&
			TimestampDifferenceExceeds(st->epoch_start, now, ADAPT_EPOCH_MIN_MS))
		{
			if (st->epoch_limited || st->epoch_bytes <= 0 || now <= st->epoch_start)
			{
				/* not a measure of what the window can do */
				epoch_restart(st);
				st->epoch_start = now;
			}
			else
				finish_epoch(st, now);
		}
	}
	publish_sizing(st);
}

/*
 * Check, decode and queue the blocks of the oldest request, block after
 * block, so that the blocks before a bad one are stored.  The request is
 * removed from the window when all its blocks are queued.
 */
static void
process_window_request(FetcherState *st)
{
	WindowRequest *w = &st->window[st->window_first];
	Endpoint   *endpoint = &st->endpoints[st->current];
	char	   *failure = rpc_request_failure(&w->request);
	RpcReply   *replies;
	int			nreplies;
	bool		need_fallback = !w->with_receipts;
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
		PendingBlock pb;

		memset(&pb, 0, sizeof(pb));
		pb.number = w->first + b;
		pb.block = reply_by_id(st, replies, nreplies, 2 * (int64) b,
							   "eth_getBlockByNumber", pb.number);
		check_reply(st, pb.block, "eth_getBlockByNumber", pb.number);
		if (!need_fallback)
		{
			pb.receipts = reply_by_id(st, replies, nreplies, 2 * (int64) b + 1,
									  "eth_getBlockReceipts", pb.number);
			if (is_method_not_found(pb.receipts))
			{
				ereport(LOG,
						(errmsg("ethindex chain \"%s\": %s does not support eth_getBlockReceipts, using eth_getTransactionReceipt",
								st->name, endpoint->display)));
				endpoint->no_block_receipts = true;
				need_fallback = true;
			}
			else
				check_reply(st, pb.receipts, "eth_getBlockReceipts", pb.number);
		}
		if (need_fallback)
			fetch_single_receipts(st, &pb);
		queue_block(st, &pb);
		MemoryContextReset(st->loop_context);
	}
	pgstat_report_activity(STATE_IDLE, NULL);

	sizing_request_done(st, w);
	MemoryContextDelete(w->context);
	st->window_first = (st->window_first + 1) % WINDOW_MAX;
	st->window_count--;
}

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

	/* the upper bound may have been lowered by a reload */
	st->window_limit = Min(st->window_limit, window_cap());
	publish_sizing(st);
	max_inflight = st->window_limit;

	verify_endpoint(st);

	target = st->head - st->confirmations;
	if (st->head < 0 ||
		(st->window_count == 0 && st->next_to_request > target) ||
		TimestampDifferenceExceeds(st->head_checked_at, GetCurrentTimestamp(),
								   (int) st->poll_interval_ms))
	{
		refresh_head(st);
		target = st->head - st->confirmations;
	}

	if (st->window_count == 0 && st->next_to_request > target)
	{
		/* caught up: the chain is healthy, wait for the next block */
		st->failures = 0;
		epoch_restart(st);		/* idle time is no measure of the window */
		chain_set_state(st->slot, CHAIN_STATE_RUNNING);
		fetcher_sleep(st->poll_interval_ms);
		return;
	}

	/*
	 * New requests only while the queue has room: a fetcher waiting for
	 * queue space does not drive curl, and responses left half-read would
	 * run into ethindex.rpc_timeout.
	 */
	if (st->window_count < max_inflight && st->next_to_request <= target)
	{
		int32		queued;
		Size		queued_bytes;

		queue_stats(&st->slot->queue, &queued, &queued_bytes);
		while (st->window_count < max_inflight && st->next_to_request <= target &&
			   (st->window_count == 0 || queued_bytes < st->slot->queue.capacity / 2))
		{
			if (st->epoch_start == 0)
				st->epoch_start = GetCurrentTimestamp();
			start_window_request(st, st->next_to_request,
								 (int) Min(st->request_blocks,
										   target - st->next_to_request + 1));
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
	process_window_request(st);
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

	SpinLockAcquire(&st.slot->mutex);
	st.slot->fetcher_pid = MyProcPid;
	SpinLockRelease(&st.slot->mutex);
	on_shmem_exit(fetcher_detach, PointerGetDatum(st.slot));

	BackgroundWorkerInitializeConnection(ethindex_database, NULL, 0);
	pgstat_report_appname(psprintf("ethindex fetcher %s", st.name));
	/* a database's timeouts would abort the discard of a large range */
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);

	fetcher_context = AllocSetContextCreate(TopMemoryContext, "ethindex fetcher",
											ALLOCSET_DEFAULT_SIZES);
	st.loop_context = AllocSetContextCreate(fetcher_context, "ethindex fetcher loop",
											ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(fetcher_context);
	jsonrpc_init_allocator();

	load_configuration(&st);
	MemoryContextSwitchTo(fetcher_context);
	discard_above_checkpoint(&st);
	if (st.nendpoints == 0)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chain \"%s\" has no JSON-RPC endpoint", st.name)));
	st.rpc = rpc_client_create(fetcher_context);
	st.fetcher_context = fetcher_context;
	st.window = MemoryContextAllocZero(fetcher_context, sizeof(WindowRequest) * WINDOW_MAX);
	st.next_to_request = st.next_block;
	sizing_init(&st);

	ereport(LOG,
			(errmsg("ethindex fetcher for chain \"%s\" started at block " INT64_FORMAT,
					st.name, st.next_block)));

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
		MemoryContextReset(st.loop_context);
		RESUME_INTERRUPTS();

		st.failures++;
		st.current = (st.current + 1) % st.nendpoints;
		st.head = -1;
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
