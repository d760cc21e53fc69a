/*
 * fuzzlib.h - what the libFuzzer harnesses of tests/fuzz share: reading
 * the input as text lines with escapes, a DNS answer table filled from
 * the input and served through lib/dns.c's fuzz hook, and the checks of
 * what must hold for any input (reply texts, header values).
 *
 * The input language (tests/fuzz/README.md has examples):
 *   - lines end at LF; a CR before it is kept (it is data);
 *   - in values, \\ \n \r \t \0 and \xHH stand for the byte, any other
 *     backslash is itself;
 *   - "dns NAME TYPE DATA" adds an answer (see fz_dns_line).
 *
 * Thread safety: none; a harness runs one input at a time.
 */
#ifndef FUZZLIB_H
#define FUZZLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The input as a NUL-terminated copy (the caller frees). */
char *fz_strndup(const uint8_t *data, size_t size);

/*
 * The next line of BUF (SIZE bytes) from *POS: returns its start and sets
 * *LEN (without the LF), or NULL at the end.
 */
const char *fz_line(const char *buf, size_t size, size_t *pos, size_t *len);

/* Does line S (LEN bytes) start with the word W followed by a space or
 * its end?  *REST gets what follows the space. */
bool fz_word(const char *s, size_t len, const char *w, const char **rest,
    size_t *restlen);

/*
 * Decode the escapes of S (LEN bytes) into a new NUL-terminated string;
 * *OUTLEN (may be NULL) gets its length, which counts NUL bytes made by
 * \0.  The caller frees.
 */
char *fz_unescape(const char *s, size_t len, size_t *outlen);

/* ---- DNS ----------------------------------------------------------------- */

/*
 * Answer every ag_dns_query from the table (install once).  A name with
 * no entry is NXDOMAIN; a name with entries but none of the asked type is
 * NODATA.  Entries match the name case-insensitively, a trailing dot
 * ignored; "*.SUFFIX" matches any name under SUFFIX, "*" any name, each
 * only when no exact entry exists.
 */
void fz_dns_install(void);
void fz_dns_clear(void);

/*
 * Add "NAME TYPE DATA" (the text after "dns "):
 *   A 192.0.2.1 | AAAA 2001:db8::1 | MX PREF NAME | PTR NAME |
 *   TXT STRINGS  (split at '|' into character-strings, each cut at 255) |
 *   TXTRAW BYTES (the RDATA as given, malformed or not) |
 *   NXDOMAIN | SERVFAIL | REFUSED | TIMEOUT | NOMEM  (for any type)
 * Unknown types and bad data are ignored.  Escapes are decoded in DATA.
 */
void fz_dns_line(const char *s, size_t len);

/* Queries answered since fz_dns_clear (for the harness's own checks). */
unsigned fz_dns_queries(void);

/* ---- checks ----------------------------------------------------------- */

/* Report a broken invariant and abort (libFuzzer keeps the input). */
void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
    noreturn));

/* S holds only printable ASCII (0x20-0x7e); WHAT names it. */
void fz_check_printable(const char *what, const char *s);

/*
 * S is a header value an MTA may be given: 7-bit, no control bytes but
 * TAB, every LF followed by SP or TAB (a fold), no CR, no trailing fold.
 */
void fz_check_header_value(const char *what, const char *s);

/*
 * Log lines dropped, or with AG_FUZZ_LOG=1 in the environment written to
 * standard error, where the harnesses then also show their results (to
 * check a seed by hand).
 */
void fz_log_setup(void);
extern bool fz_verbose;

#endif
