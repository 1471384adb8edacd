"""SIGHUP and SIGTERM stop `train` as Ctrl-C does, sent from outside as a closed terminal or a
scheduler sends them: one line, exit status 128 + the signal, and the command that line names
(continue from the checkpoint, or start again when there was none yet) completes. A run stopped
before its first checkpoint is named the same one command by `--resume` and by a plain rerun."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess

from processes import CLI, cli_env, read_until, run_cli, wait_for

# target-only on the tiny model: the cheapest run that trains, evaluates and checkpoints.
RUN = ["train", "--model", "tiny", "--data", "synthetic", "--task", "ner", "--target", "tk", "--method", "target-only",
       "--max-length", "32", "--batch-size", "16", "--no-progress"]


def start(args: list[str], cwd, cache) -> subprocess.Popen:
    # A session of its own, as a terminal's job: the signal goes to its whole group.
    return subprocess.Popen([*CLI, *args], cwd=cwd, env=cli_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def stopped(process: subprocess.Popen, before: str = "") -> tuple[int, list[str], str]:
    """(exit status, stderr's lines, what stdout printed after the signal)."""
    try:
        rest, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, [line for line in err.splitlines() if line.strip() and not line.startswith("notice:")], rest


def again(line: str) -> list[str]:
    """The arguments of the `metaxl-tune ...` command at the end of ``line``."""
    words = shlex.split(line.split("with: ", 1)[1])
    assert words[0] == "metaxl-tune", line
    return words[1:]


def test_sighup_after_a_checkpoint_keeps_the_run_and_the_named_resume_completes(tmp_path, shared_cache):
    output = tmp_path / "run"
    process = start([*RUN, "--epochs", "2", "--checkpoint-every", "1", "-o", str(output)], tmp_path, shared_cache)
    read_until(process, "epoch   1/2", timeout=600)
    os.killpg(process.pid, signal.SIGHUP)
    status, err, rest = stopped(process)
    assert status == 129, err
    assert err == [f"interrupted; the run is kept up to its last checkpoint; continue it with: "
                   f"metaxl-tune train --config {output / 'config.yaml'} -o {output} --resume"]
    assert "epoch" not in rest
    resumed = run_cli(again(err[0]), cwd=tmp_path, cache_dir=shared_cache)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "epoch   2/2" in resumed.stdout and "epoch   1/2" not in resumed.stdout
    assert (output / "results.json").is_file()


def test_sigterm_before_the_first_checkpoint_names_one_command_that_starts_it_again(tmp_path, shared_cache):
    output = tmp_path / "run"
    args = [*RUN, "--epochs", "1", "-o", str(output)]
    process = start(args, tmp_path, shared_cache)
    wait_for(lambda: (output / "config.yaml").is_file(), timeout=600, what="training to start")
    process.send_signal(signal.SIGTERM)
    status, err, _ = stopped(process)
    restart = f"metaxl-tune train --config {output / 'config.yaml'} -o {output} --overwrite"
    assert status == 143, err
    assert err == [f"interrupted before the first checkpoint; start it again with: {restart}"]
    # Neither a plain rerun nor --resume sends the user elsewhere: both name the same command.
    for given in (args, [*args, "--resume"]):
        refused = run_cli(given, cwd=tmp_path, cache_dir=shared_cache)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert f"start it again with: {restart}" in refused.stderr
    restarted = run_cli(again(err[0]), cwd=tmp_path, cache_dir=shared_cache)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "epoch   1/1" in restarted.stdout and (output / "results.json").is_file()
