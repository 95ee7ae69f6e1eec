# Two entry points: `make demo` and `make test`. Both create .venv when missing and install into it once;
# a second run finds the stamp file and skips the install.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# torch and torchvision must come from matching builds; both lie on this machine's disk for Python 3.11.
TORCH   ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install browser demo test test-all lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q $(TORCH)
	# sam2 is an sdist whose build imports torch: build it against the torch above, pure Python (no CUDA op).
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-build-isolation sam2==1.1.0
	$(BIN)/pip install -q -e '.[test,ray,nninteractive]'
	rm -f $(VENV)/.installed-*
	touch $@

# The report's browser test (tests/test_report_browser.py) drives the system's Chromium through its chromedriver,
# both from the distribution's packages (Debian: chromium, chromium-driver); installed once, when missing.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; else \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi

demo: install
	$(BIN)/zeroshot demo --out runs/demo

test: install browser
	$(BIN)/ruff check zeroshot tests benchmarks
	$(BIN)/python -m pytest -q

test-all: install browser
	$(BIN)/python -m pytest -q -m 'slow or not slow'

lint: install
	$(BIN)/ruff check zeroshot tests benchmarks
	$(BIN)/ruff format --check zeroshot tests benchmarks

clean:
	rm -rf $(VENV) runs phantom-data
