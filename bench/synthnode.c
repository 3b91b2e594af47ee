/*
 * synthnode.c
 *	  A fast synthetic Ethereum JSON-RPC node for the ethindex benchmark.
 *
 *	  This file owns the whole program: a deterministic chain generator that
 *	  writes eth_getBlockByNumber(n, true) and eth_getBlockReceipts(n) JSON
 *	  documents of realistic shape (current geth/anvil field set, transaction
 *	  types 0-4, about two logs per transaction, receipts with blooms), a
 *	  byte-bounded LRU cache of generated blocks, and a small epoll HTTP/1.1
 *	  server (keep-alive, Content-Length bodies, single and batch JSON-RPC).
 *
 *	  Block n depends only on (n, --salt, --chain-id, --txs-per-block).
 *	  Hashes are not keccak: they are 64-bit bijective mixes expanded to 32
 *	  bytes, so a transaction or block hash can be mapped back to its block
 *	  (eth_getTransactionReceipt, eth_getTransactionByHash, eth_getBlockByHash).
 *
 *	  Build: make -C bench        Run: bench/synthnode --port 8545 --head 20000
 *	  libc + pthreads only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

static struct
{
	const char *bind_addr;
	int			port;
	int			threads;
	uint64_t	chain_id;
	uint64_t	head;
	int			txs_per_block;
	uint64_t	salt;
	size_t		cache_bytes;
	size_t		max_response_bytes;
	bool		prebuild;
	uint64_t	prebuild_from;
	uint64_t	prebuild_to;
} opt = {
	.bind_addr = "127.0.0.1",
	.port = 8545,
	.threads = 1,
	.chain_id = 1337,
	.head = 10000,
	.txs_per_block = 150,
	.salt = 0,
	.cache_bytes = (size_t) 1024 << 20,
	.max_response_bytes = (size_t) 256 << 20,
};

#define MAX_TXS_PER_BLOCK	10000
#define MAX_HEADER_BYTES	(64 * 1024)
#define MAX_BODY_BYTES		(16 * 1024 * 1024)
#define MAX_BATCH_ITEMS		10000
#define HDR_RESERVE			128	/* room kept before a response body for its header */

static volatile sig_atomic_t stop_requested = 0;

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

/* ------------------------------------------------------------------------
 * Growable byte buffer
 * ------------------------------------------------------------------------ */

typedef struct Buf
{
	char	   *p;
	size_t		len;
	size_t		cap;
} Buf;

static void
buf_reserve(Buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t		cap = b->cap ? b->cap : 4096;

	while (cap < b->len + extra)
		cap *= 2;
	char	   *p = realloc(b->p, cap);

	if (!p)
		die("realloc");
	b->p = p;
	b->cap = cap;
}

static void
buf_append(Buf *b, const void *data, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void
buf_free(Buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* dst becomes an exact-size copy of src */
static void
buf_copy_exact(Buf *dst, const Buf *src)
{
	dst->p = malloc(src->len ? src->len : 1);
	if (!dst->p)
		die("malloc");
	memcpy(dst->p, src->p, src->len);
	dst->len = dst->cap = src->len;
}

#define BUF_LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* ------------------------------------------------------------------------
 * Mixing and deterministic randomness
 * ------------------------------------------------------------------------ */

#define MIX_C1 UINT64_C(0xbf58476d1ce4e5b9)
#define MIX_C2 UINT64_C(0x94d049bb133111eb)
#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)

/* Domain separators for the different derived values. */
enum
{
	D_BLOCK = 0x1000, D_TX, D_PLAN, D_ACCOUNT, D_TOKEN, D_CONTRACT, D_EVENT,
	D_CREATE, D_ROOTS, D_BUILDER, D_WITHDRAWAL, D_VALIDATOR, D_INPUT, D_LOG,
	D_BASEFEE
};

static uint64_t mix_c1_inv, mix_c2_inv;

/* splitmix64 finalizer: a bijection on 64-bit words */
static inline uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * MIX_C1;
	z = (z ^ (z >> 27)) * MIX_C2;
	return z ^ (z >> 31);
}

static inline uint64_t
unxorshift(uint64_t z, int shift)
{
	uint64_t	x = z;

	for (int i = shift; i < 64; i += shift)
		x = z ^ (x >> shift);
	return x;
}

static inline uint64_t
unmix64(uint64_t z)
{
	z = unxorshift(z, 31);
	z *= mix_c2_inv;
	z = unxorshift(z, 27);
	z *= mix_c1_inv;
	return unxorshift(z, 30);
}

static uint64_t
inverse_mod_2_64(uint64_t c)
{
	uint64_t	x = c;			/* correct to 3 bits for odd c */

	for (int i = 0; i < 6; i++)
		x *= 2 - c * x;
	return x;
}

static inline uint64_t
domain_key(int domain)
{
	return mix64(opt.salt * GOLDEN + (uint64_t) domain);
}

/* 64-bit seed of an entity (account index, token index ...) in a domain */
static inline uint64_t
seed_of(int domain, uint64_t index)
{
	return mix64(index ^ domain_key(domain));
}

typedef struct Rng
{
	uint64_t	s;
} Rng;

static inline uint64_t
rng_next(Rng *r)
{
	r->s += GOLDEN;
	return mix64(r->s);
}

static inline uint64_t
rng_below(Rng *r, uint64_t n)
{
	return rng_next(r) % n;
}

/* A 32-byte word as 4 big-endian 64-bit words (w[0] holds bytes 0..7). */
typedef struct Word256
{
	uint64_t	w[4];
} Word256;

static inline Word256
expand(uint64_t first)
{
	Word256		h;

	h.w[0] = first;
	h.w[1] = mix64(first + GOLDEN);
	h.w[2] = mix64(first + 2 * GOLDEN);
	h.w[3] = mix64(first + 3 * GOLDEN);
	return h;
}

static inline Word256
random_word(Rng *r)
{
	return expand(rng_next(r));
}

/* Block and transaction hashes: first word invertible back to the key. */
static inline Word256
block_hash(uint64_t n)
{
	return expand(mix64(n ^ domain_key(D_BLOCK)));
}

static inline Word256
tx_hash(uint64_t n, unsigned idx)
{
	return expand(mix64(((n << 16) | idx) ^ domain_key(D_TX)));
}

/* An address is the first 20 bytes of expand(seed). */
static inline Word256
address_of(uint64_t seed)
{
	return expand(mix64(seed));
}

/* ------------------------------------------------------------------------
 * Hex formatting (hand-written, no printf)
 * ------------------------------------------------------------------------ */

static char hex_pairs[512];
static const char hex_digits[] = "0123456789abcdef";

static void
init_hex(void)
{
	for (int i = 0; i < 256; i++)
	{
		hex_pairs[2 * i] = hex_digits[i >> 4];
		hex_pairs[2 * i + 1] = hex_digits[i & 15];
	}
}

#define PUT(w, lit) (memcpy((w), (lit), sizeof(lit) - 1), (w) + sizeof(lit) - 1)

static inline char *
put_hex16(char *w, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		memcpy(w + 2 * i, hex_pairs + 2 * ((v >> (56 - 8 * i)) & 0xff), 2);
	return w + 16;
}

/* hex digits of v without leading zeros ("0" for zero) */
static inline char *
put_hex_digits(char *w, uint64_t v)
{
	int			nd = v ? (64 - __builtin_clzll(v) + 3) / 4 : 1;

	for (int i = nd - 1; i >= 0; i--)
	{
		w[i] = hex_digits[v & 15];
		v >>= 4;
	}
	return w + nd;
}

/* "0x..." QUANTITY */
static inline char *
put_qty(char *w, uint64_t v)
{
	w = PUT(w, "\"0x");
	w = put_hex_digits(w, v);
	*w++ = '"';
	return w;
}

static inline char *
put_qty128(char *w, uint64_t hi, uint64_t lo)
{
	if (hi == 0)
		return put_qty(w, lo);
	w = PUT(w, "\"0x");
	w = put_hex_digits(w, hi);
	w = put_hex16(w, lo);
	*w++ = '"';
	return w;
}

/* nbytes (<= 32) of a word as DATA: "0x" + 2*nbytes digits */
static inline char *
put_data(char *w, const Word256 *h, int nbytes)
{
	w = PUT(w, "\"0x");
	int			full = nbytes / 8;

	for (int i = 0; i < full; i++)
		w = put_hex16(w, h->w[i]);
	for (int i = full * 8; i < nbytes; i++, w += 2)
		memcpy(w, hex_pairs + 2 * ((h->w[i / 8] >> (56 - 8 * (i % 8))) & 0xff), 2);
	*w++ = '"';
	return w;
}

static inline char *
put_hash(char *w, const Word256 *h)
{
	return put_data(w, h, 32);
}

static inline char *
put_addr(char *w, const Word256 *a)
{
	return put_data(w, a, 20);
}

/* an address left-padded to 32 bytes (topic / ABI word) */
static inline char *
put_padded_addr(char *w, const Word256 *a)
{
	w = PUT(w, "\"0x000000000000000000000000");
	w = put_hex16(w, a->w[0]);
	w = put_hex16(w, a->w[1]);
	w = put_hex16(w, a->w[2]) - 8;
	*w++ = '"';
	return w;
}

/* a 256-bit QUANTITY (r, s): no leading zeros */
static inline char *
put_qty256(char *w, const Word256 *h)
{
	int			i = 0;

	while (i < 3 && h->w[i] == 0)
		i++;
	w = PUT(w, "\"0x");
	w = put_hex_digits(w, h->w[i]);
	for (i++; i < 4; i++)
		w = put_hex16(w, h->w[i]);
	*w++ = '"';
	return w;
}

/* raw bytes as hex digits, no quotes */
static inline char *
put_bytes_hex(char *w, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++, w += 2)
		memcpy(w, hex_pairs + 2 * b[i], 2);
	return w;
}

/* ------------------------------------------------------------------------
 * Chain model
 * ------------------------------------------------------------------------ */

enum TxKind
{
	K_TRANSFER, K_ERC20, K_CALL, K_CREATE
};

typedef struct TxPlan
{
	uint8_t		type;
	uint8_t		kind;
	uint8_t		status;
	uint8_t		nblobs;
	uint8_t		parity;
	uint64_t	seed;			/* per-transaction stream for bytes */
	uint64_t	nonce;
	uint64_t	gas;
	uint64_t	gas_used;
	uint64_t	cumulative_gas;
	uint64_t	tip;
	uint64_t	value_hi;
	uint64_t	value_lo;
	uint64_t	from_seed;
	uint64_t	to_seed;		/* token / contract / account seed */
	uint32_t	input_len;
} TxPlan;

typedef struct BlockInfo
{
	uint64_t	number;
	uint64_t	timestamp;
	uint64_t	base_fee;
	uint64_t	gas_limit;
	uint64_t	gas_used;
	uint64_t	blob_gas_used;
	uint64_t	blob_gas_price;
	uint64_t	size;
	int			ntx;
	Word256		hash;
	Word256		parent_hash;
} BlockInfo;

#define GENESIS_TIME		UINT64_C(1700000000)
#define GWEI				UINT64_C(1000000000)
#define BLOB_GAS_PER_BLOB	UINT64_C(131072)
#define N_ACCOUNTS			200000
#define N_TOKENS			500
#define N_CONTRACTS			5000
#define N_EVENTS			300
#define N_BUILDERS			20
#define N_WITHDRAWALS		16

static const Word256 transfer_topic = {{
		UINT64_C(0xddf252ad1be2c89b), UINT64_C(0x69c2b068fc378daa),
		UINT64_C(0x952ba7f163c4a116), UINT64_C(0x28f55a4df523b3ef)}};

static const char empty_uncles_hash[] =
"\"0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347\"";

static char chain_id_qty[24];	/* "\"0x539\"" */
static size_t chain_id_qty_len;

static uint64_t
pick_account(Rng *r)
{
	uint64_t	x = rng_next(r);

	/* a quarter of the traffic comes from 1000 busy accounts */
	return seed_of(D_ACCOUNT, (x & 3) == 0 ? (x >> 2) % 1000 : (x >> 2) % N_ACCOUNTS);
}

static void
plan_transaction(uint64_t n, unsigned idx, TxPlan *p)
{
	Rng			r = {mix64(((n << 16) | idx) ^ domain_key(D_PLAN))};
	unsigned	t = (unsigned) rng_below(&r, 100);
	unsigned	k = (unsigned) rng_below(&r, 100);

	memset(p, 0, sizeof(*p));
	p->seed = rng_next(&r);
	p->type = t < 30 ? 0 : t < 35 ? 1 : t < 95 ? 2 : t < 98 ? 3 : 4;
	p->kind = k < 15 ? K_TRANSFER : k < 55 ? K_ERC20 : k < 99 ? K_CALL : K_CREATE;
	if (p->type >= 3 && (p->kind == K_CREATE || p->kind == K_TRANSFER))
		p->kind = K_CALL;		/* blob and set-code transactions need a target */
	p->status = rng_below(&r, 100) < 3 ? 0 : 1;
	p->parity = rng_next(&r) & 1;
	p->from_seed = pick_account(&r);
	p->nonce = rng_below(&r, 8) == 0 ? rng_below(&r, 2000000) : rng_below(&r, 5000);
	p->tip = GWEI / 100 + rng_below(&r, 3 * GWEI);
	p->nblobs = p->type == 3 ? 1 + (uint8_t) rng_below(&r, 2) : 0;

	switch (p->kind)
	{
		case K_TRANSFER:
			p->to_seed = pick_account(&r);
			p->gas = 21000;
			p->gas_used = 21000;
			p->input_len = 0;
			p->value_lo = UINT64_C(1000000000000000) + rng_below(&r, UINT64_C(9000000000000000000));
			if (rng_below(&r, 10) == 0)
				p->value_hi = 1 + rng_below(&r, 200);	/* > 2^64 wei */
			break;
		case K_ERC20:
			p->to_seed = seed_of(D_TOKEN, rng_below(&r, 8) ? rng_below(&r, 50) : rng_below(&r, N_TOKENS));
			p->gas = 60000 + rng_below(&r, 40000);
			p->gas_used = p->gas * (55 + rng_below(&r, 40)) / 100;
			p->input_len = 68;
			break;
		case K_CALL:
			p->to_seed = seed_of(D_CONTRACT, rng_below(&r, N_CONTRACTS));
			p->gas = 100000 + rng_below(&r, 300000);
			p->gas_used = p->gas * (40 + rng_below(&r, 55)) / 100;
			p->input_len = 4 + 32 * (uint32_t) rng_below(&r, 19);	/* 4 .. 580 */
			if (rng_below(&r, 5) == 0)
				p->value_lo = rng_next(&r) >> 4;
			break;
		case K_CREATE:
			p->to_seed = 0;
			p->gas = 500000 + rng_below(&r, 500000);
			p->gas_used = p->gas * (60 + rng_below(&r, 35)) / 100;
			p->input_len = 200 + (uint32_t) rng_below(&r, 401);	/* 200 .. 600 */
			break;
	}
	if (p->status == 0 && p->kind != K_TRANSFER)
		p->gas_used = p->gas_used / 3 + 21000 < p->gas ? p->gas_used / 3 + 21000 : p->gas;
}

/* number of logs a transaction emits and the stream that generates them */
static int
plan_log_count(const TxPlan *p)
{
	Rng			r = {p->seed ^ domain_key(D_LOG)};

	if (p->status == 0)
		return 0;
	switch (p->kind)
	{
		case K_ERC20:
			return 1;
		case K_CALL:
			return (int) rng_below(&r, 9);	/* 0 .. 8 */
		case K_CREATE:
			return (int) rng_below(&r, 3);
		default:
			return 0;
	}
}

/* recipient and amount of an ERC-20 transfer: shared by calldata and log */
static uint64_t
erc20_recipient(const TxPlan *p)
{
	Rng			r = {p->seed ^ domain_key(D_INPUT) ^ 1};

	return pick_account(&r);
}

/* 48-bit amount, written as 32 bytes (the low 8 of them via put_hex16) */
static uint64_t
erc20_amount(const TxPlan *p)
{
	return mix64(p->seed ^ domain_key(D_INPUT) ^ 2) >> 16;
}

static uint64_t
effective_gas_price(const TxPlan *p, uint64_t base_fee)
{
	return base_fee + p->tip;	/* maxFee = 2 * baseFee + tip covers it */
}

static Word256
contract_address(const TxPlan *p)
{
	return address_of(mix64(p->from_seed ^ p->nonce ^ domain_key(D_CREATE)));
}

/* 2048-bit bloom as 32 words; three bits per address/topic seed */
static inline void
bloom_add(uint64_t *bloom, uint64_t item)
{
	uint64_t	h = mix64(item ^ UINT64_C(0x5bd1e9955bd1e995));

	for (int i = 0; i < 3; i++)
	{
		unsigned	bit = (unsigned) (h >> (11 * i)) & 2047;

		bloom[bit >> 6] |= UINT64_C(1) << (bit & 63);
	}
}

static char *
put_bloom(char *w, const uint64_t *bloom)
{
	w = PUT(w, "\"0x");
	for (int i = 0; i < 32; i++)
		w = put_hex16(w, bloom[i]);
	*w++ = '"';
	return w;
}

/* ------------------------------------------------------------------------
 * Block generation
 * ------------------------------------------------------------------------ */

typedef struct Generated
{
	Buf			block;
	Buf			receipts;
	uint32_t   *tx_offsets;		/* ntx + 1 offsets of transactions in block */
	uint32_t   *rc_offsets;		/* ntx + 1 offsets of receipts in receipts */
	int			ntx;
	int			nlogs;
} Generated;

/* writes the common block reference fields of a transaction/receipt/log */
static char *
put_block_ref(char *w, const BlockInfo *bi)
{
	w = PUT(w, "\"blockHash\":");
	w = put_hash(w, &bi->hash);
	w = PUT(w, ",\"blockNumber\":");
	w = put_qty(w, bi->number);
	return w;
}

static char *
put_receipt(char *w, const BlockInfo *bi, const TxPlan *p, unsigned idx,
			const Word256 *txh, int *log_index, uint64_t *block_bloom)
{
	uint64_t	bloom[32] = {0};
	Word256		from = address_of(p->from_seed);
	Word256		to = address_of(p->to_seed);
	int			nlogs = plan_log_count(p);
	Rng			r = {p->seed ^ domain_key(D_LOG)};

	(void) rng_next(&r);		/* the draw plan_log_count used */

	*w++ = '{';
	w = put_block_ref(w, bi);
	w = PUT(w, ",\"contractAddress\":");
	if (p->kind == K_CREATE && p->status == 1)
	{
		Word256		ca = contract_address(p);

		w = put_addr(w, &ca);
	}
	else
		w = PUT(w, "null");
	w = PUT(w, ",\"cumulativeGasUsed\":");
	w = put_qty(w, p->cumulative_gas);
	w = PUT(w, ",\"effectiveGasPrice\":");
	w = put_qty(w, effective_gas_price(p, bi->base_fee));
	w = PUT(w, ",\"from\":");
	w = put_addr(w, &from);
	w = PUT(w, ",\"gasUsed\":");
	w = put_qty(w, p->gas_used);
	w = PUT(w, ",\"logs\":[");
	for (int l = 0; l < nlogs; l++)
	{
		uint64_t	emitter;
		uint64_t	topics[4];
		int			ntopics;
		int			data_words;
		Word256		tw[4];

		if (l > 0)
			*w++ = ',';
		if (p->kind == K_ERC20)
		{
			emitter = p->to_seed;
			ntopics = 3;
			topics[0] = transfer_topic.w[0];
			topics[1] = p->from_seed;
			topics[2] = erc20_recipient(p);
			tw[0] = transfer_topic;
			tw[1] = address_of(topics[1]);
			tw[2] = address_of(topics[2]);
			data_words = 1;
		}
		else
		{
			emitter = p->kind == K_CREATE ? mix64(p->from_seed ^ p->nonce ^ domain_key(D_CREATE))
				: (rng_below(&r, 3) == 0 ? seed_of(D_TOKEN, rng_below(&r, N_TOKENS)) : p->to_seed);
			ntopics = (int) rng_below(&r, 5);
			for (int t = 0; t < ntopics; t++)
			{
				topics[t] = t == 0 ? seed_of(D_EVENT, rng_below(&r, N_EVENTS)) : rng_next(&r);
				tw[t] = expand(topics[t]);
				if (t > 0 && (topics[t] & 1))
				{
					/* an indexed address: 12 zero bytes then 20 bytes */
					Word256		a = address_of(topics[t]);

					tw[t].w[0] = 0;
					tw[t].w[1] = a.w[0] >> 32;
					tw[t].w[2] = (a.w[0] << 32) | (a.w[1] >> 32);
					tw[t].w[3] = (a.w[1] << 32) | (a.w[2] >> 32);
				}
			}
			data_words = (int) rng_below(&r, 9);	/* 0 .. 256 bytes */
		}
		bloom_add(bloom, emitter);
		for (int t = 0; t < ntopics; t++)
			bloom_add(bloom, topics[t]);

		Word256		ea = address_of(emitter);

		w = PUT(w, "{\"address\":");
		w = put_addr(w, &ea);
		w = PUT(w, ",\"topics\":[");
		for (int t = 0; t < ntopics; t++)
		{
			if (t > 0)
				*w++ = ',';
			if (p->kind == K_ERC20 && t > 0)
				w = put_padded_addr(w, &tw[t]);
			else
				w = put_hash(w, &tw[t]);
		}
		w = PUT(w, "],\"data\":\"0x");
		for (int d = 0; d < data_words; d++)
		{
			uint64_t	x = rng_next(&r);

			if (p->kind == K_ERC20)
			{
				w = PUT(w, "0000000000000000000000000000000000000000");
				w = put_hex16(w, erc20_amount(p));
				w = put_hex16(w, 0) - 8;
			}
			else if ((x & 3) != 0)
			{
				/* an amount-like word: mostly leading zeros */
				w = PUT(w, "0000000000000000000000000000000000000000");
				w = put_hex16(w, (x >> 2) & UINT64_C(0x0000ffffffffffff));
				w = put_hex16(w, 0) - 8;
			}
			else
			{
				Word256		rw = expand(x);

				w = put_hex16(w, rw.w[0]);
				w = put_hex16(w, rw.w[1]);
				w = put_hex16(w, rw.w[2]);
				w = put_hex16(w, rw.w[3]);
			}
		}
		w = PUT(w, "\",");
		w = put_block_ref(w, bi);
		w = PUT(w, ",\"blockTimestamp\":");
		w = put_qty(w, bi->timestamp);
		w = PUT(w, ",\"transactionHash\":");
		w = put_hash(w, txh);
		w = PUT(w, ",\"transactionIndex\":");
		w = put_qty(w, idx);
		w = PUT(w, ",\"logIndex\":");
		w = put_qty(w, (uint64_t) (*log_index)++);
		w = PUT(w, ",\"removed\":false}");
	}
	w = PUT(w, "],\"logsBloom\":");
	w = put_bloom(w, bloom);
	for (int i = 0; i < 32; i++)
		block_bloom[i] |= bloom[i];
	w = PUT(w, ",\"status\":");
	w = put_qty(w, p->status);
	w = PUT(w, ",\"to\":");
	if (p->kind == K_CREATE)
		w = PUT(w, "null");
	else
		w = put_addr(w, &to);
	w = PUT(w, ",\"transactionHash\":");
	w = put_hash(w, txh);
	w = PUT(w, ",\"transactionIndex\":");
	w = put_qty(w, idx);
	w = PUT(w, ",\"type\":");
	w = put_qty(w, p->type);
	if (p->type == 3)
	{
		w = PUT(w, ",\"blobGasUsed\":");
		w = put_qty(w, p->nblobs * BLOB_GAS_PER_BLOB);
		w = PUT(w, ",\"blobGasPrice\":");
		w = put_qty(w, bi->blob_gas_price);
	}
	*w++ = '}';
	return w;
}

static char *
put_input(char *w, const TxPlan *p)
{
	Rng			r = {p->seed ^ domain_key(D_INPUT)};

	w = PUT(w, "\"0x");
	if (p->kind == K_ERC20)
	{
		Word256		to = address_of(erc20_recipient(p));

		/* transfer(address,uint256) */
		w = PUT(w, "a9059cbb000000000000000000000000");
		w = put_hex16(w, to.w[0]);
		w = put_hex16(w, to.w[1]);
		w = put_hex16(w, to.w[2]) - 8;
		w = PUT(w, "0000000000000000000000000000000000000000");
		w = put_hex16(w, erc20_amount(p));
		w = put_hex16(w, 0) - 8;
	}
	else if (p->kind == K_CALL)
	{
		w = put_hex16(w, seed_of(D_EVENT, rng_below(&r, 64))) - 8;	/* selector */
		for (uint32_t i = 4; i < p->input_len; i += 32)
		{
			uint64_t	x = rng_next(&r);

			switch (x & 3)
			{
				case 0:			/* small integer */
					w = PUT(w, "000000000000000000000000000000000000000000000000");
					w = put_hex16(w, (x >> 2) & 0xffffffff);
					break;
				case 1:			/* address */
					{
						Word256		a = address_of(x);

						w = PUT(w, "000000000000000000000000");
						w = put_hex16(w, a.w[0]);
						w = put_hex16(w, a.w[1]);
						w = put_hex16(w, a.w[2]) - 8;
					}
					break;
				default:		/* opaque word */
					{
						Word256		a = expand(x);

						for (int j = 0; j < 4; j++)
							w = put_hex16(w, a.w[j]);
					}
					break;
			}
		}
	}
	else if (p->kind == K_CREATE)
	{
		uint8_t		code[608];

		for (uint32_t i = 0; i < p->input_len; i += 8)
		{
			uint64_t	x = rng_next(&r);

			memcpy(code + i, &x, 8);
		}
		code[0] = 0x60;
		code[1] = 0x80;
		code[2] = 0x60;
		code[3] = 0x40;
		w = put_bytes_hex(w, code, p->input_len);
	}
	*w++ = '"';
	return w;
}

static char *
put_transaction(char *w, const BlockInfo *bi, const TxPlan *p, unsigned idx,
				const Word256 *txh)
{
	Rng			r = {p->seed};
	Word256		from = address_of(p->from_seed);
	Word256		sig_r = random_word(&r);
	Word256		sig_s = random_word(&r);
	uint64_t	gas_price;

	sig_s.w[0] &= UINT64_C(0x7fffffffffffffff);	/* low-s */
	if ((sig_r.w[0] & 0xf) == 0)
		sig_r.w[0] >>= 8;		/* sometimes shorter than 32 bytes */

	*w++ = '{';
	w = put_block_ref(w, bi);
	w = PUT(w, ",\"blockTimestamp\":");
	w = put_qty(w, bi->timestamp);
	w = PUT(w, ",\"from\":");
	w = put_addr(w, &from);
	w = PUT(w, ",\"gas\":");
	w = put_qty(w, p->gas);
	if (p->type >= 2)
		gas_price = effective_gas_price(p, bi->base_fee);
	else
		gas_price = bi->base_fee + p->tip;
	w = PUT(w, ",\"gasPrice\":");
	w = put_qty(w, gas_price);
	if (p->type >= 2)
	{
		w = PUT(w, ",\"maxFeePerGas\":");
		w = put_qty(w, 2 * bi->base_fee + p->tip);
		w = PUT(w, ",\"maxPriorityFeePerGas\":");
		w = put_qty(w, p->tip);
	}
	if (p->type == 3)
	{
		w = PUT(w, ",\"maxFeePerBlobGas\":");
		w = put_qty(w, 2 * bi->blob_gas_price + 1000);
	}
	w = PUT(w, ",\"hash\":");
	w = put_hash(w, txh);
	w = PUT(w, ",\"input\":");
	w = put_input(w, p);
	w = PUT(w, ",\"nonce\":");
	w = put_qty(w, p->nonce);
	w = PUT(w, ",\"to\":");
	if (p->kind == K_CREATE)
		w = PUT(w, "null");
	else
	{
		Word256		to = address_of(p->to_seed);

		w = put_addr(w, &to);
	}
	w = PUT(w, ",\"transactionIndex\":");
	w = put_qty(w, idx);
	w = PUT(w, ",\"value\":");
	w = put_qty128(w, p->value_hi, p->value_lo);
	w = PUT(w, ",\"type\":");
	w = put_qty(w, p->type);
	if (p->type >= 1)
	{
		w = PUT(w, ",\"accessList\":[");
		if (p->type == 1)
		{
			int			nentries = 1 + (int) rng_below(&r, 2);

			for (int e = 0; e < nentries; e++)
			{
				Word256		a = address_of(seed_of(D_CONTRACT, rng_below(&r, N_CONTRACTS)));
				int			nkeys = 1 + (int) rng_below(&r, 3);

				if (e > 0)
					*w++ = ',';
				w = PUT(w, "{\"address\":");
				w = put_addr(w, &a);
				w = PUT(w, ",\"storageKeys\":[");
				for (int k = 0; k < nkeys; k++)
				{
					Word256		key = random_word(&r);

					if (k > 0)
						*w++ = ',';
					w = put_hash(w, &key);
				}
				w = PUT(w, "]}");
			}
		}
		*w++ = ']';
	}
	w = PUT(w, ",\"chainId\":");
	memcpy(w, chain_id_qty, chain_id_qty_len);
	w += chain_id_qty_len;
	if (p->type == 3)
	{
		w = PUT(w, ",\"blobVersionedHashes\":[");
		for (int b = 0; b < p->nblobs; b++)
		{
			Word256		vh = random_word(&r);

			vh.w[0] = (vh.w[0] & UINT64_C(0x00ffffffffffffff)) | UINT64_C(0x0100000000000000);
			if (b > 0)
				*w++ = ',';
			w = put_hash(w, &vh);
		}
		*w++ = ']';
	}
	if (p->type == 4)
	{
		Word256		target = address_of(seed_of(D_CONTRACT, rng_below(&r, 50)));
		Word256		ar = random_word(&r);
		Word256		as = random_word(&r);

		as.w[0] &= UINT64_C(0x7fffffffffffffff);
		w = PUT(w, ",\"authorizationList\":[{\"chainId\":");
		memcpy(w, chain_id_qty, chain_id_qty_len);
		w += chain_id_qty_len;
		w = PUT(w, ",\"address\":");
		w = put_addr(w, &target);
		w = PUT(w, ",\"nonce\":");
		w = put_qty(w, p->nonce + 1);
		w = PUT(w, ",\"yParity\":");
		w = put_qty(w, rng_next(&r) & 1);
		w = PUT(w, ",\"r\":");
		w = put_qty256(w, &ar);
		w = PUT(w, ",\"s\":");
		w = put_qty256(w, &as);
		w = PUT(w, "}]");
	}
	w = PUT(w, ",\"v\":");
	if (p->type == 0)
		w = put_qty(w, opt.chain_id * 2 + 35 + p->parity);
	else
		w = put_qty(w, p->parity);
	w = PUT(w, ",\"r\":");
	w = put_qty256(w, &sig_r);
	w = PUT(w, ",\"s\":");
	w = put_qty256(w, &sig_s);
	if (p->type >= 1)
	{
		w = PUT(w, ",\"yParity\":");
		w = put_qty(w, p->parity);
	}
	*w++ = '}';
	return w;
}

/* Upper bounds of one object's JSON, used to reserve buffer space. */
#define MAX_TX_JSON			6144
#define MAX_RECEIPT_JSON	(2048 + 10 * 2048)

/*
 * generate_block: write block n (full transactions or only their hashes) and
 * its receipts into out.  Offsets are filled when out->tx_offsets and
 * out->rc_offsets are non-NULL.
 */
static void
generate_block(uint64_t n, bool full, Generated *out)
{
	BlockInfo	bi;
	int			ntx = opt.txs_per_block;
	TxPlan	   *plans = malloc(sizeof(TxPlan) * (size_t) (ntx > 0 ? ntx : 1));
	Word256    *hashes = malloc(sizeof(Word256) * (size_t) (ntx > 0 ? ntx : 1));
	uint64_t	block_bloom[32] = {0};
	Rng			roots = {mix64(n ^ domain_key(D_ROOTS))};
	int			log_index = 0;
	char	   *w;

	if (!plans || !hashes)
		die("malloc");

	memset(&bi, 0, sizeof(bi));
	bi.number = n;
	bi.ntx = ntx;
	bi.timestamp = GENESIS_TIME + 12 * n;
	bi.base_fee = GWEI / 10 + mix64(n ^ domain_key(D_BASEFEE)) % (20 * GWEI);
	bi.blob_gas_price = 1 + mix64(n ^ domain_key(D_BASEFEE) ^ 1) % 1000000;
	bi.hash = block_hash(n);
	if (n > 0)
		bi.parent_hash = block_hash(n - 1);
	bi.size = 1200 + 150 * N_WITHDRAWALS / 4;

	for (int i = 0; i < ntx; i++)
	{
		TxPlan	   *p = &plans[i];

		plan_transaction(n, (unsigned) i, p);
		bi.gas_used += p->gas_used;
		p->cumulative_gas = bi.gas_used;
		bi.blob_gas_used += p->nblobs * BLOB_GAS_PER_BLOB;
		bi.size += 115 + p->input_len + (p->type == 1 ? 150 : 0) + 33 * p->nblobs + (p->type == 4 ? 90 : 0);
		hashes[i] = tx_hash(n, (unsigned) i);
	}
	bi.gas_limit = UINT64_C(60000000);
	if (bi.gas_used > bi.gas_limit)
		bi.gas_limit = bi.gas_used;

	/* receipts first: the block header needs their bloom */
	out->receipts.len = 0;
	buf_reserve(&out->receipts, 2);
	out->receipts.p[out->receipts.len++] = '[';
	for (int i = 0; i < ntx; i++)
	{
		if (out->rc_offsets)
			out->rc_offsets[i] = (uint32_t) out->receipts.len + (i > 0);
		buf_reserve(&out->receipts, MAX_RECEIPT_JSON);
		w = out->receipts.p + out->receipts.len;
		if (i > 0)
			*w++ = ',';
		w = put_receipt(w, &bi, &plans[i], (unsigned) i, &hashes[i], &log_index, block_bloom);
		out->receipts.len = (size_t) (w - out->receipts.p);
	}
	if (out->rc_offsets)
		out->rc_offsets[ntx] = (uint32_t) out->receipts.len;
	buf_append(&out->receipts, "]", 1);

	/* the block */
	out->block.len = 0;
	buf_reserve(&out->block, 8192);
	w = out->block.p;
	Word256		miner = address_of(seed_of(D_BUILDER, n % 7 == 0 ? n % N_BUILDERS : n % 3));
	Word256		state_root = random_word(&roots);
	Word256		tx_root = random_word(&roots);
	Word256		rc_root = random_word(&roots);
	Word256		mix_hash = random_word(&roots);
	Word256		wd_root = random_word(&roots);
	Word256		beacon_root = random_word(&roots);
	Word256		requests_hash = random_word(&roots);

	w = PUT(w, "{\"baseFeePerGas\":");
	w = put_qty(w, bi.base_fee);
	w = PUT(w, ",\"blobGasUsed\":");
	w = put_qty(w, bi.blob_gas_used);
	w = PUT(w, ",\"difficulty\":\"0x0\",\"excessBlobGas\":");
	w = put_qty(w, (n % 13) * BLOB_GAS_PER_BLOB);
	/* "synthnode" in ASCII */
	w = PUT(w, ",\"extraData\":\"0x73796e74686e6f6465\",\"gasLimit\":");
	w = put_qty(w, bi.gas_limit);
	w = PUT(w, ",\"gasUsed\":");
	w = put_qty(w, bi.gas_used);
	w = PUT(w, ",\"hash\":");
	w = put_hash(w, &bi.hash);
	w = PUT(w, ",\"logsBloom\":");
	w = put_bloom(w, block_bloom);
	w = PUT(w, ",\"miner\":");
	w = put_addr(w, &miner);
	w = PUT(w, ",\"mixHash\":");
	w = put_hash(w, &mix_hash);
	w = PUT(w, ",\"nonce\":\"0x0000000000000000\",\"number\":");
	w = put_qty(w, n);
	w = PUT(w, ",\"parentBeaconBlockRoot\":");
	w = put_hash(w, &beacon_root);
	w = PUT(w, ",\"parentHash\":");
	w = put_hash(w, &bi.parent_hash);
	w = PUT(w, ",\"receiptsRoot\":");
	w = put_hash(w, &rc_root);
	w = PUT(w, ",\"requestsHash\":");
	w = put_hash(w, &requests_hash);
	w = PUT(w, ",\"sha3Uncles\":");
	w = PUT(w, empty_uncles_hash);
	w = PUT(w, ",\"size\":");
	w = put_qty(w, bi.size);
	w = PUT(w, ",\"stateRoot\":");
	w = put_hash(w, &state_root);
	w = PUT(w, ",\"timestamp\":");
	w = put_qty(w, bi.timestamp);
	w = PUT(w, ",\"transactions\":[");
	out->block.len = (size_t) (w - out->block.p);
	for (int i = 0; i < ntx; i++)
	{
		if (out->tx_offsets)
			out->tx_offsets[i] = (uint32_t) out->block.len + (i > 0);
		buf_reserve(&out->block, MAX_TX_JSON);
		w = out->block.p + out->block.len;
		if (i > 0)
			*w++ = ',';
		if (full)
			w = put_transaction(w, &bi, &plans[i], (unsigned) i, &hashes[i]);
		else
			w = put_hash(w, &hashes[i]);
		out->block.len = (size_t) (w - out->block.p);
	}
	if (out->tx_offsets)
		out->tx_offsets[ntx] = (uint32_t) out->block.len;
	buf_reserve(&out->block, 8192);
	w = out->block.p + out->block.len;
	w = PUT(w, "],\"transactionsRoot\":");
	w = put_hash(w, &tx_root);
	w = PUT(w, ",\"uncles\":[],\"withdrawals\":[");
	for (int i = 0; i < N_WITHDRAWALS; i++)
	{
		Rng			wr = {mix64((n * N_WITHDRAWALS + (uint64_t) i) ^ domain_key(D_WITHDRAWAL))};
		uint64_t	validator = rng_below(&wr, 1000000);
		Word256		addr = address_of(seed_of(D_VALIDATOR, validator % 50000));

		if (i > 0)
			*w++ = ',';
		w = PUT(w, "{\"index\":");
		w = put_qty(w, n * N_WITHDRAWALS + (uint64_t) i);
		w = PUT(w, ",\"validatorIndex\":");
		w = put_qty(w, validator);
		w = PUT(w, ",\"address\":");
		w = put_addr(w, &addr);
		w = PUT(w, ",\"amount\":");
		w = put_qty(w, 10000000 + rng_below(&wr, 20000000));
		*w++ = '}';
	}
	w = PUT(w, "],\"withdrawalsRoot\":");
	w = put_hash(w, &wd_root);
	*w++ = '}';
	out->block.len = (size_t) (w - out->block.p);
	out->ntx = ntx;
	out->nlogs = log_index;
	free(plans);
	free(hashes);
}

/* ------------------------------------------------------------------------
 * Block cache: hash table + LRU list, bounded by bytes, refcounted entries
 * ------------------------------------------------------------------------ */

typedef struct CacheEntry
{
	uint64_t	number;
	int			refs;
	bool		evicted;
	size_t		bytes;
	struct CacheEntry *hnext;	/* hash chain */
	struct CacheEntry *prev;	/* LRU: prev is more recent */
	struct CacheEntry *next;
	Generated	gen;
} CacheEntry;

#define CACHE_BUCKETS 16384

static struct
{
	pthread_mutex_t lock;
	CacheEntry *buckets[CACHE_BUCKETS];
	CacheEntry *lru_head;		/* most recent */
	CacheEntry *lru_tail;
	size_t		bytes;
	uint64_t	hits;
	uint64_t	misses;
	uint64_t	entries;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
entry_free(CacheEntry *e)
{
	buf_free(&e->gen.block);
	buf_free(&e->gen.receipts);
	free(e->gen.tx_offsets);
	free(e->gen.rc_offsets);
	free(e);
}

static void
lru_unlink(CacheEntry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		cache.lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		cache.lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_push_front(CacheEntry *e)
{
	e->prev = NULL;
	e->next = cache.lru_head;
	if (cache.lru_head)
		cache.lru_head->prev = e;
	cache.lru_head = e;
	if (!cache.lru_tail)
		cache.lru_tail = e;
}

static void
hash_remove(CacheEntry *e)
{
	CacheEntry **pp = &cache.buckets[e->number % CACHE_BUCKETS];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
}

/* evict least recently used entries while over budget (lock held) */
static void
cache_evict(void)
{
	while (cache.bytes > opt.cache_bytes && cache.lru_tail)
	{
		CacheEntry *e = cache.lru_tail;

		lru_unlink(e);
		hash_remove(e);
		cache.bytes -= e->bytes;
		cache.entries--;
		e->evicted = true;
		if (e->refs == 0)
			entry_free(e);
	}
}

static CacheEntry *
cache_lookup(uint64_t n)
{
	for (CacheEntry *e = cache.buckets[n % CACHE_BUCKETS]; e; e = e->hnext)
		if (e->number == n)
			return e;
	return NULL;
}

static void print_block_stats(const Generated *g, uint64_t n);

/* per-thread generation buffers, reused for every block */
static __thread Generated scratch;

static void
free_scratch(void)
{
	buf_free(&scratch.block);
	buf_free(&scratch.receipts);
}

/* Returns block n's documents with a reference held; release with block_release. */
static CacheEntry *
block_get(uint64_t n)
{
	static bool stats_printed = false;
	CacheEntry *e;

	pthread_mutex_lock(&cache.lock);
	e = cache_lookup(n);
	if (e)
	{
		e->refs++;
		lru_unlink(e);
		lru_push_front(e);
		cache.hits++;
		pthread_mutex_unlock(&cache.lock);
		return e;
	}
	cache.misses++;
	pthread_mutex_unlock(&cache.lock);

	/* generate outside the lock */
	CacheEntry *ne = calloc(1, sizeof(CacheEntry));

	if (!ne)
		die("calloc");
	ne->number = n;
	ne->gen.tx_offsets = malloc(sizeof(uint32_t) * (size_t) (opt.txs_per_block + 1));
	ne->gen.rc_offsets = malloc(sizeof(uint32_t) * (size_t) (opt.txs_per_block + 1));
	if (!ne->gen.tx_offsets || !ne->gen.rc_offsets)
		die("malloc");
	/*
	 * Generate into this thread's scratch buffers (grown once, pages already
	 * mapped) and keep exact-size copies: no realloc growth per block.
	 */
	scratch.tx_offsets = ne->gen.tx_offsets;
	scratch.rc_offsets = ne->gen.rc_offsets;
	generate_block(n, true, &scratch);
	ne->gen.ntx = scratch.ntx;
	ne->gen.nlogs = scratch.nlogs;
	buf_copy_exact(&ne->gen.block, &scratch.block);
	buf_copy_exact(&ne->gen.receipts, &scratch.receipts);
	ne->bytes = ne->gen.block.cap + ne->gen.receipts.cap + sizeof(CacheEntry)
		+ 2 * sizeof(uint32_t) * (size_t) (opt.txs_per_block + 1);

	pthread_mutex_lock(&cache.lock);
	if (!stats_printed)
	{
		stats_printed = true;
		print_block_stats(&ne->gen, n);
	}
	e = cache_lookup(n);
	if (e)
	{
		/* another thread generated it meanwhile */
		e->refs++;
		pthread_mutex_unlock(&cache.lock);
		entry_free(ne);
		return e;
	}
	ne->refs = 1;
	ne->hnext = cache.buckets[n % CACHE_BUCKETS];
	cache.buckets[n % CACHE_BUCKETS] = ne;
	lru_push_front(ne);
	cache.bytes += ne->bytes;
	cache.entries++;
	cache_evict();
	pthread_mutex_unlock(&cache.lock);
	return ne;
}

static void
block_release(CacheEntry *e)
{
	pthread_mutex_lock(&cache.lock);
	if (--e->refs == 0 && e->evicted)
		entry_free(e);
	pthread_mutex_unlock(&cache.lock);
}

static void
print_block_stats(const Generated *g, uint64_t n)
{
	size_t		total = g->block.len + g->receipts.len;

	fprintf(stderr,
			"synthnode: block %" PRIu64 ": %d transactions, %d logs, block JSON %zu bytes, "
			"receipts JSON %zu bytes, %.0f bytes per transaction (block + receipts)\n",
			n, g->ntx, g->nlogs, g->block.len, g->receipts.len,
			g->ntx ? (double) total / g->ntx : 0.0);
}

/* ------------------------------------------------------------------------
 * Minimal JSON scanner for requests (bounds-checked, depth-limited)
 * ------------------------------------------------------------------------ */

typedef struct Span
{
	size_t		start;
	size_t		end;
} Span;

static size_t
skip_ws(const char *s, size_t len, size_t pos)
{
	while (pos < len && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r'))
		pos++;
	return pos;
}

#define JSON_BAD ((size_t) -1)

static size_t
skip_string(const char *s, size_t len, size_t pos)
{
	if (pos >= len || s[pos] != '"')
		return JSON_BAD;
	for (pos++; pos < len; pos++)
	{
		unsigned char c = (unsigned char) s[pos];

		if (c == '"')
			return pos + 1;
		if (c < 0x20)
			return JSON_BAD;
		if (c == '\\')
		{
			if (++pos >= len)
				return JSON_BAD;
			if (s[pos] == 'u')
			{
				for (int i = 0; i < 4; i++)
				{
					if (++pos >= len || !strchr("0123456789abcdefABCDEF", s[pos]) || s[pos] == 0)
						return JSON_BAD;
				}
			}
			else if (!strchr("\"\\/bfnrt", s[pos]) || s[pos] == 0)
				return JSON_BAD;
		}
	}
	return JSON_BAD;
}

static size_t
skip_number(const char *s, size_t len, size_t pos)
{
	size_t		start = pos;

	if (pos < len && s[pos] == '-')
		pos++;
	size_t		digits = pos;

	while (pos < len && s[pos] >= '0' && s[pos] <= '9')
		pos++;
	if (pos == digits)
		return JSON_BAD;
	if (pos < len && s[pos] == '.')
	{
		size_t		f = ++pos;

		while (pos < len && s[pos] >= '0' && s[pos] <= '9')
			pos++;
		if (pos == f)
			return JSON_BAD;
	}
	if (pos < len && (s[pos] == 'e' || s[pos] == 'E'))
	{
		pos++;
		if (pos < len && (s[pos] == '+' || s[pos] == '-'))
			pos++;
		size_t		e = pos;

		while (pos < len && s[pos] >= '0' && s[pos] <= '9')
			pos++;
		if (pos == e)
			return JSON_BAD;
	}
	return pos > start ? pos : JSON_BAD;
}

/* skip one JSON value starting at pos (no leading whitespace); JSON_BAD on error */
static size_t
skip_value(const char *s, size_t len, size_t pos, int depth)
{
	if (pos >= len || depth > 64)
		return JSON_BAD;
	switch (s[pos])
	{
		case '"':
			return skip_string(s, len, pos);
		case '{':
		case '[':
			{
				char		close = s[pos] == '{' ? '}' : ']';
				bool		is_obj = s[pos] == '{';

				pos = skip_ws(s, len, pos + 1);
				if (pos < len && s[pos] == close)
					return pos + 1;
				for (;;)
				{
					if (is_obj)
					{
						pos = skip_string(s, len, pos);
						if (pos == JSON_BAD)
							return JSON_BAD;
						pos = skip_ws(s, len, pos);
						if (pos >= len || s[pos] != ':')
							return JSON_BAD;
						pos = skip_ws(s, len, pos + 1);
					}
					pos = skip_value(s, len, pos, depth + 1);
					if (pos == JSON_BAD)
						return JSON_BAD;
					pos = skip_ws(s, len, pos);
					if (pos >= len)
						return JSON_BAD;
					if (s[pos] == close)
						return pos + 1;
					if (s[pos] != ',')
						return JSON_BAD;
					pos = skip_ws(s, len, pos + 1);
				}
			}
		case 't':
			return len - pos >= 4 && memcmp(s + pos, "true", 4) == 0 ? pos + 4 : JSON_BAD;
		case 'f':
			return len - pos >= 5 && memcmp(s + pos, "false", 5) == 0 ? pos + 5 : JSON_BAD;
		case 'n':
			return len - pos >= 4 && memcmp(s + pos, "null", 4) == 0 ? pos + 4 : JSON_BAD;
		default:
			return skip_number(s, len, pos);
	}
}

static bool
span_is(const char *s, Span sp, const char *lit)
{
	size_t		n = strlen(lit);

	return sp.end - sp.start == n && memcmp(s + sp.start, lit, n) == 0;
}

/* the elements of an already validated array value */
static int
array_elements(const char *s, Span arr, Span *elems, int max)
{
	size_t		pos = skip_ws(s, arr.end, arr.start + 1);
	int			n = 0;

	if (pos >= arr.end || s[pos] == ']')
		return 0;
	for (;;)
	{
		size_t		end = skip_value(s, arr.end, pos, 0);

		if (end == JSON_BAD)
			return -1;
		if (n < max)
		{
			elems[n].start = pos;
			elems[n].end = end;
		}
		n++;
		pos = skip_ws(s, arr.end, end);
		if (pos >= arr.end || s[pos] != ',')
			return n;
		pos = skip_ws(s, arr.end, pos + 1);
	}
}

/* ------------------------------------------------------------------------
 * JSON-RPC methods
 * ------------------------------------------------------------------------ */

typedef struct RpcCall
{
	bool		has_id;
	Span		id;
	bool		has_method;
	Span		method;			/* inside the quotes */
	bool		has_params;
	Span		params;
} RpcCall;

static void
put_envelope_start(Buf *out, const char *s, const RpcCall *c)
{
	BUF_LIT(out, "{\"jsonrpc\":\"2.0\",\"id\":");
	if (c && c->has_id)
		buf_append(out, s + c->id.start, c->id.end - c->id.start);
	else
		BUF_LIT(out, "null");
}

static void
put_error(Buf *out, const char *s, const RpcCall *c, int code, const char *msg,
		  const char *detail, size_t detail_len)
{
	char		num[32];

	put_envelope_start(out, s, c);
	BUF_LIT(out, ",\"error\":{\"code\":");
	buf_append(out, num, (size_t) snprintf(num, sizeof(num), "%d", code));
	BUF_LIT(out, ",\"message\":\"");
	buf_append(out, msg, strlen(msg));
	if (detail)
	{
		/* echo the method name as plain printable ASCII only */
		buf_reserve(out, detail_len);
		for (size_t i = 0; i < detail_len; i++)
		{
			unsigned char ch = (unsigned char) detail[i];

			out->p[out->len++] = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? (char) ch : '?';
		}
		BUF_LIT(out, " does not exist/is not available");
	}
	BUF_LIT(out, "\"}}");
}

static void
put_result(Buf *out, const char *s, const RpcCall *c, const char *val, size_t n)
{
	put_envelope_start(out, s, c);
	BUF_LIT(out, ",\"result\":");
	buf_reserve(out, n + 1);
	memcpy(out->p + out->len, val, n);
	out->len += n;
	out->p[out->len++] = '}';
}

static void
put_result_qty(Buf *out, const char *s, const RpcCall *c, uint64_t v)
{
	char		tmp[24];
	char	   *e = put_qty(tmp, v);

	put_result(out, s, c, tmp, (size_t) (e - tmp));
}

/* parse a block tag: hex quantity or latest/earliest/...; false if invalid */
static bool
parse_block_tag(const char *s, Span sp, uint64_t *n)
{
	if (sp.end - sp.start < 2 || s[sp.start] != '"')
		return false;
	Span		in = {sp.start + 1, sp.end - 1};

	if (span_is(s, in, "latest") || span_is(s, in, "pending") ||
		span_is(s, in, "safe") || span_is(s, in, "finalized"))
	{
		*n = opt.head;
		return true;
	}
	if (span_is(s, in, "earliest"))
	{
		*n = 0;
		return true;
	}
	size_t		len = in.end - in.start;
	const char *p = s + in.start;

	if (len < 3 || len > 18 || p[0] != '0' || (p[1] != 'x' && p[1] != 'X'))
		return false;
	uint64_t	v = 0;

	for (size_t i = 2; i < len; i++)
	{
		char		ch = p[i];
		int			d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
			: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;

		if (d < 0)
			return false;
		v = (v << 4) | (uint64_t) d;
	}
	*n = v;
	return true;
}

/* parse a quoted 32-byte hash into 4 words */
static bool
parse_hash(const char *s, Span sp, Word256 *h)
{
	if (sp.end - sp.start != 68 || s[sp.start] != '"' || s[sp.start + 1] != '0' ||
		(s[sp.start + 2] != 'x' && s[sp.start + 2] != 'X'))
		return false;
	memset(h, 0, sizeof(*h));
	for (int i = 0; i < 64; i++)
	{
		char		ch = s[sp.start + 3 + i];
		int			d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
			: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;

		if (d < 0)
			return false;
		h->w[i / 16] = (h->w[i / 16] << 4) | (uint64_t) d;
	}
	return true;
}

static bool
word_eq(const Word256 *a, const Word256 *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* block number of a block hash, if it is one of ours within the head */
static bool
block_of_hash(const Word256 *h, uint64_t *n)
{
	uint64_t	cand = unmix64(h->w[0]) ^ domain_key(D_BLOCK);
	Word256		check = block_hash(cand);

	if (cand > opt.head || !word_eq(&check, h))
		return false;
	*n = cand;
	return true;
}

static bool
tx_of_hash(const Word256 *h, uint64_t *n, unsigned *idx)
{
	uint64_t	key = unmix64(h->w[0]) ^ domain_key(D_TX);
	uint64_t	bn = key >> 16;
	unsigned	i = (unsigned) (key & 0xffff);
	Word256		check = tx_hash(bn, i);

	if (bn > opt.head || (int) i >= opt.txs_per_block || !word_eq(&check, h))
		return false;
	*n = bn;
	*idx = i;
	return true;
}

typedef struct ServerStats
{
	uint64_t	http_requests;
	uint64_t	rpc_calls;
	uint64_t	bytes_out;
} ServerStats;

/* resolve a block parameter (number/tag, or a hash when allow_hash) */
static int
resolve_block(const char *s, Span param, bool allow_hash, uint64_t *n)
{
	Word256		h;

	if (allow_hash && parse_hash(s, param, &h))
		return block_of_hash(&h, n) ? 1 : 0;
	if (!parse_block_tag(s, param, n))
		return -1;
	return *n <= opt.head ? 1 : 0;
}

static void
handle_call(Buf *out, const char *s, const RpcCall *c)
{
	Span		params[4];
	int			np = 0;
	Span		m = c->method;

	if (c->has_params)
	{
		if (s[c->params.start] != '[')
		{
			put_error(out, s, c, -32602, "invalid params: expected an array", NULL, 0);
			return;
		}
		np = array_elements(s, c->params, params, 4);
		if (np < 0)
			np = 0;
	}

	if (span_is(s, m, "eth_getBlockByNumber") || span_is(s, m, "eth_getBlockByHash"))
	{
		bool		by_hash = span_is(s, m, "eth_getBlockByHash");
		uint64_t	n;
		Word256		h;
		int			found;
		bool		full;

		if (np < 2 || (!span_is(s, params[1], "true") && !span_is(s, params[1], "false")))
		{
			put_error(out, s, c, -32602, "invalid params: expected [block, fullTransactions]", NULL, 0);
			return;
		}
		full = span_is(s, params[1], "true");
		if (by_hash)
			found = parse_hash(s, params[0], &h) ? (block_of_hash(&h, &n) ? 1 : 0) : -1;
		else
			found = resolve_block(s, params[0], false, &n);
		if (found < 0)
		{
			put_error(out, s, c, -32602, "invalid argument 0: bad block", NULL, 0);
			return;
		}
		if (found == 0)
		{
			put_result(out, s, c, "null", 4);
			return;
		}
		if (!full)
		{
			Generated	g = {0};

			generate_block(n, false, &g);
			put_result(out, s, c, g.block.p, g.block.len);
			buf_free(&g.block);
			buf_free(&g.receipts);
			return;
		}
		CacheEntry *e = block_get(n);

		if (out->len + e->gen.block.len > opt.max_response_bytes)
			put_error(out, s, c, -32003, "response too large", NULL, 0);
		else
			put_result(out, s, c, e->gen.block.p, e->gen.block.len);
		block_release(e);
	}
	else if (span_is(s, m, "eth_getBlockReceipts"))
	{
		uint64_t	n;
		int			found;

		if (np < 1 || (found = resolve_block(s, params[0], true, &n)) < 0)
		{
			put_error(out, s, c, -32602, "invalid argument 0: bad block", NULL, 0);
			return;
		}
		if (found == 0)
		{
			put_result(out, s, c, "null", 4);
			return;
		}
		CacheEntry *e = block_get(n);

		if (out->len + e->gen.receipts.len > opt.max_response_bytes)
			put_error(out, s, c, -32003, "response too large", NULL, 0);
		else
			put_result(out, s, c, e->gen.receipts.p, e->gen.receipts.len);
		block_release(e);
	}
	else if (span_is(s, m, "eth_getTransactionReceipt") ||
			 span_is(s, m, "eth_getTransactionByHash"))
	{
		bool		receipt = span_is(s, m, "eth_getTransactionReceipt");
		Word256		h;
		uint64_t	n;
		unsigned	i;

		if (np < 1 || !parse_hash(s, params[0], &h))
		{
			put_error(out, s, c, -32602, "invalid argument 0: hex string of odd length or wrong size", NULL, 0);
			return;
		}
		if (!tx_of_hash(&h, &n, &i))
		{
			put_result(out, s, c, "null", 4);
			return;
		}
		CacheEntry *e = block_get(n);
		const uint32_t *off = receipt ? e->gen.rc_offsets : e->gen.tx_offsets;
		const char *doc = receipt ? e->gen.receipts.p : e->gen.block.p;

		/* objects are separated by commas: the next start is one past the end */
		size_t		len = off[i + 1] - off[i] - ((int) i + 1 < e->gen.ntx ? 1 : 0);

		put_result(out, s, c, doc + off[i], len);
		block_release(e);
	}
	else if (span_is(s, m, "eth_chainId"))
		put_result_qty(out, s, c, opt.chain_id);
	else if (span_is(s, m, "eth_blockNumber"))
		put_result_qty(out, s, c, opt.head);
	else if (span_is(s, m, "net_version"))
	{
		char		tmp[32];

		put_result(out, s, c, tmp, (size_t) snprintf(tmp, sizeof(tmp), "\"%" PRIu64 "\"", opt.chain_id));
	}
	else if (span_is(s, m, "web3_clientVersion"))
		put_result(out, s, c, "\"synthnode/0.1\"", 15);
	else if (span_is(s, m, "eth_syncing"))
		put_result(out, s, c, "false", 5);
	else
		put_error(out, s, c, -32601, "the method ", s + m.start,
				  m.end - m.start > 200 ? 200 : m.end - m.start);
}

static bool
printable_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] >= 0x7f)
			return false;
	return true;
}

/* one element of a (batch) request */
static void
handle_element(Buf *out, const char *s, Span el)
{
	RpcCall		c = {0};

	if (s[el.start] != '{')
	{
		put_error(out, s, NULL, -32600, "invalid request", NULL, 0);
		return;
	}
	size_t		pos = skip_ws(s, el.end, el.start + 1);

	while (pos < el.end && s[pos] == '"')
	{
		size_t		kend = skip_string(s, el.end, pos);
		Span		key = {pos + 1, kend - 1};
		size_t		vstart = skip_ws(s, el.end, skip_ws(s, el.end, kend) + 1);
		size_t		vend = skip_value(s, el.end, vstart, 0);

		if (kend == JSON_BAD || vend == JSON_BAD)
			break;				/* cannot happen: validated before */
		Span		val = {vstart, vend};

		if (span_is(s, key, "id"))
		{
			char		ch = s[vstart];

			if (ch == '{' || ch == '[' || vend - vstart > 100 || !printable_ascii(s + vstart, vend - vstart))
			{
				put_error(out, s, NULL, -32600, "invalid request: bad id", NULL, 0);
				return;
			}
			c.has_id = true;
			c.id = val;
		}
		else if (span_is(s, key, "method"))
		{
			if (s[vstart] != '"')
			{
				put_error(out, s, &c, -32600, "invalid request: method must be a string", NULL, 0);
				return;
			}
			c.has_method = true;
			c.method.start = vstart + 1;
			c.method.end = vend - 1;
		}
		else if (span_is(s, key, "params"))
		{
			c.has_params = true;
			c.params = val;
		}
		pos = skip_ws(s, el.end, vend);
		if (pos < el.end && s[pos] == ',')
			pos = skip_ws(s, el.end, pos + 1);
	}
	if (!c.has_method)
	{
		put_error(out, s, &c, -32600, "invalid request: no method", NULL, 0);
		return;
	}
	handle_call(out, s, &c);
}

/* handle a request body; the response body is appended to out */
static uint64_t
handle_body(Buf *out, const char *s, size_t len)
{
	size_t		start = skip_ws(s, len, 0);
	size_t		end = skip_value(s, len, start, 0);

	if (end == JSON_BAD || skip_ws(s, len, end) != len)
	{
		put_error(out, s, NULL, -32700, "parse error", NULL, 0);
		return 1;
	}
	if (s[start] != '[')
	{
		handle_element(out, s, (Span) {start, end});
		return 1;
	}

	/* batch */
	size_t		pos = skip_ws(s, end, start + 1);
	uint64_t	n = 0;

	if (s[pos] == ']')
	{
		put_error(out, s, NULL, -32600, "empty batch", NULL, 0);
		return 1;
	}
	buf_append(out, "[", 1);
	for (;;)
	{
		size_t		vend = skip_value(s, end, pos, 0);

		if (vend == JSON_BAD)
			break;
		if (n > 0)
			buf_append(out, ",", 1);
		if (n >= MAX_BATCH_ITEMS)
			put_error(out, s, NULL, -32600, "batch too large", NULL, 0);
		else
			handle_element(out, s, (Span) {pos, vend});
		n++;
		pos = skip_ws(s, end, vend);
		if (pos >= end || s[pos] != ',')
			break;
		pos = skip_ws(s, end, pos + 1);
	}
	buf_append(out, "]", 1);
	return n;
}

/* ------------------------------------------------------------------------
 * HTTP server
 * ------------------------------------------------------------------------ */

typedef struct Conn
{
	int			fd;
	Buf			in;
	Buf			out;
	size_t		out_off;		/* next byte of out to send */
	bool		close_after;	/* close once out is sent */
	bool		sent_continue;	/* "100 Continue" sent for the pending request */
	bool		want_out;		/* registered for EPOLLOUT instead of EPOLLIN */
} Conn;

typedef struct Worker
{
	int			id;
	int			epfd;
	int			listen_fd;
	pthread_t	thread;
	ServerStats stats;
} Worker;

static int listen_marker;

static void
conn_close(Worker *wk, Conn *c)
{
	epoll_ctl(wk->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static void
set_interest(Worker *wk, Conn *c, bool want_out)
{
	struct epoll_event ev = {.events = want_out ? EPOLLOUT : EPOLLIN, .data.ptr = c};

	if (c->want_out != want_out)
	{
		c->want_out = want_out;
		epoll_ctl(wk->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	}
}

/* send pending output: 1 all sent, 0 would block, -1 error */
static int
conn_flush(Worker *wk, Conn *c)
{
	while (c->out_off < c->out.len)
	{
		ssize_t		n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);

		if (n > 0)
		{
			c->out_off += (size_t) n;
			wk->stats.bytes_out += (uint64_t) n;
		}
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		else
			return -1;
	}
	c->out.len = c->out_off = 0;
	if (c->out.cap > (16u << 20))
		buf_free(&c->out);
	return 1;
}

/* a complete HTTP response with a small body */
static void
simple_response(Conn *c, const char *status, const char *body, bool close_conn)
{
	char		hdr[256];
	int			n = snprintf(hdr, sizeof(hdr),
							 "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
							 status, strlen(body), close_conn ? "Connection: close\r\n" : "");

	buf_append(&c->out, hdr, (size_t) n);
	buf_append(&c->out, body, strlen(body));
	if (close_conn)
		c->close_after = true;
}

static bool
header_is(const char *line, size_t len, const char *name, const char **value, size_t *vlen)
{
	size_t		n = strlen(name);

	if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return false;
	size_t		i = n + 1;

	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	size_t		e = len;

	while (e > i && (line[e - 1] == ' ' || line[e - 1] == '\t'))
		e--;
	*value = line + i;
	*vlen = e - i;
	return true;
}

static bool
contains_token(const char *v, size_t n, const char *token)
{
	size_t		t = strlen(token);

	for (size_t i = 0; i + t <= n; i++)
		if (strncasecmp(v + i, token, t) == 0)
			return true;
	return false;
}

/*
 * Try to handle one request from c->in.  Returns 1 if a response was queued
 * (and the request consumed), 0 if more input is needed.
 */
static int
process_request(Worker *wk, Conn *c)
{
	char	   *hend = c->in.len ? memmem(c->in.p, c->in.len, "\r\n\r\n", 4) : NULL;

	if (!hend)
	{
		if (c->in.len > MAX_HEADER_BYTES)
		{
			simple_response(c, "431 Request Header Fields Too Large", "", true);
			return 1;
		}
		return 0;
	}
	size_t		hlen = (size_t) (hend - c->in.p) + 4;
	const char *p = c->in.p;
	const char *line_end = memchr(p, '\r', hlen);
	size_t		line_len = (size_t) (line_end - p);
	bool		is_post = line_len >= 5 && memcmp(p, "POST ", 5) == 0;
	bool		http10 = line_len >= 8 && memcmp(p + line_len - 8, "HTTP/1.0", 8) == 0;
	bool		keep_alive = !http10;
	bool		expect_continue = false;
	bool		has_length = false;
	bool		chunked = false;
	size_t		content_length = 0;

	if (line_len < 8 || memcmp(p + line_len - 8, "HTTP/1.", 7) != 0)
	{
		simple_response(c, "400 Bad Request", "", true);
		return 1;
	}
	for (const char *l = line_end + 2; l < hend;)
	{
		const char *le = memchr(l, '\r', (size_t) (hend + 2 - l));
		size_t		ll = (size_t) (le - l);
		const char *v;
		size_t		vl;

		if (header_is(l, ll, "content-length", &v, &vl))
		{
			if (vl == 0 || vl > 9)
			{
				simple_response(c, vl > 9 ? "413 Payload Too Large" : "400 Bad Request", "", true);
				return 1;
			}
			content_length = 0;
			for (size_t i = 0; i < vl; i++)
			{
				if (v[i] < '0' || v[i] > '9')
				{
					simple_response(c, "400 Bad Request", "", true);
					return 1;
				}
				content_length = content_length * 10 + (size_t) (v[i] - '0');
			}
			has_length = true;
		}
		else if (header_is(l, ll, "connection", &v, &vl))
		{
			if (contains_token(v, vl, "close"))
				keep_alive = false;
			else if (contains_token(v, vl, "keep-alive"))
				keep_alive = true;
		}
		else if (header_is(l, ll, "expect", &v, &vl))
			expect_continue = contains_token(v, vl, "100-continue");
		else if (header_is(l, ll, "transfer-encoding", &v, &vl))
			chunked = true;
		l = le + 2;
	}
	if (chunked)
	{
		simple_response(c, "411 Length Required", "", true);
		return 1;
	}
	if (!is_post)
	{
		simple_response(c, "405 Method Not Allowed", "", !keep_alive);
		memmove(c->in.p, c->in.p + hlen, c->in.len - hlen);
		c->in.len -= hlen;
		return 1;
	}
	if (!has_length)
	{
		simple_response(c, "411 Length Required", "", true);
		return 1;
	}
	if (content_length > MAX_BODY_BYTES)
	{
		simple_response(c, "413 Payload Too Large", "", true);
		return 1;
	}
	if (c->in.len < hlen + content_length)
	{
		if (expect_continue && !c->sent_continue)
		{
			c->sent_continue = true;
			BUF_LIT(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
			return 1;
		}
		return 0;
	}
	c->sent_continue = false;

	/* the response body goes after room for its header */
	c->out.len = 0;
	c->out_off = 0;
	buf_reserve(&c->out, HDR_RESERVE + 65536);
	c->out.len = HDR_RESERVE;
	wk->stats.rpc_calls += handle_body(&c->out, c->in.p + hlen, content_length);
	wk->stats.http_requests++;

	char		hdr[HDR_RESERVE];
	int			n = snprintf(hdr, sizeof(hdr),
							 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
							 c->out.len - HDR_RESERVE, keep_alive ? "" : "Connection: close\r\n");

	c->out_off = HDR_RESERVE - (size_t) n;
	memcpy(c->out.p + c->out_off, hdr, (size_t) n);
	if (!keep_alive)
		c->close_after = true;

	size_t		consumed = hlen + content_length;

	memmove(c->in.p, c->in.p + consumed, c->in.len - consumed);
	c->in.len -= consumed;
	return 1;
}

/* handle buffered requests while output drains; false if c was closed */
static bool
conn_progress(Worker *wk, Conn *c)
{
	for (;;)
	{
		int			r = conn_flush(wk, c);

		if (r < 0)
		{
			conn_close(wk, c);
			return false;
		}
		if (r == 0)
		{
			set_interest(wk, c, true);
			return true;
		}
		if (c->close_after)
		{
			conn_close(wk, c);
			return false;
		}
		if (!process_request(wk, c))
		{
			set_interest(wk, c, false);
			if (c->in.cap > (4u << 20) && c->in.len < 65536)
			{
				/* shrink an input buffer grown by a big request */
				Buf			small = {0};

				buf_append(&small, c->in.p, c->in.len);
				buf_free(&c->in);
				c->in = small;
			}
			return true;
		}
	}
}

static void
conn_readable(Worker *wk, Conn *c)
{
	for (;;)
	{
		if (c->in.len >= MAX_HEADER_BYTES + MAX_BODY_BYTES)
			break;
		buf_reserve(&c->in, 65536);
		ssize_t		n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);

		if (n > 0)
		{
			c->in.len += (size_t) n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		conn_close(wk, c);		/* EOF or error */
		return;
	}
	conn_progress(wk, c);
}

static void
accept_all(Worker *wk)
{
	for (;;)
	{
		int			fd = accept4(wk->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;				/* EAGAIN, or another worker got it */
		int			one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		Conn	   *c = calloc(1, sizeof(Conn));

		if (!c)
			die("calloc");
		c->fd = fd;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

		if (epoll_ctl(wk->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		{
			close(fd);
			free(c);
		}
	}
}

static void *
worker_main(void *arg)
{
	Worker	   *wk = arg;
	struct epoll_event evs[64];

	while (!stop_requested)
	{
		int			n = epoll_wait(wk->epfd, evs, 64, 250);

		for (int i = 0; i < n; i++)
		{
			if (evs[i].data.ptr == &listen_marker)
			{
				accept_all(wk);
				continue;
			}
			Conn	   *c = evs[i].data.ptr;

			if (c->want_out)
			{
				if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
					conn_progress(wk, c);
			}
			else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_readable(wk, c);
		}
	}
	free_scratch();
	return NULL;
}

/* ------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------ */

static void
on_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: synthnode [--port 8545] [--bind 127.0.0.1] [--threads 1] [--head 10000]\n"
			"                 [--chain-id 1337] [--txs-per-block 150] [--salt 0]\n"
			"                 [--cache-mb 1024] [--max-response-mb 256] [--prebuild A:B]\n"
			"                 [--dump-block N] [--dump-receipts N]\n");
	exit(2);
}

static uint64_t
parse_u64(const char *s, const char *name)
{
	char	   *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || s[0] == '-' || end == s)
	{
		fprintf(stderr, "synthnode: bad value for %s: %s\n", name, s);
		exit(2);
	}
	return v;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	int64_t		dump_block = -1;
	int64_t		dump_receipts = -1;

	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = NULL;
		char		name[64];
		const char *eq = strchr(a, '=');

		if (strncmp(a, "--", 2) != 0)
			usage();
		if (eq && (size_t) (eq - a) < sizeof(name))
		{
			memcpy(name, a, (size_t) (eq - a));
			name[eq - a] = 0;
			v = eq + 1;
		}
		else
		{
			snprintf(name, sizeof(name), "%s", a);
			if (strcmp(name, "--help") == 0)
				usage();
			if (i + 1 >= argc)
				usage();
			v = argv[++i];
		}
		if (strcmp(name, "--port") == 0)
			opt.port = (int) parse_u64(v, name);
		else if (strcmp(name, "--bind") == 0)
			opt.bind_addr = v;
		else if (strcmp(name, "--threads") == 0)
			opt.threads = (int) parse_u64(v, name);
		else if (strcmp(name, "--head") == 0)
			opt.head = parse_u64(v, name);
		else if (strcmp(name, "--chain-id") == 0)
			opt.chain_id = parse_u64(v, name);
		else if (strcmp(name, "--txs-per-block") == 0)
			opt.txs_per_block = (int) parse_u64(v, name);
		else if (strcmp(name, "--salt") == 0)
			opt.salt = parse_u64(v, name);
		else if (strcmp(name, "--cache-mb") == 0)
			opt.cache_bytes = (size_t) parse_u64(v, name) << 20;
		else if (strcmp(name, "--max-response-mb") == 0)
			opt.max_response_bytes = (size_t) parse_u64(v, name) << 20;
		else if (strcmp(name, "--dump-block") == 0)
			dump_block = (int64_t) parse_u64(v, name);
		else if (strcmp(name, "--dump-receipts") == 0)
			dump_receipts = (int64_t) parse_u64(v, name);
		else if (strcmp(name, "--prebuild") == 0)
		{
			const char *colon = strchr(v, ':');
			char		lo[32];

			if (!colon || (size_t) (colon - v) >= sizeof(lo))
				usage();
			memcpy(lo, v, (size_t) (colon - v));
			lo[colon - v] = 0;
			opt.prebuild = true;
			opt.prebuild_from = parse_u64(lo, name);
			opt.prebuild_to = parse_u64(colon + 1, name);
		}
		else
			usage();
	}
	if (opt.threads < 1 || opt.threads > 64 || opt.txs_per_block < 0 ||
		opt.txs_per_block > MAX_TXS_PER_BLOCK || opt.port < 1 || opt.port > 65535 ||
		opt.head >= (UINT64_C(1) << 47) || opt.chain_id > (UINT64_C(1) << 48))
	{
		fprintf(stderr, "synthnode: option out of range\n");
		return 2;
	}

	init_hex();
	mix_c1_inv = inverse_mod_2_64(MIX_C1);
	mix_c2_inv = inverse_mod_2_64(MIX_C2);
	chain_id_qty_len = (size_t) (put_qty(chain_id_qty, opt.chain_id) - chain_id_qty);

	if (dump_block >= 0 || dump_receipts >= 0)
	{
		Generated	g = {0};

		generate_block((uint64_t) (dump_block >= 0 ? dump_block : dump_receipts), true, &g);
		if (dump_block >= 0)
			fwrite(g.block.p, 1, g.block.len, stdout);
		else
			fwrite(g.receipts.p, 1, g.receipts.len, stdout);
		fputc('\n', stdout);
		return 0;
	}

	if (opt.prebuild)
	{
		double		t0 = now_seconds();
		size_t		bytes = 0;
		uint64_t	count = 0;

		for (uint64_t n = opt.prebuild_from; n <= opt.prebuild_to && n <= opt.head; n++)
		{
			CacheEntry *e = block_get(n);

			bytes += e->gen.block.len + e->gen.receipts.len;
			count++;
			block_release(e);
		}
		double		dt = now_seconds() - t0;

		fprintf(stderr, "synthnode: prebuilt %" PRIu64 " blocks, %.1f MB in %.2f s (%.0f MB/s)%s\n",
				count, bytes / 1e6, dt, dt > 0 ? bytes / 1e6 / dt : 0.0,
				cache.entries < count ? "; cache too small to hold them all" : "");
	}
	else
	{
		CacheEntry *e = block_get(opt.head < 1 ? opt.head : 1);	/* prints sizes */

		block_release(e);
	}

	int			lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int			one = 1;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t) opt.port)};

	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (inet_pton(AF_INET, opt.bind_addr, &addr.sin_addr) != 1)
	{
		fprintf(stderr, "synthnode: bad --bind address %s\n", opt.bind_addr);
		return 2;
	}
	if (bind(lfd, (struct sockaddr *) &addr, sizeof(addr)) < 0)
		die("bind");
	if (listen(lfd, 1024) < 0)
		die("listen");

	struct sigaction sa = {.sa_handler = on_signal};

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	Worker	   *workers = calloc((size_t) opt.threads, sizeof(Worker));

	if (!workers)
		die("calloc");
	for (int i = 0; i < opt.threads; i++)
	{
		Worker	   *wk = &workers[i];
		struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &listen_marker};

		wk->id = i;
		wk->listen_fd = lfd;
		wk->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (wk->epfd < 0)
			die("epoll_create1");
		if (epoll_ctl(wk->epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
			die("epoll_ctl");
	}
	fprintf(stderr, "synthnode: listening on http://%s:%d (chain id %" PRIu64 ", head %" PRIu64
			", %d transactions per block, %d threads, cache %zu MB)\n",
			opt.bind_addr, opt.port, opt.chain_id, opt.head, opt.txs_per_block,
			opt.threads, opt.cache_bytes >> 20);
	double		t_start = now_seconds();

	for (int i = 0; i < opt.threads; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
			die("pthread_create");
	for (int i = 0; i < opt.threads; i++)
		pthread_join(workers[i].thread, NULL);

	ServerStats total = {0};

	for (int i = 0; i < opt.threads; i++)
	{
		total.http_requests += workers[i].stats.http_requests;
		total.rpc_calls += workers[i].stats.rpc_calls;
		total.bytes_out += workers[i].stats.bytes_out;
	}
	double		dt = now_seconds() - t_start;

	fprintf(stderr, "synthnode: stopped after %.1f s: %" PRIu64 " HTTP requests, %" PRIu64
			" calls, %.1f MB sent; cache %" PRIu64 " hits, %" PRIu64 " misses\n",
			dt, total.http_requests, total.rpc_calls, total.bytes_out / 1e6,
			cache.hits, cache.misses);
	close(lfd);
	for (int i = 0; i < opt.threads; i++)
		close(workers[i].epfd);
	free(workers);
	free_scratch();
	return 0;
}
