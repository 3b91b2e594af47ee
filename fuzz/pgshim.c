/*-------------------------------------------------------------------------
 *
 * pgshim.c
 *	  The backend services the decoders use, for running them outside a
 *	  backend under libFuzzer: memory (palloc and friends), error reports
 *	  (ereport, elog, error context callbacks), StringInfo, psprintf,
 *	  check_stack_depth, the UTF-8 helpers, DirectFunctionCall, strlcpy.
 *
 *	  Memory: every allocation is its own malloc() block, so that
 *	  AddressSanitizer sees every overrun, linked into one list (the
 *	  "arena") that pgshim_end() frees after each input, the way the
 *	  backend resets a memory context: no leak is reported for memory the
 *	  decoders leave to their context.  The link header in front of each
 *	  block is poisoned, so writing before a block is still caught.
 *	  Requests above MaxAllocSize (without MCXT_ALLOC_HUGE) raise the
 *	  backend's internal error.
 *
 *	  Errors: errstart() .. errfinish() build the report as the backend
 *	  does, run the error_context_stack callbacks, and for ERROR longjmp to
 *	  PGSHIM_TRY(); they never return from an ERROR.  FATAL and above, or an
 *	  ERROR outside PGSHIM_TRY(), abort.
 *
 *	  Written for these harnesses; no PostgreSQL source is copied.  The
 *	  conversions the decoders delegate to the backend (numeric_in,
 *	  jsonb_in, construct_array, ...) are strict stubs in pgstubs.c.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  fuzz/pgshim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <sanitizer/asan_interface.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "pgshim.h"

/* ----------------------------------------------------------------
 * Memory
 * ----------------------------------------------------------------
 */

#define CHUNK_MAGIC		UINT64CONST(0x50475348494d4348)	/* "PGSHIMCH" */

typedef struct ShimChunk
{
	struct ShimChunk *prev;
	struct ShimChunk *next;
	size_t		size;
	uint64		magic;
} ShimChunk;

StaticAssertDecl(sizeof(ShimChunk) % MAXIMUM_ALIGNOF == 0,
				 "chunk header must keep MAXALIGN");

static ShimChunk *arena_head = NULL;
static size_t arena_count = 0;

/* a non-NULL context for code that compares or switches contexts */
static char dummy_context;
MemoryContext CurrentMemoryContext = (MemoryContext) &dummy_context;

static inline void
chunk_open(ShimChunk *c)
{
	ASAN_UNPOISON_MEMORY_REGION(c, sizeof(ShimChunk));
}

static inline void
chunk_close(ShimChunk *c)
{
	ASAN_POISON_MEMORY_REGION(c, sizeof(ShimChunk));
}

static ShimChunk *
chunk_of(void *pointer, const char *caller)
{
	ShimChunk  *c;

	if (pointer == NULL)
		pgshim_fail("%s(NULL)", caller);
	c = ((ShimChunk *) pointer) - 1;
	chunk_open(c);
	if (c->magic != CHUNK_MAGIC)
		pgshim_fail("%s of a pointer palloc did not return", caller);
	return c;
}

static void
arena_link(ShimChunk *c)
{
	c->prev = NULL;
	c->next = arena_head;
	if (arena_head)
	{
		chunk_open(arena_head);
		arena_head->prev = c;
		chunk_close(arena_head);
	}
	arena_head = c;
	arena_count++;
}

/* c is open; neighbours are opened and closed around the change */
static void
arena_unlink(ShimChunk *c)
{
	if (c->prev)
	{
		chunk_open(c->prev);
		c->prev->next = c->next;
		chunk_close(c->prev);
	}
	else
		arena_head = c->next;
	if (c->next)
	{
		chunk_open(c->next);
		c->next->prev = c->prev;
		chunk_close(c->next);
	}
	arena_count--;
}

static void
check_request(Size size, int flags)
{
	if ((flags & MCXT_ALLOC_HUGE) ? !AllocHugeSizeIsValid(size) : !AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
}

static void *
shim_alloc(Size size, int flags)
{
	ShimChunk  *c;

	check_request(size, flags);
	c = malloc(sizeof(ShimChunk) + size);
	if (c == NULL)
	{
		if (flags & MCXT_ALLOC_NO_OOM)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu.", size)));
	}
	c->size = size;
	c->magic = CHUNK_MAGIC;
	arena_link(c);
	chunk_close(c);
	if (flags & MCXT_ALLOC_ZERO)
		memset(c + 1, 0, size);
	return c + 1;
}

static void *
shim_realloc(void *pointer, Size size, int flags, const char *caller)
{
	ShimChunk  *c = chunk_of(pointer, caller);
	ShimChunk  *n;

	check_request(size, flags);
	arena_unlink(c);
	n = realloc(c, sizeof(ShimChunk) + size);
	if (n == NULL)
	{
		arena_link(c);
		chunk_close(c);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu.", size)));
	}
	n->size = size;
	arena_link(n);
	chunk_close(n);
	return n + 1;
}

void *
palloc(Size size)
{
	return shim_alloc(size, 0);
}

void *
palloc0(Size size)
{
	return shim_alloc(size, MCXT_ALLOC_ZERO);
}

void *
palloc_extended(Size size, int flags)
{
	return shim_alloc(size, flags);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return shim_alloc(size, 0);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return shim_alloc(size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocExtended(MemoryContext context, Size size, int flags)
{
	return shim_alloc(size, flags);
}

void *
MemoryContextAllocHuge(MemoryContext context, Size size)
{
	return shim_alloc(size, MCXT_ALLOC_HUGE);
}

void *
repalloc(void *pointer, Size size)
{
	return shim_realloc(pointer, size, 0, "repalloc");
}

void *
repalloc_huge(void *pointer, Size size)
{
	return shim_realloc(pointer, size, MCXT_ALLOC_HUGE, "repalloc_huge");
}

void
pfree(void *pointer)
{
	ShimChunk  *c = chunk_of(pointer, "pfree");

	arena_unlink(c);
	c->magic = 0;
	free(c);
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len + 1);
	return out;
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	return pstrdup(string);
}

/* vsnprintf into a new palloc'd string */
static char *
shim_vsprintf(const char *fmt, va_list args)
{
	va_list		copy;
	int			n;
	char	   *out;

	va_copy(copy, args);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		pgshim_fail("vsnprintf failed for format \"%s\"", fmt);
	out = palloc((Size) n + 1);
	vsnprintf(out, (size_t) n + 1, fmt, args);
	return out;
}

char *
psprintf(const char *fmt,...)
{
	va_list		args;
	char	   *out;

	va_start(args, fmt);
	out = shim_vsprintf(fmt, args);
	va_end(args);
	return out;
}

size_t
pgshim_live_allocations(void)
{
	return arena_count;
}

/* ----------------------------------------------------------------
 * Errors
 * ----------------------------------------------------------------
 */

PgShimError pgshim_error;
sigjmp_buf	pgshim_jmp;
sigjmp_buf *pgshim_exception = NULL;
ErrorContextCallback *error_context_stack = NULL;

static int	error_depth = 0;	/* errstart() calls not yet finished */
static char *stack_base = NULL;

void
pgshim_fail(const char *fmt,...)
{
	va_list		args;

	fprintf(stderr, "\n==== pgshim: oracle violation: ");
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\n");
	if (pgshim_error.message)
		fprintf(stderr, "==== last error: %s | %s | %s\n", pgshim_error.message,
				pgshim_error.detail ? pgshim_error.detail : "",
				pgshim_error.context ? pgshim_error.context : "");
	fflush(stderr);
	abort();
}

void
pgshim_begin(void)
{
	char		here;

	if (arena_head != NULL)
		pgshim_fail("pgshim_begin() with memory left from the previous input");
	stack_base = &here;
	memset(&pgshim_error, 0, sizeof(pgshim_error));
	error_depth = 0;
	error_context_stack = NULL;
	pgshim_exception = NULL;
	CurrentMemoryContext = (MemoryContext) &dummy_context;
}

void
pgshim_end(void)
{
	while (arena_head != NULL)
	{
		ShimChunk  *c = arena_head;

		chunk_open(c);
		arena_head = c->next;
		c->magic = 0;
		free(c);
	}
	arena_count = 0;
	memset(&pgshim_error, 0, sizeof(pgshim_error));
	error_depth = 0;
	error_context_stack = NULL;
	pgshim_exception = NULL;
}

bool
errstart(int elevel, const char *domain)
{
	if (elevel < ERROR)
		return false;			/* the decoders' notices are not checked */
	if (elevel > ERROR)
		pgshim_fail("ereport at level %d (FATAL or worse)", elevel);
	if (error_depth > 0)
		pgshim_fail("ereport(ERROR) while building another error report");
	error_depth++;
	memset(&pgshim_error, 0, sizeof(pgshim_error));
	pgshim_error.elevel = elevel;
	pgshim_error.sqlerrcode = ERRCODE_INTERNAL_ERROR;
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	ErrorContextCallback *econtext;

	pgshim_error.filename = filename;
	pgshim_error.lineno = lineno;
	pgshim_error.funcname = funcname;

	/* as the backend: the context callbacks add their lines */
	for (econtext = error_context_stack; econtext != NULL; econtext = econtext->previous)
		econtext->callback(econtext->arg);

	error_depth = 0;
	if (pgshim_exception == NULL)
		pgshim_fail("ERROR outside PGSHIM_TRY(): %s (%s:%d)",
					pgshim_error.message ? pgshim_error.message : "", filename, lineno);
	/* the handler owns the stack from here, as after PG_CATCH() */
	error_context_stack = NULL;
	siglongjmp(*pgshim_exception, 1);
}

int
errcode(int sqlerrcode)
{
	pgshim_error.sqlerrcode = sqlerrcode;
	return 0;
}

#define SET_FIELD(field) \
	do { \
		va_list		args; \
		va_start(args, fmt); \
		pgshim_error.field = shim_vsprintf(fmt, args); \
		va_end(args); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	SET_FIELD(message);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	SET_FIELD(message);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	SET_FIELD(detail);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	SET_FIELD(detail);
	return 0;
}

int
errhint(const char *fmt,...)
{
	SET_FIELD(hint);
	return 0;
}

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

int
errcontext_msg(const char *fmt,...)
{
	va_list		args;
	char	   *line;

	va_start(args, fmt);
	line = shim_vsprintf(fmt, args);
	va_end(args);
	if (pgshim_error.context)
		pgshim_error.context = psprintf("%s\n%s", pgshim_error.context, line);
	else
		pgshim_error.context = line;
	return 0;
}

/* As the backend's check with max_stack_depth = 2MB (less its slop). */
void
check_stack_depth(void)
{
	char		here;
	ptrdiff_t	depth;

	if (stack_base == NULL)
		return;
	depth = stack_base - &here;
	if (depth < 0)
		depth = -depth;
	if (depth > 1536 * 1024L)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("stack depth limit exceeded")));
}

bool
pgshim_printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c > 0x7e)
			return false;
	}
	return true;
}

/* Longest message, detail or context line a decoder may produce */
#define MAX_ERROR_TEXT	1024

static void
check_error_text(const char *field, const char *text, const char *what)
{
	const char *line = text;

	if (text == NULL)
		return;
	/* context lines are separated by newlines; each must be printable */
	while (line)
	{
		const char *nl = strchr(line, '\n');
		size_t		n = nl ? (size_t) (nl - line) : strlen(line);

		if (!pgshim_printable(line, n))
			pgshim_fail("%s: error %s is not printable ASCII: \"%s\"", what, field, text);
		if (n > MAX_ERROR_TEXT)
			pgshim_fail("%s: error %s is %zu bytes long", what, field, n);
		if (nl && strcmp(field, "context") != 0)
			pgshim_fail("%s: error %s has a newline: \"%s\"", what, field, text);
		line = nl ? nl + 1 : NULL;
	}
}

void
pgshim_check_error(const int *allowed, const char *what)
{
	static int	verbose = -1;
	const int  *a;

	/* FUZZ_VERBOSE set: show every ERROR (for reading regression inputs) */
	if (verbose < 0)
		verbose = getenv("FUZZ_VERBOSE") != NULL;
	if (verbose)
		fprintf(stderr, "%s: ERROR %s: %s%s%s%s%s\n", what,
				unpack_sql_state(pgshim_error.sqlerrcode),
				pgshim_error.message ? pgshim_error.message : "",
				pgshim_error.detail ? " DETAIL: " : "",
				pgshim_error.detail ? pgshim_error.detail : "",
				pgshim_error.context ? " CONTEXT: " : "",
				pgshim_error.context ? pgshim_error.context : "");
	for (a = allowed; *a != 0; a++)
		if (*a == pgshim_error.sqlerrcode)
			break;
	if (*a == 0)
		pgshim_fail("%s: error with undocumented code %s at %s:%d: %s",
					what, unpack_sql_state(pgshim_error.sqlerrcode),
					pgshim_error.filename, pgshim_error.lineno,
					pgshim_error.message ? pgshim_error.message : "(no message)");
	if (pgshim_error.message == NULL || pgshim_error.message[0] == '\0')
		pgshim_fail("%s: error without a message at %s:%d", what,
					pgshim_error.filename, pgshim_error.lineno);
	check_error_text("message", pgshim_error.message, what);
	check_error_text("detail", pgshim_error.detail, what);
	check_error_text("hint", pgshim_error.hint, what);
	check_error_text("context", pgshim_error.context, what);
}

/* The five-character SQLSTATE of an error code (as elog.c's) */
char *
unpack_sql_state(int sql_state)
{
	static char buf[12];
	int			i;

	for (i = 0; i < 5; i++)
	{
		buf[i] = PGUNSIXBIT(sql_state);
		sql_state >>= 6;
	}
	buf[i] = '\0';
	return buf;
}

char *
pgshim_exact_copy(const uint8 *data, size_t len)
{
	/* malloc(0) may return NULL; keep a valid pointer with nothing readable */
	char	   *copy = malloc(len > 0 ? len : 1);

	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, data, len);
	else
		ASAN_POISON_MEMORY_REGION(copy, 1);
	return copy;
}

/* ----------------------------------------------------------------
 * StringInfo
 * ----------------------------------------------------------------
 */

StringInfo
makeStringInfo(void)
{
	StringInfo	str = palloc(sizeof(StringInfoData));

	initStringInfo(str);
	return str;
}

void
initStringInfo(StringInfo str)
{
	str->maxlen = 1024;
	str->data = palloc(str->maxlen);
	resetStringInfo(str);
}

void
resetStringInfo(StringInfo str)
{
	str->data[0] = '\0';
	str->len = 0;
	str->cursor = 0;
}

void
enlargeStringInfo(StringInfo str, int needed)
{
	int			newlen;

	if (needed < 0)
		elog(ERROR, "invalid string enlargement request size: %d", needed);
	if ((Size) needed >= (MaxAllocSize - (Size) str->len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("out of memory"),
				 errdetail("Cannot enlarge string buffer containing %d bytes by %d more bytes.",
						   str->len, needed)));
	needed += str->len + 1;
	if (needed <= str->maxlen)
		return;
	newlen = 2 * str->maxlen;
	while (needed > newlen)
		newlen = 2 * newlen;
	if (newlen > (int) MaxAllocSize)
		newlen = (int) MaxAllocSize;
	str->data = repalloc(str->data, newlen);
	str->maxlen = newlen;
}

int
appendStringInfoVA(StringInfo str, const char *fmt, va_list args)
{
	int			avail = str->maxlen - str->len;
	int			n;

	n = vsnprintf(str->data + str->len, (size_t) avail, fmt, args);
	if (n < 0)
		pgshim_fail("vsnprintf failed for format \"%s\"", fmt);
	if (n < avail)
	{
		str->len += n;
		return 0;
	}
	/* did not fit: the caller enlarges by what is returned and retries */
	str->data[str->len] = '\0';
	return n + 1;
}

void
appendStringInfo(StringInfo str, const char *fmt,...)
{
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(str, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(str, needed);
	}
}

void
appendBinaryStringInfo(StringInfo str, const char *data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
	str->data[str->len] = '\0';
}

void
appendBinaryStringInfoNT(StringInfo str, const char *data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	if (str->len + 1 >= str->maxlen)
		enlargeStringInfo(str, 1);
	str->data[str->len] = ch;
	str->len++;
	str->data[str->len] = '\0';
}

void
appendStringInfoSpaces(StringInfo str, int count)
{
	if (count > 0)
	{
		enlargeStringInfo(str, count);
		memset(str->data + str->len, ' ', count);
		str->len += count;
		str->data[str->len] = '\0';
	}
}

/* ----------------------------------------------------------------
 * UTF-8
 * ----------------------------------------------------------------
 */

/*
 * The decoders only encode code points of JSON \u escapes that they
 * checked: 1 to 0x10FFFF, no surrogates.  Anything else is a broken
 * promise.
 */
unsigned char *
unicode_to_utf8(pg_wchar c, unsigned char *utf8string)
{
	if (c == 0 || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		pgshim_fail("unicode_to_utf8(0x%x): not a code point the decoder may encode", c);
	if (c <= 0x7F)
		utf8string[0] = (unsigned char) c;
	else if (c <= 0x7FF)
	{
		utf8string[0] = (unsigned char) (0xC0 | (c >> 6));
		utf8string[1] = (unsigned char) (0x80 | (c & 0x3F));
	}
	else if (c <= 0xFFFF)
	{
		utf8string[0] = (unsigned char) (0xE0 | (c >> 12));
		utf8string[1] = (unsigned char) (0x80 | ((c >> 6) & 0x3F));
		utf8string[2] = (unsigned char) (0x80 | (c & 0x3F));
	}
	else
	{
		utf8string[0] = (unsigned char) (0xF0 | (c >> 18));
		utf8string[1] = (unsigned char) (0x80 | ((c >> 12) & 0x3F));
		utf8string[2] = (unsigned char) (0x80 | ((c >> 6) & 0x3F));
		utf8string[3] = (unsigned char) (0x80 | (c & 0x3F));
	}
	return utf8string;
}

int
pg_utf_mblen(const unsigned char *s)
{
	if ((*s & 0x80) == 0)
		return 1;
	if ((*s & 0xe0) == 0xc0)
		return 2;
	if ((*s & 0xf0) == 0xe0)
		return 3;
	if ((*s & 0xf8) == 0xf0)
		return 4;
	return 1;
}

/* ----------------------------------------------------------------
 * fmgr and port
 * ----------------------------------------------------------------
 */

Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}

Datum
DirectFunctionCall3Coll(PGFunction func, Oid collation, Datum arg1, Datum arg2,
						Datum arg3)
{
	LOCAL_FCINFO(fcinfo, 3);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 3, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = arg2;
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = arg3;
	fcinfo->args[2].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}

/* libpgport's, for glibc before 2.38 */
size_t
strlcpy(char *dst, const char *src, size_t siz)
{
	size_t		n = strlen(src);

	if (siz > 0)
	{
		size_t		k = n < siz - 1 ? n : siz - 1;

		memcpy(dst, src, k);
		dst[k] = '\0';
	}
	return n;
}
