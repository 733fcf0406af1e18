/* test_loader.c — the loader finds built-ins, loads a .so, and refuses
 * plugins built for another ABI major or a newer minor with a message
 * naming the file and both versions. The test plugins are built by `make
 * check` in tests/plugins/.libs. */
#include <stdio.h>
#include <stdlib.h>

#include "loader.h"
#include "tap.h"

static char dir[4096];

static const sluice_plugin_def *open_test(sl_loader *l, const char *name, char *err, size_t n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.so", dir, name);
    return sl_loader_open(l, path, err, n);
}

int main(void)
{
    const char *builddir = getenv("BUILDDIR");
    snprintf(dir, sizeof dir, "%s/tests/plugins/.libs", builddir ? builddir : ".");
    char err[1024];
    sl_loader *l = sl_loader_new(NULL, 0);

    const sluice_plugin_def *d = sl_loader_find(l, "file", SLUICE_SOURCE, err, sizeof err);
    ok(d && d->kind == SLUICE_SOURCE, "the built-in file source is found");
    d = sl_loader_find(l, "file", SLUICE_SINK, err, sizeof err);
    ok(d && d->kind == SLUICE_SINK, "the built-in file sink is found");
    d = sl_loader_find(l, "filter", SLUICE_SINK, err, sizeof err);
    ok(!d && strstr(err, "not a sink"), "a built-in of another kind is refused: %s", err);
    d = sl_loader_find(l, "nosuch", SLUICE_OPERATOR, err, sizeof err);
    ok(!d && strstr(err, "unknown operator type 'nosuch'"), "an unknown type is named: %s", err);
    d = sl_loader_find(l, "../evil", SLUICE_OPERATOR, err, sizeof err);
    ok(!d, "a type with a path in it is never opened");

    d = open_test(l, "abi_ok", err, sizeof err);
    ok(d && strcmp(d->name, "abi_test") == 0, "a plugin built for this ABI loads");
    ok(d && d->options && strcmp(d->options[0].name, "factor") == 0, "its option table is there");

    d = open_test(l, "abi_major", err, sizeof err);
    ok(!d, "a plugin built for another ABI major is refused");
    ok(strstr(err, "abi_major.so") != NULL, "the message names the file: %s", err);
    char want[64];
    snprintf(want, sizeof want, "ABI 99.%d", SLUICE_ABI_MINOR);
    ok(strstr(err, want) != NULL, "the message names the plugin's ABI (%s)", want);
    snprintf(want, sizeof want, "ABI %d.%d", SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
    ok(strstr(err, want) != NULL, "the message names this sluice's ABI (%s)", want);

    d = open_test(l, "abi_minor", err, sizeof err);
    ok(!d, "a plugin built for a newer minor is refused");
    snprintf(want, sizeof want, "ABI %d.%d", SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR + 1);
    ok(strstr(err, want) && strstr(err, "newer"), "the message says it is newer: %s", err);

    d = open_test(l, "nosuchfile", err, sizeof err);
    ok(!d && strstr(err, "cannot load"), "a missing file is reported: %s", err);

    /* Found through the search path by type. */
    sl_loader_free(l);
    const char *dirs[] = {dir};
    l = sl_loader_new(dirs, 1);
    d = sl_loader_find(l, "abi_ok", SLUICE_OPERATOR, err, sizeof err);
    ok(d && strcmp(d->name, "abi_test") == 0, "a .so is found by type on the plugin path");
    d = sl_loader_find(l, "abi_major", SLUICE_OPERATOR, err, sizeof err);
    ok(!d && strstr(err, "abi_major.so"), "and refused by type with the same message");
    sl_loader_free(l);
    return tap_done();
}
