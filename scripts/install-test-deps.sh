#!/bin/sh
# The Debian packages the test suite needs, installed only when missing:
# PostgreSQL's server binaries (tests/pgserver.py starts throwaway servers),
# useradd (agents run with --isolate-users create per-user accounts), and sshd
# and ip (tests/netns.py makes SSH hosts in network namespaces for shoal deploy),
# ping and tcpdump (the netUnicorn library's Ping and capture tasks run them),
# Graphviz's dot (shoal dataflow NET graphviz renders with it),
# and Chromium (tests/test_dashboard.py drives it with Playwright).
set -eu
missing=""
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
command -v useradd >/dev/null 2>&1 || missing="$missing passwd"
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing="$missing iproute2"
command -v ping >/dev/null 2>&1 || missing="$missing iputils-ping"
command -v tcpdump >/dev/null 2>&1 || [ -x /usr/sbin/tcpdump ] || missing="$missing tcpdump"
command -v dot >/dev/null 2>&1 || missing="$missing graphviz"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "the tests need:$missing; install them (as root): apt-get install$missing" >&2
    exit 1
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
