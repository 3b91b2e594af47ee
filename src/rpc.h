/*-------------------------------------------------------------------------
 *
 * rpc.h
 *	  HTTP transport of JSON-RPC requests with libcurl's multi interface,
 *	  driven from the worker's wait loop.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/rpc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_RPC_H
#define ETHINDEX_RPC_H

#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"

/* One HTTP POST of a JSON-RPC body (a single call or a batch). */
typedef struct RpcRequest
{
	const char *url;
	const char *display;		/* the endpoint as errors show it */
	MemoryContext context;		/* holds the response */
	StringInfoData body;		/* request JSON, filled by the caller */
	char	   *response;		/* response body; palloc'd, NUL-terminated */
	size_t		response_len;
	size_t		response_cap;
	bool		response_too_large;
	bool		client_too_full;	/* ethindex.max_bytes_in_flight reached */
	bool		counted;		/* counts towards max_bytes_in_flight */
	size_t		held;			/* bytes counted in the client's total */
	uint64		generation;		/* client's generation when started */
	struct RpcClient *client;
	bool		address_denied; /* an address in ethindex.denied_hosts */
	long		http_status;
	CURLcode	curl_code;
	char		errbuf[CURL_ERROR_SIZE];
	double		seconds;		/* time the request took */
	bool		done;			/* finished, successfully or not */
	CURL	   *easy;			/* set while in flight */
} RpcRequest;

typedef struct RpcClient RpcClient;

extern RpcClient *rpc_client_create(MemoryContext context);
extern void rpc_request_init(RpcRequest *request, const char *url, const char *display);
extern void rpc_start(RpcClient *client, RpcRequest *request);
extern void rpc_wait(RpcClient *client, long timeout_ms);
extern int	rpc_in_flight(RpcClient *client);
extern void rpc_perform(RpcClient *client, RpcRequest **requests, int nrequests);
extern void rpc_abort_all(RpcClient *client);
extern void rpc_release(RpcClient *client, RpcRequest *request);
extern size_t rpc_held_bytes(RpcClient *client);
extern char *rpc_request_failure(RpcRequest *request);
extern char *rpc_url_for_display(const char *url, int position);

#endif							/* ETHINDEX_RPC_H */
