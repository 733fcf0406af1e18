/* abi_plugin.c — a minimal operator plugin for the loader's tests, built
 * three ways: for this ABI, for another major, and for a newer minor. */
#include <sluice/plugin.h>

#ifndef TEST_ABI_MAJOR
#define TEST_ABI_MAJOR SLUICE_ABI_MAJOR
#endif
#ifdef TEST_ABI_MINOR_BUMP
#define TEST_ABI_MINOR (SLUICE_ABI_MINOR + 1)
#else
#define TEST_ABI_MINOR SLUICE_ABI_MINOR
#endif

typedef struct cfg {
    int64_t factor;
} cfg;

static const sluice_option options[] = {
    {.name = "factor", .type = SLUICE_OPT_INT, .default_value = "2", .offset = offsetof(cfg, factor),
     .help = "a number"},
    {.name = NULL},
};

static int create(const sluice_host *host, sluice_ctx *ctx, const void *config, void **self,
                  char *err, size_t errlen)
{
    *self = (void *)config;
    return SLUICE_OK;
}

static int process(void *self, const sluice_batch *in, unsigned input, char *err, size_t errlen)
{
    return SLUICE_OK;
}

static const sluice_plugin_def def = {
    .abi_major = TEST_ABI_MAJOR,
    .abi_minor = TEST_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "abi_test",
    .kind = SLUICE_OPERATOR,
    .version = "1.0",
    .description = "a test operator",
    .config_size = sizeof(cfg),
    .options = options,
    .create = create,
    .process = process,
};

const sluice_plugin_def *sluice_plugin(void)
{
    return &def;
}
