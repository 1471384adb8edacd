"""Credentials masked in URIs and in free text (metaxl_tune/common/secrets.py)."""

from __future__ import annotations

import io
import pickle

import pytest

from metaxl_tune.common import secrets
from metaxl_tune.common.secrets import MaskedStream, has_secrets, is_masked, mask_text, mask_uri, remember, unmask

URIS = [
    ("http://alice:S3CRETpw@host:5000", "http://alice:***@host:5000"),
    ("https://alice:p@ss-S3CRET@host/mlflow", "https://alice:***@host/mlflow"),  # a raw '@' in the password
    ("https://ghp_S3CRETtoken@host", "https://***@host"),  # a token as the user info
    ("postgresql://mlflow:S3CRETpw@db:5432/mlflow?sslmode=require", "postgresql://mlflow:***@db:5432/mlflow?sslmode=require"),
    ("postgresql://mlflow@db/mlflow?password=S3CRETpw&sslmode=require", "postgresql://mlflow@db/mlflow?password=***&sslmode=require"),
    ("http://host:5000/?token=S3CRETpw&page=2", "http://host:5000/?token=***&page=2"),
    ("mysql+pymysql://root:S3CRETpw@127.0.0.1/db", "mysql+pymysql://root:***@127.0.0.1/db"),
]
PLAIN = ["http://127.0.0.1:5000", "sqlite:////tmp/runs/mlflow.db", "postgresql://mlflow@db/mlflow", "/shared/mlruns",
         "file:///shared/mlruns", "databricks"]


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    # What remember() learnt in one test must not mask another's text.
    monkeypatch.setattr(secrets, "_known", {})
    monkeypatch.setattr(secrets, "_literals", set())
    for variable in secrets.CREDENTIAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(("uri", "masked"), URIS)
def test_a_uri_is_masked_to_its_shape_without_the_secret(uri, masked):
    assert mask_uri(uri) == masked
    assert has_secrets(uri) and not has_secrets(masked)
    assert is_masked(masked) and not is_masked(uri)


@pytest.mark.parametrize("uri", PLAIN)
def test_a_uri_without_credentials_is_unchanged(uri):
    assert mask_uri(uri) == uri
    assert not has_secrets(uri) and not is_masked(uri)


@pytest.mark.parametrize(("uri", "masked"), URIS)
def test_text_quoting_a_uri_is_masked(uri, masked):
    text = f"API request to {uri}/api/2.0/mlflow/runs/get failed: refused"

    assert mask_text(text) == f"API request to {masked}/api/2.0/mlflow/runs/get failed: refused"


@pytest.mark.parametrize("name", ["token", "access_token", "password", "X-Amz-Signature", "X-Amz-Credential", "key",
                                  "api_key", "apiKey", "sig", "client_secret", "auth"])
def test_a_query_parameter_named_as_a_credential_is_masked(name):
    assert mask_uri(f"http://host:5000/?{name}=S3CRETvalue&page=2") == f"http://host:5000/?{name}=***&page=2"


@pytest.mark.parametrize("name", ["viewStateShareKey", "keyword", "design", "page", "sort_key"])
def test_a_query_parameter_that_only_contains_key_is_kept(name):
    # ui prints MLflow links with ?viewStateShareKey=metaxl-NAME: masking it breaks the link.
    assert mask_uri(f"http://host:5000/#/runs?{name}=metaxl-demo") == f"http://host:5000/#/runs?{name}=metaxl-demo"


def test_the_punctuation_after_a_masked_query_value_stays():
    assert mask_text("--tracking-uri http://h:5000/?token=abc123: refused.") == "--tracking-uri http://h:5000/?token=***: refused."


def test_a_remembered_password_is_masked_anywhere_also_percent_decoded():
    remember("http://alice:p%40ss-S3CRET@host:5000")

    assert mask_text("login failed for alice with p@ss-S3CRET") == "login failed for alice with ***"
    assert mask_text("pw p%40ss-S3CRET") == "pw ***"


def test_the_values_of_mlflows_credential_variables_are_masked(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "env-S3CRET")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-S3CRET-0123")

    assert mask_text("Authorization: Bearer tok-S3CRET-0123 (password env-S3CRET)") == "Authorization: Bearer *** (password ***)"


def test_a_masked_uri_comes_back_whole_only_in_the_process_that_was_given_it():
    uri = "http://alice:S3CRETpw@host:5000"
    masked = remember(uri)

    assert unmask(masked) == uri
    assert unmask("http://bob:***@host:5000") == "http://bob:***@host:5000"


def test_a_pickled_tracker_holds_the_masked_uri_and_unpickles_whole():
    from metaxl_tune.results.tracking import Tracker

    tracker = Tracker("http://alice:S3CRETpw@host:5000", "search")
    data = pickle.dumps(tracker)

    assert b"S3CRETpw" not in data and b"http://alice:***@host:5000" in data
    assert pickle.loads(data).tracking_uri == "http://alice:S3CRETpw@host:5000"


def test_a_masked_stream_masks_every_write_and_passes_bytes_on_as_they_are():
    target = io.StringIO()
    stream = MaskedStream(target)

    stream.write("Traceback: http://alice:S3CRETpw@host:5000/x\n")
    stream.writelines(["postgresql://u:S3CRETpw@db/x\n"])
    with pytest.raises(TypeError):
        stream.write(b"bytes")  # a text stream refuses bytes, as the one it wraps does (click probes it)

    assert target.getvalue() == "Traceback: http://alice:***@host:5000/x\npostgresql://u:***@db/x\n"
    assert stream.getvalue() == target.getvalue() and stream.closed is False  # the rest is the wrapped stream
