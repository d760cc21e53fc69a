/*
 * config.c - authgate.conf: one table of keywords drives parsing,
 * built-in defaults, the dump printed by `authgate -n` and the keyword
 * list the man-page test checks.
 *
 * A value is parsed by the parser of its keyword's type (config_value.c);
 * a default is the text a file would have held, parsed by the same code.
 * The file is read whole (it is small and capped) and split into lines in
 * place.
 *
 * Ownership: ag_config_load*() return a snapshot holding one reference;
 * every string and list in it belongs to the snapshot and is freed by the
 * last ag_config_unref().  ag_config_load_string() leaves the file field
 * NULL (nothing was read from disk).
 *
 * Thread safety: a loaded snapshot is never written; the reference count
 * uses atomic builtins.  The only other shared state is the keyword-name
 * list, built once under pthread_once().
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "policy.h"

#include "config_int.h"

/* A snapshot and its reference count; callers see only PUB. */
struct config_box {
	struct ag_config pub;	/* first: a config pointer is a box pointer */
	unsigned refs;
};

#define OFF(field) offsetof(struct ag_config, field)

/* Names of the KW_CHOICE keywords, in the order of their enums. */
static const char *const rberr_names[] = { "local", "tempfail", "accept",
	NULL };
_Static_assert(AG_RB_LOCAL == 0 && AG_RB_TEMPFAIL == 1 && AG_RB_ACCEPT == 2,
    "rberr_names follows enum ag_rate_fallback");
_Static_assert(sizeof(enum ag_rate_fallback) == sizeof(int),
    "KW_CHOICE stores an int");

static const char *const enforce_names[] = { "none", "quarantine",
	"reject", NULL };
static const char *const quarantine_names[] = { "hold", "tag", NULL };
static const char *const fromerr_names[] = { "reject", "permerror", NULL };
static const char *const accept_tempfail_names[] = { "accept", "tempfail",
	NULL };
static const char *const tempfail_accept_names[] = { "tempfail", "accept",
	NULL };
_Static_assert(AG_DMARC_QUAR_HOLD == 0 && AG_DMARC_QUAR_TAG == 1 &&
    AG_DMARC_FROMERR_REJECT == 0 && AG_DMARC_FROMERR_PERMERROR == 1,
    "the names follow the enums");
_Static_assert(sizeof(enum ag_dmarc_quarantine) == sizeof(int) &&
    sizeof(enum ag_dmarc_fromerr) == sizeof(int), "KW_CHOICE stores an int");

/* The keywords, in the order ag_config_dump() prints them. */
static const struct kw kw_table[] = {
	{ "Socket", KW_SOCKET, AG_CONFIG_DEFAULT_SOCKET, OFF(socket), 0, 0, 0,
	    "where the MTA connects: unix:PATH, inet[6]:PORT@ADDR", NULL },
	{ "Database", KW_PATH, AG_CONFIG_DEFAULT_DATABASE, OFF(database),
	    0, 0, 0, "the SQLite policy and history database", NULL },
	{ "AuthservID", KW_AUTHSERV, NULL, OFF(authserv_id), 0, 0,
	    KW_F_DEF_HOSTNAME, "authserv-id in Authentication-Results", NULL },
	{ "UserID", KW_USER, NULL, OFF(user_id), 0, 0, 0,
	    "user[:group] to run as after start-up", NULL },
	{ "UMask", KW_MODE, "0007", OFF(umask), 0, 0, 0,
	    "umask for the socket and files created", NULL },
	{ "PidFile", KW_ABSPATH, NULL, OFF(pid_file), 0, 0, 0,
	    "file to write the daemon's process id to", NULL },
	{ "LogLevel", KW_LEVEL, "info", OFF(log_level), 0, 0, 0,
	    "lowest syslog priority logged", NULL },
	{ "LogFacility", KW_FACILITY, "mail", OFF(log_facility), 0, 0, 0,
	    "syslog facility", NULL },
	{ "TrustedNetworks", KW_CIDRS, "127.0.0.0/8, ::1/128", OFF(trusted),
	    0, 0, 0, "internal client networks (rule field trusted=yes)",
	    NULL },
	{ "DryRun", KW_BOOL, "no", OFF(dry_run), 0, 0, 0,
	    "decide and log, but accept every message", NULL },
	{ "On-DatabaseError", KW_ACTION, "tempfail", OFF(on_database_error),
	    0, 0, 0, "answer when no policy can be read", NULL },
	{ "On-InternalError", KW_ACTION, "tempfail", OFF(on_internal_error),
	    0, 0, 0, "answer on an internal error", NULL },
	{ "PolicyCheckInterval", KW_UINT, "2", OFF(policy_check_interval),
	    1, 3600, 0, "seconds between checks for rule changes", NULL },
	{ "MilterTimeout", KW_UINT, "7210000", OFF(milter_timeout), 1000,
	    86400000, 0, "milliseconds an MTA connection may stay silent "
	    "(libmilter counts whole seconds)", NULL },
	{ "DatabaseTimeout", KW_UINT, "2000", OFF(database_timeout),
	    0, 60000, 0, "milliseconds to wait for a database lock", NULL },
	{ "DNSServer", KW_SERVERS, NULL, OFF(dns_servers), 0, 0, 0,
	    "DNS servers to ask, ADDR[@PORT] ...; unset: /etc/resolv.conf",
	    NULL },
	{ "DNSTimeout", KW_UINT, "5000", OFF(dns_timeout), 100, 60000, 0,
	    "milliseconds to wait for one DNS answer", NULL },
	{ "SPFTimeout", KW_UINT, "15000", OFF(spf_timeout), 100, 120000, 0,
	    "milliseconds one SPF evaluation may take in all", NULL },
	{ "SPFCheck", KW_BOOL, "yes", OFF(spf_check), 0, 0, 0,
	    "check SPF at all (rules can turn it off for some mail)", NULL },
	{ "SPFCheckHelo", KW_BOOL, "yes", OFF(spf_check_helo), 0, 0, 0,
	    "also check the HELO identity (RFC 7208 2.3)", NULL },
	{ "On-SPFPass", KW_DISP, "accept", OFF(spf_disp[AG_SPF_PASS]), 0, 0, 0,
	    "what an SPF pass gets", NULL },
	{ "On-SPFFail", KW_DISP, "reject", OFF(spf_disp[AG_SPF_FAIL]), 0, 0, 0,
	    "what an SPF fail gets", NULL },
	{ "On-SPFSoftfail", KW_DISP, "accept", OFF(spf_disp[AG_SPF_SOFTFAIL]),
	    0, 0, 0, "what an SPF softfail gets", NULL },
	{ "On-SPFNeutral", KW_DISP, "accept", OFF(spf_disp[AG_SPF_NEUTRAL]),
	    0, 0, 0, "what an SPF neutral gets", NULL },
	{ "On-SPFNone", KW_DISP, "accept", OFF(spf_disp[AG_SPF_NONE]), 0, 0, 0,
	    "what mail without an SPF record gets", NULL },
	{ "On-SPFTemperror", KW_DISP, "tempfail", OFF(spf_disp[AG_SPF_TEMPERROR]),
	    0, 0, 0, "what an SPF temperror gets", NULL },
	{ "On-SPFPermerror", KW_DISP, "accept", OFF(spf_disp[AG_SPF_PERMERROR]),
	    0, 0, 0, "what an SPF permerror gets", NULL },
	{ "DKIMVerify", KW_BOOL, "yes", OFF(dkim_verify), 0, 0, 0,
	    "verify DKIM signatures of mail from untrusted clients", NULL },
	{ "DKIMMaxSignatures", KW_UINT, "5", OFF(dkim_max_sigs), 1, 50, 0,
	    "signatures evaluated per message; the rest are reported", NULL },
	{ "DKIMTimeout", KW_UINT, "10000", OFF(dkim_timeout), 100, 120000, 0,
	    "milliseconds all key lookups of one message may take", NULL },
	{ "On-DKIMTemperror", KW_ACTION, "tempfail", OFF(on_dkim_temperror),
	    0, 0, 0, "when a required signature's key cannot be fetched",
	    NULL },
	{ "AuthservIDStrip", KW_IDLIST, NULL, OFF(authserv_strip), 0, 0, 0,
	    "more authserv-ids whose Authentication-Results are removed",
	    NULL },
	{ "RateBackend", KW_RATEBACKEND, "local", OFF(rate_backend), 0, 0, 0,
	    "where rate counters live: local, redis://HOST[:PORT][/DB], "
	    "unix:/PATH", NULL },
	{ "RateBackendTimeout", KW_UINT, "250", OFF(rate_backend_timeout),
	    10, 10000, 0, "milliseconds one Redis call may take", NULL },
	{ "On-RateBackendError", KW_CHOICE, "local", OFF(on_rate_backend_error),
	    0, 0, 0, "when Redis fails: local, tempfail or accept",
	    rberr_names },
	{ "RateMaxKeys", KW_UINT, "1000000", OFF(rate_max_keys), 1000,
	    100000000, 0, "most counters the local engine holds", NULL },
	{ "RateCheckpointInterval", KW_UINT, "30",
	    OFF(rate_checkpoint_interval), 1, 3600, 0,
	    "seconds between saves of the local counters to the database",
	    NULL },
	{ "DKIMSign", KW_BOOL, "yes", OFF(dkim_sign), 0, 0, 0,
	    "sign mail of authenticated and trusted clients (sign add)",
	    NULL },
	{ "On-SignError", KW_CHOICE, "tempfail", OFF(on_sign_error), 0, 0, 0,
	    "when a message cannot be signed: tempfail or accept (unsigned)",
	    tempfail_accept_names },
	{ "DMARCCheck", KW_BOOL, "yes", OFF(dmarc_check), 0, 0, 0,
	    "evaluate DMARC for mail from untrusted clients", NULL },
	{ "DMARCEnforce", KW_CHOICE, "reject", OFF(dmarc_enforce), 0, 0, 0,
	    "the strongest DMARC policy honoured: reject, quarantine, none",
	    enforce_names },
	{ "DMARCQuarantine", KW_CHOICE, "hold", OFF(dmarc_quarantine), 0, 0, 0,
	    "p=quarantine: the MTA's hold queue, or a tag header",
	    quarantine_names },
	{ "On-DMARCFromError", KW_CHOICE, "reject", OFF(on_dmarc_from_error),
	    0, 0, 0, "no, several or unreadable From: reject or permerror",
	    fromerr_names },
	{ "On-DMARCTemperror", KW_CHOICE, "accept", OFF(on_dmarc_temperror),
	    0, 0, 0, "when the DMARC record cannot be fetched: accept or "
	    "tempfail", accept_tempfail_names },
	{ "PublicSuffixList", KW_ABSPATH, NULL, OFF(psl_file), 0, 0, 0,
	    "the Public Suffix List; unset: Debian's publicsuffix", NULL },
	{ "HistoryDays", KW_UINT, "30", OFF(history_days), 0, 3650, 0,
	    "days of DMARC results kept for reports; 0: none", NULL },
	{ "ControlSocket", KW_ABSPATH, NULL, OFF(control_socket), 0, 0, 0,
	    "authgatectl's socket; unset: control.sock beside a unix Socket",
	    NULL },
	{ "MetricsListen", KW_LISTEN, NULL, OFF(metrics_listen), 0, 0, 0,
	    "Prometheus endpoint, IPV4:PORT or [IPV6]:PORT; unset: none",
	    NULL },
};

#define KW_COUNT (sizeof(kw_table) / sizeof(kw_table[0]))

/* What one load needs while it runs. */
struct load {
	const char *name;	/* file name for messages */
	struct ag_config *c;
	unsigned line_of[KW_COUNT];	/* line that set a keyword; 0: unset */
	char *err;
	size_t errlen;
};

/* Write a message to ERR, if the caller gave room for one. */
static void __attribute__((format(printf, 3, 4)))
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}



/* The field of C that keyword K sets. */
static void *
kw_field(struct ag_config *c, const struct kw *k)
{
	return (char *)c + k->off;
}

/* Free a snapshot that may be half built. */
static void
config_free(struct ag_config *c)
{
	size_t i;

	if (c == NULL) {
		return;
	}
	for (i = 0; i < KW_COUNT; i++) {
		const struct kw_ops *ops = &ag_kw_ops[kw_table[i].type];

		if (ops->release != NULL) {
			ops->release(kw_field(c, &kw_table[i]));
		}
	}
	free(c->file);
	free((struct config_box *)c);
}

/* Parse V for keyword I; a bad value is reported "WHERE: Keyword: ...". */
static ag_status
set_keyword(struct load *ld, size_t i, const char *v, const char *where)
{
	const struct kw *k = &kw_table[i];
	char msg[512];
	ag_status st;

	msg[0] = '\0';
	st = ag_kw_ops[k->type].parse(k, v, kw_field(ld->c, k), msg, sizeof(msg));
	if (st == AG_INVALID) {
		seterr(ld->err, ld->errlen, "%s: %s: %s", where, k->name, msg);
	}
	return st;	/* AG_NOMEM is reported by load_buf() */
}

/* White space between and around keyword and value (CR for CRLF files). */
static bool
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' ||
	    ch == '\v';
}

/* Cut a comment off S and trim white space; returns the trimmed start. */
static char *
strip_line(char *s)
{
	size_t i, n;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] == '#' && (i == 0 || is_space(s[i - 1]))) {
			s[i] = '\0';
			break;
		}
	}
	while (is_space(*s)) {
		s++;
	}
	n = strlen(s);
	while (n > 0 && is_space(s[n - 1])) {
		s[--n] = '\0';
	}
	return s;
}

/* One line of the file (NUL-terminated, no newline), number LINENO. */
static ag_status
parse_line(struct load *ld, unsigned lineno, char *line)
{
	char *key = strip_line(line), *val, where[PATH_MAX + 32];
	char q[QUOTE_BUFSZ];
	size_t i;

	if (*key == '\0') {
		return AG_OK;
	}
	for (val = key; *val != '\0' && !is_space(*val); val++) {
		continue;
	}
	if (*val != '\0') {
		*val++ = '\0';
		while (is_space(*val)) {
			val++;
		}
	}
	snprintf(where, sizeof(where), "%s:%u", ld->name, lineno);
	for (i = 0; i < KW_COUNT; i++) {
		if (strcasecmp(key, kw_table[i].name) == 0) {
			break;
		}
	}
	if (i == KW_COUNT) {
		seterr(ld->err, ld->errlen, "%s: unknown keyword \"%s\"", where,
		    ag_config_quote(q, sizeof(q), key));
		return AG_INVALID;
	}
	if (ld->line_of[i] != 0) {
		seterr(ld->err, ld->errlen, "%s: %s: already set on line %u",
		    where, kw_table[i].name, ld->line_of[i]);
		return AG_INVALID;
	}
	if (*val == '\0') {
		seterr(ld->err, ld->errlen, "%s: %s: missing value", where,
		    kw_table[i].name);
		return AG_INVALID;
	}
	ld->line_of[i] = lineno;
	return set_keyword(ld, i, val, where);
}

/* Split BUF (LEN bytes, with a NUL after them) into lines and parse them. */
static ag_status
parse_text(struct load *ld, char *buf, size_t len)
{
	char *p = buf, *end = buf + len;
	unsigned lineno = 0;
	ag_status st = AG_OK;

	while (p < end && st == AG_OK) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		size_t content = n > 0 && p[n - 1] == '\r' ? n - 1 : n;

		lineno++;
		if (content > AG_CONFIG_LINE_MAX) {
			seterr(ld->err, ld->errlen,
			    "%s:%u: line is longer than %d bytes", ld->name,
			    lineno, AG_CONFIG_LINE_MAX);
			return AG_INVALID;
		}
		if (memchr(p, '\0', n) != NULL) {
			seterr(ld->err, ld->errlen,
			    "%s:%u: line holds a NUL byte", ld->name, lineno);
			return AG_INVALID;
		}
		p[n] = '\0';
		st = parse_line(ld, lineno, p);
		p += n + 1;
	}
	return st;
}

/* Give every keyword the file did not set its built-in default. */
static ag_status
apply_defaults(struct load *ld)
{
	char host[AG_HOSTNAME_MAX + 2], where[PATH_MAX + 32];
	size_t i;
	ag_status st;

	snprintf(where, sizeof(where), "%s: built-in default", ld->name);
	for (i = 0; i < KW_COUNT; i++) {
		const char *def = kw_table[i].def;

		if (ld->line_of[i] != 0) {
			continue;
		}
		if (kw_table[i].flags & KW_F_DEF_HOSTNAME) {
			memset(host, 0, sizeof(host));
			if (gethostname(host, sizeof(host) - 1) != 0 ||
			    !ag_config_authserv_ok(host)) {
				snprintf(host, sizeof(host), "localhost");
			}
			def = host;
		}
		if (def == NULL) {
			continue;
		}
		st = set_keyword(ld, i, def, where);
		if (st != AG_OK) {
			return st;
		}
	}
	return AG_OK;
}

/*
 * Parse BUF (LEN bytes followed by a NUL; modified) named NAME into a new
 * snapshot whose file field takes FILE (may be NULL).
 */
static ag_status
load_buf(char *buf, size_t len, const char *name, const char *file,
    struct ag_config **out, char *err, size_t errlen)
{
	struct config_box *box = calloc(1, sizeof(*box));
	struct load ld;
	ag_status st = AG_NOMEM;

	memset(&ld, 0, sizeof(ld));
	ld.name = name;
	ld.err = err;
	ld.errlen = errlen;
	if (box != NULL) {
		ld.c = &box->pub;
		box->refs = 1;
		box->pub.file = file != NULL ? strdup(file) : NULL;
		if (file == NULL || box->pub.file != NULL) {
			st = parse_text(&ld, buf, len);
		}
		if (st == AG_OK) {
			st = apply_defaults(&ld);
		}
	}
	if (st == AG_NOMEM) {
		seterr(err, errlen, "%s: out of memory", name);
	}
	if (st != AG_OK) {
		config_free(box != NULL ? &box->pub : NULL);
		box = NULL;
	}
	*out = box != NULL ? &box->pub : NULL;
	return st;
}

/* Read FD (the file NAME) whole into a new NUL-terminated *BUF. */
static ag_status
read_all(int fd, const char *name, char **bufp, size_t *lenp, char *err,
    size_t errlen)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap + 1), *nbuf, ebuf[128];
	ssize_t r;

	while (buf != NULL) {
		if (len == cap) {
			if (cap >= AG_CONFIG_FILE_MAX) {
				free(buf);
				seterr(err, errlen, "%s: larger than %d bytes",
				    name, AG_CONFIG_FILE_MAX);
				return AG_INVALID;
			}
			cap *= 2;
			nbuf = realloc(buf, cap + 1);
			if (nbuf == NULL) {
				break;
			}
			buf = nbuf;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r < 0) {
			free(buf);
			seterr(err, errlen, "%s: %s", name,
			    ag_strerror(errno, ebuf, sizeof(ebuf)));
			return AG_PERMFAIL;
		}
		if (r == 0) {
			buf[len] = '\0';
			*bufp = buf;
			*lenp = len;
			return AG_OK;
		}
		len += (size_t)r;
	}
	free(buf);
	seterr(err, errlen, "%s: out of memory", name);
	return AG_NOMEM;
}

/* Open FILE, refusing one that others may write, and read it. */
static ag_status
read_file(const char *file, char **bufp, size_t *lenp, char *err,
    size_t errlen)
{
	struct stat sb;
	char ebuf[128];
	ag_status st;
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0 || fstat(fd, &sb) != 0) {
		seterr(err, errlen, "%s: %s", file,
		    ag_strerror(errno, ebuf, sizeof(ebuf)));
		if (fd >= 0) {
			close(fd);
		}
		return AG_PERMFAIL;
	}
	if (S_ISDIR(sb.st_mode)) {
		st = AG_PERMFAIL;
		seterr(err, errlen, "%s: %s", file,
		    ag_strerror(EISDIR, ebuf, sizeof(ebuf)));
	} else if (sb.st_mode & S_IWOTH) {
		st = AG_PERMFAIL;
		seterr(err, errlen, "%s: is world-writable; refusing to use it",
		    file);
	} else {
		st = read_all(fd, file, bufp, lenp, err, errlen);
	}
	close(fd);
	return st;
}

/* Load FILE, or only the built-in defaults when FILE is NULL. */
ag_status
ag_config_load(const char *file, struct ag_config **out, char *err,
    size_t errlen)
{
	char *buf = NULL, empty[1] = "";
	size_t len = 0;
	ag_status st;

	*out = NULL;
	if (file == NULL) {
		return load_buf(empty, 0, "(built-in)", NULL, out, err, errlen);
	}
	st = read_file(file, &buf, &len, err, errlen);
	if (st == AG_OK) {
		st = load_buf(buf, len, file, file, out, err, errlen);
	}
	free(buf);
	return st;
}

/* Load from TEXT; messages name NAME ("(string)" when NULL). */
ag_status
ag_config_load_string(const char *text, const char *name,
    struct ag_config **out, char *err, size_t errlen)
{
	size_t len = text != NULL ? strlen(text) : 0;
	char *buf = malloc(len + 1);
	ag_status st;

	*out = NULL;
	if (name == NULL) {
		name = "(string)";
	}
	if (buf == NULL) {
		seterr(err, errlen, "%s: out of memory", name);
		return AG_NOMEM;
	}
	if (len > 0) {
		memcpy(buf, text, len);
	}
	buf[len] = '\0';
	st = load_buf(buf, len, name, NULL, out, err, errlen);
	free(buf);
	return st;
}

/* Take one more reference to C (NULL gives NULL). */
struct ag_config *
ag_config_ref(struct ag_config *c)
{
	if (c != NULL) {
		__atomic_add_fetch(&((struct config_box *)c)->refs, 1,
		    __ATOMIC_RELAXED);
	}
	return c;
}

/* Drop one reference; the last one frees the snapshot. */
void
ag_config_unref(struct ag_config *c)
{
	if (c != NULL &&
	    __atomic_sub_fetch(&((struct config_box *)c)->refs, 1,
		__ATOMIC_ACQ_REL) == 0) {
		config_free(c);
	}
}

/*
 * Print "Keyword value" for every keyword in table order; a keyword with
 * no value (UserID, PidFile by default) shows "(unset)", an empty
 * TrustedNetworks "none".  All other lines load back as they are.
 */
void
ag_config_dump(const struct ag_config *c, FILE *fp)
{
	size_t i;

	if (c == NULL) {
		return;
	}
	for (i = 0; i < KW_COUNT; i++) {
		fprintf(fp, "%s ", kw_table[i].name);
		ag_kw_ops[kw_table[i].type].dump(&kw_table[i],
		    (const char *)c + kw_table[i].off, fp);
		fputc('\n', fp);
	}
}

static const char *kw_names[KW_COUNT + 1];
static pthread_once_t kw_names_once = PTHREAD_ONCE_INIT;

/* Fill kw_names from the table, once. */
static void
kw_names_init(void)
{
	size_t i;

	for (i = 0; i < KW_COUNT; i++) {
		kw_names[i] = kw_table[i].name;
	}
	kw_names[KW_COUNT] = NULL;
}

/* The table's keyword names, NULL-terminated. */
const char *const *
ag_config_keywords(void)
{
	pthread_once(&kw_names_once, kw_names_init);
	return kw_names;
}

ag_status
ag_config_set(struct ag_config *c, const char *keyword, const char *value,
    char *err, size_t errlen)
{
	struct ag_config tmp;
	const struct kw *k = NULL;
	char msg[512] = "";
	ag_status st;
	size_t i;

	for (i = 0; i < KW_COUNT && k == NULL; i++) {
		if (strcasecmp(keyword, kw_table[i].name) == 0) {
			k = &kw_table[i];
		}
	}
	if (k == NULL) {
		seterr(err, errlen, "unknown keyword %s", keyword);
		return AG_INVALID;
	}
	/* parse aside, so that a bad value leaves C as it was */
	memset(&tmp, 0, sizeof(tmp));
	st = ag_kw_ops[k->type].parse(k, value, kw_field(&tmp, k), msg, sizeof(msg));
	if (st != AG_OK) {
		seterr(err, errlen, "%s: %s", k->name,
		    st == AG_NOMEM ? "out of memory" : msg);
		return st;
	}
	if (ag_kw_ops[k->type].release != NULL) {
		ag_kw_ops[k->type].release(kw_field(c, k));
	}
	memcpy(kw_field(c, k), kw_field(&tmp, k), ag_kw_ops[k->type].size);
	return AG_OK;
}

/* ControlSocket, or beside a unix: Socket, or the default. */
bool
ag_config_control_path(const struct ag_config *c, char *buf, size_t bufsz)
{
	const char *slash;
	int n;

	if (c->control_socket != NULL) {
		n = snprintf(buf, bufsz, "%s", c->control_socket);
	} else if (c->socket != NULL && strncmp(c->socket, "unix:", 5) == 0 &&
	    (slash = strrchr(c->socket + 5, '/')) != NULL) {
		n = snprintf(buf, bufsz, "%.*s/control.sock",
		    (int)(slash - (c->socket + 5)), c->socket + 5);
	} else {
		n = snprintf(buf, bufsz, "%s", AG_CONFIG_DEFAULT_CONTROL);
	}
	return n > 0 && (size_t)n < bufsz;
}

bool
ag_config_rate_redis(const struct ag_config *c)
{
	return c->rate_backend != NULL && strcmp(c->rate_backend, "local") != 0;
}
