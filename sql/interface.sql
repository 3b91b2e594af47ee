--
-- The SQL control interface: registering, starting, stopping and removing
-- chains, status, wait_for, and their errors.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ethindex;
RESET client_min_messages;
\set SHOW_CONTEXT never

-- registration and its checks
SELECT ethindex.add_chain('dev', ARRAY['http://127.0.0.1:1/'], chain_id => 31337,
                          start_block => 5, confirmations => 0);
SELECT name, chain_id, ethindex.endpoint_urls(name), start_block, confirmations, poll_interval,
       partition_size, batch_size, enabled, next_block, last_hash
FROM ethindex.chains;
SELECT ethindex.add_chain('dev', ARRAY['http://127.0.0.1:2/']);
SELECT ethindex.add_chain('dev2', ARRAY['http://127.0.0.1:2/'], chain_id => 31337);
SELECT ethindex.add_chain('bad name', ARRAY['http://127.0.0.1:2/']);
SELECT ethindex.add_chain('x', ARRAY[]::text[]);
SELECT ethindex.add_chain('x', ARRAY['ftp://example.org/']);
SELECT ethindex.add_chain('x', ARRAY['http://a/', 'http://b/', 'http://c/', 'http://d/',
                                     'http://e/', 'http://f/', 'http://g/', 'http://h/', 'http://i/']);
SELECT ethindex.add_chain('x', ARRAY['http://a/'], chain_id => 0);
SELECT ethindex.add_chain('x', ARRAY['http://a/'], start_block => -1);
SELECT ethindex.add_chain('x', ARRAY['http://a/'], confirmations => -3);
SELECT ethindex.add_chain('x', ARRAY['http://a/'], batch_size => 0);
SELECT ethindex.add_chain('x', ARRAY['http://a/'], partition_size => 10);
SELECT ethindex.add_chain('x', ARRAY['http://a/'], poll_interval => '1 ms');
SELECT ethindex.add_chain('x', ARRAY['http://a/'], max_reorg_depth => 0);
SELECT ethindex.add_chain('x', ARRAY['http://a/'], max_reorg_depth => NULL);

-- defaults of a new chain: at the head, reorganizations rolled back
SELECT ethindex.add_chain('defaults', ARRAY['http://127.0.0.1:3/']);
SELECT confirmations, poll_interval, max_reorg_depth, safe_through, finalized_through
FROM ethindex.chains WHERE name = 'defaults';

-- changing options; NULL keeps one
SELECT ethindex.alter_chain('defaults', confirmations => 2, max_reorg_depth => 128);
SELECT ethindex.alter_chain('defaults', rpc_urls => ARRAY['https://a.example/', 'http://b.example/'],
                            poll_interval => '250 ms');
SELECT ethindex.endpoint_urls(name), confirmations, poll_interval, max_reorg_depth
FROM ethindex.chains WHERE name = 'defaults';
SELECT ethindex.alter_chain('defaults', rpc_urls => ARRAY['ftp://a/']);
SELECT ethindex.alter_chain('defaults', max_reorg_depth => 10001);
SELECT ethindex.alter_chain('defaults', confirmations => -1);
SELECT ethindex.alter_chain('nope', confirmations => 1);
SELECT ethindex.remove_chain('defaults');

-- a chain without chain_id learns it from the node
SELECT ethindex.add_chain('other', ARRAY['https://user:secret@node.example/rpc?key=abc']);
SELECT name, chain_id IS NULL AS chain_id_unknown FROM ethindex.chains ORDER BY name;

-- status of stopped chains
SELECT name, chain_id, state, node_head, indexed_through, blocks_per_second,
       transactions_per_second, last_error, start_block, confirmed_through,
       safe_through, finalized_through, head_requests_per_minute, reorgs
FROM ethindex.chain_status;

-- finality marks and gaps of a chain with nothing stored yet
SELECT ethindex.finalized_through('dev'), ethindex.safe_through('dev'),
       ethindex.finalized_through('nope');
SELECT * FROM ethindex.gaps('dev');
SELECT * FROM ethindex.gaps('nope');

-- refetch takes only stored blocks
SELECT ethindex.refetch('dev', 5, 5);
SELECT ethindex.refetch('dev', 4, 5);
SELECT ethindex.refetch('dev', 6, 5);
SELECT ethindex.refetch('nope', 1, 2);

-- unknown chains
SELECT ethindex.start('nope');
SELECT ethindex.stop('nope');
SELECT ethindex.remove_chain('nope');
SELECT ethindex.wait_for('nope', 1);

-- wait_for times out with false when the block is not there
SELECT ethindex.wait_for('dev', 5, '50 milliseconds');

-- start and stop; the node is unreachable, so the chain never runs
SELECT ethindex.start('dev');
SELECT name, state IN ('starting', 'error') AS not_running FROM ethindex.chain_status WHERE name = 'dev';
SELECT ethindex.remove_chain('dev');
SELECT ethindex.stop('dev');
SELECT name, state FROM ethindex.chain_status WHERE name = 'dev';

-- removing
SELECT ethindex.remove_chain('dev', drop_data => true);
SELECT ethindex.remove_chain('other');
SELECT count(*) FROM ethindex.chains;

-- the data tables accept no rows outside a chain's partitions
INSERT INTO ethindex.withdrawals VALUES (1, 1, 0, 0, '\x00', 1);
