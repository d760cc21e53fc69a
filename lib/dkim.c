/*
 * dkim.c - streaming DKIM verification over libopendkim.
 *
 * One DKIM_LIB per struct ag_dkim, shared by every thread; one DKIM handle
 * per message.  Header fields go to dkim_header() as they arrive, as
 * "Name:" + the value exactly as it followed the colon (the filter asks
 * the MTA for SMFIP_HDR_LEADSPC, and the session puts back the one space
 * an MTA without it removes), with the bare LF of folded lines made CRLF,
 * so simple header canonicalization sees the field as it was written.
 * Body chunks go to dkim_body() as they come; key records come from
 * lib/dns.c.
 *
 * The DNS layer.  libopendkim's query hooks carry only the service handle
 * (our struct ag_dkim), so the message reaches them through a thread-local
 * pointer, set around dkim_eoh() and dkim_eom(), the only calls that look
 * keys up.  The start hook does the lookup synchronously under the
 * message's deadline and copies the reply packet into libopendkim's
 * buffer; waitreply returns the status start kept; cancel has nothing to
 * do.  The init and close hooks are NULL: with libresolv's defaults,
 * dkim_close() would take our handle for a res_state and free it.  Start
 * also reads the key record and notes what libopendkim does not check
 * (duplicate tags, p= not base64, Ed25519 key length, k= not fitting a=);
 * a note overrides libopendkim's answer for the signatures of that key.
 * Our own reading of each DKIM-Signature (RFC 6376 3.2, 3.5) does the same
 * for signatures (libopendkim keeps the last of duplicate tags, takes bad
 * characters, q= without dns/txt) and keeps the tag values for the report.
 *
 * Results (RFC 8601 2.7.1 names), per signature in header order:
 *   - No key (NXDOMAIN, no TXT) and revoked key (empty p=): permerror.
 *     RFC 6376 6.1.2 makes both PERMFAIL ("no key for signature", "key
 *     revoked"); RFC 8601 2.7.1 calls an error that "is unrecoverable"
 *     permerror, while "fail" is for signatures that "failed the
 *     verification test(s)", and none was tested here.
 *   - Malformed signature or key record: permerror, as lib/dkim.h says
 *     (RFC 8601 would allow "neutral" for syntax errors; neutral is kept
 *     for signatures not evaluated).
 *   - rsa-sha1 (RFC 8301 3.1) and RSA keys under 1024 bits (3.2) never
 *     pass: verifying, they are "policy" (RFC 8601: "some aspect of the
 *     signature ... was not acceptable to the ADMD"), otherwise "fail".
 *     libopendkim accepts rsa-sha1; DKIM_OPTS_MINKEYBITS makes a small
 *     key's pass KEYTOOSMALL.
 *   - A pass whose l= leaves body bytes unsigned is "policy" too: the
 *     unsigned part could be anyone's (RFC 6376 8.2).
 *   - Key with t=y (testing; RFC 6376 3.6.1: not to be treated differently
 *     from unsigned mail): pass stays pass, fail becomes neutral.
 *   - DNS timeout, SERVFAIL, no time left before the deadline: temperror.
 *
 * The cap and the budget.  The first max_sigs signatures are evaluated;
 * the prescreen callback marks the others DKIM_SIGFLAG_IGNORE (no key
 * query) and they are reported neutral, not evaluated.  Key queries are
 * bounded by the same number and by the deadline.  libopendkim still
 * canonicalizes every signature it parsed, so its work is bounded before
 * dkim_eoh() (budget_ok); a message over the budget, with more than
 * AG_DKIM_MAX_FIELDS signatures, or a header past AG_DKIM_HEADERS_MAX
 * fields or AG_DKIM_HEADER_BYTES_MAX bytes, is not evaluated at all.
 *
 * Thread safety: an ag_dkim serves every thread (libopendkim's library
 * handle is read-only after ag_dkim_new); a message handle is used by one
 * thread at a time.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <opendkim/dkim.h>

#include "dkim.h"
#include "dkimlen.h"
#include "dkimtag.h"
#include "log.h"

/* Only fills the timeval libopendkim hands our waitreply hook, which has
 * nothing to wait for: the message's deadline bounds the lookups. */
#define AG_DKIM_DNS_TIMEOUT_S 5
#define AG_DKIM_NAME_MAX 253		/* RFC 1035 2.3.4: the key name */
#define AG_DKIM_LIB_HDRLIST 4096	/* libopendkim reads this much of h= */

/* Bounds: DKIM-Signature fields tracked, tags in one tag-list, bytes of
 * one header field (Postfix's header_size_limit is 100 KB). */
#define AG_DKIM_MAX_FIELDS 1024
#define AG_DKIM_MAX_NOTES 64	/* key records noted (at most max_sigs) */
#define AG_DKIM_FIELD_MAX (1024 * 1024)

/* What libopendkim may hold of one message's header: it copies every
 * field it is given until the message ends.  Past either bound the
 * message is not evaluated (over budget) and libopendkim is given no
 * more, so its memory stays bounded whatever the MTA sends (Postfix
 * bounds only the message size, 10 MB by default).  Real mail has a few
 * dozen fields and some kilobytes. */
#define AG_DKIM_HEADERS_MAX 20000
#define AG_DKIM_HEADER_BYTES_MAX (1024 * 1024)

/* Budget of libopendkim's work at the end of the headers, for all the
 * signatures it parsed (see budget_ok).  Measured: one header selection
 * step costs about 10 ns (200 signatures x 450 names x 2,000 fields took
 * 1.9 s without the budget), so each bound is some 50 ms of work. */
#define AG_DKIM_SELECT_MAX 5000000ULL		/* h= names x header fields */
#define AG_DKIM_HASH_MAX (16ULL * 1024 * 1024)	/* header bytes hashed */
#define AG_DKIM_BODY_HASHES_MAX 8		/* distinct body hashes */

static const char *const res_names[AG_DKIM_NRESULTS] = {
	"none", "pass", "fail", "neutral", "policy", "temperror", "permerror"
};

struct ag_dkim {
	DKIM_LIB *lib;
	struct ag_dns *dns;
};

struct keynote {		/* what the DNS layer found at one key name */
	char name[AG_DKIM_NAME_MAX + 1];
	enum ag_dkim_res res;	/* PERMERROR, TEMPERROR, or NONE: looks fine */
	char ktype[16];		/* k= of the record ("rsa" when absent) */
	char why[128];
};

struct field {			/* one DKIM-Signature, as we read it */
	struct ag_dkim_result r;	/* our tag values; the result at eom */
	bool bad;			/* malformed: r.reason says why */
	unsigned hnames;		/* names in h= (as libopendkim reads it) */
	int halg;			/* 1: sha256, 0: sha1 */
	int bcanon;			/* 1: relaxed body */
	long long blen;			/* l=, or -1 */
	bool has_l;			/* l= is there (valid or not) */
};

struct ag_dkim_msg {
	struct ag_dkim *k;
	DKIM *dkim;
	char id[64];		/* libopendkim keeps the pointer */
	unsigned max_sigs;
	uint64_t deadline;
	bool eoh_done, eom_done;
	bool skip;		/* libopendkim not asked (unsigned, budget) */
	bool nomem;
	const char *skip_why;
	char *buf;		/* "Name: value" for dkim_header() */
	size_t bufcap;
	size_t nheaders;
	unsigned long long hbytes;	/* all header fields */
	size_t hmax;			/* the longest one */
	struct field *f;
	size_t nf, fcap;
	bool over;		/* too many or too long fields: budget */
	struct keynote *notes;
	size_t nnotes, max_notes;
	unsigned queries;
	struct ag_dkimlen len;	/* canonical body lengths, when an l= needs them */
	bool want_len;
	int q_status;		/* the query in progress (they are synchronous): */
	size_t q_len;		/* DKIM_DNS_* and reply length, for waitreply */
};

static __thread struct ag_dkim_msg *cur;

const char *
ag_dkim_res_name(enum ag_dkim_res r)
{
	return (unsigned)r < AG_DKIM_NRESULTS ? res_names[r] : "unknown";
}

/* Copy LEN bytes of S into OUT as printable ASCII (others become '?'),
 * leaving out white space when SQUEEZE; bounded by OUTSZ. */
static void
copy_text(char *out, size_t outsz, const char *s, size_t len, bool squeeze)
{
	size_t j = 0;

	for (size_t i = 0; s != NULL && i < len && j + 1 < outsz; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!squeeze || !ag_is_fws((char)c)) {
			out[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
	}
	out[j] = '\0';		/* OUTSZ is never 0 here */
}

/* A reason text; network data in the arguments is made printable first. */
static void __attribute__((format(printf, 2, 3)))
set_reason(struct ag_dkim_result *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
}

/* ---- our reading of a DKIM-Signature ---------------------------------- */

/* The tags we read, by index; the first seven are REQUIRED (RFC 6376 3.5). */
enum { T_V, T_A, T_B, T_BH, T_D, T_H, T_S, T_C, T_I, T_L, T_Q, T_N };
static const char *const tag_names[T_N] = {
	"v", "a", "b", "bh", "d", "h", "s", "c", "i", "l", "q"
};

struct sigread {
	struct ag_span t[T_N];	/* .p NULL: absent (an empty value is not) */
};

static void
sig_tag(void *arg, struct ag_span name, struct ag_span val)
{
	struct sigread *sr = arg;

	for (int n = 0; n < T_N; n++) {
		if (name.len == strlen(tag_names[n]) &&
		    memcmp(name.p, tag_names[n], name.len) == 0) {
			sr->t[n] = val;
		}
	}
}

/* Does the q= list S hold dns/txt (RFC 6376 3.5)?  (Its first 256
 * characters: the only method defined is that one.) */
static bool
q_has_dns(struct ag_span s)
{
	char buf[260] = ":";
	size_t j = 1;

	for (size_t i = 0; i < s.len && j < sizeof(buf) - 2; i++) {
		if (!ag_is_fws(s.p[i])) {
			buf[j++] = (char)tolower((unsigned char)s.p[i]);
		}
	}
	buf[j++] = ':';
	buf[j] = '\0';
	return strstr(buf, ":dns/txt:") != NULL;
}

/* The values the budget needs: h= names, hash, body canonicalization, l=. */
static void
sig_costs(const struct sigread *sr, struct field *f)
{
	struct ag_span h = sr->t[T_H], c = sr->t[T_C], l = sr->t[T_L];
	size_t hl = h.len < AG_DKIM_LIB_HDRLIST ? h.len : AG_DKIM_LIB_HDRLIST;
	const char *slash = c.p != NULL ? memchr(c.p, '/', c.len) : NULL;

	f->hnames = hl > 0;
	for (size_t i = 0; i < hl; i++) {
		f->hnames += h.p[i] == ':';
	}
	f->halg = !(sr->t[T_A].p != NULL && ag_span_is(sr->t[T_A], "rsa-sha1"));
	f->bcanon = slash != NULL && (size_t)(c.p + c.len - slash) > 7 &&
	    strncasecmp(slash + 1, "relaxed", 7) == 0;
	f->has_l = l.p != NULL;
	f->blen = l.p != NULL && l.len > 0 && l.len < 19 ? 0 : -1;
	for (size_t i = 0; f->blen >= 0 && i < l.len; i++) {
		f->blen = isdigit((unsigned char)l.p[i]) ?
		    f->blen * 10 + (l.p[i] - '0') : -1;
	}
}

/* The checks on a parsed signature that libopendkim does not make, or
 * makes in a way we want named; NULL when it looks usable.  WHY holds
 * the text for a missing tag. */
static const char *
sig_check(const struct sigread *sr, char *why, size_t whysz)
{
	const struct ag_span *t = sr->t;

	for (int n = T_V; n <= T_S; n++) {
		if (t[n].p == NULL) {
			snprintf(why, whysz, "missing %s=", tag_names[n]);
			return why;
		}
	}
	if (!ag_span_is(t[T_V], "1")) {
		return "unsupported version (v= is not 1)";
	}
	if (!ag_span_is(t[T_A], "rsa-sha256") && !ag_span_is(t[T_A], "rsa-sha1") &&
	    !ag_span_is(t[T_A], "ed25519-sha256")) {
		return "unknown signing algorithm";
	}
	if (t[T_B].len == 0 || !ag_is_base64(t[T_B])) {
		return "b= is not base64";
	}
	if (t[T_BH].len == 0 || !ag_is_base64(t[T_BH])) {
		return "bh= is not base64";
	}
	if (t[T_D].len == 0 || t[T_S].len == 0 || t[T_S].len +
	    sizeof("._domainkey.") - 1 + t[T_D].len > AG_DKIM_NAME_MAX) {
		return "d= or s= empty, or the key name too long";
	}
	if (t[T_Q].p != NULL && !q_has_dns(t[T_Q])) {
		return "no supported query method in q=";
	}
	return NULL;
}

/* Read one DKIM-Signature VALUE into F: values for the report, whether it
 * is malformed, and its costs. */
static void
sig_read(struct field *f, const char *value)
{
	struct sigread sr;
	const struct ag_span *t = sr.t;
	const char *why;
	char buf[32];

	memset(&sr, 0, sizeof(sr));
	f->r.result = AG_DKIM_PERMERROR;
	f->r.evaluated = true;
	why = ag_taglist_walk(value, strlen(value), sig_tag, &sr);
	if (why == NULL) {
		why = sig_check(&sr, buf, sizeof(buf));
	}
	copy_text(f->r.domain, sizeof(f->r.domain), t[T_D].p, t[T_D].len, false);
	copy_text(f->r.selector, sizeof(f->r.selector), t[T_S].p, t[T_S].len,
	    false);
	copy_text(f->r.algorithm, sizeof(f->r.algorithm), t[T_A].p, t[T_A].len,
	    false);
	copy_text(f->r.b, 9, t[T_B].p, t[T_B].len, true);
	if (t[T_I].p != NULL || t[T_D].len > 0) {	/* RFC 6376 3.5 default */
		f->r.identity[0] = '@';
		copy_text(f->r.identity + (t[T_I].p == NULL),
		    sizeof(f->r.identity) - 1, t[T_I].p != NULL ? t[T_I].p :
		    t[T_D].p, t[T_I].p != NULL ? t[T_I].len : t[T_D].len, false);
	}
	sig_costs(&sr, f);
	if (why != NULL) {
		f->bad = true;
		set_reason(&f->r, "malformed signature: %s", why);
	}
}

/* Record one more DKIM-Signature field. */
static ag_status
field_add(struct ag_dkim_msg *m, const char *value)
{
	if (m->nf == AG_DKIM_MAX_FIELDS) {
		m->over = true;
		return AG_OK;
	}
	if (m->nf == m->fcap) {
		size_t cap = m->fcap == 0 ? 4 : m->fcap * 2;
		struct field *p = realloc(m->f, cap * sizeof(*p));

		if (p == NULL) {
			return AG_NOMEM;
		}
		m->f = p;
		m->fcap = cap;
	}
	memset(&m->f[m->nf], 0, sizeof(m->f[0]));
	sig_read(&m->f[m->nf], value);
	m->nf++;
	return AG_OK;
}

/* ---- the DNS layer ----------------------------------------------------- */

/* The note for key NAME (LEN bytes, case ignored), or NULL. */
static struct keynote *
note_find(struct ag_dkim_msg *m, const char *name, size_t len)
{
	for (size_t i = 0; i < m->nnotes; i++) {
		if (strlen(m->notes[i].name) == len &&
		    strncasecmp(m->notes[i].name, name, len) == 0) {
			return &m->notes[i];
		}
	}
	return NULL;
}

/* The note for key NAME, made if absent; NULL when out of room. */
static struct keynote *
note_for(struct ag_dkim_msg *m, const char *name)
{
	size_t len = strlen(name);
	struct keynote *kn;

	len -= len > 0 && name[len - 1] == '.';
	if ((kn = note_find(m, name, len)) != NULL || m->nnotes >= m->max_notes ||
	    len > AG_DKIM_NAME_MAX) {
		return kn;
	}
	kn = &m->notes[m->nnotes++];
	memset(kn, 0, sizeof(*kn));
	memcpy(kn->name, name, len);
	snprintf(kn->ktype, sizeof(kn->ktype), "rsa");	/* k= default */
	return kn;
}

/* Note a problem with the key at NAME (the first one is kept). */
static void __attribute__((format(printf, 4, 5)))
note(struct ag_dkim_msg *m, const char *name, enum ag_dkim_res res,
    const char *fmt, ...)
{
	struct keynote *kn = note_for(m, name);
	va_list ap;

	if (kn == NULL || kn->res != AG_DKIM_NONE) {
		return;
	}
	kn->res = res;
	va_start(ap, fmt);
	vsnprintf(kn->why, sizeof(kn->why), fmt, ap);
	va_end(ap);
}

struct keyread {
	struct keynote *kn;
	struct ag_span p;
};

static void
key_tag(void *arg, struct ag_span name, struct ag_span val)
{
	struct keyread *kr = arg;

	if (ag_span_is(name, "k")) {
		copy_text(kr->kn->ktype, sizeof(kr->kn->ktype), val.p, val.len,
		    true);
	} else if (ag_span_is(name, "p")) {
		kr->p = val;
	}
}

/* What is wrong with the key data P of type KTYPE, or NULL. */
static const char *
key_data_check(struct ag_span p, const char *ktype)
{
	size_t n = 0;

	if (p.p == NULL) {
		return "no p=";
	}
	if (!ag_is_base64(p)) {
		return "p= is not base64";
	}
	for (size_t i = 0; i < p.len; i++) {
		n += !ag_is_fws(p.p[i]) && p.p[i] != '=';
	}
	/* RFC 8463 4: the key is the 32-byte public key, base64: 43 chars */
	if (n > 0 && strcasecmp(ktype, "ed25519") == 0 && n * 3 / 4 != 32) {
		return "Ed25519 key is not 32 bytes";
	}
	return NULL;
}

/* Read the one key record of RES for what libopendkim does not check. */
static void
key_screen(struct ag_dkim_msg *m, const char *name,
    const struct ag_dns_result *res)
{
	char txt[AG_DNS_TXT_MAX], pn[80];
	struct keyread kr = { .kn = NULL, .p = { NULL, 0 } };
	const char *why;
	size_t len;

	if (res->n != 1 || (kr.kn = note_for(m, name)) == NULL) {
		return;		/* none or several: libopendkim says so */
	}
	copy_text(pn, sizeof(pn), name, strlen(name), false);
	if (ag_dns_txt_join(&res->rr[0], txt, sizeof(txt), &len) != AG_OK ||
	    memchr(txt, '\0', len) != NULL) {
		note(m, name, AG_DKIM_PERMERROR, "unusable key record at %s", pn);
		return;
	}
	why = ag_taglist_walk(txt, len, key_tag, &kr);
	if (why == NULL) {
		why = key_data_check(kr.p, kr.kn->ktype);
	}
	if (why != NULL) {
		note(m, name, AG_DKIM_PERMERROR, "malformed key record at %s: %s",
		    pn, why);
	}
}

/* Where the lookup of NAME ended, as a note for the signatures. */
static void
query_failed(struct ag_dkim_msg *m, const char *name, ag_status st)
{
	char pn[80];

	copy_text(pn, sizeof(pn), name, strlen(name), false);
	m->nomem = m->nomem || st == AG_NOMEM;
	if (st == AG_TEMPFAIL || st == AG_NOMEM) {
		note(m, name, AG_DKIM_TEMPERROR, "key lookup for %s %s", pn,
		    st == AG_NOMEM ? "ran out of memory" : "timed out or failed");
	} else {
		note(m, name, AG_DKIM_PERMERROR, "key %s %s", pn, st == AG_INVALID ?
		    "is not a usable domain name" : "record too large or malformed");
	}
}

/* libopendkim's query start hook: the whole lookup, synchronously. */
static int
dns_start(void *srv, int type, unsigned char *query, unsigned char *buf,
    size_t buflen, void **qh)
{
	struct ag_dkim_msg *m = cur;
	struct ag_dns_result *res = NULL;
	const char *name = (const char *)query;
	ag_status st;

	if (m == NULL || m->k != srv || type != AG_DNS_TXT) {
		return DKIM_DNS_ERROR;	/* libopendkim: KEYFAIL */
	}
	m->q_status = DKIM_DNS_ERROR;
	m->q_len = 0;
	*qh = m;
	if (m->queries >= m->max_sigs) {
		note(m, name, AG_DKIM_TEMPERROR, "key query budget exhausted");
		return 0;
	}
	if (ag_dns_now_ms() >= m->deadline) {
		note(m, name, AG_DKIM_TEMPERROR, "no time left for the key lookup");
		m->q_status = DKIM_DNS_EXPIRED;
		return 0;
	}
	m->queries++;
	st = ag_dns_query(m->k->dns, name, AG_DNS_TXT, m->deadline, &res);
	if (st == AG_OK) {
		key_screen(m, name, res);
	}
	if ((st == AG_OK || st == AG_NOTFOUND) && res != NULL &&
	    res->packet != NULL && res->packet_len >= 12 &&
	    res->packet_len <= buflen) {
		/* as it came: NXDOMAIN or no TXT record is NOKEY to libopendkim */
		memcpy(buf, res->packet, res->packet_len);
		m->q_len = res->packet_len;
		m->q_status = DKIM_DNS_SUCCESS;
	} else {
		query_failed(m, name, st == AG_OK || st == AG_NOTFOUND ?
		    AG_PERMFAIL : st);
	}
	ag_dns_result_free(res);
	return 0;
}

/* libopendkim's waitreply hook: the answer is already there. */
static int
dns_waitreply(void *srv, void *qh, struct timeval *to, size_t *bytes,
    int *error, int *dnssec)
{
	const struct ag_dkim_msg *m = qh;

	*bytes = m->q_len;	/* libopendkim always passes all three */
	*error = 0;
	*dnssec = DKIM_DNSSEC_UNKNOWN;
	return m->q_status;
}

/* libopendkim's cancel hook: nothing is ever pending. */
static int
dns_cancel(void *srv, void *qh)
{
	return 0;
}

/* libopendkim's prescreen callback: ignore signatures past the cap and
 * those we already know to be malformed (no key query for them). */
static DKIM_CBSTAT
prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	struct ag_dkim_msg *m = cur;

	for (int i = 0; i < nsigs; i++) {
		if (m == NULL || (unsigned)i >= m->max_sigs ||
		    ((size_t)i < m->nf && m->f[i].bad)) {
			dkim_sig_ignore(sigs[i]);
		}
	}
	return DKIM_CBSTAT_CONTINUE;
}

/* ---- the verifier ------------------------------------------------------ */

/* What a verifier wants: bad signatures still get a handle and a result
 * (BADSIGHANDLES); every signature is checked (no VERIFYONE); no temporary
 * files; CRLF as the MTA gives it (no FIXCRLF); keys from DNS only, whatever
 * q= says; RSA keys of at least 1024 bits (RFC 8301 3.2). */
static bool
lib_setup(struct ag_dkim *k, char *err, size_t errlen)
{
	uint32_t flags = DKIM_LIBFLAGS_BADSIGHANDLES;
	unsigned int bits = AG_DKIM_MIN_RSA_BITS, tmo = AG_DKIM_DNS_TIMEOUT_S;
	dkim_query_t qm = DKIM_QUERY_DNS;
	const struct {
		int opt;
		void *val;
		size_t len;
	} opts[] = {
		{ DKIM_OPTS_FLAGS, &flags, sizeof(flags) },
		{ DKIM_OPTS_MINKEYBITS, &bits, sizeof(bits) },
		{ DKIM_OPTS_TIMEOUT, &tmo, sizeof(tmo) },
		{ DKIM_OPTS_QUERYMETHOD, &qm, sizeof(qm) },
	};

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if (dkim_options(k->lib, DKIM_OP_SETOPT, opts[i].opt, opts[i].val,
		    opts[i].len) != DKIM_STAT_OK) {
			snprintf(err, errlen, "libopendkim refuses option %d",
			    opts[i].opt);
			return false;
		}
	}
	if (!dkim_libfeature(k->lib, DKIM_FEATURE_SHA256) ||
	    !dkim_libfeature(k->lib, DKIM_FEATURE_ED25519)) {
		snprintf(err, errlen, "libopendkim lacks SHA-256 or Ed25519");
		return false;
	}
	dkim_set_prescreen(k->lib, prescreen);
	dkim_dns_set_query_service(k->lib, k);
	dkim_dns_set_query_start(k->lib, dns_start);
	dkim_dns_set_query_waitreply(k->lib, dns_waitreply);
	dkim_dns_set_query_cancel(k->lib, dns_cancel);
	dkim_dns_set_init(k->lib, NULL);
	dkim_dns_set_close(k->lib, NULL);
	return true;
}

ag_status
ag_dkim_new(struct ag_dns *dns, struct ag_dkim **out, char *err,
    size_t errlen)
{
	struct ag_dkim *k;

	*out = NULL;
	k = calloc(1, sizeof(*k));
	if (k == NULL || (k->lib = dkim_init(NULL, NULL)) == NULL) {
		snprintf(err, errlen, "out of memory (or libopendkim's dkim_init)");
		free(k);
		return AG_NOMEM;
	}
	k->dns = dns;
	if (!lib_setup(k, err, errlen)) {
		dkim_close(k->lib);
		free(k);
		return AG_PERMFAIL;
	}
	*out = k;
	return AG_OK;
}

void
ag_dkim_free(struct ag_dkim *k)
{
	unsigned long hits, misses;

	if (k != NULL) {
		ag_dkim_pkey_stats(&hits, &misses);
		ag_log_debug("DKIM public keys: %lu decoded, %lu reused",
		    misses, hits);
		dkim_close(k->lib);	/* no close hook: leaves k->dns alone */
		free(k);
	}
}

struct ag_dkim_msg *
ag_dkim_msg_new(struct ag_dkim *k, const char *id, unsigned max_sigs,
    uint64_t deadline_ms)
{
	struct ag_dkim_msg *m;
	DKIM_STAT st;

	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		return NULL;
	}
	m->k = k;
	m->max_sigs = max_sigs != 0 ? max_sigs : AG_DKIM_MAX_SIGS_DEFAULT;
	m->deadline = deadline_ms;
	copy_text(m->id, sizeof(m->id), id != NULL ? id : "-",
	    id != NULL ? strlen(id) : 1, false);
	m->max_notes = m->max_sigs < AG_DKIM_MAX_NOTES ? m->max_sigs :
	    AG_DKIM_MAX_NOTES;
	m->notes = calloc(m->max_notes, sizeof(*m->notes));
	m->dkim = dkim_verify(k->lib, (const unsigned char *)m->id, NULL, &st);
	if (m->notes == NULL || m->dkim == NULL) {
		ag_dkim_msg_free(m);
		return NULL;
	}
	return m;
}

void
ag_dkim_msg_free(struct ag_dkim_msg *m)
{
	if (m != NULL) {
		if (m->dkim != NULL) {
			dkim_free(m->dkim);
		}
		free(m->buf);
		free(m->f);
		free(m->notes);
		free(m);
	}
}

/* Build "NAME:VALUE" in *BUF (VALUE as it follows the colon, leading
 * whitespace included), bare LF made CRLF (opendkim's milter does the
 * same: MTAs hand folded lines over with LF).  Shared with the signing
 * side (lib/dkimsign.c).  AG_INVALID when too long to take. */
ag_status
ag_dkim_field(char **buf, size_t *cap, const char *name, const char *value,
    size_t *outlen)
{
	size_t nlen = strlen(name), vlen = strlen(value), need, o;
	char prev = '\0', *b;

	if (nlen > AG_DKIM_FIELD_MAX || vlen > AG_DKIM_FIELD_MAX) {
		return AG_INVALID;
	}
	need = nlen + 1 + 2 * vlen + 1;		/* bounded: no overflow */
	if (need > *cap) {
		char *p = realloc(*buf, need);

		if (p == NULL) {
			return AG_NOMEM;
		}
		*buf = p;
		*cap = need;
	}
	b = *buf;
	memcpy(b, name, nlen);
	o = nlen;
	b[o++] = ':';
	for (size_t i = 0; i < vlen; i++) {
		if (value[i] == '\n' && prev != '\r') {
			b[o++] = '\r';
		}
		b[o++] = value[i];
		prev = value[i];
	}
	b[o] = '\0';
	*outlen = o;
	return AG_OK;
}

/* Is NAME (trailing white space aside) DKIM-Signature? */
static bool
is_sig_field(const char *name)
{
	static const char sig[] = "DKIM-Signature";
	size_t len = strlen(name);

	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t')) {
		len--;
	}
	return len == sizeof(sig) - 1 && strncasecmp(name, sig, len) == 0;
}

ag_status
ag_dkim_header(struct ag_dkim_msg *m, const char *name, const char *value)
{
	DKIM_STAT dst;
	size_t len;
	ag_status st;

	if (m == NULL || name == NULL || m->eoh_done) {
		return AG_OK;
	}
	if (value == NULL) {
		value = "";
	}
	st = ag_dkim_field(&m->buf, &m->bufcap, name, value, &len);
	if (st == AG_NOMEM) {
		return st;
	}
	if (is_sig_field(name) && field_add(m, value) == AG_NOMEM) {
		return AG_NOMEM;
	}
	if (st != AG_OK || m->nheaders >= AG_DKIM_HEADERS_MAX ||
	    m->hbytes + len > AG_DKIM_HEADER_BYTES_MAX) {
		m->over = true;	/* a field we cannot take: over budget */
		return AG_OK;
	}
	m->nheaders++;
	m->hbytes += len;
	m->hmax = len > m->hmax ? len : m->hmax;
	dst = dkim_header(m->dkim, (unsigned char *)m->buf, len);
	/* SYNTAX is bad input (it shows in the results); NORESOURCE is memory */
	return dst == DKIM_STAT_NORESOURCE ? AG_NOMEM : AG_OK;
}

/*
 * Whether libopendkim's work at the end of the headers stays bounded: it
 * canonicalizes every signature it parsed, including those we ignore.
 * Per signature, header selection walks every header field for every name
 * in h= (up to 4 KB of it), hashing reads the selected fields and the
 * signature's own, and each distinct (hash, body canonicalization, l=) is
 * one more pass over the body.
 */
static bool
budget_ok(const struct ag_dkim_msg *m)
{
	unsigned long long select = 0, hashed = 0;
	size_t bodies = 0;

	if (m->over) {
		return false;
	}
	for (size_t i = 0; i < m->nf; i++) {
		const struct field *f = &m->f[i];
		unsigned long long h = (unsigned long long)f->hnames * m->hmax;
		bool seen = false;

		select += (unsigned long long)f->hnames * (m->nheaders + 1);
		hashed += (h < m->hbytes ? h : m->hbytes) + m->hmax;
		for (size_t j = 0; j < i && !seen; j++) {
			seen = m->f[j].halg == f->halg &&
			    m->f[j].bcanon == f->bcanon && m->f[j].blen == f->blen;
		}
		bodies += !seen;
	}
	return select <= AG_DKIM_SELECT_MAX && hashed <= AG_DKIM_HASH_MAX &&
	    bodies <= AG_DKIM_BODY_HASHES_MAX;
}

ag_status
ag_dkim_eoh(struct ag_dkim_msg *m)
{
	if (m == NULL || m->eoh_done) {
		return AG_OK;
	}
	m->eoh_done = true;
	if (m->nf == 0 && !m->over) {
		m->skip = true;		/* unsigned: nothing to hash */
		return AG_OK;
	}
	if (!budget_ok(m)) {
		m->skip = true;
		m->skip_why = "not evaluated: message too costly to verify";
		return AG_OK;
	}
	for (size_t i = 0; i < m->nf; i++) {
		m->want_len |= m->f[i].has_l;
	}
	cur = m;
	(void)dkim_eoh(m->dkim);	/* outcomes show per signature at eom */
	cur = NULL;
	return m->nomem ? AG_NOMEM : AG_OK;
}

ag_status
ag_dkim_body(struct ag_dkim_msg *m, const unsigned char *buf, size_t len)
{
	ag_status st;

	if (m == NULL || buf == NULL || len == 0 || m->eom_done) {
		return AG_OK;
	}
	if (!m->eoh_done && (st = ag_dkim_eoh(m)) != AG_OK) {
		return st;
	}
	if (m->skip) {
		return AG_OK;
	}
	if (m->want_len) {
		ag_dkimlen_add(&m->len, buf, len);
	}
	/* libopendkim only reads the chunk */
	return dkim_body(m->dkim, (unsigned char *)(uintptr_t)buf, len) ==
	    DKIM_STAT_NORESOURCE ? AG_NOMEM : AG_OK;
}

/* Copy the text V (may be NULL) into DST, unless KEEP and DST has one. */
static void
put_text(char *dst, size_t dstsz, const void *v, bool squeeze, bool keep)
{
	if (v != NULL && !(keep && dst[0] != '\0')) {
		copy_text(dst, dstsz, v, strlen(v), squeeze);
	}
}

/* The values libopendkim parsed: over ours, or only where ours are empty
 * (KEEP: a signature we found malformed, reported as we read it). */
static void
lib_texts(struct ag_dkim_msg *m, DKIM_SIGINFO *sig, struct ag_dkim_result *r,
    bool keep)
{
	unsigned char id[256];

	put_text(r->domain, sizeof(r->domain), dkim_sig_getdomain(sig), false,
	    keep);
	put_text(r->selector, sizeof(r->selector), dkim_sig_getselector(sig),
	    false, keep);
	put_text(r->algorithm, sizeof(r->algorithm), dkim_sig_gettagvalue(sig,
	    false, (unsigned char *)"a"), false, keep);
	put_text(r->b, 9, dkim_sig_gettagvalue(sig, false, (unsigned char *)"b"),
	    true, keep);
	if (dkim_sig_getidentity(m->dkim, sig, id, sizeof(id)) == DKIM_STAT_OK) {
		put_text(r->identity, sizeof(r->identity), id, false, keep);
	}
}

/* libopendkim's errors that map to one result and reason. */
static const struct {
	int err;
	enum ag_dkim_res res;
	const char *why;
} errmap[] = {
	{ DKIM_SIGERROR_TOOLARGE_L, AG_DKIM_FAIL, "body shorter than l=" },
	{ DKIM_SIGERROR_NOKEY, AG_DKIM_PERMERROR, "no key for signature" },
	{ DKIM_SIGERROR_KEYFAIL, AG_DKIM_TEMPERROR, "key lookup failed" },
	{ DKIM_SIGERROR_KEYREVOKED, AG_DKIM_PERMERROR, "key revoked" },
	{ DKIM_SIGERROR_KEYTOOSMALL, AG_DKIM_POLICY,
	  "RSA key shorter than 1024 bits (RFC 8301)" },
};

/* libopendkim's verdict on one signature, in RFC 8601 terms. */
static enum ag_dkim_res
lib_result(DKIM_SIGINFO *sig, struct ag_dkim_result *r)
{
	unsigned flags = dkim_sig_getflags(sig);
	int err = dkim_sig_geterror(sig), bh = dkim_sig_getbh(sig);
	const char *s;

	for (size_t i = 0; i < sizeof(errmap) / sizeof(errmap[0]); i++) {
		if (errmap[i].err == err) {
			set_reason(r, "%s", errmap[i].why);
			return errmap[i].res;
		}
	}
	if (err == DKIM_SIGERROR_OK && (flags & DKIM_SIGFLAG_PASSED) &&
	    bh == DKIM_SIGBH_MATCH) {
		return AG_DKIM_PASS;
	}
	if (err == DKIM_SIGERROR_OK || err == DKIM_SIGERROR_BADSIG ||
	    (err == DKIM_SIGERROR_UNKNOWN && (flags & DKIM_SIGFLAG_PROCESSED))) {
		set_reason(r, bh == DKIM_SIGBH_MISMATCH ? "body hash mismatch" :
		    "signature did not verify");
		return AG_DKIM_FAIL;
	}
	if (err == DKIM_SIGERROR_UNKNOWN) {
		/* never reached the key: libopendkim failed on its side */
		set_reason(r, "signature could not be processed");
		return AG_DKIM_TEMPERROR;
	}
	s = dkim_sig_geterrorstr(err);
	set_reason(r, "%s", s != NULL ? s : "signature not usable");
	return AG_DKIM_PERMERROR;
}

/* Does key type KTYPE fit the algorithm ALG (RFC 6376 3.6.1, 8463 4)? */
static bool
ktype_fits(const char *ktype, const char *alg)
{
	size_t n = strlen(ktype);

	return n > 0 && strncasecmp(alg, ktype, n) == 0 && alg[n] == '-';
}

/* Is ERR found in the signature itself, before any key lookup (the errors
 * of dkim_siglist_setup)? */
static bool
sig_level(int err)
{
	return (err >= DKIM_SIGERROR_VERSION && err <= DKIM_SIGERROR_CORRUPT_B) ||
	    (err >= DKIM_SIGERROR_MISSING_BH && err <= DKIM_SIGERROR_CORRUPT_BH) ||
	    err == DKIM_SIGERROR_EMPTY_H || err == DKIM_SIGERROR_INVALID_H ||
	    err == DKIM_SIGERROR_MISSING_V || err == DKIM_SIGERROR_EMPTY_V;
}

/* The key note of SIG's key, if its key was looked up. */
static struct keynote *
sig_note(struct ag_dkim_msg *m, DKIM_SIGINFO *sig)
{
	const char *s = (const char *)dkim_sig_getselector(sig);
	const char *d = (const char *)dkim_sig_getdomain(sig);
	char name[AG_DKIM_NAME_MAX + 2];

	int n;

	if (s == NULL || d == NULL || sig_level(dkim_sig_geterror(sig)) ||
	    (n = snprintf(name, sizeof(name), "%s._domainkey.%s", s, d)) < 0 ||
	    (size_t)n >= sizeof(name)) {
		return NULL;
	}
	return note_find(m, name, (size_t)n);
}

/* RFC 8301 and t=y on top of libopendkim's verdict. */
static void
sig_policy(DKIM_SIGINFO *sig, struct ag_dkim_result *r)
{
	dkim_alg_t alg = DKIM_SIGN_RSASHA256;

	(void)dkim_sig_getsignalg(sig, &alg);
	if (r->result == AG_DKIM_PASS && alg == DKIM_SIGN_RSASHA1) {
		r->result = AG_DKIM_POLICY;
		set_reason(r, "rsa-sha1 is not acceptable (RFC 8301)");
	}
	if (dkim_sig_getflags(sig) & DKIM_SIGFLAG_TESTKEY) {
		if (r->result == AG_DKIM_FAIL) {
			r->result = AG_DKIM_NEUTRAL;
		}
		if (r->result == AG_DKIM_PASS || r->result == AG_DKIM_NEUTRAL) {
			set_reason(r, "key in testing mode (t=y)");
		}
	}
}

/*
 * A pass whose l= leaves part of the body unsigned is "policy": whatever
 * follows the signed part is anyone's (RFC 6376 8.2), and a pass would
 * lend the signer's name to it (DMARC, --dkim require).
 */
static void
sig_length(struct ag_dkim_msg *m, DKIM_SIGINFO *sig, struct ag_dkim_result *r)
{
	ssize_t l = -1;
	dkim_canon_t hc, bc = DKIM_CANON_SIMPLE;
	unsigned long long body;

	if (r->result != AG_DKIM_PASS || dkim_sig_getcanonlen(m->dkim, sig,
	    NULL, NULL, &l) != DKIM_STAT_OK || l < 0) {
		return;
	}
	(void)dkim_sig_getcanons(sig, &hc, &bc);
	body = ag_dkimlen_get(&m->len, bc == DKIM_CANON_RELAXED);
	if (m->want_len && body <= (unsigned long long)l) {
		return;
	}
	r->result = AG_DKIM_POLICY;
	set_reason(r, "body only partly signed (l=%lld of %llu bytes)",
	    (long long)l, body);
}

/* The result of signature I, which libopendkim knows as SIG. */
static void
sig_result(struct ag_dkim_msg *m, size_t i, DKIM_SIGINFO *sig)
{
	struct field *f = &m->f[i];
	struct ag_dkim_result *r = &f->r;
	const struct keynote *kn;
	unsigned bits = 0;

	lib_texts(m, sig, r, f->bad);
	if (f->bad) {
		return;		/* permerror, with our reason */
	}
	r->reason[0] = '\0';
	r->result = lib_result(sig, r);
	kn = sig_note(m, sig);
	if (kn != NULL && kn->res != AG_DKIM_NONE) {
		r->result = kn->res;
		set_reason(r, "%s", kn->why);
	} else if (kn != NULL && !ktype_fits(kn->ktype, r->algorithm)) {
		r->result = AG_DKIM_PERMERROR;
		set_reason(r, "key type k=%s does not fit a=%s", kn->ktype,
		    r->algorithm);
	}
	sig_policy(sig, r);
	sig_length(m, sig, r);
	if (dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK && bits > 0) {
		r->key_bits = bits;
	} else if (strcasecmp(r->algorithm, "ed25519-sha256") == 0 &&
	    (dkim_sig_getflags(sig) & DKIM_SIGFLAG_PASSED)) {
		r->key_bits = 256;	/* RFC 8463: 32-byte keys */
	}
}

/* Results for every signature field, from libopendkim's list. */
static void
results_build(struct ag_dkim_msg *m)
{
	DKIM_SIGINFO **sigs = NULL;
	int n = 0;

	if (m->skip || dkim_getsiglist(m->dkim, &sigs, &n) != DKIM_STAT_OK ||
	    sigs == NULL) {
		n = 0;
	}
	for (size_t i = 0; i < m->nf; i++) {
		struct ag_dkim_result *r = &m->f[i].r;

		if (m->skip) {
			r->result = AG_DKIM_NEUTRAL;
			r->evaluated = false;
			set_reason(r, "%s", m->skip_why);
		} else if (i >= m->max_sigs) {
			r->result = AG_DKIM_NEUTRAL;
			r->evaluated = false;
			set_reason(r, "not evaluated: more than %u signatures",
			    m->max_sigs);
		} else if (i < (size_t)n) {
			sig_result(m, i, sigs[i]);
		} else if (!m->f[i].bad) {
			/* libopendkim kept no handle for it */
			r->result = AG_DKIM_PERMERROR;
			set_reason(r, "signature could not be processed");
		}
	}
}

ag_status
ag_dkim_eom(struct ag_dkim_msg *m)
{
	ag_status st;

	if (m == NULL || m->eom_done) {
		return AG_OK;
	}
	if (!m->eoh_done && (st = ag_dkim_eoh(m)) != AG_OK) {
		return st;
	}
	m->eom_done = true;
	if (!m->skip) {
		cur = m;
		(void)dkim_eom(m->dkim, NULL);	/* outcomes: results_build */
		cur = NULL;
	}
	results_build(m);
	return m->nomem ? AG_NOMEM : AG_OK;
}

size_t
ag_dkim_count(const struct ag_dkim_msg *m)
{
	return m != NULL && m->eom_done ? m->nf : 0;
}

const struct ag_dkim_result *
ag_dkim_get(const struct ag_dkim_msg *m, size_t i)
{
	return m != NULL && m->eom_done && i < m->nf ? &m->f[i].r : NULL;
}
