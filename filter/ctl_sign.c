/*
 * ctl_sign.c - authgatectl sign add|replace|list|del|enable|disable: the
 * DKIM signing table (lib/signtable.c).
 *
 * `sign add` and `sign replace` load the key before the row is written,
 * with the daemon's own checks (owner-only permissions, a private key of
 * the algorithm), so a row never names a key the daemon would refuse; the
 * daemon reads the table again on the change and signs the next message
 * with it.  `sign replace ID` is a rollover in one transaction: the new
 * entry takes the old one's settings unless given, and no reload can see
 * both entries or neither.
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

/* Find entry ID in S into *E (its strings still the table's, so T stays
 * until E is used); CTL_OK or an error already said. */
static int
entry_find(struct ag_store *s, int64_t id, struct ag_signtable **t,
    const struct ag_sign_entry **e)
{
	if (ag_signtable_load(s, false, t) != AG_OK) {
		return ctl_err(CTL_FAIL, "%s", ag_store_errstr(s));
	}
	for (size_t i = 0; i < ag_signtable_count(*t); i++) {
		if (ag_signtable_get(*t, i)->id == id) {
			*e = ag_signtable_get(*t, i);
			return CTL_OK;
		}
	}
	return ctl_err(CTL_FAIL, "no such signing key: %lld", (long long)id);
}

/* An entry id from A (a positive decimal number) into *ID. */
static int
entry_id(struct args *a, const char *verb, int64_t *id)
{
	char *end;

	if (a->i >= a->argc) {
		return ctl_err(CTL_USAGE, "sign %s needs an id", verb);
	}
	*id = strtoll(a->argv[a->i], &end, 10);
	if (*a->argv[a->i] < '1' || *a->argv[a->i] > '9' || *end != '\0') {
		return ctl_err(CTL_USAGE, "sign %s: bad id '%s'", verb,
		    a->argv[a->i]);
	}
	a->i++;
	return CTL_OK;
}

/*
 * sign add, and sign replace OLD (OLD > 0): read the options over E (the
 * defaults, or the old entry's settings), check the key, then write the
 * row (for replace: delete the old one in the same transaction).
 */
static int
sign_write(struct ctl *c, struct args *a, const char *verb, int64_t old)
{
	struct sign_opts o;
	struct ag_sign_entry e;
	struct ag_sign_key *key = NULL;
	struct ag_signtable *t = NULL;
	const struct ag_sign_entry *was = NULL;
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
			return ctl_err(CTL_USAGE, "sign %s: unknown option '%s'",
			    verb, a->argv[a->i]);
		}
	}
	if ((old == 0 && o.domain == NULL) || o.selector == NULL ||
	    o.key == NULL) {
		return ctl_err(CTL_USAGE, "sign %s needs %s--selector and "
		    "--key", verb, old == 0 ? "--domain, " : "");
	}
	memset(&e, 0, sizeof(e));
	e.enabled = true;
	if (old > 0) {
		if ((rc = ctl_open_store(c, &s)) != CTL_OK) {
			return rc;
		}
		if ((rc = entry_find(s, old, &t, &was)) != CTL_OK) {
			goto out;
		}
		e = *was;		/* its strings stay T's */
		e.id = 0;
		e.key = NULL;
		e.enabled = true;
	}
	if (o.domain != NULL) {
		snprintf(e.domain, sizeof(e.domain), "%s", o.domain);
	}
	if (o.match != NULL || was == NULL) {
		snprintf(e.pattern, sizeof(e.pattern), "%s",
		    o.match != NULL ? o.match : o.domain);
	}
	if (strlen(o.selector) >= sizeof(e.selector)) {
		rc = ctl_err(CTL_USAGE, "--selector: too long");
		goto out;
	}
	snprintf(e.selector, sizeof(e.selector), "%s", o.selector);
	rc = CTL_USAGE;
	if (o.algorithm != NULL && ag_sign_alg_parse(o.algorithm, &e.alg) != 0) {
		ctl_err(rc, "--algorithm '%s': rsa-sha256 or ed25519-sha256",
		    o.algorithm);
		goto out;
	}
	if (o.canon != NULL && ag_sign_canon_parse(o.canon, &e.header_simple,
	    &e.body_simple) != 0) {
		ctl_err(rc, "--canonicalization '%s': HEADER/BODY, each relaxed "
		    "or simple", o.canon);
		goto out;
	}
	if (o.expire != NULL && !parse_expire(o.expire, &e.expire_s)) {
		ctl_err(rc, "--expire '%s': seconds or a number with s, m, h, d "
		    "or w, up to 366 days", o.expire);
		goto out;
	}
	if (o.headers != NULL &&
	    (o.headers[0] == '\0' || strlen(o.headers) > AG_SIGN_HEADERS_MAX ||
	    strspn(o.headers, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
	    "TUVWXYZ0123456789-:") != strlen(o.headers))) {
		ctl_err(rc, "--headers: field names separated by colons, e.g. "
		    "from:to:subject:date");
		goto out;
	}
	/* the daemon reads the key by an absolute path */
	if (realpath(o.key, path) == NULL) {
		rc = ctl_err(CTL_FAIL, "--key %s: no such file", o.key);
		goto out;
	}
	st = ag_sign_key_load(path, e.alg, &key, err, sizeof(err));
	if (st != AG_OK) {
		rc = ctl_err(CTL_FAIL, "%s", err);
		goto out;
	}
	ag_sign_key_free(key);
	e.key_file = path;
	if (o.headers != NULL) {
		e.headers = (char *)(uintptr_t)o.headers;
	}
	if (s == NULL && (rc = ctl_open_store(c, &s)) != CTL_OK) {
		goto out;
	}
	st = old > 0 ? ag_signtable_replace(s, old, &e, &id) :
	    ag_signtable_add(s, &e, &id);
	if (st != AG_OK) {
		rc = ctl_err(st == AG_INVALID ? CTL_USAGE : CTL_FAIL, "%s",
		    ag_store_errstr(s));
	} else if (c->json) {
		rc = CTL_OK;
		if (old > 0) {
			printf("{\"id\":%lld,\"replaced\":%lld}\n",
			    (long long)id, (long long)old);
		} else {
			printf("{\"id\":%lld}\n", (long long)id);
		}
	} else {
		rc = CTL_OK;
		printf("%lld\n", (long long)id);
	}
out:
	ag_signtable_free(t);
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

/* sign del ID, sign enable ID, sign disable ID. */
static int
sign_change(struct ctl *c, struct args *a, const char *verb)
{
	struct ag_store *s = NULL;
	int64_t id;
	ag_status st;
	int rc;

	if ((rc = entry_id(a, verb, &id)) != CTL_OK) {
		return rc;
	}
	while (a->i < a->argc && opt_flag(a, "--json")) {
		c->json = true;
	}
	if (a->i < a->argc) {
		return ctl_err(CTL_USAGE, "sign %s: unexpected argument '%s'",
		    verb, a->argv[a->i]);
	}
	if ((rc = ctl_open_store(c, &s)) != CTL_OK) {
		return rc;
	}
	st = strcmp(verb, "del") == 0 ? ag_signtable_del(s, id) :
	    ag_signtable_enable(s, id, strcmp(verb, "enable") == 0);
	if (st == AG_NOTFOUND) {
		rc = ctl_err(CTL_FAIL, "no such signing key: %lld",
		    (long long)id);
	} else if (st != AG_OK) {
		rc = ctl_err(CTL_FAIL, "%s", ag_store_errstr(s));
	} else if (c->json) {
		printf("{\"id\":%lld,\"done\":\"%s\"}\n", (long long)id,
		    verb);
	}
	ag_store_close(s);
	return rc;
}

int
cmd_sign(struct ctl *c, struct args *a)
{
	const char *sub;
	int64_t id;
	int rc;

	if (a->i >= a->argc) {
		return ctl_err(CTL_USAGE, "sign needs a verb: add, replace, "
		    "list, del, enable, disable");
	}
	sub = a->argv[a->i++];
	if (strcmp(sub, "add") == 0) {
		return sign_write(c, a, sub, 0);
	}
	if (strcmp(sub, "replace") == 0) {
		return (rc = entry_id(a, sub, &id)) != CTL_OK ? rc :
		    sign_write(c, a, sub, id);
	}
	if (strcmp(sub, "list") == 0) {
		return sign_list(c, a);
	}
	if (strcmp(sub, "del") == 0 || strcmp(sub, "enable") == 0 ||
	    strcmp(sub, "disable") == 0) {
		return sign_change(c, a, sub);
	}
	return ctl_err(CTL_USAGE, "unknown sign verb '%s'", sub);
}
