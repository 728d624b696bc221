#!/usr/bin/env bash
# test_systemd_units.sh BUILD SRC - checks systemd/mtld.{service,sysusers,tmpfiles}
# without a running systemd:
#   - `systemd-analyze verify` accepts the unit (ExecStart pointed at the built
#     binary, since verify checks the command exists) with no message about it;
#   - `systemd-analyze security --offline=true` rates its exposure <= 2.0;
#   - systemd-sysusers creates user and group mtld in a scratch root and
#     systemd-tmpfiles creates the state directories there (0750 mtld:mtld).
# Exit 77 (skip) when systemd-analyze is not installed.
set -euo pipefail
BUILD=$(cd "${1:?usage: $0 BUILD SRC}" && pwd)
SRC=$(cd "${2:?usage: $0 BUILD SRC}" && pwd)
MAX_EXPOSURE=2.0

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze not installed (Debian package systemd)"
  exit 77
fi

fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

tmp=$(mktemp -d /tmp/mtld-units-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

unit_src=$SRC/systemd/mtld.service
[ -x "$BUILD/mtld" ] || { echo "FAIL: $BUILD/mtld not built"; exit 1; }

# The settings the daemon's code relies on must be there as written.
for line in 'Type=notify' 'NotifyAccess=main' 'ExecStart=/usr/bin/mtld -c /etc/mtld/mtld.conf' \
  'ExecReload=/bin/kill -HUP $MAINPID' 'WatchdogSec=30s' 'User=mtld' 'StateDirectory=mtld' \
  'ProtectSystem=strict' 'LimitNOFILE=65536'; do
  if grep -qxF -- "$line" "$unit_src"; then ok "unit has $line"; else bad "unit lacks $line"; fi
done

# verify checks that ExecStart exists: point it at the built binary.
unit=$tmp/mtld.service
sed "s|^ExecStart=/usr/bin/mtld |ExecStart=$BUILD/mtld |" "$unit_src" >"$unit"
grep -q "^ExecStart=$BUILD/mtld " "$unit" || bad "could not rewrite ExecStart"

set +e
out=$(systemd-analyze verify "$unit" 2>&1)
rc=$?
set -e
[ -n "$out" ] && echo "$out"
if [ $rc -ne 0 ]; then
  bad "systemd-analyze verify exited $rc"
elif grep -F -- "$unit" <<<"$out" | grep -q .; then
  # Messages about other units (the host's targets) are not ours to fix.
  bad "systemd-analyze verify complained about mtld.service"
else
  ok "systemd-analyze verify"
fi

set +e
sec=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1)
rc=$?
set -e
echo "$sec" | grep -E '^✗' || true
exposure=$(sed -n 's/.*Overall exposure level for mtld\.service: \([0-9][0-9.]*\).*/\1/p' <<<"$sec")
if [ -z "$exposure" ]; then
  echo "$sec"
  bad "no exposure level in systemd-analyze security output (exit $rc)"
elif awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
  ok "security exposure $exposure <= $MAX_EXPOSURE"
else
  bad "security exposure $exposure > $MAX_EXPOSURE"
fi

# sysusers and tmpfiles in a scratch root (tmpfiles resolves the user there).
root=$tmp/root
mkdir -p "$root/etc"
if command -v systemd-sysusers >/dev/null 2>&1; then
  if systemd-sysusers --root="$root" "$SRC/systemd/mtld.sysusers"; then
    if grep -q '^mtld:x:[0-9]*:[0-9]*:mtld online learning daemon:/var/lib/mtld:' \
      "$root/etc/passwd" && grep -q '^mtld:x:' "$root/etc/group"; then
      ok "sysusers creates user and group mtld"
    else
      bad "sysusers: no mtld user/group in $root/etc"
    fi
  else
    bad "systemd-sysusers failed"
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "skip: systemd-tmpfiles --create needs root to chown"
  elif ! command -v systemd-tmpfiles >/dev/null 2>&1; then
    echo "skip: systemd-tmpfiles not installed"
  elif systemd-tmpfiles --root="$root" --create "$SRC/systemd/mtld.tmpfiles"; then
    uid=$(awk -F: '$1 == "mtld" { print $3 }' "$root/etc/passwd")
    for d in /var/lib/mtld /var/lib/mtld/snapshots; do
      got=$(stat -c '%a %u' "$root$d" 2>/dev/null || echo missing)
      if [ "$got" = "750 $uid" ]; then ok "tmpfiles $d 750 mtld"; else bad "tmpfiles $d: $got"; fi
    done
  else
    bad "systemd-tmpfiles failed"
  fi
else
  echo "skip: systemd-sysusers not installed"
fi

echo "exposure=$exposure"
[ $fail -eq 0 ] && echo "PASS" || echo "FAILED"
exit $fail
