/*
 * ratelimit.h - rate limits: the algorithm (GCRA, the generic cell rate
 * algorithm, a token bucket in one number per key) and the local engine,
 * an in-memory keyed table with striped locks, bounded size and expiry.
 *
 * Semantics of "LIMIT per WINDOW" (documented in authgatectl(8)): each
 * unit costs an emission interval T = WINDOW / LIMIT; a key may run up to
 * WINDOW ahead of now.  So a fresh key admits a burst of LIMIT at once,
 * then one unit every T; after a quiet period of WINDOW it is fresh
 * again.  Over any interval of length D at most LIMIT + D / T units pass.
 *
 * Quota is reserved when a transaction is checked and given back if the
 * transaction does not complete (RSET, rejection later, lost connection):
 * ag_rate_take() then ag_rate_release() with the same arguments.
 *
 * Time is always an argument (milliseconds on any monotonic scale the
 * caller keeps), so tests never sleep.  Thread safety: every function may
 * be called from any thread.
 *
 * A TAT is a time in nanoseconds (AG_RATE_TAT_PER_MS per millisecond) on
 * the caller's scale, rounded up.  Decisions are exact (those of GCRA on
 * rational numbers) for every LIMIT up to AG_RATE_TAT_PER_MS per window,
 * whether or not LIMIT divides WINDOW; above that a key is charged at
 * most 1 ns too much per decision, never too little.
 */
#ifndef AG_RATELIMIT_H
#define AG_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define AG_RATE_KEY_MAX 512	/* bytes of a key */
#define AG_RATE_TAT_PER_MS 1000000ULL	/* TAT unit: 1 ns */
/* Longest window (100 years); a longer one, or 0, is AG_INVALID. */
#define AG_RATE_WINDOW_MAX_MS (100ULL * 366 * 86400 * 1000)
/* Later times count as this one (about year 2454 on the Unix epoch). */
#define AG_RATE_NOW_MAX_MS \
	(UINT64_MAX / AG_RATE_TAT_PER_MS - AG_RATE_WINDOW_MAX_MS - 1)
#define AG_RATE_NEVER UINT64_MAX	/* retry_ms: COST can never pass */

struct ag_rate_limit {
	uint64_t limit;		/* units per window; 0 admits nothing */
	uint64_t window_ms;	/* > 0 */
};

struct ag_rate_result {
	bool allowed;
	uint64_t retry_ms;	/* when refused: how long until COST would pass;
				 * AG_RATE_NEVER if COST > limit or limit 0 */
	uint64_t remaining;	/* units that would still pass now */
	uint64_t reset_ms;	/* until the key is fresh again (full burst) */
	bool uncounted;		/* allowed for lack of room (table full): the
				 * key was not kept, nothing to give back */
};

/*
 * The algorithm on one key's state TAT (the theoretical arrival time,
 * 0 for a fresh key): decide COST units at NOW under LIM; on success TAT
 * advances.  Pure; overflow-safe for any inputs; a clock that goes
 * backwards never admits more than LIMIT in a burst.  COST 0 asks without
 * taking.  An invalid LIM (NULL, window 0 or over AG_RATE_WINDOW_MAX_MS)
 * refuses with retry_ms AG_RATE_NEVER.
 */
void ag_gcra(uint64_t *tat, const struct ag_rate_limit *lim, uint64_t cost,
    uint64_t now_ms, struct ag_rate_result *out);

/* Give back COST units taken from TAT under LIM (never below fresh). */
void ag_gcra_release(uint64_t *tat, const struct ag_rate_limit *lim,
    uint64_t cost, uint64_t now_ms);

struct ag_rate_table;

/*
 * A table of at most MAX_KEYS keys; when full, the idle keys (fresh again
 * at NOW) are dropped first, and a take that finds no room is allowed
 * (with uncounted set in its result) and counted (ag_rate_table_stats)
 * rather than refused.  AG_INVALID for
 * MAX_KEYS 0, AG_TEMPFAIL if getrandom() fails.
 */
ag_status ag_rate_table_new(size_t max_keys, struct ag_rate_table **out);
void ag_rate_table_free(struct ag_rate_table *t);	/* NULL is fine */

/*
 * Take COST units for KEY (KEYLEN bytes, any bytes) under LIM at NOW.
 * AG_OK with the decision in OUT; AG_INVALID for a key over
 * AG_RATE_KEY_MAX or an invalid LIM; AG_NOMEM (OUT refused) when a new key
 * cannot be allocated.
 */
ag_status ag_rate_take(struct ag_rate_table *t, const void *key,
    size_t keylen, const struct ag_rate_limit *lim, uint64_t cost,
    uint64_t now_ms, struct ag_rate_result *out);

/* Give back what ag_rate_take took; AG_NOTFOUND if KEY is not held
 * (expired, or allowed when the table was full): nothing to give back. */
ag_status ag_rate_release(struct ag_rate_table *t, const void *key,
    size_t keylen, const struct ag_rate_limit *lim, uint64_t cost,
    uint64_t now_ms);

/* Drop every key that is fresh again at NOW; returns how many. */
size_t ag_rate_expire(struct ag_rate_table *t, uint64_t now_ms);

/* Visit every live key (for counters list and checkpoints); the callback
 * must not call into the table.  Returns nonzero from CB to stop. */
void ag_rate_foreach(struct ag_rate_table *t,
    int (*cb)(void *arg, const void *key, size_t keylen, uint64_t tat),
    void *arg);

/* Set a key's state (restoring a checkpoint); AG_NOMEM when full.
 * TAT as ag_rate_foreach() gave it (nanoseconds). */
ag_status ag_rate_restore(struct ag_rate_table *t, const void *key,
    size_t keylen, uint64_t tat);

struct ag_rate_stats {
	size_t keys;
	uint64_t takes, refused, full;	/* full: allowed for lack of room */
};
void ag_rate_table_stats(struct ag_rate_table *t, struct ag_rate_stats *out);

#endif
