/*
 * ctl_report.c - authgatectl dmarc-report: the RFC 7489 aggregate report
 * of one policy domain for a period, read from the DMARC history the
 * daemon keeps in the database (lib/history.h), as XML on standard
 * output.  Sending it is the administrator's business (authgatectl(8)).
 *
 * The report is built in memory and written only when complete, so a
 * failure half-way never leaves half a report on standard output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "ctl.h"
#include "history.h"

/* Room for a default email or report id. */
#define CTL_REPORT_NAME_MAX (AG_ADDR_DOMAIN_MAX + 64)

struct report_args {
	const char *domain, *since, *until, *org_name, *email, *report_id;
};

/* The options; a CTL_* status. */
static int
report_options(struct ctl *c, struct args *a, struct report_args *r)
{
	static const struct optdef defs[] = {
		{ "--domain", offsetof(struct report_args, domain) },
		{ "--since", offsetof(struct report_args, since) },
		{ "--until", offsetof(struct report_args, until) },
		{ "--org-name", offsetof(struct report_args, org_name) },
		{ "--email", offsetof(struct report_args, email) },
		{ "--report-id", offsetof(struct report_args, report_id) },
	};
	int got;

	while (a->i < a->argc) {
		if ((got = opt_table(a, defs, NELEM(defs), r)) != 0) {
			if (got < 0) {
				return CTL_USAGE;
			}
		} else if (opt_flag(a, "--json")) {
			c->json = true;		/* accepted; the report is XML */
		} else {
			return ctl_err(CTL_USAGE, "dmarc-report: unexpected "
			    "argument '%s'", a->argv[a->i]);
		}
	}
	if (r->domain == NULL || r->since == NULL || r->until == NULL) {
		return ctl_err(CTL_USAGE, "dmarc-report needs --domain DOMAIN "
		    "--since TIME --until TIME (TIME: Unix seconds, YYYY-MM-DD "
		    "or YYYY-MM-DDTHH:MM:SSZ, UTC)");
	}
	return CTL_OK;
}

/* A metadata text given on the command line: bounded, one line. */
static bool
meta_ok(const char *s)
{
	return s[0] != '\0' && strlen(s) < 1024 && strpbrk(s, "\r\n") == NULL;
}

/* Check the options and fill O (strings in the buffers given). */
static int
report_setup(struct ctl *c, const struct report_args *r,
    struct ag_history_report_opts *o, char *domain, char *email,
    char *report_id)
{
	if (ag_domain_normalize(r->domain, domain, AG_ADDR_DOMAIN_MAX + 1) !=
	    AG_OK) {
		return ctl_err(CTL_USAGE, "--domain: '%s' is not a domain name",
		    r->domain);
	}
	if (ag_history_parse_time(r->since, &o->begin) != AG_OK) {
		return ctl_err(CTL_USAGE, "--since: bad time '%s' (Unix seconds, "
		    "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC)", r->since);
	}
	if (ag_history_parse_time(r->until, &o->end) != AG_OK) {
		return ctl_err(CTL_USAGE, "--until: bad time '%s' (Unix seconds, "
		    "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC)", r->until);
	}
	if (o->end <= o->begin) {
		return ctl_err(CTL_USAGE, "--until must be after --since (the "
		    "period is from --since up to, not including, --until)");
	}
	o->domain = domain;
	o->org_name = r->org_name != NULL ? r->org_name :
	    c->cfg->authserv_id;
	if (r->email == NULL) {
		snprintf(email, CTL_REPORT_NAME_MAX, "postmaster@%s",
		    c->cfg->authserv_id);
	}
	o->email = r->email != NULL ? r->email : email;
	if (r->report_id == NULL) {
		snprintf(report_id, CTL_REPORT_NAME_MAX, "%s!%lld!%lld", domain,
		    (long long)o->begin, (long long)(o->end - 1));
	}
	o->report_id = r->report_id != NULL ? r->report_id : report_id;
	if (!meta_ok(o->org_name) || !meta_ok(o->email) ||
	    !meta_ok(o->report_id)) {
		return ctl_err(CTL_USAGE, "--org-name, --email and --report-id "
		    "take one line of text");
	}
	return CTL_OK;
}

/* Build the report into a memory buffer; a CTL_* status. */
static int
report_build(struct ctl *c, const struct ag_history_report_opts *o,
    char **out, size_t *outlen)
{
	struct ag_store *s = NULL;
	char b[32], e[32];
	FILE *mem;
	ag_status st;

	st = ag_store_open(c->cfg->database, 0, (int)c->cfg->database_timeout,
	    &s);
	if (st != AG_OK) {
		ctl_err(CTL_FAIL, "%s", ag_store_errstr(s));
		ag_store_close(s);
		return CTL_FAIL;
	}
	mem = open_memstream(out, outlen);
	if (mem == NULL) {
		ag_store_close(s);
		return ctl_err(CTL_FAIL, "out of memory");
	}
	st = ag_history_report(s, o, mem, NULL);
	if (fclose(mem) != 0 && st == AG_OK) {
		st = AG_NOMEM;
	}
	if (st == AG_NOTFOUND) {
		ctl_err(CTL_FAIL, "no DMARC results for %s between %s and %s "
		    "(nothing written)", o->domain, ctl_iso_time(o->begin, b,
		    sizeof(b)), ctl_iso_time(o->end, e, sizeof(e)));
	} else if (st == AG_NOMEM) {
		ctl_err(CTL_FAIL, "out of memory");
	} else if (st != AG_OK) {
		ctl_err(CTL_FAIL, "%s", ag_store_errstr(s));
	}
	ag_store_close(s);
	return st == AG_OK ? CTL_OK : CTL_FAIL;
}

int
cmd_dmarc_report(struct ctl *c, struct args *a)
{
	struct report_args r = { NULL, NULL, NULL, NULL, NULL, NULL };
	struct ag_history_report_opts o;
	char domain[AG_ADDR_DOMAIN_MAX + 1], email[CTL_REPORT_NAME_MAX];
	char report_id[CTL_REPORT_NAME_MAX];
	char *xml = NULL;
	size_t len = 0;
	int rc;

	memset(&o, 0, sizeof(o));
	if ((rc = report_options(c, a, &r)) != CTL_OK ||
	    (rc = report_setup(c, &r, &o, domain, email, report_id)) != CTL_OK) {
		return rc;
	}
	rc = report_build(c, &o, &xml, &len);
	if (rc == CTL_OK) {
		fwrite(xml, 1, len, stdout);	/* main() checks stdout */
	}
	free(xml);
	return rc;
}
