#!/bin/sh
# `make install` into a temporary DESTDIR, then build a program against the
# installed header and library through pkg-config and run it.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build=$(dirname "$LORATOOL")
if [ "$build" != build ]; then
    # installing rebuilds nothing, but a sanitizer build's objects cannot be
    # relinked without its flags: the plain build's pass covers install
    echo "SKIP install: checked with the plain build only"
    exit 0
fi
if make --no-print-directory -s install BUILD="$build" PREFIX=/usr DESTDIR="$tmp" >"$tmp/log" 2>&1 &&
   [ -x "$tmp/usr/bin/loratool" ] && [ -f "$tmp/usr/include/loratool.h" ] &&
   [ -f "$tmp/usr/lib/libloratool.a" ] && [ -f "$tmp/usr/lib/libloratool.so.1" ]; then
    echo "PASS install:files"
else
    echo "FAIL install:files: $(tail -3 "$tmp/log")"
    exit 1
fi
cat >"$tmp/use.c" <<'C'
#include <loratool.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    lt_error err;
    lt_adapter *ad = argc > 1 ? lt_adapter_open(argv[1], &err) : NULL;
    if (!ad) {
        printf("error: %s\n", argc > 1 ? err.message : "no path");
        return 1;
    }
    printf("%zu modules\n", lt_adapter_module_count(ad));
    lt_adapter_close(ad);
    return 0;
}
C
flags=$(PKG_CONFIG_SYSROOT_DIR="$tmp" PKG_CONFIG_PATH="$tmp/usr/lib/pkgconfig" pkg-config --cflags --libs --static loratool)
if cc -o "$tmp/use" "$tmp/use.c" $flags 2>"$tmp/cc.log" &&
   [ "$(LD_LIBRARY_PATH="$tmp/usr/lib" "$tmp/use" testdata/demo/adapter)" = "14 modules" ]; then
    echo "PASS install:pkg-config-program"
else
    echo "FAIL install:pkg-config-program: $(cat "$tmp/cc.log")"
    exit 1
fi
