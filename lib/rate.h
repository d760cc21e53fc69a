/*
 * rate.h - the rate engine of the daemon: where counters live (the local
 * table, or Redis with a fallback), their checkpoint in SQLite, and the
 * counters an administrator sees.  The algorithm is in ratelimit.h; which
 * limits apply to a message, in session_rate.c.
 *
 * Keys.  A counter is named "RULE.N:WHAT", RULE the rule's id, N the
 * limit's position in the rule (1-based) and WHAT the key of the limit
 * with its value: "pool", "client-ip=192.0.2.0/24", "sender=a@b.example",
 * "sender-domain=b.example", "sasl-user=alice", "rcpt-domain=c.example",
 * "helo=mx.b.example".  Rules never change once added, so RULE.N names
 * one limit for good; the counters of a deleted rule simply expire.
 *
 * Time is the wall clock in milliseconds (so a checkpoint means the same
 * after a restart, and Redis's clock can stand in for it); GCRA copes
 * with a clock that steps back (ratelimit.h).
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef AG_RATE_H
#define AG_RATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "policy.h"
#include "ratelimit.h"
#include "status.h"

struct ag_store;
struct ag_rater;

/* Where a decision was taken, to give it back to the same place. */
enum ag_rate_where {
	AG_RW_NONE = 0,		/* not counted (On-RateBackendError accept) */
	AG_RW_LOCAL,
	AG_RW_REDIS
};

/* A local table of MAX_KEYS keys; no backend configured yet (local). */
ag_status ag_rater_new(size_t max_keys, struct ag_rater **out);
void ag_rater_free(struct ag_rater *r);		/* NULL is fine */

/*
 * Apply CFG's RateBackend, RateBackendTimeout and On-RateBackendError (at
 * start and on every reload).  A changed Redis URL replaces the
 * connection after the calls in progress finish.  A bad URL (cannot
 * happen for a loaded config) is logged and leaves the local engine.
 */
void ag_rater_configure(struct ag_rater *r, const struct ag_config *cfg);

/* For tests: a clock in place of the wall clock (NULL: the wall clock). */
void ag_rater_set_clock(struct ag_rater *r, uint64_t (*now_ms)(void *),
    void *arg);

/*
 * Take COST units for KEY under LIM.  AG_OK: the decision is in OUT and
 * *WHERE says where it was counted (AG_RW_NONE: allowed uncounted, as
 * On-RateBackendError accept, or a new key when the local table is full:
 * that is counted in authgate_rate_table_full_total and logged once until
 * ag_rater_expire() finds room again).
 * AG_TEMPFAIL: Redis failed and On-RateBackendError is tempfail (an
 * outage is logged once when it starts and once when it ends).
 * AG_INVALID: key too long or a bad limit; AG_NOMEM.
 */
ag_status ag_rater_take(struct ag_rater *r, const char *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost,
    struct ag_rate_result *out, enum ag_rate_where *where);

/* Give back what ag_rater_take took there (errors are only logged). */
void ag_rater_release(struct ag_rater *r, const char *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost, enum ag_rate_where where);

/* Restore the local counters OWNER saved in S (at start); logs how
 * many.  OWNER names this daemon instance (ag_rater_owner). */
ag_status ag_rater_restore(struct ag_rater *r, struct ag_store *s,
    const char *owner);

/* Save the live local counters to S as OWNER (one transaction). */
ag_status ag_rater_checkpoint(struct ag_rater *r, struct ag_store *s,
    const char *owner);

/* "HOST SOCKET": who saves counters, so that daemons sharing a database
 * keep their own. */
void ag_rater_owner(const struct ag_config *cfg, char *buf, size_t bufsz);

/* Drop idle local keys (the watcher calls it now and then); log the end
 * of a full table once there is room. */
void ag_rater_expire(struct ag_rater *r);

/*
 * Counters, as authgatectl shows them: every live key of the local table
 * and of Redis (when configured) whose rule is RULE (0: any) and that
 * matches KEY (NULL: any; else the whole key, the part after ':' or the
 * value after '='), with usage computed from POLICY's limits.  Written to
 * OUT as a table or as JSON.  AG_TEMPFAIL when Redis could not be read
 * (what was read is still written, and ERR says why).
 */
ag_status ag_rater_list(struct ag_rater *r, const struct ag_policy *policy,
    int64_t rule, const char *key, bool json, FILE *out, char *err,
    size_t errlen);

/* Make every counter matching KEY (as for list) fresh; *N says how many. */
ag_status ag_rater_reset(struct ag_rater *r, const char *key, size_t *n,
    char *err, size_t errlen);

#endif
