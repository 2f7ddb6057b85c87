#!/bin/sh
# How input arguments resolve (spec/cli.md, "Input arguments"): an existing
# path wins over every other reading; :SCALE; a Hugging Face cache
# repository folder, FOLDER@REV and hub ids looked up offline; a file of an
# adapter directory names the directory.  Each case compares the bytes of
# a merge with the merge of the plain directory, or checks the exit code
# and the one-line message.  Prints PASS/FAIL lines; exits 1 on any FAIL.
set -u
LORATOOL=${LORATOOL:-build/loratool}
case $LORATOOL in /*) ;; *) LORATOOL=$PWD/$LORATOOL ;; esac
demo=$PWD/testdata/demo
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
failed=0
pass() { echo "PASS resolve:$1"; }
fail() { echo "FAIL resolve:$1: $2"; failed=1; }

# run NAME EXPECTED_RC CMD...: runs CMD in $tmp, stderr to $tmp/err
run() {
    name=$1 want=$2
    shift 2
    (cd "$tmp" && "$@") >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "$name" "exit $rc, expected $want: $(head -c 300 "$tmp/err")"
        return 1
    fi
    return 0
}
# tensors_equal A B: the two safetensors files hold the same tensors, byte
# for byte (their metadata records the input paths, which may differ)
tensors_equal() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, struct, sys
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}
sys.exit(0 if load(sys.argv[1]) == load(sys.argv[2]) else 1)
PY
}
# same NAME FILE [REF]: FILE holds the reference merge's tensors
same() {
    if tensors_equal "$tmp/$2" "$tmp/${3:-ref.safetensors}"; then pass "$1"; else fail "$1" "merged tensors differ"; fi
}
# says NAME TEXT: the one-line message holds TEXT
says() {
    if [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF -- "$2" "$tmp/err"; then
        pass "$1"
    else
        fail "$1" "message: $(head -c 300 "$tmp/err")"
    fi
}

cp -r "$demo/adapter" "$tmp/adapter"
cp -r "$demo/base" "$tmp/base"
run reference 0 "$LORATOOL" merge base adapter -o ref.safetensors || exit 1
run reference-half 0 "$LORATOOL" merge base adapter:0.5 -o ref_half.safetensors || exit 1

# ---- a Hugging Face cache ----
hub=$tmp/hub
repo=$hub/models--org--demo-lora
mkdir -p "$repo/refs/tags" "$repo/snapshots/1111111111111111111111111111111111111111" \
    "$repo/snapshots/2222222222222222222222222222222222222222" "$hub/models--gpt2/snapshots/3333333333333333333333333333333333333333" \
    "$hub/models--gpt2/refs"
cp "$demo/adapter/"* "$repo/snapshots/1111111111111111111111111111111111111111/"
# the tag's snapshot lacks the weights: picking it by mistake fails loudly
cp "$demo/adapter/adapter_config.json" "$repo/snapshots/2222222222222222222222222222222222222222/"
echo 1111111111111111111111111111111111111111 >"$repo/refs/main"
printf '2222222222222222222222222222222222222222' >"$repo/refs/tags/v1"
cp "$demo/adapter/"* "$hub/models--gpt2/snapshots/3333333333333333333333333333333333333333/"
echo 3333333333333333333333333333333333333333 >"$hub/models--gpt2/refs/main"

run hub-id 0 env HF_HUB_CACHE="$hub" "$LORATOOL" merge base org/demo-lora -o hub.safetensors && same hub-id hub.safetensors
if run hub-id-scale 0 env HF_HUB_CACHE="$hub" "$LORATOOL" merge base org/demo-lora:0.5 -o hub_half.safetensors; then
    same hub-id-scale hub_half.safetensors ref_half.safetensors
fi
run hub-single-name 0 env HF_HUB_CACHE="$hub" "$LORATOOL" merge base gpt2 -o gpt2.safetensors && same hub-single-name gpt2.safetensors
run hub-home 0 env -u HF_HUB_CACHE HF_HOME="$tmp" "$LORATOOL" merge base org/demo-lora@main -o home.safetensors &&
    same hub-home home.safetensors
mkdir -p "$tmp/xdg/huggingface" && ln -s "$hub" "$tmp/xdg/huggingface/hub"
run hub-xdg 0 env -u HF_HUB_CACHE -u HF_HOME XDG_CACHE_HOME="$tmp/xdg" "$LORATOOL" merge base org/demo-lora \
    -o xdg.safetensors && same hub-xdg xdg.safetensors
mkdir -p "$tmp/home/.cache/huggingface" && ln -s "$hub" "$tmp/home/.cache/huggingface/hub"
run hub-user-home 0 env -u HF_HUB_CACHE -u HF_HOME -u XDG_CACHE_HOME HOME="$tmp/home" "$LORATOOL" merge base \
    org/demo-lora -o userhome.safetensors && same hub-user-home userhome.safetensors
run hub-folder 0 "$LORATOOL" merge base "$repo" -o folder.safetensors && same hub-folder folder.safetensors
run hub-folder-commit 0 "$LORATOOL" merge base "$repo@1111111111111111111111111111111111111111" -o commit.safetensors &&
    same hub-folder-commit commit.safetensors
# refs/tags/v1 names the snapshot without weights: it must be the one opened
run hub-tag 3 env HF_HUB_CACHE="$hub" "$LORATOOL" merge base org/demo-lora@tags/v1 -o tag.safetensors ||
    { fail hub-tag "see above"; true; } && grep -q 2222222222222222222222222222222222222222 "$tmp/err" && pass hub-tag ||
    fail hub-tag "the tag's snapshot was not the one opened: $(cat "$tmp/err")"
run hub-inspect-path 0 env HF_HUB_CACHE="$hub" "$LORATOOL" inspect org/demo-lora --json &&
    if grep -q '"path":[[:space:]]*"org/demo-lora"' "$tmp/out" && grep -q '"format":[[:space:]]*"peft"' "$tmp/out"; then
        pass hub-inspect-path
    else
        fail hub-inspect-path "inspect --json path/format: $(head -c 200 "$tmp/out")"
    fi
run hub-missing-rev 4 env HF_HUB_CACHE="$hub" "$LORATOOL" inspect org/demo-lora@v9 &&
    says hub-missing-rev "no revision 'v9' in the Hugging Face cache"
run hub-missing-repo 4 env HF_HUB_CACHE="$hub" "$LORATOOL" inspect org/other && says hub-missing-repo "$hub"
run hub-rev-traversal 2 env HF_HUB_CACHE="$hub" "$LORATOOL" inspect "org/demo-lora@../../../etc" &&
    says hub-rev-traversal "is no revision name"
printf 'not-a-hash\n' >"$repo/refs/bad"
run hub-bad-ref 3 env HF_HUB_CACHE="$hub" "$LORATOOL" inspect org/demo-lora@bad && says hub-bad-ref "commit hash"
run hub-nothing-written 3 env HF_HUB_CACHE="$hub" "$LORATOOL" merge base org/demo-lora@tags/v1 -o nothing.safetensors &&
    if [ -e "$tmp/nothing.safetensors" ]; then fail hub-nothing-written "output left behind"; else pass hub-nothing-written; fi

# ---- an existing path wins ----
mkdir -p "$tmp/org"
cp -r "$demo/adapter" "$tmp/org/demo-lora"
rm "$repo/snapshots/1111111111111111111111111111111111111111/adapter_model.safetensors" # the cache copy now fails
run path-wins-over-cache 0 env HF_HUB_CACHE="$hub" "$LORATOOL" merge base org/demo-lora -o local.safetensors &&
    same path-wins-over-cache local.safetensors
cp -r "$demo/adapter" "$tmp/odd:0.5"
run path-wins-over-scale 0 "$LORATOOL" merge base "odd:0.5" -o colon.safetensors && same path-wins-over-scale colon.safetensors
run scale-after-odd-name 0 "$LORATOOL" merge base "odd:0.5:0.5" -o colon_half.safetensors &&
    same scale-after-odd-name colon_half.safetensors ref_half.safetensors
cp -r "$demo/adapter" "$tmp/a#b"
run path-wins-over-hash 0 "$LORATOOL" merge base "a#b" -o hash.safetensors && same path-wins-over-hash hash.safetensors
cp -r "$demo/adapter" "$tmp/at@v1"
run path-wins-over-at 0 "$LORATOOL" merge base "at@v1" -o at.safetensors && same path-wins-over-at at.safetensors

# ---- :SCALE ----
run scale-not-number 2 "$LORATOOL" merge base adapter:abc -o x.safetensors &&
    says scale-not-number "the scale after ':' must be a finite decimal number"
run scale-nan 2 "$LORATOOL" merge base adapter:nan -o x.safetensors && says scale-nan "finite decimal number"
run scale-hex 2 "$LORATOOL" merge base adapter:0x1p0 -o x.safetensors && says scale-hex "finite decimal number"
run scale-missing-path 4 "$LORATOOL" merge base nowhere/x:0.5 -o x.safetensors && says scale-missing-path "nowhere/x: cannot open"
run scale-on-base-refused 4 "$LORATOOL" merge base:0.5 adapter -o x.safetensors && says scale-on-base-refused "base:0.5"

# ---- ARCHIVE#PATH on a file that is no archive ----
run hash-not-archive 3 "$LORATOOL" inspect "base/model.safetensors#x" && says hash-not-archive "not an archive"

# ---- a file of an adapter directory names the directory ----
run adapter-file-weights 0 "$LORATOOL" merge base adapter/adapter_model.safetensors -o file.safetensors &&
    same adapter-file-weights file.safetensors
run adapter-file-config 0 "$LORATOOL" merge base adapter/adapter_config.json:0.5 -o cfg.safetensors &&
    same adapter-file-config cfg.safetensors ref_half.safetensors
run adapter-file-audit 0 "$LORATOOL" audit adapter/adapter_model.safetensors --json &&
    if grep -q '"format":[[:space:]]*"peft"' "$tmp/out"; then pass adapter-file-audit; else fail adapter-file-audit "not read as the adapter"; fi
run inspect-weights-file 0 "$LORATOOL" inspect adapter/adapter_model.safetensors --json &&
    if grep -q '"format":[[:space:]]*"safetensors"' "$tmp/out"; then pass inspect-weights-file; else
        fail inspect-weights-file "inspect must describe the file itself"; fi
mkdir -p "$tmp/lone" && cp "$demo/adapter/adapter_model.safetensors" "$tmp/lone/"
run lone-weights-file 3 "$LORATOOL" merge base lone/adapter_model.safetensors -o lone.safetensors
if grep -q "lone/adapter_model.safetensors" "$tmp/err" 2>/dev/null; then pass lone-weights-file; else
    fail lone-weights-file "a weights file without its config is not taken for a directory: $(cat "$tmp/err")"; fi

# ---- an output name that says "file" is never made a directory ----
run out-merge-bin 2 "$LORATOOL" merge base adapter -o out.bin && says out-merge-bin "not '.bin'"
run out-resize-pt 2 "$LORATOOL" resize adapter --rank 2 -o small.pt && says out-resize-pt "not '.pt'"
run out-convert-txt 2 "$LORATOOL" convert adapter --base base -o adapter.txt && says out-convert-txt "name it .gguf"
for f in out.bin small.pt adapter.txt; do
    [ -e "$tmp/$f" ] && fail "out-nothing-written" "$f exists"
done

exit $failed
