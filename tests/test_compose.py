"""The Docker deployment stays consistent: docker-compose.yaml, docker/Dockerfile, pyproject.toml, README.md.

Needs no Docker engine. `docker compose config` is run only where the compose plugin is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
README = REPO / "README.md"
PYPROJECT = REPO / "pyproject.toml"

README_SECTION = "## Docker Compose"
_BACKTICKED_NAME = re.compile(r"^`([^`]+)`$")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def _services() -> dict:
    return _compose()["services"]


def compose_table_names(markdown: str, heading: str = README_SECTION) -> set[str]:
    """Backticked names in the first column of the markdown tables under the heading starting with `heading`.

    The section runs from that heading line to the next heading of the same or a higher level; fenced code
    blocks are skipped.
    """
    level = len(heading) - len(heading.lstrip("#"))
    names: set[str] = set()
    in_section = in_fence = False
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):  # a `# comment` in a code block is no heading
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        hashes = len(stripped) - len(stripped.lstrip("#"))
        is_heading = 0 < hashes <= 6 and stripped[hashes : hashes + 1] in ("", " ")
        if in_section and is_heading and hashes <= level:
            break
        if stripped.startswith(heading):
            in_section = True
            continue
        if in_section and stripped.startswith("|"):
            first_cell = stripped.strip("|").split("|", 1)[0].strip()
            match = _BACKTICKED_NAME.match(first_cell)
            if match:
                names.add(match.group(1))
    return names


def test_compose_table_parser():
    markdown = "\n".join(
        [
            "# Project",
            "| `outside` | not in the section |",
            "## Docker Compose (local)",
            "Start it with `docker compose up`.",
            "",
            "| Service | Role |",
            "| --- | --- |",
            "| `postgres` | database |",
            "|`redis`|broker|",
            "| plain | no backticks: ignored |",
            "| `a` and `b` | not a single name: ignored |",
            "```bash",
            "# a shell comment, not a heading",
            "| `in-code` | ignored |",
            "```",
            "### A subsection stays in the section",
            "| `serve` | API |",
            "## Next section",
            "| `later` | not in the section |",
        ]
    )
    assert compose_table_names(markdown) == {"postgres", "redis", "serve"}
    assert compose_table_names("# Project\n| `x` | y |\n") == set()


def test_compose_file_parses_and_every_service_has_an_image_or_build():
    compose = _compose()
    assert "version" not in compose, "Compose spec files have no top-level `version:`"
    services = compose["services"]
    assert services
    missing = sorted(name for name, spec in services.items() if not (spec.get("image") or spec.get("build")))
    assert not missing, f"services without image or build: {missing}"


def test_readme_compose_table_matches_compose_services():
    if not README.exists():
        pytest.fail("README.md is missing; it must have a '## Docker Compose' section listing the services")
    documented = compose_table_names(README.read_text(encoding="utf-8"))
    assert documented, f"README.md has no table of `service` names in a section headed {README_SECTION!r}"
    services = set(_services())
    undefined, undocumented = sorted(documented - services), sorted(services - documented)
    assert not undefined, f"in README.md but not in docker-compose.yaml: {undefined}"
    assert not undocumented, f"in docker-compose.yaml but not in README.md: {undocumented}"


def _pinned_airflow_version() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = [m.group(1) for d in deps
            if (m := re.fullmatch(r"\s*apache-airflow(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*", d))]
    assert len(pins) == 1, f"expected one `apache-airflow==` pin in pyproject.toml, found {pins}"
    return pins[0]


def _dockerfile_from_images() -> list[str]:
    images = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts and parts[0].upper() == "FROM":
            images.append(next(p for p in parts[1:] if not p.startswith("--")))
    return images


def test_dockerfile_airflow_version_matches_pyproject_pin():
    version = _pinned_airflow_version()
    images = _dockerfile_from_images()
    assert images, "docker/Dockerfile has no FROM"
    match = re.fullmatch(r"apache/airflow:(\d+(?:\.\d+)*)(?:-python\d+\.\d+)?", images[-1])
    assert match, f"the final stage should extend the official apache/airflow:<version>, not {images[-1]}"
    assert match.group(1) == version, (
        f"docker/Dockerfile extends Airflow {match.group(1)}, pyproject.toml pins apache-airflow=={version}"
    )


def test_docker_compose_config_is_valid():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker binary")
    try:
        version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("`docker compose version` did not answer")
    if version.returncode != 0:
        pytest.skip("docker has no compose plugin")
    # Enable every profile so that the profiled services are checked too.
    profiles = sorted({p for spec in _services().values() for p in spec.get("profiles", [])})
    command = [docker, "compose", "-f", str(COMPOSE_FILE)]
    for profile in profiles:
        command += ["--profile", profile]
    command += ["config", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    if result.returncode != 0 and re.search(
        r"cannot connect to the docker daemon|docker daemon", result.stderr, re.IGNORECASE
    ):
        pytest.skip(f"`docker compose config` needs a Docker engine here: {result.stderr.strip()}")
    assert result.returncode == 0, f"`{' '.join(command[1:])}` failed:\n{result.stderr}"


def test_image_installs_the_pinned_cpu_torch():
    """The image takes torch from the CPU index at the version pyproject.toml pins (PyPI's is a CUDA build)."""
    pinned = re.search(r'"torch==([^"]+)"', PYPROJECT.read_text())
    docker = re.search(r'download\.pytorch\.org/whl/cpu "torch==([^"]+)"', DOCKERFILE.read_text())
    assert pinned and docker and pinned.group(1) == docker.group(1)


def test_secrets_are_required_not_defaulted():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for secret in ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_FERNET_KEY"):
        uses = re.findall(r"\$\{" + secret + r"(:[-?][^}]*)?\}", text)
        assert uses, secret
        assert all(u.startswith(":?") for u in uses), f"{secret} must be required (${{{secret}:?...}}), not defaulted"
    assert "change-me" not in text


def test_published_ports_answer_on_loopback_and_dynamodb_is_not_published():
    for name, spec in _services().items():
        for port in spec.get("ports", []):
            assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"{name} publishes {port} on every interface"
    assert "ports" not in _services()["dynamodb"]


def test_development_stand_ins_stay_out_of_the_runtime_dependencies():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    assert "pgserver" not in runtime and "moto" not in runtime
    dev = " ".join(project["optional-dependencies"]["dev"]).lower()
    assert "pgserver" in dev and "moto" in dev


def test_the_image_installs_under_airflows_constraints():
    text = DOCKERFILE.read_text()
    assert "constraints-3.11.txt" in text and "--constraint /tmp/constraints.txt" in text
    version = _pinned_airflow_version()
    assert f"constraints-{version}/" in text
