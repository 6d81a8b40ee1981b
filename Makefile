# Two commands: `make run` and `make test`. Everything else is optional.
PYTHON_VERSION := 3.13
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test lint demo bench migrate install clean

$(PY):
	@command -v pyenv >/dev/null 2>&1 && pyenv install -s $(PYTHON_VERSION) >/dev/null 2>&1 || true
	@PYBIN=$$( (command -v pyenv >/dev/null 2>&1 && pyenv which python$(PYTHON_VERSION) 2>/dev/null) || command -v python$(PYTHON_VERSION) || command -v python3 ); \
	  echo "creating $(VENV) with $$PYBIN"; $$PYBIN -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0

run: migrate
	$(PY) manage.py collection_load_demo
	$(PY) manage.py collection_operator
	$(VENV)/bin/honcho start -f Procfile

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

demo: migrate
	$(PY) manage.py collection_demo

bench: install
	$(PY) bench/engine_throughput.py

clean:
	rm -rf $(VENV) db.sqlite3 test-db.sqlite3* staticfiles
