/*
 * policy_index.h - internal to lib/policy.c: an index of the rules of a
 * snapshot by the values of their conditions, so that evaluating a
 * transaction tries only the rules that can match it.
 *
 * The index is built once with the snapshot and only read afterwards:
 * any number of threads may gather candidates at once.  It narrows,
 * never decides: every candidate still goes through ag_rule_matches(),
 * so the semantics are those of the linear scan (see policy_index.c).
 *
 * A struct ag_pcand lives on the caller's stack; it holds a small buffer
 * and allocates only when a transaction has more candidates than fit.
 * Always end it with ag_pcand_done().
 */
#ifndef AG_POLICY_INDEX_H
#define AG_POLICY_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct ag_pindex;

/*
 * Index RULES[0..N) (sorted in precedence order; disabled rules are left
 * out, they never match).  The index points into the rules' condition
 * values: the rules must outlive it and not change.  AG_NOMEM.
 */
ag_status ag_pindex_build(const struct ag_rule *rules, size_t n,
    struct ag_pindex **out);
void ag_pindex_free(struct ag_pindex *x);	/* NULL is fine */

#define AG_PCAND_STACK 64	/* candidates held without an allocation */

/* The rules to try for one set of facts, in precedence order. */
struct ag_pcand {
	uint32_t *v;		/* from the index: sorted, unique */
	size_t n, cap, i;
	const uint32_t *always;	/* rules with no indexed condition */
	size_t nalways, ia;
	bool scan;		/* no index, or out of memory: every rule */
	size_t next, nrules;
	uint32_t buf[AG_PCAND_STACK];
};

/*
 * Gather the candidates for F.  X NULL (or an allocation failing) gives
 * a scan of all NRULES rules, which is slower but never wrong.
 */
void ag_pcand_gather(const struct ag_pindex *x, size_t nrules,
    const struct ag_facts *f, struct ag_pcand *c);

/* The next candidate's rule index into *I; false at the end. */
bool ag_pcand_next(struct ag_pcand *c, size_t *i);

/* Free what gathering allocated (nothing, usually). */
void ag_pcand_done(struct ag_pcand *c);

/* Index statistics for tests and benchmarks. */
struct ag_pindex_stats {
	size_t entries;		/* keys stored (one per value of a chosen field) */
	size_t buckets;
	size_t always;		/* rules tried for every transaction */
	size_t longest;		/* longest bucket */
	size_t bytes;		/* memory held by the index */
	size_t by_field[AG_F_COUNT]; /* rules indexed under each field */
};
void ag_pindex_stats(const struct ag_pindex *x, struct ag_pindex_stats *s);

/*
 * The linear scans the index replaced, kept as the reference that tests
 * and tests/bench/policybench.c compare against.  Same contract as
 * ag_policy_eval() and ag_policy_rates().
 */
void ag_policy_eval_linear(const struct ag_policy *p,
    const struct ag_facts *f, struct ag_eval *out);
size_t ag_policy_rates_linear(const struct ag_policy *p,
    const struct ag_facts *f, const struct ag_rule **out, size_t max);
const struct ag_pindex *ag_policy_index(const struct ag_policy *p);

#endif
