/*
 * offline.c - authgate --test-message: one stored message through the
 * daemon's own pipeline (lib/session.c), phase by phase, printed.
 *
 * Output (stdout), one line per phase:
 *     PHASE: ACTION[ RCODE XCODE TEXT][ (dry run)]
 * then one line per header edit ("insert-header N: Name: value",
 * "change-header Name[N]: value", "delete-header Name[N]") and last
 * "verdict: ACTION".  Log lines go to standard error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "msgfile.h"
#include "offline.h"
#include "session.h"

struct run {
	struct ag_conn *conn;
	struct ag_verdict v;
	unsigned nheaders;
	unsigned long long body_bytes;
	bool header_said;
};

/* Print one phase's verdict. */
static void
say(const char *phase, const struct ag_verdict *v)
{
	printf("%s: %s", phase, ag_action_name(v->action));
	if (v->rcode[0] != '\0') {
		printf(" %s %s %s", v->rcode, v->xcode, v->text);
	}
	if (v->dry_run) {
		printf(" (dry run: decided but not enforced, see the log)");
	}
	putchar('\n');
}

static int
on_header(void *arg, const char *name, const char *value)
{
	struct run *r = arg;

	r->nheaders++;
	ag_conn_header(r->conn, name, value, &r->v);
	if (ag_verdict_is_final(&r->v) || r->v.dry_run) {
		say("header", &r->v);
		r->header_said = true;
	}
	return ag_verdict_is_final(&r->v);
}

static int
on_eoh(void *arg)
{
	struct run *r = arg;

	if (!r->header_said) {
		printf("header: continue (%u fields)\n", r->nheaders);
	}
	ag_conn_eoh(r->conn, &r->v);
	say("eoh", &r->v);
	return ag_verdict_is_final(&r->v);
}

static int
on_body(void *arg, const unsigned char *buf, size_t len)
{
	struct run *r = arg;

	r->body_bytes += len;
	ag_conn_body(r->conn, buf, len, &r->v);
	if (ag_verdict_is_final(&r->v) || r->v.dry_run) {
		say("body", &r->v);
	}
	return ag_verdict_is_final(&r->v);
}

/* Exit status for a final action. */
static int
status_of(enum ag_action a)
{
	switch (a) {
	case AG_ACT_REJECT:
		return 1;
	case AG_ACT_TEMPFAIL:
		return 2;
	default:
		return 0;
	}
}

/* Print the header edits the message would get. */
static void
print_edits(const struct ag_edit *ed, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (ed[i].op) {
		case AG_EDIT_INSERT:
			printf("insert-header %d: %s: %s\n", ed[i].index,
			    ed[i].name, ed[i].value);
			break;
		case AG_EDIT_CHANGE:
			printf("change-header %s[%d]: %s\n", ed[i].name,
			    ed[i].index, ed[i].value);
			break;
		case AG_EDIT_DELETE:
			printf("delete-header %s[%d]\n", ed[i].name, ed[i].index);
			break;
		}
	}
}

/* Finish: print the verdict line and return the exit status. */
static int
finish(struct run *r, enum ag_action a)
{
	printf("verdict: %s\n", ag_action_name(a == AG_ACT_CONTINUE ?
	    AG_ACT_ACCEPT : a));
	ag_conn_free(r->conn);
	return status_of(a);
}

/* The envelope phases; returns -1 to go on to the message, else a status. */
static int
envelope(struct run *r, const struct ag_offline *o)
{
	char *margv[2] = { (char *)(uintptr_t)o->mail_from, NULL };
	size_t ok = 0;
	enum ag_action last = AG_ACT_CONTINUE;

	ag_conn_set_auth(r->conn, o->auth);
	ag_conn_helo(r->conn, o->helo, &r->v);
	say("helo", &r->v);
	ag_conn_mail(r->conn, margv, &r->v);
	say("mail", &r->v);
	if (ag_verdict_is_final(&r->v)) {
		return finish(r, r->v.action);
	}
	for (size_t i = 0; i < o->nrcpt; i++) {
		char *rargv[2] = { (char *)(uintptr_t)o->rcpt[i], NULL };
		char phase[300];

		ag_conn_rcpt(r->conn, rargv, &r->v);
		snprintf(phase, sizeof(phase), "rcpt <%s>", o->rcpt[i]);
		say(phase, &r->v);
		if (ag_verdict_is_final(&r->v)) {
			last = r->v.action;
		} else {
			ok++;
		}
	}
	if (ok == 0) {
		/* every recipient refused: the message is never sent */
		ag_conn_abort(r->conn);
		return finish(r, last);
	}
	return -1;
}

int
ag_offline_run(const struct ag_offline *o, struct ag_config *cfg)
{
	struct ag_conn_info info = { .client_addr = o->client_ip,
	    .client_name = "unknown" };
	struct ag_msgfile_cb cb = { .header = on_header, .eoh = on_eoh,
	    .body = on_body };
	struct ag_engine *e = NULL;
	const struct ag_edit *ed;
	struct run r;
	char err[256];
	size_t ned;
	FILE *fp;
	int rc;

	if (o->client_ip == NULL || o->helo == NULL || o->mail_from == NULL ||
	    o->nrcpt == 0) {
		fprintf(stderr, "authgate: --test-message needs --client-ip, "
		    "--helo, --mail-from and at least one --rcpt\n");
		return 3;
	}
	fp = strcmp(o->message, "-") == 0 ? stdin : fopen(o->message, "r");
	if (fp == NULL) {
		fprintf(stderr, "authgate: %s: %m\n", o->message);
		return 3;
	}
	memset(&r, 0, sizeof(r));
	cb.arg = &r;
	if (ag_engine_new(cfg, false, &e) != AG_OK) {
		fprintf(stderr, "authgate: out of memory\n");
		return 3;
	}
	r.conn = ag_conn_new(e, &info, &r.v);
	if (r.conn == NULL) {
		ag_engine_free(e);
		return 3;
	}
	ag_conn_set_leadspc(r.conn, true);	/* lib/msgfile.c keeps it */
	say("connect", &r.v);
	rc = envelope(&r, o);
	if (rc >= 0) {
		goto out;
	}
	if (ag_msgfile_read(fp, &cb, err, sizeof(err)) != AG_OK) {
		fprintf(stderr, "authgate: %s: %s\n", o->message, err);
		ag_conn_free(r.conn);
		rc = 3;
		goto out;
	}
	if (ag_verdict_is_final(&r.v)) {
		rc = finish(&r, r.v.action);
		goto out;
	}
	printf("body: continue (%llu bytes)\n", r.body_bytes);
	ag_conn_eom(r.conn, &r.v, &ed, &ned);
	say("eom", &r.v);
	if (!ag_verdict_is_final(&r.v)) {
		print_edits(ed, ned);
	}
	rc = finish(&r, r.v.action);
out:
	if (fp != stdin) {
		fclose(fp);
	}
	ag_engine_free(e);
	return rc;
}
