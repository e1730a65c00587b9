"""Matching input files inside the pipeline, then fanning the paths out."""

from __future__ import annotations

import heapq
from typing import Optional, Sequence

import apache_beam as beam

from pii_blur import plan
from pii_blur.storage import list_inputs
from pii_blur.types import InputFile


class MatchImages(beam.PTransform):
    """PBegin -> PCollection[InputFile]: every file under `input_spec`, reshuffled.

    Listing happens on a worker, not while building the graph (unless the
    launcher listed them already, for local runs and Dask), and only the
    small InputFile descriptors cross the shuffle, never pixels.
    """

    def __init__(self, input_spec: str, output_root: str, listed: Optional[Sequence[InputFile]] = None,
                 shares: int = 0, report_url: str = "", planning: Optional[plan.Planning] = None):
        """listed: inputs already listed at launch, used instead of listing in the pipeline.

        planning: list OUTPUT too and mark finished inputs (plan.list_planned),
        so that the pipeline does not read a record per input; None: list INPUT only.

        report_url: the run's report, which no output may land on (storage.list_inputs).

        shares: with `listed`, fan out that many groups of about equal work
        (balanced_groups) instead of single paths, each opened into its files
        after the shuffle. For Beam's local FnApiRunner, which hands each of
        its N workers a fixed 1/N of a stage's input, split by shuffle key:
        with N groups every worker gets one, so no worker is left with the
        big files while the others sit idle. 0: fan out single paths.
        """
        super().__init__()
        self.input_spec = input_spec
        self.output_root = output_root
        self.listed = listed
        self.shares = shares
        self.report_url = report_url
        self.planning = planning

    def expand(self, pbegin):
        if self.listed is not None and self.shares > 1:
            groups = [group for group in balanced_groups(self.listed, self.shares) if group]
            return (pbegin
                    | "ListedGroups" >> beam.Create(groups)
                    | "FanOutGroups" >> beam.Reshuffle()
                    | "OpenGroups" >> beam.FlatMap(lambda group: group).with_output_types(InputFile))
        if self.listed is not None:
            files = pbegin | "Listed" >> beam.Create(list(self.listed)).with_output_types(InputFile)
        else:
            files = (
                pbegin
                | "Spec" >> beam.Create([self.input_spec])
                | "List" >> beam.FlatMap(_list, output_root=self.output_root, report_url=self.report_url,
                                       planning=self.planning).with_output_types(InputFile)
            )
        return files | "FanOut" >> beam.Reshuffle()


def _list(input_spec: str, output_root: str, report_url: str, planning: Optional[plan.Planning]) -> list[InputFile]:
    if planning is None:
        return list_inputs(input_spec, output_root, report_url)
    return plan.list_planned(input_spec, output_root, report_url, planning)


def balanced_groups(files: Sequence[InputFile], count: int) -> list[list[InputFile]]:
    """`files` in `count` groups of about equal work (largest first, each to the lightest group).

    Work is plan.work_estimates: the pixels to search in local images, else
    bytes; a finished input (plan.FinishedInput) brings none. Deterministic;
    groups may be empty.
    """
    groups: list[list[InputFile]] = [[] for _ in range(count)]
    loads = [(0, index) for index in range(count)]
    for work, file in sorted(zip(plan.work_estimates(files), files), key=lambda pair: (-pair[0], pair[1].url)):
        load, index = heapq.heappop(loads)
        groups[index].append(file)
        heapq.heappush(loads, (load + work, index))
    return groups
