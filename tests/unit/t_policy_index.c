/*
 * t_policy_index.c - unit tests for lib/policy_index.c: evaluating a
 * snapshot through its index gives exactly what a scan of every rule
 * gives, and the index narrows (a transaction does not try every rule).
 *
 * The differential tests build random rule sets over a small universe of
 * values (so that rules overlap and many match), random facts over the
 * same universe, and compare ag_policy_eval() and ag_policy_rates()
 * with ag_policy_eval_linear() and ag_policy_rates_linear(): the scan of
 * every rule, as lib/policy.c evaluated before the index.  The PRNG is
 * seeded; a failure prints the seed and the case.  AG_TEST_POLICY_FACTS
 * sets the number of fact sets per rule set (default 5000; four rule
 * sets).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "policy.h"
#include "policy_index.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define RATES_MAX 8

/* ---- comparing ---------------------------------------------------------- */

static bool
setting_eq(const struct ag_setting *a, const struct ag_setting *b)
{
	return a->value == b->value && a->rule_id == b->rule_id &&
	    a->trial == b->trial && a->trial_rule_id == b->trial_rule_id;
}

/* NULL when equal, else the name of the first setting that differs. */
static const char *
eval_diff(const struct ag_eval *a, const struct ag_eval *b)
{
	size_t k;

	if (a->nmatched != b->nmatched) {
		return "nmatched";
	}
	if (!setting_eq(&a->max_size, &b->max_size)) {
		return "max_size";
	}
	if (!setting_eq(&a->max_rcpts, &b->max_rcpts)) {
		return "max_rcpts";
	}
	for (k = 0; k < AG_SPF_NRESULTS; k++) {
		if (!setting_eq(&a->spf_disp[k], &b->spf_disp[k])) {
			return "spf_disp";
		}
	}
	if (!setting_eq(&a->spf_check, &b->spf_check)) {
		return "spf_check";
	}
	if (!setting_eq(&a->dkim_require, &b->dkim_require)) {
		return "dkim_require";
	}
	if (!setting_eq(&a->dmarc_check, &b->dmarc_check)) {
		return "dmarc_check";
	}
	if (!setting_eq(&a->dmarc_enforce, &b->dmarc_enforce)) {
		return "dmarc_enforce";
	}
	return NULL;
}

/* The facts as text, for a failure message. */
static const char *
facts_str(const struct ag_facts *f, char *buf, size_t len)
{
	char ip[AG_IP_STRLEN] = "-", s[AG_ADDR_MAX + 1] = "-";
	char r[AG_ADDR_MAX + 1] = "-";

	if (f->client != NULL) {
		ag_ip_format(f->client, ip, sizeof(ip));
	}
	if (f->sender != NULL) {
		ag_mailaddr_format(f->sender, s, sizeof(s));
	}
	if (f->rcpt != NULL) {
		ag_mailaddr_format(f->rcpt, r, sizeof(r));
	}
	snprintf(buf, len, "client=%s helo=%s sender=%s%s sasl=%s trusted=%d "
	    "rcpt=%s", ip, f->helo ? f->helo : "-", s,
	    f->sender != NULL && f->sender->is_null ? "<>" : "",
	    f->sasl_user ? f->sasl_user : "-", f->trusted, r);
	return buf;
}

/*
 * Fail unless the index and the scan of every rule agree on F (MAX rates
 * kept).  The scan is lib/policy.c's ag_policy_eval_linear() and
 * ag_policy_rates_linear(): the evaluation as it was before the index.
 */
static void
check_same(const char *label, const struct ag_policy *p,
    const struct ag_facts *f, size_t max)
{
	const struct ag_rule *got[RATES_MAX], *want[RATES_MAX];
	struct ag_eval a, b;
	const char *d;
	char fb[1024];
	size_t n, m, i;

	ag_policy_eval(p, f, &a);
	ag_policy_eval_linear(p, f, &b);
	if ((d = eval_diff(&a, &b)) != NULL) {
		fail_msg("%s: eval differs in %s (index: %zu matched, scan: "
		    "%zu) for %s", label, d, a.nmatched, b.nmatched,
		    facts_str(f, fb, sizeof(fb)));
	}
	n = ag_policy_rates(p, f, got, max);
	m = ag_policy_rates_linear(p, f, want, max);
	if (n != m) {
		fail_msg("%s: rates: %zu rules, scan %zu, for %s", label, n, m,
		    facts_str(f, fb, sizeof(fb)));
	}
	for (i = 0; i < n && i < max; i++) {
		if (got[i] != want[i]) {
			fail_msg("%s: rates: rule %zu is %lld, scan %lld, for %s",
			    label, i, (long long)got[i]->id,
			    (long long)want[i]->id, facts_str(f, fb, sizeof(fb)));
		}
	}
}

/* ---- random rule sets and facts ------------------------------------------ */

static uint64_t rng;

static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

static unsigned
pick(unsigned n)
{
	return (unsigned)(rnd() % n);
}

static bool
chance(unsigned percent)
{
	return pick(100) < percent;
}

static const char *const doms[] = {
	"example.com", "example.org", "example.net", "mail.example.com",
	"a.mail.example.com", "b.example.org", "x.y.example.net",
	"relay.example.com", "Mixed.Example.COM",
};
static const char *const locals[] = {
	"alice", "Alice", "bob", "postmaster", "BOB", "c.d",
};
static const char *const sasl[] = {
	"alice", "Alice", "bob", "carol@example.com", "dave",
};
static const char *const v4[] = {
	"10.0.0.1", "10.0.1.2", "10.1.2.3", "10.255.0.9", "192.0.2.1",
	"192.0.2.200", "198.51.100.7", "203.0.113.129", "0.0.0.0",
	"255.255.255.255", "::ffff:10.0.1.2",
};
static const char *const v6[] = {
	"2001:db8::1", "2001:db8::2", "2001:db8:0:1::1", "2001:db8:1::5",
	"2001:db8:ff00::1", "fe80::1", "::", "::1",
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
};
static const unsigned pfx4[] = { 0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31,
	32 };
static const unsigned pfx6[] = { 0, 1, 16, 32, 47, 48, 63, 64, 65, 96,
	127, 128 };
/* HELO names a client may send: odd ones too (the facts are not
 * normalized by the policy code). */
static const char *const helos[] = {
	"example.com", "EXAMPLE.COM", "mail.example.com", "Mail.Example.Com",
	"a.mail.example.com", "x.y.example.net", "example.org", ".example.com",
	"a..example.com", "example.com.", "[192.0.2.1]", "localhost", "com",
};

/* A random rule condition value for field F into BUF. */
static void
rand_value(enum ag_field f, char *buf, size_t len)
{
	const char *d = doms[pick(NELEM(doms))];

	switch (f) {
	case AG_F_CLIENT:
		if (chance(50)) {
			snprintf(buf, len, "%s/%u", v4[pick(NELEM(v4) - 1)],
			    pfx4[pick(NELEM(pfx4))]);
		} else if (chance(10)) {
			/* IPv4-mapped: stored as IPv4 (addr.h) */
			snprintf(buf, len, "::ffff:%s/%u",
			    v4[pick(NELEM(v4) - 1)], 96 + pfx4[pick(NELEM(pfx4))]);
		} else {
			snprintf(buf, len, "%s/%u", v6[pick(NELEM(v6))],
			    pfx6[pick(NELEM(pfx6))]);
		}
		break;
	case AG_F_HELO:
	case AG_F_SENDER_DOMAIN:
	case AG_F_RCPT_DOMAIN:
		snprintf(buf, len, "%s%s", chance(40) ? "." : "", d);
		break;
	case AG_F_SENDER:
		if (chance(10)) {
			snprintf(buf, len, "<>");
			break;
		}
		/* FALLTHROUGH */
	case AG_F_RCPT:
		snprintf(buf, len, "%s@%s", locals[pick(NELEM(locals))], d);
		break;
	case AG_F_SASL_USER:
		snprintf(buf, len, "%s", sasl[pick(NELEM(sasl))]);
		break;
	case AG_F_TRUSTED:
	case AG_F_AUTHENTICATED:
	default:
		snprintf(buf, len, "%s", chance(50) ? "yes" : "NO");
		break;
	}
}

/* Add a condition to R. */
static void
add_match(struct ag_rule *r, enum ag_field f, const char *value)
{
	struct ag_match *m;

	m = realloc(r->match, (r->nmatch + 1) * sizeof(*m));
	if (m == NULL) {
		fail_msg("out of memory");
	}
	r->match = m;
	memset(&m[r->nmatch], 0, sizeof(*m));
	m[r->nmatch].field = f;
	if ((m[r->nmatch].value = strdup(value)) == NULL) {
		fail_msg("out of memory");
	}
	r->nmatch++;
}

/* Random settings: limits, SPF, DKIM, DMARC, rate limits. */
static void
rand_settings(struct ag_rule *r)
{
	size_t k, n;

	r->max_size = chance(30) ? (int64_t)pick(1000) : AG_LIMIT_UNSET;
	r->max_rcpts = chance(30) ? (int64_t)pick(50) : AG_LIMIT_UNSET;
	for (k = 0; k < AG_SPF_NRESULTS; k++) {
		r->spf_disp[k] = chance(15) ? (int64_t)pick(4) : AG_LIMIT_UNSET;
	}
	r->spf_check = chance(15) ? (int64_t)pick(2) : AG_LIMIT_UNSET;
	r->dkim_require = chance(10) ? 1 : AG_LIMIT_UNSET;
	r->dmarc_check = chance(10) ? (int64_t)pick(2) : AG_LIMIT_UNSET;
	r->dmarc_enforce = chance(10) ? (int64_t)pick(2) : AG_LIMIT_UNSET;
	n = chance(40) ? 1 + pick(2) : 0;
	for (k = 0; k < n; k++) {
		r->rate[k].measure = AG_RM_MESSAGES;
		r->rate[k].limit = 1 + pick(100);
		r->rate[k].window_ms = 60000;
		r->rate[k].key = AG_RK_POOL;
	}
	r->nrate = n;
	r->exempt = chance(8);
	r->on_limit = chance(70) ? AG_LIMIT_UNSET :
	    (int64_t)(chance(50) ? AG_DISP_TAG : AG_DISP_REJECT);
}

/* A random rule: 0..4 fields, 1..3 values each, sometimes disabled. */
static void
rand_rule(struct ag_rule *r, int64_t id)
{
	static const int prio[] = { 1, 10, 50, 100, 100, 1000 };
	char buf[AG_ADDR_MAX + 8];
	unsigned nf, i, j, nv;
	enum ag_field f;

	ag_rule_init(r);
	r->id = id;
	r->priority = prio[pick(NELEM(prio))];
	r->enabled = !chance(10);
	r->dry_run = chance(10);
	nf = pick(100) < 8 ? 0 : 1 + pick(chance(70) ? 1 : 4);
	for (i = 0; i < nf; i++) {
		f = (enum ag_field)pick(AG_F_COUNT);
		nv = f == AG_F_TRUSTED || f == AG_F_AUTHENTICATED ? 1 :
		    1 + pick(chance(70) ? 1 : 3);
		for (j = 0; j < nv; j++) {
			rand_value(f, buf, sizeof(buf));
			add_match(r, f, buf);
		}
	}
	rand_settings(r);
}

static struct ag_policy *
rand_policy(size_t n)
{
	struct ag_policy *p = NULL;
	struct ag_rule *rules;
	size_t i;
	ag_status st;

	if ((rules = calloc(n ? n : 1, sizeof(*rules))) == NULL) {
		fail_msg("out of memory");
	}
	for (i = 0; i < n; i++) {
		/* ids out of order: the snapshot sorts */
		rand_rule(&rules[i], (int64_t)((i * 7919) % n) + 1);
	}
	if ((st = ag_policy_new(rules, n, &p)) != AG_OK) {
		fail_msg("ag_policy_new: %s", ag_status_str(st));
	}
	return p;
}

/* Parsed random facts and their storage. */
struct rfacts {
	struct ag_ip ip;
	struct ag_mailaddr sender, rcpt;
	char helo[64];
	struct ag_facts f;
};

static void
parse_addr(const char *s, struct ag_mailaddr *a)
{
	if (ag_mailaddr_parse(s, a) != AG_OK) {
		fail_msg("test address '%s' does not parse", s);
	}
}

static void
rand_address(char *buf, size_t len)
{
	snprintf(buf, len, "<%s@%s>", locals[pick(NELEM(locals))],
	    doms[pick(NELEM(doms))]);
}

static void
rand_facts(struct rfacts *x)
{
	char buf[AG_ADDR_MAX + 8];

	memset(x, 0, sizeof(*x));
	if (!chance(10)) {
		if (ag_ip_parse(chance(55) ? v4[pick(NELEM(v4))] :
		    v6[pick(NELEM(v6))], &x->ip) != AG_OK) {
			fail_msg("test address does not parse");
		}
		x->f.client = &x->ip;
	}
	if (!chance(10)) {
		snprintf(x->helo, sizeof(x->helo), "%s", helos[pick(NELEM(helos))]);
		x->f.helo = x->helo;
	}
	if (!chance(10)) {
		if (chance(12)) {
			parse_addr("<>", &x->sender);
		} else {
			rand_address(buf, sizeof(buf));
			parse_addr(buf, &x->sender);
		}
		x->f.sender = &x->sender;
	}
	x->f.sasl_user = chance(50) ? sasl[pick(NELEM(sasl))] : NULL;
	x->f.trusted = chance(30);
	if (chance(60)) {
		rand_address(buf, sizeof(buf));
		parse_addr(buf, &x->rcpt);
		x->f.rcpt = &x->rcpt;
	}
}

/* ---- the tests ------------------------------------------------------------ */

static size_t
facts_per_set(void)
{
	const char *e = getenv("AG_TEST_POLICY_FACTS");
	long v = e != NULL ? atol(e) : 0;

	return v > 0 ? (size_t)v : 5000;
}

/* Random rule sets against random facts: index and scan agree. */
static void
test_differential(void **state)
{
	static const struct { uint64_t seed; size_t rules; } sets[] = {
		{ 0x9e3779b97f4a7c15ULL, 3000 },
		{ 0x0123456789abcdefULL, 1000 },
		{ 42, 200 },
		{ 7, 40 },
	};
	struct rfacts x;
	struct ag_policy *p;
	size_t s, i, nf = facts_per_set(), matched = 0, rated = 0;
	char label[96];
	struct ag_eval ev;

	(void)state;
	for (s = 0; s < NELEM(sets); s++) {
		rng = sets[s].seed;
		p = rand_policy(sets[s].rules);
		for (i = 0; i < nf; i++) {
			rand_facts(&x);
			snprintf(label, sizeof(label), "seed %#llx, %zu rules, "
			    "facts #%zu", (unsigned long long)sets[s].seed,
			    sets[s].rules, i);
			/* a full answer, and one cut short at 2 rules */
			check_same(label, p, &x.f, i % 4 == 0 ? 2 : RATES_MAX);
			ag_policy_eval(p, &x.f, &ev);
			matched += ev.nmatched;
			rated += ag_policy_rates(p, &x.f, NULL, 0);
		}
		ag_policy_free(p);
	}
	print_message("%zu fact sets, %zu matches, %zu rate rules\n",
	    nf * NELEM(sets), matched, rated);
	/* The universe is small on purpose: the comparison saw matches. */
	if (matched < nf || rated < nf) {
		fail_msg("too few matches to mean anything: %zu matched, %zu "
		    "rated", matched, rated);
	}
}

/* Build a snapshot from "field=value" lists (one per rule, "" none). */
static struct ag_policy *
policy_of(const char *const *specs, size_t n)
{
	struct ag_policy *p = NULL;
	struct ag_rule *rules;
	char buf[512], *tok, *save, *eq;
	enum ag_field f;
	size_t i;

	if ((rules = calloc(n ? n : 1, sizeof(*rules))) == NULL) {
		fail_msg("out of memory");
	}
	for (i = 0; i < n; i++) {
		ag_rule_init(&rules[i]);
		rules[i].id = (int64_t)i + 1;
		rules[i].max_size = (int64_t)i + 1;	/* who decided */
		rules[i].rate[0].measure = AG_RM_MESSAGES;
		rules[i].rate[0].limit = 10;
		rules[i].rate[0].window_ms = 60000;
		rules[i].nrate = 1;
		snprintf(buf, sizeof(buf), "%s", specs[i]);
		save = NULL;
		for (tok = strtok_r(buf, " ", &save); tok != NULL;
		    tok = strtok_r(NULL, " ", &save)) {
			if (strcmp(tok, "disabled") == 0) {
				rules[i].enabled = false;
				continue;
			}
			if ((eq = strchr(tok, '=')) == NULL) {
				fail_msg("bad test spec '%s'", tok);
			}
			*eq = '\0';
			if (ag_field_parse(tok, &f) != 0) {
				fail_msg("bad test field '%s'", tok);
			}
			add_match(&rules[i], f, eq + 1);
		}
	}
	if (ag_policy_new(rules, n, &p) != AG_OK) {
		fail_msg("ag_policy_new refused the test rules");
	}
	return p;
}

struct edge_case {
	const char *label;
	const char *rules[4];
	const char *client, *helo, *sender, *rcpt;
	int64_t want;		/* the rule that decides max-size, or -1 */
};

static const struct edge_case edge_cases[] = {
	{ "no rules", { NULL }, "192.0.2.1", "example.com", "a@example.com",
	    NULL, -1 },
	{ "only a default rule", { "" }, NULL, NULL, NULL, NULL, 1 },
	{ "default rule, v6 client", { "" }, "2001:db8::1", NULL, NULL, NULL,
	    1 },
	{ "only a disabled default rule", { "disabled" }, "192.0.2.1", NULL,
	    NULL, NULL, -1 },
	{ "0.0.0.0/0 takes any IPv4", { "client=0.0.0.0/0" },
	    "255.255.255.255", NULL, NULL, NULL, 1 },
	{ "0.0.0.0/0 not an IPv6 client", { "client=0.0.0.0/0" },
	    "2001:db8::1", NULL, NULL, NULL, -1 },
	{ "0.0.0.0/0 no client", { "client=0.0.0.0/0" }, NULL, NULL, NULL,
	    NULL, -1 },
	{ "::/0 takes any IPv6", { "client=::/0" }, "fe80::1", NULL, NULL,
	    NULL, 1 },
	{ "::/0 not an IPv4 client", { "client=::/0" }, "192.0.2.1", NULL,
	    NULL, NULL, -1 },
	{ "/32 the host", { "client=192.0.2.1/32" }, "192.0.2.1", NULL, NULL,
	    NULL, 1 },
	{ "/32 not its neighbour", { "client=192.0.2.1/32" }, "192.0.2.0",
	    NULL, NULL, NULL, -1 },
	{ "/128 the host", { "client=2001:db8::1/128" }, "2001:db8::1", NULL,
	    NULL, NULL, 1 },
	{ "/128 not its neighbour", { "client=2001:db8::1" }, "2001:db8::3",
	    NULL, NULL, NULL, -1 },
	{ "v4-mapped rule, v4 client", { "client=::ffff:192.0.2.0/120" },
	    "192.0.2.77", NULL, NULL, NULL, 1 },
	{ "v4 rule, v4-mapped client", { "client=192.0.2.0/24" },
	    "::ffff:192.0.2.77", NULL, NULL, NULL, 1 },
	{ "the longest prefix does not win, precedence does",
	    { "client=10.0.0.0/8", "client=10.1.2.3" }, "10.1.2.3", NULL, NULL,
	    NULL, 1 },
	{ "several prefix lengths", { "client=10.1.2.0/24",
	    "client=10.1.0.0/16 client=192.0.2.0/24", "client=10.0.0.0/8" },
	    "10.1.9.9", NULL, NULL, NULL, 2 },
	{ ".suffix: a subdomain", { "helo=.example.com" }, NULL,
	    "Mail.Example.COM", NULL, NULL, 1 },
	{ ".suffix: not the domain itself", { "helo=.example.com" }, NULL,
	    "EXAMPLE.com", NULL, NULL, -1 },
	{ ".suffix: not an empty label", { "helo=.example.com" }, NULL,
	    "a..example.com", NULL, NULL, -1 },
	{ ".suffix: not a bare dot", { "helo=.example.com" }, NULL,
	    ".example.com", NULL, NULL, -1 },
	{ "exact domain, other case", { "helo=Example.Com" }, NULL,
	    "EXAMPLE.COM", NULL, NULL, 1 },
	{ "exact domain, not a subdomain", { "helo=example.com" }, NULL,
	    "a.example.com", NULL, NULL, -1 },
	{ "sender, other case", { "sender=Alice@Example.com" }, NULL, NULL,
	    "<ALICE@example.COM>", NULL, 1 },
	{ "null sender", { "sender=<>", "sender-domain=example.com" }, NULL,
	    NULL, "<>", NULL, 1 },
	{ "sender-domain suffix", { "sender-domain=.example.com" }, NULL, NULL,
	    "<a@b.example.com>", NULL, 1 },
	{ "rcpt rule skipped without a recipient",
	    { "rcpt-domain=example.com", "sender=a@example.com" }, NULL, NULL,
	    "<a@example.com>", NULL, 2 },
	{ "rcpt rule with a recipient",
	    { "rcpt-domain=example.com", "sender=a@example.com" }, NULL, NULL,
	    "<a@example.com>", "<b@EXAMPLE.com>", 1 },
	{ "AND across fields", { "client=10.0.0.0/8 sender-domain=example.org",
	    "client=10.0.0.0/8" }, "10.9.9.9", NULL, "<a@example.com>", NULL,
	    2 },
	{ "OR within a field", { "sender-domain=example.org "
	    "sender-domain=example.com", "" }, NULL, NULL, "<a@example.com>",
	    NULL, 1 },
	{ "disabled rule never matches", { "disabled client=10.0.0.0/8",
	    "client=10.0.0.0/8" }, "10.1.1.1", NULL, NULL, NULL, 2 },
};

static void
test_edge(void **state)
{
	const struct edge_case *c = *state;
	struct ag_policy *p;
	struct rfacts x;
	struct ag_eval ev;
	size_t n = 0;

	while (n < NELEM(c->rules) && c->rules[n] != NULL) {
		n++;
	}
	p = policy_of(c->rules, n);
	memset(&x, 0, sizeof(x));
	if (c->client != NULL) {
		if (ag_ip_parse(c->client, &x.ip) != AG_OK) {
			fail_msg("%s: bad test client", c->label);
		}
		x.f.client = &x.ip;
	}
	x.f.helo = c->helo;
	if (c->sender != NULL) {
		parse_addr(c->sender, &x.sender);
		x.f.sender = &x.sender;
	}
	if (c->rcpt != NULL) {
		parse_addr(c->rcpt, &x.rcpt);
		x.f.rcpt = &x.rcpt;
	}
	ag_policy_eval(p, &x.f, &ev);
	if ((c->want < 0 && ev.max_size.value != AG_LIMIT_UNSET) ||
	    (c->want >= 0 && ev.max_size.rule_id != c->want)) {
		fail_msg("%s: max-size decided by rule %lld, want %lld",
		    c->label, ev.max_size.value == AG_LIMIT_UNSET ? -1LL :
		    (long long)ev.max_size.rule_id, (long long)c->want);
	}
	check_same(c->label, p, &x.f, RATES_MAX);
	ag_policy_free(p);
}

/* Candidates gathered for F (rules the evaluation will try). */
static size_t
ncandidates(const struct ag_policy *p, const struct ag_facts *f)
{
	struct ag_pcand c;
	size_t i, n = 0;

	ag_pcand_gather(ag_policy_index(p), ag_policy_count(p), f, &c);
	while (ag_pcand_next(&c, &i)) {
		n++;
	}
	ag_pcand_done(&c);
	return n;
}

/*
 * 20,000 rules, one per client network or sender domain, and two default
 * rules: a transaction tries its own rules and the defaults, not all.
 * Also more candidates than the stack buffer holds (300 rules on one
 * domain): the heap path gives the same answer.
 */
static void
test_narrows(void **state)
{
	enum { NNET = 10000, NDOM = 10000, NSAME = 300 };
	size_t n = NNET + NDOM + NSAME + 2, i;
	struct ag_rule *rules;
	struct ag_policy *p = NULL;
	struct ag_pindex_stats st;
	struct rfacts x;
	struct ag_eval ev;
	char buf[128];

	(void)state;
	if ((rules = calloc(n, sizeof(*rules))) == NULL) {
		fail_msg("out of memory");
	}
	for (i = 0; i < n; i++) {
		ag_rule_init(&rules[i]);
		rules[i].id = (int64_t)i + 1;
		rules[i].max_size = (int64_t)i;
		if (i < NNET) {
			snprintf(buf, sizeof(buf), "10.%zu.%zu.0/24", i / 256,
			    i % 256);
			add_match(&rules[i], AG_F_CLIENT, buf);
			/* a broad second field: the /24 is chosen */
			add_match(&rules[i], AG_F_SENDER_DOMAIN,
			    ".example.com");
		} else if (i < NNET + NDOM) {
			snprintf(buf, sizeof(buf), "d%zu.example.com", i);
			add_match(&rules[i], AG_F_SENDER_DOMAIN, buf);
		} else if (i < NNET + NDOM + NSAME) {
			add_match(&rules[i], AG_F_SENDER_DOMAIN, "example.org");
			rules[i].priority = (int)(i % 7);	/* ties */
		} else {
			add_match(&rules[i], AG_F_TRUSTED, i % 2 ? "yes" : "no");
		}
	}
	if (ag_policy_new(rules, n, &p) != AG_OK) {
		fail_msg("ag_policy_new failed");
	}
	ag_pindex_stats(ag_policy_index(p), &st);
	if (st.always != 2 || st.by_field[AG_F_CLIENT] != NNET ||
	    st.by_field[AG_F_SENDER_DOMAIN] != NDOM + NSAME) {
		fail_msg("indexed: %zu always, %zu by client, %zu by sender "
		    "domain", st.always, st.by_field[AG_F_CLIENT],
		    st.by_field[AG_F_SENDER_DOMAIN]);
	}
	memset(&x, 0, sizeof(x));
	ag_ip_parse("10.3.7.9", &x.ip);		/* rule 3 * 256 + 7 */
	parse_addr("<a@d12345.example.com>", &x.sender);
	x.f.client = &x.ip;
	x.f.sender = &x.sender;
	if ((i = ncandidates(p, &x.f)) != 4) {
		fail_msg("%zu candidates for one network and one domain, want "
		    "4 (its two rules and the two defaults)", i);
	}
	ag_policy_eval(p, &x.f, &ev);
	if (ev.nmatched != 3 || ev.max_size.rule_id != 3 * 256 + 7 + 1) {
		fail_msg("matched %zu, max-size from rule %lld", ev.nmatched,
		    (long long)ev.max_size.rule_id);
	}
	check_same("one network, one domain", p, &x.f, RATES_MAX);
	parse_addr("<a@EXAMPLE.org>", &x.sender);
	if ((i = ncandidates(p, &x.f)) != NSAME + 3) {
		fail_msg("%zu candidates for the shared domain, want %d", i,
		    NSAME + 3);
	}
	check_same("300 rules on one domain", p, &x.f, RATES_MAX);
	/* ag_policy_find: by binary search over the ids */
	for (i = 1; i <= n; i++) {
		const struct ag_rule *r = ag_policy_find(p, (int64_t)i);

		if (r == NULL || r->id != (int64_t)i) {
			fail_msg("ag_policy_find(%zu) gave %lld", i,
			    r != NULL ? (long long)r->id : -1LL);
		}
	}
	if (ag_policy_find(p, 0) != NULL || ag_policy_find(p, -1) != NULL ||
	    ag_policy_find(p, (int64_t)n + 1) != NULL ||
	    ag_policy_find(NULL, 1) != NULL) {
		fail_msg("ag_policy_find found a rule that is not there");
	}
	ag_policy_free(p);
}

int
main(void)
{
	struct CMUnitTest t[2 + NELEM(edge_cases)];
	size_t n = 0, i;

	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_narrows);
	for (i = 0; i < NELEM(edge_cases); i++) {
		t[n++] = (struct CMUnitTest){ edge_cases[i].label, test_edge,
		    NULL, NULL, (void *)&edge_cases[i] };
	}
	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_differential);
	return _cmocka_run_group_tests("policy_index", t, n, NULL, NULL);
}
