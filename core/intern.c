/*
 * intern.c — field names interned once, process-wide.
 *
 * Plugins intern the names they know at create(); decoders intern names met
 * in the data through a per-decoder cache, so this table's mutex is taken
 * rarely. The id -> name array is allocated once at its final size and
 * entries are published with a release store of the count, so sl_name_of()
 * takes no lock.
 */
#include "record.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SL_MAX_NAMES (1u << 20) /* a million distinct field names is a bug upstream */

typedef struct name_entry {
    char *name;
    size_t len;
} name_entry;

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static name_entry *names;        /* index = id; [0] unused */
static _Atomic uint32_t nnames;  /* ids < nnames are valid */
static uint32_t *slots;          /* open addressing: id or 0 */
static uint32_t nslots;

static uint32_t hash_bytes(const char *p, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

static void grow_slots(void)
{
    uint32_t n = nslots ? nslots * 2 : 1024;
    uint32_t *s = calloc(n, sizeof *s);
    if (!s)
        abort();
    for (uint32_t i = 0; i < nslots; i++) {
        uint32_t id = slots[i];
        if (!id)
            continue;
        uint32_t h = hash_bytes(names[id].name, names[id].len) & (n - 1);
        while (s[h])
            h = (h + 1) & (n - 1);
        s[h] = id;
    }
    free(slots);
    slots = s;
    nslots = n;
}

sluice_name sl_intern(const char *name, size_t len)
{
    pthread_mutex_lock(&intern_lock);
    if (!names) {
        names = calloc(SL_MAX_NAMES, sizeof *names);
        if (!names)
            abort();
        atomic_store(&nnames, 1);
    }
    uint32_t count = atomic_load_explicit(&nnames, memory_order_relaxed);
    if ((count + 1) * 2 > nslots)
        grow_slots();
    uint32_t h = hash_bytes(name, len) & (nslots - 1);
    for (;;) {
        uint32_t id = slots[h];
        if (!id)
            break;
        if (names[id].len == len && memcmp(names[id].name, name, len) == 0) {
            pthread_mutex_unlock(&intern_lock);
            return id;
        }
        h = (h + 1) & (nslots - 1);
    }
    if (count >= SL_MAX_NAMES) {
        pthread_mutex_unlock(&intern_lock);
        return 0;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        abort();
    memcpy(copy, name, len);
    copy[len] = '\0';
    names[count].name = copy;
    names[count].len = len;
    slots[h] = count;
    atomic_store_explicit(&nnames, count + 1, memory_order_release);
    pthread_mutex_unlock(&intern_lock);
    return count;
}

const char *sl_name_of(sluice_name id)
{
    if (id == 0 || id >= atomic_load_explicit(&nnames, memory_order_acquire))
        return "";
    return names[id].name;
}

size_t sl_name_len(sluice_name id)
{
    if (id == 0 || id >= atomic_load_explicit(&nnames, memory_order_acquire))
        return 0;
    return names[id].len;
}
