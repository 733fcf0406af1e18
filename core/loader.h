/*
 * loader.h — finding a plugin by its `type`: the built-in table first, then
 * <type>.so in the plugin path (the pipeline's plugin_path, then
 * $SLUICE_PLUGIN_PATH, then the install's plugin folder). A .so is checked
 * before anything else in it is touched: its ABI major must equal the
 * core's and its minor must not be newer; the message names the file and
 * both versions. A descriptor from an older minor is copied into a
 * full-size, zeroed one, so members it does not have read as NULL.
 */
#ifndef SLUICE_LOADER_H
#define SLUICE_LOADER_H

#include <stddef.h>

#include "sluice/plugin.h"

typedef struct sl_loader sl_loader;

sl_loader *sl_loader_new(const char *const *dirs, size_t ndirs);
void sl_loader_free(sl_loader *l); /* dlcloses every .so it opened */

/* The descriptor of `type` for `kind`; NULL with the reason in err. Has the
 * sl_plugin_lookup signature of config.h. */
const sluice_plugin_def *sl_loader_find(void *loader, const char *type, sluice_kind kind,
                                        char *err, size_t errlen);
/* Load one .so by path and return its first descriptor (for tests and for
 * `sluice plugins`). */
const sluice_plugin_def *sl_loader_open(sl_loader *l, const char *path, char *err,
                                        size_t errlen);

/* Every plugin known: the built-ins and every loadable .so in the search
 * folders (each descriptor, `next` chain included). Calls fn once per
 * descriptor. */
void sl_loader_each(sl_loader *l, void (*fn)(const sluice_plugin_def *def, const char *file,
                                             void *arg),
                    void *arg);

const char *sl_kind_name(sluice_kind k);

#endif
