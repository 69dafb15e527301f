# Shared by the example scripts in this directory (sourced, not run): tool
# checks, the work directory and its cleanup, a local upstream repository,
# starting git-sidecar and nginx on 127.0.0.1, and bounded waits.
#
# Everything listens on and talks to loopback only. Everything written goes
# under one `mktemp -d` directory, removed on exit together with the
# processes started here. Set GIT_SIDECAR to a built binary to skip the
# `cargo build --release`; NGINX to choose the nginx binary.

EXAMPLES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$EXAMPLES_DIR/.." && pwd)
# Upper bound, in seconds, of every "wait until" below.
WAIT_SECONDS=${WAIT_SECONDS:-30}
PIDS=()
NAMES=()

say() { printf '\n==> %s\n' "$*"; }
show() { printf '    %s\n' "$*"; }
die() {
  printf '\nFAILED: %s\n' "$*" >&2
  exit 1
}

# A GITSYNC_*/GIT_SYNC_* variable in the caller's environment would change
# the sidecar's behaviour behind the example's back.
clear_sidecar_env() {
  local var
  for var in $(compgen -e); do
    case $var in GITSYNC_* | GIT_SYNC_* | GIT_REPO) unset "$var" ;; esac
  done
}

# Sets NGINX: $NGINX, else nginx on PATH, else /usr/sbin/nginx (often not on
# a non-root user's PATH). Fails if that is not an executable.
find_nginx() {
  NGINX=${NGINX:-$(command -v nginx || true)}
  if [ -z "$NGINX" ] && [ -x /usr/sbin/nginx ]; then NGINX=/usr/sbin/nginx; fi
  [ -n "$NGINX" ] && [ -x "$NGINX" ]
}

# need_tools TOOL...: fails naming every missing tool (on Debian/Ubuntu each
# one's package has the tool's name).
need_tools() {
  local missing=() tool
  for tool in "$@"; do
    if [ "$tool" = nginx ]; then
      find_nginx || missing+=(nginx)
    else
      command -v "$tool" >/dev/null || missing+=("$tool")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing ${missing[*]}: install with 'apt-get install ${missing[*]}' (Debian/Ubuntu)"
  fi
}

# Sets SIDECAR_BIN: $GIT_SIDECAR, else a release build of this checkout.
find_sidecar() {
  if [ -n "${GIT_SIDECAR:-}" ]; then
    [ -x "$GIT_SIDECAR" ] || die "GIT_SIDECAR=$GIT_SIDECAR is not an executable file"
    SIDECAR_BIN=$GIT_SIDECAR
    return
  fi
  command -v cargo >/dev/null ||
    die "cargo not found: install Rust (https://rustup.rs), or set GIT_SIDECAR to a git-sidecar binary"
  say "Building git-sidecar (cargo build --release; the first build takes a few minutes)"
  (cd "$REPO_ROOT" && cargo build --release -q) || die "cargo build --release failed"
  local target=${CARGO_TARGET_DIR:-target}
  case $target in /*) ;; *) target=$REPO_ROOT/$target ;; esac
  SIDECAR_BIN=$target/release/git-sidecar
  [ -x "$SIDECAR_BIN" ] || die "the build did not produce $SIDECAR_BIN"
}

setup_workdir() {
  clear_sidecar_env
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/git-sidecar-example.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

cleanup() {
  local status=$?
  set +e
  local i
  for i in "${!PIDS[@]}"; do stop_process "${PIDS[$i]}"; done
  [ "$status" -eq 0 ] || show_logs >&2
  rm -rf "$WORK"
  exit "$status"
}

# SIGTERM (both git-sidecar and nginx stop cleanly on it), SIGKILL after 10 s.
stop_process() {
  local pid=$1 tries=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ $tries -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

show_logs() {
  local log
  for log in "$WORK/sidecar.log" "$WORK/nginx/error.log"; do
    [ -f "$log" ] || continue
    printf '\n--- last lines of %s ---\n' "$log"
    tail -n 25 "$log"
  done
}

track() {
  PIDS+=("$1")
  NAMES+=("$2")
}

# Fails (with the logs, via cleanup) if a process started here has exited.
check_alive() {
  local i
  for i in "${!PIDS[@]}"; do
    kill -0 "${PIDS[$i]}" 2>/dev/null || die "${NAMES[$i]} exited unexpectedly"
  done
}

# wait_until WHAT COMMAND...: runs COMMAND until it succeeds, at most
# WAIT_SECONDS; fails naming WHAT.
wait_until() {
  local what=$1 deadline=$((SECONDS + WAIT_SECONDS))
  shift
  until "$@"; do
    check_alive
    [ $SECONDS -lt $deadline ] || die "timed out after ${WAIT_SECONDS}s waiting for $what"
    sleep 0.2
  done
}

# git isolated from the user's and the system's configuration.
g() {
  GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 git \
    -c user.name="Example Author" -c user.email=author@example.invalid \
    -c commit.gpgsign=false "$@"
}

# The "forge": a bare repository, and a clone to commit in and push from.
make_upstream() {
  UPSTREAM_URL=file://$WORK/upstream.git
  g init -q --bare -b main "$WORK/upstream.git"
  g init -q -b main "$WORK/checkout"
  g -C "$WORK/checkout" remote add origin "$UPSTREAM_URL"
}

# commit_and_push N: revision N of the site, pushed upstream. Sets
# BEFORE_SHA (empty the first time) and HEAD_SHA.
commit_and_push() {
  local n=$1 dir=$WORK/checkout
  BEFORE_SHA=$(g -C "$dir" rev-parse -q --verify HEAD || true)
  printf '<!doctype html>\n<title>Example site</title>\n<h1>Hello from revision %s</h1>\n' "$n" \
    >"$dir/index.html"
  g -C "$dir" add index.html
  g -C "$dir" commit -q -m "Revision $n"
  g -C "$dir" push -q origin main
  HEAD_SHA=$(g -C "$dir" rev-parse HEAD)
  show "pushed revision $n: $HEAD_SHA"
}

curl_lo() { curl --noproxy '*' -sS --max-time 5 "$@"; }
http_ok() { curl_lo -f -o /dev/null "$1" 2>/dev/null; }

# start_sidecar EXTRA_FLAGS...: git-sidecar on 127.0.0.1 with an OS-chosen
# port (read back from its log), publishing <root>/site; returns once
# /readyz answers 200, i.e. the first commit is published.
start_sidecar() {
  local args=(--repo "$UPSTREAM_URL" --root "$WORK/root" --link site --http-bind 127.0.0.1:0 "$@")
  show "git-sidecar ${args[*]}"
  "$SIDECAR_BIN" "${args[@]}" </dev/null >/dev/null 2>"$WORK/sidecar.log" &
  track $! git-sidecar
  wait_until "git-sidecar's 'serving HTTP' log line" read_sidecar_address
  wait_until "http://$SIDECAR_ADDR/readyz to answer 200" http_ok "http://$SIDECAR_ADDR/readyz"
  show "ready: http://$SIDECAR_ADDR/readyz answers 200"
}

read_sidecar_address() {
  SIDECAR_ADDR=$(grep -m1 '"serving HTTP"' "$WORK/sidecar.log" | grep -o '"address":"[^"]*"' | cut -d'"' -f4)
  [ -n "$SIDECAR_ADDR" ]
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nginx (master + 1 worker) on 127.0.0.1:NGINX_PORT serving <root>/site,
# with the configuration generated from nginx.conf.template.
start_nginx() {
  local dir=$WORK/nginx user=''
  mkdir -p "$dir"
  NGINX_PORT=$(free_port)
  # As root, nginx would run its workers as "nobody", who cannot enter the
  # 0700 work directory: keep them as the invoking user.
  [ "$(id -u)" -ne 0 ] || user="user $(id -un) $(id -gn);"
  sed -e "s|@USER_DIRECTIVE@|$user|" -e "s|@NGINX_DIR@|$dir|g" -e "s|@PORT@|$NGINX_PORT|g" \
    -e "s|@SITE@|$WORK/root/site|g" "$EXAMPLES_DIR/nginx.conf.template" >"$dir/nginx.conf"
  local cmd=("$NGINX" -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf")
  "${cmd[@]}" -t -q 2>>"$dir/error.log" || die "nginx rejected the generated $dir/nginx.conf"
  show "${cmd[*]}"
  "${cmd[@]}" </dev/null >/dev/null 2>>"$dir/error.log" &
  track $! nginx
  wait_until "nginx to answer on 127.0.0.1:$NGINX_PORT" http_ok "http://127.0.0.1:$NGINX_PORT/"
}

# The <h1> of the page nginx serves.
page_heading() {
  curl_lo -f "http://127.0.0.1:$NGINX_PORT/" | sed -n 's:.*<h1>\(.*\)</h1>.*:\1:p'
}

page_shows() { [ "$(page_heading 2>/dev/null)" = "$1" ]; }

# Prints what nginx serves, and fails unless it is revision N.
expect_page() {
  local want="Hello from revision $1" got
  got=$(page_heading) || die "nginx did not answer http://127.0.0.1:$NGINX_PORT/"
  show "GET http://127.0.0.1:$NGINX_PORT/ -> $got"
  [ "$got" = "$want" ] || die "nginx serves '$got', expected '$want'"
}

# Prints nginx's answer to GET PATH, and fails unless it is 403 or 404
# (the .git file of a worktree must never be served).
expect_refused() {
  local code
  code=$(curl_lo -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NGINX_PORT$1") ||
    die "nginx did not answer http://127.0.0.1:$NGINX_PORT$1"
  show "GET $1 -> HTTP $code"
  case "$code" in 403 | 404) ;; *) die "nginx served $1 (HTTP $code)" ;; esac
}

# Prints the published link, and fails unless it points at HEAD_SHA.
expect_link() {
  local target
  target=$(readlink "$WORK/root/site") || die "$WORK/root/site is not a symlink"
  show "root/site -> $target"
  [ "$(basename "$target")" = "$HEAD_SHA" ] || die "the link does not point at $HEAD_SHA"
}

now_ms() { date +%s%3N; }
