/*-------------------------------------------------------------------------
 *
 * decode_sql.c
 *	  The pure decoding of node responses as SQL functions, for tests and
 *	  for inspecting a node's responses; they raise the same errors the
 *	  fetcher records.
 *
 *	  ethindex._decode_block() runs eth_decode_block() on one block and its
 *	  receipts and returns one row per (table, row, column) with the value
 *	  in its type's text form, so that every decoded value can be checked
 *	  from SQL.  ethindex._split_response() runs eth_split_rpc_response()
 *	  and eth_find_reply() on a JSON-RPC response body: the replies as the
 *	  fetcher sees them, and which reply answers which request.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/decode_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

#include "decode.h"

PG_FUNCTION_INFO_V1(ethindex_decode_block);
PG_FUNCTION_INFO_V1(ethindex_split_response);

/*
 * ethindex_decode_block(chain_id bigint, block_number bigint,
 *						 block_json text, receipts_json text)
 *	RETURNS TABLE (table_name text, row_number integer, column_name text,
 *				   value text)
 *
 * Rows come in table order (blocks, transactions, logs, withdrawals), then
 * row, then column position; row_number is 0-based; value is NULL for SQL
 * NULL.
 */
Datum
ethindex_decode_block(PG_FUNCTION_ARGS)
{
	int64		chain_id = PG_GETARG_INT64(0);
	int64		block_number = PG_GETARG_INT64(1);
	text	   *block_json = PG_GETARG_TEXT_PP(2);
	text	   *receipts_json = PG_GETARG_TEXT_PP(3);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DecodedBlock block;
	int			t;

	InitMaterializedSRF(fcinfo, 0);

	eth_decode_block(&block, chain_id, block_number,
					 VARDATA_ANY(block_json), VARSIZE_ANY_EXHDR(block_json),
					 VARDATA_ANY(receipts_json), VARSIZE_ANY_EXHDR(receipts_json));

	for (t = 0; t < ETH_NUM_TABLES; t++)
	{
		const EthTableDesc *desc = &eth_tables[t];
		const DecodedRows *rows = &block.tables[t];
		FmgrInfo   *outfuncs;
		Datum		table_name;
		int			c;
		int			r;

		if (rows->natts != desc->natts)
			elog(ERROR, "decoded table \"%s\" has %d columns, expected %d",
				 desc->name, rows->natts, desc->natts);

		outfuncs = (FmgrInfo *) palloc(desc->natts * sizeof(FmgrInfo));
		for (c = 0; c < desc->natts; c++)
		{
			Oid			outfunc;
			bool		isvarlena;

			getTypeOutputInfo(desc->columns[c].typid, &outfunc, &isvarlena);
			fmgr_info(outfunc, &outfuncs[c]);
		}
		table_name = CStringGetTextDatum(desc->name);

		for (r = 0; r < rows->nrows; r++)
		{
			for (c = 0; c < desc->natts; c++)
			{
				Size		i = (Size) r * rows->natts + c;
				Datum		values[4];
				bool		nulls[4] = {false, false, false, false};

				values[0] = table_name;
				values[1] = Int32GetDatum(r);
				values[2] = CStringGetTextDatum(desc->columns[c].name);
				if (rows->nulls[i])
				{
					values[3] = (Datum) 0;
					nulls[3] = true;
				}
				else
					values[3] = CStringGetTextDatum(OutputFunctionCall(&outfuncs[c],
																	   rows->values[i]));
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
									 values, nulls);
			}
		}
	}

	return (Datum) 0;
}

/* One row of _split_response(): a reply, or the columns of none (reply NULL) */
static void
put_reply(ReturnSetInfo *rsinfo, const RpcReply *reply, bool have_id, int64 id)
{
	Datum		values[5] = {0};
	bool		nulls[5] = {true, true, true, true, true};

	if (have_id)
	{
		values[0] = Int64GetDatum(id);
		nulls[0] = false;
	}
	if (reply != NULL)
	{
		values[1] = BoolGetDatum(reply->is_error);
		nulls[1] = false;
		if (reply->is_error)
		{
			values[2] = Int32GetDatum(reply->error_code);
			values[3] = CStringGetTextDatum(reply->error_message);
			nulls[2] = nulls[3] = false;
		}
		else
		{
			values[4] = PointerGetDatum(cstring_to_text_with_len(reply->result,
																  (int) reply->result_len));
			nulls[4] = false;
		}
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * ethindex_split_response(response text, ids bigint[] DEFAULT NULL)
 *	RETURNS TABLE (id bigint, is_error boolean, error_code integer,
 *				   error_message text, result text)
 *
 * Without ids: every reply in the order of the body, id NULL where the
 * envelope has none (or null).  With ids: one row per element, the reply
 * eth_find_reply() gives for it, all columns but id NULL when there is
 * none.  result is the JSON text of the value as the node sent it ("null"
 * included); error_message is the message as status and logs show it.
 */
Datum
ethindex_split_response(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *response;
	RpcReply   *replies;
	int			nreplies;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	response = PG_GETARG_TEXT_PP(0);
	nreplies = eth_split_rpc_response(VARDATA_ANY(response), VARSIZE_ANY_EXHDR(response),
									  &replies);

	if (PG_ARGISNULL(1))
	{
		for (int i = 0; i < nreplies; i++)
			put_reply(rsinfo, &replies[i], replies[i].id >= 0, replies[i].id);
	}
	else
	{
		ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *elems;
		bool	   *elem_nulls;
		int			nelems;

		if (ARR_NDIM(ids) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("request ids must be a one-dimensional array")));
		deconstruct_array(ids, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &elems, &elem_nulls, &nelems);
		for (int i = 0; i < nelems; i++)
		{
			int64		id;

			if (elem_nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("request ids must not be null")));
			id = DatumGetInt64(elems[i]);
			if (id < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("request id " INT64_FORMAT " is negative", id),
						 errhint("The fetcher numbers its requests from 0.")));
			put_reply(rsinfo, eth_find_reply(replies, nreplies, id), true, id);
		}
	}
	return (Datum) 0;
}
