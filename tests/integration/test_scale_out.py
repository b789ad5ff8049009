"""Scale-out, end to end: two real ``ratebot serve`` processes on one PostgreSQL database and one
Redis take alternate turns of the same conversation, one of them restarts mid-conversation, and
both run the timer worker — and the citizen notices none of it.

Done when (the issue): the same conversation works with ``RATEBOT_DATABASE_URL`` on PostgreSQL
and ``RATEBOT_REDIS_URL`` set, across two ``serve`` processes taking alternate turns, and across a
restart mid-conversation.

The processes are started once for the module (each takes a few seconds to import and boot);
each test uses its own phone number and record, so the tests don't depend on each other.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from storage.db import normalize_url
from tests.conftest import redact_url, truncate_all
from tests.samples import service_record

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RATEBOT = shutil.which("ratebot", path=str(Path(sys.executable).parent)) or "ratebot"
REDIS_DB = 12  # this module's own Redis database, flushed before and after
PUBLIC_URL = "https://ratebot.example"  # what Twilio calls; both processes sit behind it
AUTH_TOKEN = "scale-out-auth-token"
SECRET_KEY = "scale-out-secret-key-0123456789abcdef-shared"  # the same for every process
BOOT_TIMEOUT = 30.0  # seconds for a process to answer /healthz
STOP_TIMEOUT = 15.0  # seconds for a graceful shutdown after SIGTERM
WORKER_INTERVAL = 0.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """One ``ratebot serve`` process; its stdout and stderr go to a log file."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name, self.env, self.workdir = name, env, workdir
        self.log_path = workdir / f"{name}.log"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [RATEBOT, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, cluster: Cluster) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                status = self.proc.returncode
                pytest.fail(f"{self.name} exited with {status} while starting\n{cluster.logs()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.name} did not answer /healthz within {BOOT_TIMEOUT}s\n{cluster.logs()}"
                )
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM, wait for the graceful shutdown (SIGKILL if it hangs); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                with self.log_path.open("a") as log:
                    log.write(f"\n[test] {self.name} ignored SIGTERM for {STOP_TIMEOUT}s: killed\n")
        return self.proc.returncode


class Cluster:
    """The processes of one deployment, sharing one environment (database, Redis, secret)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.servers: dict[str, Server] = {}  # current process under each name
        self.retired: list[Server] = []  # stopped ones, kept for their logs
        self.platform_key = ""

    def spawn(self, name: str) -> Server:
        if name in self.servers:
            self.retired.append(self.servers[name])
        server = self.servers[name] = Server(
            f"{name}{len(self.retired) + 1}", self.env, self.workdir
        )
        return server

    def start(self, *names: str) -> None:
        started = [self.spawn(name) for name in names]  # boot in parallel...
        for server in started:  # ...then wait for each
            server.wait_ready(self)

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    def all_servers(self) -> list[Server]:
        return [*self.retired, *self.servers.values()]

    def logs(self) -> str:
        return "\n".join(
            f"----- {s.name} (port {s.port}, exit {s.proc.poll()}) -----\n{s.output()[-6000:]}"
            for s in self.all_servers()
        )

    def stop_all(self) -> None:
        for server in self.all_servers():
            server.stop()

    # -- as the platform and Twilio call it ------------------------------------------------

    def api(self, server: str) -> httpx.Client:
        return httpx.Client(
            base_url=self[server].base_url,
            headers={"Authorization": f"Bearer {self.platform_key}"},
            timeout=10,
        )

    def report(self, server: str, record_no: str, phone: str) -> httpx.Response:
        with self.api(server) as client:
            return client.post("/api/v1/service-records", json=service_record(record_no, phone))

    def record(self, server: str, record_no: str) -> dict[str, Any]:
        with self.api(server) as client:
            response = client.get(f"/api/v1/service-records/{record_no}")
        assert response.status_code == 200, f"{response.text}\n{self.logs()}"
        result: dict[str, Any] = response.json()
        return result

    def sms(self, server: str, body: str, *, phone: str, sid: str) -> str:
        """Deliver one inbound SMS to ``server`` exactly as Twilio would; the reply's text."""
        form = {"From": phone, "To": "+8610690000", "Body": body, "MessageSid": sid}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            f"{PUBLIC_URL}/channels/sms", form
        )
        response = httpx.post(
            f"{self[server].base_url}/channels/sms",
            data=form,
            headers={"X-Twilio-Signature": signature},
            timeout=10,
        )
        assert response.status_code == 200, (
            f"{server}: {response.status_code} {response.text}\n{self.logs()}"
        )
        root = ET.fromstring(response.text)
        assert root.tag == "Response", response.text
        return "\n".join(m.text or "" for m in root.iter("Message"))

    def metric(self, server: str, name: str, **labels: str) -> float:
        text = httpx.get(f"{self[server].base_url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return 0.0


@pytest.fixture(scope="module")
def cluster(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    truncate_all(postgres_url)
    own_redis = re.sub(r"/\d*$", f"/{REDIS_DB}", redis_url)
    client = redis.Redis.from_url(own_redis)
    client.flushdb()

    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEBOT_")}
    env.update(
        PYTHONUNBUFFERED="1",
        RATEBOT_DATABASE_URL=postgres_url,
        RATEBOT_REDIS_URL=own_redis,
        RATEBOT_PUBLIC_URL=PUBLIC_URL,
        RATEBOT_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        RATEBOT_SECRET_KEY=SECRET_KEY,
        RATEBOT_QUIET_HOURS="",
        RATEBOT_RUN_WORKER="true",
        RATEBOT_WORKER_INTERVAL_SECONDS=str(WORKER_INTERVAL),
    )
    workdir = tmp_path_factory.mktemp("scale_out")  # no .env here
    cluster = Cluster(env, workdir)
    try:
        for name in ("A", "B"):
            cluster.spawn(name)
        created = subprocess.run(
            [RATEBOT, "apikey", "create", "--role", "platform", "--name", "scale-out test"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        cluster.platform_key = created.stdout.strip().splitlines()[-1]
        for name in ("A", "B"):
            cluster[name].wait_ready(cluster)
        yield cluster
    finally:
        cluster.stop_all()
        print(f"database {redact_url(postgres_url)}, redis {own_redis}\n{cluster.logs()}")
        client.flushdb()
        client.close()


@pytest.fixture(autouse=True)
def server_output_on_failure(cluster: Cluster) -> Iterator[None]:
    """Print what the processes wrote during the test; pytest shows it when the test fails."""
    sizes = {s.name: len(s.output()) for s in cluster.all_servers()}
    yield
    for s in cluster.all_servers():
        print(f"----- {s.name} (port {s.port}, exit {s.proc.poll()}) -----")
        print(s.output()[sizes.get(s.name, 0) :])


def seed_due_invitations(database_url: str, phones: list[str]) -> list[int]:
    """Cases whose invitations are already due but unsent (as after quiet hours): the workers'
    job. Written the way the app writes them, with the deployment's secret key."""
    from datetime import timedelta

    from sqlmodel import Session as DbSession

    from storage.db import create_db_engine
    from storage.models import Invitation, ServiceRecord, utcnow
    from storage.privacy import Privacy, mask

    privacy, now = Privacy(SECRET_KEY), utcnow()
    engine = create_db_engine(database_url)
    ids = []
    try:
        with DbSession(engine) as db:
            invitations = []
            for n, phone in enumerate(phones):
                record = ServiceRecord(
                    record_no=f"370200-2026-DUE-{n}",
                    item_code="11370200MB1234567X",
                    item_name="不动产登记",
                    department="市自然资源局",
                    district="370202",
                    hall="烟台市政务服务中心",
                    window="A12",
                    locale="zh_Hans_CN",
                    phone_hash=privacy.contact_hash(phone),
                    phone_enc=privacy.encrypt(phone),
                    phone_mask=mask(phone),
                    created_at=now,
                )
                db.add(record)
                db.flush()
                assert record.id is not None
                invitation = Invitation(
                    record_id=record.id,
                    channel="sms",
                    contact_hash=record.phone_hash,
                    status="scheduled",
                    scheduled_at=now - timedelta(seconds=1),
                    created_at=now,
                )
                db.add(invitation)
                invitations.append(invitation)
            db.commit()
            ids = [i.id for i in invitations if i.id is not None]
    finally:
        engine.dispose()
    return ids


def wait_until_sent(
    cluster: Cluster, server: str, record_no: str, timeout: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        invitation: dict[str, Any] = cluster.record(server, record_no)["invitations"][0]
        if invitation["status"] != "sending" or time.monotonic() > deadline:
            return invitation
        time.sleep(0.05)


def no_errors_logged(cluster: Cluster) -> None:
    for server in cluster.all_servers():
        out = server.output()
        assert (
            "Traceback" not in out and "worker tick failed" not in out and " ERROR " not in out
        ), cluster.logs()


def test_one_conversation_across_two_processes_and_a_restart(cluster: Cluster) -> None:
    phone, record_no = "+8613812341234", "370200-2026-SCALE-1"
    sids = iter(f"SMscaleout1{n:022d}" for n in range(100))

    response = cluster.report("A", record_no, phone)
    assert response.status_code == 201, f"{response.text}\n{cluster.logs()}"
    invitation = response.json()["invitations"][0]
    if invitation["status"] == "sending":
        # A worker's tick claimed the due invitation between the request's commit and the
        # request's own claim; that worker sends it. Only the status the API shows differs.
        invitation = wait_until_sent(cluster, "A", record_no)
    assert invitation["status"] == "sent", invitation
    assert [m["status"] for m in invitation["messages"]] == ["sent (console)"]

    # Both processes run the timer worker: a few ticks later it is still one message, sent once.
    time.sleep(6 * WORKER_INTERVAL)
    invitations = cluster.record("B", record_no)["invitations"]
    assert len(invitations) == 1 and invitations[0]["status"] == "sent"
    assert len(invitations[0]["messages"]) == 1, invitations
    assert sum(s.output().count("[outbox sms]") for s in cluster.all_servers()) == 1, cluster.logs()

    # Alternate turns: A, B, (B restarts), A, new B, A.
    assert "服务态度" in cluster.sms("A", "5", phone=phone, sid=next(sids))  # overall → attitude
    assert "工作效率" in cluster.sms("B", "4", phone=phone, sid=next(sids))  # attitude → efficiency

    old_b = cluster["B"]
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: the exit status is -SIGTERM
    assert old_b.stop() in (0, -signal.SIGTERM), f"B did not shut down cleanly\n{cluster.logs()}"
    assert "Application shutdown complete" in old_b.output(), cluster.logs()
    cluster.start("B")
    assert cluster["B"].proc.pid != old_b.proc.pid

    assert "便民" in cluster.sms("A", "5", phone=phone, sid=next(sids))  # efficiency → convenience
    assert "0" in cluster.sms("B", "5", phone=phone, sid=next(sids))  # → the optional comment
    assert cluster.sms("A", "great service", phone=phone, sid=next(sids))  # thanks

    for server in ("A", "B"):  # both processes see the same finished rating
        rating = cluster.record(server, record_no)["rating"]
        assert rating["status"] == "complete", rating
        assert rating["level"] == 5 and rating["bad_review"] is False
        assert rating["dimensions"] == {"attitude": 4, "efficiency": 5, "convenience": 5}
        assert rating["comment"] == "great service"
        assert rating["channel"] == "sms" and rating["unsolicited"] is False

    # Still only the one invitation message after all those worker ticks on three processes.
    assert len(cluster.record("A", record_no)["invitations"][0]["messages"]) == 1
    outputs = "".join(s.output() for s in cluster.all_servers())
    assert outputs.count("[outbox sms]") == 1
    assert "13812341234" not in outputs  # the number only ever appears masked
    no_errors_logged(cluster)


def test_same_delivery_to_both_processes_gets_one_answer_and_the_same_reply(
    cluster: Cluster,
) -> None:
    phone, record_no = "+8613912345678", "370200-2026-SCALE-2"
    response = cluster.report("B", record_no, phone)
    assert response.status_code == 201, f"{response.text}\n{cluster.logs()}"
    assert wait_until_sent(cluster, "B", record_no)["status"] == "sent"  # see the first test
    duplicates_before = cluster.metric("B", "ratebot_duplicate_deliveries_total", channel="sms")

    first = cluster.sms("A", "4", phone=phone, sid="SMscaleoutdup0000000000000000001")
    again = cluster.sms(
        "B", "4", phone=phone, sid="SMscaleoutdup0000000000000000001"
    )  # Twilio retried
    assert first == again and "服务态度" in first

    rating = cluster.record("A", record_no)["rating"]
    assert rating["status"] == "in_progress" and rating["level"] == 4

    # the next answer is the attitude dimension, not a second overall level
    assert "工作效率" in cluster.sms("A", "3", phone=phone, sid="SMscaleoutdup0000000000000000002")
    assert "便民" in cluster.sms("B", "5", phone=phone, sid="SMscaleoutdup0000000000000000003")
    assert "0" in cluster.sms("A", "2", phone=phone, sid="SMscaleoutdup0000000000000000004")
    assert cluster.sms("B", "0", phone=phone, sid="SMscaleoutdup0000000000000000005")  # no comment
    rating = cluster.record("B", record_no)["rating"]
    assert rating["status"] == "complete" and rating["level"] == 4 and rating["comment"] is None
    assert rating["dimensions"] == {"attitude": 3, "efficiency": 5, "convenience": 2}
    assert (
        cluster.metric("B", "ratebot_duplicate_deliveries_total", channel="sms")
        == duplicates_before + 1
    )
    no_errors_logged(cluster)


def test_two_workers_send_each_due_invitation_exactly_once(
    cluster: Cluster, postgres_url: str
) -> None:
    import sqlalchemy as sa

    outbox_before = sum(s.output().count("[outbox sms]") for s in cluster.all_servers())
    phones = [f"+86137000{n:05d}" for n in range(20)]
    ids = seed_due_invitations(postgres_url, phones)  # both workers find all twenty on a tick
    engine = sa.create_engine(normalize_url(postgres_url))
    statuses = sa.text(
        "SELECT status, count(*) FROM invitations WHERE id = ANY(:ids) GROUP BY status"
    )
    messages = sa.text(
        "SELECT invitation_id, count(*) FROM outbound_messages WHERE invitation_id = ANY(:ids) "
        "GROUP BY invitation_id"
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with engine.connect() as connection:
                counts = dict(connection.execute(statuses, {"ids": ids}).all())
            if counts == {"sent": len(ids)}:
                break
            assert time.monotonic() < deadline, f"not all sent: {counts}\n{cluster.logs()}"
            time.sleep(WORKER_INTERVAL / 2)
        time.sleep(3 * WORKER_INTERVAL)  # a few more ticks on both workers
        with engine.connect() as connection:
            sent = dict(connection.execute(messages, {"ids": ids}).all())
    finally:
        engine.dispose()

    assert sent == {i: 1 for i in ids}
    outbox_after = sum(s.output().count("[outbox sms]") for s in cluster.all_servers())
    assert outbox_after - outbox_before == len(phones), cluster.logs()
    # the API agrees, and each citizen's conversation was opened: a reply is the overall level
    assert [
        m["purpose"] for m in cluster.record("B", "370200-2026-DUE-0")["invitations"][0]["messages"]
    ] == ["invitation"]
    assert "服务态度" in cluster.sms(
        "B", "5", phone=phones[0], sid="SMscaleoutdue0000000000000000001"
    )
    no_errors_logged(cluster)
