/*
 * dnscache.h - answers kept in front of libunbound (lib/dns.c).  Private
 * to lib/.
 *
 * libunbound has a cache of its own, but every query still travels to its
 * worker thread and back through a pipe, and is parsed again: about a
 * tenth of the daemon's CPU for a message that needs six lookups.  This
 * table keeps the converted answers (struct ag_dns_result) for their TTL,
 * so that a name asked again is one hash probe and one copy.
 *
 * Bounded: a fixed number of slots, one answer each (a new answer takes
 * the slot of whatever was there), answers over AG_DNS_CACHE_ENTRY_MAX
 * bytes are not kept, and a TTL is cut to AG_DNS_CACHE_TTL_MAX.  Answers
 * with TTL 0 are never kept.  Thread-safe (locks per group of slots).
 */
#ifndef AG_DNSCACHE_H
#define AG_DNSCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "dns.h"
#include "status.h"

#define AG_DNS_CACHE_SLOTS 4096
#define AG_DNS_CACHE_ENTRY_MAX 4096	/* bytes of one answer, all in */
#define AG_DNS_CACHE_TTL_MAX 3600	/* seconds */

struct ag_dns_cache;

struct ag_dns_cache *ag_dns_cache_new(void);	/* NULL: out of memory */
void ag_dns_cache_free(struct ag_dns_cache *c);	/* NULL is fine */

/*
 * A copy of the answer to NAME/TYPE if one is kept and has not expired at
 * NOW_MS (CLOCK_MONOTONIC milliseconds): true, with its status (AG_OK or
 * AG_NOTFOUND) in *ST and a result the caller frees in *OUT, its ttl the
 * seconds left.  False when there is none (or no memory for the copy).
 */
bool ag_dns_cache_get(struct ag_dns_cache *c, const char *name, int type,
    uint64_t now_ms, ag_status *st, struct ag_dns_result **out);

/* Keep R, the answer of status ST (AG_OK or AG_NOTFOUND) to NAME/TYPE. */
void ag_dns_cache_put(struct ag_dns_cache *c, const char *name, int type,
    uint64_t now_ms, ag_status st, const struct ag_dns_result *r);

/* Forget every answer (local data changed). */
void ag_dns_cache_clear(struct ag_dns_cache *c);

#endif
