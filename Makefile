# stickyd - plain GNU make.
#
#   make              build agent/stickyd and agent/stickyctl (warnings are errors)
#   make SANITIZE=1   the same with ASan + UBSan
#   make WERROR=0     keep warnings as warnings
#   make test         every test tier: unit, sanitizers (unit tests and C drivers under
#                     ASan + UBSan), fuzz (bounded), integration, end-to-end
#                     (integration on HAProxy 2.6 and each 3.x of ../shared/haproxy)
#   make sanitize     the sanitizer tier alone; make fuzz FUZZ_SECONDS=N: every fuzz target
#   make soak         30 minutes (SOAK_SECONDS) of churn against an ASan agent
#   make bench        the benchmarks, printing figures
#   make run          the local demonstration (Redis, 3 WebSocket servers, HAProxy, stickyd)
#   make man          the man pages, into build/man (stickyd.json(5) from the key table)
#   make install      binaries, systemd unit, /etc/stickyd/stickyd.json, man pages, reference
#                     HAProxy files; honours PREFIX (/usr/local), SYSCONFDIR (/etc), DESTDIR
#   make deb          a Debian package built by dpkg-buildpackage, into build/deb/
#
# User CFLAGS/LDFLAGS are appended to ours, never replace them.

CC       ?= cc
PYTHON   ?= /usr/bin/python3
WERROR   ?= 1
SANITIZE ?= 0
FUZZ_SECONDS ?= 60

PKGS := hiredis jansson libprotobuf-c libcrypto libmicrohttpd libsystemd

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

ALL_CFLAGS  = $(BASE_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS)
# --as-needed: a program records only the libraries it uses (stickyctl has no HTTP
# server and no sd_notify, although the shared archive holds both).
ALL_LDFLAGS = -Wl,--as-needed $(BASE_LDFLAGS) $(LDFLAGS)
LIBS        = $(PKG_LIBS) -lev -lm

PROTOS     := $(wildcard proto/*.proto)
PROTO_C    := $(patsubst proto/%.proto,build/gen/%.pb-c.c,$(PROTOS))
PROTO_H    := $(PROTO_C:.c=.h)
PROTO_OBJ  := $(patsubst build/gen/%.c,build/obj/gen/%.o,$(PROTO_C))

# The Lua scripts stay .lua files; this rule embeds them (agent/model.h names them).
LUA_SRC    := $(wildcard agent/lua/*.lua)
LUA_C      := build/gen/lua_scripts.c
LUA_OBJ    := build/obj/gen/lua_scripts.o

# Three archives, so that each program links only what it uses:
#   ENGINE (build/libengine.a): the modules only the daemon uses, the SPOP engine first;
#   shared (build/libshared.a): every other agent/*.c but main.c, used by both programs;
#   ctl    (build/libctl.a):    agent/ctl/*.c but stickyctl.c, the operator CLI.
# stickyd links main.o + engine + shared, stickyctl links stickyctl.o + ctl + shared: a
# shared or ctl module must never call into the engine (tests/integration/test_layout.py
# checks it and that stickyctl defines no engine symbol). A new agent/*.c is shared
# until it is listed here.
ENGINE     := spop conn req listener builtin assign notify fleet admin channel hapi hapi_parse \
	servers ledger pace metrics slog buf
ENGINE_SRC := $(patsubst %,agent/%.c,$(ENGINE))
SHARED_SRC := $(filter-out agent/main.c $(ENGINE_SRC),$(wildcard agent/*.c))
CTL_SRC    := $(filter-out agent/ctl/stickyctl.c,$(wildcard agent/ctl/*.c))
AGENT_SRC  := $(ENGINE_SRC) $(SHARED_SRC) $(CTL_SRC)
ENGINE_OBJ := $(patsubst agent/%.c,build/obj/agent/%.o,$(ENGINE_SRC))
SHARED_OBJ := $(patsubst agent/%.c,build/obj/agent/%.o,$(SHARED_SRC)) $(PROTO_OBJ) $(LUA_OBJ)
CTL_OBJ    := $(patsubst agent/%.c,build/obj/agent/%.o,$(CTL_SRC))
ENGINE_LIB := build/libengine.a
SHARED_LIB := build/libshared.a
CTL_LIB    := build/libctl.a
# Tests, drivers and benches link all three; in a group, so that a module still in the
# wrong list links (test_layout.py names it) instead of breaking the build.
LIB        := $(CTL_LIB) $(ENGINE_LIB) $(SHARED_LIB)
LINK_LIBS   = -Wl,--start-group $(filter %.a,$^) -Wl,--end-group $(LIBS)

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,build/tests/%,$(UNIT_SRC))
ITEST_SRC  := $(wildcard tests/integration/c/*.c)
ITEST_BIN  := $(patsubst tests/integration/c/%.c,build/itests/%,$(ITEST_SRC))
BENCH_SRC  := $(wildcard tests/bench/*.c)
BENCH_BIN  := $(patsubst tests/bench/%.c,build/bench/%,$(BENCH_SRC))

# Keep generated sources and test objects: as intermediates make would delete
# them after each build and rebuild everything that depends on them next time.
.SECONDARY:

.PHONY: all deps test unit fuzz sanitize soak integration bench run clean check-config man install deb
.DEFAULT_GOAL := all

all: agent/stickyd agent/stickyctl

deps:
	@scripts/install-deps.sh

build/gen/%.pb-c.c build/gen/%.pb-c.h: proto/%.proto
	@mkdir -p build/gen
	protoc-c --proto_path=proto --c_out=build/gen $<

$(LUA_C): $(LUA_SRC) scripts/embed-lua.py
	@mkdir -p build/gen
	$(PYTHON) scripts/embed-lua.py $@ $(LUA_SRC)

build/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -c -o $@ $<

build/obj/agent/%.o: agent/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Each archive depends on the Makefile too: a module moved between the lists must leave
# the archive it was in.
$(ENGINE_LIB): $(ENGINE_OBJ)
$(SHARED_LIB): $(SHARED_OBJ)
$(CTL_LIB): $(CTL_OBJ)
$(LIB): Makefile
	@rm -f $@
	ar rcs $@ $(filter %.o,$^)

agent/stickyd: build/obj/agent/main.o $(ENGINE_LIB) $(SHARED_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS)

# Not the engine archive: the CLI cannot link an engine module even by mistake.
agent/stickyctl: build/obj/agent/ctl/stickyctl.o $(CTL_LIB) $(SHARED_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

build/obj/tests/%.o: tests/unit/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -c -o $@ $<

build/tests/%: build/obj/tests/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS)

build/obj/itests/%.o: tests/integration/c/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -c -o $@ $<

build/itests/%: build/obj/itests/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS)

build/obj/bench/%.o: tests/bench/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/bench/%: build/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS)

# libFuzzer needs clang. fuzz_spop and fuzz_cookie link only the sources they drive; the
# other targets link a copy of the agent's library built by clang with the fuzzer's
# coverage and ASan + UBSan (build/fuzz/libstickyd.a), so that any parser can be driven.
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Iagent -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined
FUZZ_LIB_FLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -Iagent -Ibuild/gen $(PKG_CFLAGS) \
	-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -MMD -MP
FUZZ_LIB   := build/fuzz/libstickyd.a
FUZZ_OBJ   := $(patsubst agent/%.c,build/fuzz/obj/agent/%.o,$(AGENT_SRC)) \
	$(patsubst build/gen/%.c,build/fuzz/obj/gen/%.o,$(PROTO_C) $(LUA_C))
# Each target and its seed corpus (tests/fuzz/seeds_<name>, from make_seeds.py).
FUZZ_NAMES := spop cookie slog hapi config events reply slots
FUZZ_BIN   := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_NAMES))
build/fuzz/fuzz_spop: tests/fuzz/fuzz_spop.c agent/spop.c agent/spop.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_spop.c agent/spop.c
build/fuzz/fuzz_cookie: tests/fuzz/fuzz_cookie.c agent/sid.c agent/sid.h agent/model.c \
		agent/model.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) $(shell pkg-config --cflags libcrypto jansson 2>/dev/null) -o $@ \
		tests/fuzz/fuzz_cookie.c agent/sid.c agent/model.c -lcrypto
build/fuzz/obj/agent/%.o: agent/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	clang $(FUZZ_LIB_FLAGS) -c -o $@ $<
build/fuzz/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_LIB_FLAGS) -c -o $@ $<
$(FUZZ_LIB): $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	clang $(FUZZ_LIB_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) $(LIBS)

# The sanitizer tier: the library, the agent, stickyctl, the unit tests and the C
# integration drivers built again with ASan + UBSan into build/san/ (beside the plain
# build, which stays as shipped), run by tests/run-sanitizers.sh.
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_ENGINE_LIB := build/san/libengine.a
SAN_SHARED_LIB := build/san/libshared.a
SAN_CTL_LIB    := build/san/libctl.a
SAN_LIB   := $(SAN_CTL_LIB) $(SAN_ENGINE_LIB) $(SAN_SHARED_LIB)
SAN_UNIT  := $(patsubst tests/unit/%.c,build/san/tests/%,$(UNIT_SRC))
SAN_ITEST := $(patsubst tests/integration/c/%.c,build/san/itests/%,$(ITEST_SRC))
SAN_BIN   := build/san/stickyd build/san/stickyctl $(SAN_UNIT) $(SAN_ITEST)
build/san/obj/agent/%.o: agent/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c -o $@ $<
build/san/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -Wno-missing-prototypes -c -o $@ $<
build/san/obj/tests/%.o: tests/unit/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -Itests/unit -c -o $@ $<
build/san/obj/itests/%.o: tests/integration/c/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -Itests/unit -c -o $@ $<
$(SAN_ENGINE_LIB): $(patsubst build/obj/%,build/san/obj/%,$(ENGINE_OBJ))
$(SAN_SHARED_LIB): $(patsubst build/obj/%,build/san/obj/%,$(SHARED_OBJ))
$(SAN_CTL_LIB): $(patsubst build/obj/%,build/san/obj/%,$(CTL_OBJ))
$(SAN_LIB): Makefile
	@rm -f $@
	ar rcs $@ $(filter %.o,$^)
build/san/stickyd: build/san/obj/agent/main.o $(SAN_ENGINE_LIB) $(SAN_SHARED_LIB)
	$(CC) $(ALL_LDFLAGS) $(SAN_FLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS)
build/san/stickyctl: build/san/obj/agent/ctl/stickyctl.o $(SAN_CTL_LIB) $(SAN_SHARED_LIB)
	$(CC) $(ALL_LDFLAGS) $(SAN_FLAGS) -o $@ $^ $(LIBS)
build/san/tests/%: build/san/obj/tests/%.o $(SAN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $(SAN_FLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS)
build/san/itests/%: build/san/obj/itests/%.o $(SAN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $(SAN_FLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS)

sanitize: $(SAN_BIN)
	@tests/run-sanitizers.sh $(SAN_UNIT) $(SAN_ITEST)

unit: $(UNIT_BIN)
	@tests/run-unit.sh $(UNIT_BIN)

# FUZZ_SECONDS in all (60 in make test; `make fuzz FUZZ_SECONDS=1800` for longer): a
# quarter to the SPOP codec, the rest shared equally by the other targets; every
# target runs, and the tier fails if any one does.
fuzz: $(FUZZ_BIN)
	@tests/fuzz/run-all.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

# Real Socket.IO servers and clients for the end-to-end tests, from the npm registry,
# pinned by tests/integration/sio/package-lock.json (outside the tree's sources).
SIO_DIR := build/sio
$(SIO_DIR)/node_modules/.installed: tests/integration/sio/package.json \
		tests/integration/sio/package-lock.json
	@mkdir -p $(SIO_DIR)
	cp tests/integration/sio/package.json tests/integration/sio/package-lock.json $(SIO_DIR)/
	cd $(SIO_DIR) && npm ci --no-audit --no-fund --silent
	@touch $@

integration: all $(ITEST_BIN) build/bench/spop_bench build/san/stickyctl \
		$(SIO_DIR)/node_modules/.installed
	@tests/run-integration.sh $(ITEST_BIN)

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN) $(ITEST_BIN) $(FUZZ_BIN) $(BENCH_BIN) \
		$(SAN_BIN) $(SIO_DIR)/node_modules/.installed
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory sanitize
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory integration

# Not part of `make test`: SOAK_SECONDS (1800) of connection churn, Redis restarts and
# HAProxy reloads against the ASan + UBSan agent (tests/soak/soak.py), asserting flat
# RSS, no descriptor growth and no sanitizer report; figures in build/soak/figures.json.
SOAK_SECONDS ?= 1800
soak: all build/san/stickyd
	SOAK_SECONDS=$(SOAK_SECONDS) $(PYTHON) tests/soak/soak.py

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@tests/bench/run.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-demo.sh

check-config: agent/stickyd
	agent/stickyd --check-config --config haproxy-conf/stickyd.json

# ---- man pages, install, Debian package --------------------------------------

VERSION := $(shell sed -n 's/^\#define STICKYD_VERSION "\(.*\)"/\1/p' agent/version.h)

MAN_OUT := build/man/man8/stickyd.8 build/man/man8/stickyctl.8 build/man/man5/stickyd.json.5

man: $(MAN_OUT)

build/man/man8/%.8: man/%.8 agent/version.h
	@mkdir -p $(dir $@)
	sed 's/@VERSION@/$(VERSION)/g' $< > $@

# The KEYS section is the loader's key table, printed by the agent itself.
build/man/man5/stickyd.json.5: man/stickyd.json.5.in agent/stickyd
	@mkdir -p $(dir $@)
	agent/stickyd --config-reference=roff > $@.keys
	sed -e 's/@VERSION@/$(VERSION)/g' -e '/^@KEYS@$$/{r $@.keys' -e 'd}' $< > $@
	@rm -f $@.keys

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
DATADIR    ?= $(PREFIX)/share/stickyd
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
INSTALL    ?= install

# The shipped configuration is installed only where none exists: an operator's
# edited file is never overwritten (the package's conffile handling does the same).
# The unit is written here, not by a rule, as its paths depend on this run's variables.
install: all man
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/stickyd $(DESTDIR)$(DATADIR)/haproxy $(DESTDIR)$(DATADIR)/grafana \
		$(DESTDIR)$(DATADIR)/prometheus \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0755 agent/stickyd $(DESTDIR)$(SBINDIR)/stickyd
	$(INSTALL) -m 0755 agent/stickyctl $(DESTDIR)$(BINDIR)/stickyctl
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		packaging/systemd/stickyd.service > $(DESTDIR)$(UNITDIR)/stickyd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/stickyd.service
	test -e $(DESTDIR)$(SYSCONFDIR)/stickyd/stickyd.json || \
		$(INSTALL) -m 0644 packaging/stickyd.json $(DESTDIR)$(SYSCONFDIR)/stickyd/stickyd.json
	$(INSTALL) -m 0644 haproxy-conf/haproxy.cfg haproxy-conf/haproxy-socketio.cfg \
		haproxy-conf/stickyd.spoe $(DESTDIR)$(DATADIR)/haproxy/
	$(INSTALL) -m 0644 haproxy-conf/stickyd.json $(DESTDIR)$(DATADIR)/haproxy/stickyd-demo.json
	$(INSTALL) -m 0644 packaging/grafana/stickyd-dashboard.json $(DESTDIR)$(DATADIR)/grafana/
	$(INSTALL) -m 0644 packaging/prometheus/stickyd-alerts.yml $(DESTDIR)$(DATADIR)/prometheus/
	$(INSTALL) -m 0644 build/man/man8/stickyd.8 build/man/man8/stickyctl.8 $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 build/man/man5/stickyd.json.5 $(DESTDIR)$(MANDIR)/man5/

# dpkg-buildpackage in a copy of the tree under build/deb, so that the build starts
# clean and its products (which dpkg-buildpackage writes to the parent directory)
# stay inside build/. The version must be debian/changelog's.
DEB_SRC := build/deb/stickyd-$(VERSION)
deb:
	@test "$$(dpkg-parsechangelog -S Version)" = "$(VERSION)" || \
		{ echo "debian/changelog is not at version $(VERSION) (agent/version.h)" >&2; exit 1; }
	rm -rf build/deb
	mkdir -p $(DEB_SRC)
	tar --exclude=./build --exclude=./.git --exclude=./agent/stickyd --exclude=./agent/stickyctl \
		-cf - . | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc --no-sign
	@ls -l build/deb/*.deb

# `make -s print-ENGINE`: a variable's value (tests/integration/test_layout.py reads ENGINE).
print-%:
	@echo '$($*)'

clean:
	rm -rf build agent/stickyd agent/stickyctl

-include $(shell find build -name '*.d' 2>/dev/null)
