#!/bin/sh
# The house's layering, checked on the built objects (spec/library.md):
# lib/ needs nothing that only formats/ or cli/ define, formats/ nothing
# from cli/; the shared library exports exactly the calls loratool.h
# declares; no source reaches another layer's headers by a relative path.
set -u
build=$(dirname "$LORATOOL")
obj=$build/obj
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
check() { # name, file of offending symbols
    if [ -s "$2" ]; then
        echo "FAIL $1: $(tr '\n' ' ' <"$2")"
        status=1
    else
        echo "PASS $1"
    fi
}
for layer in lib formats cli; do
    nm --defined-only -g "$obj/$layer"/*.o 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u >"$tmp/def_$layer"
    nm -u "$obj/$layer"/*.o 2>/dev/null | awk '{print $NF}' | sort -u >"$tmp/use_$layer"
done
if [ ! -s "$tmp/def_lib" ] || [ ! -s "$tmp/def_formats" ]; then
    echo "FAIL layers: no objects under $obj"
    exit 1
fi
comm -12 "$tmp/use_lib" "$tmp/def_formats" >"$tmp/x"; check "layers:lib-needs-nothing-from-formats" "$tmp/x"
comm -12 "$tmp/use_lib" "$tmp/def_cli" >"$tmp/x"; check "layers:lib-needs-nothing-from-cli" "$tmp/x"
comm -12 "$tmp/use_formats" "$tmp/def_cli" >"$tmp/x"; check "layers:formats-need-nothing-from-cli" "$tmp/x"

# exported symbols of the shared library = the LT_API declarations (the
# sanitizer builds make no shared library: the plain build's pass checks)
if [ ! -f "$build/libloratool.so" ]; then
    echo "SKIP layers:exports: no $build/libloratool.so (checked with the plain build)"
    exit $status
fi
sed -n 's/^LT_API .*[ *]\(lt_[a-z0-9_]*\)(.*/\1/p' lib/include/loratool.h | sort -u >"$tmp/declared"
nm -D --defined-only "$build/libloratool.so" | awk '$2 ~ /^[TWDBRVi]$/ {print $3}' | sed 's/@.*//' |
    grep -v '^_' | sort -u >"$tmp/exported"
comm -13 "$tmp/declared" "$tmp/exported" >"$tmp/x"; check "layers:exports-only-the-header" "$tmp/x"
comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/x"; check "layers:exports-all-of-the-header" "$tmp/x"
[ "$(wc -l <"$tmp/declared")" -gt 50 ] && echo "PASS layers:header-declarations-found" ||
    { echo "FAIL layers:header-declarations-found"; status=1; }

# includes: no "../" paths; cli/ includes no internal header of lib/ or formats/
grep -n '#include "\.\./' lib/*.c lib/*.h formats/*.c formats/*.h cli/*.c cli/*.h >"$tmp/x"; check "layers:no-relative-includes" "$tmp/x"
for h in lib/*.h formats/*.h; do
    grep -ln "#include \"$(basename "$h")\"" cli/*.c cli/*.h 2>/dev/null
done >"$tmp/x"; check "layers:cli-includes-only-public-headers" "$tmp/x"
for h in formats/*.h; do
    grep -ln "#include \"$(basename "$h")\"" lib/*.c lib/*.h 2>/dev/null
done >"$tmp/x"; check "layers:lib-includes-no-format-header" "$tmp/x"
exit $status
