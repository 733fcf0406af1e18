/*
 * builtin.c — the table of plugins linked into libsluice. The core finds
 * them here by name before it looks for <type>.so on the plugin path; it
 * never names a plugin itself.
 */
#include "builtin.h"

#include <stddef.h>

const sluice_plugin_def *const sl_builtin_plugins[] = {
    &sl_plugin_file_source,
    &sl_plugin_file_sink,
    &sl_plugin_generate_source,
    &sl_plugin_socket_source,
    &sl_plugin_socket_sink,
    &sl_plugin_console_sink,
    &sl_plugin_filter_operator,
    &sl_plugin_map_operator,
    &sl_plugin_dedupe_operator,
    &sl_plugin_join_operator,
    &sl_plugin_window_operator,
    &sl_plugin_lua_operator,
    NULL,
};
