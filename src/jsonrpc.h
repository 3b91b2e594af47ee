/*-------------------------------------------------------------------------
 *
 * jsonrpc.h
 *	  Decoding of small JSON-RPC responses with jansson (off the hot path).
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/jsonrpc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_JSONRPC_H
#define ETHINDEX_JSONRPC_H

#include "postgres.h"

extern void jsonrpc_init_allocator(void);
extern int64 jsonrpc_quantity_result(const char *body, size_t len,
									 const char *method, const char *endpoint);
extern bool jsonrpc_block_header(const char *result, size_t len, int64 *number,
								 uint8 *hash, const char *what, const char *endpoint);
extern char **jsonrpc_transaction_hashes(const char *block, size_t len,
										 int64 number, int *ntx);

#endif							/* ETHINDEX_JSONRPC_H */
