"""A model folder of OLD nnU-Net v2 (2.2.1, plans.json without `architecture`) through our engine.

nnU-Net before 2.3.1 wrote the network as separate plans keys (`UNet_class_name`,
`UNet_base_num_features`, `n_conv_per_stage_encoder`, ...); our engine maps them as nnU-Net's
ConfigurationManager does. The folder and the reference come from nnunetv2 2.2.1 itself, in its own
virtualenv (`amoskit.devtools.nnunet_old_zoo`: plan, train 6 iterations, `nnUNetv2_predict`), built
once into .cache/nnunet-old-zoo (about 6 minutes on 2 cores; cached, rebuilt when the builder changes).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from amoskit.bench import nnunet_kinds

pytestmark = [pytest.mark.engine, pytest.mark.agreement, pytest.mark.slow]

KIND = "3d_fullres_old"


@pytest.fixture(scope="session")
def old_zoo() -> dict:
    """old_zoo.json, the folder built first when missing or stale (cached: under a second)."""
    try:
        return nnunet_kinds.load_old_zoo()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def ours(old_zoo, tmp_path_factory) -> nnunet_kinds.Result:
    """Our engine (ENGINE=fast, CPU, TTA off) on the old folder through nnunet_kinds.compare itself:
    INPUT_DIR, OUTPUT_DIR, MODEL_DIR, FOLDS as for every zoo kind, and the same comparison."""
    as_zoo = {"inputs": old_zoo["inputs"],
              "kinds": {KIND: {"model_folder": old_zoo["model_folder"], "folds": old_zoo["folds"],
                               "reference": old_zoo["reference"], "seconds": old_zoo["predict_seconds"]}}}
    return nnunet_kinds.compare(as_zoo, KIND, tmp_path_factory.mktemp("ours-old-plans"))


def test_the_folder_has_old_plans(old_zoo):
    """The premise: nnU-Net 2.2.1 wrote plans.json with the old keys and no `architecture`."""
    assert old_zoo["nnunetv2"] == "2.2.1"
    plans = json.loads((Path(old_zoo["model_folder"]) / "plans.json").read_text())
    conf = plans["configurations"][old_zoo["configuration"]]
    assert not any("architecture" in c for c in plans["configurations"].values())
    assert conf["UNet_class_name"] == old_zoo["unet_class_name"]
    assert {"UNet_base_num_features", "n_conv_per_stage_encoder", "n_conv_per_stage_decoder"} <= set(conf)


def test_engine_gives_old_nnunets_answer(old_zoo, ours):
    assert ours.rc == 0, ours.log[-3000:]
    names = sorted(p.name for p in Path(old_zoo["reference"]).glob("*.nii.gz"))  # compare()'s order
    agreement = {name: round(100 * a, 4) for name, a in zip(names, ours.agreement)}
    print(f"agreement with nnunetv2 {old_zoo['nnunetv2']} (%):", agreement)
    assert ours.cases == len(old_zoo["cases"]), (ours.cases, old_zoo["cases"])
    assert ours.same_geometry
    assert min(ours.agreement) >= 0.995, agreement
    reference = Path(old_zoo["reference"])
    assert all(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(reference / name)))).size > 1
               for name in names), "a reference is all background: agreement would prove little"


def test_model_line_names_the_network_class(old_zoo, ours):
    """The engine says which network it built from the old keys (UNet_class_name)."""
    model_lines = [line for line in ours.log.splitlines() if line.startswith("model: ")]
    assert model_lines, ours.log[-2000:]
    assert any(f"({old_zoo['unet_class_name']})" in line for line in model_lines), model_lines
