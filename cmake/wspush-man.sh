#!/bin/sh
# Write the wspush(1) man page to OUT from the binary's own --help, so that
# the page and the options cannot disagree: the OPTIONS section is --help's
# list, the rest is written here.  Usage: wspush-man.sh BIN VERSION OUT
set -eu
bin=$1 version=$2 out=$3
{
cat <<HEAD
.TH WSPUSH 1 "" "wspush $version" "User Commands"
.SH NAME
wspush \\- WebSocket server with a C core and Lua handlers
.SH SYNOPSIS
.B wspush
[\\fIoptions\\fR] \\fISCRIPT.lua\\fR
.br
.B wspush \\-\\-reload
\\fIPATH\\fR
.SH DESCRIPTION
.B wspush
serves HTTP and WebSocket connections; what it answers is written in Lua:
\\fISCRIPT.lua\\fR returns a table of routes (a WebSocket route is a table of
handlers such as \\fBopen\\fR, \\fBon_message\\fR and \\fBon_close\\fR; an HTTP
route is a function). The script is reloaded when it changes, and on
\\fBSIGHUP\\fR; connections stay open across reloads.
Sizes take a k, m or g suffix (1k = 1024 bytes).
.SH OPTIONS
HEAD
"$bin" --help | awk '
  /^ +-/ {
    if (opt != "") print_opt()
    line = $0; sub(/^ +/, "", line)
    # The option and its value end where two spaces start the help text.
    i = index(line, "  ")
    if (i == 0) { opt = line; help = "" } else { opt = substr(line, 1, i - 1); help = substr(line, i); sub(/^ +/, "", help) }
    next
  }
  /^ {20,}/ && opt != "" { t = $0; sub(/^ +/, "", t); help = (help == "" ? t : help " " t); next }
  END { if (opt != "") print_opt() }
  function esc(s) { gsub(/\\/, "\\\\", s); gsub(/-/, "\\-", s); return s }
  function print_opt() {
    print ".TP"
    o = opt
    # "-h, --help", "--name VALUE": names bold, values italic
    n = split(o, w, " ")
    s = ""
    for (k = 1; k <= n; k++) s = s (k > 1 ? " " : "") (w[k] ~ /^-/ ? "\\fB" : "\\fI") esc(w[k]) "\\fR"
    print s
    h = help; sub(/^\./, "\\\\\\&.", h)
    print esc(h)
  }'
cat <<'TAIL'
.SH SIGNALS
.TP
.B SIGTERM, SIGINT
Stop gracefully: close every WebSocket with 1001, run the script's
\fBon_shutdown\fR, exit 0 (a second signal closes at once).
.TP
.B SIGHUP
Reload the script (and the TLS certificate).
.TP
.B SIGUSR1
With \fB\-\-access\-log\fR \fIFILE\fR: open FILE again (after log rotation
moved it away); the supervisor passes it on to its workers.
.SH ENVIRONMENT
.TP
.B WSPUSH_BROKER
The broker's URLs, when neither \fB\-\-broker\fR nor \fB\-\-broker\-file\fR is given.
.TP
.B NOTIFY_SOCKET
Set by systemd for a \fBType=notify\fR service: wspush sends READY=1 once it
serves (every worker, with \fB\-\-workers\fR), RELOADING=1 and READY=1 around
a reload, STOPPING=1 on SIGTERM, each with a STATUS= line.
.SH FILES
The \fBwspush\fR Lua modules: \fIPREFIX/share/lua/5.4/wspush/\fR.
The shipped handlers and the browser page: \fIPREFIX/share/wspush/\fR.
.SH EXIT STATUS
0 after a graceful stop; 1 when the script or the setup is wrong at start
(one line on stderr with file:line); 2 for a wrong command line.
\fBwspush \-\-reload\fR: 0 when the new version serves, 1 when the previous
one keeps serving (the reason on stderr) or the server did not answer.
.SH SEE ALSO
The Lua API: \fIPREFIX/share/doc/wspush/api.md\fR, or docs/api.md in the source.
TAIL
} > "$out"
