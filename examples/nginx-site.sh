#!/usr/bin/env bash
# Try git-sidecar on one machine: a local upstream repository, git-sidecar
# polling it every second, and a real nginx serving the published symlink on
# 127.0.0.1. Pushes a new commit and shows the site change, with no nginx
# reload.
#
# Usage: examples/nginx-site.sh
#   GIT_SIDECAR=/path/to/git-sidecar skips the release build.
# Needs git, curl, python3 and nginx. Everything happens in a temporary
# directory, removed on exit with the processes started.
set -euo pipefail
# shellcheck source=examples/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_tools git curl python3 nginx
find_sidecar
setup_workdir

say "Creating an upstream repository with revision 1 of the site"
make_upstream
commit_and_push 1

say "Starting git-sidecar: syncs $UPSTREAM_URL every second into $WORK/root"
start_sidecar --period 1s
expect_link

say "Starting nginx with root $WORK/root/site"
start_nginx
expect_page 1
say "The worktree's .git file is not served"
expect_refused /.git
expect_refused /.git/config

say "Pushing revision 2 upstream"
commit_and_push 2
pushed_at=$(now_ms)

say "Waiting for git-sidecar's next poll to publish it"
wait_until "nginx to serve revision 2" page_shows "Hello from revision 2"
show "nginx served revision 2 $(($(now_ms) - pushed_at)) ms after the push"
expect_page 2
expect_link

say "Done: the site changed without touching nginx"
