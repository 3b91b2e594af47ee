/* sql/ethindex--0.3.sql: schema, tables and SQL interface of ethindex 0.3 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION ethindex" to load this file. \quit

/*
 * Chains: one row per registered chain.  The configuration columns are
 * written by add_chain() and friends; next_block and last_hash are the
 * progress checkpoint, written only by the chain's writer in the same
 * transaction as the rows of the blocks it stores.
 */
CREATE TABLE chains (
	name			text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,48}$'),
	chain_id		bigint UNIQUE CHECK (chain_id > 0),
	start_block		bigint NOT NULL DEFAULT 0 CHECK (start_block >= 0),
	confirmations	integer NOT NULL DEFAULT 0 CHECK (confirmations >= 0),
	poll_interval	interval NOT NULL DEFAULT '50 milliseconds' CHECK (poll_interval >= '10 milliseconds' AND poll_interval <= '1 hour'),
	partition_size	bigint NOT NULL DEFAULT 100000 CHECK (partition_size >= 1000),
	batch_size		integer CHECK (batch_size BETWEEN 1 AND 1000),
	max_reorg_depth	integer NOT NULL DEFAULT 64 CHECK (max_reorg_depth BETWEEN 1 AND 10000),
	enabled			boolean NOT NULL DEFAULT false,
	next_block		bigint NOT NULL CHECK (next_block >= start_block),
	last_hash		bytea CHECK (octet_length(last_hash) = 32),
	safe_through	bigint,
	finalized_through bigint,
	created_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE chains IS 'Registered chains: configuration, the progress checkpoint (next_block, last_hash) and the finality marks';
COMMENT ON COLUMN chains.next_block IS 'First block not yet stored; every block from start_block to next_block - 1 is committed';
COMMENT ON COLUMN chains.last_hash IS 'Hash of block next_block - 1, NULL before the first block is stored';
COMMENT ON COLUMN chains.batch_size IS 'Blocks per JSON-RPC request; NULL lets the fetcher adapt it to the size of the blocks';
COMMENT ON COLUMN chains.poll_interval IS 'Head poll period while the next block is due (and the shortest wait between polls)';
COMMENT ON COLUMN chains.max_reorg_depth IS 'Deepest reorganization rolled back; a deeper one stops the chain in state error';
COMMENT ON COLUMN chains.safe_through IS 'Highest stored block at or below the node''s "safe" block, NULL if none';
COMMENT ON COLUMN chains.finalized_through IS 'Highest stored block at or below the node''s "finalized" block, NULL if none; never rolled back';

/*
 * The JSON-RPC endpoints of each chain, in the order they are used.  URLs
 * carry API keys (in the user part, the path or the query), so they are
 * kept apart from the rest of the configuration: row level security with
 * no policy hides every row from any role but the owner and superusers,
 * even one granted SELECT on every table of the schema.  Admins read them
 * with ethindex.endpoint_urls(); everything else shows scheme, host and
 * position only.
 */
CREATE TABLE endpoints (
	chain			text NOT NULL REFERENCES chains (name) ON DELETE CASCADE ON UPDATE CASCADE,
	position		integer NOT NULL CHECK (position BETWEEN 1 AND 8),
	url				text NOT NULL CHECK (url ~* '^https?://[^[:space:]]+$' AND length(url) <= 1000),
	PRIMARY KEY (chain, position)
);
ALTER TABLE endpoints ENABLE ROW LEVEL SECURITY;
COMMENT ON TABLE endpoints IS 'JSON-RPC endpoints of each chain (secrets: readable by the owner and superusers only)';

/*
 * Reorganizations rolled back: history, kept when they are long past.
 * Written by the insert worker that rolls a reorganization back, in the
 * same transaction.
 */
CREATE TABLE reorgs (
	id				bigserial PRIMARY KEY,
	chain_id		bigint NOT NULL,
	chain			text NOT NULL,
	fork_block		bigint NOT NULL,
	fork_hash		bytea,
	depth			integer NOT NULL CHECK (depth > 0),
	old_head_hash	bytea NOT NULL,
	new_head_hash	bytea NOT NULL,
	orphaned_hashes	bytea[] NOT NULL,
	endpoint		text NOT NULL,
	detected_at		timestamptz NOT NULL,
	rolled_back_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX reorgs_chain_id_idx ON reorgs (chain_id, id);
COMMENT ON TABLE reorgs IS 'Reorganizations rolled back: blocks fork_block + 1 .. fork_block + depth were replaced';
COMMENT ON COLUMN reorgs.fork_block IS 'Last block both branches share (NULL fork_hash: before start_block)';
COMMENT ON COLUMN reorgs.old_head_hash IS 'Hash of the stored block fork_block + depth, rolled back';
COMMENT ON COLUMN reorgs.new_head_hash IS 'Hash of the node''s block fork_block + depth on the new branch';
COMMENT ON COLUMN reorgs.orphaned_hashes IS 'Hashes of the blocks deleted, in block order';
COMMENT ON COLUMN reorgs.endpoint IS 'Endpoint that reported the new branch (without credentials)';

/*
 * Refetch requests (ethindex.refetch()): blocks from_block .. to_block are
 * fetched again and their rows replaced; next_block is the first block not
 * replaced yet.  Progress is written by the insert workers with the rows.
 */
CREATE TABLE refetches (
	id				bigserial PRIMARY KEY,
	chain			text NOT NULL REFERENCES chains (name) ON DELETE CASCADE,
	from_block		bigint NOT NULL,
	to_block		bigint NOT NULL,
	next_block		bigint NOT NULL,
	requested_at	timestamptz NOT NULL DEFAULT now(),
	finished_at		timestamptz,
	error			text,
	CHECK (from_block <= to_block AND next_block BETWEEN from_block AND to_block + 1)
);
CREATE INDEX refetches_pending_idx ON refetches (chain, id) WHERE finished_at IS NULL;
COMMENT ON TABLE refetches IS 'Block ranges to fetch again and replace (ethindex.refetch()); error is set when one failed';

/*
 * Data tables.  Every table starts with chain_id and is range-partitioned on
 * (chain_id, block number); partitions are created by _ensure_partitions().
 * Column order is part of the C code's contract (src/schema.c checks it at
 * writer start).
 */
CREATE TABLE blocks (
	chain_id				bigint NOT NULL,
	number					bigint NOT NULL,
	hash					bytea NOT NULL,
	parent_hash				bytea NOT NULL,
	nonce					bytea,
	sha3_uncles				bytea,
	logs_bloom				bytea,
	transactions_root		bytea,
	state_root				bytea,
	receipts_root			bytea,
	miner					bytea,
	difficulty				numeric(78,0),
	total_difficulty		numeric(78,0),
	extra_data				bytea,
	size					bigint,
	gas_limit				bigint NOT NULL,
	gas_used				bigint NOT NULL,
	timestamp				timestamptz NOT NULL,
	mix_hash				bytea,
	base_fee_per_gas		numeric(78,0),
	withdrawals_root		bytea,
	blob_gas_used			bigint,
	excess_blob_gas			bigint,
	parent_beacon_block_root bytea,
	requests_hash			bytea,
	uncles					bytea[] NOT NULL,
	transaction_count		integer NOT NULL,
	withdrawal_count		integer
) PARTITION BY RANGE (chain_id, number);

CREATE TABLE transactions (
	chain_id				bigint NOT NULL,
	block_number			bigint NOT NULL,
	transaction_index		integer NOT NULL,
	hash					bytea NOT NULL,
	block_hash				bytea NOT NULL,
	block_timestamp			timestamptz NOT NULL,
	type					smallint NOT NULL,
	from_address			bytea NOT NULL,
	to_address				bytea,
	nonce					bigint NOT NULL,
	value					numeric(78,0) NOT NULL,
	gas						bigint NOT NULL,
	gas_price				numeric(78,0),
	max_fee_per_gas			numeric(78,0),
	max_priority_fee_per_gas numeric(78,0),
	max_fee_per_blob_gas	numeric(78,0),
	input					bytea NOT NULL,
	tx_chain_id				bigint,
	access_list				jsonb,
	blob_versioned_hashes	bytea[],
	authorization_list		jsonb,
	v						numeric(78,0),
	r						numeric(78,0),
	s						numeric(78,0),
	y_parity				smallint,
	/* receipt fields */
	cumulative_gas_used		bigint NOT NULL,
	gas_used				bigint NOT NULL,
	effective_gas_price		numeric(78,0),
	contract_address		bytea,
	status					smallint,
	root					bytea,
	logs_bloom				bytea NOT NULL,
	blob_gas_used			bigint,
	blob_gas_price			numeric(78,0),
	log_count				integer NOT NULL
) PARTITION BY RANGE (chain_id, block_number);

CREATE TABLE logs (
	chain_id				bigint NOT NULL,
	block_number			bigint NOT NULL,
	log_index				integer NOT NULL,
	transaction_index		integer NOT NULL,
	transaction_hash		bytea NOT NULL,
	block_hash				bytea NOT NULL,
	block_timestamp			timestamptz NOT NULL,
	address					bytea NOT NULL,
	topic0					bytea,
	topic1					bytea,
	topic2					bytea,
	topic3					bytea,
	data					bytea NOT NULL,
	removed					boolean NOT NULL
) PARTITION BY RANGE (chain_id, block_number);

CREATE TABLE withdrawals (
	chain_id				bigint NOT NULL,
	block_number			bigint NOT NULL,
	index					bigint NOT NULL,
	validator_index			bigint NOT NULL,
	address					bytea NOT NULL,
	amount					numeric(78,0) NOT NULL
) PARTITION BY RANGE (chain_id, block_number);

COMMENT ON COLUMN withdrawals.amount IS 'Amount in Gwei, as the node returns it';
COMMENT ON COLUMN transactions.root IS 'Pre-Byzantium receipt state root (status is NULL then)';

/*
 * Partitions and their indexes.
 *
 * The partitioned parents have no indexes: PostgreSQL would build every
 * index of a parent on each new partition, and maintaining twelve indexes
 * row by row is what limits loading speed (docs/benchmarks.md).  Instead
 * each partition gets its primary key and secondary indexes from
 * _index_partition():
 *   - a partition that lies wholly in the backfill (its last block was
 *     already final on the node when it was created) is loaded without
 *     indexes, and indexed by the writer as soon as the checkpoint passes
 *     its last block;
 *   - any other partition (at or near the chain's head, or with
 *     ethindex.defer_indexes off) is indexed when it is created.
 * Rows of a partition being backfilled are visible at once, but queries on
 * it scan it sequentially until it is complete.
 */
CREATE TABLE partitions (
	chain_id	bigint NOT NULL,
	first_block	bigint NOT NULL,
	last_block	bigint NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	indexed_at	timestamptz,
	PRIMARY KEY (chain_id, first_block),
	CHECK (last_block >= first_block)
);
COMMENT ON TABLE partitions IS 'Block ranges of each chain, one partition of every data table each; indexed_at is NULL while the indexes of a backfill partition are deferred';

/* Serializes partition DDL of one chain between its insert workers. */
CREATE FUNCTION _lock_partitions(p_chain_id bigint)
RETURNS void
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_advisory_xact_lock(hashtextextended('ethindex partitions of chain ' || p_chain_id, 0))
$$;

/* Name of the partition of table "tbl" starting at block "first_block". */
CREATE FUNCTION _partition_name(tbl text, p_chain_id bigint, first_block bigint)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format('%s_%s_%s', tbl, p_chain_id, lpad(first_block::text, greatest(12, length(first_block::text)), '0'))
$$;

/*
 * _index_partition: create the primary keys and indexes of the partitions
 * of one chain starting at first_block, those that do not exist yet, and
 * mark the range indexed.  Returns the number of indexes built, or -1 when
 * p_wait is false and another session is indexing the range.  Hashes are looked up by equality only: hash
 * indexes, which cost 12-20 % less than B-trees on random 32-byte keys.
 * Uses maintenance_work_mem and max_parallel_maintenance_workers.  No
 * ANALYZE here: autovacuum analyzes a freshly loaded partition within a
 * minute or so (it cost a third as much as the index builds).
 */
CREATE FUNCTION _index_partition(p_chain_id bigint, p_first_block bigint,
								 p_wait boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	def		text[];
	tbl		text;
	pname	text;
	created	integer := 0;
	lockkey	bigint := hashtextextended(format('ethindex index of chain %s at %s', p_chain_id, p_first_block), 0);
BEGIN
	/* one builder per block range; the other insert workers go on */
	IF p_wait THEN
		PERFORM pg_advisory_xact_lock(lockkey);
	ELSIF NOT pg_try_advisory_xact_lock(lockkey) THEN
		RETURN -1;
	END IF;
	/*
	 * All indexes first, primary keys as unique indexes (SHARE locks:
	 * readers go on); then the primary key constraints, which need ACCESS
	 * EXCLUSIVE locks, held only from there to the commit.
	 */
	FOREACH def SLICE 1 IN ARRAY ARRAY[
		['blocks', 'pkey', '(chain_id, number)'],
		['blocks', 'hash_idx', 'USING hash (hash)'],
		['transactions', 'pkey', '(chain_id, block_number, transaction_index)'],
		['transactions', 'hash_idx', 'USING hash (hash)'],
		['transactions', 'from_idx', '(from_address, block_number)'],
		['transactions', 'to_idx', '(to_address, block_number)'],
		['logs', 'pkey', '(chain_id, block_number, log_index)'],
		['logs', 'address_topic0_idx', '(address, topic0, block_number)'],
		['logs', 'topic0_idx', '(topic0, block_number)'],
		['logs', 'transaction_hash_idx', 'USING hash (transaction_hash)'],
		['withdrawals', 'pkey', '(chain_id, block_number, index)'],
		['withdrawals', 'address_idx', '(address, block_number)']]
	LOOP
		pname := ethindex._partition_name(def[1], p_chain_id, p_first_block);
		IF to_regclass(format('ethindex.%I', pname)) IS NULL THEN
			RAISE EXCEPTION 'partition ethindex.% does not exist', pname
				USING ERRCODE = 'undefined_table';
		END IF;
		IF to_regclass(format('ethindex.%I', pname || '_' || def[2])) IS NULL THEN
			EXECUTE format('CREATE %s INDEX %I ON ethindex.%I %s',
						   CASE WHEN def[2] = 'pkey' THEN 'UNIQUE' ELSE '' END,
						   pname || '_' || def[2], pname, def[3]);
			created := created + 1;
		END IF;
	END LOOP;
	FOREACH tbl IN ARRAY ARRAY['blocks', 'transactions', 'logs', 'withdrawals'] LOOP
		pname := ethindex._partition_name(tbl, p_chain_id, p_first_block);
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
					   WHERE conrelid = format('ethindex.%I', pname)::regclass AND contype = 'p') THEN
			EXECUTE format('ALTER TABLE ethindex.%I ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I',
						   pname, pname || '_pkey', pname || '_pkey');
		END IF;
	END LOOP;
	UPDATE ethindex.partitions SET indexed_at = now()
	WHERE chain_id = p_chain_id AND first_block = p_first_block AND indexed_at IS NULL;
	RETURN created;
END;
$$;

/*
 * _ensure_partitions: create the partitions of all data tables that cover
 * blocks [from_block, to_block] of a chain, and register them in
 * ethindex.partitions.  Partitions created whose last block is at or below
 * defer_through are left without indexes (backfill); the others are indexed
 * now.  Idempotent.  Partition names are <table>_<chain_id>_<first block,
 * zero-padded>.
 */
CREATE FUNCTION _ensure_partitions(p_chain_id bigint, p_partition_size bigint,
								   p_from_block bigint, p_to_block bigint,
								   p_defer_through bigint DEFAULT -1)
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lo		bigint := (p_from_block / p_partition_size) * p_partition_size;
	hi		bigint;
	tbl		text;
	pname	text;
	created	integer := 0;
	fresh	boolean;
BEGIN
	PERFORM ethindex._lock_partitions(p_chain_id);
	WHILE lo <= p_to_block LOOP
		hi := lo + p_partition_size;
		fresh := false;
		FOREACH tbl IN ARRAY ARRAY['blocks', 'transactions', 'logs', 'withdrawals'] LOOP
			pname := ethindex._partition_name(tbl, p_chain_id, lo);
			IF to_regclass(format('ethindex.%I', pname)) IS NULL THEN
				/*
				 * Created alone, then attached: ATTACH PARTITION takes a
				 * SHARE UPDATE EXCLUSIVE lock on the parent, which readers
				 * and writers of the table do not conflict with (CREATE
				 * TABLE ... PARTITION OF takes ACCESS EXCLUSIVE: a long
				 * query on the table would stall the chain, and every query
				 * after it would wait too).
				 */
				EXECUTE format('CREATE TABLE ethindex.%I (LIKE ethindex.%I)', pname, tbl);
				EXECUTE format('ALTER TABLE ethindex.%I ATTACH PARTITION ethindex.%I FOR VALUES FROM (%s, %s) TO (%s, %s)',
							   tbl, pname, p_chain_id, lo, p_chain_id, hi);
				created := created + 1;
				fresh := true;
			END IF;
		END LOOP;
		INSERT INTO ethindex.partitions (chain_id, first_block, last_block)
		VALUES (p_chain_id, lo, hi - 1)
		ON CONFLICT (chain_id, first_block) DO NOTHING;
		/*
		 * Only new partitions: one that exists may hold rows of batches
		 * not committed yet, and an index build would wait for them (an
		 * unindexed one is indexed once the checkpoint passes its end).
		 */
		IF fresh AND hi - 1 > p_defer_through THEN
			PERFORM ethindex._index_partition(p_chain_id, lo);
		END IF;
		lo := hi;
	END LOOP;
	RETURN created;
END;
$$;

/*
 * _discard_above_checkpoint: delete the rows of blocks at or above the
 * checkpoint.  Insert workers commit batches out of order; a batch committed
 * ahead of chains.next_block whose predecessors were lost in a crash or a
 * stop is removed by insert worker 0 at start, before the fetcher starts
 * again from the checkpoint.  Every batch stores its blocks rows together with the other
 * tables' rows, so the blocks table tells whether anything is there.
 */
CREATE FUNCTION _discard_above_checkpoint(p_chain_id bigint, p_next_block bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	discarded	bigint;
	tbl			text;
BEGIN
	DELETE FROM ethindex.blocks WHERE chain_id = p_chain_id AND number >= p_next_block;
	GET DIAGNOSTICS discarded = ROW_COUNT;
	IF discarded > 0 THEN
		FOREACH tbl IN ARRAY ARRAY['transactions', 'logs', 'withdrawals'] LOOP
			EXECUTE format('DELETE FROM ethindex.%I WHERE chain_id = $1 AND block_number >= $2', tbl)
				USING p_chain_id, p_next_block;
		END LOOP;
	END IF;
	RETURN discarded;
END;
$$;

/* Drop every partition of one chain's data. */
CREATE FUNCTION _drop_partitions(p_chain_id bigint)
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	part	regclass;
	dropped	integer := 0;
BEGIN
	PERFORM ethindex._lock_partitions(p_chain_id);
	FOR part IN
		SELECT c.oid::regclass
		FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		JOIN pg_namespace n ON n.oid = p.relnamespace
		WHERE n.nspname = 'ethindex'
		  AND p.relname IN ('blocks', 'transactions', 'logs', 'withdrawals')
		  AND c.relname ~ ('^[a-z]+_' || p_chain_id || '_[0-9]+$')
	LOOP
		EXECUTE format('DROP TABLE %s', part);
		dropped := dropped + 1;
	END LOOP;
	DELETE FROM ethindex.partitions WHERE chain_id = p_chain_id;
	RETURN dropped;
END;
$$;

/* C functions */
CREATE FUNCTION _assert_loaded()
RETURNS void
AS 'MODULE_PATHNAME', 'ethindex_assert_loaded'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION _wake_launcher_at_commit()
RETURNS void
AS 'MODULE_PATHNAME', 'ethindex_wake_launcher_at_commit'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

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

CREATE FUNCTION _wake_fetcher_at_commit(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ethindex_wake_fetcher_at_commit'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;


/*
 * _decode_block: run the ingestion decoder on one block and its receipts and
 * show every decoded value as text.  For tests and for inspecting a node's
 * response; raises the same errors the fetcher records.
 */
CREATE FUNCTION _decode_block(chain_id bigint, block_number bigint,
							  block_json text, receipts_json text)
RETURNS TABLE (table_name text, row_number integer, column_name text, value text)
AS 'MODULE_PATHNAME', 'ethindex_decode_block'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

/*
 * _split_response: the fetcher's JSON-RPC response splitter and reply
 * matching on one response body.  Without ids, every reply in the order of
 * the body (id NULL where the envelope has none); with ids, one row per id,
 * the reply the fetcher takes for that request (NULL columns: none).  For
 * tests and for inspecting a node's response; raises the errors the fetcher
 * records.
 */
CREATE FUNCTION _split_response(response text, ids bigint[] DEFAULT NULL)
RETURNS TABLE (id bigint, is_error boolean, error_code integer, error_message text,
			   result text)
AS 'MODULE_PATHNAME', 'ethindex_split_response'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

/*
 * _decode_speed: seconds taken by "iterations" decodes of a block and its
 * receipts, and by as many jansson DOM parses of the same bytes (benchmark).
 */
CREATE FUNCTION _decode_speed(block_number bigint, block_json text, receipts_json text,
							  iterations integer,
							  OUT decoder_seconds double precision,
							  OUT jansson_seconds double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'ethindex_decode_speed'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

/*
 * _check_chain_options: the checks of the options add_chain() and
 * alter_chain() share; NULL arguments are not checked.
 */
CREATE FUNCTION _check_chain_options(name text, rpc_urls text[], confirmations integer,
									 poll_interval interval, max_reorg_depth integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	url text;
BEGIN
	IF rpc_urls IS NOT NULL THEN
		IF cardinality(rpc_urls) = 0 THEN
			RAISE EXCEPTION 'chain "%" needs at least one JSON-RPC endpoint', name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF cardinality(rpc_urls) > 8 THEN
			RAISE EXCEPTION 'chain "%" has % JSON-RPC endpoints, the maximum is 8', name, cardinality(rpc_urls)
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOREACH url IN ARRAY rpc_urls LOOP
			IF url IS NULL OR url !~* '^https?://[^[:space:]]+$' OR length(url) > 1000 THEN
				RAISE EXCEPTION 'invalid JSON-RPC endpoint URL "%"', url
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Endpoints are http:// or https:// URLs.';
			END IF;
		END LOOP;
	END IF;
	IF confirmations < 0 THEN
		RAISE EXCEPTION 'confirmations must be zero or positive, not %', confirmations
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF poll_interval < '10 milliseconds' OR poll_interval > '1 hour' THEN
		RAISE EXCEPTION 'poll_interval must be between 10 milliseconds and 1 hour, not %', poll_interval
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF max_reorg_depth NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'max_reorg_depth must be between 1 and 10000, not %', max_reorg_depth
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END;
$$;

/*
 * add_chain: register a chain.  It starts stopped; start() begins indexing.
 */
CREATE FUNCTION add_chain(name text,
						  rpc_urls text[],
						  chain_id bigint DEFAULT NULL,
						  start_block bigint DEFAULT 0,
						  confirmations integer DEFAULT 0,
						  poll_interval interval DEFAULT '50 milliseconds',
						  partition_size bigint DEFAULT 100000,
						  batch_size integer DEFAULT NULL,
						  max_reorg_depth integer DEFAULT 64,
						  existing_data text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	stored		record;
	next_block	bigint := start_block;
	last_hash	bytea;
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9_.-]{1,48}$' THEN
		RAISE EXCEPTION 'invalid chain name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A chain name has 1 to 48 letters, digits, "_", "." or "-".';
	END IF;
	IF rpc_urls IS NULL THEN
		RAISE EXCEPTION 'chain "%" needs at least one JSON-RPC endpoint', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF confirmations IS NULL OR poll_interval IS NULL OR max_reorg_depth IS NULL THEN
		RAISE EXCEPTION 'confirmations, poll_interval and max_reorg_depth of chain "%" cannot be NULL', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM ethindex._check_chain_options(name, rpc_urls, confirmations, poll_interval,
										  max_reorg_depth);
	IF chain_id IS NOT NULL AND chain_id <= 0 THEN
		RAISE EXCEPTION 'invalid chain id %', chain_id
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF start_block IS NULL OR start_block < 0 THEN
		RAISE EXCEPTION 'start_block must be zero or positive, not %', coalesce(start_block::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF batch_size NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'batch_size must be between 1 and 1000 or NULL (adaptive), not %', batch_size
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF partition_size IS NULL OR partition_size < 1000 THEN
		RAISE EXCEPTION 'partition_size must be at least 1000 blocks, not %', coalesce(partition_size::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM ethindex.chains c WHERE c.name = add_chain.name) THEN
		RAISE EXCEPTION 'chain "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	IF chain_id IS NOT NULL AND EXISTS (SELECT 1 FROM ethindex.chains c WHERE c.chain_id = add_chain.chain_id) THEN
		RAISE EXCEPTION 'chain id % is already registered', chain_id
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('Chain "%s" has chain id %s.',
								  (SELECT c.name FROM ethindex.chains c WHERE c.chain_id = add_chain.chain_id), chain_id);
	END IF;
	IF existing_data NOT IN ('continue', 'drop') THEN
		RAISE EXCEPTION 'existing_data must be ''continue'' or ''drop'', not "%"', existing_data
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF chain_id IS NOT NULL THEN
		SELECT * INTO stored FROM ethindex._existing_data(chain_id, partition_size, existing_data);
		IF stored.last_block IS NOT NULL THEN
			/* continue after the stored blocks (gaps() tells if any are missing) */
			start_block := stored.first_block;
			next_block := stored.last_block + 1;
			last_hash := stored.last_hash;
		END IF;
	END IF;
	INSERT INTO ethindex.chains (name, chain_id, start_block, confirmations,
								 poll_interval, partition_size, batch_size, max_reorg_depth,
								 next_block, last_hash)
	VALUES (name, chain_id, start_block, confirmations,
			poll_interval, partition_size, batch_size, max_reorg_depth,
			next_block, last_hash);
	INSERT INTO ethindex.endpoints (chain, position, url)
	SELECT add_chain.name, u.position, u.url
	FROM unnest(rpc_urls) WITH ORDINALITY AS u(url, position);
END;
$$;

/*
 * _existing_data: what an earlier registration left of a chain id, for a
 * new registration with the given partition_size.  Without "what" (NULL),
 * stored blocks or partitions are an error: the new chain would start at
 * its start_block and delete them.  'drop' drops them and returns nothing;
 * 'continue' returns the stored range (first and last block, the last one's
 * hash), where the new chain goes on.
 */
CREATE FUNCTION _existing_data(p_chain_id bigint, p_partition_size bigint, what text,
							   OUT first_block bigint, OUT last_block bigint,
							   OUT last_hash bytea)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sizes	bigint[];
BEGIN
	IF what = 'drop' THEN
		PERFORM ethindex._drop_partitions(p_chain_id);
		DELETE FROM ethindex.reorgs r WHERE r.chain_id = p_chain_id;
		RETURN;
	END IF;
	SELECT array_agg(DISTINCT p.last_block - p.first_block + 1) INTO sizes
	FROM ethindex.partitions p WHERE p.chain_id = p_chain_id;
	SELECT min(b.number), max(b.number) INTO first_block, last_block
	FROM ethindex.blocks b WHERE b.chain_id = p_chain_id;
	IF last_block IS NOT NULL AND what IS NULL THEN
		RAISE EXCEPTION 'chain id % has data from an earlier registration', p_chain_id
			USING ERRCODE = 'object_in_use',
				  DETAIL = format('Blocks %s to %s are stored.', first_block, last_block),
				  HINT = 'Register it with existing_data => ''continue'' to index on after the stored blocks, or ''drop'' to delete them.';
	END IF;
	IF sizes <> ARRAY[p_partition_size] THEN
		RAISE EXCEPTION 'chain id % has partitions of % blocks from an earlier registration', p_chain_id, sizes[1]
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('Register it with partition_size => %s, or with existing_data => ''drop''.', sizes[1]);
	END IF;
	IF last_block IS NOT NULL THEN
		SELECT b.hash INTO last_hash FROM ethindex.blocks b
		WHERE b.chain_id = p_chain_id AND b.number = last_block;
	END IF;
END;
$$;

/*
 * alter_chain: change options of a registered chain; NULL leaves one as it
 * is.  A started chain's workers read them when they next start (stop()
 * and start() the chain).
 */
CREATE FUNCTION alter_chain(name text,
							rpc_urls text[] DEFAULT NULL,
							confirmations integer DEFAULT NULL,
							poll_interval interval DEFAULT NULL,
							max_reorg_depth integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM ethindex._chain_must_exist(name);
	PERFORM ethindex._check_chain_options(name, rpc_urls, confirmations, poll_interval,
										  max_reorg_depth);
	IF rpc_urls IS NOT NULL THEN
		DELETE FROM ethindex.endpoints e WHERE e.chain = alter_chain.name;
		INSERT INTO ethindex.endpoints (chain, position, url)
		SELECT alter_chain.name, u.position, u.url
		FROM unnest(rpc_urls) WITH ORDINALITY AS u(url, position);
	END IF;
	UPDATE ethindex.chains c
	SET confirmations = coalesce(alter_chain.confirmations, c.confirmations),
		poll_interval = coalesce(alter_chain.poll_interval, c.poll_interval),
		max_reorg_depth = coalesce(alter_chain.max_reorg_depth, c.max_reorg_depth)
	WHERE c.name = alter_chain.name;
END;
$$;

CREATE FUNCTION _chain_must_exist(p_name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM ethindex.chains WHERE name = p_name) THEN
		RAISE EXCEPTION 'chain "%" does not exist', p_name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Register it with ethindex.add_chain().';
	END IF;
END;
$$;

CREATE FUNCTION start(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM ethindex._chain_must_exist(name);
	PERFORM ethindex._assert_loaded();
	UPDATE ethindex.chains c SET enabled = true WHERE c.name = start.name;
	PERFORM ethindex._wake_launcher_at_commit();
END;
$$;

CREATE FUNCTION stop(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM ethindex._chain_must_exist(name);
	UPDATE ethindex.chains c SET enabled = false WHERE c.name = stop.name;
	IF current_setting('ethindex.database', true) IS NOT NULL THEN
		PERFORM ethindex._wake_launcher_at_commit();
	END IF;
END;
$$;

CREATE FUNCTION remove_chain(name text, drop_data boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ch			ethindex.chains;
	deadline	timestamptz := clock_timestamp() + interval '10 seconds';
BEGIN
	SELECT * INTO ch FROM ethindex.chains c WHERE c.name = remove_chain.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'chain "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF ch.enabled THEN
		RAISE EXCEPTION 'cannot remove chain "%" while it is started', name
			USING ERRCODE = 'object_in_use',
				  HINT = format('Call ethindex.stop(%L) first.', name);
	END IF;
	/* a stopped chain's workers exit within a second or so of stop()'s commit */
	WHILE EXISTS (SELECT 1 FROM ethindex._runtime_state() r WHERE r.name = remove_chain.name) LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'the workers of chain "%" are still running', name
				USING ERRCODE = 'object_in_use',
					  HINT = 'They exit once ethindex.stop() has committed; call remove_chain() in a transaction of its own after it.';
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	IF coalesce(drop_data, false) AND ch.chain_id IS NOT NULL THEN
		PERFORM ethindex._drop_partitions(ch.chain_id);
		DELETE FROM ethindex.reorgs r WHERE r.chain_id = ch.chain_id;
	END IF;
	DELETE FROM ethindex.chains c WHERE c.name = remove_chain.name;
END;
$$;

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

/*
 * wait_for: wait until every block of the chain up to and including "block"
 * is committed.  Returns false on timeout.
 */
CREATE FUNCTION wait_for(name text, block bigint, timeout interval DEFAULT '60 seconds')
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	deadline	timestamptz := clock_timestamp() + timeout;
	through		bigint;
BEGIN
	PERFORM ethindex._chain_must_exist(name);
	LOOP
		SELECT c.next_block - 1 INTO through FROM ethindex.chains c WHERE c.name = wait_for.name;
		IF through IS NULL THEN
			RAISE EXCEPTION 'chain "%" was removed while waiting', name
				USING ERRCODE = 'undefined_object';
		END IF;
		IF through >= block THEN
			RETURN true;
		END IF;
		IF clock_timestamp() >= deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
END;
$$;

/*
 * finalized_through, safe_through: the highest stored block the node
 * reports as finalized (safe), NULL if none.  For reading only final rows:
 *   WHERE chain_id = 1 AND block_number <= ethindex.finalized_through('mainnet')
 */
CREATE FUNCTION finalized_through(name text)
RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.finalized_through FROM ethindex.chains c WHERE c.name = finalized_through.name
$$;

CREATE FUNCTION safe_through(name text)
RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.safe_through FROM ethindex.chains c WHERE c.name = safe_through.name
$$;

/*
 * gaps: block ranges between start_block and indexed_through that are not
 * stored (there should be none).  With check_rows, also blocks whose
 * transactions, logs or withdrawals are not all there (by the counts their
 * blocks and transactions rows record).
 */
CREATE FUNCTION gaps(name text, check_rows boolean DEFAULT false)
RETURNS TABLE (first_block bigint, last_block bigint, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ch		ethindex.chains;
	through	bigint;
BEGIN
	SELECT * INTO ch FROM ethindex.chains c WHERE c.name = gaps.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'chain "%" does not exist', gaps.name
			USING ERRCODE = 'undefined_object';
	END IF;
	through := ch.next_block - 1;
	IF ch.chain_id IS NULL OR through < ch.start_block THEN
		RETURN;
	END IF;
	RETURN QUERY
	SELECT s.number + 1, s.next - 1, 'missing blocks'::text
	FROM (SELECT b.number,
				 lead(b.number, 1, through + 1) OVER (ORDER BY b.number) AS next
		  FROM (SELECT ch.start_block - 1 AS number
				UNION ALL
				SELECT bl.number FROM ethindex.blocks bl
				WHERE bl.chain_id = ch.chain_id
				  AND bl.number BETWEEN ch.start_block AND through) b) s
	WHERE s.next > s.number + 1
	ORDER BY 1;
	IF NOT coalesce(check_rows, false) THEN
		RETURN;
	END IF;
	RETURN QUERY
	SELECT min(bad.number), max(bad.number), 'missing or extra rows'::text
	FROM (SELECT b.number, b.number - row_number() OVER (ORDER BY b.number) AS island
		  FROM ethindex.blocks b
		  LEFT JOIN (SELECT t.block_number, count(*) AS n, sum(t.log_count) AS logs
					 FROM ethindex.transactions t
					 WHERE t.chain_id = ch.chain_id
					   AND t.block_number BETWEEN ch.start_block AND through
					 GROUP BY 1) tx ON tx.block_number = b.number
		  LEFT JOIN (SELECT l.block_number, count(*) AS n
					 FROM ethindex.logs l
					 WHERE l.chain_id = ch.chain_id
					   AND l.block_number BETWEEN ch.start_block AND through
					 GROUP BY 1) lg ON lg.block_number = b.number
		  LEFT JOIN (SELECT w.block_number, count(*) AS n
					 FROM ethindex.withdrawals w
					 WHERE w.chain_id = ch.chain_id
					   AND w.block_number BETWEEN ch.start_block AND through
					 GROUP BY 1) wd ON wd.block_number = b.number
		  WHERE b.chain_id = ch.chain_id
			AND b.number BETWEEN ch.start_block AND through
			AND (coalesce(tx.n, 0) <> b.transaction_count
				 OR coalesce(lg.n, 0) <> coalesce(tx.logs, 0)
				 OR coalesce(wd.n, 0) <> coalesce(b.withdrawal_count, 0))) bad
	GROUP BY bad.island
	ORDER BY 1;
END;
$$;

/*
 * refetch: fetch blocks from_block .. to_block again and replace their rows
 * with what the node says now, batch by batch (the chain must be started).
 * Returns the id of the request in ethindex.refetches, whose finished_at is
 * set when it is done (and error when it failed).
 */
CREATE FUNCTION refetch(name text, from_block bigint, to_block bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ch			ethindex.chains;
	request_id	bigint;
BEGIN
	SELECT * INTO ch FROM ethindex.chains c WHERE c.name = refetch.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'chain "%" does not exist', refetch.name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF from_block > to_block OR from_block < ch.start_block THEN
		RAISE EXCEPTION 'invalid block range % to % for chain "%"', from_block, to_block, refetch.name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The range must lie between start_block %s and indexed_through.', ch.start_block);
	END IF;
	IF ch.next_block = ch.start_block THEN
		RAISE EXCEPTION 'chain "%" has no stored blocks yet', refetch.name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF to_block >= ch.next_block THEN
		RAISE EXCEPTION 'block % of chain "%" is above indexed_through %', to_block, refetch.name,
			ch.next_block - 1
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Blocks above indexed_through are fetched by the chain itself.';
	END IF;
	INSERT INTO ethindex.refetches (chain, from_block, to_block, next_block)
	VALUES (refetch.name, refetch.from_block, refetch.to_block, refetch.from_block)
	RETURNING refetches.id INTO request_id;
	PERFORM ethindex._wake_fetcher_at_commit(refetch.name);
	RETURN request_id;
END;
$$;

/*
 * endpoint_urls: the JSON-RPC endpoints of a chain as registered, keys and
 * all (for admins; status and logs show scheme, host and position only).
 */
CREATE FUNCTION endpoint_urls(name text)
RETURNS text[]
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT array_agg(e.url ORDER BY e.position) FROM ethindex.endpoints e
	WHERE e.chain = endpoint_urls.name
$$;

/*
 * pg_dump dumps the rows of these tables (configuration, progress, history);
 * the partitions of the data tables are ordinary tables and dumped anyway.
 */
SELECT pg_catalog.pg_extension_config_dump('chains', '');
SELECT pg_catalog.pg_extension_config_dump('endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('partitions', '');
SELECT pg_catalog.pg_extension_config_dump('reorgs', '');
SELECT pg_catalog.pg_extension_config_dump('reorgs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('refetches', '');
SELECT pg_catalog.pg_extension_config_dump('refetches_id_seq', '');

/*
 * Privileges.  Nothing here is for PUBLIC.  Three roles, created when
 * missing (roles belong to the cluster: they stay when the extension is
 * dropped, and serve every database):
 *   ethindex_reader   the data tables and ethindex.reorgs; wait_for(),
 *                     finalized_through(), safe_through()
 *   ethindex_monitor  chain_status and status(), ethindex.chains (which
 *                     holds no secret), partitions, refetches, gaps();
 *                     pg_monitor is made a member
 *   ethindex_admin    both, and the control functions: add_chain(),
 *                     alter_chain(), start(), stop(), remove_chain(),
 *                     refetch(), endpoint_urls()
 * The functions they call run as the extension's owner (SECURITY DEFINER,
 * search_path pinned), so that nobody but the owner needs, or has, DML on
 * the configuration: what the control functions check cannot be bypassed.
 */
DO $$
DECLARE
	r	text;
BEGIN
	FOREACH r IN ARRAY ARRAY['ethindex_reader', 'ethindex_monitor', 'ethindex_admin'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END;
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ethindex FROM PUBLIC;

ALTER FUNCTION add_chain(text, text[], bigint, bigint, integer, interval, bigint, integer, integer, text) SECURITY DEFINER;
ALTER FUNCTION alter_chain(text, text[], integer, interval, integer) SECURITY DEFINER;
ALTER FUNCTION start(text) SECURITY DEFINER;
ALTER FUNCTION stop(text) SECURITY DEFINER;
ALTER FUNCTION remove_chain(text, boolean) SECURITY DEFINER;
ALTER FUNCTION refetch(text, bigint, bigint) SECURITY DEFINER;
ALTER FUNCTION endpoint_urls(text) SECURITY DEFINER;
ALTER FUNCTION status() SECURITY DEFINER;
ALTER FUNCTION wait_for(text, bigint, interval) SECURITY DEFINER;
ALTER FUNCTION gaps(text, boolean) SECURITY DEFINER;
ALTER FUNCTION finalized_through(text) SECURITY DEFINER;
ALTER FUNCTION safe_through(text) SECURITY DEFINER;

GRANT USAGE ON SCHEMA ethindex TO ethindex_reader, ethindex_monitor, ethindex_admin;
GRANT SELECT ON blocks, transactions, logs, withdrawals, reorgs TO ethindex_reader;
GRANT EXECUTE ON FUNCTION wait_for(text, bigint, interval), finalized_through(text),
	safe_through(text) TO ethindex_reader;
GRANT SELECT ON chain_status, chains, partitions, refetches, reorgs TO ethindex_monitor;
GRANT EXECUTE ON FUNCTION status(), gaps(text, boolean), wait_for(text, bigint, interval),
	finalized_through(text), safe_through(text) TO ethindex_monitor;
GRANT ethindex_reader, ethindex_monitor TO ethindex_admin;
GRANT ethindex_monitor TO pg_monitor;
GRANT EXECUTE ON FUNCTION
	add_chain(text, text[], bigint, bigint, integer, interval, bigint, integer, integer, text),
	alter_chain(text, text[], integer, interval, integer), start(text), stop(text),
	remove_chain(text, boolean), refetch(text, bigint, bigint), endpoint_urls(text)
	TO ethindex_admin;
