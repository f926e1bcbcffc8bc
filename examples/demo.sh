#!/bin/sh
# make demo: start `openssl s_server -www` on a free 127.0.0.1 port with the
# throwaway test certificate, run examples/demo.lua against it, stop it.
LUA=${1:-lua5.4}
certs=build/certs
port=$($LUA -e 'local s = assert(require("socket").bind("127.0.0.1", 0)); local _, p = s:getsockname(); s:close(); print(p)') || exit 1
openssl s_server -quiet -www -accept "127.0.0.1:$port" -cert "$certs/server.pem" \
  -key "$certs/server.key" >build/demo-server.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
i=0
until $LUA -e "assert(require('socket').connect('127.0.0.1', $port)):close()" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
    echo "openssl s_server did not start:"; cat build/demo-server.log; exit 1
  fi
  sleep 0.05
done
echo "openssl s_server (pid $pid) listening on 127.0.0.1:$port"
$LUA examples/demo.lua localhost "$port" --cafile "$certs/ca.pem" --n "${DEMO_N:-50}"
