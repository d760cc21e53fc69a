/*
 * t_log.c - unit tests for lib/log.c: value escaping, level and facility
 * names, and ag_log() itself, whose standard-error copy is captured
 * through a pipe (dup2 over fd 2) to check the line, the cut of long
 * lines, level filtering, and that lines from threads never interleave.
 * Table-driven: every case has a label that a failure names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#include <paths.h>
#include <stdatomic.h>
#include <sys/stat.h>

/*
 * This program's own syslog(): lib/log.c's calls land here (a definition
 * in the program comes before libc's), so the tests can count them.
 */
static atomic_int syslog_calls;

void
syslog(int pri, const char *fmt, ...)
{
	(void)pri;
	(void)fmt;
	atomic_fetch_add(&syslog_calls, 1);
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Room for everything one test writes to the pipe (below its capacity). */
#define CAPTURE_MAX 65536

/* Fail naming LABEL unless GOT equals WANT. */
static void
check_str(const char *label, const char *what, const char *got,
    const char *want)
{
	if (strcmp(got, want) != 0) {
		fail_msg("%s: %s is \"%s\", want \"%s\"", label, what, got, want);
	}
}

/* Fail naming LABEL unless the numbers agree. */
static void
check_int(const char *label, const char *what, long got, long want)
{
	if (got != want) {
		fail_msg("%s: %s is %ld, want %ld", label, what, got, want);
	}
}

/* Escaping of network values: what is escaped, and cuts with "...". */
static void
test_escape(void **state)
{
	static const struct {
		const char *label, *src;
		size_t dstsz;
		const char *want;
	} cases[] = {
		{ "plain", "abc", 64, "abc" },
		{ "equals kept", "a=b", 64, "a=b" },
		{ "space", "a b", 64, "a\\x20b" },
		{ "quotes", "say \"hi\"", 64, "say\\x20\\x22hi\\x22" },
		{ "backslash", "a\\b", 64, "a\\x5cb" },
		{ "CR LF tab", "a\r\nb\tc", 64, "a\\x0d\\x0ab\\x09c" },
		{ "control", "\x01", 64, "\\x01" },
		{ "DEL", "\x7f", 64, "\\x7f" },
		{ "8-bit", "\xc3\xbc", 64, "\\xc3\\xbc" },
		{ "punctuation kept", "<a@b.c>;[]{}", 64, "<a@b.c>;[]{}" },
		{ "empty", "", 64, "" },
		{ "NULL", NULL, 64, "" },
		{ "exact fit", "abcde", 6, "abcde" },
		{ "exact fit escaped", "a b", 7, "a\\x20b" },
		{ "cut", "abcdefgh", 6, "ab..." },
		{ "cut before escape", "ab cd", 8, "ab..." },
		{ "cut after escape", "a bcdefgh", 10, "a\\x20b..." },
		{ "cut all escapes", "    ", 12, "\\x20\\x20..." },
		{ "escape never split", "    ", 10, "\\x20..." },
		{ "room for dots only", "abcdef", 4, "..." },
		{ "room for two dots", "abcdef", 3, ".." },
		{ "room for nothing", "abcdef", 1, "" },
		{ "one char then cut", "abcdef", 5, "a..." },
	};
	char dst[128];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		memset(dst, 'Z', sizeof(dst));
		if (ag_log_escape(dst, cases[i].dstsz, cases[i].src) != dst) {
			fail_msg("%s: did not return dst", cases[i].label);
		}
		check_str(cases[i].label, "escaped", dst, cases[i].want);
		if (dst[cases[i].dstsz] != 'Z') {
			fail_msg("%s: wrote past the buffer", cases[i].label);
		}
	}
	memset(dst, 'Z', sizeof(dst));
	ag_log_escape(dst, 0, "abc");
	if (dst[0] != 'Z') {
		fail_msg("size 0: wrote to the buffer");
	}
	if (ag_log_escape(NULL, 10, "abc") != NULL) {
		fail_msg("NULL dst: did not return NULL");
	}
}

/* Level names from authgate.conf, and back. */
static void
test_level_names(void **state)
{
	static const struct {
		const char *label, *name;
		int level;
	} parses[] = {
		{ "err", "err", LOG_ERR },
		{ "error alias", "error", LOG_ERR },
		{ "warning", "warning", LOG_WARNING },
		{ "warn alias", "warn", LOG_WARNING },
		{ "notice", "notice", LOG_NOTICE },
		{ "info", "info", LOG_INFO },
		{ "debug", "debug", LOG_DEBUG },
		{ "upper case", "INFO", LOG_INFO },
		{ "crit", "crit", LOG_CRIT },
		{ "unknown", "verbose", -1 },
		{ "trailing space", "info ", -1 },
		{ "number", "6", -1 },
		{ "empty", "", -1 },
		{ "NULL", NULL, -1 },
	};
	static const struct {
		const char *label;
		int level;
		const char *name;
	} names[] = {
		{ "err", LOG_ERR, "err" },
		{ "warning", LOG_WARNING, "warning" },
		{ "notice", LOG_NOTICE, "notice" },
		{ "info", LOG_INFO, "info" },
		{ "debug", LOG_DEBUG, "debug" },
		{ "out of range", 99, "unknown" },
		{ "negative", -1, "unknown" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(parses); i++) {
		check_int(parses[i].label, "level",
		    ag_log_level_parse(parses[i].name), parses[i].level);
	}
	for (i = 0; i < NELEM(names); i++) {
		check_str(names[i].label, "name", ag_log_level_name(names[i].level),
		    names[i].name);
	}
}

/* Facility names from authgate.conf, and back. */
static void
test_facility_names(void **state)
{
	static const struct {
		const char *label, *name;
		int facility;
	} parses[] = {
		{ "mail", "mail", LOG_MAIL },
		{ "daemon", "daemon", LOG_DAEMON },
		{ "user", "user", LOG_USER },
		{ "local0", "local0", LOG_LOCAL0 },
		{ "local7", "local7", LOG_LOCAL7 },
		{ "upper case", "LOCAL3", LOG_LOCAL3 },
		{ "local8", "local8", -1 },
		{ "kern refused", "kern", -1 },
		{ "empty", "", -1 },
		{ "NULL", NULL, -1 },
	};
	static const struct {
		const char *label;
		int facility;
		const char *name;
	} names[] = {
		{ "mail", LOG_MAIL, "mail" },
		{ "daemon", LOG_DAEMON, "daemon" },
		{ "local5", LOG_LOCAL5, "local5" },
		{ "kern", LOG_KERN, "unknown" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(parses); i++) {
		check_int(parses[i].label, "facility",
		    ag_log_facility_parse(parses[i].name), parses[i].facility);
	}
	for (i = 0; i < NELEM(names); i++) {
		check_str(names[i].label, "name",
		    ag_log_facility_name(names[i].facility), names[i].name);
	}
}

/* Where fd 2 is kept while a test captures it. */
struct capture {
	int saved;
	int rd;
};

/* Point fd 2 at a fresh pipe. */
static void
capture_begin(struct capture *c)
{
	int p[2];

	if (pipe(p) != 0) {
		fail_msg("pipe failed");
	}
	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	if (c->saved < 0 || dup2(p[1], STDERR_FILENO) < 0) {
		fail_msg("dup/dup2 failed");
	}
	close(p[1]);
	c->rd = p[0];
}

/* Give fd 2 back and read what was written into BUF (NUL-terminated). */
static size_t
capture_end(struct capture *c, char *buf, size_t bufsz)
{
	size_t len = 0;
	ssize_t n;

	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	while (len < bufsz - 1 &&
	    (n = read(c->rd, buf + len, bufsz - 1 - len)) > 0) {
		len += (size_t)n;
	}
	close(c->rd);
	buf[len] = '\0';
	return len;
}

/* Lines at and above the level reach stderr as "ident[pid]: line\n". */
static void
test_log_stderr(void **state)
{
	static const struct {
		const char *label;
		int set_level, level;
		const char *arg;
		bool shown;
		const char *line;
	} cases[] = {
		{ "info at info", LOG_INFO, LOG_INFO, "x", true,
		    "4XyZ: client=x action=accept" },
		{ "err at info", LOG_INFO, LOG_ERR, "db", true,
		    "4XyZ: client=db action=accept" },
		{ "debug at info", LOG_INFO, LOG_DEBUG, "x", false, "" },
		{ "debug at debug", LOG_DEBUG, LOG_DEBUG, "y", true,
		    "4XyZ: client=y action=accept" },
		{ "info at warning", LOG_WARNING, LOG_INFO, "x", false, "" },
		{ "warning at warning", LOG_WARNING, LOG_WARNING, "w", true,
		    "4XyZ: client=w action=accept" },
		{ "newline flattened", LOG_INFO, LOG_NOTICE, "a\nb\r", true,
		    "4XyZ: client=a b  action=accept" },
	};
	struct capture c;
	char got[1024], want[1024];
	size_t i;

	(void)state;
	ag_log_open("t_log", LOG_LOCAL7, 1);
	for (i = 0; i < NELEM(cases); i++) {
		ag_log_set_level(cases[i].set_level);
		check_int(cases[i].label, "level", ag_log_get_level(),
		    cases[i].set_level);
		capture_begin(&c);
		ag_log(cases[i].level, "4XyZ: client=%s action=%s", cases[i].arg,
		    "accept");
		capture_end(&c, got, sizeof(got));
		if (cases[i].shown) {
			snprintf(want, sizeof(want), "t_log[%ld]: %s\n",
			    (long)getpid(), cases[i].line);
		} else {
			want[0] = '\0';
		}
		check_str(cases[i].label, "stderr", got, want);
	}

	/* The macros, a facility change, and stderr switched off. */
	ag_log_set_level(LOG_INFO);
	ag_log_set_facility(LOG_MAIL);
	capture_begin(&c);
	ag_log_warning("macro %d", 7);
	capture_end(&c, got, sizeof(got));
	snprintf(want, sizeof(want), "t_log[%ld]: macro 7\n", (long)getpid());
	check_str("macro", "stderr", got, want);

	ag_log_open("t_log", LOG_LOCAL7, 0);
	capture_begin(&c);
	ag_log_err("not on stderr");
	capture_end(&c, got, sizeof(got));
	check_str("stderr off", "stderr", got, "");
	ag_log_open("t_log", LOG_LOCAL7, 1);
}

/*
 * With lines on stderr, syslog() is called only while a syslog socket
 * exists (looked for at ag_log_open and every few seconds); without
 * stderr, always.  Both answers are checked on whichever machine this
 * runs: one with a syslog daemon, or a container without one.
 */
static void
test_log_syslog_socket(void **state)
{
	struct stat st;
	bool present = stat(_PATH_LOG, &st) == 0 && S_ISSOCK(st.st_mode);
	struct capture c;
	char got[1024];
	int before;

	(void)state;
	ag_log_set_level(LOG_INFO);
	ag_log_open("t_log", LOG_LOCAL7, 1);
	before = atomic_load(&syslog_calls);
	capture_begin(&c);
	for (int i = 0; i < 100; i++) {
		ag_log_info("line %d", i);
	}
	capture_end(&c, got, sizeof(got));
	print_message("# %s: %s\n", _PATH_LOG, present ? "present" : "absent");
	assert_int_equal(atomic_load(&syslog_calls) - before, present ? 100 : 0);
	ag_log_open("t_log", LOG_LOCAL7, 0);
	before = atomic_load(&syslog_calls);
	for (int i = 0; i < 100; i++) {
		ag_log_info("line %d", i);
	}
	assert_int_equal(atomic_load(&syslog_calls) - before, 100);
	ag_log_open("t_log", LOG_LOCAL7, 1);
}

/* A line past the limit is cut and ends in "..." before the newline. */
static void
test_log_long_line(void **state)
{
	static char big[8000];
	static char got[CAPTURE_MAX];
	struct capture c;
	size_t len, prefix;
	char want[64];

	(void)state;
	ag_log_open("t_log", LOG_LOCAL7, 1);
	ag_log_set_level(LOG_INFO);
	memset(big, 'q', sizeof(big) - 1);
	capture_begin(&c);
	ag_log_info("long=%s", big);
	len = capture_end(&c, got, sizeof(got));
	prefix = (size_t)snprintf(want, sizeof(want), "t_log[%ld]: long=qqq",
	    (long)getpid());
	if (strncmp(got, want, prefix) != 0) {
		fail_msg("long line: starts \"%.40s\"", got);
	}
	/* The prefix without "long=qqq", the 2048-byte line, the newline. */
	check_int("long line", "length", (long)len, (long)(prefix - 8 + 2048 + 1));
	if (len < 5 || strcmp(got + len - 5, "q...\n") != 0) {
		fail_msg("long line: does not end in \"...\\n\"");
	}
}

/* Lines logged by one thread of LOG_THREADS. */
#define LOG_LINES 100
#define LOG_THREADS 4

/* Log LOG_LINES lines tagged with the thread number in ARG. */
static void *
log_thread(void *arg)
{
	int i, t = *(int *)arg;

	for (i = 0; i < LOG_LINES; i++) {
		ag_log_info("thread=%d line=%d pad=%s", t, i,
		    "0123456789abcdef0123456789abcdef");
	}
	return NULL;
}

/* Lines from several threads each arrive whole. */
static void
test_log_threads(void **state)
{
	static char got[CAPTURE_MAX];
	pthread_t th[LOG_THREADS];
	int ids[LOG_THREADS], i, t, l, lines = 0;
	struct capture c;
	char *line, *pad, *save = NULL, want[32];

	(void)state;
	ag_log_open("t_log", LOG_LOCAL7, 1);
	ag_log_set_level(LOG_INFO);
	snprintf(want, sizeof(want), "t_log[%ld]: ", (long)getpid());
	capture_begin(&c);
	for (i = 0; i < LOG_THREADS; i++) {
		ids[i] = i;
		pthread_create(&th[i], NULL, log_thread, &ids[i]);
	}
	for (i = 0; i < LOG_THREADS; i++) {
		pthread_join(th[i], NULL);
	}
	capture_end(&c, got, sizeof(got));
	for (line = strtok_r(got, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		pad = strstr(line, " pad=");
		if (strncmp(line, want, strlen(want)) != 0 ||
		    sscanf(line + strlen(want), "thread=%d line=%d", &t, &l) != 2 ||
		    t < 0 || t >= LOG_THREADS || l < 0 || l >= LOG_LINES ||
		    pad == NULL || strcmp(pad, " pad=0123456789abcdef"
		    "0123456789abcdef") != 0) {
			fail_msg("threads: mangled line \"%s\"", line);
		}
		lines++;
	}
	check_int("threads", "lines", lines, LOG_LINES * LOG_THREADS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_level_names),
		cmocka_unit_test(test_facility_names),
		cmocka_unit_test(test_log_stderr),
		cmocka_unit_test(test_log_long_line),
		cmocka_unit_test(test_log_threads),
		cmocka_unit_test(test_log_syslog_socket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
