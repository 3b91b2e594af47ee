/*-------------------------------------------------------------------------
 *
 * sizing.c
 *	  How big the fetcher's requests are and how many it keeps in flight.
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
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/sizing.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "fetcher.h"

/*
 * Adaptive request sizing (see the file header).  4 MB per response keeps a
 * mainnet backfill at a few blocks per request (a block with its receipts
 * is 0.2 to 2 MB of JSON) and lets empty blocks of a dev chain go to
 * ADAPT_MAX_BLOCKS; it is far below ethindex.max_response_size and the response
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

/* The manual upper bound of the window (ethindex.max_requests_in_flight). */
int
sizing_window_cap(void)
{
	return Min(ethindex_max_requests_in_flight, WINDOW_MAX);
}

/*
 * Show the current request sizing, and the response memory held, in the
 * chain's status, if they changed.
 */
void
sizing_publish(FetcherState *st)
{
	int64		held = (int64) rpc_held_bytes(st->rpc);

	if (st->request_blocks == st->published_blocks &&
		st->window_limit == st->published_window &&
		held == st->published_held)
		return;
	SpinLockAcquire(&st->slot->mutex);
	st->slot->request_blocks = st->request_blocks;
	st->slot->window_limit = st->window_limit;
	st->slot->response_bytes = held;
	SpinLockRelease(&st->slot->mutex);
	st->published_blocks = st->request_blocks;
	st->published_window = st->window_limit;
	st->published_held = held;
}

/* Start a new measuring epoch with the next request put in flight. */
void
sizing_epoch_restart(FetcherState *st)
{
	st->epoch_start = 0;
	st->epoch_requests = 0;
	st->epoch_bytes = 0;
	st->epoch_seconds = 0;
	st->epoch_limited = false;
}

void
sizing_init(FetcherState *st)
{
	st->blocks_ceiling = ADAPT_MAX_BLOCKS;
	st->request_blocks = st->batch_size > 0 ? st->batch_size : ADAPT_FIRST_BLOCKS;
	st->window_limit = sizing_window_cap();
	sizing_epoch_restart(st);
	sizing_publish(st);
}

/*
 * A failed attempt: halve the window and, when adaptive and blocks were
 * being fetched, the ceiling of blocks per request; forget the
 * measurements, which may be of another endpoint.  Runs in the error path:
 * only arithmetic and the spinlock.
 */
void
sizing_failed(FetcherState *st, bool fetching)
{
	st->window_limit = Max(Min(st->window_limit, sizing_window_cap()) / 2, 1);
	if (st->batch_size <= 0 && fetching)
	{
		st->blocks_ceiling = Max(st->request_blocks / 2, 1);
		st->request_blocks = st->blocks_ceiling;
		st->ceiling_successes = 0;
	}
	st->prev_throughput = 0;
	st->base_latency = 0;
	st->held_epochs = 0;
	sizing_epoch_restart(st);
	sizing_publish(st);
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
	st->window_limit = Max(Min(st->window_limit, sizing_window_cap()), 1);
	if (st->window_limit != old_limit)
		st->held_epochs = 0;

	sizing_epoch_restart(st);
	/* the requests in flight belong to the new epoch */
	st->epoch_start = now;
}

/*
 * Account for a request whose blocks are all queued: adapt the blocks per
 * request to the response size, and the window to the measured epoch.
 */
void
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
				sizing_epoch_restart(st);
				st->epoch_start = now;
			}
			else
				finish_epoch(st, now);
		}
	}
	sizing_publish(st);
}
