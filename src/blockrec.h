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

extern QueueRecordKind blockrec_kind(const char *src, Size size);
extern Size blockrec_size(const DecodedBlock *block);
extern void blockrec_write(const DecodedBlock *block, uint8 flags, char *dst, Size size);
extern void blockrec_read(char *src, Size size, DecodedBlock *block, uint8 *flags);
extern const RollbackRequest *blockrec_read_rollback(const char *src, Size size);
extern Size blockrec_replace_size(const DecodedBlock *blocks, int nblocks);
extern void blockrec_write_replace(const DecodedBlock *blocks, int nblocks, int64 refetch_id,
								   const char *error, char *dst, Size size);
extern const ReplaceRecordHeader *blockrec_read_replace(char *src, Size size,
														DecodedBlock **blocks);

#endif							/* ETHINDEX_BLOCKREC_H */
