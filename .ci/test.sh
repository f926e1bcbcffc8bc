#!/bin/sh
# Run the C unit test and the busted suite for each interpreter named, and
# close with one line "tests: N passed, M failed". Exits non-zero when any
# test failed or errored, or when no test ran at all.
#   .ci/test.sh [--asan|--valgrind] lua5.1 lua5.4 luajit
mode=plain
case "$1" in --asan|--valgrind) mode=${1#--}; shift ;; esac
[ $# -gt 0 ] || set -- lua5.1 lua5.4 luajit
cd "$(dirname "$0")/.." || exit 1
log=$(mktemp /tmp/tlscache-test.XXXXXX)
trap 'rm -f "$log"' EXIT
passed=0 failed=0 status=0

for lua in "$@"; do
  echo "=== $lua ($mode) ==="
  set --
  case $mode in
    asan)
      # float-cast-overflow is not part of GCC's "undefined": a double
      # beyond INT_MAX converted to int (a huge timeout) must be caught too
      rt="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)"
      set -- VARIANT=-asan OPT="-O1 -g" \
        EXTRA_CFLAGS="-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=undefined,float-cast-overflow" \
        EXTRA_LDFLAGS="-fsanitize=address,undefined,float-cast-overflow" \
        TEST_WRAP="env LD_PRELOAD='$rt' ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 LSAN_OPTIONS=suppressions=$PWD/.ci/lsan.supp:print_suppressions=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
      ;;
    valgrind)
      set -- VARIANT=-vg OPT="-O1 -g" \
        TEST_WRAP="valgrind -q --error-exitcode=87 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --suppressions=$PWD/.ci/valgrind.supp"
      ;;
  esac
  make --no-print-directory test-one LUA="$lua" "$@" >"$log" 2>&1
  rc=$?
  cat "$log"
  # busted: "N successes / M failures / K errors / P pending : T seconds"
  s=$(grep -Eo '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$log" | tail -1)
  ok=$(echo "$s" | awk '{print $1}'); bad=$(echo "$s" | awk '{print $4 + $7}')
  # the C unit tests: "cache_test: N passed, M failed", "record_test: ..."
  u=$(grep -Eo "[a-z_]+_test: [0-9]+ passed, [0-9]+ failed" "$log" | awk "{p+=\$2; f+=\$4} END {if (NR) print \"unit:\", p, \"passed,\", f, \"failed\"}")
  uok=$(echo "$u" | awk '{print $2}'); ubad=$(echo "$u" | awk '{print $4}')
  passed=$((passed + ${ok:-0} + ${uok:-0}))
  failed=$((failed + ${bad:-0} + ${ubad:-0}))
  if [ $rc -ne 0 ] || [ -z "$ok" ] || [ -z "$uok" ]; then
    echo "!!! $lua ($mode): make test-one exited $rc" >&2
    [ "${bad:-0}" -gt 0 ] || failed=$((failed + 1))
    status=1
  fi
done

echo "tests: $passed passed, $failed failed"
[ "$passed" -gt 0 ] || { echo "no test ran" >&2; status=1; }
[ "$failed" -eq 0 ] || status=1
exit $status
