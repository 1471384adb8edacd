"""docker/: the images, the compose cluster, the AWS launcher config and the KubeRay manifest,
checked without Docker, a cluster or the network."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
AWS = DOCKER / "cluster-aws.yaml"
KUBERAY = DOCKER / "kuberay-raycluster.yaml"
README = DOCKER / "README.md"
DOCKERFILES = [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.gpu"]


# ---- helpers ---------------------------------------------------------------------------------


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def copy_sources(dockerfile: Path) -> list[str]:
    """Build-context paths that COPY/ADD read (COPY --from=IMAGE reads an image, not the repo)."""
    sources = []
    for keyword, arguments in instructions(dockerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        if any(word.startswith("--from=") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, closely enough: a pattern matches the path or one of its parents, the
    last matching pattern wins, `!` re-includes, `**/x` also matches x at the root."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        variants = [pattern] + ([pattern[3:]] if pattern.startswith("**/") else [])
        if any(fnmatch.fnmatchcase(prefix, variant) for prefix in prefixes for variant in variants):
            ignored = not negated
    return ignored


def dockerfile_arg(dockerfile: Path, name: str) -> str:
    for keyword, arguments in instructions(dockerfile):
        if keyword == "ARG" and arguments.startswith(f"{name}="):
            return arguments.split("=", 1)[1]
    raise AssertionError(f"{dockerfile.name}: no ARG {name}=...")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def argv(service: dict) -> list[str]:
    """The service's command line: entrypoint + command, as a list."""
    words = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        words += shlex.split(value) if isinstance(value, str) else [str(word) for word in value]
    return words


def option(words: list[str], name: str) -> str:
    for index, word in enumerate(words):
        if word == name:
            return words[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"no {name} in {words}")


def interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, with VAR set to "set-VAR"."""
    return re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}", lambda match: f"set-{match[1]}", value)


def ray_services(spec: dict) -> dict[str, dict]:
    return {name: svc for name, svc in spec["services"].items() if argv(svc)[:2] == ["ray", "start"]}


def kuberay_documents() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(KUBERAY.read_text()) if doc]


def raycluster() -> dict:
    (cluster,) = [doc for doc in kuberay_documents() if doc["kind"] == "RayCluster"]
    return cluster


def pod_specs(cluster: dict) -> dict[str, dict]:
    """Group name ('head' for the head) -> pod spec."""
    specs = {"head": cluster["spec"]["headGroupSpec"]["template"]["spec"]}
    for group in cluster["spec"]["workerGroupSpecs"]:
        specs[group["groupName"]] = group["template"]["spec"]
    return specs


def aws_config() -> dict:
    return yaml.safe_load(AWS.read_text())


def cli_options() -> dict[str, set[str]]:
    """Every command of the real Typer app and the options it accepts."""
    import typer.main
    from metaxl_tune.cli.app import app

    group = typer.main.get_command(app)
    return {
        name: {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
        for name, command in group.commands.items()
    }


def code_text(markdown: str) -> str:
    """The shell in a Markdown file: fenced blocks and inline code spans (prose can say
    'metaxl-tune images' without that being a command)."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    inline = [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]
    return "\n".join(fenced + inline)


MENTION = re.compile(r"(?<![\w/.:=-])metaxl-tune[ \t]+([a-z][a-z-]*)([^\n`|;&#]*)")
# `docker run ... metaxl-tune:cpu SUBCOMMAND ...`: the image's ENTRYPOINT is the CLI
IMAGE_RUN = re.compile(r"docker run [^\n`|;&#]*?metaxl-tune:[\w.-]+[ \t]+([a-z][a-z-]*)([^\n`|;&#]*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def mentions(text: str) -> list[tuple[str, list[str]]]:
    """(subcommand, --flags) for every `metaxl-tune SUBCOMMAND ...` and `docker run ...
    metaxl-tune:TAG SUBCOMMAND ...`, following backslash continuations (also in # comments)."""
    text = re.sub(r"\\\n[ \t]*(#[ \t]*)?", " ", text)
    found = [*MENTION.finditer(text), *IMAGE_RUN.finditer(text)]
    return [(match[1], FLAG.findall(match[2])) for match in found]


# ---- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_entrypoint_is_the_packaged_console_script(dockerfile):
    scripts = pyproject()["project"]["scripts"]
    entrypoints = [json.loads(arguments) for keyword, arguments in instructions(dockerfile) if keyword == "ENTRYPOINT"]

    assert entrypoints, f"{dockerfile.name} has no ENTRYPOINT"
    (script,) = entrypoints[-1]
    assert script in scripts
    module, _, function = scripts[script].partition(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_copy_sources_exist_and_are_not_dockerignored(dockerfile):
    sources = copy_sources(dockerfile)
    patterns = dockerignore_patterns()

    assert {"pyproject.toml", "README.md", "metaxl_tune", "cli", "search_spaces"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: not in the repository"
        assert not dockerignored(source, patterns), f"{dockerfile.name}: COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = dockerignore_patterns()

    for path in (".venv", ".git", "mlflow.db", "mlartifacts", "metaxl-searches", "runs",
                 "metaxl_tune/__pycache__", ".pytest_cache"):
        assert dockerignored(path, patterns), f".dockerignore lets {path} into the build context"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_pin_the_packages_torch_and_install_it_before_the_package(dockerfile):
    (pin,) = [dep for dep in pyproject()["project"]["dependencies"] if re.match(r"torch\s*==", dep)]
    runs = [arguments for keyword, arguments in instructions(dockerfile) if keyword == "RUN"]
    torch_runs = [index for index, command in enumerate(runs) if re.search(r"\btorch==", command)]
    package_runs = [index for index, command in enumerate(runs) if "pip install /opt/metaxl-tune" in command]

    assert set(re.findall(r"\btorch==([\w.+]+)", dockerfile.read_text())) == {pin.split("==")[1].strip()}
    assert torch_runs and package_runs and max(torch_runs) < min(package_runs)


def test_every_node_runs_the_same_ray():
    versions = {dockerfile.name: dockerfile_arg(dockerfile, "RAY_VERSION") for dockerfile in DOCKERFILES}
    versions["kuberay rayVersion"] = str(raycluster()["spec"]["rayVersion"])

    assert len(set(versions.values())) == 1, versions


# ---- compose ---------------------------------------------------------------------------------


def test_compose_builds_its_images_from_the_dockerfiles_here():
    built = {name: svc for name, svc in compose()["services"].items() if "build" in svc}
    dockerfile_of_image = {}

    assert {"ray-head", "ray-gpu-worker", "mlflow"} <= set(built)
    for name, service in built.items():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
        assert context == ROOT, f"{name}: build context {context}"
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        assert dockerfile_of_image.setdefault(service["image"], dockerfile) == dockerfile, f"{name}: one tag, two Dockerfiles"
    assert dockerfile_of_image == {"metaxl-tune:cpu": DOCKER / "Dockerfile.cpu", "metaxl-tune:gpu": DOCKER / "Dockerfile.gpu"}


def test_compose_publishes_ports_on_127_0_0_1_only():
    services = compose()["services"]
    published = []

    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name}: host networking bypasses the port bindings"
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).rsplit(":", 2)[0]
            assert host_ip == "127.0.0.1", f"{name}: port {port} is not bound to 127.0.0.1"
            published.append(name)
    assert {"ray-head", "mlflow"} <= set(published)


def test_compose_ray_nodes_require_token_auth():
    nodes = ray_services(compose())

    assert {"ray-head", "ray-gpu-worker"} <= set(nodes)
    for name, service in nodes.items():
        env = environment(service)
        assert env.get("RAY_AUTH_MODE") == "token", name
        # `:?` makes compose refuse to start without a token instead of passing an empty one
        assert re.fullmatch(r"\$\{RAY_AUTH_TOKEN:\?[^}]+\}", env.get("RAY_AUTH_TOKEN", "")), name


def test_compose_volumes_are_declared_and_shared_at_slash_shared():
    spec = compose()
    declared = set(spec.get("volumes") or {})
    shared_by = set()

    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source, target, kind = volume.get("source"), volume["target"], volume.get("type", "volume")
            else:
                source, target = volume.split(":")[:2]
                kind = "bind" if source.startswith(("/", ".", "~", "$")) else "volume"
            if kind == "volume":
                assert source in declared, f"{name}: volume {source} is not declared under volumes:"
            if target == "/shared":
                shared_by.add(name)
    assert {"ray-head", "ray-gpu-worker", "mlflow"} <= shared_by


def test_compose_mlflow_stores_runs_in_postgres_and_artifacts_on_the_shared_volume():
    services = compose()["services"]
    mlflow = argv(services["mlflow"])
    backend = urlparse(interpolate(option(mlflow, "--backend-store-uri")))

    assert mlflow[:2] == ["mlflow", "server"]
    assert backend.scheme == "postgresql"
    assert backend.hostname in services and services[backend.hostname]["image"].startswith("postgres:")
    assert "healthcheck" in services[backend.hostname]
    assert services["mlflow"]["depends_on"][backend.hostname]["condition"] == "service_healthy"
    assert option(mlflow, "--artifacts-destination").startswith("/shared/")
    assert "--serve-artifacts" in mlflow


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # from importing mlflow.server
def test_compose_mlflow_accepts_the_drivers_and_the_browsers_host_header():
    from mlflow.server.security_utils import is_allowed_host_header

    services = compose()["services"]
    allowed = option(argv(services["mlflow"]), "--allowed-hosts").split(",")
    driver = urlparse(environment(services["ray-head"])["MLFLOW_TRACKING_URI"]).netloc
    (browser,) = [port.rsplit(":", 1)[0] for port in services["mlflow"]["ports"]]

    assert is_allowed_host_header(allowed, driver)
    assert is_allowed_host_header(allowed, browser)
    assert is_allowed_host_header(allowed, "localhost:5000")


def test_compose_mlflow_asks_every_request_for_a_user_and_the_driver_signs_in(monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    services = compose()["services"]
    server, driver = environment(services["mlflow"]), environment(services["ray-head"])
    mounts = dict(reversed(volume.split(":")[:2]) for volume in services["mlflow"]["volumes"])
    declared = set(compose().get("volumes") or {})
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str((COMPOSE.parent / mounts[server["MLFLOW_AUTH_CONFIG_PATH"]]).resolve()))
    for variable in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    config = read_auth_config()  # MLflow's own reader of the file the server is given
    users = Path(config.database_uri.removeprefix("sqlite:///"))

    assert option(argv(services["mlflow"]), "--app-name") == "basic-auth"
    # compose refuses to start without the secrets (`:?`) instead of running with empty ones
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", server[name]), name
    # the driver signs in as the admin the server creates on its first start
    assert interpolate(driver["MLFLOW_TRACKING_USERNAME"]) == interpolate(server["MLFLOW_AUTH_ADMIN_USERNAME"])
    assert interpolate(driver["MLFLOW_TRACKING_PASSWORD"]) == interpolate(server["MLFLOW_AUTH_ADMIN_PASSWORD"])
    # the password is never in the file; the users live on a volume of their own, not on /shared
    assert config.admin_password is None and config.default_permission == "READ"
    assert config.database_uri.startswith("sqlite:////") and mounts[str(users.parent)] in declared
    assert "/shared" not in str(users)


def test_the_cpu_image_installs_the_postgres_and_server_extras():
    runs = [arguments for keyword, arguments in instructions(DOCKER / "Dockerfile.cpu") if keyword == "RUN"]
    extras = pyproject()["project"]["optional-dependencies"]

    assert any("pip install /opt/metaxl-tune'[postgres,server]'" in command for command in runs)
    assert {"postgres", "server"} <= set(extras)


# ---- AWS cluster launcher --------------------------------------------------------------------


def test_aws_config_passes_rays_schema_as_written_and_as_ray_up_prepares_it():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = aws_config()

    validate_config(copy.deepcopy(config))
    validate_config(prepare_config(copy.deepcopy(config)))


def test_aws_config_with_a_misspelled_key_fails_rays_schema():
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    config = aws_config()
    config["max_worker"] = config.pop("max_workers")

    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(config)


def test_aws_nodes_start_ray_with_token_auth_and_the_token_file():
    config = aws_config()
    starts = [command for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for command in config[key] if "ray start" in command]

    assert len(starts) == 2
    assert all(re.search(r"RAY_AUTH_MODE=token\s+ray start", command) for command in starts)
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]  # drivers in `ray attach`
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_aws_runs_the_compose_images_with_one_gpu_per_worker_and_shared_storage():
    config = aws_config()
    images = {svc["image"] for svc in compose()["services"].values() if "build" in svc}
    workers = [node for name, node in config["available_node_types"].items() if name != config["head_node_type"]]

    assert config["docker"]["head_image"].endswith("/metaxl-tune:cpu")
    assert config["docker"]["worker_image"].endswith("/metaxl-tune:gpu")
    assert {config["docker"]["head_image"].rsplit("/", 1)[1], config["docker"]["worker_image"].rsplit("/", 1)[1]} <= images
    assert workers and all(node["resources"].get("GPU", 0) >= 1 for node in workers)
    assert "--volume /shared:/shared" in config["docker"]["run_options"]


# ---- KubeRay ---------------------------------------------------------------------------------


def test_kuberay_has_a_gpu_worker_group_and_the_compose_images():
    cluster = raycluster()
    services = compose()["services"]
    (gpu,) = [group for group in cluster["spec"]["workerGroupSpecs"] if group["groupName"] == "gpu"]
    (worker,) = gpu["template"]["spec"]["containers"]
    (head,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]

    assert cluster["apiVersion"] == "ray.io/v1"
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    assert head["image"] == services["ray-head"]["image"]
    assert worker["image"] == services["ray-gpu-worker"]["image"]
    assert cluster["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_kuberay_pods_read_the_token_from_the_secret_the_readme_creates():
    secrets = set()

    for group, spec in pod_specs(raycluster()).items():
        for container in spec["containers"]:
            env = {item["name"]: item for item in container.get("env", [])}
            assert env["RAY_AUTH_MODE"]["value"] == "token", group
            ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
            secrets.add((ref["name"], ref["key"]))
    (secret,) = secrets
    created = re.findall(r"kubectl create secret generic ([\w.-]+)\s*\\?\s*--from-literal=([\w.-]+)=", README.read_text())

    assert secret in created


def test_kuberay_pods_mount_a_read_write_many_claim_defined_in_the_file():
    claims = {doc["metadata"]["name"]: doc for doc in kuberay_documents() if doc["kind"] == "PersistentVolumeClaim"}

    for group, spec in pod_specs(raycluster()).items():
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            (shared,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/shared"]
            claim = volumes[shared["name"]]["persistentVolumeClaim"]["claimName"]
            assert claim in claims, f"{group}: PVC {claim} is not defined in {KUBERAY.name}"
            assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"]


# ---- the CLI as the docs use it --------------------------------------------------------------


def test_docs_use_only_real_metaxl_tune_commands_and_options():
    options = cli_options()
    texts = {README.name: code_text(README.read_text())}
    texts.update({path.name: path.read_text() for path in (COMPOSE, AWS, KUBERAY, *DOCKERFILES)})
    found = []

    for name, text in texts.items():
        for command, flags in mentions(text):
            assert command in options, f"{name}: metaxl-tune {command}: no such command"
            unknown = sorted(set(flags) - options[command])
            assert not unknown, f"{name}: metaxl-tune {command}: unknown options {unknown}"
            found.append((name, command, tuple(flags)))
    searches = [flags for name, command, flags in found if command == "search"]
    assert any("--storage" in flags and "--address" in flags for flags in searches), found
