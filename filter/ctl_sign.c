/*
 * ctl_sign.c - authgatectl sign add|list|del: the DKIM
 * signing table (lib/signtable.c).
 *
 * `sign add` loads the key before the row is written, with the daemon's
 * own checks (owner-only permissions, a private key of the algorithm), so
 * a row never names a key the daemon would refuse; the daemon reads the
 * table again on the change and signs the next message with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "dkimsign.h"
#include "signtable.h"

/* The options of sign add, checked once all are read. */
struct sign_opts {
	const char *domain, *selector, *key, *algorithm, *match, *canon;
	const char *headers, *expire;
};

static const struct optdef sign_optdefs[] = {
	{ "--domain", offsetof(struct sign_opts, domain) },
	{ "--selector", offsetof(struct sign_opts, selector) },
	{ "--key", offsetof(struct sign_opts, key) },
	{ "--algorithm", offsetof(struct sign_opts, algorithm) },
	{ "--match", offsetof(struct sign_opts, match) },
	{ "--canonicalization", offsetof(struct sign_opts, canon) },
	{ "--headers", offsetof(struct sign_opts, headers) },
	{ "--expire", offsetof(struct sign_opts, expire) },
};

/* "3600", "7d", "2w": seconds, up to 366 days; false for junk. */
static bool
parse_expire(const char *s, unsigned *out)
{
	char *end;
	unsigned long v, unit = 1;

	if (*s < '0' || *s > '9') {
		return false;
	}
	v = strtoul(s, &end, 10);
	if (*end != '\0') {
		switch (*end) {
		case 's': unit = 1; break;
		case 'm': unit = 60; break;
		case 'h': unit = 3600; break;
		case 'd': unit = 86400; break;
		case 'w': unit = 7 * 86400; break;
		default: return false;
		}
		if (end[1] != '\0') {
			return false;
		}
	}
	if (v == 0 || v > 366UL * 86400 / unit) {
		return false;
	}
	*out = (unsigned)(v * unit);
	return true;
}

/* sign add: check the key, then insert the row. */
static int
sign_add(struct ctl *c, struct args *a)
{
	struct sign_opts o;
	struct ag_sign_entry e;
	struct ag_sign_key *key = NULL;
	struct ag_store *s = NULL;
	char err[512], path[4096];
	int64_t id = 0;
	int got, rc;
	ag_status st;

	memset(&o, 0, sizeof(o));
	while (a->i < a->argc) {
		if ((got = opt_table(a, sign_optdefs, NELEM(sign_optdefs),
		    &o)) != 0) {
			if (got < 0) {
				return CTL_USAGE;
			}
		} else if (opt_flag(a, "--json")) {
			c->json = true;
		} else {
			return ctl_err(CTL_USAGE, "sign add: unknown option '%s'",
			    a->argv[a->i]);
		}
	}
	if (o.domain == NULL || o.selector == NULL || o.key == NULL) {
		return ctl_err(CTL_USAGE, "sign add needs --domain, --selector "
		    "and --key");
	}
	memset(&e, 0, sizeof(e));
	e.enabled = true;
	snprintf(e.domain, sizeof(e.domain), "%s", o.domain);
	snprintf(e.pattern, sizeof(e.pattern), "%s",
	    o.match != NULL ? o.match : o.domain);
	if (strlen(o.selector) >= sizeof(e.selector)) {
		return ctl_err(CTL_USAGE, "--selector: too long");
	}
	snprintf(e.selector, sizeof(e.selector), "%s", o.selector);
	if (o.algorithm != NULL && ag_sign_alg_parse(o.algorithm, &e.alg) != 0) {
		return ctl_err(CTL_USAGE, "--algorithm '%s': rsa-sha256 or "
		    "ed25519-sha256", o.algorithm);
	}
	if (o.canon != NULL && ag_sign_canon_parse(o.canon, &e.header_simple,
	    &e.body_simple) != 0) {
		return ctl_err(CTL_USAGE, "--canonicalization '%s': HEADER/BODY, "
		    "each relaxed or simple", o.canon);
	}
	if (o.expire != NULL && !parse_expire(o.expire, &e.expire_s)) {
		return ctl_err(CTL_USAGE, "--expire '%s': seconds or a number "
		    "with s, m, h, d or w, up to 366 days", o.expire);
	}
	if (o.headers != NULL &&
	    (o.headers[0] == '\0' || strlen(o.headers) > AG_SIGN_HEADERS_MAX ||
	    strspn(o.headers, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
	    "TUVWXYZ0123456789-:") != strlen(o.headers))) {
		return ctl_err(CTL_USAGE, "--headers: field names separated by "
		    "colons, e.g. from:to:subject:date");
	}
	/* the daemon reads the key by an absolute path */
	if (realpath(o.key, path) == NULL) {
		return ctl_err(CTL_FAIL, "--key %s: no such file", o.key);
	}
	st = ag_sign_key_load(path, e.alg, &key, err, sizeof(err));
	if (st != AG_OK) {
		return ctl_err(CTL_FAIL, "%s", err);
	}
	ag_sign_key_free(key);
	e.key_file = path;
	e.headers = (char *)(uintptr_t)o.headers;
	if ((rc = ctl_open_store(c, &s)) != CTL_OK) {
		return rc;
	}
	st = ag_signtable_add(s, &e, &id);
	if (st != AG_OK) {
		rc = ctl_err(st == AG_INVALID ? CTL_USAGE : CTL_FAIL, "%s",
		    ag_store_errstr(s));
	} else if (c->json) {
		printf("{\"id\":%lld}\n", (long long)id);
	} else {
		printf("%lld\n", (long long)id);
	}
	ag_store_close(s);
	return rc;
}

/* One entry as JSON. */
static void
put_entry_json(const struct ag_sign_entry *e)
{
	printf("{\"id\":%lld,\"match\":", (long long)e->id);
	put_json(stdout, e->pattern);
	fputs(",\"domain\":", stdout);
	put_json(stdout, e->domain);
	fputs(",\"selector\":", stdout);
	put_json(stdout, e->selector);
	printf(",\"algorithm\":\"%s\",\"key_file\":", ag_sign_alg_name(e->alg));
	put_json(stdout, e->key_file);
	printf(",\"canonicalization\":\"%s/%s\",\"headers\":",
	    e->header_simple ? "simple" : "relaxed",
	    e->body_simple ? "simple" : "relaxed");
	put_json(stdout, e->headers);
	printf(",\"expire\":%u,\"enabled\":%s,\"key\":", e->expire_s,
	    e->enabled ? "true" : "false");
	put_json(stdout, e->key != NULL ? "ok" : e->error);
	putchar('}');
}

/* sign list: the table, each key checked as the daemon would. */
static int
sign_list(struct ctl *c, struct args *a)
{
	struct ag_signtable *t = NULL;
	struct ag_store *s = NULL;
	size_t i, n;
	int rc;

	while (a->i < a->argc) {
		if (!opt_flag(a, "--json")) {
			return ctl_err(CTL_USAGE, "sign list: unexpected argument "
			    "'%s'", a->argv[a->i]);
		}
		c->json = true;
	}
	if ((rc = ctl_open_store(c, &s)) != CTL_OK) {
		return rc;
	}
	if (ag_signtable_load(s, true, &t) != AG_OK) {
		rc = ctl_err(CTL_FAIL, "%s", ag_store_errstr(s));
		ag_store_close(s);
		return rc;
	}
	n = ag_signtable_count(t);
	if (!c->json) {
		printf("%-5s %-24s %-24s %-16s %-15s %-15s %-7s %s\n", "ID",
		    "MATCH", "DOMAIN", "SELECTOR", "ALGORITHM", "CANON",
		    "ENABLED", "KEY");
	}
	fputs(c->json ? "[" : "", stdout);
	for (i = 0; i < n; i++) {
		const struct ag_sign_entry *e = ag_signtable_get(t, i);

		if (c->json) {
			fputs(i ? ",\n " : "", stdout);
			put_entry_json(e);
			continue;
		}
		printf("%-5lld ", (long long)e->id);
		put_text(stdout, e->pattern);
		printf("%*s ", (int)(24 > strlen(e->pattern) ?
		    24 - strlen(e->pattern) : 0), "");
		printf("%-24s %-16s %-15s %s/%-7s %-7s ", e->domain, e->selector,
		    ag_sign_alg_name(e->alg), e->header_simple ? "simple" :
		    "relaxed", e->body_simple ? "simple" : "relaxed",
		    e->enabled ? "yes" : "no");
		put_text(stdout, e->key_file);
		if (e->enabled && e->key == NULL) {
			fputs(" (UNUSABLE: ", stdout);
			put_text(stdout, e->error);
			putchar(')');
		}
		putchar('\n');
	}
	puts(c->json ? "]" : "");
	ag_signtable_free(t);
	ag_store_close(s);
	return CTL_OK;
}

/* sign del ID. */
static int
sign_del(struct ctl *c, struct args *a)
{
	struct ag_store *s = NULL;
	long long id;
	char *end;
	ag_status st;
	int rc;

	if (a->i >= a->argc) {
		return ctl_err(CTL_USAGE, "sign del needs an id");
	}
	id = strtoll(a->argv[a->i], &end, 10);
	if (*a->argv[a->i] < '1' || *a->argv[a->i] > '9' || *end != '\0') {
		return ctl_err(CTL_USAGE, "sign del: bad id '%s'",
		    a->argv[a->i]);
	}
	a->i++;
	while (a->i < a->argc && opt_flag(a, "--json")) {
		c->json = true;
	}
	if (a->i < a->argc) {
		return ctl_err(CTL_USAGE, "sign del: unexpected argument '%s'",
		    a->argv[a->i]);
	}
	if ((rc = ctl_open_store(c, &s)) != CTL_OK) {
		return rc;
	}
	st = ag_signtable_del(s, id);
	if (st == AG_NOTFOUND) {
		rc = ctl_err(CTL_FAIL, "no such signing key: %lld", id);
	} else if (st != AG_OK) {
		rc = ctl_err(CTL_FAIL, "%s", ag_store_errstr(s));
	} else if (c->json) {
		printf("{\"id\":%lld,\"done\":\"del\"}\n", id);
	}
	ag_store_close(s);
	return rc;
}

int
cmd_sign(struct ctl *c, struct args *a)
{
	const char *sub;

	if (a->i >= a->argc) {
		return ctl_err(CTL_USAGE, "sign needs a verb: add, list, del");
	}
	sub = a->argv[a->i++];
	if (strcmp(sub, "add") == 0) {
		return sign_add(c, a);
	}
	if (strcmp(sub, "list") == 0) {
		return sign_list(c, a);
	}
	if (strcmp(sub, "del") == 0) {
		return sign_del(c, a);
	}
	return ctl_err(CTL_USAGE, "unknown sign verb '%s'", sub);
}
