/*-------------------------------------------------------------------------
 *
 * fetcher.h
 *	  The fetcher of a chain: state shared by the files that implement it.
 *
 *	    fetcher.c   the worker: start-up, the loop, windows of requests,
 *	                decoding and queueing blocks, refetches, failover
 *	    sizing.c    adaptive blocks per request and requests in flight
 *	    headpoll.c  when to poll the head once caught up
 *	    fork.c      the hashes of recent blocks, finality, and finding,
 *	                confirming and rolling back reorganizations
 *
 *	  The fetcher talks to the nodes and fills the queue; it reads its
 *	  chain's configuration and recent block hashes, but never writes a
 *	  table (the insert workers do, see writer.h).
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/fetcher.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_FETCHER_H
#define ETHINDEX_FETCHER_H

#include "postgres.h"

#include "decode.h"
#include "ethindex.h"
#include "rpc.h"

#define WINDOW_MAX	64			/* max of ethindex.max_requests_in_flight */

typedef struct Endpoint
{
	char	   *url;
	char	   *display;		/* url without credentials, for messages */
	bool		verified;		/* eth_chainId checked */
	bool		no_block_receipts;	/* eth_getBlockReceipts unsupported */
	TimestampTz no_finality_until;	/* "safe"/"finalized" unsupported: not asked till then */
} Endpoint;

/* Hashes of the last blocks queued: blocks first .. first + count - 1 */
typedef struct HashRing
{
	int64		first;
	int			count;
	int			capacity;
	int			start;			/* slot of block "first" */
	uint8		(*hashes)[32];
} HashRing;

/*
 * When to poll the head once caught up (headpoll.c).  Arrival times of new
 * heads seen right after a poll that did not see them yet are "precise";
 * from them the schedule learns the block interval and the phase.
 */
#define HEAD_SAMPLES	16

typedef enum HeadPollMode
{
	HEAD_LEARNING,				/* poll every poll_interval, learn the interval */
	HEAD_SCHEDULED,				/* poll around the next block's arrival */
	HEAD_IRREGULAR				/* back off after each new head */
} HeadPollMode;

typedef struct HeadSchedule
{
	double		fast_ms;		/* chains.poll_interval */
	HeadPollMode mode;
	TimestampTz mode_since;		/* 0: not yet polled */
	TimestampTz last_poll;		/* 0: none yet */
	int64		last_head;		/* head seen at the last poll, -1 none */
	int			misses;			/* polls without a new head since the last one */
	TimestampTz anchor;			/* precise arrival of block anchor_block */
	int64		anchor_block;	/* -1: no anchor */
	double		samples[HEAD_SAMPLES];	/* ms per block between precise arrivals */
	int			nsamples;
	int			next_sample;
	double		interval_ms;	/* median of the samples, 0 unknown */
	double		spread_ms;		/* their median absolute deviation */
	double		lead_ms;		/* how long before a block is due polling starts */
} HeadSchedule;

/*
 * One HTTP request of the window: a JSON-RPC batch for blocks
 * [first, first + nblocks).  Its body and response live in "context".
 */
typedef struct WindowRequest
{
	int64		first;
	int			nblocks;
	bool		with_receipts;	/* eth_getBlockReceipts calls included */
	bool		ordered;		/* reaches the head: its blocks commit in order */
	MemoryContext context;
	RpcRequest	request;
} WindowRequest;

typedef struct FetcherState
{
	ChainSlot  *slot;
	char	   *ring;			/* the queue's ring buffer */
	char		name[NAMEDATALEN];

	/* configuration, read at start */
	int64		chain_id;		/* 0 until known */
	int64		start_block;
	int			confirmations;
	long		poll_interval_ms;
	int			batch_size;
	int			max_reorg_depth;
	Endpoint	endpoints[ETHINDEX_MAX_ENDPOINTS];
	int			nendpoints;
	int			current;		/* endpoint in use */

	/* progress */
	bool		ready;			/* the start-up handshake is done */
	int64		next_block;		/* next block to queue */
	HashRing	hashes;			/* of the blocks queued last */
	int64		head;			/* node's head, -1 unknown */
	TimestampTz head_checked_at;
	HeadSchedule schedule;
	TimestampTz next_poll_at;	/* caught up: when to poll the head next */
	TimestampTz lagging_since;	/* endpoint's head below the blocks queued, 0 not */

	/* finality (fork.c) */
	int64		finalized_through;	/* chains.finalized_through at start, -1 none */
	int64		node_finalized; /* verified "finalized" block, -1 none */
	int64		pending_finalized;	/* reported, to verify once queued; -1 none */
	uint8		pending_finalized_hash[32];
	TimestampTz finality_checked_at;

	/* a parent hash mismatch found while queueing: block and its parent */
	int64		mismatch_block; /* -1 none */
	uint8		mismatch_parent[32];

	/* refetch requests (ethindex.refetches) */
	uint32		refetch_generation; /* slot's generation when last read */
	bool		refetch_lookup;		/* look for requests in the table */
	int64		refetch_id;		/* request being served, 0 none */
	int64		refetch_next;	/* its next block, as committed */
	int64		refetch_to;
	int64		refetch_failing_id; /* the request whose batches failed */
	int			refetch_attempts;	/* its failed attempts in a row */
	TimestampTz refetch_retry_at;	/* when to try it again */

	int			failures;		/* consecutive failed attempts */
	RpcClient  *rpc;
	MemoryContext fetcher_context;
	MemoryContext loop_context;

	/* requests in flight, oldest first (a ring of WINDOW_MAX) */
	WindowRequest *window;
	int			window_first;
	int			window_count;
	int64		next_to_request;	/* first block not yet requested */

	/* request sizing (sizing.c) */
	int			request_blocks; /* blocks per new request */
	int			window_limit;	/* requests allowed in flight */
	int			published_blocks;	/* values last shown in the slot */
	int			published_window;
	int64		published_held;
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

/* fetcher.c */
extern char *fetcher_call(FetcherState *st, int endpoint, const char *body,
						  const char *what, size_t *len);
extern void fetcher_verify_endpoint(FetcherState *st, int endpoint);

/* sizing.c */
extern int	sizing_window_cap(void);
extern void sizing_init(FetcherState *st);
extern void sizing_publish(FetcherState *st);
extern void sizing_epoch_restart(FetcherState *st);
extern void sizing_failed(FetcherState *st, bool fetching);
extern void sizing_request_done(FetcherState *st, WindowRequest *w);

/* headpoll.c */
extern void headpoll_init(HeadSchedule *hs, double fast_ms);
extern void headpoll_observe(HeadSchedule *hs, int64 head, TimestampTz now);
extern long headpoll_delay(const HeadSchedule *hs, TimestampTz now);

/* fork.c */
extern void hashes_init(HashRing *ring, int capacity, MemoryContext context);
extern void hashes_push(HashRing *ring, int64 number, const uint8 *hash);
extern bool hashes_get(const HashRing *ring, int64 number, uint8 *hash);
extern bool hashes_last(const HashRing *ring, uint8 *hash);
extern void hashes_truncate(HashRing *ring, int64 last);
extern void fork_load_hashes(FetcherState *st);
extern void fork_check_finality(FetcherState *st, int64 number, const uint8 *hash);
extern void fork_note_finality(FetcherState *st, int64 number, const uint8 *hash);
extern void fork_roll_back(FetcherState *st);

#endif							/* ETHINDEX_FETCHER_H */
