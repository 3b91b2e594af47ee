/*-------------------------------------------------------------------------
 *
 * schema.h
 *	  Column layout of ethindex's data tables, shared by the decoder (which
 *	  fills Datum arrays in this order) and the writer (which checks at start
 *	  that the catalog agrees and forms tuples from those arrays).
 *
 *	  The order here must match sql/ethindex--*.sql exactly; schema.c holds
 *	  the names and types and verifies them against the catalog.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/schema.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_SCHEMA_H
#define ETHINDEX_SCHEMA_H

#include "postgres.h"

typedef enum EthTable
{
	ETH_TABLE_BLOCKS = 0,
	ETH_TABLE_TRANSACTIONS,
	ETH_TABLE_LOGS,
	ETH_TABLE_WITHDRAWALS,
	ETH_NUM_TABLES
} EthTable;

/* ethindex.blocks, 0-based attribute positions */
typedef enum BlockColumn
{
	BLK_CHAIN_ID = 0,
	BLK_NUMBER,
	BLK_HASH,
	BLK_PARENT_HASH,
	BLK_NONCE,
	BLK_SHA3_UNCLES,
	BLK_LOGS_BLOOM,
	BLK_TRANSACTIONS_ROOT,
	BLK_STATE_ROOT,
	BLK_RECEIPTS_ROOT,
	BLK_MINER,
	BLK_DIFFICULTY,
	BLK_TOTAL_DIFFICULTY,
	BLK_EXTRA_DATA,
	BLK_SIZE,
	BLK_GAS_LIMIT,
	BLK_GAS_USED,
	BLK_TIMESTAMP,
	BLK_MIX_HASH,
	BLK_BASE_FEE_PER_GAS,
	BLK_WITHDRAWALS_ROOT,
	BLK_BLOB_GAS_USED,
	BLK_EXCESS_BLOB_GAS,
	BLK_PARENT_BEACON_BLOCK_ROOT,
	BLK_REQUESTS_HASH,
	BLK_UNCLES,
	BLK_TRANSACTION_COUNT,
	BLK_WITHDRAWAL_COUNT,
	BLK_NATTS
} BlockColumn;

/* ethindex.transactions (transaction and receipt fields) */
typedef enum TransactionColumn
{
	TX_CHAIN_ID = 0,
	TX_BLOCK_NUMBER,
	TX_TRANSACTION_INDEX,
	TX_HASH,
	TX_BLOCK_HASH,
	TX_BLOCK_TIMESTAMP,
	TX_TYPE,
	TX_FROM_ADDRESS,
	TX_TO_ADDRESS,
	TX_NONCE,
	TX_VALUE,
	TX_GAS,
	TX_GAS_PRICE,
	TX_MAX_FEE_PER_GAS,
	TX_MAX_PRIORITY_FEE_PER_GAS,
	TX_MAX_FEE_PER_BLOB_GAS,
	TX_INPUT,
	TX_TX_CHAIN_ID,
	TX_ACCESS_LIST,
	TX_BLOB_VERSIONED_HASHES,
	TX_AUTHORIZATION_LIST,
	TX_V,
	TX_R,
	TX_S,
	TX_Y_PARITY,
	/* receipt fields */
	TX_CUMULATIVE_GAS_USED,
	TX_GAS_USED,
	TX_EFFECTIVE_GAS_PRICE,
	TX_CONTRACT_ADDRESS,
	TX_STATUS,
	TX_ROOT,
	TX_LOGS_BLOOM,
	TX_BLOB_GAS_USED,
	TX_BLOB_GAS_PRICE,
	TX_LOG_COUNT,
	TX_NATTS
} TransactionColumn;

/* ethindex.logs */
typedef enum LogColumn
{
	LOG_CHAIN_ID = 0,
	LOG_BLOCK_NUMBER,
	LOG_LOG_INDEX,
	LOG_TRANSACTION_INDEX,
	LOG_TRANSACTION_HASH,
	LOG_BLOCK_HASH,
	LOG_BLOCK_TIMESTAMP,
	LOG_ADDRESS,
	LOG_TOPIC0,
	LOG_TOPIC1,
	LOG_TOPIC2,
	LOG_TOPIC3,
	LOG_DATA,
	LOG_REMOVED,
	LOG_NATTS
} LogColumn;

/* ethindex.withdrawals */
typedef enum WithdrawalColumn
{
	WD_CHAIN_ID = 0,
	WD_BLOCK_NUMBER,
	WD_INDEX,
	WD_VALIDATOR_INDEX,
	WD_ADDRESS,
	WD_AMOUNT,
	WD_NATTS
} WithdrawalColumn;

/* Description of one column, for the catalog check and serialization. */
typedef struct EthColumnDesc
{
	const char *name;
	Oid			typid;			/* BYTEAOID, INT8OID, NUMERICOID, ... */
} EthColumnDesc;

typedef struct EthTableDesc
{
	const char *name;			/* relation name in schema ethindex */
	const char *block_column;	/* name of the partition key's block column */
	int			natts;
	const EthColumnDesc *columns;
} EthTableDesc;

extern const EthTableDesc eth_tables[ETH_NUM_TABLES];

/* true when the column's type is passed by value (int2/4/8, bool, timestamptz) */
extern bool eth_type_byval(Oid typid);

#endif							/* ETHINDEX_SCHEMA_H */
