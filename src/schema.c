/*-------------------------------------------------------------------------
 *
 * schema.c
 *	  Names and types of the columns of ethindex's data tables, in the
 *	  attribute order of schema.h and sql/ethindex--*.sql.
 *
 *	  This file only describes the layout; the decoder fills Datum arrays in
 *	  this order and the writer compares these descriptions with the catalog
 *	  before it stores anything.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/schema.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"

#include "schema.h"

static const EthColumnDesc block_columns[BLK_NATTS] = {
	[BLK_CHAIN_ID] = {"chain_id", INT8OID},
	[BLK_NUMBER] = {"number", INT8OID},
	[BLK_HASH] = {"hash", BYTEAOID},
	[BLK_PARENT_HASH] = {"parent_hash", BYTEAOID},
	[BLK_NONCE] = {"nonce", BYTEAOID},
	[BLK_SHA3_UNCLES] = {"sha3_uncles", BYTEAOID},
	[BLK_LOGS_BLOOM] = {"logs_bloom", BYTEAOID},
	[BLK_TRANSACTIONS_ROOT] = {"transactions_root", BYTEAOID},
	[BLK_STATE_ROOT] = {"state_root", BYTEAOID},
	[BLK_RECEIPTS_ROOT] = {"receipts_root", BYTEAOID},
	[BLK_MINER] = {"miner", BYTEAOID},
	[BLK_DIFFICULTY] = {"difficulty", NUMERICOID},
	[BLK_TOTAL_DIFFICULTY] = {"total_difficulty", NUMERICOID},
	[BLK_EXTRA_DATA] = {"extra_data", BYTEAOID},
	[BLK_SIZE] = {"size", INT8OID},
	[BLK_GAS_LIMIT] = {"gas_limit", INT8OID},
	[BLK_GAS_USED] = {"gas_used", INT8OID},
	[BLK_TIMESTAMP] = {"timestamp", TIMESTAMPTZOID},
	[BLK_MIX_HASH] = {"mix_hash", BYTEAOID},
	[BLK_BASE_FEE_PER_GAS] = {"base_fee_per_gas", NUMERICOID},
	[BLK_WITHDRAWALS_ROOT] = {"withdrawals_root", BYTEAOID},
	[BLK_BLOB_GAS_USED] = {"blob_gas_used", INT8OID},
	[BLK_EXCESS_BLOB_GAS] = {"excess_blob_gas", INT8OID},
	[BLK_PARENT_BEACON_BLOCK_ROOT] = {"parent_beacon_block_root", BYTEAOID},
	[BLK_REQUESTS_HASH] = {"requests_hash", BYTEAOID},
	[BLK_UNCLES] = {"uncles", BYTEAARRAYOID},
	[BLK_TRANSACTION_COUNT] = {"transaction_count", INT4OID},
	[BLK_WITHDRAWAL_COUNT] = {"withdrawal_count", INT4OID},
};

static const EthColumnDesc transaction_columns[TX_NATTS] = {
	[TX_CHAIN_ID] = {"chain_id", INT8OID},
	[TX_BLOCK_NUMBER] = {"block_number", INT8OID},
	[TX_TRANSACTION_INDEX] = {"transaction_index", INT4OID},
	[TX_HASH] = {"hash", BYTEAOID},
	[TX_BLOCK_HASH] = {"block_hash", BYTEAOID},
	[TX_BLOCK_TIMESTAMP] = {"block_timestamp", TIMESTAMPTZOID},
	[TX_TYPE] = {"type", INT2OID},
	[TX_FROM_ADDRESS] = {"from_address", BYTEAOID},
	[TX_TO_ADDRESS] = {"to_address", BYTEAOID},
	[TX_NONCE] = {"nonce", INT8OID},
	[TX_VALUE] = {"value", NUMERICOID},
	[TX_GAS] = {"gas", INT8OID},
	[TX_GAS_PRICE] = {"gas_price", NUMERICOID},
	[TX_MAX_FEE_PER_GAS] = {"max_fee_per_gas", NUMERICOID},
	[TX_MAX_PRIORITY_FEE_PER_GAS] = {"max_priority_fee_per_gas", NUMERICOID},
	[TX_MAX_FEE_PER_BLOB_GAS] = {"max_fee_per_blob_gas", NUMERICOID},
	[TX_INPUT] = {"input", BYTEAOID},
	[TX_TX_CHAIN_ID] = {"tx_chain_id", INT8OID},
	[TX_ACCESS_LIST] = {"access_list", JSONBOID},
	[TX_BLOB_VERSIONED_HASHES] = {"blob_versioned_hashes", BYTEAARRAYOID},
	[TX_AUTHORIZATION_LIST] = {"authorization_list", JSONBOID},
	[TX_V] = {"v", NUMERICOID},
	[TX_R] = {"r", NUMERICOID},
	[TX_S] = {"s", NUMERICOID},
	[TX_Y_PARITY] = {"y_parity", INT2OID},
	[TX_CUMULATIVE_GAS_USED] = {"cumulative_gas_used", INT8OID},
	[TX_GAS_USED] = {"gas_used", INT8OID},
	[TX_EFFECTIVE_GAS_PRICE] = {"effective_gas_price", NUMERICOID},
	[TX_CONTRACT_ADDRESS] = {"contract_address", BYTEAOID},
	[TX_STATUS] = {"status", INT2OID},
	[TX_ROOT] = {"root", BYTEAOID},
	[TX_LOGS_BLOOM] = {"logs_bloom", BYTEAOID},
	[TX_BLOB_GAS_USED] = {"blob_gas_used", INT8OID},
	[TX_BLOB_GAS_PRICE] = {"blob_gas_price", NUMERICOID},
	[TX_LOG_COUNT] = {"log_count", INT4OID},
};

static const EthColumnDesc log_columns[LOG_NATTS] = {
	[LOG_CHAIN_ID] = {"chain_id", INT8OID},
	[LOG_BLOCK_NUMBER] = {"block_number", INT8OID},
	[LOG_LOG_INDEX] = {"log_index", INT4OID},
	[LOG_TRANSACTION_INDEX] = {"transaction_index", INT4OID},
	[LOG_TRANSACTION_HASH] = {"transaction_hash", BYTEAOID},
	[LOG_BLOCK_HASH] = {"block_hash", BYTEAOID},
	[LOG_BLOCK_TIMESTAMP] = {"block_timestamp", TIMESTAMPTZOID},
	[LOG_ADDRESS] = {"address", BYTEAOID},
	[LOG_TOPIC0] = {"topic0", BYTEAOID},
	[LOG_TOPIC1] = {"topic1", BYTEAOID},
	[LOG_TOPIC2] = {"topic2", BYTEAOID},
	[LOG_TOPIC3] = {"topic3", BYTEAOID},
	[LOG_DATA] = {"data", BYTEAOID},
	[LOG_REMOVED] = {"removed", BOOLOID},
};

static const EthColumnDesc withdrawal_columns[WD_NATTS] = {
	[WD_CHAIN_ID] = {"chain_id", INT8OID},
	[WD_BLOCK_NUMBER] = {"block_number", INT8OID},
	[WD_INDEX] = {"index", INT8OID},
	[WD_VALIDATOR_INDEX] = {"validator_index", INT8OID},
	[WD_ADDRESS] = {"address", BYTEAOID},
	[WD_AMOUNT] = {"amount", NUMERICOID},
};

const EthTableDesc eth_tables[ETH_NUM_TABLES] = {
	[ETH_TABLE_BLOCKS] = {"blocks", "number", BLK_NATTS, block_columns},
	[ETH_TABLE_TRANSACTIONS] = {"transactions", "block_number", TX_NATTS, transaction_columns},
	[ETH_TABLE_LOGS] = {"logs", "block_number", LOG_NATTS, log_columns},
	[ETH_TABLE_WITHDRAWALS] = {"withdrawals", "block_number", WD_NATTS, withdrawal_columns},
};

/*
 * eth_type_byval
 *		Whether a column type used in the data tables is passed by value.
 *
 * Only the types that occur in eth_tables are known here; int8 and
 * timestamptz follow the build's FLOAT8PASSBYVAL like the catalog does.
 */
bool
eth_type_byval(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
			return true;
		case INT8OID:
		case TIMESTAMPTZOID:
			return FLOAT8PASSBYVAL;
		default:
			return false;
	}
}
