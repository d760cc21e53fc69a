/*
 * config_value.c - one value of each keyword type of authgate.conf:
 * parse it (with a message naming what is wrong), print it as a file
 * would hold it, free what it owns.  The keyword table is in config.c.
 *
 * Thread safety: no shared state.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "config_int.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "ratelimit_redis.h"

/*
 * Copy S into DST for a message: printable ASCII kept, '"' and '\\'
 * escaped, anything else as \xHH; cut after AG_QUOTE_MAX input bytes.
 */
char *
ag_config_quote(char *dst, size_t dstsz, const char *s)
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


/* Message "\"VALUE\" what is wrong" into MSG; returns AG_INVALID. */
static ag_status __attribute__((format(printf, 4, 5)))
bad_value(char *msg, size_t msglen, const char *v, const char *fmt, ...)
{
	char q[QUOTE_BUFSZ];
	int n;
	va_list ap;

	n = snprintf(msg, msglen, "\"%s\" ", ag_config_quote(q, sizeof(q), v));
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

/* RateBackend: "local" or a Redis URL (checked in full by
 * ag_redis_new, which makes no connection). */
static ag_status
parse_ratebackend(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	struct ag_redis *r = NULL;
	char err[256];

	(void)k;
	if (strcmp(v, "local") == 0) {
		return set_concat(dst, "", v);
	}
	if (ag_redis_new(v, 1000, &r, err, sizeof(err)) != AG_OK) {
		return bad_value(msg, msglen, v, "is not local, "
		    "redis://HOST[:PORT][/DB] or unix:/PATH[?db=N] (%s)", err);
	}
	ag_redis_free(r);
	return set_concat(dst, "", v);
}

/* MetricsListen: IPV4:PORT or [IPV6]:PORT (metrics.c parses it). */
static ag_status
parse_listen(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char why[128];

	(void)k;
	if (ag_metrics_listen_parse(v, NULL, NULL, why, sizeof(why)) !=
	    AG_OK) {
		return bad_value(msg, msglen, v, "%s", why);
	}
	return set_concat(dst, "", v);
}

/* A choice among the keyword's names (case-insensitive), stored as its
 * index (an int-sized enum). */
static ag_status
parse_choice(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char list[256] = "";
	size_t i, len = 0;

	for (i = 0; k->names[i] != NULL; i++) {
		if (strcasecmp(v, k->names[i]) == 0) {
			*(int *)dst = (int)i;
			return AG_OK;
		}
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
		    i == 0 ? "" : k->names[i + 1] == NULL ? " or " : ", ",
		    k->names[i]);
		if (len >= sizeof(list)) {
			len = sizeof(list) - 1;
		}
	}
	return bad_value(msg, msglen, v, "is not %s", list);
}

static void
dump_choice(const struct kw *k, const void *src, FILE *fp)
{
	fputs(k->names[*(const int *)src], fp);
}

/* True when S can stand as an authserv-id without quoting. */
bool
ag_config_authserv_ok(const char *s)
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
	if (!ag_config_authserv_ok(v)) {
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

/* AuthservIDStrip: authserv-id tokens, stored space-separated. */
static ag_status
parse_idlist(const struct kw *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char buf[2048], out[2048] = "", *tok, *save = NULL;
	size_t used = 0;

	(void)k;
	if (strlen(v) >= sizeof(buf)) {
		return bad_value(msg, msglen, v, "is too long");
	}
	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		/* "a,#b": after a space (authgate -n writes one) the '#'
		 * would start a comment, as it does for the first id */
		if (tok[0] == '#' || !ag_config_authserv_ok(tok)) {
			return bad_value(msg, msglen, tok,
			    "is not an authserv-id token");
		}
		used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%s",
		    used > 0 ? " " : "", tok);
	}
	if (used == 0) {
		return bad_value(msg, msglen, v, "names no authserv-id");
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
dump_string(const struct kw *k, const void *src, FILE *fp)
{
	const char *s = *(char *const *)src;

	fputs(s != NULL ? s : "(unset)", fp);
}

static void
dump_mode(const struct kw *k, const void *src, FILE *fp)
{
	fprintf(fp, "%04o", (unsigned)*(const mode_t *)src);
}

static void
dump_level(const struct kw *k, const void *src, FILE *fp)
{
	const char *name = ag_log_level_name(*(const int *)src);

	fputs(name != NULL ? name : "?", fp);
}

static void
dump_facility(const struct kw *k, const void *src, FILE *fp)
{
	const char *name = ag_log_facility_name(*(const int *)src);

	fputs(name != NULL ? name : "?", fp);
}

static void
dump_cidrs(const struct kw *k, const void *src, FILE *fp)
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
dump_bool(const struct kw *k, const void *src, FILE *fp)
{
	fputs(*(const bool *)src ? "yes" : "no", fp);
}

static void
dump_action(const struct kw *k, const void *src, FILE *fp)
{
	fputs(ag_action_name(*(const enum ag_action *)src), fp);
}

static void
dump_uint(const struct kw *k, const void *src, FILE *fp)
{
	fprintf(fp, "%u", *(const unsigned *)src);
}

static void
dump_disp(const struct kw *k, const void *src, FILE *fp)
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
const struct kw_ops ag_kw_ops[] = {
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
	[KW_IDLIST] = { parse_idlist, dump_string, release_string,
	    sizeof(char *) },
	[KW_RATEBACKEND] = { parse_ratebackend, dump_string, release_string,
	    sizeof(char *) },
	[KW_CHOICE] = { parse_choice, dump_choice, NULL, sizeof(int) },
	[KW_LISTEN] = { parse_listen, dump_string, release_string,
	    sizeof(char *) },
};
