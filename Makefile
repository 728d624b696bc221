# The README's commands.  Each installs what it needs (Debian 12, as root),
# configures and builds with CMake, then runs.
#   make test   - unit + integration tests, then again under ASan+UBSan, then
#                 the fuzzers briefly
#   make demo   - generated stream -> mock Kafka cluster -> mtld -> summary
#   make bench  - benchmarks, appended to bench/RESULTS.md's format on stdout
JOBS ?= 2
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz

.PHONY: all deps build test test-fast test-asan fuzz demo bench format install clean

all: build

deps:
	@bash tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DMTLD_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j1

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DMTLD_WERROR=ON -DMTLD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 MTLD_SANITIZED=1 \
	  ctest --output-on-failure -j1

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

install: build
	cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
