"""README.md is true and runnable (issue 16, item 10): its "Explain a model" snippet runs as
written, its test command is the one CI runs, and every benchmark has its generated block."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def test_the_explain_a_model_snippet_runs_as_written():
    (code,) = re.findall(r"```python\n(.*?)```", section("Explain a model"), re.DOTALL)
    namespace = {}
    exec(compile(code, "README.md: Explain a model", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["result"].relevance.shape == namespace["x"].shape


def test_the_test_command_is_the_one_ci_runs_with_current_option_names():
    (command,) = re.findall(r'pip install -e "\.\[test\]" && (python -m pytest [^\n]+)', README)
    assert command in (ROOT / ".ci/run").read_text().splitlines()
    assert "--nbval-sanitize-with" in command and " --sanitize-with" not in command


def test_every_benchmark_has_a_generated_block_in_the_readme():
    from benchmarks import run_all

    for name in run_all.BENCHMARKS:
        assert (ROOT / "benchmarks" / f"{name}.py").exists()
        start, end = run_all.markers(name)
        assert README.count(start) == 1 and README.count(end) == 1
        assert run_all.replace_block(README, name, "NEW").count("NEW") == 1


def test_run_all_refuses_to_time_on_a_busy_machine():
    done = subprocess.run([sys.executable, "benchmarks/run_all.py", "engine", "--max-load", "-1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "other jobs would distort the timings" in done.stderr


def test_the_zoo_snippet_runs_as_written():
    (code,) = re.findall(r"```python\n(.*?)```", section("Model zoo and data"), re.DOTALL)
    namespace = {}
    exec(compile(code, "README.md: Model zoo and data", "exec"), namespace)  # noqa: S102
    assert namespace["digits"].test.x.shape[1:] == (1, 8, 8)
