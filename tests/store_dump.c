#include "tests/store_dump.h"

#include <string.h>

#include "common/raft/storage.h"
#include "common/status.h"

static bool raft_key(enum store_cf cf, const void *k, size_t kl)
{
	return cf == STORE_CF_META && kl >= RAFT_STORAGE_META_RESERVED_LEN &&
	       memcmp(k, RAFT_STORAGE_META_RESERVED,
		      RAFT_STORAGE_META_RESERVED_LEN) == 0;
}

int store_dump(struct store *s, bool skip_raft, struct buf *out,
	       uint64_t *data_keys)
{
	uint64_t n = 0;
	buf_reset(out);
	for (enum store_cf cf = STORE_CF_DATA; cf <= STORE_CF_META; cf++) {
		struct store_iter *it = store_iter_new(s, cf, NULL, 0, NULL);
		if (!it)
			return STATUS_NO_MEMORY;
		for (; store_iter_valid(it); store_iter_next(it)) {
			size_t kl, vl;
			const void *k = store_iter_key(it, &kl);
			const void *v = store_iter_value(it, &vl);
			if (skip_raft && raft_key(cf, k, kl))
				continue;
			n += cf == STORE_CF_DATA;
			if (buf_append_u32be(out, (uint32_t)cf) ||
			    buf_append_u32be(out, (uint32_t)kl) ||
			    buf_append(out, k, kl) ||
			    buf_append_u32be(out, (uint32_t)vl) ||
			    buf_append(out, v, vl)) {
				store_iter_free(it);
				return STATUS_NO_MEMORY;
			}
		}
		int rc = store_iter_status(it);
		store_iter_free(it);
		if (rc)
			return rc;
	}
	if (data_keys)
		*data_keys = n;
	return STATUS_OK;
}
