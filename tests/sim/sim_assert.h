/*
 * sim_assert: criterion glue for seeded simulation tests.
 *
 * Kept apart from sim.h so the simulator itself does not depend on
 * criterion. SIM_ASSERT_SEED fails the running test like cr_assert, after
 * printing the line that replays the failing seed alone, with tracing.
 */
#ifndef SKV_TESTS_SIM_SIM_ASSERT_H
#define SKV_TESTS_SIM_SIM_ASSERT_H

#include <criterion/criterion.h>
#include <stdint.h>

#include "tests/sim/sim.h"

static inline uint64_t sim_seed_of_sim_(const struct sim *s)
{
	return sim_seed(s);
}

static inline uint64_t sim_seed_of_u64_(uint64_t seed)
{
	return seed;
}

/* The seed of a `struct sim *` or of an integer seed. */
#define SIM_SEED_OF(x)                                      \
	_Generic((x), struct sim *: sim_seed_of_sim_,        \
		 const struct sim *: sim_seed_of_sim_,       \
		 default: sim_seed_of_u64_)(x)

/* SIM_ASSERT_SEED(cond, sim_or_seed, "format", args...) */
#define SIM_ASSERT_SEED(cond, sim_or_seed, ...)                          \
	do {                                                             \
		if (!(cond)) {                                           \
			sim_seed_banner(NULL,                            \
					criterion_current_test->category, \
					criterion_current_test->name,     \
					SIM_SEED_OF(sim_or_seed));        \
			cr_assert_fail(__VA_ARGS__);                     \
		}                                                        \
	} while (0)

#endif
