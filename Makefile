# Two commands on a fresh machine: `make site` builds the site, `make test` runs every test.
# Both create .venv from requirements.lock first.
PYTHON ?= python3
# The Quarto the book is verified with; environment.yml and .github/workflows/publish.yml name the same one
# (tests/test_site.py keeps them in step).
QUARTO_VERSION := 1.10.18
VENV := .venv
BIN := $(abspath $(VENV))/bin
# The radon survey files are copied from a local mirror when there is one, else downloaded.
RADON_MIRROR ?= $(wildcard $(abspath ../shared/data/radon))
export RADON_MIRROR
export PATH := $(BIN):$(PATH)

.PHONY: site test lint bench bench-weight browser lighthouse clean-cache

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Quarto renders the real site: the pinned quarto-cli from PyPI, installed into .venv (a quarto already on the PATH
# is used only when that install fails, with a warning if its version differs). Where neither works, the same
# chapters are executed and written as an offline HTML preview instead, and the command says which it did.
site: $(VENV)/.installed
	@$(BIN)/pip install --quiet --disable-pip-version-check quarto-cli==$(QUARTO_VERSION) >/dev/null 2>&1 || true
	@if command -v quarto >/dev/null 2>&1 && quarto --version >/dev/null 2>&1; then \
		version=$$(quarto --version); \
		echo "Rendering the site with Quarto $$version ($$(command -v quarto)) into _site/"; \
		[ "$$version" = "$(QUARTO_VERSION)" ] || echo "Warning: the book is verified with Quarto $(QUARTO_VERSION), not $$version."; \
		QUARTO_PYTHON=$(BIN)/python quarto render; \
	else \
		echo "Quarto is not available here: building the offline preview into _preview/ instead."; \
		$(BIN)/python -m pooling.build preview --jobs 2; \
	fi

# The accessibility engine the browser tests run on every page, and Bootstrap with the cosmo theme for the test page
# of Quarto's own callout markup (installed from npm into .axe/; Quarto 1.10 ships Bootstrap 5.3).
AXE_VERSION = 4.14.1
AXE = .axe/node_modules/axe-core/axe.min.js
BOOTSTRAP_VERSION = 5.3.8
BOOTSTRAP_JS = .axe/node_modules/bootstrap/dist/js/bootstrap.bundle.min.js
COSMO_CSS = .axe/node_modules/bootswatch/dist/cosmo/bootstrap.min.css

browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "Install Chromium (Debian: apt-get install chromium chromium-driver) for the browser tests."; exit 1; fi; }
	@[ -f $(AXE) ] || npm install --silent --no-audit --no-fund --prefix .axe axe-core@$(AXE_VERSION)
	@[ -f $(BOOTSTRAP_JS) ] && [ -f $(COSMO_CSS) ] || npm install --silent --no-audit --no-fund --prefix .axe \
		bootstrap@$(BOOTSTRAP_VERSION) bootswatch@$(BOOTSTRAP_VERSION)

test: $(VENV)/.installed browser
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Not part of the tests: timings live here, written to benchmarks/results.md.
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py

# Page weight and Lighthouse scores of the preview against an earlier one: make bench-weight BEFORE=/path/_preview
LIGHTHOUSE_VERSION = 12.8.2
lighthouse: browser
	@[ -x .lighthouse/node_modules/.bin/lighthouse ] || npm install --silent --no-audit --no-fund --prefix .lighthouse lighthouse@$(LIGHTHOUSE_VERSION)

bench-weight: $(VENV)/.installed lighthouse
	$(BIN)/python benchmarks/weight.py --before $(BEFORE) --after _preview

clean-cache:
	rm -rf _cache _freeze
