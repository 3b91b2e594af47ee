/*-------------------------------------------------------------------------
 *
 * jsonrpc.c
 *	  Decoding of small JSON-RPC responses with jansson: single-call
 *	  envelopes with a quantity result (eth_chainId, eth_blockNumber), the
 *	  number and hash of block headers (fork search, finality), and the
 *	  transaction hashes of a block for the per-transaction receipt
 *	  fallback.  Blocks and receipts proper are decoded by decode.c.
 *
 *	  jansson allocates through palloc (jsonrpc_init_allocator), so its
 *	  objects live in the caller's memory context and an error leaks
 *	  nothing beyond that context's next reset.  This file must not include
 *	  utils/builtins.h: jansson and fmgrprotos.h both declare json_object().
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/jsonrpc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "utils/memutils.h"

#include "decode.h"
#include "jsonrpc.h"

#if JANSSON_VERSION_HEX < 0x020b00
#error "ethindex needs jansson 2.11 or later"
#endif

static void *
jansson_alloc(size_t size)
{
	return MemoryContextAllocExtended(CurrentMemoryContext, size, MCXT_ALLOC_NO_OOM);
}

static void
jansson_free(void *ptr)
{
	if (ptr)
		pfree(ptr);
}

void
jsonrpc_init_allocator(void)
{
	json_set_alloc_funcs(jansson_alloc, jansson_free);
}

/*
 * The result of a single JSON-RPC call that must be a QUANTITY fitting in
 * int64.  Errors name the method and the endpoint.
 */
int64
jsonrpc_quantity_result(const char *body, size_t len, const char *method,
						const char *endpoint)
{
	json_error_t jerror;
	json_t	   *root = json_loadb(body, len, 0, &jerror);
	json_t	   *error;
	json_t	   *result;
	const char *s;
	int64		value;

	if (root == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("malformed JSON in response to %s from %s", method, endpoint),
				 errdetail("%s at position %d.",
						   eth_printable(jerror.text, strlen(jerror.text), RPC_ERROR_TEXT_MAX),
						   jerror.position)));
	if (!json_is_object(root))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("response to %s from %s is not a JSON-RPC object", method, endpoint)));

	error = json_object_get(root, "error");
	if (error != NULL && !json_is_null(error))
	{
		json_t	   *message = json_object_get(error, "message");

		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s failed: %s answered error %lld: %s",
						method, endpoint,
						(long long) json_integer_value(json_object_get(error, "code")),
						json_is_string(message) ?
						eth_printable(json_string_value(message), json_string_length(message),
									  RPC_ERROR_TEXT_MAX) : "(no message)")));
	}

	result = json_object_get(root, "result");
	s = json_string_value(result);
	if (s == NULL || !eth_parse_quantity_int64(s, json_string_length(result), &value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("%s from %s returned no valid quantity", method, endpoint)));
	json_decref(root);
	return value;
}

/*
 * The hashes ("0x" and 64 hex digits) of a block's transactions, from the
 * result of eth_getBlockByNumber(n, true).
 */
char **
jsonrpc_transaction_hashes(const char *block, size_t len, int64 number, int *ntx)
{
	json_error_t jerror;
	json_t	   *root = json_loadb(block, len, 0, &jerror);
	json_t	   *txs = root ? json_object_get(root, "transactions") : NULL;
	char	  **hashes;
	size_t		n;

	if (txs == NULL || !json_is_array(txs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("block " INT64_FORMAT " has no transactions array", number)));
	n = json_array_size(txs);
	hashes = palloc(sizeof(char *) * Max(n, 1));
	for (size_t i = 0; i < n; i++)
	{
		json_t	   *tx = json_array_get(txs, i);
		const char *h = json_string_value(json_is_object(tx) ? json_object_get(tx, "hash") : NULL);

		if (h == NULL || strlen(h) != 66 || h[0] != '0' || h[1] != 'x' ||
			strspn(h + 2, "0123456789abcdefABCDEF") != 64)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("transaction %zu of block " INT64_FORMAT " has no valid hash",
							i, number)));
		hashes[i] = pstrdup(h);
	}
	json_decref(root);
	*ntx = (int) n;
	return hashes;
}

/*
 * The number and hash of a block object (the result of
 * eth_getBlockByNumber); false if the result is null.  "what" names the
 * block asked for in errors.
 */
bool
jsonrpc_block_header(const char *result, size_t len, int64 *number, uint8 *hash,
					 const char *what, const char *endpoint)
{
	json_error_t jerror;
	json_t	   *root = json_loadb(result, len, JSON_DECODE_ANY, &jerror);
	json_t	   *jnumber;
	json_t	   *jhash;

	if (root == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("malformed JSON in the header of %s from %s", what, endpoint),
				 errdetail("%s at position %d.",
						   eth_printable(jerror.text, strlen(jerror.text), RPC_ERROR_TEXT_MAX),
						   jerror.position)));
	if (json_is_null(root))
	{
		json_decref(root);
		return false;
	}
	jnumber = json_is_object(root) ? json_object_get(root, "number") : NULL;
	jhash = json_is_object(root) ? json_object_get(root, "hash") : NULL;
	if (!json_is_string(jnumber) || !json_is_string(jhash) ||
		!eth_parse_quantity_int64(json_string_value(jnumber), json_string_length(jnumber), number) ||
		!eth_parse_hash(json_string_value(jhash), json_string_length(jhash), hash))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("the header of %s from %s has no valid number and hash", what, endpoint)));
	json_decref(root);
	return true;
}
