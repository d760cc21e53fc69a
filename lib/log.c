/*
 * log.c - the logging facade: the only caller of syslog(3) in authgate.
 *
 * Every line is built whole in a local buffer (bounded by AG_LOG_LINE_MAX
 * and cut with "..."), then handed to syslog() once and, when standard
 * error is wanted, written to fd 2 with a single write(2), so lines from
 * different threads never interleave.  When lines go to standard error
 * and there is no syslog socket (a container, a test), syslog() is not
 * called: glibc would try to connect again for every line (three system
 * calls, about a twentieth of the daemon's work per message).  The socket
 * is looked for again every AG_LOG_RECHECK seconds.
 *
 * Thread safety: the level, facility and stderr flag are atomics and may
 * change while other threads log.  The ident is set once by ag_log_open()
 * before threads start.  ag_log_escape() and the name functions have no
 * state.  Returned names are static strings.
 */
#include "log.h"

#include <errno.h>
#include <paths.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longest line handed to syslog; well under PIPE_BUF with the prefix. */
#define AG_LOG_LINE_MAX 2048
/* Longest ident kept; a longer one is cut. */
#define AG_LOG_IDENT_MAX 64
/* Seconds between looks for the syslog socket while it is missing. */
#define AG_LOG_RECHECK 10
/* What a cut line or value ends with. */
#define AG_LOG_CUT "..."
#define AG_LOG_CUT_LEN 3

/* Whether the syslog socket was there, and when to look again. */
static atomic_long syslog_next_check;	/* CLOCK_MONOTONIC seconds */
static atomic_bool syslog_present = true;
static char log_ident[AG_LOG_IDENT_MAX + 1] = "authgate";
static atomic_int log_facility = LOG_MAIL;
static atomic_int log_level = LOG_INFO;
static atomic_int log_to_stderr = 0;

struct ag_log_name {
	const char *name;
	int value;
};

/* Level names; the first entry for a value is the one printed. */
static const struct ag_log_name log_levels[] = {
	{ "emerg", LOG_EMERG },
	{ "alert", LOG_ALERT },
	{ "crit", LOG_CRIT },
	{ "err", LOG_ERR },
	{ "error", LOG_ERR },
	{ "warning", LOG_WARNING },
	{ "warn", LOG_WARNING },
	{ "notice", LOG_NOTICE },
	{ "info", LOG_INFO },
	{ "debug", LOG_DEBUG },
};

/* Facility names accepted in authgate.conf. */
static const struct ag_log_name log_facilities[] = {
	{ "mail", LOG_MAIL },
	{ "daemon", LOG_DAEMON },
	{ "user", LOG_USER },
	{ "local0", LOG_LOCAL0 },
	{ "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 },
	{ "local4", LOG_LOCAL4 },
	{ "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 },
	{ "local7", LOG_LOCAL7 },
};

#define AG_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Start logging as IDENT to FACILITY, optionally mirrored on stderr. */
void
ag_log_open(const char *ident, int facility, int to_stderr)
{
	if (ident != NULL && ident[0] != '\0') {
		snprintf(log_ident, sizeof(log_ident), "%s", ident);
	}
	atomic_store(&log_facility, facility & LOG_FACMASK);
	atomic_store(&log_to_stderr, to_stderr ? 1 : 0);
	atomic_store(&syslog_next_check, 0);	/* look for the socket again */
	/* LOG_NDELAY: open the socket now, before a chroot or privilege drop. */
	openlog(log_ident, LOG_PID | LOG_NDELAY, facility & LOG_FACMASK);
}

/* Drop lines less important than LEVEL. */
void
ag_log_set_level(int level)
{
	atomic_store(&log_level, level & LOG_PRIMASK);
}

/* The level below which lines are kept. */
int
ag_log_get_level(void)
{
	return atomic_load(&log_level);
}

/* Change the facility; every syslog() call passes it, so no reopen. */
void
ag_log_set_facility(int facility)
{
	atomic_store(&log_facility, facility & LOG_FACMASK);
}

/* Write all of BUF to fd 2 in one write(2), retrying only on EINTR. */
static void
log_write_stderr(const char *buf, size_t len)
{
	ssize_t n;

	do {
		n = write(STDERR_FILENO, buf, len);
	} while (n < 0 && errno == EINTR);
}

/*
 * Is there a syslog socket to send to?  Looked at again every
 * AG_LOG_RECHECK seconds (one stat), not for every line.
 */
static bool
log_syslog_present(void)
{
	struct timespec now;
	struct stat st;
	bool p;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec < atomic_load(&syslog_next_check)) {
		return atomic_load(&syslog_present);
	}
	atomic_store(&syslog_next_check, now.tv_sec + AG_LOG_RECHECK);
	p = stat(_PATH_LOG, &st) == 0 && S_ISSOCK(st.st_mode);
	atomic_store(&syslog_present, p);
	return p;
}

/* Replace control characters so that one call is one line. */
static void
log_flatten(char *line)
{
	unsigned char *p;

	for (p = (unsigned char *)line; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			*p = ' ';
		}
	}
}

/* Log one line at LEVEL, if the configured level lets it through. */
void
ag_log(int level, const char *fmt, ...)
{
	char line[AG_LOG_LINE_MAX + 1];
	char out[AG_LOG_IDENT_MAX + 32 + AG_LOG_LINE_MAX + 2];
	va_list ap;
	int n;

	level &= LOG_PRIMASK;
	if (level > atomic_load(&log_level) || fmt == NULL) {
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0) {
		snprintf(line, sizeof(line), "(log format error)");
	} else if ((size_t)n >= sizeof(line)) {
		memcpy(line + sizeof(line) - 1 - AG_LOG_CUT_LEN, AG_LOG_CUT,
		    AG_LOG_CUT_LEN + 1);
	}
	log_flatten(line);
	/* without stderr, syslog() is the only way out: always try it */
	if (!atomic_load(&log_to_stderr) || log_syslog_present()) {
		syslog(level | atomic_load(&log_facility), "%s", line);
	}
	if (atomic_load(&log_to_stderr)) {
		n = snprintf(out, sizeof(out), "%s[%ld]: %s\n", log_ident,
		    (long)getpid(), line);
		if (n > 0 && (size_t)n < sizeof(out)) {
			log_write_stderr(out, (size_t)n);
		}
	}
}

/* True when byte C must be written as \xHH in a log value. */
static int
log_needs_escape(unsigned char c)
{
	return c < 0x21 || c >= 0x7f || c == '\\' || c == '"';
}

/* Copy SRC into DST as one safe log value, cut with "..." if too long. */
char *
ag_log_escape(char *dst, size_t dstsz, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s;
	size_t need = 0, room, pos = 0, unit;

	if (dst == NULL || dstsz == 0) {
		return dst;
	}
	if (src == NULL) {
		src = "";
	}
	/* Does the whole escaped value fit?  Stop counting once it cannot. */
	for (s = (const unsigned char *)src; *s != '\0' && need < dstsz; s++) {
		need += log_needs_escape(*s) ? 4 : 1;
	}
	room = dstsz - 1;
	if (need > room) {
		room = room > AG_LOG_CUT_LEN ? room - AG_LOG_CUT_LEN : 0;
	}
	for (s = (const unsigned char *)src; *s != '\0'; s++) {
		unit = log_needs_escape(*s) ? 4 : 1;
		if (pos + unit > room) {
			break;
		}
		if (unit == 1) {
			dst[pos++] = (char)*s;
		} else {
			dst[pos++] = '\\';
			dst[pos++] = 'x';
			dst[pos++] = hex[*s >> 4];
			dst[pos++] = hex[*s & 0x0f];
		}
	}
	if (*s != '\0') {
		/* Cut: as much of "..." as the buffer holds. */
		for (unit = 0; unit < AG_LOG_CUT_LEN && pos < dstsz - 1; unit++) {
			dst[pos++] = '.';
		}
	}
	dst[pos] = '\0';
	return dst;
}

/* Look NAME up in TAB (case-insensitive); -1 if absent. */
static int
log_name_parse(const struct ag_log_name *tab, size_t n, const char *name)
{
	size_t i;

	if (name == NULL) {
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (strcasecmp(tab[i].name, name) == 0) {
			return tab[i].value;
		}
	}
	return -1;
}

/* First name for VALUE in TAB; "unknown" if absent. */
static const char *
log_name_of(const struct ag_log_name *tab, size_t n, int value)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (tab[i].value == value) {
			return tab[i].name;
		}
	}
	return "unknown";
}

/* Level from its name ("info", "warning", ...); -1 if unknown. */
int
ag_log_level_parse(const char *name)
{
	return log_name_parse(log_levels, AG_NELEM(log_levels), name);
}

/* Name of a syslog level; "unknown" for a value that is not one. */
const char *
ag_log_level_name(int level)
{
	return log_name_of(log_levels, AG_NELEM(log_levels), level);
}

/* Facility from its name ("mail", "local3", ...); -1 if unknown. */
int
ag_log_facility_parse(const char *name)
{
	return log_name_parse(log_facilities, AG_NELEM(log_facilities), name);
}

/* Name of a syslog facility; "unknown" for one not in the table. */
const char *
ag_log_facility_name(int facility)
{
	return log_name_of(log_facilities, AG_NELEM(log_facilities), facility);
}

const char *
ag_strerror(int e, char *buf, size_t bufsz)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
	return strerror_r(e, buf, bufsz);	/* the GNU form */
#else
	if (strerror_r(e, buf, bufsz) != 0) {
		snprintf(buf, bufsz, "error %d", e);
	}
	return buf;
#endif
}

/* For error messages about records (SPF, DMARC): see log.h. */
const char *
ag_log_quote(char *buf, size_t bufsz, const char *s, size_t n)
{
	size_t i, o = 0;
	unsigned char c;

	for (i = 0; i < n && o + 8 < bufsz; i++) {
		if (i == AG_LOG_QUOTE_MAX) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			buf[o++] = (char)c;
		} else {
			o += (size_t)snprintf(buf + o, bufsz - o, "\\x%02x", c);
		}
	}
	buf[o] = '\0';
	return buf;
}
