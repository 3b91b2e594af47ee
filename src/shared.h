/*-------------------------------------------------------------------------
 *
 * shared.h
 *	  Every shared-memory layout of ethindex and its locking protocol: the
 *	  chain slots, the queue that carries decoded blocks from a chain's
 *	  fetcher to its insert workers, and the records in that queue.
 *
 *	  Layout.  One EthindexShared struct with ethindex.max_chains ChainSlots,
 *	  followed by one queue ring of ethindex.queue_size bytes per slot
 *	  (ethindex.c allocates it in the shmem startup hook).
 *
 *	  Who writes what, under which lock:
 *
 *	  EthindexShared->lock (LWLock)
 *	    launcher_pid, launcher_latch, and each slot's in_use, name and
 *	    generation: written by the launcher holding it exclusively, read
 *	    under it shared.  A worker reads its slot's assignment once at start
 *	    (chain_slot_attach); the slot is not reused before all its workers
 *	    have exited.
 *
 *	  ChainSlot.mutex (spinlock, held for a few instructions, nothing that
 *	  can fail while it is held)
 *	    the status fields: state and errors (any worker of the chain, and
 *	    the launcher), the node's head and finality (fetcher), process ids
 *	    (each worker its own), request sizing (fetcher), commit and
 *	    head-request rates (insert workers, fetcher), refetch_generation
 *	    (SQL function ethindex.refetch() at commit).  Read by
 *	    ethindex._runtime_state() and the launcher.
 *
 *	  ChainSlot.commit_lock (LWLock) with commit_cv
 *	    the start-up handshake and the commit coordination of the insert
 *	    workers (checkpoint.c):
 *	      - ready, learned_chain_id: at every (re)start the launcher clears
 *	        them; the fetcher publishes the chain id it learned from the
 *	        node when the chain was registered without one; insert worker 0
 *	        stores it, deletes whatever an earlier run committed above the
 *	        checkpoint, and sets ready.  The fetcher starts fetching only
 *	        once ready is set (it never writes tables itself).
 *	      - checkpoint_next: chains.next_block as last committed (-1
 *	        unknown).  Only a worker that committed a move of the
 *	        checkpoint (or a rollback) changes it, after its commit.
 *	      - pending[]: batches committed ahead of the checkpoint (out of
 *	        order, during backfill), announced after their commit; removed
 *	        once the checkpoint passes them.
 *	    Waiters sleep on commit_cv: a worker for room in pending[], a batch
 *	    that must commit in block order for the checkpoint to reach it, the
 *	    fetcher for ready.  Whoever changes these fields broadcasts it.
 *
 *	  BlockQueue.lock (LWLock) with not_empty and changed
 *	    every field of the queue; see the comment on BlockQueue.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/shared.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_SHARED_H
#define ETHINDEX_SHARED_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#include "schema.h"

#define ETHINDEX_MAX_INSERT_WORKERS	8	/* max of ethindex.insert_workers */
#define ETHINDEX_MAX_PENDING_RANGES	64	/* committed batches awaiting the checkpoint */
#define ETHINDEX_ERROR_LEN			1024	/* bytes of last_error kept */
#define ETHINDEX_ENDPOINT_LEN		256 /* bytes of the endpoint shown */
#define ETHINDEX_RATE_WINDOW		60	/* seconds of the rate windows */

/*
 * The queue: a bounded ring of bytes carrying records from one producer,
 * the chain's fetcher, to its consumers, the insert workers.
 *
 * Positions are byte counters that only grow; the offset in the ring is
 * pos % capacity.  Each record is a uint64 payload length followed by the
 * payload, padded to MAXALIGN so that payloads are aligned for Datums; a
 * record never wraps around the end of the ring: QUEUE_WRAP_MARKER in place
 * of a length sends readers back to offset 0.
 *
 * All fields are protected by "lock".  The producer reserves room under the
 * lock, writes the payload without it (beyond "tail", where no consumer
 * reads), and commits it under the lock.  Consumers take a run of
 * consecutive records in one hold of the lock, copying them out, so their
 * space is free at once; a consumer that took records counts itself in
 * "nbusy" until it has finished with them (committed or given up), which
 * lets the producer wait until everything it queued is stored
 * (queue_wait_drained).  The producer sleeps on "changed" (room freed, a
 * consumer finished): with requests in flight it is only prepared to sleep
 * on it and waits on its latch together with its sockets (fetcher.c
 * reserve_queue_room), so a full queue does not stall libcurl; consumers
 * sleep on "not_empty".  The launcher resets
 * the queue only while no worker of the chain runs.
 */
typedef struct BlockQueue
{
	LWLock		lock;
	ConditionVariable not_empty;
	ConditionVariable changed;
	Size		capacity;		/* bytes in the ring; immutable */
	uint64		head;			/* next byte to read */
	uint64		tail;			/* end of the committed records */
	int32		nrecords;		/* committed records not yet taken */
	Size		nbytes;			/* their bytes, with headers and padding */
	bool		reserved;		/* a record is being written by the producer */
	int32		nbusy;			/* consumers not finished with taken records */
} BlockQueue;

#define QUEUE_RECORD_HEADER_SIZE	MAXALIGN(sizeof(uint64))
#define QUEUE_WRAP_MARKER			PG_UINT64_MAX

/*
 * Records in the queue (blockrec.c writes and reads them).  Every payload
 * starts with a QueueRecordHeader.
 *
 * QUEUE_RECORD_BLOCK: a decoded block.  The header is followed, table after
 * table and row after row, by the row's null flags (natts bytes, padded to
 * MAXALIGN) and its non-null values: pass-by-value columns as one Datum,
 * varlena columns (bytea, numeric, jsonb, arrays) as their bytes padded to
 * MAXALIGN.  Varlena values are position independent, so an insert worker
 * points its Datums straight into its copy of the record.
 *
 * QUEUE_RECORD_ROLLBACK: a reorganization to roll back (RollbackRequest);
 * the fetcher queues it alone, once everything queued before is stored.
 *
 * QUEUE_RECORD_REPLACE: a batch of blocks refetched for ethindex.refetch(),
 * which one insert worker stores in one transaction in place of the stored
 * ones: a ReplaceRecordHeader, then "nblocks" block records, each a uint64
 * length and the record (as above) padded to MAXALIGN.  The fetcher queues
 * the next batch of a request only once this one is stored.  A record
 * without blocks ends the request with "error".
 */
typedef enum QueueRecordKind
{
	QUEUE_RECORD_BLOCK = 1,
	QUEUE_RECORD_ROLLBACK = 2,
	QUEUE_RECORD_REPLACE = 3
} QueueRecordKind;

/* flags of a block record */
#define BLOCK_ORDERED	0x01	/* fetched at the head: commit in block order */

typedef struct QueueRecordHeader
{
	uint8		kind;			/* QueueRecordKind */
	uint8		flags;			/* BLOCK_* for block records */
} QueueRecordHeader;

typedef struct BlockRecordHeader
{
	QueueRecordHeader common;
	int64		number;
	uint8		hash[32];
	uint8		parent_hash[32];
	int32		transaction_count;
	int32		log_count;
	int32		nrows[ETH_NUM_TABLES];
} BlockRecordHeader;

typedef struct ReplaceRecordHeader
{
	QueueRecordHeader common;
	int32		nblocks;
	int64		refetch_id;		/* the ethindex.refetches row */
	char		error[512];		/* nblocks 0: why the request failed */
} ReplaceRecordHeader;

/*
 * A reorganization found by the fetcher: blocks fork_block + 1 .. old_head
 * as stored are not on the node's chain, whose block at old_head has hash
 * new_head_hash.  The insert worker taking it deletes their rows, rewinds
 * the checkpoint to fork_block and records the reorganization, in one
 * transaction.
 */
typedef struct RollbackRequest
{
	QueueRecordHeader common;
	int64		fork_block;		/* last block common to both branches */
	uint8		fork_hash[32];
	int64		old_head;		/* last block stored on the old branch */
	uint8		old_head_hash[32];
	uint8		new_head_hash[32];	/* the node's block at old_head */
	TimestampTz detected_at;
	char		endpoint[ETHINDEX_ENDPOINT_LEN];	/* that reported the new branch */
} RollbackRequest;

/* Run state of a chain as seen by its workers */
typedef enum ChainRunState
{
	CHAIN_STATE_IDLE = 0,		/* slot has no workers */
	CHAIN_STATE_STARTING,		/* workers launched, no block fetched yet */
	CHAIN_STATE_RUNNING,
	CHAIN_STATE_ERROR			/* last attempt failed; retrying */
} ChainRunState;

/*
 * A batch an insert worker committed ahead of the checkpoint (out of
 * order): its rows are stored, chains.next_block does not cover it yet.
 */
typedef struct PendingRange
{
	int64		first;
	int64		last;
	uint8		first_parent_hash[32];
	uint8		last_hash[32];
} PendingRange;

typedef struct ChainSlot
{
	/* assignment: the launcher, under EthindexShared->lock */
	bool		in_use;
	char		name[NAMEDATALEN];
	uint32		generation;		/* bumped at every (re)start of the workers */

	/* status: under mutex */
	slock_t		mutex;
	ChainRunState state;
	int64		node_head;		/* latest head reported by the node, -1 unknown */
	int64		node_safe;		/* the node's "safe" block, -1 unknown */
	int64		node_finalized; /* the node's "finalized" block, -1 unknown */
	pid_t		fetcher_pid;
	Latch	   *fetcher_latch;	/* set to wake the fetcher, NULL if none */
	pid_t		writer_pids[ETHINDEX_MAX_INSERT_WORKERS];
	int			nwriters;		/* insert workers of this generation */
	int			request_blocks; /* blocks per request, as the fetcher adapts it */
	int			window_limit;	/* requests in flight the fetcher allows itself */
	int64		response_bytes; /* response memory the fetcher holds */
	char		endpoint[ETHINDEX_ENDPOINT_LEN];	/* endpoint in use */
	char		last_error[ETHINDEX_ERROR_LEN];
	TimestampTz last_error_at;
	TimestampTz writer_started_at;
	TimestampTz fetcher_started_at;
	/* per-second counters of the last minute (one ring for all three) */
	int64		rate_second[ETHINDEX_RATE_WINDOW];
	int32		rate_blocks[ETHINDEX_RATE_WINDOW];
	int32		rate_transactions[ETHINDEX_RATE_WINDOW];
	int32		rate_head_requests[ETHINDEX_RATE_WINDOW];
	uint32		refetch_generation; /* bumped when a refetch is requested */

	/* start-up handshake and commit coordination: under commit_lock */
	LWLock		commit_lock;
	ConditionVariable commit_cv;
	bool		ready;			/* insert worker 0 finished the start-up repair */
	int64		learned_chain_id;	/* from the node, for a chain without one; 0 none */
	int64		checkpoint_next;	/* chains.next_block as last committed, -1 unknown */
	int			npending;
	PendingRange pending[ETHINDEX_MAX_PENDING_RANGES];

	BlockQueue	queue;			/* decoded blocks from fetcher to insert workers */
} ChainSlot;

typedef struct EthindexShared
{
	LWLock	   *lock;			/* protects slot assignment */
	pid_t		launcher_pid;	/* 0 when no launcher runs */
	Latch	   *launcher_latch;
	int			nslots;
	ChainSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} EthindexShared;

#endif							/* ETHINDEX_SHARED_H */
