/*
 * milter.c - libmilter callbacks.  Each one fetches the connection from
 * the milter context, passes the event to lib/session.c and maps the
 * verdict to a reply.  No policy lives here.
 *
 * Thread safety: libmilter runs one thread per MTA connection; the only
 * shared state is the engine (thread-safe) and the no-reply flags of the
 * last negotiation (atomic).
 */
#include <stdlib.h>
#include <string.h>

#include <libmilter/mfapi.h>

#include "log.h"
#include "metrics.h"
#include "milter.h"
#include "session.h"

static struct ag_engine *engine;

/*
 * What libmilter keeps for us per MTA connection: the negotiated no-reply
 * flags (a callback for a no-reply step must answer SMFIS_NOREPLY) and the
 * session, made at connect.
 */
struct mconn {
	unsigned long noreply;	/* SMFIP_NR_* agreed at negotiation */
	bool leadspc;		/* SMFIP_HDR_LEADSPC agreed */
	bool held;		/* PENDING holds the message's answer */
	struct ag_verdict pending;
	struct ag_conn *conn;
};

/*
 * Steps the MTA need not wait for.  Connect and HELO always continue.
 * Header fields, end of headers and body chunks may end the message (a
 * size limit, no memory), but neither Postfix nor Sendmail can refuse a
 * message before the client has sent all of DATA, so such an answer is
 * held and given at end of message (see held_answer), where it changes
 * nothing the client sees.  No reply to wait for saves the MTA a round
 * trip per step, and us a write.
 */
#define AG_NOREPLY_STEPS (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_HDR | \
	SMFIP_NR_EOH | SMFIP_NR_BODY)

/*
 * The no-reply flags of the last negotiation.  A connection that follows
 * SMFIC_QUIT_NC on the same milter connection is not negotiated again
 * (and xxfi_close has freed its record), so it inherits these.
 */
static unsigned long last_noreply;
static bool last_leadspc;

/* The per-connection record of CTX, made on first use; NULL if no memory. */
static struct mconn *
mconn_of(SMFICTX *ctx)
{
	struct mconn *m = smfi_getpriv(ctx);

	if (m == NULL) {
		m = calloc(1, sizeof(*m));
		if (m != NULL) {
			m->noreply = __atomic_load_n(&last_noreply,
			    __ATOMIC_RELAXED);
			m->leadspc = __atomic_load_n(&last_leadspc,
			    __ATOMIC_RELAXED);
			smfi_setpriv(ctx, m);
		}
	}
	return m;
}

/* The session of CTX, or NULL (e.g. out of memory at connect). */
static struct ag_conn *
conn_of(SMFICTX *ctx)
{
	struct mconn *m = smfi_getpriv(ctx);

	return m != NULL ? m->conn : NULL;
}

/* The reply for a step that may have been negotiated to no-reply. */
static sfsistat
maybe_noreply(SMFICTX *ctx, unsigned long step, sfsistat r)
{
	struct mconn *m = smfi_getpriv(ctx);

	return m != NULL && (m->noreply & step) != 0 ? SMFIS_NOREPLY : r;
}

/* Remember the queue id whenever the MTA sends it. */
static void
note_qid(SMFICTX *ctx, struct ag_conn *c)
{
	ag_conn_set_queue_id(c, smfi_getsymval(ctx, "i"));
}

/* Turn a verdict into the milter reply. */
static sfsistat
reply(SMFICTX *ctx, const struct ag_verdict *v)
{
	switch (v->action) {
	case AG_ACT_CONTINUE:
		return SMFIS_CONTINUE;
	case AG_ACT_ACCEPT:
		return SMFIS_ACCEPT;
	case AG_ACT_DISCARD:
		return SMFIS_DISCARD;
	case AG_ACT_QUARANTINE:
		if (smfi_quarantine(ctx, (char *)(uintptr_t)v->text) != MI_SUCCESS) {
			ag_log_warning("smfi_quarantine failed");
		}
		return SMFIS_CONTINUE;
	case AG_ACT_TEMPFAIL:
	case AG_ACT_REJECT:
		break;
	}
	if (v->rcode[0] != '\0' &&
	    smfi_setreply(ctx, (char *)(uintptr_t)v->rcode,
	    (char *)(uintptr_t)v->xcode, (char *)(uintptr_t)v->text) != MI_SUCCESS) {
		ag_log_warning("smfi_setreply(%s %s) failed", v->rcode, v->xcode);
	}
	return v->action == AG_ACT_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

/* Without a connection object (out of memory at connect): fail safe. */
static sfsistat
no_conn(SMFICTX *ctx)
{
	const struct ag_snapshot *s = ag_engine_acquire(engine);
	enum ag_action act = s->cfg->on_internal_error;
	struct ag_verdict v;

	ag_snapshot_release(s);
	if (act == AG_ACT_ACCEPT) {
		return SMFIS_ACCEPT;
	}
	ag_verdict_set(&v, AG_ACT_TEMPFAIL, "451", "4.3.0", "internal",
	    "Temporary internal error, please try again later");
	return reply(ctx, &v);
}

/*
 * The answer to a step of the message content (STEP: SMFIP_NR_HDR, _EOH
 * or _BODY).  When the MTA agreed not to wait for that step, a final
 * verdict is kept for end of message (the first one counts: the message
 * ended there) and the MTA gets no reply now.
 */
static sfsistat
content_reply(SMFICTX *ctx, unsigned long step, const struct ag_verdict *v)
{
	struct mconn *m = smfi_getpriv(ctx);

	if (m == NULL || (m->noreply & step) == 0) {
		return reply(ctx, v);
	}
	if (ag_verdict_is_final(v) && !m->held) {
		m->pending = *v;
		m->held = true;
	}
	return SMFIS_NOREPLY;
}

/* The message already has its answer (held): NULL, else the record. */
static struct mconn *
held_answer(SMFICTX *ctx)
{
	struct mconn *m = smfi_getpriv(ctx);

	return m != NULL && m->held ? m : NULL;
}

/* A new message (or none): nothing held. */
static void
held_clear(SMFICTX *ctx)
{
	struct mconn *m = smfi_getpriv(ctx);

	if (m != NULL) {
		m->held = false;
	}
}

static sfsistat
cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
    unsigned long f2, unsigned long f3, unsigned long *pf0,
    unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	unsigned long want = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE |
	    SMFIF_SETSYMLIST;
	unsigned long skip = SMFIP_NOUNKNOWN | SMFIP_NODATA;
	struct mconn *m = mconn_of(ctx);

	*pf0 = f0 & want;
	/* HDR_LEADSPC: header values as they are, the space after the colon
	 * included, which simple canonicalization (DKIM) must see */
	*pf1 = f1 & (skip | AG_NOREPLY_STEPS | SMFIP_HDR_LEADSPC);
	if (m == NULL) {
		*pf1 &= ~(unsigned long)(AG_NOREPLY_STEPS | SMFIP_HDR_LEADSPC);
	} else {
		m->noreply = *pf1 & AG_NOREPLY_STEPS;
		m->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
		__atomic_store_n(&last_noreply, m->noreply, __ATOMIC_RELAXED);
		__atomic_store_n(&last_leadspc, m->leadspc, __ATOMIC_RELAXED);
	}
	*pf2 = 0;
	*pf3 = 0;
	if (f0 & SMFIF_SETSYMLIST) {
		smfi_setsymlist(ctx, SMFIM_CONNECT,
		    "j {daemon_name} {client_addr} {client_name}");
		smfi_setsymlist(ctx, SMFIM_ENVFROM, "i {auth_authen}");
		smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i");
		smfi_setsymlist(ctx, SMFIM_EOH, "i");
		smfi_setsymlist(ctx, SMFIM_EOM, "i");
	}
	return SMFIS_CONTINUE;
}

static sfsistat
cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
	struct ag_conn_info info = {
		.sa = sa,
		.client_addr = smfi_getsymval(ctx, "{client_addr}"),
		.client_name = smfi_getsymval(ctx, "{client_name}"),
		.daemon_name = smfi_getsymval(ctx, "{daemon_name}"),
		.mta_name = smfi_getsymval(ctx, "j"),
	};
	struct mconn *m = mconn_of(ctx);
	struct ag_verdict v;

	if (info.client_name == NULL) {
		info.client_name = hostname;
	}
	if (m != NULL && m->conn == NULL) {
		m->conn = ag_conn_new(engine, &info, &v);
		ag_conn_set_leadspc(m->conn, m->leadspc);
		ag_metrics_connection(m->conn != NULL ? 1 : 0);
	}
	if (m == NULL || m->conn == NULL) {
		/* answered at the next step that can answer */
		ag_log_err("out of memory at connect");
		return maybe_noreply(ctx, SMFIP_NR_CONN, no_conn(ctx));
	}
	return maybe_noreply(ctx, SMFIP_NR_CONN, reply(ctx, &v));
}

static sfsistat
cb_helo(SMFICTX *ctx, char *helo)
{
	struct ag_conn *c = conn_of(ctx);
	struct ag_verdict v;

	if (c == NULL) {
		return maybe_noreply(ctx, SMFIP_NR_HELO, no_conn(ctx));
	}
	ag_conn_helo(c, helo, &v);
	return maybe_noreply(ctx, SMFIP_NR_HELO, reply(ctx, &v));
}

static sfsistat
cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct ag_conn *c = conn_of(ctx);
	struct ag_verdict v;

	held_clear(ctx);
	if (c == NULL) {
		return no_conn(ctx);
	}
	ag_conn_set_auth(c, smfi_getsymval(ctx, "{auth_authen}"));
	/* end a transaction the MTA did not abort before taking the new
	 * one's queue id (Sendmail sends it at MAIL; Postfix, which makes
	 * its queue file later, from RCPT on) */
	ag_conn_abort(c);
	note_qid(ctx, c);
	ag_conn_mail(c, argv, &v);
	return reply(ctx, &v);
}

static sfsistat
cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct ag_conn *c = conn_of(ctx);
	struct ag_verdict v;

	if (c == NULL) {
		return no_conn(ctx);
	}
	note_qid(ctx, c);
	ag_conn_rcpt(c, argv, &v);
	return reply(ctx, &v);
}

static sfsistat
cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct ag_conn *c = conn_of(ctx);
	struct ag_verdict v;

	if (held_answer(ctx) != NULL) {
		return maybe_noreply(ctx, SMFIP_NR_HDR, SMFIS_CONTINUE);
	}
	if (c == NULL) {
		return maybe_noreply(ctx, SMFIP_NR_HDR, no_conn(ctx));
	}
	ag_conn_header(c, name, value, &v);
	return content_reply(ctx, SMFIP_NR_HDR, &v);
}

static sfsistat
cb_eoh(SMFICTX *ctx)
{
	struct ag_conn *c = conn_of(ctx);
	struct ag_verdict v;

	struct mconn *h = held_answer(ctx);

	if (h != NULL) {
		if ((h->noreply & SMFIP_NR_EOH) != 0) {
			return SMFIS_NOREPLY;
		}
		h->held = false;
		return reply(ctx, &h->pending);
	}
	if (c == NULL) {
		return maybe_noreply(ctx, SMFIP_NR_EOH, no_conn(ctx));
	}
	note_qid(ctx, c);
	ag_conn_eoh(c, &v);
	return content_reply(ctx, SMFIP_NR_EOH, &v);
}

static sfsistat
cb_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	struct ag_conn *c = conn_of(ctx);
	struct ag_verdict v;

	if (held_answer(ctx) != NULL) {
		return maybe_noreply(ctx, SMFIP_NR_BODY, SMFIS_CONTINUE);
	}
	if (c == NULL) {
		return maybe_noreply(ctx, SMFIP_NR_BODY, no_conn(ctx));
	}
	ag_conn_body(c, buf, len, &v);
	return content_reply(ctx, SMFIP_NR_BODY, &v);
}

/*
 * Apply the header edits the session asks for.  Values come without the
 * space after the colon; with SMFIP_HDR_LEADSPC agreed the MTA adds none
 * itself, so it is put in here ("Name: value" either way, which the
 * simple canonicalization of our own DKIM-Signature depends on).
 */
static void
apply_edits(SMFICTX *ctx, const struct ag_edit *ed, size_t n, bool leadspc)
{
	for (size_t i = 0; i < n; i++) {
		int r = MI_FAILURE;
		char *name = ed[i].name, *value = ed[i].value, *spaced = NULL;

		if (leadspc && value != NULL) {
			size_t len = strlen(value);

			spaced = malloc(len + 2);
			if (spaced == NULL) {
				ag_log_err("out of memory: header %s not edited",
				    name);
				continue;
			}
			spaced[0] = ' ';
			memcpy(spaced + 1, value, len + 1);
			value = spaced;
		}
		switch (ed[i].op) {
		case AG_EDIT_INSERT:
			r = smfi_insheader(ctx, ed[i].index, name, value);
			break;
		case AG_EDIT_CHANGE:
			r = smfi_chgheader(ctx, name, ed[i].index, value);
			break;
		case AG_EDIT_DELETE:
			r = smfi_chgheader(ctx, name, ed[i].index, NULL);
			break;
		}
		free(spaced);
		if (r != MI_SUCCESS) {
			ag_log_warning("header edit of %s failed", name);
		}
	}
}

static sfsistat
cb_eom(SMFICTX *ctx)
{
	struct ag_conn *c = conn_of(ctx);
	struct mconn *h = held_answer(ctx);
	const struct ag_edit *ed;
	struct ag_verdict v;
	size_t n;

	if (h != NULL) {
		/* the message ended at a step that got no reply: logged then */
		h->held = false;
		return reply(ctx, &h->pending);
	}
	if (c == NULL) {
		return no_conn(ctx);
	}
	note_qid(ctx, c);
	ag_conn_eom(c, &v, &ed, &n);
	if (!ag_verdict_is_final(&v) || v.action == AG_ACT_QUARANTINE) {
		struct mconn *m = smfi_getpriv(ctx);

		apply_edits(ctx, ed, n, m != NULL && m->leadspc);
	}
	return reply(ctx, &v);
}

static sfsistat
cb_abort(SMFICTX *ctx)
{
	held_clear(ctx);
	ag_conn_abort(conn_of(ctx));
	return SMFIS_CONTINUE;
}

static sfsistat
cb_close(SMFICTX *ctx)
{
	struct mconn *m = smfi_getpriv(ctx);

	if (m == NULL) {
		return SMFIS_CONTINUE;
	}
	smfi_setpriv(ctx, NULL);
	if (m->conn != NULL) {
		ag_conn_free(m->conn);
		ag_metrics_connection(-1);
	}
	free(m);
	return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
	.xxfi_name = "authgate",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE |
	    SMFIF_SETSYMLIST,
	.xxfi_connect = cb_connect,
	.xxfi_helo = cb_helo,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = cb_body,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
	.xxfi_negotiate = cb_negotiate,
};

int
ag_milter_register(void)
{
	return smfi_register(desc) == MI_SUCCESS ? 0 : -1;
}

void
ag_milter_set_engine(struct ag_engine *e)
{
	engine = e;
}
