/* sql/ethindex--0.2--0.3.sql: update ethindex 0.2 to 0.3 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION ethindex UPDATE TO '0.3'" to load this file. \quit

/*
 * 0.3: _split_response(), the fetcher's JSON-RPC response splitter and
 * reply matching as a SQL function.  Privileges are those of 0.3's script.
 */
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

REVOKE ALL ON FUNCTION _split_response(text, bigint[]) FROM PUBLIC;
