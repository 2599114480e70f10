# The two commands of the README, and the steps they are made of.
#   make run   build, install into .venv, serve examples/hello.wsgi on http://127.0.0.1:8000/
#   make test  build and run every check and test; CI runs exactly this

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test system-deps venv develop check-rust test-rust test-python lint-python loom bench clean

run: develop
	$(BIN)/ferrule start-server examples/hello.wsgi --host 127.0.0.1 --port $(PORT) --log-to-terminal --access-log

test: system-deps check-rust test-rust develop lint-python test-python

# Debian packages the tests use (strace observes sendfile; apache2-utils has rotatelogs;
# nginx is the balancer of tests/test_nginx.py; gdb runs under --enable-gdb; ss shows socket buffers;
# chromium draws the telemetry dashboard of tests/test_telemetry.py; php-fpm and php-cli serve the
# PHP pages of tests/test_php.py); installed when missing.
system-deps:
	@command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace; }
	@command -v rotatelogs >/dev/null || { apt-get update -qq && apt-get install -y -qq apache2-utils; }
	@PATH="$$PATH:/usr/sbin" command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx; }
	@command -v gdb >/dev/null || { apt-get update -qq && apt-get install -y -qq gdb; }
	@command -v ss >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2; }
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	@ls /usr/sbin/php-fpm* >/dev/null 2>&1 && command -v php >/dev/null || { apt-get update -qq && apt-get install -y -qq php-fpm php-cli; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r tests/requirements.txt

develop: venv
	$(BIN)/maturin develop --quiet

check-rust:
	cargo fmt --all -- --check
	cargo clippy --all-targets --quiet -- -D warnings

test-rust:
	cargo test --quiet

# Every interleaving of the hand-written atomics (src/sync.rs); not part of `test`: a
# build of its own (the cfg reaches every crate), about 5 minutes cold, 2 after a change.
loom:
	RUSTFLAGS="--cfg ferrule_loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom

lint-python: venv
	$(BIN)/ruff check python tests bench bench/run bench/slow_clients bench/pairs tools
	$(BIN)/ruff format --check python tests bench bench/run bench/slow_clients bench/pairs tools

test-python: develop
	$(BIN)/python -m pytest -q

bench:
	bench/run

clean:
	rm -rf $(VENV) target
