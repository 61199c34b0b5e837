# The harness the shell tests share, sourced after `set -u`: a temporary
# directory $tmp removed at exit, pass/fail counts, and expect.

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
pass=0 fail=0

ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect CODE PATTERN -- COMMAND...: exit status CODE and PATTERN in stderr,
# stdout in $tmp/out. A minute is far more than any command here needs, so
# a timeout is a hang (a FIFO waited on, a runaway loop).
expect() {
    local code=$1 pattern=$2
    shift 3
    timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -eq 124 ]; then bad "hangs: $*"; return; fi
    if [ "$rc" -ge 128 ]; then bad "crashed (status $rc): $*"; cat "$tmp/err"; return; fi
    if [ "$rc" -ne "$code" ]; then bad "status $rc, want $code: $*"; cat "$tmp/err"; return; fi
    if [ -n "$pattern" ] && ! grep -q -- "$pattern" "$tmp/err"; then bad "stderr lacks '$pattern': $*"; cat "$tmp/err"; return; fi
    ok
}

# The closing line ctest's output is read for; the status of the test.
finish() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
