/*
 * log.h - the logging facade.  lib/log.c is the only caller of syslog(3).
 *
 * Thread safety: all functions may be called from any thread once
 * ag_log_open() has returned.  Levels are syslog priorities.
 */
#ifndef AG_LOG_H
#define AG_LOG_H

#include <stddef.h>
#include <syslog.h>

/*
 * Start logging as IDENT to syslog FACILITY (LOG_MAIL...).  With
 * to_stderr set, every line is also written to standard error (the
 * daemon in the foreground, the command-line tools).
 */
void ag_log_open(const char *ident, int facility, int to_stderr);

/* Lines above LEVEL (e.g. LOG_DEBUG when LEVEL is LOG_INFO) are dropped. */
void ag_log_set_level(int level);
int ag_log_get_level(void);

/* Change the facility while running (config reload). */
void ag_log_set_facility(int facility);

/* Log one line.  The format string must be a literal. */
void ag_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define ag_log_err(...)     ag_log(LOG_ERR, __VA_ARGS__)
#define ag_log_warning(...) ag_log(LOG_WARNING, __VA_ARGS__)
#define ag_log_notice(...)  ag_log(LOG_NOTICE, __VA_ARGS__)
#define ag_log_info(...)    ag_log(LOG_INFO, __VA_ARGS__)
#define ag_log_debug(...)   ag_log(LOG_DEBUG, __VA_ARGS__)

/*
 * Copy SRC into DST (size DSTSZ, always NUL-terminated) so that it is safe
 * as one log value: control characters, bytes >= 0x7f, backslash, '"'
 * and spaces become \xHH escapes; the result is cut at DSTSZ-1 bytes,
 * never in the middle of an escape, and a cut ends in "...".  SRC may be
 * NULL (gives "").  Returns DST.
 */
char *ag_log_escape(char *dst, size_t dstsz, const char *src);

/*
 * The first AG_LOG_QUOTE_MAX of the N bytes at S (which may hold NULs)
 * into BUF for an error message: printable ASCII as is, '"', '\\' and
 * other bytes as \xHH, "..." when cut.  BUF of AG_LOG_QUOTE_SIZE holds
 * any input.  Returns BUF.
 */
#define AG_LOG_QUOTE_MAX 32
#define AG_LOG_QUOTE_SIZE (AG_LOG_QUOTE_MAX * 4 + 8)
const char *ag_log_quote(char *buf, size_t bufsz, const char *s, size_t n);

/* The text of errno value E in BUF (reentrant strerror); returns it. */
const char *ag_strerror(int e, char *buf, size_t bufsz);

/* Level and facility names as used in authgate.conf ("info", "mail"). */
int ag_log_level_parse(const char *name);	/* -1 if unknown */
const char *ag_log_level_name(int level);
int ag_log_facility_parse(const char *name);	/* -1 if unknown */
const char *ag_log_facility_name(int facility);

#endif
