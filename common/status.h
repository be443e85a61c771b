/*
 * status: the project's one error vocabulary.
 *
 * Every fallible function returns an `enum status` (0 = ok). The list is an
 * X-macro so names, numbers and strings cannot drift; the wire form is
 * `Skv__Status` in proto/status.proto with the same numbers (a unit test
 * checks that the two agree).
 */
#ifndef SKV_COMMON_STATUS_H
#define SKV_COMMON_STATUS_H

#define STATUS_LIST(X)                                                   \
	X(OK, 0, "ok")                                                   \
	X(INVALID_ARGUMENT, 1, "invalid argument")                       \
	X(NOT_FOUND, 2, "not found")                                     \
	X(ALREADY_EXISTS, 3, "already exists")                           \
	X(NO_MEMORY, 4, "out of memory")                                 \
	X(IO, 5, "I/O error")                                            \
	X(CORRUPTION, 6, "data corruption")                              \
	X(TIMEOUT, 7, "deadline exceeded")                               \
	X(UNAVAILABLE, 8, "unavailable")                                 \
	X(CANCELLED, 9, "cancelled")                                     \
	X(NOT_LEADER, 10, "not the leader")                              \
	X(WRONG_GROUP, 11, "wrong group for this key")                   \
	X(NOT_READY, 12, "not ready yet, retry")                         \
	X(TOO_LARGE, 13, "too large")                                    \
	X(SHUTDOWN, 14, "shutting down")                                 \
	X(INTERNAL, 15, "internal error")

enum status {
#define STATUS_ENUM_(name, num, str) STATUS_##name = num,
	STATUS_LIST(STATUS_ENUM_)
#undef STATUS_ENUM_
	STATUS_COUNT_
};

/* Static description of `s`; "unknown status" for values outside the list. */
const char *status_str(int s);

/* The enumerator's name without prefix ("NOT_LEADER"); for logs and JSON. */
const char *status_name(int s);

#endif
