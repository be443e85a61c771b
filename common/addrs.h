/*
 * addrs: lists of server addresses ("host:port" strings): split from a
 * comma-separated command-line value ("a:1,b:2,c:3"), and owned copies
 * as clerks, servers and configurations keep them.
 *
 * Pure string handling. addrs_split works in place on the caller's
 * list; addrs_copy allocates the array and every string, addrs_free
 * frees both.
 */
#ifndef SKV_COMMON_ADDRS_H
#define SKV_COMMON_ADDRS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Splits `list` in place at its commas, dropping spaces and tabs around
 * each entry, into out[0..*n) (pointers into `list`), at most `max`.
 * False with a one-line reason in err, prefixed with `what` (a flag name,
 * "--peers"), for an empty entry or more than `max` of them.
 */
bool addrs_split(char *list, const char *what, const char **out, size_t max,
		 size_t *n, char *err, size_t cap);

/* Copies src[0..n) (no NULL entry) into *out (NULL when n is 0).
 * STATUS_OK, or NO_MEMORY with *out NULL. */
int addrs_copy(const char *const *src, size_t n, char ***out);

/* Frees v[0..n) and v. NULL ok. */
void addrs_free(char **v, size_t n);

#endif
