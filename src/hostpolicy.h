/*-------------------------------------------------------------------------
 *
 * hostpolicy.h
 *	  The operator's policy on the hosts that endpoints may reach
 *	  (ethindex.allowed_hosts, ethindex.denied_hosts).
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/hostpolicy.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ETHINDEX_HOSTPOLICY_H
#define ETHINDEX_HOSTPOLICY_H

#include "postgres.h"

#include <sys/socket.h>

#include "utils/guc.h"

/* GUC variables (ethindex.c) */
extern char *ethindex_allowed_hosts;
extern char *ethindex_denied_hosts;

extern bool host_policy_allows_name(const char *host, size_t len, const char **setting);
extern bool host_policy_allows_address(const struct sockaddr *sa);
extern bool host_policy_check(char **newval, void **extra, GucSource source);

#endif							/* ETHINDEX_HOSTPOLICY_H */
