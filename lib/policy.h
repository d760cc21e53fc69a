/*
 * policy.h - the rule model and matching a transaction against it.
 *
 * A rule has conditions (matches) and settings (limits and actions).
 * Conditions: each --match FIELD=VALUE is one condition; conditions on
 * different fields must all hold (AND); several values for the same field
 * are alternatives (OR).  A rule with no conditions matches everything
 * (a default rule).
 *
 * Precedence: rules are ordered by priority (lower number first), then id
 * (older first).  For each setting, the first enabled matching rule that
 * sets it decides (so a narrow rule at priority 10 sets max-size while the
 * default rule at priority 1000 still provides max-rcpts).  A rule in dry
 * run is only tried: it never decides (see struct ag_setting).  Later issues
 * add settings (rate limits, SPF/DKIM actions) that follow the same rule,
 * except rate limits, which layer: every matching rule's limits apply,
 * down to an --exempt rule.
 *
 * Recipient conditions (rcpt, rcpt-domain) are known only per recipient:
 * when a transaction is evaluated without a recipient, rules with such
 * conditions are skipped.
 *
 * A struct ag_policy is an immutable snapshot built from the store;
 * evaluation only reads it and is thread-safe.  The snapshot indexes its
 * rules by condition values (policy_index.c): an evaluation tries the
 * rules the facts can match and the rules without an indexable condition,
 * so its cost does not grow with the number of rules.
 */
#ifndef AG_POLICY_H
#define AG_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "spf.h"
#include "status.h"

#define AG_PRIORITY_DEFAULT 100

enum ag_field {
	AG_F_CLIENT = 0,	/* IP or CIDR */
	AG_F_HELO,		/* domain, ".suffix" for subdomains */
	AG_F_SENDER,		/* full address, case-insensitive */
	AG_F_SENDER_DOMAIN,	/* domain, ".suffix" for subdomains */
	AG_F_SASL_USER,		/* exact */
	AG_F_RCPT,		/* full address, case-insensitive */
	AG_F_RCPT_DOMAIN,	/* domain, ".suffix" for subdomains */
	AG_F_TRUSTED,		/* yes|no: client in TrustedNetworks */
	AG_F_AUTHENTICATED,	/* yes|no: SASL-authenticated client */
	AG_F_COUNT
};

/* Field names as written on the command line and stored in SQLite. */
const char *ag_field_name(enum ag_field f);
int ag_field_parse(const char *name, enum ag_field *out); /* 0 or -1 */

struct ag_match {
	enum ag_field field;
	char *value;		/* as stored (normalized) */
	struct ag_cidr cidr;	/* parsed, for AG_F_CLIENT */
	bool yes;		/* parsed, for TRUSTED/AUTHENTICATED */
};

/*
 * Validate and normalize a condition value for FIELD: CIDR syntax,
 * domain syntax (lower-cased), yes/no.  Writes the normalized text into
 * OUT.  Returns AG_OK or AG_INVALID with a message in ERR.
 */
ag_status ag_match_normalize(enum ag_field f, const char *value,
    char *out, size_t outsz, char *err, size_t errlen);

#define AG_LIMIT_UNSET (-1)

/*
 * What to do with the outcome of a check (an SPF result now; DKIM and
 * DMARC later).  Stored in settings as its number.
 */
enum ag_disp {
	AG_DISP_ACCEPT = 0,	/* accept; the result is recorded in headers */
	AG_DISP_TAG,		/* accept, recorded, and the message is marked */
	AG_DISP_TEMPFAIL,	/* 4xx */
	AG_DISP_REJECT		/* 5xx */
};

/* "accept", "tag", "tempfail", "reject"; parse returns 0 or -1. */
const char *ag_disp_name(enum ag_disp d);
int ag_disp_parse(const char *name, enum ag_disp *out);

/*
 * A rate limit on a rule: MEASURE:LIMIT/WINDOW[:KEY], counted per KEY
 * (or in one pool for everything the rule matches).  The algorithm and
 * what a limit admits are in ratelimit.h and authgatectl(8).
 */
enum ag_rate_measure {
	AG_RM_MESSAGES = 0,
	AG_RM_RECIPIENTS,
	AG_RM_BYTES
};

enum ag_rate_key {
	AG_RK_POOL = 0,		/* one counter for the rule */
	AG_RK_CLIENT_IP,	/* client address under prefix4 / prefix6 */
	AG_RK_SENDER,		/* MAIL FROM address (<> counts as "<>") */
	AG_RK_SENDER_DOMAIN,
	AG_RK_SASL_USER,	/* unauthenticated clients: not counted */
	AG_RK_RCPT_DOMAIN,	/* decided at each RCPT TO */
	AG_RK_HELO
};

#define AG_RATE_MAX_PER_RULE 16
#define AG_RATE_LIMIT_MAX 1000000000000000ULL	/* 10^15 */
#define AG_RATE_WINDOW_MIN_MS 1000ULL
#define AG_RATE_WINDOW_MAX_MS_SPEC (366ULL * 86400 * 1000)
#define AG_RATE_PREFIX4_MIN 16
#define AG_RATE_PREFIX6_MIN 32
#define AG_RATE_PREFIX6_DEFAULT 64
#define AG_RATE_SPEC_MAX 80	/* the canonical text, with its NUL */

struct ag_rate_spec {
	enum ag_rate_measure measure;
	uint64_t limit;
	uint64_t window_ms;
	enum ag_rate_key key;
	unsigned prefix4;	/* client-ip: 16..32 */
	unsigned prefix6;	/* client-ip: 32..128 */
};

const char *ag_rate_measure_name(enum ag_rate_measure m);
const char *ag_rate_key_name(enum ag_rate_key k);

/*
 * Parse "MEASURE:LIMIT/WINDOW[:KEY]": measure messages, recipients or
 * bytes (LIMIT then takes k, M, G suffixes); WINDOW a number with s, m,
 * h, d or w (plain: seconds), 1 s to 366 d; KEY one of client-ip[/V4[/V6]]
 * (default /32 and /64), sender, sender-domain, sasl-user, rcpt-domain,
 * helo; omitted: one pool.  AG_INVALID with a message in ERR.
 */
ag_status ag_rate_spec_parse(const char *text, struct ag_rate_spec *out,
    char *err, size_t errlen);

/* The canonical text (parses back to the same spec). */
char *ag_rate_spec_format(const struct ag_rate_spec *s, char *buf,
    size_t bufsz);

/* "1h", "90s", "2d": a window as the largest unit that divides it. */
char *ag_window_format(uint64_t ms, char *buf, size_t bufsz);

struct ag_rule {
	int64_t id;
	int priority;
	bool enabled;
	bool dry_run;		/* decide and log, do not enforce */
	char *comment;
	size_t nmatch;
	struct ag_match *match;
	/* settings; AG_LIMIT_UNSET when the rule does not set them */
	int64_t max_size;	/* bytes */
	int64_t max_rcpts;	/* recipients per message */
	int64_t spf_disp[AG_SPF_NRESULTS]; /* an enum ag_disp per result */
	int64_t spf_check;	/* 1 check SPF, 0 do not (e.g. a trusted relay) */
	int64_t dkim_require;	/* 1: a passing signature of the sender domain */
	int64_t dmarc_check;	/* 1 evaluate DMARC, 0 do not */
	int64_t dmarc_enforce;	/* 0: DMARC failures are recorded only */
	/* rate limits: they layer (see ag_policy_rates) */
	size_t nrate;
	struct ag_rate_spec rate[AG_RATE_MAX_PER_RULE];
	int64_t on_limit;	/* enum ag_disp (tempfail, reject, tag) or unset:
				 * tempfail */
	bool exempt;		/* lower-precedence rules' limits do not apply */
};

/* A rule with no conditions and every setting unset; enabled. */
void ag_rule_init(struct ag_rule *r);

/* The facts a transaction presents to the rules. */
struct ag_facts {
	const struct ag_ip *client;	/* NULL: unknown (unix socket) */
	const char *helo;		/* normalized or NULL */
	const struct ag_mailaddr *sender; /* NULL before MAIL FROM */
	const char *sasl_user;		/* NULL: not authenticated */
	bool trusted;
	const struct ag_mailaddr *rcpt;	/* NULL: transaction-level */
};

/*
 * Which rule sets a setting, and its value.  A rule in dry run never
 * decides (it must not loosen what is enforced): VALUE comes from the
 * first matching rule not in dry run.  A dry-run rule ahead of it is
 * reported in TRIAL, so its outcome can be logged as "would".
 */
struct ag_setting {
	int64_t value;		/* enforced; AG_LIMIT_UNSET when no rule sets it */
	int64_t rule_id;
	int64_t trial;		/* first dry-run rule's value ahead of it, or unset */
	int64_t trial_rule_id;
};

struct ag_eval {
	struct ag_setting max_size;
	struct ag_setting max_rcpts;
	struct ag_setting spf_disp[AG_SPF_NRESULTS];
	struct ag_setting spf_check;
	struct ag_setting dkim_require;
	struct ag_setting dmarc_check;
	struct ag_setting dmarc_enforce;
	size_t nmatched;	/* number of rules that matched */
};

struct ag_policy;

/*
 * Build a snapshot from NRULES rules.  Takes ownership of the array and
 * every rule in it (freed by ag_policy_free, also on error).  Disabled
 * rules are kept (for listing) but never match.
 */
ag_status ag_policy_new(struct ag_rule *rules, size_t nrules,
    struct ag_policy **out);
void ag_policy_free(struct ag_policy *p);	/* NULL is fine */

size_t ag_policy_count(const struct ag_policy *p);
const struct ag_rule *ag_policy_rule(const struct ag_policy *p, size_t i);

/*
 * True when an enabled rule with a recipient condition sets an SPF
 * setting: the SPF decision then waits for RCPT TO (so that, e.g.,
 * postmaster@ can be exempt from SPF rejections).
 */
bool ag_policy_spf_per_rcpt(const struct ag_policy *p);

/* Does RULE match FACTS (ignoring enabled)? */
bool ag_rule_matches(const struct ag_rule *r, const struct ag_facts *f);

/*
 * Evaluate FACTS against every enabled rule, in precedence order (as if;
 * rules the index rules out are not read).
 */
void ag_policy_eval(const struct ag_policy *p, const struct ag_facts *f,
    struct ag_eval *out);

/*
 * The rules whose rate limits apply to FACTS, in precedence order: every
 * enabled matching rule that has limits, down to the first matching
 * --exempt rule not in dry run nor tag-only (its own limits still apply;
 * a rule that does not enforce never loosens what is enforced).  Writes at most MAX rules to OUT
 * and returns how many there are in all.
 */
size_t ag_policy_rates(const struct ag_policy *p, const struct ag_facts *f,
    const struct ag_rule **out, size_t max);

/* The enabled or disabled rule with ID, or NULL (binary search). */
const struct ag_rule *ag_policy_find(const struct ag_policy *p, int64_t id);

/* Free the contents of one rule (not the struct itself). */
void ag_rule_clear(struct ag_rule *r);

#endif
