/*-------------------------------------------------------------------------
 *
 * fuzz_hex.c
 *	  libFuzzer harness for the hex helpers of decode.c that read node text
 *	  outside the block decoder: eth_parse_quantity_int64(),
 *	  eth_parse_hash(), eth_printable() and eth_bytes_to_hex().
 *
 *	  Input: one byte giving eth_printable()'s "max", then the text, copied
 *	  into a buffer of exactly its length.  Each function is compared with
 *	  a reference written here from its documented contract (decode.h):
 *	  - quantity: optional JSON quotes, "0x", 1 to 16 hex digits, no
 *		leading zero unless the value is 0, at most INT64_MAX; false leaves
 *		the result untouched; a value printed back reads the same;
 *	  - hash: optional JSON quotes, "0x", 64 hex digits; eth_bytes_to_hex()
 *		gives it back in lower case;
 *	  - printable: printable ASCII only, undoes to a prefix of the input,
 *		"..." exactly when cut, cut only once "max" bytes were written.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  fuzz/fuzz_hex.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <strings.h>

#include "decode.h"
#include "pgshim.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

static const int no_errors[] = {0};

static int
ref_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void
strip_quotes(const char **s, size_t *len)
{
	if (*len >= 2 && (*s)[0] == '"' && (*s)[*len - 1] == '"')
	{
		(*s)++;
		*len -= 2;
	}
}

static bool
ref_quantity(const char *s, size_t len, uint64 *v)
{
	strip_quotes(&s, &len);
	if (len < 3 || s[0] != '0' || s[1] != 'x' || len - 2 > 16)
		return false;
	if (s[2] == '0' && len > 3)
		return false;
	*v = 0;
	for (size_t i = 2; i < len; i++)
	{
		int			d = ref_hex(s[i]);

		if (d < 0)
			return false;
		*v = (*v << 4) | (uint64) d;
	}
	return *v <= (uint64) PG_INT64_MAX;
}

static bool
ref_hash(const char *s, size_t len, uint8 *hash)
{
	strip_quotes(&s, &len);
	if (len != 66 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return false;
	for (int i = 0; i < 32; i++)
	{
		int			hi = ref_hex(s[2 + 2 * i]);
		int			lo = ref_hex(s[3 + 2 * i]);

		if (hi < 0 || lo < 0)
			return false;
		hash[i] = (uint8) (hi << 4 | lo);
	}
	return true;
}

/* Undo eth_printable's escapes; the number of input bytes it stands for */
static size_t
undo_printable(const char *out, size_t outlen, const char *in, size_t inlen,
			   bool *cut)
{
	size_t		o = 0;
	size_t		i = 0;

	*cut = false;
	while (o < outlen)
	{
		unsigned char c;

		if (outlen - o == 3 && memcmp(out + o, "...", 3) == 0 && i < inlen)
		{
			/* "..." standing for the rest, unless the input goes on with it */
			if (!(inlen - i == 3 && memcmp(in + i, "...", 3) == 0))
			{
				*cut = true;
				return i;
			}
		}
		if (out[o] == '\\')
		{
			if (o + 1 >= outlen)
				pgshim_fail("eth_printable: dangling backslash");
			switch (out[o + 1])
			{
				case '\\':
					c = '\\';
					o += 2;
					break;
				case 'n':
					c = '\n';
					o += 2;
					break;
				case 't':
					c = '\t';
					o += 2;
					break;
				case 'r':
					c = '\r';
					o += 2;
					break;
				case 'x':
					if (o + 4 > outlen || ref_hex(out[o + 2]) < 0 || ref_hex(out[o + 3]) < 0)
						pgshim_fail("eth_printable: bad \\x escape");
					c = (unsigned char) (ref_hex(out[o + 2]) << 4 | ref_hex(out[o + 3]));
					if (c >= 0x20 && c < 0x7f)
						pgshim_fail("eth_printable: escaped a printable byte");
					o += 4;
					break;
				default:
					pgshim_fail("eth_printable: unknown escape \\%c", out[o + 1]);
			}
		}
		else
		{
			c = (unsigned char) out[o];
			o++;
		}
		if (i >= inlen || (unsigned char) in[i] != c)
			pgshim_fail("eth_printable: output does not undo to the input at byte %zu", i);
		i++;
	}
	return i;
}

/* Output length of eth_printable for one input byte */
static size_t
escaped_len(unsigned char c)
{
	if (c == '\\' || c == '\n' || c == '\t' || c == '\r')
		return 2;
	if (c >= 0x20 && c < 0x7f)
		return 1;
	return 4;
}

static void
check_printable(const char *s, size_t len, size_t max)
{
	char	   *out = eth_printable(s, len, max);
	size_t		outlen = strlen(out);
	size_t		used;
	size_t		written = 0;
	bool		cut;

	if (!pgshim_printable(out, outlen))
		pgshim_fail("eth_printable: output is not printable ASCII");
	used = undo_printable(out, outlen, s, len, &cut);
	if (!cut && used != len)
		pgshim_fail("eth_printable: %zu of %zu bytes shown, without \"...\"", used, len);
	for (size_t i = 0; i < used; i++)
		written += escaped_len((unsigned char) s[i]);
	if (cut && written < max)
		pgshim_fail("eth_printable: cut after %zu bytes of output, max %zu", written, max);
	/* "about max": one escape and the "..." beyond it */
	if (outlen > max + 3 + 3)
		pgshim_fail("eth_printable: %zu bytes of output, max %zu", outlen, max);
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	size_t		max;
	size_t		len;
	char	   *s;

	if (size < 1)
		return 0;
	max = data[0];
	len = size - 1;
	s = pgshim_exact_copy(data + 1, len);

	pgshim_begin();
	if (PGSHIM_TRY())
	{
		int64		q = -1;
		uint64		rq = 0;
		uint8		h[32];
		uint8		rh[32];
		bool		ok;
		bool		rok;

		ok = eth_parse_quantity_int64(s, len, &q);
		rok = ref_quantity(s, len, &rq);
		if (ok != rok || (ok && (uint64) q != rq))
			pgshim_fail("eth_parse_quantity_int64: %d " INT64_FORMAT ", reference %d " UINT64_FORMAT,
						(int) ok, q, (int) rok, rq);
		/* no partial output: false leaves *result as it was */
		if (!ok && q != -1)
			pgshim_fail("eth_parse_quantity_int64: false, but wrote " INT64_FORMAT, q);
		/* the value round-trips: printed back as a QUANTITY it reads the same */
		if (ok)
		{
			char		buf[32];
			int64		q2 = -1;
			int			n = snprintf(buf, sizeof(buf), "0x%llx", (long long) q);

			if (!eth_parse_quantity_int64(buf, n, &q2) || q2 != q)
				pgshim_fail("eth_parse_quantity_int64: %s does not read back as " INT64_FORMAT, buf, q);
		}

		ok = eth_parse_hash(s, len, h);
		rok = ref_hash(s, len, rh);
		if (ok != rok || (ok && memcmp(h, rh, 32) != 0))
			pgshim_fail("eth_parse_hash: %d, reference %d", (int) ok, (int) rok);
		if (ok)
		{
			char	   *hex = eth_bytes_to_hex(h, 32);
			const char *p = s;
			size_t		n = len;

			strip_quotes(&p, &n);
			if (strlen(hex) != 66 || strncmp(hex, "0x", 2) != 0 ||
				strncasecmp(hex + 2, p + 2, 64) != 0 ||
				strspn(hex + 2, "0123456789abcdef") != 64)
				pgshim_fail("eth_bytes_to_hex does not give the hash back");
		}

		/* any bytes: as many as the input has, up to 64 */
		{
			size_t		nb = Min(len, 64);
			char	   *hex = eth_bytes_to_hex((const uint8 *) s, nb);

			if (strlen(hex) != 2 + 2 * nb || strspn(hex + 2, "0123456789abcdef") != 2 * nb)
				pgshim_fail("eth_bytes_to_hex: wrong output for %zu bytes", nb);
		}

		check_printable(s, len, max);
	}
	else
		pgshim_check_error(no_errors, "hex helpers");
	pgshim_end();
	free(s);
	return 0;
}
