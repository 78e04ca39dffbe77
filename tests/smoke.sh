#!/usr/bin/env bash
# Smoke test of the release binary through grpcurl, the way an operator would use it.
#
# Starts target/release/identity-svc (or $IDENTITY_SVC_BIN) on a free port with a fresh data
# directory, then checks reflection, health, the operator token file, the error codes
# (UNAUTHENTICATED, INVALID_ARGUMENT with field violations, PERMISSION_DENIED) and walks the
# README's main flow: create an organization → accept the invitation from the mailbox → log in
# → create a custom role → invite a developer → assign the role → check a permission with its
# explanation → watch the change feed. Finally it checks that no secret reached the log, that
# metrics are served, and that SIGTERM shuts the server down cleanly. Then it starts the binary
# again with mTLS (a CA, server and client certificates made with openssl) and calls it with
# grpcurl's -cacert/-cert/-key; a client without a certificate is refused.
#
# Needs grpcurl (1.8.x), python3 and openssl on PATH; `.ci/run` provides grpcurl.
# Prints `smoke: N passed, M failed` and exits non-zero if anything failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${IDENTITY_SVC_BIN:-$ROOT/target/release/identity-svc}"
START_DEADLINE_SECS=20

for tool in grpcurl python3 openssl; do
    if ! command -v "$tool" >/dev/null; then
        echo "smoke: $tool is not on PATH (.ci/run installs grpcurl)" >&2
        exit 2
    fi
done
if [[ ! -x "$BIN" ]]; then
    echo "smoke: $BIN not found; run: cargo build --release -p identity-svc" >&2
    exit 2
fi

WORK="$(mktemp -d)"
DATA="$WORK/data"
LOG="$WORK/server.log"
MAILBOX="$DATA/mailbox"
SERVER_PID=""

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
PORT="$(free_port)"
METRICS_PORT="$(free_port)"
ADDR="127.0.0.1:$PORT"

PASSED=0
FAILED=0

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if ((FAILED > 0)) && [[ -f "$LOG" ]]; then
        echo "--- last lines of the server log ($LOG) ---"
        tail -n 40 "$LOG" || true
        if [[ -f "${TLS_LOG:-}" ]]; then
            echo "--- last lines of the TLS server log ($TLS_LOG) ---"
            tail -n 20 "$TLS_LOG" || true
        fi
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

pass() {
    PASSED=$((PASSED + 1))
    echo "  ok    $1"
}

fail() {
    FAILED=$((FAILED + 1))
    echo "  FAIL  $1"
    if [[ -n "${2:-}" ]]; then
        local line
        while IFS= read -r line; do
            echo "        | $line"
        done <<<"$2"
    fi
}

# rpc TOKEN METHOD JSON [grpcurl options...]: calls METHOD; sets OUT (stdout+stderr) and RC.
rpc() {
    local token="$1" method="$2" data="$3"
    shift 3
    local args=(-plaintext -max-time 10 "$@")
    if [[ -n "$token" ]]; then
        args+=(-H "authorization: Bearer $token")
    fi
    if OUT="$(grpcurl "${args[@]}" -d "$data" "$ADDR" "$method" 2>&1)"; then
        RC=0
    else
        RC=$?
    fi
}

# expect_ok NAME TOKEN METHOD JSON: the call succeeds.
expect_ok() {
    local name="$1"
    shift
    rpc "$@"
    if ((RC == 0)); then
        pass "$name"
    else
        fail "$name" "$OUT"
    fi
}

# expect_code NAME CODE TOKEN METHOD JSON: the call fails with gRPC code CODE (grpcurl's name).
expect_code() {
    local name="$1" code="$2"
    shift 2
    rpc "$@"
    if ((RC != 0)) && grep -q "Code: $code\$" <<<"$OUT"; then
        pass "$name"
    else
        fail "$name (expected $code)" "$OUT"
    fi
}

# contains NAME TEXT NEEDLE...: TEXT contains every NEEDLE.
contains() {
    local name="$1" text="$2" needle
    shift 2
    for needle in "$@"; do
        if ! grep -qF -- "$needle" <<<"$text"; then
            fail "$name (missing: $needle)" "$text"
            return
        fi
    done
    pass "$name"
}

# json EXPR: evaluates the Python expression EXPR on the JSON object in $OUT (as `j`).
json() {
    python3 -c 'import json, sys; j = json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$OUT"
}

# invitation_token EMAIL: the token of the newest invitation sent to EMAIL.
invitation_token() {
    local file
    file="$(grep -l -x "To: $1" "$MAILBOX"/*.eml 2>/dev/null | xargs -r ls -t | head -n 1)"
    if [[ -n "$file" ]]; then
        sed -n 's/^invitation_token: //p' "$file"
    fi
}

echo "smoke: starting $BIN on $ADDR (data in $DATA)"
# The server must see only this test's configuration, not the caller's IDENTITY_* variables.
mapfile -t inherited < <(compgen -e | grep '^IDENTITY_' || true)
env "${inherited[@]/#/--unset=}" RUST_LOG=info "$BIN" \
    --listen "$ADDR" \
    --data-dir "$DATA" \
    --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --log-format json >"$LOG" 2>&1 &
SERVER_PID=$!

# --- start-up: wait for health with a deadline -------------------------------------------------
deadline=$((SECONDS + START_DEADLINE_SECS))
until grpcurl -plaintext -max-time 1 "$ADDR" grpc.health.v1.Health/Check 2>/dev/null |
    grep -q '"SERVING"'; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        FAILED=1
        echo "smoke: the server exited during start-up" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        FAILED=1
        echo "smoke: the server was not SERVING within ${START_DEADLINE_SECS}s" >&2
        exit 1
    fi
    sleep 0.2
done
echo "smoke: server is up"

# --- operations: reflection, health, operator token ----------------------------------------
if OUT="$(grpcurl -plaintext "$ADDR" list 2>&1)"; then
    contains "reflection lists every identity.v1 service, health and reflection" "$OUT" \
        identity.v1.Organizations identity.v1.Stages identity.v1.Apps identity.v1.Users \
        identity.v1.Roles identity.v1.Access identity.v1.Groups identity.v1.ServiceAccounts \
        identity.v1.Audit grpc.health.v1.Health grpc.reflection.v1alpha.ServerReflection
else
    fail "reflection lists the services" "$OUT"
fi

if OUT="$(grpcurl -plaintext "$ADDR" describe identity.v1.Users 2>&1)"; then
    contains "describe prints the operator manual of identity.v1.Users" "$OUT" \
        "rpc InviteUser" "Needs:"
else
    fail "describe identity.v1.Users" "$OUT"
fi

rpc "" grpc.health.v1.Health/Check '{"service": "identity.v1.Users"}'
contains "health of identity.v1.Users is SERVING" "$OUT" '"status": "SERVING"'
rpc "" grpc.health.v1.Health/Check '{"service": "liveness"}'
contains "liveness is SERVING" "$OUT" '"status": "SERVING"'

TOKEN_FILE="$DATA/operator-token"
if [[ -f "$TOKEN_FILE" ]] && [[ "$(stat -c %a "$TOKEN_FILE")" == 600 ]]; then
    pass "operator token generated in $TOKEN_FILE with mode 600"
else
    fail "operator token file with mode 600" "$(ls -l "$DATA" 2>&1)"
fi
OPERATOR="$(tr -d '[:space:]' <"$TOKEN_FILE" 2>/dev/null || true)"

# --- error codes --------------------------------------------------------------------------------
expect_code "no token is UNAUTHENTICATED" Unauthenticated \
    "" identity.v1.Organizations/ListOrganizations '{}'
expect_code "an unknown token is UNAUTHENTICATED" Unauthenticated \
    "odc_op_not_a_real_token" identity.v1.Organizations/ListOrganizations '{}'

expect_code "bad fields are INVALID_ARGUMENT" InvalidArgument \
    "$OPERATOR" identity.v1.Organizations/CreateOrganization \
    '{"organization": {"display_name": ""}, "first_administrator_email": "not-an-email"}'
contains "INVALID_ARGUMENT details name every bad field (google.rpc.BadRequest)" "$OUT" \
    google.rpc.BadRequest '"field":"organization.display_name"' '"field":"first_administrator_email"'

# --- main flow ----------------------------------------------------------------------------------
ADMIN_EMAIL="admin@example.com"
DEV_EMAIL="dev@example.com"
PASSWORD="Correct-Horse-42"

expect_ok "the operator creates an organization" \
    "$OPERATOR" identity.v1.Organizations/CreateOrganization \
    "{\"organization\": {\"display_name\": \"Smoke Test Inc\"}, \"first_administrator_email\": \"$ADMIN_EMAIL\"}"
ORG="$(json 'j["name"]' 2>/dev/null || true)"
if [[ "$ORG" == organizations/* ]]; then
    pass "the organization has a resource name ($ORG)"
else
    fail "the organization has a resource name" "$OUT"
    ORG="organizations/00000000-0000-0000-0000-000000000000"
fi

expect_code "the operator cannot read inside an organization (PERMISSION_DENIED)" \
    PermissionDenied "$OPERATOR" identity.v1.Stages/ListStages "{\"parent\": \"$ORG\"}"

ADMIN_INVITATION="$(invitation_token "$ADMIN_EMAIL")"
if [[ "$ADMIN_INVITATION" == odc_inv_* ]]; then
    pass "the first administrator's invitation is in the mailbox"
else
    fail "the first administrator's invitation is in the mailbox" "$(ls -l "$MAILBOX" 2>&1)"
fi

expect_code "a weak password is refused" InvalidArgument \
    "" identity.v1.Users/AcceptInvitation \
    "{\"invitation_token\": \"$ADMIN_INVITATION\", \"password\": \"short\"}"
expect_ok "the administrator accepts the invitation" \
    "" identity.v1.Users/AcceptInvitation \
    "{\"invitation_token\": \"$ADMIN_INVITATION\", \"password\": \"$PASSWORD\", \"display_name\": \"Ada Admin\"}"
contains "the administrator is ACTIVE" "$OUT" '"state": "ACTIVE"'

expect_ok "the administrator logs in" \
    "" identity.v1.Users/Login \
    "{\"organization\": \"$ORG\", \"email\": \"$ADMIN_EMAIL\", \"password\": \"$PASSWORD\"}"
ADMIN="$(json 'j["sessionToken"]' 2>/dev/null || true)"

expect_ok "the administrator lists the stages" \
    "$ADMIN" identity.v1.Stages/ListStages "{\"parent\": \"$ORG\"}"
contains "the organization has Development, QA and Production" "$OUT" \
    "$ORG/stages/development" "$ORG/stages/qa" "$ORG/stages/production"

expect_ok "the administrator creates a custom role" \
    "$ADMIN" identity.v1.Roles/CreateRole \
    "{\"parent\": \"$ORG\", \"role\": {\"display_name\": \"Dev Changer\", \"grants\": [{\"permission\": \"asset.change\", \"stages\": [\"$ORG/stages/development\"]}]}}"
ROLE="$(json 'j["name"]' 2>/dev/null || true)"

expect_ok "the administrator invites a Developer" \
    "$ADMIN" identity.v1.Users/InviteUser \
    "{\"parent\": \"$ORG\", \"email\": \"$DEV_EMAIL\", \"organization_role\": \"$ORG/roles/developer\"}"
DEV_USER="$(json 'j["name"]' 2>/dev/null || true)"
contains "the developer is INVITED" "$OUT" '"state": "INVITED"'

DEV_INVITATION="$(invitation_token "$DEV_EMAIL")"
expect_ok "the developer accepts the invitation" \
    "" identity.v1.Users/AcceptInvitation \
    "{\"invitation_token\": \"$DEV_INVITATION\", \"password\": \"$PASSWORD\"}"

expect_ok "the administrator assigns the custom role to the developer" \
    "$ADMIN" identity.v1.Access/AssignRole \
    "{\"parent\": \"$ORG\", \"principal\": \"$DEV_USER\", \"role\": \"$ROLE\", \"scope\": {\"organization\": true}}"

expect_ok "CheckPermission in Development" \
    "$ADMIN" identity.v1.Access/CheckPermission \
    "{\"parent\": \"$ORG\", \"principal\": \"$DEV_USER\", \"permission\": \"asset.debug\", \"stage\": \"$ORG/stages/development\"}"
contains "asset.debug is allowed in Development through asset.change" "$OUT" \
    '"allowed": true' "$ROLE" '"asset.change"' '"asset.debug"'

expect_ok "CheckPermission in Production" \
    "$ADMIN" identity.v1.Access/CheckPermission \
    "{\"parent\": \"$ORG\", \"principal\": \"$DEV_USER\", \"permission\": \"asset.change\", \"stage\": \"$ORG/stages/production\"}"
if ! grep -q '"allowed": true' <<<"$OUT" && grep -q '"denialReason"' <<<"$OUT"; then
    pass "asset.change is denied in Production, with a reason"
else
    fail "asset.change is denied in Production, with a reason" "$OUT"
fi

expect_ok "the developer logs in" \
    "" identity.v1.Users/Login \
    "{\"organization\": \"$ORG\", \"email\": \"$DEV_EMAIL\", \"password\": \"$PASSWORD\"}"
DEV="$(json 'j["sessionToken"]' 2>/dev/null || true)"
expect_code "the developer cannot create roles (PERMISSION_DENIED)" PermissionDenied \
    "$DEV" identity.v1.Roles/CreateRole \
    "{\"parent\": \"$ORG\", \"role\": {\"display_name\": \"Sneaky\", \"grants\": [{\"permission\": \"roles.manage\"}]}}"

# A stream: grpcurl prints the replayed events, then stops at -max-time (DeadlineExceeded).
rpc "$ADMIN" identity.v1.Audit/WatchChanges "{\"parent\": \"$ORG\", \"after_sequence\": 0}" \
    -max-time 3
contains "WatchChanges replays the change events in order" "$OUT" \
    '"sequence": "1"' '"action": "role.created"' '"action": "role_assignment.created"'

# --- operations: secrets, metrics, shutdown -----------------------------------------------------
leaked=""
for secret in "$OPERATOR" "$ADMIN_INVITATION" "$DEV_INVITATION" "$ADMIN" "$DEV" "$PASSWORD"; do
    if [[ -n "$secret" ]] && grep -qF -- "$secret" "$LOG"; then
        leaked+="${secret:0:12}... "
    fi
done
if [[ -z "$leaked" ]]; then
    pass "no token or password appears in the server log"
else
    fail "secrets leaked into the server log: $leaked"
fi

if METRICS="$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$METRICS_PORT/metrics" 2>&1)"; then
    contains "Prometheus metrics count the calls" "$METRICS" \
        'grpc_requests_total{method="/identity.v1.Users/Login",code="0"}'
    # The domain series the alerts and the dashboard of ops/ read (README, Operations).
    for series in identity_commit_batch_size_count 'identity_commit_duration_seconds_count{outcome="ok"}' \
        'identity_token_cache_lookups_total{result=' 'db_pool_connections{state="idle"}' \
        db_pool_max_connections 'service_dependency_up{dependency="database"} 1'; do
        contains "metrics: $series" "$METRICS" "$series"
    done
else
    fail "Prometheus metrics are served" "$METRICS"
fi

kill -TERM "$SERVER_PID"
deadline=$((SECONDS + 20))
while kill -0 "$SERVER_PID" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    fail "SIGTERM stops the server within 20s"
else
    if wait "$SERVER_PID"; then
        pass "SIGTERM stops the server cleanly (exit 0)"
    else
        fail "SIGTERM stops the server cleanly (exit status $?)"
    fi
    SERVER_PID=""
fi
contains "shutdown reports NOT_SERVING before draining" "$(cat "$LOG")" "NOT_SERVING"

# --- TLS: the README's openssl recipe, mTLS, grpcurl with -cacert/-cert/-key -------------------
PKI="$WORK/pki"
mkdir -p "$PKI"
# make_cert NAME CN EXTENSIONS: NAME.key and NAME.pem signed by the CA.
make_cert() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
    printf '%b' "$3" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
        -CAcreateserial -days 1 -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=smoke CA" -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
make_cert server identity "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
make_cert client smoke-client "extendedKeyUsage=clientAuth"

TLS_PORT="$(free_port)"
TLS_ADDR="127.0.0.1:$TLS_PORT"
TLS_LOG="$WORK/server-tls.log"
env "${inherited[@]/#/--unset=}" RUST_LOG=info "$BIN" \
    --listen "$TLS_ADDR" \
    --data-dir "$WORK/data-tls" \
    --tls-cert-file "$PKI/server.pem" \
    --tls-key-file "$PKI/server.key" \
    --tls-client-ca-file "$PKI/ca.pem" \
    --log-format json >"$TLS_LOG" 2>&1 &
SERVER_PID=$!
TLS_ARGS=(-cacert "$PKI/ca.pem" -cert "$PKI/client.pem" -key "$PKI/client.key" -max-time 5)
deadline=$((SECONDS + START_DEADLINE_SECS))
until OUT="$(grpcurl "${TLS_ARGS[@]}" "$TLS_ADDR" grpc.health.v1.Health/Check 2>&1)" &&
    grep -q '"SERVING"' <<<"$OUT"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null || ((SECONDS >= deadline)); then
        break
    fi
    sleep 0.2
done
contains "grpcurl -cacert -cert -key: health over mTLS is SERVING" "$OUT" '"SERVING"'
contains "the start-up line says mTLS" "$(cat "$TLS_LOG")" '"transport":"mtls"'
if OUT="$(grpcurl "${TLS_ARGS[@]}" "$TLS_ADDR" list 2>&1)"; then
    contains "reflection over mTLS lists identity.v1.Users" "$OUT" identity.v1.Users
else
    fail "reflection over mTLS" "$OUT"
fi
if OUT="$(grpcurl -cacert "$PKI/ca.pem" -max-time 5 "$TLS_ADDR" list 2>&1)"; then
    fail "a client without a certificate is refused under mTLS" "$OUT"
else
    pass "a client without a certificate is refused under mTLS"
fi
if OUT="$(grpcurl -plaintext -max-time 5 "$TLS_ADDR" list 2>&1)"; then
    fail "a plain-text client is refused by the TLS server" "$OUT"
else
    pass "a plain-text client is refused by the TLS server"
fi
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

echo "smoke: $PASSED passed, $FAILED failed"
((FAILED == 0))
