#include "common/addrs.h"

#include <stdio.h>
#include <string.h>

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
