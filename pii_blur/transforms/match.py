"""Matching input files inside the pipeline, then fanning the paths out."""

from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam

from pii_blur.storage import list_inputs
from pii_blur.types import InputFile


class MatchImages(beam.PTransform):
    """PBegin -> PCollection[InputFile]: every file under `input_spec`, reshuffled.

    Listing happens on a worker, not while building the graph, and only the
    small InputFile descriptors cross the shuffle, never pixels.
    """

    def __init__(self, input_spec: str, output_root: str, listed: Optional[Sequence[InputFile]] = None):
        """listed: inputs already listed at launch, used instead of listing in the pipeline."""
        super().__init__()
        self.input_spec = input_spec
        self.output_root = output_root
        self.listed = listed

    def expand(self, pbegin):
        if self.listed is not None:
            files = pbegin | "Listed" >> beam.Create(list(self.listed)).with_output_types(InputFile)
        else:
            files = (
                pbegin
                | "Spec" >> beam.Create([self.input_spec])
                | "List" >> beam.FlatMap(list_inputs, output_root=self.output_root).with_output_types(InputFile)
            )
        return files | "FanOut" >> beam.Reshuffle()
