"""The recipe's parallel steps under a real grid engine: Kaldi's utils/parallel/slurm.pl on a
one-node Slurm cluster (local/slurm_one_node.sh: munged, slurmctld, slurmd on 127.0.0.1).
Fbank (--nj 4), extraction (--nj 4) and clustering of a tiny demo corpus run once through
slurm.pl and once through Kaldi's run.pl; features, embedding rows and cluster labels must be
equal, and every slurm.pl job log must carry the Slurm job id that sbatch reported.

Needs Slurm and munge: installed, or root with apt-get (then `local/slurm_one_node.sh install`
installs slurm-wlm and munge); skipped with the reason elsewhere. Also Kaldi (conftest.kaldi_root)
and sox + espeak-ng for the demo corpus. 2 minutes on 2 idle cores, 4 at load 5-7 (apt install: 7-13 s).
Also as a non-root user where Slurm is installed: the daemons then run as that user."""
import os
import re
import shutil
import socket
import subprocess
import time

import kaldiio
import numpy as np
import pytest

from conftest import REPO, kaldi_env, linked_recipe, need_tools

CLUSTER = os.path.join(REPO, "local", "slurm_one_node.sh")
SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
PARTITION = "unspeech_test"
NJ = 4
# A short training on top of the demo settings (later options win): a model, not a good one.
TRAIN_OPTS = ["--config", "conf/train_demo.conf", "--steps=100", "--log-every=50", "--checkpoint-every=100",
              "--embedding-size=16", "--fc-size=64"]
# 18 utterances of 6 speakers: clusters of 2+ utterances (the default 5 would leave outliers only).
CLUSTER_OPTS = ["--min-cluster-size", "2", "--min-samples", "1"]


def have_slurm():
    return all(shutil.which(t) or os.access(f"/usr/sbin/{t}", os.X_OK) for t in SLURM_TOOLS)


def free_port_pair():
    """A port p with p and p+1 free on 127.0.0.1 (slurmctld, slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    pytest.fail("no two free consecutive ports on 127.0.0.1 for slurmctld and slurmd")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node cluster ({"conf": its SLURM_CONF, "times": ...}); stopped at the end."""
    times = {}
    if not have_slurm():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("Slurm is not installed (munged, slurmctld, slurmd, sbatch ...) and installing it needs "
                        "root with apt-get: local/slurm_one_node.sh install")
        started = time.time()
        p = subprocess.run([CLUSTER, "install"], capture_output=True, text=True)
        times["apt install"] = time.time() - started
        if p.returncode != 0 or not have_slurm():
            pytest.skip(f"apt-get could not install slurm-wlm and munge: {(p.stderr or p.stdout).strip()[-1000:]}")
    state = str(tmp_path_factory.mktemp("slurm"))
    args = [CLUSTER, "--state-dir", state, "--port", str(free_port_pair()), "--partition", PARTITION]
    started = time.time()
    p = subprocess.run(args + ["--timeout", "60", "start"], capture_output=True, text=True)
    times["cluster start"] = time.time() - started
    if p.returncode != 0:
        subprocess.run(args + ["stop"], capture_output=True)
        pytest.fail(f"the one-node Slurm cluster did not start:\n{p.stdout}{p.stderr}")
    try:
        yield {"conf": os.path.join(state, "slurm.conf"), "times": times, "state": state}
    finally:
        stop = subprocess.run(args + ["stop"], capture_output=True, text=True)
        assert stop.returncode == 0, f"stopping the cluster failed:\n{stop.stdout}{stop.stderr}"


def step(recipe, env, args, times, what):
    """One step script in the recipe dir; its wall time goes to times[what]."""
    started = time.time()
    p = subprocess.run(args, cwd=recipe, env=env, capture_output=True, text=True)
    times[what] = time.time() - started
    assert p.returncode == 0, f"{what} failed ({p.returncode}): {' '.join(args)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"


@pytest.fixture(scope="module")
def runs(kaldi_root, tmp_path_factory, request):
    """The demo corpus, fbank/extraction/clustering once with run.pl and once with slurm.pl."""
    need_tools("sox", "espeak-ng")
    slurm = request.getfixturevalue("slurm")   # installed and started once the rest is there
    recipe = str(linked_recipe(tmp_path_factory.mktemp("slurm_recipe") / "s5_unspeech"))
    env = kaldi_env(kaldi_root)
    env["SLURM_CONF"] = slurm["conf"]
    times = dict(slurm["times"])
    step(recipe, env, ["./run.sh", "--corpus", "demo", "--demo-size", "tiny", "--speed-perturb", "false",
                       "--stop-stage", "0"], times, "demo corpus")
    runners = {"run": [f"{kaldi_root}/egs/wsj/s5/utils/run.pl"],
               # conf/slurm.conf of the recipe turns --mem into sbatch --mem-per-cpu
               "slurm": [f"{kaldi_root}/egs/wsj/s5/utils/parallel/slurm.pl", "--mem", "500M"]}
    for name, cmd in runners.items():
        cmd = " ".join(cmd)
        data, model = f"data/train_{name}", "exp/unspeech"
        shutil.copytree(os.path.join(recipe, "data", "train"), os.path.join(recipe, data), symlinks=True)
        step(recipe, env, ["steps_unspeech/make_fbank.sh", "--nj", str(NJ), "--cmd", cmd, data,
                           f"exp/make_fbank/train_{name}", f"fbank_{name}"], times, f"{name} fbank")
        if name == "run":   # one model for both: trained on run.pl's features
            step(recipe, env, ["steps_unspeech/train_unspeech.sh", *TRAIN_OPTS, data, model], times, "training")
        step(recipe, env, ["steps_unspeech/extract_unspeech.sh", "--nj", str(NJ), "--cmd", cmd,
                           "--speaker-vectors", "true", data, model, f"{model}/ivectors_{name}"],
             times, f"{name} extraction")
        step(recipe, env, ["steps_unspeech/cluster_utts.sh", "--cmd", cmd, *CLUSTER_OPTS, "--utt2spk",
                           f"{data}/utt2spk.gold", f"{model}/ivectors_{name}", f"{model}/cluster_{name}"],
             times, f"{name} clustering")
    print("\nslurm test times: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    return {"recipe": recipe, "env": env, "times": times, "slurm_cmd": " ".join(runners["slurm"])}


def path(runs, rel):
    return os.path.join(runs["recipe"], rel)


def read_scp(runs, rel):
    table = dict(kaldiio.load_scp(path(runs, rel)))
    assert table, f"{rel} is empty"
    return table


def assert_tables_equal(runs, rel_run, rel_slurm):
    ours, theirs = read_scp(runs, rel_run), read_scp(runs, rel_slurm)
    assert sorted(ours) == sorted(theirs), f"{rel_run} and {rel_slurm} hold different utterances"
    for utt, mat in ours.items():
        np.testing.assert_array_equal(theirs[utt], mat, err_msg=f"{utt} differs: {rel_run} vs {rel_slurm}")


# The (logs with JOB, q/ log of slurm.pl) of each step of a runner.
def job_logs(runner):
    return [(f"exp/make_fbank/train_{runner}/make_fbank_train_{runner}.JOB.log",
             f"exp/make_fbank/train_{runner}/q/make_fbank_train_{runner}.log", NJ),
            (f"exp/unspeech/ivectors_{runner}/log/extract.JOB.log",
             f"exp/unspeech/ivectors_{runner}/q/extract.log", NJ),
            (f"exp/unspeech/cluster_{runner}/log/cluster.log", f"exp/unspeech/cluster_{runner}/q/cluster.log", 1)]


def log_vars(text):
    """The '# SLURM_X=value' lines slurm.pl's job script writes at the top of each log."""
    return dict(re.findall(r"^# (SLURM_\w+)=(.*)$", text, re.M))


# ------------------------------------------------------------------------- same outputs
def test_fbank_features_equal(runs):
    assert_tables_equal(runs, "data/train_run/feats.scp", "data/train_slurm/feats.scp")
    for f in ("utt2num_frames", "frame_shift"):
        assert open(path(runs, f"data/train_run/{f}")).read() == open(path(runs, f"data/train_slurm/{f}")).read()


def test_extracted_rows_equal(runs):
    for table in ("ivector_online.scp", "utt_vectors.scp"):
        assert_tables_equal(runs, f"exp/unspeech/ivectors_run/{table}", f"exp/unspeech/ivectors_slurm/{table}")
    for f in ("ivector_period", "final.ie.id"):
        assert open(path(runs, f"exp/unspeech/ivectors_run/{f}")).read() == \
            open(path(runs, f"exp/unspeech/ivectors_slurm/{f}")).read()


def test_cluster_labels_equal(runs):
    ours = open(path(runs, "exp/unspeech/cluster_run/utt2spk")).read()
    theirs = open(path(runs, "exp/unspeech/cluster_slurm/utt2spk")).read()
    assert ours == theirs
    labels = [line.split()[1] for line in ours.splitlines()]
    with open(path(runs, "data/train/utt2spk")) as f:
        assert len(labels) == len(f.read().splitlines())
    assert len(set(labels)) > 1, "a single cluster compares nothing"


# ------------------------------------------------------------------------- really Slurm
def test_slurm_jobs_ran_as_slurm_array_tasks(runs):
    """Every slurm.pl job log names the job id that sbatch printed, its own array task, our
    cluster and partition, the --mem request, and ends with status 0; run.pl logs have none."""
    job_ids = []
    for log_template, queue_log, nj in job_logs("slurm"):
        submitted = re.findall(r"Submitted batch job (\d+)", open(path(runs, queue_log)).read())
        assert len(submitted) == 1, f"{queue_log}: {submitted}"
        job_ids.append(submitted[0])
        for n in range(1, nj + 1):
            log = log_template.replace("JOB", str(n))
            text = open(path(runs, log)).read()
            env = log_vars(text)
            if nj > 1:
                assert env.get("SLURM_ARRAY_JOB_ID") == submitted[0] and env.get("SLURM_ARRAY_TASK_ID") == str(n), log
            else:
                assert env.get("SLURM_JOB_ID") == submitted[0], log
            assert env.get("SLURM_CLUSTER_NAME") == "unspeech" and env.get("SLURM_JOB_PARTITION") == PARTITION, log
            assert env.get("SLURM_MEM_PER_CPU") == "500", log
            assert text.rstrip().endswith("with status 0"), log
    assert len(set(job_ids)) == 3, job_ids
    for log_template, _, nj in job_logs("run"):
        for n in range(1, nj + 1):
            log = log_template.replace("JOB", str(n))
            assert not log_vars(open(path(runs, log)).read()), f"{log}: run.pl job with Slurm variables"


# ------------------------------------------------------------------------- failures
def test_failed_slurm_job_reports_its_own_error(runs, tmp_path):
    """A job that fails under slurm.pl ("# Finished ... with status 1" logs): the step's one
    ERROR line is the job's own error (the corrupt wav file) and names that job's log."""
    recipe, env = runs["recipe"], runs["env"]
    data = os.path.join(recipe, "data", "train_corrupt")
    shutil.copytree(os.path.join(recipe, "data", "train"), data, symlinks=True)
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 2)
    with open(os.path.join(data, "wav.scp")) as f:
        lines = f.read().splitlines()
    utt = lines[-1].split()[0]
    lines[-1] = f"{utt} {bad}"
    with open(os.path.join(data, "wav.scp"), "w") as f:
        f.write("\n".join(lines) + "\n")
    p = subprocess.run(["steps_unspeech/make_fbank.sh", "--nj", str(NJ), "--cmd", runs["slurm_cmd"],
                        "data/train_corrupt", "exp/make_fbank/train_corrupt", "fbank_corrupt"],
                       cwd=recipe, env=env, capture_output=True, text=True)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(err) == 1, p.stderr
    assert err[0].startswith(f"ERROR (make_fbank): job {NJ} failed: cannot read audio of utterance {utt}"), err[0]
    assert err[0].endswith(f"(log: exp/make_fbank/train_corrupt/make_fbank_train_corrupt.{NJ}.log)"), err[0]
    assert not os.path.exists(os.path.join(data, "feats.scp"))


def test_refused_submission_names_the_reason(runs):
    """sbatch refuses the job (no such partition): cluster_utts.sh says why in one line."""
    p = subprocess.run(["steps_unspeech/cluster_utts.sh", "--cmd", runs["slurm_cmd"] + " -p no_such_partition",
                        "exp/unspeech/ivectors_slurm", "exp/unspeech/cluster_refused"],
                       cwd=runs["recipe"], env=runs["env"], capture_output=True, text=True)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(err) == 1, p.stderr
    assert err[0].startswith("ERROR (cluster_utts.sh): clustering failed: ") and "invalid partition" in err[0], err[0]
    assert not os.path.exists(os.path.join(runs["recipe"], "exp/unspeech/cluster_refused/utt2spk"))
