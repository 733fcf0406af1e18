/*
 * manifest.c — a checkpoint's MANIFEST read back and its state files
 * checked; see manifest.h for the format.
 *
 * Reading trusts nothing: the MANIFEST's own CRC first (a torn or edited
 * file is "damaged", and restore falls back to the checkpoint before),
 * then the format version and epoch, then every state file's length and
 * CRC. Lines that do not parse are skipped rather than guessed at; the CRC
 * already tells a damaged file from one we wrote.
 */
#include "manifest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

/* ---- CRC-32 (IEEE), table-driven ------------------------------------------ */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t sl_crc32(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- files -------------------------------------------------------------------- */

char *sl_read_whole_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            char *grown = realloc(buf, cap + 1);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* ---- parsing -------------------------------------------------------------------- */

/* "stage NAME TYPE LEN CRC" or "stage NAME TYPE - 0 0"; false when the
 * line does not have that shape. */
static bool parse_stage_line(const char *l, sl_manifest_stage *ms)
{
    char file[16];
    memset(ms, 0, sizeof *ms);
    if (sscanf(l, "stage %127s %127s %15s", ms->name, ms->type, file) != 3)
        return false;
    if (strcmp(file, "-") == 0)
        return true;
    unsigned c;
    if (sscanf(file, "%zu", &ms->len) != 1 ||
        sscanf(l + 6 + strlen(ms->name) + 1 + strlen(ms->type) + 1 + strlen(file), " %8x",
               &c) != 1)
        return false;
    ms->crc = c;
    ms->has_state = true;
    return true;
}

static int add_stage(sl_manifest *m, const sl_manifest_stage *ms)
{
    sl_manifest_stage *grown = realloc(m->stages, (m->nstages + 1) * sizeof *grown);
    if (!grown)
        return -1;
    m->stages = grown;
    m->stages[m->nstages++] = *ms;
    return 0;
}

int sl_manifest_parse(char *text, size_t len, sl_manifest *m, char *why, size_t whylen)
{
    memset(m, 0, sizeof *m);
    (void)len; /* the text is read up to its NUL, as strstr() and strtok() see it */
    char *crc_line = strstr(text, "\ncrc ");
    unsigned crc;
    if (!crc_line || sscanf(crc_line + 5, "%8x", &crc) != 1 ||
        sl_crc32(0, text, (size_t)(crc_line + 1 - text)) != crc) {
        snprintf(why, whylen, "%s is damaged (CRC mismatch or truncated)", SL_MANIFEST_FILE);
        return -1;
    }
    int version = 0;
    unsigned long long ep = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (sscanf(l, "sluice-checkpoint %d", &version) == 1)
            continue;
        if (sscanf(l, "epoch %llu", &ep) == 1)
            continue;
        sl_manifest_stage ms;
        if (strncmp(l, "stage ", 6) != 0)
            continue;
        /* Stage names become file names: one that could leave the
         * checkpoint's folder makes the manifest unusable. */
        if (!parse_stage_line(l, &ms) || strchr(ms.name, '/') || ms.name[0] == '.') {
            snprintf(why, whylen, "%s has a bad stage line", SL_MANIFEST_FILE);
            sl_manifest_free(m);
            return -1;
        }
        if (add_stage(m, &ms) != 0) {
            snprintf(why, whylen, "out of memory reading %s", SL_MANIFEST_FILE);
            return -1;
        }
    }
    if (version != SL_MANIFEST_VERSION || ep == 0) {
        snprintf(why, whylen, "%s has an unknown format", SL_MANIFEST_FILE);
        return -1;
    }
    m->epoch = ep;
    return 0;
}

bool sl_manifest_state_ok(const sl_manifest_stage *s, const void *blob, size_t len)
{
    return blob && len == s->len && sl_crc32(0, blob, len) == s->crc;
}

int sl_manifest_read(const char *dir, sl_manifest *m, char *why, size_t whylen)
{
    char path[4352]; /* a PATH_MAX folder, a stage name, ".state" */
    snprintf(path, sizeof path, "%s/" SL_MANIFEST_FILE, dir);
    size_t len;
    char *text = sl_read_whole_file(path, &len);
    memset(m, 0, sizeof *m);
    if (!text) {
        snprintf(why, whylen, "no %s (an unfinished checkpoint)", SL_MANIFEST_FILE);
        return -1;
    }
    int rc = sl_manifest_parse(text, len, m, why, whylen);
    free(text);
    if (rc != 0)
        return -1;
    /* Every state file must be there, whole. */
    for (size_t i = 0; i < m->nstages; i++) {
        if (!m->stages[i].has_state)
            continue;
        snprintf(path, sizeof path, "%s/%s.state", dir, m->stages[i].name);
        size_t n;
        char *blob = sl_read_whole_file(path, &n);
        bool good = sl_manifest_state_ok(&m->stages[i], blob, n);
        free(blob);
        if (!good) {
            snprintf(why, whylen, "state of stage '%s' is missing or damaged",
                     m->stages[i].name);
            return -1;
        }
    }
    return 0;
}

void sl_manifest_free(sl_manifest *m)
{
    free(m->stages);
    memset(m, 0, sizeof *m);
}
