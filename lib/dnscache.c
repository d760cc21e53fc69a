/*
 * dnscache.c - answers kept in front of libunbound; see dnscache.h.
 *
 * A slot is chosen by a seeded FNV-1a hash of the lower-cased name and the
 * type.  Names come from the network, so someone may choose names that
 * share slots: the worst they get is answers pushed out of the table, and
 * those lookups then go to libunbound as they would without it.  There
 * are no chains to make long.
 */
#include "autoconf.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dnscache.h"

#define NAME_MAX_LEN 254	/* 253 characters and a trailing dot */
#define STRIPES 64

struct entry {
	struct ag_dns_result *res;	/* NULL: slot empty */
	uint64_t expires_ms;
	ag_status st;
	int type;
	char name[NAME_MAX_LEN + 1];	/* lower case, no trailing dot */
};

struct ag_dns_cache {
	uint32_t seed;
	pthread_mutex_t mu[STRIPES];
	struct entry slot[AG_DNS_CACHE_SLOTS];
};

/* NAME in lower case without a trailing dot into OUT; false if too long. */
static bool
key_of(const char *name, char *out)
{
	size_t n = strlen(name);

	if (n > 0 && name[n - 1] == '.') {
		n--;
	}
	if (n > NAME_MAX_LEN) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		out[i] = (char)tolower((unsigned char)name[i]);
	}
	out[n] = '\0';
	return true;
}

static size_t
slot_of(const struct ag_dns_cache *c, const char *key, int type)
{
	uint32_t h = 2166136261u ^ c->seed;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h = (h ^ *p) * 16777619u;
	}
	h = (h ^ (uint32_t)type) * 16777619u;
	return h % AG_DNS_CACHE_SLOTS;
}

/* Bytes a copy of R takes, laid out as lib/dns.c lays out an answer. */
static size_t
result_size(const struct ag_dns_result *r)
{
	size_t size = sizeof(*r) + r->n * sizeof(struct ag_dns_rr);

	for (size_t i = 0; i < r->n; i++) {
		size += r->rr[i].len;
	}
	return size + r->packet_len;
}

/* A copy of R in one allocation (rr[], their data, the packet). */
static struct ag_dns_result *
result_copy(const struct ag_dns_result *r, size_t size)
{
	struct ag_dns_result *c = malloc(size);
	uint8_t *p;

	if (c == NULL) {
		return NULL;
	}
	*c = *r;
	c->rr = r->n > 0 ? (struct ag_dns_rr *)(c + 1) : NULL;
	p = (uint8_t *)(c + 1) + r->n * sizeof(struct ag_dns_rr);
	for (size_t i = 0; i < r->n; i++) {
		memcpy(p, r->rr[i].data, r->rr[i].len);
		c->rr[i].data = p;
		c->rr[i].len = r->rr[i].len;
		p += r->rr[i].len;
	}
	c->packet = r->packet_len > 0 ? p : NULL;
	if (r->packet_len > 0) {
		memcpy(p, r->packet, r->packet_len);
	}
	return c;
}

struct ag_dns_cache *
ag_dns_cache_new(void)
{
	struct ag_dns_cache *c = calloc(1, sizeof(*c));
	struct timespec ts;

	if (c == NULL) {
		return NULL;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	c->seed = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() << 16;
	for (int i = 0; i < STRIPES; i++) {
		if (pthread_mutex_init(&c->mu[i], NULL) != 0) {
			while (i-- > 0) {
				pthread_mutex_destroy(&c->mu[i]);
			}
			free(c);
			return NULL;
		}
	}
	return c;
}

void
ag_dns_cache_free(struct ag_dns_cache *c)
{
	if (c == NULL) {
		return;
	}
	ag_dns_cache_clear(c);
	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_destroy(&c->mu[i]);
	}
	free(c);
}

bool
ag_dns_cache_get(struct ag_dns_cache *c, const char *name, int type,
    uint64_t now_ms, ag_status *st, struct ag_dns_result **out)
{
	char key[NAME_MAX_LEN + 1];
	struct entry *e;
	struct ag_dns_result *copy = NULL;
	size_t s;

	if (c == NULL || !key_of(name, key)) {
		return false;
	}
	s = slot_of(c, key, type);
	e = &c->slot[s];
	pthread_mutex_lock(&c->mu[s % STRIPES]);
	if (e->res != NULL && e->type == type && now_ms < e->expires_ms &&
	    strcmp(e->name, key) == 0 &&
	    (copy = result_copy(e->res, result_size(e->res))) != NULL) {
		/* the seconds left, rounded up: never 0 for a live answer */
		copy->ttl = (unsigned)((e->expires_ms - now_ms + 999) / 1000);
		*st = e->st;
	}
	pthread_mutex_unlock(&c->mu[s % STRIPES]);
	if (copy == NULL) {
		return false;
	}
	*out = copy;
	return true;
}

void
ag_dns_cache_put(struct ag_dns_cache *c, const char *name, int type,
    uint64_t now_ms, ag_status st, const struct ag_dns_result *r)
{
	char key[NAME_MAX_LEN + 1];
	struct ag_dns_result *copy, *old;
	struct entry *e;
	unsigned ttl;
	size_t s, size;

	if (c == NULL || r == NULL || r->ttl == 0 ||
	    (st != AG_OK && st != AG_NOTFOUND) || !key_of(name, key)) {
		return;
	}
	size = result_size(r);
	if (size > AG_DNS_CACHE_ENTRY_MAX || (copy = result_copy(r, size)) == NULL) {
		return;
	}
	ttl = r->ttl < AG_DNS_CACHE_TTL_MAX ? r->ttl : AG_DNS_CACHE_TTL_MAX;
	s = slot_of(c, key, type);
	e = &c->slot[s];
	pthread_mutex_lock(&c->mu[s % STRIPES]);
	old = e->res;
	e->res = copy;
	e->expires_ms = now_ms + (uint64_t)ttl * 1000;
	e->st = st;
	e->type = type;
	memcpy(e->name, key, strlen(key) + 1);
	pthread_mutex_unlock(&c->mu[s % STRIPES]);
	free(old);
}

void
ag_dns_cache_clear(struct ag_dns_cache *c)
{
	if (c == NULL) {
		return;
	}
	for (size_t s = 0; s < AG_DNS_CACHE_SLOTS; s++) {
		pthread_mutex_lock(&c->mu[s % STRIPES]);
		free(c->slot[s].res);
		c->slot[s].res = NULL;
		pthread_mutex_unlock(&c->mu[s % STRIPES]);
	}
}
