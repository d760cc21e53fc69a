/*
 * signtable.h - the DKIM signing table: which From domains are signed
 * with which keys (table sign_keys in SQLite, managed with authgatectl
 * sign add|list|del).
 *
 * An entry has a match PATTERN for the From domain: the domain itself
 * ("example.com"), the domain and its subdomains (".example.com"), or
 * every domain ("*"); the signing domain d=, the selector, the
 * algorithm, the key file and the signature's settings.  For a From
 * domain the most specific pattern that matches wins (exact, then the
 * longest ".suffix", then "*"), and every enabled entry with that pattern
 * signs: several keys give several signatures (RSA and Ed25519 at once).
 *
 * Keys are read when the table is loaded (at start and whenever the
 * table changes: a rollover is a new snapshot, atomic for the messages
 * that follow), never per message.  An entry whose key cannot be loaded
 * keeps its error: mail it should sign gets On-SignError, never a
 * signature with a different or half-written key.
 *
 * A loaded table is immutable and thread-safe to read.
 */
#ifndef AG_SIGNTABLE_H
#define AG_SIGNTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "dkimsign.h"
#include "status.h"

#define AG_SIGN_PER_MESSAGE_MAX 4	/* signatures one message may get */
#define AG_SIGN_HEADERS_MAX 800	/* bytes of a custom h= list (dkimsign.c
					 * takes up to 1,000) */

struct ag_sign_entry {
	int64_t id;
	char pattern[AG_ADDR_DOMAIN_MAX + 2];	/* "example.com", ".x", "*" */
	char domain[AG_ADDR_DOMAIN_MAX + 1];	/* d= */
	char selector[64];
	enum ag_sign_alg alg;
	char *key_file;
	bool header_simple, body_simple;
	char *headers;		/* colon-separated h=, or NULL: the default */
	unsigned expire_s;	/* 0: no x= */
	bool enabled;
	struct ag_sign_key *key;	/* NULL: not loaded (see error) */
	char error[256];		/* why the key is not loaded, or "" */
};

struct ag_signtable;

/* Build a table from N entries (taken over, also on failure), loading
 * each enabled entry's key when LOAD_KEYS (the daemon; authgatectl
 * listing does not).  AG_NOMEM only: key errors stay in the entries. */
ag_status ag_signtable_new(struct ag_sign_entry *entries, size_t n,
    bool load_keys, struct ag_signtable **out);
void ag_signtable_free(struct ag_signtable *t);	/* NULL is fine */

size_t ag_signtable_count(const struct ag_signtable *t);
const struct ag_sign_entry *ag_signtable_get(const struct ag_signtable *t,
    size_t i);

/* The entries that sign mail From DOMAIN (A-labels), at most MAX into
 * OUT; returns how many. */
size_t ag_signtable_select(const struct ag_signtable *t, const char *domain,
    const struct ag_sign_entry **out, size_t max);

/* Check a pattern ("example.com", ".example.com", "*") into OUT
 * (normalized, in A-labels); AG_INVALID otherwise. */
ag_status ag_sign_pattern_normalize(const char *in, char *out, size_t outsz);

struct ag_store;

/* Read the table from S (see ag_signtable_new for LOAD_KEYS).  Rows the
 * program cannot read (bad pattern, algorithm or canonicalization) are
 * refused with AG_PERMFAIL naming the row. */
ag_status ag_signtable_load(struct ag_store *s, bool load_keys,
    struct ag_signtable **out);

/* Add E (its id and key are ignored) and return the new id; the pattern,
 * domain and selector are checked.  The key file is the caller's to
 * check (authgatectl loads it first). */
ag_status ag_signtable_add(struct ag_store *s, const struct ag_sign_entry *e,
    int64_t *id);

/* Delete entry ID; AG_NOTFOUND when there is none. */
ag_status ag_signtable_del(struct ag_store *s, int64_t id);

/* Turn entry ID on or off (an entry off signs nothing and its key is not
 * loaded); AG_NOTFOUND when there is none. */
ag_status ag_signtable_enable(struct ag_store *s, int64_t id, bool on);

/* Delete entry OLD and add E in one transaction (a key rollover: a
 * reload sees the old entry or the new one, never both or neither);
 * the new id into *ID.  AG_NOTFOUND when OLD is not there; nothing
 * changes on any failure. */
ag_status ag_signtable_replace(struct ag_store *s, int64_t old,
    const struct ag_sign_entry *e, int64_t *id);

/* "relaxed/relaxed", "simple/relaxed", ...: 0 or -1. */
int ag_sign_canon_parse(const char *s, bool *header_simple,
    bool *body_simple);

/* Free what an entry holds (not the struct). */
void ag_sign_entry_clear(struct ag_sign_entry *e);

#endif
