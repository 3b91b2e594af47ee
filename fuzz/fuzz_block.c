/*-------------------------------------------------------------------------
 *
 * fuzz_block.c
 *	  libFuzzer harness for eth_decode_block(): a block (the result of
 *	  eth_getBlockByNumber(n, true)) and its receipts (the result of
 *	  eth_getBlockReceipts(n)).
 *
 *	  Input: the block JSON, a NUL byte, the receipts JSON (no NUL: the
 *	  whole input is the block and the receipts are "[]").  Each part is
 *	  copied into a buffer of exactly its length, as the decoder never may
 *	  read past a document.  The expected block number is the block's own
 *	  "number" when the text has one, so that decoding gets past that check.
 *
 *	  Oracles, besides the sanitizers and the stubs of pgstubs.c:
 *	  - an ERROR carries one of the documented codes and printable text;
 *	  - a decoded block is well formed: row counts, every NOT NULL column
 *		set, every value of its column's type (fixed-length bytea of the
 *		right length, numeric, jsonb, bytea[]), transactions and logs
 *		pointing at their block and transaction, log indexes increasing;
 *	  - it survives the queue: blockrec_write() then blockrec_read() give
 *		the same values;
 *	  - jansson agrees on the grammar: what the decoder accepts is JSON,
 *		and JSON it calls malformed is not (below its depth limit);
 *	  - decoded values round-trip: where keys are plain and unique, every
 *		column equals a reference reading of jansson's value of its field
 *		(quantities, numeric digits, timestamps, bytes, jsonb, bytea[]),
 *		absent or null fields leave NULL, the counts of transactions,
 *		receipts, logs and withdrawals agree, and every cross-check the
 *		decoder makes holds for what it accepted.
 *	  On an ERROR the DecodedBlock is not looked at: the callers (fetcher.c,
 *	  decode_sql.c) never use it after one.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  fuzz/fuzz_block.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "utils/array.h"
#include "utils/timestamp.h"

#include "blockrec.h"
#include "decode.h"
#include "pgshim.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

/* FUZZ_EXPECT_DECODED set: every input must decode (run.sh checks the
 * fixtures so, which also shows that the seeds get past the checks) */
static bool expect_decoded = false;

static const int decode_errors[] = {
	ERRCODE_INVALID_TEXT_REPRESENTATION,
	ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
	ERRCODE_DATA_EXCEPTION,
	ERRCODE_PROGRAM_LIMIT_EXCEEDED, /* more rows than ETH_MAX_BLOCK_* */
	ERRCODE_UNTRANSLATABLE_CHARACTER,	/* the backend's jsonb_in on \u0000 */
	ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,	/* accessList etc. not UTF-8 */
	0
};

#define CHAIN_ID	1

/*
 * Per column: 0 nothing to check beyond the type, -1 bytea of any length,
 * n > 0 bytea of n bytes or bytea[] of n-byte elements.
 */
static const int16 block_len[BLK_NATTS] = {
	[BLK_HASH] = 32,[BLK_PARENT_HASH] = 32,[BLK_NONCE] = 8,
	[BLK_SHA3_UNCLES] = 32,[BLK_LOGS_BLOOM] = 256,[BLK_TRANSACTIONS_ROOT] = 32,
	[BLK_STATE_ROOT] = 32,[BLK_RECEIPTS_ROOT] = 32,[BLK_MINER] = 20,
	[BLK_EXTRA_DATA] = -1,[BLK_MIX_HASH] = 32,[BLK_WITHDRAWALS_ROOT] = 32,
	[BLK_PARENT_BEACON_BLOCK_ROOT] = 32,[BLK_REQUESTS_HASH] = 32,[BLK_UNCLES] = 32,
};
static const int16 tx_len[TX_NATTS] = {
	[TX_HASH] = 32,[TX_BLOCK_HASH] = 32,[TX_FROM_ADDRESS] = 20,[TX_TO_ADDRESS] = 20,
	[TX_INPUT] = -1,[TX_BLOB_VERSIONED_HASHES] = 32,[TX_CONTRACT_ADDRESS] = 20,
	[TX_ROOT] = 32,[TX_LOGS_BLOOM] = 256,
};
static const int16 log_len[LOG_NATTS] = {
	[LOG_TRANSACTION_HASH] = 32,[LOG_BLOCK_HASH] = 32,[LOG_ADDRESS] = 20,
	[LOG_TOPIC0] = 32,[LOG_TOPIC1] = 32,[LOG_TOPIC2] = 32,[LOG_TOPIC3] = 32,
	[LOG_DATA] = -1,
};
static const int16 wd_len[WD_NATTS] = {
	[WD_ADDRESS] = 20,
};
static const int16 *const col_len[ETH_NUM_TABLES] = {block_len, tx_len, log_len, wd_len};

/* NOT NULL columns, as in sql/ethindex--0.2.sql (and 0.1) */
static const bool block_notnull[BLK_NATTS] = {
	[BLK_CHAIN_ID] = true,[BLK_NUMBER] = true,[BLK_HASH] = true,
	[BLK_PARENT_HASH] = true,[BLK_GAS_LIMIT] = true,[BLK_GAS_USED] = true,
	[BLK_TIMESTAMP] = true,[BLK_UNCLES] = true,[BLK_TRANSACTION_COUNT] = true,
};
static const bool tx_notnull[TX_NATTS] = {
	[TX_CHAIN_ID] = true,[TX_BLOCK_NUMBER] = true,[TX_TRANSACTION_INDEX] = true,
	[TX_HASH] = true,[TX_BLOCK_HASH] = true,[TX_BLOCK_TIMESTAMP] = true,
	[TX_TYPE] = true,[TX_FROM_ADDRESS] = true,[TX_NONCE] = true,[TX_VALUE] = true,
	[TX_GAS] = true,[TX_INPUT] = true,[TX_CUMULATIVE_GAS_USED] = true,
	[TX_GAS_USED] = true,[TX_LOGS_BLOOM] = true,[TX_LOG_COUNT] = true,
};
static const bool log_notnull[LOG_NATTS] = {
	[LOG_CHAIN_ID] = true,[LOG_BLOCK_NUMBER] = true,[LOG_LOG_INDEX] = true,
	[LOG_TRANSACTION_INDEX] = true,[LOG_TRANSACTION_HASH] = true,
	[LOG_BLOCK_HASH] = true,[LOG_BLOCK_TIMESTAMP] = true,[LOG_ADDRESS] = true,
	[LOG_DATA] = true,[LOG_REMOVED] = true,
};
static const bool wd_notnull[WD_NATTS] = {
	[WD_CHAIN_ID] = true,[WD_BLOCK_NUMBER] = true,[WD_INDEX] = true,
	[WD_VALIDATOR_INDEX] = true,[WD_ADDRESS] = true,[WD_AMOUNT] = true,
};
static const bool *const col_notnull[ETH_NUM_TABLES] = {
	block_notnull, tx_notnull, log_notnull, wd_notnull
};

/* The value of "number" in the text, or 0 (a cheap scan, not a parse) */
static int64
guess_number(const char *js, size_t len)
{
	static const char key[] = "\"number\"";
	const char *end = js + len;
	const char *p = js;
	int64		number = 0;

	while ((p = memmem(p, end - p, key, sizeof(key) - 1)) != NULL)
	{
		const char *q = p + sizeof(key) - 1;
		const char *v;

		p = q;
		while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t'))
			q++;
		if (q >= end || *q != ':')
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t'))
			q++;
		if (q >= end || *q != '"')
			continue;
		v = q + 1;
		q = memchr(v, '"', end - v);
		if (q != NULL && eth_parse_quantity_int64(v, q - v, &number))
			return number;
	}
	return 0;
}

static const uint8 *
bytea_data(const DecodedRows *rows, int row, int col)
{
	return (const uint8 *) VARDATA(DatumGetPointer(rows->values[(Size) row * rows->natts + col]));
}

#define VALUE(rows, row, col)	((rows)->values[(Size) (row) * (rows)->natts + (col)])
#define ISNULL(rows, row, col)	((rows)->nulls[(Size) (row) * (rows)->natts + (col)])

/* One decoded value against its column */
static void
check_value(int t, int row, int col, Datum d)
{
	const char *table = eth_tables[t].name;
	const char *column = eth_tables[t].columns[col].name;
	int			len = col_len[t][col];

	switch (eth_tables[t].columns[col].typid)
	{
		case BYTEAOID:
			if (!pgshim_is_bytea(d, len == 0 ? -1 : len))
				pgshim_fail("%s row %d column %s: not a bytea of length %d", table, row, column, len);
			break;
		case BYTEAARRAYOID:
			if (!pgshim_is_bytea_array(d, len == 0 ? -1 : len))
				pgshim_fail("%s row %d column %s: not a bytea[] of %d-byte elements", table, row, column, len);
			break;
		case NUMERICOID:
			if (!pgshim_is_numeric(d, NULL, 0))
				pgshim_fail("%s row %d column %s: not a numeric(78,0)", table, row, column);
			break;
		case JSONBOID:
			if (!pgshim_is_jsonb(d))
				pgshim_fail("%s row %d column %s: not a jsonb", table, row, column);
			break;
		case INT8OID:
			if (DatumGetInt64(d) < 0)
				pgshim_fail("%s row %d column %s: negative " INT64_FORMAT, table, row, column, DatumGetInt64(d));
			break;
		case INT4OID:
			if (DatumGetInt32(d) < 0)
				pgshim_fail("%s row %d column %s: negative %d", table, row, column, DatumGetInt32(d));
			break;
		case INT2OID:
			if (DatumGetInt16(d) < 0)
				pgshim_fail("%s row %d column %s: negative %d", table, row, column, DatumGetInt16(d));
			break;
		case TIMESTAMPTZOID:
			{
				TimestampTz ts = DatumGetTimestampTz(d);

				/* unix seconds >= 0, in the backend's range */
				if (!IS_VALID_TIMESTAMP(ts) ||
					ts < -(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)
					pgshim_fail("%s row %d column %s: timestamp " INT64_FORMAT " out of range",
								table, row, column, ts);
			}
			break;
		case BOOLOID:
			if (DatumGetBool(d))
				pgshim_fail("%s row %d column %s: a removed log was kept", table, row, column);
			break;
		default:
			pgshim_fail("%s column %s: type %u unknown to the harness", table, column,
						eth_tables[t].columns[col].typid);
	}
}

static void
check_decoded(const DecodedBlock *out, int64 number)
{
	const DecodedRows *blk = &out->tables[ETH_TABLE_BLOCKS];
	const DecodedRows *txs = &out->tables[ETH_TABLE_TRANSACTIONS];
	const DecodedRows *logs = &out->tables[ETH_TABLE_LOGS];
	const DecodedRows *wds = &out->tables[ETH_TABLE_WITHDRAWALS];
	int			log_sum = 0;
	int			prev_index = -1;

	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		const DecodedRows *rows = &out->tables[t];

		if (rows->natts != eth_tables[t].natts || rows->nrows < 0)
			pgshim_fail("table %s: %d columns, %d rows", eth_tables[t].name,
						rows->natts, rows->nrows);
		for (int r = 0; r < rows->nrows; r++)
			for (int c = 0; c < rows->natts; c++)
			{
				if (ISNULL(rows, r, c))
				{
					if (col_notnull[t][c])
						pgshim_fail("table %s row %d: NULL in NOT NULL column %s",
									eth_tables[t].name, r, eth_tables[t].columns[c].name);
					continue;
				}
				check_value(t, r, c, VALUE(rows, r, c));
			}
	}

	if (blk->nrows != 1 || out->number != number ||
		DatumGetInt64(VALUE(blk, 0, BLK_NUMBER)) != number ||
		DatumGetInt64(VALUE(blk, 0, BLK_CHAIN_ID)) != CHAIN_ID)
		pgshim_fail("block row: number or chain id wrong");
	if (memcmp(out->hash, bytea_data(blk, 0, BLK_HASH), 32) != 0 ||
		memcmp(out->parent_hash, bytea_data(blk, 0, BLK_PARENT_HASH), 32) != 0)
		pgshim_fail("DecodedBlock hash or parent_hash differ from the block row");
	if (txs->nrows != out->transaction_count || logs->nrows != out->log_count ||
		DatumGetInt32(VALUE(blk, 0, BLK_TRANSACTION_COUNT)) != txs->nrows)
		pgshim_fail("transaction or log counts disagree");
	if (!ISNULL(blk, 0, BLK_WITHDRAWAL_COUNT) &&
		DatumGetInt32(VALUE(blk, 0, BLK_WITHDRAWAL_COUNT)) != wds->nrows)
		pgshim_fail("withdrawal_count %d, %d withdrawal rows",
					DatumGetInt32(VALUE(blk, 0, BLK_WITHDRAWAL_COUNT)), wds->nrows);

	for (int r = 0; r < txs->nrows; r++)
	{
		if (DatumGetInt64(VALUE(txs, r, TX_BLOCK_NUMBER)) != number ||
			DatumGetInt32(VALUE(txs, r, TX_TRANSACTION_INDEX)) != r ||
			memcmp(bytea_data(txs, r, TX_BLOCK_HASH), out->hash, 32) != 0 ||
			VALUE(txs, r, TX_BLOCK_TIMESTAMP) != VALUE(blk, 0, BLK_TIMESTAMP))
			pgshim_fail("transaction %d does not point at its block", r);
		log_sum += DatumGetInt32(VALUE(txs, r, TX_LOG_COUNT));
	}
	if (log_sum != logs->nrows)
		pgshim_fail("log_count of the transactions sums to %d, %d log rows", log_sum, logs->nrows);

	for (int r = 0; r < logs->nrows; r++)
	{
		int			ti = DatumGetInt32(VALUE(logs, r, LOG_TRANSACTION_INDEX));
		int			li = DatumGetInt32(VALUE(logs, r, LOG_LOG_INDEX));

		if (ti < 0 || ti >= txs->nrows ||
			memcmp(bytea_data(logs, r, LOG_TRANSACTION_HASH), bytea_data(txs, ti, TX_HASH), 32) != 0 ||
			memcmp(bytea_data(logs, r, LOG_BLOCK_HASH), out->hash, 32) != 0 ||
			DatumGetInt64(VALUE(logs, r, LOG_BLOCK_NUMBER)) != number ||
			VALUE(logs, r, LOG_BLOCK_TIMESTAMP) != VALUE(blk, 0, BLK_TIMESTAMP))
			pgshim_fail("log %d does not point at its transaction and block", r);
		if (li <= prev_index)
			pgshim_fail("log %d: logIndex %d after %d", r, li, prev_index);
		prev_index = li;
		/* topics are filled from topic0 on */
		for (int k = LOG_TOPIC1; k <= LOG_TOPIC3; k++)
			if (!ISNULL(logs, r, k) && ISNULL(logs, r, k - 1))
				pgshim_fail("log %d: a topic after a missing one", r);
	}
	for (int r = 0; r < wds->nrows; r++)
		if (DatumGetInt64(VALUE(wds, r, WD_BLOCK_NUMBER)) != number)
			pgshim_fail("withdrawal %d does not point at its block", r);
}

/* What the insert worker gets out of the queue must be what was decoded */
static void
check_roundtrip(const DecodedBlock *out)
{
	Size		size = blockrec_size(out);
	char	   *rec = palloc(size);
	DecodedBlock back;
	uint8		flags;

	blockrec_write(out, 0x5a, rec, size);
	blockrec_read(rec, size, &back, &flags);
	if (flags != 0x5a || back.number != out->number ||
		memcmp(back.hash, out->hash, 32) != 0 ||
		memcmp(back.parent_hash, out->parent_hash, 32) != 0 ||
		back.transaction_count != out->transaction_count ||
		back.log_count != out->log_count)
		pgshim_fail("block record header differs after the queue");
	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		const DecodedRows *a = &out->tables[t];
		const DecodedRows *b = &back.tables[t];

		if (a->nrows != b->nrows || a->natts != b->natts)
			pgshim_fail("table %s: shape differs after the queue", eth_tables[t].name);
		for (Size i = 0; i < (Size) a->nrows * a->natts; i++)
		{
			if (a->nulls[i] != b->nulls[i])
				pgshim_fail("table %s: null flag %zu differs after the queue", eth_tables[t].name, i);
			if (a->nulls[i])
				continue;
			if (eth_type_byval(eth_tables[t].columns[i % a->natts].typid))
			{
				if (a->values[i] != b->values[i])
					pgshim_fail("table %s: value %zu differs after the queue", eth_tables[t].name, i);
			}
			else
			{
				Size		la = VARSIZE_ANY(DatumGetPointer(a->values[i]));

				if (la != VARSIZE_ANY(DatumGetPointer(b->values[i])) ||
					memcmp(DatumGetPointer(a->values[i]), DatumGetPointer(b->values[i]), la) != 0)
					pgshim_fail("table %s: value %zu differs after the queue", eth_tables[t].name, i);
			}
		}
	}
}

/* ----------------------------------------------------------------
 * Comparison with jansson
 *
 * Where the text is plain (no \u escapes, no bytes >= 0x80) and has no
 * duplicate keys, jansson's reading of it is a reference: every field the
 * decoder knows is read again here, by tables written from the JSON-RPC
 * specification rather than copied from decode.c, and each column must hold
 * exactly what the field says (quantities as integers, numeric digits and
 * timestamps, DATA as bytes, arrays as jsonb or bytea[]); an absent or null
 * optional field must leave its column NULL; and every cross-check the
 * decoder makes (block number and hash, transaction hash, index and type,
 * blockTimestamp, status) must hold for what it accepted.
 * ----------------------------------------------------------------
 */

/* The decoder compares keys as they are written: escapes and bytes that
 * jansson's view (pgshim_json_parse) rewrites make keys incomparable. */
static bool
plain_text(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0x80 || (s[i] == '\\' && i + 1 < len && s[i + 1] == 'u'))
			return false;
	return true;
}

typedef enum RefKind
{
	R_QUANTITY,					/* QUANTITY into an integer column */
	R_NUMERIC,					/* QUANTITY into numeric(78,0) */
	R_BYTES,					/* DATA into bytea */
	R_TIME,						/* QUANTITY of unix seconds into timestamptz */
	R_JSONB,					/* an array into jsonb */
	R_HASHES,					/* an array of DATA into bytea[] */
	R_NONE						/* no column of its own: only checked */
} RefKind;

typedef enum RefCheck
{
	K_NONE,
	K_NUMBER,					/* the block's number */
	K_BLOCK_HASH,				/* the block's hash */
	K_TIMESTAMP,				/* the block's timestamp (QUANTITY or integer) */
	K_TX_HASH,					/* the transaction's hash */
	K_TX_INDEX,					/* the transaction's position */
	K_TX_TYPE,					/* the transaction's type */
	K_STATUS					/* 0 or 1 */
} RefCheck;

typedef struct RefField
{
	const char *name;
	RefKind		kind;
	int			column;			/* -1: none */
	RefCheck	check;
} RefField;

static const RefField ref_block[] = {
	{"number", R_QUANTITY, BLK_NUMBER, K_NUMBER},
	{"hash", R_BYTES, BLK_HASH, K_NONE},
	{"parentHash", R_BYTES, BLK_PARENT_HASH, K_NONE},
	{"nonce", R_BYTES, BLK_NONCE, K_NONE},
	{"sha3Uncles", R_BYTES, BLK_SHA3_UNCLES, K_NONE},
	{"logsBloom", R_BYTES, BLK_LOGS_BLOOM, K_NONE},
	{"transactionsRoot", R_BYTES, BLK_TRANSACTIONS_ROOT, K_NONE},
	{"stateRoot", R_BYTES, BLK_STATE_ROOT, K_NONE},
	{"receiptsRoot", R_BYTES, BLK_RECEIPTS_ROOT, K_NONE},
	{"miner", R_BYTES, BLK_MINER, K_NONE},
	{"difficulty", R_NUMERIC, BLK_DIFFICULTY, K_NONE},
	{"totalDifficulty", R_NUMERIC, BLK_TOTAL_DIFFICULTY, K_NONE},
	{"extraData", R_BYTES, BLK_EXTRA_DATA, K_NONE},
	{"size", R_QUANTITY, BLK_SIZE, K_NONE},
	{"gasLimit", R_QUANTITY, BLK_GAS_LIMIT, K_NONE},
	{"gasUsed", R_QUANTITY, BLK_GAS_USED, K_NONE},
	{"timestamp", R_TIME, BLK_TIMESTAMP, K_NONE},
	{"mixHash", R_BYTES, BLK_MIX_HASH, K_NONE},
	{"baseFeePerGas", R_NUMERIC, BLK_BASE_FEE_PER_GAS, K_NONE},
	{"withdrawalsRoot", R_BYTES, BLK_WITHDRAWALS_ROOT, K_NONE},
	{"blobGasUsed", R_QUANTITY, BLK_BLOB_GAS_USED, K_NONE},
	{"excessBlobGas", R_QUANTITY, BLK_EXCESS_BLOB_GAS, K_NONE},
	{"parentBeaconBlockRoot", R_BYTES, BLK_PARENT_BEACON_BLOCK_ROOT, K_NONE},
	{"requestsHash", R_BYTES, BLK_REQUESTS_HASH, K_NONE},
	{"uncles", R_HASHES, BLK_UNCLES, K_NONE},
};

static const RefField ref_tx[] = {
	{"hash", R_BYTES, TX_HASH, K_NONE},
	{"blockHash", R_NONE, -1, K_BLOCK_HASH},
	{"blockNumber", R_NONE, -1, K_NUMBER},
	{"transactionIndex", R_NONE, -1, K_TX_INDEX},
	{"blockTimestamp", R_NONE, -1, K_TIMESTAMP},
	{"type", R_QUANTITY, TX_TYPE, K_NONE},
	{"from", R_BYTES, TX_FROM_ADDRESS, K_NONE},
	{"to", R_BYTES, TX_TO_ADDRESS, K_NONE},
	{"nonce", R_QUANTITY, TX_NONCE, K_NONE},
	{"value", R_NUMERIC, TX_VALUE, K_NONE},
	{"gas", R_QUANTITY, TX_GAS, K_NONE},
	{"gasPrice", R_NUMERIC, TX_GAS_PRICE, K_NONE},
	{"maxFeePerGas", R_NUMERIC, TX_MAX_FEE_PER_GAS, K_NONE},
	{"maxPriorityFeePerGas", R_NUMERIC, TX_MAX_PRIORITY_FEE_PER_GAS, K_NONE},
	{"maxFeePerBlobGas", R_NUMERIC, TX_MAX_FEE_PER_BLOB_GAS, K_NONE},
	{"chainId", R_QUANTITY, TX_TX_CHAIN_ID, K_NONE},
	{"accessList", R_JSONB, TX_ACCESS_LIST, K_NONE},
	{"blobVersionedHashes", R_HASHES, TX_BLOB_VERSIONED_HASHES, K_NONE},
	{"authorizationList", R_JSONB, TX_AUTHORIZATION_LIST, K_NONE},
	{"v", R_NUMERIC, TX_V, K_NONE},
	{"r", R_NUMERIC, TX_R, K_NONE},
	{"s", R_NUMERIC, TX_S, K_NONE},
	{"yParity", R_QUANTITY, TX_Y_PARITY, K_NONE},
	/* "input" (or "data" without it): below */
};

static const RefField ref_receipt[] = {
	{"transactionHash", R_NONE, -1, K_TX_HASH},
	{"transactionIndex", R_NONE, -1, K_TX_INDEX},
	{"blockHash", R_NONE, -1, K_BLOCK_HASH},
	{"blockNumber", R_NONE, -1, K_NUMBER},
	{"blockTimestamp", R_NONE, -1, K_TIMESTAMP},
	{"type", R_NONE, -1, K_TX_TYPE},
	{"cumulativeGasUsed", R_QUANTITY, TX_CUMULATIVE_GAS_USED, K_NONE},
	{"gasUsed", R_QUANTITY, TX_GAS_USED, K_NONE},
	{"effectiveGasPrice", R_NUMERIC, TX_EFFECTIVE_GAS_PRICE, K_NONE},
	{"contractAddress", R_BYTES, TX_CONTRACT_ADDRESS, K_NONE},
	{"status", R_QUANTITY, TX_STATUS, K_STATUS},
	{"root", R_BYTES, TX_ROOT, K_NONE},
	{"logsBloom", R_BYTES, TX_LOGS_BLOOM, K_NONE},
	{"blobGasUsed", R_QUANTITY, TX_BLOB_GAS_USED, K_NONE},
	{"blobGasPrice", R_NUMERIC, TX_BLOB_GAS_PRICE, K_NONE},
};

static const RefField ref_log[] = {
	{"address", R_BYTES, LOG_ADDRESS, K_NONE},
	{"data", R_BYTES, LOG_DATA, K_NONE},
	{"logIndex", R_QUANTITY, LOG_LOG_INDEX, K_NONE},
	{"blockNumber", R_NONE, -1, K_NUMBER},
	{"blockHash", R_NONE, -1, K_BLOCK_HASH},
	{"transactionHash", R_NONE, -1, K_TX_HASH},
	{"transactionIndex", R_NONE, -1, K_TX_INDEX},
	{"blockTimestamp", R_NONE, -1, K_TIMESTAMP},
	/* "topics" and "removed": below */
};

static const RefField ref_withdrawal[] = {
	{"index", R_QUANTITY, WD_INDEX, K_NONE},
	{"validatorIndex", R_QUANTITY, WD_VALIDATOR_INDEX, K_NONE},
	{"address", R_BYTES, WD_ADDRESS, K_NONE},
	{"amount", R_NUMERIC, WD_AMOUNT, K_NONE},
};

/* What the cross-checks compare with, and where the reference is */
typedef struct RefCtx
{
	const DecodedBlock *out;
	int64		number;
	TimestampTz timestamp;
	const uint8 *tx_hash;
	int			tx_index;
	int			tx_type;
	const char *object;			/* "transaction", ... for messages */
	int			index;
} RefCtx;

/* unix seconds to the backend's timestamptz */
#define UNIX_TO_PG_USECS(secs) \
	(((secs) - (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY) * USECS_PER_SEC)

static bool
hex_is(const char *hex, const uint8 *bytes, int n)
{
	static const char digits[] = "0123456789abcdef";

	if (hex == NULL || strlen(hex) != (size_t) (2 + 2 * n) || hex[0] != '0' || hex[1] != 'x')
		return false;
	for (int i = 0; i < n; i++)
	{
		if (tolower((unsigned char) hex[2 + 2 * i]) != digits[bytes[i] >> 4] ||
			tolower((unsigned char) hex[3 + 2 * i]) != digits[bytes[i] & 0xf])
			return false;
	}
	return true;
}

static bool
bytea_is(json_t *v, Datum d)
{
	const struct varlena *b = (const struct varlena *) DatumGetPointer(d);

	return hex_is(json_string_value(v), (const uint8 *) VARDATA(b),
				  (int) (VARSIZE(b) - VARHDRSZ));
}

/*
 * A QUANTITY as the specification has it: "0x" and 1 to 64 hex digits
 * without leading zeros ("0x0" for zero).  dec gets the value in decimal;
 * *v the value and *fits true when it has at most 16 digits.
 */
static bool
ref_quantity(json_t *j, char *dec, size_t decsize, uint64 *v, bool *fits)
{
	const char *s = json_string_value(j);
	size_t		n;
	uint8		d[80];			/* decimal digits, least significant first */
	int			nd = 1;

	if (s == NULL)
		return false;
	n = json_string_length(j);
	if (n < 3 || n > 66 || s[0] != '0' || s[1] != 'x' || (s[2] == '0' && n > 3))
		return false;
	d[0] = 0;
	*v = 0;
	for (size_t i = 2; i < n; i++)
	{
		int			h = isdigit((unsigned char) s[i]) ? s[i] - '0' :
		(s[i] >= 'a' && s[i] <= 'f') ? s[i] - 'a' + 10 :
		(s[i] >= 'A' && s[i] <= 'F') ? s[i] - 'A' + 10 : -1;
		int			carry;

		if (h < 0)
			return false;
		*v = (*v << 4) | (uint64) h;
		carry = h;
		for (int k = 0; k < nd; k++)
		{
			int			x = d[k] * 16 + carry;

			d[k] = (uint8) (x % 10);
			carry = x / 10;
		}
		while (carry > 0)
		{
			d[nd++] = (uint8) (carry % 10);
			carry /= 10;
		}
	}
	*fits = n - 2 <= 16;
	if ((size_t) nd + 1 > decsize)
		return false;
	for (int k = 0; k < nd; k++)
		dec[k] = (char) ('0' + d[nd - 1 - k]);
	dec[nd] = '\0';
	return true;
}

static void ref_fail(const RefCtx *cx, const RefField *f, const char *what) pg_attribute_noreturn();

static void
ref_fail(const RefCtx *cx, const RefField *f, const char *what)
{
	pgshim_fail("%s %d, field \"%s\": %s", cx->object, cx->index, f->name, what);
}

/* The unix seconds of a QUANTITY, or of a JSON integer if allowed */
static bool
ref_seconds(json_t *v, bool allow_integer, int64 *secs)
{
	char		dec[96];
	uint64		q;
	bool		fits;

	if (allow_integer && json_is_integer(v))
	{
		*secs = json_integer_value(v);
		return *secs >= 0;
	}
	if (!ref_quantity(v, dec, sizeof(dec), &q, &fits) || !fits || q > (uint64) PG_INT64_MAX)
		return false;
	*secs = (int64) q;
	return true;
}

/* A cross-check the decoder made: what it accepted must pass it */
static void
ref_check(const RefCtx *cx, const RefField *f, json_t *v)
{
	char		dec[96];
	uint64		q = 0;
	bool		fits = false;
	int64		secs;

	switch (f->check)
	{
		case K_NONE:
			return;
		case K_BLOCK_HASH:
			if (!hex_is(json_string_value(v), cx->out->hash, 32))
				ref_fail(cx, f, "accepted, but not the block's hash");
			return;
		case K_TX_HASH:
			if (!hex_is(json_string_value(v), cx->tx_hash, 32))
				ref_fail(cx, f, "accepted, but not the transaction's hash");
			return;
		case K_TIMESTAMP:
			if (!ref_seconds(v, true, &secs) || UNIX_TO_PG_USECS(secs) != cx->timestamp)
				ref_fail(cx, f, "accepted, but not the block's timestamp");
			return;
		default:
			break;
	}
	if (!ref_quantity(v, dec, sizeof(dec), &q, &fits) || !fits)
		ref_fail(cx, f, "accepted, but not a 64-bit QUANTITY");
	if ((f->check == K_NUMBER && q != (uint64) cx->number) ||
		(f->check == K_TX_INDEX && q != (uint64) cx->tx_index) ||
		(f->check == K_TX_TYPE && q != (uint64) cx->tx_type) ||
		(f->check == K_STATUS && q > 1))
		ref_fail(cx, f, "accepted, but it does not match");
}

/* The element k of a one-dimensional bytea[] (checked well formed before) */
static Datum
array_element(Datum array, int k)
{
	ArrayType  *a = (ArrayType *) DatumGetPointer(array);
	char	   *p = ARR_DATA_PTR(a);

	while (k-- > 0)
		p += INTALIGN(VARSIZE(p));
	return PointerGetDatum(p);
}

/* A column's value against the field's value */
static void
ref_value(const RefCtx *cx, const RefField *f, json_t *v, int t, Datum d)
{
	char		dec[96];
	char		digits[96] = "";
	uint64		q = 0;
	bool		fits = false;
	int64		secs;

	switch (f->kind)
	{
		case R_QUANTITY:
			if (!ref_quantity(v, dec, sizeof(dec), &q, &fits) || !fits)
				ref_fail(cx, f, "decoded, but not a 64-bit QUANTITY");
			switch (eth_tables[t].columns[f->column].typid)
			{
				case INT8OID:
					if ((uint64) DatumGetInt64(d) != q)
						ref_fail(cx, f, "bigint differs from the QUANTITY");
					break;
				case INT4OID:
					if ((uint64) (int64) DatumGetInt32(d) != q)
						ref_fail(cx, f, "integer differs from the QUANTITY");
					break;
				case INT2OID:
					if ((uint64) (int64) DatumGetInt16(d) != q)
						ref_fail(cx, f, "smallint differs from the QUANTITY");
					break;
				default:
					ref_fail(cx, f, "column is not an integer");
			}
			break;
		case R_NUMERIC:
			if (!ref_quantity(v, dec, sizeof(dec), &q, &fits))
				ref_fail(cx, f, "decoded, but not a QUANTITY");
			if (!pgshim_is_numeric(d, digits, sizeof(digits)) || strcmp(digits, dec) != 0)
				ref_fail(cx, f, psprintf("numeric %s, the QUANTITY is %s", digits, dec));
			break;
		case R_BYTES:
			if (!bytea_is(v, d))
				ref_fail(cx, f, "bytea differs from the DATA");
			break;
		case R_TIME:
			if (!ref_seconds(v, false, &secs) || UNIX_TO_PG_USECS(secs) != DatumGetTimestampTz(d))
				ref_fail(cx, f, "timestamp differs from the QUANTITY");
			break;
		case R_JSONB:
			{
				size_t		len;
				const char *text = pgshim_jsonb_text(d, &len);
				json_error_t jerror;
				json_t	   *mine = text ? json_loadb(text, len, JSON_DECODE_ANY, &jerror) : NULL;

				if (mine == NULL || !json_equal(mine, v))
					ref_fail(cx, f, "jsonb differs from the field");
				json_decref(mine);
			}
			break;
		case R_HASHES:
			{
				ArrayType  *a = (ArrayType *) DatumGetPointer(d);
				size_t		n = json_array_size(v);

				if (!json_is_array(v) ||
					(n == 0 ? ARR_NDIM(a) != 0 : ARR_NDIM(a) != 1 || (size_t) ARR_DIMS(a)[0] != n))
					ref_fail(cx, f, "bytea[] has another number of elements");
				for (size_t k = 0; k < n; k++)
					if (!bytea_is(json_array_get(v, k), array_element(d, (int) k)))
						ref_fail(cx, f, "an element of the bytea[] differs");
			}
			break;
		case R_NONE:
			break;
	}
}

/* Every field of one object against row "row" of table t */
static void
ref_object(const RefCtx *cx, const RefField *fields, int nfields, json_t *obj,
		   int t, const DecodedRows *rows, int row)
{
	if (!json_is_object(obj))
		pgshim_fail("%s %d: decoded, but not an object for jansson", cx->object, cx->index);
	for (int i = 0; i < nfields; i++)
	{
		const RefField *f = &fields[i];
		json_t	   *v = json_object_get(obj, f->name);
		bool		present = v != NULL && !json_is_null(v);

		if (present)
			ref_check(cx, f, v);
		if (f->column < 0)
			continue;
		if (!present)
		{
			/* the defaults: type 0, no uncles */
			if (t == ETH_TABLE_TRANSACTIONS && f->column == TX_TYPE)
			{
				if (ISNULL(rows, row, TX_TYPE) || DatumGetInt16(VALUE(rows, row, TX_TYPE)) != 0)
					ref_fail(cx, f, "absent, but the type is not 0");
			}
			else if (t == ETH_TABLE_BLOCKS && f->column == BLK_UNCLES)
			{
				if (ISNULL(rows, row, BLK_UNCLES) ||
					ARR_NDIM((ArrayType *) DatumGetPointer(VALUE(rows, row, BLK_UNCLES))) != 0)
					ref_fail(cx, f, "absent, but the uncles are not empty");
			}
			else if (!ISNULL(rows, row, f->column))
				ref_fail(cx, f, "absent or null, but its column is set");
			continue;
		}
		if (ISNULL(rows, row, f->column))
			ref_fail(cx, f, "present, but its column is NULL");
		ref_value(cx, f, v, t, VALUE(rows, row, f->column));
	}
}

static void
compare_with_jansson(const DecodedBlock *out, int64 number, const char *b, size_t blen,
					 const char *r, size_t rlen)
{
	json_t	   *jb = NULL;
	json_t	   *jr = NULL;
	json_t	   *jtxs;
	json_t	   *jwds;
	PgShimJsonVerdict vb = pgshim_json_parse(b, blen, 0, NULL, NULL);
	PgShimJsonVerdict vr = pgshim_json_parse(r, rlen, 0, NULL, NULL);
	const DecodedRows *blk = &out->tables[ETH_TABLE_BLOCKS];
	const DecodedRows *txs = &out->tables[ETH_TABLE_TRANSACTIONS];
	const DecodedRows *logs = &out->tables[ETH_TABLE_LOGS];
	const DecodedRows *wds = &out->tables[ETH_TABLE_WITHDRAWALS];
	RefCtx		cx;
	int			log_row = 0;

	if (vb == PGSHIM_JSON_INVALID)
		pgshim_fail("decoded a block that is not JSON");
	if (vr == PGSHIM_JSON_INVALID)
		pgshim_fail("decoded receipts that are not JSON");

	if (!plain_text(b, blen) || !plain_text(r, rlen) ||
		pgshim_json_parse(b, blen, JSON_REJECT_DUPLICATES, &jb, NULL) != PGSHIM_JSON_VALID ||
		pgshim_json_parse(r, rlen, JSON_REJECT_DUPLICATES, &jr, NULL) != PGSHIM_JSON_VALID)
		goto done;

	if (!json_is_object(jb) || !json_is_array(jr))
		pgshim_fail("decoded a block that is not an object or receipts that are not an array");
	jtxs = json_object_get(jb, "transactions");
	jwds = json_object_get(jb, "withdrawals");
	if (!json_is_array(jtxs) || json_array_size(jtxs) != (size_t) txs->nrows ||
		json_array_size(jr) != (size_t) txs->nrows)
		pgshim_fail("jansson counts other transactions or receipts");
	if (json_is_array(jwds) ?
		(ISNULL(blk, 0, BLK_WITHDRAWAL_COUNT) || json_array_size(jwds) != (size_t) wds->nrows) :
		(!ISNULL(blk, 0, BLK_WITHDRAWAL_COUNT) || wds->nrows != 0))
		pgshim_fail("jansson counts other withdrawals");

	memset(&cx, 0, sizeof(cx));
	cx.out = out;
	cx.number = number;
	cx.timestamp = DatumGetTimestampTz(VALUE(blk, 0, BLK_TIMESTAMP));
	cx.object = "block";
	ref_object(&cx, ref_block, lengthof(ref_block), jb, ETH_TABLE_BLOCKS, blk, 0);

	for (int i = 0; i < txs->nrows; i++)
	{
		json_t	   *tx = json_array_get(jtxs, i);
		json_t	   *rc = json_array_get(jr, i);
		json_t	   *input;
		json_t	   *jlogs;

		cx.object = "transaction";
		cx.index = i;
		cx.tx_index = i;
		cx.tx_hash = bytea_data(txs, i, TX_HASH);
		cx.tx_type = DatumGetInt16(VALUE(txs, i, TX_TYPE));
		ref_object(&cx, ref_tx, lengthof(ref_tx), tx, ETH_TABLE_TRANSACTIONS, txs, i);
		input = json_object_get(tx, "input");
		if (input == NULL || json_is_null(input))
			input = json_object_get(tx, "data");
		if (!bytea_is(input, VALUE(txs, i, TX_INPUT)))
			pgshim_fail("transaction %d: input differs from \"input\" (or \"data\")", i);

		cx.object = "receipt";
		ref_object(&cx, ref_receipt, lengthof(ref_receipt), rc, ETH_TABLE_TRANSACTIONS, txs, i);
		jlogs = json_object_get(rc, "logs");
		if (!json_is_array(jlogs) ||
			json_array_size(jlogs) != (size_t) DatumGetInt32(VALUE(txs, i, TX_LOG_COUNT)))
			pgshim_fail("receipt %d: jansson counts other logs", i);

		cx.object = "log";
		for (size_t l = 0; l < json_array_size(jlogs); l++, log_row++)
		{
			json_t	   *lg = json_array_get(jlogs, l);
			json_t	   *topics = json_object_get(lg, "topics");
			json_t	   *removed = json_object_get(lg, "removed");

			if (log_row >= logs->nrows)
				pgshim_fail("jansson counts more logs than the %d rows", logs->nrows);
			cx.index = log_row;
			ref_object(&cx, ref_log, lengthof(ref_log), lg, ETH_TABLE_LOGS, logs, log_row);
			if (DatumGetInt32(VALUE(logs, log_row, LOG_TRANSACTION_INDEX)) != i)
				pgshim_fail("log row %d: not of transaction %d", log_row, i);
			if (!json_is_array(topics) || json_array_size(topics) > 4)
				pgshim_fail("log row %d: decoded without 0 to 4 topics", log_row);
			for (int k = 0; k < 4; k++)
			{
				json_t	   *topic = json_array_get(topics, k);

				if (topic == NULL ? !ISNULL(logs, log_row, LOG_TOPIC0 + k) :
					ISNULL(logs, log_row, LOG_TOPIC0 + k) ||
					!bytea_is(topic, VALUE(logs, log_row, LOG_TOPIC0 + k)))
					pgshim_fail("log row %d: topic %d differs", log_row, k);
			}
			if (removed != NULL && !json_is_false(removed) && !json_is_null(removed))
				pgshim_fail("log row %d: decoded with \"removed\" not false", log_row);
		}
	}
	if (log_row != logs->nrows)
		pgshim_fail("jansson counts %d logs, the decoder %d", log_row, logs->nrows);

	cx.object = "withdrawal";
	for (int i = 0; i < wds->nrows; i++)
	{
		cx.index = i;
		ref_object(&cx, ref_withdrawal, lengthof(ref_withdrawal), json_array_get(jwds, i),
				   ETH_TABLE_WITHDRAWALS, wds, i);
	}

done:
	if (jb)
		json_decref(jb);
	if (jr)
		json_decref(jr);
}

/* A "malformed JSON" error must be about text that jansson refuses too */
static void
check_malformed(const char *b, size_t blen, const char *r, size_t rlen)
{
	const char *msg = pgshim_error.message;
	int			depth;
	json_t	   *root = NULL;

	if (msg == NULL || strncmp(msg, "malformed JSON in block", 23) != 0)
		return;
	if (strstr(msg, "receipts response") != NULL)
	{
		b = r;
		blen = rlen;
	}
	/*
	 * The decoder refuses nesting of 256 and more.  jsmn (strict) refuses a
	 * bare number as the whole text; that is not an object or an array
	 * either, which the decoder would refuse anyway, so only these count.
	 */
	if (pgshim_json_parse(b, blen, 0, &root, &depth) == PGSHIM_JSON_VALID &&
		depth < 250 && (json_is_object(root) || json_is_array(root)))
		pgshim_fail("the decoder calls valid JSON malformed");
	if (root)
		json_decref(root);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	json_object_seed(1);
	expect_decoded = getenv("FUZZ_EXPECT_DECODED") != NULL;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	const uint8 *sep = memchr(data, '\0', size);
	size_t		blen = sep ? (size_t) (sep - data) : size;
	size_t		rlen = sep ? size - blen - 1 : 2;
	char	   *b = pgshim_exact_copy(data, blen);
	char	   *r = pgshim_exact_copy(sep ? sep + 1 : (const uint8 *) "[]", rlen);
	int64		number = guess_number(b, blen);

	pgshim_begin();
	if (PGSHIM_TRY())
	{
		DecodedBlock out;

		eth_decode_block(&out, CHAIN_ID, number, b, blen, r, rlen);
		check_decoded(&out, number);
		check_roundtrip(&out);
		compare_with_jansson(&out, number, b, blen, r, rlen);
	}
	else
	{
		pgshim_check_error(decode_errors, "eth_decode_block");
		check_malformed(b, blen, r, rlen);
		if (expect_decoded)
			pgshim_fail("FUZZ_EXPECT_DECODED: the input did not decode");
	}
	pgshim_end();
	free(b);
	free(r);
	return 0;
}
