/*-------------------------------------------------------------------------
 *
 * decode.c
 *	  Hot-path decoding of JSON-RPC block and receipt responses into the
 *	  Datum arrays of schema.h, splitting of JSON-RPC (batch) response
 *	  envelopes, and hex helpers.
 *
 *	  Each document is tokenized once with jsmn (strict mode, parent links)
 *	  into a token array in CurrentMemoryContext.  jsmn is permissive about
 *	  separators and literals, so json_check() then walks the token tree and
 *	  verifies the exact JSON grammar (commas, colons, literals, control
 *	  characters); after that walk each token's "parent" field is reused to
 *	  hold the index of the token after its subtree, which makes skipping a
 *	  value O(1).  Documents are never NUL-terminated: every access is
 *	  bounded by a length.
 *
 *	  Object members are dispatched through per-object field tables
 *	  (FieldSpec) indexed by key length.  Values are decoded straight from
 *	  the hex text into Datums; nothing is converted through C strings
 *	  except numbers above 2^63, which go through numeric_in.
 *
 *	  Envelopes are split with a small validating recursive-descent scanner
 *	  that only records where each result lies, so a block's text is
 *	  tokenized once, by eth_decode_block.  Error objects are read by the
 *	  same scanner.
 *
 *	  Every problem is reported with ereport(ERROR) naming the block, the
 *	  object (block, transaction i, receipt i, log i of receipt j,
 *	  withdrawal i) and the JSON field.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/decode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "catalog/pg_type.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "decode.h"

#define JSMN_STATIC
#define JSMN_PARENT_LINKS
#define JSMN_STRICT
#include <jsmn.h>

/* ----------------------------------------------------------------
 * JSON documents
 * ----------------------------------------------------------------
 */

typedef struct JsonDoc
{
	const char *js;
	int			len;
	jsmntok_t  *toks;
	int			ntok;
} JsonDoc;

/* after json_check(), "parent" holds the index following the subtree */
#define TOK_NEXT(doc, i) ((doc)->toks[(i)].parent)

/* first and one-past-last byte of a token's text, quotes included */
static inline int
tok_begin(const jsmntok_t *t)
{
	return t->type == JSMN_STRING ? t->start - 1 : t->start;
}

static inline int
tok_end(const jsmntok_t *t)
{
	return t->type == JSMN_STRING ? t->end + 1 : t->end;
}

static inline bool
is_json_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline int
skip_ws(const char *js, int len, int pos)
{
	while (pos < len && is_json_ws(js[pos]))
		pos++;
	return pos;
}

/* value of each byte as a hex digit, -1 if it is not one */
static const int8 hex_table[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1, -1, -1, -1, -1,
	-1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static inline int
hexval(unsigned char c)
{
	return hex_table[c];
}

/* true if s[0..n) is a JSON literal: true, false, null or a number */
static bool
json_primitive_ok(const char *s, int n)
{
	int			i = 0;

	if (n == 4 && memcmp(s, "true", 4) == 0)
		return true;
	if (n == 5 && memcmp(s, "false", 5) == 0)
		return true;
	if (n == 4 && memcmp(s, "null", 4) == 0)
		return true;

	if (i < n && s[i] == '-')
		i++;
	if (i >= n)
		return false;
	if (s[i] == '0')
		i++;
	else if (s[i] >= '1' && s[i] <= '9')
	{
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	else
		return false;
	if (i < n && s[i] == '.')
	{
		i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return false;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E'))
	{
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return false;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	return i == n;
}

/* Nesting deeper than this is rejected as malformed (responses use ~6) */
#define JSON_MAX_DEPTH	256

/* Word-at-a-time tests (exact, no false positives): any zero byte, any byte < n */
#define BYTES_ALL(b)		(UINT64CONST(0x0101010101010101) * (b))
#define HAS_ZERO_BYTE(w)	(((w) - BYTES_ALL(0x01)) & ~(w) & BYTES_ALL(0x80))
#define HAS_BYTE_BELOW(w, n)	(((w) - BYTES_ALL(n)) & ~(w) & BYTES_ALL(0x80))

/*
 * Verify the subtree rooted at token i against the JSON grammar and set
 * TOK_NEXT for every token in it.  Returns the index after the subtree, or
 * -1 with *errpos set.
 */
static int
json_check(JsonDoc *doc, int i, int depth, int *errpos)
{
	const char *js = doc->js;
	jsmntok_t  *t = &doc->toks[i];
	int			pos;
	int			j;
	int			k;
	bool		isobj;

	check_stack_depth();

	switch (t->type)
	{
		case JSMN_PRIMITIVE:
			if (t->size != 0 || t->start < 0 || t->end > doc->len ||
				!json_primitive_ok(js + t->start, t->end - t->start))
			{
				*errpos = Max(t->start, 0);
				return -1;
			}
			t->parent = i + 1;
			return i + 1;

		case JSMN_STRING:
			if (t->size != 0 || t->start < 1 || t->end >= doc->len)
			{
				*errpos = Max(t->start, 0);
				return -1;
			}
			/* no control characters: eight bytes at a time, then the rest */
			for (pos = t->start; pos + 8 <= t->end; pos += 8)
			{
				uint64		w;

				memcpy(&w, js + pos, 8);
				if (HAS_BYTE_BELOW(w, 0x20))
					break;
			}
			for (; pos < t->end; pos++)
			{
				if ((unsigned char) js[pos] < 0x20)
				{
					*errpos = pos;
					return -1;
				}
			}
			t->parent = i + 1;
			return i + 1;

		case JSMN_ARRAY:
		case JSMN_OBJECT:
			isobj = (t->type == JSMN_OBJECT);
			if (depth >= JSON_MAX_DEPTH ||
				t->start < 0 || t->end <= t->start || t->end > doc->len)
			{
				*errpos = Max(t->start, 0);
				return -1;
			}
			pos = t->start + 1;
			j = i + 1;
			for (k = 0; k < t->size; k++)
			{
				pos = skip_ws(js, doc->len, pos);
				if (k > 0)
				{
					if (pos >= doc->len || js[pos] != ',')
					{
						*errpos = pos;
						return -1;
					}
					pos = skip_ws(js, doc->len, pos + 1);
				}
				if (j >= doc->ntok || tok_begin(&doc->toks[j]) != pos)
				{
					*errpos = pos;
					return -1;
				}
				if (isobj)
				{
					jsmntok_t  *key = &doc->toks[j];
					int			p;

					if (key->type != JSMN_STRING || key->size != 1 ||
						key->end >= doc->len)
					{
						*errpos = pos;
						return -1;
					}
					for (p = key->start; p < key->end; p++)
					{
						if ((unsigned char) js[p] < 0x20)
						{
							*errpos = p;
							return -1;
						}
					}
					pos = skip_ws(js, doc->len, tok_end(key));
					if (pos >= doc->len || js[pos] != ':')
					{
						*errpos = pos;
						return -1;
					}
					pos = skip_ws(js, doc->len, pos + 1);
					j++;
					if (j >= doc->ntok || tok_begin(&doc->toks[j]) != pos)
					{
						*errpos = pos;
						return -1;
					}
				}
				pos = tok_end(&doc->toks[j]);
				{
					int			keyidx = j - 1;

					j = json_check(doc, j, depth + 1, errpos);
					if (j < 0)
						return -1;
					if (isobj)
						doc->toks[keyidx].parent = j;
				}
			}
			pos = skip_ws(js, doc->len, pos);
			if (pos != t->end - 1)
			{
				*errpos = pos;
				return -1;
			}
			t->parent = j;
			return j;

		default:
			*errpos = Max(t->start, 0);
			return -1;
	}
}

/*
 * Tokenize and validate a complete JSON document.  Returns -1 on success,
 * otherwise the byte offset of the problem.
 */
static int
json_tokenize(JsonDoc *doc, const char *js, size_t len)
{
	jsmn_parser parser;
	size_t		cap;
	int			r;
	int			errpos = 0;
	int			pos;

	doc->js = js;
	doc->len = 0;
	doc->toks = NULL;
	doc->ntok = 0;
	if (len > (size_t) (INT_MAX / 2))
		return 0;
	doc->len = (int) len;

	cap = len / 16 + 16;
	doc->toks = (jsmntok_t *) palloc_extended(cap * sizeof(jsmntok_t),
											  MCXT_ALLOC_HUGE);
	jsmn_init(&parser);
	for (;;)
	{
		r = jsmn_parse(&parser, js, len, doc->toks, (unsigned int) cap);
		if (r != JSMN_ERROR_NOMEM)
			break;
		cap *= 2;
		doc->toks = (jsmntok_t *) repalloc_huge(doc->toks,
												cap * sizeof(jsmntok_t));
	}
	if (r < 0)
		return Min((int) parser.pos, doc->len);

	doc->ntok = (int) parser.toknext;
	pos = skip_ws(js, doc->len, 0);
	if (doc->ntok == 0 || tok_begin(&doc->toks[0]) != pos)
		return pos;
	r = json_check(doc, 0, 0, &errpos);
	if (r < 0)
		return errpos;
	if (r != doc->ntok)
		return tok_begin(&doc->toks[r]);
	pos = skip_ws(js, doc->len, tok_end(&doc->toks[0]));
	if (pos != doc->len)
		return pos;
	return -1;
}

/* true if the whole text is the literal null, surrounded by white space */
static bool
json_text_is_null(const char *js, size_t len)
{
	size_t		b = 0;
	size_t		e = len;

	while (b < e && is_json_ws(js[b]))
		b++;
	while (e > b && is_json_ws(js[e - 1]))
		e--;
	return e - b == 4 && memcmp(js + b, "null", 4) == 0;
}

static inline bool
tok_is_null(const JsonDoc *doc, int i)
{
	const jsmntok_t *t = &doc->toks[i];

	return t->type == JSMN_PRIMITIVE && doc->js[t->start] == 'n';
}

/* A printable copy of a token's text for error details, at most ~80 chars */
static char *
tok_display(const JsonDoc *doc, int i)
{
	const jsmntok_t *t = &doc->toks[i];
	int			b = tok_begin(t);
	int			n = tok_end(t) - b;
	bool		truncated = false;
	char	   *buf;
	int			k;

	if (n > 80)
	{
		n = 77;
		truncated = true;
	}
	buf = palloc(n + 4);
	for (k = 0; k < n; k++)
	{
		unsigned char c = (unsigned char) doc->js[b + k];

		buf[k] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
	}
	if (truncated)
	{
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* ----------------------------------------------------------------
 * Field tables
 * ----------------------------------------------------------------
 */

typedef enum ObjKind
{
	OBJ_BLOCK,
	OBJ_TRANSACTION,
	OBJ_RECEIPT,
	OBJ_LOG,
	OBJ_WITHDRAWAL
} ObjKind;

typedef enum FieldKind
{
	FK_HASH,					/* DATA, 32 bytes */
	FK_ADDR,					/* DATA, 20 bytes */
	FK_BLOOM,					/* DATA, 256 bytes */
	FK_NONCE,					/* DATA, 8 bytes */
	FK_BYTES,					/* DATA, any length */
	FK_INT8,					/* QUANTITY into bigint */
	FK_INT4,					/* QUANTITY into integer */
	FK_INT2,					/* QUANTITY into smallint */
	FK_NUMERIC,					/* QUANTITY up to 256 bits */
	FK_TIMESTAMP,				/* QUANTITY, unix seconds */
	FK_JSONB,					/* array passed through jsonb_in */
	FK_HASHES,					/* array of 32-byte DATA into bytea[] */
	FK_SPECIAL					/* handled by the caller */
} FieldKind;

/* Cross-checks of a field against values known from elsewhere */
typedef enum FieldCheck
{
	FC_NONE,
	FC_BLOCK_NUMBER,			/* equals the requested block number */
	FC_BLOCK_HASH,				/* equals the block's hash */
	FC_BLOCK_TIMESTAMP,			/* equals the block's timestamp */
	FC_TX_HASH,					/* equals the transaction's hash */
	FC_TX_INDEX,				/* equals the transaction's position */
	FC_TX_TYPE,					/* equals the transaction's type */
	FC_STATUS					/* 0 or 1 */
} FieldCheck;

/* Slots for the value tokens of special fields */
typedef enum FieldSpecial
{
	SP_NONE = 0,
	SP_TRANSACTIONS,
	SP_WITHDRAWALS,
	SP_INPUT,
	SP_DATA,
	SP_LOGS,
	SP_TOPICS,
	SP_REMOVED,
	SP_COUNT
} FieldSpecial;

typedef struct FieldSpec
{
	const char *name;
	int			namelen;
	FieldKind	kind;
	FieldCheck	check;
	bool		required;
	int			column;			/* attribute number or -1 */
	FieldSpecial special;
} FieldSpec;

#define F(name, kind, check, req, col) \
	{name, sizeof(name) - 1, kind, check, req, col, SP_NONE}
#define FS(name, req, sp) \
	{name, sizeof(name) - 1, FK_SPECIAL, FC_NONE, req, -1, sp}

#define FIELD_MAXLEN	24
#define FIELD_MAXCAND	8

typedef struct ObjSpec
{
	ObjKind		kind;
	const FieldSpec *fields;
	int			nfields;
	bool		ready;			/* bylen built */
	int8		bylen[FIELD_MAXLEN + 1][FIELD_MAXCAND];
} ObjSpec;

static const FieldSpec block_fields[] = {
	F("number", FK_INT8, FC_BLOCK_NUMBER, true, BLK_NUMBER),
	F("hash", FK_HASH, FC_NONE, true, BLK_HASH),
	F("parentHash", FK_HASH, FC_NONE, true, BLK_PARENT_HASH),
	F("nonce", FK_NONCE, FC_NONE, false, BLK_NONCE),
	F("sha3Uncles", FK_HASH, FC_NONE, false, BLK_SHA3_UNCLES),
	F("logsBloom", FK_BLOOM, FC_NONE, false, BLK_LOGS_BLOOM),
	F("transactionsRoot", FK_HASH, FC_NONE, false, BLK_TRANSACTIONS_ROOT),
	F("stateRoot", FK_HASH, FC_NONE, false, BLK_STATE_ROOT),
	F("receiptsRoot", FK_HASH, FC_NONE, false, BLK_RECEIPTS_ROOT),
	F("miner", FK_ADDR, FC_NONE, false, BLK_MINER),
	F("difficulty", FK_NUMERIC, FC_NONE, false, BLK_DIFFICULTY),
	F("totalDifficulty", FK_NUMERIC, FC_NONE, false, BLK_TOTAL_DIFFICULTY),
	F("extraData", FK_BYTES, FC_NONE, false, BLK_EXTRA_DATA),
	F("size", FK_INT8, FC_NONE, false, BLK_SIZE),
	F("gasLimit", FK_INT8, FC_NONE, true, BLK_GAS_LIMIT),
	F("gasUsed", FK_INT8, FC_NONE, true, BLK_GAS_USED),
	F("timestamp", FK_TIMESTAMP, FC_NONE, true, BLK_TIMESTAMP),
	F("mixHash", FK_HASH, FC_NONE, false, BLK_MIX_HASH),
	F("baseFeePerGas", FK_NUMERIC, FC_NONE, false, BLK_BASE_FEE_PER_GAS),
	F("withdrawalsRoot", FK_HASH, FC_NONE, false, BLK_WITHDRAWALS_ROOT),
	F("blobGasUsed", FK_INT8, FC_NONE, false, BLK_BLOB_GAS_USED),
	F("excessBlobGas", FK_INT8, FC_NONE, false, BLK_EXCESS_BLOB_GAS),
	F("parentBeaconBlockRoot", FK_HASH, FC_NONE, false, BLK_PARENT_BEACON_BLOCK_ROOT),
	F("requestsHash", FK_HASH, FC_NONE, false, BLK_REQUESTS_HASH),
	F("uncles", FK_HASHES, FC_NONE, false, BLK_UNCLES),
	FS("transactions", true, SP_TRANSACTIONS),
	FS("withdrawals", false, SP_WITHDRAWALS),
};

static const FieldSpec transaction_fields[] = {
	F("hash", FK_HASH, FC_NONE, true, TX_HASH),
	F("blockHash", FK_HASH, FC_BLOCK_HASH, true, -1),
	F("blockNumber", FK_INT8, FC_BLOCK_NUMBER, true, -1),
	F("transactionIndex", FK_INT4, FC_TX_INDEX, true, -1),
	F("blockTimestamp", FK_TIMESTAMP, FC_BLOCK_TIMESTAMP, false, TX_BLOCK_TIMESTAMP),
	F("type", FK_INT2, FC_NONE, false, TX_TYPE),
	F("from", FK_ADDR, FC_NONE, true, TX_FROM_ADDRESS),
	F("to", FK_ADDR, FC_NONE, false, TX_TO_ADDRESS),
	F("nonce", FK_INT8, FC_NONE, true, TX_NONCE),
	F("value", FK_NUMERIC, FC_NONE, true, TX_VALUE),
	F("gas", FK_INT8, FC_NONE, true, TX_GAS),
	F("gasPrice", FK_NUMERIC, FC_NONE, false, TX_GAS_PRICE),
	F("maxFeePerGas", FK_NUMERIC, FC_NONE, false, TX_MAX_FEE_PER_GAS),
	F("maxPriorityFeePerGas", FK_NUMERIC, FC_NONE, false, TX_MAX_PRIORITY_FEE_PER_GAS),
	F("maxFeePerBlobGas", FK_NUMERIC, FC_NONE, false, TX_MAX_FEE_PER_BLOB_GAS),
	FS("input", false, SP_INPUT),
	FS("data", false, SP_DATA),
	F("chainId", FK_INT8, FC_NONE, false, TX_TX_CHAIN_ID),
	F("accessList", FK_JSONB, FC_NONE, false, TX_ACCESS_LIST),
	F("blobVersionedHashes", FK_HASHES, FC_NONE, false, TX_BLOB_VERSIONED_HASHES),
	F("authorizationList", FK_JSONB, FC_NONE, false, TX_AUTHORIZATION_LIST),
	F("v", FK_NUMERIC, FC_NONE, false, TX_V),
	F("r", FK_NUMERIC, FC_NONE, false, TX_R),
	F("s", FK_NUMERIC, FC_NONE, false, TX_S),
	F("yParity", FK_INT2, FC_NONE, false, TX_Y_PARITY),
};

static const FieldSpec receipt_fields[] = {
	F("transactionHash", FK_HASH, FC_TX_HASH, true, -1),
	F("transactionIndex", FK_INT4, FC_TX_INDEX, true, -1),
	F("blockHash", FK_HASH, FC_BLOCK_HASH, true, -1),
	F("blockNumber", FK_INT8, FC_BLOCK_NUMBER, true, -1),
	F("blockTimestamp", FK_TIMESTAMP, FC_BLOCK_TIMESTAMP, false, -1),
	F("type", FK_INT2, FC_TX_TYPE, false, -1),
	F("cumulativeGasUsed", FK_INT8, FC_NONE, true, TX_CUMULATIVE_GAS_USED),
	F("gasUsed", FK_INT8, FC_NONE, true, TX_GAS_USED),
	F("effectiveGasPrice", FK_NUMERIC, FC_NONE, false, TX_EFFECTIVE_GAS_PRICE),
	F("contractAddress", FK_ADDR, FC_NONE, false, TX_CONTRACT_ADDRESS),
	F("status", FK_INT2, FC_STATUS, false, TX_STATUS),
	F("root", FK_HASH, FC_NONE, false, TX_ROOT),
	F("logsBloom", FK_BLOOM, FC_NONE, true, TX_LOGS_BLOOM),
	F("blobGasUsed", FK_INT8, FC_NONE, false, TX_BLOB_GAS_USED),
	F("blobGasPrice", FK_NUMERIC, FC_NONE, false, TX_BLOB_GAS_PRICE),
	FS("logs", true, SP_LOGS),
};

static const FieldSpec log_fields[] = {
	F("address", FK_ADDR, FC_NONE, true, LOG_ADDRESS),
	FS("topics", true, SP_TOPICS),
	F("data", FK_BYTES, FC_NONE, true, LOG_DATA),
	F("logIndex", FK_INT4, FC_NONE, true, LOG_LOG_INDEX),
	F("blockNumber", FK_INT8, FC_BLOCK_NUMBER, false, -1),
	F("blockHash", FK_HASH, FC_BLOCK_HASH, false, -1),
	F("transactionHash", FK_HASH, FC_TX_HASH, false, -1),
	F("transactionIndex", FK_INT4, FC_TX_INDEX, false, -1),
	F("blockTimestamp", FK_TIMESTAMP, FC_BLOCK_TIMESTAMP, false, LOG_BLOCK_TIMESTAMP),
	FS("removed", false, SP_REMOVED),
};

static const FieldSpec withdrawal_fields[] = {
	F("index", FK_INT8, FC_NONE, true, WD_INDEX),
	F("validatorIndex", FK_INT8, FC_NONE, true, WD_VALIDATOR_INDEX),
	F("address", FK_ADDR, FC_NONE, true, WD_ADDRESS),
	F("amount", FK_NUMERIC, FC_NONE, true, WD_AMOUNT),
};

static ObjSpec block_spec = {OBJ_BLOCK, block_fields, lengthof(block_fields)};
static ObjSpec transaction_spec = {OBJ_TRANSACTION, transaction_fields, lengthof(transaction_fields)};
static ObjSpec receipt_spec = {OBJ_RECEIPT, receipt_fields, lengthof(receipt_fields)};
static ObjSpec log_spec = {OBJ_LOG, log_fields, lengthof(log_fields)};
static ObjSpec withdrawal_spec = {OBJ_WITHDRAWAL, withdrawal_fields, lengthof(withdrawal_fields)};

static void
objspec_build_index(ObjSpec *os)
{
	int			i;

	StaticAssertStmt(lengthof(block_fields) <= 64, "too many block fields");
	StaticAssertStmt(lengthof(transaction_fields) <= 64, "too many transaction fields");
	memset(os->bylen, -1, sizeof(os->bylen));
	for (i = 0; i < os->nfields; i++)
	{
		int			len = os->fields[i].namelen;
		int			c;

		if (len > FIELD_MAXLEN)
			elog(ERROR, "field name \"%s\" too long", os->fields[i].name);
		for (c = 0; c < FIELD_MAXCAND; c++)
		{
			if (os->bylen[len][c] < 0)
			{
				os->bylen[len][c] = (int8) i;
				break;
			}
		}
		if (c == FIELD_MAXCAND)
			elog(ERROR, "too many field names of length %d", len);
	}
	os->ready = true;
}

static inline int
objspec_lookup(const ObjSpec *os, const char *key, int len)
{
	int			c;

	if (len > FIELD_MAXLEN)
		return -1;
	for (c = 0; c < FIELD_MAXCAND; c++)
	{
		int			i = os->bylen[len][c];

		if (i < 0)
			return -1;
		if (memcmp(os->fields[i].name, key, len) == 0)
			return i;
	}
	return -1;
}

/* ----------------------------------------------------------------
 * Decoding context and error reports
 * ----------------------------------------------------------------
 */

typedef struct DecodeCtx
{
	JsonDoc    *doc;
	int64		blocknum;		/* the requested block number */
	ObjKind		objkind;		/* object being decoded */
	int			objindex;
	int			receipt_index;	/* for logs */
	const char *curfield;		/* for the error context callback */
	/* expected values for FieldCheck */
	const uint8 *block_hash;
	bool		have_timestamp;
	TimestampTz block_timestamp;
	const uint8 *tx_hash;
	int			tx_index;
	int			tx_type;
} DecodeCtx;

/* "transaction 3 of block 18000000" and so on (error paths only) */
static char *
obj_desc(const DecodeCtx *cx)
{
	long long	n = (long long) cx->blocknum;

	switch (cx->objkind)
	{
		case OBJ_BLOCK:
			return psprintf("block %lld", n);
		case OBJ_TRANSACTION:
			return psprintf("transaction %d of block %lld", cx->objindex, n);
		case OBJ_RECEIPT:
			return psprintf("receipt %d of block %lld", cx->objindex, n);
		case OBJ_LOG:
			return psprintf("log %d of receipt %d of block %lld",
							cx->objindex, cx->receipt_index, n);
		case OBJ_WITHDRAWAL:
			return psprintf("withdrawal %d of block %lld", cx->objindex, n);
	}
	return psprintf("block %lld", n);
}

static void
decode_error_callback(void *arg)
{
	DecodeCtx  *cx = (DecodeCtx *) arg;

	if (cx->curfield)
		errcontext("decoding field \"%s\" of %s", cx->curfield, obj_desc(cx));
}

static void report_type(DecodeCtx *cx, const char *field, int tok,
						const char *expected) pg_attribute_noreturn();
static void report_hex(DecodeCtx *cx, const char *field, int tok,
					   const char *why) pg_attribute_noreturn();
static void report_range(DecodeCtx *cx, const char *field, int tok,
						 const char *type) pg_attribute_noreturn();
static void report_missing(DecodeCtx *cx, const char *field) pg_attribute_noreturn();
static void report_mismatch(DecodeCtx *cx, const char *field, int tok,
							const char *target, const char *expected) pg_attribute_noreturn();

static void
report_type(DecodeCtx *cx, const char *field, int tok, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("field \"%s\" of %s must be a JSON %s",
					field, obj_desc(cx), expected),
			 errdetail("The value is %s.", tok_display(cx->doc, tok))));
}

static void
report_hex(DecodeCtx *cx, const char *field, int tok, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid hex in field \"%s\" of %s", field, obj_desc(cx)),
			 errdetail("The value %s %s.", tok_display(cx->doc, tok), why)));
}

static void
report_range(DecodeCtx *cx, const char *field, int tok, const char *type)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("value of field \"%s\" of %s is out of range for type %s",
					field, obj_desc(cx), type),
			 errdetail("The value is %s.", tok_display(cx->doc, tok))));
}

static void
report_missing(DecodeCtx *cx, const char *field)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("missing field \"%s\" in %s", field, obj_desc(cx))));
}

static void
report_mismatch(DecodeCtx *cx, const char *field, int tok,
				const char *target, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("field \"%s\" of %s does not match %s",
					field, obj_desc(cx), target),
			 errdetail("Found %s, expected \"%s\".",
					   tok_display(cx->doc, tok), expected)));
}

/* ----------------------------------------------------------------
 * Value decoders
 * ----------------------------------------------------------------
 */

/* The text of a string token, or a type error */
static inline void
tok_string(DecodeCtx *cx, const char *field, int tok, const char **s, int *n)
{
	const jsmntok_t *t = &cx->doc->toks[tok];

	if (t->type != JSMN_STRING)
		report_type(cx, field, tok, "string");
	*s = cx->doc->js + t->start;
	*n = t->end - t->start;
}

/*
 * Check a DATA value's syntax and length; returns the number of bytes.
 * want < 0 accepts any length.
 */
static int
data_length(DecodeCtx *cx, const char *field, int tok, const char *s, int n,
			int want)
{
	int			nbytes;

	if (n < 2 || s[0] != '0' || s[1] != 'x')
		report_hex(cx, field, tok, "does not start with \"0x\"");
	if (n % 2 != 0)
		report_hex(cx, field, tok, "has an odd number of hex digits");
	nbytes = (n - 2) / 2;
	if (want >= 0 && nbytes != want)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("wrong length of field \"%s\" of %s",
						field, obj_desc(cx)),
				 errdetail("Expected %d bytes, found %d in %s.",
						   want, nbytes, tok_display(cx->doc, tok))));
	return nbytes;
}

static void
hex_decode_into(DecodeCtx *cx, const char *field, int tok, const char *hex,
				int nbytes, uint8 *dst)
{
	int			i;

	for (i = 0; i < nbytes; i++)
	{
		int			hi = hexval((unsigned char) hex[2 * i]);
		int			lo = hexval((unsigned char) hex[2 * i + 1]);

		if ((hi | lo) < 0)
			report_hex(cx, field, tok, "contains a character that is not a hex digit");
		dst[i] = (uint8) ((hi << 4) | lo);
	}
}

/* Decode a DATA string of exactly want bytes into dst */
static void
decode_fixed(DecodeCtx *cx, const char *field, int tok, uint8 *dst, int want)
{
	const char *s;
	int			n;

	tok_string(cx, field, tok, &s, &n);
	data_length(cx, field, tok, s, n, want);
	hex_decode_into(cx, field, tok, s + 2, want, dst);
}

/* Decode a DATA string into a bytea Datum */
static Datum
decode_bytea(DecodeCtx *cx, const char *field, int tok, int want)
{
	const char *s;
	int			n;
	int			nbytes;
	bytea	   *b;

	tok_string(cx, field, tok, &s, &n);
	nbytes = data_length(cx, field, tok, s, n, want);
	b = (bytea *) palloc(VARHDRSZ + nbytes);
	SET_VARSIZE(b, VARHDRSZ + nbytes);
	hex_decode_into(cx, field, tok, s + 2, nbytes, (uint8 *) VARDATA(b));
	return PointerGetDatum(b);
}

/*
 * Check a QUANTITY's syntax; returns the significant hex digits in
 * *digits / *ndigits.
 */
static void
quantity_digits(DecodeCtx *cx, const char *field, int tok,
				const char **digits, int *ndigits)
{
	const char *s;
	int			n;
	int			i;

	tok_string(cx, field, tok, &s, &n);
	if (n < 2 || s[0] != '0' || s[1] != 'x')
		report_hex(cx, field, tok, "does not start with \"0x\"");
	if (n == 2)
		report_hex(cx, field, tok, "has no hex digits");
	for (i = 2; i < n; i++)
	{
		if (hexval((unsigned char) s[i]) < 0)
			report_hex(cx, field, tok, "contains a character that is not a hex digit");
	}
	if (s[2] == '0' && n > 3)
		report_hex(cx, field, tok, "has leading zeros");
	*digits = s + 2;
	*ndigits = n - 2;
}

static inline uint64
hex_to_u64(const char *d, int n)
{
	uint64		v = 0;
	int			i;

	for (i = 0; i < n; i++)
		v = (v << 4) | (uint64) hexval((unsigned char) d[i]);
	return v;
}

/* A QUANTITY that must be <= max (a signed type's maximum) */
static int64
decode_int(DecodeCtx *cx, const char *field, int tok, int64 max,
		   const char *type)
{
	const char *d;
	int			n;
	uint64		v;

	quantity_digits(cx, field, tok, &d, &n);
	if (n > 16)
		report_range(cx, field, tok, type);
	v = hex_to_u64(d, n);
	if (v > (uint64) max)
		report_range(cx, field, tok, type);
	return (int64) v;
}

/* A QUANTITY of up to 256 bits into numeric */
static Datum
decode_numeric(DecodeCtx *cx, const char *field, int tok)
{
	const char *d;
	int			n;
	uint32		limbs[8];
	int			nl;
	int			i;
	char		buf[96];
	int			pos;

	quantity_digits(cx, field, tok, &d, &n);
	if (n <= 16)
	{
		uint64		v = hex_to_u64(d, n);

		if (v <= (uint64) PG_INT64_MAX)
			return NumericGetDatum(int64_to_numeric((int64) v));
	}
	if (n > 64)
		report_range(cx, field, tok, "numeric(78,0)");

	/* little-endian 32-bit limbs */
	memset(limbs, 0, sizeof(limbs));
	for (i = 0; i < n; i++)
	{
		int			bit = (n - 1 - i) * 4;

		limbs[bit / 32] |= (uint32) hexval((unsigned char) d[i]) << (bit % 32);
	}
	nl = (n + 7) / 8;

	/* repeated division by 10^9, digits written from the end */
	pos = sizeof(buf) - 1;
	buf[pos] = '\0';
	while (nl > 0)
	{
		uint64		rem = 0;
		int			k;

		for (i = nl - 1; i >= 0; i--)
		{
			uint64		cur = (rem << 32) | limbs[i];

			limbs[i] = (uint32) (cur / UINT64CONST(1000000000));
			rem = cur % UINT64CONST(1000000000);
		}
		while (nl > 0 && limbs[nl - 1] == 0)
			nl--;
		for (k = 0; k < 9; k++)
		{
			buf[--pos] = (char) ('0' + rem % 10);
			rem /= 10;
			if (nl == 0 && rem == 0)
				break;
		}
	}
	return DirectFunctionCall3(numeric_in, CStringGetDatum(buf + pos),
							   ObjectIdGetDatum(InvalidOid),
							   Int32GetDatum(-1));
}

/*
 * A unix time as a QUANTITY.  For "blockTimestamp" a plain JSON integer is
 * accepted too: anvil sends it that way in receipts.
 */
static TimestampTz
decode_timestamp(DecodeCtx *cx, const char *field, int tok, bool allow_decimal)
{
	const jsmntok_t *t = &cx->doc->toks[tok];
	int64		secs;
	int64		adj;
	TimestampTz ts;

	if (allow_decimal && t->type == JSMN_PRIMITIVE &&
		cx->doc->js[t->start] >= '0' && cx->doc->js[t->start] <= '9')
	{
		secs = 0;
		for (int i = t->start; i < t->end; i++)
		{
			char		c = cx->doc->js[i];

			if (c < '0' || c > '9' || secs > (PG_INT64_MAX - 9) / 10)
				report_range(cx, field, tok, "timestamp with time zone");
			secs = secs * 10 + (c - '0');
		}
	}
	else
		secs = decode_int(cx, field, tok, PG_INT64_MAX,
						  "timestamp with time zone");

	if (pg_sub_s64_overflow(secs,
							(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY,
							&adj) ||
		pg_mul_s64_overflow(adj, USECS_PER_SEC, &ts) ||
		!IS_VALID_TIMESTAMP(ts))
		report_range(cx, field, tok, "timestamp with time zone");
	return ts;
}

static Datum
decode_jsonb(DecodeCtx *cx, const char *field, int tok)
{
	const jsmntok_t *t = &cx->doc->toks[tok];
	char	   *text;
	char	   *converted;
	Datum		result;
	ErrorContextCallback errcb;

	if (t->type != JSMN_ARRAY)
		report_type(cx, field, tok, "array");
	text = pnstrdup(cx->doc->js + t->start, t->end - t->start);

	cx->curfield = field;
	errcb.callback = decode_error_callback;
	errcb.arg = cx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	/*
	 * jsonb_in takes its input to be valid in the server encoding and keeps
	 * the bytes of strings as they are; node text is UTF-8 that nothing has
	 * checked yet.
	 */
	converted = pg_any_to_server(text, t->end - t->start, PG_UTF8);
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(converted));
	error_context_stack = errcb.previous;
	cx->curfield = NULL;

	if (converted != text)
		pfree(converted);
	pfree(text);
	return result;
}

static Datum
decode_hashes(DecodeCtx *cx, const char *field, int tok)
{
	JsonDoc    *doc = cx->doc;
	const jsmntok_t *t = &doc->toks[tok];
	Datum	   *elems;
	int			n = t->size;
	int			e;
	int			i;

	if (t->type != JSMN_ARRAY)
		report_type(cx, field, tok, "array");
	if (n == 0)
		return PointerGetDatum(construct_empty_array(BYTEAOID));
	elems = (Datum *) palloc(n * sizeof(Datum));
	e = tok + 1;
	for (i = 0; i < n; i++)
	{
		elems[i] = decode_bytea(cx, field, e, 32);
		e = TOK_NEXT(doc, e);
	}
	return PointerGetDatum(construct_array(elems, n, BYTEAOID, -1, false,
										   TYPALIGN_INT));
}

static char *
hex_string_int(int64 v)
{
	return psprintf("0x%llx", (long long) v);
}

/* Compare a decoded integer with the value it must equal */
static void
check_int(DecodeCtx *cx, const FieldSpec *f, int tok, int64 v)
{
	int64		want;
	const char *target = "the block";

	switch (f->check)
	{
		case FC_BLOCK_NUMBER:
			want = cx->blocknum;
			if (v != want && cx->objkind == OBJ_BLOCK)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("node returned block %lld instead of block %lld",
								(long long) v, (long long) want)));
			break;
		case FC_TX_INDEX:
			want = cx->tx_index;
			target = psprintf("transaction %d", cx->tx_index);
			break;
		case FC_TX_TYPE:
			want = cx->tx_type;
			target = psprintf("transaction %d", cx->tx_index);
			break;
		case FC_STATUS:
			if (v != 0 && v != 1)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("invalid status in field \"%s\" of %s",
								f->name, obj_desc(cx)),
						 errdetail("The value is %s, expected \"0x0\" or \"0x1\".",
								   tok_display(cx->doc, tok))));
			return;
		default:
			return;
	}
	if (v != want)
		report_mismatch(cx, f->name, tok, target, hex_string_int(want));
}

/* Decode one member value according to its FieldSpec */
static void
decode_field(DecodeCtx *cx, const FieldSpec *f, int tok,
			 Datum *values, bool *nulls)
{
	Datum		d = (Datum) 0;
	int64		v;

	switch (f->kind)
	{
		case FK_HASH:
			if (f->check != FC_NONE)
			{
				uint8		buf[32];
				const uint8 *want;
				const char *target = "the block";

				decode_fixed(cx, f->name, tok, buf, 32);
				if (f->check == FC_TX_HASH)
				{
					want = cx->tx_hash;
					target = psprintf("transaction %d", cx->tx_index);
				}
				else
					want = cx->block_hash;
				if (want != NULL && memcmp(buf, want, 32) != 0)
					report_mismatch(cx, f->name, tok, target,
									eth_bytes_to_hex(want, 32));
				if (f->column < 0)
					return;
			}
			d = decode_bytea(cx, f->name, tok, 32);
			break;
		case FK_ADDR:
			d = decode_bytea(cx, f->name, tok, 20);
			break;
		case FK_BLOOM:
			d = decode_bytea(cx, f->name, tok, 256);
			break;
		case FK_NONCE:
			d = decode_bytea(cx, f->name, tok, 8);
			break;
		case FK_BYTES:
			d = decode_bytea(cx, f->name, tok, -1);
			break;
		case FK_INT8:
			v = decode_int(cx, f->name, tok, PG_INT64_MAX, "bigint");
			check_int(cx, f, tok, v);
			d = Int64GetDatum(v);
			break;
		case FK_INT4:
			v = decode_int(cx, f->name, tok, PG_INT32_MAX, "integer");
			check_int(cx, f, tok, v);
			d = Int32GetDatum((int32) v);
			break;
		case FK_INT2:
			v = decode_int(cx, f->name, tok, PG_INT16_MAX, "smallint");
			check_int(cx, f, tok, v);
			d = Int16GetDatum((int16) v);
			break;
		case FK_NUMERIC:
			d = decode_numeric(cx, f->name, tok);
			break;
		case FK_TIMESTAMP:
			{
				TimestampTz ts = decode_timestamp(cx, f->name, tok,
												  f->check == FC_BLOCK_TIMESTAMP);

				if (f->check == FC_BLOCK_TIMESTAMP && cx->have_timestamp &&
					ts != cx->block_timestamp)
					report_mismatch(cx, f->name, tok, "the block",
									hex_string_int(cx->block_timestamp / USECS_PER_SEC +
												   (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY));
				d = TimestampTzGetDatum(ts);
			}
			break;
		case FK_JSONB:
			d = decode_jsonb(cx, f->name, tok);
			break;
		case FK_HASHES:
			d = decode_hashes(cx, f->name, tok);
			break;
		case FK_SPECIAL:
			return;
	}
	if (f->column >= 0)
	{
		values[f->column] = d;
		nulls[f->column] = false;
	}
}

/*
 * Decode the members of the object at token objtok into values/nulls by
 * the object's field table.  Value tokens of special fields are returned
 * in special[] (-1 when absent or null).  Unknown members are ignored.
 */
static void
decode_members(DecodeCtx *cx, ObjSpec *os, int objtok,
			   Datum *values, bool *nulls, int *special)
{
	JsonDoc    *doc = cx->doc;
	const jsmntok_t *ot = &doc->toks[objtok];
	uint64		seen = 0;
	int			k = objtok + 1;
	int			m;
	int			i;

	if (!os->ready)
		objspec_build_index(os);
	for (i = 0; i < SP_COUNT; i++)
		special[i] = -1;

	for (m = 0; m < ot->size; m++)
	{
		int			key = k;
		int			val = k + 1;
		const jsmntok_t *kt = &doc->toks[key];
		const FieldSpec *f;
		int			fi;

		k = TOK_NEXT(doc, val);
		fi = objspec_lookup(os, doc->js + kt->start, kt->end - kt->start);
		if (fi < 0)
			continue;
		f = &os->fields[fi];
		seen |= UINT64CONST(1) << fi;

		if (tok_is_null(doc, val))
		{
			if (f->required)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("field \"%s\" of %s is null",
								f->name, obj_desc(cx))));
			if (f->column >= 0)
				nulls[f->column] = true;
			if (f->special != SP_NONE)
				special[f->special] = -1;
			continue;
		}
		if (f->special != SP_NONE)
		{
			special[f->special] = val;
			continue;
		}
		decode_field(cx, f, val, values, nulls);
	}

	for (i = 0; i < os->nfields; i++)
	{
		if (os->fields[i].required && (seen & (UINT64CONST(1) << i)) == 0)
			report_missing(cx, os->fields[i].name);
	}
}

/* ----------------------------------------------------------------
 * eth_decode_block
 * ----------------------------------------------------------------
 */

/* A block may have at most "limit" rows of a kind (see decode.h). */
static void
check_row_limit(long long bn, const char *what, int nrows, int limit)
{
	if (nrows > limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("block %lld has %d %s, more than the limit of %d", bn, nrows, what, limit)));
}

static void
init_rows(DecodedRows *rows, int natts, int nrows)
{
	Size		n = (Size) natts * (Size) nrows;

	rows->natts = natts;
	rows->nrows = nrows;
	rows->values = (Datum *) palloc_extended(Max(n, 1) * sizeof(Datum),
											 MCXT_ALLOC_HUGE);
	rows->nulls = (bool *) palloc_extended(Max(n, 1) * sizeof(bool),
										   MCXT_ALLOC_HUGE);
	memset(rows->nulls, true, n * sizeof(bool));
}

/* Value token of member "logs" of a receipt object, or -1 */
static int
find_logs_member(const JsonDoc *doc, int objtok)
{
	const jsmntok_t *ot = &doc->toks[objtok];
	int			k = objtok + 1;
	int			m;

	for (m = 0; m < ot->size; m++)
	{
		const jsmntok_t *kt = &doc->toks[k];

		if (kt->end - kt->start == 4 && memcmp(doc->js + kt->start, "logs", 4) == 0)
			return k + 1;
		k = TOK_NEXT(doc, k + 1);
	}
	return -1;
}

static void
decode_log(DecodeCtx *cx, int logtok, Datum *values, bool *nulls,
		   Datum tx_hash, Datum block_hash, int64 chain_id)
{
	JsonDoc    *doc = cx->doc;
	int			special[SP_COUNT];
	int			t;

	if (doc->toks[logtok].type != JSMN_OBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("%s is not a JSON object", obj_desc(cx))));

	decode_members(cx, &log_spec, logtok, values, nulls, special);

	values[LOG_CHAIN_ID] = Int64GetDatum(chain_id);
	nulls[LOG_CHAIN_ID] = false;
	values[LOG_BLOCK_NUMBER] = Int64GetDatum(cx->blocknum);
	nulls[LOG_BLOCK_NUMBER] = false;
	values[LOG_TRANSACTION_INDEX] = Int32GetDatum(cx->tx_index);
	nulls[LOG_TRANSACTION_INDEX] = false;
	values[LOG_TRANSACTION_HASH] = tx_hash;
	nulls[LOG_TRANSACTION_HASH] = false;
	values[LOG_BLOCK_HASH] = block_hash;
	nulls[LOG_BLOCK_HASH] = false;

	/* topics: 0 to 4 hashes */
	t = special[SP_TOPICS];
	if (t < 0)
		report_missing(cx, "topics");
	if (doc->toks[t].type != JSMN_ARRAY)
		report_type(cx, "topics", t, "array");
	if (doc->toks[t].size > 4)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has %d topics", obj_desc(cx), doc->toks[t].size),
				 errdetail("A log has at most 4 topics.")));
	{
		int			n = doc->toks[t].size;
		int			e = t + 1;
		int			i;

		for (i = 0; i < n; i++)
		{
			values[LOG_TOPIC0 + i] = decode_bytea(cx, "topics", e, 32);
			nulls[LOG_TOPIC0 + i] = false;
			e = TOK_NEXT(doc, e);
		}
	}

	/* removed: absent or false */
	t = special[SP_REMOVED];
	if (t >= 0)
	{
		const jsmntok_t *rt = &doc->toks[t];

		if (rt->type != JSMN_PRIMITIVE ||
			(doc->js[rt->start] != 't' && doc->js[rt->start] != 'f'))
			report_type(cx, "removed", t, "boolean");
		if (doc->js[rt->start] == 't')
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("removed log in block %lld", (long long) cx->blocknum),
					 errdetail("Log %d of receipt %d has \"removed\": true.",
							   cx->objindex, cx->receipt_index)));
	}
	values[LOG_REMOVED] = BoolGetDatum(false);
	nulls[LOG_REMOVED] = false;
}

void
eth_decode_block(DecodedBlock *out, int64 chain_id, int64 expected_number,
				 const char *block_json, size_t block_len,
				 const char *receipts_json, size_t receipts_len)
{
	JsonDoc		bdoc;
	JsonDoc		rdoc;
	DecodeCtx	cx;
	int			special[SP_COUNT];
	int			errpos;
	Datum	   *bvalues;
	bool	   *bnulls;
	int			txs_tok;
	int			wds_tok;
	int			ntx;
	int			nwd;
	int			nlogs;
	int			i;
	int			t;
	int			r;
	int			log_row;
	int			prev_log_index;
	long long	bn = (long long) expected_number;

	memset(out, 0, sizeof(DecodedBlock));
	memset(&cx, 0, sizeof(cx));
	cx.blocknum = expected_number;

	/* block document */
	if (json_text_is_null(block_json, block_len))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("node returned null for block %lld", bn),
				 errdetail("The node does not have this block.")));
	errpos = json_tokenize(&bdoc, block_json, block_len);
	if (errpos >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("malformed JSON in block %lld response", bn),
				 errdetail("The JSON text is invalid at byte offset %d.", errpos)));
	if (bdoc.toks[0].type != JSMN_OBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("block %lld response is not a JSON object", bn)));

	/* receipts document */
	if (json_text_is_null(receipts_json, receipts_len))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("node returned null receipts for block %lld", bn),
				 errdetail("The node does not have the receipts of this block.")));
	errpos = json_tokenize(&rdoc, receipts_json, receipts_len);
	if (errpos >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("malformed JSON in block %lld receipts response", bn),
				 errdetail("The JSON text is invalid at byte offset %d.", errpos)));
	if (rdoc.toks[0].type != JSMN_ARRAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("block %lld receipts response is not a JSON array", bn)));

	/* the block object's own fields */
	init_rows(&out->tables[ETH_TABLE_BLOCKS], BLK_NATTS, 1);
	bvalues = out->tables[ETH_TABLE_BLOCKS].values;
	bnulls = out->tables[ETH_TABLE_BLOCKS].nulls;
	cx.doc = &bdoc;
	cx.objkind = OBJ_BLOCK;
	decode_members(&cx, &block_spec, 0, bvalues, bnulls, special);

	out->number = expected_number;
	memcpy(out->hash, VARDATA(DatumGetPointer(bvalues[BLK_HASH])), 32);
	memcpy(out->parent_hash, VARDATA(DatumGetPointer(bvalues[BLK_PARENT_HASH])), 32);
	cx.block_hash = out->hash;
	cx.have_timestamp = true;
	cx.block_timestamp = DatumGetTimestampTz(bvalues[BLK_TIMESTAMP]);
	bvalues[BLK_CHAIN_ID] = Int64GetDatum(chain_id);
	bnulls[BLK_CHAIN_ID] = false;
	if (bnulls[BLK_UNCLES])
	{
		bvalues[BLK_UNCLES] = PointerGetDatum(construct_empty_array(BYTEAOID));
		bnulls[BLK_UNCLES] = false;
	}

	txs_tok = special[SP_TRANSACTIONS];
	wds_tok = special[SP_WITHDRAWALS];
	if (txs_tok < 0)
		report_missing(&cx, "transactions");
	if (bdoc.toks[txs_tok].type != JSMN_ARRAY)
		report_type(&cx, "transactions", txs_tok, "array");
	ntx = bdoc.toks[txs_tok].size;
	if (ntx > 0 && bdoc.toks[txs_tok + 1].type == JSMN_STRING)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("block %lld was fetched without full transactions", bn),
				 errdetail("Transactions must be objects, as returned by eth_getBlockByNumber with its second parameter true.")));
	if (wds_tok >= 0 && bdoc.toks[wds_tok].type != JSMN_ARRAY)
		report_type(&cx, "withdrawals", wds_tok, "array");
	nwd = wds_tok >= 0 ? bdoc.toks[wds_tok].size : 0;
	check_row_limit(bn, "transactions", ntx, ETH_MAX_BLOCK_TRANSACTIONS);
	check_row_limit(bn, "withdrawals", nwd, ETH_MAX_BLOCK_WITHDRAWALS);

	bvalues[BLK_TRANSACTION_COUNT] = Int32GetDatum(ntx);
	bnulls[BLK_TRANSACTION_COUNT] = false;
	if (wds_tok >= 0)
	{
		bvalues[BLK_WITHDRAWAL_COUNT] = Int32GetDatum(nwd);
		bnulls[BLK_WITHDRAWAL_COUNT] = false;
	}

	/* receipts: one per transaction; count the logs */
	if (rdoc.toks[0].size != ntx)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("block %lld has %d transactions but %d receipts",
						bn, ntx, rdoc.toks[0].size)));
	nlogs = 0;
	for (r = 1, i = 0; i < ntx; i++, r = TOK_NEXT(&rdoc, r))
	{
		if (rdoc.toks[r].type == JSMN_OBJECT)
		{
			int			lt = find_logs_member(&rdoc, r);

			if (lt >= 0 && rdoc.toks[lt].type == JSMN_ARRAY)
				nlogs += rdoc.toks[lt].size;
		}
	}

	check_row_limit(bn, "logs", nlogs, ETH_MAX_BLOCK_LOGS);
	init_rows(&out->tables[ETH_TABLE_TRANSACTIONS], TX_NATTS, ntx);
	init_rows(&out->tables[ETH_TABLE_LOGS], LOG_NATTS, nlogs);
	init_rows(&out->tables[ETH_TABLE_WITHDRAWALS], WD_NATTS, nwd);
	out->transaction_count = ntx;
	out->log_count = nlogs;

	/* transactions with their receipts and logs */
	log_row = 0;
	prev_log_index = -1;
	for (i = 0, t = txs_tok + 1, r = 1; i < ntx;
		 i++, t = TOK_NEXT(&bdoc, t), r = TOK_NEXT(&rdoc, r))
	{
		Datum	   *values = out->tables[ETH_TABLE_TRANSACTIONS].values + (Size) i * TX_NATTS;
		bool	   *nulls = out->tables[ETH_TABLE_TRANSACTIONS].nulls + (Size) i * TX_NATTS;
		int			input_tok;
		int			logs_tok;
		int			nl;
		int			l;
		int			lt;

		/* the transaction */
		cx.doc = &bdoc;
		cx.objkind = OBJ_TRANSACTION;
		cx.objindex = i;
		cx.tx_index = i;
		cx.tx_hash = NULL;
		if (bdoc.toks[t].type != JSMN_OBJECT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("%s is not a JSON object", obj_desc(&cx))));
		decode_members(&cx, &transaction_spec, t, values, nulls, special);

		input_tok = special[SP_INPUT] >= 0 ? special[SP_INPUT] : special[SP_DATA];
		if (input_tok < 0)
			report_missing(&cx, "input");
		values[TX_INPUT] = decode_bytea(&cx, special[SP_INPUT] >= 0 ? "input" : "data",
										input_tok, -1);
		nulls[TX_INPUT] = false;
		if (nulls[TX_TYPE])
		{
			values[TX_TYPE] = Int16GetDatum(0);
			nulls[TX_TYPE] = false;
		}
		values[TX_CHAIN_ID] = Int64GetDatum(chain_id);
		nulls[TX_CHAIN_ID] = false;
		values[TX_BLOCK_NUMBER] = Int64GetDatum(expected_number);
		nulls[TX_BLOCK_NUMBER] = false;
		values[TX_TRANSACTION_INDEX] = Int32GetDatum(i);
		nulls[TX_TRANSACTION_INDEX] = false;
		values[TX_BLOCK_HASH] = bvalues[BLK_HASH];
		nulls[TX_BLOCK_HASH] = false;
		/* a blockTimestamp the node sent was checked against the block's */
		values[TX_BLOCK_TIMESTAMP] = bvalues[BLK_TIMESTAMP];
		nulls[TX_BLOCK_TIMESTAMP] = false;

		/* its receipt */
		cx.tx_hash = (const uint8 *) VARDATA(DatumGetPointer(values[TX_HASH]));
		cx.tx_type = DatumGetInt16(values[TX_TYPE]);
		cx.doc = &rdoc;
		cx.objkind = OBJ_RECEIPT;
		if (rdoc.toks[r].type != JSMN_OBJECT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("%s is not a JSON object", obj_desc(&cx))));
		decode_members(&cx, &receipt_spec, r, values, nulls, special);

		logs_tok = special[SP_LOGS];
		if (logs_tok < 0)
			report_missing(&cx, "logs");
		if (rdoc.toks[logs_tok].type != JSMN_ARRAY)
			report_type(&cx, "logs", logs_tok, "array");
		nl = rdoc.toks[logs_tok].size;
		values[TX_LOG_COUNT] = Int32GetDatum(nl);
		nulls[TX_LOG_COUNT] = false;

		/* its logs */
		cx.objkind = OBJ_LOG;
		cx.receipt_index = i;
		for (l = 0, lt = logs_tok + 1; l < nl; l++, lt = TOK_NEXT(&rdoc, lt))
		{
			Datum	   *lvalues;
			bool	   *lnulls;
			int32		log_index;

			/* counted in the pre-pass; differs only with duplicate keys */
			if (log_row >= nlogs)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("inconsistent \"logs\" members in receipts of block %lld", bn)));
			lvalues = out->tables[ETH_TABLE_LOGS].values + (Size) log_row * LOG_NATTS;
			lnulls = out->tables[ETH_TABLE_LOGS].nulls + (Size) log_row * LOG_NATTS;
			cx.objindex = l;
			decode_log(&cx, lt, lvalues, lnulls, values[TX_HASH],
					   bvalues[BLK_HASH], chain_id);
			lvalues[LOG_BLOCK_TIMESTAMP] = bvalues[BLK_TIMESTAMP];
			lnulls[LOG_BLOCK_TIMESTAMP] = false;
			log_index = DatumGetInt32(lvalues[LOG_LOG_INDEX]);
			if (log_index <= prev_log_index)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("field \"logIndex\" of %s is not greater than the previous log's",
								obj_desc(&cx)),
						 errdetail("Found %d after %d.", log_index, prev_log_index)));
			prev_log_index = log_index;
			log_row++;
		}
	}
	if (log_row != nlogs)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("inconsistent \"logs\" members in receipts of block %lld", bn)));

	/* withdrawals */
	cx.doc = &bdoc;
	cx.objkind = OBJ_WITHDRAWAL;
	for (i = 0, t = wds_tok + 1; i < nwd; i++, t = TOK_NEXT(&bdoc, t))
	{
		Datum	   *values = out->tables[ETH_TABLE_WITHDRAWALS].values + (Size) i * WD_NATTS;
		bool	   *nulls = out->tables[ETH_TABLE_WITHDRAWALS].nulls + (Size) i * WD_NATTS;

		cx.objindex = i;
		if (bdoc.toks[t].type != JSMN_OBJECT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("%s is not a JSON object", obj_desc(&cx))));
		decode_members(&cx, &withdrawal_spec, t, values, nulls, special);
		values[WD_CHAIN_ID] = Int64GetDatum(chain_id);
		nulls[WD_CHAIN_ID] = false;
		values[WD_BLOCK_NUMBER] = Int64GetDatum(expected_number);
		nulls[WD_BLOCK_NUMBER] = false;
	}
}

/* ----------------------------------------------------------------
 * JSON-RPC envelopes
 *
 * A small validating scanner: it checks the grammar of the whole body and
 * records where each envelope's result lies, without building tokens.
 * ----------------------------------------------------------------
 */

typedef struct RpcScan
{
	const char *s;
	size_t		len;
	size_t		pos;
} RpcScan;

static void rpc_malformed(const RpcScan *sc) pg_attribute_noreturn();

static void
rpc_malformed(const RpcScan *sc)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("malformed JSON-RPC response"),
			 errdetail("The JSON text is invalid at byte offset %zu.", sc->pos)));
}

static inline void
rpc_ws(RpcScan *sc)
{
	while (sc->pos < sc->len && is_json_ws(sc->s[sc->pos]))
		sc->pos++;
}

static inline bool
rpc_peek(RpcScan *sc, char c)
{
	rpc_ws(sc);
	return sc->pos < sc->len && sc->s[sc->pos] == c;
}

static inline void
rpc_expect(RpcScan *sc, char c)
{
	if (!rpc_peek(sc, c))
		rpc_malformed(sc);
	sc->pos++;
}

/*
 * Length of the run of plain string bytes at p (none of '"', '\\' or a
 * control character), eight bytes at a time; the caller checks the rest
 * byte by byte.  Results are mostly long hex strings, so this is the
 * envelope scanner's inner loop.
 */
static inline size_t
plain_string_run(const char *p, size_t avail)
{
	size_t		n = 0;

	while (n + 8 <= avail)
	{
		uint64		w;

		memcpy(&w, p + n, 8);
		if (HAS_ZERO_BYTE(w ^ BYTES_ALL('"')) | HAS_ZERO_BYTE(w ^ BYTES_ALL('\\')) |
			HAS_BYTE_BELOW(w, 0x20))
			break;
		n += 8;
	}
	return n;
}

/* Scan a string at pos; returns its content extent (escapes not undone) */
static void
rpc_string(RpcScan *sc, size_t *start, size_t *end)
{
	rpc_expect(sc, '"');
	*start = sc->pos;
	while (sc->pos < sc->len)
	{
		unsigned char c;

		sc->pos += plain_string_run(sc->s + sc->pos, sc->len - sc->pos);
		if (sc->pos >= sc->len)
			break;
		c = (unsigned char) sc->s[sc->pos];

		if (c == '"')
		{
			*end = sc->pos;
			sc->pos++;
			return;
		}
		if (c < 0x20)
			rpc_malformed(sc);
		if (c == '\\')
		{
			sc->pos++;
			if (sc->pos >= sc->len)
				rpc_malformed(sc);
			c = (unsigned char) sc->s[sc->pos];
			if (c == 'u')
			{
				int			i;

				for (i = 1; i <= 4; i++)
				{
					if (sc->pos + i >= sc->len ||
						hexval((unsigned char) sc->s[sc->pos + i]) < 0)
						rpc_malformed(sc);
				}
				sc->pos += 4;
			}
			else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0')
				rpc_malformed(sc);
		}
		sc->pos++;
	}
	rpc_malformed(sc);
}

/* Skip one JSON value of any type */
static void
rpc_value(RpcScan *sc, int depth)
{
	size_t		a;
	size_t		b;

	check_stack_depth();
	rpc_ws(sc);
	if (sc->pos >= sc->len || depth >= JSON_MAX_DEPTH)
		rpc_malformed(sc);
	switch (sc->s[sc->pos])
	{
		case '"':
			rpc_string(sc, &a, &b);
			return;
		case '{':
			sc->pos++;
			if (rpc_peek(sc, '}'))
			{
				sc->pos++;
				return;
			}
			for (;;)
			{
				rpc_string(sc, &a, &b);
				rpc_expect(sc, ':');
				rpc_value(sc, depth + 1);
				if (rpc_peek(sc, ','))
				{
					sc->pos++;
					continue;
				}
				rpc_expect(sc, '}');
				return;
			}
		case '[':
			sc->pos++;
			if (rpc_peek(sc, ']'))
			{
				sc->pos++;
				return;
			}
			for (;;)
			{
				rpc_value(sc, depth + 1);
				if (rpc_peek(sc, ','))
				{
					sc->pos++;
					continue;
				}
				rpc_expect(sc, ']');
				return;
			}
		default:
			a = sc->pos;
			while (sc->pos < sc->len &&
				   (isalnum((unsigned char) sc->s[sc->pos]) ||
					sc->s[sc->pos] == '-' || sc->s[sc->pos] == '+' ||
					sc->s[sc->pos] == '.'))
				sc->pos++;
			if (sc->pos == a || !json_primitive_ok(sc->s + a, (int) (sc->pos - a)))
			{
				sc->pos = a;
				rpc_malformed(sc);
			}
			return;
	}
}

static bool
rpc_key_is(const RpcScan *sc, size_t a, size_t b, const char *key)
{
	size_t		n = strlen(key);

	return b - a == n && memcmp(sc->s + a, key, n) == 0;
}

/* Parse an "id": an integer, or a string of digits; null gives -1 */
static int64
rpc_id(RpcScan *sc)
{
	size_t		a;
	size_t		b;
	size_t		i;
	int64		id = 0;

	rpc_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == '"')
		rpc_string(sc, &a, &b);
	else
	{
		a = sc->pos;
		rpc_value(sc, 0);
		b = sc->pos;
		if (b - a == 4 && memcmp(sc->s + a, "null", 4) == 0)
			return -1;
	}
	if (b == a || b - a > 18)
		goto bad;
	for (i = a; i < b; i++)
	{
		if (sc->s[i] < '0' || sc->s[i] > '9')
			goto bad;
		id = id * 10 + (sc->s[i] - '0');
	}
	return id;

bad:
	sc->pos = a;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid id in JSON-RPC response"),
			 errdetail("The id at byte offset %zu is not a non-negative integer.", a)));
	return -1;					/* keep compiler quiet */
}

/* Append the UTF-8 encoding of code point cp */
static void
append_utf8(StringInfo buf, pg_wchar cp)
{
	unsigned char tmp[8];
	int			n;

	unicode_to_utf8(cp, tmp);
	n = pg_utf_mblen(tmp);
	appendBinaryStringInfo(buf, (char *) tmp, n);
}

/* Undo the escapes of a scanned (hence well-formed) JSON string */
static char *
rpc_unescape(const char *s, size_t len)
{
	StringInfoData buf;
	size_t		i = 0;

	initStringInfo(&buf);
	while (i < len)
	{
		char		c = s[i++];
		pg_wchar	cp;

		if (c != '\\' || i >= len)
		{
			appendStringInfoChar(&buf, c);
			continue;
		}
		c = s[i++];
		switch (c)
		{
			case 'b':
				appendStringInfoChar(&buf, '\b');
				break;
			case 'f':
				appendStringInfoChar(&buf, '\f');
				break;
			case 'n':
				appendStringInfoChar(&buf, '\n');
				break;
			case 'r':
				appendStringInfoChar(&buf, '\r');
				break;
			case 't':
				appendStringInfoChar(&buf, '\t');
				break;
			case 'u':
				if (i + 4 > len)
					return buf.data;
				cp = (hexval((unsigned char) s[i]) << 12) |
					(hexval((unsigned char) s[i + 1]) << 8) |
					(hexval((unsigned char) s[i + 2]) << 4) |
					hexval((unsigned char) s[i + 3]);
				i += 4;
				if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= len &&
					s[i] == '\\' && s[i + 1] == 'u')
				{
					pg_wchar	lo = (hexval((unsigned char) s[i + 2]) << 12) |
						(hexval((unsigned char) s[i + 3]) << 8) |
						(hexval((unsigned char) s[i + 4]) << 4) |
						hexval((unsigned char) s[i + 5]);

					if (lo >= 0xDC00 && lo <= 0xDFFF)
					{
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						i += 6;
					}
				}
				if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
					cp = '?';	/* no NUL or lone surrogates in messages */
				append_utf8(&buf, cp);
				break;
			default:
				appendStringInfoChar(&buf, c);
				break;
		}
	}
	return buf.data;
}

/*
 * Read code and message of an error value.  A JSON-RPC error is an object;
 * a bare string is taken as the message.
 */
/* A node's error message as it may go into status and logs (see eth_printable). */
static char *
rpc_error_text(char *unescaped)
{
	return eth_printable(unescaped, strlen(unescaped), RPC_ERROR_TEXT_MAX);
}

static void
rpc_error_object(RpcScan *sc, RpcReply *reply)
{
	size_t		a;
	size_t		b;

	reply->error_code = 0;
	reply->error_message = NULL;
	rpc_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == '"')
	{
		rpc_string(sc, &a, &b);
		reply->error_message = rpc_error_text(rpc_unescape(sc->s + a, b - a));
		return;
	}
	if (sc->pos >= sc->len || sc->s[sc->pos] != '{')
	{
		a = sc->pos;
		rpc_value(sc, 0);
		reply->error_message = eth_printable(sc->s + a, sc->pos - a, RPC_ERROR_TEXT_MAX);
		return;
	}
	sc->pos++;
	if (!rpc_peek(sc, '}'))
	{
		for (;;)
		{
			size_t		ka;
			size_t		kb;

			rpc_string(sc, &ka, &kb);
			rpc_expect(sc, ':');
			rpc_ws(sc);
			if (rpc_key_is(sc, ka, kb, "message") &&
				sc->pos < sc->len && sc->s[sc->pos] == '"')
			{
				rpc_string(sc, &a, &b);
				reply->error_message = rpc_error_text(rpc_unescape(sc->s + a, b - a));
			}
			else if (rpc_key_is(sc, ka, kb, "code"))
			{
				char		num[16];
				char	   *endp;
				long		v;

				a = sc->pos;
				rpc_value(sc, 0);
				b = sc->pos;
				if (b - a < sizeof(num))
				{
					memcpy(num, sc->s + a, b - a);
					num[b - a] = '\0';
					errno = 0;
					v = strtol(num, &endp, 10);
					if (errno == 0 && *endp == '\0' && v >= INT_MIN && v <= INT_MAX)
						reply->error_code = (int) v;
				}
			}
			else
				rpc_value(sc, 0);
			if (rpc_peek(sc, ','))
			{
				sc->pos++;
				continue;
			}
			break;
		}
	}
	rpc_expect(sc, '}');
	if (reply->error_message == NULL)
		reply->error_message = pstrdup("");
}

static void
rpc_envelope(RpcScan *sc, RpcReply *reply)
{
	bool		have_result = false;
	bool		have_error = false;

	memset(reply, 0, sizeof(RpcReply));
	reply->id = -1;
	rpc_expect(sc, '{');
	if (!rpc_peek(sc, '}'))
	{
		for (;;)
		{
			size_t		ka;
			size_t		kb;

			rpc_string(sc, &ka, &kb);
			rpc_expect(sc, ':');
			rpc_ws(sc);
			if (rpc_key_is(sc, ka, kb, "id"))
				reply->id = rpc_id(sc);
			else if (rpc_key_is(sc, ka, kb, "result"))
			{
				size_t		a = sc->pos;

				rpc_value(sc, 0);
				reply->result = sc->s + a;
				reply->result_len = sc->pos - a;
				reply->result_is_null = (reply->result_len == 4 &&
										 memcmp(reply->result, "null", 4) == 0);
				have_result = true;
			}
			else if (rpc_key_is(sc, ka, kb, "error"))
			{
				if (sc->len - sc->pos >= 4 &&
					memcmp(sc->s + sc->pos, "null", 4) == 0)
					rpc_value(sc, 0);
				else
				{
					rpc_error_object(sc, reply);
					have_error = true;
				}
			}
			else
				rpc_value(sc, 0);
			if (rpc_peek(sc, ','))
			{
				sc->pos++;
				continue;
			}
			break;
		}
	}
	rpc_expect(sc, '}');

	if (have_error)
	{
		reply->is_error = true;
		reply->result = NULL;
		reply->result_len = 0;
		reply->result_is_null = false;
	}
	else if (!have_result)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("JSON-RPC response has neither result nor error")));
}

/*
 * eth_split_rpc_response
 *
 * The result extent is the JSON text of the value (quotes included for a
 * string).
 */
int
eth_split_rpc_response(const char *body, size_t len, RpcReply **replies)
{
	RpcScan		sc;
	RpcReply   *out;
	int			n = 0;
	int			cap;

	sc.s = body;
	sc.len = len;
	sc.pos = 0;
	*replies = NULL;

	if (rpc_peek(&sc, '['))
	{
		sc.pos++;
		cap = 16;
		out = (RpcReply *) palloc(cap * sizeof(RpcReply));
		if (!rpc_peek(&sc, ']'))
		{
			for (;;)
			{
				if (n == cap)
				{
					cap *= 2;
					out = (RpcReply *) repalloc_huge(out, cap * sizeof(RpcReply));
				}
				rpc_envelope(&sc, &out[n++]);
				if (rpc_peek(&sc, ','))
				{
					sc.pos++;
					continue;
				}
				break;
			}
		}
		rpc_expect(&sc, ']');
	}
	else
	{
		out = (RpcReply *) palloc(sizeof(RpcReply));
		rpc_envelope(&sc, &out[0]);
		n = 1;
	}
	rpc_ws(&sc);
	if (sc.pos != sc.len)
		rpc_malformed(&sc);
	*replies = out;
	return n;
}

const RpcReply *
eth_find_reply(const RpcReply *replies, int nreplies, int64 id)
{
	for (int i = 0; i < nreplies; i++)
		if (replies[i].id == id)
			return &replies[i];
	if (nreplies == 1 && replies[0].is_error && replies[0].id == -1)
		return &replies[0];
	return NULL;
}

/* ----------------------------------------------------------------
 * Hex helpers
 * ----------------------------------------------------------------
 */

/*
 * eth_parse_quantity_int64
 *
 * Also accepts the value with its JSON quotes, as RpcReply.result gives it.
 */
bool
eth_parse_quantity_int64(const char *s, size_t len, int64 *result)
{
	uint64		v = 0;
	size_t		i;

	if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
	{
		s++;
		len -= 2;
	}
	if (len < 3 || len > 18 || s[0] != '0' || s[1] != 'x')
		return false;
	if (s[2] == '0' && len != 3)
		return false;
	for (i = 2; i < len; i++)
	{
		int			d = hexval((unsigned char) s[i]);

		if (d < 0)
			return false;
		v = (v << 4) | (uint64) d;
	}
	if (v > (uint64) PG_INT64_MAX)
		return false;
	*result = (int64) v;
	return true;
}

/*
 * eth_printable
 *
 * Text a node sent, made fit for status, logs and error messages: printable
 * ASCII as it is, newline, tab and carriage return as \n, \t, \r, a
 * backslash doubled, any other byte (control characters, non-ASCII, bytes
 * that are not valid in any encoding) as \xNN; cut at about "max" bytes of
 * output with "...".  ASCII is valid in every server encoding, and no line
 * of the log can be forged.
 */
char *
eth_printable(const char *s, size_t len, size_t max)
{
	StringInfoData out;

	initStringInfo(&out);
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (out.len >= (int) max)
		{
			appendStringInfoString(&out, "...");
			break;
		}
		if (c == '\\')
			appendStringInfoString(&out, "\\\\");
		else if (c >= 0x20 && c < 0x7f)
			appendStringInfoChar(&out, (char) c);
		else if (c == '\n')
			appendStringInfoString(&out, "\\n");
		else if (c == '\t')
			appendStringInfoString(&out, "\\t");
		else if (c == '\r')
			appendStringInfoString(&out, "\\r");
		else
			appendStringInfo(&out, "\\x%02x", c);
	}
	return out.data;
}

/*
 * eth_parse_hash
 *
 * A 32-byte hash, "0x" and 64 hex digits (with or without its JSON quotes),
 * into hash[32].  Returns false if malformed.
 */
bool
eth_parse_hash(const char *s, size_t len, uint8 *hash)
{
	if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
	{
		s++;
		len -= 2;
	}
	if (len != 66 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return false;
	for (int i = 0; i < 32; i++)
	{
		int			hi = hexval((unsigned char) s[2 + 2 * i]);
		int			lo = hexval((unsigned char) s[3 + 2 * i]);

		if (hi < 0 || lo < 0)
			return false;
		hash[i] = (uint8) ((hi << 4) | lo);
	}
	return true;
}

char *
eth_bytes_to_hex(const uint8 *bytes, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char	   *out = palloc(2 * len + 3);
	size_t		i;

	out[0] = '0';
	out[1] = 'x';
	for (i = 0; i < len; i++)
	{
		out[2 + 2 * i] = digits[bytes[i] >> 4];
		out[3 + 2 * i] = digits[bytes[i] & 0xf];
	}
	out[2 + 2 * len] = '\0';
	return out;
}
