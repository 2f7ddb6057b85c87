# loratool - build, test, install.  See README.md.
CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
SAN_FLAGS ?=
OPT     ?= -O2
# The shared library's ABI version: bumped when loratool.h changes
# incompatibly (spec/library.md).
SOMAJOR  = 1

# Each layer sees only the headers it may use: the public header is in
# lib/include; lib/*.h are the core's internals (lib/ and formats/ may use
# them); formats/*.h the plug-in interface (formats/ only); the CLI sees
# the public header and its own.  Tests may include everything.
CPPFLAGS_ALL = -D_GNU_SOURCE
INC_LIB      = -Ilib/include -Ilib
INC_FORMATS  = -Ilib/include -Ilib -Iformats
INC_CLI      = -Ilib/include -Icli
INC_TESTS    = -Ilib/include -Ilib -Iformats -Itests
# -fvect-cost-model=dynamic: let -O2 vectorize the merge kernel's loops;
# -fno-trapping-math: we never enable FP traps, so selects between computed
#   values may be vectorized (IEEE results unchanged);
# -ffp-contract=off: never fuse a*b+c, so results are the same on every ISA.
CFLAGS_ALL   = -std=c11 $(OPT) -g -Wall -Wextra -Werror -fPIC -pthread -fvect-cost-model=dynamic \
               -fno-trapping-math -ffp-contract=off $(SAN_FLAGS) $(CFLAGS)
LDLIBS_ALL   = -lcjson -larchive -lz -lm -lpthread
LDFLAGS_ALL  = -pthread $(SAN_FLAGS) $(LDFLAGS)

LIB_SRC  := $(sort $(wildcard lib/*.c) $(wildcard formats/*.c))
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
HEADERS  := $(wildcard lib/include/*.h lib/*.h formats/*.h cli/*.h tests/*.h)

.PHONY: all deps test test-build demo bench tsan install clean
all: deps $(BUILD)/loratool $(BUILD)/libloratool.a $(BUILD)/libloratool.so

deps:
	@./.ci/install-deps

# The float32 merge kernel bounds its error fused or not (lib/merge_fast.c),
# so it may use FMA.
$(BUILD)/obj/lib/merge_fast.o $(BUILD)/generic/obj/lib/merge_fast.o: CFLAGS_ALL += -ffp-contract=fast

# The quantizers', linear algebra's and verify's 32-byte vector helpers are
# static inline: no ABI crosses a file, so GCC's note about AVX vector
# passing is noise.
$(BUILD)/obj/lib/quant.o $(BUILD)/obj/lib/quant_k.o $(BUILD)/obj/lib/linalg_qr.o \
    $(BUILD)/obj/lib/linalg_gemm.o $(BUILD)/obj/lib/verify_forward.o: CFLAGS_ALL += -Wno-psabi

# V=1 shows the full commands
Q = $(if $(V),,@)

$(BUILD)/obj/lib/%.o: lib/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(INC_LIB) $(CFLAGS_ALL) -fvisibility=hidden -c $< -o $@

$(BUILD)/obj/formats/%.o: formats/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(INC_FORMATS) $(CFLAGS_ALL) -fvisibility=hidden -c $< -o $@

$(BUILD)/obj/cli/%.o: cli/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(INC_CLI) $(CFLAGS_ALL) -c $< -o $@

# The test build's second loratool, built from the same sources with the
# AVX2 clones left out (core.h, LT_TARGET_CLONES): tests/test_isa.sh checks
# that it writes the same bytes as the dispatching one.  Only the files
# that build clones (directly or through a header) are compiled again.
CLONE_HDRS  := $(filter-out lib/core.h,$(shell grep -l LT_TARGET_CLONES lib/*.h))
CLONED_SRC  := $(shell grep -l -e LT_TARGET_CLONES $(foreach h,$(CLONE_HDRS),-e '"$(notdir $(h))"') $(LIB_SRC))
GENERIC_OBJ := $(CLONED_SRC:%.c=$(BUILD)/generic/obj/%.o) $(filter-out $(CLONED_SRC:%.c=$(BUILD)/obj/%.o),$(LIB_OBJ))

$(BUILD)/generic/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) -DLT_NO_TARGET_CLONES $(INC_FORMATS) $(CFLAGS_ALL) -Wno-psabi -fvisibility=hidden -c $< -o $@

$(BUILD)/generic/loratool: $(CLI_OBJ) $(GENERIC_OBJ)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJ) $(GENERIC_OBJ) $(LDLIBS_ALL)

$(BUILD)/libloratool.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/libloratool.so: $(LIB_OBJ)
	$(Q)$(CC) -shared -Wl,-soname,libloratool.so.$(SOMAJOR) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/loratool: $(CLI_OBJ) $(BUILD)/libloratool.a
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJ) $(BUILD)/libloratool.a $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libloratool.a $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(INC_TESTS) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libloratool.a $(LDFLAGS_ALL) $(LDLIBS_ALL)

# Build everything, make the numpy reference fixtures, run every test
# (plain build, then again under ASan+UBSan), print "N passed, N failed".
test:
	@./.ci/install-deps --test
	@$(MAKE) --no-print-directory test-build BUILD=build
	@$(MAKE) --no-print-directory test-build BUILD=build/asan OPT=-O1 \
	    SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
	@tests/run.sh build build/asan

test-build: $(BUILD)/loratool $(BUILD)/libloratool.a $(TEST_BIN) $(BUILD)/generic/loratool

# The threaded merge once under ThreadSanitizer (not part of `make test`:
# TSan builds are slow and may not mix with ASan): a merge on 1, 2 and 4
# threads of the demo model and of a multi-tensor test fixture, each
# compared with the plain build's output.
tsan:
	@./.ci/install-deps --test
	@$(MAKE) --no-print-directory BUILD=build/tsan OPT=-O1 SAN_FLAGS="-fsanitize=thread" build/tsan/loratool build/loratool
	@tests/tsan_merge.sh build/tsan/loratool build/loratool

demo: all
	@testdata/demo.sh $(BUILD)/loratool

bench: all
	@bench/run.sh $(BUILD)/loratool

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/loratool $(DESTDIR)$(PREFIX)/bin/loratool
	install -m 644 $(BUILD)/libloratool.a $(DESTDIR)$(PREFIX)/lib/libloratool.a
	install -m 755 $(BUILD)/libloratool.so $(DESTDIR)$(PREFIX)/lib/libloratool.so.$(SOMAJOR)
	ln -sf libloratool.so.$(SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libloratool.so
	install -m 644 lib/include/loratool.h $(DESTDIR)$(PREFIX)/include/loratool.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/.*LT_VERSION_STRING "\(.*\)"/\1/p' lib/include/loratool.h)|' \
	    lib/loratool.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/loratool.pc

clean:
	rm -rf build

include tests/fuzz/fuzz.mk
