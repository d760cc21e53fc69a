/*
 * dkimpkey.c - decoded DKIM public keys, kept for the next message.
 *
 * libopendkim decodes a signer's public key (the DER in p=) with
 * d2i_PUBKEY_bio() for every signature it verifies.  In OpenSSL 3 that
 * call looks up decoders through the provider store on every call: about
 * 0.7 ms of CPU, more than a third of all the daemon's work for a signed
 * message, and the RSA verification itself costs 20 us.  Mail comes from
 * few signers, so this file defines d2i_PUBKEY_bio() for the process:
 * the dynamic linker binds libopendkim's call to this definition, ahead of
 * libcrypto's.  A key already decoded is returned again with one more
 * reference (the caller frees it with EVP_PKEY_free as before); anything
 * else is decoded with d2i_PUBKEY() (a different entry point, so no
 * recursion) and remembered.  Ed25519 keys (RFC 8463: p= holds the 32
 * raw bytes) come through EVP_PKEY_new_raw_public_key(), which is also
 * defined here and costs as much in OpenSSL 3; they are kept the same way,
 * under the raw bytes with a tag byte in front (DER always starts 0x30).
 *
 * The cache is keyed by the DER bytes themselves: the same bytes are the
 * same key, so an entry can never be stale, and a key that changes in DNS
 * is simply other bytes.  It is bounded: CACHE_SLOTS entries, one per
 * slot (a new key replaces the one in its slot), keys over CACHE_DER_MAX
 * bytes are decoded and not kept.  An EVP_PKEY is only read once decoded
 * (OpenSSL lets threads share it for verification; the RSA form that
 * libopendkim asks for is made and kept under OpenSSL's own lock).
 */
#include "autoconf.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "dkim.h"

#define CACHE_SLOTS 256
#define CACHE_DER_MAX 4096	/* an RSA-4096 SubjectPublicKeyInfo is 550 */
#define READ_MAX (1024 * 1024)	/* what is read from a BIO that is not memory */
#define RAW_TAG 0x01		/* cache key prefix of a raw Ed25519 key */
#define RAW_MAX 64

struct slot {
	unsigned char *der;
	size_t len;
	EVP_PKEY *pkey;
};

static struct slot cache[CACHE_SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long hits, misses;

/* FNV-1a: the bytes are a public key someone published; the worst a
 * chosen key can do is share a slot with another and be decoded again. */
static size_t
slot_of(const unsigned char *p, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h = (h ^ p[i]) * 16777619u;
	}
	return h % CACHE_SLOTS;
}

static EVP_PKEY *
lookup(const unsigned char *der, size_t len, size_t s)
{
	EVP_PKEY *k = NULL;

	pthread_mutex_lock(&cache_lock);
	if (cache[s].pkey != NULL && cache[s].len == len &&
	    memcmp(cache[s].der, der, len) == 0 &&
	    EVP_PKEY_up_ref(cache[s].pkey) == 1) {
		k = cache[s].pkey;
		hits++;
	} else {
		misses++;
	}
	pthread_mutex_unlock(&cache_lock);
	return k;
}

static void
remember(const unsigned char *der, size_t len, size_t s, EVP_PKEY *k)
{
	unsigned char *copy;
	struct slot old;

	if (len > CACHE_DER_MAX || (copy = malloc(len)) == NULL) {
		return;
	}
	if (EVP_PKEY_up_ref(k) != 1) {
		free(copy);
		return;
	}
	memcpy(copy, der, len);
	pthread_mutex_lock(&cache_lock);
	old = cache[s];
	cache[s].der = copy;
	cache[s].len = len;
	cache[s].pkey = k;
	pthread_mutex_unlock(&cache_lock);
	free(old.der);
	EVP_PKEY_free(old.pkey);
}

static EVP_PKEY *
decode(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	size_t s = slot_of(der, len);
	EVP_PKEY *k;

	if ((k = lookup(der, len, s)) != NULL) {
		return k;
	}
	if ((k = d2i_PUBKEY(NULL, &p, (long)len)) != NULL) {
		remember(der, len, s, k);
	}
	return k;
}

/* Everything left in BP (a BIO that is not a memory BIO), or NULL. */
static unsigned char *
read_all(BIO *bp, size_t *lenp)
{
	unsigned char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	int n;

	for (;;) {
		if (len == cap) {
			if (cap >= READ_MAX ||
			    (nb = realloc(buf, cap = cap ? cap * 2 : 4096)) == NULL) {
				free(buf);
				return NULL;
			}
			buf = nb;
		}
		n = BIO_read(bp, buf + len, (int)(cap - len));
		if (n <= 0) {
			break;
		}
		len += (size_t)n;
	}
	*lenp = len;
	return buf;
}

EVP_PKEY *
d2i_PUBKEY_bio(BIO *bp, EVP_PKEY **a)
{
	unsigned char *der, *copy = NULL;
	char sink[512];
	size_t len;
	long n;
	EVP_PKEY *k;

	if (bp == NULL) {
		return NULL;
	}
	if (BIO_method_type(bp) == BIO_TYPE_MEM) {
		/* the bytes in place; then consumed, as by a decoder */
		n = BIO_get_mem_data(bp, (char **)&der);
		if (n <= 0) {
			return NULL;
		}
		len = (size_t)n;
	} else if ((der = copy = read_all(bp, &len)) == NULL) {
		return NULL;
	}
	k = decode(der, len);
	if (copy == NULL) {
		while (BIO_read(bp, sink, sizeof(sink)) > 0) {
			continue;
		}
	}
	free(copy);
	if (k != NULL && a != NULL) {
		EVP_PKEY_free(*a);
		*a = k;
	}
	return k;
}

/*
 * A raw public key.  Ed25519 without an engine (libopendkim's call) is
 * looked up first; anything else is made by the _ex form, by the name of
 * TYPE (authgate loads no engines, so E is not used).
 */
EVP_PKEY *
EVP_PKEY_new_raw_public_key(int type, ENGINE *e, const unsigned char *pub,
    size_t len)
{
	unsigned char tagged[1 + RAW_MAX];
	const char *name = OBJ_nid2sn(type);
	EVP_PKEY *k;
	size_t s;

	(void)e;
	if (name == NULL) {
		return NULL;
	}
	if (type != EVP_PKEY_ED25519 || pub == NULL || len > RAW_MAX) {
		return EVP_PKEY_new_raw_public_key_ex(NULL, name, NULL, pub, len);
	}
	tagged[0] = RAW_TAG;
	memcpy(tagged + 1, pub, len);
	s = slot_of(tagged, len + 1);
	if ((k = lookup(tagged, len + 1, s)) != NULL) {
		return k;
	}
	k = EVP_PKEY_new_raw_public_key_ex(NULL, name, NULL, pub, len);
	if (k != NULL) {
		remember(tagged, len + 1, s, k);
	}
	return k;
}

void
ag_dkim_pkey_stats(unsigned long *hitp, unsigned long *missp)
{
	pthread_mutex_lock(&cache_lock);
	*hitp = hits;
	*missp = misses;
	pthread_mutex_unlock(&cache_lock);
}
