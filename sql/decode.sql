--
-- decode: ethindex._decode_block, the JSON-RPC block and receipts decoder
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ethindex;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET bytea_output = 'hex';
\set SHOW_CONTEXT never

-- one block with a transaction of each type 0-4 (type 0 in Parity style,
-- without "type" and with "data" for "input"), their receipts (receipt 0
-- pre-Byzantium with "root"), a log without topics and "data" "0x", a log
-- with 4 topics, one uncle and one withdrawal
CREATE TEMP TABLE src (b text, r text);
INSERT INTO src VALUES (replace($json$
{"number": "0x64", "hash": "0x1111111111111111111111111111111111111111111111111111111111111111", "parentHash": "0x2222222222222222222222222222222222222222222222222222222222222222",
 "nonce": "0x0000000000000042", "sha3Uncles": "0x3333333333333333333333333333333333333333333333333333333333333333", "logsBloom": "BLOOM",
 "miner": "0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "difficulty": "0x0", "totalDifficulty": "0xc70d815d562d3cfa955",
 "extraData": "0x", "size": "0x3e8", "gasLimit": "0x1c9c380", "gasUsed": "0x1d4c0",
 "timestamp": "0x64ea268f", "mixHash": "0x4444444444444444444444444444444444444444444444444444444444444444", "baseFeePerGas": "0x3b9aca00",
 "withdrawalsRoot": "0x6666666666666666666666666666666666666666666666666666666666666666", "blobGasUsed": "0x40000", "excessBlobGas": "0x0",
 "parentBeaconBlockRoot": "0x7777777777777777777777777777777777777777777777777777777777777777", "requestsHash": "0x8888888888888888888888888888888888888888888888888888888888888888", "uncles": ["0x9999999999999999999999999999999999999999999999999999999999999999"],
 "sealFields": [], "author": "0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
 "transactions": [
  {"blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "transactionIndex": "0x0", "hash": "0xa0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0", "from": "0xffffffffffffffffffffffffffffffffffffffff", "nonce": "0x7", "gas": "0x5208", "to": "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "value": "0x1bc16d674ec800000", "gasPrice": "0x4a817c800", "data": "0x", "v": "0x1b", "r": "0x1", "s": "0x2", "creates": null, "raw": "0xf86b"},
  {"blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "transactionIndex": "0x1", "hash": "0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "from": "0xffffffffffffffffffffffffffffffffffffffff", "nonce": "0x8", "gas": "0x5208", "type": "0x1", "to": null, "value": "0x0", "gasPrice": "0x3b9aca00", "input": "0x6080604052", "chainId": "0x1", "accessList": [{"address": "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "storageKeys": ["0x5555555555555555555555555555555555555555555555555555555555555555"]}], "v": "0x0", "yParity": "0x0", "r": "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "s": "0x3"},
  {"blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "transactionIndex": "0x2", "hash": "0xa2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2", "from": "0xffffffffffffffffffffffffffffffffffffffff", "nonce": "0x9", "gas": "0x5208", "type": "0x2", "to": "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "value": "0xde0b6b3a7640000", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x3b9aca00", "gasPrice": "0x3b9aca01", "input": "0xa9059cbb", "chainId": "0x1", "accessList": [], "v": "0x1", "yParity": "0x1", "r": "0x4", "s": "0x5", "blockTimestamp": "0x64ea268f"},
  {"blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "transactionIndex": "0x3", "hash": "0xa3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3", "from": "0xffffffffffffffffffffffffffffffffffffffff", "nonce": "0xa", "gas": "0x5208", "type": "0x3", "to": "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "value": "0x0", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1", "maxFeePerBlobGas": "0x3b9aca00", "input": "0x", "chainId": "0x1", "accessList": [], "blobVersionedHashes": ["0x0101010101010101010101010101010101010101010101010101010101010101", "0x0202020202020202020202020202020202020202020202020202020202020202"], "v": "0x0", "yParity": "0x0", "r": "0x6", "s": "0x7"},
  {"blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "transactionIndex": "0x4", "hash": "0xa4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4", "from": "0xffffffffffffffffffffffffffffffffffffffff", "nonce": "0xb", "gas": "0x5208", "type": "0x4", "to": "0xffffffffffffffffffffffffffffffffffffffff", "value": "0x0", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1", "input": "0x", "chainId": "0x1", "accessList": [], "authorizationList": [{"chainId": "0x1", "address": "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "nonce": "0x0", "yParity": "0x1", "r": "0x8", "s": "0x9"}], "v": "0x1", "yParity": "0x1", "r": "0xa", "s": "0xb"}],
 "withdrawals": [{"index": "0x1", "validatorIndex": "0x2", "address": "0xcccccccccccccccccccccccccccccccccccccccc", "amount": "0xde0b6b3a7640000"}]}
$json$, 'BLOOM', '0x' || repeat('00', 256)), replace($json$
[
  {"transactionHash": "0xa0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0", "transactionIndex": "0x0", "blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "cumulativeGasUsed": "0x5208", "gasUsed": "0x5208", "logsBloom": "BLOOM", "root": "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "logs": [], "contractAddress": null, "effectiveGasPrice": "0x4a817c800"},
  {"transactionHash": "0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "transactionIndex": "0x1", "blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "cumulativeGasUsed": "0xa410", "gasUsed": "0x5208", "logsBloom": "BLOOM", "type": "0x1", "status": "0x0", "contractAddress": "0xcccccccccccccccccccccccccccccccccccccccc", "logs": [], "effectiveGasPrice": "0x3b9aca00"},
  {"transactionHash": "0xa2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2", "transactionIndex": "0x2", "blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "cumulativeGasUsed": "0xf618", "gasUsed": "0x5208", "logsBloom": "BLOOM", "type": "0x2", "status": "0x1", "effectiveGasPrice": "0x3b9aca01", "logs": [
   {"address": "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "topics": [], "data": "0x", "logIndex": "0x0", "blockNumber": "0x64", "blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "transactionHash": "0xa2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2", "transactionIndex": "0x2", "removed": false},
   {"address": "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "topics": ["0xd1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1", "0xd2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2", "0xd3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3", "0xd4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4"], "data": "0x0000000000000000000000000000000000000000000000000de0b6b3a7640000", "logIndex": "0x1", "blockTimestamp": "0x64ea268f", "type": "mined", "transactionLogIndex": "0x1"}]},
  {"transactionHash": "0xa3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3", "transactionIndex": "0x3", "blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "cumulativeGasUsed": "0x14820", "gasUsed": "0x5208", "logsBloom": "BLOOM", "type": "0x3", "status": "0x1", "effectiveGasPrice": "0x3b9aca01", "blobGasUsed": "0x40000", "blobGasPrice": "0x1", "logs": []},
  {"transactionHash": "0xa4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4", "transactionIndex": "0x4", "blockHash": "0x1111111111111111111111111111111111111111111111111111111111111111", "blockNumber": "0x64", "cumulativeGasUsed": "0x19a28", "gasUsed": "0x5208", "logsBloom": "BLOOM", "type": "0x4", "status": "0x1", "effectiveGasPrice": "0x3b9aca01", "logs": []}]
$json$, 'BLOOM', '0x' || repeat('00', 255) || '01'));

-- every non-NULL value, in output order
SELECT d.table_name, d.row_number AS row, d.column_name, d.value
FROM src, ethindex._decode_block(1, 100, src.b, src.r) WITH ORDINALITY AS d
WHERE d.value IS NOT NULL AND d.column_name <> 'logs_bloom'
ORDER BY d.ordinality;
-- the NULL columns of each row
SELECT d.table_name, d.row_number AS row,
       string_agg(d.column_name, ' ' ORDER BY d.ordinality) AS null_columns
FROM src, ethindex._decode_block(1, 100, src.b, src.r) WITH ORDINALITY AS d
WHERE d.value IS NULL GROUP BY 1, 2 ORDER BY min(d.ordinality);
-- blooms are 256 bytes
SELECT d.table_name, d.row_number AS row, length(d.value), right(d.value, 4)
FROM src, ethindex._decode_block(1, 100, src.b, src.r) d
WHERE d.column_name = 'logs_bloom';

-- optional parts absent: no withdrawals (count NULL), no uncles (empty),
-- an empty block
SELECT d.column_name, d.value
FROM src, ethindex._decode_block(1, 100, (b::jsonb - 'withdrawals' - 'uncles')::text, r) d
WHERE d.table_name = 'blocks' AND d.column_name IN ('uncles', 'withdrawal_count', 'transaction_count');
SELECT d.table_name, count(*)
FROM src, ethindex._decode_block(7, 100, jsonb_set(b::jsonb, '{transactions}', '[]')::text, ' [ ] ') d
GROUP BY 1 ORDER BY 1;

-- bad input: each statement fails with its own message
CREATE FUNCTION pg_temp.try(b text, r text, n bigint DEFAULT 100) RETURNS bigint
LANGUAGE sql AS $$ SELECT count(*) FROM ethindex._decode_block(1, n, b, r) $$;
-- malformed JSON: truncated, trailing garbage, missing value, bad literal
SELECT pg_temp.try(left(b, 300), r) FROM src;
SELECT pg_temp.try(b, r || ']') FROM src;
SELECT pg_temp.try('{"number": "0x64",, "hash": "0x"}', r) FROM src;
SELECT pg_temp.try('{"number": nul}', r) FROM src;
-- the node returned null
SELECT pg_temp.try('null', r) FROM src;
SELECT pg_temp.try(b, ' null ') FROM src;
-- wrong block number
SELECT pg_temp.try(b, r, 101) FROM src;
-- missing required fields
SELECT pg_temp.try((b::jsonb - 'gasLimit')::text, r) FROM src;
SELECT pg_temp.try((b::jsonb #- '{transactions,3,from}')::text, r) FROM src;
SELECT pg_temp.try(b, (r::jsonb #- '{2,logs,1,logIndex}')::text) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{hash}', 'null')::text, r) FROM src;
-- mistyped fields
SELECT pg_temp.try(jsonb_set(b::jsonb, '{gasUsed}', '123')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions,1,accessList}', '{}')::text, r) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{2,logs,0,removed}', '"no"')::text) FROM src;
-- bad hex: odd length, non-hex digit, no 0x, leading zeros, no digits
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions,0,hash}', '"0x123"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{extraData}', '"0xzz"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{miner}', '"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{gasUsed}', '"0x01d4c0"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{size}', '"0x"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions,2,value}', '"0xg1"')::text, r) FROM src;
-- wrong length
SELECT pg_temp.try(jsonb_set(b::jsonb, '{parentHash}', '"0x22222222222222222222222222222222222222222222222222222222222222"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{uncles}', '["0x99"]')::text, r) FROM src;
-- out of range
SELECT pg_temp.try(jsonb_set(b::jsonb, '{gasLimit}', '"0x8000000000000000"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions,0,type}', '"0x8000"')::text, r) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{2,logs,0,logIndex}', '"0x80000000"')::text) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions,0,value}', '"0x10000000000000000000000000000000000000000000000000000000000000000"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{timestamp}', '"0x7fffffffffffffff"')::text, r) FROM src;
-- receipts that do not match the transactions
SELECT pg_temp.try(b, (r::jsonb - 4)::text) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{1,transactionHash}', '"0xa3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3"')::text) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{1,transactionIndex}', '"0x2"')::text) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{3,blockHash}', '"0x2222222222222222222222222222222222222222222222222222222222222222"')::text) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{4,type}', '"0x2"')::text) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{0,status}', '"0x2"')::text) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions,2,blockNumber}', '"0x65"')::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions,2,blockTimestamp}', '"0x64ea2690"')::text, r) FROM src;
-- logs
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{2,logs,0,removed}', 'true')::text) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{2,logs,1,topics}', '["0xd0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0","0xd1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1","0xd2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2","0xd3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3","0xd4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4"]')::text) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{2,logs,1,logIndex}', '"0x0"')::text) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{2,logs,1,transactionHash}', '"0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"')::text) FROM src;
-- block fetched with transaction hashes only
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions}', '["0xa0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"]')::text, r) FROM src;
-- more rows than a block may have (decode.h: ETH_MAX_BLOCK_*); the limits
-- are checked before the rows are looked at
SELECT pg_temp.try(jsonb_set(b::jsonb, '{transactions}', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 100001)))::text, r) FROM src;
SELECT pg_temp.try(jsonb_set(b::jsonb, '{withdrawals}', (SELECT jsonb_agg(s.b::jsonb->'withdrawals'->0) FROM src s, generate_series(1, 10001)))::text, r) FROM src;
SELECT pg_temp.try(b, jsonb_set(r::jsonb, '{4,logs}', ('[' || repeat('0,', 1000000) || '0]')::jsonb)::text) FROM src;
-- at the limit: decoded
SELECT count(DISTINCT d.row_number) FROM src, ethindex._decode_block(1, 100, jsonb_set(b::jsonb, '{withdrawals}', (SELECT jsonb_agg(jsonb_set(s.b::jsonb->'withdrawals'->0, '{index}', to_jsonb('0x' || to_hex(i)))) FROM src s, generate_series(1, 10000) i))::text, r) d WHERE d.table_name = 'withdrawals';
