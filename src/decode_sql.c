/*-------------------------------------------------------------------------
 *
 * decode_sql.c
 *	  ethindex._decode_block(): the ingestion decoder as a SQL function,
 *	  for tests and for inspecting a node's responses.
 *
 *	  It runs eth_decode_block() on one block and its receipts and returns
 *	  one row per (table, row, column) with the value in its type's text
 *	  form, so that every decoded value can be checked from SQL.  It raises
 *	  the same errors the fetcher records.
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
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

#include "decode.h"

PG_FUNCTION_INFO_V1(ethindex_decode_block);

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
