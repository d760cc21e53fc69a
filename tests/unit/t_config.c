/*
 * t_config.c - unit tests for lib/config.c: defaults, every keyword's
 * good and bad values with their exact "file:line: message", the file
 * syntax (comments, CRLF, long lines, NUL bytes), file-level refusals,
 * reference counting, the dump against a golden file and the man page
 * against the keyword table.
 *
 * Needs AG_SRCDIR (set by `make check`) for the golden file and the man
 * page; temporary files go to TMPDIR or /tmp.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

/* "lib/" keeps clear of the autoconf config.h in the build directory. */
#include "lib/config.h"
#include "lib/policy.h"

#define ERRSZ 1024

/* Read all of PATH into a new string, or fail the test. */
static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	if (fp == NULL) {
		fail_msg("cannot open %s: %s", path, strerror(errno));
	}
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		fail_msg("cannot read %s", path);
	}
	fclose(fp);
	return buf;
}

/* $AG_SRCDIR/REL into BUF, or fail the test. */
static const char *
srcpath(char *buf, size_t bufsz, const char *rel)
{
	const char *dir = getenv("AG_SRCDIR");

	if (dir == NULL || *dir == '\0') {
		fail_msg("AG_SRCDIR is not set (run through make check)");
	}
	snprintf(buf, bufsz, "%s/%s", dir, rel);
	return buf;
}

/* Write LEN bytes of TEXT to a new temporary file with MODE; path into BUF. */
static const char *
tmpfile_with(char *buf, size_t bufsz, const char *text, size_t len,
    mode_t mode)
{
	const char *dir = getenv("TMPDIR");
	int fd;

	snprintf(buf, bufsz, "%s/t_config.XXXXXX",
	    dir != NULL && *dir != '\0' ? dir : "/tmp");
	fd = mkstemp(buf);
	if (fd < 0) {
		fail_msg("mkstemp %s: %s", buf, strerror(errno));
	}
	if (write(fd, text, len) != (ssize_t)len || fchmod(fd, mode) != 0) {
		fail_msg("writing %s: %s", buf, strerror(errno));
	}
	close(fd);
	return buf;
}

/* The dump of C as a new string. */
static char *
dump_string(const struct ag_config *c)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);

	assert_non_null(fp);
	ag_config_dump(c, fp);
	fclose(fp);
	return out;
}

/* The value KEYWORD has in a dump, into BUF ("" if absent). */
static const char *
dump_value(const char *dump, const char *keyword, char *buf, size_t bufsz)
{
	size_t klen = strlen(keyword);
	const char *p;

	buf[0] = '\0';
	for (p = dump; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
		p += *p == '\n';
		if (strncmp(p, keyword, klen) == 0 && p[klen] == ' ') {
			size_t n = strcspn(p + klen + 1, "\n");

			snprintf(buf, bufsz, "%.*s", (int)n, p + klen + 1);
			break;
		}
	}
	return buf;
}

/* The host name the AuthservID default comes from. */
static const char *
host_name(char *buf, size_t bufsz)
{
	memset(buf, 0, bufsz);
	if (gethostname(buf, bufsz - 1) != 0 || buf[0] == '\0') {
		snprintf(buf, bufsz, "localhost");
	}
	return buf;
}

/* ---- defaults ----------------------------------------------------------- */

static void
test_defaults(void **state)
{
	struct ag_config *c = NULL;
	char err[ERRSZ] = "", host[256];

	(void)state;
	assert_int_equal(ag_config_load(NULL, &c, err, sizeof(err)), AG_OK);
	assert_non_null(c);
	assert_null(c->file);
	assert_string_equal(c->socket, AG_CONFIG_DEFAULT_SOCKET);
	assert_string_equal(c->database, AG_CONFIG_DEFAULT_DATABASE);
	assert_string_equal(c->authserv_id, host_name(host, sizeof(host)));
	assert_null(c->user_id);
	assert_int_equal(c->umask, 0007);
	assert_null(c->pid_file);
	assert_int_equal(c->log_level, LOG_INFO);
	assert_int_equal(c->log_facility, LOG_MAIL);
	assert_int_equal(c->trusted.n, 2);
	assert_int_equal(c->trusted.v[0].net.family, AF_INET);
	assert_int_equal(c->trusted.v[0].prefix, 8);
	assert_int_equal(c->trusted.v[1].net.family, AF_INET6);
	assert_int_equal(c->trusted.v[1].prefix, 128);
	assert_false(c->dry_run);
	assert_int_equal(c->on_database_error, AG_ACT_TEMPFAIL);
	assert_int_equal(c->on_internal_error, AG_ACT_TEMPFAIL);
	assert_int_equal(c->policy_check_interval, 2);
	assert_int_equal(c->database_timeout, 2000);
	ag_config_unref(c);
}

/* An empty file and a file of comments give the same as no file. */
static void
test_empty_is_defaults(void **state)
{
	static const struct {
		const char *label, *text;
	} cases[] = {
		{ "empty", "" },
		{ "blank lines", "\n\n   \n\t\n" },
		{ "comments only", "# a comment\n   # indented\n#\n" },
		{ "CRLF blanks", "\r\n# c\r\n\r\n" },
	};
	struct ag_config *def = NULL, *c = NULL;
	char err[ERRSZ];
	char *want, *got;
	size_t i;

	(void)state;
	assert_int_equal(ag_config_load(NULL, &def, err, sizeof(err)), AG_OK);
	want = dump_string(def);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (ag_config_load_string(cases[i].text, "t.conf", &c, err,
		    sizeof(err)) != AG_OK) {
			fail_msg("%s: %s", cases[i].label, err);
		}
		got = dump_string(c);
		if (strcmp(want, got) != 0) {
			fail_msg("%s: dump differs from defaults:\n%s",
			    cases[i].label, got);
		}
		free(got);
		ag_config_unref(c);
	}
	free(want);
	ag_config_unref(def);
}

/* ---- good values: what each keyword accepts and how it is shown -------- */

static const struct good_case {
	const char *label;
	const char *text;	/* one line */
	const char *keyword;	/* as dumped */
	const char *shown;	/* value in the dump */
} good_cases[] = {
	{ "socket unix", "Socket unix:/run/x.sock", "Socket",
	  "unix:/run/x.sock" },
	{ "socket local", "Socket local:/run/x.sock", "Socket",
	  "unix:/run/x.sock" },
	{ "socket bare path", "Socket /run/x.sock", "Socket",
	  "unix:/run/x.sock" },
	{ "socket prefix case", "Socket UNIX:/run/X.sock", "Socket",
	  "unix:/run/X.sock" },
	{ "socket inet", "Socket inet:8891@127.0.0.1", "Socket",
	  "inet:8891@127.0.0.1" },
	{ "socket inet host", "Socket inet:8891@localhost", "Socket",
	  "inet:8891@localhost" },
	{ "socket inet max port", "Socket inet:65535@192.0.2.1", "Socket",
	  "inet:65535@192.0.2.1" },
	{ "socket inet6", "Socket inet6:8891@::1", "Socket", "inet6:8891@::1" },
	{ "database absolute", "Database /srv/ag.db", "Database",
	  "/srv/ag.db" },
	{ "database relative", "Database ag.db", "Database", "ag.db" },
	{ "database inner space", "Database /srv/my db.sqlite", "Database",
	  "/srv/my db.sqlite" },
	{ "database hash inside", "Database /srv/a#b.db", "Database",
	  "/srv/a#b.db" },
	{ "database hash comment", "Database /srv/a.db #b", "Database",
	  "/srv/a.db" },
	{ "authservid", "AuthservID mx.example.org", "AuthservID",
	  "mx.example.org" },
	{ "authservid punct", "AuthservID mx-1_a.example.org:25", "AuthservID",
	  "mx-1_a.example.org:25" },
	{ "userid user", "UserID authgate", "UserID", "authgate" },
	{ "userid user group", "UserID ag-1.x_y:mail", "UserID",
	  "ag-1.x_y:mail" },
	{ "umask zero", "UMask 0", "UMask", "0000" },
	{ "umask 027", "UMask 027", "UMask", "0027" },
	{ "umask 0777", "UMask 0777", "UMask", "0777" },
	{ "pidfile", "PidFile /run/authgate.pid", "PidFile",
	  "/run/authgate.pid" },
	{ "loglevel err", "LogLevel err", "LogLevel", "err" },
	{ "loglevel warning", "LogLevel warning", "LogLevel", "warning" },
	{ "loglevel notice", "LogLevel notice", "LogLevel", "notice" },
	{ "loglevel debug", "LogLevel DEBUG", "LogLevel", "debug" },
	{ "logfacility daemon", "LogFacility daemon", "LogFacility", "daemon" },
	{ "logfacility local7", "LogFacility Local7", "LogFacility", "local7" },
	{ "trusted one", "TrustedNetworks 10.0.0.0/8", "TrustedNetworks",
	  "10.0.0.0/8" },
	{ "trusted mixed separators",
	  "TrustedNetworks 10.0.0.0/8,192.0.2.1  2001:db8::/32",
	  "TrustedNetworks", "10.0.0.0/8, 192.0.2.1/32, 2001:db8::/32" },
	{ "trusted none", "TrustedNetworks none", "TrustedNetworks", "none" },
	{ "dryrun yes", "DryRun yes", "DryRun", "yes" },
	{ "dryrun true", "DryRun TRUE", "DryRun", "yes" },
	{ "dryrun 1", "DryRun 1", "DryRun", "yes" },
	{ "dryrun no", "DryRun No", "DryRun", "no" },
	{ "dryrun false", "DryRun false", "DryRun", "no" },
	{ "dryrun 0", "DryRun 0", "DryRun", "no" },
	{ "on-databaseerror accept", "On-DatabaseError accept",
	  "On-DatabaseError", "accept" },
	{ "on-databaseerror tempfail", "On-DatabaseError TempFail",
	  "On-DatabaseError", "tempfail" },
	{ "on-internalerror accept", "On-InternalError accept",
	  "On-InternalError", "accept" },
	{ "policycheckinterval min", "PolicyCheckInterval 1",
	  "PolicyCheckInterval", "1" },
	{ "policycheckinterval max", "PolicyCheckInterval 3600",
	  "PolicyCheckInterval", "3600" },
	{ "miltertimeout min", "MilterTimeout 1000", "MilterTimeout", "1000" },
	{ "miltertimeout max", "MilterTimeout 86400000", "MilterTimeout",
	  "86400000" },
	{ "databasetimeout zero", "DatabaseTimeout 0", "DatabaseTimeout", "0" },
	{ "databasetimeout max", "DatabaseTimeout 60000", "DatabaseTimeout",
	  "60000" },
	{ "keyword lower case", "dryrun yes", "DryRun", "yes" },
	{ "keyword upper case", "ON-DATABASEERROR accept", "On-DatabaseError",
	  "accept" },
	{ "surrounding blanks", "  \tUMask\t 022 \t", "UMask", "0022" },
	{ "CRLF", "UMask 022\r", "UMask", "0022" },
	{ "trailing comment", "UMask 022 # group may read", "UMask", "0022" },
};

static void
test_good_values(void **state)
{
	struct ag_config *c = NULL;
	char err[ERRSZ], got[512];
	char *dump;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
		const struct good_case *t = &good_cases[i];

		err[0] = '\0';
		if (ag_config_load_string(t->text, "t.conf", &c, err,
		    sizeof(err)) != AG_OK) {
			fail_msg("%s: refused: %s", t->label, err);
		}
		dump = dump_string(c);
		dump_value(dump, t->keyword, got, sizeof(got));
		if (strcmp(got, t->shown) != 0) {
			fail_msg("%s: %s is \"%s\", want \"%s\"", t->label,
			    t->keyword, got, t->shown);
		}
		free(dump);
		ag_config_unref(c);
	}
}

/* The fields themselves, for values a dump could hide. */
static void
test_fields(void **state)
{
	static const char text[] =
	    "UMask 027\n"
	    "LogLevel debug\n"
	    "LogFacility local3\n"
	    "DryRun yes\n"
	    "On-DatabaseError accept\n"
	    "On-InternalError accept\n"
	    "PolicyCheckInterval 60\n"
	    "DatabaseTimeout 0\n"
	    "TrustedNetworks 192.0.2.0/24\n";
	struct ag_config *c = NULL;
	char err[ERRSZ];

	(void)state;
	if (ag_config_load_string(text, "t.conf", &c, err, sizeof(err)) !=
	    AG_OK) {
		fail_msg("fields: %s", err);
	}
	assert_int_equal(c->umask, 027);
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_int_equal(c->log_facility, LOG_LOCAL3);
	assert_true(c->dry_run);
	assert_int_equal(c->on_database_error, AG_ACT_ACCEPT);
	assert_int_equal(c->on_internal_error, AG_ACT_ACCEPT);
	assert_int_equal(c->policy_check_interval, 60);
	assert_int_equal(c->database_timeout, 0);
	assert_int_equal(c->trusted.n, 1);
	assert_int_equal(c->trusted.v[0].prefix, 24);
	ag_config_unref(c);
}

/* ---- errors: each with its status and exact message --------------------- */

static const struct bad_case {
	const char *label;
	const char *text;
	const char *err;
} bad_cases[] = {
	{ "unknown keyword", "# c\n\nFoo bar\n",
	  "t.conf:3: unknown keyword \"Foo\"" },
	{ "unknown keyword quoted", "Bad\"Key\x01 1\n",
	  "t.conf:1: unknown keyword \"Bad\\\"Key\\x01\"" },
	{ "duplicate", "Socket /a\nUMask 0\nsocket /b\n",
	  "t.conf:3: Socket: already set on line 1" },
	{ "duplicate other case", "DryRun yes\n\nDRYRUN no\n",
	  "t.conf:3: DryRun: already set on line 1" },
	{ "missing value", "DryRun\n", "t.conf:1: DryRun: missing value" },
	{ "missing value blanks", "\nDryRun  \t \n",
	  "t.conf:2: DryRun: missing value" },
	{ "missing value comment", "DryRun # yes\n",
	  "t.conf:1: DryRun: missing value" },
	{ "socket form", "Socket tcp:25\n",
	  "t.conf:1: Socket: \"tcp:25\" is not a socket (unix:PATH, "
	  "inet:PORT@ADDR or inet6:PORT@ADDR)" },
	{ "socket relative", "Socket run/x.sock\n",
	  "t.conf:1: Socket: \"run/x.sock\" is not a socket (unix:PATH, "
	  "inet:PORT@ADDR or inet6:PORT@ADDR)" },
	{ "socket unix relative", "Socket unix:run/x.sock\n",
	  "t.conf:1: Socket: \"unix:run/x.sock\" needs an absolute path" },
	{ "socket local empty", "Socket local:\n",
	  "t.conf:1: Socket: \"local:\" needs an absolute path" },
	{ "socket path too long",
	  "Socket /run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	  "t.conf:1: Socket: \"/run/" /* the first 64 bytes */
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" "
	  "has a path longer than 107 bytes" },
	{ "socket port zero", "Socket inet:0@127.0.0.1\n",
	  "t.conf:1: Socket: \"inet:0@127.0.0.1\" has a bad port "
	  "(1 to 65535)" },
	{ "socket port too big", "Socket inet:65536@127.0.0.1\n",
	  "t.conf:1: Socket: \"inet:65536@127.0.0.1\" has a bad port "
	  "(1 to 65535)" },
	{ "socket port not digits", "Socket inet6:http@::1\n",
	  "t.conf:1: Socket: \"inet6:http@::1\" has a bad port (1 to 65535)" },
	{ "socket no address", "Socket inet:8891\n",
	  "t.conf:1: Socket: \"inet:8891\" is not inet:PORT@ADDR" },
	{ "socket empty address", "Socket inet6:8891@\n",
	  "t.conf:1: Socket: \"inet6:8891@\" is not inet6:PORT@ADDR" },
	{ "socket bad address", "Socket inet:8891@bad_host!\n",
	  "t.conf:1: Socket: \"inet:8891@bad_host!\" has a bad IPv4 address" },
	{ "pidfile relative", "PidFile run/ag.pid\n",
	  "t.conf:1: PidFile: \"run/ag.pid\" is not an absolute path" },
	{ "authservid semicolon", "AuthservID mx;x\n",
	  "t.conf:1: AuthservID: \"mx;x\" is not an authserv-id (printable "
	  "ASCII without spaces, ';', '(', ')' or quotes)" },
	{ "authservid space", "AuthservID mx example\n",
	  "t.conf:1: AuthservID: \"mx example\" is not an authserv-id "
	  "(printable ASCII without spaces, ';', '(', ')' or quotes)" },
	{ "authservid paren", "AuthservID mx(1)\n",
	  "t.conf:1: AuthservID: \"mx(1)\" is not an authserv-id (printable "
	  "ASCII without spaces, ';', '(', ')' or quotes)" },
	{ "authservid quote", "AuthservID 'mx'\n",
	  "t.conf:1: AuthservID: \"'mx'\" is not an authserv-id (printable "
	  "ASCII without spaces, ';', '(', ')' or quotes)" },
	{ "authservid 8bit", "AuthservID m\xc3\xa9l\n",
	  "t.conf:1: AuthservID: \"m\\xc3\\xa9l\" is not an authserv-id "
	  "(printable ASCII without spaces, ';', '(', ')' or quotes)" },
	{ "userid empty group", "UserID authgate:\n",
	  "t.conf:1: UserID: \"authgate:\" is not user or user:group (names "
	  "of letters, digits, '.', '_' and '-')" },
	{ "userid empty user", "UserID :mail\n",
	  "t.conf:1: UserID: \":mail\" is not user or user:group (names of "
	  "letters, digits, '.', '_' and '-')" },
	{ "userid two colons", "UserID a:b:c\n",
	  "t.conf:1: UserID: \"a:b:c\" is not user or user:group (names of "
	  "letters, digits, '.', '_' and '-')" },
	{ "userid bad char", "UserID auth gate\n",
	  "t.conf:1: UserID: \"auth gate\" is not user or user:group (names "
	  "of letters, digits, '.', '_' and '-')" },
	{ "umask not octal", "#\n#\n#\n#\n#\n#\nUMask 0899\n",
	  "t.conf:7: UMask: \"0899\" is not an octal mode" },
	{ "umask sign", "UMask -7\n",
	  "t.conf:1: UMask: \"-7\" is not an octal mode" },
	{ "umask too big", "UMask 01000\n",
	  "t.conf:1: UMask: \"01000\" is out of range (0 to 0777)" },
	{ "loglevel", "LogLevel verbose\n",
	  "t.conf:1: LogLevel: \"verbose\" is not a log level (err, warning, "
	  "notice, info or debug)" },
	{ "logfacility", "LogFacility kern\n",
	  "t.conf:1: LogFacility: \"kern\" is not a syslog facility (mail, "
	  "daemon, user or local0 to local7)" },
	{ "trusted bad prefix", "TrustedNetworks 10.0.0.0/8, 10.0.0.0/33\n",
	  "t.conf:1: TrustedNetworks: \"10.0.0.0/33\" is not an IP network" },
	{ "trusted junk", "TrustedNetworks localhost\n",
	  "t.conf:1: TrustedNetworks: \"localhost\" is not an IP network" },
	{ "trusted only separators", "TrustedNetworks , ,\n",
	  "t.conf:1: TrustedNetworks: \", ,\" names no network (write none "
	  "for an empty list)" },
	{ "dryrun", "DryRun maybe\n",
	  "t.conf:1: DryRun: \"maybe\" is not yes or no" },
	{ "on-databaseerror reject", "On-DatabaseError reject\n",
	  "t.conf:1: On-DatabaseError: \"reject\" is not tempfail or accept" },
	{ "on-internalerror discard", "On-InternalError discard\n",
	  "t.conf:1: On-InternalError: \"discard\" is not tempfail or accept" },
	{ "interval zero", "PolicyCheckInterval 0\n",
	  "t.conf:1: PolicyCheckInterval: \"0\" is out of range (1 to 3600)" },
	{ "interval too big", "PolicyCheckInterval 3601\n",
	  "t.conf:1: PolicyCheckInterval: \"3601\" is out of range "
	  "(1 to 3600)" },
	{ "interval huge", "PolicyCheckInterval 99999999999999999999999\n",
	  "t.conf:1: PolicyCheckInterval: \"99999999999999999999999\" is out "
	  "of range (1 to 3600)" },
	{ "interval negative", "PolicyCheckInterval -1\n",
	  "t.conf:1: PolicyCheckInterval: \"-1\" is not a number" },
	{ "interval suffix", "PolicyCheckInterval 2s\n",
	  "t.conf:1: PolicyCheckInterval: \"2s\" is not a number" },
	{ "milter timeout too small", "MilterTimeout 999\n",
	  "t.conf:1: MilterTimeout: \"999\" is out of range (1000 to "
	  "86400000)" },
	{ "timeout too big", "DatabaseTimeout 60001\n",
	  "t.conf:1: DatabaseTimeout: \"60001\" is out of range (0 to 60000)" },
	{ "timeout plus", "DatabaseTimeout +5\n",
	  "t.conf:1: DatabaseTimeout: \"+5\" is not a number" },
	{ "dns server name", "DNSServer ns.example.com\n",
	  "t.conf:1: DNSServer: \"ns.example.com\" is not an IP address "
	  "(with an optional @PORT)" },
	{ "dns server port 0", "DNSServer 127.0.0.1@0\n",
	  "t.conf:1: DNSServer: \"127.0.0.1@0\" has a bad port" },
	{ "dns server port junk", "DNSServer 127.0.0.1@53x\n",
	  "t.conf:1: DNSServer: \"127.0.0.1@53x\" has a bad port" },
	{ "dns server bracketed", "DNSServer [::1]@53\n",
	  "t.conf:1: DNSServer: \"[::1]@53\" is not an IP address "
	  "(with an optional @PORT)" },
	{ "dns timeout too small", "DNSTimeout 99\n",
	  "t.conf:1: DNSTimeout: \"99\" is out of range (100 to 60000)" },
	{ "spf timeout too big", "SPFTimeout 120001\n",
	  "t.conf:1: SPFTimeout: \"120001\" is out of range (100 to 120000)" },
	{ "spf action unknown", "On-SPFFail bounce\n",
	  "t.conf:1: On-SPFFail: \"bounce\" is not accept, tag, tempfail or "
	  "reject" },
	{ "strip id with semicolon", "AuthservIDStrip a.example;x\n",
	  "t.conf:1: AuthservIDStrip: \"a.example;x\" is not an authserv-id "
	  "token" },
	{ "strip id after a comma starting with #",
	  "AuthservIDStrip a.example,#b\n",
	  "t.conf:1: AuthservIDStrip: \"#b\" is not an authserv-id token" },
	{ "max signatures zero", "DKIMMaxSignatures 0\n",
	  "t.conf:1: DKIMMaxSignatures: \"0\" is out of range (1 to 50)" },
	{ "error after CRLF lines", "UMask 022\r\n\r\nDryRun perhaps\r\n",
	  "t.conf:3: DryRun: \"perhaps\" is not yes or no" },
	{ "last line without newline", "UMask 022\nDryRun perhaps",
	  "t.conf:2: DryRun: \"perhaps\" is not yes or no" },
};

static void
test_bad_values(void **state)
{
	struct ag_config *c;
	char err[ERRSZ];
	ag_status st;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *t = &bad_cases[i];

		c = (struct ag_config *)&c;	/* must be reset to NULL */
		err[0] = '\0';
		st = ag_config_load_string(t->text, "t.conf", &c, err,
		    sizeof(err));
		if (st != AG_INVALID) {
			fail_msg("%s: status %d, want AG_INVALID", t->label,
			    st);
		}
		if (c != NULL) {
			fail_msg("%s: *out not NULL on error", t->label);
		}
		if (strcmp(err, t->err) != 0) {
			fail_msg("%s:\n got  %s\n want %s", t->label, err,
			    t->err);
		}
	}
}

/* A line of LEN bytes of "#xxx..." followed by END, then "DryRun maybe". */
static char *
long_line_text(size_t len, const char *end)
{
	char *s = malloc(len + 64);

	assert_non_null(s);
	memset(s, 'x', len);
	s[0] = '#';
	snprintf(s + len, 64, "%sDryRun maybe\n", end);
	return s;
}

static void
test_line_length(void **state)
{
	static const struct {
		const char *label;
		size_t len;
		const char *end;
		const char *err;
	} cases[] = {
		{ "4096 bytes", 4096, "\n",
		  "t.conf:2: DryRun: \"maybe\" is not yes or no" },
		{ "4096 bytes and CR", 4096, "\r\n",
		  "t.conf:2: DryRun: \"maybe\" is not yes or no" },
		{ "4097 bytes", 4097, "\n",
		  "t.conf:1: line is longer than 4096 bytes" },
		{ "4097 bytes and CR", 4097, "\r\n",
		  "t.conf:1: line is longer than 4096 bytes" },
	};
	struct ag_config *c = NULL;
	char err[ERRSZ];
	char *text;
	ag_status st;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		text = long_line_text(cases[i].len, cases[i].end);
		err[0] = '\0';
		st = ag_config_load_string(text, "t.conf", &c, err,
		    sizeof(err));
		if (st != AG_INVALID || strcmp(err, cases[i].err) != 0) {
			fail_msg("%s: got \"%s\", want \"%s\"",
			    cases[i].label, err, cases[i].err);
		}
		free(text);
	}
}

/* A socket path of 107 bytes fits sun_path with its NUL; 108 does not. */
static void
test_socket_path_length(void **state)
{
	static const struct {
		const char *label;
		size_t len;
		ag_status st;
	} cases[] = {
		{ "107 bytes", 107, AG_OK },
		{ "108 bytes", 108, AG_INVALID },
	};
	struct ag_config *c = NULL;
	char text[256], err[ERRSZ];
	ag_status st;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(text, "Socket unix:/", 13);
		memset(text + 13, 's', cases[i].len - 1);
		text[13 + cases[i].len - 1] = '\0';
		err[0] = '\0';
		st = ag_config_load_string(text, "t.conf", &c, err,
		    sizeof(err));
		if (st != cases[i].st) {
			fail_msg("%s: \"%s\"", cases[i].label, err);
		}
		if (c != NULL && strcmp(c->socket, text + 7) != 0) {
			fail_msg("%s: socket %s", cases[i].label, c->socket);
		}
		ag_config_unref(c);
	}
}

/* A value too long for a message is cut with "...", never overruns. */
static void
test_long_value_message(void **state)
{
	char text[5000], want[256], err[ERRSZ];
	struct ag_config *c = NULL;

	(void)state;
	memcpy(text, "AuthservID ", 11);
	memset(text + 11, 'a', 300);
	text[311] = '\0';
	snprintf(want, sizeof(want), "t.conf:1: AuthservID: \"%.64s...\" is "
	    "longer than 255 bytes", text + 11);
	assert_int_equal(ag_config_load_string(text, "t.conf", &c, err,
	    sizeof(err)), AG_INVALID);
	assert_string_equal(err, want);
	/* A small error buffer is cut, and no buffer at all is allowed. */
	assert_int_equal(ag_config_load_string(text, "t.conf", &c, err, 8),
	    AG_INVALID);
	assert_string_equal(err, "t.conf:");
	assert_int_equal(ag_config_load_string(text, "t.conf", &c, NULL, 0),
	    AG_INVALID);
	assert_null(c);
}

/* The rate keywords: bad values refused, the control socket's path. */
static void
test_rate_keywords(void **state)
{
	static const struct {
		const char *text;
		ag_status st;
	} cases[] = {
		{ "RateBackend local", AG_OK },
		{ "RateBackend redis://127.0.0.1", AG_OK },
		{ "RateBackend redis://[::1]:6379/15", AG_OK },
		{ "RateBackend unix:/run/redis/redis.sock", AG_OK },
		{ "RateBackend redis", AG_INVALID },
		{ "RateBackend http://127.0.0.1", AG_INVALID },
		{ "RateBackend redis://127.0.0.1:99999", AG_INVALID },
		{ "RateBackend redis://127.0.0.1/x", AG_INVALID },
		{ "On-RateBackendError reject", AG_INVALID },
		{ "On-RateBackendError Accept", AG_OK },
		{ "RateBackendTimeout 5", AG_INVALID },
		{ "RateMaxKeys 10", AG_INVALID },
		{ "RateCheckpointInterval 0", AG_INVALID },
		{ "ControlSocket ctl.sock", AG_INVALID },
		{ "DMARCEnforce REJECT", AG_OK },
		{ "DMARCEnforce always", AG_INVALID },
		{ "DMARCQuarantine discard", AG_INVALID },
		{ "On-DMARCFromError accept", AG_INVALID },
		{ "On-DMARCTemperror reject", AG_INVALID },
		{ "HistoryDays 3651", AG_INVALID },
		{ "MetricsListen 127.0.0.1:9469", AG_OK },
		{ "MetricsListen [::1]:9469", AG_OK },
		{ "MetricsListen ::1:9469", AG_INVALID },
		{ "MetricsListen localhost:9469", AG_INVALID },
		{ "MetricsListen 127.0.0.1", AG_INVALID },
		{ "MetricsListen 127.0.0.1:0", AG_INVALID },
	};
	struct ag_config *c = NULL;
	char err[ERRSZ], path[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ag_status st = ag_config_load_string(cases[i].text, "t.conf",
		    &c, err, sizeof(err));

		if (st != cases[i].st) {
			fail_msg("%s: got %s (%s)", cases[i].text,
			    ag_status_str(st), err);
		}
		ag_config_unref(c);
		c = NULL;
	}
	assert_int_equal(ag_config_load_string("Socket unix:/var/spool/ag/"
	    "milter.sock", "t", &c, err, sizeof(err)), AG_OK);
	assert_false(ag_config_rate_redis(c));
	assert_true(ag_config_control_path(c, path, sizeof(path)));
	assert_string_equal(path, "/var/spool/ag/control.sock");
	ag_config_unref(c);
	assert_int_equal(ag_config_load_string("Socket inet:8891@127.0.0.1",
	    "t", &c, err, sizeof(err)), AG_OK);
	assert_true(ag_config_control_path(c, path, sizeof(path)));
	assert_string_equal(path, AG_CONFIG_DEFAULT_CONTROL);
	assert_false(ag_config_control_path(c, path, 8));
	ag_config_unref(c);
}

/* Everything set at once, then loaded again from its own dump. */
static void
test_full_and_round_trip(void **state)
{
	static const char text[] =
	    "# a full file\r\n"
	    "Socket inet6:8891@::1\r\n"
	    "Database /srv/authgate/ag.db\r\n"
	    "AuthservID mx.example.org\r\n"
	    "UserID authgate:mail\r\n"
	    "UMask 027\r\n"
	    "PidFile /run/authgate.pid\r\n"
	    "LogLevel notice\r\n"
	    "LogFacility local5\r\n"
	    "TrustedNetworks 10.0.0.0/8 2001:db8::/32\r\n"
	    "DryRun yes\r\n"
	    "On-DatabaseError accept\r\n"
	    "On-InternalError accept\r\n"
	    "PolicyCheckInterval 30\r\n"
	    "DatabaseTimeout 500\r\n"
	    "DNSServer 127.0.0.1@5353, ::1\r\n"
	    "DNSTimeout 1500\r\n"
	    "SPFTimeout 9000\r\n"
	    "SPFCheck no\r\n"
	    "SPFCheckHelo no\r\n"
	    "On-SPFPass tag\r\n"
	    "On-SPFFail tempfail\r\n"
	    "On-SPFSoftfail reject\r\n"
	    "On-SPFNeutral tag\r\n"
	    "On-SPFNone reject\r\n"
	    "On-SPFTemperror accept\r\n"
	    "On-SPFPermerror reject\r\n"
	    "DKIMVerify no\r\n"
	    "DKIMMaxSignatures 8\r\n"
	    "DKIMTimeout 4000\r\n"
	    "AuthservIDStrip mx1.example.org, mx2.example.org\r\n"
	    "RateBackend redis://:secret@127.0.0.1:6380/2\r\n"
	    "RateBackendTimeout 100\r\n"
	    "On-RateBackendError tempfail\r\n"
	    "RateMaxKeys 5000\r\n"
	    "RateCheckpointInterval 10\r\n"
	    "DKIMSign no\r\n"
	    "On-SignError accept\r\n"
	    "DMARCCheck no\r\n"
	    "DMARCEnforce quarantine\r\n"
	    "DMARCQuarantine tag\r\n"
	    "On-DMARCFromError permerror\r\n"
	    "On-DMARCTemperror tempfail\r\n"
	    "PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat\r\n"
	    "HistoryDays 7\r\n"
	    "ControlSocket /run/ag/ctl.sock\r\n"
	    "MetricsListen [::1]:9469\r\n";
	struct ag_config *c = NULL, *c2 = NULL;
	char err[ERRSZ];
	char *d1, *d2;

	(void)state;
	if (ag_config_load_string(text, "t.conf", &c, err, sizeof(err)) !=
	    AG_OK) {
		fail_msg("full: %s", err);
	}
	d1 = dump_string(c);
	if (ag_config_load_string(d1, "dump", &c2, err, sizeof(err)) != AG_OK) {
		fail_msg("round trip: dump refused: %s\n%s", err, d1);
	}
	d2 = dump_string(c2);
	if (strcmp(d1, d2) != 0) {
		fail_msg("round trip: dumps differ:\n%s\n---\n%s", d1, d2);
	}
	assert_string_equal(c->user_id, "authgate:mail");
	assert_string_equal(c->pid_file, "/run/authgate.pid");
	assert_string_equal(c->dns_servers, "127.0.0.1@5353 ::1");
	assert_int_equal(c->spf_disp[AG_SPF_SOFTFAIL], AG_DISP_REJECT);
	assert_int_equal(c->spf_disp[AG_SPF_PASS], AG_DISP_TAG);
	assert_false(c->spf_check);
	assert_string_equal(c->authserv_strip, "mx1.example.org mx2.example.org");
	assert_int_equal(c->dkim_max_sigs, 8);
	assert_string_equal(c->rate_backend, "redis://:secret@127.0.0.1:6380/2");
	assert_true(ag_config_rate_redis(c));
	assert_int_equal(c->rate_backend_timeout, 100);
	assert_int_equal(c->on_rate_backend_error, AG_RB_TEMPFAIL);
	assert_int_equal(c->rate_max_keys, 5000);
	assert_int_equal(c->rate_checkpoint_interval, 10);
	assert_string_equal(c->control_socket, "/run/ag/ctl.sock");
	assert_false(c->dkim_sign);
	assert_int_equal(c->on_sign_error, 1);	/* accept */
	assert_false(c->dmarc_check);
	assert_int_equal(c->dmarc_enforce, 1);	/* quarantine */
	assert_int_equal(c->dmarc_quarantine, AG_DMARC_QUAR_TAG);
	assert_int_equal(c->on_dmarc_from_error, AG_DMARC_FROMERR_PERMERROR);
	assert_int_equal(c->on_dmarc_temperror, 1);
	assert_int_equal(c->history_days, 7);
	free(d1);
	free(d2);
	ag_config_unref(c);
	ag_config_unref(c2);
}

/* ---- files -------------------------------------------------------------- */

static void
test_file_ok_crlf(void **state)
{
	static const char text[] = "# comment\r\nUMask 022\r\nDryRun yes\r\n";
	struct ag_config *c = NULL;
	char path[512], err[ERRSZ] = "";

	(void)state;
	tmpfile_with(path, sizeof(path), text, sizeof(text) - 1, 0640);
	if (ag_config_load(path, &c, err, sizeof(err)) != AG_OK) {
		fail_msg("crlf file: %s", err);
	}
	assert_string_equal(c->file, path);
	assert_int_equal(c->umask, 022);
	assert_true(c->dry_run);
	ag_config_unref(c);
	unlink(path);
}

static void
test_file_errors(void **state)
{
	static const struct {
		const char *label;
		const char *text;
		size_t len;
		mode_t mode;
		ag_status st;
		const char *msg;	/* after "PATH" */
	} cases[] = {
		{ "world-writable", "UMask 022\n", 10, 0666, AG_PERMFAIL,
		  ": is world-writable; refusing to use it" },
		{ "NUL byte", "UMask 022\nDryRun y\0es\n", 21, 0600, AG_INVALID,
		  ":2: line holds a NUL byte" },
		{ "bad value names the path", "\nUMask 8\n", 9, 0600,
		  AG_INVALID,
		  ":2: UMask: \"8\" is not an octal mode" },
	};
	struct ag_config *c = NULL;
	char path[512], want[ERRSZ], err[ERRSZ];
	ag_status st;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tmpfile_with(path, sizeof(path), cases[i].text, cases[i].len,
		    cases[i].mode);
		snprintf(want, sizeof(want), "%s%s", path, cases[i].msg);
		err[0] = '\0';
		st = ag_config_load(path, &c, err, sizeof(err));
		unlink(path);
		if (st != cases[i].st || c != NULL || strcmp(err, want) != 0) {
			fail_msg("%s: status %d \"%s\", want %d \"%s\"",
			    cases[i].label, st, err, cases[i].st, want);
		}
	}
}

static void
test_file_unreadable(void **state)
{
	static const struct {
		const char *label;
		const char *path;
		const char *msg;
	} cases[] = {
		{ "missing", "/nonexistent/authgate.conf",
		  "/nonexistent/authgate.conf: No such file or directory" },
		{ "directory", "/", "/: Is a directory" },
	};
	struct ag_config *c = NULL;
	char err[ERRSZ];
	ag_status st;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		st = ag_config_load(cases[i].path, &c, err, sizeof(err));
		if (st != AG_PERMFAIL || c != NULL ||
		    strcmp(err, cases[i].msg) != 0) {
			fail_msg("%s: status %d \"%s\", want AG_PERMFAIL \"%s\"",
			    cases[i].label, st, err, cases[i].msg);
		}
	}
}

/* ---- reference counting ------------------------------------------------- */

/* Command-line overrides: checked like the file, C unchanged on error. */
static void
test_set(void **state)
{
	static const struct {
		const char *label, *kw, *value;
		ag_status st;
		const char *socket, *database;
		unsigned interval;
	} cases[] = {
		{ "socket override", "Socket", "inet:2525@127.0.0.1", AG_OK,
		  "inet:2525@127.0.0.1", AG_CONFIG_DEFAULT_DATABASE, 2 },
		{ "keyword case", "socket", "/tmp/x.sock", AG_OK,
		  "unix:/tmp/x.sock", AG_CONFIG_DEFAULT_DATABASE, 2 },
		{ "database override", "Database", "/tmp/other.db", AG_OK,
		  AG_CONFIG_DEFAULT_SOCKET, "/tmp/other.db", 2 },
		{ "number", "PolicyCheckInterval", "7", AG_OK,
		  AG_CONFIG_DEFAULT_SOCKET, AG_CONFIG_DEFAULT_DATABASE, 7 },
		{ "bad socket kept old", "Socket", "inet:99999@127.0.0.1",
		  AG_INVALID, AG_CONFIG_DEFAULT_SOCKET,
		  AG_CONFIG_DEFAULT_DATABASE, 2 },
		{ "bad number kept old", "PolicyCheckInterval", "0", AG_INVALID,
		  AG_CONFIG_DEFAULT_SOCKET, AG_CONFIG_DEFAULT_DATABASE, 2 },
		{ "unknown keyword", "NoSuchThing", "1", AG_INVALID,
		  AG_CONFIG_DEFAULT_SOCKET, AG_CONFIG_DEFAULT_DATABASE, 2 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ag_config *c = NULL;
		char err[256] = "";
		ag_status st;

		assert_int_equal(ag_config_load(NULL, &c, err, sizeof(err)), AG_OK);
		st = ag_config_set(c, cases[i].kw, cases[i].value, err,
		    sizeof(err));
		if (st != cases[i].st || strcmp(c->socket, cases[i].socket) != 0 ||
		    strcmp(c->database, cases[i].database) != 0 ||
		    c->policy_check_interval != cases[i].interval) {
			fail_msg("%s: status %d socket %s database %s interval "
			    "%u (err: %s)", cases[i].label, (int)st, c->socket,
			    c->database, c->policy_check_interval, err);
		}
		if (st != AG_OK && err[0] == '\0') {
			fail_msg("%s: no error message", cases[i].label);
		}
		ag_config_unref(c);
	}
}

static void
test_refcount(void **state)
{
	struct ag_config *c = NULL;
	char err[ERRSZ];

	(void)state;
	assert_null(ag_config_ref(NULL));
	ag_config_unref(NULL);
	assert_int_equal(ag_config_load_string("PidFile /run/a.pid", NULL, &c,
	    err, sizeof(err)), AG_OK);
	assert_ptr_equal(ag_config_ref(c), c);
	assert_ptr_equal(ag_config_ref(c), c);
	ag_config_unref(c);
	ag_config_unref(c);
	/* Still held once: the snapshot must be intact (ASan checks). */
	assert_string_equal(c->pid_file, "/run/a.pid");
	ag_config_unref(c);
	ag_config_dump(NULL, stdout);
}

/* ---- golden dump and documentation -------------------------------------- */

/* The defaults' dump equals config-defaults.out, host name filled in. */
static void
test_dump_golden(void **state)
{
	struct ag_config *c = NULL;
	char path[4096], err[ERRSZ], host[256];
	char *golden, *got, *want, *at;
	size_t len;

	(void)state;
	golden = slurp(srcpath(path, sizeof(path),
	    "tests/unit/config-defaults.out"));
	at = strstr(golden, "@HOSTNAME@");
	if (at == NULL) {
		fail_msg("%s: no @HOSTNAME@ line", path);
	}
	host_name(host, sizeof(host));
	len = strlen(golden) + strlen(host) + 1;
	want = malloc(len);
	assert_non_null(want);
	snprintf(want, len, "%.*s%s%s", (int)(at - golden), golden, host,
	    at + strlen("@HOSTNAME@"));
	assert_int_equal(ag_config_load(NULL, &c, err, sizeof(err)), AG_OK);
	got = dump_string(c);
	if (strcmp(got, want) != 0) {
		fail_msg("dump differs from %s:\n--- got\n%s--- want\n%s", path,
		    got, want);
	}
	free(got);
	free(want);
	free(golden);
	ag_config_unref(c);
}

static void
test_keywords(void **state)
{
	const char *const *kw = ag_config_keywords();
	size_t i, j;

	(void)state;
	for (i = 0; kw[i] != NULL; i++) {
		for (j = 0; j < i; j++) {
			if (strcasecmp(kw[i], kw[j]) == 0) {
				fail_msg("keyword %s twice in the table",
				    kw[i]);
			}
		}
	}
	assert_int_equal(i, 48);
	assert_ptr_equal(ag_config_keywords(), kw);
}

/* The keyword a man-page tag line names (".BI \"Kw \" x", "\fBKw\fP"). */
static void
tag_keyword(const char *line, char *buf, size_t bufsz)
{
	static const char *const prefixes[] = { ".BI ", ".BR ", ".B " };
	size_t i, n;

	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		if (strncmp(line, prefixes[i], strlen(prefixes[i])) == 0) {
			line += strlen(prefixes[i]);
			break;
		}
	}
	line += *line == '"';
	line += strncmp(line, "\\fB", 3) == 0 ? 3 : 0;
	n = strcspn(line, " \"\\\n");
	snprintf(buf, bufsz, "%.*s", (int)n, line);
}

/*
 * Every keyword of the table has a ".TP" or ".TQ" entry in the KEYWORDS
 * section of man/authgate.conf.5, and every entry there is a keyword.
 */
static void
test_man_page(void **state)
{
	const char *const *kw = ag_config_keywords();
	char path[4096], documented[64][128];
	char *text, *p, *sect = NULL;
	size_t n = 0, i, j;

	(void)state;
	text = slurp(srcpath(path, sizeof(path), "man/authgate.conf.5"));
	for (p = text; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
		p += *p == '\n';
		if (strncmp(p, ".SH ", 4) == 0) {
			sect = p + 4;
		} else if (sect != NULL && strncmp(sect, "KEYWORDS", 8) == 0 &&
		    (strncmp(p, ".TP\n", 4) == 0 ||
		    strncmp(p, ".TQ\n", 4) == 0) && n < 64) {
			tag_keyword(p + 4, documented[n++],
			    sizeof(documented[0]));
		}
	}
	for (i = 0; kw[i] != NULL; i++) {
		for (j = 0; j < n && strcmp(documented[j], kw[i]) != 0; j++) {
			continue;
		}
		if (j == n) {
			fail_msg("keyword %s has no entry in %s", kw[i], path);
		}
	}
	for (j = 0; j < n; j++) {
		for (i = 0; kw[i] != NULL && strcmp(documented[j], kw[i]) != 0;
		    i++) {
			continue;
		}
		if (kw[i] == NULL && strchr(documented[j], ':') == NULL) {
			fail_msg("%s documents %s, which is no keyword", path,
			    documented[j]);
		}
	}
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty_is_defaults),
		cmocka_unit_test(test_good_values),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_socket_path_length),
		cmocka_unit_test(test_long_value_message),
		cmocka_unit_test(test_full_and_round_trip),
		cmocka_unit_test(test_file_ok_crlf),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_file_unreadable),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_rate_keywords),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_dump_golden),
		cmocka_unit_test(test_keywords),
		cmocka_unit_test(test_man_page),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
