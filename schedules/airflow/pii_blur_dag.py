"""Airflow DAG: pii-blur every night, through BeamRunPythonPipelineOperator.

Needs apache-airflow-providers-apache-beam on the Airflow side, and on the
worker a checkout of pii-blur at PII_BLUR_HOME (default /opt/pii-blur) with
pii-blur installed in its .venv (README, "Scheduling"). The operator passes
options as --name=value; schedules/launch.py turns them into pii-blur's
arguments. The task fails when any input failed (pii-blur's exit status 1),
so Airflow's own alerting sees it; the summary JSON holds the counts.

For Dataflow, set runner="DataflowRunner", add dataflow_config (project,
location, job name) and the options temp_location, setup_file (the checkout's
setup.py) and sdk_container_image (the worker image, README "Worker image").
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

try:
    from airflow.sdk import DAG   # Airflow 3
except ImportError:               # Airflow 2
    from airflow import DAG

PII_BLUR_HOME = os.environ.get("PII_BLUR_HOME", "/opt/pii-blur")

with DAG(
    dag_id="pii_blur_nightly",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,   # two runs must not share OUTPUT
    params={"input": "/srv/photos", "output": "/srv/blurred", "min_probability": 40},
    tags=["pii-blur"],
    doc_md=__doc__,
) as dag:
    BeamRunPythonPipelineOperator(
        task_id="blur_new_photos",
        py_file=f"{PII_BLUR_HOME}/schedules/launch.py",
        py_interpreter=f"{PII_BLUR_HOME}/.venv/bin/python",
        runner="DirectRunner",   # Beam's local runner: pii-blur's default (README, "Local")
        pipeline_options={
            "input": "{{ params.input }}",
            "output": "{{ params.output }}",
            "min_probability": "{{ params.min_probability }}",
            "summary_json": "{{ params.output }}/pii-blur-summary.json",
            "workers": 2,
        },
    )
