--
-- The extension's objects: tables and their columns (the contract of the
-- data model), indexes, functions.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ethindex;
RESET client_min_messages;

SELECT c.relname, c.relkind, pg_get_partkeydef(c.oid) AS partition_key
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'ethindex' AND c.relkind IN ('r', 'p', 'v')
ORDER BY c.relname;

SELECT table_name, ordinal_position AS pos, column_name,
       format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
FROM information_schema.columns col
JOIN pg_attribute a ON a.attrelid = ('ethindex.' || col.table_name)::regclass
                   AND a.attname = col.column_name
WHERE col.table_schema = 'ethindex'
  AND col.table_name IN ('blocks', 'transactions', 'logs', 'withdrawals')
ORDER BY table_name, pos;

-- the partitioned parents have no indexes: each partition has its own
SELECT count(*) AS parent_indexes
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE c.relnamespace = 'ethindex'::regnamespace AND c.relkind = 'p';

SELECT p.proname, p.pronargs AS nargs,
       p.provolatile, p.proisstrict
FROM pg_proc p
WHERE p.pronamespace = 'ethindex'::regnamespace
ORDER BY p.proname;

-- partitions are created on demand and cover a chain's block range; those
-- wholly at or below the last argument (backfill) get no indexes yet
SELECT ethindex._ensure_partitions(5, 1000, 1500, 2100, 1999);
SELECT ethindex._ensure_partitions(5, 1000, 1500, 2100, 1999);
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
FROM pg_class c
WHERE c.relnamespace = 'ethindex'::regnamespace AND c.relispartition
ORDER BY c.relname;
SELECT chain_id, first_block, last_block, indexed_at IS NOT NULL AS indexed
FROM ethindex.partitions ORDER BY 1, 2;
SELECT tablename, indexname, indexdef
FROM pg_indexes
WHERE schemaname = 'ethindex' AND tablename ~ '_5_'
ORDER BY 1, 2;
SELECT conrelid::regclass, conname, contype
FROM pg_constraint
WHERE connamespace = 'ethindex'::regnamespace AND conrelid::regclass::text ~ '_5_'
ORDER BY conrelid::regclass::text, conname;
-- indexing a partition is idempotent and marks it indexed
SELECT ethindex._index_partition(5, 1000);
SELECT ethindex._index_partition(5, 1000);
SELECT first_block, indexed_at IS NOT NULL AS indexed
FROM ethindex.partitions WHERE chain_id = 5 ORDER BY 1;
SELECT count(*) AS indexes
FROM pg_indexes
WHERE schemaname = 'ethindex' AND tablename ~ '_5_000000001000$';
SELECT ethindex._index_partition(5, 7000);
SELECT ethindex._drop_partitions(5);
SELECT count(*) FROM pg_class c
WHERE c.relnamespace = 'ethindex'::regnamespace AND c.relispartition;
SELECT count(*) FROM ethindex.partitions WHERE chain_id = 5;
