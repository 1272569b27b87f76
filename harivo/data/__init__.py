"""The embedded shapes world (generator) and its pixel checker; see docs/design.md §4."""

from .checker import (
    DEFAULT_THRESHOLDS,
    FrameReading,
    Thresholds,
    VideoReading,
    classify_motion,
    cue_agrees,
    cue_motion,
    flicker_score,
    judge,
    motion_scores,
    read_frame,
    read_video,
)
from .shapes import (
    BACKGROUNDS,
    COLOURS,
    HELD_OUT,
    MOTIONS,
    SHAPES,
    ShapeSpec,
    Track,
    all_specs,
    is_held_out,
    make_dataset,
    make_track,
    mark_colour,
    rasterize,
    render_image,
    render_video,
    sample_spec,
    world_vocabulary,
)

__all__ = [
    "BACKGROUNDS", "COLOURS", "DEFAULT_THRESHOLDS", "FrameReading", "HELD_OUT", "MOTIONS", "SHAPES",
    "ShapeSpec", "Thresholds", "Track", "VideoReading", "all_specs", "classify_motion", "cue_agrees", "cue_motion",
    "flicker_score",
    "is_held_out", "judge", "make_dataset", "make_track", "mark_colour", "motion_scores", "rasterize", "read_frame",
    "read_video", "render_image", "render_video", "sample_spec", "world_vocabulary",
]  # fmt: skip
