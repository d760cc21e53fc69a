/*
 * ctl_check.c - authgatectl check: which rules apply to a transaction and
 * what the daemon would answer at each phase.  The verdicts come from the
 * daemon's own session pipeline (engine, connection, HELO, MAIL, RCPT,
 * end of message), so the answer printed is the one the milter gives.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "ctl.h"
#include "engine.h"
#include "log.h"
#include "session.h"
#include "verdict.h"

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

/* How a setting's value reads. */
enum setting_kind {
	SK_NUMBER,	/* 50 */
	SK_BYTES,	/* 10M */
	SK_DISP,	/* reject (an enum ag_disp), a JSON string */
	SK_ONOFF	/* on | off, a JSON string */
};

/* Format V of KIND into BUF; JSON strings get their quotes. */
static const char *
setting_text(char *buf, size_t bufsz, enum setting_kind kind, int64_t v,
    bool json)
{
	const char *q = json ? "\"" : "";

	switch (kind) {
	case SK_BYTES:
		if (!json) {
			return format_bytes(buf, bufsz, v);
		}
		break;
	case SK_DISP:
		snprintf(buf, bufsz, "%s%s%s", q,
		    ag_disp_name((enum ag_disp)v), q);
		return buf;
	case SK_ONOFF:
		snprintf(buf, bufsz, "%s%s%s", q, v ? "on" : "off", q);
		return buf;
	case SK_NUMBER:
		break;
	}
	snprintf(buf, bufsz, "%lld", (long long)v);
	return buf;
}

/*
 * A setting and the rule that decides it.  In text, LABEL is the column
 * ("max-size", "spf") and PREFIX goes before the value ("fail=").
 */
static void
put_setting(bool json, const char *name, const char *label,
    const char *prefix, const struct ag_setting *s, enum setting_kind kind)
{
	char num[32];

	if (json) {
		printf("\"%s\":", name);
		if (s->value < 0 && s->trial < 0) {
			fputs("null", stdout);
			return;
		}
		fputs("{\"value\":", stdout);
		if (s->value < 0) {
			fputs("null,\"rule\":null", stdout);
		} else {
			printf("%s,\"rule\":%lld", setting_text(num,
			    sizeof(num), kind, s->value, true),
			    (long long)s->rule_id);
		}
		if (s->trial >= 0) {
			printf(",\"trial\":%s,\"trial_rule\":%lld",
			    setting_text(num, sizeof(num), kind, s->trial,
			    true), (long long)s->trial_rule_id);
		}
		putchar('}');
		return;
	}
	if (s->trial >= 0) {
		printf("    %-10s trying %s%s from dry-run rule %lld\n", label,
		    prefix, setting_text(num, sizeof(num), kind, s->trial,
		    false), (long long)s->trial_rule_id);
	}
	if (s->value < 0) {
		if (kind == SK_NUMBER || kind == SK_BYTES) {
			printf("    %-10s unlimited (no rule sets it)\n",
			    label);
		}
		return;
	}
	printf("    %-10s %s%s from rule %lld\n", label, prefix,
	    setting_text(num, sizeof(num), kind, s->value, false),
	    (long long)s->rule_id);
}

/*
 * The SPF settings that some rule sets (or tries), and the rule that
 * decides each; settings no rule sets take the configured defaults and
 * are not shown.  JSON: "spf":{"fail":{"value":"reject","rule":3}}.
 */
static void
put_spf_settings(bool json, const struct ag_eval *ev)
{
	const struct ag_setting *s;
	char prefix[32];
	size_t i, n = 0;

	fputs(json ? ",\"spf\":{" : "", stdout);
	for (i = 0; i <= AG_SPF_NRESULTS; i++) {
		const char *name = i < AG_SPF_NRESULTS ?
		    ag_spf_result_name((enum ag_spf_result)i) : "check";

		s = i < AG_SPF_NRESULTS ? &ev->spf_disp[i] : &ev->spf_check;
		if (s->value < 0 && s->trial < 0) {
			continue;
		}
		fputs(json && n++ > 0 ? "," : "", stdout);
		snprintf(prefix, sizeof(prefix), "%s=", name);
		put_setting(json, name, "spf", prefix, s,
		    i < AG_SPF_NRESULTS ? SK_DISP : SK_ONOFF);
	}
	fputs(json ? "}" : "", stdout);
}

/* The DMARC settings that some rule sets, as for SPF. */
static void
put_dmarc_settings(bool json, const struct ag_eval *ev)
{
	const struct ag_setting *s[2] = { &ev->dmarc_check,
	    &ev->dmarc_enforce };
	static const char *const names[2] = { "check", "enforce" };
	char prefix[32];
	size_t i, n = 0;

	fputs(json ? ",\"dmarc\":{" : "", stdout);
	for (i = 0; i < 2; i++) {
		if (s[i]->value < 0 && s[i]->trial < 0) {
			continue;
		}
		fputs(json && n++ > 0 ? "," : "", stdout);
		snprintf(prefix, sizeof(prefix), "%s=", names[i]);
		put_setting(json, names[i], "dmarc", prefix, s[i], SK_ONOFF);
	}
	fputs(json ? "}" : "", stdout);
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
	fputs(json ? "," : "", stdout);
	put_setting(json, "max_size", "max-size", "", &ev.max_size, SK_BYTES);
	fputs(json ? "," : "", stdout);
	put_setting(json, "max_rcpts", "max-rcpts", "", &ev.max_rcpts,
	    SK_NUMBER);
	put_spf_settings(json, &ev);
	put_dmarc_settings(json, &ev);
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
int
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

