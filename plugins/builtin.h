/*
 * builtin.h — the plugins linked into libsluice. They use the same
 * descriptor and host table as a .so would; only the lookup differs.
 */
#ifndef SLUICE_BUILTIN_H
#define SLUICE_BUILTIN_H

#include "sluice/plugin.h"

extern const sluice_plugin_def sl_plugin_file_source;
extern const sluice_plugin_def sl_plugin_file_sink;
extern const sluice_plugin_def sl_plugin_console_sink;
extern const sluice_plugin_def sl_plugin_generate_source;
extern const sluice_plugin_def sl_plugin_socket_source;
extern const sluice_plugin_def sl_plugin_socket_sink;
extern const sluice_plugin_def sl_plugin_filter_operator;
extern const sluice_plugin_def sl_plugin_map_operator;
extern const sluice_plugin_def sl_plugin_dedupe_operator;
extern const sluice_plugin_def sl_plugin_join_operator;
extern const sluice_plugin_def sl_plugin_window_operator;
extern const sluice_plugin_def sl_plugin_lua_operator;

/* NULL-terminated. */
extern const sluice_plugin_def *const sl_builtin_plugins[];

#endif
