/*
 * manifest.h — reading a checkpoint's MANIFEST and checking its state files.
 *
 * A checkpoint folder (DIR/PIPELINE/chk-N) holds one STAGE.state file per
 * stage that keeps state and a MANIFEST naming them, written last:
 *
 *     sluice-checkpoint 1
 *     pipeline NAME
 *     epoch N
 *     created_ms MS
 *     stage NAME TYPE LEN CRC     (or "stage NAME TYPE - 0 0": no state)
 *     crc CRC                     (CRC-32 of every byte before this line)
 *
 * Why apart from checkpoint.c: this is the code that reads what is on disk,
 * which a crash, a full disk or a hand may have damaged, so it must take
 * any bytes; kept free of the runtime it can be fuzzed on its own
 * (tests/fuzz/fuzz_manifest.c). checkpoint.c writes the format and restores
 * from what this file accepts.
 */
#ifndef SLUICE_MANIFEST_H
#define SLUICE_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_MANIFEST_FILE "MANIFEST"
#define SL_MANIFEST_VERSION 1 /* the number after "sluice-checkpoint" */

typedef struct sl_manifest_stage {
    char name[128], type[128];
    size_t len;      /* of its state file */
    uint32_t crc;    /* of its state file */
    bool has_state;  /* false: "-", the stage kept no state */
} sl_manifest_stage;

typedef struct sl_manifest {
    uint64_t epoch;
    size_t nstages;
    sl_manifest_stage *stages; /* malloc()ed; sl_manifest_free() */
} sl_manifest;

/* Parse MANIFEST text: text[0..len) with text[len] == '\0' (the buffer is
 * modified). 0, or -1 with why ("MANIFEST is damaged (CRC mismatch or
 * truncated)", "... has an unknown format"). On -1, m may hold stages:
 * free it either way. */
int sl_manifest_parse(char *text, size_t len, sl_manifest *m, char *why, size_t whylen);

/* Does a state file's content match its MANIFEST line? */
bool sl_manifest_state_ok(const sl_manifest_stage *s, const void *blob, size_t len);

/* Read dir/MANIFEST, parse it and check every state file it names (there,
 * whole, same CRC). 0, or -1 with why; free m either way. */
int sl_manifest_read(const char *dir, sl_manifest *m, char *why, size_t whylen);

void sl_manifest_free(sl_manifest *m);

/* CRC-32 (IEEE 802.3, as zlib's crc32()) of data, continuing from crc (0
 * to start). Also declared in checkpoint.h, whose writer uses it. */
uint32_t sl_crc32(uint32_t crc, const void *data, size_t len);

/* A whole file, NUL-terminated (not counted in *len); NULL when it cannot
 * be opened or memory runs out. */
char *sl_read_whole_file(const char *path, size_t *len);

#endif
