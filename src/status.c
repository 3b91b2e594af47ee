/*-------------------------------------------------------------------------
 *
 * status.c
 *	  Run state, errors and commit rates that a chain's workers publish in
 *	  its shared-memory slot for ethindex.chain_status.
 *
 *	  Every function here takes the slot's spinlock for a few instructions;
 *	  nothing that can fail runs while it is held.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/status.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#include "ethindex.h"

/*
 * A starting worker's check that its slot still belongs to the chain and
 * the generation it was launched for; a straggler from an earlier
 * generation (its launcher died, or the chain was restarted before it got
 * going) exits without touching the slot.
 */
ChainSlot *
chain_slot_attach(int slotno, const char *bgw_extra)
{
	const ChainWorkerArgs *args = (const ChainWorkerArgs *) bgw_extra;
	ChainSlot  *slot;
	bool		ours;

	if (ethindex_shared == NULL || slotno < 0 || slotno >= ethindex_shared->nslots)
		elog(FATAL, "ethindex worker started without its shared state");
	slot = &ethindex_shared->slots[slotno];

	LWLockAcquire(ethindex_shared->lock, LW_SHARED);
	ours = slot->in_use && slot->generation == args->generation &&
		strncmp(slot->name, args->name, NAMEDATALEN) == 0;
	LWLockRelease(ethindex_shared->lock);
	if (!ours)
	{
		ereport(LOG,
				(errmsg("ethindex worker for chain \"%s\" exits: its slot was reassigned",
						args->name)));
		proc_exit(0);
	}
	return slot;
}

void
chain_set_state(ChainSlot *slot, ChainRunState state)
{
	SpinLockAcquire(&slot->mutex);
	slot->state = state;
	SpinLockRelease(&slot->mutex);
}

/* Record an error message and set the chain's state to error. */
void
chain_report_error(ChainSlot *slot, const char *message)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->last_error, message, sizeof(slot->last_error));
	slot->last_error_at = now;
	slot->state = CHAIN_STATE_ERROR;
	SpinLockRelease(&slot->mutex);
}

/* Same, from a caught error: message, detail and hint in one line. */
void
chain_report_error_data(ChainSlot *slot, ErrorData *edata)
{
	char		buf[ETHINDEX_ERROR_LEN];

	snprintf(buf, sizeof(buf), "%s%s%s%s%s",
			 edata->message ? edata->message : "unknown error",
			 edata->detail ? " DETAIL: " : "",
			 edata->detail ? edata->detail : "",
			 edata->hint ? " HINT: " : "",
			 edata->hint ? edata->hint : "");
	/* a cut may have split a character: cut at the last whole one */
	buf[pg_mbcliplen(buf, strlen(buf), sizeof(buf) - 1)] = '\0';
	chain_report_error(slot, buf);
}

/*
 * The per-second bucket of the rate ring for "now", cleared if it held an
 * older second.  Spinlock held.
 */
static int
rate_bucket(ChainSlot *slot, TimestampTz now)
{
	int64		second = now / USECS_PER_SEC;
	int			bucket = (int) (second % ETHINDEX_RATE_WINDOW);

	if (slot->rate_second[bucket] != second)
	{
		slot->rate_second[bucket] = second;
		slot->rate_blocks[bucket] = 0;
		slot->rate_transactions[bucket] = 0;
		slot->rate_head_requests[bucket] = 0;
	}
	return bucket;
}

/* An insert worker committed blocks: count them for the rates. */
void
chain_record_commit(ChainSlot *slot, int blocks, int transactions)
{
	TimestampTz now = GetCurrentTimestamp();
	int			bucket;

	SpinLockAcquire(&slot->mutex);
	bucket = rate_bucket(slot, now);
	slot->rate_blocks[bucket] += blocks;
	slot->rate_transactions[bucket] += transactions;
	SpinLockRelease(&slot->mutex);
}

/* The fetcher asked the node for its head: count it. */
void
chain_record_head_request(ChainSlot *slot)
{
	TimestampTz now = GetCurrentTimestamp();
	int			bucket;

	SpinLockAcquire(&slot->mutex);
	bucket = rate_bucket(slot, now);
	slot->rate_head_requests[bucket]++;
	SpinLockRelease(&slot->mutex);
}
