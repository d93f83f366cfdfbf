#!/usr/bin/env bash
# install.sh — build, install and start ringsocket on this machine (run as root).
#
#   ./install.sh              build release binaries, install them, create the ringsock
#                             user, install /etc/ringsocket.json (never overwritten) and a
#                             systemd unit, start the server, print how to connect
#   ./install.sh --uninstall  stop the server and remove all of that but the config
#
# Idempotent: a second run with nothing changed changes nothing (files are compared
# before they are copied; a running server is left running). Without systemd the daemon
# is managed through its default PID file, /run/ringsocket/ringsocket.pid.
set -euo pipefail
cd "$(dirname "$0")"

PREFIX=/usr/local
BIN=$PREFIX/bin/ringsocket
CTL=$PREFIX/bin/ringsocketctl         # the operator's command line (talks to the daemon)
CLIENT=$PREFIX/bin/ringsocket-client  # a command-line WebSocket client
LIB=$PREFIX/lib/ringsocket
INCLUDE=$PREFIX/include/ringsocket   # headers for plugin authors (docs/apps.md)
HEADERS=(ringsocket.h ringsocket-v1/ringsocket.h ringsocket1/ringsocket.h)
CONF=/etc/ringsocket.json
UNIT=/etc/systemd/system/ringsocket.service
PIDFILE=/run/ringsocket/ringsocket.pid   # the daemon's default pid_file
PLUGINS=(libecho.so libecho_c.so libbroadcast.so libgroups.so libchat.so libdsock.so)
SHARE=$PREFIX/share/ringsocket        # the chat page

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "run as root (it installs to $PREFIX and /etc)"
have_systemd() { [[ -d /run/systemd/system ]]; }

running_pid() {
  local pid
  [[ -f $PIDFILE ]] && pid=$(cat "$PIDFILE") && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop_direct() {
  local pid
  pid=$(running_pid) || return 0
  say "stopping ringsocket (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$PIDFILE"
}

if [[ ${1:-} == --uninstall ]]; then
  if have_systemd && [[ -f $UNIT ]]; then
    systemctl disable --now ringsocket.service || true
    rm -f "$UNIT"
    systemctl daemon-reload
  fi
  stop_direct
  rm -f "$BIN" "$CTL" "$CLIENT"
  # Remove the ringsock user only if install.sh created it.
  if [[ -e $LIB/.created-user ]] && id ringsock >/dev/null 2>&1; then userdel ringsock; fi
  rm -rf "$LIB" "$INCLUDE" "$SHARE"
  say "uninstalled ($CONF is kept)"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: ./install.sh [--uninstall]"

# --- build ---------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo is needed (install Rust with rustup)"
if ! command -v cc >/dev/null; then
  say "installing gcc (the C example app is compiled by the build)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev
fi
say "building (cargo build --release)"
cargo build --release --workspace --locked --quiet

# --- install files -------------------------------------------------------------------
changed=0
put() { # put MODE SRC DST: copy only if different
  if ! cmp -s "$2" "$3"; then install -D -m "$1" "$2" "$3"; changed=1; say "installed $3"; fi
}
put 0755 target/release/ringsocket "$BIN"
for p in "${PLUGINS[@]}"; do put 0644 "target/release/$p" "$LIB/$p"; done
# ringsocketctl, headers and the page do not change what runs: installing them
# restarts nothing.
for tool in ringsocketctl ringsocket-client; do
  if ! cmp -s "target/release/$tool" "$PREFIX/bin/$tool"; then
    install -D -m 0755 "target/release/$tool" "$PREFIX/bin/$tool"
    say "installed $PREFIX/bin/$tool"
  fi
done
if ! cmp -s apps/chat/chat.html "$SHARE/chat.html"; then
  install -D -m 0644 apps/chat/chat.html "$SHARE/chat.html"
  say "installed $SHARE/chat.html"
fi
for h in "${HEADERS[@]}"; do
  if ! cmp -s "crates/abi/include/$h" "$INCLUDE/$h"; then
    install -D -m 0644 "crates/abi/include/$h" "$INCLUDE/$h"
    say "installed $INCLUDE/$h"
  fi
done

if [[ ! -e $CONF ]]; then
  sed "s#\"target/release/#\"$LIB/#" ringsocket.json > "$CONF.new"
  "$BIN" --check-config "$CONF.new" >/dev/null
  mv "$CONF.new" "$CONF"
  changed=1
  say "installed $CONF"
else
  "$BIN" --check-config "$CONF" >/dev/null || die "$CONF is not valid (see above); fix it or move it away"
fi

if ! id ringsock >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ringsock
  touch "$LIB/.created-user"
  say "created system user ringsock"
fi

# --- start ---------------------------------------------------------------------------
if have_systemd; then
  unit=$(cat <<UNIT
[Unit]
Description=ringsocket WebSocket server
After=network.target

[Service]
Type=simple
ExecStart=$BIN --foreground --config $CONF
ExecReload=/bin/kill -HUP \$MAINPID
Restart=on-failure
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
)
  if [[ ! -f $UNIT || $(cat "$UNIT") != "$unit" ]]; then
    printf '%s\n' "$unit" > "$UNIT"
    systemctl daemon-reload
    changed=1
  fi
  systemctl enable --quiet ringsocket.service
  if [[ $changed -eq 1 ]] || ! systemctl is-active --quiet ringsocket.service; then
    systemctl restart ringsocket.service
  fi
  say "ringsocket runs under systemd (systemctl status ringsocket; journalctl -u ringsocket)"
else
  if [[ $changed -eq 1 ]] || ! running_pid >/dev/null; then
    stop_direct
    # The daemon reports start-up errors here and exits non-zero if it cannot serve.
    "$BIN" --config "$CONF" || die "ringsocket did not start"
  fi
  say "ringsocket runs as pid $(cat "$PIDFILE") (no systemd here; it logs to syslog)"
fi
[[ $changed -eq 1 ]] || say "nothing changed"
say "connect to ws://127.0.0.1:8080/echo (echo, Rust), /echo-c (echo, C), /broadcast or /groups (see README)"
say "try it: echo hello | ringsocket-client ws://127.0.0.1:8080/echo"
say "chat: open file://$SHARE/chat.html in two browser windows"
say "operate it: ringsocketctl status (as root or a member of the ringsock group); status page: http://127.0.0.1:9108/"
say "app headers: -I $INCLUDE (ringsocket.h), -I $INCLUDE/ringsocket1 (RingSocket 1 apps); see docs/apps.md"
