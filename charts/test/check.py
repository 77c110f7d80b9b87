#!/usr/bin/env python3
"""Offline checks of charts/oort, runnable in CI without a helm binary or a cluster.

For each values file in charts/test/values/: render the chart with the real Helm engine
(helm-python-sdk), validate every manifest against the Kubernetes schemas in strict mode
(kubernetes-validate), check scenario-specific expectations, and run `oort check-config` on the
rendered config.yml. Where a values file turns on the Grafana dashboard or the alert rules,
observability.py checks them (JSON schema, promtool, metric names against the Rust sources,
alert unit tests in alerts-test.yml). Each file in charts/test/bad/ must fail to render with the
message its first line names (`# expect: ...`).

  check.py [--oort PATH]                      run every check
  check.py --emit-config VALUES OUT [--set-nats URL]
                                              write the config.yml a values file renders to OUT
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import helm_python
import yaml

import observability

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "oort"
TESTS = ROOT / "charts" / "test"
KUBERNETES_VERSION = "1.33"


def render(values_file):
    values = yaml.safe_load(pathlib.Path(values_file).read_text()) or {}
    chart = helm_python.Chart.load(str(CHART))
    rendered = chart.render(values, name="oort", namespace="oort", is_install=True)
    documents = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                documents.append(document)
    return documents


def config_of(documents):
    for document in documents:
        if document["kind"] == "ConfigMap" and "config.yml" in document.get("data", {}):
            return document["data"]["config.yml"]
    raise AssertionError("no ConfigMap rendered")


def kinds(documents):
    return sorted(d["kind"] for d in documents)


def validate_manifests(name, documents):
    # ServiceMonitor and PrometheusRule are Prometheus Operator CRDs with no schema in
    # kubernetes-validate; they are checked by hand below and in observability.py.
    builtin = [d for d in documents if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump_all(builtin, handle)
        path = handle.name
    try:
        result = subprocess.run(
            ["kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, path],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(path)
    if result.returncode != 0:
        raise AssertionError(f"{name}: kubernetes-validate failed:\n{result.stdout}{result.stderr}")


def check_config(name, config, oort):
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        handle.write(config)
        path = handle.name
    try:
        result = subprocess.run([oort, "check-config", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    if result.returncode != 0:
        raise AssertionError(f"{name}: oort check-config refused the rendered config:\n{result.stderr}\n{config}")


def statefulset(documents):
    return next(d for d in documents if d["kind"] == "StatefulSet")


def client_service(documents):
    return next(d for d in documents if d["kind"] == "Service" and d["spec"]["ports"][0]["name"] == "ws"
                and d["spec"].get("clusterIP") != "None")


def expect_scenario(name, documents):
    """What each values file must produce, beyond being valid."""
    sts = statefulset(documents)
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config = yaml.safe_load(config_of(documents))
    assert sts["spec"]["podManagementPolicy"] == "Parallel", name
    assert pod["terminationGracePeriodSeconds"] > int(config["shutdown_grace_period"].rstrip("s")), name
    assert container["lifecycle"]["preStop"]["exec"]["command"][:2] == ["/oort", "drain"], name
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez", name
    assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
    assert pod["securityContext"]["runAsNonRoot"] is True, name
    env = {e["name"]: e for e in container["env"]}
    assert env["OORT_CLUSTER__NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", name
    present = set(kinds(documents))
    if name == "default":
        assert present == {"ConfigMap", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount", "StatefulSet"}, present
        # oort.v1 resume tokens: one secret for every pod, made by the chart and kept.
        ref = env["OORT_SESSION__RESUME_SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "oort-resume", "key": "secret"}, ref
        resume = [d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"] == "oort-resume"]
        assert len(resume) == 1 and resume[0]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", resume
        assert "session" not in config, "the resume secret is not in the ConfigMap"
        assert config["cluster"]["bootstrap_expect"] == 3, config
        assert "volumeClaimTemplates" not in sts["spec"], name
        assert "OORT_API_TOKEN" not in env, name
        # No proxy in front: Oort counts each connection's own address.
        assert "client_address" not in config, config
        assert "externalTrafficPolicy" not in client_service(documents)["spec"], name
    elif name == "full":
        # Behind the Ingress, the controller's X-Forwarded-For is believed from its pods only.
        assert config["client_address"] == {
            "header": "X-Forwarded-For",
            "trusted_proxies": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
        }, config
        for kind in ["HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Secret",
                     "ServiceMonitor"]:
            assert kind in present, f"full: no {kind}"
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
        assert env["OORT_API_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "api-token"
        assert env["OORT_CALLBACK__ESTABLISH"]["valueFrom"]["secretKeyRef"]["key"] == "callback-establish"
        assert config["cluster"]["bootstrap_expect"] == 5 and config["idle_timeout"] == "5m", config
        hpa = next(d for d in documents if d["kind"] == "HorizontalPodAutoscaler")
        assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"], hpa
        monitor = next(d for d in documents if d["kind"] == "ServiceMonitor")
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["port"] == "api" and endpoint["path"] == "/metrics", monitor
        assert endpoint["bearerTokenSecret"]["key"] == "api-token", monitor
        policy = next(d for d in documents if d["kind"] == "NetworkPolicy")
        assert policy["spec"]["ingress"][1]["ports"] == [{"port": "api"}], policy
    elif name == "load-balancer":
        # Clients reach the pods through a cloud load balancer that keeps their addresses,
        # and a proxy of the operator's own is named.
        assert client_service(documents)["spec"]["externalTrafficPolicy"] == "Local", name
        assert config["client_address"] == {
            "header": "X-Real-IP",
            "trusted_proxies": ["10.20.0.0/16"],
        }, config
    elif name == "observability":
        assert {"PrometheusRule", "ServiceMonitor"} <= present, present
    elif name == "external-nats":
        assert len(config["cluster"]["nats"]) == 3 and config["cluster"]["name"] == "production", config
        assert config["cluster"]["bootstrap_expect"] == 3 and config["cluster"]["voters"] == 5, config
    elif name == "bundled-nats":
        assert config["cluster"]["nats"] == ["nats://oort-nats:4222"], config
    elif name == "nats-auth-tls":
        for variable, key in [("USER", "user"), ("PASSWORD", "password")]:
            ref = env[f"OORT_CLUSTER__NATS_AUTH__{variable}"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "oort-nats", "key": key}, ref
        assert config["cluster"]["nats_tls"] == {
            "ca_file": "/etc/oort/nats-tls/ca.crt",
            "cert_file": "/etc/oort/nats-tls/tls.crt",
            "key_file": "/etc/oort/nats-tls/tls.key",
        }, config
        assert "nats_auth" not in config["cluster"], "the password is not in the ConfigMap"
        ref = env["OORT_CLUSTER__SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "oort-cluster", "key": "secret"}, ref
        assert "secret" not in config["cluster"], "the cluster secret is not in the ConfigMap"
        volume = next(v for v in pod["volumes"] if v["name"] == "nats-tls")
        assert volume["secret"]["secretName"] == "oort-nats-tls", volume
        assert [i["path"] for i in volume["secret"]["items"]] == ["ca.crt", "tls.crt", "tls.key"], volume
        mount = next(m for m in container["volumeMounts"] if m["name"] == "nats-tls")
        assert mount["mountPath"] == "/etc/oort/nats-tls" and mount["readOnly"] is True, mount
    elif name == "nats-creds":
        assert config["cluster"]["nats_auth"] == {"credentials_file": "/etc/oort/nats-auth/nats.creds"}, config
        assert config["cluster"]["nats_tls"] == {"require": True}, config
        volume = next(v for v in pod["volumes"] if v["name"] == "nats-auth")
        assert volume["secret"] == {
            "secretName": "oort-nats-creds",
            "defaultMode": 0o440,
            "items": [{"key": "oort.creds", "path": "nats.creds"}],
        }, volume
        assert not any(e.startswith("OORT_CLUSTER__NATS_AUTH__") for e in env), env
    if name != "nats-auth-tls":
        assert "OORT_CLUSTER__SECRET" not in env, env
    if name not in ("nats-auth-tls", "nats-creds"):
        assert not any(e.startswith("OORT_CLUSTER__NATS_AUTH__") for e in env), env
        assert "nats_auth" not in config["cluster"] and "nats_tls" not in config["cluster"], config


def check_bad(path):
    expected = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
    try:
        render(path)
    except helm_python.HelmError as error:
        message = str(error)
        if expected not in message:
            raise AssertionError(f"{path.name}: failed, but without {expected!r}:\n{message}")
        return message
    raise AssertionError(f"{path.name}: rendered although it should fail with {expected!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oort", default=os.environ.get("OORT_BIN", str(ROOT / "target" / "debug" / "oort")))
    parser.add_argument("--emit-config", nargs=2, metavar=("VALUES", "OUT"))
    args = parser.parse_args()
    if args.emit_config:
        values, out = args.emit_config
        pathlib.Path(out).write_text(config_of(render(values)))
        return 0
    for values in sorted((TESTS / "values").glob("*.yaml")):
        name = values.stem
        documents = render(values)
        validate_manifests(name, documents)
        expect_scenario(name, documents)
        check_config(name, config_of(documents), args.oort)
        print(f"ok   {name}: {len(documents)} manifests valid ({', '.join(kinds(documents))})")
        settings = yaml.safe_load(values.read_text()) or {}
        if settings.get("dashboards", {}).get("enabled"):
            checked = observability.check_dashboard(name, documents, settings)
            print(f"ok   {name}: dashboard valid, {checked} expressions parse and name known metrics")
        if settings.get("alerts", {}).get("enabled"):
            checked = observability.check_alerts(name, documents, settings)
            print(f"ok   {name}: {checked} alert rules valid, alerts-test.yml passes")
    for bad in sorted((TESTS / "bad").glob("*.yaml")):
        message = check_bad(bad)
        print(f"ok   bad/{bad.name}: refused ({message.splitlines()[-1].strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
