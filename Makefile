# Two commands: `make run` and `make test`. Everything else is optional.
PYTHON_VERSION := 3.13
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test lint demo bench bench-index-cost migrate install clean secret

# Python 3.13: pyenv's (as .python-version asks), else one on PATH, else pyenv installs it.
$(PY):
	@PYBIN=$$( (command -v pyenv >/dev/null 2>&1 && pyenv which python$(PYTHON_VERSION) 2>/dev/null) || command -v python$(PYTHON_VERSION) ); \
	if [ -z "$$PYBIN" ] && command -v pyenv >/dev/null 2>&1; then \
	  pyenv install -s $(PYTHON_VERSION) && PYBIN=$$(pyenv which python$(PYTHON_VERSION)); fi; \
	if [ -z "$$PYBIN" ]; then echo "Python $(PYTHON_VERSION) not found: install it (pyenv install $(PYTHON_VERSION))" >&2; exit 1; fi; \
	echo "creating $(VENV) with $$PYBIN"; $$PYBIN -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	@touch $(STAMP)

# With DEBUG off the app refuses to start without SECRET_KEY: give this checkout a random one
# in .env (never committed) unless the environment or .env already has one.
.env:
	@touch .env
secret: .env
	@if [ -z "$$SECRET_KEY" ] && ! grep -qs '^SECRET_KEY=' .env; then \
	  [ -s .env ] && [ -n "$$(tail -c1 .env)" ] && echo >> .env; \
	  echo "SECRET_KEY=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')" >> .env; \
	  echo "wrote a random SECRET_KEY to .env"; fi

install: $(STAMP) secret

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

bench-index-cost: install
	$(PY) bench/engine_throughput.py --index-cost --repeat 6

clean:
	rm -rf $(VENV) db.sqlite3 test-db.sqlite3* staticfiles
