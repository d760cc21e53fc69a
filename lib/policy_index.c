/*
 * policy_index.c - the rules of a snapshot indexed by the values of
 * their conditions (see policy_index.h).
 *
 * A rule matches only when, for every field it has conditions on, one
 * of that field's values holds (policy.h).  So any one field a rule has
 * conditions on can stand for the rule: index the rule under every value
 * of that field, and a transaction that matches the rule finds it under
 * the key its facts give for that field.  Each rule is indexed under one
 * field, the one whose keys are rarest among all rules weighted by how
 * many transactions a key covers (a /8 more than a /24, ".example.com"
 * more than "example.com").  Rules with no indexable condition (none at
 * all, or only trusted= and authenticated=) are tried for every
 * transaction; disabled rules are left out, they never match.
 *
 * The keys a transaction's facts give:
 *   client         the address masked to each prefix length the index
 *                  holds (per family; IPv4-mapped IPv6 is already IPv4,
 *                  addr.h), compared as family, length and bytes;
 *   helo, sender-domain, rcpt-domain
 *                  the name itself ("example.com" patterns) and each
 *                  suffix from a dot, past the first byte (".example.com"
 *                  patterns), compared ASCII case-insensitively as
 *                  ag_domain_match() does;
 *   sender, rcpt   "local@domain", or "<>" for the null sender, folded
 *                  with tolower() as strcasecmp() does, in the locale in
 *                  force when the index is built (authgate never sets
 *                  one: ASCII);
 *   sasl-user      the name, exactly.
 * Candidates are a superset: each goes through ag_rule_matches(), which
 * alone decides, so keys only need to be found, never to be exact.
 *
 * The table: one array of entries sorted by bucket then rule, and an
 * array of bucket offsets (no pointers to chase, nothing to lock).  The
 * hash is FNV-1a over the key's bytes from last to first (so that one
 * pass over a domain gives the hash of every suffix), from a random
 * basis per snapshot, finished with a 64-bit mixer.  Hash flooding: the
 * table is fixed when built, and only the administrator's values are in
 * it; a key from the network lands in one bucket and costs at most that
 * bucket's length, which the attacker cannot lengthen.  The random basis
 * keeps lists imported from elsewhere (domains of a feed) from piling
 * into one bucket by design.  A value many rules share (a thousand rules
 * on one sender domain) makes every one of them a candidate when that
 * key comes: that is the rules' own cost, not the index's.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "policy_index.h"

#define FNV_PRIME 0x100000001b3ULL
#define INSERTION_MAX 32	/* sort fewer candidates than this in place */

struct pent {
	uint64_t h;
	const void *key;	/* a condition's value, or its struct ag_cidr */
	uint32_t rule;
	uint16_t klen;		/* bytes of a text key */
	uint8_t kind;		/* enum ag_field */
};

struct ag_pindex {
	uint64_t seed;
	size_t mask;		/* buckets - 1 */
	uint32_t *start;	/* mask + 2 offsets into ent */
	struct pent *ent;
	size_t nent;
	uint32_t *always;	/* rule indices, ascending */
	size_t nalways;
	size_t maxklen;		/* longest text key */
	uint8_t len4[33], len6[129];	/* prefix lengths held, longest first */
	unsigned n4, n6;
	unsigned char lower[256];	/* tolower() in the locale at build */
	bool has[AG_F_COUNT];		/* any key of that field */
	bool exact[AG_F_COUNT];		/* a domain pattern without a dot first */
	bool suffix[AG_F_COUNT];	/* a ".suffix" pattern */
	size_t by_field[AG_F_COUNT];
};

/* Build-time: an entry, how many rules share its key, and its weight. */
struct bent {
	struct pent e;
	uint32_t count;
	uint32_t weight;
	bool chosen;
};

/* ---- hashing ------------------------------------------------------------- */

/* The hash state before the first byte of a key of KIND. */
static inline uint64_t
h_start(const struct ag_pindex *x, unsigned kind)
{
	return (x->seed ^ kind) * FNV_PRIME;
}

/* One FNV-1a step. */
static inline uint64_t
h_byte(uint64_t h, unsigned char c)
{
	return (h ^ c) * FNV_PRIME;
}

/* MurmurHash3's finalizer: every input bit moves the bucket bits. */
static inline uint64_t
h_final(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* A-Z to a-z, nothing else (as ag_domain_match() compares). */
static inline unsigned char
ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/*
 * How the text of KIND compares: as ag_rule_matches() does.  Addresses
 * fold as strcasecmp() does, by the locale's tolower(), taken into a
 * table when the index is built (a call per byte costs more than the
 * rest of a lookup).
 */
static inline unsigned char
fold(const struct ag_pindex *x, unsigned kind, unsigned char c)
{
	switch (kind) {
	case AG_F_SENDER:
	case AG_F_RCPT:
		return x->lower[c];
	case AG_F_SASL_USER:
		return c;
	default:
		return ascii_lower(c);			/* as ag_domain_match() */
	}
}

/* Hash of LEN bytes at S, last byte first. */
static uint64_t
hash_text(const struct ag_pindex *x, unsigned kind, const char *s,
    size_t len)
{
	uint64_t h = h_start(x, kind);

	while (len-- > 0) {
		h = h_byte(h, fold(x, kind, (unsigned char)s[len]));
	}
	return h_final(h);
}

/* Bytes of address in FAMILY; 0 for none. */
static size_t
ip_bytes(int family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

/* Hash of a network: its length in bytes, prefix and address bytes. */
static uint64_t
hash_cidr(const struct ag_pindex *x, const struct ag_cidr *c)
{
	uint64_t h = h_start(x, AG_F_CLIENT);
	size_t i, n = ip_bytes(c->net.family);

	h = h_byte(h, (unsigned char)n);
	h = h_byte(h, (unsigned char)c->prefix);
	for (i = 0; i < n; i++) {
		h = h_byte(h, c->net.addr[i]);
	}
	return h_final(h);
}

/* Does entry E hold the key KEY (LEN bytes of text, or a cidr)? */
static bool
key_equal(const struct ag_pindex *x, const struct pent *e, const void *key,
    size_t len)
{
	const struct ag_cidr *a, *b;
	const unsigned char *s, *t;
	size_t i;

	if (e->kind == AG_F_CLIENT) {
		a = e->key;
		b = key;
		return a->net.family == b->net.family &&
		    a->prefix == b->prefix && memcmp(a->net.addr, b->net.addr,
		    ip_bytes(a->net.family)) == 0;
	}
	if (e->klen != len) {
		return false;
	}
	s = e->key;
	t = key;
	for (i = 0; i < len; i++) {
		if (fold(x, e->kind, s[i]) != fold(x, e->kind, t[i])) {
			return false;
		}
	}
	return true;
}

/* ---- building ------------------------------------------------------------ */

/* Fields whose values can be looked up; trusted/authenticated cannot. */
static bool
indexable(enum ag_field f)
{
	return f != AG_F_TRUSTED && f != AG_F_AUTHENTICATED &&
	    (unsigned)f < AG_F_COUNT;
}

/*
 * Roughly how many transactions a value covers, relative to one address:
 * rules are indexed under the field where count * weight is least.
 */
static uint32_t
weight(const struct ag_match *m)
{
	unsigned host;

	switch (m->field) {
	case AG_F_CLIENT:
		/* an IPv6 /64 is one host, as an IPv4 /32 */
		host = m->cidr.net.family == AF_INET ? 32 - m->cidr.prefix :
		    m->cidr.prefix >= 64 ? 0 : 64 - m->cidr.prefix;
		return host <= 8 ? 1 : host <= 16 ? 4 : host <= 24 ? 16 : 64;
	case AG_F_HELO:
	case AG_F_SENDER_DOMAIN:
	case AG_F_RCPT_DOMAIN:
		return m->value[0] == '.' ? 8 : 2;
	default:
		return 1;
	}
}

/* Order by key (hash, then field), so that equal keys are adjacent. */
static int
bent_by_key(const void *a, const void *b)
{
	const struct bent *x = a, *y = b;

	if (x->e.h != y->e.h) {
		return x->e.h < y->e.h ? -1 : 1;
	}
	return (int)x->e.kind - (int)y->e.kind;
}

/* Order by rule, then field. */
static int
bent_by_rule(const void *a, const void *b)
{
	const struct bent *x = a, *y = b;

	if (x->e.rule != y->e.rule) {
		return x->e.rule < y->e.rule ? -1 : 1;
	}
	return (int)x->e.kind - (int)y->e.kind;
}

/* One entry per indexable condition of an enabled rule. */
static ag_status
collect(struct ag_pindex *x, const struct ag_rule *rules, size_t n,
    struct bent **out, size_t *nout)
{
	struct bent *v;
	size_t i, j, k = 0, total = 0;

	for (i = 0; i < n; i++) {
		for (j = 0; rules[i].enabled && j < rules[i].nmatch; j++) {
			total += indexable(rules[i].match[j].field);
		}
	}
	*out = v = calloc(total ? total : 1, sizeof(*v));
	if (v == NULL) {
		return AG_NOMEM;
	}
	for (i = 0; i < n; i++) {
		for (j = 0; rules[i].enabled && j < rules[i].nmatch; j++) {
			const struct ag_match *m = &rules[i].match[j];
			size_t len;

			if (!indexable(m->field)) {
				continue;
			}
			v[k].e.rule = (uint32_t)i;
			v[k].e.kind = (uint8_t)m->field;
			v[k].weight = weight(m);
			if (m->field == AG_F_CLIENT) {
				v[k].e.key = &m->cidr;
				v[k].e.h = hash_cidr(x, &m->cidr);
			} else {
				len = strlen(m->value);
				v[k].e.key = m->value;
				v[k].e.klen = (uint16_t)len;
				v[k].e.h = hash_text(x, m->field, m->value, len);
			}
			k++;
		}
	}
	*nout = k;
	return AG_OK;
}

/* How many entries share each entry's key (equal hashes taken as equal). */
static void
count_keys(struct bent *v, size_t n)
{
	size_t i = 0, j, k;

	qsort(v, n, sizeof(*v), bent_by_key);
	while (i < n) {
		for (j = i + 1; j < n && bent_by_key(&v[i], &v[j]) == 0; j++) {
			;
		}
		for (k = i; k < j; k++) {
			v[k].count = (uint32_t)(j - i);
		}
		i = j;
	}
}

/*
 * For each rule, mark the entries of its cheapest field; list the
 * enabled rules that have none in X->always.
 */
static ag_status
choose(struct ag_pindex *x, const struct ag_rule *rules, size_t n,
    struct bent *v, size_t nv, size_t *nchosen)
{
	uint64_t cost[AG_F_COUNT];
	size_t i, r, j, k;
	unsigned f, best;

	x->always = calloc(n ? n : 1, sizeof(*x->always));
	if (x->always == NULL) {
		return AG_NOMEM;
	}
	qsort(v, nv, sizeof(*v), bent_by_rule);
	*nchosen = 0;
	for (r = 0, i = 0; r < n; r++) {
		if (!rules[r].enabled) {
			continue;
		}
		if (i == nv || v[i].e.rule != r) {
			x->always[x->nalways++] = (uint32_t)r;
			continue;
		}
		memset(cost, 0, sizeof(cost));
		for (j = i; j < nv && v[j].e.rule == r; j++) {
			cost[v[j].e.kind] += (uint64_t)v[j].count * v[j].weight;
		}
		best = v[i].e.kind;
		for (f = 0; f < AG_F_COUNT; f++) {
			if (cost[f] != 0 && cost[f] < cost[best]) {
				best = f;
			}
		}
		for (k = i; k < j; k++) {
			v[k].chosen = v[k].e.kind == best;
			*nchosen += v[k].chosen;
		}
		x->by_field[best]++;
		i = j;
	}
	if (x->nalways < n) {	/* give back what the worst case took */
		uint32_t *a = realloc(x->always, (x->nalways ? x->nalways : 1) *
		    sizeof(*a));

		x->always = a != NULL ? a : x->always;
	}
	return AG_OK;
}

/* What the lookups need to know: which prefix lengths and shapes occur. */
static void
note_shapes(struct ag_pindex *x)
{
	bool p4[33] = { false }, p6[129] = { false };
	const struct ag_cidr *c;
	const char *s;
	size_t i;
	int l;

	for (i = 0; i < x->nent; i++) {
		const struct pent *e = &x->ent[i];

		x->has[e->kind] = true;
		if (e->kind == AG_F_CLIENT) {
			c = e->key;
			if (c->net.family == AF_INET && c->prefix <= 32) {
				p4[c->prefix] = true;
			} else if (c->net.family == AF_INET6 && c->prefix <= 128) {
				p6[c->prefix] = true;
			}
			continue;
		}
		if (e->klen > x->maxklen) {
			x->maxklen = e->klen;
		}
		s = e->key;
		if (s[0] == '.') {
			x->suffix[e->kind] = true;
		} else {
			x->exact[e->kind] = true;
		}
	}
	for (l = 32; l >= 0; l--) {
		if (p4[l]) {
			x->len4[x->n4++] = (uint8_t)l;
		}
	}
	for (l = 128; l >= 0; l--) {
		if (p6[l]) {
			x->len6[x->n6++] = (uint8_t)l;
		}
	}
}

/*
 * The chosen entries as the final table: by bucket, then rule.  V is in
 * rule order (choose()), so placing entries in that order into their
 * buckets keeps each bucket in rule order.
 */
static ag_status
lay_out(struct ag_pindex *x, const struct bent *v, size_t nv, size_t nchosen)
{
	uint32_t *cur;
	size_t i, b, nb = 1;

	while (nb < nchosen) {
		nb <<= 1;
	}
	x->mask = nb - 1;
	x->ent = calloc(nchosen ? nchosen : 1, sizeof(*x->ent));
	x->start = calloc(nb + 1, sizeof(*x->start));
	cur = calloc(nb, sizeof(*cur));
	if (x->ent == NULL || x->start == NULL || cur == NULL) {
		free(cur);
		return AG_NOMEM;
	}
	for (i = 0; i < nv; i++) {
		if (v[i].chosen) {
			x->start[(v[i].e.h & x->mask) + 1]++;
		}
	}
	for (b = 0; b < nb; b++) {
		x->start[b + 1] += x->start[b];
		cur[b] = x->start[b];
	}
	for (i = 0; i < nv; i++) {
		if (v[i].chosen) {
			x->ent[cur[v[i].e.h & x->mask]++] = v[i].e;
		}
	}
	x->nent = nchosen;
	free(cur);
	note_shapes(x);
	return AG_OK;
}

/* A seed nobody outside can guess; the clock if there is no entropy yet. */
static uint64_t
new_seed(const void *salt)
{
	struct timespec ts;
	uint64_t s = 0;

	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) == (ssize_t)sizeof(s)) {
		return s;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return h_final((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
	    (uint64_t)(uintptr_t)salt);
}

/* Build the index of RULES (see policy_index.h). */
ag_status
ag_pindex_build(const struct ag_rule *rules, size_t n, struct ag_pindex **out)
{
	struct ag_pindex *x;
	struct bent *v = NULL;
	size_t nv = 0, nchosen = 0, i;
	ag_status st;

	*out = NULL;
	if (n >= UINT32_MAX) {
		return AG_INVALID;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		return AG_NOMEM;
	}
	x->seed = new_seed(x);
	for (i = 0; i < 256; i++) {
		x->lower[i] = (unsigned char)tolower((int)i);
	}
	st = collect(x, rules, n, &v, &nv);
	if (st == AG_OK) {
		count_keys(v, nv);
		st = choose(x, rules, n, v, nv, &nchosen);
	}
	if (st == AG_OK) {
		st = lay_out(x, v, nv, nchosen);
	}
	free(v);
	if (st != AG_OK) {
		ag_pindex_free(x);
		return st;
	}
	*out = x;
	return AG_OK;
}

/* Free an index; NULL is fine. */
void
ag_pindex_free(struct ag_pindex *x)
{
	if (x == NULL) {
		return;
	}
	free(x->start);
	free(x->ent);
	free(x->always);
	free(x);
}

/* ---- looking up ---------------------------------------------------------- */

/* Add rule R; past the buffer grow on the heap, or fall back to a scan. */
static void
push(struct ag_pcand *c, uint32_t r)
{
	uint32_t *v;

	if (c->scan) {
		return;
	}
	if (c->n == c->cap) {
		if (c->cap > SIZE_MAX / 2 / sizeof(*v)) {
			c->scan = true;
			return;
		}
		v = c->v == c->buf ? malloc(c->cap * 2 * sizeof(*v)) :
		    realloc(c->v, c->cap * 2 * sizeof(*v));
		if (v == NULL) {
			c->scan = true;	/* slower, still right */
			return;
		}
		if (c->v == c->buf) {
			memcpy(v, c->buf, c->n * sizeof(*v));
		}
		c->v = v;
		c->cap *= 2;
	}
	c->v[c->n++] = r;
}

/* Every rule filed under KEY (hash H) of KIND. */
static void
probe(const struct ag_pindex *x, struct ag_pcand *c, unsigned kind,
    uint64_t h, const void *key, size_t len)
{
	size_t b = h & x->mask, j;

	for (j = x->start[b]; j < x->start[b + 1]; j++) {
		const struct pent *e = &x->ent[j];

		if (e->h == h && e->kind == kind && key_equal(x, e, key, len)) {
			push(c, e->rule);
		}
	}
}

/* A domain D: the name, and each suffix from a dot (not the first byte). */
static void
probe_domain(const struct ag_pindex *x, struct ag_pcand *c, unsigned kind,
    const char *d)
{
	uint64_t h = h_start(x, kind);
	size_t len, i;

	if (d == NULL || (!x->exact[kind] && !x->suffix[kind])) {
		return;
	}
	len = strlen(d);
	for (i = len; i-- > 0;) {
		if (len - i > x->maxklen) {
			return;		/* longer than any key */
		}
		h = h_byte(h, fold(x, kind, (unsigned char)d[i]));
		if (d[i] == '.' && i > 0 && x->suffix[kind]) {
			probe(x, c, kind, h_final(h), d + i, len - i);
		}
	}
	if (len > 0 && x->exact[kind]) {
		probe(x, c, kind, h_final(h), d, len);
	}
}

/* An address as "local@domain" ("<>" for the null sender). */
static void
probe_address(const struct ag_pindex *x, struct ag_pcand *c, unsigned kind,
    const struct ag_mailaddr *a)
{
	char key[sizeof(a->local) + sizeof(a->domain)];
	size_t ll, dl;

	if (!x->has[kind]) {
		return;
	}
	if (a->is_null) {
		probe(x, c, kind, hash_text(x, kind, "<>", 2), "<>", 2);
		return;
	}
	ll = strnlen(a->local, sizeof(a->local) - 1);
	dl = strnlen(a->domain, sizeof(a->domain) - 1);
	memcpy(key, a->local, ll);
	key[ll] = '@';
	memcpy(key + ll + 1, a->domain, dl);
	probe(x, c, kind, hash_text(x, kind, key, ll + 1 + dl), key,
	    ll + 1 + dl);
}

/* The client address under each prefix length held for its family. */
static void
probe_client(const struct ag_pindex *x, struct ag_pcand *c,
    const struct ag_ip *ip)
{
	const uint8_t *lens = ip->family == AF_INET ? x->len4 : x->len6;
	unsigned n = ip->family == AF_INET ? x->n4 : x->n6, i, l;
	size_t bytes = ip_bytes(ip->family);
	struct ag_cidr k;

	if (bytes == 0 || n == 0) {
		return;
	}
	memset(&k, 0, sizeof(k));
	k.net.family = ip->family;
	for (i = 0; i < n; i++) {
		l = lens[i];
		memcpy(k.net.addr, ip->addr, bytes);
		if (l / 8 < bytes) {
			k.net.addr[l / 8] &= (uint8_t)(0xff00u >> (l % 8));
			memset(k.net.addr + l / 8 + 1, 0, bytes - l / 8 - 1);
		}
		k.prefix = l;
		probe(x, c, AG_F_CLIENT, hash_cidr(x, &k), &k, 0);
	}
}

/* qsort order of rule indices. */
static int
u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort the candidates and drop repeats (a rule under several keys). */
static void
sort_unique(struct ag_pcand *c)
{
	size_t i, j, n = c->n;
	uint32_t t;

	if (n < INSERTION_MAX) {
		for (i = 1; i < n; i++) {
			t = c->v[i];
			for (j = i; j > 0 && c->v[j - 1] > t; j--) {
				c->v[j] = c->v[j - 1];
			}
			c->v[j] = t;
		}
	} else {
		qsort(c->v, n, sizeof(*c->v), u32_cmp);
	}
	for (i = j = 0; i < n; i++) {
		if (j == 0 || c->v[j - 1] != c->v[i]) {
			c->v[j++] = c->v[i];
		}
	}
	c->n = j;
}

/* Probe every key the facts give; sorted, unique candidates in C. */
void
ag_pcand_gather(const struct ag_pindex *x, size_t nrules,
    const struct ag_facts *f, struct ag_pcand *c)
{
	c->v = c->buf;
	c->n = c->i = c->ia = c->next = 0;
	c->cap = AG_PCAND_STACK;
	c->always = NULL;
	c->nalways = 0;
	c->nrules = nrules;
	c->scan = x == NULL || f == NULL;
	if (c->scan) {
		return;
	}
	c->always = x->always;
	c->nalways = x->nalways;
	if (f->client != NULL) {
		probe_client(x, c, f->client);
	}
	if (f->helo != NULL) {
		probe_domain(x, c, AG_F_HELO, f->helo);
	}
	if (f->sender != NULL) {
		probe_address(x, c, AG_F_SENDER, f->sender);
		if (!f->sender->is_null) {
			probe_domain(x, c, AG_F_SENDER_DOMAIN, f->sender->domain);
		}
	}
	if (f->sasl_user != NULL && x->has[AG_F_SASL_USER]) {
		probe(x, c, AG_F_SASL_USER, hash_text(x, AG_F_SASL_USER,
		    f->sasl_user, strlen(f->sasl_user)), f->sasl_user,
		    strlen(f->sasl_user));
	}
	if (f->rcpt != NULL && !f->rcpt->is_null) {
		probe_address(x, c, AG_F_RCPT, f->rcpt);
		probe_domain(x, c, AG_F_RCPT_DOMAIN, f->rcpt->domain);
	}
	if (!c->scan) {
		sort_unique(c);
	}
}

/* Merge the indexed candidates with the always-tried rules, in order. */
bool
ag_pcand_next(struct ag_pcand *c, size_t *i)
{
	bool hv, ha;

	if (c->scan) {
		if (c->next < c->nrules) {
			*i = c->next++;
			return true;
		}
		return false;
	}
	hv = c->i < c->n;
	ha = c->ia < c->nalways;
	if (hv && (!ha || c->v[c->i] < c->always[c->ia])) {
		*i = c->v[c->i++];
	} else if (ha) {
		/* an always-tried rule has no entries: never in both lists */
		*i = c->always[c->ia++];
	} else {
		return false;
	}
	return true;
}

/* Free a candidate buffer that grew onto the heap. */
void
ag_pcand_done(struct ag_pcand *c)
{
	if (c->v != c->buf) {
		free(c->v);
	}
	c->v = c->buf;
	c->n = 0;
}

/* Counts and sizes for tests and benchmarks. */
void
ag_pindex_stats(const struct ag_pindex *x, struct ag_pindex_stats *s)
{
	size_t b, len;

	memset(s, 0, sizeof(*s));
	if (x == NULL) {
		return;
	}
	s->entries = x->nent;
	s->buckets = x->mask + 1;
	s->always = x->nalways;
	for (b = 0; b <= x->mask; b++) {
		len = x->start[b + 1] - x->start[b];
		if (len > s->longest) {
			s->longest = len;
		}
	}
	s->bytes = sizeof(*x) + x->nent * sizeof(*x->ent) +
	    (x->mask + 2) * sizeof(*x->start) + x->nalways * sizeof(*x->always);
	memcpy(s->by_field, x->by_field, sizeof(s->by_field));
}
