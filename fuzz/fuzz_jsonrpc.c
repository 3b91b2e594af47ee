/*-------------------------------------------------------------------------
 *
 * fuzz_jsonrpc.c
 *	  libFuzzer harness for the jansson-based decoders of jsonrpc.c:
 *	  jsonrpc_quantity_result() (a single call's envelope),
 *	  jsonrpc_block_header() (a block object or null) and
 *	  jsonrpc_transaction_hashes() (a hydrated block), each given the
 *	  whole input; and, as fork.c does, jsonrpc_block_header() on each
 *	  result of the input split by eth_split_rpc_response(), read in place.
 *
 *	  jansson allocates through palloc, as in the backend
 *	  (jsonrpc_init_allocator), so what an ERROR leaves behind is freed with
 *	  the arena.  Oracles, besides the sanitizers and the stubs:
 *	  - an ERROR has one of the documented codes and printable text;
 *	  - what is returned is what the text says: the quantity and the
 *		header's number and hash as a reference reading of jansson's value,
 *		the hashes 66-character hex strings, as many as transactions.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  fuzz/fuzz_jsonrpc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "decode.h"
#include "jsonrpc.h"
#include "pgshim.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

static const int quantity_errors[] = {
	ERRCODE_INVALID_TEXT_REPRESENTATION,
	ERRCODE_CONNECTION_FAILURE,
	0
};
static const int header_errors[] = {
	ERRCODE_INVALID_TEXT_REPRESENTATION,
	0
};

#define METHOD		"eth_blockNumber"
#define ENDPOINT	"https://node.example #1"

/* A QUANTITY string as decode.h defines it; false if it is not one */
static bool
ref_quantity(json_t *v, int64 *out)
{
	const char *s = json_string_value(v);
	size_t		n;
	uint64		q = 0;

	if (s == NULL)
		return false;
	n = json_string_length(v);
	if (n < 3 || n > 18 || s[0] != '0' || s[1] != 'x' || (s[2] == '0' && n > 3))
		return false;
	for (size_t i = 2; i < n; i++)
	{
		char		c = s[i];
		int			d = (c >= '0' && c <= '9') ? c - '0' :
		(c >= 'a' && c <= 'f') ? c - 'a' + 10 :
		(c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;

		if (d < 0)
			return false;
		q = (q << 4) | (uint64) d;
	}
	if (q > (uint64) PG_INT64_MAX)
		return false;
	*out = (int64) q;
	return true;
}

static json_t *
jansson_of(const char *s, size_t len)
{
	json_error_t jerror;

	return json_loadb(s, len, JSON_DECODE_ANY, &jerror);
}

static void
run_quantity(const char *body, size_t len)
{
	pgshim_begin();
	if (PGSHIM_TRY())
	{
		int64		v = jsonrpc_quantity_result(body, len, METHOD, ENDPOINT);
		json_t	   *root = jansson_of(body, len);
		json_t	   *err = root ? json_object_get(root, "error") : NULL;
		int64		want;

		if (root == NULL || (err != NULL && !json_is_null(err)) ||
			!ref_quantity(json_object_get(root, "result"), &want) || want != v)
			pgshim_fail("jsonrpc_quantity_result: " INT64_FORMAT " is not what the body says", v);
	}
	else
		pgshim_check_error(quantity_errors, "jsonrpc_quantity_result");
	pgshim_end();
}

/* A header in place, as fork.c reads one from a batch */
static void
check_header(const char *result, size_t len)
{
	int64		number = -1;
	uint8		hash[32];
	bool		found = jsonrpc_block_header(result, len, &number, hash,
											 "the finalized block", ENDPOINT);
	json_t	   *root = jansson_of(result, len);
	int64		want;
	uint8		want_hash[32];

	if (root == NULL)
		pgshim_fail("jsonrpc_block_header: accepted text jansson refuses");
	if (!found)
	{
		if (!json_is_null(root))
			pgshim_fail("jsonrpc_block_header: false for a value that is not null");
		return;
	}
	if (!ref_quantity(json_object_get(root, "number"), &want) || want != number)
		pgshim_fail("jsonrpc_block_header: number " INT64_FORMAT " is not the block's", number);
	if (!json_is_string(json_object_get(root, "hash")) ||
		!eth_parse_hash(json_string_value(json_object_get(root, "hash")),
						json_string_length(json_object_get(root, "hash")), want_hash) ||
		memcmp(want_hash, hash, 32) != 0)
		pgshim_fail("jsonrpc_block_header: hash is not the block's");
}

static void
run_header(const char *body, size_t len)
{
	pgshim_begin();
	if (PGSHIM_TRY())
		check_header(body, len);
	else
		pgshim_check_error(header_errors, "jsonrpc_block_header");
	pgshim_end();
}

static void
run_hashes(const char *body, size_t len)
{
	pgshim_begin();
	if (PGSHIM_TRY())
	{
		int			ntx = -1;
		char	  **hashes = jsonrpc_transaction_hashes(body, len, 17000000, &ntx);
		json_t	   *root = jansson_of(body, len);
		json_t	   *txs = root ? json_object_get(root, "transactions") : NULL;

		if (!json_is_array(txs) || ntx < 0 || json_array_size(txs) != (size_t) ntx)
			pgshim_fail("jsonrpc_transaction_hashes: %d hashes", ntx);
		for (int i = 0; i < ntx; i++)
		{
			const char *want = json_string_value(json_object_get(json_array_get(txs, i), "hash"));

			if (hashes[i] == NULL || strlen(hashes[i]) != 66 ||
				strncmp(hashes[i], "0x", 2) != 0 ||
				strspn(hashes[i] + 2, "0123456789abcdefABCDEF") != 64 ||
				want == NULL || strcmp(want, hashes[i]) != 0)
				pgshim_fail("jsonrpc_transaction_hashes: hash %d wrong", i);
		}
	}
	else
		pgshim_check_error(header_errors, "jsonrpc_transaction_hashes");
	pgshim_end();
}

/* Split the body and read each result as a header, in place */
static void
run_split_headers(const char *body, size_t len)
{
	RpcReply   *replies = NULL;
	volatile int n = 0;

	pgshim_begin();
	if (PGSHIM_TRY())
		n = eth_split_rpc_response(body, len, &replies);
	else
	{
		pgshim_check_error(header_errors, "eth_split_rpc_response");
		n = 0;
	}
	for (int i = 0; i < n; i++)
	{
		const RpcReply *r = &replies[i];

		if (r->is_error)
			continue;
		if (PGSHIM_TRY())
			check_header(r->result, r->result_len);
		else
			pgshim_check_error(header_errors, "jsonrpc_block_header in a batch");
	}
	pgshim_end();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	json_object_seed(1);
	jsonrpc_init_allocator();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	char	   *body = pgshim_exact_copy(data, size);

	run_quantity(body, size);
	run_header(body, size);
	run_hashes(body, size);
	run_split_headers(body, size);
	free(body);
	return 0;
}
