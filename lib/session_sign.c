/*
 * session_sign.c - DKIM signing of outbound mail in a transaction.
 *
 * Outbound: the client authenticated with SASL or is in TrustedNetworks
 * (and DKIMSign is on).  The keys depend on the From domain, which may
 * come after other header fields, so the header fields are kept (raw,
 * bounded by AG_SESSION_SIGN_HDR_MAX) until the end of the headers; then
 * the signing handles are made and fed, and the body streams through
 * them.  At the end of the message the signatures go on top.
 *
 * A key that could not be loaded, a crypto failure, or headers over the
 * bound are a signing failure: On-SignError (451 4.3.0, or unsigned),
 * logged with the key's domain, selector and file, never its contents.
 * A message whose From has no usable domain, or no entry, is not signed
 * (the log line says sign=none).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fromhdr.h"
#include "log.h"
#include "session_int.h"
#include "signtable.h"

/* One kept header field. */
struct sign_hdr {
	char *name;
	char *value;
};

void
sess_sign_mail(struct ag_conn *c)
{
	struct msg *m = c->msg;

	m->sign = m->snap->cfg->dkim_sign &&
	    (c->auth[0] != '\0' || m->trusted) &&
	    ag_signtable_count(m->snap->signtable) > 0;
}

/* Note a failure for the end of message (the first one counts). */
static void __attribute__((format(printf, 2, 3)))
sign_fail(struct msg *m, const char *fmt, ...)
{
	va_list ap;

	if (m->sign_error[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(m->sign_error, sizeof(m->sign_error), fmt, ap);
		va_end(ap);
	}
}

bool
sess_sign_header(struct ag_conn *c, const char *name, const char *value)
{
	struct msg *m = c->msg;
	struct sign_hdr *h;
	size_t add;

	if (!m->sign || m->sign_error[0] != '\0') {
		return true;
	}
	add = strlen(name) + strlen(value) + 2;
	if (m->sign_hbytes + add > AG_SESSION_SIGN_HDR_MAX) {
		sign_fail(m, "the header is too large to sign");
		return true;
	}
	h = reallocarray(m->sign_hdrs, m->sign_nhdrs + 1, sizeof(*h));
	if (h == NULL) {
		return false;
	}
	m->sign_hdrs = h;
	h = &m->sign_hdrs[m->sign_nhdrs];
	h->name = strdup(name);
	h->value = strdup(value);
	if (h->name == NULL || h->value == NULL) {
		free(h->name);
		free(h->value);
		return false;
	}
	m->sign_nhdrs++;
	m->sign_hbytes += add;
	return true;
}

/* Free the kept header fields. */
static void
hdrs_free(struct msg *m)
{
	size_t i;

	for (i = 0; i < m->sign_nhdrs; i++) {
		free(m->sign_hdrs[i].name);
		free(m->sign_hdrs[i].value);
	}
	free(m->sign_hdrs);
	m->sign_hdrs = NULL;
	m->sign_nhdrs = 0;
}

/* The From domain (A-labels) for choosing keys, or false. */
static bool
from_domain(const struct msg *m, char *out, size_t outsz)
{
	struct ag_from from;

	if (m->from_count != 1 || m->from_value == NULL ||
	    ag_from_parse(m->from_value, strlen(m->from_value), &from) !=
	    AG_FROM_OK || ag_domain_alabel(from.domain, out, outsz) != AG_OK) {
		return false;
	}
	return true;
}

bool
sess_sign_eoh(struct ag_conn *c)
{
	struct msg *m = c->msg;
	const struct ag_sign_entry *e[AG_SIGN_PER_MESSAGE_MAX];
	const struct ag_sign_key *keys[AG_SIGN_PER_MESSAGE_MAX];
	struct ag_sign_params p[AG_SIGN_PER_MESSAGE_MAX];
	char dom[AG_ADDR_DOMAIN_MAX + 1], err[256] = "";
	size_t n, i, len;

	if (!m->sign || m->sign_error[0] != '\0' || m->signing != NULL) {
		/* (a second end of headers: the signing handle stays) */
		hdrs_free(m);
		return true;
	}
	if (!from_domain(m, dom, sizeof(dom)) ||
	    (n = ag_signtable_select(m->snap->signtable, dom, e,
	    AG_SIGN_PER_MESSAGE_MAX)) == 0) {
		m->sign = false;	/* nothing to sign with: logged */
		m->sign_none = true;
		hdrs_free(m);
		return true;
	}
	for (i = 0; i < n; i++) {
		if (e[i]->key == NULL) {
			sign_fail(m, "key d=%s s=%s: %.200s", e[i]->domain,
			    e[i]->selector, e[i]->error);
			hdrs_free(m);
			return true;
		}
		keys[i] = e[i]->key;
		memset(&p[i], 0, sizeof(p[i]));
		p[i].domain = e[i]->domain;
		p[i].selector = e[i]->selector;
		p[i].alg = e[i]->alg;
		p[i].header_simple = e[i]->header_simple;
		p[i].body_simple = e[i]->body_simple;
		p[i].headers = e[i]->headers;
		p[i].expire_s = e[i]->expire_s;
		len = strlen(m->sign_what);
		snprintf(m->sign_what + len, sizeof(m->sign_what) - len,
		    "%s%.60s/%.40s", i > 0 ? "," : "", e[i]->domain,
		    e[i]->selector);
	}
	if (m->snap->signer == NULL) {
		sign_fail(m, "the signing library is not available");
		hdrs_free(m);
		return true;
	}
	m->signing = ag_sign_msg_new(m->snap->signer, c->qid[0] != '\0' ?
	    c->qid : "NOQUEUE", keys, p, n, err, sizeof(err));
	if (m->signing == NULL) {
		sign_fail(m, "%s", err[0] != '\0' ? err : "out of memory");
		hdrs_free(m);
		return true;
	}
	m->sign_count = n;
	for (i = 0; i < m->sign_nhdrs; i++) {
		if (ag_sign_header(m->signing, m->sign_hdrs[i].name,
		    m->sign_hdrs[i].value) != AG_OK) {
			hdrs_free(m);
			return false;
		}
	}
	hdrs_free(m);
	return ag_sign_eoh(m->signing) == AG_OK;
}

bool
sess_sign_body(struct ag_conn *c, const unsigned char *buf, size_t len)
{
	struct msg *m = c->msg;

	return m->signing == NULL || ag_sign_body(m->signing, buf, len) ==
	    AG_OK;
}

/* End of message: the signatures, or On-SignError; V may become final. */
bool
sess_sign_eom(struct ag_conn *c, struct ag_verdict *v)
{
	struct msg *m = c->msg;
	char *values[AG_SIGN_PER_MESSAGE_MAX] = { NULL };
	char err[256] = "";
	size_t i;

	if (m->signing != NULL && m->sign_error[0] == '\0' &&
	    ag_sign_eom(m->signing, values, err, sizeof(err)) != AG_OK) {
		sign_fail(m, "%s", err[0] != '\0' ? err : "signing failed");
	}
	if (m->sign_error[0] != '\0') {
		ag_log_err("%s: cannot sign: %s", c->qid[0] != '\0' ? c->qid :
		    "NOQUEUE", m->sign_error);
		if (m->snap->cfg->on_sign_error == 0) {	/* tempfail */
			ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.3.0",
			    "sign", "The message cannot be signed (DKIM) "
			    "now, please try again later");
			sess_decide(c, false, v);
		}
		return true;
	}
	if (m->signing == NULL) {
		return true;
	}
	/* the signatures on top: inserted last, in reverse, so the first
	 * key's signature ends up first */
	for (i = m->sign_count; i > 0; i--) {
		/* edit values start after "Name: " (filter/milter.c) */
		size_t sp = strspn(values[i - 1], " \t");

		memmove(values[i - 1], values[i - 1] + sp,
		    strlen(values[i - 1] + sp) + 1);
		if (!sess_edit_add(m, AG_EDIT_INSERT, 0, "DKIM-Signature",
		    values[i - 1])) {
			values[i - 1] = NULL;
			for (size_t j = 0; j < i - 1; j++) {
				free(values[j]);
			}
			return false;
		}
		values[i - 1] = NULL;
	}
	m->signed_ok = true;
	return true;
}

/* The log field: " sign=d/s,d/s", " sign=none", " sign=error". */
void
sess_sign_logfields(const struct msg *m, char *buf, size_t bufsz)
{
	char what[sizeof(m->sign_what) * 2];

	buf[0] = '\0';
	if (m->sign_error[0] != '\0') {
		snprintf(buf, bufsz, " sign=error");
	} else if (m->signed_ok) {
		snprintf(buf, bufsz, " sign=%s", ag_log_escape(what,
		    sizeof(what), m->sign_what));
	} else if (m->sign_none) {
		snprintf(buf, bufsz, " sign=none");
	}
}

void
sess_sign_free(struct msg *m)
{
	hdrs_free(m);
	ag_sign_msg_free(m->signing);
	m->signing = NULL;
}
