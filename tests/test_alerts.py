"""Operators told: a failing layer, a held layer, a layer past its freshness window and a new conflict reach a
local SMTP sink and a local HTTP sink on loopback, with the layer, the reason and the run's link."""

from __future__ import annotations

import csv
import io
import json
import shutil
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from layers.catalog import load_catalog
from layers.settings import REPO_ROOT
from pipelines.alerts import conflict_alerts_sensor, freshness_alerts_sensor, publication_failure_alerts
from pipelines.conflicts import rules_definitions
from pipelines.factory import layer_asset
from tests.conftest import city_paths, resource_for
from tests.server_fixtures import free_port

SAMPLE = REPO_ROOT / "data/sample/irkutsk"
LONG_CLOSURE = "ПД-2026-950"


class Sinks:
    """What the SMTP relay and the webhook received, polled with a deadline."""

    def __init__(self):
        self.mails: list = []
        self.posts: list[dict] = []

    def wait(self, mails: int, posts: int, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while (len(self.mails) < mails or len(self.posts) < posts) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval while waiting for the sinks, not a synchronisation
        assert len(self.mails) >= mails and len(self.posts) >= posts, (self.mails, self.posts)


@pytest.fixture
def sinks(monkeypatch) -> Sinks:
    received = Sinks()

    class Relay:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
            received.mails.append(message_from_bytes(envelope.content, policy=default_policy))
            return "250 OK"

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            received.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    relay = Controller(Relay(), hostname="127.0.0.1", port=free_port())
    relay.start()
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    for name, value in {
        "WEBHOOK_URL": f"http://127.0.0.1:{webhook.server_address[1]}/hook",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(relay.port),
        "SMTP_FROM": "geoportal@city.example",
        "SMTP_TO": "duty@city.example, gis@city.example",
        "UI_URL": "http://dagster.city.example:3000",
    }.items():
        monkeypatch.setenv(f"GEOPORTAL_ALERTS_{name}", value)
    yield received
    relay.stop()
    webhook.shutdown()


@pytest.fixture
def city(published_city, tmp_path):
    """A copy of the published sample to publish into (the zones the events are tagged with are there)."""
    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    return paths


def deliver(paths, relative: str, content: bytes) -> None:
    target = paths.live_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def failed_run_alerts(paths, layer_id: str, sinks: Sinks):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [layer_asset(load_catalog()[layer_id], set())],
            resources={"geoportal": resource_for(paths)},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].dagster_event
        context = dg.build_run_status_sensor_context(
            sensor_name="publication_failure_alerts", dagster_event=failure, dagster_instance=instance, dagster_run=run
        ).for_run_failure()
        publication_failure_alerts(context)
    sinks.wait(mails=1, posts=1)
    return result.run_id


def test_failing_layer_reaches_mail_and_webhook(city, sinks):
    deliver(city, "closures/municipal_closures.csv", "Номер;Улица\r\nПД-1;ул. Ленина\r\n".encode("cp1251"))
    run_id = failed_run_alerts(city, "road_closures", sinks)
    post, mail = sinks.posts[0], sinks.mails[0]
    assert post["layer"] == "road_closures" and post["kind"] == "failed"
    assert "municipal_closures.csv" in post["reason"] and post["run_url"].endswith(f"/runs/{run_id}")
    assert post["run_url"].startswith("http://dagster.city.example:3000/")
    assert mail["Subject"] == "[geoportal] road_closures: publication failed"
    assert mail["To"] == "duty@city.example, gis@city.example"
    body = mail.get_content()
    assert "municipal_closures.csv" in body and f"/runs/{run_id}" in body


def test_held_layer_is_told_as_held(city, sinks):
    header = (SAMPLE / "repairs/permits.csv").read_bytes().split(b"\r\n")[0].split(b"\n")[0]
    deliver(city, "repairs/permits.csv", header + b"\r\n")
    failed_run_alerts(city, "repairs", sinks)
    post = sinks.posts[0]
    assert post["layer"] == "repairs" and post["kind"] == "held"
    assert "repairs/permits.csv contributed" in post["reason"] and "none now" in post["reason"]
    assert sinks.mails[0]["Subject"] == "[geoportal] repairs: publication held"


def test_layer_past_its_freshness_window_is_told_once(city, sinks):
    catalog = load_catalog()
    sensor = freshness_alerts_sensor(catalog)
    with dg.instance_for_test() as instance:
        dg.materialize(
            [layer_asset(catalog["detours"], set())], resources={"geoportal": resource_for(city)}, instance=instance
        )
        context = dg.build_sensor_context(instance=instance)
        sensor(context)
        stale = {post["layer"] for post in sinks.posts}
        windows = {spec.id for spec in catalog.values() if spec.freshness_minutes}
        sinks.wait(mails=len(windows - {"detours"}), posts=len(windows - {"detours"}))
        assert stale == windows - {"detours"}, "detours was just published; the others never were here"
        assert all(post["kind"] == "stale" and "freshness window" in post["reason"] for post in sinks.posts)
        sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
    assert len(sinks.posts) == len(windows - {"detours"}), "told once, not on every tick"


def long_closure_file() -> bytes:
    text = (SAMPLE / "closures/municipal_closures.csv").read_text(encoding="cp1251")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    added = list(rows[1])
    added[0], added[5], added[6] = LONG_CLOSURE, "01.12.2026 09:00", "20.06.2027 18:00"  # 200 days: long_closure
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows([*rows, added])
    return out.getvalue().encode("cp1251")


def test_new_conflict_reaches_mail_and_webhook(city, sinks):
    catalog = load_catalog()
    sensor = conflict_alerts_sensor(catalog)
    resources = {"geoportal": resource_for(city)}
    with dg.instance_for_test() as instance:
        first = dg.build_sensor_context(instance=instance, resources=resources)
        sensor(first)  # the sample's conflicts at their first computation, told once as one alert
        sinks.wait(mails=1, posts=1)
        assert sinks.posts[0]["layer"] == "conflicts" and sinks.posts[0]["reason"].startswith(
            "54 conflicts at the first computation"
        )
        deliver(city, "closures/municipal_closures.csv", long_closure_file())
        result = dg.materialize(
            [layer_asset(catalog["road_closures"], set()), *rules_definitions(catalog).assets],
            resources=resources,
            instance=instance,
        )
        sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
        sinks.wait(mails=2, posts=2)
    post, mail = sinks.posts[1], sinks.mails[1]
    assert post["kind"] == "conflict" and post["reason"].startswith(
        "1 new: long_closure: road_closures " + LONG_CLOSURE
    )
    assert post["run_url"].endswith(f"/runs/{result.run_id}")
    assert mail["Subject"] == "[geoportal] conflicts: new conflicts" and LONG_CLOSURE in mail.get_content()
