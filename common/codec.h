/*
 * codec: the one place (with the RPC transport) where protobuf-c messages
 * are packed and unpacked, so size limits, error statuses and ownership are
 * decided once.
 *
 * Ownership: codec_unpack returns a message owned by the caller, released
 * with codec_free; it does not keep pointers into the input bytes.
 */
#ifndef SKV_COMMON_CODEC_H
#define SKV_COMMON_CODEC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Appends the encoding of `m` to `out`. STATUS_OK or STATUS_NO_MEMORY. */
int codec_pack_append(const ProtobufCMessage *m, struct buf *out);

/* Replaces the contents of `out` with the encoding of `m`. */
int codec_pack(const ProtobufCMessage *m, struct buf *out);

/*
 * Decodes bytes[0..len) as a `desc` message into *out. STATUS_OK, or
 * STATUS_INVALID_ARGUMENT for malformed bytes (*out = NULL). protobuf-c
 * reports allocation failure and malformed input alike; both are treated
 * as bad input, which is what an RPC peer must be told.
 */
int codec_unpack(const ProtobufCMessageDescriptor *desc, const void *bytes,
		 size_t len, ProtobufCMessage **out);

/* Frees a message from codec_unpack (or the RPC layer). NULL is a no-op. */
void codec_free(ProtobufCMessage *m);

#endif
