/*
 * config.c - authgate.conf: one table of keywords drives parsing,
 * built-in defaults, the dump printed by `authgate -n` and the keyword
 * list the man-page test checks.
 *
 * A value is parsed by the parser of its keyword's type; a default is
 * the text a file would have held, parsed by the same code.  The file is
 * read whole (it is small and capped) and split into lines in place.
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

#define AG_CONFIG_LINE_MAX 4096		/* bytes per line, without CR LF */
#define AG_CONFIG_FILE_MAX (1024 * 1024)	/* a config file, in bytes */
#define AG_CONFIG_NAME_MAX 255		/* user and group names in UserID */
/*
 * RFC 8601 2.5: authserv-id is a "value" (RFC 2045 token or quoted
 * string); only the token-like form is accepted, so that it never needs
 * quoting in the header.  255 bounds it like a domain name (RFC 1035).
 */
#define AG_AUTHSERV_ID_MAX 255
#define AG_HOSTNAME_MAX 253		/* RFC 1035 2.3.4, in text form */
#define AG_HOST_LABEL_MAX 63		/* RFC 1035 2.3.4 */
#define AG_QUOTE_MAX 64			/* value bytes shown in a message */

/* A snapshot and its reference count; callers see only PUB. */
struct config_box {
	struct ag_config pub;	/* first: a config pointer is a box pointer */
	unsigned refs;
};

enum kw_type {
	KW_SOCKET,	/* char *: unix:PATH, inet:PORT@ADDR, inet6:PORT@ADDR */
	KW_PATH,	/* char *: any non-empty path */
	KW_ABSPATH,	/* char *: an absolute path */
	KW_AUTHSERV,	/* char *: RFC 8601 authserv-id token */
	KW_USER,	/* char *: user[:group] */
	KW_MODE,	/* mode_t: octal 0..0777 */
	KW_LEVEL,	/* int: syslog priority by name */
	KW_FACILITY,	/* int: syslog facility by name */
	KW_CIDRS,	/* struct ag_cidr_list, or "none" */
	KW_BOOL,	/* bool: yes/no/true/false/1/0 */
	KW_ACTION,	/* enum ag_action: tempfail|accept */
	KW_UINT,	/* unsigned within [min, max] */
	KW_SERVERS,	/* char *: DNS forwarders ADDR[@PORT] ... */
	KW_DISP		/* int (enum ag_disp): accept|tag|tempfail|reject */
};

#define KW_F_DEF_HOSTNAME 0x1	/* default is the host name */

struct kw {
	const char *name;
	enum kw_type type;
	const char *def;	/* default text; NULL: unset */
	size_t off;		/* offsetof(struct ag_config, field) */
	unsigned min, max;	/* bounds for KW_UINT */
	unsigned flags;
	const char *doc;
};

#define OFF(field) offsetof(struct ag_config, field)

/* The keywords, in the order ag_config_dump() prints them. */
static const struct kw kw_table[] = {
	{ "Socket", KW_SOCKET, AG_CONFIG_DEFAULT_SOCKET, OFF(socket), 0, 0, 0,
	    "where the MTA connects: unix:PATH, inet[6]:PORT@ADDR" },
	{ "Database", KW_PATH, AG_CONFIG_DEFAULT_DATABASE, OFF(database),
	    0, 0, 0, "the SQLite policy and history database" },
	{ "AuthservID", KW_AUTHSERV, NULL, OFF(authserv_id), 0, 0,
	    KW_F_DEF_HOSTNAME, "authserv-id in Authentication-Results" },
	{ "UserID", KW_USER, NULL, OFF(user_id), 0, 0, 0,
	    "user[:group] to run as after start-up" },
	{ "UMask", KW_MODE, "0007", OFF(umask), 0, 0, 0,
	    "umask for the socket and files created" },
	{ "PidFile", KW_ABSPATH, NULL, OFF(pid_file), 0, 0, 0,
	    "file to write the daemon's process id to" },
	{ "LogLevel", KW_LEVEL, "info", OFF(log_level), 0, 0, 0,
	    "lowest syslog priority logged" },
	{ "LogFacility", KW_FACILITY, "mail", OFF(log_facility), 0, 0, 0,
	    "syslog facility" },
	{ "TrustedNetworks", KW_CIDRS, "127.0.0.0/8, ::1/128", OFF(trusted),
	    0, 0, 0, "internal client networks (rule field trusted=yes)" },
	{ "DryRun", KW_BOOL, "no", OFF(dry_run), 0, 0, 0,
	    "decide and log, but accept every message" },
	{ "On-DatabaseError", KW_ACTION, "tempfail", OFF(on_database_error),
	    0, 0, 0, "answer when no policy can be read" },
	{ "On-InternalError", KW_ACTION, "tempfail", OFF(on_internal_error),
	    0, 0, 0, "answer on an internal error" },
	{ "PolicyCheckInterval", KW_UINT, "2", OFF(policy_check_interval),
	    1, 3600, 0, "seconds between checks for rule changes" },
	{ "DatabaseTimeout", KW_UINT, "2000", OFF(database_timeout),
	    0, 60000, 0, "milliseconds to wait for a database lock" },
	{ "DNSServer", KW_SERVERS, NULL, OFF(dns_servers), 0, 0, 0,
	    "DNS servers to ask, ADDR[@PORT] ...; unset: /etc/resolv.conf" },
	{ "DNSTimeout", KW_UINT, "5000", OFF(dns_timeout), 100, 60000, 0,
	    "milliseconds to wait for one DNS answer" },
	{ "SPFTimeout", KW_UINT, "15000", OFF(spf_timeout), 100, 120000, 0,
	    "milliseconds one SPF evaluation may take in all" },
	{ "SPFCheck", KW_BOOL, "yes", OFF(spf_check), 0, 0, 0,
	    "check SPF at all (rules can turn it off for some mail)" },
	{ "SPFCheckHelo", KW_BOOL, "yes", OFF(spf_check_helo), 0, 0, 0,
	    "also check the HELO identity (RFC 7208 2.3)" },
	{ "On-SPFPass", KW_DISP, "accept", OFF(spf_disp[AG_SPF_PASS]), 0, 0, 0,
	    "what an SPF pass gets" },
	{ "On-SPFFail", KW_DISP, "reject", OFF(spf_disp[AG_SPF_FAIL]), 0, 0, 0,
	    "what an SPF fail gets" },
	{ "On-SPFSoftfail", KW_DISP, "accept", OFF(spf_disp[AG_SPF_SOFTFAIL]),
	    0, 0, 0, "what an SPF softfail gets" },
	{ "On-SPFNeutral", KW_DISP, "accept", OFF(spf_disp[AG_SPF_NEUTRAL]),
	    0, 0, 0, "what an SPF neutral gets" },
	{ "On-SPFNone", KW_DISP, "accept", OFF(spf_disp[AG_SPF_NONE]), 0, 0, 0,
	    "what mail without an SPF record gets" },
	{ "On-SPFTemperror", KW_DISP, "tempfail", OFF(spf_disp[AG_SPF_TEMPERROR]),
	    0, 0, 0, "what an SPF temperror gets" },
	{ "On-SPFPermerror", KW_DISP, "accept", OFF(spf_disp[AG_SPF_PERMERROR]),
	    0, 0, 0, "what an SPF permerror gets" },
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

/* strerror_r in either its XSI or its GNU form, into BUF. */
static const char *
errstr(int e, char *buf, size_t bufsz)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
	return strerror_r(e, buf, bufsz);
#else
	if (strerror_r(e, buf, bufsz) != 0) {
		snprintf(buf, bufsz, "error %d", e);
	}
	return buf;
#endif
}

/*
 * Copy S into DST for a message: printable ASCII kept, '"' and '\\'
 * escaped, anything else as \xHH; cut after AG_QUOTE_MAX input bytes.
 */
static char *
quote(char *dst, size_t dstsz, const char *s)
{
	size_t i, o = 0;

	for (i = 0; s[i] != '\0' && i < AG_QUOTE_MAX && o + 5 < dstsz; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)ch;
		} else if (ch >= 0x20 && ch < 0x7f) {
			dst[o++] = (char)ch;
		} else {
			o += (size_t)snprintf(dst + o, dstsz - o, "\\x%02x",
			    ch);
		}
	}
	if (s[i] != '\0' && o + 4 <= dstsz) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}

#define QUOTE_BUFSZ (AG_QUOTE_MAX * 4 + 8)

/* Message "\"VALUE\" what is wrong" into MSG; returns AG_INVALID. */
static ag_status __attribute__((format(printf, 4, 5)))
bad_value(char *msg, size_t msglen, const char *v, const char *fmt, ...)
{
	char q[QUOTE_BUFSZ];
	int n;
	va_list ap;

	n = snprintf(msg, msglen, "\"%s\" ", quote(q, sizeof(q), v));
	if (n >= 0 && (size_t)n < msglen) {
		va_start(ap, fmt);
		vsnprintf(msg + n, msglen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return AG_INVALID;
}

/*
 * Digits of V in BASE (8 or 10) into *OUT, saturating above LIMIT.
 * Returns -1 when V is empty or has a non-digit, 1 above LIMIT, else 0.
 */
static int
digits_value(const char *v, unsigned base, unsigned long limit,
    unsigned long *out)
{
	unsigned long acc = 0;
	const char *p;

	if (*v == '\0') {
		return -1;
	}
	for (p = v; *p != '\0'; p++) {
		if (*p < '0' || *p >= (char)('0' + base)) {
			return -1;
		}
	}
	for (p = v; *p != '\0'; p++) {
		acc = acc * base + (unsigned long)(*p - '0');
		if (acc > limit) {
			return 1;
		}
	}
	*out = acc;
	return 0;
}

/* Store A followed by B as a new string in the char * at DST. */
static ag_status
set_concat(void *dst, const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	char *copy = malloc(na + nb + 1);

	if (copy == NULL) {
		return AG_NOMEM;
	}
	memcpy(copy, a, na);
	memcpy(copy + na, b, nb + 1);
	free(*(char **)dst);
	*(char **)dst = copy;
	return AG_OK;
}

/* A host name as libmilter may resolve it: LDH labels, dots between. */
static bool
is_hostname(const char *s)
{
	size_t label = 0, total = 0;

	for (; *s != '\0'; s++, total++) {
		if (*s == '.') {
			if (label == 0) {
				return false;
			}
			label = 0;
		} else if (isalnum((unsigned char)*s) || *s == '-') {
			if (++label > AG_HOST_LABEL_MAX) {
				return false;
			}
		} else {
			return false;
		}
	}
	return total > 0 && total <= AG_HOSTNAME_MAX && label > 0;
}

/* The PORT@ADDR part of an inet or inet6 socket, for family AF. */
static ag_status
check_port_addr(const char *v, const char *rest, int af, char *msg,
    size_t msglen)
{
	const char *at = strchr(rest, '@');
	unsigned long port;
	char portbuf[8];
	unsigned char addr[16];

	if (at == NULL || at == rest || at[1] == '\0' ||
	    (size_t)(at - rest) >= sizeof(portbuf)) {
		return bad_value(msg, msglen, v, "is not %s:PORT@ADDR",
		    af == AF_INET ? "inet" : "inet6");
	}
	memcpy(portbuf, rest, (size_t)(at - rest));
	portbuf[at - rest] = '\0';
	if (digits_value(portbuf, 10, 65535, &port) != 0 || port == 0) {
		return bad_value(msg, msglen, v,
		    "has a bad port (1 to 65535)");
	}
	if (inet_pton(af, at + 1, addr) != 1 && !is_hostname(at + 1)) {
		return bad_value(msg, msglen, v, "has a bad %s address",
		    af == AF_INET ? "IPv4" : "IPv6");
	}
	return AG_OK;
}

/* Socket: validate and store as unix:PATH, inet:PORT@ADDR or inet6:... */
static ag_status
parse_socket(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	static const struct {
		const char *prefix;
		const char *canon;
		int af;
	} forms[] = {
		{ "unix:", "unix:", AF_UNIX }, { "local:", "unix:", AF_UNIX },
		{ "inet:", "inet:", AF_INET }, { "inet6:", "inet6:", AF_INET6 },
	};
	const char *canon = "unix:", *rest = v;
	struct sockaddr_un sa;
	int af = AF_UNIX;
	size_t i;
	ag_status st;

	(void)k;
	for (i = 0; i < sizeof(forms) / sizeof(forms[0]) && *v != '/'; i++) {
		size_t n = strlen(forms[i].prefix);

		if (strncasecmp(v, forms[i].prefix, n) == 0) {
			canon = forms[i].canon;
			rest = v + n;
			af = forms[i].af;
			break;
		}
	}
	if (*v != '/' && rest == v) {
		return bad_value(msg, msglen, v, "is not a socket "
		    "(unix:PATH, inet:PORT@ADDR or inet6:PORT@ADDR)");
	}
	if (af != AF_UNIX) {
		st = check_port_addr(v, rest, af, msg, msglen);
		if (st != AG_OK) {
			return st;
		}
	} else if (*rest != '/') {
		return bad_value(msg, msglen, v, "needs an absolute path");
	} else if (strlen(rest) >= sizeof(sa.sun_path)) {
		return bad_value(msg, msglen, v,
		    "has a path longer than %zu bytes",
		    sizeof(sa.sun_path) - 1);
	}
	return set_concat(dst, canon, rest);
}

/* Database: any non-empty path; a relative one is taken from the cwd. */
static ag_status
parse_path(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	(void)k;
	if (*v == '\0') {
		return bad_value(msg, msglen, v, "is not a path");
	}
	return set_concat(dst, "", v);
}

/* PidFile: an absolute path. */
static ag_status
parse_abspath(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	(void)k;
	if (*v != '/') {
		return bad_value(msg, msglen, v, "is not an absolute path");
	}
	return set_concat(dst, "", v);
}

/* True when S can stand as an authserv-id without quoting. */
static bool
is_authserv_id(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++) {
		if (*s <= ' ' || *s >= 0x7f || strchr(";()\"'", *s) != NULL) {
			return false;
		}
	}
	return n > 0 && n <= AG_AUTHSERV_ID_MAX;
}

/* AuthservID: RFC 8601 authserv-id, token form. */
static ag_status
parse_authserv(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	(void)k;
	if (strlen(v) > AG_AUTHSERV_ID_MAX) {
		return bad_value(msg, msglen, v, "is longer than %d bytes",
		    AG_AUTHSERV_ID_MAX);
	}
	if (!is_authserv_id(v)) {
		return bad_value(msg, msglen, v,
		    "is not an authserv-id (printable ASCII without spaces, "
		    "';', '(', ')' or quotes)");
	}
	return set_concat(dst, "", v);
}

/* Length of the user or group name at S (up to ':' or the end), or 0. */
static size_t
name_len(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0' && s[n] != ':'; n++) {
		if (!isalnum((unsigned char)s[n]) && s[n] != '.' &&
		    s[n] != '_' && s[n] != '-') {
			return 0;
		}
	}
	return n <= AG_CONFIG_NAME_MAX ? n : 0;
}

/* UserID: user or user:group; names are only checked, not resolved. */
static ag_status
parse_user(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	size_t n = name_len(v), g = 0;

	(void)k;
	if (n > 0 && v[n] == ':') {
		g = name_len(v + n + 1);
	}
	if (n == 0 || (v[n] == ':' && (g == 0 || v[n + 1 + g] != '\0'))) {
		return bad_value(msg, msglen, v, "is not user or user:group "
		    "(names of letters, digits, '.', '_' and '-')");
	}
	return set_concat(dst, "", v);
}

/* UMask: an octal mode 0..0777. */
static ag_status
parse_mode(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	unsigned long m;
	int r = digits_value(v, 8, 0777, &m);

	(void)k;
	if (r < 0) {
		return bad_value(msg, msglen, v, "is not an octal mode");
	}
	if (r > 0) {
		return bad_value(msg, msglen, v, "is out of range (0 to 0777)");
	}
	*(mode_t *)dst = (mode_t)m;
	return AG_OK;
}

/* Lower-case V into BUF; false when it does not fit (so is no name). */
static bool
lower(char *buf, size_t bufsz, const char *v)
{
	size_t i;

	for (i = 0; v[i] != '\0'; i++) {
		if (i + 1 >= bufsz) {
			return false;
		}
		buf[i] = (char)tolower((unsigned char)v[i]);
	}
	buf[i] = '\0';
	return true;
}

/* LogLevel: a syslog priority by name. */
static ag_status
parse_level(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char name[16];
	int level = -1;

	(void)k;
	if (lower(name, sizeof(name), v)) {
		level = ag_log_level_parse(name);
	}
	if (level < 0) {
		return bad_value(msg, msglen, v, "is not a log level "
		    "(err, warning, notice, info or debug)");
	}
	*(int *)dst = level;
	return AG_OK;
}

/* LogFacility: a syslog facility by name. */
static ag_status
parse_facility(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char name[16];
	int facility = -1;

	(void)k;
	if (lower(name, sizeof(name), v)) {
		facility = ag_log_facility_parse(name);
	}
	if (facility < 0) {
		return bad_value(msg, msglen, v, "is not a syslog facility "
		    "(mail, daemon, user or local0 to local7)");
	}
	*(int *)dst = facility;
	return AG_OK;
}

/* TrustedNetworks: a list of networks, or "none" for an empty list. */
static ag_status
parse_cidrs(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	struct ag_cidr_list list = { 0, NULL };
	char item[QUOTE_BUFSZ];
	ag_status st;

	(void)k;
	if (strcasecmp(v, "none") != 0) {
		item[0] = '\0';
		st = ag_cidr_list_parse(v, &list, item, sizeof(item));
		if (st == AG_INVALID) {
			return bad_value(msg, msglen,
			    item[0] != '\0' ? item : v, "is not an IP network");
		}
		if (st != AG_OK) {
			return st;
		}
		if (list.n == 0) {
			return bad_value(msg, msglen, v,
			    "names no network (write none for an empty list)");
		}
	}
	ag_cidr_list_free((struct ag_cidr_list *)dst);
	*(struct ag_cidr_list *)dst = list;
	return AG_OK;
}

/* DryRun: yes/no, true/false, 1/0. */
static ag_status
parse_bool(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	(void)k;
	if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 ||
	    strcmp(v, "1") == 0) {
		*(bool *)dst = true;
	} else if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 ||
	    strcmp(v, "0") == 0) {
		*(bool *)dst = false;
	} else {
		return bad_value(msg, msglen, v, "is not yes or no");
	}
	return AG_OK;
}

/* On-*Error: tempfail or accept. */
static ag_status
parse_action(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char name[16];
	enum ag_action a;

	/* Trouble of ours never becomes a permanent rejection: no "reject". */
	(void)k;
	if (!lower(name, sizeof(name), v) || ag_action_parse(name, &a) != 0 ||
	    (a != AG_ACT_TEMPFAIL && a != AG_ACT_ACCEPT)) {
		return bad_value(msg, msglen, v, "is not tempfail or accept");
	}
	*(enum ag_action *)dst = a;
	return AG_OK;
}

/* A decimal number within the keyword's bounds. */
static ag_status
parse_uint(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	unsigned long n;
	int r = digits_value(v, 10, k->max, &n);

	if (r < 0) {
		return bad_value(msg, msglen, v, "is not a number");
	}
	if (r > 0 || n < k->min) {
		return bad_value(msg, msglen, v, "is out of range (%u to %u)",
		    k->min, k->max);
	}
	*(unsigned *)dst = (unsigned)n;
	return AG_OK;
}

/* DNSServer: forwarders "ADDR" or "ADDR@PORT", stored space-separated. */
static ag_status
parse_servers(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char buf[1024], out[1024] = "", *tok, *save = NULL;
	size_t used = 0;

	(void)k;
	if (strlen(v) >= sizeof(buf)) {
		return bad_value(msg, msglen, v, "is too long");
	}
	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		char addr[64];
		char *at = strrchr(tok, '@');
		struct ag_ip ip;
		unsigned long port;

		snprintf(addr, sizeof(addr), "%.*s",
		    (int)(at != NULL ? (size_t)(at - tok) : strlen(tok)), tok);
		if (ag_ip_parse(addr, &ip) != AG_OK || strchr(addr, '[') != NULL) {
			return bad_value(msg, msglen, tok, "is not an IP address "
			    "(with an optional @PORT)");
		}
		if (at != NULL && (digits_value(at + 1, 10, 65535, &port) != 0 ||
		    port == 0)) {
			return bad_value(msg, msglen, tok, "has a bad port");
		}
		used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%s",
		    used > 0 ? " " : "", tok);
	}
	if (used == 0) {
		return bad_value(msg, msglen, v, "names no server");
	}
	return set_concat(dst, "", out);
}

/* On-SPF*: accept, tag, tempfail or reject. */
static ag_status
parse_disp(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char name[16];
	enum ag_disp d;

	(void)k;
	if (!lower(name, sizeof(name), v) || ag_disp_parse(name, &d) != 0) {
		return bad_value(msg, msglen, v,
		    "is not accept, tag, tempfail or reject");
	}
	*(int *)dst = (int)d;
	return AG_OK;
}

/* The dump_* functions print a field's value as a file would hold it. */
static void
dump_string(const void *src, FILE *fp)
{
	const char *s = *(char *const *)src;

	fputs(s != NULL ? s : "(unset)", fp);
}

static void
dump_mode(const void *src, FILE *fp)
{
	fprintf(fp, "%04o", (unsigned)*(const mode_t *)src);
}

static void
dump_level(const void *src, FILE *fp)
{
	const char *name = ag_log_level_name(*(const int *)src);

	fputs(name != NULL ? name : "?", fp);
}

static void
dump_facility(const void *src, FILE *fp)
{
	const char *name = ag_log_facility_name(*(const int *)src);

	fputs(name != NULL ? name : "?", fp);
}

static void
dump_cidrs(const void *src, FILE *fp)
{
	const struct ag_cidr_list *list = src;
	char buf[AG_CIDR_STRLEN];
	size_t i;

	if (list->n == 0) {
		fputs("none", fp);
	}
	for (i = 0; i < list->n; i++) {
		fprintf(fp, "%s%s", i > 0 ? ", " : "",
		    ag_cidr_format(&list->v[i], buf, sizeof(buf)));
	}
}

static void
dump_bool(const void *src, FILE *fp)
{
	fputs(*(const bool *)src ? "yes" : "no", fp);
}

static void
dump_action(const void *src, FILE *fp)
{
	fputs(ag_action_name(*(const enum ag_action *)src), fp);
}

static void
dump_uint(const void *src, FILE *fp)
{
	fprintf(fp, "%u", *(const unsigned *)src);
}

static void
dump_disp(const void *src, FILE *fp)
{
	fputs(ag_disp_name((enum ag_disp)*(const int *)src), fp);
}

/* The release_* functions free what a field owns. */
static void
release_string(void *dst)
{
	free(*(char **)dst);
	*(char **)dst = NULL;
}

static void
release_cidrs(void *dst)
{
	ag_cidr_list_free(dst);
}

/* What each type does: parse a value, print it, free it (or NULL). */
static const struct kw_ops {
	ag_status (*parse)(const struct kw *, const char *, void *, char *,
	    size_t);
	void (*dump)(const void *, FILE *);
	void (*release)(void *);
	size_t size;	/* of the field in struct ag_config */
} kw_ops[] = {
	[KW_SOCKET] = { parse_socket, dump_string, release_string,
	    sizeof(char *) },
	[KW_PATH] = { parse_path, dump_string, release_string, sizeof(char *) },
	[KW_ABSPATH] = { parse_abspath, dump_string, release_string,
	    sizeof(char *) },
	[KW_AUTHSERV] = { parse_authserv, dump_string, release_string,
	    sizeof(char *) },
	[KW_USER] = { parse_user, dump_string, release_string, sizeof(char *) },
	[KW_MODE] = { parse_mode, dump_mode, NULL, sizeof(mode_t) },
	[KW_LEVEL] = { parse_level, dump_level, NULL, sizeof(int) },
	[KW_FACILITY] = { parse_facility, dump_facility, NULL, sizeof(int) },
	[KW_CIDRS] = { parse_cidrs, dump_cidrs, release_cidrs,
	    sizeof(struct ag_cidr_list) },
	[KW_BOOL] = { parse_bool, dump_bool, NULL, sizeof(bool) },
	[KW_ACTION] = { parse_action, dump_action, NULL,
	    sizeof(enum ag_action) },
	[KW_UINT] = { parse_uint, dump_uint, NULL, sizeof(unsigned) },
	[KW_SERVERS] = { parse_servers, dump_string, release_string,
	    sizeof(char *) },
	[KW_DISP] = { parse_disp, dump_disp, NULL, sizeof(int) },
};

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
		const struct kw_ops *ops = &kw_ops[kw_table[i].type];

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
	st = kw_ops[k->type].parse(k, v, kw_field(ld->c, k), msg, sizeof(msg));
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
		    quote(q, sizeof(q), key));
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
			    !is_authserv_id(host)) {
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
			    errstr(errno, ebuf, sizeof(ebuf)));
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
		    errstr(errno, ebuf, sizeof(ebuf)));
		if (fd >= 0) {
			close(fd);
		}
		return AG_PERMFAIL;
	}
	if (S_ISDIR(sb.st_mode)) {
		st = AG_PERMFAIL;
		seterr(err, errlen, "%s: %s", file,
		    errstr(EISDIR, ebuf, sizeof(ebuf)));
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
		kw_ops[kw_table[i].type].dump((const char *)c + kw_table[i].off,
		    fp);
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
	st = kw_ops[k->type].parse(k, value, kw_field(&tmp, k), msg, sizeof(msg));
	if (st != AG_OK) {
		seterr(err, errlen, "%s: %s", k->name,
		    st == AG_NOMEM ? "out of memory" : msg);
		return st;
	}
	if (kw_ops[k->type].release != NULL) {
		kw_ops[k->type].release(kw_field(c, k));
	}
	memcpy(kw_field(c, k), kw_field(&tmp, k), kw_ops[k->type].size);
	return AG_OK;
}
