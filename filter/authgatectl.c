/*
 * authgatectl.c - the administrator's command-line tool: create the
 * database, manage rules, and show what the daemon would decide for a
 * given transaction.
 *
 * Everything goes through lib/: the store for rules, the policy for
 * matching, and for `check` the daemon's own session pipeline (engine,
 * connection, HELO, MAIL, RCPT, end of message), so the verdict printed
 * is the one the milter would give.
 *
 * Output: text for people (stored values with control characters
 * escaped) or, with --json, JSON written here with its own string
 * escaping.  Errors: one line "authgatectl: ..." on standard error; exit
 * status 0 on success, 1 for a runtime failure (database, no such rule),
 * 2 for bad usage.
 */
#include "autoconf.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "engine.h"
#include "log.h"
#include "policy.h"
#include "session.h"
#include "store.h"
#include "verdict.h"

enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

#define CTL_COMMENT_MAX 1024	/* bytes in a rule comment */
#define CTL_MAX_RCPTS 1000	/* --rcpt arguments to check */
#define CTL_BODY_CHUNK 65536	/* body bytes per call when checking size */

struct ctl {
	const char *conffile;	/* -c, or NULL for the default */
	const char *dbpath;	/* -d, or NULL for the config's Database */
	bool json;
	struct ag_config *cfg;
};

/* The argument vector of a verb, consumed left to right. */
struct args {
	int argc;
	char **argv;
	int i;
};

/* Print "authgatectl: MESSAGE" on stderr; returns STATUS. */
static int __attribute__((format(printf, 2, 3)))
ctl_err(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("authgatectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

/* The usage summary (-h). */
static void
usage(FILE *fp)
{
	fputs("usage: authgatectl [-c FILE] [-d FILE] [--json] VERB ...\n"
	    "       authgatectl -h | -V\n"
	    "verbs:\n"
	    "  init\n"
	    "  rule add [--priority N] [--match FIELD=VALUE]... "
	    "[--max-size BYTES]\n"
	    "           [--max-rcpts N] [--dry-run] [--disabled] "
	    "[--comment TEXT]\n"
	    "  rule list | rule show ID | rule del ID | rule enable ID | "
	    "rule disable ID\n"
	    "  check --client-ip IP [--helo NAME] [--mail-from ADDR] "
	    "--rcpt ADDR...\n"
	    "        [--size BYTES] [--auth USER]\n"
	    "fields: client, helo, sender, sender-domain, sasl-user, rcpt, "
	    "rcpt-domain,\n"
	    "        trusted (yes|no), authenticated (yes|no)\n", fp);
}

/* ---- output escaping ---------------------------------------------------- */

/* Length of the valid UTF-8 sequence at P, or 0 if it is not one. */
static size_t
utf8_len(const unsigned char *p)
{
	size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2, i;

	if (p[0] < 0xc2 || p[0] > 0xf4) {
		return 0;	/* continuation, overlong, past U+10FFFF */
	}
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			return 0;
		}
	}
	/* overlong 3-byte forms, surrogates, and past U+10FFFF */
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90)) {
		return 0;
	}
	return n;
}

/*
 * Write S for a terminal: control characters (C0, DEL, C1), bytes that
 * are not UTF-8, and '\' escaped.  With FP NULL only measure.  Returns
 * the width in characters.
 */
static size_t
put_text(FILE *fp, const char *s)
{
	const unsigned char *p;
	char buf[8];
	size_t w = 0, n;

	for (p = (const unsigned char *)(s ? s : ""); *p != '\0'; p += n) {
		n = *p < 0x80 ? 1 : utf8_len(p);
		if (*p == '\\') {
			snprintf(buf, sizeof(buf), "\\\\");
		} else if (*p < 0x20 || *p == 0x7f || n == 0 ||
		    (p[0] == 0xc2 && p[1] < 0xa0)) {
			snprintf(buf, sizeof(buf), "\\x%02x", *p);
			n = 1;
		} else {
			memcpy(buf, p, n);
			buf[n] = '\0';
		}
		w += n > 1 ? 1 : strlen(buf);
		if (fp != NULL) {
			fputs(buf, fp);
		}
	}
	return w;
}

/* Write S as a JSON string; NULL is null; bad UTF-8 becomes U+FFFD. */
static void
put_json(FILE *fp, const char *s)
{
	const unsigned char *p;
	size_t n;

	if (s == NULL) {
		fputs("null", fp);
		return;
	}
	fputc('"', fp);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			fprintf(fp, "\\%c", *p);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(fp, "\\u%04x", *p);
		} else if (*p < 0x80) {
			fputc(*p, fp);
		} else if ((n = utf8_len(p)) > 0) {
			fwrite(p, 1, n, fp);
			p += n - 1;
		} else {
			fputs("\\ufffd", fp);
		}
	}
	fputc('"', fp);
}

/* A limit as JSON: a number or null. */
static void
put_json_limit(FILE *fp, int64_t v)
{
	if (v < 0) {
		fputs("null", fp);
	} else {
		fprintf(fp, "%lld", (long long)v);
	}
}

/* A byte count as an administrator writes it: "10M", "512k", "1000". */
static const char *
format_bytes(char *buf, size_t bufsz, int64_t v)
{
	static const char suffix[] = "GMk";
	int64_t unit = (int64_t)1 << 30;
	int i;

	for (i = 0; i < 3; i++, unit >>= 10) {
		if (v >= unit && v % unit == 0) {
			snprintf(buf, bufsz, "%lld%c", (long long)(v / unit),
			    suffix[i]);
			return buf;
		}
	}
	snprintf(buf, bufsz, "%lld", (long long)v);
	return buf;
}

/* ---- argument parsing --------------------------------------------------- */

/*
 * If the current argument is option NAME ("--name VALUE" or
 * "--name=VALUE"), consume it, set *VAL and return 1; 0 if it is not;
 * -1 (after the error message) when the value is missing.
 */
static int
opt_value(struct args *a, const char *name, const char **val)
{
	const char *arg = a->argv[a->i];
	size_t len = strlen(name);

	if (strncmp(arg, name, len) != 0) {
		return 0;
	}
	if (arg[len] == '=') {
		*val = arg + len + 1;
		a->i++;
		return 1;
	}
	if (arg[len] != '\0') {
		return 0;
	}
	if (a->i + 1 >= a->argc) {
		ctl_err(CTL_USAGE, "%s needs a value", name);
		return -1;
	}
	*val = a->argv[a->i + 1];
	a->i += 2;
	return 1;
}

/* If the current argument is flag NAME, consume it. */
static bool
opt_flag(struct args *a, const char *name)
{
	if (strcmp(a->argv[a->i], name) == 0) {
		a->i++;
		return true;
	}
	return false;
}

/* A value option kept as a string at OFF in a verb's option struct. */
struct optdef {
	const char *name;
	size_t off;
};

#define NELEM(x) (sizeof(x) / sizeof((x)[0]))

/* Take the current argument if it is in DEFS: 1 taken, 0 not, -1 error. */
static int
opt_table(struct args *a, const struct optdef *defs, size_t n, void *base)
{
	const char *v;
	size_t i;
	int got;

	for (i = 0; i < n; i++) {
		if ((got = opt_value(a, defs[i].name, &v)) > 0) {
			*(const char **)(void *)((char *)base +
			    defs[i].off) = v;
		}
		if (got != 0) {
			return got;
		}
	}
	return 0;
}

/* A decimal integer in [MIN, MAX], nothing else. */
static bool
parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) {
		return false;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v < min || v > max) {
		return false;
	}
	*out = v;
	return true;
}

/* The rule id argument of show/del/enable/disable. */
static int
parse_rule_id(struct args *a, const char *verb, int64_t *id)
{
	long long v;

	if (a->i >= a->argc) {
		return ctl_err(CTL_USAGE, "rule %s needs a rule id", verb);
	}
	if (!parse_int(a->argv[a->i], 1, INT64_MAX, &v)) {
		return ctl_err(CTL_USAGE, "rule %s: bad rule id '%s'", verb,
		    a->argv[a->i]);
	}
	a->i++;
	*id = v;
	return CTL_OK;
}

/* Take trailing --json; complain about any other argument left. */
static int
no_more_args(struct ctl *c, struct args *a, const char *verb)
{
	while (a->i < a->argc && opt_flag(a, "--json")) {
		c->json = true;
	}
	if (a->i < a->argc) {
		return ctl_err(CTL_USAGE, "%s: unexpected argument '%s'", verb,
		    a->argv[a->i]);
	}
	return CTL_OK;
}

/* ---- config and store --------------------------------------------------- */

/* Load the config and apply -d. */
static int
ctl_load_config(struct ctl *c)
{
	const char *file = c->conffile;
	char err[512], *db;

	if (file == NULL && access(AG_CONFIG_DEFAULT_FILE, F_OK) == 0) {
		file = AG_CONFIG_DEFAULT_FILE;
	}
	if (ag_config_load(file, &c->cfg, err, sizeof(err)) != AG_OK) {
		return ctl_err(CTL_FAIL, "%s", err);
	}
	if (c->dbpath != NULL) {
		/* our only reference, and no thread yet: safe to change */
		if ((db = strdup(c->dbpath)) == NULL) {
			return ctl_err(CTL_FAIL, "out of memory");
		}
		free(c->cfg->database);
		c->cfg->database = db;
	}
	return CTL_OK;
}

/* Open the database; on failure print why and return the exit status. */
static int
ctl_open(struct ctl *c, int flags, struct ag_store **out)
{
	struct ag_store *s = NULL;
	ag_status st;

	st = ag_store_open(c->cfg->database, flags,
	    (int)c->cfg->database_timeout, &s);
	if (st == AG_OK) {
		*out = s;
		return CTL_OK;
	}
	ctl_err(CTL_FAIL, "%s%s", ag_store_errstr(s),	/* NULL: no memory */
	    access(c->cfg->database, F_OK) != 0 && !(flags & AG_STORE_CREATE) ?
	    " (create it with: authgatectl init)" : "");
	ag_store_close(s);
	return CTL_FAIL;
}

/* Open the database and read every rule. */
static int
ctl_load_policy(struct ctl *c, struct ag_store **sp, struct ag_policy **pp)
{
	int rc = ctl_open(c, 0, sp);

	if (rc == CTL_OK && ag_store_load_policy(*sp, pp) != AG_OK) {
		rc = ctl_err(CTL_FAIL, "%s", ag_store_errstr(*sp));
		ag_store_close(*sp);
		*sp = NULL;
	}
	return rc;
}

/* ---- init --------------------------------------------------------------- */

/* init: create the database or bring its schema up to date. */
static int
cmd_init(struct ctl *c, struct args *a)
{
	struct ag_store *s;
	int rc;

	if ((rc = no_more_args(c, a, "init")) != CTL_OK ||
	    (rc = ctl_open(c, AG_STORE_CREATE, &s)) != CTL_OK) {
		return rc;
	}
	if (c->json) {
		fputs("{\"database\":", stdout);
		put_json(stdout, c->cfg->database);
		printf(",\"schema_version\":%d}\n", AG_STORE_SCHEMA_VERSION);
	} else {
		put_text(stdout, c->cfg->database);
		printf(": schema version %d\n", AG_STORE_SCHEMA_VERSION);
	}
	ag_store_close(s);
	return CTL_OK;
}

/* ---- rule add ----------------------------------------------------------- */

/* Parse "FIELD=VALUE" into M (the value points into ARG). */
static int
parse_match(const char *arg, struct ag_match *m)
{
	char name[32], norm[512], err[128];
	const char *eq = strchr(arg, '=');

	if (eq == NULL) {
		return ctl_err(CTL_USAGE, "--match '%s': expected FIELD=VALUE",
		    arg);
	}
	snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
	if (ag_field_parse(name, &m->field) != 0) {
		return ctl_err(CTL_USAGE, "--match: unknown field '%s' "
		    "(client, helo, sender, sender-domain, sasl-user, rcpt, "
		    "rcpt-domain, trusted, authenticated)", name);
	}
	m->value = (char *)(uintptr_t)(eq + 1);
	if (ag_match_normalize(m->field, m->value, norm, sizeof(norm), err,
	    sizeof(err)) != AG_OK) {
		return ctl_err(CTL_USAGE, "--match %s: %s", arg, err);
	}
	return CTL_OK;
}

/* The value options of rule add, checked once all are read. */
struct add_opts {
	const char *priority, *max_size, *max_rcpts, *comment;
};

static const struct optdef add_optdefs[] = {
	{ "--priority", offsetof(struct add_opts, priority) },
	{ "--max-size", offsetof(struct add_opts, max_size) },
	{ "--max-rcpts", offsetof(struct add_opts, max_rcpts) },
	{ "--comment", offsetof(struct add_opts, comment) },
};

/* Check the option values of rule add and put them into R. */
static int
rule_add_values(const struct add_opts *o, struct ag_rule *r)
{
	uint64_t bytes;
	long long n;

	if (o->priority != NULL) {
		if (!parse_int(o->priority, 0, INT_MAX, &n)) {
			return ctl_err(CTL_USAGE, "--priority: bad number '%s' "
			    "(0 to %d)", o->priority, INT_MAX);
		}
		r->priority = (int)n;
	}
	if (o->max_size != NULL) {
		if (ag_bytes_parse(o->max_size, &bytes) != AG_OK ||
		    bytes == 0 || bytes > INT64_MAX) {
			return ctl_err(CTL_USAGE, "--max-size: bad byte count "
			    "'%s' (e.g. 10485760, 512k, 10M, 1G)", o->max_size);
		}
		r->max_size = (int64_t)bytes;
	}
	if (o->max_rcpts != NULL) {
		if (!parse_int(o->max_rcpts, 1, INT_MAX, &n)) {
			return ctl_err(CTL_USAGE, "--max-rcpts: bad number "
			    "'%s' (1 to %d)", o->max_rcpts, INT_MAX);
		}
		r->max_rcpts = n;
	}
	if (o->comment != NULL && strlen(o->comment) > CTL_COMMENT_MAX) {
		return ctl_err(CTL_USAGE, "--comment: longer than %d bytes",
		    CTL_COMMENT_MAX);
	}
	r->comment = (char *)(uintptr_t)o->comment;
	if (r->max_size == AG_LIMIT_UNSET && r->max_rcpts == AG_LIMIT_UNSET) {
		return ctl_err(CTL_USAGE, "rule sets nothing: give --max-size "
		    "or --max-rcpts");
	}
	return CTL_OK;
}

/* Parse the options of rule add into R. */
static int
rule_add_parse(struct ctl *c, struct args *a, struct ag_rule *r)
{
	struct add_opts o = { NULL, NULL, NULL, NULL };
	const char *v;
	int got, rc = CTL_OK;

	while (rc == CTL_OK && a->i < a->argc) {
		if ((got = opt_table(a, add_optdefs, NELEM(add_optdefs),
		    &o)) != 0) {
			rc = got < 0 ? CTL_USAGE : CTL_OK;
		} else if ((got = opt_value(a, "--match", &v)) != 0) {
			rc = got < 0 ? CTL_USAGE :
			    parse_match(v, &r->match[r->nmatch++]);
		} else if (opt_flag(a, "--dry-run")) {
			r->dry_run = true;
		} else if (opt_flag(a, "--disabled")) {
			r->enabled = false;
		} else if (opt_flag(a, "--json")) {
			c->json = true;
		} else {
			rc = ctl_err(CTL_USAGE, "rule add: unknown option '%s'",
			    a->argv[a->i]);
		}
	}
	return rc == CTL_OK ? rule_add_values(&o, r) : rc;
}

/* rule add: insert one rule and print its id. */
static int
cmd_rule_add(struct ctl *c, struct args *a)
{
	struct ag_rule r;
	struct ag_store *s;
	int64_t id = 0;
	ag_status st;
	int rc = CTL_OK;

	memset(&r, 0, sizeof(r));
	r.priority = AG_PRIORITY_DEFAULT;
	r.enabled = true;
	r.max_size = r.max_rcpts = AG_LIMIT_UNSET;
	/* values point into argv: never ag_rule_clear() this rule */
	r.match = calloc((size_t)a->argc + 1, sizeof(*r.match));
	if (r.match == NULL) {
		return ctl_err(CTL_FAIL, "out of memory");
	}
	rc = rule_add_parse(c, a, &r);
	if (rc == CTL_OK && (rc = ctl_open(c, 0, &s)) == CTL_OK) {
		st = ag_store_rule_add(s, &r, &id);
		if (st != AG_OK) {
			rc = ctl_err(st == AG_INVALID ? CTL_USAGE : CTL_FAIL,
			    "%s", ag_store_errstr(s));
		} else if (c->json) {
			printf("{\"id\":%lld}\n", (long long)id);
		} else {
			printf("%lld\n", (long long)id);
		}
		ag_store_close(s);
	}
	free(r.match);
	return rc;
}

/* ---- rule list / show --------------------------------------------------- */

/* The conditions of R as text ("*": every transaction); FP NULL measures. */
static size_t
put_matches(FILE *fp, const struct ag_rule *r)
{
	size_t i, w = 0;

	for (i = 0; i < r->nmatch; i++) {
		const char *name = ag_field_name(r->match[i].field);

		if (fp != NULL) {
			fprintf(fp, "%s%s=", i ? " " : "", name);
		}
		w += (i ? 1 : 0) + strlen(name) + 1 +
		    put_text(fp, r->match[i].value);
	}
	if (r->nmatch == 0) {
		w = put_text(fp, "*");
	}
	return w;
}

/* The settings of R as text ("-" when none). */
static void
format_settings(char *buf, size_t bufsz, const struct ag_rule *r)
{
	char size[40] = "", num[32];

	if (r->max_size >= 0) {
		snprintf(size, sizeof(size), "max-size=%s",
		    format_bytes(num, sizeof(num), r->max_size));
	}
	if (r->max_rcpts >= 0) {
		snprintf(buf, bufsz, "%s%smax-rcpts=%lld", size,
		    size[0] ? " " : "", (long long)r->max_rcpts);
	} else {
		snprintf(buf, bufsz, "%s", size[0] ? size : "-");
	}
}

/* One rule as a JSON object. */
static void
put_rule_json(FILE *fp, const struct ag_rule *r)
{
	size_t i;

	fprintf(fp, "{\"id\":%lld,\"priority\":%d,\"enabled\":%s,"
	    "\"dry_run\":%s,\"matches\":[", (long long)r->id, r->priority,
	    r->enabled ? "true" : "false", r->dry_run ? "true" : "false");
	for (i = 0; i < r->nmatch; i++) {
		fprintf(fp, "%s{\"field\":\"%s\",\"value\":", i ? "," : "",
		    ag_field_name(r->match[i].field));
		put_json(fp, r->match[i].value);
		fputc('}', fp);
	}
	fputs("],\"max_size\":", fp);
	put_json_limit(fp, r->max_size);
	fputs(",\"max_rcpts\":", fp);
	put_json_limit(fp, r->max_rcpts);
	fputs(",\"comment\":", fp);
	put_json(fp, r->comment);
	fputc('}', fp);
}

/* The rules (all, or only ID) as a table, in evaluation order. */
static void
list_text(const struct ag_policy *p, int64_t id)
{
	size_t n = ag_policy_count(p), i, w, wm = 7, ws = 8;
	const struct ag_rule *r;
	char set[80];

	for (i = 0; i < n; i++) {
		r = ag_policy_rule(p, i);
		format_settings(set, sizeof(set), r);
		w = id == 0 || r->id == id ? put_matches(NULL, r) : 0;
		wm = w > wm ? w : wm;
		ws = strlen(set) > ws ? strlen(set) : ws;
	}
	printf("%-6s %-8s %-7s %-7s %-*s %-*s %s\n", "ID", "PRIORITY",
	    "ENABLED", "DRY-RUN", (int)wm, "MATCHES", (int)ws, "SETTINGS",
	    "COMMENT");
	for (i = 0; i < n; i++) {
		if ((r = ag_policy_rule(p, i))->id != id && id != 0) {
			continue;
		}
		format_settings(set, sizeof(set), r);
		printf("%-6lld %-8d %-7s %-7s ", (long long)r->id, r->priority,
		    r->enabled ? "yes" : "no", r->dry_run ? "yes" : "no");
		w = put_matches(stdout, r);
		printf("%*s %-*s", (int)(wm - w), "", r->comment ? (int)ws : 0,
		    set);
		if (r->comment != NULL) {
			putchar(' ');
			put_text(stdout, r->comment);
		}
		putchar('\n');
	}
}

/* rule list and rule show ID. */
static int
cmd_rule_read(struct ctl *c, struct args *a, bool show)
{
	const struct ag_rule *r = NULL;
	struct ag_policy *p = NULL;
	struct ag_store *s = NULL;
	int64_t id = 0;
	size_t i;
	int rc;

	if (show && (rc = parse_rule_id(a, "show", &id)) != CTL_OK) {
		return rc;
	}
	if ((rc = no_more_args(c, a, show ? "rule show" : "rule list")) !=
	    CTL_OK || (rc = ctl_load_policy(c, &s, &p)) != CTL_OK) {
		return rc;
	}
	for (i = 0; show && i < ag_policy_count(p); i++) {
		if (ag_policy_rule(p, i)->id == id) {
			r = ag_policy_rule(p, i);
		}
	}
	if (show && r == NULL) {
		rc = ctl_err(CTL_FAIL, "no such rule: %lld", (long long)id);
	} else if (!c->json) {
		list_text(p, id);	/* id 0: every rule */
	} else if (show) {
		put_rule_json(stdout, r);
		putchar('\n');
	} else {
		putchar('[');
		for (i = 0; i < ag_policy_count(p); i++) {
			fputs(i ? ",\n " : "", stdout);
			put_rule_json(stdout, ag_policy_rule(p, i));
		}
		puts("]");
	}
	ag_policy_free(p);
	ag_store_close(s);
	return rc;
}

/* rule del|enable|disable ID. */
static int
cmd_rule_change(struct ctl *c, struct args *a, const char *verb)
{
	struct ag_store *s;
	int64_t id = 0;
	ag_status st;
	int rc;

	if ((rc = parse_rule_id(a, verb, &id)) != CTL_OK) {
		return rc;
	}
	if ((rc = no_more_args(c, a, verb)) != CTL_OK ||
	    (rc = ctl_open(c, 0, &s)) != CTL_OK) {
		return rc;
	}
	if (strcmp(verb, "del") == 0) {
		st = ag_store_rule_del(s, id);
	} else {
		st = ag_store_rule_set_enabled(s, id,
		    strcmp(verb, "enable") == 0);
	}
	if (st == AG_NOTFOUND) {
		rc = ctl_err(CTL_FAIL, "no such rule: %lld", (long long)id);
	} else if (st != AG_OK) {
		rc = ctl_err(CTL_FAIL, "%s", ag_store_errstr(s));
	} else if (c->json) {
		printf("{\"id\":%lld,\"done\":\"%s\"}\n", (long long)id, verb);
	}
	ag_store_close(s);
	return rc;
}

/* rule VERB: dispatch to add, list, show, del, enable, disable. */
static int
cmd_rule(struct ctl *c, struct args *a)
{
	const char *sub;

	if (a->i >= a->argc) {
		return ctl_err(CTL_USAGE, "rule needs a verb: add, list, show, "
		    "del, enable, disable");
	}
	sub = a->argv[a->i++];
	if (strcmp(sub, "add") == 0) {
		return cmd_rule_add(c, a);
	}
	if (strcmp(sub, "list") == 0 || strcmp(sub, "show") == 0) {
		return cmd_rule_read(c, a, strcmp(sub, "show") == 0);
	}
	if (strcmp(sub, "del") == 0 || strcmp(sub, "enable") == 0 ||
	    strcmp(sub, "disable") == 0) {
		return cmd_rule_change(c, a, sub);
	}
	return ctl_err(CTL_USAGE, "unknown rule verb '%s'", sub);
}

/* ---- check ------------------------------------------------------------- */

/* Verdicts: [0] MAIL FROM, [1..nrcpt] each RCPT TO, [nrcpt + 1] end. */
#define CTL_PHASES (CTL_MAX_RCPTS + 2)

struct check {
	const char *client, *helo, *mail_from, *auth, *size_arg;
	size_t nrcpt;
	const char *rcpt[CTL_MAX_RCPTS];
	/* parsed */
	uint64_t size;
	bool have_size, trusted;
	struct ag_ip ip;
	char helo_norm[AG_ADDR_DOMAIN_MAX + 1];
	struct ag_mailaddr sender;
	struct ag_mailaddr rcpt_addr[CTL_MAX_RCPTS];
	/* what the session answered */
	struct ag_verdict verdict[CTL_PHASES];
	bool reached[CTL_PHASES];
};

static const struct optdef check_optdefs[] = {
	{ "--client-ip", offsetof(struct check, client) },
	{ "--helo", offsetof(struct check, helo) },
	{ "--mail-from", offsetof(struct check, mail_from) },
	{ "--auth", offsetof(struct check, auth) },
	{ "--size", offsetof(struct check, size_arg) },
};

/* One option of check. */
static int
check_option(struct ctl *c, struct args *a, struct check *k)
{
	const char *v;
	int got;

	if ((got = opt_table(a, check_optdefs, NELEM(check_optdefs), k)) != 0) {
		return got < 0 ? CTL_USAGE : CTL_OK;
	}
	if ((got = opt_value(a, "--rcpt", &v)) > 0 &&
	    k->nrcpt < CTL_MAX_RCPTS) {
		k->rcpt[k->nrcpt++] = v;
		return CTL_OK;
	}
	if (got != 0) {
		return got < 0 ? CTL_USAGE : ctl_err(CTL_USAGE, "check: more "
		    "than %d --rcpt", CTL_MAX_RCPTS);
	}
	if (opt_flag(a, "--json")) {
		c->json = true;
		return CTL_OK;
	}
	return ctl_err(CTL_USAGE, "check: unknown option '%s'", a->argv[a->i]);
}

/* Validate the check arguments and build the facts. */
static int
check_validate(struct ctl *c, struct check *k)
{
	size_t i;

	if (k->client == NULL || k->nrcpt == 0) {
		return ctl_err(CTL_USAGE, "check needs --client-ip IP and at "
		    "least one --rcpt ADDR");
	}
	if (ag_ip_parse(k->client, &k->ip) != AG_OK) {
		return ctl_err(CTL_USAGE, "check: bad --client-ip '%s'",
		    k->client);
	}
	k->mail_from = k->mail_from != NULL ? k->mail_from : "<>";
	if (ag_mailaddr_parse(k->mail_from, &k->sender) != AG_OK) {
		return ctl_err(CTL_USAGE, "check: bad --mail-from '%s'",
		    k->mail_from);
	}
	for (i = 0; i < k->nrcpt; i++) {
		if (ag_mailaddr_parse(k->rcpt[i], &k->rcpt_addr[i]) != AG_OK ||
		    k->rcpt_addr[i].is_null) {
			return ctl_err(CTL_USAGE, "check: bad --rcpt '%s'",
			    k->rcpt[i]);
		}
	}
	k->have_size = k->size_arg != NULL;
	if (k->have_size && ag_bytes_parse(k->size_arg, &k->size) != AG_OK) {
		return ctl_err(CTL_USAGE, "check: bad --size '%s'",
		    k->size_arg);
	}
	if (k->auth != NULL && k->auth[0] == '\0') {
		return ctl_err(CTL_USAGE, "check: empty --auth");
	}
	if (k->helo == NULL || ag_domain_normalize(k->helo, k->helo_norm,
	    sizeof(k->helo_norm)) != AG_OK) {
		k->helo_norm[0] = '\0';	/* as the session: not a name */
	}
	k->trusted = ag_cidr_list_match(&c->cfg->trusted, &k->ip);
	return CTL_OK;
}

/* The facts of phase I: the transaction (0) or recipient I - 1. */
static void
check_facts(const struct check *k, size_t i, struct ag_facts *f)
{
	memset(f, 0, sizeof(*f));
	f->client = &k->ip;
	f->helo = k->helo_norm[0] != '\0' ? k->helo_norm : NULL;
	f->sender = &k->sender;
	f->sasl_user = k->auth;
	f->trusted = k->trusted;
	f->rcpt = i == 0 ? NULL : &k->rcpt_addr[i - 1];
}

/* Wrap a bare address in angle brackets, as an MTA passes it. */
static void
bracket(char *buf, size_t bufsz, const char *addr)
{
	snprintf(buf, bufsz, addr[0] == '<' ? "%s" : "<%s>", addr);
}

/* The end of the message: a body making up the declared size. */
static void
check_eom(struct ag_conn *conn, struct check *k)
{
	static unsigned char chunk[CTL_BODY_CHUNK];
	struct ag_verdict *v = &k->verdict[k->nrcpt + 1];
	uint64_t left = k->size > 2 ? k->size - 2 : 0;	/* less the eoh */
	const struct ag_edit *ed;
	bool dry;
	size_t ned, n;

	memset(chunk, 'x', sizeof(chunk));
	ag_conn_eoh(conn, v);
	dry = v->dry_run;
	while (!ag_verdict_is_final(v) && left > 0) {
		n = left > sizeof(chunk) ? sizeof(chunk) : (size_t)left;
		ag_conn_body(conn, chunk, n, v);
		dry = dry || v->dry_run;
		left -= n;
	}
	if (!ag_verdict_is_final(v)) {
		ag_conn_eom(conn, v, &ed, &ned);
		v->dry_run = v->dry_run || dry;
	}
	k->reached[k->nrcpt + 1] = true;
}

/* Drive the daemon's own session pipeline through every phase. */
static int
check_run(struct ctl *c, struct check *k)
{
	struct ag_conn_info info = { .client_addr = k->client,
	    .client_name = "unknown", .daemon_name = "authgatectl",
	    .mta_name = "localhost" };
	char from[AG_ADDR_MAX + 8], sizebuf[40], rcpt[AG_ADDR_MAX + 8];
	char *margv[3] = { from, NULL, NULL }, *rargv[2] = { rcpt, NULL };
	struct ag_engine *e = NULL;
	struct ag_conn *conn;
	struct ag_verdict v;
	size_t i, ok = 0;

	if (ag_engine_new(c->cfg, false, &e) != AG_OK ||
	    (conn = ag_conn_new(e, &info, &v)) == NULL) {
		ag_engine_free(e);
		return ctl_err(CTL_FAIL, "out of memory");
	}
	ag_conn_set_queue_id(conn, "CHECK");
	ag_conn_set_auth(conn, k->auth);
	if (k->helo != NULL) {
		ag_conn_helo(conn, k->helo, &v);
	}
	bracket(from, sizeof(from), k->mail_from);
	if (k->have_size) {
		snprintf(sizebuf, sizeof(sizebuf), "SIZE=%llu",
		    (unsigned long long)k->size);
		margv[1] = sizebuf;
	}
	ag_conn_mail(conn, margv, &k->verdict[0]);
	k->reached[0] = true;
	for (i = 1; !ag_verdict_is_final(&k->verdict[0]) && i <= k->nrcpt;
	    i++) {
		bracket(rcpt, sizeof(rcpt), k->rcpt[i - 1]);
		ag_conn_rcpt(conn, rargv, &k->verdict[i]);
		k->reached[i] = true;
		ok += !ag_verdict_is_final(&k->verdict[i]);
	}
	if (ok > 0) {
		check_eom(conn, k);
	}
	ag_conn_free(conn);	/* aborts the message if still open */
	ag_engine_free(e);
	return CTL_OK;
}

/* The verdict of a phase, or "not reached" (null). */
static void
put_verdict(bool json, const struct ag_verdict *v, bool reached)
{
	if (json) {
		fputs(",\"verdict\":", stdout);
		if (!reached) {
			fputs("null", stdout);
			return;
		}
		fputs("{\"action\":", stdout);
		put_json(stdout, ag_action_name(v->action));
		fputs(",\"code\":", stdout);
		put_json(stdout, v->rcode[0] ? v->rcode : NULL);
		fputs(",\"xcode\":", stdout);
		put_json(stdout, v->rcode[0] ? v->xcode : NULL);
		fputs(",\"text\":", stdout);
		put_json(stdout, v->rcode[0] ? v->text : NULL);
		fputs(",\"rule\":", stdout);
		put_json_limit(stdout, v->rule_id > 0 ? v->rule_id : -1);
		printf(",\"dry_run\":%s}", v->dry_run ? "true" : "false");
		return;
	}
	printf("    %-10s %s", "verdict", reached ? ag_action_name(v->action) :
	    "not reached");
	if (reached && v->rcode[0] != '\0') {
		printf(" %s %s %s", v->rcode, v->xcode, v->text);
	}
	if (reached && v->rule_id > 0) {
		printf(" (rule %lld)", (long long)v->rule_id);
	}
	if (reached && v->dry_run) {
		fputs(" (dry run: a rule decided, not enforced)", stdout);
	}
	putchar('\n');
}

/* A setting and the rule that decides it. */
static void
put_setting(bool json, const char *name, const struct ag_setting *s,
    bool bytes)
{
	char num[32];

	if (json) {
		printf(",\"%s\":", name);
		if (s->value < 0) {
			fputs("null", stdout);
		} else {
			printf("{\"value\":%lld,\"rule\":%lld",
			    (long long)s->value, (long long)s->rule_id);
			if (s->trial >= 0) {
				printf(",\"trial\":%lld,\"trial_rule\":%lld",
				    (long long)s->trial,
				    (long long)s->trial_rule_id);
			}
			putchar('}');
		}
		return;
	}
	if (s->trial >= 0) {
		printf("    %-10s trying %lld from dry-run rule %lld\n", name,
		    (long long)s->trial, (long long)s->trial_rule_id);
	}
	if (s->value < 0) {
		printf("    %-10s unlimited (no rule sets it)\n", name);
		return;
	}
	if (bytes) {
		format_bytes(num, sizeof(num), s->value);
	} else {
		snprintf(num, sizeof(num), "%lld", (long long)s->value);
	}
	printf("    %-10s %s from rule %lld\n", name, num,
	    (long long)s->rule_id);
}

/* The rules that match F and the rule that decides each setting. */
static void
put_matched(bool json, const struct ag_policy *p, const struct ag_facts *f)
{
	struct ag_eval ev;
	size_t i, n = 0;

	fputs(json ? "\"matched\":[" : "    matched    ", stdout);
	for (i = 0; i < ag_policy_count(p); i++) {
		const struct ag_rule *r = ag_policy_rule(p, i);

		if (!r->enabled || !ag_rule_matches(r, f)) {
			continue;
		}
		printf(json ? "%s%lld" : "%srule %lld",
		    n++ ? (json ? "," : ", ") : "", (long long)r->id);
		if (!json) {
			printf(" (priority %d%s)", r->priority,
			    r->dry_run ? ", dry run" : "");
		}
	}
	fputs(json ? "]" : (n ? "\n" : "none\n"), stdout);
	ag_policy_eval(p, f, &ev);
	put_setting(json, json ? "max_size" : "max-size", &ev.max_size, true);
	put_setting(json, json ? "max_rcpts" : "max-rcpts", &ev.max_rcpts,
	    false);
}

/* Print every phase: matching rules, settings, the session's verdict. */
static void
check_print(bool json, const struct check *k, const struct ag_policy *p)
{
	struct ag_facts f;
	size_t i, end = k->nrcpt + 1;

	if (json) {
		fputs("{\"client\":", stdout);
		put_json(stdout, k->client);
		printf(",\"trusted\":%s,\n \"transaction\":{",
		    k->trusted ? "true" : "false");
	} else {
		printf("client %s%s\ntransaction: MAIL FROM:", k->client,
		    k->trusted ? " (trusted: in TrustedNetworks)" : "");
		put_text(stdout, k->mail_from);
		putchar('\n');
	}
	for (i = 0; i < end; i++) {
		if (i > 0) {
			fputs(!json ? "RCPT TO:" : i > 1 ? "},\n  {\"rcpt\":" :
			    "},\n \"recipients\":[\n  {\"rcpt\":", stdout);
			if (json) {
				put_json(stdout, k->rcpt[i - 1]);
				putchar(',');
			} else {
				put_text(stdout, k->rcpt[i - 1]);
				putchar('\n');
			}
		}
		check_facts(k, i, &f);
		put_matched(json, p, &f);
		put_verdict(json, &k->verdict[i], k->reached[i]);
	}
	if (json) {
		fputs("}],\n \"end_of_message\":{\"size\":", stdout);
		put_json_limit(stdout, k->have_size ? (int64_t)k->size : -1);
	} else if (k->have_size) {
		printf("end of message: %llu bytes\n",
		    (unsigned long long)k->size);
	} else {
		puts("end of message: empty (--size gives it a size)");
	}
	put_verdict(json, &k->verdict[end], k->reached[end]);
	fputs(json ? "}}\n" : "", stdout);
}

/* check: the matching rules and the daemon's verdicts for one mail. */
static int
cmd_check(struct ctl *c, struct args *a)
{
	struct ag_store *s = NULL;
	struct ag_policy *p = NULL;
	struct check *k;
	int rc = CTL_OK;

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		return ctl_err(CTL_FAIL, "out of memory");
	}
	while (rc == CTL_OK && a->i < a->argc) {
		rc = check_option(c, a, k);
	}
	if (rc == CTL_OK && (rc = check_validate(c, k)) == CTL_OK &&
	    (rc = ctl_load_policy(c, &s, &p)) == CTL_OK &&
	    (rc = check_run(c, k)) == CTL_OK) {
		check_print(c->json, k, p);
	}
	ag_policy_free(p);
	ag_store_close(s);
	free(k);
	return rc;
}

/* ---- main --------------------------------------------------------------- */

/* Global options; returns -1 to go on with the verb, else an exit status. */
static int
global_options(struct ctl *c, struct args *a)
{
	static const struct optdef defs[] = {
		{ "-c", offsetof(struct ctl, conffile) },
		{ "-d", offsetof(struct ctl, dbpath) },
	};
	int got;

	while (a->i < a->argc && a->argv[a->i][0] == '-') {
		if ((got = opt_table(a, defs, NELEM(defs), c)) != 0) {
			if (got < 0) {
				return CTL_USAGE;
			}
		} else if (opt_flag(a, "--json")) {
			c->json = true;
		} else if (opt_flag(a, "-h") || opt_flag(a, "--help")) {
			usage(stdout);
			return CTL_OK;
		} else if (opt_flag(a, "-V") || opt_flag(a, "--version")) {
			printf("authgatectl %s\n", PACKAGE_VERSION);
			return CTL_OK;
		} else {
			return ctl_err(CTL_USAGE, "unknown option '%s' (see "
			    "authgatectl -h)", a->argv[a->i]);
		}
	}
	return -1;
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(struct ctl *, struct args *);
	} verbs[] = {
		{ "init", cmd_init },
		{ "rule", cmd_rule },
		{ "check", cmd_check },
	};
	struct ctl c = { NULL, NULL, false, NULL };
	struct args a = { argc, argv, 1 };
	const char *verb;
	size_t i;
	int rc;

	if ((rc = global_options(&c, &a)) >= 0) {
		return rc;
	}
	if (a.i >= argc) {
		return ctl_err(CTL_USAGE, "no verb given (see authgatectl -h)");
	}
	verb = argv[a.i++];
	for (i = 0; i < NELEM(verbs) && strcmp(verb, verbs[i].name) != 0; i++) {
		continue;
	}
	if (i == NELEM(verbs)) {
		return ctl_err(CTL_USAGE, "unknown verb '%s' (see authgatectl "
		    "-h)", verb);
	}
	if ((rc = ctl_load_config(&c)) == CTL_OK) {
		/* the daemon's log lines for `check` stay quiet */
		ag_log_open("authgatectl", c.cfg->log_facility, 1);
		ag_log_set_level(LOG_WARNING);
		rc = verbs[i].run(&c, &a);
	}
	ag_config_unref(c.cfg);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		return ctl_err(CTL_FAIL, "writing output: %s", strerror(errno));
	}
	return rc;
}
