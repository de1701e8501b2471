"""Every folder kind nnU-Net v2 trains, through our engine, against nnU-Net's own answer.

The folders come from nnU-Net's tools (`amoskit.devtools.nnunet_zoo`: plan, train a few
iterations, find_best_configuration, export the zip, predict), built once into .cache/nnunet-zoo
(about 20 minutes on 2 cores; cached across runs, rebuilt when the builder or nnU-Net changes).
"""
import pytest

from amoskit.bench import nnunet_kinds

pytestmark = [pytest.mark.engine, pytest.mark.agreement, pytest.mark.slow]


@pytest.mark.parametrize("kind", nnunet_kinds.KINDS)
def test_kind_gives_nnunets_answer(zoo, kind, tmp_path):
    r = nnunet_kinds.compare(zoo, kind, tmp_path)
    assert r.rc == 0, r.log[-3000:]
    assert r.cases == len(zoo["cases"]) and r.same_geometry
    assert min(r.agreement) >= 0.995, (kind, r.agreement)


def test_what_runs_is_said_in_the_log(zoo, tmp_path):
    """The Dataset folder runs what find_best_configuration chose, with its postprocessing, and says so."""
    r = nnunet_kinds.compare(zoo, "best", tmp_path)
    chosen = [m["configuration"] for m in zoo["find_best"]["selected"]]
    assert all(c in r.log for c in chosen), r.log[-2000:]
    pp = zoo["kinds"]["best"].get("postprocessing") or {}
    if pp.get("postprocessing_fns"):
        assert f"postprocessing: {len(pp['postprocessing_fns'])} step(s)" in r.log
