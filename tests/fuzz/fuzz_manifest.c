/*
 * fuzz_manifest.c — libFuzzer target for the checkpoint MANIFEST reader
 * and the state files' CRC check (core/manifest.c), which restore runs on
 * whatever a crash, a full disk or a hand left in a checkpoint folder.
 *
 * Byte 0 holds flags, the rest is a MANIFEST:
 *   bit 0: make the "crc" line right (recompute the CRC-32 of everything
 *          before the first "\ncrc " line, or append such a line), so the
 *          fuzzer gets past the CRC into the line parsing, which a real
 *          damaged file only reaches when its CRC still matches;
 *   bit 1: also go through the files: write it as DIR/MANIFEST, with a
 *          state file for each stage it names (the input's bytes, so the
 *          CRC sometimes matches), and read the folder with
 *          sl_manifest_read().
 * Checked: a manifest that parses has an epoch and NUL-terminated names;
 * a failure says why; a stage's state check agrees with the CRC computed
 * here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "manifest.h"

#define MAX_INPUT (64 * 1024)

static char dir[64];

static void remove_dir(void)
{
    if (!dir[0])
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_manifest: could not remove %s\n", dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR") && strlen(getenv("TMPDIR")) < 32 ? getenv("TMPDIR")
                                                                           : "/tmp";
    snprintf(dir, sizeof dir, "%s/sluice-fuzz-manifest-XXXXXX", tmp);
    if (!mkdtemp(dir))
        abort();
    atexit(remove_dir);
    return 0;
}

/* text with its crc line made right; *len updated. The result has a NUL
 * after its last byte. */
static char *fix_crc(const char *text, size_t *len)
{
    char line[16];
    const char *crc_line = strstr(text, "\ncrc "); /* the first, as the reader takes */
    if (!crc_line) {
        /* Append one covering everything, newline included. */
        char *out = malloc(*len + 1 + 14 + 1);
        if (!out)
            abort();
        memcpy(out, text, *len);
        out[*len] = '\n';
        snprintf(line, sizeof line, "crc %08x\n", sl_crc32(0, out, *len + 1));
        memcpy(out + *len + 1, line, 14);
        *len += 15;
        out[*len] = '\0';
        return out;
    }
    size_t head = (size_t)(crc_line + 1 - text);
    snprintf(line, sizeof line, "crc %08x", sl_crc32(0, text, head));
    /* Replace "crc " and up to 8 characters after it. */
    size_t skip = 4;
    while (skip < 12 && head + skip < *len && text[head + skip] != '\n')
        skip++;
    size_t tail = *len - head - skip;
    char *out = malloc(head + 12 + tail + 1);
    if (!out)
        abort();
    memcpy(out, text, head);
    memcpy(out + head, line, 12);
    memcpy(out + head + 12, text + head + skip, tail);
    *len = head + 12 + tail;
    out[*len] = '\0';
    return out;
}

static void check_parsed(const sl_manifest *m, const uint8_t *blob, size_t size)
{
    if (m->epoch == 0)
        fuzz_fail("a manifest accepted with epoch 0");
    for (size_t i = 0; i < m->nstages; i++) {
        const sl_manifest_stage *s = &m->stages[i];
        if (!memchr(s->name, '\0', sizeof s->name) || !memchr(s->type, '\0', sizeof s->type))
            fuzz_fail("a stage name or type without its NUL");
        size_t n = s->len < size ? s->len : size;
        bool ok = sl_manifest_state_ok(s, blob, n);
        if (ok != (n == s->len && sl_crc32(0, blob, n) == s->crc))
            fuzz_fail("the state check disagrees with the CRC");
    }
}

static void write_file(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return; /* a name the file system refuses: the reader finds nothing */
    if (len && fwrite(p, 1, len, f) != len)
        abort();
    fclose(f);
}

/* The same manifest through the folder, as restore reads it. */
static void through_files(const char *text, size_t len, const sl_manifest *parsed,
                          const uint8_t *data, size_t size)
{
    char path[256], why[512] = "";
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    write_file(path, text, len);
    for (size_t i = 0; parsed && i < parsed->nstages; i++) {
        const sl_manifest_stage *s = &parsed->stages[i];
        if (strchr(s->name, '/') || strcmp(s->name, ".") == 0 || strcmp(s->name, "..") == 0)
            continue; /* never write outside the folder */
        snprintf(path, sizeof path, "%s/%s.state", dir, s->name);
        write_file(path, data, s->len < size ? s->len : size);
    }
    sl_manifest m;
    if (sl_manifest_read(dir, &m, why, sizeof why) != 0 && !why[0])
        fuzz_fail("sl_manifest_read failed without saying why");
    sl_manifest_free(&m);
    for (size_t i = 0; parsed && i < parsed->nstages; i++) {
        const sl_manifest_stage *s = &parsed->stages[i];
        if (strchr(s->name, '/') || strcmp(s->name, ".") == 0 || strcmp(s->name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s.state", dir, s->name);
        unlink(path);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT)
        return 0;
    unsigned flags = data[0];
    size_t len = size - 1;
    char *text = fuzz_exact_copy(data + 1, len, 1);
    if (flags & 1) {
        char *fixed = fix_crc(text, &len);
        free(text);
        text = fixed;
    }
    char *work = fuzz_exact_copy(text, len, 1); /* the parser writes into it */
    char why[512] = "";
    sl_manifest m;
    int rc = sl_manifest_parse(work, len, &m, why, sizeof why);
    if (rc == 0)
        check_parsed(&m, data, size);
    else if (!why[0])
        fuzz_fail("sl_manifest_parse failed without saying why");
    if (flags & 2)
        through_files(text, len, rc == 0 ? &m : NULL, data, size);
    sl_manifest_free(&m);
    free(work);
    free(text);
    return 0;
}
