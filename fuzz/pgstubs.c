/*-------------------------------------------------------------------------
 *
 * pgstubs.c
 *	  Strict stand-ins for the conversions the decoders leave to the
 *	  backend: numeric_in, int64_to_numeric, jsonb_in, construct_array,
 *	  construct_empty_array, pg_any_to_server.  Each checks that its input is what the
 *	  decoder promises to hand it and aborts (pgshim_fail) if not, which
 *	  turns it into a fuzzing oracle:
 *
 *	  - numeric_in: a non-empty string of decimal digits without leading
 *		zeros, at most 78 digits (numeric(78,0)), typmod -1;
 *	  - int64_to_numeric: a non-negative value (quantities are unsigned);
 *	  - jsonb_in: valid UTF-8 and valid JSON (checked with jansson); where
 *		the backend's jsonb_in itself raises an ERROR on valid JSON
 *		(\u0000, lone surrogate escapes), the stub raises the same ERROR;
 *	  - construct_array: bytea elements (-1, not by value, int alignment),
 *		each a plain 4-byte-header varlena;
 *	  - pg_any_to_server: text declared UTF-8, in a UTF-8 database; bytes
 *		that are not UTF-8 raise the backend's ERROR.
 *
 *	  They return values in a form the checks below recognize: numeric and
 *	  jsonb as tagged varlenas holding their text, arrays in the backend's
 *	  ArrayType layout.
 *
 *	  Also here: the JSON verdict of jansson the harnesses compare the
 *	  decoders with (pgshim_json_parse), and the checks of decoded Datums.
 *	  This file must not include utils/builtins.h: jansson and fmgrprotos.h
 *	  both declare json_object().
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  fuzz/pgstubs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/numeric.h"

#include "pgshim.h"

/* fmgrprotos.h cannot be included with jansson.h */
extern Datum numeric_in(PG_FUNCTION_ARGS);
extern Datum jsonb_in(PG_FUNCTION_ARGS);

#define NUMERIC_TAG		"#num"
#define JSONB_TAG		"#jsb"
#define TAG_LEN			4
#define MAX_DIGITS		78		/* numeric(78,0) */

/* a tagged varlena holding text */
static Datum
make_tagged(const char *tag, const char *text, size_t len)
{
	struct varlena *v = palloc(VARHDRSZ + TAG_LEN + len);

	SET_VARSIZE(v, VARHDRSZ + TAG_LEN + len);
	memcpy(VARDATA(v), tag, TAG_LEN);
	memcpy(VARDATA(v) + TAG_LEN, text, len);
	return PointerGetDatum(v);
}

/* the text of a tagged varlena, or NULL */
static const char *
tagged_text(Datum d, const char *tag, size_t *len)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	if (v == NULL || !VARATT_IS_4B_U(v) || VARSIZE(v) < VARHDRSZ + TAG_LEN ||
		memcmp(VARDATA(v), tag, TAG_LEN) != 0)
		return NULL;
	*len = VARSIZE(v) - VARHDRSZ - TAG_LEN;
	return VARDATA(v) + TAG_LEN;
}

static bool
digits_ok(const char *s, size_t n)
{
	if (n == 0 || n > MAX_DIGITS || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* ----------------------------------------------------------------
 * numeric
 * ----------------------------------------------------------------
 */

Datum
numeric_in(PG_FUNCTION_ARGS)
{
	const char *str;
	size_t		n;

	if (PG_NARGS() != 3 || PG_ARGISNULL(0))
		pgshim_fail("numeric_in called with %d arguments", PG_NARGS());
	str = PG_GETARG_CSTRING(0);
	n = strlen(str);
	if (!digits_ok(str, n))
		pgshim_fail("numeric_in(\"%s\"): not 1 to %d decimal digits without leading zeros",
					str, MAX_DIGITS);
	if (PG_GETARG_OID(1) != InvalidOid || PG_GETARG_INT32(2) != -1)
		pgshim_fail("numeric_in(\"%s\", %u, %d): unexpected type arguments",
					str, PG_GETARG_OID(1), PG_GETARG_INT32(2));
	return make_tagged(NUMERIC_TAG, str, n);
}

Numeric
int64_to_numeric(int64 val)
{
	char		buf[32];
	int			n;

	if (val < 0)
		pgshim_fail("int64_to_numeric(" INT64_FORMAT "): quantities are never negative", val);
	n = snprintf(buf, sizeof(buf), INT64_FORMAT, val);
	return (Numeric) DatumGetPointer(make_tagged(NUMERIC_TAG, buf, n));
}

bool
pgshim_is_numeric(Datum d, char *digits, size_t digitsize)
{
	size_t		n;
	const char *s = tagged_text(d, NUMERIC_TAG, &n);

	if (s == NULL || !digits_ok(s, n))
		return false;
	if (digits)
	{
		if (n + 1 > digitsize)
			return false;
		memcpy(digits, s, n);
		digits[n] = '\0';
	}
	return true;
}

/* ----------------------------------------------------------------
 * JSON
 * ----------------------------------------------------------------
 */

/* true if s[0..len) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF) */
static bool
utf8_valid(const unsigned char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		size_t		n;
		uint32		cp;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
		{
			n = 2;
			cp = c & 0x1f;
		}
		else if (c >= 0xe0 && c <= 0xef)
		{
			n = 3;
			cp = c & 0x0f;
		}
		else if (c >= 0xf0 && c <= 0xf4)
		{
			n = 4;
			cp = c & 0x07;
		}
		else
			return false;
		if (i + n > len)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
			(cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

static int
hex4(const char *p)
{
	int			v = 0;

	for (int k = 0; k < 4; k++)
	{
		char		c = p[k];
		int			d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = (v << 4) | d;
	}
	return v;
}

typedef enum EscapeProblem
{
	ESC_OK,
	ESC_ZERO,					/* \u0000 */
	ESC_SURROGATE				/* a surrogate escape not in a pair */
} EscapeProblem;

/*
 * The surrogate escape at hi_at (if any, >= 0) is not in a pair: record
 * the problem and, with sanitize, replace it by \u0041.
 * Returns -1, the new "no pending high surrogate".
 */
static int
lone_surrogate(char *s, int hi_at, bool sanitize, EscapeProblem *problem)
{
	if (hi_at >= 0)
	{
		if (*problem == ESC_OK)
			*problem = ESC_SURROGATE;
		if (sanitize)
			memcpy(s + hi_at, "\\u0041", 6);
	}
	return -1;
}

/*
 * Walk the strings of a JSON text (best effort on invalid text): the first
 * \u escape the backend's JSON lexer refuses, and the deepest nesting.
 * With sanitize, also rewrite in place, keeping every length: bytes >= 0x80
 * become 'z' (inside a string that is still a string character and not a
 * hex digit of a \u escape, outside a string or after a backslash it is
 * still invalid), NUL bytes become 0x01 (invalid anywhere, like NUL),
 * \u0000 becomes \u0030 and lone surrogate escapes \u0041, so that
 * jansson judges only the grammar.
 */
static EscapeProblem
json_walk(char *s, size_t len, bool sanitize, int *maxdepth)
{
	EscapeProblem problem = ESC_OK;
	bool		instr = false;
	int			depth = 0;
	int			hi_at = -1;		/* offset of a pending high surrogate */

	*maxdepth = 0;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (sanitize && c >= 0x80)
			s[i] = 'z';
		/* jansson takes a NUL byte after a value for the end of the text */
		if (sanitize && c == '\0')
			s[i] = '\x01';
		if (!instr)
		{
			if (c == '"')
				instr = true;
			else if (c == '[' || c == '{')
			{
				if (++depth > *maxdepth)
					*maxdepth = depth;
			}
			else if (c == ']' || c == '}')
				depth--;
			continue;
		}
		if (c == '"' || c != '\\')
		{
			hi_at = lone_surrogate(s, hi_at, sanitize, &problem);
			if (c == '"')
				instr = false;
			continue;
		}
		/* a backslash */
		if (i + 1 >= len)
			break;
		if (s[i + 1] != 'u' || i + 6 > len || hex4(s + i + 2) < 0)
		{
			hi_at = lone_surrogate(s, hi_at, sanitize, &problem);
			i++;				/* skip the escaped character */
			continue;
		}
		{
			int			cp = hex4(s + i + 2);

			if (cp >= 0xd800 && cp <= 0xdbff)
			{
				(void) lone_surrogate(s, hi_at, sanitize, &problem);
				hi_at = (int) i;
			}
			else if (cp >= 0xdc00 && cp <= 0xdfff)
			{
				if (hi_at < 0)	/* a low one without a high one */
					(void) lone_surrogate(s, (int) i, sanitize, &problem);
				hi_at = -1;
			}
			else
			{
				hi_at = lone_surrogate(s, hi_at, sanitize, &problem);
				if (cp == 0)
				{
					if (problem == ESC_OK)
						problem = ESC_ZERO;
					if (sanitize)
						memcpy(s + i, "\\u0030", 6);
				}
			}
			i += 5;
		}
	}
	(void) lone_surrogate(s, hi_at, sanitize, &problem);
	return problem;
}

PgShimJsonVerdict
pgshim_json_parse(const char *s, size_t len, size_t flags, json_t **out,
				  int *maxdepth)
{
	char	   *copy = malloc(len > 0 ? len : 1);
	json_error_t jerror;
	json_t	   *root;
	int			depth;
	PgShimJsonVerdict verdict;

	if (copy == NULL)
		abort();
	memcpy(copy, s, len);
	json_walk(copy, len, true, &depth);
	if (maxdepth)
		*maxdepth = depth;
	root = json_loadb(copy, len, flags | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerror);
	free(copy);
	if (root != NULL)
		verdict = PGSHIM_JSON_VALID;
	else
	{
		switch (json_error_code(&jerror))
		{
			case json_error_numeric_overflow:
			case json_error_null_byte_in_key:
			case json_error_duplicate_key:
			case json_error_out_of_memory:
				verdict = PGSHIM_JSON_UNSUPPORTED;
				break;
			default:
				verdict = PGSHIM_JSON_INVALID;
				break;
		}
	}
	if (out)
		*out = root;
	else if (root)
		json_decref(root);
	return verdict;
}

bool
pgshim_utf8_valid(const char *s, size_t len)
{
	return utf8_valid((const unsigned char *) s, len);
}

/*
 * The database of the harnesses is UTF-8: text in UTF-8 is checked as the
 * backend checks it (pg_verify_mbstr: no NUL bytes, overlong forms,
 * surrogates or code points above U+10FFFF) and returned as it is.
 */
char *
pg_any_to_server(const char *s, int len, int encoding)
{
	size_t		n;

	if (encoding != PG_UTF8)
		pgshim_fail("pg_any_to_server from encoding %d, not UTF-8", encoding);
	if (len < 0)
		pgshim_fail("pg_any_to_server of %d bytes", len);
	for (n = 0; n < (size_t) len; n++)
	{
		size_t		k;
		size_t		end;
		char		hex[32];
		int			pos = 0;

		if (s[n] != '\0' && (unsigned char) s[n] < 0x80)
			continue;
		/* the shortest prefix from here that is a valid character, if any */
		for (k = 1; k <= 4 && n + k <= (size_t) len; k++)
			if (s[n] != '\0' && utf8_valid((const unsigned char *) s + n, k))
				break;
		if (k <= 4 && n + k <= (size_t) len)
		{
			n += k - 1;
			continue;
		}
		/* as report_invalid_encoding(): the bytes of one character at most */
		end = Min(n + Max(pg_utf_mblen((const unsigned char *) s + n), 1), (size_t) len);
		for (k = n; k < end; k++)
			pos += snprintf(hex + pos, sizeof(hex) - pos, "%s0x%02x",
							k > n ? " " : "", (unsigned char) s[k]);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("invalid byte sequence for encoding \"%s\": %s", "UTF8", hex)));
	}
	return unconstify(char *, s);
}

Datum
jsonb_in(PG_FUNCTION_ARGS)
{
	char	   *text;
	size_t		len;
	int			depth;
	EscapeProblem problem;

	if (PG_NARGS() != 1 || PG_ARGISNULL(0))
		pgshim_fail("jsonb_in called with %d arguments", PG_NARGS());
	text = PG_GETARG_CSTRING(0);
	len = strlen(text);

	/*
	 * The backend's JSON lexer does not check the encoding of string
	 * contents: invalid UTF-8 would be stored as it is.
	 */
	if (!utf8_valid((const unsigned char *) text, len))
		pgshim_fail("jsonb_in: input is not valid UTF-8: \"%s\"", text);
	if (pgshim_json_parse(text, len, 0, NULL, &depth) == PGSHIM_JSON_INVALID)
		pgshim_fail("jsonb_in: input is not valid JSON: \"%s\"", text);

	/* what the backend's jsonb_in refuses in valid JSON */
	problem = json_walk(text, len, false, &depth);
	if (problem == ESC_ZERO)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("unsupported Unicode escape sequence"),
				 errdetail("\\u0000 cannot be converted to text.")));
	if (problem == ESC_SURROGATE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type json"),
				 errdetail("Unicode low surrogate must follow a high surrogate.")));
	return make_tagged(JSONB_TAG, text, len);
}

bool
pgshim_is_jsonb(Datum d)
{
	size_t		n;
	const char *s = tagged_text(d, JSONB_TAG, &n);

	return s != NULL && utf8_valid((const unsigned char *) s, n) &&
		pgshim_json_parse(s, n, 0, NULL, NULL) == PGSHIM_JSON_VALID;
}

const char *
pgshim_jsonb_text(Datum d, size_t *len)
{
	return tagged_text(d, JSONB_TAG, len);
}

/* ----------------------------------------------------------------
 * bytea and arrays
 * ----------------------------------------------------------------
 */

bool
pgshim_is_bytea(Datum d, int want_len)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);
	volatile uint8 sum = 0;
	Size		n;

	if (v == NULL || !VARATT_IS_4B_U(v) || VARSIZE(v) < VARHDRSZ)
		return false;
	n = VARSIZE(v) - VARHDRSZ;
	if (want_len >= 0 && n != (Size) want_len)
		return false;
	/* read every byte, for AddressSanitizer */
	for (Size i = 0; i < n; i++)
		sum ^= ((uint8 *) VARDATA(v))[i];
	(void) sum;
	return true;
}

static void
check_array_args(int nelems, Oid elmtype, int elmlen, bool elmbyval, char elmalign)
{
	if (nelems < 0 || elmtype != BYTEAOID || elmlen != -1 || elmbyval ||
		elmalign != TYPALIGN_INT)
		pgshim_fail("construct_array(%d elements of type %u, len %d, byval %d, align %c): not bytea",
					nelems, elmtype, elmlen, (int) elmbyval, elmalign);
}

ArrayType *
construct_empty_array(Oid elmtype)
{
	ArrayType  *a;

	if (elmtype != BYTEAOID)
		pgshim_fail("construct_empty_array(%u): not bytea", elmtype);
	a = palloc0(sizeof(ArrayType));
	SET_VARSIZE(a, sizeof(ArrayType));
	a->ndim = 0;
	a->dataoffset = 0;
	a->elemtype = elmtype;
	return a;
}

ArrayType *
construct_array(Datum *elems, int nelems, Oid elmtype, int elmlen,
				bool elmbyval, char elmalign)
{
	Size		nbytes = ARR_OVERHEAD_NONULLS(1);
	ArrayType  *a;
	char	   *p;

	check_array_args(nelems, elmtype, elmlen, elmbyval, elmalign);
	if (nelems == 0)
		return construct_empty_array(elmtype);
	for (int i = 0; i < nelems; i++)
	{
		if (!pgshim_is_bytea(elems[i], -1))
			pgshim_fail("construct_array: element %d is not a plain bytea", i);
		nbytes += INTALIGN(VARSIZE(DatumGetPointer(elems[i])));
	}
	a = palloc0(nbytes);
	SET_VARSIZE(a, nbytes);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = elmtype;
	ARR_DIMS(a)[0] = nelems;
	ARR_LBOUND(a)[0] = 1;
	p = ARR_DATA_PTR(a);
	for (int i = 0; i < nelems; i++)
	{
		Size		len = VARSIZE(DatumGetPointer(elems[i]));

		memcpy(p, DatumGetPointer(elems[i]), len);
		p += INTALIGN(len);
	}
	return a;
}

bool
pgshim_is_bytea_array(Datum d, int elem_len)
{
	ArrayType  *a = (ArrayType *) DatumGetPointer(d);
	char	   *p;
	char	   *end;

	if (a == NULL || !VARATT_IS_4B_U(a) || VARSIZE(a) < sizeof(ArrayType) ||
		a->elemtype != BYTEAOID || a->dataoffset != 0)
		return false;
	if (a->ndim == 0)
		return VARSIZE(a) == sizeof(ArrayType);
	if (a->ndim != 1 || VARSIZE(a) < ARR_OVERHEAD_NONULLS(1) ||
		ARR_DIMS(a)[0] <= 0 || ARR_LBOUND(a)[0] != 1)
		return false;
	p = ARR_DATA_PTR(a);
	end = (char *) a + VARSIZE(a);
	for (int i = 0; i < ARR_DIMS(a)[0]; i++)
	{
		Size		len;

		if (end - p < VARHDRSZ)
			return false;
		len = VARSIZE(p);
		if ((Size) (end - p) < len || !pgshim_is_bytea(PointerGetDatum(p), elem_len))
			return false;
		p += INTALIGN(len);
	}
	return p == end;
}
