#!/usr/bin/env bash
# `make install` layout, through cmake --install with DESTDIR into a scratch
# root: exactly the expected files (programs, config, unit, sysusers,
# tmpfiles, mtld-plot, the Grafana dashboard; no test fixtures), the
# installed mtld runs (--version, and --check-config accepts the installed
# config), an existing config is kept on reinstall, another prefix moves the
# programs and the unit's ExecStart but not /etc; and the Makefile hands
# PREFIX and DESTDIR to cmake.
# The serving library: libmtld-serving.so.1 (SONAME), its header and
# mtld-serving.pc are installed; a program built outside the tree through
# pkg-config against the installed library scores a snapshot exactly as
# mtld-score does and ranks its item set as mtld-score --top does; the Python
# reader is installed as a module that imports and scores the same.
. "$(dirname "$0")/lib.sh"

VERSION=$(sed -n 's/^project(mtld VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$VERSION" ] || fail "no version in CMakeLists.txt"

install_to() { # ROOT PREFIX
  DESTDIR=$1 cmake --install "$BUILD" --prefix "$2" >"$T/install.log" 2>&1 ||
    { cat "$T/install.log"; fail "cmake --install --prefix $2 failed"; }
}

# the library directory under the prefix (lib, or lib/<multiarch> for /usr)
LIBDIR=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$BUILD/CMakeCache.txt")
[ -n "$LIBDIR" ] || fail "no CMAKE_INSTALL_LIBDIR in $BUILD/CMakeCache.txt"
case $LIBDIR in /*) fail "absolute CMAKE_INSTALL_LIBDIR $LIBDIR: this test wants a relative one" ;; esac

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
usr/bin/mtld-snapshot-merge
usr/include/mtld/serving.h
usr/$LIBDIR/libmtld-serving.so
usr/$LIBDIR/libmtld-serving.so.1
usr/$LIBDIR/libmtld-serving.so.1.0.0
usr/$LIBDIR/pkgconfig/mtld-serving.pc
usr/lib/python3/dist-packages/mtld_reader.py
usr/share/mtld/snapshot.proto
usr/lib/systemd/system/mtld.service
usr/lib/sysusers.d/mtld.conf
usr/lib/tmpfiles.d/mtld.conf
usr/share/mtld/grafana/mtld.json
EOF
# tools added later (tools/mtld-*.c) are installed too: allow more usr/bin/mtld-*
# (and mtld_snapshot_pb2.py beside mtld_reader.py when protoc was there at build time)
grep -vxFf "$T/want" "$T/files" | grep -v '^usr/bin/mtld-[a-z]*$' |
  grep -vx 'usr/lib/python3/dist-packages/mtld_snapshot_pb2\.py' >"$T/extra" || true
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

# ---- the serving library, used from outside the tree ----
L=$R/usr/$LIBDIR
# a sanitizer build (make test-asan): the library needs the sanitizers'
# runtimes, and a program using it must be built with them too
SAN=
grep -q '^MTLD_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && SAN="-fsanitize=address,undefined"
[ "$(readlink "$L/libmtld-serving.so")" = libmtld-serving.so.1 ] || fail "libmtld-serving.so does not link to .so.1"
[ "$(readlink "$L/libmtld-serving.so.1")" = libmtld-serving.so.1.0.0 ] ||
  fail "libmtld-serving.so.1 does not link to .so.1.0.0"
needs=
if command -v readelf >/dev/null; then
  readelf -d "$L/libmtld-serving.so.1.0.0" >"$T/dyn"
  grep -q 'SONAME.*\[libmtld-serving\.so\.1\]' "$T/dyn" || fail "libmtld-serving has no SONAME libmtld-serving.so.1"
  # the reader's dependencies only: no RocksDB, Kafka or the daemon's libraries
  needs=$(grep NEEDED "$T/dyn" | grep -Eo '\[[^]]*\]' | tr -d '[]' | tr '\n' ' ')
  allowed='c|m|blis|protobuf-c|xxhash'
  [ -n "$SAN" ] && allowed="$allowed|asan|ubsan"
  bad=$(echo "$needs" | tr ' ' '\n' | grep -Ev "^(lib($allowed)\\.so.*)?\$" || true)
  [ -z "$bad" ] || fail "libmtld-serving needs more than protobuf-c, xxhash, BLIS, libm, libc: $bad"
  grep -E 'R(UN)?PATH' "$T/dyn" | grep -qF "$BUILD" && fail "libmtld-serving keeps a RUNPATH into the build tree"
  exported=$(nm -D --defined-only "$L/libmtld-serving.so.1.0.0" | awk '{print $3}' | grep -v '^mtld_serving_' || true)
  [ -z "$exported" ] || fail "libmtld-serving exports more than mtld_serving_*: $(echo $exported | head -c 200)"
fi
grep -qx "prefix=/usr" "$L/pkgconfig/mtld-serving.pc" || fail "mtld-serving.pc: prefix is not /usr"
note "libmtld-serving.so.1 (SONAME), header and mtld-serving.pc installed; it needs: $needs"

# A snapshot with an item set (the readers' fixture) and what mtld-score says of it.
mkdir -p "$T/fx"
"$BUILD/tests/snapshot_fixture" "$T/fx" 0 >/dev/null 2>"$T/fx.err" || fail "snapshot_fixture failed: $(cat "$T/fx.err")"
SNAP=$T/fx/snapshots
printf '%s\n' '{"user": 7, "item": 100, "category": 11, "scenario": "sc11", "position": 2}' \
  '{"user": 9, "item": 21, "category": 7}' >"$T/cands.jsonl"
"$BUILD/mtld-score" --snapshot "$SNAP" --sample-json "$T/cands.jsonl" >"$T/want_score.txt" ||
  fail "mtld-score --sample-json failed"
"$BUILD/mtld-score" --snapshot "$SNAP" --top 20 --user 7 --scenario sc11 --rank-by ctr >"$T/want_top.txt" ||
  fail "mtld-score --top failed"

# a tiny serving program, outside the tree, built through pkg-config only
mkdir -p "$T/client"
cat >"$T/client/client.c" <<'CLIENT'
#include <mtld/serving.h>
#include <stdio.h>
#include <string.h>
/* client SNAPSHOT: mtld-score's output for two candidates, then the top 20
   for user 7 in scenario sc11 by ctr, as mtld-score --top prints them */
int main(int argc, char **argv) {
  char err[512];
  mtld_serving_t *s;
  if (argc != 2 || mtld_serving_open(&s, argv[1], err, sizeof err) != 0) {
    fprintf(stderr, "client: %s\n", argc == 2 ? err : "usage: client SNAPSHOT");
    return 1;
  }
  mtld_serving_request_t r[2];
  memset(r, 0, sizeof r);
  r[0].user = 7, r[0].item = 100, r[0].category = 11, r[0].scenario = "sc11", r[0].position = 2;
  r[1].user = 9, r[1].item = 21, r[1].category = 7;
  int T = mtld_serving_n_tasks(s);
  float p[2 * MTLD_SERVING_MAX_TASKS], c[2 * MTLD_SERVING_MAX_TASKS];
  for (int i = 0; i < 2; i++) /* one at a time: bit for bit what mtld-score prints */
    if (mtld_serving_score(s, &r[i], 1, p + i * T, c + i * T) != 0) return 1;
  printf("# id");
  for (int k = 0; k < T; k++) printf(" %s", mtld_serving_task_name(s, k));
  for (int k = 0; k < T; k++)
    if (mtld_serving_task_is_esmm(s, k)) printf(" %s.pcvr", mtld_serving_task_name(s, k));
  printf("\n");
  for (int i = 0; i < 2; i++) {
    printf("%d", i + 1);
    for (int k = 0; k < T; k++) printf(" %.9g", p[i * T + k]);
    for (int k = 0; k < T; k++)
      if (mtld_serving_task_is_esmm(s, k)) printf(" %.9g", c[i * T + k]);
    printf("\n");
  }
  uint64_t items[20];
  float sc[20];
  int n, task = mtld_serving_task_index(s, "ctr");
  mtld_serving_request_t q = {.user = 7, .scenario = "sc11"};
  if (task < 0 || mtld_serving_top_k(s, &q, task, 20, items, sc, &n) != 0) return 1;
  printf("# top %d of %zu items\n", n, mtld_serving_n_items(s));
  for (int i = 0; i < n; i++) printf("%d %llu %.9g\n", i + 1, (unsigned long long)items[i], sc[i]);
  mtld_serving_close(s);
  return 0;
}
CLIENT
# the .pc names the real prefix (/usr): point its variables at the scratch root
export PKG_CONFIG_PATH=$L/pkgconfig
pkg-config --exists mtld-serving || fail "pkg-config does not find mtld-serving in $L/pkgconfig"
flags=$(pkg-config --define-variable=prefix="$R/usr" --define-variable=libdir="$L" \
  --define-variable=includedir="$R/usr/include" --cflags --libs mtld-serving) ||
  fail "pkg-config --cflags --libs mtld-serving failed"
# shellcheck disable=SC2086 # flags are words
(cd "$T/client" && cc -std=c11 -Wall -Werror $SAN -o client client.c $flags) >"$T/cc.log" 2>&1 ||
  fail "building a program against the installed library failed ($flags): $(cat "$T/cc.log")"
if command -v readelf >/dev/null; then
  readelf -d "$T/client/client" | grep -q 'NEEDED.*\[libmtld-serving\.so\.1\]' ||
    fail "the client does not need libmtld-serving.so.1"
fi
LD_LIBRARY_PATH=$L "$T/client/client" "$SNAP" >"$T/client.out" 2>"$T/client.err" ||
  fail "the client failed: $(cat "$T/client.err")"
head -3 "$T/client.out" >"$T/got_score.txt"
cmp -s "$T/got_score.txt" "$T/want_score.txt" ||
  fail "the client's scores differ from mtld-score's: $(cat "$T/got_score.txt") vs $(cat "$T/want_score.txt")"
sed -n '5,$p' "$T/client.out" | awk '{print $1, $2, $3}' >"$T/got_top"
grep -v '^#' "$T/want_top.txt" | awk '{print $1, $2, $4}' >"$T/want_top"
[ "$(wc -l <"$T/got_top")" = 20 ] && cmp -s "$T/got_top" "$T/want_top" ||
  fail "the client's top 20 differs from mtld-score --top: $(diff "$T/got_top" "$T/want_top" | head -5)"
note "a program built outside the tree with pkg-config ($flags) scores and ranks as mtld-score does"

# the Python module: importable from the installed directory, scores the same
PY=
for cand in /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null 2>&1 && command -v protoc >/dev/null 2>&1 &&
    "$cand" -c 'import numpy, google.protobuf, xxhash' >/dev/null 2>&1; then
    PY=$cand
    break
  fi
done
if [ -n "$PY" ]; then
  PYDIR=$R/usr/lib/python3/dist-packages
  # as installed: the header's Python code from beside the module (or
  # generated from the installed snapshot.proto), nothing from the tree
  (cd "$T" && env -u MTLD_PB2_DIR -u MTLD_SNAPSHOT_PROTO PYTHONPATH=$PYDIR "$PY" -c '
import sys, mtld_reader
assert mtld_reader.__file__.startswith(sys.argv[2]), mtld_reader.__file__
snap = mtld_reader.load(sys.argv[1])
s = mtld_reader.request_samples(1, 7, "sc11", snap.header.watermark_ms, 2)
s["fields"][:, 1] = 100
s["fields"][:, 2] = 11
print(" ".join("%.9g" % v for v in snap.score(s)[0][0]))
for r, (i, c, v) in enumerate(snap.top_k(7, 20, "sc11", "ctr")):
    print(r + 1, i, "%.9g" % v)
' "$SNAP" "$PYDIR" >"$T/py.out" 2>"$T/py.err") ||
    fail "import mtld_reader from the installed module failed: $(cat "$T/py.err")"
  want=$(sed -n 2p "$T/want_score.txt" | cut -d' ' -f2-)
  got=$(head -1 "$T/py.out")
  awk -v a="$want" -v b="$got" 'BEGIN { n = split(a, x, " "); m = split(b, y, " ");
    if (m < 1 || n < m) exit 1
    for (i = 1; i <= m; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > 1e-5) exit 1 } }' ||
    fail "the installed Python module scores '$got', mtld-score '$want'"
  sed -n '2,$p' "$T/py.out" | awk '{print $1, $2}' >"$T/py_top"
  awk '{print $1, $2}' "$T/want_top" >"$T/want_top_ids"
  cmp -s "$T/py_top" "$T/want_top_ids" ||
    fail "the installed Python module's top 20 differs: $(diff "$T/py_top" "$T/want_top_ids" | head -5)"
  note "the installed Python module imports, scores and ranks as mtld-score does"
else
  note "SKIP the Python module check: needs python3 with numpy, protobuf, xxhash and protoc"
fi

# another prefix: library, header and .pc under it, the module in PREFIX/lib/python3.X/dist-packages
R3=$T/root3
install_to "$R3" /usr/local
[ -f "$R3/usr/local/$LIBDIR/libmtld-serving.so.1.0.0" ] || fail "prefix /usr/local: no libmtld-serving"
grep -qx "prefix=/usr/local" "$R3/usr/local/$LIBDIR/pkgconfig/mtld-serving.pc" || fail "prefix /usr/local: .pc prefix"
ls "$R3"/usr/local/lib/python3*/dist-packages/mtld_reader.py >/dev/null 2>&1 ||
  fail "prefix /usr/local: mtld_reader.py not in usr/local/lib/python3.X/dist-packages"
note "prefix /usr/local: library, .pc and module under it"

# the Makefile passes PREFIX and DESTDIR through (dry run: nothing is built)
make -n -C "$SRC" install BUILD="$BUILD" PREFIX=/usr DESTDIR="$T/mk" 2>/dev/null >"$T/make.out" ||
  fail "make -n install failed"
grep -qF "DESTDIR=\"$T/mk\" cmake --install $BUILD --prefix \"/usr\"" "$T/make.out" ||
  fail "make install does not pass PREFIX and DESTDIR: $(grep 'cmake --install' "$T/make.out")"
echo "1 passed, 0 failed"
