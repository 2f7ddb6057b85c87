# tests/fuzz/fuzz.mk - fuzz targets (tests/fuzz/fuzz_<target>.c), included
# by the Makefile.
#
#   make fuzz                        libFuzzer binaries in build/fuzz/bin/
#                                    (clang, -fsanitize=fuzzer,address,undefined;
#                                    installs clang and libclang-rt-14-dev when
#                                    missing)
#   make fuzz-run FUZZ_SECONDS=N     runs each target N seconds (default 60),
#                                    one after the other, niced, starting from
#                                    testdata/fuzz/<target>/; new inputs go to
#                                    build/fuzz/corpus/<target>/, crashes to
#                                    build/fuzz/artifacts/<target>/
#   make fuzz-merge                  minimizes testdata/fuzz/<target>/ plus the
#                                    new inputs into testdata/fuzz/<target>/
#                                    (-merge=1); reproducers (crash-*, leak-*,
#                                    timeout-*, oom-*) are always kept
#   make fuzz-run FUZZ_TARGETS=gguf  any of these for some targets only
#
# `make test` builds each target with the normal compiler as a plain driver
# (replay_main.c) in $(BUILD)/fuzz-replay/ and tests/test_fuzz_replay.sh
# replays testdata/fuzz/<target>/ through it, plain and under ASan+UBSan.

FUZZ_TARGETS   ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_SECONDS   ?= 60
FUZZ_BUILD     := build/fuzz
FUZZ_HEADERS   := $(wildcard tests/fuzz/*.h)
FUZZ_CC        ?= clang
# libFuzzer options per target: inputs about the size of the format's
# headers; a dictionary where the format is text
FUZZ_OPTS_safetensors    = -max_len=4096 -dict=tests/fuzz/json.dict
FUZZ_OPTS_gguf           = -max_len=8192
FUZZ_OPTS_torch_bin      = -max_len=8192
FUZZ_OPTS_adapter_config = -max_len=4096 -dict=tests/fuzz/json.dict
FUZZ_OPTS_sharded_index  = -max_len=2048 -dict=tests/fuzz/json.dict
FUZZ_OPTS_regex          = -max_len=256
FUZZ_OPTS_archive        = -max_len=16384
FUZZ_COMMON_OPTS = -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048
# fuzz-run: one worker (-fork=1) that carries on after a crash, so one run
# collects every reproducer in build/fuzz/artifacts/<target>/
FUZZ_RUN_OPTS ?= -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1

FUZZ_REPLAY_BIN := $(FUZZ_TARGETS:%=$(BUILD)/fuzz-replay/fuzz_%)

# clang (make fuzz) lacks gcc's -fvect-cost-model; the rest of the flags stay
ifdef FUZZ_CLANG
CFLAGS_ALL := $(filter-out -fvect-cost-model=%,$(CFLAGS_ALL))
endif

.PHONY: fuzz fuzz-build fuzz-run fuzz-merge
test-build: $(FUZZ_REPLAY_BIN)

$(BUILD)/fuzz-replay/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(FUZZ_HEADERS) $(BUILD)/libloratool.a $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(INC_TESTS) -Itests/fuzz $(CFLAGS_ALL) -o $@ tests/fuzz/replay_main.c $< \
	    $(BUILD)/libloratool.a $(LDFLAGS_ALL) $(LDLIBS_ALL)

# The library and the targets with clang's coverage instrumentation and
# sanitizers.
fuzz:
	@./.ci/install-deps --fuzz
	@$(MAKE) --no-print-directory fuzz-build BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 FUZZ_CLANG=1 \
	    SAN_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/bin/fuzz_%)

$(BUILD)/bin/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_HEADERS) $(BUILD)/libloratool.a $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  FUZZ    $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(INC_TESTS) -Itests/fuzz $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $< \
	    $(BUILD)/libloratool.a $(LDFLAGS_ALL) -fsanitize=fuzzer $(LDLIBS_ALL)

# One target at a time, niced: the machine is shared.  A target's lines
# are made by make (FUZZ_OPTS_<target> is a make variable).
define fuzz_run_one
	@mkdir -p $(FUZZ_BUILD)/corpus/$(1) $(FUZZ_BUILD)/artifacts/$(1) testdata/fuzz/$(1)
	@echo "== fuzz $(1) ($(FUZZ_SECONDS) s, log in $(FUZZ_BUILD)/$(1).log)"
	-@nice -n 19 $(FUZZ_BUILD)/bin/fuzz_$(1) $(FUZZ_COMMON_OPTS) $(FUZZ_RUN_OPTS) $(FUZZ_OPTS_$(1)) \
	    -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)/ \
	    $(FUZZ_BUILD)/corpus/$(1) testdata/fuzz/$(1) >$(FUZZ_BUILD)/$(1).log 2>&1
	@grep -E '^#[0-9]+' $(FUZZ_BUILD)/$(1).log | tail -n 1
	@ls $(FUZZ_BUILD)/artifacts/$(1)

endef

fuzz-run: fuzz
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run_one,$(t)))

# Minimize each corpus: testdata's files plus the new ones, merged by
# coverage into a fresh folder (libFuzzer names the files by their SHA-1),
# then back into testdata/fuzz/<target>/ without the reproducers' copies,
# the pending/ ones and the real files of ../shared/corpus given as seeds
# (make_seeds.py writes those as corpus-*: they are not ours to commit).
define fuzz_merge_one
	@rm -rf $(FUZZ_BUILD)/merged/$(1)
	@mkdir -p $(FUZZ_BUILD)/merged/$(1) $(FUZZ_BUILD)/corpus/$(1) testdata/fuzz/$(1)
	-@nice -n 19 $(FUZZ_BUILD)/bin/fuzz_$(1) $(FUZZ_COMMON_OPTS) $(FUZZ_OPTS_$(1)) -merge=1 \
	    $(FUZZ_BUILD)/merged/$(1) testdata/fuzz/$(1) $(FUZZ_BUILD)/corpus/$(1) \
	    >$(FUZZ_BUILD)/$(1).merge.log 2>&1
	@for f in testdata/fuzz/$(1)/crash-* testdata/fuzz/$(1)/leak-* testdata/fuzz/$(1)/timeout-* \
	          testdata/fuzz/$(1)/oom-* testdata/fuzz/$(1)/pending/* $(FUZZ_BUILD)/corpus/$(1)/corpus-*; do \
	    [ -f "$$f" ] && rm -f $(FUZZ_BUILD)/merged/$(1)/$$(sha1sum <"$$f" | cut -c1-40); \
	done; true
	@find testdata/fuzz/$(1) -maxdepth 1 -type f ! -name 'crash-*' ! -name 'leak-*' \
	    ! -name 'timeout-*' ! -name 'oom-*' -delete
	@cp $(FUZZ_BUILD)/merged/$(1)/* testdata/fuzz/$(1)/ 2>/dev/null || true
	@echo "$(1): $$(find testdata/fuzz/$(1) -maxdepth 1 -type f | wc -l) files," \
	    "$$(cat testdata/fuzz/$(1)/* 2>/dev/null | wc -c) bytes"

endef

fuzz-merge: fuzz
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_merge_one,$(t)))
