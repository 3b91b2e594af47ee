/*-------------------------------------------------------------------------
 *
 * blockrec.h
 *	  The records of the queue from fetcher to insert workers: decoded
 *	  blocks in a flat, position-independent form, and rollback requests.
 *	  Their layout is described in shared.h.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/blockrec.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_BLOCKREC_H
#define ETHINDEX_BLOCKREC_H

#include "decode.h"
#include "shared.h"

/* What a block record says besides the block: BLOCK_* flags, refetch id */
typedef struct BlockRecordMeta
{
	uint8		flags;
	int64		refetch_id;
} BlockRecordMeta;

extern QueueRecordKind blockrec_kind(const char *src, Size size);
extern Size blockrec_size(const DecodedBlock *block);
extern void blockrec_write(const DecodedBlock *block, const BlockRecordMeta *meta,
						   char *dst, Size size);
extern void blockrec_read(char *src, Size size, DecodedBlock *block, BlockRecordMeta *meta);
extern const RollbackRequest *blockrec_read_rollback(const char *src, Size size);

#endif							/* ETHINDEX_BLOCKREC_H */
