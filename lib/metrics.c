/*
 * metrics.c - process-wide counters and their Prometheus text rendering;
 * see metrics.h.
 *
 * Each counter is a uint64_t touched with relaxed __atomic adds: the hot
 * path costs one locked add on a cache line shared by the threads that
 * count the same thing, and nothing else.  The label sets are fixed
 * (actions, results, error kinds) except rule ids, which go into a fixed
 * open-addressing table (below); so memory is bounded and every series
 * exists from the start at 0, as Prometheus prefers.
 *
 * Rule ids.  A slot is claimed for an id by compare-and-swap and never
 * given back: a rule deleted keeps its series until the restart, since a
 * counter that vanished and came back would read as a reset.  Rule ids
 * are SQLite INTEGER PRIMARY KEYs without AUTOINCREMENT, so the highest
 * id, once deleted, can be given to the next rule created: its hits then
 * add to the old rule's series (the rule="12" of a dashboard is "whatever
 * rule 12 is now").  Past AG_METRICS_RULES_MAX distinct ids in one
 * process life, hits are counted in rule="other".
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "dkim.h"
#include "dmarc.h"
#include "metrics.h"
#include "spf.h"

#define RELAXED __ATOMIC_RELAXED
#define VERSION_MAX 64

/* The log's action= values counted; the index is the series. */
static const char *const action_names[] = { "accept", "tempfail",
	"reject", "discard", "quarantine", "abort" };
#define NACTIONS (sizeof(action_names) / sizeof(action_names[0]))

/* Results per method: the largest result enum. */
#define NRESULTS_MAX 8
_Static_assert(AG_SPF_NRESULTS <= NRESULTS_MAX &&
    AG_DKIM_NRESULTS <= NRESULTS_MAX && AG_DMARC_PERMERROR < NRESULTS_MAX,
    "results fit the table");

static const char *const dns_err_names[AG_MET_DNS_NERR] = { "timeout",
	"servfail", "malformed", "nomem" };
static const char *const reload_names[AG_MET_NRELOAD] = { "config",
	"policy" };

/* DNS query durations: bucket upper bounds in microseconds (1 ms..5 s). */
static const uint64_t dns_bounds_us[] = { 1000, 2500, 5000, 10000, 25000,
	50000, 100000, 250000, 500000, 1000000, 2500000, 5000000 };
#define NBUCKETS (sizeof(dns_bounds_us) / sizeof(dns_bounds_us[0]))

struct rule_slot {
	int64_t id;		/* 0: free */
	uint64_t hits;
};

static struct {
	uint64_t messages[NACTIONS];
	uint64_t auth[AG_MET_NAUTH][NRESULTS_MAX];
	struct rule_slot rules[AG_METRICS_RULES_MAX];
	uint64_t rules_other;
	uint64_t dns_queries, dns_cached;
	uint64_t dns_errors[AG_MET_DNS_NERR];
	uint64_t dns_buckets[NBUCKETS + 1];	/* not cumulative; +Inf last */
	uint64_t dns_sum_us;
	uint64_t store_errors, redis_errors, redis_local;
	uint64_t rate_table_full;
	int64_t connections;
	uint64_t in_flight;
	uint64_t reloads[AG_MET_NRELOAD];
	uint64_t reload_failures[AG_MET_NRELOAD];
} mt;

/* Set once by ag_metrics_init, before the threads that render. */
static double start_time;
static char version[VERSION_MAX + 1] = "unknown";

static inline void
add1(uint64_t *p)
{
	__atomic_add_fetch(p, 1, RELAXED);
}

static inline uint64_t
get(const uint64_t *p)
{
	return __atomic_load_n(p, RELAXED);
}

void
ag_metrics_init(const char *v)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	snprintf(version, sizeof(version), "%s", v != NULL ? v : "unknown");
}

void
ag_metrics_reset(void)
{
	memset(&mt, 0, sizeof(mt));
}

void
ag_metrics_message(const char *action)
{
	for (size_t i = 0; action != NULL && i < NACTIONS; i++) {
		if (strcmp(action, action_names[i]) == 0) {
			add1(&mt.messages[i]);
			return;
		}
	}
}

void
ag_metrics_auth(enum ag_metrics_auth what, unsigned result)
{
	if ((unsigned)what < AG_MET_NAUTH && result < NRESULTS_MAX) {
		add1(&mt.auth[what][result]);
	}
}

/* The first slot to try for ID (Fibonacci hashing). */
static size_t
rule_home(int64_t id)
{
	return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ULL) >> 32) %
	    AG_METRICS_RULES_MAX;
}

void
ag_metrics_rate_hit(int64_t id)
{
	size_t h = rule_home(id);

	for (size_t i = 0; id > 0 && i < AG_METRICS_RULES_MAX; i++) {
		struct rule_slot *s = &mt.rules[(h + i) % AG_METRICS_RULES_MAX];
		int64_t cur = __atomic_load_n(&s->id, __ATOMIC_ACQUIRE);

		if (cur == 0) {
			/* claim it; on a race CUR becomes the winner's id */
			if (__atomic_compare_exchange_n(&s->id, &cur, id, false,
			    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				cur = id;
			}
		}
		if (cur == id) {
			add1(&s->hits);
			return;
		}
	}
	add1(&mt.rules_other);
}

void
ag_metrics_dns_query(void)
{
	add1(&mt.dns_queries);
}

void
ag_metrics_dns_cache_hit(void)
{
	add1(&mt.dns_cached);
}

void
ag_metrics_dns_error(enum ag_metrics_dns_err kind)
{
	if ((unsigned)kind < AG_MET_DNS_NERR) {
		add1(&mt.dns_errors[kind]);
	}
}

void
ag_metrics_dns_duration(uint64_t us)
{
	size_t i = 0;

	while (i < NBUCKETS && us > dns_bounds_us[i]) {
		i++;
	}
	add1(&mt.dns_buckets[i]);
	__atomic_add_fetch(&mt.dns_sum_us, us, RELAXED);
}

uint64_t
ag_metrics_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void
ag_metrics_store_error(void)
{
	add1(&mt.store_errors);
}

void
ag_metrics_redis_error(bool local)
{
	add1(&mt.redis_errors);
	if (local) {
		add1(&mt.redis_local);
	}
}

void
ag_metrics_rate_table_full(void)
{
	add1(&mt.rate_table_full);
}

void
ag_metrics_connection(int delta)
{
	__atomic_add_fetch(&mt.connections, delta, RELAXED);
}

void
ag_metrics_set_in_flight(unsigned n)
{
	__atomic_store_n(&mt.in_flight, n, RELAXED);
}

void
ag_metrics_reload(enum ag_metrics_reload what)
{
	if ((unsigned)what < AG_MET_NRELOAD) {
		add1(&mt.reloads[what]);
	}
}

void
ag_metrics_reload_failed(enum ag_metrics_reload what)
{
	if ((unsigned)what < AG_MET_NRELOAD) {
		add1(&mt.reload_failures[what]);
	}
}

char *
ag_metrics_escape(char *dst, size_t dstsz, const char *v)
{
	size_t j = 0;

	if (dstsz == 0) {
		return dst;
	}
	for (; v != NULL && *v != '\0'; v++) {
		const char *rep = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" :
		    *v == '\n' ? "\\n" : NULL;
		size_t n = rep != NULL ? 2 : 1;

		if (j + n >= dstsz) {
			break;
		}
		if (rep != NULL) {
			memcpy(dst + j, rep, 2);
		} else {
			dst[j] = *v;
		}
		j += n;
	}
	dst[j] = '\0';
	return dst;
}

/* "# HELP" and "# TYPE" of one family. */
static void
family(FILE *fp, const char *name, const char *type, const char *help)
{
	fprintf(fp, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A counter family with one label: NAMES[i] as LABEL, VALS[i] its count. */
static void
counters_by(FILE *fp, const char *name, const char *help, const char *label,
    const char *const *names, const uint64_t *vals, size_t n)
{
	family(fp, name, "counter", help);
	for (size_t i = 0; i < n; i++) {
		fprintf(fp, "%s{%s=\"%s\"} %llu\n", name, label, names[i],
		    (unsigned long long)get(&vals[i]));
	}
}

/* The fixed-label families: messages, auth results, DNS errors, reloads. */
static void
write_labelled(FILE *fp)
{
	static const struct {
		const char *method, *identity;
		unsigned n;
	} auth[AG_MET_NAUTH] = {
		[AG_MET_SPF_MFROM] = { "spf", "mfrom", AG_SPF_NRESULTS },
		[AG_MET_SPF_HELO] = { "spf", "helo", AG_SPF_NRESULTS },
		[AG_MET_DKIM] = { "dkim", NULL, AG_DKIM_NRESULTS },
		[AG_MET_DMARC] = { "dmarc", NULL, AG_DMARC_PERMERROR + 1 },
	};
	size_t i;
	unsigned r;

	counters_by(fp, "authgate_messages_total",
	    "Messages ended, by the action of their log line.", "action",
	    action_names, mt.messages, NACTIONS);
	family(fp, "authgate_auth_results_total", "counter",
	    "Authentication results as Authentication-Results writes them "
	    "(DKIM: one per signature).");
	for (i = 0; i < AG_MET_NAUTH; i++) {
		for (r = 0; r < auth[i].n; r++) {
			const char *rn = i == AG_MET_DKIM ?
			    ag_dkim_res_name((enum ag_dkim_res)r) :
			    i == AG_MET_DMARC ?
			    ag_dmarc_res_name((enum ag_dmarc_res)r) :
			    ag_spf_result_name((enum ag_spf_result)r);

			fprintf(fp, "authgate_auth_results_total{method=\"%s\"",
			    auth[i].method);
			if (auth[i].identity != NULL) {
				fprintf(fp, ",identity=\"%s\"", auth[i].identity);
			}
			fprintf(fp, ",result=\"%s\"} %llu\n", rn,
			    (unsigned long long)get(&mt.auth[i][r]));
		}
	}
	counters_by(fp, "authgate_dns_errors_total",
	    "DNS queries that failed, by kind.", "kind", dns_err_names,
	    mt.dns_errors, AG_MET_DNS_NERR);
	counters_by(fp, "authgate_reloads_total",
	    "Reloads: the config file (SIGHUP) and the rules (database).",
	    "what", reload_names, mt.reloads, AG_MET_NRELOAD);
	counters_by(fp, "authgate_reload_failures_total",
	    "Reloads that failed, what ran kept: a config file that does not "
	    "parse; a read of the rules that failed (retried every "
	    "PolicyCheckInterval while the database is unusable).", "what",
	    reload_names, mt.reload_failures, AG_MET_NRELOAD);
}

/* Order rule slots by id. */
static int
slot_cmp(const void *a, const void *b)
{
	const struct rule_slot *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* authgate_rate_limit_hits_total, by rule id in order; -1: no memory. */
static int
write_rules(FILE *fp)
{
	struct rule_slot *v = malloc(sizeof(mt.rules));
	size_t n = 0, i;

	if (v == NULL) {
		return -1;
	}
	for (i = 0; i < AG_METRICS_RULES_MAX; i++) {
		int64_t id = __atomic_load_n(&mt.rules[i].id, __ATOMIC_ACQUIRE);

		if (id != 0) {
			v[n].id = id;
			v[n++].hits = get(&mt.rules[i].hits);
		}
	}
	qsort(v, n, sizeof(v[0]), slot_cmp);
	family(fp, "authgate_rate_limit_hits_total", "counter",
	    "Rate limit refusals (dry-run and tag rules too), by rule id.");
	for (i = 0; i < n; i++) {
		fprintf(fp, "authgate_rate_limit_hits_total{rule=\"%lld\"} %llu\n",
		    (long long)v[i].id, (unsigned long long)v[i].hits);
	}
	fprintf(fp, "authgate_rate_limit_hits_total{rule=\"other\"} %llu\n",
	    (unsigned long long)get(&mt.rules_other));
	free(v);
	return 0;
}

/* The DNS duration histogram: cumulative buckets, _sum, _count. */
static void
write_histogram(FILE *fp)
{
	const char *h = "authgate_dns_query_duration_seconds";
	uint64_t cum = 0;
	size_t i;

	family(fp, h, "histogram", "Time DNS queries sent to the resolver "
	    "took (answers from our own cache are not timed).");
	for (i = 0; i <= NBUCKETS; i++) {
		cum += get(&mt.dns_buckets[i]);
		if (i < NBUCKETS) {
			fprintf(fp, "%s_bucket{le=\"%g\"} %llu\n", h,
			    (double)dns_bounds_us[i] / 1e6,
			    (unsigned long long)cum);
		} else {
			fprintf(fp, "%s_bucket{le=\"+Inf\"} %llu\n", h,
			    (unsigned long long)cum);
		}
	}
	fprintf(fp, "%s_sum %.6f\n%s_count %llu\n", h,
	    (double)get(&mt.dns_sum_us) / 1e6, h, (unsigned long long)cum);
}

/* One unlabelled series with its HELP and TYPE. */
static void
single(FILE *fp, const char *name, const char *type, const char *help,
    unsigned long long v)
{
	family(fp, name, type, help);
	fprintf(fp, "%s %llu\n", name, v);
}

int
ag_metrics_write(FILE *fp)
{
	char esc[VERSION_MAX * 2 + 1];
	int64_t conns = __atomic_load_n(&mt.connections, RELAXED);

	family(fp, "authgate_build_info", "gauge",
	    "The version running; the value is always 1.");
	fprintf(fp, "authgate_build_info{version=\"%s\"} 1\n",
	    ag_metrics_escape(esc, sizeof(esc), version));
	family(fp, "authgate_start_time_seconds", "gauge",
	    "When the process started, in seconds since the epoch.");
	fprintf(fp, "authgate_start_time_seconds %.3f\n", start_time);
	write_labelled(fp);
	if (write_rules(fp) != 0) {
		return -1;
	}
	single(fp, "authgate_dns_queries_total", "counter",
	    "DNS queries asked, answers from the cache included.",
	    get(&mt.dns_queries));
	single(fp, "authgate_dns_cache_hits_total", "counter",
	    "DNS queries answered from authgate's own cache.",
	    get(&mt.dns_cached));
	write_histogram(fp);
	single(fp, "authgate_store_errors_total", "counter",
	    "SQLite calls that failed.", get(&mt.store_errors));
	single(fp, "authgate_redis_errors_total", "counter",
	    "Redis rate limit calls that failed.", get(&mt.redis_errors));
	single(fp, "authgate_redis_local_fallbacks_total", "counter",
	    "Rate decisions counted locally because Redis failed.",
	    get(&mt.redis_local));
	single(fp, "authgate_rate_table_full_total", "counter",
	    "New rate keys admitted uncounted: the local table was full "
	    "(RateMaxKeys).", get(&mt.rate_table_full));
	single(fp, "authgate_connections", "gauge",
	    "MTA connections open.", conns > 0 ? (unsigned long long)conns : 0);
	single(fp, "authgate_messages_in_flight", "gauge",
	    "Messages (transactions) in progress.", get(&mt.in_flight));
	return ferror(fp) ? -1 : 0;
}

char *
ag_metrics_text(size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *fp = open_memstream(&buf, &n);
	int rc;

	if (fp == NULL) {
		return NULL;
	}
	rc = ag_metrics_write(fp);
	if (fclose(fp) != 0 || rc != 0) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

/* "PORT" (1..65535, digits only) into *PORT; false if not. */
static bool
port_parse(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; s[i] >= '0' && s[i] <= '9' && i < 5; i++) {
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (i == 0 || s[i] != '\0' || v == 0 || v > 65535) {
		return false;
	}
	*port = (uint16_t)v;
	return true;
}

ag_status
ag_metrics_listen_parse(const char *spec, struct sockaddr_storage *ss,
    socklen_t *sslen, char *err, size_t errlen)
{
	struct sockaddr_storage tmp;
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *h = spec;
	size_t hl;
	uint16_t port;

	memset(&tmp, 0, sizeof(tmp));
	if (spec[0] == '[') {
		colon = strchr(spec, ']');
		if (colon == NULL || colon[1] != ':') {
			snprintf(err, errlen, "is not [IPV6]:PORT");
			return AG_INVALID;
		}
		h = spec + 1;
		hl = (size_t)(colon - h);
		colon++;
	} else {
		colon = strrchr(spec, ':');
		hl = colon != NULL ? (size_t)(colon - spec) : 0;
	}
	if (colon == NULL || hl == 0 || hl >= sizeof(host)) {
		snprintf(err, errlen, "is not IPV4:PORT or [IPV6]:PORT");
		return AG_INVALID;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (!port_parse(colon + 1, &port)) {
		snprintf(err, errlen, "has a bad port (1 to 65535)");
		return AG_INVALID;
	}
	if (spec[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&tmp;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			snprintf(err, errlen, "has a bad IPv6 address");
			return AG_INVALID;
		}
		hl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&tmp;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
			snprintf(err, errlen, "is not an IPv4 address (names "
			    "are not looked up; IPv6 goes in brackets)");
			return AG_INVALID;
		}
		hl = sizeof(*s4);
	}
	if (ss != NULL) {
		*ss = tmp;
	}
	if (sslen != NULL) {
		*sslen = (socklen_t)hl;
	}
	return AG_OK;
}
