/*
 * redact.c — URL passwords out of printed text; see redact.h.
 */
#include "redact.h"

#include <string.h>

size_t sl_redact_url_passwords(char *text, size_t cap)
{
    static const size_t mlen = sizeof SL_REDACTED - 1;
    char *p = text;
    while ((p = strstr(p, "://"))) {
        p += 3;
        size_t authority = strcspn(p, "/?#\"' \t\r\n");
        char *at = NULL;
        for (size_t i = 0; i < authority; i++)
            if (p[i] == '@')
                at = p + i;
        char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
        if (!colon)
            continue;
        char *pw = colon + 1;
        size_t pwlen = (size_t)(at - pw);
        if (pwlen == mlen && memcmp(pw, SL_REDACTED, mlen) == 0)
            continue;
        size_t room = cap - 1 - (size_t)(pw - text); /* for text, NUL excluded */
        size_t tail = strlen(at);
        if (mlen > room) {
            *pw = 0;
            break;
        }
        if (mlen + tail > room)
            tail = room - mlen;
        memmove(pw + mlen, at, tail);
        memcpy(pw, SL_REDACTED, mlen);
        pw[mlen + tail] = 0;
        p = pw + mlen;
    }
    return strlen(text);
}

size_t sl_redact_room(const char *text)
{
    size_t room = strlen(text) + 1;
    for (const char *p = text; (p = strstr(p, "://")); p += 3)
        room += sizeof SL_REDACTED;
    return room;
}
