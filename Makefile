# stickyd - plain GNU make.
#
#   make              build agent/stickyd and agent/stickyctl (warnings are errors)
#   make SANITIZE=1   the same with ASan + UBSan
#   make WERROR=0     keep warnings as warnings
#   make test         every test tier: unit, fuzz (bounded), integration, end-to-end
#                     (integration on HAProxy 2.6 and each 3.x of ../shared/haproxy)
#   make bench        the benchmarks, printing figures
#   make run          the local demonstration (Redis, 3 WebSocket servers, HAProxy, stickyd)
#
# User CFLAGS/LDFLAGS are appended to ours, never replace them.

CC       ?= cc
PYTHON   ?= /usr/bin/python3
WERROR   ?= 1
SANITIZE ?= 0
FUZZ_SECONDS ?= 60

PKGS := hiredis jansson libprotobuf-c libcrypto

BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2 -Wwrite-strings -Wno-missing-field-initializers \
	-MMD -MP -Iagent -Ibuild/gen
ifeq ($(WERROR),1)
BASE_CFLAGS += -Werror
endif
ifeq ($(SANITIZE),1)
BASE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
BASE_LDFLAGS += -fsanitize=address,undefined
endif

# pkg-config is only asked when building, so `make deps` works before it exists.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

ALL_CFLAGS  = $(BASE_CFLAGS) $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(BASE_LDFLAGS) $(LDFLAGS)
LIBS        = $(PKG_LIBS) -lev -lm

PROTOS     := $(wildcard proto/*.proto)
PROTO_C    := $(patsubst proto/%.proto,build/gen/%.pb-c.c,$(PROTOS))
PROTO_H    := $(PROTO_C:.c=.h)
PROTO_OBJ  := $(patsubst build/gen/%.c,build/obj/gen/%.o,$(PROTO_C))

AGENT_SRC  := $(filter-out agent/main.c agent/stickyctl.c,$(wildcard agent/*.c))
AGENT_OBJ  := $(patsubst agent/%.c,build/obj/agent/%.o,$(AGENT_SRC)) $(PROTO_OBJ)
LIB        := build/libstickyd.a

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,build/tests/%,$(UNIT_SRC))
ITEST_SRC  := $(wildcard tests/integration/c/*.c)
ITEST_BIN  := $(patsubst tests/integration/c/%.c,build/itests/%,$(ITEST_SRC))
BENCH_SRC  := $(wildcard tests/bench/*.c)
BENCH_BIN  := $(patsubst tests/bench/%.c,build/bench/%,$(BENCH_SRC))

# Keep generated sources and test objects: as intermediates make would delete
# them after each build and rebuild everything that depends on them next time.
.SECONDARY:

.PHONY: all deps test unit fuzz integration bench run clean check-config
.DEFAULT_GOAL := all

all: agent/stickyd agent/stickyctl

deps:
	@scripts/install-deps.sh

build/gen/%.pb-c.c build/gen/%.pb-c.h: proto/%.proto
	@mkdir -p build/gen
	protoc-c --proto_path=proto --c_out=build/gen $<

build/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -c -o $@ $<

build/obj/agent/%.o: agent/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIB): $(AGENT_OBJ)
	@rm -f $@
	ar rcs $@ $^

agent/stickyd: build/obj/agent/main.o $(LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

agent/stickyctl: build/obj/agent/stickyctl.o $(LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

build/obj/tests/%.o: tests/unit/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -c -o $@ $<

build/tests/%: build/obj/tests/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

build/obj/itests/%.o: tests/integration/c/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -c -o $@ $<

build/itests/%: build/obj/itests/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

build/obj/bench/%.o: tests/bench/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/bench/%: build/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# libFuzzer needs clang; the fuzz target links the codec alone.
FUZZ_BIN := build/fuzz/fuzz_spop
$(FUZZ_BIN): tests/fuzz/fuzz_spop.c agent/spop.c agent/spop.h
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Iagent -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -o $@ tests/fuzz/fuzz_spop.c agent/spop.c

unit: $(UNIT_BIN)
	@tests/run-unit.sh $(UNIT_BIN)

fuzz: $(FUZZ_BIN)
	@tests/fuzz/run.sh $(FUZZ_BIN) $(FUZZ_SECONDS)

integration: all $(ITEST_BIN) build/bench/spop_bench
	@tests/run-integration.sh $(ITEST_BIN)

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN) $(ITEST_BIN) $(FUZZ_BIN) $(BENCH_BIN)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory integration

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@tests/bench/run.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-demo.sh

check-config: agent/stickyd
	agent/stickyd --check-config --config haproxy-conf/stickyd.json

clean:
	rm -rf build agent/stickyd agent/stickyctl

-include $(shell find build -name '*.d' 2>/dev/null)
