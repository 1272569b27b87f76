"""The band world (band backdrop, edge-to-edge translations, cue3 labels): its settings and the motion proxy's
prompts. Its checkpoints (`harivo-band-*`, docs/results.md "The verb phase") were superseded by the plain world's and
are in git history (commit 7623376). The world is chosen by environment variables when `harivo.data.shapes` is
imported, so world checks run in a fresh interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import in_world


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"  # motion_proxy.along_track: how far a track went
WORLD = {"HARIVO_CUE_STYLE": "cue3", "HARIVO_BACKDROP": "band", "HARIVO_TRACKS": "crossing"}

def in_band_world(code: str) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter of the band world, one thread."""
    return in_world(WORLD, "import torch; torch.set_num_threads(1)\n" + code)


def test_world_env_names_the_settings_that_select_the_band_world():
    """`shapes.world_env()` (what `harivo.evaluate` writes in front of its command): the band world's three HARIVO_*
    settings there, none in the default world this suite runs in."""
    from harivo.data import shapes

    code = "import json\nfrom harivo.data.shapes import world_env\nprint(json.dumps(world_env()))"
    assert in_band_world(code) == WORLD
    assert shapes.world_env() == {}


def test_motion_proxy_picks_the_motions_asked_for():
    """`motion_proxy --motions`: the seed-fixed prompts are drawn from that motion kind's combinations only; a pool
    smaller than asked gives all of it."""
    sys.path.insert(0, str(SCRIPTS))
    from motion_proxy import proxy_specs

    from harivo.data.shapes import SIZE_CHANGES, TRANSLATIONS, all_specs

    sizes = proxy_specs(40, split="train", motions="sizes")
    assert len(sizes) == 40 and {s.motion for s in sizes} == set(SIZE_CHANGES)
    assert {s.motion for s in proxy_specs(40, motions="translations")} == set(TRANSLATIONS)
    held = [s for s in all_specs("held_out") if s.motion in SIZE_CHANGES]
    assert sorted(proxy_specs(100, split="held_out", motions="sizes"), key=str) == sorted(held, key=str)
    assert {s.motion for s in proxy_specs(60)} == {*TRANSLATIONS, *SIZE_CHANGES}
