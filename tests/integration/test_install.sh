#!/usr/bin/env bash
# `make install` layout, through cmake --install with DESTDIR into a scratch
# root: exactly the expected files (programs, config, unit, sysusers,
# tmpfiles, mtld-plot, the Grafana dashboard; no test fixtures), the
# installed mtld runs (--version, and --check-config accepts the installed
# config), an existing config is kept on reinstall, another prefix moves the
# programs and the unit's ExecStart but not /etc; and the Makefile hands
# PREFIX and DESTDIR to cmake.
. "$(dirname "$0")/lib.sh"

VERSION=$(sed -n 's/^project(mtld VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$VERSION" ] || fail "no version in CMakeLists.txt"

install_to() { # ROOT PREFIX
  DESTDIR=$1 cmake --install "$BUILD" --prefix "$2" >"$T/install.log" 2>&1 ||
    { cat "$T/install.log"; fail "cmake --install --prefix $2 failed"; }
}

R=$T/root
install_to "$R" /usr
(cd "$R" && find . -type f -o -type l | sed 's#^\./##' | sort) >"$T/files"
cat >"$T/want" <<EOF
etc/mtld/mtld.conf
usr/bin/mtld
usr/bin/mtld-gen
usr/bin/mtld-inspect
usr/bin/mtld-plot
usr/bin/mtld-produce
usr/lib/systemd/system/mtld.service
usr/lib/sysusers.d/mtld.conf
usr/lib/tmpfiles.d/mtld.conf
usr/share/mtld/grafana/mtld.json
EOF
# tools added later (tools/mtld-*.c) are installed too: allow more usr/bin/mtld-*
grep -vxFf "$T/want" "$T/files" | grep -v '^usr/bin/mtld-[a-z]*$' >"$T/extra" || true
[ -s "$T/extra" ] && fail "unexpected files installed: $(tr '\n' ' ' <"$T/extra")"
missing=$(grep -vxFf "$T/files" "$T/want" || true)
[ -z "$missing" ] || fail "not installed: $missing"
grep -q 'mtld-mockcluster' "$T/files" && fail "the test fixture mtld-mockcluster was installed"
for p in mtld mtld-gen mtld-inspect mtld-plot mtld-produce; do
  [ -x "$R/usr/bin/$p" ] || fail "usr/bin/$p not executable"
done
cmp -s "$R/etc/mtld/mtld.conf" "$SRC/conf/mtld.conf" || fail "etc/mtld/mtld.conf differs from conf/mtld.conf"
cmp -s "$R/usr/lib/systemd/system/mtld.service" "$SRC/systemd/mtld.service" ||
  fail "the unit installed for prefix /usr differs from systemd/mtld.service"
cmp -s "$R/usr/lib/sysusers.d/mtld.conf" "$SRC/systemd/mtld.sysusers" || fail "sysusers.d/mtld.conf differs"
cmp -s "$R/usr/lib/tmpfiles.d/mtld.conf" "$SRC/systemd/mtld.tmpfiles" || fail "tmpfiles.d/mtld.conf differs"
cmp -s "$R/usr/bin/mtld-plot" "$SRC/tools/mtld-plot" || fail "usr/bin/mtld-plot differs from tools/mtld-plot"
cmp -s "$R/usr/share/mtld/grafana/mtld.json" "$SRC/conf/grafana/mtld.json" ||
  fail "usr/share/mtld/grafana/mtld.json differs from conf/grafana/mtld.json"
note "prefix /usr: $(wc -l <"$T/files") files as expected"

# the installed programs run from there
out=$("$R/usr/bin/mtld" --version) || fail "installed mtld --version failed"
[ "$out" = "mtld $VERSION" ] || fail "installed mtld --version says '$out', want 'mtld $VERSION'"
"$R/usr/bin/mtld" -c "$R/etc/mtld/mtld.conf" --check-config >"$T/check.out" 2>&1 ||
  fail "the installed config does not pass --check-config: $(cat "$T/check.out")"
"$R/usr/bin/mtld-inspect" --help >/dev/null || fail "installed mtld-inspect --help failed"
if command -v readelf >/dev/null; then
  for p in "$R"/usr/bin/*; do
    readelf -d "$p" | grep -E 'R(UN)?PATH' | grep -qF "$BUILD" && fail "$p keeps a RUNPATH into the build tree"
  done
fi
note "installed mtld $VERSION runs and accepts its config"

# reinstall over an edited config: kept, the example goes beside it
echo '# edited by the operator' >>"$R/etc/mtld/mtld.conf"
install_to "$R" /usr
tail -1 "$R/etc/mtld/mtld.conf" | grep -q 'edited by the operator' || fail "reinstall overwrote an edited mtld.conf"
cmp -s "$R/etc/mtld/mtld.conf.example" "$SRC/conf/mtld.conf" || fail "no mtld.conf.example beside the kept config"
note "reinstall keeps an edited config"

# another prefix: programs and unit move, the config stays in /etc
R2=$T/root2
install_to "$R2" /opt/mtld
[ -x "$R2/opt/mtld/bin/mtld" ] || fail "prefix /opt/mtld: no opt/mtld/bin/mtld"
[ -f "$R2/etc/mtld/mtld.conf" ] || fail "prefix /opt/mtld: config not in /etc/mtld"
grep -qx 'ExecStart=/opt/mtld/bin/mtld -c /etc/mtld/mtld.conf' "$R2/opt/mtld/lib/systemd/system/mtld.service" ||
  fail "prefix /opt/mtld: the unit's ExecStart does not name /opt/mtld/bin/mtld"
note "prefix /opt/mtld: programs and unit under it, config in /etc/mtld"

# the Makefile passes PREFIX and DESTDIR through (dry run: nothing is built)
make -n -C "$SRC" install BUILD="$BUILD" PREFIX=/usr DESTDIR="$T/mk" 2>/dev/null >"$T/make.out" ||
  fail "make -n install failed"
grep -qF "DESTDIR=\"$T/mk\" cmake --install $BUILD --prefix \"/usr\"" "$T/make.out" ||
  fail "make install does not pass PREFIX and DESTDIR: $(grep 'cmake --install' "$T/make.out")"
echo "1 passed, 0 failed"
