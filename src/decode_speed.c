/*-------------------------------------------------------------------------
 *
 * decode_speed.c
 *	  ethindex._decode_speed(): time the ingestion decoder and, on the same
 *	  bytes, a jansson DOM parse, for the benchmark (bench/run.py).  It
 *	  reports only times; correctness is the decoder's own tests' business.
 *
 *	  This file must not include utils/builtins.h: jansson and fmgrprotos.h
 *	  both declare json_object().
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/decode_speed.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"

#include "decode.h"

PG_FUNCTION_INFO_V1(ethindex_decode_speed);

static double
jansson_seconds(const char *json, size_t len, int iterations)
{
	instr_time	start;
	instr_time	duration;
	json_error_t jerror;

	INSTR_TIME_SET_CURRENT(start);
	for (int i = 0; i < iterations; i++)
	{
		json_t	   *root = json_loadb(json, len, 0, &jerror);

		if (root == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("jansson could not parse the input: %s", jerror.text)));
		json_decref(root);
		CHECK_FOR_INTERRUPTS();
	}
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	return INSTR_TIME_GET_DOUBLE(duration);
}

/*
 * _decode_speed(block_number, block_json, receipts_json, iterations)
 *   -> (decoder_seconds, jansson_seconds): total time of "iterations"
 *   decodes of the block and its receipts, and of as many jansson parses
 *   of both documents.
 */
Datum
ethindex_decode_speed(PG_FUNCTION_ARGS)
{
	int64		number = PG_GETARG_INT64(0);
	text	   *block = PG_GETARG_TEXT_PP(1);
	text	   *receipts = PG_GETARG_TEXT_PP(2);
	int			iterations = PG_GETARG_INT32(3);
	MemoryContext decode_context;
	MemoryContext old;
	instr_time	start;
	instr_time	duration;
	double		decoder;
	double		dom;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (iterations < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("iterations must be at least 1")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	decode_context = AllocSetContextCreate(CurrentMemoryContext, "ethindex decode speed",
										   ALLOCSET_DEFAULT_SIZES);
	INSTR_TIME_SET_CURRENT(start);
	for (int i = 0; i < iterations; i++)
	{
		DecodedBlock decoded;

		old = MemoryContextSwitchTo(decode_context);
		eth_decode_block(&decoded, 1, number,
						 VARDATA_ANY(block), VARSIZE_ANY_EXHDR(block),
						 VARDATA_ANY(receipts), VARSIZE_ANY_EXHDR(receipts));
		MemoryContextSwitchTo(old);
		MemoryContextReset(decode_context);
		CHECK_FOR_INTERRUPTS();
	}
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	decoder = INSTR_TIME_GET_DOUBLE(duration);
	MemoryContextDelete(decode_context);

	dom = jansson_seconds(VARDATA_ANY(block), VARSIZE_ANY_EXHDR(block), iterations) +
		jansson_seconds(VARDATA_ANY(receipts), VARSIZE_ANY_EXHDR(receipts), iterations);

	values[0] = Float8GetDatum(decoder);
	values[1] = Float8GetDatum(dom);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
