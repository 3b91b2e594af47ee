/* sql/ethindex--0.1--0.2.sql: update ethindex 0.1 to 0.2 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION ethindex UPDATE TO '0.2'" to load this file. \quit

/*
 * 0.2: chain_status.response_bytes, the memory of JSON-RPC responses the
 * chain's fetcher holds (limited by ethindex.max_bytes_in_flight).  The
 * view and the functions behind it get the column; the library serves the
 * 0.1 form of _runtime_state() too, so status reads work until this runs.
 * Privileges are those of 0.2's script.
 */
DROP VIEW chain_status;
DROP FUNCTION status();
DROP FUNCTION _runtime_state();

CREATE FUNCTION _runtime_state(
	OUT name text,
	OUT state text,
	OUT node_head bigint,
	OUT stored_through bigint,
	OUT blocks_per_second double precision,
	OUT transactions_per_second double precision,
	OUT queued_blocks integer,
	OUT queued_bytes bigint,
	OUT fetcher_pid integer,
	OUT writer_pids integer[],
	OUT endpoint text,
	OUT last_error text,
	OUT last_error_at timestamptz,
	OUT request_blocks integer,
	OUT request_window integer,
	OUT head_requests_per_minute double precision,
	OUT response_bytes bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ethindex_runtime_state'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION status(
	OUT name text,
	OUT chain_id bigint,
	OUT state text,
	OUT node_head bigint,
	OUT indexed_through bigint,
	OUT lag bigint,
	OUT blocks_per_second double precision,
	OUT transactions_per_second double precision,
	OUT last_error text,
	OUT last_error_at timestamptz,
	OUT start_block bigint,
	OUT queued_blocks integer,
	OUT queued_bytes bigint,
	OUT endpoint text,
	OUT fetcher_pid integer,
	OUT writer_pids integer[],
	OUT request_blocks integer,
	OUT request_window integer,
	OUT unindexed_partitions integer,
	OUT confirmed_through bigint,
	OUT safe_through bigint,
	OUT finalized_through bigint,
	OUT head_requests_per_minute double precision,
	OUT reorgs bigint,
	OUT response_bytes bigint)
RETURNS SETOF record
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.name,
		   c.chain_id,
		   CASE WHEN NOT c.enabled THEN 'stopped'
				ELSE coalesce(r.state, 'starting') END,
		   r.node_head,
		   CASE WHEN c.next_block > c.start_block THEN c.next_block - 1 END,
		   CASE WHEN c.next_block > c.start_block THEN r.node_head - (c.next_block - 1)
				ELSE r.node_head - c.start_block + 1 END,
		   coalesce(r.blocks_per_second, 0),
		   coalesce(r.transactions_per_second, 0),
		   r.last_error,
		   r.last_error_at,
		   c.start_block,
		   coalesce(r.queued_blocks, 0),
		   coalesce(r.queued_bytes, 0),
		   r.endpoint,
		   r.fetcher_pid,
		   r.writer_pids,
		   r.request_blocks,
		   r.request_window,
		   (SELECT count(*)::integer FROM ethindex.partitions p
			WHERE p.chain_id = c.chain_id AND p.indexed_at IS NULL),
		   CASE WHEN c.next_block > c.start_block AND r.node_head IS NOT NULL
				THEN least(c.next_block - 1, r.node_head - c.confirmations) END,
		   c.safe_through,
		   c.finalized_through,
		   r.head_requests_per_minute,
		   (SELECT count(*) FROM ethindex.reorgs g WHERE g.chain_id = c.chain_id),
		   r.response_bytes
	FROM ethindex.chains c
	LEFT JOIN ethindex._runtime_state() r ON r.name = c.name
	ORDER BY c.name
$$;

CREATE VIEW chain_status AS SELECT * FROM status();

REVOKE ALL ON FUNCTION _runtime_state(), status() FROM PUBLIC;
ALTER FUNCTION status() SECURITY DEFINER;
GRANT SELECT ON chain_status TO ethindex_monitor;
GRANT EXECUTE ON FUNCTION status() TO ethindex_monitor;
