"""The embedded shapes world (generator) and its pixel checker; see docs/design.md §4."""

from .checker import (
    DEFAULT_THRESHOLDS,
    FrameReading,
    Thresholds,
    VideoReading,
    classify_motion,
    flicker_score,
    judge,
    motion_scores,
    read_frame,
    read_video,
    world_thresholds,
)
from .shapes import (
    BACKGROUNDS,
    COLOURS,
    HELD_OUT,
    MOTIONS,
    SHAPES,
    WORLD,
    ShapeSpec,
    Track,
    World,
    all_specs,
    is_held_out,
    make_dataset,
    make_track,
    rasterize,
    render_image,
    render_video,
    sample_spec,
    world_vocabulary,
)

__all__ = [
    "BACKGROUNDS", "COLOURS", "DEFAULT_THRESHOLDS", "FrameReading", "HELD_OUT", "MOTIONS", "SHAPES", "WORLD",
    "ShapeSpec", "Thresholds", "Track", "VideoReading", "World", "all_specs", "classify_motion", "flicker_score",
    "is_held_out", "judge", "make_dataset", "make_track", "motion_scores", "rasterize", "read_frame", "read_video",
    "render_image", "render_video", "sample_spec", "world_thresholds", "world_vocabulary",
]  # fmt: skip
