/*
 * history.c - the DMARC history (see history.h): the queue sessions push
 * into (DMARC rows and message rows, msglog.c), the writer and pruner the
 * engine's watcher runs, and the RFC 7489 aggregate report.
 *
 * The queue is a ring of pointers to rows, each row one allocation (the
 * struct and its strings), made before the lock is taken.  Only the
 * flusher removes rows, and only from the head, so it can write a batch
 * without holding the lock and remove it once the transaction commits;
 * a batch that fails stays at the head for the next call.
 *
 * The table (dmarc_result) is created by migration 4 in store.c; this
 * module owns what goes into it.  The report groups rows with GROUP BY in
 * one read transaction, so its memory does not grow with the number of
 * messages, and checks every stored name before it writes it: a corrupt
 * row is an error, never invalid XML.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "addr.h"
#include "history.h"
#include "log.h"

/* RFC 6376 3.1: a selector is a domain-name-like string; ours caps at 63. */
#define HIST_SELECTOR_MAX 63
#define HIST_IP_MAX 45			/* INET6_ADDRSTRLEN - 1 */
#define HIST_REASON_MAX 32		/* a PolicyOverrideType name */
#define HIST_COMMENT_MAX 128
/* The encoded dkim column: per signature "RESULT:DOMAIN:SELECTOR " with
 * every byte of DOMAIN and SELECTOR at worst "%XX". */
#define HIST_DKIM_ENTRY_MAX (9 + 1 + AG_ADDR_DOMAIN_MAX * 3 + 1 + \
	HIST_SELECTOR_MAX * 3 + 1)
#define HIST_DKIM_TEXT_MAX (AG_HISTORY_DKIM_MAX * HIST_DKIM_ENTRY_MAX + 1)
#define DAY_SECONDS 86400

/* A queued row: a message row (msg), or the caller's DMARC row with
 * every string copied into buf. */
struct hrow {
	struct ag_msglog_row *msg;	/* a message row, or NULL */
	struct ag_history_row r;
	struct ag_history_dkim dkim[AG_HISTORY_DKIM_MAX];
	char buf[];
};

struct ag_history {
	pthread_mutex_t lock;		/* guards everything below */
	struct hrow **ring;
	size_t max, head, count;
	uint64_t dropped;		/* since ag_history_new */
	uint64_t burst;			/* dropped since the last write */
	pthread_mutex_t flush_lock;	/* one flusher at a time */
};

/* ---- the queue -------------------------------------------------------- */

ag_status
ag_history_new(size_t max, struct ag_history **out)
{
	struct ag_history *h;

	*out = NULL;
	if (max == 0) {
		max = AG_HISTORY_QUEUE_MAX;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL || (h->ring = calloc(max, sizeof(*h->ring))) == NULL) {
		free(h);
		return AG_NOMEM;
	}
	h->max = max;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->flush_lock, NULL);
	*out = h;
	return AG_OK;
}

/* Free a queued row. */
static void
hrow_free(struct hrow *q)
{
	if (q != NULL) {
		free(q->msg);
		free(q);
	}
}

void
ag_history_free(struct ag_history *h)
{
	if (h == NULL) {
		return;
	}
	for (size_t i = 0; i < h->count; i++) {
		hrow_free(h->ring[(h->head + i) % h->max]);
	}
	free(h->ring);
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->flush_lock);
	free(h);
}

/* Length of S, at most MAX.  A loop, not strnlen(): GCC's overread
 * check misfires on strnlen() of a short literal inlined here. */
static size_t
bounded_len(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && s[n] != '\0') {
		n++;
	}
	return n;
}

/* Bytes of S kept (at most MAX); NULL counts as absent. */
static size_t
cut_len(const char *s, size_t max)
{
	return s != NULL ? bounded_len(s, max) : 0;
}

/* Copy S (cut to MAX bytes) to *P and advance it; NULL stays NULL. */
static const char *
put_str(char **p, const char *s, size_t max)
{
	size_t n;
	char *d = *p;

	if (s == NULL) {
		return NULL;
	}
	n = bounded_len(s, max);
	memcpy(d, s, n);
	d[n] = '\0';
	*p = d + n + 1;
	return d;
}

/* One allocation holding ROW and copies of its strings, or NULL. */
static struct hrow *
row_copy(const struct ag_history_row *row)
{
	size_t nd = row->ndkim < AG_HISTORY_DKIM_MAX ? row->ndkim :
	    AG_HISTORY_DKIM_MAX;
	size_t need = 0, i;
	struct hrow *q;
	char *p;

	if (nd > 0 && row->dkim == NULL) {
		nd = 0;
	}
	need += cut_len(row->source_ip, HIST_IP_MAX) + 1;
	need += cut_len(row->header_from, AG_ADDR_DOMAIN_MAX) + 1;
	need += cut_len(row->envelope_from, AG_ADDR_DOMAIN_MAX) + 1;
	need += cut_len(row->policy_domain, AG_ADDR_DOMAIN_MAX) + 1;
	need += cut_len(row->reason, HIST_REASON_MAX) + 1;
	need += cut_len(row->reason_comment, HIST_COMMENT_MAX) + 1;
	need += cut_len(row->spf_domain, AG_ADDR_DOMAIN_MAX) + 1;
	for (i = 0; i < nd; i++) {
		need += cut_len(row->dkim[i].domain, AG_ADDR_DOMAIN_MAX) + 1;
		need += cut_len(row->dkim[i].selector, HIST_SELECTOR_MAX) + 1;
	}
	q = malloc(sizeof(*q) + need);	/* bounded: a few KB at most */
	if (q == NULL) {
		return NULL;
	}
	q->msg = NULL;
	q->r = *row;
	p = q->buf;
	q->r.source_ip = put_str(&p, row->source_ip ? row->source_ip : "",
	    HIST_IP_MAX);
	q->r.header_from = put_str(&p, row->header_from ? row->header_from :
	    "", AG_ADDR_DOMAIN_MAX);
	q->r.envelope_from = put_str(&p, row->envelope_from ?
	    row->envelope_from : "", AG_ADDR_DOMAIN_MAX);
	q->r.policy_domain = put_str(&p, row->policy_domain,
	    AG_ADDR_DOMAIN_MAX);
	q->r.reason = put_str(&p, row->reason, HIST_REASON_MAX);
	q->r.reason_comment = put_str(&p, row->reason_comment,
	    HIST_COMMENT_MAX);
	q->r.spf_domain = put_str(&p, row->spf_domain, AG_ADDR_DOMAIN_MAX);
	for (i = 0; i < nd; i++) {
		q->dkim[i].result = row->dkim[i].result;
		q->dkim[i].domain = put_str(&p, row->dkim[i].domain ?
		    row->dkim[i].domain : "", AG_ADDR_DOMAIN_MAX);
		q->dkim[i].selector = put_str(&p, row->dkim[i].selector ?
		    row->dkim[i].selector : "", HIST_SELECTOR_MAX);
	}
	q->r.ndkim = nd;
	q->r.dkim = q->dkim;
	return q;
}

/* Queue Q (NULL: out of memory); false when it is dropped. */
static bool
push(struct ag_history *h, struct hrow *q)
{
	bool first = false, nomem = q == NULL;

	pthread_mutex_lock(&h->lock);
	if (nomem || h->count == h->max) {
		h->dropped++;
		first = h->burst++ == 0;
		pthread_mutex_unlock(&h->lock);
		hrow_free(q);
		if (first) {
			ag_log_warning("history: %s: results are dropped "
			    "until the database catches up", nomem ?
			    "out of memory" : "queue full");
		}
		return false;
	}
	h->ring[(h->head + h->count) % h->max] = q;
	h->count++;
	pthread_mutex_unlock(&h->lock);
	return true;
}

bool
ag_history_push(struct ag_history *h, const struct ag_history_row *row)
{
	return push(h, row_copy(row));
}

bool
ag_history_push_msg(struct ag_history *h, const struct ag_msglog_row *row)
{
	struct hrow *q = malloc(sizeof(*q));

	if (q != NULL && (q->msg = ag_msglog_copy(row)) == NULL) {
		free(q);
		q = NULL;
	}
	return push(h, q);
}

size_t
ag_history_pending(struct ag_history *h)
{
	size_t n;

	pthread_mutex_lock(&h->lock);
	n = h->count;
	pthread_mutex_unlock(&h->lock);
	return n;
}

uint64_t
ag_history_dropped(struct ag_history *h)
{
	uint64_t n;

	pthread_mutex_lock(&h->lock);
	n = h->dropped;
	pthread_mutex_unlock(&h->lock);
	return n;
}

/* ---- writing ------------------------------------------------------------ */

/* Append S to OUT (at *USED), bytes outside 0x21..0x7e and '%' ':' as %XX. */
static void
pct_encode(char *out, size_t outsz, size_t *used, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*used + 4 > outsz) {
			return;		/* cannot happen: sized for the worst */
		}
		if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == ':') {
			out[(*used)++] = '%';
			out[(*used)++] = hex[*p >> 4];
			out[(*used)++] = hex[*p & 0xf];
		} else {
			out[(*used)++] = (char)*p;
		}
	}
	out[*used] = '\0';
}

/* The dkim column of R: "RESULT:DOMAIN:SELECTOR ..." (see store.c). */
static void
dkim_encode(const struct ag_history_row *r, char *out, size_t outsz)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < r->ndkim; i++) {
		used += (size_t)snprintf(out + used, outsz - used, "%s%s:",
		    i > 0 ? " " : "", ag_dkim_res_name(r->dkim[i].result));
		pct_encode(out, outsz, &used, r->dkim[i].domain);
		out[used++] = ':';
		out[used] = '\0';
		pct_encode(out, outsz, &used, r->dkim[i].selector);
	}
}

/* "0:1:d:s": the fo= options of BITS in the record's notation. */
static void
fo_format(unsigned bits, char *out, size_t outsz)
{
	static const struct { unsigned bit; const char *name; } fo[] = {
		{ AG_DMARC_FO_0, "0" }, { AG_DMARC_FO_1, "1" },
		{ AG_DMARC_FO_D, "d" }, { AG_DMARC_FO_S, "s" },
	};
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(fo) / sizeof(fo[0]); i++) {
		if ((bits & fo[i].bit) && used + 3 <= outsz) {
			used += (size_t)snprintf(out + used, outsz - used, "%s%s",
			    used > 0 ? ":" : "", fo[i].name);
		}
	}
	if (used == 0) {
		snprintf(out, outsz, "0");	/* RFC 7489 6.3: the default */
	}
}

/* Bind TEXT (NULL: SQL NULL) to column COL; the row outlives the step. */
static void
bind_text(sqlite3_stmt *st, int col, const char *text)
{
	if (text == NULL) {
		sqlite3_bind_null(st, col);
	} else {
		sqlite3_bind_text(st, col, text, -1, SQLITE_STATIC);
	}
}

#define INSERT_SQL "INSERT INTO dmarc_result (time, source_ip, header_from," \
	" envelope_from, policy_domain, p, sp, pct, adkim, aspf, fo, result," \
	" disposition, dkim_aligned, spf_aligned, sampled_out, reason," \
	" reason_comment, spf_domain, spf_scope, spf_result, dkim)" \
	" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?," \
	" ?, ?)"

/* Bind and insert one row with the prepared INSERT_SQL statement. */
static int
insert_row(sqlite3_stmt *st, const struct ag_history_row *r)
{
	char dkim[HIST_DKIM_TEXT_MAX], fo[16];
	bool pol = r->policy_domain != NULL;
	bool spf = r->spf_domain != NULL;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite3_bind_int64(st, 1, r->time);
	bind_text(st, 2, r->source_ip);
	bind_text(st, 3, r->header_from);
	bind_text(st, 4, r->envelope_from);
	bind_text(st, 5, r->policy_domain);
	if (pol) {
		fo_format(r->fo, fo, sizeof(fo));
		bind_text(st, 6, ag_dmarc_policy_name(r->p));
		bind_text(st, 7, ag_dmarc_policy_name(r->sp));
		sqlite3_bind_int(st, 8, (int)(r->pct > 100 ? 100 : r->pct));
		bind_text(st, 9, r->adkim_strict ? "s" : "r");
		bind_text(st, 10, r->aspf_strict ? "s" : "r");
		sqlite3_bind_text(st, 11, fo, -1, SQLITE_TRANSIENT);
	}
	bind_text(st, 12, ag_dmarc_res_name(r->result));
	bind_text(st, 13, ag_dmarc_policy_name(r->disposition));
	sqlite3_bind_int(st, 14, r->dkim_aligned);
	sqlite3_bind_int(st, 15, r->spf_aligned);
	sqlite3_bind_int(st, 16, r->sampled_out);
	bind_text(st, 17, r->reason);
	bind_text(st, 18, r->reason_comment);
	bind_text(st, 19, r->spf_domain);
	if (spf) {
		bind_text(st, 20, r->spf_scope == AG_SPF_HELO ? "helo" : "mfrom");
		bind_text(st, 21, ag_spf_result_name(r->spf_result));
	}
	dkim_encode(r, dkim, sizeof(dkim));
	sqlite3_bind_text(st, 22, dkim, -1, SQLITE_TRANSIENT);
	return sqlite3_step(st);
}

/* Insert ROWS[0..N) in one IMMEDIATE transaction. */
static ag_status
write_batch(struct ag_store *s, struct hrow *const *rows, size_t n)
{
	sqlite3 *db = ag_store_sqlite(s);
	sqlite3_stmt *st = NULL, *mst = NULL;
	int rc;
	size_t i;

	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_prepare_v2(db, INSERT_SQL, -1, &st, NULL);
	}
	if (rc == SQLITE_OK) {
		rc = sqlite3_prepare_v2(db, AG_MSGLOG_INSERT_SQL, -1, &mst,
		    NULL);
	}
	for (i = 0; rc == SQLITE_OK && i < n; i++) {
		rc = rows[i]->msg != NULL ? ag_msglog_insert(mst, rows[i]->msg) :
		    insert_row(st, &rows[i]->r);
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
	}
	sqlite3_finalize(st);
	sqlite3_finalize(mst);
	if (rc == SQLITE_OK) {
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		ag_status ret = ag_store_sqlite_error(s, rc,
		    "saving the history");

		if (!sqlite3_get_autocommit(db)) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		}
		return ret;
	}
	return AG_OK;
}

ag_status
ag_history_flush(struct ag_history *h, struct ag_store *s, size_t *nwritten)
{
	struct hrow *batch[AG_HISTORY_BATCH];
	size_t n, i, total = 0;
	uint64_t burst = 0;
	ag_status st = AG_OK;

	pthread_mutex_lock(&h->flush_lock);
	for (;;) {
		pthread_mutex_lock(&h->lock);
		n = h->count < AG_HISTORY_BATCH ? h->count : AG_HISTORY_BATCH;
		for (i = 0; i < n; i++) {
			batch[i] = h->ring[(h->head + i) % h->max];
		}
		pthread_mutex_unlock(&h->lock);
		if (n == 0) {
			break;
		}
		/* pushers only append: the head stays ours while we write */
		st = write_batch(s, batch, n);
		if (st != AG_OK) {
			break;
		}
		pthread_mutex_lock(&h->lock);
		h->head = (h->head + n) % h->max;
		h->count -= n;
		if (h->burst > 0) {
			burst = h->burst;
			h->burst = 0;
		}
		pthread_mutex_unlock(&h->lock);
		for (i = 0; i < n; i++) {
			hrow_free(batch[i]);
		}
		total += n;
	}
	pthread_mutex_unlock(&h->flush_lock);
	if (burst > 0) {
		ag_log_warning("history: %llu results were dropped while "
		    "the queue was full", (unsigned long long)burst);
	}
	if (nwritten != NULL) {
		*nwritten = total;
	}
	return st;
}

ag_status
ag_history_prune(struct ag_store *s, unsigned days, int64_t now,
    size_t *ndeleted)
{
	int64_t cutoff = days == 0 ? INT64_MAX :
	    now - (int64_t)days * DAY_SECONDS;
	size_t ndmarc = 0, nmsg = 0;
	ag_status st;

	st = ag_store_delete_before(s, "dmarc_result", cutoff,
	    "pruning DMARC results", &ndmarc);
	if (st == AG_OK) {
		st = ag_msglog_prune(s, cutoff, &nmsg);
	}
	if (ndeleted != NULL) {
		*ndeleted = ndmarc + nmsg;
	}
	return st;
}

/* ---- XML ---------------------------------------------------------------- */

/* Length of the UTF-8 sequence at P of a character XML 1.0 allows
 * (past U+009F, no surrogates, not U+FFFE/U+FFFF), or 0. */
static size_t
xml_utf8_len(const unsigned char *p)
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
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90) ||
	    (p[0] == 0xc2 && p[1] < 0xa0) ||
	    (p[0] == 0xef && p[1] == 0xbf && p[2] >= 0xbe)) {
		return 0;	/* overlong, surrogate, C1, U+FFFE/U+FFFF */
	}
	return n;
}

void
ag_history_xml_put(FILE *fp, const char *s)
{
	const unsigned char *p;
	size_t n;

	for (p = (const unsigned char *)(s != NULL ? s : ""); *p != '\0';
	    p += n) {
		n = 1;
		switch (*p) {
		case '&':
			fputs("&amp;", fp);
			continue;
		case '<':
			fputs("&lt;", fp);
			continue;
		case '>':
			fputs("&gt;", fp);
			continue;
		case '"':
			fputs("&quot;", fp);
			continue;
		case '\'':
			fputs("&apos;", fp);
			continue;
		case '\\':
			fputs("\\\\", fp);
			continue;
		default:
			break;
		}
		if (*p >= 0x20 && *p < 0x7f) {
			fputc(*p, fp);
		} else if (*p >= 0x80 && (n = xml_utf8_len(p)) > 0) {
			fwrite(p, 1, n, fp);
		} else {
			n = 1;
			fprintf(fp, "\\x%02x", *p);
		}
	}
}

/* "<NAME>VALUE</NAME>" on its own line at DEPTH. */
static void
xml_elem(FILE *fp, int depth, const char *name, const char *value)
{
	fprintf(fp, "%*s<%s>", depth * 2, "", name);
	ag_history_xml_put(fp, value);
	fprintf(fp, "</%s>\n", name);
}

/* "<NAME>" (OPEN) or "</NAME>" on its own line at DEPTH. */
static void
xml_tag(FILE *fp, int depth, const char *name, bool open)
{
	fprintf(fp, "%*s<%s%s>\n", depth * 2, "", open ? "" : "/", name);
}

/* ---- reading back --------------------------------------------------------- */

/* Is S one of NAMES (NULL-terminated)? */
static bool
one_of(const char *s, const char *const *names)
{
	for (; s != NULL && *names != NULL; names++) {
		if (strcmp(s, *names) == 0) {
			return true;
		}
	}
	return false;
}

static const char *const disp_names[] = { "none", "quarantine", "reject",
	NULL };
static const char *const align_names[] = { "r", "s", NULL };
static const char *const scope_names[] = { "mfrom", "helo", NULL };
static const char *const spf_names[] = { "none", "neutral", "pass", "fail",
	"softfail", "temperror", "permerror", NULL };
static const char *const dkim_names[] = { "none", "pass", "fail", "policy",
	"neutral", "temperror", "permerror", NULL };
/* RFC 7489 Appendix C PolicyOverrideType */
static const char *const override_names[] = { "forwarded", "sampled_out",
	"trusted_forwarder", "mailing_list", "local_policy", "other", NULL };

/* A corrupt value WHAT=V: the error in S. */
static ag_status
corrupt(struct ag_store *s, const char *what, const char *v)
{
	char esc[96];

	ag_log_escape(esc, sizeof(esc), v != NULL ? v : "NULL");
	return ag_store_fail(s, AG_PERMFAIL, "reading DMARC results: corrupt "
	    "row (%s '%s')", what, esc);
}

/* Column COL as text ("" for NULL). */
static const char *
col_text(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t != NULL ? (const char *)t : "";
}

/* The stored address IP as the report's IPAddress type writes it: IPv6
 * in full (the RFC 7489 pattern has no "::" form).  False if not an IP. */
static bool
ip_report_form(const char *ip, char *out, size_t outsz)
{
	unsigned char a[16];

	if (inet_pton(AF_INET, ip, a) == 1) {
		snprintf(out, outsz, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
		return true;
	}
	if (inet_pton(AF_INET6, ip, a) == 1) {
		snprintf(out, outsz, "%x:%x:%x:%x:%x:%x:%x:%x",
		    a[0] << 8 | a[1], a[2] << 8 | a[3], a[4] << 8 | a[5],
		    a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11],
		    a[12] << 8 | a[13], a[14] << 8 | a[15]);
		return true;
	}
	return false;
}

/* Decode one %XX-encoded field [P, END) into OUT; false if malformed. */
static bool
pct_decode(const char *p, const char *end, char *out, size_t outsz)
{
	size_t n = 0;

	for (; p < end; p++) {
		unsigned v;

		if (n + 1 >= outsz) {
			return false;
		}
		if (*p != '%') {
			out[n++] = *p;
			continue;
		}
		if (end - p < 3 || sscanf(p + 1, "%2x", &v) != 1 || v == 0) {
			return false;
		}
		out[n++] = (char)v;
		p += 2;
	}
	out[n] = '\0';
	return true;
}

/* Write the auth_results dkim elements of the encoded column TEXT. */
static ag_status
put_dkim(struct ag_store *s, FILE *fp, const char *text)
{
	char res[16], dom[AG_ADDR_DOMAIN_MAX + 1], sel[HIST_SELECTOR_MAX + 1];
	const char *p = text, *e, *c1, *c2;

	while (*p != '\0') {
		e = strchr(p, ' ');
		e = e != NULL ? e : p + strlen(p);
		c1 = memchr(p, ':', (size_t)(e - p));
		c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(e - c1 - 1)) :
		    NULL;
		if (c2 == NULL || (size_t)(c1 - p) >= sizeof(res) ||
		    !pct_decode(c1 + 1, c2, dom, sizeof(dom)) ||
		    !pct_decode(c2 + 1, e, sel, sizeof(sel))) {
			return corrupt(s, "dkim", text);
		}
		memcpy(res, p, (size_t)(c1 - p));
		res[c1 - p] = '\0';
		if (!one_of(res, dkim_names)) {
			return corrupt(s, "dkim result", res);
		}
		xml_tag(fp, 3, "dkim", true);
		xml_elem(fp, 4, "domain", dom);
		if (sel[0] != '\0') {
			xml_elem(fp, 4, "selector", sel);
		}
		xml_elem(fp, 4, "result", res);
		xml_tag(fp, 3, "dkim", false);
		p = *e == ' ' ? e + 1 : e;
	}
	return AG_OK;
}

/* The columns of the records query, in order. */
enum {
	R_IP, R_DISP, R_DKIM_AL, R_SPF_AL, R_SAMPLED, R_REASON, R_COMMENT,
	R_HFROM, R_EFROM, R_DKIM, R_SPF_DOM, R_SPF_SCOPE, R_SPF_RES, R_COUNT
};

#define RECORDS_SQL "SELECT source_ip, disposition, dkim_aligned," \
	" spf_aligned, sampled_out, reason, reason_comment, header_from," \
	" envelope_from, dkim, spf_domain, spf_scope, spf_result, count(*)" \
	" FROM dmarc_result WHERE time >= ?2 AND time < ?3" \
	" AND (policy_domain = ?1 OR header_from = ?1)" \
	" GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13" \
	" ORDER BY min(id)"

/* policy_evaluated's reason elements. */
static ag_status
put_reasons(struct ag_store *s, FILE *fp, sqlite3_stmt *st)
{
	const char *reason = col_text(st, R_REASON);

	if (sqlite3_column_int(st, R_SAMPLED)) {
		xml_tag(fp, 4, "reason", true);
		xml_elem(fp, 5, "type", "sampled_out");
		xml_tag(fp, 4, "reason", false);
	}
	if (reason[0] == '\0') {
		return AG_OK;
	}
	if (!one_of(reason, override_names)) {
		return corrupt(s, "reason", reason);
	}
	xml_tag(fp, 4, "reason", true);
	xml_elem(fp, 5, "type", reason);
	if (sqlite3_column_type(st, R_COMMENT) != SQLITE_NULL) {
		xml_elem(fp, 5, "comment", col_text(st, R_COMMENT));
	}
	xml_tag(fp, 4, "reason", false);
	return AG_OK;
}

/* One record element from a row of RECORDS_SQL. */
static ag_status
put_record(struct ag_store *s, FILE *fp, sqlite3_stmt *st)
{
	const char *disp = col_text(st, R_DISP), *scope, *res, *dom;
	char ip[64], count[24];
	ag_status rv;

	if (!ip_report_form(col_text(st, R_IP), ip, sizeof(ip))) {
		return corrupt(s, "source_ip", col_text(st, R_IP));
	}
	if (!one_of(disp, disp_names)) {
		return corrupt(s, "disposition", disp);
	}
	snprintf(count, sizeof(count), "%lld",
	    (long long)sqlite3_column_int64(st, R_COUNT));
	xml_tag(fp, 1, "record", true);
	xml_tag(fp, 2, "row", true);
	xml_elem(fp, 3, "source_ip", ip);
	xml_elem(fp, 3, "count", count);
	xml_tag(fp, 3, "policy_evaluated", true);
	xml_elem(fp, 4, "disposition", disp);
	xml_elem(fp, 4, "dkim", sqlite3_column_int(st, R_DKIM_AL) ? "pass" :
	    "fail");
	xml_elem(fp, 4, "spf", sqlite3_column_int(st, R_SPF_AL) ? "pass" :
	    "fail");
	if ((rv = put_reasons(s, fp, st)) != AG_OK) {
		return rv;
	}
	xml_tag(fp, 3, "policy_evaluated", false);
	xml_tag(fp, 2, "row", false);
	xml_tag(fp, 2, "identifiers", true);
	xml_elem(fp, 3, "envelope_from", col_text(st, R_EFROM));
	xml_elem(fp, 3, "header_from", col_text(st, R_HFROM));
	xml_tag(fp, 2, "identifiers", false);
	xml_tag(fp, 2, "auth_results", true);
	if ((rv = put_dkim(s, fp, col_text(st, R_DKIM))) != AG_OK) {
		return rv;
	}
	/* RFC 7489 Appendix C: always one SPF result; not checked is none */
	if (sqlite3_column_type(st, R_SPF_DOM) != SQLITE_NULL) {
		dom = col_text(st, R_SPF_DOM);
		scope = col_text(st, R_SPF_SCOPE);
		res = col_text(st, R_SPF_RES);
	} else {
		dom = col_text(st, R_EFROM);
		scope = "mfrom";
		res = "none";
	}
	if (!one_of(scope, scope_names) || !one_of(res, spf_names)) {
		return corrupt(s, "spf", res);
	}
	xml_tag(fp, 3, "spf", true);
	xml_elem(fp, 4, "domain", dom);
	xml_elem(fp, 4, "scope", scope);
	xml_elem(fp, 4, "result", res);
	xml_tag(fp, 3, "spf", false);
	xml_tag(fp, 2, "auth_results", false);
	xml_tag(fp, 1, "record", false);
	return AG_OK;
}

/* The policy a report publishes. */
struct published {
	bool found;			/* a row had a record */
	char domain[AG_ADDR_DOMAIN_MAX + 1];
	char p[16], sp[16], adkim[4], aspf[4], fo[16];
	int pct;
};

/* Read the most recent policy of the period into PUB (checked). */
static ag_status
read_published(struct ag_store *s, const struct ag_history_report_opts *o,
    struct published *pub)
{
	sqlite3 *db = ag_store_sqlite(s);
	sqlite3_stmt *st = NULL;
	int rc;
	bool fo_ok = true;
	size_t fo_len;

	memset(pub, 0, sizeof(*pub));
	snprintf(pub->domain, sizeof(pub->domain), "%s", o->domain);
	snprintf(pub->p, sizeof(pub->p), "none");
	snprintf(pub->sp, sizeof(pub->sp), "none");
	snprintf(pub->adkim, sizeof(pub->adkim), "r");
	snprintf(pub->aspf, sizeof(pub->aspf), "r");
	snprintf(pub->fo, sizeof(pub->fo), "0");
	pub->pct = AG_DMARC_PCT_DEFAULT;
	rc = sqlite3_prepare_v2(db, "SELECT policy_domain, p, sp, pct, adkim,"
	    " aspf, fo FROM dmarc_result WHERE time >= ?2 AND time < ?3"
	    " AND (policy_domain = ?1 OR header_from = ?1)"
	    " AND policy_domain IS NOT NULL"
	    " ORDER BY policy_domain = ?1 DESC, time DESC, id DESC LIMIT 1",
	    -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, o->domain, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, o->begin);
		sqlite3_bind_int64(st, 3, o->end);
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_ROW) {
		pub->found = true;
		snprintf(pub->domain, sizeof(pub->domain), "%s", col_text(st, 0));
		snprintf(pub->p, sizeof(pub->p), "%s", col_text(st, 1));
		snprintf(pub->sp, sizeof(pub->sp), "%s", col_text(st, 2));
		pub->pct = sqlite3_column_int(st, 3);
		snprintf(pub->adkim, sizeof(pub->adkim), "%s", col_text(st, 4));
		snprintf(pub->aspf, sizeof(pub->aspf), "%s", col_text(st, 5));
		fo_len = strlen(col_text(st, 6));
		snprintf(pub->fo, sizeof(pub->fo), "%s", col_text(st, 6));
		fo_ok = fo_len > 0 && fo_len < sizeof(pub->fo) &&
		    strspn(pub->fo, "01ds:") == fo_len;
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		return ag_store_sqlite_error(s, rc, "reading DMARC results");
	}
	if (!fo_ok) {
		return corrupt(s, "fo", pub->fo);
	}
	if (!one_of(pub->p, disp_names) || !one_of(pub->sp, disp_names) ||
	    !one_of(pub->adkim, align_names) || !one_of(pub->aspf, align_names) ||
	    pub->pct < 0 || pub->pct > 100) {
		return corrupt(s, "policy", pub->p);
	}
	return AG_OK;
}

/* feedback, version, report_metadata and policy_published. */
static void
put_head(FILE *fp, const struct ag_history_report_opts *o,
    const struct published *pub)
{
	char num[24], err[AG_ADDR_DOMAIN_MAX + 64];

	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n", fp);
	xml_elem(fp, 1, "version", "1.0");
	xml_tag(fp, 1, "report_metadata", true);
	xml_elem(fp, 2, "org_name", o->org_name);
	xml_elem(fp, 2, "email", o->email);
	xml_elem(fp, 2, "report_id", o->report_id);
	xml_tag(fp, 2, "date_range", true);
	snprintf(num, sizeof(num), "%lld", (long long)o->begin);
	xml_elem(fp, 3, "begin", num);
	snprintf(num, sizeof(num), "%lld", (long long)(o->end - 1));
	xml_elem(fp, 3, "end", num);
	xml_tag(fp, 2, "date_range", false);
	if (!pub->found) {
		snprintf(err, sizeof(err), "no DMARC policy record was found "
		    "for %s in this period", o->domain);
		xml_elem(fp, 2, "error", err);
	}
	xml_tag(fp, 1, "report_metadata", false);
	xml_tag(fp, 1, "policy_published", true);
	xml_elem(fp, 2, "domain", pub->domain);
	xml_elem(fp, 2, "adkim", pub->adkim);
	xml_elem(fp, 2, "aspf", pub->aspf);
	xml_elem(fp, 2, "p", pub->p);
	xml_elem(fp, 2, "sp", pub->sp);
	snprintf(num, sizeof(num), "%d", pub->pct);
	xml_elem(fp, 2, "pct", num);
	xml_elem(fp, 2, "fo", pub->fo);
	xml_tag(fp, 1, "policy_published", false);
}

/* The records of the period, the head written before the first. */
static ag_status
put_records(struct ag_store *s, const struct ag_history_report_opts *o,
    const struct published *pub, FILE *fp, size_t *n)
{
	sqlite3_stmt *st = NULL;
	ag_status rv = AG_OK;
	int rc;

	rc = sqlite3_prepare_v2(ag_store_sqlite(s), RECORDS_SQL, -1, &st,
	    NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, o->domain, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, o->begin);
		sqlite3_bind_int64(st, 3, o->end);
	}
	while (rc == SQLITE_OK && rv == AG_OK &&
	    (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == 0) {
			put_head(fp, o, pub);
		}
		rv = put_record(s, fp, st);
		(*n)++;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rv == AG_OK && rc != SQLITE_DONE && rc != SQLITE_OK) {
		rv = ag_store_sqlite_error(s, rc, "reading DMARC results");
	}
	if (rv == AG_OK && *n > 0) {
		fputs("</feedback>\n", fp);
	}
	return rv;
}

ag_status
ag_history_report(struct ag_store *s, const struct ag_history_report_opts *o,
    FILE *fp, size_t *nrecords)
{
	sqlite3 *db = ag_store_sqlite(s);
	struct published pub;
	size_t n = 0;
	ag_status rv;
	int rc;

	if (nrecords != NULL) {
		*nrecords = 0;
	}
	if (o->end <= o->begin) {
		return AG_INVALID;
	}
	/* one read transaction: the policy and the records agree */
	rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		return ag_store_sqlite_error(s, rc, "reading DMARC results");
	}
	rv = read_published(s, o, &pub);
	if (rv == AG_OK) {
		rv = put_records(s, o, &pub, fp, &n);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rv == AG_OK && n == 0) {
		rv = AG_NOTFOUND;
	}
	if (nrecords != NULL) {
		*nrecords = n;
	}
	return rv;
}

/* ---- report periods ------------------------------------------------------- */

/* N decimal digits at S into *OUT. */
static bool
digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

ag_status
ag_history_parse_time(const char *s, int64_t *out)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };
	size_t len = s != NULL ? strlen(s) : 0;
	int y, mo, d, h = 0, mi = 0, sec = 0, dim;

	if (len > 0 && len <= 12 && strspn(s, "0123456789") == len) {
		*out = strtoll(s, NULL, 10);	/* at most 12 digits: fits */
		return AG_OK;
	}
	if ((len != 10 && len != 20) || !digits(s, 4, &y) || s[4] != '-' ||
	    !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d)) {
		return AG_INVALID;
	}
	if (len == 20 && (s[10] != 'T' || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec) || s[19] != 'Z')) {
		return AG_INVALID;
	}
	if (y < 1970 || mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 59) {
		return AG_INVALID;
	}
	dim = mdays[mo - 1] + (mo == 2 && y % 4 == 0 &&
	    (y % 100 != 0 || y % 400 == 0));
	if (d < 1 || d > dim) {
		return AG_INVALID;
	}
	*out = days_from_civil(y, mo, d) * DAY_SECONDS + h * 3600 + mi * 60 +
	    sec;
	return AG_OK;
}
