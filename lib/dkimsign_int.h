/*
 * dkimsign_int.h - what lib/dkimsign.c (the signatures) and lib/dkimkey.c
 * (the keys) share.  Private to lib/.
 */
#ifndef AG_DKIMSIGN_INT_H
#define AG_DKIMSIGN_INT_H

#include <stddef.h>

#include <openssl/evp.h>

#include "dkimsign.h"

#define AG_SIGN_ED25519_LEN 32		/* RFC 8032 5.1.5: public key bytes */

/* The parsed key, for signing (read only; EVP_PKEY_up_ref to keep it). */
EVP_PKEY *ag_sign_key_pkey(const struct ag_sign_key *k);

/* Write an error text into ERR, which may be NULL. */
void ag_sign_seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* S made printable ('?' for other bytes) into OUT, cut to OUTSZ - 1. */
const char *ag_sign_printable(char *out, size_t outsz, const char *s);

/* Does LIT occur in the LEN bytes at S (which may hold NULs)? */
const char *ag_sign_mem_find(const char *s, size_t len, const char *lit);

#endif
