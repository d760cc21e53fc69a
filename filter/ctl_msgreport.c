/*
 * ctl_msgreport.c - authgatectl report: what the message history
 * (lib/msglog.h) says about a period, grouped by sender domain, sender,
 * client, SASL user, rule or authentication result: the largest groups,
 * what was done to their messages, how many failed authentication and
 * how many a rate limit refused.  The question after a spam wave.
 *
 * Keys come from the network (senders, HELO-free but still hostile):
 * text output escapes them (put_text), JSON quotes them (put_json).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "msglog.h"

#define REPORT_TOP_DEFAULT 20
#define REPORT_TOP_MAX 1000000
#define REPORT_KEY_WIDTH_MAX 40		/* text: wider keys push the row */
#define DAY 86400

struct msgreport_args {
	const char *since, *until, *by, *only, *top;
};

/* The options into Q; a CTL_* status. */
static int
msgreport_options(struct ctl *c, struct args *a, struct ag_msglog_query *q)
{
	static const struct optdef defs[] = {
		{ "--since", offsetof(struct msgreport_args, since) },
		{ "--until", offsetof(struct msgreport_args, until) },
		{ "--by", offsetof(struct msgreport_args, by) },
		{ "--only", offsetof(struct msgreport_args, only) },
		{ "--top", offsetof(struct msgreport_args, top) },
	};
	struct msgreport_args r = { NULL, NULL, NULL, NULL, NULL };
	int64_t now = (int64_t)time(NULL);
	char *end;
	long long top = REPORT_TOP_DEFAULT;
	int got;

	while (a->i < a->argc) {
		if ((got = opt_table(a, defs, NELEM(defs), &r)) != 0) {
			if (got < 0) {
				return CTL_USAGE;
			}
		} else if (opt_flag(a, "--json")) {
			c->json = true;
		} else {
			return ctl_err(CTL_USAGE, "report: unexpected argument "
			    "'%s'", a->argv[a->i]);
		}
	}
	q->begin = now - DAY;
	q->end = now + 1;
	if (r.since != NULL &&
	    ag_msglog_parse_since(r.since, now, &q->begin) != AG_OK) {
		return ctl_err(CTL_USAGE, "--since: bad time '%s' (a time ago "
		    "like 30m, 2h, 7d, 1w; Unix seconds; YYYY-MM-DD or "
		    "YYYY-MM-DDTHH:MM:SSZ, UTC)", r.since);
	}
	if (r.until != NULL &&
	    ag_msglog_parse_since(r.until, now, &q->end) != AG_OK) {
		return ctl_err(CTL_USAGE, "--until: bad time '%s' (as --since)",
		    r.until);
	}
	if (q->end <= q->begin) {
		return ctl_err(CTL_USAGE, "--until must be after --since");
	}
	if (r.by != NULL && ag_msglog_by_parse(r.by, &q->by) != 0) {
		return ctl_err(CTL_USAGE, "--by: '%s' is not one of "
		    "sender-domain, sender, client, sasl-user, rule, result",
		    r.by);
	}
	if (r.only != NULL && ag_msglog_only_parse(r.only, &q->only) != 0) {
		return ctl_err(CTL_USAGE, "--only: '%s' is not one of all, "
		    "accepted, tempfailed, rejected, aborted, limited, "
		    "auth-fail", r.only);
	}
	if (r.top != NULL) {
		top = strtoll(r.top, &end, 10);
		if (r.top[0] < '0' || r.top[0] > '9' || *end != '\0' ||
		    top > REPORT_TOP_MAX) {
			return ctl_err(CTL_USAGE, "--top: '%s' is not a number "
			    "from 0 (every group) to %d", r.top,
			    REPORT_TOP_MAX);
		}
	}
	q->top = (size_t)top;
	return CTL_OK;
}

/* Of N, the share failed (tempfailed or rejected), in percent. */
static double
failed_pct(const struct ag_msglog_counts *k)
{
	return k->messages == 0 ? 0.0 :
	    100.0 * (double)(k->tempfailed + k->rejected) /
	    (double)k->messages;
}

/* ---- JSON ----------------------------------------------------------------- */

static void
json_counts(const struct ag_msglog_counts *k)
{
	printf("{\"messages\":%llu,\"accepted\":%llu,\"tempfailed\":%llu,"
	    "\"rejected\":%llu,\"aborted\":%llu,\"failed_percent\":%.1f,"
	    "\"spf_fail\":%llu,\"dkim_fail\":%llu,\"dmarc_fail\":%llu,"
	    "\"limited\":%llu,\"recipients\":%llu,\"bytes\":%llu",
	    (unsigned long long)k->messages, (unsigned long long)k->accepted,
	    (unsigned long long)k->tempfailed, (unsigned long long)k->rejected,
	    (unsigned long long)k->aborted, failed_pct(k),
	    (unsigned long long)k->spf_fail, (unsigned long long)k->dkim_fail,
	    (unsigned long long)k->dmarc_fail, (unsigned long long)k->limited,
	    (unsigned long long)k->rcpts, (unsigned long long)k->bytes);
	if (k->messages > 0) {
		printf(",\"first\":%lld,\"last\":%lld", (long long)k->first,
		    (long long)k->last);
	}
	printf("}");
}

static void
json_report(const struct ag_msglog_query *q, const struct ag_msglog_report *r)
{
	printf("{\"since\":%lld,\"until\":%lld,\"by\":\"%s\","
	    "\"only\":\"%s\",\"total\":", (long long)q->begin,
	    (long long)q->end, ag_msglog_by_name(q->by),
	    ag_msglog_only_name(q->only));
	json_counts(&r->total);
	printf(",\"groups\":%zu,\"rows\":[", r->ngroups);
	for (size_t i = 0; i < r->n; i++) {
		printf("%s\n {\"key\":", i > 0 ? "," : "");
		put_json(stdout, r->groups[i].key);
		printf(",\"counts\":");
		json_counts(&r->groups[i].c);
		printf("}");
	}
	printf("]}\n");
}

/* ---- text ------------------------------------------------------------------ */

/* The key column's title and width. */
static const char *
key_title(enum ag_msglog_by by)
{
	static const char *const t[] = {
		[AG_BY_SENDER_DOMAIN] = "SENDER-DOMAIN",
		[AG_BY_SENDER] = "SENDER",
		[AG_BY_CLIENT] = "CLIENT",
		[AG_BY_SASL_USER] = "SASL-USER",
		[AG_BY_RULE] = "RULE",
		[AG_BY_RESULT] = "RESULT",
	};

	return (size_t)by < NELEM(t) ? t[by] : "KEY";
}

/* The counts of one row after its key. */
static void
text_counts(const struct ag_msglog_counts *k)
{
	printf(" %9llu %9llu %9llu %9llu %8llu %8.1f %9llu %9llu %10llu "
	    "%8llu\n", (unsigned long long)k->messages,
	    (unsigned long long)k->accepted, (unsigned long long)k->tempfailed,
	    (unsigned long long)k->rejected, (unsigned long long)k->aborted,
	    failed_pct(k), (unsigned long long)k->spf_fail,
	    (unsigned long long)k->dkim_fail, (unsigned long long)k->dmarc_fail,
	    (unsigned long long)k->limited);
}

static void
text_report(const struct ag_msglog_query *q, const struct ag_msglog_report *r)
{
	const struct ag_msglog_counts *t = &r->total;
	size_t w = strlen(key_title(q->by)), i;
	char b[32], e[32];

	printf("Messages from %s to %s%s%s: %llu\n", ctl_iso_time(q->begin, b,
	    sizeof(b)), ctl_iso_time(q->end, e, sizeof(e)),
	    q->only != AG_ONLY_ALL ? ", only " : "",
	    q->only != AG_ONLY_ALL ? ag_msglog_only_name(q->only) : "",
	    (unsigned long long)t->messages);
	if (t->messages == 0) {
		return;
	}
	printf("accepted %llu, tempfailed %llu, rejected %llu, aborted %llu "
	    "(%.1f%% failed); SPF fail %llu, DKIM fail %llu, DMARC fail %llu; "
	    "rate limited %llu\n", (unsigned long long)t->accepted,
	    (unsigned long long)t->tempfailed, (unsigned long long)t->rejected,
	    (unsigned long long)t->aborted, failed_pct(t),
	    (unsigned long long)t->spf_fail, (unsigned long long)t->dkim_fail,
	    (unsigned long long)t->dmarc_fail, (unsigned long long)t->limited);
	printf("by %s: %zu of %zu shown\n\n", ag_msglog_by_name(q->by), r->n,
	    r->ngroups);
	for (i = 0; i < r->n; i++) {
		size_t kw = strlen(r->groups[i].key);

		w = kw > w ? (kw < REPORT_KEY_WIDTH_MAX ? kw :
		    REPORT_KEY_WIDTH_MAX) : w;
	}
	printf("%-*s %9s %9s %9s %9s %8s %8s %9s %9s %10s %8s\n", (int)w,
	    key_title(q->by), "MESSAGES", "ACCEPTED", "TEMPFAIL", "REJECTED",
	    "ABORTED", "FAILED%", "SPF-FAIL", "DKIM-FAIL", "DMARC-FAIL",
	    "LIMITED");
	for (i = 0; i < r->n; i++) {
		size_t kw = put_text(stdout, r->groups[i].key);

		printf("%*s", kw < w ? (int)(w - kw) : 0, "");
		text_counts(&r->groups[i].c);
	}
}

int
cmd_report(struct ctl *c, struct args *a)
{
	struct ag_msglog_query q;
	struct ag_msglog_report *r = NULL;
	struct ag_store *s = NULL;
	ag_status st;
	int rc;

	memset(&q, 0, sizeof(q));
	if ((rc = msgreport_options(c, a, &q)) != CTL_OK ||
	    (rc = ctl_open_store(c, &s)) != CTL_OK) {
		return rc;
	}
	st = ag_msglog_report(s, &q, &r);
	if (st != AG_OK) {
		rc = st == AG_NOMEM ? ctl_err(CTL_FAIL, "out of memory") :
		    ctl_err(CTL_FAIL, "%s", ag_store_errstr(s));
		ag_store_close(s);
		return rc;
	}
	if (c->json) {
		json_report(&q, r);
	} else {
		text_report(&q, r);
	}
	ag_msglog_report_free(r);
	ag_store_close(s);
	return CTL_OK;
}
