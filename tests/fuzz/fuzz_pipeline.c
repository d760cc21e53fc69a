/*
 * fuzz_pipeline.c - the whole pipeline: a sequence of milter events fed
 * to the same lib/session.c calls filter/milter.c makes, over engines
 * with a real policy database, SPF, DKIM verification and signing, DMARC,
 * rate limits and the history queue, every DNS answer from the input.
 *
 * Input: lines, each an event (unknown lines are ignored; events out of
 * SMTP order are allowed, as the session must survive them):
 *   engine N            the config of the next connection (0 or 1)
 *   connect IP [NAME]   a new connection (the previous one is closed)
 *   leadspc 0|1         SMFIP_HDR_LEADSPC agreed or not
 *   qid ID | auth USER  macros
 *   helo NAME
 *   mail ARG...         argv as libmilter passes it (split at spaces)
 *   rcpt ARG...
 *   header NAME:VALUE   one field; following lines that start with SP or
 *                       TAB are its folds (joined with CRLF)
 *   eoh | eom | abort | close
 *   body TEXT           one chunk, TEXT and CRLF;  bodyraw TEXT: no CRLF
 *   message             the lines up to "." are a message file (".." is
 *                       "."), given as header, eoh and body events by
 *                       lib/msgfile.c, as the offline mode does
 *   ctl FIELDS          a control request (ag_control_handle)
 *   dns NAME TYPE DATA  an answer (tests/fuzz/fuzzlib.h), wherever it is
 * Values are unescaped (\xHH, \r, \n, \t, \\).  An event that needs a
 * connection opens one from 192.0.2.10 first.
 *
 * Checks, after every event: the verdict is well-formed (a final one has
 * a 4xx or 5xx code with an enhanced code of the same class, its text is
 * printable and every '%' doubled, as smfi_setreply needs); at end of
 * message every header edit is a valid field name and value, our
 * Authentication-Results reads back as our authserv-id, and every
 * incoming Authentication-Results that claims our id (or one we strip,
 * or none that parses) is deleted, last first.
 *
 * Determinism: the rate counters' clock jumps a year per input and their
 * keys are dropped after it, so no input sees another's counters; DMARC
 * results queued for the history are written to the database after each
 * input.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authres.h"
#include "config.h"
#include "control.h"
#include "engine.h"
#include "fuzzlib.h"
#include "history.h"
#include "msgfile.h"
#include "policy.h"
#include "rate.h"
#include "session.h"
#include "signtable.h"
#include "store.h"

#define NENGINES 2
#define MAX_ARGS 16
#define AUTHSERV "mx.example.org"
#define AUTHSERV_STRIP "mx.example.net relay.example.com"
#define MAX_FORGED 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct ag_engine *engines[NENGINES];
static char dir[256];
static uint64_t fake_now;
static unsigned long runs;
static FILE *devnull;

/* The state of one input. */
struct fz {
	int engine;
	struct ag_conn *conn;
	bool leadspc;
	struct ag_verdict v;
	/* Authentication-Results seen in the message, and those to delete */
	unsigned ar_seen;
	unsigned nexpect;
	unsigned expect[MAX_FORGED];
	bool expect_overflow;
};

/* ---- set-up: database, rules, signing key, engines ------------------------ */

static uint64_t
rate_clock(void *arg)
{
	return fake_now;
}

/* Add a rule: conditions F1=V1 (optional), then settings. */
static void
rule(struct ag_store *s, const char *f1, const char *v1, void (*set)(struct
    ag_rule *))
{
	struct ag_match m;
	struct ag_rule r;
	int64_t id;

	ag_rule_init(&r);
	if (f1 != NULL) {
		memset(&m, 0, sizeof(m));
		if (ag_field_parse(f1, &m.field) != 0) {
			fz_fail("field %s", f1);
		}
		m.value = (char *)(uintptr_t)v1;
		r.nmatch = 1;
		r.match = &m;
	}
	set(&r);
	if (ag_store_rule_add(s, &r, &id) != AG_OK) {
		fz_fail("rule: %s", ag_store_errstr(s));
	}
}

static void
rate(struct ag_rule *r, const char *spec)
{
	char err[128];

	if (ag_rate_spec_parse(spec, &r->rate[r->nrate++], err,
	    sizeof(err)) != AG_OK) {
		fz_fail("rate %s: %s", spec, err);
	}
}

static void
set_net(struct ag_rule *r)
{
	r->priority = 10;
	r->dkim_require = 1;
	r->spf_disp[AG_SPF_SOFTFAIL] = AG_DISP_REJECT;
	r->spf_disp[AG_SPF_NEUTRAL] = AG_DISP_TAG;
}

static void
set_client(struct ag_rule *r)
{
	r->priority = 20;
	r->max_size = 100000;
	r->max_rcpts = 3;
	rate(r, "messages:5/1h:sender");
	rate(r, "bytes:20k/1d:client-ip/24");
}

static void
set_helo(struct ag_rule *r)
{
	r->priority = 30;
	r->dmarc_enforce = 0;
	r->spf_check = 0;
}

static void
set_user(struct ag_rule *r)
{
	r->priority = 40;
	r->exempt = true;
	r->on_limit = AG_DISP_REJECT;
	rate(r, "recipients:10/1d:sasl-user");
}

static void
set_dry(struct ag_rule *r)
{
	r->priority = 50;
	r->dry_run = true;
	r->max_size = 2000;
	r->spf_disp[AG_SPF_FAIL] = AG_DISP_TEMPFAIL;
}

static void
set_all(struct ag_rule *r)
{
	r->priority = 100;
	r->max_rcpts = 50;
	r->dmarc_check = 1;
	rate(r, "messages:100/1h:sender-domain");
	rate(r, "recipients:200/1d:rcpt-domain");
	rate(r, "messages:50/10m:helo");
}

/* A fixed Ed25519 key (made for the fuzzer, signs nothing real), written
 * with mode 0600 as keys must be. */
static const char sign_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIK/JtyLP88Lf4B1JhIBkBeAaAL6rlsB1vWnmsJH8GHpy\n"
    "-----END PRIVATE KEY-----\n";

static void
sign_key(char *path, size_t len)
{
	int fd;

	snprintf(path, len, "%s/sign.key", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, sign_pem, sizeof(sign_pem) - 1) !=
	    (ssize_t)(sizeof(sign_pem) - 1)) {
		fz_fail("cannot write the signing key to %s", path);
	}
	close(fd);
}

static void
signing(struct ag_store *s)
{
	struct ag_sign_entry e;
	char key[300];
	int64_t id;

	sign_key(key, sizeof(key));
	memset(&e, 0, sizeof(e));
	snprintf(e.pattern, sizeof(e.pattern), "*");
	snprintf(e.domain, sizeof(e.domain), "example.com");
	snprintf(e.selector, sizeof(e.selector), "ed");
	e.alg = AG_SIGN_ED25519_SHA256;
	e.key_file = key;
	e.enabled = true;
	if (ag_signtable_add(s, &e, &id) != AG_OK) {
		fz_fail("signing entry: %s", ag_store_errstr(s));
	}
}

static void
database(const char *path)
{
	struct ag_store *s = NULL;

	if (ag_store_open(path, AG_STORE_CREATE, 1000, &s) != AG_OK) {
		fz_fail("store %s: %s", path, s != NULL ?
		    ag_store_errstr(s) : "no memory");
	}
	rule(s, "sender-domain", ".example.net", set_net);
	rule(s, "client", "198.51.100.0/24", set_client);
	rule(s, "helo", ".example.org", set_helo);
	rule(s, "sasl-user", "fuzz", set_user);
	rule(s, "rcpt-domain", "example.com", set_dry);
	rule(s, NULL, NULL, set_all);
	signing(s);
	ag_store_close(s);
}

/* Remove the database and the key at exit (a crash leaves them). */
static void
cleanup(void)
{
	static const char *const files[] = { "fuzz.db", "fuzz.db-wal",
	    "fuzz.db-shm", "fuzz.db-journal", "sign.key" };
	char path[300];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		(void)unlink(path);
	}
	(void)rmdir(dir);
}

static const char *const config_extra[NENGINES] = {
	"TrustedNetworks 10.0.0.0/8\n",
	"DryRun yes\nDMARCQuarantine tag\nOn-SPFNeutral tag\n"
	"On-SPFTemperror accept\nDKIMMaxSignatures 2\nSPFCheckHelo no\n"
	"On-DMARCFromError permerror\nDMARCEnforce quarantine\n"
	"On-DKIMTemperror accept\nTrustedNetworks 10.0.0.0/8, 192.0.2.0/25\n",
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[300], text[1024], err[256];
	const char *tmp;

	fz_log_setup();
	fz_dns_install();
	tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/authgate-fuzz.XXXXXX",
	    tmp != NULL && tmp[0] == '/' && strlen(tmp) < 200 ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		fz_fail("mkdtemp %s", dir);
	}
	atexit(cleanup);
	snprintf(path, sizeof(path), "%s/fuzz.db", dir);
	database(path);
	for (int i = 0; i < NENGINES; i++) {
		struct ag_config *cfg = NULL;
		const struct ag_snapshot *snap;

		snprintf(text, sizeof(text), "Database %s\nAuthservID %s\n"
		    "AuthservIDStrip %s\nDNSServer 127.0.0.1@9\n"
		    "HistoryDays 30\n%s", path,
		    AUTHSERV, AUTHSERV_STRIP, config_extra[i]);
		if (ag_config_load_string(text, "fuzz.conf", &cfg, err,
		    sizeof(err)) != AG_OK) {
			fz_fail("config: %s", err);
		}
		if (ag_engine_new(cfg, false, &engines[i]) != AG_OK) {
			fz_fail("engine");
		}
		ag_config_unref(cfg);
		snap = ag_engine_acquire(engines[i]);
		if (snap->policy == NULL || snap->spf == NULL ||
		    snap->dkim == NULL || snap->dmarc == NULL) {
			fz_fail("engine %d lacks policy or checkers: %s", i,
			    snap->dberr);
		}
		ag_rater_set_clock(snap->rater, rate_clock, NULL);
		ag_snapshot_release(snap);
	}
	devnull = fopen("/dev/null", "w");
	if (devnull == NULL) {
		fz_fail("/dev/null");
	}
	return 0;
}

/* ---- checks ------------------------------------------------------------- */

static void
check_verdict(const char *ev, const struct ag_verdict *v)
{
	const char *t;

	if ((unsigned)v->action > AG_ACT_QUARANTINE) {
		fz_fail("%s: action %d", ev, (int)v->action);
	}
	if (v->action == AG_ACT_TEMPFAIL || v->action == AG_ACT_REJECT) {
		char c = v->action == AG_ACT_TEMPFAIL ? '4' : '5';

		if (v->rcode[0] != c || strlen(v->rcode) != 3 ||
		    v->xcode[0] != c || v->xcode[1] != '.') {
			fz_fail("%s: %s with codes %s %s", ev,
			    ag_action_name(v->action), v->rcode, v->xcode);
		}
	}
	fz_check_printable("reply text", v->text);
	if (fz_verbose) {
		fprintf(stderr, "%s: %s %s %s %s\n", ev, ag_action_name(v->action),
		    v->rcode, v->xcode, v->text);
	}
	for (t = v->text; (t = strchr(t, '%')) != NULL; t += 2) {
		if (t[1] != '%') {
			fz_fail("%s: a single %% in the reply: %s", ev, v->text);
		}
	}
}

/* Is NAME a header field name (RFC 5322 2.2: printable, no colon)? */
static bool
field_name_ok(const char *name)
{
	if (*name == '\0') {
		return false;
	}
	for (; *name; name++) {
		if (*name <= ' ' || *name >= 0x7f || *name == ':') {
			return false;
		}
	}
	return true;
}

static void
check_edits(struct fz *z, const struct ag_edit *ed, size_t n)
{
	unsigned ndel = 0;
	char id[256];

	for (size_t i = 0; i < n; i++) {
		if (fz_verbose) {
			fprintf(stderr, "edit %d %s[%d]: %s\n", (int)ed[i].op,
			    ed[i].name, ed[i].index, ed[i].value != NULL ?
			    ed[i].value : "-");
		}
		if (ed[i].name == NULL || !field_name_ok(ed[i].name)) {
			fz_fail("edit %zu: bad field name", i);
		}
		if (ed[i].op == AG_EDIT_DELETE) {
			if (ed[i].value != NULL || ed[i].index < 1) {
				fz_fail("delete %s[%d] with a value or no index",
				    ed[i].name, ed[i].index);
			}
		} else {
			if (ed[i].value == NULL) {
				fz_fail("edit %s without a value", ed[i].name);
			}
			fz_check_header_value(ed[i].name, ed[i].value);
		}
		if (strcasecmp(ed[i].name, "Authentication-Results") != 0) {
			continue;
		}
		if (ed[i].op == AG_EDIT_INSERT &&
		    (ag_authres_parse_id(ed[i].value, id, sizeof(id)) != AG_OK ||
		    strcmp(id, AUTHSERV) != 0)) {
			fz_fail("our Authentication-Results does not read back: "
			    "%s", ed[i].value);
		}
		if (ed[i].op == AG_EDIT_DELETE && !z->expect_overflow) {
			/* last first: the expected list is in header order */
			if (ndel >= z->nexpect ||
			    (unsigned)ed[i].index != z->expect[z->nexpect - 1 - ndel]) {
				fz_fail("deleted Authentication-Results[%d], not "
				    "the forged ones", ed[i].index);
			}
			ndel++;
		}
	}
	if (!z->expect_overflow && ndel != z->nexpect) {
		fz_fail("%u of %u forged Authentication-Results deleted", ndel,
		    z->nexpect);
	}
}

/* Would the session take this Authentication-Results value for ours? */
static void
note_header(struct fz *z, const char *name, const char *value)
{
	char id[256];
	const char *p = AUTHSERV_STRIP;
	bool ours;

	if (strcasecmp(name, "Authentication-Results") != 0) {
		return;
	}
	z->ar_seen++;
	ours = ag_authres_parse_id(value, id, sizeof(id)) != AG_OK ||
	    strcasecmp(id, AUTHSERV) == 0;
	while (!ours && *p != '\0') {
		size_t len = strcspn(p, " ");

		ours = strlen(id) == len && strncasecmp(p, id, len) == 0;
		p += len + (p[len] == ' ');
	}
	if (!ours) {
		return;
	}
	if (z->nexpect < MAX_FORGED) {
		z->expect[z->nexpect++] = z->ar_seen;
	} else {
		z->expect_overflow = true;
	}
}

/* ---- events ------------------------------------------------------------- */

static void
msg_reset(struct fz *z)
{
	z->ar_seen = 0;
	z->nexpect = 0;
	z->expect_overflow = false;
}

static void
conn_close(struct fz *z)
{
	ag_conn_free(z->conn);
	z->conn = NULL;
	msg_reset(z);
}

static void
conn_open(struct fz *z, const char *ip, const char *name)
{
	struct ag_conn_info info = { .client_addr = ip, .client_name = name };

	conn_close(z);
	z->conn = ag_conn_new(engines[z->engine], &info, &z->v);
	if (z->conn == NULL) {
		fz_fail("ag_conn_new: out of memory");
	}
	check_verdict("connect", &z->v);
	ag_conn_set_leadspc(z->conn, z->leadspc);
}

static void
need_conn(struct fz *z)
{
	if (z->conn == NULL) {
		conn_open(z, "192.0.2.10", "client.example.com");
	}
}

/* MAIL or RCPT with ARGS split at spaces. */
static void
envelope(struct fz *z, bool mail, const char *args)
{
	char *copy = strdup(args), *argv[MAX_ARGS + 1], *save = NULL, *t;
	size_t n = 0;

	if (copy == NULL) {
		abort();
	}
	for (t = strtok_r(copy, " ", &save); t != NULL && n < MAX_ARGS;
	    t = strtok_r(NULL, " ", &save)) {
		argv[n++] = t;
	}
	argv[n] = NULL;
	if (n == 0) {
		argv[n++] = copy;	/* an empty address */
		argv[n] = NULL;
	}
	if (mail) {
		msg_reset(z);
		ag_conn_mail(z->conn, argv, &z->v);
	} else {
		ag_conn_rcpt(z->conn, argv, &z->v);
	}
	check_verdict(mail ? "mail" : "rcpt", &z->v);
	free(copy);
}

static void
header(struct fz *z, const char *name, const char *value)
{
	ag_conn_header(z->conn, name, value, &z->v);
	check_verdict("header", &z->v);
	note_header(z, name, value);
}

static void
eom(struct fz *z)
{
	const struct ag_edit *ed = NULL;
	size_t n = 0;

	ag_conn_eom(z->conn, &z->v, &ed, &n);
	check_verdict("eom", &z->v);
	if (n > 0) {
		check_edits(z, ed, n);
	}
	msg_reset(z);
}

static int
mf_header(void *arg, const char *name, const char *value)
{
	header(arg, name, value);
	return 0;
}

/* End of headers.  libmilter never gives it twice, but the session must
 * take a second one (tests/fuzz/regress/fuzz_pipeline/sign-eoh-twice-leak:
 * it leaked the DKIM signing handle). */
static void
eoh(struct fz *z)
{
	ag_conn_eoh(z->conn, &z->v);
	check_verdict("eoh", &z->v);
}

static int
mf_eoh(void *arg)
{
	eoh(arg);
	return 0;
}

static int
mf_body(void *arg, const unsigned char *buf, size_t len)
{
	struct fz *z = arg;

	ag_conn_body(z->conn, buf, len, &z->v);
	check_verdict("body", &z->v);
	return 0;
}

/* The "message" block from *POS up to a line ".": through lib/msgfile.c. */
static void
message(struct fz *z, const char *buf, size_t size, size_t *pos)
{
	struct ag_msgfile_cb cb = { mf_header, mf_eoh, mf_body, z };
	char *text = malloc(size - *pos + 1), err[128];
	size_t o = 0, len;
	const char *s;
	FILE *fp;

	if (text == NULL) {
		abort();
	}
	while ((s = fz_line(buf, size, pos, &len)) != NULL &&
	    !(len == 1 && s[0] == '.')) {
		if (len > 0 && s[0] == '.') {
			s++;
			len--;
		}
		memcpy(text + o, s, len);
		o += len;
		text[o++] = '\n';
	}
	fp = fmemopen(text, o > 0 ? o : 1, "r");
	if (fp != NULL) {
		if (o > 0) {
			(void)ag_msgfile_read(fp, &cb, err, sizeof(err));
		}
		fclose(fp);
	}
	free(text);
}

/* A header event: NAME:VALUE on this line, folds on the next ones. */
static void
header_event(struct fz *z, const char *rest, size_t rl, const char *buf,
    size_t size, size_t *pos)
{
	char *line = fz_unescape(rest, rl, NULL), *colon, *val;
	size_t vlen, len, p;
	const char *s;

	colon = strchr(line, ':');
	val = strdup(colon != NULL ? colon + 1 : "");
	if (val == NULL) {
		abort();
	}
	if (colon != NULL) {
		*colon = '\0';
	}
	vlen = strlen(val);
	for (p = *pos; (s = fz_line(buf, size, &p, &len)) != NULL &&
	    len > 0 && (s[0] == ' ' || s[0] == '\t'); *pos = p) {
		char *fold = fz_unescape(s, len, NULL), *nv;
		size_t fl = strlen(fold);

		nv = realloc(val, vlen + 2 + fl + 1);
		if (nv == NULL) {
			abort();
		}
		val = nv;
		memcpy(val + vlen, "\r\n", 2);
		memcpy(val + vlen + 2, fold, fl + 1);
		vlen += 2 + fl;
		free(fold);
	}
	header(z, line, val);
	free(line);
	free(val);
}

/* One control request: TAB-separated fields (\t in the input). */
static void
control(const char *rest, size_t rl, struct fz *z)
{
	char *line = fz_unescape(rest, rl, NULL);

	ag_control_handle(engines[z->engine], line, devnull);
	free(line);
}

/* Run the event on line S; may consume following lines. */
static void
event(struct fz *z, const char *s, size_t len, const char *buf, size_t size,
    size_t *pos)
{
	const char *rest;
	size_t rl;
	char *arg;

	if (fz_word(s, len, "dns", &rest, &rl)) {
		return;		/* read before the events */
	}
	if (fz_word(s, len, "engine", &rest, &rl)) {
		z->engine = rl > 0 && rest[0] == '1' ? 1 : 0;
		return;
	}
	if (fz_word(s, len, "ctl", &rest, &rl)) {
		control(rest, rl, z);
		return;
	}
	if (fz_word(s, len, "close", &rest, &rl)) {
		conn_close(z);
		return;
	}
	if (fz_word(s, len, "connect", &rest, &rl)) {
		char *a = fz_unescape(rest, rl, NULL), *sp = strchr(a, ' ');

		if (sp != NULL) {
			*sp++ = '\0';
		}
		conn_open(z, a, sp != NULL ? sp : "unknown");
		free(a);
		return;
	}
	if (fz_word(s, len, "leadspc", &rest, &rl)) {
		z->leadspc = rl > 0 && rest[0] == '1';
		if (z->conn != NULL) {
			ag_conn_set_leadspc(z->conn, z->leadspc);
		}
		return;
	}
	need_conn(z);
	if (fz_word(s, len, "header", &rest, &rl)) {
		header_event(z, rest, rl, buf, size, pos);
	} else if (fz_word(s, len, "message", &rest, &rl)) {
		message(z, buf, size, pos);
	} else if (fz_word(s, len, "eoh", &rest, &rl)) {
		eoh(z);
	} else if (fz_word(s, len, "eom", &rest, &rl)) {
		eom(z);
	} else if (fz_word(s, len, "abort", &rest, &rl)) {
		ag_conn_abort(z->conn);
		msg_reset(z);
	} else {
		size_t al;

		bool crlf = false;

		arg = NULL;
		if ((crlf = fz_word(s, len, "body", &rest, &rl)) ||
		    fz_word(s, len, "bodyraw", &rest, &rl)) {
			arg = fz_unescape(rest, rl, &al);
			if (crlf) {
				char *a2 = realloc(arg, al + 3);

				if (a2 == NULL) {
					abort();
				}
				arg = a2;
				memcpy(arg + al, "\r\n", 3);
				al += 2;
			}
			ag_conn_body(z->conn, (unsigned char *)arg, al, &z->v);
			check_verdict("body", &z->v);
		} else if (fz_word(s, len, "helo", &rest, &rl)) {
			arg = fz_unescape(rest, rl, NULL);
			ag_conn_helo(z->conn, arg, &z->v);
			check_verdict("helo", &z->v);
		} else if (fz_word(s, len, "mail", &rest, &rl)) {
			arg = fz_unescape(rest, rl, NULL);
			envelope(z, true, arg);
		} else if (fz_word(s, len, "rcpt", &rest, &rl)) {
			arg = fz_unescape(rest, rl, NULL);
			envelope(z, false, arg);
		} else if (fz_word(s, len, "qid", &rest, &rl)) {
			arg = fz_unescape(rest, rl, NULL);
			ag_conn_set_queue_id(z->conn, arg);
		} else if (fz_word(s, len, "auth", &rest, &rl)) {
			arg = fz_unescape(rest, rl, NULL);
			ag_conn_set_auth(z->conn, arg);
		}
		free(arg);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data, *s, *rest;
	size_t pos = 0, len, rl;
	struct fz *z = calloc(1, sizeof(*z));

	if (z == NULL) {
		abort();
	}
	/* a year on, for every input: no counter carries over */
	fake_now = 1700000000000ULL + (uint64_t)++runs * 800ULL * 86400000ULL;
	fz_dns_clear();
	while ((s = fz_line(buf, size, &pos, &len)) != NULL) {
		if (fz_word(s, len, "dns", &rest, &rl)) {
			fz_dns_line(rest, rl);
		}
	}
	pos = 0;
	while ((s = fz_line(buf, size, &pos, &len)) != NULL) {
		event(z, s, len, buf, size, &pos);
	}
	conn_close(z);
	free(z);
	/* the counters of this input expire with it: what an input
	 * allocates, it frees, so libFuzzer's leak check stays quiet (it
	 * scans the whole heap after any input that keeps memory) */
	fake_now += 400ULL * 86400000ULL;
	for (int i = 0; i < NENGINES; i++) {
		const struct ag_snapshot *snap = ag_engine_acquire(engines[i]);

		if (ag_history_pending(snap->history) > 0) {
			ag_engine_save(engines[i]);
		}
		ag_rater_expire(snap->rater);
		ag_snapshot_release(snap);
	}
	return 0;
}
