/*
 * ratelimit.c - GCRA and the local rate table (see ratelimit.h).
 *
 * The arithmetic.  With T = W / L (window W ms, limit L), the exact
 * theoretical arrival time of a key is always a multiple of 1/L ms: it
 * starts at an integer NOW and moves by COST * W / L.  So a decision works
 * in "ticks" of 1/L ms on the key's debt D = TAT - NOW (128-bit integers,
 * no rounding at all): a unit costs W ticks, the debt may reach W * L
 * ticks, and it drains by L ticks a millisecond.  The stored TAT is NOW +
 * ceil(D * 1e6 / L) ns; reading it back, floor(d_ns * L / 1e6) gives D
 * again exactly when L <= 1e6, and never less than D otherwise.  Hence
 * "3 per 10 s" admits 3 at once and then exactly one every 3333.33.. ms
 * forever, with no drift, while the TAT stays a plain time that survives
 * a change of the limit and is all a checkpoint needs to store.
 *
 * The table.  256 stripes, each a mutex and its own chained hash table
 * (grown by doubling, only under its own lock); the stripe and the bucket
 * come from SipHash-2-4 of the key under a random key from getrandom(),
 * so a sender cannot choose keys that collide.  An entry is one
 * allocation holding the key inline (about 22 bytes + the key).  The
 * number of keys is one atomic counter bounded by max_keys; a stripe
 * keeps a lower bound of its entries' TATs (next_idle) so that sweeping
 * for idle keys is skipped where none can be idle.  Taking on an existing
 * key allocates nothing.  Lock order: a thread holds one stripe lock and
 * only try-locks another (eviction), so there is no deadlock.
 *
 * Ownership: the table owns its entries; ag_rate_table_free() frees all.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ratelimit.h"

#define RL_STRIPES 256		/* a power of two, chosen by hash bits */
#define RL_STRIPE_SHIFT 56	/* 64 - log2(RL_STRIPES) */
#define RL_BUCKETS_MIN 16	/* a stripe's first bucket array */
#define RL_CACHE_LINE 64
#define NS AG_RATE_TAT_PER_MS

typedef unsigned __int128 u128;

_Static_assert((RL_STRIPES >> (64 - RL_STRIPE_SHIFT)) == 1,
    "RL_STRIPE_SHIFT selects RL_STRIPES stripes");
_Static_assert(AG_RATE_KEY_MAX <= UINT16_MAX, "keylen fits an entry");

struct rl_entry {
	struct rl_entry *next;
	uint64_t tat;		/* ns on the caller's scale, 0 when fresh */
	uint32_t hash;		/* low bits of the key's hash */
	uint16_t keylen;
	unsigned char key[];	/* keylen bytes, not terminated */
};

struct rl_stripe {
	pthread_mutex_t mu;
	struct rl_entry **buckets;	/* NULL until the first key */
	size_t nbuckets;		/* 0 or a power of two */
	size_t count;
	_Atomic uint64_t next_idle;	/* no entry is fresh before (ns) */
	uint64_t takes, refused, full;
} __attribute__((aligned(RL_CACHE_LINE)));

struct ag_rate_table {
	struct rl_stripe stripes[RL_STRIPES];
	uint8_t sipkey[16];
	size_t max_keys;
	_Atomic size_t nkeys;
};

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012) ----------------------- */

/* X rotated left by B bits (0 < B < 64). */
static inline uint64_t
rotl64(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

/* Eight bytes at P as a little-endian number. */
static inline uint64_t
load_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--) {
		v = (v << 8) | p[i];
	}
	return v;
}

/* One SipRound on the state V. */
static inline void
sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = rotl64(v[1], 13) ^ v[0];
	v[0] = rotl64(v[0], 32);
	v[2] += v[3];
	v[3] = rotl64(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = rotl64(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = rotl64(v[1], 17) ^ v[2];
	v[2] = rotl64(v[2], 32);
}

/* SipHash-2-4 of LEN bytes at IN under the 16-byte KEY. */
static uint64_t
siphash24(const uint8_t key[16], const void *in, size_t len)
{
	const uint8_t *p = in;
	uint64_t k0 = load_le64(key), k1 = load_le64(key + 8), m;
	uint64_t v[4] = { k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
		k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL };
	size_t left = len;
	uint8_t last[8] = { 0 };

	for (; left >= 8; p += 8, left -= 8) {
		m = load_le64(p);
		v[3] ^= m;
		sip_round(v), sip_round(v);
		v[0] ^= m;
	}
	if (left > 0) {
		memcpy(last, p, left);
	}
	m = load_le64(last) | ((uint64_t)len << 56);
	v[3] ^= m;
	sip_round(v), sip_round(v);
	v[0] ^= m;
	v[2] ^= 0xff;
	sip_round(v), sip_round(v), sip_round(v), sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* ---- GCRA --------------------------------------------------------------- */

/* True if LIM can be decided on. */
static inline bool
lim_ok(const struct ag_rate_limit *lim)
{
	return lim != NULL && lim->window_ms > 0 &&
	    lim->window_ms <= AG_RATE_WINDOW_MAX_MS;
}

/* NOW in ns, held below the largest time a TAT can carry. */
static inline uint64_t
now_ns(uint64_t now_ms)
{
	return (now_ms < AG_RATE_NOW_MAX_MS ? now_ms : AG_RATE_NOW_MAX_MS) * NS;
}

/* N / D, with 64-bit division when N fits (most calls). */
static inline u128
div128(u128 n, uint64_t d)
{
	if ((n >> 64) == 0) {
		return (uint64_t)n / d;
	}
	return n / d;
}

/* The debt in ticks of 1/L ms of a key with TAT at NOW_NS: rounded down. */
static inline u128
debt_ticks(uint64_t tat, uint64_t now, uint64_t limit)
{
	u128 d;

	if (tat <= now) {
		return 0;
	}
	d = (u128)(tat - now) * limit;
	if ((d >> 64) == 0) {
		return (uint64_t)d / NS;	/* by a constant: no division */
	}
	return d / NS;
}

/* DEBT ticks of 1/L ms in ns, rounded up (DEBT <= W * L: no overflow). */
static inline uint64_t
debt_ns(u128 debt, uint64_t limit)
{
	return (uint64_t)div128(debt * NS + limit - 1, limit);
}

/* Milliseconds until TAT at NOW (both ns), rounded up. */
static inline uint64_t
until_ms(uint64_t tat, uint64_t now)
{
	return tat > now ? (tat - now + NS - 1) / NS : 0;
}

void
ag_gcra(uint64_t *tat, const struct ag_rate_limit *lim, uint64_t cost,
    uint64_t now_ms, struct ag_rate_result *out)
{
	uint64_t now, limit, window;
	u128 debt, cap, need;

	memset(out, 0, sizeof(*out));
	if (!lim_ok(lim) || lim->limit == 0) {
		out->allowed = lim_ok(lim) && cost == 0;
		out->retry_ms = out->allowed ? 0 : AG_RATE_NEVER;
		return;
	}
	now = now_ns(now_ms), limit = lim->limit, window = lim->window_ms;
	debt = debt_ticks(*tat, now, limit);
	cap = (u128)window * limit;
	if (cost > limit) {
		out->retry_ms = AG_RATE_NEVER;
	} else if ((need = debt + (u128)cost * window) <= cap) {
		out->allowed = true;
		if (cost > 0) {
			*tat = now + debt_ns(need, limit);
			debt = need;
		}
	} else {
		/* Refused, so the debt is past NOW: it drains L a ms. */
		out->retry_ms = (uint64_t)div128(need - cap + limit - 1, limit);
	}
	out->remaining = debt >= cap ? 0 : (uint64_t)div128(cap - debt, window);
	out->reset_ms = until_ms(*tat, now);
}

void
ag_gcra_release(uint64_t *tat, const struct ag_rate_limit *lim,
    uint64_t cost, uint64_t now_ms)
{
	uint64_t now;
	u128 debt, give;

	if (!lim_ok(lim) || lim->limit == 0 || cost == 0) {
		return;
	}
	now = now_ns(now_ms);
	debt = debt_ticks(*tat, now, lim->limit);
	if (debt == 0) {
		return;		/* fresh already */
	}
	give = (u128)cost * lim->window_ms;
	*tat = debt > give ? now + debt_ns(debt - give, lim->limit) : now;
}

/* ---- the table: one stripe --------------------------------------------- */

/* KEY's hash under T's secret. */
static inline uint64_t
key_hash(const struct ag_rate_table *t, const void *key, size_t keylen)
{
	return siphash24(t->sipkey, key, keylen);
}

/* The stripe that holds keys of hash H. */
static inline struct rl_stripe *
stripe_of(struct ag_rate_table *t, uint64_t h)
{
	return &t->stripes[h >> RL_STRIPE_SHIFT];
}

/*
 * ST's entry for KEY (hash H), or NULL; ST locked.  A found entry moves
 * to the front of its chain: busy keys are then found without reading
 * the (cold) entries of idle keys that share their bucket.
 */
static struct rl_entry *
stripe_find(struct rl_stripe *st, uint64_t h, const void *key,
    size_t keylen)
{
	struct rl_entry **head, **link, *e;

	if (st->nbuckets == 0) {
		return NULL;
	}
	head = &st->buckets[h & (st->nbuckets - 1)];
	for (link = head; (e = *link) != NULL; link = &e->next) {
		if (e->hash == (uint32_t)h && e->keylen == keylen &&
		    (keylen == 0 || memcmp(e->key, key, keylen) == 0)) {
			if (link != head) {
				*link = e->next;
				e->next = *head;
				*head = e;
			}
			return e;
		}
	}
	return NULL;
}

/* Lower ST's bound of its entries' TATs to TAT; ST locked. */
static inline void
stripe_saw(struct rl_stripe *st, uint64_t tat)
{
	if (tat < atomic_load_explicit(&st->next_idle, memory_order_relaxed)) {
		atomic_store_explicit(&st->next_idle, tat,
		    memory_order_relaxed);
	}
}

/* Double ST's buckets (or make the first ones); false if out of memory. */
static bool
stripe_grow(struct rl_stripe *st)
{
	size_t nb = st->nbuckets == 0 ? RL_BUCKETS_MIN : st->nbuckets * 2;
	struct rl_entry **b, *e, *next;
	size_t i;

	if (nb < st->nbuckets || nb > SIZE_MAX / sizeof(*b)) {
		return false;
	}
	b = calloc(nb, sizeof(*b));
	if (b == NULL) {
		return false;
	}
	for (i = 0; i < st->nbuckets; i++) {
		for (e = st->buckets[i]; e != NULL; e = next) {
			next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(st->buckets);
	st->buckets = b;
	st->nbuckets = nb;
	return true;
}

/* Drop ST's entries fresh at NOW (ns); how many.  ST locked. */
static size_t
stripe_sweep(struct ag_rate_table *t, struct rl_stripe *st, uint64_t now)
{
	struct rl_entry **link, *e;
	uint64_t low = UINT64_MAX;
	size_t i, n = 0;

	if (atomic_load_explicit(&st->next_idle, memory_order_relaxed) > now) {
		return 0;
	}
	for (i = 0; i < st->nbuckets; i++) {
		for (link = &st->buckets[i]; (e = *link) != NULL;) {
			if (e->tat <= now) {
				*link = e->next;
				free(e);
				n++;
			} else {
				low = e->tat < low ? e->tat : low;
				link = &e->next;
			}
		}
	}
	st->count -= n;
	atomic_store_explicit(&st->next_idle, low, memory_order_relaxed);
	atomic_fetch_sub_explicit(&t->nkeys, n, memory_order_relaxed);
	return n;
}

/* ---- the table: room for keys ------------------------------------------ */

/* Count one more key unless T is full. */
static bool
slot_take(struct ag_rate_table *t)
{
	size_t n = atomic_load_explicit(&t->nkeys, memory_order_relaxed);

	do {
		if (n >= t->max_keys) {
			return false;
		}
	} while (!atomic_compare_exchange_weak_explicit(&t->nkeys, &n, n + 1,
	    memory_order_relaxed, memory_order_relaxed));
	return true;
}

/*
 * Count one more key, dropping idle keys to make room: ST's own first
 * (locked by the caller), then other stripes that are not busy.
 */
static bool
slot_make(struct ag_rate_table *t, struct rl_stripe *st, uint64_t now)
{
	size_t i, start = (size_t)(st - t->stripes);
	struct rl_stripe *o;

	if (slot_take(t)) {
		return true;
	}
	if (stripe_sweep(t, st, now) > 0 && slot_take(t)) {
		return true;
	}
	for (i = 1; i < RL_STRIPES; i++) {
		o = &t->stripes[(start + i) % RL_STRIPES];
		if (atomic_load_explicit(&o->next_idle,
		    memory_order_relaxed) > now ||
		    pthread_mutex_trylock(&o->mu) != 0) {
			continue;
		}
		(void)stripe_sweep(t, o, now);
		pthread_mutex_unlock(&o->mu);
		if (slot_take(t)) {
			return true;
		}
	}
	return false;
}

/*
 * Add KEY (hash H) with TAT to ST (locked) at NOW (ns): AG_OK with *OUT,
 * AG_NOTFOUND when the table is full of live keys, AG_NOMEM.
 */
static ag_status
stripe_add(struct ag_rate_table *t, struct rl_stripe *st, uint64_t h,
    const void *key, size_t keylen, uint64_t tat, uint64_t now,
    struct rl_entry **out)
{
	struct rl_entry *e;
	size_t slot;

	*out = NULL;
	if (!slot_make(t, st, now)) {
		return AG_NOTFOUND;
	}
	if (st->count >= st->nbuckets && !stripe_grow(st) &&
	    st->nbuckets == 0) {
		atomic_fetch_sub_explicit(&t->nkeys, 1, memory_order_relaxed);
		return AG_NOMEM;	/* a full chain is fine, none is not */
	}
	e = malloc(sizeof(*e) + keylen);
	if (e == NULL) {
		atomic_fetch_sub_explicit(&t->nkeys, 1, memory_order_relaxed);
		return AG_NOMEM;
	}
	e->tat = tat;
	e->hash = (uint32_t)h;
	e->keylen = (uint16_t)keylen;
	if (keylen > 0) {
		memcpy(e->key, key, keylen);
	}
	slot = h & (st->nbuckets - 1);
	e->next = st->buckets[slot];
	st->buckets[slot] = e;
	st->count++;
	stripe_saw(st, tat);
	*out = e;
	return AG_OK;
}

/* ---- the table: the interface ------------------------------------------- */

ag_status
ag_rate_table_new(size_t max_keys, struct ag_rate_table **out)
{
	struct ag_rate_table *t;
	void *p = NULL;
	size_t got = 0;
	ssize_t n;
	int i;

	*out = NULL;
	if (max_keys == 0) {
		return AG_INVALID;
	}
	if (posix_memalign(&p, RL_CACHE_LINE, sizeof(*t)) != 0) {
		return AG_NOMEM;
	}
	t = memset(p, 0, sizeof(*t));
	while (got < sizeof(t->sipkey)) {
		n = getrandom(t->sipkey + got, sizeof(t->sipkey) - got, 0);
		if (n < 0 && errno != EINTR) {
			free(t);
			return AG_TEMPFAIL;
		}
		got += n > 0 ? (size_t)n : 0;
	}
	t->max_keys = max_keys;
	atomic_init(&t->nkeys, 0);
	for (i = 0; i < RL_STRIPES; i++) {
		if (pthread_mutex_init(&t->stripes[i].mu, NULL) != 0) {
			while (--i >= 0) {
				pthread_mutex_destroy(&t->stripes[i].mu);
			}
			free(t);
			return AG_NOMEM;
		}
		atomic_init(&t->stripes[i].next_idle, UINT64_MAX);
	}
	*out = t;
	return AG_OK;
}

void
ag_rate_table_free(struct ag_rate_table *t)
{
	struct rl_entry *e, *next;
	struct rl_stripe *st;
	size_t i, j;

	if (t == NULL) {
		return;
	}
	for (i = 0; i < RL_STRIPES; i++) {
		st = &t->stripes[i];
		for (j = 0; j < st->nbuckets; j++) {
			for (e = st->buckets[j]; e != NULL; e = next) {
				next = e->next;
				free(e);
			}
		}
		free(st->buckets);
		pthread_mutex_destroy(&st->mu);
	}
	free(t);
}

/* True if T, KEY and KEYLEN can be looked up. */
static inline bool
key_ok(const struct ag_rate_table *t, const void *key, size_t keylen)
{
	return t != NULL && keylen <= AG_RATE_KEY_MAX &&
	    (key != NULL || keylen == 0);
}

/*
 * A new key: decide on a fresh TAT and keep it unless nothing was taken.
 * With no room the decision stands and is counted as "full".  ST locked.
 */
static ag_status
take_new(struct ag_rate_table *t, struct rl_stripe *st, uint64_t h,
    const void *key, size_t keylen, const struct ag_rate_limit *lim,
    uint64_t cost, uint64_t now_ms, struct ag_rate_result *out)
{
	struct rl_entry *e;
	uint64_t tat = 0, now = now_ns(now_ms);
	ag_status rc;

	ag_gcra(&tat, lim, cost, now_ms, out);
	if (tat <= now) {
		return AG_OK;	/* refused, or nothing taken: still fresh */
	}
	rc = stripe_add(t, st, h, key, keylen, tat, now, &e);
	if (rc == AG_NOTFOUND) {
		st->full++;
		out->uncounted = true;
		return AG_OK;
	}
	if (rc != AG_OK) {
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

ag_status
ag_rate_take(struct ag_rate_table *t, const void *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost, uint64_t now_ms,
    struct ag_rate_result *out)
{
	struct rl_stripe *st;
	struct rl_entry *e;
	ag_status rc = AG_OK;
	uint64_t h;

	if (out == NULL) {
		return AG_INVALID;
	}
	memset(out, 0, sizeof(*out));
	if (!key_ok(t, key, keylen) || !lim_ok(lim)) {
		return AG_INVALID;
	}
	h = key_hash(t, key, keylen);
	st = stripe_of(t, h);
	pthread_mutex_lock(&st->mu);
	e = stripe_find(st, h, key, keylen);
	if (e != NULL) {
		ag_gcra(&e->tat, lim, cost, now_ms, out);
	} else {
		rc = take_new(t, st, h, key, keylen, lim, cost, now_ms, out);
	}
	st->takes++;
	st->refused += !out->allowed;
	pthread_mutex_unlock(&st->mu);
	return rc;
}

ag_status
ag_rate_release(struct ag_rate_table *t, const void *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost, uint64_t now_ms)
{
	struct rl_stripe *st;
	struct rl_entry *e;
	uint64_t h;

	if (!key_ok(t, key, keylen) || !lim_ok(lim)) {
		return AG_INVALID;
	}
	h = key_hash(t, key, keylen);
	st = stripe_of(t, h);
	pthread_mutex_lock(&st->mu);
	e = stripe_find(st, h, key, keylen);
	if (e != NULL) {
		ag_gcra_release(&e->tat, lim, cost, now_ms);
		stripe_saw(st, e->tat);
	}
	pthread_mutex_unlock(&st->mu);
	return e != NULL ? AG_OK : AG_NOTFOUND;
}

size_t
ag_rate_expire(struct ag_rate_table *t, uint64_t now_ms)
{
	uint64_t now = now_ns(now_ms);
	struct rl_stripe *st;
	size_t i, n = 0;

	if (t == NULL) {
		return 0;
	}
	for (i = 0; i < RL_STRIPES; i++) {
		st = &t->stripes[i];
		if (atomic_load_explicit(&st->next_idle,
		    memory_order_relaxed) > now) {
			continue;
		}
		pthread_mutex_lock(&st->mu);
		n += stripe_sweep(t, st, now);
		pthread_mutex_unlock(&st->mu);
	}
	return n;
}

void
ag_rate_foreach(struct ag_rate_table *t,
    int (*cb)(void *arg, const void *key, size_t keylen, uint64_t tat),
    void *arg)
{
	struct rl_stripe *st;
	struct rl_entry *e;
	size_t i, j;
	int stop = 0;

	if (t == NULL || cb == NULL) {
		return;
	}
	for (i = 0; i < RL_STRIPES && !stop; i++) {
		st = &t->stripes[i];
		pthread_mutex_lock(&st->mu);
		for (j = 0; j < st->nbuckets && !stop; j++) {
			for (e = st->buckets[j]; e != NULL && !stop;
			    e = e->next) {
				stop = cb(arg, e->key, e->keylen, e->tat);
			}
		}
		pthread_mutex_unlock(&st->mu);
	}
}

ag_status
ag_rate_restore(struct ag_rate_table *t, const void *key, size_t keylen,
    uint64_t tat)
{
	struct rl_stripe *st;
	struct rl_entry *e;
	ag_status rc = AG_OK;
	uint64_t h;

	if (!key_ok(t, key, keylen)) {
		return AG_INVALID;
	}
	h = key_hash(t, key, keylen);
	st = stripe_of(t, h);
	pthread_mutex_lock(&st->mu);
	e = stripe_find(st, h, key, keylen);
	if (e != NULL) {
		e->tat = tat;
		stripe_saw(st, tat);
	} else {
		/* No clock here: at time 0 only keys with TAT 0 are idle. */
		rc = stripe_add(t, st, h, key, keylen, tat, 0, &e);
		rc = rc == AG_NOTFOUND ? AG_NOMEM : rc;
	}
	pthread_mutex_unlock(&st->mu);
	return rc;
}

void
ag_rate_table_stats(struct ag_rate_table *t, struct ag_rate_stats *out)
{
	struct rl_stripe *st;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (t == NULL) {
		return;
	}
	for (i = 0; i < RL_STRIPES; i++) {
		st = &t->stripes[i];
		pthread_mutex_lock(&st->mu);
		out->takes += st->takes;
		out->refused += st->refused;
		out->full += st->full;
		pthread_mutex_unlock(&st->mu);
	}
	out->keys = atomic_load_explicit(&t->nkeys, memory_order_relaxed);
}
