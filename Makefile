# The README's commands.  Each installs what it needs (Debian 12, as root),
# configures and builds with CMake, then runs.
#   make test   - unit + integration tests, then again under ASan+UBSan, then
#                 the fuzzers briefly
#   make demo   - generated stream -> Kafka (real broker or mock) -> mtld -> summary
#   make bench  - benchmarks, appended to bench/RESULTS.md's format on stdout
JOBS ?= 2
# Tests run two at a time: measured with a cpuacct cgroup (every descendant,
# brokers included), the 35 integration tests use 367 CPU-s in 1141 s of wall
# time; most of it is waiting (sleeps, timeouts, broker starts), which
# overlaps.  Every test has its own temp dir and ports (port 0, kafka-local
# picks free ones).  TEST_JOBS=1 runs them one by one.  The ASan pass stays
# one at a time (ASAN_TEST_JOBS): under ASan with two tests at once,
# test_real_outage's daemon in 2 of 7 runs did not finish its
# shutdown within shutdown_timeout after the broker outage (it stopped
# after its final checkpoint, while closing the Kafka consumer; cause not
# found yet), never seen one at a time.
TEST_JOBS ?= 2
ASAN_TEST_JOBS ?= 1
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz

.PHONY: all deps build test test-fast test-asan fuzz demo bench format install deb clean

all: build

deps:
	@bash tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DMTLD_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j$(TEST_JOBS)

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DMTLD_WERROR=ON -DMTLD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 MTLD_SANITIZED=1 \
	  ctest --output-on-failure -j$(ASAN_TEST_JOBS)

fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DMTLD_FUZZ=ON -DMTLD_SANITIZE=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS)
	@bash tests/fuzz/run.sh $(FUZZ_BUILD) 20

test: test-fast test-asan fuzz

demo: build
	@bash tools/demo.sh $(BUILD)

bench: build
	@bash bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# PREFIX (default /usr/local) and DESTDIR as usual; the config goes to
# $(DESTDIR)/etc/mtld whatever the prefix, an existing one is kept.
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(or $(PREFIX),/usr/local)"

# The Debian package, built by dpkg-buildpackage from a copy of the tree in
# $(DEB_TMP) (no artifacts in the work tree); the .deb lands in $(BUILD)/deb.
# Needs dpkg-dev and debhelper (apt-get install dpkg-dev debhelper).
DEB_TMP ?= /tmp/mtld-deb
deb:
	@command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null || \
	  { echo "make deb: needs dpkg-dev and debhelper (apt-get install dpkg-dev debhelper)" >&2; exit 1; }
	rm -rf "$(DEB_TMP)" && mkdir -p "$(DEB_TMP)/mtld" "$(BUILD)/deb"
	tar --exclude-vcs --anchored --exclude='./build*' --exclude='./$(BUILD)' -cf - . | \
	  tar -xf - -C "$(DEB_TMP)/mtld"
	cd "$(DEB_TMP)/mtld" && DEB_BUILD_OPTIONS="parallel=$(JOBS) $(DEB_BUILD_OPTIONS)" \
	  dpkg-buildpackage -us -uc -b >../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
	cp "$(DEB_TMP)"/*.deb "$(BUILD)/deb/"
	@ls -l "$(BUILD)"/deb/*.deb

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

# mtld vs a PyTorch reference of its trainer (bench/reference/README.md):
# AUC agreement, speed on the same samples, Taobao online vs offline.
.PHONY: bench-reference
bench-reference: build
	@bash bench/reference/run.sh $(BUILD)
