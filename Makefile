# Entry points a newcomer runs on a fresh machine. Each target creates the virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME ?= python3.12
ARCH ?= arm64
REQUIREMENTS := requirements.txt layer_build/requirements.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | sha256sum | cut -c1-12)

.PHONY: venv run serve test lint bench layer clean

$(STAMP): $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

## venv: just the virtualenv with the pinned requirements (Pulumi.yaml points the CLI at it)
venv: $(STAMP)

## run: deploy the real program into the embedded emulator, upload the sample photos, print the results
run: $(STAMP)
	$(PY) -m local run $(ARGS)

## serve: same, then keep the emulator running for more uploads (Ctrl-C stops it)
serve: $(STAMP)
	$(PY) -m local run --serve $(ARGS)

## test: the whole test suite (mocks, pipeline, handler on moto, layer, end to end)
test: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

## layer: build the Pillow layer zip (RUNTIME=python3.12|python3.13, ARCH=arm64|x86_64)
layer: $(STAMP)
	$(PY) -m layer_build --runtime $(RUNTIME) --arch $(ARCH) $(ARGS)

clean:
	rm -rf $(VENV) out .build .pytest_cache .ruff_cache
