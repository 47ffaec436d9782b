# The two set-up commands of the README. Each creates .venv on first use.
# torch==2.13.0 is installed first so that pip never pulls a CUDA build of torch.
PY := .venv/bin/python
STAMP := .venv/.melfront-installed

.PHONY: test compare venv clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# Run the whole test suite.
test: $(STAMP)
	$(PY) -m pytest

# The main job: compare frontends on the built-in synthetic field-recording set, then write the report.
compare: $(STAMP)
	.venv/bin/melfront compare -o studies/quick

clean-venv:
	rm -rf .venv
