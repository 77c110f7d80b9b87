"""Offline checks of the chart's Grafana dashboard and PrometheusRule (used by check.py).

- the dashboard ConfigMap carries the sidecar's label, and its JSON passes
  dashboard.schema.json plus what a schema cannot say (unique panel ids, panels within the
  24-column grid, only defined variables used);
- every PromQL expression, the dashboard's (as recording rules, Grafana's variables replaced)
  and the alerts', parses (`promtool check rules`);
- every metric and label they name exists: metric names come from the Rust sources, so a
  renamed metric breaks this test;
- alerts-test.yml's series make the main alerts fire, and healthy series do not
  (`promtool test rules`).
"""

import json
import pathlib
import re
import shutil
import subprocess
import tempfile

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTS = ROOT / "charts" / "test"

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus adds when scraping through the ServiceMonitor, and histograms' `le`.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint", "le"}
# Panels the dashboard must have, by a metric each uses.
DASHBOARD_MUST_SHOW = {
    "oort_cluster_members", "oort_raft_is_leader", "oort_cluster_ready", "oort_raft_term",
    "oort_raft_apply_lag", "oort_raft_commit_seconds_bucket", "oort_transport_connections",
    "oort_connections", "oort_sessions", "oort_send_latency_seconds_bucket",
    "oort_deliveries_total", "oort_queue_depth_messages_bucket", "oort_queue_overflows_total",
    "oort_callback_duration_seconds_bucket", "oort_callback_errors_total",
    "oort_cluster_round_trip_seconds_bucket", "oort_nats_connects_total",
    "oort_nats_disconnects_total", "oort_cluster_rejected_messages_total", "oort_resumes_total",
    "oort_refused_total", "oort_streams", "oort_stream_bytes", "oort_errors_total",
}
ALERTS_MUST_HAVE = {"OortNoLeader", "OortNodeNotReady", "OortQueueOverflows", "OortCallbackErrors",
                    "OortNatsDisconnected", "OortRaftApplyLagHigh", "OortRefusalsSurging",
                    "OortSendLatencyHigh"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}


def known_metrics():
    """Metric name -> label names, from the Rust sources."""
    names = set()
    for source in list((ROOT / "gateway" / "src").rglob("*.rs")) + list((ROOT / "router" / "src").rglob("*.rs")):
        names.update(re.findall(r'"(oort_[a-z_]*)"', source.read_text()))
    names.update(n + s for n in list(names) for s in HISTOGRAM_SUFFIXES)
    # Label names registered with a metric, e.g. r.counter("oort_refused_total", &[("reason", ...)]).
    metrics_rs = (ROOT / "gateway" / "src" / "metrics.rs").read_text()
    labels = set(re.findall(r'\(\s*"([a-z_]+)",\s*[a-z]', metrics_rs)) | set(re.findall(r'Label::new\(\s*"([a-z_]+)"', metrics_rs))
    return names, labels | TARGET_LABELS


def names_in(expr):
    """Metric and label names a PromQL expression uses (a tokenizer, not a parser: enough for
    the expressions here, and promtool has parsed them already)."""
    text = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'', '""', expr)
    labels = set()
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=|!=|=~|!~)", matchers))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    for grouping in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels.update(n.strip() for n in grouping.split(",") if n.strip())
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(", "(", text)
    text = re.sub(r"(?<![a-zA-Z_])[0-9.]+(?:e[+-]?[0-9]+)?[a-z]*", " ", text)
    metrics = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text) if w.lower() not in PROMQL_WORDS}
    return metrics, labels


def check_names(where, expr, known):
    names, labels = known
    metrics, used_labels = names_in(expr)
    assert metrics, f"{where}: no metric found in {expr!r}"
    unknown = metrics - names
    assert not unknown, f"{where}: unknown metric(s) {sorted(unknown)} in {expr!r} (renamed in the sources?)"
    unknown = used_labels - labels
    assert not unknown, f"{where}: unknown label(s) {sorted(unknown)} in {expr!r}"
    return metrics


def promtool(*args):
    if not shutil.which("promtool"):
        raise AssertionError("promtool not found: install Debian's prometheus package (scripts/test-prerequisites)")
    result = subprocess.run(["promtool", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def grafana_to_promql(expr):
    """What Grafana sends Prometheus, near enough to parse: intervals become 5m, other
    variables (multi-value ones become regexes) `.*`."""
    for builtin in GRAFANA_BUILTINS:
        expr = expr.replace("${" + builtin + "}", "5m").replace("$" + builtin, "5m")
    return re.sub(r"\$\{[a-zA-Z0-9_]+(:[a-z]+)?\}|\$[a-zA-Z_][a-zA-Z0-9_]*", ".*", expr)


def variables_used(text):
    return set(re.findall(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)", text))


def chart_defaults(section):
    return yaml.safe_load((ROOT / "charts" / "oort" / "values.yaml").read_text())[section]


def check_dashboard(name, documents, values):
    """Checks the dashboard ConfigMap; returns the number of expressions checked."""
    settings = chart_defaults("dashboards") | values["dashboards"]
    label, value = settings["label"], settings["labelValue"]
    maps = [d for d in documents if d["kind"] == "ConfigMap" and "oort.json" in d.get("data", {})]
    assert len(maps) == 1, f"{name}: {len(maps)} dashboard ConfigMaps"
    config_map = maps[0]
    assert config_map["metadata"]["labels"].get(label) == value, f"{name}: no sidecar label {label}={value!r}"
    if settings.get("namespace"):
        assert config_map["metadata"]["namespace"] == settings["namespace"], config_map["metadata"]
    for key, annotation in settings.get("annotations", {}).items():
        assert config_map["metadata"]["annotations"][key] == annotation, config_map["metadata"]
    dashboard = json.loads(config_map["data"]["oort.json"])
    schema = json.loads((TESTS / "dashboard.schema.json").read_text())
    jsonschema.validate(dashboard, schema)

    panels = list(dashboard["panels"])
    panels += [p for row in dashboard["panels"] for p in row.get("panels", [])]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids {sorted(i for i in ids if ids.count(i) > 1)}"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{name}: panel {panel['title']!r} leaves the grid"
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    known = known_metrics()
    rules, shown = [], set()
    for variable in dashboard["templating"]["list"]:
        query = variable.get("definition", "")
        inner = re.fullmatch(r"label_values\((.*),\s*([a-z_]+)\)", query)
        if variable["type"] == "query":
            assert inner, f"{name}: variable {variable['name']} is not label_values(...)"
            check_names(f"{name}: variable {variable['name']}", grafana_to_promql(inner.group(1)), known)
    for panel in panels:
        for target in panel.get("targets", []):
            where = f"{name}: panel {panel['id']} {panel['title']!r} target {target['refId']}"
            undefined = variables_used(target["expr"]) - defined
            assert not undefined, f"{where}: undefined variables {sorted(undefined)}"
            expr = grafana_to_promql(target["expr"])
            shown |= check_names(where, expr, known)
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    missing = DASHBOARD_MUST_SHOW - shown
    assert not missing, f"{name}: the dashboard shows nothing of {sorted(missing)}"
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "dashboard-rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        promtool("check", "rules", str(path))
    return len(rules)


def check_alerts(name, documents, values):
    """Checks the PrometheusRule and runs alerts-test.yml on it; returns the alert count."""
    rules = [d for d in documents if d["kind"] == "PrometheusRule"]
    assert len(rules) == 1, f"{name}: {len(rules)} PrometheusRules"
    rule = rules[0]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1", rule["apiVersion"]
    for key, value in values["alerts"].get("labels", {}).items():
        assert rule["metadata"]["labels"][key] == value, f"{name}: PrometheusRule lacks label {key}"
    known = known_metrics()
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    names = {a["alert"] for a in alerts}
    assert ALERTS_MUST_HAVE <= names, f"{name}: missing alerts {sorted(ALERTS_MUST_HAVE - names)}"
    runbook = values["alerts"].get("runbookUrl", chart_defaults("alerts")["runbookUrl"])
    operations = (ROOT / "docs" / "operations.md").read_text()
    for alert in alerts:
        where = f"{name}: alert {alert['alert']}"
        assert alert.get("for"), f"{where}: no `for`"
        assert alert["labels"].get("severity") in ("critical", "warning", "info"), f"{where}: severity"
        for key, value in values["alerts"].get("ruleLabels", {}).items():
            assert alert["labels"].get(key) == value, f"{where}: no rule label {key}"
        assert alert["annotations"].get("summary") and alert["annotations"].get("description"), where
        anchor = alert["alert"].lower()
        assert alert["annotations"]["runbook_url"] == f"{runbook}#{anchor}", f"{where}: runbook_url"
        # The runbook's section: a heading `### OortNoLeader` has the anchor #oortnoleader.
        assert f"\n### {alert['alert']}\n" in operations, f"{where}: no section in docs/operations.md"
        check_names(where, alert["expr"], known)
    for key, value in values["alerts"].get("thresholds", {}).items():
        assert any(f"> {value}" in a["expr"] for a in alerts), f"{name}: threshold {key}={value} unused"
    with tempfile.TemporaryDirectory() as directory:
        rules_file = pathlib.Path(directory) / "oort-rules.yml"
        rules_file.write_text(yaml.safe_dump(rule["spec"]))
        promtool("check", "rules", str(rules_file))
        # The unit tests hold the expressions and the annotations' templates, whatever labels
        # and runbook base a values file sets.
        for alert in alerts:
            alert["labels"] = {"severity": alert["labels"]["severity"]}
            alert["annotations"] = {k: alert["annotations"][k] for k in ("summary", "description")}
        rules_file.write_text(yaml.safe_dump(rule["spec"]))
        test = yaml.safe_load((TESTS / "alerts-test.yml").read_text())
        test["rule_files"] = [str(rules_file)]
        test_file = pathlib.Path(directory) / "alerts-test.yml"
        test_file.write_text(yaml.safe_dump(test))
        promtool("test", "rules", str(test_file))
    return len(alerts)
