"""Detached campaigns: ``nflab submit`` returns at once and the campaign's driver runs elsewhere.

With a Ray Jobs address (``--address http://head:8265`` or an http ``RAY_ADDRESS``) the driver is a Ray *job*
submitted through the Jobs API (not Ray Client): its entrypoint is ``python -m nflab.cli run --campaign <id>``,
which drives the campaign's resolved runs as ``submit`` stored them (no YAML travels or is resolved again), and
the cluster's own environment supplies
nflab (``python`` on the PATH of ``ray start``), the store URLs and their credentials — nothing secret goes into
the job's metadata or runtime_env. Without one, the driver is a local background process (``local:<pid>``),
logging to ``$NFLAB_HOME/campaigns/<id>.log``. Ray never retries a job: re-submitting resumes from checkpoints.

Before anything is written, :func:`plan` checks what it can: the Jobs endpoint answers, and accepts the token
when the cluster uses token authentication (the token is read by Ray's loader from ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` and only sent in the HTTP header). The campaign remembers its
Jobs address, so that :func:`refresh` (``nflab status``) and :func:`stop` (``nflab cancel``) reach the driver
whatever the environment says later. A driver that ended while runs were unfinished fails the campaign with
its reason (the job's message and last log lines, or the local log's tail).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nflab.settings import Settings
from nflab.workers.raynet import AUTH_HELP, RayAddressError, is_jobs_address, probe, token_header

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

    from nflab.store import Store

LOCAL_PREFIX = "local:"
JOB_PREFIX = "nflab-"
STOP_WAIT_S = 30.0
HTTP_TIMEOUT_S = 10.0
ACTIVE = ("pending", "running")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Plan:
    """Where a submitted campaign's driver will run: a Ray job at ``jobs_address`` or a local process."""

    jobs_address: str | None
    ray_address: str | None = None  # a GCS/ray:// address the local driver connects to (``--address``)
    client: JobSubmissionClient | None = None


def plan(address: str | None, settings: Settings) -> Plan:
    """Check the target of ``nflab submit`` before anything is written (raises :class:`RayAddressError`)."""
    candidate = address or settings.ray_address
    field = "--address" if address else "RAY_ADDRESS"
    if is_jobs_address(candidate):
        jobs = candidate.rstrip("/")
        return Plan(jobs, client=jobs_client(jobs, field))
    if candidate and candidate not in ("local", "auto"):
        probe(candidate, field)
    if not os.access(sys.executable, os.X_OK):
        raise RayAddressError(f"python: {sys.executable!r} cannot run the background driver")
    return Plan(None, ray_address=address)


def jobs_client(address: str, field: str = "jobs address") -> JobSubmissionClient:
    """A Jobs API client for ``address`` that has been answered, with the token when the cluster asks for one."""
    import requests
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    probe(address, field)
    try:
        reply = requests.get(f"{address}/api/authentication_mode", timeout=HTTP_TIMEOUT_S)
        mode = reply.json().get("authentication_mode", "disabled") if reply.ok else "disabled"
    except (requests.RequestException, ValueError, AttributeError):
        mode = "disabled"
    headers = token_header() if mode == "token" else {}
    if mode == "token" and not headers:
        raise RayAddressError(f"{field}: {address!r} uses token authentication and no token was found; {AUTH_HELP}")
    try:
        with _hidden_env("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):  # Ray would let them override ``address``
            return JobSubmissionClient(address, headers=headers)
    except AuthenticationError:
        raise RayAddressError(f"{field}: {address!r} refused the token (HTTP 403); {AUTH_HELP}") from None
    except (ConnectionError, RuntimeError, requests.RequestException) as exc:
        raise RayAddressError(f"{field}: {address!r} is not a Ray Jobs API ({_first_line(str(exc))})") from None


@contextlib.contextmanager
def _hidden_env(*names: str) -> Iterator[None]:
    """Remove environment variables for the duration of the block, then put them back."""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def run_command(campaign_id: str) -> list[str]:
    """``nflab run`` arguments (without the program) that drive the stored campaign ``campaign_id``: its resolved
    runs come from the store, so the job neither needs the YAML nor resolves it again."""
    return ["run", "--campaign", campaign_id]


def start(target: Plan, campaign_id: str, settings: Settings) -> str:
    """Start the campaign's driver and return its submission id (``nflab-<id>`` or ``local:<pid>``)."""
    if target.client is not None:
        entrypoint = shlex.join(["python", "-m", "nflab.cli", *run_command(campaign_id)])
        return target.client.submit_job(
            entrypoint=entrypoint,
            submission_id=f"{JOB_PREFIX}{campaign_id}",
            metadata={"nflab.campaign": campaign_id},
        )
    cmd = [sys.executable, "-m", "nflab.cli", *run_command(campaign_id)]
    if target.ray_address:
        cmd += ["--address", target.ray_address]
    log_path = local_log(settings, campaign_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return f"{LOCAL_PREFIX}{proc.pid}"


def local_log(settings: Settings, campaign_id: str) -> Path:
    """The log file of a campaign's local background driver."""
    return settings.home / "campaigns" / f"{campaign_id}.log"


# ------------------------------------------------------------------------------------ the driver's state


def _local_pid(camp: dict[str, Any]) -> int | None:
    sid = camp.get("submission_id") or ""
    return int(sid[len(LOCAL_PREFIX) :]) if sid.startswith(LOCAL_PREFIX) else None


def _local_alive(pid: int, campaign_id: str) -> bool:
    """True while process ``pid`` is this campaign's driver (a reused pid or a zombie does not count)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # not Linux: signal 0 only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        return campaign_id.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def _jobs_address(camp: dict[str, Any], settings: Settings) -> str | None:
    """The stored Jobs address; campaigns submitted before it was stored fall back to an http ``RAY_ADDRESS``."""
    if camp.get("jobs_address"):
        return camp["jobs_address"]
    return settings.ray_address if is_jobs_address(settings.ray_address) else None


def _tail(text: str, lines: int = 3, limit: int = 600) -> str:
    kept = [_ANSI.sub("", line).strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-limit:]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]


def driver_ended(camp: dict[str, Any], settings: Settings) -> str | None:
    """Why the campaign's driver is gone (its reason and last output), or None while it runs or is unreachable."""
    pid = _local_pid(camp)
    if pid is not None:
        if _local_alive(pid, camp["id"]):
            return None
        log_path = local_log(settings, camp["id"])
        tail = _tail(log_path.read_text(errors="replace")) if log_path.exists() else ""
        return f"driver process {pid} ended: {tail or f'no output in {log_path}'}"
    address = _jobs_address(camp, settings)
    if address is None or not camp.get("submission_id"):
        return None
    try:
        client = jobs_client(address)
        info = client.get_job_info(camp["submission_id"])
    except Exception:  # unreachable cluster, refused token, unknown job: nothing known, nothing changed
        return None
    if not info.status.is_terminal():
        return None
    try:
        tail = _tail(client.get_job_logs(camp["submission_id"]))
    except Exception:
        tail = ""
    message = _first_line(info.message or "")
    reason = f"Ray job {camp['submission_id']} {info.status.value}"
    if info.status.value == "SUCCEEDED":
        reason += " without recording the runs in this store (the cluster's NFLAB_DB_URL must be the submitter's)"
    return "; ".join(part for part in (reason, message, f"last output: {tail}" if tail else "") if part)


def refresh(store: Store, settings: Settings, camp: dict[str, Any]) -> dict[str, Any]:
    """The campaign, failed with its driver's reason if the driver ended while the campaign was unfinished."""
    if camp["status"] not in ACTIVE or not camp.get("submission_id"):
        return camp
    reason = driver_ended(camp, settings)  # first the driver, then the store: a driver that just finished has
    if reason is None:  # already written "finished" by the time we look again
        return camp
    current = store.get_campaign(camp["id"])
    if current["status"] not in ACTIVE:
        return current
    from nflab.campaign import end_campaign

    end_campaign(store, settings, camp["id"], "failed", reason)
    return store.get_campaign(camp["id"])


def stop(camp: dict[str, Any], settings: Settings, wait_s: float = STOP_WAIT_S) -> str:
    """Stop the campaign's driver (its Ray tasks die with it) and wait until it is gone; returns what was done.

    Raises :class:`RayAddressError` when the stored Jobs address cannot be reached or refuses the token: the
    campaign is then left as it is, since its job may still be running.
    """
    pid = _local_pid(camp)
    if pid is not None:
        if not _local_alive(pid, camp["id"]):
            return f"driver process {pid} had ended"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while _local_alive(pid, camp["id"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _local_alive(pid, camp["id"]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        return f"stopped driver process {pid}"
    address = _jobs_address(camp, settings)
    if address is None or not camp.get("submission_id"):
        return "no driver to stop"
    client = jobs_client(address, "jobs address")
    sid = camp["submission_id"]
    client.stop_job(sid)
    deadline = time.monotonic() + wait_s
    status = client.get_job_status(sid)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.5)
        status = client.get_job_status(sid)
    return f"Ray job {sid} at {address}: {status.value}"
