/*
 * ratebench.c - decisions per second and memory of the local rate engine
 * (lib/ratelimit.c).  Not part of `make check`: build and run by hand as
 * tests/bench/README.md says.
 *
 *   ratebench [KEYS [KEYLEN [SECONDS]]]
 *
 * Runs, each for SECONDS (default 2): ag_gcra alone; the table with one
 * key on 1 and 2 threads; the table with KEYS keys (default 1,000,000) on
 * 1 and 2 threads, visited in a scattered order, then only 10,000 of them
 * (the live set of a busy MTA; the rest idle).  Prints VmRSS from
 * /proc/self/status before and after filling the table, and per key.
 * Keys are KEYLEN bytes (default 24: a rule number, a tag and an IPv6
 * address, as a per-client limit would use).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratelimit.h"

#define KEY_BUF 512
#define ACTIVE 10000	/* keys in use at once in a busy hour */

struct run {
	struct ag_rate_table *t;
	uint64_t nkeys;		/* keys visited; 0: one key */
	size_t keylen;
	double seconds;
	unsigned id;
	uint64_t decisions, allowed;
	pthread_barrier_t *go;
};

/* Seconds on the monotonic clock. */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmRSS in kB, or 0. */
static long
rss_kb(void)
{
	char line[256];
	long kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL) {
		return 0;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
		}
	}
	fclose(f);
	return kb;
}

/* Key number I in BUF (LEN bytes): "r12:ip6:" and I spread over 16 bytes. */
static void
make_key(unsigned char *buf, size_t len, uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ULL;

	memset(buf, 0, len);
	memcpy(buf, "r12:ip6:", len < 8 ? len : 8);
	if (len >= 24) {
		memcpy(buf + 8, &x, 8);
		memcpy(buf + 16, &i, 8);
	} else if (len >= 16) {
		memcpy(buf + 8, &i, 8);
	}
}

/* Decisions until SECONDS pass; a clock advancing 1 ms every 64. */
static void *
worker(void *arg)
{
	const struct ag_rate_limit lim = { 100, 60000 };
	struct run *r = arg;
	unsigned char key[KEY_BUF];
	struct ag_rate_result res;
	uint64_t i = 0, k, step = 0x9E3779B1ULL | 1;
	double end;

	make_key(key, r->keylen, 0);
	pthread_barrier_wait(r->go);
	end = now_s() + r->seconds;
	for (;;) {
		if (r->nkeys > 0) {
			k = (i * step + r->id * 7919) % r->nkeys;
			make_key(key, r->keylen, k);
		}
		ag_rate_take(r->t, key, r->keylen, &lim, 1, 1000000 + i / 64,
		    &res);
		r->allowed += res.allowed;
		i++;
		if ((i & 0xfff) == 0 && now_s() >= end) {
			break;
		}
	}
	r->decisions = i;
	return NULL;
}

/* NTHREADS workers on T; prints decisions/s in all and per thread. */
static void
bench_table(const char *what, struct ag_rate_table *t, unsigned nthreads,
    uint64_t nkeys, size_t keylen, double seconds)
{
	struct run runs[2];
	pthread_t th[2];
	pthread_barrier_t go;
	uint64_t total = 0;
	double t0, dt;
	unsigned i;

	pthread_barrier_init(&go, NULL, nthreads + 1);
	for (i = 0; i < nthreads; i++) {
		runs[i] = (struct run){ t, nkeys, keylen, seconds, i, 0, 0, &go };
		pthread_create(&th[i], NULL, worker, &runs[i]);
	}
	pthread_barrier_wait(&go);
	t0 = now_s();
	for (i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		total += runs[i].decisions;
	}
	dt = now_s() - t0;
	pthread_barrier_destroy(&go);
	printf("%-34s %u thread%s  %6.2f M decisions/s  %6.2f M/s per "
	    "thread\n", what, nthreads, nthreads > 1 ? "s" : " ",
	    (double)total / dt / 1e6, (double)total / dt / 1e6 / nthreads);
}

/* ag_gcra alone on one TAT, for the cost of the arithmetic. */
static void
bench_gcra(double seconds)
{
	const struct ag_rate_limit lims[2] = { { 100, 60000 }, { 3, 10000 } };
	struct ag_rate_result res;
	uint64_t tat = 0, i, n = 0, allowed = 0;
	double t0 = now_s(), dt;
	int l;

	for (l = 0; l < 2; l++) {
		t0 = now_s(), n = 0, tat = 0;
		do {
			for (i = 0; i < 65536; i++, n++) {
				ag_gcra(&tat, &lims[l], 1, 1000000 + n / 64,
				    &res);
				allowed += res.allowed;
			}
		} while (now_s() - t0 < seconds / 2);
		dt = now_s() - t0;
		printf("ag_gcra alone, %llu per %llu ms %*s 1 thread   %6.2f M "
		    "decisions/s\n", (unsigned long long)lims[l].limit,
		    (unsigned long long)lims[l].window_ms, l == 0 ? 6 : 8, "",
		    (double)n / dt / 1e6);
	}
	if (allowed == 0) {
		puts("(nothing allowed?)");
	}
}

int
main(int argc, char **argv)
{
	uint64_t nkeys = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
	size_t keylen = argc > 2 ? strtoul(argv[2], NULL, 10) : 24;
	double seconds = argc > 3 ? strtod(argv[3], NULL) : 2.0;
	const struct ag_rate_limit lim = { 100, 60000 };
	struct ag_rate_table *t;
	struct ag_rate_result res;
	struct ag_rate_stats st;
	unsigned char key[KEY_BUF];
	long rss0, rss1;
	double t0, dt;
	uint64_t i;

	if (keylen > AG_RATE_KEY_MAX || nkeys == 0) {
		fprintf(stderr, "usage: ratebench [KEYS [KEYLEN<=%d [SECONDS]]]\n",
		    AG_RATE_KEY_MAX);
		return 2;
	}
	bench_gcra(seconds);
	if (ag_rate_table_new(nkeys + 16, &t) != AG_OK) {
		fprintf(stderr, "ag_rate_table_new failed\n");
		return 1;
	}
	bench_table("table, 1 key", t, 1, 0, keylen, seconds);
	bench_table("table, 1 key (contended)", t, 2, 0, keylen, seconds);
	ag_rate_table_free(t);

	rss0 = rss_kb();
	ag_rate_table_new(nkeys + 16, &t);
	t0 = now_s();
	for (i = 0; i < nkeys; i++) {
		make_key(key, keylen, i);
		ag_rate_take(t, key, keylen, &lim, 1, 1000000, &res);
	}
	dt = now_s() - t0;
	rss1 = rss_kb();
	ag_rate_table_stats(t, &st);
	printf("filled %zu keys of %zu bytes: %.2f M inserts/s\n", st.keys,
	    keylen, (double)nkeys / dt / 1e6);
	printf("RSS before %ld kB, after %ld kB: %.1f MB for the keys, "
	    "%.0f bytes per key\n", rss0, rss1, (double)(rss1 - rss0) / 1024,
	    (double)(rss1 - rss0) * 1024 / (double)nkeys);
	snprintf((char *)key, sizeof(key), "table, %llu keys",
	    (unsigned long long)nkeys);
	bench_table((char *)key, t, 1, nkeys, keylen, seconds);
	bench_table((char *)key, t, 2, nkeys, keylen, seconds);
	if (nkeys > ACTIVE) {
		snprintf((char *)key, sizeof(key), "table, %llu keys, %d active",
		    (unsigned long long)nkeys, ACTIVE);
		bench_table((char *)key, t, 1, ACTIVE, keylen, seconds);
		bench_table((char *)key, t, 2, ACTIVE, keylen, seconds);
	}
	ag_rate_table_free(t);
	return 0;
}
