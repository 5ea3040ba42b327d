# IMS - one non-recursive Makefile: libraries under lib/, programs under src/, tests under tests/.
#
#   make            build everything into build/ (make SAN=1: ASan+UBSan build into build/san/)
#   make test       unit tests (cmocka), end-to-end tests (pytest), a short fuzz run
#   make fuzz-long  every fuzzer 10 minutes (FUZZ_LONG_SECS), finds merged into tests/fuzz/corpus/
#   make run        install missing Debian packages, build, run imsd on ./var
#   make install    PREFIX=/usr/local DESTDIR= (SENDMAIL=yes: also /usr/sbin/sendmail -> ims-sendmail)
#   make deps       install the Debian packages the build and the tests need

PREFIX  ?= /usr/local
DESTDIR ?=
SAN     ?= 0
CC      ?= cc

ifeq ($(SAN),1)
BUILD   := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1
else
BUILD   := build
SANFLAGS :=
OPT     := -O2
endif

BIN     := $(BUILD)/bin
OBJ     := $(BUILD)/obj
CPPFLAGS += -D_GNU_SOURCE -Ilib -DIMS_DATADIR='"$(PREFIX)/share/ims"'
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wno-missing-field-initializers $(SANFLAGS)
LDFLAGS += $(SANFLAGS) -Wl,--as-needed
LDLIBS  += -llmdb -lhivex -lcares -lcrypt -lpthread

# Libraries in link order: a library may use only those after it.
LIBS     := ims smtp store mapi reg base
lib_srcs  = $(wildcard lib/$(1)/*.c)
lib_objs  = $(patsubst %.c,$(OBJ)/%.o,$(call lib_srcs,$(1)))
LIBFILES := $(foreach l,$(LIBS),$(BUILD)/lib/lib$(l).a)

# Programs: every directory under src/ is one program.
PROGS    := $(notdir $(wildcard src/*))
PROGFILES := $(addprefix $(BIN)/,$(PROGS))

# Unit tests: tests/unit/<module>_test.c
UNIT_SRCS := $(wildcard tests/unit/*_test.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

# Benchmarks: bench/<name>.c, one program each.
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

ALL_SRCS := $(foreach l,$(LIBS),$(call lib_srcs,$(l))) $(wildcard src/*/*.c) $(UNIT_SRCS) $(BENCH_SRCS)

.PHONY: all test unit e2e fuzz fuzz-long run deps install uninstall clean format bench bench-registry-large bench-inbound bench-outbound bench-tls bench-idle bench-queuecost
all: $(PROGFILES) $(UNIT_BINS) $(BENCH_BINS)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

define LIB_RULE
$(BUILD)/lib/lib$(1).a: $(call lib_objs,$(1))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach l,$(LIBS),$(eval $(call LIB_RULE,$(l))))

define PROG_RULE
$(BIN)/$(1): $(patsubst %.c,$(OBJ)/%.o,$(wildcard src/$(1)/*.c)) $(LIBFILES)
	@mkdir -p $$(dir $$@)
	$(CC) $(LDFLAGS) -o $$@ $$^ $(LDLIBS_$(1)) $(LDLIBS)
endef
# Programs that need more than the common libraries say so here.
LDLIBS_imsd := -levent -levent_openssl -lssl -lcrypto
$(foreach p,$(PROGS),$(eval $(call PROG_RULE,$(p))))
# The administrator's page (data/admin) is compiled into imsd: nothing is read at run time.
ADMIN_ASSETS := $(sort $(wildcard data/admin/*))
$(BUILD)/gen/admin_assets.c: tools/embed_assets.py $(ADMIN_ASSETS)
	@mkdir -p $(dir $@)
	/usr/bin/python3 tools/embed_assets.py $@ $(ADMIN_ASSETS)
$(OBJ)/gen/admin_assets.o: $(BUILD)/gen/admin_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc/imsd $(CFLAGS) -MMD -MP -c -o $@ $<
$(BIN)/imsd: $(OBJ)/gen/admin_assets.o

$(BUILD)/tests/%_test: $(OBJ)/tests/unit/%_test.o $(LIBFILES)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/bench/%: $(OBJ)/bench/%.o $(LIBFILES)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# tlsload (the STARTTLS load generator) needs OpenSSL; the other benchmarks only the libraries.
$(BUILD)/bench/tlsload: LDLIBS += -lssl -lcrypto

# The fuzz targets need clang's libFuzzer; they build into build/fuzz/ without the SAN switch.
FUZZ_SRCS := $(wildcard tests/fuzz/*_fuzz.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
# The libraries are compiled once for all of them (instrumented, without libFuzzer's main).
FUZZ_LIB_SRCS := $(foreach l,$(LIBS),$(call lib_srcs,$(l)))
FUZZ_LIB_OBJS := $(patsubst %.c,build/fuzz/obj/%.o,$(FUZZ_LIB_SRCS))
FUZZ_CFLAGS := $(CPPFLAGS) -std=c11 -g -O1 -fsanitize=address,undefined
.SECONDARY: $(FUZZ_LIB_OBJS)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<
build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_OBJS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJS) $(LDLIBS)

deps:
	@sh tools/deps.sh

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

e2e: $(PROGFILES) $(BUILD)/tests/report_test
	IMS_BIN=$(abspath $(BIN)) /usr/bin/python3 -m pytest -q tests/e2e

# Each fuzzer 20 s, as many at once as there are CPUs (fuzz-run-*: one each).
FUZZ_JOBS := $(shell nproc 2>/dev/null || echo 1)
FUZZ_RUNS := $(patsubst build/fuzz/%,fuzz-run-%,$(FUZZ_BINS))
fuzz: $(FUZZ_BINS)
	@$(MAKE) --no-print-directory -j$(FUZZ_JOBS) $(FUZZ_RUNS)

fuzz-run-%: build/fuzz/%
	@n=$*; f=build/fuzz/$$n; mkdir -p build/fuzz/corpus-$$n; \
	if ! $$f -max_total_time=20 -timeout=5 -rss_limit_mb=2048 \
	    build/fuzz/corpus-$$n tests/fuzz/corpus/$$n > build/fuzz/$$n.log 2>&1; then \
	  tail -n 40 build/fuzz/$$n.log; echo "fuzz: $$n found a crash"; exit 1; fi; \
	echo "== $$f (20 s): $$(tail -n 1 build/fuzz/$$n.log)"

# The long run (not part of test): each fuzzer FUZZ_LONG_SECS (default 10 minutes), as many at
# once as there are CPUs, then what it found merged into its kept corpus in the repository
# (tests/fuzz/corpus/<name>/): -merge=1 with -use_counters=0 adds only inputs that reach an edge
# none of the kept ones does (with counters every new hit count would: ten times the files), and
# inputs over FUZZ_LONG_MAX_LEN bytes are neither made nor kept, so the kept corpora stay small
# enough to commit (a new corpus file per new edge at most). The hand-written seeds are never
# removed. Its work directory build/fuzz/long-<name>/ is emptied each time; a crash is left as
# build/fuzz/<name>-crash-*.
FUZZ_LONG_SECS ?= 600
FUZZ_LONG_MAX_LEN ?= 4096
FUZZ_LONG_RUNS := $(patsubst build/fuzz/%,fuzz-long-run-%,$(FUZZ_BINS))
fuzz-long: $(FUZZ_BINS)
	@$(MAKE) --no-print-directory -j$(FUZZ_JOBS) $(FUZZ_LONG_RUNS)

fuzz-long-run-%: build/fuzz/%
	@n=$*; f=build/fuzz/$$n; w=build/fuzz/long-$$n; k=tests/fuzz/corpus/$$n; \
	rm -rf $$w; mkdir -p $$w $$k; before=$$(ls $$k | wc -l); \
	if ! $$f -max_total_time=$(FUZZ_LONG_SECS) -max_len=$(FUZZ_LONG_MAX_LEN) -timeout=5 \
	    -rss_limit_mb=2048 -artifact_prefix=build/fuzz/$$n- $$w $$k > build/fuzz/$$n-long.log 2>&1; then \
	  tail -n 40 build/fuzz/$$n-long.log; echo "fuzz-long: $$n found a crash"; exit 1; fi; \
	$$f -merge=1 -use_counters=0 -max_len=$(FUZZ_LONG_MAX_LEN) $$k $$w > build/fuzz/$$n-merge.log 2>&1 || \
	  { tail -n 20 build/fuzz/$$n-merge.log; echo "fuzz-long: $$n: merge failed"; exit 1; }; \
	echo "== $$f ($(FUZZ_LONG_SECS) s): $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' \
	  build/fuzz/$$n-long.log), $$(grep -o 'cov: [0-9]* ft: [0-9]*' build/fuzz/$$n-long.log | \
	  tail -n 1); corpus $$before -> $$(ls $$k | wc -l) files"

test: all
	$(MAKE) --no-print-directory unit SAN=$(SAN)
	$(MAKE) --no-print-directory e2e SAN=$(SAN)
ifneq ($(SAN),1)
	$(MAKE) --no-print-directory fuzz
endif

bench: all
	@sh bench/registry.sh $(abspath $(BIN)) $(abspath $(BUILD)/bench)

# reg query against an HKLM of 1,000,000 keys, warm and cold, and against a small hive (about
# 1 minute; bench/README.md).
bench-registry-large: $(BIN)/reg $(BUILD)/bench/registry_large
	@sh bench/registry_large.sh $(abspath $(BIN)) $(abspath $(BUILD)/bench)

# imsd against a private Postfix with smtp-source (root; about 2 minutes): bench/README.md.
bench-inbound: all
	@sh bench/inbound.sh $(abspath $(BIN))

# Inbound mail over STARTTLS: build/bench/tlsload -> imsd or a private Postfix, the same
# certificate, TLS 1.3; msgs/s, handshakes/s, memory per idle TLS session (root; bench/README.md).
bench-tls: all
	@sh bench/starttls.sh $(abspath $(BIN)) $(abspath $(BUILD)/bench)

# 10,000 idle connections held by imsd: memory and CPU per idle connection, and 20 sessions'
# throughput with and without them (root; about 1 minute; bench/README.md).
bench-idle: all
	@sh bench/idle.sh $(abspath $(BIN))

# Relaying: smtp-source -> imsd or a private Postfix -> smtp-sink (root; about 2 minutes).
bench-outbound: all
	@sh bench/outbound.sh $(abspath $(BIN))

# A big outbound queue: 100,000 messages waiting for (or due at) a 4xx destination against an
# empty Out: start-up, memory, inbound throughput (root; about 3 minutes; bench/README.md).
bench-queuecost: all
	@sh bench/queuecost.sh $(abspath $(BIN))

# make run: the service in the foreground on the embedded default: state in ./var, SMTP on
# 127.0.0.1:2525, the accepted domain localhost (and the host's name when it has a dot) with
# the mailbox postmaster. As root the service runs as "nobody" (the network side never runs
# as root); install stops at once, saying why, when that account cannot reach ./var.
RUN_DOMAINS = localhost $(filter %.%,$(shell hostname -f 2>/dev/null))
# ... and the counters in Prometheus' text format at http://127.0.0.1:9125/metrics.
RUN_METRICS = 127.0.0.1:9125
RUN_PARAMETERS = HKLM\System\CurrentControlSet\Services\MSExchangeIMC\Parameters
run: deps all
	@mkdir -p var && chmod 0755 var
	IMS_ROOT=$(CURDIR)/var $(BIN)/imsctl install --listen 127.0.0.1:2525 \
	    $(addprefix --domain ,$(RUN_DOMAINS)) \
	    $$( [ "$$(id -u)" = 0 ] && echo --account $${IMS_ACCOUNT:-nobody} )
	IMS_ROOT=$(CURDIR)/var $(BIN)/reg add '$(RUN_PARAMETERS)' /v MetricsAddress /t REG_SZ \
	    /d $(RUN_METRICS) /f >/dev/null
	IMS_ROOT=$(CURDIR)/var exec $(BIN)/imsd -console

# ims-sendmail goes to sbin; /usr/sbin/sendmail points to it only with SENDMAIL=yes, and never
# replaces another MTA's sendmail (a file there that is not a link to ours stops the install).
SENDMAIL ?= no
SENDMAIL_LINK := $(DESTDIR)/usr/sbin/sendmail
install: $(PROGFILES)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/ims
	install -m 0755 $(filter-out $(BIN)/ims-sendmail,$(PROGFILES)) $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 $(BIN)/ims-sendmail $(DESTDIR)$(PREFIX)/sbin/ims-sendmail
	@if [ "$(SENDMAIL)" = yes ]; then \
	  if [ -e "$(SENDMAIL_LINK)" ] || [ -L "$(SENDMAIL_LINK)" ]; then \
	    if [ "$$(readlink "$(SENDMAIL_LINK)")" != "$(PREFIX)/sbin/ims-sendmail" ]; then \
	      echo "install: $(SENDMAIL_LINK) exists and is not ims-sendmail (another MTA's?): left alone" >&2; \
	      exit 1; fi; \
	  else install -d "$(dir $(SENDMAIL_LINK))" && \
	    ln -s "$(PREFIX)/sbin/ims-sendmail" "$(SENDMAIL_LINK)" && \
	    echo "install: $(SENDMAIL_LINK) -> $(PREFIX)/sbin/ims-sendmail"; fi; fi
	install -m 0644 $(wildcard docs/man/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 data/mapisvc.inf $(DESTDIR)$(PREFIX)/share/ims/
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/man/man8
	@# The unit as data/ has it (its confinement included), ExecStart where imsd goes.
	@mkdir -p $(BUILD)
	sed 's|/usr/local/bin/imsd|$(PREFIX)/bin/imsd|' data/msexchangeimc.service \
	    > $(BUILD)/msexchangeimc.service
	install -m 0644 $(BUILD)/msexchangeimc.service $(DESTDIR)$(PREFIX)/lib/systemd/system/
	install -m 0644 $(wildcard docs/man/*.8) $(DESTDIR)$(PREFIX)/share/man/man8/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(PROGS)) $(DESTDIR)$(PREFIX)/sbin/ims-sendmail
	@if [ "$$(readlink "$(SENDMAIL_LINK)" 2>/dev/null)" = "$(PREFIX)/sbin/ims-sendmail" ]; then rm -f "$(SENDMAIL_LINK)"; fi
	rm -f $(DESTDIR)$(PREFIX)/lib/systemd/system/msexchangeimc.service
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man1/,$(notdir $(wildcard docs/man/*.1)))
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man8/,$(notdir $(wildcard docs/man/*.8)))
	rm -f $(DESTDIR)$(PREFIX)/share/ims/mapisvc.inf

format:
	clang-format -i $(ALL_SRCS) $(wildcard lib/*/*.h) $(FUZZ_SRCS)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
