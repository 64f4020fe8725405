"""Detached campaigns: ``nflab submit`` returns at once and the campaign runs elsewhere.

With a Ray cluster (``--address http://head:8265`` or an http ``RAY_ADDRESS``) the campaign's driver is a Ray
*job* submitted through the Jobs API (not Ray Client); the pipeline file travels in the job's working_dir and
the cluster's own environment supplies the store URLs and credentials. Without one, the driver is a local
background process. Ray never retries a job: re-submitting resumes the campaign from its checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from nflab.settings import Settings

LOCAL_PREFIX = "local:"


def _jobs_address(address: str | None, settings: Settings) -> str | None:
    candidate = address or settings.ray_address
    if candidate and candidate.startswith(("http://", "https://")):
        return candidate
    return None


def run_command(pipeline_arg: str, overrides: Sequence[str], campaign_id: str) -> list[str]:
    cmd = ["nflab", "run", pipeline_arg, "--campaign", campaign_id]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def submit_campaign(
    pipeline: Path, overrides: Sequence[str], campaign_id: str, settings: Settings, *, address: str | None = None
) -> str:
    """Start the campaign's driver and return its submission id."""
    jobs = _jobs_address(address, settings)
    if jobs is not None:
        from ray.job_submission import JobSubmissionClient

        staging = Path(tempfile.mkdtemp(prefix="nflab-submit-"))
        shutil.copy(pipeline, staging / pipeline.name)
        entrypoint = " ".join(run_command(pipeline.name, overrides, campaign_id))
        client = JobSubmissionClient(jobs)
        return client.submit_job(
            entrypoint=entrypoint,
            submission_id=f"nflab-{campaign_id}",
            runtime_env={"working_dir": str(staging)},
            metadata={"nflab.campaign": campaign_id},
        )
    log_dir = settings.home / "campaigns"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{campaign_id}.log", "ab")  # noqa: SIM115 - handed to the child process
    cmd = [sys.executable, "-m", "nflab.cli", *run_command(str(pipeline.resolve()), overrides, campaign_id)[1:]]
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    return f"{LOCAL_PREFIX}{proc.pid}"


def stop_submission(submission_id: str, settings: Settings, address: str | None = None) -> None:
    """Stop a submitted campaign's driver (its Ray tasks die with it)."""
    if submission_id.startswith(LOCAL_PREFIX):
        pid = int(submission_id[len(LOCAL_PREFIX) :])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        return
    jobs = _jobs_address(address, settings)
    if jobs is None:
        return
    from ray.job_submission import JobSubmissionClient

    JobSubmissionClient(jobs).stop_job(submission_id)
