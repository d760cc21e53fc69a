/*
 * spfbench.c - SPF evaluations per second through lib/spf.c (libspf2
 * under our DNS layer, lib/dns.c over libunbound) with a warm cache.
 * Not part of `make check`: built by `make bench-micro`
 * (tests/bench/bench.mk) and run by tests/bench/run micro, which starts a
 * private unbound serving the zone (with a TTL, so libunbound caches).
 *
 *   spfbench SERVER SECONDS CLIENT SENDER [THREADS ...]
 *
 * SERVER is the forwarder (as the daemon's DNSServer: 127.0.0.1@PORT),
 * CLIENT the client address, SENDER the MAIL FROM address.  The first
 * evaluation fills the cache; then for each THREADS (default 1 2) that
 * many threads evaluate the MAIL FROM identity for SECONDS (wall clock),
 * in rounds taken in turn, median shown.  Every evaluation must give the
 * result of the first one.  Output, one line each:
 *   RESULT threads=T rate=R per_thread=P us=U result=pass queries=Q
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "dns.h"
#include "log.h"
#include "spf.h"

#define ROUNDS 3
#define MAX_THREADS 16

static struct ag_spf *spf;
static struct ag_ip client;
static const char *sender;
static enum ag_spf_result want;
static volatile int stop;

static double
wall(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int
eval_once(struct ag_spf_answer *a)
{
	return ag_spf_check(spf, AG_SPF_MAILFROM, &client, "client.example.com",
	    sender, ag_dns_now_ms() + 5000, a) == AG_OK ? 0 : -1;
}

static void *
worker(void *arg)
{
	unsigned long *count = arg;
	struct ag_spf_answer a;

	while (!stop) {
		if (eval_once(&a) != 0 || a.result != want) {
			fprintf(stderr, "spfbench: got %s (%s), want %s\n",
			    ag_spf_result_name(a.result), a.reason,
			    ag_spf_result_name(want));
			exit(1);
		}
		(*count)++;
	}
	return NULL;
}

/* Evaluations per second with NT threads for SECONDS. */
static double
run(int nt, double seconds)
{
	pthread_t th[MAX_THREADS];
	unsigned long count[MAX_THREADS] = { 0 };
	unsigned long total = 0;
	struct timespec d;
	double t0, t1;

	stop = 0;
	t0 = wall();
	for (int i = 0; i < nt; i++) {
		if (pthread_create(&th[i], NULL, worker, &count[i]) != 0) {
			fprintf(stderr, "spfbench: pthread_create\n");
			exit(1);
		}
	}
	d.tv_sec = (time_t)seconds;
	d.tv_nsec = (long)((seconds - (double)d.tv_sec) * 1e9);
	nanosleep(&d, NULL);
	stop = 1;
	for (int i = 0; i < nt; i++) {
		pthread_join(th[i], NULL);
		total += count[i];
	}
	t1 = wall();
	return (double)total / (t1 - t0);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	int threads[MAX_THREADS] = { 1, 2 };
	double r[MAX_THREADS][ROUNDS];
	struct ag_dns_opts o = { NULL, 2000 };
	struct ag_spf_answer a;
	struct ag_dns *dns;
	int nthr = 2;
	double seconds;
	char err[256];

	if (argc < 5) {
		fprintf(stderr, "usage: spfbench SERVER SECONDS CLIENT SENDER "
		    "[THREADS ...]\n");
		return 2;
	}
	o.servers = argv[1];
	seconds = atof(argv[2]);
	sender = argv[4];
	if (ag_ip_parse(argv[3], &client) != AG_OK) {
		fprintf(stderr, "spfbench: bad client address %s\n", argv[3]);
		return 2;
	}
	if (argc > 5) {
		nthr = 0;
		for (int i = 5; i < argc && nthr < MAX_THREADS; i++) {
			threads[nthr] = atoi(argv[i]);
			if (threads[nthr] < 1 || threads[nthr] > MAX_THREADS) {
				fprintf(stderr, "spfbench: bad thread count\n");
				return 2;
			}
			nthr++;
		}
	}
	ag_log_open("spfbench", LOG_MAIL, 0);
	if (ag_dns_new(&o, &dns, err, sizeof(err)) != AG_OK ||
	    ag_spf_new(dns, "mx.example.net", &spf, err, sizeof(err)) !=
	    AG_OK) {
		fprintf(stderr, "spfbench: %s\n", err);
		return 1;
	}
	/* the first evaluation fills the cache */
	if (eval_once(&a) != 0) {
		fprintf(stderr, "spfbench: first evaluation failed\n");
		return 1;
	}
	want = a.result;
	printf("first result=%s reason=\"%s\" dns_terms=%u queries=%u "
	    "elapsed_ms=%u\n", ag_spf_result_name(a.result), a.reason,
	    a.dns_terms, a.queries, a.elapsed_ms);
	if (want == AG_SPF_TEMPERROR || want == AG_SPF_PERMERROR) {
		fprintf(stderr, "spfbench: the zone gives %s\n",
		    ag_spf_result_name(want));
		return 1;
	}
	(void)run(1, 0.2);	/* warm up */
	for (int k = 0; k < ROUNDS; k++) {
		for (int i = 0; i < nthr; i++) {
			r[i][k] = run(threads[i], seconds / ROUNDS);
		}
	}
	for (int i = 0; i < nthr; i++) {
		double m;

		qsort(r[i], ROUNDS, sizeof(r[i][0]), cmp_double);
		m = r[i][ROUNDS / 2];
		printf("RESULT threads=%d rate=%.1f per_thread=%.1f us=%.2f "
		    "result=%s queries=%u\n", threads[i], m, m / threads[i],
		    1e6 * threads[i] / m, ag_spf_result_name(want), a.queries);
	}
	ag_spf_free(spf);
	ag_dns_free(dns);
	return 0;
}
