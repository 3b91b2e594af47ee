/*-------------------------------------------------------------------------
 *
 * spiutil.c
 *	  Short transactions and SPI calls of ethindex's background workers.
 *
 *	  run_in_transaction() is the one place where a worker starts a
 *	  transaction: statement start time, SPI, a snapshot, the activity shown
 *	  in pg_stat_activity, commit.  Work functions allocate in the caller's
 *	  memory context, which spi_run() restores after every SPI call (SPI
 *	  leaves its own procedure context current); values read from
 *	  SPI_tuptable must be copied out before the transaction ends.
 *
 *	  An error raised by the work function propagates; the caller's error
 *	  handling (the worker's main loop) aborts the transaction.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/spiutil.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "spiutil.h"

/*
 * Run work(arg) in a transaction of its own, with SPI and a snapshot.
 *
 * The transaction first takes ACCESS SHARE on the extension itself (when it
 * exists), the object DROP EXTENSION locks, exclusively, before any of its
 * members.  A DROP EXTENSION therefore waits until the workers'
 * transactions under way end, and their next ones wait for it, before it
 * locks a table: without this it locked the extension's tables in the order
 * of pg_depend, which is not the order a worker locks them in (an insert
 * worker's batch locks partitions, then the checkpoint row in
 * ethindex.chains), and the two could deadlock, failing the DROP.
 */
void
run_in_transaction(const char *activity, TransactionWork work, void *arg)
{
	MemoryContext outer = CurrentMemoryContext;
	Oid			extension;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, activity);
	extension = get_extension_oid("ethindex", true);
	if (OidIsValid(extension))
		LockDatabaseObject(ExtensionRelationId, extension, 0, AccessShareLock);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(outer);
	work(arg);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * SPI_execute_with_args() that raises an error on failure and leaves the
 * caller's memory context current.  Returns the SPI result code.  "nulls"
 * is as for SPI_execute_with_args ('n' for a NULL argument), or NULL.
 */
int
spi_run(const char *sql, int nargs, const Oid *argtypes, const Datum *args,
		const char *nulls, bool read_only, long limit)
{
	MemoryContext outer = CurrentMemoryContext;
	int			rc;

	rc = SPI_execute_with_args(sql, nargs, (Oid *) argtypes, (Datum *) args, nulls,
							   read_only, limit);
	MemoryContextSwitchTo(outer);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed (%s): %s",
			 SPI_result_code_string(rc), sql);
	return rc;
}

/*
 * Run a query of ethindex.chains whose only parameter, $1, is the chain's
 * name; an error unless it returns the chain's row.
 */
void
spi_read_chain(const char *sql, const char *chain, bool for_update)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(chain);
	spi_run(sql, 1, argtypes, args, NULL, !for_update, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("chain \"%s\" does not exist", chain)));
}

/* An int8 (or smaller integer) column of a row of SPI_tuptable. */
int64
spi_get_int64(uint64 row, int column, bool *isnull)
{
	Datum		value = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
									  column, isnull);
	Oid			type = SPI_gettypeid(SPI_tuptable->tupdesc, column);

	if (*isnull)
		return 0;
	switch (type)
	{
		case INT2OID:
			return DatumGetInt16(value);
		case INT4OID:
			return DatumGetInt32(value);
		case INT8OID:
			return DatumGetInt64(value);
	}
	elog(ERROR, "column %d is of type %u, not an integer", column, type);
	return 0;					/* keep compiler quiet */
}

/*
 * A 32-byte hash column (bytea) of a row of SPI_tuptable, copied into
 * *hash; false if NULL.
 */
bool
spi_get_hash(uint64 row, int column, uint8 *hash)
{
	bool		isnull;
	Datum		value = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
									  column, &isnull);
	bytea	   *b;

	if (isnull)
		return false;
	b = DatumGetByteaPP(value);
	if (VARSIZE_ANY_EXHDR(b) != 32)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored hash is %zu bytes long, not 32",
						(size_t) VARSIZE_ANY_EXHDR(b))));
	memcpy(hash, VARDATA_ANY(b), 32);
	return true;
}
