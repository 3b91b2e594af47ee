/*-------------------------------------------------------------------------
 *
 * rpc.c
 *	  HTTP transport of JSON-RPC requests: libcurl's multi interface driven
 *	  by a WaitEventSet that also watches the worker's latch and postmaster
 *	  death, so a fetcher with many requests in flight still reacts to
 *	  SIGTERM, SIGHUP and stop() at once.
 *
 *	  curl tells us which sockets to watch through its socket callback and
 *	  when to call it back through its timer callback; rpc_perform() turns
 *	  that into WaitEventSetWait() calls.  A WaitEventSet cannot forget a
 *	  socket, so it is rebuilt whenever curl's socket set changes (a few
 *	  sockets, a few syscalls).
 *
 *	  Nothing here interprets JSON: callers build request bodies and decode
 *	  responses (decode.c).  Callbacks never ereport: curl's state must not
 *	  be unwound by a longjmp.  The buffers they fill are allocated without
 *	  raising errors and bounded in size.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/rpc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "decode.h"
#include "ethindex.h"
#include "hostpolicy.h"
#include "rpc.h"

#define RPC_MAX_SOCKETS		256

typedef struct RpcSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} RpcSocket;

struct RpcClient
{
	MemoryContext context;
	CURLM	   *multi;
	struct curl_slist *headers;
	RpcSocket	sockets[RPC_MAX_SOCKETS];
	int			nsockets;
	bool		sockets_changed;
	TimestampTz timer_deadline; /* when curl wants to be called; 0: no timer */
	WaitEventSet *wait_set;
	RpcRequest **inflight;		/* requests added to the multi handle */
	int			ninflight;
	int			inflight_cap;

	/*
	 * Response bytes allocated by the requests started and not released
	 * (in flight, or finished and waiting for the caller), limited to
	 * ethindex.max_bytes_in_flight.  rpc_abort_all() forgets every request
	 * of the current generation.
	 */
	size_t		held_bytes;
	int			nholders;
	uint64		generation;
};

static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *clientp, void *socketp)
{
	RpcClient  *client = (RpcClient *) clientp;
	int			i;

	for (i = 0; i < client->nsockets; i++)
		if (client->sockets[i].fd == fd)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < client->nsockets)
		{
			client->sockets[i] = client->sockets[client->nsockets - 1];
			client->nsockets--;
			client->sockets_changed = true;
		}
		return 0;
	}
	if (i == client->nsockets)
	{
		if (client->nsockets >= RPC_MAX_SOCKETS)
			return -1;			/* curl fails the transfer */
		client->sockets[i].fd = fd;
		client->nsockets++;
		client->sockets_changed = true;
	}
	else if (client->sockets[i].what != what)
		client->sockets_changed = true;
	client->sockets[i].what = what;
	return 0;
}

static int
timer_callback(CURLM *multi, long timeout_ms, void *clientp)
{
	RpcClient  *client = (RpcClient *) clientp;

	client->timer_deadline = timeout_ms < 0 ? 0 :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/* ethindex.max_response_size in bytes */
static size_t
rpc_max_response(void)
{
	return (size_t) ethindex_max_response_kb * 1024;
}

static void start_request(RpcClient *client, RpcRequest *request, bool counted);

/* ethindex.max_bytes_in_flight in bytes */
static size_t
rpc_max_held(void)
{
	return (size_t) ethindex_max_bytes_in_flight_kb * 1024;
}

/*
 * Append a piece of a response; responses (after decompression) are
 * limited to ethindex.max_response_size, also while curl decompresses, and
 * together, the responses of the counted requests not released yet to
 * ethindex.max_bytes_in_flight (a request alone is never refused by that
 * limit, so that one can always complete; the calls of rpc_perform() are
 * not counted).
 */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userdata)
{
	RpcRequest *request = (RpcRequest *) userdata;
	RpcClient  *client = request->client;
	size_t		len = size * nmemb;

	if (request->response_len + len > rpc_max_response())
	{
		request->response_too_large = true;
		return 0;				/* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (request->response_len + len + 1 > request->response_cap)
	{
		size_t		newcap = Max(request->response_cap * 2, 64 * 1024);
		char	   *newbuf;

		while (newcap < request->response_len + len + 1)
			newcap *= 2;
		newcap = Min(newcap, rpc_max_response() + 1);
		if (request->counted && client->nholders > 1 &&
			client->held_bytes - request->held + newcap > rpc_max_held())
		{
			request->client_too_full = true;
			return 0;
		}
		newbuf = MemoryContextAllocExtended(request->context,
											newcap,
											MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
		if (newbuf == NULL)
			return 0;
		if (request->response_len > 0)
			memcpy(newbuf, request->response, request->response_len);
		if (request->response)
			pfree(request->response);
		request->response = newbuf;
		if (request->counted)
		{
			client->held_bytes += newcap - request->held;
			request->held = newcap;
		}
		request->response_cap = newcap;
	}
	memcpy(request->response + request->response_len, data, len);
	request->response_len += len;
	request->response[request->response_len] = '\0';
	return len;
}

/*
 * libcurl opens every socket here: one to an address of
 * ethindex.denied_hosts is refused (the request fails with the reason).
 */
static curl_socket_t
open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	RpcRequest *request = (RpcRequest *) clientp;

	if (!host_policy_allows_address(&address->addr))
	{
		request->address_denied = true;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/*
 * The host of an endpoint URL must be allowed by ethindex.allowed_hosts
 * and not denied by ethindex.denied_hosts.
 */
static void
check_host(RpcRequest *request)
{
	const char *scheme_end = strstr(request->url, "://");
	const char *host;
	size_t		len;
	const char *at;
	const char *setting;

	if (scheme_end == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint %s is not a URL", request->display)));
	host = scheme_end + 3;
	len = strcspn(host, "/?#");
	at = memchr(host, '@', len);
	if (at != NULL)
	{
		len -= at + 1 - host;
		host = at + 1;
	}
	/* without the port: the last ':' after a ']' or in a name */
	for (size_t i = len; i > 0; i--)
	{
		if (host[i - 1] == ']')
			break;
		if (host[i - 1] == ':')
		{
			len = i - 1;
			break;
		}
	}
	if (!host_policy_allows_name(host, len, &setting))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("endpoint %s is not allowed by %s", request->display, setting),
				 errhint("The operator sets which hosts endpoints may reach in ethindex.allowed_hosts and ethindex.denied_hosts.")));
}

RpcClient *
rpc_client_create(MemoryContext context)
{
	RpcClient  *client = MemoryContextAllocZero(context, sizeof(RpcClient));

	client->context = context;
	client->timer_deadline = 0;
	client->multi = curl_multi_init();
	if (client->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not create a libcurl multi handle")));
	if (curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, socket_callback) != CURLM_OK ||
		curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client) != CURLM_OK ||
		curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, timer_callback) != CURLM_OK ||
		curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client) != CURLM_OK ||
		curl_multi_setopt(client->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 64L) != CURLM_OK)
	{
		curl_multi_cleanup(client->multi);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("libcurl refused an option of its multi handle")));
	}

	client->headers = curl_slist_append(NULL, "Content-Type: application/json");
	client->headers = curl_slist_append(client->headers, "Accept: application/json");
	client->inflight_cap = 16;
	client->inflight = MemoryContextAlloc(context, sizeof(RpcRequest *) * client->inflight_cap);
	return client;
}

/*
 * Prepare a request in CurrentMemoryContext, which also holds its response.
 * The caller fills request->body.
 */
void
rpc_request_init(RpcRequest *request, const char *url, const char *display)
{
	memset(request, 0, sizeof(RpcRequest));
	request->url = url;
	request->display = display;
	request->context = CurrentMemoryContext;
	initStringInfo(&request->body);
}

/*
 * Put a request in flight; rpc_wait() makes progress on it.  Its response
 * counts towards ethindex.max_bytes_in_flight until rpc_release().
 */
void
rpc_start(RpcClient *client, RpcRequest *request)
{
	start_request(client, request, true);
}

/*
 * Put a request in flight; "counted": its response counts towards
 * ethindex.max_bytes_in_flight (a request whose completion the caller waits
 * for, from rpc_perform(), is limited by ethindex.max_response_size only).
 */
static void
start_request(RpcClient *client, RpcRequest *request, bool counted)
{
	CURL	   *easy;

	check_host(request);

	/* room first: nothing below may fail between creating and tracking */
	if (client->ninflight == client->inflight_cap)
	{
		client->inflight_cap *= 2;
		client->inflight = repalloc(client->inflight,
									sizeof(RpcRequest *) * client->inflight_cap);
	}
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not create a libcurl easy handle")));

	if (request->client != NULL)
		rpc_release(client, request);	/* started again */
	request->response_len = 0;
	request->response_too_large = false;
	request->client_too_full = false;
	request->client = client;
	request->generation = client->generation;
	request->counted = counted;
	if (counted)
	{
		client->nholders++;
		request->held = request->response_cap;	/* a buffer kept from before */
		client->held_bytes += request->held;
	}
	request->address_denied = false;
	request->http_status = 0;
	request->curl_code = CURLE_OK;
	request->errbuf[0] = '\0';
	request->done = false;
	request->easy = easy;

	/*
	 * Every option matters (the protocol restriction most of all): one that
	 * libcurl refuses is an error, not a request without it.  No redirects
	 * are followed (libcurl's default), and no proxy from the environment
	 * is used: the endpoint is what the chain's configuration says.
	 */
	if (curl_easy_setopt(easy, CURLOPT_URL, request->url) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_PROXY, "") != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, request) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, client->headers) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_POST, 1L) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request->body.data) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) request->body.len) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, request) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, request->errbuf) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_PRIVATE, request) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) ethindex_rpc_timeout_ms) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
						 (long) Min(ethindex_rpc_timeout_ms, 10000)) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
						 (curl_off_t) rpc_max_response()) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK)
	{
		curl_easy_cleanup(easy);
		request->easy = NULL;
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("libcurl refused an option of a request to %s",
						request->display)));
	}

	client->inflight[client->ninflight++] = request;
	if (curl_multi_add_handle(client->multi, easy) != CURLM_OK)
	{
		client->ninflight--;
		curl_easy_cleanup(easy);
		request->easy = NULL;
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not add a request to the libcurl multi handle")));
	}
}

static void
finish_request(RpcClient *client, RpcRequest *request, CURLcode code)
{
	double		total = 0;

	request->curl_code = code;
	curl_easy_getinfo(request->easy, CURLINFO_RESPONSE_CODE, &request->http_status);
	curl_easy_getinfo(request->easy, CURLINFO_TOTAL_TIME, &total);
	request->seconds = total;
	request->done = true;
	curl_multi_remove_handle(client->multi, request->easy);
	curl_easy_cleanup(request->easy);
	request->easy = NULL;

	for (int i = 0; i < client->ninflight; i++)
		if (client->inflight[i] == request)
		{
			client->inflight[i] = client->inflight[--client->ninflight];
			break;
		}
}

/* Remove every request in flight; used after an error unwound rpc_perform. */
void
rpc_abort_all(RpcClient *client)
{
	while (client->ninflight > 0)
		finish_request(client, client->inflight[0], CURLE_ABORTED_BY_CALLBACK);
	if (client->wait_set)
	{
		FreeWaitEventSet(client->wait_set);
		client->wait_set = NULL;
	}
	client->nsockets = 0;
	client->sockets_changed = true;
	client->held_bytes = 0;
	client->nholders = 0;
	client->generation++;
}

/*
 * The caller is done with a request's response (or will free it with its
 * context): it no longer counts towards ethindex.max_bytes_in_flight.
 */
void
rpc_release(RpcClient *client, RpcRequest *request)
{
	if (request->counted && request->client == client &&
		request->generation == client->generation)
	{
		Assert(client->held_bytes >= request->held && client->nholders > 0);
		client->held_bytes -= request->held;
		client->nholders--;
	}
	request->held = 0;
	request->counted = false;
	request->client = NULL;
}

/* Response bytes of the requests started and not released. */
size_t
rpc_held_bytes(RpcClient *client)
{
	return client->held_bytes;
}

static void
rebuild_wait_set(RpcClient *client)
{
	if (client->wait_set)
	{
		FreeWaitEventSet(client->wait_set);
		client->wait_set = NULL;
	}
	client->wait_set = CreateWaitEventSet(client->context, client->nsockets + 2);
	AddWaitEventToSet(client->wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(client->wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < client->nsockets; i++)
	{
		uint32		events = 0;

		if (client->sockets[i].what & CURL_POLL_IN)
			events |= WL_SOCKET_READABLE;
		if (client->sockets[i].what & CURL_POLL_OUT)
			events |= WL_SOCKET_WRITEABLE;
		if (events == 0)
			continue;
		AddWaitEventToSet(client->wait_set, events, client->sockets[i].fd, NULL, NULL);
	}
	client->sockets_changed = false;
}

static void
collect_finished(RpcClient *client)
{
	CURLMsg    *msg;
	int			pending;

	while ((msg = curl_multi_info_read(client->multi, &pending)) != NULL)
	{
		RpcRequest *request = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &request);
		finish_request(client, request, msg->data.result);
	}
}

/*
 * Wait up to timeout_ms for socket activity or a curl timer and let curl
 * process it; requests that finish get "done" set.  Processes interrupts
 * while waiting; an error raised by them leaves requests in flight, to be
 * removed with rpc_abort_all().
 */
void
rpc_wait(RpcClient *client, long timeout_ms)
{
	WaitEvent	events[16];
	int			nevents;
	int			running = 0;
	long		timeout;

	if (client->ninflight == 0)
		return;
	if (client->wait_set == NULL || client->sockets_changed)
		rebuild_wait_set(client);

	timeout = timeout_ms;
	if (client->timer_deadline != 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), client->timer_deadline, &secs, &usecs);
		timeout = Min(timeout, secs * 1000 + (usecs + 999) / 1000);
	}

	nevents = WaitEventSetWait(client->wait_set, timeout, events,
							   lengthof(events), PG_WAIT_EXTENSION);
	if (nevents == 0)
		curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0, &running);

	for (int i = 0; i < nevents; i++)
	{
		WaitEvent  *event = &events[i];

		if (event->events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (event->events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			flags = 0;

			if (event->events & WL_SOCKET_READABLE)
				flags |= CURL_CSELECT_IN;
			if (event->events & WL_SOCKET_WRITEABLE)
				flags |= CURL_CSELECT_OUT;
			curl_multi_socket_action(client->multi, event->fd, flags, &running);
		}
	}
	/* a timer that expired while we handled sockets */
	if (client->timer_deadline != 0 &&
		client->timer_deadline <= GetCurrentTimestamp())
		curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect_finished(client);
}

/* Number of requests in flight (started, not finished). */
int
rpc_in_flight(RpcClient *client)
{
	return client->ninflight;
}

/* Run the given requests to completion (success or failure), all at once. */
void
rpc_perform(RpcClient *client, RpcRequest **requests, int nrequests)
{
	/*
	 * The requests may live on the caller's stack: if an error (an
	 * interrupt) unwinds from here, they must leave the multi handle first.
	 */
	PG_TRY();
	{
		int			running = 0;

		for (int i = 0; i < nrequests; i++)
			start_request(client, requests[i], false);
		curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		collect_finished(client);

		for (int i = 0; i < nrequests; i++)
			while (!requests[i]->done)
				rpc_wait(client, 1000);
	}
	PG_CATCH();
	{
		for (int i = 0; i < nrequests; i++)
			if (!requests[i]->done && requests[i]->easy != NULL)
				finish_request(client, requests[i], CURLE_ABORTED_BY_CALLBACK);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Describe why a finished request failed, or return NULL if it got an HTTP
 * 200 response.  The text names the endpoint and, for timeouts, the time.
 */
char *
rpc_request_failure(RpcRequest *request)
{
	const char *url = request->display;

	if (request->address_denied)
		return psprintf("request to %s refused: its host resolves to an address of ethindex.denied_hosts", url);
	if (request->client_too_full)
		return psprintf("response from %s refused: the chain's responses in memory reached ethindex.max_bytes_in_flight (%d kB)",
						url, ethindex_max_bytes_in_flight_kb);
	if (request->response_too_large || request->curl_code == CURLE_FILESIZE_EXCEEDED)
		return psprintf("response from %s exceeds ethindex.max_response_size (%d kB)", url,
						ethindex_max_response_kb);
	if (request->curl_code == CURLE_OPERATION_TIMEDOUT)
		return psprintf("request to %s timed out after %.1f s: %s", url,
						request->seconds,
						request->errbuf[0] ? request->errbuf : curl_easy_strerror(request->curl_code));
	if (request->curl_code != CURLE_OK)
		return psprintf("request to %s failed: %s", url,
						request->errbuf[0] ? request->errbuf : curl_easy_strerror(request->curl_code));
	if (request->http_status != 200)
		return psprintf("%s answered HTTP status %ld%s%s", url, request->http_status,
						request->response_len > 0 ? ": " : "",
						request->response ?
						eth_printable(request->response, Min(request->response_len, 400),
									  RPC_ERROR_TEXT_MAX) : "");
	if (request->response_len == 0)
		return psprintf("%s answered an empty body", url);
	return NULL;
}

/*
 * How an endpoint is shown in status, errors and logs: its scheme, host and
 * port and its position among the chain's endpoints ("https://host #2").
 * API keys travel in the user part, the path or the query of a URL; none
 * of them is shown.
 */
char *
rpc_url_for_display(const char *url, int position)
{
	const char *scheme_end = strstr(url, "://");
	const char *host;
	size_t		hostlen;
	const char *at;

	if (scheme_end == NULL)
		return psprintf("(invalid URL) #%d", position);
	host = scheme_end + 3;
	hostlen = strcspn(host, "/?#");
	at = memchr(host, '@', hostlen);
	if (at != NULL)
	{
		hostlen -= at + 1 - host;
		host = at + 1;
	}
	return psprintf("%.*s%.*s #%d", (int) (scheme_end + 3 - url), url,
					(int) hostlen, host, position);
}
