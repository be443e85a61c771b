/* placeholder */
typedef int skv_placeholder_t;
