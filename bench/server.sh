#!/bin/bash
# bench/server.sh - start/stop a TLS test server on 127.0.0.1 for the benchmarks.
#
#   bench/server.sh start [nginx|s_server] [--tls 1.2|1.3|both] [--key ec|rsa]
#                          [--log] [--max-seconds S] [--dir DIR]
#       Generates a throwaway CA + "localhost" certificate into a temp dir,
#       starts the server on a free 127.0.0.1 port and prints shell
#       assignments (eval-able):  SERVER_DIR=... PORT=... CAFILE=... PID=...
#       --log: nginx writes "$ssl_protocol $ssl_session_reused" per request
#       to DIR/access.log ("r" = the server resumed the session).
#       --max-seconds: a watchdog stops the server after S seconds (default
#       3600), so a killed benchmark never leaves it running.
#   bench/server.sh stop DIR
#       Stops the server whose PID is recorded in DIR (by that PID only) and
#       removes DIR.
#
# nginx: 2 workers, ssl_session_cache shared:SSL:10m, session tickets on,
# TLSv1.2 + TLSv1.3 (or one of them with --tls), `return 200 "ok\n";`.
# s_server: `openssl s_server -www` (single process; its status page says
# "Reused" for a resumed session), session cache and tickets on.
set -euo pipefail

die() { echo "server.sh: $*" >&2; exit 1; }

free_port() {
    # Ask the kernel for a free port on 127.0.0.1 (tiny race, fine for a bench).
    for lua in lua5.4 lua5.1 luajit; do
        if command -v "$lua" >/dev/null 2>&1; then
            "$lua" -e 'local s = assert(require("socket").bind("127.0.0.1", 0))
                       local _, p = s:getsockname(); s:close(); print(p)' && return
        fi
    done
    die "no Lua with LuaSocket to find a free port"
}

make_certs() {
    dir=$1 key=$2
    case $key in
        ec)  kopt="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1" ;;
        rsa) kopt="-newkey rsa:2048" ;;
        *)   die "--key ec|rsa" ;;
    esac
    # shellcheck disable=SC2086
    openssl req -x509 -new $kopt -nodes -days 2 -subj "/CN=tlscache bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    # shellcheck disable=SC2086
    openssl req -new $kopt -nodes -subj "/CN=localhost" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1" > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/server.ext" \
        -out "$dir/server.crt" 2>/dev/null
}

wait_port() {
    port=$1 i=0
    while [ $i -lt 100 ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1; i=$((i + 1))
    done
    return 1
}

start() {
    kind=nginx tls=both key=ec dir='' log=0 max=3600
    while [ $# -gt 0 ]; do
        case $1 in
            nginx|s_server) kind=$1 ;;
            --tls) tls=$2; shift ;;
            --key) key=$2; shift ;;
            --dir) dir=$2; shift ;;
            --log) log=1 ;;
            --max-seconds) max=$2; shift ;;
            *) die "unknown argument $1" ;;
        esac
        shift
    done
    case $max in ''|*[!0-9]*) die "--max-seconds: whole seconds" ;; esac
    if [ "$max" -lt 1 ] || [ "$max" -gt 86400 ]; then die "--max-seconds 1..86400"; fi
    case $tls in
        1.2)  protos="TLSv1.2"; sproto="-tls1_2" ;;
        1.3)  protos="TLSv1.3"; sproto="-tls1_3" ;;
        both) protos="TLSv1.2 TLSv1.3"; sproto="" ;;
        *) die "--tls 1.2|1.3|both" ;;
    esac
    if [ -z "$dir" ]; then dir=$(mktemp -d "${TMPDIR:-/tmp}/tlsbench.XXXXXX"); fi
    mkdir -p "$dir"
    make_certs "$dir" "$key"
    port=$(free_port)

    case $kind in
    nginx)
        mkdir -p "$dir/tmp"
        access="access_log off;"
        if [ $log = 1 ]; then
            access="log_format reuse '\$ssl_protocol \$ssl_session_reused'; access_log $dir/access.log reuse;"
        fi
        cat > "$dir/nginx.conf" <<EOF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    $access
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port ssl;
        server_name localhost;
        ssl_certificate $dir/server.crt;
        ssl_certificate_key $dir/server.key;
        ssl_protocols $protos;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1h;
        ssl_session_tickets on;
        location / {
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
EOF
        nginx -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
            || { cat "$dir/error.log" >&2; die "nginx failed to start"; }
        i=0
        while [ ! -s "$dir/nginx.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        pid=$(cat "$dir/nginx.pid")
        ;;
    s_server)
        # shellcheck disable=SC2086
        openssl s_server -accept "127.0.0.1:$port" \
            -cert "$dir/server.crt" -key "$dir/server.key" $sproto -www -quiet \
            </dev/null >"$dir/s_server.log" 2>&1 &
        pid=$!
        echo "$pid" > "$dir/s_server.pid"
        ;;
    esac
    echo "$pid" > "$dir/pid"
    # Watchdog: stops the server after --max-seconds unless stop() ran first
    # (stop removes the pid file, which the watchdog checks).
    # shellcheck disable=SC2016  # expanded by the watchdog's own bash
    setsid bash -c 'sleep "$1"; [ -f "$2/pid" ] && kill -TERM "$3"' watchdog \
        "$max" "$dir" "$pid" </dev/null >/dev/null 2>&1 &
    echo $! > "$dir/watchdog.pid"
    wait_port "$port" || { stop "$dir"; die "$kind did not listen on $port"; }
    echo "SERVER_DIR=$dir"
    echo "PORT=$port"
    echo "CAFILE=$dir/ca.crt"
    echo "PID=$pid"
    echo "KIND=$kind"
}

stop() {
    dir=$1
    [ -f "$dir/pid" ] || die "no pid file in $dir"
    pid=$(cat "$dir/pid")
    if [ -f "$dir/watchdog.pid" ]; then
        kill -TERM -- "-$(cat "$dir/watchdog.pid")" 2>/dev/null || true  # its process group: bash + sleep
    fi
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    case $dir in
        */tlsbench.*) rm -rf "$dir" ;;   # only dirs we made ourselves
    esac
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
    start) start "$@" ;;
    stop)  [ $# -eq 1 ] || die "usage: server.sh stop DIR"; stop "$1" ;;
    *) echo "usage: $0 start [nginx|s_server] [--tls 1.2|1.3|both] [--key ec|rsa] [--log] [--max-seconds S] [--dir DIR] | stop DIR" >&2; exit 2 ;;
esac
