/*-------------------------------------------------------------------------
 *
 * blockrec.h
 *	  Flat, position-independent form of a DecodedBlock, as it travels
 *	  through the shared-memory queue from fetcher to writer.
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

extern Size blockrec_size(const DecodedBlock *block);
extern void blockrec_write(const DecodedBlock *block, char *dst, Size size);
extern void blockrec_read(char *src, Size size, DecodedBlock *block);

#endif							/* ETHINDEX_BLOCKREC_H */
