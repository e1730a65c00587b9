"""Beam PTransforms and DoFns: thin wiring around the pure core modules.

The graph, in order: MatchImages, ReadImages, ProjectViews, DetectPII,
MergeDetections, RouteImages, CopyUntouched | BlurImages, WriteImages,
WriteReport. AnonymizeImages composes the steps from ReadImages to the
reports.
"""

from pii_blur.transforms.anonymize import AnonymizeImages
from pii_blur.transforms.detect import DetectPII, MergeDetections, ProjectViews
from pii_blur.transforms.match import MatchImages
from pii_blur.transforms.read import ReadImages
from pii_blur.transforms.report import WriteReport
from pii_blur.transforms.write import BlurImages, CopyUntouched, RouteImages, WriteImages

__all__ = ["AnonymizeImages", "BlurImages", "CopyUntouched", "DetectPII", "MatchImages", "MergeDetections",
           "ProjectViews", "ReadImages", "RouteImages", "WriteImages", "WriteReport"]
