/*
 * redisbench.c - decisions per second of the Redis rate backend
 * (lib/ratelimit_redis.c) against the local engine (lib/ratelimit.c),
 * same threads, same keys, in one run.  Not part of `make check`:
 * build and run by hand as tests/bench/README.md says.
 *
 *   make -j2          # builds lib/libauthgate.a
 *   gcc -O2 -pthread -Ilib tests/bench/redisbench.c lib/libauthgate.a \
 *       -lhiredis -o /tmp/redisbench
 *   /tmp/redisbench [--url URL] [--threads N] [--keys N] [--seconds S]
 *
 * Without --url it starts its own redis-server on a free loopback port
 * (no persistence) and kills it by PID at the end.  Defaults: 50
 * threads, 10,000 keys, 3 seconds a run.  Each thread has its own
 * connection (made before the clock starts) and takes 1 unit at a time
 * of a key chosen at random, under 100 per minute, so decisions are both
 * allowed and refused.  Runs: Redis with 1 thread (the round trip alone),
 * Redis with N threads, the local table with N threads; then the ratio.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ratelimit_redis.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define KEYLEN 19		/* "r1:" and 16 bytes of address */
#define LAT_BUCKETS 20000	/* 1 us each; the last counts the rest */

struct run {
	struct ag_redis *redis;		/* NULL: the local table */
	struct ag_rate_table *table;
	unsigned nkeys;
	double seconds;
	unsigned id;
	pthread_barrier_t *go;
	uint64_t decisions, allowed, errors;
	uint32_t *lat;			/* LAT_BUCKETS counters (Redis) */
	char err[256];
};

/* Seconds on the monotonic clock. */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Microseconds on the monotonic clock. */
static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* xorshift64*: the keys each thread visits. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* Key number I as a per-client key: a rule tag and an IPv6 address. */
static void
make_key(unsigned char *k, uint32_t i)
{
	memset(k, 0, KEYLEN);
	memcpy(k, "r1:", 3);
	k[3] = 0x20, k[4] = 0x01, k[5] = 0x0d, k[6] = 0xb8;
	memcpy(k + KEYLEN - sizeof(i), &i, sizeof(i));
}

/* One thread of a run: random keys until the time is up. */
static void *
worker(void *arg)
{
	const struct ag_rate_limit lim = { 100, 60000 };
	struct run *w = arg;
	struct ag_rate_result r;
	unsigned char key[KEYLEN];
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (w->id + 1), t0, t1;
	double end;
	ag_status rc;
	unsigned n;

	if (w->redis != NULL) {
		/* Connect (and load the script) before the clock starts. */
		make_key(key, w->id);
		(void)ag_redis_take(w->redis, key, KEYLEN, &lim, 0, &r, w->err,
		    sizeof(w->err));
	}
	pthread_barrier_wait(w->go);
	end = now_s() + w->seconds;
	for (n = 0;; n++) {
		make_key(key, (uint32_t)(rnd(&seed) % w->nkeys));
		if (w->redis != NULL) {
			t0 = now_us();
			rc = ag_redis_take(w->redis, key, KEYLEN, &lim, 1, &r,
			    w->err, sizeof(w->err));
			t1 = now_us();
			w->lat[t1 - t0 < LAT_BUCKETS ? t1 - t0 :
			    LAT_BUCKETS - 1]++;
			if (t1 / 1e6 >= end) {
				break;
			}
		} else {
			rc = ag_rate_take(w->table, key, KEYLEN, &lim, 1,
			    now_us() / 1000, &r);
			if ((n & 63) == 0 && now_s() >= end) {
				break;
			}
		}
		w->decisions++;
		w->allowed += rc == AG_OK && r.allowed;
		w->errors += rc != AG_OK;
	}
	return NULL;
}

/* The latency (us) below which a share P of the decisions were made. */
static unsigned
percentile(const uint64_t *lat, uint64_t total, double p)
{
	uint64_t seen = 0;
	unsigned i;

	for (i = 0; i < LAT_BUCKETS; i++) {
		seen += lat[i];
		if ((double)seen >= p * (double)total) {
			return i;
		}
	}
	return LAT_BUCKETS;
}

/* Run NTHREADS workers on REDIS (or TABLE); decisions per second. */
static double
run(const char *label, struct ag_redis *redis, struct ag_rate_table *table,
    unsigned nthreads, unsigned nkeys, double seconds)
{
	struct run *w = calloc(nthreads, sizeof(*w));
	pthread_t *th = calloc(nthreads, sizeof(*th));
	uint64_t *lat = calloc(LAT_BUCKETS, sizeof(*lat));
	uint64_t decisions = 0, allowed = 0, errors = 0;
	pthread_barrier_t go;
	double t0, t, rate;
	unsigned i, j;

	if (w == NULL || th == NULL || lat == NULL ||
	    pthread_barrier_init(&go, NULL, nthreads + 1) != 0) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (i = 0; i < nthreads; i++) {
		w[i] = (struct run){ redis, table, nkeys, seconds, i, &go, 0,
			0, 0, NULL, "" };
		if (redis != NULL && (w[i].lat = calloc(LAT_BUCKETS,
		    sizeof(uint32_t))) == NULL) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		if (pthread_create(&th[i], NULL, worker, &w[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&go);
	t0 = now_s();
	for (i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
	}
	t = now_s() - t0;
	for (i = 0; i < nthreads; i++) {
		decisions += w[i].decisions;
		allowed += w[i].allowed;
		errors += w[i].errors;
		for (j = 0; redis != NULL && j < LAT_BUCKETS; j++) {
			lat[j] += w[i].lat[j];
		}
	}
	rate = (double)decisions / t;
	printf("%-28s %10.0f decisions/s  %5.1f%% allowed", label, rate,
	    decisions > 0 ? 100.0 * (double)allowed / (double)decisions : 0.0);
	if (redis != NULL) {
		printf("  latency p50 %u us, p99 %u us, p99.9 %u us",
		    percentile(lat, decisions, 0.5),
		    percentile(lat, decisions, 0.99),
		    percentile(lat, decisions, 0.999));
	}
	printf("\n");
	for (i = 0; errors > 0 && i < nthreads; i++) {
		if (w[i].errors > 0) {
			printf("  %llu errors, e.g.: %s\n",
			    (unsigned long long)errors, w[i].err);
			break;
		}
	}
	for (i = 0; i < nthreads; i++) {
		free(w[i].lat);
	}
	pthread_barrier_destroy(&go);
	free(lat);
	free(th);
	free(w);
	return rate;
}

/* A free TCP port on 127.0.0.1 in 10000-31999. */
static int
free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint32_t r;
	int i, fd, ok, port;

	for (i = 0; i < 500; i++) {
		if (getrandom(&r, sizeof(r), 0) != sizeof(r)) {
			r = (uint32_t)rand();
		}
		port = 10000 + (int)(r % 22000);
		sa.sin_port = htons((uint16_t)port);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		ok = fd >= 0 &&
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (fd >= 0) {
			close(fd);
		}
		if (ok) {
			return port;
		}
	}
	return 0;
}

/* Start redis-server on PORT and wait for PING; its PID, or 0. */
static pid_t
server_start(int port)
{
	char p[16];
	struct timeval tv = { 1, 0 };
	const char *argv[] = { "redis-server", "--port", p, "--bind",
		"127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", NULL };
	redisContext *c;
	redisReply *rep;
	pid_t pid, parent = getpid();
	int i, fd, st;

	snprintf(p, sizeof(p), "%d", port);
	if ((pid = fork()) < 0) {
		return 0;
	}
	if (pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) {
			_exit(1);
		}
		if ((fd = open("/dev/null", O_RDWR)) >= 0) {
			dup2(fd, 1), dup2(fd, 2);
		}
		execv(REDIS_SERVER, (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < 250; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			return 0;
		}
		c = redisConnectWithTimeout("127.0.0.1", port, tv);
		if (c != NULL && c->err == 0 &&
		    (rep = redisCommand(c, "PING")) != NULL) {
			freeReplyObject(rep);
			redisFree(c);
			return pid;
		}
		redisFree(c);
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return 0;
}

int
main(int argc, char **argv)
{
	char url[256] = "", label[64], err[256];
	unsigned nthreads = 50, nkeys = 10000;
	double seconds = 3, rr, rl;
	struct ag_rate_table *table;
	struct ag_redis *redis;
	pid_t pid = 0;
	int i, st;

	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--url") == 0) {
			snprintf(url, sizeof(url), "%s", argv[i + 1]);
		} else if (strcmp(argv[i], "--threads") == 0) {
			nthreads = (unsigned)strtoul(argv[i + 1], NULL, 10);
		} else if (strcmp(argv[i], "--keys") == 0) {
			nkeys = (unsigned)strtoul(argv[i + 1], NULL, 10);
		} else if (strcmp(argv[i], "--seconds") == 0) {
			seconds = strtod(argv[i + 1], NULL);
		} else {
			break;
		}
	}
	if (i < argc || nthreads == 0 || nkeys == 0 || seconds <= 0) {
		fprintf(stderr, "usage: redisbench [--url URL] [--threads N] "
		    "[--keys N] [--seconds S]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (url[0] == '\0') {
		i = free_port();
		if (i == 0 || (pid = server_start(i)) == 0) {
			fprintf(stderr, "cannot start %s\n", REDIS_SERVER);
			return 1;
		}
		snprintf(url, sizeof(url), "redis://127.0.0.1:%d", i);
	}
	if (ag_redis_new(url, 2000, &redis, err, sizeof(err)) != AG_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("backend %s%s; %u keys of %d bytes, 100 per minute, "
	    "%.0f s a run\n", ag_redis_url(redis), pid != 0 ?
	    " (started here)" : "", nkeys, KEYLEN, seconds);
	(void)run("redis, 1 thread", redis, NULL, 1, nkeys, seconds);
	snprintf(label, sizeof(label), "redis, %u threads", nthreads);
	rr = run(label, redis, NULL, nthreads, nkeys, seconds);
	ag_redis_free(redis);
	if (ag_rate_table_new(nkeys * 2, &table) != AG_OK) {
		fprintf(stderr, "cannot make the table\n");
		return 1;
	}
	snprintf(label, sizeof(label), "local, %u threads", nthreads);
	rl = run(label, NULL, table, nthreads, nkeys, seconds);
	ag_rate_table_free(table);
	printf("local / redis (%u threads): %.0fx\n", nthreads,
	    rr > 0 ? rl / rr : 0.0);
	if (pid != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	return 0;
}
