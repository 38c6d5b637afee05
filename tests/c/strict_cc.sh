#!/bin/sh
# A C compiler that makes every warning an error, for whole-suite checks of the generated C:
#   CC=$PWD/tests/c/strict_cc.sh STRICT_CC=clang python tests/conformance.py --jobs 2
# (the flags tests/targets/cpu/test_toolchain.py holds its sample to; the build adds -std=c11).
exec "${STRICT_CC:-gcc}" "$@" -Wall -Wextra -pedantic -Werror
