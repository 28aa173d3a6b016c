"""Plumbing shared by all steps: error convention, atomic writes, config files,
the bash option parser and the local run.pl-compatible job runner."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, RECIPE, run_cmd, step_env
from utils_py.cli import parse_args, step_parser, str2bool
from utils_py.fileio import atomic_write, ensure_dir
from utils_py.log import UnspeechError, error_line

RUNNER = os.path.join(REPO, "steps_unspeech", "run_local.sh")


def test_error_line_is_one_line():
    assert error_line("step", "bad\nthing: f") == "ERROR (step): bad thing: f"


def test_run_step_exit_codes(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import sys\nfrom utils_py.log import run_step, UnspeechError\n"
        "def main(argv=None):\n"
        "    if sys.argv[1] == 'user': raise UnspeechError('file missing: /x')\n"
        "    if sys.argv[1] == 'os': open('/nonexistent/dir/f', 'w')\n"
        "    return 0\n"
        "run_step('demo', main)\n")
    ok = run_cmd([sys.executable, str(script), "fine"])
    assert ok.returncode == 0 and ok.stderr == ""
    user = run_cmd([sys.executable, str(script), "user"])
    assert user.returncode == 1 and user.stderr.strip() == "ERROR (demo): file missing: /x"
    oserr = run_cmd([sys.executable, str(script), "os"])
    assert oserr.returncode == 1
    assert oserr.stderr.strip().splitlines()[-1] == "ERROR (demo): No such file or directory: /nonexistent/dir/f"


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "f"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_write(str(target)) as f:
            f.write("new")
            raise ValueError
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_ensure_dir_unwritable(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(UnspeechError, match="not writable"):
        ensure_dir(str(tmp_path / "ro"))


def test_ensure_dir_blocked_by_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnspeechError, match="cannot create directory"):
        ensure_dir(str(tmp_path / "file" / "sub"))


def test_config_file_then_command_line(tmp_path):
    conf = tmp_path / "x.conf"
    conf.write_text("# comment\n--nj=3\n--name=conf  # trailing\n--flag=false\n")
    p = step_parser("test")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--name", default="default")
    p.add_argument("--flag", type=str2bool, default=True)
    a = parse_args(p, ["--config", str(conf), "--name", "cli"])
    assert (a.nj, a.name, a.flag) == (3, "cli", False)
    conf.write_text("nj=3\n")
    with pytest.raises(UnspeechError, match="bad line 1"):
        parse_args(p, ["--config", str(conf)])


def bash(script, cwd=None, env=None):
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd or REPO, env=env)


def test_parse_options():
    src = ". steps_unspeech/parse_options.sh"
    r = bash(f'nj=1; foo_bar=x; set -- --nj 4 --foo-bar=y pos; {src}; echo "$nj $foo_bar $1"')
    assert r.stdout.strip() == "4 y pos"
    r = bash(f'nj=1; set -- --bogus 3; {src}; echo reached')
    assert r.returncode != 0 and "unknown option: --bogus" in r.stderr and "reached" not in r.stdout
    r = bash(f'help_message="Usage: me"; set -- --help; {src}; echo reached')
    assert r.returncode == 0 and r.stdout.strip() == "Usage: me"


def test_parse_options_pass_through():
    """A Python step's wrapper keeps its job options; the rest (and --config) go through unchanged."""
    src = ". steps_unspeech/parse_options.sh"
    r = bash(f'nj=1; passthrough=(); set -- --nj 4 --period 5 --padding=zeros --config "my conf" --nj=2 d m o; '
             f'{src}; echo "$nj|${{passthrough[*]}}|$*"')
    assert r.returncode == 0 and r.stdout.strip() == "2|--period 5 --padding=zeros --config my conf|d m o", r.stderr
    r = bash(f'passthrough=(); set -- --period; {src}; echo reached')
    assert r.returncode != 0 and "option --period needs a value" in r.stderr and "reached" not in r.stdout
    r = bash(f'help_message="Usage: me"; passthrough=(); passthrough_help=steps_unspeech/check_ivector_dir.py; '
             f'set -- --help; {src}; echo reached', env=step_env())
    assert r.returncode == 0 and r.stdout.startswith("Usage: me\n") and "reached" not in r.stdout
    assert "--period" in r.stdout and "Kaldi's" in r.stdout   # the Python step's own --help follows


def test_local_runner_jobs_and_logs(tmp_path):
    log = tmp_path / "log" / "job.JOB.log"
    r = subprocess.run([RUNNER, "JOB=1:3", str(log), "echo", "job", "JOB", "of", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for n in (1, 2, 3):
        text = (tmp_path / "log" / f"job.{n}.log").read_text()
        assert f"job {n} of 3" in text and "# Ended (code 0)" in text


def test_local_runner_reports_failed_job(tmp_path):
    log = tmp_path / "job.JOB.log"
    r = subprocess.run([RUNNER, "JOB=1:3", str(log),
                        "bash -c '[ JOB -ne 2 ] || { echo \"ERROR (x): job two broke\" >&2; exit 3; }'"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "1 / 3 failed, log is in" in r.stderr and "job.2.log" in r.stderr
    assert "job two broke" in r.stderr
    assert "# Ended (code 3)" in (tmp_path / "job.2.log").read_text()


def test_run_sh_help_and_bad_corpus():
    r = run_cmd(["./run.sh", "--help"], cwd=RECIPE)
    assert r.returncode == 0 and "--stage" in r.stdout and "--corpus" in r.stdout
    r = run_cmd(["./run.sh", "--corpus", "nope"], cwd=RECIPE)
    assert r.returncode != 0 and "unknown --corpus nope" in r.stderr


def test_dir_lock_refuses_second_run_python_and_bash(tmp_path):
    from utils_py.fileio import dir_lock
    d = str(tmp_path / "out")
    holder = subprocess.Popen(["bash", "-c", f'. {REPO}/steps_unspeech/lock_dir.sh {d}; echo locked; exec sleep 30'],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UnspeechError, match="in use by another run"):
            with dir_lock(d, "second"):
                pass
        r = bash(f'. steps_unspeech/lock_dir.sh {d}; echo got-it')
        assert r.returncode == 1 and "in use by another run" in r.stderr and "got-it" not in r.stdout
    finally:
        holder.kill()
        holder.wait()
    with dir_lock(d, "after-kill"):  # a killed holder never blocks the rerun
        pass
