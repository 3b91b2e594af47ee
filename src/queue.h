/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  The bounded shared-memory queue of records (decoded blocks, rollback
 *	  requests) from a chain's fetcher to its insert workers.  Its layout
 *	  and locking protocol are described in shared.h (BlockQueue).
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

#include "shared.h"

extern void queue_init(BlockQueue *queue, Size capacity, int tranche_id);
extern void queue_reset(BlockQueue *queue);
extern Size queue_max_record(BlockQueue *queue);
extern void queue_check_record_fits(BlockQueue *queue, Size len);
extern char *queue_try_reserve(BlockQueue *queue, char *ring, Size len);
extern void queue_prepare_to_wait_for_room(BlockQueue *queue);
extern char *queue_reserve(BlockQueue *queue, char *ring, Size len);
extern void queue_commit(BlockQueue *queue, char *ring, Size len);
extern void queue_cancel_reservation(BlockQueue *queue);
extern int	queue_take_batch(BlockQueue *queue, char *ring, int max_records, Size max_bytes,
							 char **records, Size *lens, long timeout_ms);
extern void queue_finish(BlockQueue *queue);
extern void queue_wait_drained(BlockQueue *queue);
extern void queue_stats(BlockQueue *queue, int32 *records, Size *bytes);

#endif							/* ETHINDEX_QUEUE_H */
