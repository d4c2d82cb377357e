# The two commands a user needs: `make demo` and `make test`. Each sets up what is missing
# (system packages, a virtualenv in .venv, the build) and is quick the second time.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV)/bin)
STAMPS := $(VENV)/.stamps
BUILD_DIR := build/python
SOURCES := $(shell find csrc python tests/cpp cmake -type f ! -name '*.pyc') CMakeLists.txt pyproject.toml
CXX_FILES := $(shell find csrc tests/cpp tests/fuzz -name '*.cpp' -o -name '*.h')

.PHONY: setup demo test test-stubs test-compat test-newest test-sanitize fuzz sanitize-build test-cpp test-python lint \
  format bench bench-serving bench-soak clean

setup: $(STAMPS)/installed

$(STAMPS)/venv:
	$(PYTHON) -m venv $(VENV)
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/system: scripts/install-system-deps.sh | $(STAMPS)/venv
	bash scripts/install-system-deps.sh
	touch $@

$(STAMPS)/python-deps: requirements-dev.txt requirements-test.txt | $(STAMPS)/venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Built with the torch already in the venv (no isolated build that would fetch another).
$(STAMPS)/installed: $(SOURCES) $(STAMPS)/system $(STAMPS)/python-deps
	PATH="$(BIN):$$PATH" $(PY) -m pip install -q --disable-pip-version-check \
	  --no-build-isolation --no-deps -Ccmake.define.TSNATIVE_BUILD_TESTS=ON .
	touch $@

demo: setup
	PATH="$(BIN):$$PATH" $(PY) examples/demo.py

test: setup lint test-stubs test-cpp test-python

# _C.pyi, written by hand, against the built extension (mypy's stubtest).
test-stubs: setup
	$(PY) -m mypy.stubtest tsnative._C --concise --allowlist tests/stubtest-allowlist.txt

test-cpp: setup
	PATH="$(BIN):$$PATH" ctest --test-dir $(BUILD_DIR) --output-on-failure

test-python: setup
	PATH="$(BIN):$$PATH" $(PY) -m pytest

# The README's install steps as written, with PyPI's CUDA torch 2.14.1 and torchvision, in a
# virtualenv of their own (.venv-compat), then the pytest suite there.
test-compat:
	bash scripts/test-compat.sh

# The newest torch release (requirements-newest.txt, past this machine's cap on torch) in
# .venv-newest: tsnative built against it, then the tests that follow torch's changes.
NEWEST_TESTS := tests/test_export.py tests/test_export_strict.py tests/test_errors.py \
  tests/test_cli.py tests/test_module.py tests/test_aoti.py tests/test_onnx.py \
  tests/test_script_objects.py tests/test_custom_ops.py tests/test_interrupt.py \
  tests/test_classify.py tests/test_cpp_api.py tests/test_server.py tests/test_server_grpc.py \
  tests/test_server_model_control.py
test-newest:
	bash scripts/test-newest.sh $(NEWEST_TESTS)

# The core, ts-infer, the C++ tests and the fuzz harnesses built by clang with AddressSanitizer
# + UndefinedBehaviorSanitizer (build/sanitize, one build for both targets below).
SANITIZE_DIR := build/sanitize
FUZZ_SECONDS ?= 180
FUZZ_HARNESSES := image tensor_file metadata labels model package infer_request

$(STAMPS)/sanitize-system: scripts/install-system-deps.sh | $(STAMPS)/venv
	bash scripts/install-system-deps.sh --sanitize
	touch $@

sanitize-build: setup $(STAMPS)/sanitize-system
	cmake -S . -B $(SANITIZE_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_COMPILER=clang++-14 -DPython_EXECUTABLE=$(abspath $(PY)) \
	  -DTSNATIVE_SANITIZE=ON -DTSNATIVE_BUILD_TESTS=ON -DTSNATIVE_BUILD_FUZZERS=ON >/dev/null
	cmake --build $(SANITIZE_DIR) -j2 --target tsnative_core_tests ts-infer \
	  $(addprefix fuzz_,$(FUZZ_HARNESSES))

# The C++ tests, then the server end to end: its tests against the sanitized ts-infer (a
# finding, or a leak at exit, fails its clean-shutdown check).
test-sanitize: sanitize-build
	source scripts/sanitizer-env.sh && ctest --test-dir $(SANITIZE_DIR) --output-on-failure
	source scripts/sanitizer-env.sh && TSNATIVE_TS_INFER=$(abspath $(SANITIZE_DIR))/ts-infer \
	  $(PY) -m pytest -q tests/test_server.py tests/test_server_grpc.py \
	  tests/test_server_model_control.py

build/fuzz/seeds/.made: tests/fuzz/make_seeds.py $(STAMPS)/installed
	rm -rf build/fuzz/seeds
	$(PY) tests/fuzz/make_seeds.py build/fuzz/seeds
	touch $@

# FUZZ_SECONDS per harness (CI runs 30); FUZZ_HARNESSES to pick some.
fuzz: sanitize-build build/fuzz/seeds/.made
	bash scripts/fuzz.sh $(SANITIZE_DIR) $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

lint: $(STAMPS)/python-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/clang-format --dry-run -Werror $(CXX_FILES)

format: $(STAMPS)/python-deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/clang-format -i $(CXX_FILES)

$(STAMPS)/bench-deps: requirements-bench.txt | $(STAMPS)/venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench: setup $(STAMPS)/bench-deps
	PATH="$(BIN):$$PATH" $(PY) benchmarks/run.py $(BENCH_ARGS)

# ts-infer serve driven by tritonclient at concurrency 1..64 against in-process calls, and
# the peers, MLServer and LitServe (in .venv-peers: their dependencies would change the test
# venv's).
.venv-peers/.installed:
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/pip install -q --disable-pip-version-check torch==2.13.0 numpy mlserver \
	  litserve
	touch $@

bench-serving: setup .venv-peers/.installed
	PATH="$(BIN):$$PATH" $(PY) benchmarks/serving.py $(BENCH_ARGS)

# ts-infer serve's RSS over a long run of good and bad requests (BENCH_ARGS="--seconds 60").
bench-soak: setup
	PATH="$(BIN):$$PATH" $(PY) benchmarks/soak.py $(BENCH_ARGS)

clean:
	rm -rf build $(VENV) .venv-compat .venv-newest .venv-peers
