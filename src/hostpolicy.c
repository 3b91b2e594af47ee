/*-------------------------------------------------------------------------
 *
 * hostpolicy.c
 *	  The operator's policy on the hosts that endpoints may reach
 *	  (ethindex.allowed_hosts, ethindex.denied_hosts): parsing the rules and
 *	  matching host names and addresses against them.
 *
 *	  A rule list is separated by commas or white space; a rule is "*"
 *	  (anything), a host name ("node.example", case-insensitive), a domain
 *	  ("*.example": its subdomains), an IPv4 or IPv6 address, or a network
 *	  in CIDR notation ("10.0.0.0/8", "fc00::/7").  An endpoint's host as
 *	  written in its URL must match allowed_hosts and must not match
 *	  denied_hosts; and every address libcurl is about to connect to must
 *	  not match an address or network of denied_hosts, so that a name that
 *	  resolves to a denied address (DNS rebinding included) is refused too.
 *	  An IPv4-mapped IPv6 address matches the rules of its IPv4 address.
 *
 *	  No palloc and no ereport in matching: it runs in libcurl's callbacks.
 *	  The GUC check hook (host_policy_check) reports bad rules.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/hostpolicy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "hostpolicy.h"

#define HOST_RULE_MAX		255 /* bytes of a rule */

typedef struct HostRule
{
	bool		any;			/* "*" */
	bool		domain;			/* "*.suffix": name holds ".suffix" */
	int			family;			/* AF_INET, AF_INET6 for addresses; 0 names */
	uint8		addr[16];
	int			bits;			/* prefix length of an address rule */
	char		name[HOST_RULE_MAX + 1];
} HostRule;

/*
 * Parse one rule (of length len); false if it is not a rule.
 */
static bool
parse_rule(const char *s, size_t len, HostRule *rule)
{
	char		text[HOST_RULE_MAX + 1];
	char	   *slash;
	int			maxbits;

	memset(rule, 0, sizeof(HostRule));
	if (len == 0 || len > HOST_RULE_MAX)
		return false;
	memcpy(text, s, len);
	text[len] = '\0';
	if (strcmp(text, "*") == 0)
	{
		rule->any = true;
		return true;
	}
	slash = strchr(text, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, text, rule->addr) == 1)
	{
		rule->family = AF_INET;
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, text, rule->addr) == 1)
	{
		rule->family = AF_INET6;
		maxbits = 128;
	}
	else
	{
		if (slash)
			return false;
		if (text[0] == '*')
		{
			if (text[1] != '.' || text[2] == '\0')
				return false;
			rule->domain = true;
			memmove(text, text + 1, strlen(text));
		}
		for (char *p = text; *p; p++)
		{
			if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '.' || *p == '_'))
				return false;
			*p = (char) pg_tolower((unsigned char) *p);
		}
		strlcpy(rule->name, text, sizeof(rule->name));
		return true;
	}
	rule->bits = maxbits;
	if (slash)
	{
		char	   *end;
		long		bits = strtol(slash + 1, &end, 10);

		if (*end != '\0' || end == slash + 1 || bits < 0 || bits > maxbits)
			return false;
		rule->bits = (int) bits;
	}
	return true;
}

/*
 * Call "visit" for each rule of a list until it returns true; false at the
 * end, or with *bad set to the first rule that does not parse.
 */
static bool
for_each_rule(const char *list, bool (*visit) (const HostRule *rule, const void *arg),
			  const void *arg, const char **bad, size_t *badlen)
{
	const char *p = list ? list : "";

	*bad = NULL;
	while (*p)
	{
		size_t		len;
		HostRule	rule;

		p += strspn(p, ", \t\n");
		len = strcspn(p, ", \t\n");
		if (len == 0)
			break;
		if (!parse_rule(p, len, &rule))
		{
			*bad = p;
			*badlen = len;
			return false;
		}
		if (visit(&rule, arg))
			return true;
		p += len;
	}
	return false;
}

static const uint8 v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool
address_matches(const HostRule *rule, int family, const uint8 *addr)
{
	int			full;
	int			rest;

	/* an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4 address */
	if (family == AF_INET6 && rule->family == AF_INET &&
		memcmp(addr, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0)
	{
		family = AF_INET;
		addr += sizeof(v4mapped_prefix);
	}
	if (rule->family != family)
		return false;
	full = rule->bits / 8;
	rest = rule->bits % 8;
	if (memcmp(rule->addr, addr, full) != 0)
		return false;
	return rest == 0 ||
		((rule->addr[full] ^ addr[full]) & (uint8) (0xff << (8 - rest))) == 0;
}

/* What a host name, or an address literal, is matched as */
typedef struct HostName
{
	const char *name;			/* lower case */
	int			family;			/* an address literal: its family, else 0 */
	uint8		addr[16];
} HostName;

static bool
name_matches(const HostRule *rule, const void *arg)
{
	const HostName *host = (const HostName *) arg;

	if (rule->any)
		return true;
	if (rule->family != 0)
		return host->family != 0 && address_matches(rule, host->family, host->addr);
	if (host->family != 0)
		return false;
	if (rule->domain)
	{
		size_t		n = strlen(host->name);
		size_t		k = strlen(rule->name);

		return n > k && strcmp(host->name + n - k, rule->name) == 0;
	}
	return strcmp(host->name, rule->name) == 0;
}

typedef struct HostAddress
{
	int			family;
	uint8		addr[16];
} HostAddress;

static bool
address_rule_matches(const HostRule *rule, const void *arg)
{
	const HostAddress *a = (const HostAddress *) arg;

	return rule->any || (rule->family != 0 && address_matches(rule, a->family, a->addr));
}

/*
 * Whether an endpoint's host, as written in its URL (an address in
 * brackets for IPv6), may be used; if not, *setting names the setting
 * that refuses it.
 */
bool
host_policy_allows_name(const char *host, size_t len, const char **setting)
{
	char		name[HOST_RULE_MAX + 1];
	HostName	h;
	const char *bad;
	size_t		badlen;

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
	{
		host++;
		len -= 2;
	}
	if (len > HOST_RULE_MAX)
		len = HOST_RULE_MAX;
	for (size_t i = 0; i < len; i++)
		name[i] = (char) pg_tolower((unsigned char) host[i]);
	name[len] = '\0';
	memset(&h, 0, sizeof(h));
	h.name = name;
	if (inet_pton(AF_INET, name, h.addr) == 1)
		h.family = AF_INET;
	else if (inet_pton(AF_INET6, name, h.addr) == 1)
		h.family = AF_INET6;

	if (!for_each_rule(ethindex_allowed_hosts, name_matches, &h, &bad, &badlen))
	{
		*setting = "ethindex.allowed_hosts";
		return false;
	}
	if (for_each_rule(ethindex_denied_hosts, name_matches, &h, &bad, &badlen))
	{
		*setting = "ethindex.denied_hosts";
		return false;
	}
	return true;
}

/* Whether libcurl may connect to an address (not one of denied_hosts). */
bool
host_policy_allows_address(const struct sockaddr *sa)
{
	HostAddress a;
	const char *bad;
	size_t		badlen;

	memset(&a, 0, sizeof(a));
	a.family = sa->sa_family;
	if (sa->sa_family == AF_INET)
		memcpy(a.addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(a.addr, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
	else
		return false;
	return !for_each_rule(ethindex_denied_hosts, address_rule_matches, &a, &bad, &badlen);
}

static bool
visit_none(const HostRule *rule, const void *arg)
{
	return false;
}

/* GUC check hook of both settings: every rule must parse. */
bool
host_policy_check(char **newval, void **extra, GucSource source)
{
	const char *bad;
	size_t		badlen;

	(void) for_each_rule(*newval, visit_none, NULL, &bad, &badlen);
	if (bad != NULL)
	{
		GUC_check_errdetail("\"%.*s\" is not a host name, a \"*.\" domain, an address or a network.",
							(int) Min(badlen, HOST_RULE_MAX), bad);
		return false;
	}
	return true;
}
