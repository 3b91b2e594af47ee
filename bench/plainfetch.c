/*
 * plainfetch.c
 *	  A plain JSON-RPC client that only fetches, for the ethindex benchmark.
 *
 *	  This file owns the "serving rate" baseline: it requests blocks
 *	  [--from, --to] from --url exactly the way ethindex's fetcher does (HTTP
 *	  POST of JSON-RPC batch arrays, each holding eth_getBlockByNumber(n, true)
 *	  with id 2k and eth_getBlockReceipts(n) with id 2k+1 for --batch blocks,
 *	  --inflight requests in flight on one libcurl multi handle, keep-alive,
 *	  Content-Type: application/json, Accept-Encoding offered), and discards
 *	  the bodies.  It only counts bytes, and transactions as the number of
 *	  receipts: occurrences of "cumulativeGasUsed", a key that appears exactly
 *	  once per receipt and nowhere else.  Replies that are JSON-RPC errors or
 *	  null results, and HTTP failures, are counted and make the exit status 1.
 *
 *	  Prints one JSON line on stdout at the end:
 *	  {"blocks":..,"transactions":..,"bytes":..,"seconds":..,"blocks_per_s":..,
 *	   "tx_per_s":..,"mb_per_s":..}   (MB = 10^6 bytes of HTTP response body)
 *
 *	  Build: make -C bench
 *	  Run:   bench/plainfetch --url http://127.0.0.1:8545 --from 1 --to 2000
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct Buf
{
	char	   *p;
	size_t		len;
	size_t		cap;
} Buf;

/* one request slot of the pipeline */
typedef struct Slot
{
	CURL	   *easy;
	Buf			request;
	Buf			response;
	int64_t		first;			/* first block of the batch in flight */
	int64_t		count;			/* number of blocks, 0 when idle */
	char		errbuf[CURL_ERROR_SIZE];
} Slot;

static struct
{
	const char *url;
	int64_t		from;
	int64_t		to;
	int			batch;
	int			inflight;
	bool		quiet;
	long		timeout_ms;
} opt = {
	.url = "http://127.0.0.1:8545",
	.from = 1,
	.to = 1000,
	.batch = 10,
	.inflight = 4,
	.quiet = false,
	.timeout_ms = 60000,
};

static struct
{
	int64_t		blocks;
	int64_t		transactions;
	uint64_t	bytes;
	int64_t		failures;		/* HTTP/transport failures */
	int64_t		rpc_errors;		/* "error" members */
	int64_t		null_results;	/* "result":null (block past the head) */
} totals;

static void
buf_reserve(Buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t		cap = b->cap ? b->cap : 65536;

	while (cap < b->len + extra)
		cap *= 2;
	char	   *p = realloc(b->p, cap);

	if (!p)
	{
		fprintf(stderr, "plainfetch: out of memory\n");
		exit(1);
	}
	b->p = p;
	b->cap = cap;
}

static void
buf_printf(Buf *b, const char *fmt, int64_t a, int64_t c)
{
	buf_reserve(b, 256);
	b->len += (size_t) snprintf(b->p + b->len, b->cap - b->len, fmt, a, c);
}

static size_t
on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Slot	   *slot = userdata;
	size_t		n = size * nmemb;

	buf_reserve(&slot->response, n + 1);
	memcpy(slot->response.p + slot->response.len, ptr, n);
	slot->response.len += n;
	return n;
}

static int64_t
count_occurrences(const char *s, size_t len, const char *needle)
{
	size_t		nl = strlen(needle);
	int64_t		count = 0;
	const char *p = s;
	const char *end = s + len;

	while ((p = memmem(p, (size_t) (end - p), needle, nl)) != NULL)
	{
		count++;
		p += nl;
	}
	return count;
}

/* build the batch request for blocks [first, first + count) like ethindex */
static void
build_request(Slot *slot, int64_t first, int64_t count)
{
	Buf		   *b = &slot->request;

	b->len = 0;
	buf_reserve(b, 1);
	b->p[b->len++] = '[';
	for (int64_t k = 0; k < count; k++)
	{
		if (k > 0)
		{
			buf_reserve(b, 1);
			b->p[b->len++] = ',';
		}
		buf_printf(b, "{\"jsonrpc\":\"2.0\",\"id\":%" PRId64
				   ",\"method\":\"eth_getBlockByNumber\",\"params\":[\"0x%" PRIx64 "\",true]}",
				   2 * k, first + k);
		buf_printf(b, ",{\"jsonrpc\":\"2.0\",\"id\":%" PRId64
				   ",\"method\":\"eth_getBlockReceipts\",\"params\":[\"0x%" PRIx64 "\"]}",
				   2 * k + 1, first + k);
	}
	buf_reserve(b, 1);
	b->p[b->len++] = ']';
	slot->first = first;
	slot->count = count;
	slot->response.len = 0;
}

static CURL *
make_easy(Slot *slot, struct curl_slist *headers)
{
	CURL	   *easy = curl_easy_init();

	if (!easy)
	{
		fprintf(stderr, "plainfetch: curl_easy_init failed\n");
		exit(1);
	}
	curl_easy_setopt(easy, CURLOPT_URL, opt.url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, slot);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, slot->errbuf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, slot);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, opt.timeout_ms);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	return easy;
}

/* (re)submit slot for the next batch; false when there is nothing left */
static bool
submit_next(CURLM *multi, Slot *slot, int64_t *next_block)
{
	if (*next_block > opt.to)
	{
		slot->count = 0;
		return false;
	}
	int64_t		count = opt.to - *next_block + 1;

	if (count > opt.batch)
		count = opt.batch;
	build_request(slot, *next_block, count);
	*next_block += count;
	curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDS, slot->request.p);
	curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDSIZE, (long) slot->request.len);
	slot->errbuf[0] = 0;
	curl_multi_add_handle(multi, slot->easy);
	return true;
}

static void
finish(Slot *slot, CURLcode rc)
{
	long		status = 0;

	curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
	totals.bytes += slot->response.len;
	if (rc != CURLE_OK || status != 200)
	{
		totals.failures++;
		fprintf(stderr, "plainfetch: blocks %" PRId64 "..%" PRId64 ": %s (HTTP %ld)\n",
				slot->first, slot->first + slot->count - 1,
				rc != CURLE_OK ? (slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(rc)) : "bad status",
				status);
		return;
	}
	const char *s = slot->response.p ? slot->response.p : "";

	totals.blocks += slot->count;
	totals.transactions += count_occurrences(s, slot->response.len, "\"cumulativeGasUsed\"");
	totals.rpc_errors += count_occurrences(s, slot->response.len, "\"error\":{");
	totals.null_results += count_occurrences(s, slot->response.len, "\"result\":null");
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: plainfetch --url URL --from N --to M [--batch 10] [--inflight 4]\n"
			"                  [--timeout-ms 60000] [--quiet]\n");
	exit(2);
}

static int64_t
parse_int(const char *s)
{
	char	   *end;
	long long	v = strtoll(s, &end, 0);

	if (end == s || *end || v < 0)
		usage();
	return (int64_t) v;
}

int
main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];

		if (strcmp(a, "--quiet") == 0)
		{
			opt.quiet = true;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];

		if (strcmp(a, "--url") == 0)
			opt.url = v;
		else if (strcmp(a, "--from") == 0)
			opt.from = parse_int(v);
		else if (strcmp(a, "--to") == 0)
			opt.to = parse_int(v);
		else if (strcmp(a, "--batch") == 0)
			opt.batch = (int) parse_int(v);
		else if (strcmp(a, "--inflight") == 0)
			opt.inflight = (int) parse_int(v);
		else if (strcmp(a, "--timeout-ms") == 0)
			opt.timeout_ms = (long) parse_int(v);
		else
			usage();
	}
	if (opt.batch < 1 || opt.batch > 10000 || opt.inflight < 1 || opt.inflight > 256 ||
		opt.to < opt.from)
		usage();

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
	{
		fprintf(stderr, "plainfetch: curl_global_init failed\n");
		return 1;
	}
	CURLM	   *multi = curl_multi_init();
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	Slot	   *slots = calloc((size_t) opt.inflight, sizeof(Slot));
	int64_t		next_block = opt.from;
	int			active = 0;

	if (!multi || !headers || !slots)
	{
		fprintf(stderr, "plainfetch: initialization failed\n");
		return 1;
	}
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) opt.inflight);

	double		t0 = now_seconds();
	double		last_report = t0;

	for (int i = 0; i < opt.inflight; i++)
	{
		slots[i].easy = make_easy(&slots[i], headers);
		if (submit_next(multi, &slots[i], &next_block))
			active++;
	}

	while (active > 0)
	{
		int			running;
		CURLMcode	mc = curl_multi_perform(multi, &running);

		if (mc == CURLM_OK)
			mc = curl_multi_poll(multi, NULL, 0, 1000, NULL);
		if (mc != CURLM_OK)
		{
			fprintf(stderr, "plainfetch: curl multi error: %s\n", curl_multi_strerror(mc));
			return 1;
		}

		CURLMsg    *msg;
		int			left;

		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			if (msg->msg != CURLMSG_DONE)
				continue;
			Slot	   *slot;
			CURLcode	rc = msg->data.result;

			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &slot);
			curl_multi_remove_handle(multi, slot->easy);
			finish(slot, rc);
			active--;
			if (submit_next(multi, slot, &next_block))
				active++;
		}

		double		now = now_seconds();

		if (!opt.quiet && now - last_report >= 1.0)
		{
			double		dt = now - t0;

			fprintf(stderr, "plainfetch: %" PRId64 " blocks, %" PRId64 " tx, %.0f MB, %.0f tx/s, %.0f MB/s\n",
					totals.blocks, totals.transactions, totals.bytes / 1e6,
					totals.transactions / dt, totals.bytes / 1e6 / dt);
			last_report = now;
		}
	}
	double		seconds = now_seconds() - t0;

	if (seconds <= 0)
		seconds = 1e-9;
	printf("{\"blocks\":%" PRId64 ",\"transactions\":%" PRId64 ",\"bytes\":%" PRIu64
		   ",\"seconds\":%.3f,\"blocks_per_s\":%.1f,\"tx_per_s\":%.0f,\"mb_per_s\":%.1f}\n",
		   totals.blocks, totals.transactions, totals.bytes, seconds,
		   totals.blocks / seconds, totals.transactions / seconds, totals.bytes / 1e6 / seconds);
	if (totals.failures || totals.rpc_errors || totals.null_results)
		fprintf(stderr, "plainfetch: %" PRId64 " failed requests, %" PRId64 " JSON-RPC errors, %"
				PRId64 " null results\n", totals.failures, totals.rpc_errors, totals.null_results);

	for (int i = 0; i < opt.inflight; i++)
	{
		curl_easy_cleanup(slots[i].easy);
		free(slots[i].request.p);
		free(slots[i].response.p);
	}
	free(slots);
	curl_slist_free_all(headers);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	return totals.failures || totals.rpc_errors || totals.null_results ? 1 : 0;
}
