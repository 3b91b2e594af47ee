/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  Bounded shared-memory ring of records (decoded blocks, rollback
 *	  requests) from one producer, the chain's fetcher, to its consumers,
 *	  the insert workers.  Layout and locking: shared.h (BlockQueue).
 *
 *	  A full ring makes the producer sleep on "changed": this is the
 *	  backpressure that keeps memory bounded whatever the backlog.  An empty
 *	  ring makes consumers sleep on "not_empty".  A consumer that took
 *	  records is busy until queue_finish(); queue_wait_drained() lets the
 *	  producer wait until every record it queued has been taken and
 *	  finished with (stored).
 *
 *	  The ring memory is owned by ethindex.c; the queue is reset by the
 *	  launcher only while no worker of the chain runs.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "queue.h"

static inline Size
record_size(Size len)
{
	return QUEUE_RECORD_HEADER_SIZE + MAXALIGN(len);
}

void
queue_init(BlockQueue *queue, Size capacity, int tranche_id)
{
	Assert(capacity % MAXIMUM_ALIGNOF == 0);
	LWLockInitialize(&queue->lock, tranche_id);
	ConditionVariableInit(&queue->not_empty);
	ConditionVariableInit(&queue->changed);
	queue->capacity = capacity;
	queue_reset(queue);
}

/* Forget every record.  Only while no fetcher or writer of the chain runs. */
void
queue_reset(BlockQueue *queue)
{
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	queue->head = 0;
	queue->tail = 0;
	queue->nrecords = 0;
	queue->nbytes = 0;
	queue->reserved = false;
	queue->nbusy = 0;
	LWLockRelease(&queue->lock);
}

/* The largest payload a record may have. */
Size
queue_max_record(BlockQueue *queue)
{
	return queue->capacity - QUEUE_RECORD_HEADER_SIZE;
}

/* Raise the error of a record of len bytes that can never fit the ring. */
void
queue_check_record_fits(BlockQueue *queue, Size len)
{
	if (len > queue_max_record(queue))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("decoded block of %zu bytes does not fit in the queue of %zu bytes",
						len, queue->capacity),
				 errhint("Increase ethindex.queue_size.")));
}

/*
 * Reserve room for a record of len bytes if the ring has it now; NULL if
 * not.  Returns where the payload is to be written; queue_commit() makes it
 * visible.  Only one record may be reserved at a time.
 */
char *
queue_try_reserve(BlockQueue *queue, char *ring, Size len)
{
	Size		total = record_size(len);
	Size		offset;
	Size		contiguous;
	Size		need;
	char	   *payload = NULL;

	queue_check_record_fits(queue, len);
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	Assert(!queue->reserved);

	/* An empty ring starts over at offset 0: any record then fits. */
	if (queue->nrecords == 0 && queue->tail % queue->capacity != 0)
	{
		queue->tail += queue->capacity - queue->tail % queue->capacity;
		queue->head = queue->tail;
		queue->nbytes = 0;
	}

	offset = queue->tail % queue->capacity;
	contiguous = queue->capacity - offset;
	need = total + (contiguous < total ? contiguous : 0);

	if (queue->tail + need - queue->head <= queue->capacity)
	{
		if (contiguous < total)
		{
			/* mark the rest of the ring as skipped and start at 0 */
			*(uint64 *) (ring + offset) = QUEUE_WRAP_MARKER;
			queue->tail += contiguous;
			queue->nbytes += contiguous;
			offset = 0;
		}
		queue->reserved = true;
		payload = ring + offset + QUEUE_RECORD_HEADER_SIZE;
	}
	LWLockRelease(&queue->lock);
	return payload;
}

/*
 * Prepare to sleep until the consumers free room or finish records: call
 * before queue_try_reserve(), so that a change between it and the sleep
 * sets the latch.  The caller sleeps on its latch (with its own wait set)
 * and ends with ConditionVariableCancelSleep().
 */
void
queue_prepare_to_wait_for_room(BlockQueue *queue)
{
	ConditionVariablePrepareToSleep(&queue->changed);
}

/*
 * Reserve room for a record of len bytes, sleeping while the ring is too
 * full (see queue_try_reserve()).
 */
char *
queue_reserve(BlockQueue *queue, char *ring, Size len)
{
	char	   *payload;

	queue_check_record_fits(queue, len);
	for (;;)
	{
		ConditionVariablePrepareToSleep(&queue->changed);
		payload = queue_try_reserve(queue, ring, len);
		if (payload != NULL)
			break;
		ConditionVariableTimedSleep(&queue->changed, 1000, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();
	return payload;
}

/* Publish the record reserved by queue_reserve(); len as reserved. */
void
queue_commit(BlockQueue *queue, char *ring, Size len)
{
	Size		total = record_size(len);

	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	Assert(queue->reserved);
	*(uint64 *) (ring + queue->tail % queue->capacity) = (uint64) len;
	queue->tail += total;
	queue->nrecords++;
	queue->nbytes += total;
	queue->reserved = false;
	LWLockRelease(&queue->lock);

	ConditionVariableSignal(&queue->not_empty);
}

/*
 * Copy the record at the head out of the ring and remove it.  Called with
 * the lock held and a record present; releases the lock before raising an
 * error.
 */
static char *
take_record_locked(BlockQueue *queue, char *ring, Size *len)
{
	uint64		header = *(uint64 *) (ring + queue->head % queue->capacity);
	Size		payload_len;
	char	   *copy;

	if (header == QUEUE_WRAP_MARKER)
	{
		Size		skip = queue->capacity - queue->head % queue->capacity;

		queue->head += skip;
		queue->nbytes -= skip;
		header = *(uint64 *) (ring + queue->head % queue->capacity);
	}
	payload_len = (Size) header;
	if (payload_len > queue_max_record(queue))
	{
		LWLockRelease(&queue->lock);
		elog(ERROR, "corrupt queue record header: %zu bytes", payload_len);
	}

	/* palloc cannot fail softly; keep the lock only for the copy */
	copy = MemoryContextAllocExtended(CurrentMemoryContext,
									  Max(payload_len, 1),
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (copy == NULL)
	{
		LWLockRelease(&queue->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory taking a block of %zu bytes from the queue",
						payload_len)));
	}
	memcpy(copy, ring + queue->head % queue->capacity + QUEUE_RECORD_HEADER_SIZE,
		   payload_len);
	queue->head += record_size(payload_len);
	queue->nbytes -= record_size(payload_len);
	queue->nrecords--;
	*len = payload_len;
	return copy;
}

/*
 * Take up to max_records consecutive records, stopping early once max_bytes
 * of payload are taken, copying each payload into memory palloc'd in
 * CurrentMemoryContext (MAXALIGN'd).  The records are taken in one hold of
 * the lock, so with several consumers each gets a run of consecutive
 * records.  Waits up to timeout_ms for the first; returns the number taken,
 * 0 if none arrived by then.  A consumer that took records is busy until it
 * calls queue_finish().
 */
int
queue_take_batch(BlockQueue *queue, char *ring, int max_records, Size max_bytes,
				 char **records, Size *lens, long timeout_ms)
{
	int			ntaken = 0;
	bool		prepared = false;

	Assert(max_records > 0);
	for (;;)
	{
		LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
		if (queue->nrecords > 0)
		{
			Size		bytes = 0;

			while (ntaken < max_records && queue->nrecords > 0 && bytes < max_bytes)
			{
				records[ntaken] = take_record_locked(queue, ring, &lens[ntaken]);
				bytes += lens[ntaken];
				ntaken++;
			}
			queue->nbusy++;
			LWLockRelease(&queue->lock);
			break;
		}
		LWLockRelease(&queue->lock);

		if (timeout_ms <= 0)
			break;
		if (!prepared)
		{
			ConditionVariablePrepareToSleep(&queue->not_empty);
			prepared = true;
			continue;			/* re-check before sleeping */
		}
		if (ConditionVariableTimedSleep(&queue->not_empty, timeout_ms,
										PG_WAIT_EXTENSION))
		{
			timeout_ms = 0;		/* timed out: one last look */
		}
		CHECK_FOR_INTERRUPTS();
	}
	if (prepared)
		ConditionVariableCancelSleep();
	if (ntaken > 0)
		ConditionVariableBroadcast(&queue->changed);
	return ntaken;
}

/* A consumer has stored (or given up) the records it took last. */
void
queue_finish(BlockQueue *queue)
{
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	Assert(queue->nbusy > 0);
	queue->nbusy--;
	LWLockRelease(&queue->lock);
	ConditionVariableBroadcast(&queue->changed);
}

/*
 * Wait until every record committed so far has been taken and finished
 * with: the producer's way to know that everything it queued is stored.
 */
void
queue_wait_drained(BlockQueue *queue)
{
	ConditionVariablePrepareToSleep(&queue->changed);
	for (;;)
	{
		bool		drained;

		LWLockAcquire(&queue->lock, LW_SHARED);
		drained = queue->nrecords == 0 && queue->nbusy == 0;
		LWLockRelease(&queue->lock);
		if (drained)
			break;
		ConditionVariableTimedSleep(&queue->changed, 1000, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();
}

/* Give up a reservation (the producer failed while writing the record). */
void
queue_cancel_reservation(BlockQueue *queue)
{
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	queue->reserved = false;
	LWLockRelease(&queue->lock);
}

void
queue_stats(BlockQueue *queue, int32 *records, Size *bytes)
{
	LWLockAcquire(&queue->lock, LW_SHARED);
	*records = queue->nrecords;
	*bytes = queue->nbytes;
	LWLockRelease(&queue->lock);
}
