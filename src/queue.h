/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  A bounded byte ring in shared memory carrying decoded blocks from a
 *	  chain's fetcher to its writer(s).
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/queue.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_QUEUE_H
#define ETHINDEX_QUEUE_H

#include "postgres.h"

#include "storage/condition_variable.h"
#include "storage/lwlock.h"

/*
 * The ring itself lives in a separate region of shared memory (see
 * ethindex_queue_buffer()); every call takes its address.  Positions are
 * byte counters that only grow; the offset in the ring is pos % capacity.
 * All fields are protected by "lock"; the producer writes a reserved record's
 * payload without the lock, beyond "tail", where no consumer reads.
 */
typedef struct BlockQueue
{
	LWLock		lock;
	ConditionVariable not_empty;
	ConditionVariable not_full;
	Size		capacity;		/* bytes in the ring; immutable */
	uint64		head;			/* next byte to read */
	uint64		tail;			/* end of the committed records */
	int32		nrecords;		/* committed records not yet taken */
	Size		nbytes;			/* their bytes, with headers and padding */
	bool		reserved;		/* a record is being written by the producer */
} BlockQueue;

extern void queue_init(BlockQueue *queue, Size capacity, int tranche_id);
extern void queue_reset(BlockQueue *queue);
extern Size queue_max_record(BlockQueue *queue);
extern char *queue_reserve(BlockQueue *queue, char *ring, Size len);
extern void queue_commit(BlockQueue *queue, char *ring, Size len);
extern void queue_cancel_reservation(BlockQueue *queue);
extern int	queue_take_batch(BlockQueue *queue, char *ring, int max_records, Size max_bytes,
							 char **records, Size *lens, long timeout_ms);
extern void queue_stats(BlockQueue *queue, int32 *records, Size *bytes);

#endif							/* ETHINDEX_QUEUE_H */
