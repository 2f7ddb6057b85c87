# cases.sh - the case driver that the reference-checked CLI tests share
# (sourced by test_merge.sh, test_surgery.sh, test_convert.sh,
# test_merge_gguf.sh).
#
# run_cases LABEL CHECKER REF_DIR TIMEOUT [VERB]
#   CHECKER   a command taking "list REF", "setup CASE WORK", "check CASE WORK"
#   VERB      prepended to every recorded command line (merge's cases store
#             their arguments without it)
# For each case the checker writes WORK/run.<k>.args (one argument per
# line); each is run as "$LORATOOL [VERB] args..." with its exit status,
# stdout, stderr and start/end times (ns, where date has %N) saved next to
# it, then the checker judges the case and prints PASS/FAIL lines.
# Expects LORATOOL and tmp (a scratch directory) to be set; returns 1 when
# any case failed.

now_ns() {
    t=$(date +%s%N 2>/dev/null)
    case $t in *[!0-9]*) echo "" ;; *) echo "$t" ;; esac
}

run_cases() {
    label=$1 checker=$2 refdir=$3 seconds=$4 verb=${5:-}
    if [ ! -x "$LORATOOL" ]; then
        echo "FAIL $label: $LORATOOL is not built"
        return 1
    fi
    if [ ! -f "$refdir/cases.json" ]; then
        echo "FAIL $label: no reference data in $refdir (see tests/run.sh)"
        return 1
    fi
    limit=""
    command -v timeout >/dev/null 2>&1 && limit="timeout $seconds"
    names=$($checker list "$refdir") || { echo "FAIL $label: cannot read $refdir/cases.json"; return 1; }
    status=0
    for name in $names; do
        work="$tmp/$name"
        mkdir "$work" || return 1
        case_dir=$(cd "$refdir/$name" && pwd) || { echo "FAIL $name: no reference directory"; status=1; continue; }
        if ! $checker setup "$case_dir" "$work"; then
            echo "FAIL $name: setup failed"
            status=1
            continue
        fi
        for args in "$work"/run.*.args; do
            [ -f "$args" ] || continue
            run=${args%.args}
            set --
            while IFS= read -r arg; do
                set -- "$@" "$arg"
            done <"$args"
            now_ns >"$run.t0"
            $limit "$LORATOOL" $verb "$@" >"$run.out" 2>"$run.err" </dev/null
            echo $? >"$run.rc"
            now_ns >"$run.t1"
        done
        $checker check "$case_dir" "$work" || status=1
        rm -rf "$work"
    done
    return $status
}
