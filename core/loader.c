/*
 * loader.c — built-in and shared-object plugins; see loader.h.
 */
#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builtin.h"

typedef struct loaded {
    char *path;
    void *handle;
    sluice_plugin_def *defs; /* full-size copies, linked through next */
} loaded;

struct sl_loader {
    size_t ndirs;
    char **dirs;
    size_t nloaded;
    loaded *loaded;
};

const char *sl_kind_name(sluice_kind k)
{
    switch (k) {
    case SLUICE_SOURCE: return "source";
    case SLUICE_OPERATOR: return "operator";
    case SLUICE_SINK: return "sink";
    }
    return "?";
}

static void add_dir(sl_loader *l, const char *d)
{
    if (!d || !*d)
        return;
    for (size_t i = 0; i < l->ndirs; i++)
        if (strcmp(l->dirs[i], d) == 0)
            return;
    l->dirs = realloc(l->dirs, (l->ndirs + 1) * sizeof *l->dirs);
    l->dirs[l->ndirs++] = strdup(d);
}

sl_loader *sl_loader_new(const char *const *dirs, size_t ndirs)
{
    sl_loader *l = calloc(1, sizeof *l);
    for (size_t i = 0; i < ndirs; i++)
        add_dir(l, dirs[i]);
    const char *env = getenv("SLUICE_PLUGIN_PATH");
    if (env) {
        char *copy = strdup(env), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
            add_dir(l, d);
        free(copy);
    }
    add_dir(l, SLUICE_PLUGIN_DIR);
    return l;
}

void sl_loader_free(sl_loader *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->ndirs; i++)
        free(l->dirs[i]);
    free(l->dirs);
    for (size_t i = 0; i < l->nloaded; i++) {
        free(l->loaded[i].path);
        free(l->loaded[i].defs);
        /* Sanitizer builds keep the code mapped so leak reports can still
         * symbolise frames from the plugin. */
#ifndef __SANITIZE_ADDRESS__
        dlclose(l->loaded[i].handle);
#endif
    }
    free(l->loaded);
    free(l);
}

/* The ABI check: major equal, minor not newer, size plausible. The version
 * members come first in every ABI version, so reading them is always safe. */
static int check_abi(const char *path, const sluice_plugin_def *d, char *err, size_t errlen)
{
    if (d->abi_major != SLUICE_ABI_MAJOR) {
        snprintf(err, errlen,
                 "%s: plugin built for sluice ABI %u.%u, but this sluice has ABI %d.%d "
                 "(majors differ: rebuild the plugin against this sluice's sluice/plugin.h)",
                 path, d->abi_major, d->abi_minor, SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
        return -1;
    }
    if (d->abi_minor > SLUICE_ABI_MINOR) {
        snprintf(err, errlen,
                 "%s: plugin built for sluice ABI %u.%u, newer than this sluice's ABI %d.%d "
                 "(upgrade sluice or rebuild the plugin against this version)",
                 path, d->abi_major, d->abi_minor, SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
        return -1;
    }
    if (d->size < offsetof(sluice_plugin_def, abort) || d->size > 65536) {
        snprintf(err, errlen, "%s: plugin descriptor size %u is not plausible for ABI %u.%u",
                 path, d->size, d->abi_major, d->abi_minor);
        return -1;
    }
    if (!d->name || (d->kind != SLUICE_SOURCE && d->kind != SLUICE_OPERATOR &&
                     d->kind != SLUICE_SINK)) {
        snprintf(err, errlen, "%s: plugin descriptor has no name or an unknown kind", path);
        return -1;
    }
    return 0;
}

const sluice_plugin_def *sl_loader_open(sl_loader *l, const char *path, char *err,
                                        size_t errlen)
{
    for (size_t i = 0; i < l->nloaded; i++)
        if (strcmp(l->loaded[i].path, path) == 0)
            return l->loaded[i].defs;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "%s: cannot load: %s", path, dlerror());
        return NULL;
    }
    sluice_plugin_fn fn = (sluice_plugin_fn)dlsym(h, SLUICE_PLUGIN_SYMBOL);
    if (!fn) {
        snprintf(err, errlen, "%s: not a sluice plugin (no %s() function)", path,
                 SLUICE_PLUGIN_SYMBOL);
        dlclose(h);
        return NULL;
    }
    size_t n = 0;
    for (const sluice_plugin_def *d = fn(); d && n < 8; d = d->next, n++) {
        if (check_abi(path, d, err, errlen) != 0) {
            dlclose(h);
            return NULL;
        }
    }
    if (n == 0) {
        snprintf(err, errlen, "%s: %s() returned no descriptor", path, SLUICE_PLUGIN_SYMBOL);
        dlclose(h);
        return NULL;
    }
    sluice_plugin_def *defs = calloc(n, sizeof *defs);
    size_t k = 0;
    for (const sluice_plugin_def *d = fn(); k < n; d = d->next, k++) {
        memcpy(&defs[k], d, d->size < sizeof *defs ? d->size : sizeof *defs);
        defs[k].next = k + 1 < n ? &defs[k + 1] : NULL;
    }
    l->loaded = realloc(l->loaded, (l->nloaded + 1) * sizeof *l->loaded);
    l->loaded[l->nloaded].path = strdup(path);
    l->loaded[l->nloaded].handle = h;
    l->loaded[l->nloaded].defs = defs;
    l->nloaded++;
    return defs;
}

static const sluice_plugin_def *pick_kind(const sluice_plugin_def *d, sluice_kind kind)
{
    for (; d; d = d->next)
        if (d->kind == kind)
            return d;
    return NULL;
}

static int valid_type_name(const char *type)
{
    if (!*type)
        return 0;
    for (const char *p = type; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

const sluice_plugin_def *sl_loader_find(void *loader, const char *type, sluice_kind kind,
                                        char *err, size_t errlen)
{
    sl_loader *l = loader;
    int other_kind = 0;
    for (const sluice_plugin_def *const *b = sl_builtin_plugins; *b; b++) {
        if (strcmp((*b)->name, type) != 0)
            continue;
        if ((*b)->kind == kind)
            return *b;
        other_kind = 1;
    }
    /* A type is a file name: no slashes or dots, so a pipeline can never
     * make the loader open a path it did not name. */
    if (valid_type_name(type)) {
        for (size_t i = 0; i < l->ndirs; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s.so", l->dirs[i], type);
            if (access(path, F_OK) != 0)
                continue;
            const sluice_plugin_def *d = sl_loader_open(l, path, err, errlen);
            if (!d)
                return NULL;
            const sluice_plugin_def *k = pick_kind(d, kind);
            if (k)
                return k;
            snprintf(err, errlen, "%s: plugin '%s' has no %s", path, type, sl_kind_name(kind));
            return NULL;
        }
    }
    if (other_kind)
        snprintf(err, errlen, "plugin '%s' is not a %s", type, sl_kind_name(kind));
    else
        snprintf(err, errlen, "unknown %s type '%s' (see `sluice plugins`)", sl_kind_name(kind),
                 type);
    return NULL;
}

void sl_loader_each(sl_loader *l, void (*fn)(const sluice_plugin_def *def, const char *file,
                                             void *arg),
                    void *arg)
{
    for (const sluice_plugin_def *const *b = sl_builtin_plugins; *b; b++)
        fn(*b, NULL, arg);
    for (size_t i = 0; i < l->ndirs; i++) {
        DIR *dir = opendir(l->dirs[i]);
        if (!dir)
            continue;
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t n = strlen(e->d_name);
            if (n < 4 || strcmp(e->d_name + n - 3, ".so") != 0)
                continue;
            char path[4096], err[512];
            snprintf(path, sizeof path, "%s/%s", l->dirs[i], e->d_name);
            const sluice_plugin_def *d = sl_loader_open(l, path, err, sizeof err);
            if (!d) {
                fprintf(stderr, "sluice: %s\n", err);
                continue;
            }
            for (; d; d = d->next)
                fn(d, path, arg);
        }
        closedir(dir);
    }
}
