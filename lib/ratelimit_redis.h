/*
 * ratelimit_redis.h - the shared rate backend: the GCRA of ratelimit.h
 * kept in Redis, so that several authgate instances (on several MTA
 * hosts) enforce one set of limits.
 *
 * One decision is one round trip: EVALSHA of a small Lua script that
 * reads the key's TAT, decides and writes it back with a TTL (the key
 * expires when it is fresh again).  The clock is Redis's own (TIME), so
 * hosts need not agree on the time.  A TAT is kept in microseconds since
 * the Unix epoch with an exact fraction ("TAT" or "TAT:FRAC:DEN", FRAC/DEN
 * of a microsecond, DEN = LIMIT / gcd(WINDOW, LIMIT) <= 2^52): the
 * increment of COST units is COST * WINDOW / LIMIT exactly, so a fresh
 * key admits exactly LIMIT, as in the local engine.  (Limits above 2^52
 * units per window round up by at most 2^-52 us a decision.)
 *
 * A hiredis context is not thread-safe: each thread that calls in gets
 * its own connection, made on first use (libmilter's worker threads live
 * long).  Every call has a deadline (the connect, send and receive
 * timeouts).  After a failed connection or a timeout no thread tries
 * again for AG_REDIS_RETRY_MS, and then only one: calls fail at once, so
 * an outage costs one timeout per window, not one per message.  A call
 * that timed out may still run on the server later: a key can then be
 * charged too much, never too little.
 *
 * Differences from the local engine: a COST over the limit is refused
 * without a round trip with remaining and reset_ms 0; a release that
 * makes a key fresh deletes it; foreach may show a key twice (SCAN).
 *
 * Errors are AG_TEMPFAIL (unreachable, timeout, error reply, unexpected
 * reply) or AG_NOMEM, with a one-line reason in ERR; the caller decides
 * what an outage means (On-RateBackendError).  Callers must ignore
 * SIGPIPE (the daemon does).
 */
#ifndef AG_RATELIMIT_REDIS_H
#define AG_RATELIMIT_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"
#include "status.h"

#define AG_REDIS_RETRY_MS 1000	/* no reconnect attempts for this long */
#define AG_REDIS_PREFIX "authgate:"	/* prepended to every key */

struct ag_redis;

/*
 * Parse URL and prepare (no connection yet):
 *   redis://[:PASSWORD@]HOST[:PORT][/DB]   (HOST may be [IPv6]; port 6379)
 *   unix:/PATH[?db=N]                      (also unix:///PATH)
 * TIMEOUT_MS (> 0) bounds connect and each command.  AG_INVALID with a
 * message in ERR for a bad URL; AG_NOMEM.
 */
ag_status ag_redis_new(const char *url, unsigned timeout_ms,
    struct ag_redis **out, char *err, size_t errlen);

/* Close every connection.  No call may be in progress; threads free
 * what is left of theirs on their next call or when they exit. */
void ag_redis_free(struct ag_redis *r);		/* NULL is fine */

/* The URL as given (for logs; the password is replaced by "***"). */
const char *ag_redis_url(const struct ag_redis *r);

/*
 * As ag_rate_take(): take COST units for KEY under LIM, now being Redis's
 * time.  AG_OK with the decision in OUT (same meaning of every field);
 * AG_INVALID for a bad LIM or a key over AG_RATE_KEY_MAX; AG_TEMPFAIL on
 * any backend trouble.  A COST over the limit, or a limit of 0, is
 * refused without a round trip.
 */
ag_status ag_redis_take(struct ag_redis *r, const void *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost,
    struct ag_rate_result *out, char *err, size_t errlen);

/* Give back COST units (never below fresh); AG_NOTFOUND when the key is
 * gone (expired or reset), AG_TEMPFAIL on trouble. */
ag_status ag_redis_release(struct ag_redis *r, const void *key,
    size_t keylen, const struct ag_rate_limit *lim, uint64_t cost,
    char *err, size_t errlen);

/*
 * Visit every live key (SCAN, in batches): CB gets the key without the
 * prefix, its TAT in nanoseconds since the epoch (as the local table
 * keeps them) and Redis's time now in milliseconds.  Nonzero from CB
 * stops.  AG_TEMPFAIL on trouble (CB may have seen some keys).
 */
ag_status ag_redis_foreach(struct ag_redis *r,
    int (*cb)(void *arg, const void *key, size_t keylen, uint64_t tat_ns,
    uint64_t now_ms), void *arg, char *err, size_t errlen);

/* Delete KEY (fresh again); AG_NOTFOUND when it was not there. */
ag_status ag_redis_reset(struct ag_redis *r, const void *key, size_t keylen,
    char *err, size_t errlen);

#endif
