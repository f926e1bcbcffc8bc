#!/bin/sh
# Make sure the Debian packages that build, test and demo tlscache are here.
# As root, install what is missing; otherwise print the exact command.
PKGS="gcc make pkg-config openssl libssl-dev lua5.1 liblua5.1-0-dev lua5.4 liblua5.4-dev
luajit libluajit-5.1-dev lua-busted lua-socket luarocks nginx-light faketime gnutls-bin
valgrind cppcheck iproute2"
[ -n "$TLSCACHE_EXTRA_PKGS" ] && PKGS="$PKGS $TLSCACHE_EXTRA_PKGS"
missing=""
for p in $PKGS; do
  # nginx-light is one of several nginx flavours: any nginx binary will do
  if [ "$p" = nginx-light ] && command -v nginx >/dev/null 2>&1; then continue; fi
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
  case "$st" in *"ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing missing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends $missing >/tmp/tlscache-apt.log 2>&1 || {
    apt-get update -q >/tmp/tlscache-apt.log 2>&1
    apt-get install -y -q --no-install-recommends $missing >>/tmp/tlscache-apt.log 2>&1
  } || { tail -20 /tmp/tlscache-apt.log; echo "apt-get install failed"; exit 1; }
  # Debian starts nginx on port 80 when it installs it; the tests run their own
  if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1; fi
  exit 0
fi
echo "missing Debian packages; run as root:"
echo "  apt-get install$missing"
exit 1
