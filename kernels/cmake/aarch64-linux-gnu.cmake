# Cross-compiles the kernels and their C++ tests for 64-bit ARM Linux (the Jetson CPU):
#   cmake -S . -B build/aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=kernels/cmake/aarch64-linux-gnu.cmake
#   cmake --build build/aarch64 && ctest --test-dir build/aarch64 --output-on-failure
# The tests run under qemu-aarch64 (`-cpu max` has the dot-product extension, so the neon_dot
# path is the one exercised). Needs the Debian packages g++-aarch64-linux-gnu and qemu-user
# (`make test-aarch64` installs them). The Python module is not cross-built.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(PRISM_BUILD_PYTHON OFF CACHE BOOL "The Python module is not cross-built" FORCE)
set(PRISM_TEST_RUNNER "qemu-aarch64;-cpu;max;-L;/usr/aarch64-linux-gnu" CACHE STRING
    "Runs the aarch64 test binaries on this machine")
