"""What runs from a folder nnU-Net wrote (amosseg.model_choice), from file names and JSON alone:
the choice the engine, make build and verify-load share."""
import json

import pytest

from amosseg import model_choice

pytestmark = [pytest.mark.engine]

PLANS = {"configurations": {"2d": {}, "3d_fullres": {}, "3d_lowres": {},
                            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}}
TR, PL = "nnUNetTrainer", "nnUNetPlans"


def config(name, folds=("0",), prefix=""):
    base = f"{prefix}{TR}__{PL}__{name}/"
    files = {base + "plans.json": PLANS, base + "dataset.json": {"labels": {"background": 0, "a": 1}}}
    for f in folds:
        files[f"{base}fold_{f}/checkpoint_final.pth"] = b"x"
    return files


def choose(files, **kw):
    def read_json(rel):
        value = files[rel]
        if isinstance(value, bytes):
            raise ValueError("not JSON")
        return json.loads(json.dumps(value))
    return model_choice.choose(list(files), read_json, **kw)


def info(*configs, pp="/home/me/nnUNet_results/Dataset901_X/ensembles/ens/postprocessing.pkl", folds=(0,)):
    return {"inference_information.json": {"folds": list(folds), "best_model_or_ensemble": {
        "postprocessing_file": pp,
        "selected_model_or_models": [{"configuration": c, "trainer": TR, "plans_identifier": PL} for c in configs]}}}


def test_inference_information_picks_the_ensemble_its_folds_and_postprocessing():
    files = {**config("2d", ("0", "1")), **config("3d_fullres", ("0", "1")), **info("2d", "3d_fullres"),
             "ensembles/ens/postprocessing.pkl": b"x", "ensembles/ens/postprocessing.json": {}}
    c = choose(files)
    assert c.ok, c.problem
    assert [m.configuration for m in c.members] == ["2d", "3d_fullres"]
    assert [m.folds for m in c.members] == [["fold_0"], ["fold_0"]]   # the folds find_best_configuration used
    assert c.postprocessing == "ensembles/ens/postprocessing.pkl"       # the training machine's path, found here
    assert c.summary().startswith("nnU-Net v2 ensemble of 2 configurations: 2d (1 fold(s): fold_0) + 3d_fullres")
    assert choose(files, folds="1").members[0].folds == ["fold_1"]     # FOLDS still wins
    del files["ensembles/ens/postprocessing.pkl"], files["ensembles/ens/postprocessing.json"]
    assert "names the postprocessing file" in choose(files).problem


def test_the_exported_zip_layout_is_one_dataset_folder_deeper():
    files = {k if k.startswith("Dataset") else f"Dataset901_X/{k}": v
             for k, v in {**config("3d_fullres"), **info("3d_fullres", pp="/x/Dataset901_X/"
                          f"{TR}__{PL}__3d_fullres/crossval_results_folds_0/postprocessing.pkl"),
                          f"{TR}__{PL}__3d_fullres/crossval_results_folds_0/postprocessing.json": {}}.items()}
    c = choose(files)
    assert c.ok, c.problem
    assert c.members[0].folder == f"Dataset901_X/{TR}__{PL}__3d_fullres"
    assert c.postprocessing == f"Dataset901_X/{TR}__{PL}__3d_fullres/crossval_results_folds_0/postprocessing.json"


def test_cascade_brings_its_previous_stage_and_several_configurations_need_a_choice():
    pair = {**config("3d_lowres", ("all",)), **config("3d_cascade_fullres", ("all",))}
    c = choose(pair)
    assert c.ok and c.kind_words == "cascade"
    assert [m.configuration for m in c.all_members()] == ["3d_lowres", "3d_cascade_fullres"]
    assert c.members[0].previous_stage.folds == ["fold_all"]
    three = {**pair, **config("2d")}
    problem = choose(three).problem
    assert problem.startswith("several configurations (") and "amosseg_choice.json" in problem
    alone = {k.split("/", 1)[1]: v for k, v in config("3d_cascade_fullres").items()}
    assert "needs its previous stage" in choose(alone, name=f"{TR}__{PL}__3d_cascade_fullres").problem


def test_choice_file_names_models_folds_per_folder_and_postprocessing():
    files = {**config("2d", ("0", "1")), **config("3d_fullres", ("0", "1")), "pp/postprocessing.json": {},
             "amosseg_choice.json": {"models": [f"{TR}__{PL}__2d", f"{TR}__{PL}__3d_fullres"],
                                     "folds": {f"{TR}__{PL}__2d": [1], f"{TR}__{PL}__3d_fullres": [0, 1]},
                                     "postprocessing": "pp/postprocessing.json"}}
    c = choose(files)
    assert c.ok, c.problem
    assert [m.folds for m in c.members] == [["fold_1"], ["fold_0", "fold_1"]]
    assert c.postprocessing == "pp/postprocessing.json" and "amosseg_choice.json" in c.source
    files["amosseg_choice.json"]["models"].append("missing_folder")
    assert choose(files).problem == "missing_folder/ is missing; copy the trained configuration folder along"


def test_nnunet_v1_folder_is_named_as_such():
    files = {"plans.pkl": b"x", "fold_0/model_final_checkpoint.model": b"x",
             "fold_0/model_final_checkpoint.model.pkl": b"x"}
    assert "nnU-Net v1 model" in choose(files).problem
