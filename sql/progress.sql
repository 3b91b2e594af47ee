--
-- Progress as the SQL functions see it: gaps() and refetch() on rows stored
-- by hand in a chain's partitions, the finality marks, status columns.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ethindex;
RESET client_min_messages;
\set SHOW_CONTEXT never

SELECT ethindex.add_chain('p', ARRAY['http://127.0.0.1:1/'], chain_id => 77,
                          start_block => 10, partition_size => 1000);
SELECT ethindex._ensure_partitions(77, 1000, 10, 40);

-- blocks 10..30 stored, but for 14, 15 and 22; block 12 misses a transaction,
-- block 13 a log, block 16 a withdrawal
INSERT INTO ethindex.blocks (chain_id, number, hash, parent_hash, gas_limit, gas_used,
                             timestamp, uncles, transaction_count, withdrawal_count)
SELECT 77, n, decode(lpad(to_hex(n), 64, '0'), 'hex'), decode(lpad(to_hex(n - 1), 64, '0'), 'hex'),
       30000000, 21000, to_timestamp(n * 12), '{}', 1, CASE WHEN n = 16 THEN 1 ELSE 0 END
FROM generate_series(10, 30) n WHERE n NOT IN (14, 15, 22);
INSERT INTO ethindex.transactions (chain_id, block_number, transaction_index, hash, block_hash,
                                   block_timestamp, type, from_address, nonce, value, gas,
                                   input, cumulative_gas_used, gas_used, logs_bloom, log_count)
SELECT 77, n, 0, decode(lpad(to_hex(1000 + n), 64, '0'), 'hex'), decode(lpad(to_hex(n), 64, '0'), 'hex'),
       to_timestamp(n * 12), 2, '\x01', 0, 1, 21000, '', 21000, 21000, '\x00', 1
FROM generate_series(10, 30) n WHERE n NOT IN (12, 14, 15, 22);
INSERT INTO ethindex.logs (chain_id, block_number, log_index, transaction_index,
                           transaction_hash, block_hash, block_timestamp, address, data, removed)
SELECT 77, n, 0, 0, decode(lpad(to_hex(1000 + n), 64, '0'), 'hex'), decode(lpad(to_hex(n), 64, '0'), 'hex'),
       to_timestamp(n * 12), '\x02', '', false
FROM generate_series(10, 30) n WHERE n NOT IN (12, 13, 14, 15, 22);

-- the checkpoint says 10..30 are stored
UPDATE ethindex.chains SET next_block = 31, last_hash = decode(lpad(to_hex(30), 64, '0'), 'hex')
WHERE name = 'p';
SELECT * FROM ethindex.gaps('p');
SELECT * FROM ethindex.gaps('p', check_rows => true);
SELECT name, indexed_through, lag, confirmed_through, safe_through, finalized_through, reorgs
FROM ethindex.chain_status WHERE name = 'p';

-- refetch requests: within start_block .. indexed_through
SELECT ethindex.refetch('p', 14, 22) AS request;
SELECT chain, from_block, to_block, next_block, finished_at, error FROM ethindex.refetches;
SELECT ethindex.refetch('p', 9, 12);
SELECT ethindex.refetch('p', 30, 31);

-- finality marks, as the insert workers record them
UPDATE ethindex.chains SET safe_through = 28, finalized_through = 20 WHERE name = 'p';
SELECT ethindex.safe_through('p'), ethindex.finalized_through('p');
SELECT count(*) AS final_blocks FROM ethindex.blocks
WHERE chain_id = 77 AND number <= ethindex.finalized_through('p');

-- a registration over the data of an earlier one must say what to do with it
SELECT ethindex.remove_chain('p');
SELECT ethindex.add_chain('p2', ARRAY['http://127.0.0.1:1/'], chain_id => 77);
SELECT ethindex.add_chain('p2', ARRAY['http://127.0.0.1:1/'], chain_id => 77,
                          partition_size => 2000, existing_data => 'continue');
SELECT ethindex.add_chain('p2', ARRAY['http://127.0.0.1:1/'], chain_id => 77,
                          partition_size => 1000, existing_data => 'keep');
SELECT ethindex.add_chain('p2', ARRAY['http://127.0.0.1:1/'], chain_id => 77,
                          partition_size => 1000, existing_data => 'continue');
SELECT name, start_block, next_block, last_hash = decode(lpad(to_hex(30), 64, '0'), 'hex') AS last_hash_of_30
FROM ethindex.chains WHERE name = 'p2';
SELECT ethindex.remove_chain('p2');
SELECT ethindex.add_chain('p', ARRAY['http://127.0.0.1:1/'], chain_id => 77,
                          start_block => 10, partition_size => 1000, existing_data => 'continue');

-- removing the chain with its data removes its requests and reorganizations
INSERT INTO ethindex.reorgs (chain_id, chain, fork_block, fork_hash, depth, old_head_hash,
                             new_head_hash, orphaned_hashes, endpoint, detected_at)
VALUES (77, 'p', 29, '\x00', 1, '\x01', '\x02', '{"\\x01"}', 'http://127.0.0.1:1/', now());
SELECT ethindex.remove_chain('p', drop_data => true);
SELECT (SELECT count(*) FROM ethindex.refetches) AS refetches,
       (SELECT count(*) FROM ethindex.reorgs) AS reorgs,
       (SELECT count(*) FROM ethindex.partitions) AS partitions;
-- 'drop' deletes what an earlier registration left
SELECT ethindex._ensure_partitions(77, 1000, 10, 40);
SELECT ethindex.add_chain('p3', ARRAY['http://127.0.0.1:1/'], chain_id => 77, existing_data => 'drop');
SELECT (SELECT count(*) FROM ethindex.partitions) AS partitions,
       (SELECT next_block FROM ethindex.chains WHERE name = 'p3') AS next_block;
SELECT ethindex.remove_chain('p3');
