/*
 * servers: see servers.h.
 */
#include "clerk/servers.h"

#include "common/mem.h"
#include "common/status.h"

int clerk_servers_copy(const char *const *src, size_t n, char ***out)
{
	char **v = mem_calloc(n, sizeof(*v));
	*out = NULL;
	if (!v)
		return STATUS_NO_MEMORY;
	for (size_t i = 0; i < n; i++) {
		v[i] = mem_strdup(src[i]);
		if (!v[i]) {
			clerk_servers_free(v, i);
			return STATUS_NO_MEMORY;
		}
	}
	*out = v;
	return STATUS_OK;
}

void clerk_servers_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		mem_free(v[i]);
	mem_free(v);
}
