"""The operator's kit in deploy/: the Prometheus alert rules are valid (promtool), and every
metric the rules and the Grafana dashboard query is one a running handoffd exports."""

import json
import re
import subprocess
import urllib.request
from pathlib import Path

from harness import Daemon, Redis, free_port, make_temp_dir, send_record, tcp_pair

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy/prometheus/handoffd.rules.yml"
DASHBOARD = REPO / "deploy/grafana/handoffd.json"


def exported_metric_names():
    """Starts a daemon with its metrics endpoint and every optional part (Redis, completion
    callbacks), streams once (so histograms have samples), and returns the names of every
    sample /metrics shows."""
    port = free_port()
    root = make_temp_dir()
    secret = root / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef")
    optional = ["--redis-url", None, "--completion-url", f"http://127.0.0.1:{free_port()}/callback",
                "--completion-secret-file", secret, "--completion-timeout-ms", "200"]
    with Redis(root / "redis") as redis, \
            Daemon(root / "d.sock", "--metrics-address", f"127.0.0.1:{port}",
                   *[redis.url if a is None else a for a in optional], mock_messages=2, mock_interval_ms=1) as d:
        client, server = tcp_pair()
        with client, server:
            send_record(d.socket_path, b'{"prompt":"metrics","stream_id":"m","resumable":true}', [server.fileno()])
            server.close()
            client.settimeout(5)
            assert b"data: [DONE]" in b"".join(iter(lambda: client.recv(65536), b""))
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def queried_metric_names(text):
    return set(re.findall(r"\bhandoffd_[a-z_]+", text))


def dashboard_queries():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [variable["query"]["query"] for variable in dashboard["templating"]["list"] if isinstance(variable.get("query"), dict)]
    return dashboard, queries


def test_alert_rules_pass_promtool():
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_rules_and_dashboard_query_only_exported_metrics():
    exported = exported_metric_names()
    assert "handoffd_handoffs_total" in exported and "handoffd_ttfb_seconds_bucket" in exported, exported
    assert "handoffd_redis_up" in exported and "handoffd_callbacks_total" in exported, exported
    from_rules = queried_metric_names(RULES.read_text())
    _, queries = dashboard_queries()
    from_dashboard = queried_metric_names("\n".join(queries))
    assert len(from_rules) >= 6 and len(from_dashboard) >= 10
    assert from_rules <= exported, f"the rules query metrics the daemon does not export: {sorted(from_rules - exported)}"
    assert from_dashboard <= exported, f"the dashboard queries metrics the daemon does not export: {sorted(from_dashboard - exported)}"


def test_dashboard_is_well_formed():
    dashboard, queries = dashboard_queries()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert all(query.strip() for query in queries)
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
