"""A fuzz table of bad inputs through the real CLI: each is one line, exit status 2, names the
flag or file to change, and leaves every finished file as it was.

All cases run in-process through Typer's runner and fail before any training or Ray start,
so the table costs seconds (the first case that reaches torch pays its import once).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from metaxl_tune.config import RunConfig

runner = CliRunner()

SECRET = "S3CRETpw"
"""The password of every URI with credentials in the table: no case may print it."""
MACROS = {
    "{TINY}": "--model tiny --data synthetic --no-progress",
    "{DEMO}": "--preset demo --storage {W}/searches",
    "{RESUME_SEARCH}": "search --name finished-search --resume --storage {W}/searches",
    "{RESUME_ABLATION}": "ablate --name finished-ablation --resume --storage {W}/searches",
    "{SA_RUN}": "train --model tiny --task sa --target fa --method target-only -o {W}/new --data",
    "{SECRET}": SECRET,
    "{n*101}": "n" * 101,
    "{u*101}": "u" * 101,
}
"""What a case's line may abbreviate."""
ENVIRONMENT_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Case:
    id: str
    line: str
    """The command line as typed in a shell: leading ``NAME=value`` words set environment
    variables, the rest is split as a shell splits it (shlex); ``{TINY}`` and the other MACROS
    stand for their text, ``{W}`` for the world folder of finished files and inputs."""
    names: str
    """What the one line must name: the flag or the file to change."""

    @property
    def needs_locked(self) -> bool:
        """The case writes into the world's unwritable folder, which not every machine can make."""
        return "{W}/locked/" in self.line

    def command(self, world: Path) -> tuple[list[str], dict[str, str]]:
        """The line's arguments and environment variables, with ``world`` for ``{W}``."""
        line = self.line
        for macro, text in MACROS.items():
            line = line.replace(macro, text)
        words = [word.replace("{W}", str(world)) for word in shlex.split(line)]
        environment = {}
        while ENVIRONMENT_WORD.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            environment[name] = value
        return words, environment


CASES = [
    # ---- train: flags -------------------------------------------------------------------------
    Case("train max-length 1 (tokenizer's special tokens)", "train {TINY} --max-length 1 -o {W}/new", "--max-length"),
    Case("train max-length 2 (no room for a word)", "train {TINY} --max-length 2 -o {W}/new", "--max-length"),
    Case("train max-length 0", "train {TINY} --max-length 0 -o {W}/new", "--max-length"),
    Case("train eval-max-length 2 (no room for a word)", "train {TINY} --eval-max-length 2 -o {W}/new", "--eval-max-length"),
    Case("train eval-max-length 0", "train {TINY} --eval-max-length 0 -o {W}/new", "--eval-max-length"),
    Case("train rtn-layers foo", "train {TINY} --rtn-layers foo", "--rtn-layers"),
    Case("train rtn-layers negative", "train {TINY} --rtn-layers 0,-1", "--rtn-layers"),
    Case("train rtn-layers past the depth", "train {TINY} --rtn-layers 9 -o {W}/new", "--rtn-layers: layer 9"),
    Case("train rtn-layers twice", "train {TINY} --rtn-layers last,last", "--rtn-layers"),
    Case("train meta-lr with jt", "train {TINY} --method jt --meta-lr 1e-4", "--meta-lr"),
    Case("train rtn-layers with jt", "train {TINY} --method jt --rtn-layers 0", "--rtn-layers"),
    Case("train portion with jt-rtn", "train {TINY} --method jt-rtn --portion 3", "--portion"),
    Case("train max-grad-norm with target-only", "train {TINY} --method target-only --max-grad-norm 1", "--max-grad-norm"),
    Case("train max-grad-norm with jt-rtn", "train {TINY} --method jt-rtn --max-grad-norm 1", "--max-grad-norm"),
    Case("train jt-rtn-residual with metaxl", "train {TINY} --jt-rtn-residual", "--jt-rtn-residual"),
    Case("train source with target-only", "train {TINY} --method target-only --source es", "--source"),
    Case("train unknown target language", "train {TINY} --target zz9", "--target"),
    Case("train unknown method", "train {TINY} --method maml", "--method"),
    Case("train negative epochs", "train {TINY} --epochs -3", "--epochs"),
    Case("train epochs not a number", "train {TINY} --epochs three", "--epochs"),
    Case("train zero learning rate", "train {TINY} --lr 0", "--lr"),
    Case("train warmup ratio above 1", "train {TINY} --warmup-ratio 1.5", "--warmup-ratio"),
    Case("train bad device", "train {TINY} --device gpu", "--device"),
    Case("train max-grad-norm text", "train {TINY} --max-grad-norm big", "--max-grad-norm"),
    Case("train source equals target", "train {TINY} --source tk --target tk", "--source"),
    Case("train related source undefined", "train {TINY} --source related --target fa", "--source"),
    Case("train portion above batch size", "train {TINY} --batch-size 2 --portion 4", "--portion"),
    Case("train negative target size", "train {TINY} --target-size -5", "--target-size"),
    Case("train unknown option", "train {TINY} --epoch 3", "--epoch"),
    # ---- train: paths ---------------------------------------------------------------------------
    Case("train output is a file", "train {TINY} -o {W}/notes.txt", "--output"),
    Case("train output under a file", "train {TINY} -o {W}/notes.txt/run", "--output"),
    Case("train output in an unwritable folder", "train {TINY} -o {W}/locked/run", "--output"),
    Case("train cache-dir is a file", "train {TINY} -o {W}/new --cache-dir {W}/notes.txt", "--cache-dir"),
    Case("train resume without checkpoint", "train {TINY} -o {W}/new --resume", "--resume"),
    # ---- train: config files --------------------------------------------------------------------
    Case("config missing", "train --config {W}/missing.yaml", "missing.yaml"),
    Case("config binary", "train --config {W}/binary.bin", "binary.bin"),
    Case("config is a folder", "train --config {W}/finished", "finished"),
    Case("config field typo", "train --config {W}/typo.yaml", "typo.yaml: epoch"),
    Case("config not a mapping", "train --config {W}/list.yaml", "list.yaml"),
    Case("config invalid YAML", "train --config {W}/broken.yaml", "broken.yaml"),
    Case("config bad value", "train --config {W}/negative.yaml", "negative.yaml: batch_size"),
    Case("config fine but flag bad", "train --config {W}/finished/config.yaml --epochs 0", "--epochs"),
    # ---- train: data ----------------------------------------------------------------------------
    Case("data dir missing", "train --model tiny --data {W}/nodata -o {W}/new", "nodata"),
    Case("panx line without tab", "train --model tiny --data {W}/panx --method target-only -o {W}/new", "train:2"),
    Case("panx language missing", "train --model tiny --data {W}/panx --target qu --method target-only -o {W}/new", "qu"),
    Case("SA file without label column", "train --model tiny --task sa --target fa --method target-only --data {W}/sa -o {W}/new", "train.jsonl"),
    # ---- search ----------------------------------------------------------------------------------
    Case("search unknown preset", "search --preset huge --storage {W}/searches", "--preset"),
    Case("search unknown space", "search --space nerr --storage {W}/searches", "nerr"),
    Case("search space YAML typo", "search --space {W}/typo-space.yaml --storage {W}/searches", "typo-space.yaml"),
    Case("search space binary", "search --space {W}/binary.bin --storage {W}/searches", "binary.bin"),
    Case("search zero samples", "search {DEMO} --num-samples 0", "--num-samples"),
    Case("search zero repeats", "search {DEMO} --repeats 0", "--repeats"),
    Case("search repeats not a number", "search {DEMO} --repeats twice", "--repeats"),
    Case("search zero max-repeats", "search {DEMO} --max-repeats 0", "--max-repeats"),
    Case("search training seed (from --search-seed)", "search {DEMO} --seed 5", "--seed 5"),
    Case("search negative time budget", "search {DEMO} --time-budget -1", "--time-budget"),
    Case("search bad scheduler", "search {DEMO} --scheduler hyperband", "--scheduler"),
    Case("search flag clashes with the space", "search {DEMO} --meta-lr 1e-3", "--meta-lr"),
    Case("search flag its fixed method ignores", "search --space {W}/jt-space.yaml --model tiny --data synthetic --storage {W}/searches --meta-lr 1e-3", "--meta-lr"),
    Case("search max-length too short", "search {DEMO} --max-length 2", "--max-length"),
    Case("search rtn past the depth", "search --space {W}/jt-space.yaml --model tiny --data synthetic --method metaxl --rtn-layers 7 --storage {W}/searches", "rtn_layers"),
    Case("search unreachable Ray", "search {DEMO} --address 127.0.0.1:1", "127.0.0.1:1"),
    Case("search unreachable MLflow", "search {DEMO} --tracking-uri http://127.0.0.1:9", "http://127.0.0.1:9"),
    Case("search bucket storage", "search --preset demo --storage s3://bucket/searches", "--storage"),
    Case("search storage is a file", "search --preset demo --storage {W}/notes.txt", "--storage"),
    Case("search existing name", "search {DEMO} --name finished-search", "--resume"),
    Case("search resume unknown name", "search --resume --name nope --storage {W}/searches", "--name"),
    Case("search resume with damaged options", "search --resume --name damaged --storage {W}/searches", "damaged/metaxl-search.json"),
    Case("search resume with foreign options", "search --resume --name foreign --storage {W}/searches", "foreign/metaxl-search.json"),
    Case("sync damaged options", "sync --name damaged --storage {W}/searches", "damaged/metaxl-search.json"),
    Case("search resume without name", "search --resume --storage {W}/searches", "--name"),
    # ---- ablate ----------------------------------------------------------------------------------
    Case("ablate unknown study", "ablate --study method --targets qu --dry-run", "method"),
    Case("ablate study YAML typo", "ablate --study {W}/typo-study.yaml --targets qu --dry-run", "typo-study.yaml"),
    Case("ablate unknown target", "ablate --study methods --targets qu,zz9 --dry-run", "zz9"),
    Case("ablate zero seeds", "ablate --study methods --targets qu --seeds 0 --dry-run", "--seeds"),
    Case("ablate resume unknown name", "ablate --resume --name nope --storage {W}/searches", "--name"),
    # ---- best, report, sync, analyze, ui -------------------------------------------------------------
    Case("best unknown search", "best --name nope", "--tracking-uri"),
    Case("best output is a folder", "best --name nope -o {W}/finished", "--output"),
    Case("best output in an unwritable folder", "best --name nope -o {W}/locked/best.yaml", "--output"),
    Case("best unknown format", "best --name nope --format toml", "--format"),
    Case("best zero top", "best --name nope --top 0", "--top"),
    Case("best unsupported tracking URI", "best --name nope --tracking-uri ftp://host/x", "--tracking-uri"),
    Case("best sqlite in a missing folder", "best --name nope --tracking-uri sqlite:///{W}/nowhere/m.db", "--tracking-uri"),
    Case("best missing name", "best", "--name"),
    Case("report unknown search", "report --name nope", "--tracking-uri"),
    Case("report unknown format", "report --name nope --format pdf", "--format"),
    Case("report output under a file", "report --name nope -o {W}/notes.txt/table.md", "--output"),
    Case("report plot is a folder", "report --name nope --plot {W}/finished", "--plot"),
    Case("sync unknown name", "sync --name nope --storage {W}/searches", "--name"),
    Case("sync unreachable MLflow", "sync --name nope --storage {W}/searches --tracking-uri http://127.0.0.1:9", "http://127.0.0.1:9"),
    Case("analyze unknown run", "analyze --run 0123abcd", "--run"),
    Case("analyze zero limit", "analyze --run 0123abcd --limit 0", "--limit"),
    Case("analyze output is a file", "analyze --run 0123abcd -o {W}/notes.txt", "--output"),
    Case("ui port not a number", "ui --port http", "--port"),
    Case("unknown command", "trian", "trian"),
    # ---- #19: names, values, resources, environment variables --------------------------------------
    # Names: one rule (metaxl_tune/common/names.py) on every command that takes one.
    Case("search name climbs out", "search {DEMO} --name ../x", "--name '../x'"),
    Case("search name nests", "search {DEMO} --name a/b", "--name 'a/b'"),
    Case("search name empty", "search {DEMO} --name ''", "--name '': the name is empty"),
    Case("search name with a newline", "search {DEMO} --name 'a\nb'", "--name 'a\\nb'"),
    Case("search name of 101 characters", "search {DEMO} --name {n*101}", "has 101 characters"),
    Case("search name with a quote", "search {DEMO} --name \"o'x\"", "--name \"o'x\""),
    Case("search name hidden", "search {DEMO} --name .hidden", "starts with '.'"),
    Case("search resume name climbs out", "search --resume --name ../searches --storage {W}/searches", "--name"),
    Case("best name climbs out", "best --name ../x", "--name '../x'"),
    Case("best name with a quote", "best --name \"o'x\"", "--name \"o'x\""),
    Case("best name empty", "best --name ''", "--name ''"),
    Case("report name nests", "report --name a/b", "--name 'a/b'"),
    Case("report name with a newline", "report --name 'a\nb'", "--name 'a\\nb'"),
    Case("ui name with a quote", "ui --name \"o'x\"", "--name \"o'x\""),
    Case("ui name of 101 characters", "ui --name {u*101}", "has 101 characters"),
    Case("ablate name climbs out", "ablate --preset demo --targets tk --name ../x", "--name '../x'"),
    Case("ablate default name from a study file with a space", "ablate --study '{W}/my study.yaml' --targets tk", "--name (default from --study"),
    Case("sync name hidden", "sync --name .hidden --storage {W}/searches", "--name '.hidden'"),
    Case("analyze run climbs out", "analyze --run ../../etc", "--run '../../etc'"),
    # NaN and inf: refused when parsed, naming the flag or the file's field.
    Case("train lr nan", "train {TINY} --lr nan", "--lr: Input should be a finite number"),
    Case("train meta-lr inf", "train {TINY} --meta-lr inf", "--meta-lr: Input should be a finite number"),
    Case("train meta-lr -inf", "train {TINY} --meta-lr -inf", "--meta-lr"),
    Case("train weight-decay nan", "train {TINY} --weight-decay nan", "--weight-decay"),
    Case("train lookahead-lr inf", "train {TINY} --lookahead-lr inf", "--lookahead-lr"),
    Case("train max-grad-norm nan", "train {TINY} --max-grad-norm nan", "--max-grad-norm"),
    Case("train warmup-ratio nan", "train {TINY} --warmup-ratio nan", "--warmup-ratio"),
    Case("config lr .nan", "train --config {W}/nan.yaml", "nan.yaml: lr"),
    Case("config meta_lr .inf under a flag", "train --config {W}/inf.yaml --epochs 1", "inf.yaml: meta_lr"),
    Case("search lr nan", "search {DEMO} --lr nan", "--lr: Input should be a finite number"),
    Case("search time-budget nan", "search {DEMO} --time-budget nan", "--time-budget: must be a finite number"),
    Case("search gpus-per-trial inf", "search {DEMO} --gpus-per-trial inf", "--gpus-per-trial: must be a finite"),
    Case("search cpus-per-trial nan", "search {DEMO} --cpus-per-trial nan", "--cpus-per-trial: must be a finite"),
    Case("search storage-retry-s inf", "search {DEMO} --storage-retry-s inf", "--storage-retry-s"),
    Case("search wait-for-resources nan", "search {DEMO} --wait-for-resources nan", "--wait-for-resources"),
    Case("search wait-for-resources negative", "search {DEMO} --wait-for-resources -5", "--wait-for-resources"),
    Case("search space categorical nan", "search --space {W}/nan-space.yaml --model tiny --data synthetic --storage {W}/searches", "nan-space.yaml"),
    Case("search space bound inf", "search --space {W}/inf-space.yaml --model tiny --data synthetic --storage {W}/searches", "inf-space.yaml: parameters.lr.high"),
    Case("ablate gpus-per-trial nan", "ablate --preset demo --targets tk --gpus-per-trial nan", "--gpus-per-trial"),
    Case("ablate meta-lr inf", "ablate --preset demo --targets tk --meta-lr inf --dry-run", "--meta-lr: Input should"),
    Case("best cpus-per-trial nan", "best --name nope --cpus-per-trial nan", "--cpus-per-trial"),
    # Upper bounds (stated in --help).
    Case("train rtn-bottleneck 1e12 on tiny", "train {TINY} --rtn-bottleneck 1000000000000 -o {W}/new", "--rtn-bottleneck 1000000000000: at most 384"),
    Case("train max-length 1e12 on tiny", "train {TINY} --max-length 1000000000000 -o {W}/new", "--max-length 1000000000000"),
    Case("train max-length 4097 on tiny", "train {TINY} --max-length 4097 -o {W}/new", "use at most 4096"),
    Case("search max-length 5000 on tiny", "search {DEMO} --max-length 5000", "--max-length 5000"),
    Case("ablate rtn-bottleneck past 4 x hidden", "ablate --preset demo --targets tk --study methods --rtn-bottleneck 100000 --storage {W}/searches", "--rtn-bottleneck 100000"),
    # ui: the port and the host, before the server starts.
    Case("ui port 70000", "ui --port 70000", "--port 70000: must be a port number from 1 to 65535"),
    Case("ui port 0", "ui --port 0", "--port 0"),
    Case("ui port negative", "ui --port -1", "--port -1"),
    Case("ui host that does not resolve", "ui --host no-such-host.invalid", "--host no-such-host.invalid"),
    # Values the environment supplied: the error names the variable, not a flag never given.
    Case("search bad $MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI=ftp://host/x search {DEMO}", "$MLFLOW_TRACKING_URI ftp://host/x"),
    Case("best bad $MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI=sqlite:///{W}/nowhere/m.db best --name nope", "$MLFLOW_TRACKING_URI"),
    Case("report bad $MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI=ftp://host/x report --name nope", "$MLFLOW_TRACKING_URI ftp://host/x"),
    Case("analyze bad $MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI=ftp://host/x analyze --run 0123abcd", "$MLFLOW_TRACKING_URI ftp://host/x"),
    Case("search bad $RAY_ADDRESS", "RAY_ADDRESS=nohostport search {DEMO}", "$RAY_ADDRESS nohostport"),
    Case("search unreachable $RAY_ADDRESS", "RAY_ADDRESS=127.0.0.1:1 search {DEMO}", "unset $RAY_ADDRESS"),
    Case("ablate bad $RAY_ADDRESS", "RAY_ADDRESS=nohostport ablate --preset demo --targets tk --storage {W}/searches", "$RAY_ADDRESS nohostport"),
    Case("search $METAXL_TUNE_RUNS is a file", "METAXL_TUNE_RUNS={W}/notes.txt search --preset demo", "$METAXL_TUNE_RUNS {W}/notes.txt"),
    Case("ablate $METAXL_TUNE_RUNS is a file", "METAXL_TUNE_RUNS={W}/notes.txt ablate --preset demo --targets tk", "$METAXL_TUNE_RUNS"),
    Case("train $METAXL_TUNE_CACHE is a file", "METAXL_TUNE_CACHE={W}/notes.txt train {TINY} -o {W}/new", "$METAXL_TUNE_CACHE {W}/notes.txt"),
    Case("report store missing under $METAXL_TUNE_RUNS", "MLFLOW_TRACKING_URI= METAXL_TUNE_RUNS={W}/nowhere/runs report --name nope", "check $METAXL_TUNE_RUNS"),
    Case("best store missing under $METAXL_TUNE_RUNS", "MLFLOW_TRACKING_URI= METAXL_TUNE_RUNS={W}/nowhere/runs best --name nope", "check $METAXL_TUNE_RUNS"),
    Case("search $METAXL_TUNE_CACHE is a file", "METAXL_TUNE_CACHE={W}/notes.txt search {DEMO}", "$METAXL_TUNE_CACHE"),
    # ---- #19: config, resume, studies, spaces, labels, data limits --------------------------------
    # A config file is checked whole before flags override it; an empty one is refused.
    Case("config empty file", "train --config {W}/empty.yaml", "empty.yaml: the config file sets no field"),
    Case("config empty mapping", "train --config {W}/empty-mapping.yaml", "empty-mapping.yaml"),
    Case("config only comments", "train --config {W}/comments.yaml", "comments.yaml"),
    Case("config epochs text under --epochs", "train --config {W}/epochs-text.yaml --epochs 2", "epochs-text.yaml: epochs"),
    Case("config bad value under its flag", "train --config {W}/negative.yaml --batch-size 4", "negative.yaml: batch_size"),
    Case("config zero lr under --lr", "train --config {W}/zero-lr.yaml --lr 1e-3", "zero-lr.yaml: lr"),
    Case("config warmup above 1 under its flag", "train --config {W}/warmup.yaml --warmup-ratio 0.1", "warmup.yaml: warmup_ratio"),
    Case("config unknown method under --method", "train --config {W}/bad-method.yaml --method jt", "bad-method.yaml: method"),
    Case("config bad device under --device", "train --config {W}/bad-device.yaml --device cpu", "bad-device.yaml: device"),
    Case("config unknown target under --target", "train --config {W}/bad-target.yaml --target qu", "bad-target.yaml: target"),
    Case("config bad placement under --rtn-layers", "train --config {W}/bad-layers.yaml --rtn-layers last", "bad-layers.yaml: rtn_layers"),
    Case("config field typo with flags", "train --config {W}/typo.yaml --epochs 2", "typo.yaml: epoch"),
    # Options the task never reads.
    Case("train label-format on NER", "train {TINY} --label-format polarity", "--label-format"),
    Case("train text-column on NER", "train {TINY} --text-column review", "--text-column"),
    Case("train label-column on NER", "train {TINY} --label-column stars", "--label-column"),
    Case("train source-label-format on NER", "train {TINY} --source-label-format stars", "--source-label-format"),
    Case("search label-format on NER", "search {DEMO} --label-format binary", "--label-format"),
    Case("ablate text-column on NER", "ablate --study methods --targets qu --text-column x --dry-run", "--text-column"),
    # --resume continues what was started: flags that would change it are refused.
    Case("search resume with another space", "{RESUME_SEARCH} --space demo", "--space"),
    Case("search resume with another target", "{RESUME_SEARCH} --target qu", "--target"),
    Case("search resume with another task", "{RESUME_SEARCH} --task sa", "--task"),
    Case("search resume with another method", "{RESUME_SEARCH} --method jt", "--method"),
    Case("search resume with more samples", "{RESUME_SEARCH} --num-samples 3", "--num-samples"),
    Case("search resume with a preset", "{RESUME_SEARCH} --preset demo", "--preset"),
    Case("search resume with another source size", "{RESUME_SEARCH} --source-size 10", "--source-size"),
    Case("search resume with another scheduler", "{RESUME_SEARCH} --scheduler fifo", "--scheduler"),
    Case("search resume with another search seed", "{RESUME_SEARCH} --search-seed 3", "--search-seed"),
    Case("search resume repeating its saved preset passes on", "search --name demo-search --resume --storage {W}/searches --preset demo --address 127.0.0.1:1", "127.0.0.1:1"),
    Case("ablate resume with another study", "{RESUME_ABLATION} --study placement", "--study"),
    Case("ablate resume with other targets", "{RESUME_ABLATION} --targets tk", "--targets"),
    Case("ablate resume with more seeds", "{RESUME_ABLATION} --seeds 3", "--seeds"),
    # Studies: no repeated target, source or setting.
    Case("ablate repeated target", "ablate --study methods --targets tk,tk --dry-run", "--targets names tk twice"),
    Case("ablate target repeated later", "ablate --study methods --targets qu,tk,qu --dry-run", "--targets names qu twice"),
    Case("ablate repeated source", "ablate --study methods --targets qu --source en,en --dry-run", "--source"),
    Case("ablate study with identical settings", "ablate --study {W}/twin-study.yaml --targets qu --dry-run", "twin-study: settings a and b set the same values"),
    # Spaces: a metric trials report, and at least one parameter.
    Case("search space metric no trial reports", "search --space {W}/bogus-metric.yaml --storage {W}/searches", "bogus-metric.yaml: metric: bogus_metric"),
    Case("search space metric misspelt", "search --space {W}/misspelt-metric.yaml --storage {W}/searches", "misspelt-metric.yaml: metric"),
    Case("search empty space", "search --space {W}/empty-space.yaml --storage {W}/searches", "empty-space.yaml: parameters"),
    Case("search space with fixed values only", "search --space {W}/fixed-space.yaml --storage {W}/searches", "fixed-space.yaml: parameters"),
    # Labels: a format that leaves one class or drops over half a split.
    Case("SA polarity on 0/1 labels", "{SA_RUN} {W}/sa-binary --label-format polarity", "sa-binary/fa/train.jsonl: --label-format polarity leaves one class"),
    Case("SA stars on 1/2 labels", "{SA_RUN} {W}/sa-low-stars --label-format stars", "sa-low-stars/fa/train.jsonl: --label-format stars leaves one class"),
    Case("SA stars dropping most of dev", "{SA_RUN} {W}/sa-neutral-dev", "sa-neutral-dev/fa/dev.jsonl: --label-format stars drops"),
    # Data limits: over-long tokens and lines, named by file and line, before any tokenizer trains.
    Case("panx token over 1,000 characters", "train --model tiny --data {W}/panx-long-token --method target-only -o {W}/new", "panx-long-token/tk/train:2: a token of 1,001 characters"),
    Case("panx line over 100,000 characters", "train --model tiny --data {W}/panx-long-line --method target-only -o {W}/new", "panx-long-line/tk/dev:1: the line holds"),
    Case("SA review token over 1,000 characters", "{SA_RUN} {W}/sa-long-token", "sa-long-token/fa/train.jsonl:2: a token"),
    Case("SA TSV line over 100,000 characters", "{SA_RUN} {W}/sa-long-line", "sa-long-line/fa/train.tsv:3: the line holds"),
    # Checkpoints are verified before data and model load (the run's data folder is missing).
    Case("train resume from a truncated checkpoint", "train --config {W}/truncated-run/config.yaml -o {W}/truncated-run --resume", "truncated-run/checkpoint/state.pt"),
    Case("train resume from a foreign checkpoint", "train --config {W}/foreign-run/config.yaml -o {W}/foreign-run --resume", "foreign-run/checkpoint/state.pt"),
    # ---- #26: tracking URIs: every scheme checked first, credentials shown as *** -------------------
    Case("search databricks", "search {DEMO} --tracking-uri databricks", "--tracking-uri databricks: Databricks"),
    Case("search databricks profile", "search {DEMO} --tracking-uri databricks://team", "databricks://team"),
    Case("search file URI naming a host", "search {DEMO} --tracking-uri file://relative/mlruns", "file://relative/mlruns: file://relative/... names the host 'relative'"),
    Case("search sqlite in an unwritable folder", "search {DEMO} --tracking-uri sqlite:////proc/self/x.db", "cannot create the store in /proc/self"),
    Case("search sqlite in memory", "search {DEMO} --tracking-uri sqlite://", "--tracking-uri sqlite://: an sqlite store is a file"),
    Case("search sqlite on a file that is no database", "search {DEMO} --tracking-uri sqlite:///{W}/notes.txt", "notes.txt is not an sqlite database"),
    Case("search mysql with a password", "search {DEMO} --tracking-uri mysql://root:{SECRET}@127.0.0.1/mlflow", "mysql://root:***@127.0.0.1/mlflow: MySQL stores are not supported directly"),
    Case("ablate mssql with a password", "ablate --preset demo --targets tk --storage {W}/searches --tracking-uri mssql://sa:{SECRET}@127.0.0.1/mlflow", "mssql://sa:***@127.0.0.1/mlflow"),
    Case("search unreachable PostgreSQL with a password", "search {DEMO} --tracking-uri postgresql://mlflow:{SECRET}@127.0.0.1:9/mlflow", "cannot connect to the PostgreSQL store postgresql://mlflow:***@127.0.0.1:9/mlflow"),
    Case("search unreachable server with a password", "search {DEMO} --tracking-uri http://alice:{SECRET}@127.0.0.1:9", "cannot reach the MLflow tracking server at http://alice:***@127.0.0.1:9"),
    Case("best https with a password and no port number", "best --name nope --tracking-uri https://alice:{SECRET}@host:port", "https://alice:***@host:port: the port is not a number"),
    Case("report token in the query string", "report --name nope --tracking-uri http://127.0.0.1:9/?token={SECRET}", "http://127.0.0.1:9/?token=***: MLflow appends its API paths"),
    Case("sync a URI with a password, unreachable", "sync --name masked-search --storage {W}/searches --tracking-uri http://alice:{SECRET}@127.0.0.1:9", "http://alice:***@127.0.0.1:9"),
    Case("analyze databricks", "analyze --run 0123abcd --tracking-uri databricks", "--tracking-uri databricks"),
    Case("ui databricks", "ui --tracking-uri databricks", "--tracking-uri databricks"),
    Case("ui a server with a password", "ui --tracking-uri http://alice:{SECRET}@127.0.0.1:9", "http://alice:***@127.0.0.1:9 is already a server"),
    Case("report $MLFLOW_TRACKING_URI with a password, unreachable", "MLFLOW_TRACKING_URI=http://alice:{SECRET}@127.0.0.1:9 report --name nope", "unset $MLFLOW_TRACKING_URI"),
    Case("search resume of a URI saved masked", "search --name masked-search --resume --storage {W}/searches", "http://alice:***@127.0.0.1:9, had credentials, which are never saved; pass it again with --tracking-uri"),
    Case("sync of a URI saved masked", "sync --name masked-search --storage {W}/searches", "had credentials, which are never saved"),
    Case("ablate resume of a URI saved masked", "ablate --name masked-ablation --resume --storage {W}/searches", "had credentials, which are never saved"),
    Case("ablate resume with another password is the same URI", "ablate --name masked-ablation --resume --storage {W}/searches --tracking-uri http://alice:{SECRET}@127.0.0.1:9", "cannot reach the MLflow tracking server at http://alice:***@127.0.0.1:9"),
    # ---- #26: bounded by what is asked ---------------------------------------------------------------
    # YAML: limits on size, aliases and depth, and no key given twice, in configs, spaces and studies.
    Case("config alias bomb", "train --config {W}/bomb.yaml", "bomb.yaml: line 6: the document would hold over"),
    Case("config nested 20,000 deep", "train --config {W}/deep.yaml", "deep.yaml: line 1: nested over 100 levels"),
    Case("config over 1 MB", "train --config {W}/big.yaml", "big.yaml: holds over 1,000,000 bytes"),
    Case("config duplicate key", "train --config {W}/twice.yaml", "twice.yaml: line 3: key 'epochs' appears twice in one mapping (lines 2 and 3)"),
    Case("config duplicate key under flags", "train --config {W}/twice.yaml --epochs 1", "twice.yaml: line 3"),
    Case("search space duplicate key", "search --space {W}/twice-space.yaml --storage {W}/searches", "twice-space.yaml: line 4: key 'lr' appears twice in one mapping (lines 2 and 4)"),
    Case("search space alias bomb", "search --space {W}/bomb.yaml --storage {W}/searches", "bomb.yaml: line 6"),
    Case("ablate study duplicate label", "ablate --study {W}/twice-study.yaml --targets qu --dry-run", "twice-study.yaml: line 3: key 'jt' appears twice in one mapping (lines 2 and 3)"),
    # Data: a NER line with a third column, a sentence without end.
    Case("panx line with three columns", "train --model tiny --data {W}/panx-three --method target-only -o {W}/new", "panx-three/tk/train:2: expected 'token<TAB>TAG'"),
    Case("panx sentence over 10,000 tokens", "train --model tiny --data {W}/panx-endless --method target-only -o {W}/new", "panx-endless/tk/train:10001: a sentence of over 10,000 tokens"),
    # --data synthetic: only the languages it has a grammar for.
    Case("train synthetic unknown target", "train {TINY} --target xx -o {W}/new", "--target: --data synthetic has no grammar for 'xx'; its languages are cdo, en,"),
    Case("train synthetic unknown source", "train {TINY} --source de -o {W}/new", "--source: --data synthetic"),
    Case("search synthetic unknown target", "search {DEMO} --target xx", "--data synthetic has no grammar for 'xx'"),
    Case("ablate synthetic unknown target", "ablate --preset demo --targets tk,xx --dry-run", "--data synthetic has no grammar for 'xx'"),
    # ---- #26: finished work is never overwritten: a run's config, a search's or ablation's folder ----
    Case("best output over an existing file", "best --name nope -o {W}/notes.txt", "--output {W}/notes.txt: the file exists; pass --force"),
    Case("best output into a run folder", "best --name nope -o {W}/finished/config.yaml", "{W}/finished is a run folder"),
    Case("best output into a run folder with force", "best --name nope -o {W}/finished/config.yaml --force", "{W}/finished is a run folder"),
    Case("best output into a search folder", "best --name nope -o {W}/searches/finished-search/best.yaml", "{W}/searches/finished-search is the folder of a search"),
    Case("best rerun with compare", "best --name nope --rerun --compare", "--rerun and --compare exclude each other"),
    Case("train output is a search folder", "train {TINY} -o {W}/searches/finished-search", "{W}/searches/finished-search is the folder of a search"),
    Case("train output inside a search folder", "train {TINY} -o {W}/searches/finished-search/run", "{W}/searches/finished-search is the folder of a search"),
    Case("train output is a storage folder", "train {TINY} -o {W}/searches", "{W}/searches is a storage folder of searches"),
    # ---- #26: bounds: integer flags with documented upper bounds, rates above a floor, ASCII numbers,
    # search and ablation options before Ray starts, and a space's values against the model.
    Case("train seed 2**63", "train {TINY} --seed 9223372036854775808", "--seed: must be at most 4,294,967,295"),
    Case("train negative seed", "train {TINY} --seed -1", "--seed: must be in [0,"),
    Case("train data-seed 2**63", "train {TINY} --data-seed 9223372036854775808", "--data-seed: must be at most"),
    Case("train epochs 2**63", "train {TINY} --epochs 9223372036854775808", "--epochs: must be at most 10,000"),
    Case("train batch-size 2**63", "train {TINY} --batch-size 9223372036854775808", "--batch-size: must be at most 4,096"),
    Case("train target-size 2**63", "train {TINY} --target-size 9223372036854775808", "--target-size: must be at most"),
    Case("train lr 1e-320", "train {TINY} --lr 1e-320", "--lr: must be >= 1e-12"),
    Case("train meta-lr 1e-320", "train {TINY} --meta-lr 1e-320", "--meta-lr: must be >= 1e-12"),
    Case("train lookahead-lr 1e-320", "train {TINY} --lookahead-lr 1e-320", "--lookahead-lr: must be >= 1e-12"),
    Case("train max-grad-norm in Arabic-Indic digits", "train {TINY} --max-grad-norm \u0661", "--max-grad-norm"),
    Case("train lr in Arabic-Indic digits", "train {TINY} --lr \u0660.\u0660\u0660\u0661", "--lr"),
    Case("search seed -1", "search {DEMO} --search-seed -1", "--search-seed must be in [0,"),
    Case("search seed 2**63", "search {DEMO} --search-seed 9223372036854775808", "--search-seed"),
    Case("search cpus-per-trial 1e-320", "search {DEMO} --cpus-per-trial 1e-320", "--cpus-per-trial must be at least 0.01"),
    Case("search gpus-per-trial 1e-320", "search {DEMO} --gpus-per-trial 1e-320", "--gpus-per-trial must be 0 or at least 0.01"),
    Case("ablate dry-run with 10^8 seeds", "ablate --dry-run --preset demo --targets tk --seeds 100000000", "--seeds must be in [1, 1,000]"),
    Case("space max-length past the model's table", "search --storage {W}/searches --task ner --target tk --model tiny --data synthetic --space {W}/spaces/long-sequences.yaml", "long-sequences.yaml: parameters.max_length.values[1]: 100000 does not fit model tiny"),
    Case("space layer past the model's depth", "search --storage {W}/searches --task ner --target tk --model tiny --data synthetic --space {W}/spaces/deep-layers.yaml", "deep-layers.yaml: parameters.rtn_layers.values[0]: 7 does not fit model tiny"),
    Case("space int step past its range", "search --storage {W}/searches --task ner --target tk --model tiny --data synthetic --space {W}/spaces/wide-step.yaml", "wide-step.yaml: parameters.rtn_bottleneck.step: must be at most high - low (8)"),
    # tiny's hidden size is 64: r at most 4 x 64, or the NER default 384 where larger.
    Case("space bottleneck value past 4 x hidden", "search --storage {W}/searches --task ner --target tk --model tiny --data synthetic --space {W}/spaces/huge-bottleneck.yaml", "huge-bottleneck.yaml: parameters.rtn_bottleneck.values[1]: 2000000000 does not fit model tiny (rtn_bottleneck: at most 384 for it"),
    Case("space bottleneck range past 4 x hidden", "search --storage {W}/searches --task ner --target tk --model tiny --data synthetic --space {W}/spaces/wide-bottleneck.yaml", "wide-bottleneck.yaml: parameters.rtn_bottleneck.high: 385 does not fit model tiny"),
    # A typed --space wins over the preset's, even when it names the default ner: its r = 768 is
    # then checked against the preset's tiny model.
    Case("search preset with an explicit ner space", "search {DEMO} --task ner --target tk --space ner", "ner.yaml: parameters.rtn_bottleneck.values[3]: 768 does not fit model tiny"),
    Case("space batch size past its bound", "search --storage {W}/searches --task ner --target tk --model tiny --data synthetic --space {W}/spaces/huge-batch.yaml", "huge-batch.yaml: parameters.batch_size.high: 100000 is rejected by the run config (batch_size: must be at most 4,096"),
]
BOUND_SPACES = {
    "long-sequences.yaml": "parameters:\n  max_length: {type: categorical, values: [64, 100000]}\n",
    "deep-layers.yaml": "parameters:\n  rtn_layers: {type: categorical, values: [7, 9]}\n",
    "wide-step.yaml": "parameters:\n  rtn_bottleneck: {type: int, low: 8, high: 16, step: 32}\n",
    "huge-bottleneck.yaml": "parameters:\n  rtn_bottleneck: {type: categorical, values: [8, 2000000000]}\n",
    "wide-bottleneck.yaml": "parameters:\n  rtn_bottleneck: {type: int, low: 8, high: 385}\n",
    "huge-batch.yaml": "parameters:\n  batch_size: {type: int, low: 16, high: 100000}\n",
}

# Inputs of the #19 block, written into the world next to the others.
WORLD_FILES_19 = {
    "nan.yaml": "model: tiny\nlr: .nan\n",
    "inf.yaml": "model: tiny\nmeta_lr: .inf\n",
    "nan-space.yaml": "parameters:\n  lr: {type: categorical, values: [.nan, 1.0e-3]}\n",
    "inf-space.yaml": "parameters:\n  lr: {type: uniform, low: 1.0e-5, high: .inf}\n",
}


def _write_world(world: Path) -> None:
    """Finished work (a run folder, a search) and bad inputs, in one folder."""
    finished = world / "finished"
    finished.mkdir(parents=True)
    RunConfig(model="tiny", data="synthetic", epochs=2).dump(finished / "config.yaml")
    (finished / "results.json").write_text(json.dumps({"history": [], "best": {"best_dev_f1": 12.5}}))
    search = world / "searches" / "finished-search"
    search.mkdir(parents=True)
    (search / "metaxl-search.json").write_text(json.dumps({"name": "finished-search", "storage": str(world / "searches")}))
    for name, text in (("damaged", '{"name": "damaged", '), ("foreign", '{"name": "foreign", "colour": "red"}')):
        (world / "searches" / name).mkdir()
        (world / "searches" / name / "metaxl-search.json").write_text(text)
    (world / "notes.txt").write_text("not a folder\n")
    (world / "spaces").mkdir()
    for file_name, text in BOUND_SPACES.items():
        (world / "spaces" / file_name).write_text("metric: best_dev_f1\nmode: max\n" + text)
    (world / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (world / "typo.yaml").write_text("model: tiny\nepoch: 3\n")
    (world / "list.yaml").write_text("- model\n- tiny\n")
    (world / "broken.yaml").write_text("epochs: [1,\n")
    (world / "negative.yaml").write_text("model: tiny\nbatch_size: -1\n")
    (world / "typo-space.yaml").write_text("paramters:\n  lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}\n")
    (world / "jt-space.yaml").write_text("fixed: {method: jt}\nparameters:\n  lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}\n")
    (world / "typo-study.yaml").write_text("settings:\n  jt: {methd: jt}\n")
    for name, text in WORLD_FILES_19.items():
        (world / name).write_text(text)
    panx = world / "panx" / "tk"
    panx.mkdir(parents=True)
    (panx / "train").write_text("tk:Maru\tB-PER\ntk:Tessa I-PER\n")
    (panx / "dev").write_text("tk:Kalo\tB-ORG\n")
    (panx / "test").write_text("tk:gitdi\tO\n")
    for split in ("train", "dev", "test"):  # a valid source language next to the bad target
        (world / "panx" / "en").mkdir(exist_ok=True)
        (world / "panx" / "en" / split).write_text("en:Paris\tB-LOC\n")
        for language, row in (("fa", '{"text": "good"}'), ("en", '{"text": "good", "label": 1}')):
            (world / "sa" / language).mkdir(parents=True, exist_ok=True)
            (world / "sa" / language / f"{split}.jsonl").write_text(row + "\n")


def _write_world_19(world: Path) -> None:
    """#19's inputs: config files, a saved ablation, spaces, studies, label and size cases."""
    for name, text in (("empty.yaml", ""), ("empty-mapping.yaml", "{}\n"), ("comments.yaml", "# nothing set\n"),
                       ("epochs-text.yaml", "model: tiny\nepochs: abc\n"), ("zero-lr.yaml", "model: tiny\nlr: 0\n"),
                       ("warmup.yaml", "model: tiny\nwarmup_ratio: 2\n"), ("bad-method.yaml", "method: maml\n"),
                       ("bad-device.yaml", "device: gpu\n"), ("bad-target.yaml", "target: zz9\n"),
                       ("bad-layers.yaml", "rtn_layers: [top]\n")):
        (world / name).write_text(text)
    demo = world / "searches" / "demo-search"
    demo.mkdir(parents=True)
    (demo / "metaxl-search.json").write_text(json.dumps({"name": "demo-search", "storage": str(world / "searches"),
                                                         "space": "demo", "preset": "demo",
                                                         "base": {"model": "tiny", "data": "synthetic"}}))
    ablation = world / "searches" / "finished-ablation"
    ablation.mkdir(parents=True)
    (ablation / "metaxl-search.json").write_text(json.dumps(
        {"name": "finished-ablation", "storage": str(world / "searches"), "study": "methods", "targets": ["qu"], "seeds": 1}))
    (world / "twin-study.yaml").write_text("settings:\n  a: {method: jt}\n  b: {method: jt}\n")
    # #26: a search and an ablation started with a password in the tracking URI: saved masked.
    for name, extra in (("masked-search", {"space": "demo", "preset": "demo", "base": {"model": "tiny", "data": "synthetic"}}),
                        ("masked-ablation", {"study": "methods", "targets": ["tk"], "seeds": 1, "preset": "demo"})):
        (world / "searches" / name).mkdir(parents=True)
        (world / "searches" / name / "metaxl-search.json").write_text(json.dumps(
            {"name": name, "storage": str(world / "searches"), "tracking_uri": "http://alice:***@127.0.0.1:9", **extra}))
    parameter = "parameters:\n  meta_lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}\n"
    (world / "bogus-metric.yaml").write_text("metric: bogus_metric\nmode: max\n" + parameter)
    (world / "misspelt-metric.yaml").write_text("metric: dev_f2\nmode: max\n" + parameter)
    (world / "empty-space.yaml").write_text("")
    (world / "fixed-space.yaml").write_text("fixed: {method: metaxl, epochs: 3}\n")

    def sa_folder(name: str, splits: dict[str, str], suffix: str = ".jsonl") -> None:
        (world / name / "fa").mkdir(parents=True)
        for split in ("train", "dev", "test"):
            (world / name / "fa" / f"{split}{suffix}").write_text(splits.get(split, splits["train"]))

    rows = lambda *pairs: "".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in pairs)  # noqa: E731
    sa_folder("sa-binary", {"train": rows(("good", 1), ("bad", 0), ("fine", 1), ("awful", 0))})
    sa_folder("sa-low-stars", {"train": rows(("bad", 1), ("poor", 2))})
    sa_folder("sa-neutral-dev", {"train": rows(("bad", 1), ("good", 5)), "dev": rows(("bad", 1), ("meh", 3), ("so-so", 3))})
    sa_folder("sa-long-token", {"train": rows(("good", 1), ("bad " + "x" * 1001, 0))})
    sa_folder("sa-long-line", {"train": "text\tlabel\ngood\t1\n" + " ".join(["fine"] * 25_001) + "\t0\n"}, ".tsv")
    for name, train, dev in (("panx-long-token", "tk:Maru\tB-PER\ntk:" + "a" * 1001 + "\tO\n", "tk:Kalo\tB-ORG\n"),
                             ("panx-long-line", "tk:Maru\tB-PER\n", "tk:" + " ".join(["word"] * 20_001) + "\tO\n")):
        (world / name / "tk").mkdir(parents=True)
        for split, text in (("train", train), ("dev", dev), ("test", "tk:gitdi\tO\n")):
            (world / name / "tk" / split).write_text(text)
    # Runs to resume whose checkpoint is damaged; their data folder is missing, so a check that
    # came after the data load would name the data instead.
    for name, state in (("truncated-run", b"metaxl-tune checkpoint v1\n" + b"\0" * 64),
                        ("foreign-run", b"PK\x03\x04 not a checkpoint")):
        (world / name / "checkpoint").mkdir(parents=True)
        RunConfig(model="tiny", data=str(world / "nodata"), epochs=2).dump(world / name / "config.yaml")
        (world / name / "checkpoint" / "state.pt").write_bytes(state)


def _write_world_26(world: Path) -> None:
    """#26's inputs: YAML bombs and duplicate keys, NER files of the wrong shape."""
    lol = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lol += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    (world / "bomb.yaml").write_text("\n".join(lol) + "\n")
    (world / "deep.yaml").write_text("epochs: " + "[" * 20_000 + "]" * 20_000 + "\n")
    (world / "big.yaml").write_text("model: tiny\n" + "# padding\n" * 100_000)
    (world / "twice.yaml").write_text("model: tiny\nepochs: 2\nepochs: 3\n")
    (world / "twice-space.yaml").write_text("parameters:\n  lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}\n"
                                           "  meta_lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}\n"
                                           "  lr: {type: categorical, values: [1.0e-4]}\n")
    (world / "twice-study.yaml").write_text("settings:\n  jt: {method: jt}\n  jt: {method: metaxl}\n")
    for name, train in (("panx-three", "tk:Maru\tB-PER\ntk:a\tb\tO\n"), ("panx-endless", "tk:w\tO\n" * 10_001)):
        (world / name / "tk").mkdir(parents=True)
        for split, text in (("train", train), ("dev", "tk:Kalo\tB-ORG\n"), ("test", "tk:gitdi\tO\n")):
            (world / name / "tk" / split).write_text(text)


def _lock(folder: Path) -> bool:
    """Make ``folder`` unwritable (chmod for users; an immutable folder for root)."""
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    try:
        (folder / "probe").touch()
    except OSError:
        return True
    (folder / "probe").unlink()
    return False


def _unlock(folder: Path) -> None:
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def _snapshot(world: Path) -> dict[str, tuple[str, int]]:
    return {
        str(path.relative_to(world)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(world.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    world = root / "world"
    _write_world(world)
    _write_world_19(world)
    _write_world_26(world)
    locked = _lock(world / "locked")
    # An empty MLflow store, created once: its first use logs the schema migration.
    store = root / "mlflow.db"
    from metaxl_tune.results.tracking import Tracker

    Tracker(f"sqlite:///{store}", "none").client.search_experiments()
    yield world, locked, f"sqlite:///{store}", root
    _unlock(world / "locked")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_naming_what_to_change(case, world, monkeypatch, shared_cache):
    folder, locked, store, root = world
    if case.needs_locked and not locked:
        pytest.skip("cannot make a folder unwritable here")
    monkeypatch.chdir(root)
    monkeypatch.setenv("METAXL_TUNE_CACHE", str(shared_cache))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args, environment = case.command(folder)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    before = _snapshot(folder)

    result = runner.invoke(app, args)

    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and case.names.replace("{W}", str(folder)) in lines[0], lines[0]
    assert SECRET not in result.output
    assert _snapshot(folder) == before
    assert not (folder / "new").exists() and not (root / "metaxl-searches").exists()


def test_unexpected_errors_print_a_bug_line_before_the_traceback(monkeypatch):
    import metaxl_tune.cli.train as train_module

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(train_module, "resolve_config", broken)
    result = runner.invoke(app, ["train", "--print-config"])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
    assert result.output.splitlines()[0].startswith("error: unexpected failure, a bug in metaxl-tune")


def test_the_table_covers_every_command():
    commands = {case.command(Path("world"))[0][0] for case in CASES}
    assert {"train", "search", "ablate", "best", "report", "sync", "analyze", "ui"} <= commands
    assert len(CASES) >= 40
