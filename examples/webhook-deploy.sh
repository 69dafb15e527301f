#!/usr/bin/env bash
# Try a webhook-triggered deploy on one machine: git-sidecar polls only once
# an hour, a real nginx serves the published symlink on 127.0.0.1, and a
# GitHub-style signed `push` event makes the new commit live within seconds.
# Unsigned and wrongly signed deliveries are refused (401) and change nothing.
#
# Usage: examples/webhook-deploy.sh
#   GIT_SIDECAR=/path/to/git-sidecar skips the release build.
# Needs git, curl, python3, nginx and openssl. Everything happens in a
# temporary directory, removed on exit with the processes started.
set -euo pipefail
# shellcheck source=examples/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The JSON GitHub sends for a push (the fields git-sidecar reads, and a few more).
write_push_event() {
  cat >"$WORK/push.json" <<JSON
{"ref":"refs/heads/main","before":"$BEFORE_SHA","after":"$HEAD_SHA","created":false,"deleted":false,"forced":false,"repository":{"full_name":"example/site","clone_url":"$UPSTREAM_URL","default_branch":"main"},"pusher":{"name":"Example Author"}}
JSON
}

# sign SECRET: GitHub's X-Hub-Signature-256 value for the event body.
sign() {
  printf 'sha256=%s' "$(openssl dgst -sha256 -hmac "$1" <"$WORK/push.json" | sed 's/^.*= //')"
}

# deliver [HEADER]: POSTs the event like GitHub does; sets CODE and prints
# the answer.
deliver() {
  local extra=()
  [ $# -eq 0 ] || extra=(-H "$1")
  CODE=$(curl_lo -o "$WORK/answer" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H 'User-Agent: GitHub-Hookshot/example' \
    -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: $(python3 -c 'import uuid; print(uuid.uuid4())')" \
    "${extra[@]}" --data-binary "@$WORK/push.json" "http://$SIDECAR_ADDR/webhook") ||
    die "the webhook request failed"
  show "HTTP $CODE $(tr -d '\n' <"$WORK/answer")"
}

expect_code() {
  [ "$CODE" = "$1" ] || die "expected HTTP $1, got $CODE"
}

syncs_so_far() {
  curl_lo -f "http://$SIDECAR_ADDR/metrics" | grep '^git_sync_count_total' | tr '\n' ' '
}

need_tools git curl python3 nginx openssl
find_sidecar
setup_workdir

say "Creating an upstream repository with revision 1 of the site"
make_upstream
commit_and_push 1

say "Starting git-sidecar: polls only every hour, listens for GitHub webhooks"
openssl rand -hex 20 >"$WORK/webhook-secret"
chmod 600 "$WORK/webhook-secret"
start_sidecar --period 1h --http-metrics --incoming-webhook-secret-file "$WORK/webhook-secret"

say "Starting nginx with root $WORK/root/site"
start_nginx
expect_page 1

say "Pushing revision 2 upstream (the next poll is an hour away)"
commit_and_push 2
write_push_event
expect_page 1
syncs_before=$(syncs_so_far)

say "Delivering the push event without a signature"
deliver
expect_code 401

say "Delivering it signed with the wrong secret"
deliver "X-Hub-Signature-256: $(sign not-the-secret)"
expect_code 401

say "Checking that neither started a sync (2 s later)"
# Waiting a little on purpose: a sync they had triggered would publish
# revision 2 well within this time.
sleep 2
expect_page 1
[ "$(syncs_so_far)" = "$syncs_before" ] || die "the sync counters moved: $(syncs_so_far)"
show "sync counters unchanged: $syncs_before"

say "Delivering it signed with the shared secret (X-Hub-Signature-256)"
delivered_at=$(now_ms)
deliver "X-Hub-Signature-256: $(sign "$(cat "$WORK/webhook-secret")")"
expect_code 202
wait_until "nginx to serve revision 2" page_shows "Hello from revision 2"
show "nginx served revision 2 $(($(now_ms) - delivered_at)) ms after the webhook"
expect_page 2
expect_link

say "git-sidecar's webhook metrics"
curl_lo -f "http://$SIDECAR_ADDR/metrics" | grep '^git_sidecar_webhook_requests_total' |
  while read -r line; do show "$line"; done

say "Done: deployed by webhook, no polling, no nginx reload"
