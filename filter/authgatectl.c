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
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "ctl.h"
#include "engine.h"
#include "log.h"
#include "policy.h"
#include "session.h"
#include "store.h"
#include "verdict.h"

/* Print "authgatectl: MESSAGE" on stderr; returns STATUS. */
int __attribute__((format(printf, 2, 3)))
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
static const char usage_text[] =
    "usage: authgatectl [-c FILE] [-d FILE] [--json] VERB ...\n"
    "       authgatectl -h | -V\n"
    "verbs:\n"
    "  init\n"
    "  rule add [--priority N] [--match FIELD=VALUE]... "
    "[--max-size BYTES]\n"
    "           [--max-rcpts N] [--spf RESULT=ACTION]... "
    "[--spf check=on|off]\n"
    "           [--dkim require] [--dmarc check=on|off] "
    "[--dmarc enforce=on|off]\n"
    "           [--rate MEASURE:LIMIT/WINDOW[:KEY]]...\n"
    "           [--on-limit tempfail|reject|tag] [--exempt] "
    "[--dry-run] [--disabled]\n"
    "           [--comment TEXT]\n"
    "  rule list | rule show ID | rule del ID | rule enable ID | "
    "rule disable ID\n"
    "  check --client-ip IP [--helo NAME] [--mail-from ADDR] "
    "--rcpt ADDR...\n"
    "        [--size BYTES] [--auth USER]\n"
    "  counters list [--rule N] [--key KEY] | counters reset KEY\n"
    "  sign add --domain D --selector S --key FILE [--algorithm A]\n"
    "           [--match PATTERN] [--canonicalization H/B] "
    "[--headers LIST] [--expire T]\n"
    "  sign replace ID --selector S --key FILE [the options of "
    "sign add]\n"
    "  sign list | sign del ID | sign enable ID | sign disable ID\n"
    "  key generate --domain D --selector S [--algorithm rsa|ed25519] "
    "[--bits N]\n"
    "               [--dir DIR] [--force]\n"
    "  key list [--dir DIR] | key test D S [--key FILE] [--dir DIR]\n"
    "  dmarc-report --domain DOMAIN --since TIME --until TIME "
    "[--org-name NAME]\n"
    "               [--email ADDR] [--report-id ID]   (TIME: Unix "
    "seconds,\n"
    "               YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC; until "
    "excluded)\n"
    "  report [--since TIME] [--until TIME] [--by sender-domain|sender|"
    "client|\n"
    "         sasl-user|rule|result] [--only accepted|tempfailed|rejected|"
    "aborted|\n"
    "         limited|auth-fail] [--top N]   (TIME: also 30m, 2h, 7d, 1w "
    "ago;\n"
    "         default the last 24 hours)\n"
    "fields: client, helo, sender, sender-domain, sasl-user, rcpt, "
    "rcpt-domain,\n"
    "        trusted (yes|no), authenticated (yes|no)\n"
    "spf results: none, neutral, pass, fail, softfail, temperror, "
    "permerror\n"
    "spf actions: accept, tag, tempfail, reject\n"
    "rate: messages|recipients|bytes:LIMIT/WINDOW[:client-ip[/V4[/V6]]|"
    "sender|\n"
    "      sender-domain|sasl-user|rcpt-domain|helo], e.g. "
    "messages:100/1h:sender\n";

static void
usage(FILE *fp)
{
	fputs(usage_text, fp);
}

/*
 * `authgatectl VERB ... --help`: the entries of the usage text that start
 * with VERB (an entry is a line indented by two spaces and the lines
 * indented more that follow it), then where the rest is.
 */
static int
verb_usage(const char *verb)
{
	const char *p = strstr(usage_text, "verbs:\n"), *eol;
	size_t vlen = strlen(verb);
	bool in = false;

	printf("usage: authgatectl [-c FILE] [-d FILE] [--json] VERB ...\n");
	for (p = p != NULL ? strchr(p, '\n') + 1 : usage_text; *p == ' ';
	    p = eol + 1) {
		eol = strchr(p, '\n');
		if (p[2] != ' ') {	/* a new entry */
			in = strncmp(p + 2, verb, vlen) == 0 &&
			    (p[2 + vlen] == ' ' || p[2 + vlen] == '\n');
		}
		if (in) {
			fwrite(p, 1, (size_t)(eol - p) + 1, stdout);
		}
	}
	printf("fields, SPF results and actions, rate specs: authgatectl -h; "
	    "everything: authgatectl(8)\n");
	return CTL_OK;
}

/* ---- SPF names ---------------------------------------------------------- */

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
/* T (Unix seconds) as "YYYY-MM-DDTHH:MM:SSZ" in BUF. */
const char *
ctl_iso_time(int64_t t, char *buf, size_t bufsz)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(buf, bufsz, "%lld", (long long)t);
	}
	return buf;
}

size_t
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
void
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
void
put_json_limit(FILE *fp, int64_t v)
{
	if (v < 0) {
		fputs("null", fp);
	} else {
		fprintf(fp, "%lld", (long long)v);
	}
}

/* A byte count as an administrator writes it: "10M", "512k", "1000". */
const char *
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
int
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
bool
opt_flag(struct args *a, const char *name)
{
	if (strcmp(a->argv[a->i], name) == 0) {
		a->i++;
		return true;
	}
	return false;
}

/* Take the current argument if it is in DEFS: 1 taken, 0 not, -1 error. */
int
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
	char err[512];

	if (file == NULL && access(AG_CONFIG_DEFAULT_FILE, F_OK) == 0) {
		file = AG_CONFIG_DEFAULT_FILE;
	}
	if (ag_config_load(file, &c->cfg, err, sizeof(err)) != AG_OK) {
		return ctl_err(CTL_FAIL, "%s", err);
	}
	if (c->dbpath != NULL && ag_config_set(c->cfg, "Database", c->dbpath,
	    err, sizeof(err)) != AG_OK) {
		return ctl_err(CTL_USAGE, "-d: %s", err);
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

/* Open the database for a verb in another file; a CTL_* status. */
int
ctl_open_store(struct ctl *c, struct ag_store **out)
{
	return ctl_open(c, 0, out);
}

/* Open the database and read every rule. */
int
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

/*
 * init: create the database or bring its schema up to date.  A database
 * made by root for a daemon that runs as UserID is given to that user, or
 * the daemon could not write its counters and history to it.
 */
static int
cmd_init(struct ctl *c, struct args *a)
{
	struct ag_store *s;
	bool existed;
	uid_t uid;
	gid_t gid;
	int rc;

	if ((rc = no_more_args(c, a, "init")) != CTL_OK ||
	    (rc = ctl_daemon_owner(c, &uid, &gid)) != CTL_OK) {
		return rc;
	}
	existed = access(c->cfg->database, F_OK) == 0;
	if ((rc = ctl_open(c, AG_STORE_CREATE, &s)) != CTL_OK) {
		return rc;
	}
	if (!existed && uid != (uid_t)-1 &&
	    chown(c->cfg->database, uid, gid) != 0) {
		ag_store_close(s);
		return ctl_err(CTL_FAIL, "cannot give %s to UserID: %s",
		    c->cfg->database, strerror(errno));
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

/* Parse "RESULT=ACTION" or "check=on|off" of --spf into R. */
static int
parse_spf(const char *arg, struct ag_rule *r)
{
	const char *eq = strchr(arg, '=');
	char name[32];
	enum ag_disp d;
	enum ag_spf_result sr;

	if (eq == NULL) {
		return ctl_err(CTL_USAGE, "--spf '%s': expected RESULT=ACTION "
		    "or check=on|off", arg);
	}
	snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
	if (strcmp(name, "check") == 0) {
		if (r->spf_check != AG_LIMIT_UNSET) {
			return ctl_err(CTL_USAGE, "--spf check given twice");
		}
		if (strcmp(eq + 1, "on") != 0 && strcmp(eq + 1, "off") != 0) {
			return ctl_err(CTL_USAGE, "--spf %s: check is on or "
			    "off", arg);
		}
		r->spf_check = strcmp(eq + 1, "on") == 0;
		return CTL_OK;
	}
	if (ag_spf_result_parse(name, &sr) != 0) {
		return ctl_err(CTL_USAGE, "--spf: unknown result '%s' (none, "
		    "neutral, pass, fail, softfail, temperror, permerror, or "
		    "check)", name);
	}
	if (r->spf_disp[sr] != AG_LIMIT_UNSET) {
		return ctl_err(CTL_USAGE, "--spf %s given twice", name);
	}
	if (ag_disp_parse(eq + 1, &d) != 0) {
		return ctl_err(CTL_USAGE, "--spf %s: unknown action '%s' "
		    "(accept, tag, tempfail, reject)", arg, eq + 1);
	}
	r->spf_disp[sr] = d;
	return CTL_OK;
}

/* Parse "require" of --dkim into R. */
static int
parse_dkim(const char *arg, struct ag_rule *r)
{
	if (strcmp(arg, "require") != 0) {
		return ctl_err(CTL_USAGE, "--dkim '%s': expected require", arg);
	}
	r->dkim_require = 1;
	return CTL_OK;
}

/* Parse "check=on|off" or "enforce=on|off" of --dmarc into R. */
static int
parse_dmarc(const char *arg, struct ag_rule *r)
{
	int64_t *field;
	const char *v;

	if (strncmp(arg, "check=", 6) == 0) {
		field = &r->dmarc_check;
		v = arg + 6;
	} else if (strncmp(arg, "enforce=", 8) == 0) {
		field = &r->dmarc_enforce;
		v = arg + 8;
	} else {
		return ctl_err(CTL_USAGE, "--dmarc '%s': expected check=on|off "
		    "or enforce=on|off", arg);
	}
	if (*field != AG_LIMIT_UNSET) {
		return ctl_err(CTL_USAGE, "--dmarc %.*s given twice",
		    (int)(v - arg - 1), arg);
	}
	if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
		return ctl_err(CTL_USAGE, "--dmarc %s: expected on or off", arg);
	}
	*field = strcmp(v, "on") == 0;
	return CTL_OK;
}

/* Parse one --rate into R. */
static int
parse_rate(const char *arg, struct ag_rule *r)
{
	char err[256];

	if (r->nrate >= AG_RATE_MAX_PER_RULE) {
		return ctl_err(CTL_USAGE, "--rate: at most %d per rule",
		    AG_RATE_MAX_PER_RULE);
	}
	if (ag_rate_spec_parse(arg, &r->rate[r->nrate], err, sizeof(err)) !=
	    AG_OK) {
		return ctl_err(CTL_USAGE, "--%s", err);
	}
	r->nrate++;
	return CTL_OK;
}

/* Parse --on-limit tempfail|reject|tag into R. */
static int
parse_on_limit(const char *arg, struct ag_rule *r)
{
	enum ag_disp d;

	if (r->on_limit != AG_LIMIT_UNSET) {
		return ctl_err(CTL_USAGE, "--on-limit given twice");
	}
	if (ag_disp_parse(arg, &d) != 0 || d == AG_DISP_ACCEPT) {
		return ctl_err(CTL_USAGE, "--on-limit '%s': expected tempfail, "
		    "reject or tag", arg);
	}
	r->on_limit = d;
	return CTL_OK;
}

/* Does R set any SPF setting? */
static bool
rule_has_spf(const struct ag_rule *r)
{
	size_t i;

	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] != AG_LIMIT_UNSET) {
			return true;
		}
	}
	return r->spf_check != AG_LIMIT_UNSET;
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
	if (r->on_limit != AG_LIMIT_UNSET && r->nrate == 0) {
		return ctl_err(CTL_USAGE, "--on-limit needs a --rate");
	}
	if (r->max_size == AG_LIMIT_UNSET && r->max_rcpts == AG_LIMIT_UNSET &&
	    !rule_has_spf(r) && r->dkim_require == AG_LIMIT_UNSET &&
	    r->dmarc_check == AG_LIMIT_UNSET &&
	    r->dmarc_enforce == AG_LIMIT_UNSET && r->nrate == 0 &&
	    !r->exempt) {
		return ctl_err(CTL_USAGE, "rule sets nothing: give --max-size, "
		    "--max-rcpts, --spf, --dkim, --dmarc, --rate or --exempt");
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
		} else if ((got = opt_value(a, "--spf", &v)) != 0) {
			rc = got < 0 ? CTL_USAGE : parse_spf(v, r);
		} else if ((got = opt_value(a, "--dkim", &v)) != 0) {
			rc = got < 0 ? CTL_USAGE : parse_dkim(v, r);
		} else if ((got = opt_value(a, "--dmarc", &v)) != 0) {
			rc = got < 0 ? CTL_USAGE : parse_dmarc(v, r);
		} else if ((got = opt_value(a, "--rate", &v)) != 0) {
			rc = got < 0 ? CTL_USAGE : parse_rate(v, r);
		} else if ((got = opt_value(a, "--on-limit", &v)) != 0) {
			rc = got < 0 ? CTL_USAGE : parse_on_limit(v, r);
		} else if (opt_flag(a, "--exempt")) {
			r->exempt = true;
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

	ag_rule_init(&r);
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

/* Append printf text to BUF (truncating); *LEN is the length so far. */
static void __attribute__((format(printf, 4, 5)))
append(char *buf, size_t bufsz, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*len >= bufsz) {
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, bufsz - *len, fmt, ap);
	va_end(ap);
	*len = n < 0 ? bufsz : *len + (size_t)n;
}

/*
 * The settings of R as text ("-" when none):
 * "max-size=10M max-rcpts=50 spf:fail=reject,check=off".
 */
static void
format_settings(char *buf, size_t bufsz, const struct ag_rule *r)
{
	char num[32];
	size_t len = 0, i;
	const char *sep = "spf:";

	buf[0] = '\0';
	if (r->max_size >= 0) {
		append(buf, bufsz, &len, "max-size=%s",
		    format_bytes(num, sizeof(num), r->max_size));
	}
	if (r->max_rcpts >= 0) {
		append(buf, bufsz, &len, "%smax-rcpts=%lld", len ? " " : "",
		    (long long)r->max_rcpts);
	}
	if (len > 0 && rule_has_spf(r)) {
		sep = " spf:";
	}
	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] >= 0) {
			append(buf, bufsz, &len, "%s%s=%s", sep, ag_spf_result_name((enum ag_spf_result)i),
			    ag_disp_name((enum ag_disp)r->spf_disp[i]));
			sep = ",";
		}
	}
	if (r->spf_check >= 0) {
		append(buf, bufsz, &len, "%scheck=%s", sep,
		    r->spf_check ? "on" : "off");
	}
	if (r->dkim_require == 1) {
		append(buf, bufsz, &len, "%sdkim:require", len ? " " : "");
	}
	if (r->dmarc_check >= 0 || r->dmarc_enforce >= 0) {
		append(buf, bufsz, &len, "%sdmarc:", len ? " " : "");
		if (r->dmarc_check >= 0) {
			append(buf, bufsz, &len, "check=%s",
			    r->dmarc_check ? "on" : "off");
		}
		if (r->dmarc_enforce >= 0) {
			append(buf, bufsz, &len, "%senforce=%s",
			    r->dmarc_check >= 0 ? "," : "",
			    r->dmarc_enforce ? "on" : "off");
		}
	}
	for (i = 0; i < r->nrate; i++) {
		char spec[AG_RATE_SPEC_MAX];

		append(buf, bufsz, &len, "%s%s", i ? "," : len ? " rate:" :
		    "rate:", ag_rate_spec_format(&r->rate[i], spec,
		    sizeof(spec)));
	}
	if (r->on_limit >= 0) {
		append(buf, bufsz, &len, "%son-limit=%s", len ? " " : "",
		    ag_disp_name((enum ag_disp)r->on_limit));
	}
	if (r->exempt) {
		append(buf, bufsz, &len, "%sexempt", len ? " " : "");
	}
	if (len == 0) {
		append(buf, bufsz, &len, "-");
	}
}

/* The SPF settings of R as a JSON object: {"fail":"reject",...}. */
static void
put_spf_json(FILE *fp, const struct ag_rule *r)
{
	const char *sep = "";
	size_t i;

	fputc('{', fp);
	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] >= 0) {
			fprintf(fp, "%s\"%s\":\"%s\"", sep, ag_spf_result_name((enum ag_spf_result)i),
			    ag_disp_name((enum ag_disp)r->spf_disp[i]));
			sep = ",";
		}
	}
	if (r->spf_check >= 0) {
		fprintf(fp, "%s\"check\":\"%s\"", sep,
		    r->spf_check ? "on" : "off");
	}
	fputc('}', fp);
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
	fputs(",\"spf\":", fp);
	put_spf_json(fp, r);
	fprintf(fp, ",\"dkim\":{%s}", r->dkim_require == 1 ?
	    "\"require\":true" : "");
	fputs(",\"dmarc\":{", fp);
	if (r->dmarc_check >= 0) {
		fprintf(fp, "\"check\":\"%s\"", r->dmarc_check ? "on" : "off");
	}
	if (r->dmarc_enforce >= 0) {
		fprintf(fp, "%s\"enforce\":\"%s\"", r->dmarc_check >= 0 ? "," : "",
		    r->dmarc_enforce ? "on" : "off");
	}
	fputs("},\"rates\":[", fp);
	for (i = 0; i < r->nrate; i++) {
		char spec[AG_RATE_SPEC_MAX];

		fprintf(fp, "%s\"%s\"", i ? "," : "",
		    ag_rate_spec_format(&r->rate[i], spec, sizeof(spec)));
	}
	fprintf(fp, "],\"on_limit\":\"%s\",\"exempt\":%s",
	    r->on_limit >= 0 ? ag_disp_name((enum ag_disp)r->on_limit) :
	    "tempfail", r->exempt ? "true" : "false");
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
	char set[1024];

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
		{ "counters", cmd_counters },
		{ "sign", cmd_sign },
		{ "key", cmd_key },
		{ "dmarc-report", cmd_dmarc_report },
		{ "report", cmd_report },
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
	for (int k = a.i; k < argc; k++) {
		if (strcmp(argv[k], "--help") == 0) {
			return verb_usage(verb);
		}
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
