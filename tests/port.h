/*
 * port: a free TCP port on 127.0.0.1 for tests that start real servers.
 *
 * The port is found by binding port 0 and closing the socket, so another
 * process could take it before the server binds it: a small race the
 * suites accept (the server then fails to start, loudly).
 */
#ifndef SKV_TESTS_PORT_H
#define SKV_TESTS_PORT_H

/* A port the kernel just handed out on 127.0.0.1. Aborts with a message
 * when no socket can be bound (the test cannot run). */
int test_port_reserve(void);

#endif
