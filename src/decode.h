/*-------------------------------------------------------------------------
 *
 * decode.h
 *	  Hot-path decoding of JSON-RPC block and receipt responses straight
 *	  into Datum arrays laid out as in schema.h, and splitting of JSON-RPC
 *	  (batch) response envelopes.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/decode.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_DECODE_H
#define ETHINDEX_DECODE_H

#include "postgres.h"
#include "schema.h"

/* Rows of one table decoded from one block: nrows * natts values and nulls. */
typedef struct DecodedRows
{
	int			natts;
	int			nrows;
	Datum	   *values;			/* row-major: values[row * natts + att] */
	bool	   *nulls;
} DecodedRows;

/* One block with its transactions, receipts, logs and withdrawals. */
typedef struct DecodedBlock
{
	int64		number;
	uint8		hash[32];
	uint8		parent_hash[32];
	int			transaction_count;
	int			log_count;
	DecodedRows tables[ETH_NUM_TABLES];
} DecodedBlock;

/*
 * Most rows one block may have: far above any chain's blocks (Ethereum's
 * hold under 2,000 transactions and 16 withdrawals), low enough that a
 * hostile node cannot make the decoder allocate rows without bound beyond
 * what ethindex.max_response_size already bounds.
 */
#define ETH_MAX_BLOCK_TRANSACTIONS	100000
#define ETH_MAX_BLOCK_LOGS			1000000
#define ETH_MAX_BLOCK_WITHDRAWALS	10000

/*
 * eth_decode_block
 *
 * Decode the "result" of eth_getBlockByNumber(n, true) and the "result" of
 * eth_getBlockReceipts(n) (a JSON array of receipts in transaction order)
 * into *out.  All memory is palloc'd in CurrentMemoryContext.
 *
 * Every field is checked: hex syntax and length, quantities that fit their
 * column, required fields present, receipts matching the block's
 * transactions one to one (hash, index, block hash and number), log block
 * and transaction references, the block number equal to expected_number.
 * Any problem raises ERROR with errcode ERRCODE_INVALID_TEXT_REPRESENTATION
 * (malformed JSON or hex), ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE (does not fit)
 * or ERRCODE_DATA_EXCEPTION (missing/mismatched fields) or
 * ERRCODE_PROGRAM_LIMIT_EXCEEDED (more rows than the ETH_MAX_BLOCK_ limits),
 * naming the block, the object and the field; nothing is returned for such a block.  The
 * JSON arrays stored as jsonb (accessList, authorizationList) can also
 * raise the errors of the conversion to the server encoding and of jsonb_in
 * (ERRCODE_CHARACTER_NOT_IN_REPERTOIRE for bytes that are not UTF-8,
 * ERRCODE_UNTRANSLATABLE_CHARACTER).
 */
extern void eth_decode_block(DecodedBlock *out, int64 chain_id,
							 int64 expected_number,
							 const char *block_json, size_t block_len,
							 const char *receipts_json, size_t receipts_len);

/* One element of a JSON-RPC response, located inside the response buffer. */
typedef struct RpcReply
{
	int64		id;				/* the request id */
	bool		is_error;		/* an "error" member was present */
	bool		result_is_null; /* "result": null */
	const char *result;			/* start of the result value (not copied) */
	size_t		result_len;
	int			error_code;		/* error.code when is_error */
	char	   *error_message;	/* palloc'd error.message when is_error */
} RpcReply;

/*
 * eth_split_rpc_response
 *
 * Split a JSON-RPC response body, either one envelope object or a batch
 * array of envelopes, into RpcReply entries (palloc'd array returned in
 * *replies, count returned).  Does not parse the results beyond finding
 * their extent.  Malformed JSON or an envelope without result/error raises
 * ERROR with ERRCODE_INVALID_TEXT_REPRESENTATION.
 */
extern int	eth_split_rpc_response(const char *body, size_t len,
								   RpcReply **replies);

/*
 * eth_find_reply
 *
 * The reply of a split response that answers request "id": the first reply
 * with that id; else, when the whole response is one error without an id
 * (how nodes refuse a batch: too large, rate limited), that error, which
 * answers every request; else NULL.
 */
extern const RpcReply *eth_find_reply(const RpcReply *replies, int nreplies,
									  int64 id);

/* Hex helpers shared with other modules. */

/* Parse a JSON-RPC QUANTITY ("0x" and 1-16 hex digits, no leading zeros
 * except "0x0") into *result.  Returns false if malformed or > INT64_MAX. */
extern bool eth_parse_quantity_int64(const char *s, size_t len, int64 *result);

/* Parse a 32-byte hash ("0x" and 64 hex digits, quoted or not) into hash[32];
 * false if malformed. */
extern bool eth_parse_hash(const char *s, size_t len, uint8 *hash);

/* Node text made printable ASCII (escapes), at most about max bytes. */
extern char *eth_printable(const char *s, size_t len, size_t max);

/* How much of a node's error text messages quote */
#define RPC_ERROR_TEXT_MAX	200

/* Format bytes as "0x..." lowercase hex into a palloc'd string. */
extern char *eth_bytes_to_hex(const uint8 *bytes, size_t len);

#endif							/* ETHINDEX_DECODE_H */
