/*-------------------------------------------------------------------------
 *
 * spiutil.h
 *	  Short transactions and SPI calls of ethindex's background workers.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/spiutil.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_SPIUTIL_H
#define ETHINDEX_SPIUTIL_H

#include "postgres.h"

#include "executor/spi.h"

typedef void (*TransactionWork) (void *arg);

extern void run_in_transaction(const char *activity, TransactionWork work, void *arg);
extern int	spi_run(const char *sql, int nargs, const Oid *argtypes, const Datum *args,
					const char *nulls, bool read_only, long limit);
extern void spi_read_chain(const char *sql, const char *chain, bool for_update);
extern int64 spi_get_int64(uint64 row, int column, bool *isnull);
extern bool spi_get_hash(uint64 row, int column, uint8 *hash);

#endif							/* ETHINDEX_SPIUTIL_H */
