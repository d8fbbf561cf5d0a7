"""config/k8s/ and the Dockerfile: valid manifests, timing from `shutdown`, probes on healthd.

Manifests are validated against the Kubernetes JSON schemas shipped inside the
`kubernetes-validate` package (no network), strict mode: unknown fields are errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from ruamel.yaml import YAML

from healthd.config import Settings, parse_settings
from tests.helpers import spec_named

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "config" / "k8s"
# The oldest Kubernetes minor still common in managed clusters, and the newest shipped.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
PROBES = {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}


SUPERVISED = K8S / "supervised.yaml"  # healthd running the app in one container (§16)


def documents(supervised: bool = False) -> list[dict[str, Any]]:
    """The sidecar example's manifests, or supervised.yaml's."""
    yaml = YAML(typ="safe")
    docs = []
    paths = [SUPERVISED] if supervised else sorted(set(K8S.glob("*.yaml")) - {SUPERVISED})
    for path in paths:
        docs += [d for d in yaml.load_all(path.read_text()) if d]
    return docs


def one(kind: str, supervised: bool = False) -> dict[str, Any]:
    (doc,) = [d for d in documents(supervised) if d["kind"] == kind]
    return doc


def healthd_settings() -> Settings:
    return parse_settings(one("ConfigMap")["data"]["healthd.yaml"], "configmap.yaml")


def containers() -> dict[str, dict[str, Any]]:
    spec = one("Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    """Every manifest validates (strict: no unknown fields) against the Kubernetes schemas."""
    for supervised in (False, True):
        docs = documents(supervised)
        assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "Service"]
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_an_invalid_manifest_is_caught() -> None:
    """The validator is not a no-op: a misspelt field fails."""
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_configmap_holds_a_valid_healthd_config() -> None:
    """The ConfigMap's healthd.yaml loads; probes are public, the admin API pod-local."""
    settings = healthd_settings()
    assert settings.server.listen.startswith("0.0.0.0:")
    assert settings.server.admin_listen.startswith("127.0.0.1:")


def test_termination_grace_covers_drain_and_grace() -> None:
    """terminationGracePeriodSeconds ≥ drain_delay + grace; the app's preStop sleeps drain_delay."""
    shutdown = healthd_settings().shutdown
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= shutdown.drain_delay + shutdown.grace
    app = containers()["app"]
    assert app["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", f"{shutdown.drain_delay:g}"]
    assert "lifecycle" not in containers()["healthd"]  # healthd drains on SIGTERM itself


def test_probes_point_at_healthd() -> None:
    """Startup, readiness and liveness probes hit healthd's paths on its probe port, in budget."""
    settings = healthd_settings()
    listen_port = int(settings.server.listen.rpartition(":")[2])
    healthd = containers()["healthd"]
    for probe, path in PROBES.items():
        get = healthd[probe]["httpGet"]
        assert get["path"] == path
        assert port_number(healthd, get["port"]) == listen_port
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
        budget_ms = int(headers["X-Request-Timeout-Ms"])
        assert budget_ms < healthd[probe]["timeoutSeconds"] * 1000  # answered before the kubelet
        assert budget_ms <= settings.deadline.max * 1000  # not capped away
    assert not any(p in containers()["app"] for p in PROBES)  # healthd speaks for the pod
    assert healthd["args"] == ["run", "-c", "/etc/healthd/healthd.yaml"]


def commented_grpc_probes() -> dict[str, Any]:
    """The Deployment's commented-out gRPC probes, uncommented."""
    block, taking = [], False
    for line in (K8S / "deployment.yaml").read_text().splitlines():
        text = line.strip()
        if re.fullmatch(r"# (readiness|liveness|startup)Probe:", text):
            taking = True
        elif not text.startswith("#   "):
            taking = False
        if taking:
            block.append(text[2:])
    probes: dict[str, Any] = YAML(typ="safe").load("\n".join(block))
    return probes


def test_the_commented_grpc_probes_are_valid_and_reach_grpc_listen() -> None:
    """Uncommented, the gRPC probes validate, use the ConfigMap's (commented) grpc_listen
    port, ask for the group they stand for, and are the README's."""
    from healthd.grpchealth import GROUP_SERVICES

    probes = commented_grpc_probes()
    assert set(probes) == {"readinessProbe", "livenessProbe"}
    config = one("ConfigMap")["data"]["healthd.yaml"]
    assert "# grpc_listen: " in config
    settings = parse_settings(config.replace("# grpc_listen: ", "grpc_listen: "), "configmap.yaml")
    assert settings.server.grpc_listen is not None
    port = int(settings.server.grpc_listen.rpartition(":")[2])
    deployment = one("Deployment")
    (healthd,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "healthd"
    ]
    healthd.update(probes)
    for version in VERSIONS:
        kubernetes_validate.validate(deployment, version, strict=True)
    readme = (ROOT / "README.md").read_text()
    for name, probe in probes.items():
        grpc = probe["grpc"]
        assert grpc["port"] == port
        assert GROUP_SERVICES[grpc["service"]] == name.removesuffix("Probe")
        assert f"grpc: {{port: {port}, service: {grpc['service']}}}" in readme


FLEET = K8S / "fleet"  # the opt-in fleet example: an etcd, and the ConfigMap with `fleet:`


def fleet_documents() -> list[dict[str, Any]]:
    yaml = YAML(typ="safe")
    return [d for p in sorted(FLEET.glob("*.yaml")) for d in yaml.load_all(p.read_text()) if d]


def test_the_sidecar_example_needs_no_etcd() -> None:
    """The sidecar example has no `fleet:` (no manifest of it creates an etcd)."""
    assert healthd_settings().fleet is None


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fleet_example_validates(version: str) -> None:
    """config/k8s/fleet/: an etcd Deployment and Service, and a ConfigMap, all valid."""
    docs = fleet_documents()
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_fleet_example_is_the_sidecar_config_plus_a_fleet_on_its_etcd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fleet ConfigMap replaces the sidecar's (same name) with the same config and a
    `fleet:` block whose endpoint is the example etcd's Service; the instance is the pod's
    name (the downward API in deployment.yaml)."""
    monkeypatch.setenv("POD_NAME", "example-app-5d8c7-x2x9q")
    by_kind = {d["kind"]: d for d in fleet_documents()}
    cm = by_kind["ConfigMap"]
    assert cm["metadata"]["name"] == one("ConfigMap")["metadata"]["name"]
    with_fleet = parse_settings(cm["data"]["healthd.yaml"], "fleet/configmap.yaml")
    fleet = with_fleet.fleet
    assert fleet is not None
    assert with_fleet.model_dump(exclude={"fleet"}) == healthd_settings().model_dump(
        exclude={"fleet"}
    )
    service = by_kind["Service"]
    (port,) = service["spec"]["ports"]
    assert fleet.endpoints == [f"http://{service['metadata']['name']}:{port['port']}"]
    assert fleet.instance == "example-app-5d8c7-x2x9q"
    env = {e["name"]: e for e in containers()["healthd"]["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_service_selects_the_pods_and_named_ports() -> None:
    """The Service's selector matches the pod labels and its target ports exist."""
    service, deployment = one("Service"), one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    names = {p["name"] for c in containers().values() for p in c.get("ports", [])}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def test_dockerfile_is_multi_stage_non_root_and_probes_livez() -> None:
    """The image runs as a numeric non-root user, stops on SIGTERM and checks /livez."""
    lines = [x.strip() for x in (ROOT / "Dockerfile").read_text().splitlines()]
    assert sum(x.startswith("FROM ") for x in lines) == 2
    assert any(x.startswith("COPY --from=build ") for x in lines)
    (user,) = [x.split()[1] for x in lines if x.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert uid != "0"
    assert "STOPSIGNAL SIGTERM" in lines
    text = (ROOT / "Dockerfile").read_text()
    assert '"healthd", "probe", "/livez"' in text  # the configured address (test_docker.py)


# --- supervised.yaml: `healthd run -- app` in one container (DESIGN §16) ----------------------


def supervised_container() -> dict[str, Any]:
    (container,) = one("Deployment", supervised=True)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def supervised_settings() -> Settings:
    text = one("ConfigMap", supervised=True)["data"]["healthd.yaml"]
    return parse_settings(text, "supervised.yaml").supervised()


def test_supervised_runs_the_app_under_healthd_in_one_container_without_prestop() -> None:
    """One container: `healthd run -c <the mounted ConfigMap> -- app…`; no preStop anywhere."""
    container = supervised_container()
    command = container["command"]
    assert command[:3] == ["healthd", "run", "-c"]
    assert command[4] == "--"
    assert len(command) > 5  # the app
    (mount,) = container["volumeMounts"]
    assert Path(command[3]).parent == Path(mount["mountPath"])
    volumes = one("Deployment", supervised=True)["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == one("ConfigMap", supervised=True)["metadata"]["name"]
    assert "lifecycle" not in container  # healthd owns the order: no preStop to keep in step


def test_supervised_termination_grace_covers_drain_stop_timeout_and_grace() -> None:
    """terminationGracePeriodSeconds ≥ drain_delay + stop_timeout + grace + a margin."""
    shutdown = supervised_settings().shutdown
    pod = one("Deployment", supervised=True)["spec"]["template"]["spec"]
    needed = shutdown.drain_delay + shutdown.stop_timeout + shutdown.grace
    assert pod["terminationGracePeriodSeconds"] >= needed + 5


def test_supervised_probes_point_at_healthd_and_startup_holds_the_apps_own_checks() -> None:
    """The three probes hit healthd's paths on its port in budget; the startup group holds
    the app check and `startup: true` checks, so a dependency never restarts the pod."""
    settings = supervised_settings()
    listen_port = int(settings.server.listen.rpartition(":")[2])
    container = supervised_container()
    for probe, path in PROBES.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert port_number(container, get["port"]) == listen_port
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
        assert int(headers["X-Request-Timeout-Ms"]) < container[probe]["timeoutSeconds"] * 1000
    startup = settings.members("startup")
    assert "app" in startup
    assert all(
        spec_named(settings, n).kind == "process" or spec_named(settings, n).startup
        for n in startup
    )
    assert "app" in settings.members("liveness")


def test_the_k8s_readme_presents_the_supervised_example_first() -> None:
    """config/k8s/README.md shows supervised.yaml before the sidecar Deployment."""
    text = (K8S / "README.md").read_text()
    assert text.index("supervised.yaml") < text.index("deployment.yaml")
