/*-------------------------------------------------------------------------
 *
 * pgshim.h
 *	  The PostgreSQL backend as far as the fuzz harnesses need it: what
 *	  pgshim.c and pgstubs.c provide, and the helpers the harnesses share
 *	  (error capture, oracles, checks of decoded Datums).
 *
 *	  A harness runs each input as
 *
 *		pgshim_begin();
 *		if (PGSHIM_TRY())
 *			... call the decoder, check what it returned ...
 *		else
 *			pgshim_check_error(allowed codes, "what");
 *		pgshim_end();
 *
 *	  ereport(ERROR) longjmps back to PGSHIM_TRY(), which then returns
 *	  false with the error in pgshim_error; pgshim_end() frees everything
 *	  palloc'd since pgshim_begin().  A broken promise (a stub's strict
 *	  input check, an undocumented error code, non-printable error text)
 *	  ends in pgshim_fail(), which prints the reason and aborts, so
 *	  libFuzzer records the input as a crash.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  fuzz/pgshim.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_PGSHIM_H
#define ETHINDEX_PGSHIM_H

#include "postgres.h"

#include <setjmp.h>
#include <stdio.h>

/* port.h points these at libpgport's printf, which is not linked here */
#undef printf
#undef fprintf
#undef vfprintf
#undef snprintf
#undef vsnprintf

/* The ERROR being handled, as errstart() .. errfinish() built it. */
typedef struct PgShimError
{
	int			elevel;
	int			sqlerrcode;
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *context;
	const char *filename;
	int			lineno;
	const char *funcname;
} PgShimError;

extern PgShimError pgshim_error;
extern sigjmp_buf *pgshim_exception;

/* true when entered; false when an ERROR was raised inside */
#define PGSHIM_TRY() \
	(pgshim_exception = &pgshim_jmp, sigsetjmp(pgshim_jmp, 0) == 0)
extern sigjmp_buf pgshim_jmp;

extern void pgshim_begin(void);
extern void pgshim_end(void);
extern size_t pgshim_live_allocations(void);

extern void pgshim_fail(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

/*
 * After an ERROR: check that its code is one of the codes (a list ending
 * with 0) and that its texts are short printable ASCII; otherwise fail.
 */
extern void pgshim_check_error(const int *allowed, const char *what);

/* true if s[0..len) is printable ASCII (0x20 to 0x7e) */
extern bool pgshim_printable(const char *s, size_t len);

/* Copy of data[0..len) in a malloc'd buffer of exactly len bytes */
extern char *pgshim_exact_copy(const uint8 *data, size_t len);

/* Checks of values built by the stubs (pgstubs.c) */
extern bool pgshim_is_numeric(Datum d, char *digits, size_t digitsize);
extern bool pgshim_is_jsonb(Datum d);
extern const char *pgshim_jsonb_text(Datum d, size_t *len);
extern bool pgshim_is_bytea(Datum d, int want_len);
extern bool pgshim_is_bytea_array(Datum d, int elem_len);

/*
 * jansson's verdict on a JSON text, judged the way the project judges JSON
 * (pgstubs.c): the text is first rewritten with every length kept so that
 * jansson judges only the grammar (bytes >= 0x80 become 'z', \u0000 and
 * lone surrogate escapes become other escapes).  *maxdepth gets the
 * deepest nesting of arrays and objects.
 */
typedef enum PgShimJsonVerdict
{
	PGSHIM_JSON_VALID,			/* valid JSON; *out (if asked) is the value */
	PGSHIM_JSON_INVALID,		/* not JSON */
	PGSHIM_JSON_UNSUPPORTED		/* JSON jansson cannot hold: number
								 * overflow, \u0000 in a key */
} PgShimJsonVerdict;

struct json_t;
extern PgShimJsonVerdict pgshim_json_parse(const char *s, size_t len,
										   size_t flags, struct json_t **out,
										   int *maxdepth);
extern bool pgshim_utf8_valid(const char *s, size_t len);

#endif							/* ETHINDEX_PGSHIM_H */
