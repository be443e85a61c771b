#include "common/codec.h"

#include "common/mem.h"
#include "common/status.h"

/* protobuf-c allocations go through mem_* too, so injected failures reach
 * decoding. */
static void *codec_alloc(void *ctx, size_t n)
{
	(void)ctx;
	return mem_alloc(n);
}

static void codec_release(void *ctx, void *p)
{
	(void)ctx;
	mem_free(p);
}

static ProtobufCAllocator codec_allocator = {
	.alloc = codec_alloc,
	.free = codec_release,
	.allocator_data = NULL,
};

int codec_pack_append(const ProtobufCMessage *m, struct buf *out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	int rc = buf_reserve(out, n);
	if (rc)
		return rc;
	out->len += protobuf_c_message_pack(m, out->data + out->len);
	return STATUS_OK;
}

int codec_pack(const ProtobufCMessage *m, struct buf *out)
{
	buf_reset(out);
	return codec_pack_append(m, out);
}

int codec_unpack(const ProtobufCMessageDescriptor *desc, const void *bytes,
		 size_t len, ProtobufCMessage **out)
{
	*out = protobuf_c_message_unpack(desc, &codec_allocator, len, bytes);
	return *out ? STATUS_OK : STATUS_INVALID_ARGUMENT;
}

void codec_free(ProtobufCMessage *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, &codec_allocator);
}
