"""TrialConfigs: unpickled in every trial worker, so it must not pull in torch (bench/ relies on it)."""

from __future__ import annotations

import pickle
import subprocess
import sys

from metaxl_tune.config import build_config
from metaxl_tune.search.space.schema import load_space
from metaxl_tune.search.space.trial_configs import TrialConfigs


def test_unpickling_trial_configs_does_not_import_torch():
    configs = TrialConfigs(build_config({"task": "ner", "target": "tk", "model": "tiny", "data": "synthetic"}),
                           load_space("demo"))
    code = ("import pickle, sys; configs = pickle.loads(sys.stdin.buffer.read()); "
            "config = configs({'meta_lr': 1e-3}); print(config.meta_lr, 'torch' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(configs), capture_output=True,
                           check=True).stdout.decode().split()
    assert shown == ["0.001", "False"]
