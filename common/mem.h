/*
 * mem: the one allocation wrapper.
 *
 * All project code allocates through these so that tests can make the Nth
 * allocation fail and check that the caller returns STATUS_NO_MEMORY and
 * leaks nothing. Failure returns NULL like malloc; callers must check.
 * Memory from mem_* is released with mem_free (plain free is equivalent, but
 * keep the pairs visible).
 */
#ifndef SKV_COMMON_MEM_H
#define SKV_COMMON_MEM_H

#include <stdbool.h>
#include <stddef.h>

void *mem_alloc(size_t n);
void *mem_calloc(size_t count, size_t size);
void *mem_realloc(void *p, size_t n);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);
void mem_free(void *p);

/* Makes the array *p (of *cap elements of `size` bytes) hold at least
 * `need`, doubling from 16; true on success, false (array unchanged)
 * when out of memory or the size would overflow. */
bool mem_grow(void **p, size_t *cap, size_t need, size_t size);

/*
 * Test hook: the allocation `n` calls from now fails (1 = the next one),
 * and every later one too until mem_fail_reset(). 0 disables. Counts across
 * all threads; meant for single-threaded unit tests.
 */
void mem_fail_after(long n);
void mem_fail_reset(void);

#endif
