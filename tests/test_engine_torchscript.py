"""The TorchScript + model.json route gives the same answer as the nnU-Net folder it came from."""
import json

import pytest
import torch

from engine_helpers import WEIGHTS, labels_of, run_engine

from amosseg.model import load_model
from amoskit.data.samples import make_samples

pytestmark = [pytest.mark.engine, pytest.mark.inference]


def export_torchscript(dst):
    """Trace the demo network and describe it in model.json, as a non-nnU-Net team would."""
    model = load_model(WEIGHTS).first
    net = model.networks[0]
    scripted = torch.jit.trace(net, torch.zeros(1, 1, *model.patch_size))
    dst.mkdir()
    scripted.save(str(dst / "model.pt"))
    norm = {"scheme": "ct", **{k: model.intensity[k] for k in ("percentile_00_5", "percentile_99_5", "mean", "std")}}
    manifest = {"file": "model.pt", "patch_size": list(model.patch_size), "spacing": list(model.spacing),
                "normalization": norm, "labels": model.labels, "mirror_axes": list(model.mirror_axes)}
    (dst / "model.json").write_text(json.dumps(manifest, indent=2))


def test_torchscript_matches_nnunet_folder(tmp_path):
    export_torchscript(tmp_path / "ts")
    cases = make_samples(tmp_path / "samples", 1)
    a = run_engine(cases[0].parent, tmp_path / "a", TTA=0)
    b = run_engine(cases[0].parent, tmp_path / "b", TTA=0, MODEL_DIR=tmp_path / "ts")
    assert a.returncode == 0 and b.returncode == 0, a.stdout[-2000:] + b.stdout[-2000:]
    assert "TorchScript model" in b.stdout
    x, y = labels_of(tmp_path / "a" / cases[0].name), labels_of(tmp_path / "b" / cases[0].name)
    assert (x == y).mean() > 0.9999


def test_manifest_missing_key_is_refused(tmp_path):
    export_torchscript(tmp_path / "ts")
    man = json.loads((tmp_path / "ts" / "model.json").read_text())
    del man["spacing"]
    (tmp_path / "ts" / "model.json").write_text(json.dumps(man))
    from amosseg.network import UnsupportedModel
    with pytest.raises(UnsupportedModel, match="lacks 'spacing'"):
        load_model(tmp_path / "ts")
