/*-------------------------------------------------------------------------
 *
 * sqlfuncs.c
 *	  SQL-callable C functions of the control and status interface; the
 *	  rest of the interface is SQL (sql/ethindex--*.sql) built on these.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/sqlfuncs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "ethindex.h"

PG_FUNCTION_INFO_V1(ethindex_assert_loaded);
PG_FUNCTION_INFO_V1(ethindex_wake_launcher_at_commit);
PG_FUNCTION_INFO_V1(ethindex_runtime_state);
PG_FUNCTION_INFO_V1(ethindex_wake_fetcher_at_commit);

/* Error out unless indexing can run from this database. */
Datum
ethindex_assert_loaded(PG_FUNCTION_ARGS)
{
	ethindex_check_loaded();
	PG_RETURN_VOID();
}

/* Wake the launcher when the calling transaction commits. */
Datum
ethindex_wake_launcher_at_commit(PG_FUNCTION_ARGS)
{
	ethindex_request_launcher_wakeup();
	PG_RETURN_VOID();
}

/* Tell a chain's fetcher, when the calling transaction commits, to look for refetch requests. */
Datum
ethindex_wake_fetcher_at_commit(PG_FUNCTION_ARGS)
{
	ethindex_request_fetcher_wakeup(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

static const char *
state_name(ChainRunState state)
{
	switch (state)
	{
		case CHAIN_STATE_IDLE:
			return "stopped";
		case CHAIN_STATE_STARTING:
			return "starting";
		case CHAIN_STATE_RUNNING:
			return "running";
		case CHAIN_STATE_ERROR:
			return "error";
	}
	return "unknown";
}

/*
 * Columns of _runtime_state(): 16 in version 0.1 of the extension's SQL,
 * 17 since 0.2 (response_bytes).  The library serves both, so that status
 * reads work between installing a new library and ALTER EXTENSION UPDATE.
 */
#define RUNTIME_STATE_COLS_0_1 16
#define RUNTIME_STATE_COLS 17

/*
 * One row per chain slot in use: the workers' view of the chain.  Values
 * are copied under the slot's spinlock and formatted afterwards.
 */
Datum
ethindex_runtime_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		now_second = GetCurrentTimestamp() / USECS_PER_SEC;

	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != RUNTIME_STATE_COLS &&
		rsinfo->setDesc->natts != RUNTIME_STATE_COLS_0_1)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("ethindex._runtime_state() is declared with %d columns, the library returns %d",
						rsinfo->setDesc->natts, RUNTIME_STATE_COLS),
				 errhint("Run ALTER EXTENSION ethindex UPDATE.")));
	if (ethindex_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(ethindex_shared->lock, LW_SHARED);
	for (int i = 0; i < ethindex_shared->nslots; i++)
	{
		ChainSlot  *slot = &ethindex_shared->slots[i];
		ChainSlot	copy;
		Datum		values[RUNTIME_STATE_COLS];
		bool		nulls[RUNTIME_STATE_COLS];
		int64		blocks = 0;
		int64		transactions = 0;
		int64		head_requests = 0;
		int64		window;
		int64		fetcher_window;
		int32		queued_records;
		Size		queued_bytes;

		if (!slot->in_use)
			continue;

		SpinLockAcquire(&slot->mutex);
		copy.state = slot->state;
		copy.node_head = slot->node_head;
		copy.fetcher_pid = slot->fetcher_pid;
		memcpy(copy.writer_pids, slot->writer_pids, sizeof(copy.writer_pids));
		copy.request_blocks = slot->request_blocks;
		copy.window_limit = slot->window_limit;
		copy.response_bytes = slot->response_bytes;
		memcpy(copy.endpoint, slot->endpoint, sizeof(copy.endpoint));
		memcpy(copy.last_error, slot->last_error, sizeof(copy.last_error));
		copy.last_error_at = slot->last_error_at;
		copy.writer_started_at = slot->writer_started_at;
		copy.fetcher_started_at = slot->fetcher_started_at;
		memcpy(copy.rate_second, slot->rate_second, sizeof(copy.rate_second));
		memcpy(copy.rate_blocks, slot->rate_blocks, sizeof(copy.rate_blocks));
		memcpy(copy.rate_transactions, slot->rate_transactions, sizeof(copy.rate_transactions));
		memcpy(copy.rate_head_requests, slot->rate_head_requests, sizeof(copy.rate_head_requests));
		SpinLockRelease(&slot->mutex);
		LWLockAcquire(&slot->commit_lock, LW_SHARED);
		copy.checkpoint_next = slot->checkpoint_next;
		LWLockRelease(&slot->commit_lock);
		queue_stats(&slot->queue, &queued_records, &queued_bytes);

		/* the last minute's commits, over the part of it the writer ran */
		for (int b = 0; b < ETHINDEX_RATE_WINDOW; b++)
			if (copy.rate_second[b] > now_second - ETHINDEX_RATE_WINDOW &&
				copy.rate_second[b] <= now_second)
			{
				blocks += copy.rate_blocks[b];
				transactions += copy.rate_transactions[b];
				head_requests += copy.rate_head_requests[b];
			}
		window = ETHINDEX_RATE_WINDOW;
		if (copy.writer_started_at != 0)
			window = Min(window, now_second - copy.writer_started_at / USECS_PER_SEC + 1);
		window = Max(window, 1);
		fetcher_window = ETHINDEX_RATE_WINDOW;
		if (copy.fetcher_started_at != 0)
			fetcher_window = Min(fetcher_window, now_second - copy.fetcher_started_at / USECS_PER_SEC + 1);
		fetcher_window = Max(fetcher_window, 1);

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(slot->name);
		values[1] = CStringGetTextDatum(state_name(copy.state));
		values[2] = Int64GetDatum(copy.node_head);
		nulls[2] = copy.node_head < 0;
		values[3] = Int64GetDatum(copy.checkpoint_next - 1);
		nulls[3] = copy.checkpoint_next < 0;
		values[4] = Float8GetDatum((double) blocks / window);
		values[5] = Float8GetDatum((double) transactions / window);
		values[6] = Int32GetDatum(queued_records);
		values[7] = Int64GetDatum((int64) queued_bytes);
		values[8] = Int32GetDatum(copy.fetcher_pid);
		nulls[8] = copy.fetcher_pid == 0;
		{
			Datum		pids[ETHINDEX_MAX_INSERT_WORKERS];
			int			npids = 0;

			for (int w = 0; w < ETHINDEX_MAX_INSERT_WORKERS; w++)
				if (copy.writer_pids[w] != 0)
					pids[npids++] = Int32GetDatum(copy.writer_pids[w]);
			values[9] = PointerGetDatum(construct_array(pids, npids, INT4OID,
														 sizeof(int32), true,
														 TYPALIGN_INT));
		}
		values[10] = CStringGetTextDatum(copy.endpoint);
		nulls[10] = copy.endpoint[0] == '\0';
		values[11] = CStringGetTextDatum(copy.last_error);
		nulls[11] = copy.last_error[0] == '\0';
		values[12] = TimestampTzGetDatum(copy.last_error_at);
		nulls[12] = copy.last_error_at == 0;
		values[13] = Int32GetDatum(copy.request_blocks);
		nulls[13] = copy.request_blocks <= 0;
		values[14] = Int32GetDatum(copy.window_limit);
		nulls[14] = copy.window_limit <= 0;
		values[15] = Float8GetDatum((double) head_requests * 60.0 / fetcher_window);
		nulls[15] = copy.fetcher_pid == 0;
		values[16] = Int64GetDatum(copy.response_bytes);
		nulls[16] = copy.fetcher_pid == 0;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(ethindex_shared->lock);

	return (Datum) 0;
}
