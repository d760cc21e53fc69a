/*
 * t_metrics.c - unit tests for lib/metrics.c: label escaping, the text
 * exposition format (every line checked against the 0.0.4 grammar), the
 * histogram's cumulative buckets, the bounded rule table, counts from
 * several threads that must sum exactly, and MetricsListen parsing.
 * Table-driven where there is a table: every case has a label that a
 * failure names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim.h"
#include "metrics.h"
#include "spf.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The rendering, NUL-terminated (free it). */
static char *
render(void)
{
	size_t len = 0;
	char *t = ag_metrics_text(&len);

	if (t == NULL) {
		fail_msg("ag_metrics_text returned NULL");
	}
	if (strlen(t) != len) {
		fail_msg("rendering: length %zu but strlen %zu", len, strlen(t));
	}
	return t;
}

/*
 * The value of the series SERIES (name and labels exactly as rendered,
 * e.g. "authgate_messages_total{action=\"accept\"}") in TEXT; fails when
 * it is not there exactly once.
 */
static double
value_of(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p = text, *hit = NULL;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ') {
			if (hit != NULL) {
				fail_msg("series %s appears twice", series);
			}
			hit = p;
		}
		p += n;
	}
	if (hit == NULL) {
		fail_msg("series %s is missing from:\n%s", series, text);
	}
	return strtod(hit + n + 1, NULL);
}

static void
check_value(const char *label, const char *text, const char *series,
    double want)
{
	double got = value_of(text, series);

	if (got != want) {
		fail_msg("%s: %s is %.6f, want %.6f", label, series, got, want);
	}
}

/* A metric name: [a-zA-Z_:][a-zA-Z0-9_:]*; returns its length or 0. */
static size_t
name_len(const char *s)
{
	size_t i = 0;

	if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':')) {
		return 0;
	}
	while (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':') {
		i++;
	}
	return i;
}

/* Labels {name="value",...} at S; returns the length or 0 if bad. */
static size_t
labels_len(const char *s)
{
	size_t i = 1, n;

	if (s[0] != '{') {
		return 0;
	}
	while (s[i] != '}') {
		n = name_len(s + i);
		if (n == 0 || s[i + n] != '=' || s[i + n + 1] != '"') {
			return 0;
		}
		i += n + 2;
		while (s[i] != '"') {
			if (s[i] == '\0' || s[i] == '\n') {
				return 0;
			}
			if (s[i] == '\\') {
				if (s[i + 1] != '\\' && s[i + 1] != '"' &&
				    s[i + 1] != 'n') {
					return 0;
				}
				i++;
			}
			i++;
		}
		i++;
		if (s[i] == ',') {
			i++;
		} else if (s[i] != '}') {
			return 0;
		}
	}
	return i + 1;
}

/*
 * Check TEXT against the text format 0.0.4 as Prometheus parses it: each
 * line "# HELP name text", "# TYPE name type" (once per family, before
 * its series) or "name[{labels}] value"; a series belongs to the family
 * last typed (histogram: _bucket, _sum, _count); the text ends in LF.
 */
static void
check_format(const char *text)
{
	char family[128] = "", ftype[16] = "", seen[8192] = " ";
	const char *line = text;
	unsigned lineno = 0;

	if (text[0] == '\0' || text[strlen(text) - 1] != '\n') {
		fail_msg("format: the text does not end in a line feed");
	}
	while (*line != '\0') {
		const char *nl = strchr(line, '\n');
		char buf[1024], *end;
		size_t len = (size_t)(nl - line), n, l;

		lineno++;
		if (len >= sizeof(buf)) {
			fail_msg("format: line %u too long", lineno);
		}
		memcpy(buf, line, len);
		buf[len] = '\0';
		line = nl + 1;
		if (strncmp(buf, "# HELP ", 7) == 0) {
			if (name_len(buf + 7) == 0 || buf[7 + name_len(buf + 7)] != ' ') {
				fail_msg("format: line %u: bad HELP: %s", lineno, buf);
			}
			continue;
		}
		if (strncmp(buf, "# TYPE ", 7) == 0) {
			char key[140];

			n = name_len(buf + 7);
			if (n == 0 || n >= sizeof(family) || buf[7 + n] != ' ') {
				fail_msg("format: line %u: bad TYPE: %s", lineno, buf);
			}
			memcpy(family, buf + 7, n);
			family[n] = '\0';
			snprintf(ftype, sizeof(ftype), "%s", buf + 8 + n);
			if (strcmp(ftype, "counter") != 0 &&
			    strcmp(ftype, "gauge") != 0 &&
			    strcmp(ftype, "histogram") != 0) {
				fail_msg("format: line %u: type %s", lineno, ftype);
			}
			snprintf(key, sizeof(key), " %s ", family);
			if (strstr(seen, key) != NULL) {
				fail_msg("format: family %s typed twice", family);
			}
			strncat(seen, key + 1, sizeof(seen) - strlen(seen) - 1);
			continue;
		}
		n = name_len(buf);
		if (n == 0) {
			fail_msg("format: line %u: no metric name: %s", lineno, buf);
		}
		l = buf[n] == '{' ? labels_len(buf + n) : 0;
		if (buf[n] == '{' && l == 0) {
			fail_msg("format: line %u: bad labels: %s", lineno, buf);
		}
		if (buf[n + l] != ' ' || buf[n + l + 1] == '\0') {
			fail_msg("format: line %u: no value: %s", lineno, buf);
		}
		(void)strtod(buf + n + l + 1, &end);
		if (*end != '\0') {
			fail_msg("format: line %u: bad value: %s", lineno, buf);
		}
		if (family[0] == '\0' || strncmp(buf, family, strlen(family)) != 0) {
			fail_msg("format: line %u: series of no family typed "
			    "before: %s", lineno, buf);
		}
		if (strcmp(ftype, "histogram") == 0) {
			const char *sfx = buf + strlen(family);

			if (strncmp(sfx, "_bucket{", 8) != 0 &&
			    strncmp(sfx, "_sum ", 5) != 0 &&
			    strncmp(sfx, "_count ", 7) != 0) {
				fail_msg("format: line %u: not a histogram "
				    "series: %s", lineno, buf);
			}
		} else if (n != strlen(family)) {
			fail_msg("format: line %u: name is not %s: %s", lineno,
			    family, buf);
		}
	}
}

/* Label values escaped as the text format wants, cut without splitting. */
static void
test_escape(void **state)
{
	static const struct {
		const char *label, *in, *want;
		size_t size;
	} cases[] = {
		{ "plain", "1.0.0", "1.0.0", 64 },
		{ "backslash", "a\\b", "a\\\\b", 64 },
		{ "quote", "say \"hi\"", "say \\\"hi\\\"", 64 },
		{ "newline", "a\nb", "a\\nb", 64 },
		{ "other controls kept", "a\tb\rc", "a\tb\rc", 64 },
		{ "NULL is empty", NULL, "", 64 },
		{ "cut before an escape", "ab\"", "ab", 4 },
		{ "cut exactly", "abc", "abc", 4 },
		{ "cut plain", "abcdef", "abc", 4 },
	};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		ag_metrics_escape(buf, cases[i].size, cases[i].in);
		if (strcmp(buf, cases[i].want) != 0) {
			fail_msg("%s: got \"%s\", want \"%s\"", cases[i].label,
			    buf, cases[i].want);
		}
	}
}

/* Every family is there at 0 after a reset, in a valid text. */
static void
test_format_empty(void **state)
{
	char *t;

	(void)state;
	ag_metrics_reset();
	ag_metrics_init("1.2.3 \"odd\\ver\"\n");
	t = render();
	check_format(t);
	check_value("empty", t,
	    "authgate_build_info{version=\"1.2.3 \\\"odd\\\\ver\\\"\\n\"}", 1);
	check_value("empty", t, "authgate_messages_total{action=\"accept\"}", 0);
	check_value("empty", t, "authgate_messages_total{action=\"abort\"}", 0);
	check_value("empty", t, "authgate_auth_results_total{method=\"spf\","
	    "identity=\"mfrom\",result=\"permerror\"}", 0);
	check_value("empty", t, "authgate_auth_results_total{method=\"dkim\","
	    "result=\"policy\"}", 0);
	check_value("empty", t, "authgate_auth_results_total{method=\"dmarc\","
	    "result=\"temperror\"}", 0);
	check_value("empty", t, "authgate_rate_limit_hits_total{rule=\"other\"}",
	    0);
	check_value("empty", t, "authgate_dns_errors_total{kind=\"timeout\"}", 0);
	check_value("empty", t,
	    "authgate_dns_query_duration_seconds_bucket{le=\"+Inf\"}", 0);
	check_value("empty", t, "authgate_dns_query_duration_seconds_count", 0);
	check_value("empty", t, "authgate_reloads_total{what=\"config\"}", 0);
	check_value("empty", t, "authgate_connections", 0);
	check_value("empty", t, "authgate_rate_table_full_total", 0);
	if (value_of(t, "authgate_start_time_seconds") < 1.6e9) {
		fail_msg("start time not set: %s", t);
	}
	if (strstr(t, "# TYPE authgate_dns_query_duration_seconds histogram\n") ==
	    NULL || strstr(t, "# TYPE authgate_connections gauge\n") == NULL ||
	    strstr(t, "# TYPE authgate_rate_table_full_total counter\n") ==
	    NULL ||
	    strstr(t, "# HELP authgate_messages_total ") == NULL) {
		fail_msg("HELP or TYPE lines missing:\n%s", t);
	}
	free(t);
}

/* Each hook moves its series by exactly what it was given. */
static void
test_counts(void **state)
{
	char *t;

	(void)state;
	ag_metrics_reset();
	ag_metrics_message("accept");
	ag_metrics_message("reject");
	ag_metrics_message("reject");
	ag_metrics_message("quarantine");
	ag_metrics_message("continue");		/* not a final action */
	ag_metrics_message(NULL);
	ag_metrics_auth(AG_MET_SPF_MFROM, AG_SPF_FAIL);
	ag_metrics_auth(AG_MET_SPF_HELO, AG_SPF_PASS);
	ag_metrics_auth(AG_MET_DKIM, AG_DKIM_PASS);
	ag_metrics_auth(AG_MET_DKIM, AG_DKIM_PASS);
	ag_metrics_auth(AG_MET_DKIM, 99);	/* out of range: dropped */
	ag_metrics_auth(AG_MET_NAUTH, 0);
	ag_metrics_dns_query();
	ag_metrics_dns_query();
	ag_metrics_dns_cache_hit();
	ag_metrics_dns_error(AG_MET_DNS_TIMEOUT);
	ag_metrics_dns_error(AG_MET_DNS_SERVFAIL);
	ag_metrics_dns_error(AG_MET_DNS_NERR);
	ag_metrics_store_error();
	ag_metrics_redis_error(true);
	ag_metrics_redis_error(false);
	ag_metrics_rate_table_full();
	ag_metrics_rate_table_full();
	ag_metrics_rate_table_full();
	ag_metrics_connection(1);
	ag_metrics_connection(1);
	ag_metrics_connection(-1);
	ag_metrics_set_in_flight(7);
	ag_metrics_reload(AG_MET_RELOAD_CONFIG);
	ag_metrics_reload(AG_MET_RELOAD_POLICY);
	ag_metrics_reload(AG_MET_RELOAD_POLICY);
	ag_metrics_reload_failed(AG_MET_RELOAD_CONFIG);
	ag_metrics_reload_failed(AG_MET_NRELOAD);	/* not counted */
	t = render();
	check_format(t);
	check_value("counts", t, "authgate_messages_total{action=\"accept\"}", 1);
	check_value("counts", t, "authgate_messages_total{action=\"reject\"}", 2);
	check_value("counts", t,
	    "authgate_messages_total{action=\"quarantine\"}", 1);
	check_value("counts", t, "authgate_messages_total{action=\"tempfail\"}",
	    0);
	check_value("counts", t, "authgate_auth_results_total{method=\"spf\","
	    "identity=\"mfrom\",result=\"fail\"}", 1);
	check_value("counts", t, "authgate_auth_results_total{method=\"spf\","
	    "identity=\"helo\",result=\"pass\"}", 1);
	check_value("counts", t, "authgate_auth_results_total{method=\"spf\","
	    "identity=\"mfrom\",result=\"pass\"}", 0);
	check_value("counts", t, "authgate_auth_results_total{method=\"dkim\","
	    "result=\"pass\"}", 2);
	check_value("counts", t, "authgate_dns_queries_total", 2);
	check_value("counts", t, "authgate_dns_cache_hits_total", 1);
	check_value("counts", t, "authgate_dns_errors_total{kind=\"timeout\"}", 1);
	check_value("counts", t, "authgate_dns_errors_total{kind=\"servfail\"}",
	    1);
	check_value("counts", t, "authgate_store_errors_total", 1);
	check_value("counts", t, "authgate_redis_errors_total", 2);
	check_value("counts", t, "authgate_redis_local_fallbacks_total", 1);
	check_value("counts", t, "authgate_rate_table_full_total", 3);
	check_value("counts", t, "authgate_connections", 1);
	check_value("counts", t, "authgate_messages_in_flight", 7);
	check_value("counts", t, "authgate_reloads_total{what=\"config\"}", 1);
	check_value("counts", t, "authgate_reloads_total{what=\"policy\"}", 2);
	check_value("counts", t,
	    "authgate_reload_failures_total{what=\"config\"}", 1);
	check_value("counts", t,
	    "authgate_reload_failures_total{what=\"policy\"}", 0);
	free(t);
}

/* Buckets are cumulative, le is inclusive, +Inf = _count = all. */
static void
test_histogram(void **state)
{
	static const struct {
		const char *le;
		double want;
	} b[] = {
		{ "0.001", 2 }, { "0.0025", 2 }, { "0.005", 3 }, { "0.01", 3 },
		{ "0.25", 3 }, { "1", 4 }, { "2.5", 4 }, { "5", 5 },
		{ "+Inf", 6 },
	};
	char series[128], *t;
	double sum;

	(void)state;
	ag_metrics_reset();
	ag_metrics_dns_duration(500);		/* 0.5 ms */
	ag_metrics_dns_duration(1000);		/* exactly 1 ms: le="0.001" */
	ag_metrics_dns_duration(3000);
	ag_metrics_dns_duration(1000000);	/* exactly 1 s */
	ag_metrics_dns_duration(5000000);	/* exactly 5 s */
	ag_metrics_dns_duration(7000000);	/* over every bound */
	t = render();
	check_format(t);
	for (size_t i = 0; i < NELEM(b); i++) {
		snprintf(series, sizeof(series),
		    "authgate_dns_query_duration_seconds_bucket{le=\"%s\"}",
		    b[i].le);
		check_value("histogram", t, series, b[i].want);
	}
	check_value("histogram", t, "authgate_dns_query_duration_seconds_count",
	    6);
	sum = value_of(t, "authgate_dns_query_duration_seconds_sum");
	if (sum < 13.0044 || sum > 13.0046) {
		fail_msg("histogram: _sum is %f, want 13.0045", sum);
	}
	free(t);
}

/* Rule ids: one series each, in id order; past the table, "other". */
static void
test_rules(void **state)
{
	char series[96], *t, *a, *b;
	int64_t id;

	(void)state;
	ag_metrics_reset();
	ag_metrics_rate_hit(12);
	ag_metrics_rate_hit(7);
	ag_metrics_rate_hit(12);
	ag_metrics_rate_hit(0);		/* no rule: other */
	ag_metrics_rate_hit(-3);
	t = render();
	check_format(t);
	check_value("rules", t, "authgate_rate_limit_hits_total{rule=\"12\"}", 2);
	check_value("rules", t, "authgate_rate_limit_hits_total{rule=\"7\"}", 1);
	check_value("rules", t, "authgate_rate_limit_hits_total{rule=\"other\"}",
	    2);
	a = strstr(t, "{rule=\"7\"}");
	b = strstr(t, "{rule=\"12\"}");
	if (a == NULL || b == NULL || a > b) {
		fail_msg("rules: not in id order:\n%s", t);
	}
	free(t);

	/* fill the table: ids 1..RULES_MAX+100 (12 and 7 are there) */
	for (id = 1; id <= AG_METRICS_RULES_MAX + 100; id++) {
		ag_metrics_rate_hit(id);
	}
	t = render();
	check_format(t);
	check_value("full table", t,
	    "authgate_rate_limit_hits_total{rule=\"12\"}", 3);
	check_value("full table", t,
	    "authgate_rate_limit_hits_total{rule=\"1\"}", 1);
	check_value("full table", t,
	    "authgate_rate_limit_hits_total{rule=\"other\"}", 2 + 100);
	snprintf(series, sizeof(series),
	    "authgate_rate_limit_hits_total{rule=\"%d\"}", AG_METRICS_RULES_MAX + 1);
	if (strstr(t, series) != NULL) {
		fail_msg("full table: %s has a series of its own", series);
	}
	free(t);
}

#define THREADS 4
#define PER_THREAD 200000

static unsigned hammers_done;

static void *
hammer(void *arg)
{
	int64_t base = (int64_t)(intptr_t)arg;

	for (int i = 0; i < PER_THREAD; i++) {
		ag_metrics_message((i & 1) != 0 ? "accept" : "tempfail");
		ag_metrics_rate_hit(base + i % 50);	/* 4 x 50 ids */
		ag_metrics_dns_duration((uint64_t)(i % 7) * 1000);
		ag_metrics_auth(AG_MET_DMARC, 1);
	}
	__atomic_add_fetch(&hammers_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Render while the threads count: valid text, counters never go back. */
static unsigned
render_meanwhile(void)
{
	double last_accept = 0, last_count = 0, v;
	unsigned renders = 0;
	char *t;

	while (__atomic_load_n(&hammers_done, __ATOMIC_ACQUIRE) < THREADS) {
		t = render();
		check_format(t);
		v = value_of(t, "authgate_messages_total{action=\"accept\"}");
		if (v < last_accept) {
			fail_msg("meanwhile: accept went back %f -> %f",
			    last_accept, v);
		}
		last_accept = v;
		v = value_of(t, "authgate_dns_query_duration_seconds_count");
		if (v < last_count) {
			fail_msg("meanwhile: _count went back");
		}
		last_count = v;
		renders++;
		free(t);
	}
	return renders;
}

/* Counts from several threads at once sum exactly. */
static void
test_threads(void **state)
{
	pthread_t tid[THREADS];
	double hits = 0;
	char series[96], *t;

	(void)state;
	ag_metrics_reset();
	hammers_done = 0;
	for (int i = 0; i < THREADS; i++) {
		/* overlapping id ranges: slots are claimed in races */
		if (pthread_create(&tid[i], NULL, hammer,
		    (void *)(intptr_t)(1 + i * 25)) != 0) {
			fail_msg("pthread_create");
		}
	}
	(void)render_meanwhile();
	for (int i = 0; i < THREADS; i++) {
		pthread_join(tid[i], NULL);
	}
	t = render();
	check_format(t);
	check_value("threads", t, "authgate_messages_total{action=\"accept\"}",
	    THREADS * PER_THREAD / 2);
	check_value("threads", t,
	    "authgate_messages_total{action=\"tempfail\"}",
	    THREADS * PER_THREAD / 2);
	check_value("threads", t, "authgate_auth_results_total{method=\"dmarc\","
	    "result=\"pass\"}", THREADS * PER_THREAD);
	check_value("threads", t, "authgate_dns_query_duration_seconds_count",
	    THREADS * PER_THREAD);
	for (int id = 1; id <= 1 + (THREADS - 1) * 25 + 49; id++) {
		snprintf(series, sizeof(series),
		    "authgate_rate_limit_hits_total{rule=\"%d\"}", id);
		hits += value_of(t, series);
	}
	if (hits != THREADS * PER_THREAD) {
		fail_msg("threads: rule hits sum to %.0f, want %d", hits,
		    THREADS * PER_THREAD);
	}
	check_value("threads", t, "authgate_rate_limit_hits_total{rule=\"other\"}",
	    0);
	free(t);
}

/* MetricsListen values. */
static void
test_listen_parse(void **state)
{
	static const struct {
		const char *label, *spec;
		int family;		/* 0: refused */
		unsigned port;
	} cases[] = {
		{ "ipv4", "127.0.0.1:9469", AF_INET, 9469 },
		{ "ipv4 any", "0.0.0.0:1", AF_INET, 1 },
		{ "ipv6", "[::1]:9469", AF_INET6, 9469 },
		{ "ipv6 long", "[2001:db8::1]:65535", AF_INET6, 65535 },
		{ "no port", "127.0.0.1", 0, 0 },
		{ "empty port", "127.0.0.1:", 0, 0 },
		{ "port 0", "127.0.0.1:0", 0, 0 },
		{ "port too big", "127.0.0.1:65536", 0, 0 },
		{ "port sign", "127.0.0.1:+80", 0, 0 },
		{ "port junk", "127.0.0.1:80x", 0, 0 },
		{ "port long", "127.0.0.1:000080", 0, 0 },
		{ "name", "localhost:9469", 0, 0 },
		{ "bare ipv6", "::1:9469", 0, 0 },
		{ "bracket unclosed", "[::1:9469", 0, 0 },
		{ "bracket no colon", "[::1]9469", 0, 0 },
		{ "ipv4 in brackets", "[127.0.0.1]:80", 0, 0 },
		{ "no host", ":9469", 0, 0 },
		{ "empty", "", 0, 0 },
	};
	struct sockaddr_storage ss;
	socklen_t len;
	char err[128];

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		ag_status st;
		unsigned port;

		err[0] = '\0';
		st = ag_metrics_listen_parse(cases[i].spec, &ss, &len, err,
		    sizeof(err));
		if (cases[i].family == 0) {
			if (st != AG_INVALID || err[0] == '\0') {
				fail_msg("%s: \"%s\" accepted", cases[i].label,
				    cases[i].spec);
			}
			continue;
		}
		if (st != AG_OK || ss.ss_family != cases[i].family) {
			fail_msg("%s: \"%s\" refused: %s", cases[i].label,
			    cases[i].spec, err);
		}
		port = ntohs(ss.ss_family == AF_INET ?
		    ((struct sockaddr_in *)&ss)->sin_port :
		    ((struct sockaddr_in6 *)&ss)->sin6_port);
		if (port != cases[i].port || len != (ss.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6))) {
			fail_msg("%s: port %u len %u", cases[i].label, port,
			    (unsigned)len);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_format_empty),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_listen_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
