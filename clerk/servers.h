/*
 * servers: a clerk's own copy of a list of server addresses
 * ("host:port" strings), as the cores and the blocking clerks keep them.
 * Pure.
 *
 * Ownership: clerk_servers_copy allocates the array and every string;
 * clerk_servers_free frees both.
 */
#ifndef SKV_CLERK_SERVERS_H
#define SKV_CLERK_SERVERS_H

#include <stddef.h>

/* Copies src[0..n) (n > 0, no NULL entry) into *out. STATUS_OK, or
 * NO_MEMORY with *out NULL. */
int clerk_servers_copy(const char *const *src, size_t n, char ***out);

/* Frees v[0..n) and v. NULL ok. */
void clerk_servers_free(char **v, size_t n);

#endif
