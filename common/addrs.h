/*
 * addrs: comma-separated address lists as given on command lines
 * ("a:1,b:2,c:3"), split in place.
 *
 * Pure string handling; the list and the entries stay the caller's.
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

#endif
