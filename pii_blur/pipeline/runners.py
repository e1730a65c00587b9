"""Choosing and preparing the Beam runner from the command line's arguments.

- No --runner (or DirectRunner, or FnApiRunner): Beam's FnApiRunner, which
  never contacts the network (the DirectRunner first tries to download
  Prism), with --workers threads of one process, or processes for more than
  THREADS_UP_TO workers. It runs as local_runner.LocalRunner, whose thread
  workers hand on whole elements (Beam's own can cut them in two).
- --runner dask: Beam's DaskRunner on a dask.distributed cluster, either the
  one at --dask-address or a LocalCluster of --workers processes on
  127.0.0.1 that lives for the run.
- Anything else (DataflowRunner, FlinkRunner, SparkRunner...) passes through.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from typing import Iterator, Optional

LOCAL_RUNNER = "pii_blur.pipeline.local_runner.LocalRunner"
LOCAL_RUNNER_ALIASES = {"directrunner", "fnapirunner", "direct", "fnapi", LOCAL_RUNNER.lower()}
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
DASK_RUNNER_ALIASES = {"dask", "daskrunner", DASK_RUNNER.lower()}
# Local workers are threads of one process up to this many, processes beyond.
# Threads share one copy of the models and skip each process's start-up
# (importing Beam, loading the models), and ONNX Runtime, OpenCV and jpeglib
# run without Python's lock; a worker holds that lock about 9 % of its time,
# so a few threads barely wait for it. Measured on 2 cores (README, "Local"):
# two threads scale better than two processes; beyond 4 threads the lock
# would be wanted over a third of the time, so more workers get processes.
THREADS_UP_TO = 4
# Dask partitions per worker: several, so a slow partition does not leave
# the other workers idle at the end of the run.
DASK_PARTITIONS_PER_WORKER = 4


@dataclasses.dataclass(frozen=True)
class RunnerPlan:
    """Beam arguments, and for Dask the cluster to use (None: start a local one)."""

    beam_args: list[str]
    is_dask: bool = False
    dask_address: Optional[str] = None

    @property
    def is_fnapi(self) -> bool:
        """Beam's local FnApiRunner (the default)."""
        return f"--runner={LOCAL_RUNNER}" in self.beam_args

    @property
    def is_in_process(self) -> bool:
        """The FnApiRunner with its workers in this process (one, or threads)."""
        return self.is_fnapi and any(arg in self.beam_args for arg in (
            "--direct_running_mode=in_memory", "--direct_running_mode=multi_threading"))

    @property
    def is_local(self) -> bool:
        """Workers run on this machine: the FnApiRunner, or Dask on a LocalCluster started for the run."""
        return (self.is_dask and not self.dask_address) or self.is_fnapi


def plan(pipeline_args: list[str], workers: int, dask_address: Optional[str] = None) -> RunnerPlan:
    runner_parser = argparse.ArgumentParser(add_help=False)
    runner_parser.add_argument("--runner")
    runner_parser.add_argument("--direct_running_mode")
    runner_parser.add_argument("--dask_client_address")
    chosen, rest = runner_parser.parse_known_args(pipeline_args)
    runner = (chosen.runner or "").lower()
    if runner in DASK_RUNNER_ALIASES:
        return RunnerPlan([f"--runner={DASK_RUNNER}"] + rest, is_dask=True,
                          dask_address=dask_address or chosen.dask_client_address)
    if runner and runner not in LOCAL_RUNNER_ALIASES:
        return RunnerPlan(pipeline_args)
    mode = chosen.direct_running_mode or local_running_mode(workers)
    if not any(a.startswith("--direct_num_workers") for a in rest):
        rest.append(f"--direct_num_workers={workers}")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in rest):
        rest.append("--default_sdk_harness_log_level=WARNING")
    return RunnerPlan([f"--runner={LOCAL_RUNNER}", f"--direct_running_mode={mode}"] + rest)


def local_running_mode(workers: int) -> str:
    """The FnApiRunner's --direct_running_mode for `workers` local workers (see THREADS_UP_TO)."""
    if workers == 1:
        return "in_memory"
    return "multi_threading" if workers <= THREADS_UP_TO else "multi_processing"


@contextlib.contextmanager
def dask_cluster(address: Optional[str], workers: int) -> Iterator[str]:
    """The scheduler address to use: `address`, or a LocalCluster started for the run."""
    if address:
        yield address
        return
    import logging

    from distributed import LocalCluster

    # distributed logs every connection at INFO; keep warnings and errors.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def dask_args(beam_args: list[str], address: str, workers: int, inputs: int) -> list[str]:
    """DaskRunner arguments: the cluster and the number of partitions for `inputs` files.

    The DaskRunner turns Reshuffle into a no-op and splits only a Create into
    partitions, so the inputs are listed at launch and spread over
    DASK_PARTITIONS_PER_WORKER partitions per worker.
    """
    partitions = max(1, min(inputs, workers * DASK_PARTITIONS_PER_WORKER))
    return beam_args + [f"--dask_client_address={address}", f"--dask_npartitions={partitions}"]
