# Two commands for people (see README.md): `make course` and `make test`.
# Everything else here is what they stand on. Each step is idempotent: a second run
# only re-installs when pyproject.toml or constraints.txt changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rlteach-installed
PORT   ?= 8888
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
export PATH := $(abspath $(BIN)):$(PATH)
# Cached bytecode saves seconds on every test run (some shells turn it off).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: course test test-fast lint setup browser postgres sandbox exercises clean-notebooks bench bench-peers bench-ablation bench-rlhf bench-sim2real student-edition help

help:
	@echo "make course     set up, then open the course in JupyterLab (prints the URL)"
	@echo "make test       set up, then run the whole test suite"
	@echo "make test-fast  the library, harness and preprocessor tests alone (21-28 s on 2 cores)"
	@echo "make lint       ruff and mypy"
	@echo "make exercises  regenerate exercises/ from solutions/ with nbgrader"
	@echo "make bench      time every notebook and one autograde per assignment"
	@echo "make bench-peers  race rlteach's PPO against Stable-Baselines3 (own venv: .venv-bench)"
	@echo "make bench-ablation  PPO on CartPole with each implementation detail switched in turn (long: ~30 min)"
	@echo "make bench-rlhf  RLHF on the enumerable token task over BENCH_SEEDS seeds: reward model, PPO, DPO (~1 min a seed)"
	@echo "make bench-sim2real  sim-to-real on CartPole over BENCH_SEEDS seeds: nominal PPO, domain-randomised PPO, LQR (~1 min a seed)"
	@echo "make student-edition  what students receive: build/student/rlteach-course/ and its .zip"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rlteach needs Python 3.11 or newer; this is " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (rlteach)" >/dev/null
	@touch $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads one).
browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "browser tests need Debian's chromium: sudo apt-get install chromium chromium-driver (they are skipped without it)"; fi; }

# Debian's bubblewrap, the sandbox every autograded kernel runs in (rlteach/grading/sandbox.py).
sandbox:
	@command -v bwrap >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
		else echo "grading runs student code in bubblewrap: sudo apt-get install bubblewrap (the sandbox tests are skipped without it)"; fi; }

# Debian's PostgreSQL server binaries for the gradebook test (the test starts its own cluster).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
		else echo "the PostgreSQL gradebook test needs Debian's postgresql package (it is skipped without it)"; fi; }

course: setup
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(PORT) $(AS_ROOT) --ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/lectures

# Two worker processes, each taking whole test files (fixtures that grade a class are built once).
test: setup browser postgres sandbox lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

# ruff and mypy, configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check rlteach tests benchmarks scripts nbgrader_config.py
	$(BIN)/mypy

# The modules below hold only notebook, server and browser tests: not even imported here.
SERVER_TESTS := browser course_command gradebook_postgres grading_robustness grading_pipeline selfcheck sandbox
# Two pytest processes side by side, one torch thread each (tests/conftest.py): the grading modules
# (which import nbgrader and nbformat) with the parts' tests, and the library modules.
# Unlike pytest-xdist's workers, each process imports only its own half.
GRADING_FAST := autograde grading student_edition notebooks seal similarity $(patsubst tests/test_%.py,%,$(wildcard tests/test_parts_*.py))
FAST := -q -p no:cacheprovider -p no:xdist -p no:anyio -m "not notebooks and not slow"
.PHONY: test-fast-grading test-fast-library
test-fast: setup
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-fast-grading test-fast-library
test-fast-grading:
	$(BIN)/python -m pytest $(FAST) $(foreach t,$(GRADING_FAST),tests/test_$(t).py)
test-fast-library:
	$(BIN)/python -m pytest $(FAST) $(foreach t,$(SERVER_TESTS) $(GRADING_FAST),--ignore=tests/test_$(t).py)

exercises: setup
	$(BIN)/python scripts/clean_notebooks.py lectures solutions
	for a in $(notdir $(wildcard solutions/[0-9]*)); do $(BIN)/nbgrader generate_assignment $$a --force --log-level=WARN || exit 1; done

clean-notebooks: setup
	$(BIN)/python scripts/clean_notebooks.py lectures solutions exercises

bench: setup
	$(BIN)/python benchmarks/course.py

# The peer libraries (the bench extra: stable-baselines3, sb3-contrib) never enter .venv:
# they get their own venv, with torch and everything else pinned by constraints.txt.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.rlteach-installed
BENCH_ALGO  ?= ppo
BENCH_SEEDS ?= 5

$(BENCH_STAMP): pyproject.toml constraints.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	@touch $(BENCH_STAMP)

bench-peers: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/peers.py --algo $(BENCH_ALGO) --seeds $(BENCH_SEEDS)

# PPO's implementation details on CartPole-v1, one switched per row: BENCH_SEEDS seeds,
# BENCH_JOBS worker processes (one torch thread each).
BENCH_JOBS ?= 1
bench-ablation: setup
	$(BIN)/python benchmarks/ppo_ablation.py --seeds $(BENCH_SEEDS) --jobs $(BENCH_JOBS)

# RLHF (issue 14) on TokenTask(8, 4), seeds 0..BENCH_SEEDS-1: reward-model accuracy, exact KLs of PPO and DPO
# to the closed-form optima, closed-form over-optimisation, seconds per stage.
bench-rlhf: setup
	$(BIN)/python benchmarks/rlhf.py --seeds $(BENCH_SEEDS)

# Sim-to-real (issue 15) on CartPole, seeds 1..BENCH_SEEDS: PPO trained nominal and with domain randomisation
# (batched env) and LQR on shifted systems; PPO's wall time to 475 on the batched and gymnasium backends.
bench-sim2real: setup
	$(BIN)/python benchmarks/sim2real.py --seeds $(BENCH_SEEDS)

# What students receive (scripts/student_edition.py): build/student/rlteach-course/ and .zip.
student-edition: setup
	$(BIN)/python scripts/student_edition.py --out build/student
