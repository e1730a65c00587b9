"""LocalRunner: two thread workers hand every element of a long-writing stage to the next stage whole."""

import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pii_blur.pipeline import runners

ELEMENTS = 2500


class SlowToEncode:
    """An element whose pickling takes about a millisecond, so that a timed flush of the
    data channel lands inside an element's encoding (between its window header and its value)."""

    def __init__(self, index: int):
        self.index = index

    def __getstate__(self):
        deadline = time.perf_counter() + 0.001
        while time.perf_counter() < deadline:
            pass
        return {"index": self.index}


def _elements(indices: list[int]):
    return [SlowToEncode(i) for i in indices]


def test_thread_workers_pass_every_element_of_a_long_stage_whole():
    """One thread worker encodes elements for about 2.5 s; a Flatten then makes the runner
    store them, message by message, and share the messages out to two workers for the next stage.

    With Beam's own FnApiRunner, the data channel's timer flushes cut elements
    in two, the halves went to different workers, and the next stage failed to
    decode its input or read a None: 10 of 10 runs failed. LocalRunner flushes
    between elements only. The count stands for the report's summary.
    """
    options = PipelineOptions([f"--runner={runners.LOCAL_RUNNER}", "--direct_running_mode=multi_threading",
                               "--direct_num_workers=2"])
    groups = [list(range(ELEMENTS - 1)), [ELEMENTS - 1]]   # one long writer, as 9,900 resumed inputs make
    with TestPipeline(options=options, blocking=True) as p:
        written = (p | "Groups" >> beam.Create(groups) | beam.Reshuffle()
                   | beam.FlatMap(_elements).with_output_types(SlowToEncode))
        other = p | "Other" >> beam.Create([SlowToEncode(-1)]).with_output_types(SlowToEncode)
        indices = (written, other) | beam.Flatten() | "Index" >> beam.Map(lambda element: element.index)
        assert_that(indices | beam.combiners.Count.Globally(), equal_to([ELEMENTS + 1]), label="Counted")
        assert_that(indices, equal_to(list(range(-1, ELEMENTS))), label="Whole")
