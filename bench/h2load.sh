#!/bin/bash
# HTTP/2 against HTTP/1.1 on hello, with h2load (Debian's nghttp2-client):
#
#   bench/h2load.sh VENV [SERVER ...]      SERVER: ferrule-embedded ferrule-daemon granian
#
# Each server (1 process, 8 threads, pinned to CPU 0) answers bench/apps/hello.py in three
# ways: h2 over TLS (ALPN), HTTP/1.1 over TLS, and h2c with prior knowledge. h2load runs
# on CPU 1 with 32 clients for 10 s after a 2 s warm-up: 10 streams at once per client on
# HTTP/2, one request at a time per connection on HTTP/1.1 (keep-alive). Prints req/s.
# Ferrule comes from VENV (--http2 --https-port); Granian from bench/.venv (installed
# there when missing), with --http 2 for HTTP/2 and --http 1 for HTTP/1.1.
set -euo pipefail
VENV=$1; shift
SERVERS=${*:-ferrule-embedded ferrule-daemon granian}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(mktemp -d)
DURATION=${DURATION:-10}

if ! command -v h2load >/dev/null; then
    apt-get install -y -qq nghttp2-client || { apt-get update -qq && apt-get install -y -qq nghttp2-client; }
fi
if [[ " $SERVERS " == *" granian "* ]] && ! "$HERE/.venv/bin/granian" --version >/dev/null 2>&1; then
    [ -x "$HERE/.venv/bin/python" ] || python3 -m venv "$HERE/.venv"
    "$HERE/.venv/bin/python" -m pip install --quiet --disable-pip-version-check granian
fi
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$ROOT/site.key" -out "$ROOT/site.crt" 2>/dev/null

# start SERVER PROTOCOL PORT TLS_PORT: starts the server in the background, sets PID.
start() {
    local server=$1 protocol=$2 port=$3 tls_port=$4
    case $server in
    ferrule-*)
        local mode=""; [ "$server" = ferrule-embedded ] && mode=--embedded-mode
        # shellcheck disable=SC2086
        taskset -c 0 "$VENV/bin/python" -m ferrule start-server "$HERE/apps/hello.py" \
            --processes 1 --threads 8 --host 127.0.0.1 --port "$port" $mode \
            --https-port "$tls_port" --ssl-certificate "$ROOT/site" --http2 \
            --server-root "$ROOT/server-$port" >"$ROOT/server-$port.log" 2>&1 &
        ;;
    granian)
        local http=2 tls=(--ssl-certificate "$ROOT/site.crt" --ssl-keyfile "$ROOT/site.key")
        [ "$protocol" = h1 ] && http=1
        [ "$protocol" = h2c ] && tls=()
        [ "$protocol" = h2c ] && tls_port=$port
        taskset -c 0 "$HERE/.venv/bin/granian" --interface wsgi --workers 1 \
            --blocking-threads 8 --host 127.0.0.1 --port "$tls_port" --http "$http" \
            "${tls[@]}" --working-dir "$HERE/apps" --no-access-log --log-level warning \
            hello:application >"$ROOT/server-$port.log" 2>&1 &
        ;;
    esac
    PID=$!
}

# The URL and h2load options of each protocol.
url() { [ "$1" = h2c ] && echo "http://127.0.0.1:$2/" || echo "https://127.0.0.1:$3/"; }
options() { [ "$1" = h1 ] && echo "--h1 -m 1" || echo "-m 10"; }

printf '%-18s %-8s %12s\n' server protocol req/s
for server in $SERVERS; do
    for protocol in h2 h1 h2c; do
        port=$((20000 + RANDOM % 10000)); tls_port=$((port + 1))
        start "$server" "$protocol" "$port" "$tls_port"
        target=$(url "$protocol" "$port" "$tls_port")
        for _ in $(seq 200); do
            curl -sk -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$port/" 2>/dev/null && break
            curl -sk -o /dev/null "$target" && break
            sleep 0.1
        done
        # shellcheck disable=SC2046
        result=$(taskset -c 1 h2load -c 32 $(options "$protocol") --warm-up-time 2 \
            -D "$DURATION" "$target" 2>&1 | grep -E '^finished in' || true)
        kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
        rps=$(echo "$result" | sed -E 's/.*, ([0-9.]+) req\/s.*/\1/')
        printf '%-18s %-8s %12s\n' "$server" "$protocol" "${rps:-failed}"
    done
done
rm -rf "$ROOT"
