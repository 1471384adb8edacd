"""The per-config table on a search's parent run: one row per config, its seeds and trials.

The runs table of the MLflow UI lists trials; this table is the search's result as `best`
ranks it, so a config's seeds are read together in the UI: ``configs.json`` is a logged table
(the run's "table" artifacts, which the UI shows and ``mlflow.load_table`` reads) and
``configs.csv`` the same rows for a spreadsheet. Written when a search closes and by `sync`.

``MlflowClient.log_table`` appends to a table already there, so a search closed twice (a
resume) or synced would hold each config twice: the file is written whole in its format
(pandas' ``orient="split"`` JSON) and the run's ``mlflow.loggedArtifacts`` tag marks it a table,
as ``log_table`` does. The tag is set before the files are uploaded, so the run's record is
the same whether or not the artifact store takes them; a file whose stored text is the same
is not uploaded again.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from metaxl_tune.results.config_ranking import RankedConfigs, ranked_configs, seed_number
from metaxl_tune.results.ranking import ResultsError
from metaxl_tune.results.tracking import Tracker

TABLE_FILE = "configs.json"
CSV_FILE = "configs.csv"
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"
"""= mlflow.utils.mlflow_tags.MLFLOW_LOGGED_ARTIFACTS: the run's artifacts that are tables."""


def config_table(ranked: RankedConfigs) -> dict[str, list]:
    """``{"columns": [...], "data": [[...], ...]}``: rank, config id, seeds, the metric's mean and
    standard error, test F1 (mean), the seeds, the trial ids, then the searched values."""
    metric = ranked.metric
    columns = ["rank", "config_id", "seeds", f"mean {metric}", f"stderr {metric}", "mean best_test_f1",
               "seed_list", "trial_ids", *ranked.searched]
    data = []
    for rank, row in enumerate(ranked.rows, start=1):
        test = row.mean_of("best_test_f1")
        data.append([rank, row.config_id, row.seeds, round(row.mean, 4),
                     None if row.stderr is None else round(row.stderr, 4), None if test is None else round(test, 4),
                     " ".join(str(seed_number(seed)) for seed in row.seed_values), " ".join(row.trial_ids),
                     *(row.values.get(key, "") for key in ranked.searched)])
    return {"columns": columns, "data": data}


def table_files(ranked: RankedConfigs) -> dict[str, str]:
    """File name -> text: the logged table (JSON) and the CSV."""
    table = config_table(ranked)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table["columns"])
    writer.writerows(["" if cell is None else cell for cell in row] for row in table["data"])
    return {TABLE_FILE: json.dumps(table) + "\n", CSV_FILE: out.getvalue()}


def upload_config_table(tracker: Tracker, parent_id: str, metric: str,
                        upload: Callable[[str, int, Callable[[], Any]], bool]) -> int:
    """Write the search's per-config table to its parent run; how many files were uploaded (0
    when no trial completed yet, when the stored files say the same, or when the store did not
    take them). ``upload``: search/records/artifacts.ArtifactUploads.upload, which says a full
    store once and leaves the record as it is."""
    try:
        ranked = ranked_configs(tracker, metric)
    except ResultsError:
        return 0  # no completed trial (or none logged the metric): no config to list yet
    files = table_files(ranked)
    _mark_table(tracker, parent_id)
    stored = _stored_texts(tracker, parent_id, files)
    changed = {name: text for name, text in files.items() if stored.get(name) != text}
    if not changed:
        return 0
    size = sum(len(text.encode()) for text in changed.values())

    def write() -> None:
        for name, text in changed.items():
            tracker.client.log_text(parent_id, text, name)

    return len(changed) if upload("the search's per-config table", size, write) else 0


def _mark_table(tracker: Tracker, parent_id: str) -> None:
    tags = tracker.client.get_run(parent_id).data.tags
    logged = json.loads(tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
    entry = {"path": TABLE_FILE, "type": "table"}
    if entry not in logged:
        tracker.client.set_tag(parent_id, LOGGED_ARTIFACTS_TAG, json.dumps([*logged, entry]))


def _stored_texts(tracker: Tracker, parent_id: str, files: dict[str, str]) -> dict[str, str]:
    there = {item.path for item in tracker.client.list_artifacts(parent_id) if not item.is_dir}
    texts = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in files:
            if name in there:
                path = tracker.client.download_artifacts(parent_id, name, directory)
                texts[name] = Path(path).read_text(encoding="utf-8")
    return texts
