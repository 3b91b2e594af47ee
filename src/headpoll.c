/*-------------------------------------------------------------------------
 *
 * headpoll.c
 *	  When a caught-up fetcher polls the node's head: often around the time
 *	  the next block is due, rarely in between.
 *
 *	  Most nodes and providers offer no push, so the head is polled
 *	  (eth_blockNumber).  Polling every poll_interval all the time would
 *	  find a block soon after it arrives, but costs a paid provider 20
 *	  requests a second.  Blocks of most chains come at a steady interval,
 *	  so the schedule learns it:
 *
 *	  - A new head seen by a poll that follows the previous one closely
 *	    (within twice poll_interval) arrived between the two: a precise
 *	    arrival.  The interval is the median of the last HEAD_SAMPLES
 *	    precise arrivals' distances (per block), the spread their median
 *	    absolute deviation; the last precise arrival is the anchor.
 *	  - The chain is regular when at least HEAD_MIN_SAMPLES were taken, the
 *	    interval is more than twice poll_interval and the spread at most a
 *	    quarter of it.
 *	  - Learning (at start): poll every poll_interval, which makes every
 *	    arrival precise, until the chain is regular, or for at most
 *	    HEAD_LEARN_MS.
 *	  - Scheduled (regular): block anchor + k is due at anchor time +
 *	    k * interval; polling every poll_interval starts "lead" before
 *	    that (at least twice poll_interval and twice the spread) and goes
 *	    on until half an interval after it, when the next slot's window is
 *	    due instead (a missed slot).  In between, the fetcher sleeps until
 *	    the next window, at most HEAD_POLL_MAX_MS.  A block found by a poll
 *	    after such a wait (the first of a window) arrived before the window
 *	    opened: the lead doubles (up to half the interval); precise
 *	    arrivals shrink it again.  A chain that stops being regular is
 *	    learned again.
 *	  - Irregular (not regular after learning, such as a dev node mining on
 *	    demand): the delay starts at poll_interval after each new head and
 *	    doubles with every poll that finds none, up to HEAD_POLL_MAX_MS;
 *	    after HEAD_RELEARN_MS the schedule learns again.
 *
 *	  Pure arithmetic on the schedule: no I/O, no shared memory.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/headpoll.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fetcher.h"

#define HEAD_POLL_MAX_MS	1000.0	/* longest wait between head polls */
#define HEAD_MIN_SAMPLES	3	/* precise arrivals before a schedule is trusted */
#define HEAD_LEARN_MS		60000	/* longest learning phase */
#define HEAD_RELEARN_MS		600000	/* irregular this long: learn again */

static void
start_learning(HeadSchedule *hs, TimestampTz now)
{
	hs->mode = HEAD_LEARNING;
	hs->mode_since = now;
	hs->nsamples = 0;
	hs->next_sample = 0;
	hs->interval_ms = 0;
	hs->spread_ms = 0;
	hs->lead_ms = 2 * hs->fast_ms;
}

void
headpoll_init(HeadSchedule *hs, double fast_ms)
{
	memset(hs, 0, sizeof(HeadSchedule));
	hs->fast_ms = fast_ms;
	hs->last_head = -1;
	hs->anchor_block = -1;
	start_learning(hs, 0);
}

static int
compare_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
median(const double *values, int n)
{
	double		sorted[HEAD_SAMPLES];

	if (n <= 0)
		return 0;
	memcpy(sorted, values, sizeof(double) * n);
	qsort(sorted, n, sizeof(double), compare_double);
	return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

static void
update_estimate(HeadSchedule *hs)
{
	double		deviations[HEAD_SAMPLES];

	hs->interval_ms = median(hs->samples, hs->nsamples);
	for (int i = 0; i < hs->nsamples; i++)
		deviations[i] = fabs(hs->samples[i] - hs->interval_ms);
	hs->spread_ms = median(deviations, hs->nsamples);
}

static bool
is_regular(const HeadSchedule *hs)
{
	return hs->nsamples >= HEAD_MIN_SAMPLES &&
		hs->interval_ms > 2 * hs->fast_ms &&
		hs->spread_ms <= hs->interval_ms / 4;
}

static double
min_lead(const HeadSchedule *hs)
{
	return Max(2 * hs->fast_ms, 2 * hs->spread_ms);
}

/* A poll at "now" found the node's head at "head". */
void
headpoll_observe(HeadSchedule *hs, int64 head, TimestampTz now)
{
	if (hs->last_head >= 0 && head > hs->last_head)
	{
		bool		precise = hs->last_poll != 0 &&
			now - hs->last_poll <= (TimestampTz) (2 * hs->fast_ms * 1000);

		if (precise)
		{
			if (hs->anchor_block >= 0 && head > hs->anchor_block)
			{
				hs->samples[hs->next_sample] =
					(double) (now - hs->anchor) / 1000.0 / (double) (head - hs->anchor_block);
				hs->next_sample = (hs->next_sample + 1) % HEAD_SAMPLES;
				hs->nsamples = Min(hs->nsamples + 1, HEAD_SAMPLES);
				update_estimate(hs);
			}
			hs->anchor = now;
			hs->anchor_block = head;
			hs->lead_ms = Max(hs->lead_ms * 0.8, min_lead(hs));
		}
		else if (hs->mode == HEAD_SCHEDULED)
			hs->lead_ms = Min(hs->lead_ms * 2 + hs->fast_ms, hs->interval_ms / 2);
		hs->misses = 0;
	}
	else
		hs->misses++;
	hs->last_head = head;
	hs->last_poll = now;

	if (hs->mode_since == 0)
		hs->mode_since = now;
	switch (hs->mode)
	{
		case HEAD_LEARNING:
			if (is_regular(hs))
				hs->mode = HEAD_SCHEDULED;
			else if (now - hs->mode_since > (TimestampTz) HEAD_LEARN_MS * 1000)
			{
				hs->mode = HEAD_IRREGULAR;
				hs->mode_since = now;
			}
			break;
		case HEAD_SCHEDULED:
			if (!is_regular(hs))
				start_learning(hs, now);
			break;
		case HEAD_IRREGULAR:
			if (now - hs->mode_since > (TimestampTz) HEAD_RELEARN_MS * 1000)
				start_learning(hs, now);
			break;
	}
}

/* How long to wait, in ms, before the next head poll. */
long
headpoll_delay(const HeadSchedule *hs, TimestampTz now)
{
	double		fast = hs->fast_ms;
	double		slowest = Max(HEAD_POLL_MAX_MS, fast);
	double		since_anchor;
	double		due;
	double		open;

	if (hs->mode == HEAD_LEARNING)
		return (long) fast;
	if (hs->mode == HEAD_IRREGULAR)
		return (long) Min(fast * (double) (1 << Min(hs->misses, 16)), slowest);

	/* when the block after the last head seen is due, after the anchor */
	since_anchor = (double) (now - hs->anchor) / 1000.0;
	due = (double) (hs->last_head + 1 - hs->anchor_block) * hs->interval_ms;
	if (since_anchor > due + hs->interval_ms / 2)
		due += ceil((since_anchor - due - hs->interval_ms / 2) / hs->interval_ms) * hs->interval_ms;
	open = due - Max(hs->lead_ms, min_lead(hs));
	if (since_anchor >= open)
		return (long) fast;
	return (long) Max(Min(open - since_anchor, slowest), fast);
}
