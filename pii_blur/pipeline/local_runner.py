"""LocalRunner: Beam's FnApiRunner, with its thread workers' outputs flushed between elements only.

In multi_threading mode the FnApiRunner runs its SDK workers in this
process, and Beam 2.77 gives each of them a data channel that a timer
thread flushes every second (fn_api_runner.worker_handlers'
DATA_BUFFER_TIME_LIMIT_MS), whatever the worker is writing at that moment.
A flush in the middle of an element cuts it in two messages. When the next
stage's input is shared among the workers, message by message, the halves
reach different workers, which decode garbage: a None, an error, or
elements in no window, which every later step skips without a word. A
local pii-blur run lost 57 of its 10,000 report lines this way, and others
crashed on a None report. tests/test_local_runner.py makes a stage that
writes for seconds; plain FnApiRunner corrupted it in 10 runs of 10.

multi_processing mode and distributed runners flush by size only, between
elements. LocalRunner asks the same of the thread workers: their
environment's data_buffer_time_limit_ms is set below zero, which Beam reads
as "no timer" (a zero would be replaced by the 1 s default).
"""

from __future__ import annotations

import json

from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

# Beam's embedded gRPC environment flushes on a timer only for a positive limit.
NO_TIMED_FLUSH_MS = -1


class LocalRunner(FnApiRunner):
    """FnApiRunner whose in-process (multi_threading) workers flush their outputs between elements only."""

    def run_via_runner_api(self, pipeline_proto, options):
        for environment in pipeline_proto.components.environments.values():
            if environment.urn == python_urns.EMBEDDED_PYTHON_GRPC:
                config = json.loads(environment.payload or b"{}")
                config["data_buffer_time_limit_ms"] = NO_TIMED_FLUSH_MS
                environment.payload = json.dumps(config).encode("utf-8")
        return super().run_via_runner_api(pipeline_proto, options)
