/*
 * supervisor.h: --workers N. The supervisor checks the script in a child
 * (wspush with WSPUSH_ROLE=check), binds the listening socket(s) once,
 * makes the tally and the mailboxes, and starts N workers by fork + exec of
 * its own binary (worker.h says what each gets). It passes their log records
 * on to stderr whole, restarts a worker that dies (with backoff), drives
 * reloads (it watches the files, checks the new version once, and tells
 * every worker to load exactly that version), and on SIGTERM/SIGINT stops
 * every worker and exits 0 when all stopped cleanly.
 */
#ifndef WS_SUPERVISOR_H
#define WS_SUPERVISOR_H

#include "cli.h"

/* Run the server as n worker processes; returns the process's exit code. */
int ws_supervisor_run(const ws_config_t *cfg, unsigned n, int argc, char **argv);

#endif
