# tlscache: build, test and demo. Everything happens on 127.0.0.1.
#   make                       build for $(LUA) (default lua5.4)
#   make test                  C unit test + busted specs on lua5.1, lua5.4, luajit
#   make test LUA=luajit       the same on one interpreter
#   make demo                  full versus resumed handshakes, with timings
#   make asan / make valgrind  the suite under AddressSanitizer+UBSan / valgrind

LUA ?= lua5.4
ifeq ($(origin LUA),file)
TEST_LUAS ?= lua5.1 lua5.4 luajit
else
TEST_LUAS ?= $(LUA)
endif

LUA_PC_lua5.1 = lua5.1
LUA_PC_lua5.4 = lua5.4
LUA_PC_luajit = luajit
LUA_VER_lua5.1 = 5.1
LUA_VER_lua5.4 = 5.4
LUA_VER_luajit = 5.1
LUA_PC = $(or $(LUA_PC_$(LUA)),$(LUA))
LUA_VER = $(or $(LUA_VER_$(LUA)),5.4)
LUA_CFLAGS = $(shell pkg-config --cflags $(LUA_PC) 2>/dev/null)

PREFIX ?= /usr/local
INSTALL_CMOD ?= $(PREFIX)/lib/lua/$(LUA_VER)
INSTALL_LMOD ?= $(PREFIX)/share/lua/$(LUA_VER)

VARIANT ?=
BUILD = build/$(LUA)$(VARIANT)
CC ?= cc
OPT ?= -O2 -g
WARN = -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
       -Werror=deprecated-declarations
CFLAGS_ALL = -std=c99 $(OPT) -fPIC -fvisibility=hidden $(WARN) \
             -DOPENSSL_API_COMPAT=30000 $(LUA_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
LIBS = -lssl -lcrypto

SRCS = csrc/cache.c csrc/util.c csrc/net.c csrc/vhost.c csrc/conn.c csrc/record.c \
       csrc/persist.c csrc/module.c
HDRS = $(wildcard csrc/*.h)
OBJS = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
SO = $(BUILD)/tlscache/core.so

RUN_ENV = TLSCACHE_LUA=$(LUA) LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="$(BUILD)/?.so;;"

.PHONY: all deps test test-one unit certs demo lint install clean asan valgrind bench cache-bench fuzz fuzz-corpus
all: $(SO)

$(BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(OBJS) -o $@ $(LIBS) $(LDFLAGS) $(EXTRA_LDFLAGS)

# Install missing Debian packages when root, else say which ones.
deps:
	@sh .ci/deps.sh

build/cache_test$(VARIANT): spec/c/cache_test.c csrc/cache.c csrc/cache.h
	@mkdir -p build
	$(CC) -std=c99 $(OPT) $(WARN) -Icsrc $(EXTRA_CFLAGS) spec/c/cache_test.c csrc/cache.c -o $@ $(EXTRA_LDFLAGS)

build/record_test$(VARIANT): spec/c/record_test.c csrc/record.c csrc/record.h
	@mkdir -p build
	$(CC) -std=c99 $(OPT) $(WARN) -Icsrc -DOPENSSL_API_COMPAT=30000 $(EXTRA_CFLAGS) spec/c/record_test.c \
	  csrc/record.c -o $@ $(LIBS) $(EXTRA_LDFLAGS)

# the fuzz target's inputs replayed without libFuzzer: seeds and old crashes
build/fuzz_replay$(VARIANT): spec/fuzz/replay.c spec/fuzz/fuzz_record.c csrc/record.c csrc/record.h
	@mkdir -p build
	$(CC) -std=c99 $(OPT) $(WARN) -Icsrc -DOPENSSL_API_COMPAT=30000 $(EXTRA_CFLAGS) spec/fuzz/replay.c \
	  spec/fuzz/fuzz_record.c csrc/record.c -o $@ $(LIBS) $(EXTRA_LDFLAGS)

unit: build/cache_test$(VARIANT) build/record_test$(VARIANT) build/fuzz_replay$(VARIANT)
	$(TEST_WRAP) ./build/cache_test$(VARIANT)
	$(TEST_WRAP) ./build/record_test$(VARIANT)
	$(TEST_WRAP) ./build/fuzz_replay$(VARIANT) spec/fuzz/corpus/* spec/fuzz/regress/crash-*

certs:
	@bash spec/fixtures/mkcerts.sh $(CURDIR)/build/certs

# one interpreter: the C unit test, then every spec against real servers
test-one: $(SO) unit certs
	$(RUN_ENV) $(TEST_WRAP) $(LUA) /usr/bin/busted -o utfTerminal $(BUSTED_ARGS) spec

test: deps
	@sh .ci/test.sh $(TEST_LUAS)

demo: deps
	@$(MAKE) --no-print-directory all certs LUA=$(LUA)
	@$(RUN_ENV) sh examples/demo.sh $(LUA)

asan:
	@$(MAKE) --no-print-directory deps
	@sh .ci/test.sh --asan $(TEST_LUAS)

valgrind:
	@$(MAKE) --no-print-directory deps
	@sh .ci/test.sh --valgrind $(TEST_LUAS)

# Fuzz the loader of saved sessions with libFuzzer (clang): a short run by
# default; FUZZ_RUNS=10000000 for a real one. New inputs go to
# build/fuzz/corpus; crashes to build/fuzz/ (keep them in spec/fuzz/regress/).
# ASAN_OPTIONS=malloc_context_size=0 about doubles the speed (OpenSSL's
# decoder allocates a lot); replay a crash without it for full stacks.
# FUZZ_SAN=undefined runs several times faster than with ASan (whose
# allocator then dominates), for long runs; `make unit` under `make asan`
# replays the corpus with ASan.
FUZZ_CC ?= clang
FUZZ_RUNS ?= 200000
FUZZ_ARGS ?=
FUZZ_SAN ?= address,undefined
FUZZ_BIN = build/fuzz/fuzz_record-$(subst $(comma),-,$(FUZZ_SAN))
comma := ,
$(FUZZ_BIN): spec/fuzz/fuzz_record.c csrc/record.c csrc/record.h
	@TLSCACHE_EXTRA_PKGS="clang" sh .ci/deps.sh
	@mkdir -p build/fuzz/corpus
	$(FUZZ_CC) -std=c99 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,$(FUZZ_SAN) \
	  -fno-sanitize-recover=undefined -Icsrc -DOPENSSL_API_COMPAT=30000 \
	  spec/fuzz/fuzz_record.c csrc/record.c -o $@ $(LIBS)

fuzz: $(FUZZ_BIN)
	cd build/fuzz && ./$(notdir $(FUZZ_BIN)) -runs=$(FUZZ_RUNS) -max_len=8192 $(FUZZ_ARGS) \
	  corpus ../../spec/fuzz/corpus

# Remake the seed corpus from real connections to openssl s_server.
fuzz-corpus: $(SO) certs
	$(RUN_ENV) $(LUA) spec/fuzz/mkcorpus.lua spec/fuzz/corpus

# Benchmarks (bench/): tlscache against a plain-OpenSSL C client and LuaSec,
# time to first byte through a delaying proxy, and the cache micro-benchmark.
#   make bench                   5 rounds x 2 s, lua5.1 lua5.4 luajit (~6 min)
#   make bench BENCH_ARGS=--quick  under two minutes
BENCH_ARGS ?=
build/cache_bench: bench/cache_bench.c csrc/cache.c csrc/cache.h
	@mkdir -p build
	$(CC) -std=c99 -O2 -g $(WARN) -Icsrc bench/cache_bench.c csrc/cache.c -o $@

cache-bench: build/cache_bench
	./build/cache_bench $(CACHE_BENCH_SIZES)

bench:
	@TLSCACHE_EXTRA_PKGS="lua-sec" sh .ci/deps.sh
	@for l in lua5.1 lua5.4 luajit; do $(MAKE) --no-print-directory all LUA=$$l || exit 1; done
	$(LUA) bench/run.lua $(BENCH_ARGS)
	@$(MAKE) --no-print-directory cache-bench CACHE_BENCH_SIZES="$(if $(filter --quick,$(BENCH_ARGS)),10 1000 100000,)"

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --std=c99 \
	  --suppress=missingIncludeSystem -Icsrc $(SRCS)
	@for f in lua/tlscache/*.lua examples/*.lua spec/*.lua bench/*.lua; do \
	  [ -f "$$f" ] && { luac5.4 -p "$$f" 2>/dev/null || luajit -bl "$$f" >/dev/null || exit 1; }; done; true

install: $(SO)
	install -d $(DESTDIR)$(INSTALL_CMOD)/tlscache $(DESTDIR)$(INSTALL_LMOD)/tlscache
	install -m 0755 $(SO) $(DESTDIR)$(INSTALL_CMOD)/tlscache/core.so
	install -m 0644 lua/tlscache/init.lua $(DESTDIR)$(INSTALL_LMOD)/tlscache/init.lua

clean:
	rm -rf build
	rm -f csrc/*.o tlscache/core.so     # what `luarocks make` leaves in the checkout
	rmdir tlscache 2>/dev/null || true

# ---- soak (issue 5, hardening) ------------------------------------------
# Not part of `make test`: SOAK_CONNS connections (default 50000) over 20
# host/port tuples with a cache of 10, against s_server, nginx and tcserver
# instances, some restarted midway; live sessions, RSS and descriptors are
# sampled and must stay flat. Figures: docs/soak.md.
SOAK_CONNS ?= 50000
.PHONY: soak
soak: $(SO) certs
	$(RUN_ENV) $(LUA) spec/soak.lua $(SOAK_CONNS)
# ---- end soak -------------------------------------------------------------
