# yieldmeter — `make help` lists the targets. Every target installs what it needs first,
# so `make demo` or `make test` works as the first command on a fresh clone.

PYTHON      ?= python3
STATE       ?= $(or $(YIELDMETER_STATE_DIR),.yieldmeter)
LIB         := $(or $(YIELDMETER_LIB_DIR),$(STATE)/lib)
APP_VENV    := .venv
FLINK_VENV  := .venv-flink
MVN         := mvn -q -B -Dstyle.color=never
MVN_COPY    := org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies -DincludeScope=runtime

# The locked environments are installed by uv (pinned here), in seconds where pip takes minutes
# (0:28 against 2:13 for app.lock on this machine: uv installs and compiles bytecode in parallel).
# Compiled ahead, as pip does: with PYTHONDONTWRITEBYTECODE set (it is here) nothing is compiled
# later, and every process would compile what it imports again (6 s for litellm and dbt).
# uv reads neither pip.conf nor the PIP_* variables: where it cannot reach the index pip is
# configured for, pip installs.
UV_VERSION  := 0.13.9
define install_lock
	$(1)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION) \
	  && $(1)/bin/uv pip install -q --compile-bytecode --python $(1)/bin/python -r $(2) \
	  || $(1)/bin/pip install -q --disable-pip-version-check -r $(2)
endef

# Sentinels: each is rebuilt only when what it is made from changes (idempotent setup).
APP_OK      := $(APP_VENV)/.installed
FLINK_OK    := $(FLINK_VENV)/.installed
KAFKA_JARS  := $(LIB)/kafka/.fetched
FLINK_JARS  := $(LIB)/flink/.fetched
CHROMIUM_OK := $(STATE)/.chromium

.DEFAULT_GOAL := help
.PHONY: help setup test test-unit demo bench up down status lock clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(APP_OK) $(FLINK_OK) $(KAFKA_JARS) $(FLINK_JARS) $(CHROMIUM_OK) ## Create both environments, fetch the Kafka and Flink connector jars, install Chromium (idempotent)

$(APP_OK): requirements/app.lock pyproject.toml sdk/pyproject.toml
	$(PYTHON) -m venv $(APP_VENV)
	$(call install_lock,$(APP_VENV),requirements/app.lock)
	$(APP_VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e ./sdk -e .  # the SDK from sdk/, not PyPI
	$(APP_VENV)/bin/pip check
	@touch $@

# The Flink jobs get their own environment: apache-flink needs protobuf<6, dbt-core needs 6.
$(FLINK_OK): requirements/flink.lock
	$(PYTHON) -m venv $(FLINK_VENV)
	$(call install_lock,$(FLINK_VENV),requirements/flink.lock)
	$(FLINK_VENV)/bin/pip check
	@touch $@

$(KAFKA_JARS): infra/maven/kafka/pom.xml
	rm -rf $(LIB)/kafka
	$(MVN) -f $< $(MVN_COPY) -DoutputDirectory=$(abspath $(LIB)/kafka)
	@touch $@

$(FLINK_JARS): infra/maven/flink/pom.xml
	rm -rf $(LIB)/flink
	$(MVN) -f $< $(MVN_COPY) -DoutputDirectory=$(abspath $(LIB)/flink)
	@touch $@

# Headless Chromium opens the HTML report and the dbt docs site in their tests
# (tests/integration/test_report.py, tests/e2e/test_docs_site.py).
# Without root to install it, setup goes on and those tests skip, saying why.
$(CHROMIUM_OK):
	@if command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium); then \
	  mkdir -p $(@D) && touch $@; \
	else echo "Chromium is not installed and apt-get could not install it: the browser tests will skip."; fi

# Two pytest workers (pytest-xdist), one test file each at a time (tests/conftest.py): one worker
# left the 2 cores idle 44 % of the time (JVMs starting, Kafka), two leave them idle 14 %; the
# whole of `make test` took 18 minutes instead of 26 on the same day.
TEST_WORKERS ?= 2

test: ## Run the whole test suite on real Kafka, Flink and ClickHouse
	$(MAKE) -j4 setup  # the environments and the jars side by side: they do not depend on each other
	$(APP_VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: $(APP_OK) ## Run only the tests that need no services
	$(APP_VENV)/bin/pytest -m unit

demo: setup ## Start Kafka, migrate the warehouse, run the pipeline on a simulated workload
	$(APP_VENV)/bin/yieldmeter demo

bench: setup ## Run the benchmarks and print their figures
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(APP_VENV)/bin/python $$b || exit 1; done

up: setup ## Start the local Kafka broker
	$(APP_VENV)/bin/yieldmeter up
down: $(APP_OK) ## Stop the local Kafka broker
	$(APP_VENV)/bin/yieldmeter down
status: $(APP_OK) ## Show what runs
	$(APP_VENV)/bin/yieldmeter status

lock: ## Re-resolve requirements/*.lock from pyproject.toml (needs PyPI)
	rm -rf /tmp/ym-lock && $(PYTHON) -m venv /tmp/ym-lock/app && /tmp/ym-lock/app/bin/pip install -q ./sdk ".[dev,litellm]" \
	  && { echo "# yieldmeter-sdk is not pinned here: make setup installs it from ./sdk"; \
	       /tmp/ym-lock/app/bin/pip freeze --exclude yieldmeter --exclude yieldmeter-sdk; } > requirements/app.lock
	$(PYTHON) -m venv /tmp/ym-lock/flink && /tmp/ym-lock/flink/bin/pip install -q "apache-flink==2.2.1" \
	  && /tmp/ym-lock/flink/bin/pip freeze > requirements/flink.lock

clean: ## Stop the broker and remove environments and local state
	-[ -x $(APP_VENV)/bin/yieldmeter ] && $(APP_VENV)/bin/yieldmeter down
	rm -rf $(APP_VENV) $(FLINK_VENV) $(STATE)
