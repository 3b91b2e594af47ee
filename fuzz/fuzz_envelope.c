/*-------------------------------------------------------------------------
 *
 * fuzz_envelope.c
 *	  libFuzzer harness for eth_split_rpc_response(): a JSON-RPC response
 *	  body, one envelope or a batch (ids in any order, missing, null or
 *	  strings; a batch answered by one error object; escapes; nesting).
 *
 *	  The body is copied into a buffer of exactly its length.  Oracles,
 *	  besides the sanitizers and the stubs:
 *	  - an ERROR has the documented code and printable text;
 *	  - every reply is well formed: a result lies inside the body and is
 *		itself valid JSON (by jansson), "null" exactly when result_is_null;
 *		an error reply has no result and a printable message;
 *	  - jansson agrees on the grammar: a body the splitter accepts is JSON,
 *		and a body it calls malformed is not (below its depth limit); where
 *		keys are plain and unique, on the number of replies, their ids,
 *		which are errors, and each result's value;
 *	  - each result, read in place as the fetcher does, gives the same
 *		answer to eth_parse_quantity_int64() and eth_parse_hash() as a copy
 *		of exactly its length;
 *	  - eth_find_reply() matches as documented: the first reply of an id,
 *		nothing for an id no reply has, but for a batch refused by one
 *		error without an id.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  fuzz/fuzz_envelope.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "decode.h"
#include "pgshim.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

static const int split_errors[] = {
	ERRCODE_INVALID_TEXT_REPRESENTATION,
	0
};

/* Where jansson's view of the text cannot be compared key by key */
static bool
plain_text(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0x80 || (s[i] == '\\' && i + 1 < len && s[i + 1] == 'u'))
			return false;
	return true;
}

/* The id a reply must have by jansson: -1 for none or null, -2 for invalid */
static int64
expected_id(json_t *env)
{
	json_t	   *id = json_object_get(env, "id");

	if (id == NULL || json_is_null(id))
		return -1;
	if (json_is_integer(id))
		return json_integer_value(id) >= 0 ? json_integer_value(id) : -2;
	if (json_is_string(id))
	{
		const char *s = json_string_value(id);
		size_t		n = json_string_length(id);
		int64		v = 0;

		if (n == 0 || n > 18)
			return -2;
		for (size_t i = 0; i < n; i++)
		{
			if (s[i] < '0' || s[i] > '9')
				return -2;
			v = v * 10 + (s[i] - '0');
		}
		return v;
	}
	return -2;
}

static void
check_reply(const RpcReply *r, int i, const char *body, size_t len)
{
	if (r->is_error)
	{
		if (r->result != NULL || r->result_len != 0 || r->result_is_null)
			pgshim_fail("reply %d: an error with a result", i);
		if (r->error_message == NULL ||
			!pgshim_printable(r->error_message, strlen(r->error_message)))
			pgshim_fail("reply %d: error message missing or not printable", i);
		if (strlen(r->error_message) > RPC_ERROR_TEXT_MAX + 8)
			pgshim_fail("reply %d: error message of %zu bytes", i, strlen(r->error_message));
		return;
	}
	if (r->result == NULL || r->result < body || r->result_len == 0 ||
		r->result_len > len || (size_t) (r->result - body) > len - r->result_len)
		pgshim_fail("reply %d: result outside the body", i);
	if (pgshim_json_parse(r->result, r->result_len, 0, NULL, NULL) == PGSHIM_JSON_INVALID)
		pgshim_fail("reply %d: result is not a JSON value", i);
	if (r->result_is_null != (r->result_len == 4 && memcmp(r->result, "null", 4) == 0))
		pgshim_fail("reply %d: result_is_null wrong", i);
	if (r->id < -1)
		pgshim_fail("reply %d: id " INT64_FORMAT, i, r->id);

	/* the fetcher reads results in place: the same answer as a copy */
	{
		char	   *copy = pgshim_exact_copy((const uint8 *) r->result, r->result_len);
		int64		q1 = 0,
					q2 = 0;
		uint8		h1[32],
					h2[32];
		bool		ok1 = eth_parse_quantity_int64(r->result, r->result_len, &q1);
		bool		ok2 = eth_parse_quantity_int64(copy, r->result_len, &q2);

		if (ok1 != ok2 || (ok1 && q1 != q2))
			pgshim_fail("reply %d: quantity differs in place", i);
		ok1 = eth_parse_hash(r->result, r->result_len, h1);
		ok2 = eth_parse_hash(copy, r->result_len, h2);
		if (ok1 != ok2 || (ok1 && memcmp(h1, h2, 32) != 0))
			pgshim_fail("reply %d: hash differs in place", i);
		free(copy);
	}
}

/* Compare the replies with jansson's reading of the body */
static void
compare_with_jansson(const RpcReply *replies, int n, const char *body, size_t len)
{
	json_t	   *root = NULL;
	PgShimJsonVerdict v = pgshim_json_parse(body, len, 0, NULL, NULL);

	if (v == PGSHIM_JSON_INVALID)
		pgshim_fail("the splitter accepted a body that is not JSON");
	if (!plain_text(body, len) ||
		pgshim_json_parse(body, len, JSON_REJECT_DUPLICATES, &root, NULL) != PGSHIM_JSON_VALID)
		return;

	if (json_is_array(root) ? json_array_size(root) != (size_t) n : n != 1)
		pgshim_fail("jansson sees another number of replies than %d", n);
	for (int i = 0; i < n; i++)
	{
		json_t	   *env = json_is_array(root) ? json_array_get(root, i) : root;
		json_t	   *err = json_object_get(env, "error");
		json_t	   *res = json_object_get(env, "result");
		int64		id = expected_id(env);
		bool		is_error = err != NULL && !json_is_null(err);

		if (!json_is_object(env))
			pgshim_fail("reply %d is not an object for jansson", i);
		if (id == -2 || id != replies[i].id)
			pgshim_fail("reply %d: id " INT64_FORMAT ", jansson reads " INT64_FORMAT,
						i, replies[i].id, id);
		if (is_error != replies[i].is_error)
			pgshim_fail("reply %d: is_error %d, jansson reads %d", i,
						(int) replies[i].is_error, (int) is_error);
		if (!is_error)
		{
			json_t	   *mine = NULL;

			if (res == NULL)
				pgshim_fail("reply %d: a result jansson does not see", i);
			if (pgshim_json_parse(replies[i].result, replies[i].result_len, 0, &mine, NULL) ==
				PGSHIM_JSON_VALID && !json_equal(mine, res))
				pgshim_fail("reply %d: the result differs from jansson's", i);
			if (mine)
				json_decref(mine);
		}
	}
	json_decref(root);
}

/* A "malformed" error must be about text that jansson refuses too */
static void
check_malformed(const char *body, size_t len)
{
	int			depth;
	json_t	   *root = NULL;

	if (pgshim_error.message == NULL ||
		strcmp(pgshim_error.message, "malformed JSON-RPC response") != 0)
		return;
	/* the splitter refuses nesting of 256 and more, and bodies other than
	 * an object or an array */
	if (pgshim_json_parse(body, len, 0, &root, &depth) == PGSHIM_JSON_VALID &&
		depth < 250 && (json_is_object(root) || json_is_array(root)))
	{
		bool		elements_ok = true;

		/* the elements of a batch must be objects */
		if (json_is_array(root))
			for (size_t i = 0; i < json_array_size(root); i++)
				if (!json_is_object(json_array_get(root, i)))
					elements_ok = false;
		if (elements_ok)
			pgshim_fail("the splitter calls valid JSON malformed");
	}
	if (root)
		json_decref(root);
}

/*
 * eth_find_reply() gives each request the first reply with its id; a
 * request without a reply gets nothing, but for a response that is one
 * error without an id, which answers every request.
 */
static void
check_matching(const RpcReply *replies, int n)
{
	int64		unused = 0;

	for (int i = 0; i < n; i++)
	{
		const RpcReply *first = NULL;

		if (replies[i].id >= unused)
			unused = replies[i].id + 1;
		if (replies[i].id < 0)
			continue;
		for (int j = 0; j <= i && first == NULL; j++)
			if (replies[j].id == replies[i].id)
				first = &replies[j];
		if (eth_find_reply(replies, n, replies[i].id) != first)
			pgshim_fail("reply %d: eth_find_reply gives another reply for its id", i);
	}
	if (eth_find_reply(replies, n, unused) !=
		(n == 1 && replies[0].is_error && replies[0].id == -1 ? &replies[0] : NULL))
		pgshim_fail("eth_find_reply answers id " INT64_FORMAT " that no reply has", unused);
}

/* what eth_split_rpc_response() returned in *replies (static: it must
 * keep its value across the longjmp of an ERROR) */
static RpcReply *split_replies;

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	char	   *body = pgshim_exact_copy(data, size);

	pgshim_begin();
	split_replies = (RpcReply *) body;	/* anything but NULL */
	if (PGSHIM_TRY())
	{
		int			n = eth_split_rpc_response(body, size, &split_replies);

		if (n < 0 || split_replies == NULL)
			pgshim_fail("%d replies at %p", n, (void *) split_replies);
		for (int i = 0; i < n; i++)
			check_reply(&split_replies[i], i, body, size);
		compare_with_jansson(split_replies, n, body, size);
		check_matching(split_replies, n);
	}
	else
	{
		pgshim_check_error(split_errors, "eth_split_rpc_response");
		check_malformed(body, size);
		/* no partial output: *replies is NULL after an ERROR */
		if (split_replies != NULL)
			pgshim_fail("eth_split_rpc_response: replies returned with an ERROR");
	}
	pgshim_end();
	free(body);
	return 0;
}
