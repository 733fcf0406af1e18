/*
 * redact.h — passwords of URLs (scheme://user:PASSWORD@host) kept out of
 * what sluice prints: every log line (log.c) and every configuration
 * message (yaml.c's diagnostics) goes through it, whoever wrote the text —
 * the core, a plugin, or a library relayed by one.
 */
#ifndef SLUICE_REDACT_H
#define SLUICE_REDACT_H

#include <stddef.h>

#define SL_REDACTED "[redacted]"

/* In the NUL-terminated text (cap bytes of room in all): the password of
 * every URL's userinfo replaced by SL_REDACTED; what no longer fits is cut
 * off the end. Returns the new length. */
size_t sl_redact_url_passwords(char *text, size_t cap);
/* Room the text may need for that: its length plus a marker per URL. */
size_t sl_redact_room(const char *text);

#endif
