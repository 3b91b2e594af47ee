/*-------------------------------------------------------------------------
 *
 * writer.h
 *	  The insert workers ("writers") of a chain: state shared by the files
 *	  that implement them.
 *
 *	    writer.c      the worker: start-up, the loop over queue records
 *	    insert.c      heap multi-insert of decoded blocks into partitions
 *	    checkpoint.c  the checkpoint: in-order and out-of-order commits,
 *	                  rollback of reorganizations, notifications
 *	    partitions.c  partition creation and deferred index builds
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/writer.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_WRITER_H
#define ETHINDEX_WRITER_H

#include "postgres.h"

#include "decode.h"
#include "ethindex.h"

typedef struct WriterState
{
	ChainSlot  *slot;
	char	   *ring;
	char		name[NAMEDATALEN];
	int			index;			/* insert worker number, 0 .. nwriters - 1 */
	Oid			namespace_oid;
	bool		notnull[ETH_NUM_TABLES][64];
	/* the chain's configuration, read once its chain id is known */
	bool		have_config;
	int64		chain_id;
	int64		start_block;
	int64		partition_size;
	int			confirmations;
	int64		partitions_through; /* partitions exist up to this block */
	/* checkpoint moves this worker committed since it last indexed, -1 none */
	int64		moved_from;
	int64		moved_to;
	MemoryContext batch_context;
} WriterState;

/* The checkpoint row: chains.next_block, last_hash and the finality marks */
typedef struct Checkpoint
{
	int64		next_block;
	bool		have_hash;
	uint8		last_hash[32];
	int64		finalized_through;	/* -1: none */
} Checkpoint;

/* What a batch's transaction did to the checkpoint, for after its commit */
typedef struct BatchCommit
{
	bool		in_order;		/* the batch started at the checkpoint */
	int64		old_next;		/* checkpoint before */
	int64		new_next;		/* and after (in order only) */
	PendingRange range;			/* the batch (announced if out of order) */
} BatchCommit;

/* insert.c */
extern void insert_verify_schema(WriterState *ws);
extern void insert_block_rows(WriterState *ws, DecodedBlock *blocks, int nblocks);

/* checkpoint.c */
extern void checkpoint_read(WriterState *ws, Checkpoint *cp, bool lock);
extern void checkpoint_start(WriterState *ws, Checkpoint *cp);
extern void checkpoint_wait_turn(WriterState *ws, int64 first);
extern void checkpoint_commit_batch(WriterState *ws, DecodedBlock *blocks, int nblocks,
									BatchCommit *commit);
extern void checkpoint_after_commit(WriterState *ws, const BatchCommit *commit);
extern int64 checkpoint_published(WriterState *ws);
extern void checkpoint_rollback(WriterState *ws, const RollbackRequest *request);
extern void parent_mismatch(WriterState *ws, int64 number, const uint8 *parent,
							const uint8 *expected) pg_attribute_noreturn();

/* partitions.c */
extern void partitions_ensure(WriterState *ws, int64 from, int64 through);
extern void partitions_index(WriterState *ws, int64 below, bool include_partial);
extern void partitions_index_passed(WriterState *ws);

#endif							/* ETHINDEX_WRITER_H */
