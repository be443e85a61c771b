#include "common/addrs.h"

#include <stdio.h>
#include <string.h>

#include "common/mem.h"
#include "common/status.h"

bool addrs_split(char *list, const char *what, const char **out, size_t max,
		 size_t *n, char *err, size_t cap)
{
	*n = 0;
	for (char *p = list;;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = 0;
		while (*p == ' ' || *p == '\t')
			p++;
		char *end = p + strlen(p);
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = 0;
		if (!*p) {
			snprintf(err, cap, "%s: empty address in the list",
				 what);
			return false;
		}
		if (*n == max) {
			snprintf(err, cap, "%s: more than %zu addresses", what,
				 max);
			return false;
		}
		out[(*n)++] = p;
		if (!comma)
			return true;
		p = comma + 1;
	}
}

int addrs_copy(const char *const *src, size_t n, char ***out)
{
	*out = NULL;
	if (n == 0)
		return STATUS_OK;
	char **v = mem_calloc(n, sizeof(*v));
	if (!v)
		return STATUS_NO_MEMORY;
	for (size_t i = 0; i < n; i++) {
		v[i] = mem_strdup(src[i]);
		if (!v[i]) {
			addrs_free(v, i);
			return STATUS_NO_MEMORY;
		}
	}
	*out = v;
	return STATUS_OK;
}

void addrs_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		mem_free(v[i]);
	mem_free(v);
}
