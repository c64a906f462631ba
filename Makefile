# The two set-up commands of the README: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.prism-installed
EXTRAS := toolchain,dev,camera,coop,plc
NATIVE := $(shell find kernels sdk firmware_bridge -name '*.cpp' -o -name '*.hpp' -o -name '*.inc' -o -name '*.pyx' 2>/dev/null)
CPP_BUILD := build/cpp

.PHONY: demo test test-python test-cpp venv clean

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml CMakeLists.txt $(NATIVE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

demo: $(STAMP)
	$(PY) -m sdk.tools.demo

test: test-cpp test-python

test-python: $(STAMP)
	$(PY) -m pytest -q

test-cpp: $(STAMP)
	$(VENV)/bin/cmake -S . -B $(CPP_BUILD) -G Ninja -DPRISM_BUILD_PYTHON=OFF -DPRISM_BUILD_TESTS=ON >/dev/null
	$(VENV)/bin/cmake --build $(CPP_BUILD) --parallel
	$(VENV)/bin/ctest --test-dir $(CPP_BUILD) --output-on-failure

clean:
	rm -rf build $(VENV) *.egg-info

# The kernels' C++ tests cross-compiled for aarch64 (the Jetson CPU) and run under qemu-aarch64,
# which exercises the NEON dot-product path. Installs the cross compiler and qemu when missing.
AARCH64_BUILD := build/aarch64
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: test-aarch64
test: test-aarch64

test-aarch64: $(STAMP)
	command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y g++-aarch64-linux-gnu qemu-user)
	$(VENV)/bin/cmake -S . -B $(AARCH64_BUILD) -G Ninja -DPRISM_BUILD_PYTHON=OFF \
	  -DCMAKE_TOOLCHAIN_FILE=kernels/cmake/aarch64-linux-gnu.cmake >/dev/null
	$(VENV)/bin/cmake --build $(AARCH64_BUILD) --parallel
	$(VENV)/bin/ctest --test-dir $(AARCH64_BUILD) --output-on-failure
