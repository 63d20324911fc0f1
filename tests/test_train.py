import csv
import dataclasses
import importlib.metadata
import io
import subprocess
import sys
import time

import pytest
import torch

from rlteach.train import ALGORITHMS, CSV_COLUMNS, main, process_age

TINY = ["--steps", "400", "--no-progress", "--seed", "2"]
IMPORTED = time.perf_counter()  # this module is imported after the process started


@pytest.fixture(autouse=True)
def keep_threads():
    """main() sets torch's thread count (--threads); put it back after each test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def read_rows(text):
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return header, [(float(w), int(s), float(r)) for w, s, r in reader]


def test_main_writes_one_csv_row_per_finished_episode(tmp_path, capsys):
    """Header wall_s,env_steps,episode_return; wall_s and env_steps never decrease; CartPole returns are whole steps."""
    path = tmp_path / "a2c.csv"
    started = time.perf_counter()
    assert main(["a2c", "CartPole-v1", *TINY, "--csv", str(path)]) == 0
    elapsed = time.perf_counter() - started
    header, rows = read_rows(path.read_text())
    assert tuple(header) == CSV_COLUMNS == ("wall_s", "env_steps", "episode_return")
    assert len(rows) >= 5
    walls, steps, returns = zip(*rows)
    assert list(walls) == sorted(walls) and list(steps) == sorted(steps)
    assert 0 < steps[-1] <= 400 + 8 * 16  # the budget, rounded up to whole rollouts of N·T
    assert all(r >= 1 and r == int(r) for r in returns)
    assert walls[0] > process_age() - elapsed  # counted from the process start, not from main()
    err = capsys.readouterr().err
    assert f"a2c CartPole-v1 seed 2: {len(rows)} episodes" in err


def test_main_writes_the_csv_to_stdout_by_default(capsys):
    """Without --csv the rows go to stdout (the summary line to stderr), same header."""
    assert main(["a2c", "CartPole-v1", *TINY]) == 0
    out = capsys.readouterr()
    header, rows = read_rows(out.out)
    assert tuple(header) == CSV_COLUMNS and rows
    assert "episodes" in out.err and "episodes" not in out.out


def test_main_is_seeded(tmp_path):
    """The same --seed writes the same env_steps and returns."""
    for name in ("a", "b"):
        assert main(["a2c", "CartPole-v1", *TINY, "--csv", str(tmp_path / name)]) == 0
    first, second = (read_rows((tmp_path / n).read_text())[1] for n in ("a", "b"))
    assert [r[1:] for r in first] == [r[1:] for r in second]


@pytest.mark.parametrize(("argv", "message"), [
    (["dqn", "CartPole-v1"], "unknown algorithm 'dqn'; supported algorithms: a2c"),
    (["a2c", "Pendulum-v1"], "a2c does not support environment 'Pendulum-v1'; supported environments: CartPole-v1"),
    (["a2c", "CartPole-v1", "--steps", "0"], "--steps 0: must be >= 1"),
    (["a2c", "CartPole-v1", "--device", "tpu"], "invalid choice: 'tpu'"),
])
def test_bad_arguments_exit_with_status_2_and_say_what_is_supported(argv, message, capsys):
    """Unknown algorithm or environment: the error names what is supported; nothing is trained."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    """--device cuda on a machine without CUDA exits with status 2 and suggests --device cpu."""
    with pytest.raises(SystemExit) as exit_info:
        main(["a2c", "CartPole-v1", "--device", "cuda", *TINY])
    assert exit_info.value.code == 2
    assert "use --device cpu" in capsys.readouterr().err


def test_every_registered_algorithm_has_a_frozen_config_with_env_id_and_a_step_budget():
    """The contract TRPO and PPO join by: frozen dataclass config with env_id and total_steps, a train callable."""
    for name, algorithm in ALGORITHMS.items():
        assert dataclasses.is_dataclass(algorithm.config) and algorithm.config.__dataclass_params__.frozen, name
        fields = {f.name for f in dataclasses.fields(algorithm.config)}
        assert {"env_id", "total_steps"} <= fields, name
        assert algorithm.config().env_id == algorithm.envs[0] and callable(algorithm.train)


def test_the_console_script_is_installed():
    """pyproject's [project.scripts] maps rlteach-train to rlteach.train:main."""
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert [e.value for e in scripts if e.name == "rlteach-train"] == ["rlteach.train:main"]


def test_process_age_counts_from_before_this_module_was_imported():
    """process_age() ≥ the time since this test module was imported, and it keeps pace with perf_counter (10 ms ticks)."""
    first, t0 = process_age(), time.perf_counter()
    assert first >= t0 - IMPORTED
    time.sleep(0.05)
    assert process_age() - first == pytest.approx(time.perf_counter() - t0, abs=0.03)


@pytest.mark.slow
def test_wall_clock_starts_when_the_process_starts():
    """In a fresh interpreter that sleeps 1 s before importing rlteach, the first episode's wall_s exceeds 1 s.

    Also: process_age() there is at least the sleep, and no more than the whole child's life.
    """
    code = ("import time; time.sleep(1.0)\n"
            "from rlteach.train import main, process_age\n"
            "import sys; print('age', process_age(), file=sys.stderr)\n"
            "raise SystemExit(main(['a2c', 'CartPole-v1', '--steps', '200', '--no-progress']))")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lifetime = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    age = float(done.stderr.split("age ", 1)[1].split()[0])
    assert 1.0 <= age <= lifetime
    _, rows = read_rows(done.stdout)
    assert rows and 1.0 < rows[0][0] <= lifetime
