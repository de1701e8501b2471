"""make build's engine choice (amoskit.image.engine_choice): fast where it gives nnU-Net's answer,
nnU-Net's own predictor where that cannot be known, each with its one-line reason; torch-free."""
import pytest

from amoskit.image import engine_choice as ec

PLAIN = ("nnUNetTrainer", "dynamic_network_architectures.architectures.unet.PlainConvUNet")


def test_plain_nnunet_folders_run_fast():
    c = ec.choose("", [PLAIN, ("nnUNetTrainer_250epochs", "dynamic_network_architectures.architectures.unet."
                                                           "ResidualEncoderUNet")])
    assert c.engine == "fast" and "nnU-Net's answer" in c.reason and c.trainer_files == []


def test_networks_the_fast_engine_cannot_promise_go_to_nnunet(tmp_path):
    c = ec.choose("auto", [PLAIN, ("nnUNetTrainer", "my_lab.nets.MedNeXt")])
    assert c.engine == "nnunet" and "my_lab.nets.MedNeXt is not a dynamic-network-architectures class" in c.reason
    bn = tmp_path / "nnUNetTrainerBN.py"
    bn.write_text("class nnUNetTrainerBN(nnUNetTrainer):\n    def build_network_architecture(*a):\n        pass\n")
    c = ec.choose("auto", [PLAIN, ("nnUNetTrainerBN", PLAIN[1])], str(bn))
    assert c.engine == "nnunet" and "nnU-Net's nnUNetTrainerBN builds its own network" in c.reason


def test_nnunets_own_network_trainers_need_no_trainer_code():
    c = ec.choose("", [PLAIN, ("nnUNetTrainerBN", PLAIN[1])])
    assert c.engine == "nnunet" and c.own_trainers == ["nnUNetTrainerBN"] and c.trainer_files == []
    assert "from nnU-Net itself" in c.reason


def test_primus_runs_on_nnunets_predictor_with_timm_and_the_torchvision_of_its_torch(tmp_path):
    c = ec.choose("", [PLAIN, ("nnUNet_Primus_M_Trainer", PLAIN[1])])
    assert c.engine == "nnunet" and c.own_trainers == []
    assert c.needs_timm == "nnU-Net's nnUNet_Primus_M_Trainer builds a Primus network"
    assert "with timm and the torchvision of the image's torch" in c.reason
    # a plan naming dynamic-network-architectures' Primus itself: never the fast engine (it lacks timm)
    c = ec.choose("", [("nnUNetTrainer", "dynamic_network_architectures.architectures.primus.Primus")])
    assert c.engine == "nnunet" and c.needs_timm.startswith("network dynamic_network_architectures")
    # a custom trainer built on nnU-Net's Primus trainers, or on timm directly
    code = tmp_path / "my_primus.py"
    code.write_text("from nnunetv2.training.nnUNetTrainer.primus.primus_trainers import nnUNet_Primus_S_Trainer\n"
                    "class MyTrainer(nnUNet_Primus_S_Trainer):\n    pass\n")
    c = ec.choose("", [("MyTrainer", PLAIN[1])], str(code))
    assert c.engine == "nnunet" and c.needs_timm == ("TRAINER_CODE imports "
                                                     "nnunetv2.training.nnUNetTrainer.primus.primus_trainers")
    code.write_text("import timm\nclass MyTrainer(nnUNetTrainer):\n    pass\n")
    assert ec.choose("nnunet", [("MyTrainer", PLAIN[1])], str(code)).needs_timm == "TRAINER_CODE imports timm"
    # what needs no timm says so; ENGINE=fast never adds it
    assert ec.choose("", [PLAIN, ("nnUNetTrainerBN", PLAIN[1])]).needs_timm == ""
    assert ec.choose("fast", [("nnUNet_Primus_M_Trainer", PLAIN[1])]).needs_timm == ""


def test_torchvision_pairs_with_the_images_torch():
    from amoskit.image.torchvision_pair import NoTorchvisionPair, main, torchvision_for
    # the pairs PyTorch published: 2.1.2/0.16.2, 2.7.1/0.22.1 (cu118 index), 2.13.0/0.28.0, 2.14.1/0.29.1
    assert torchvision_for("2.1.2") == "0.16.2"
    assert torchvision_for("2.7.1+cu118") == "0.22.1+cu118"
    assert torchvision_for("2.13.0") == "0.28.0" and torchvision_for("2.14.1") == "0.29.1"
    assert torchvision_for("2.8") == "0.23.0"
    for bad in ("2.0.1", "1.13.1", "latest", ""):
        with pytest.raises(NoTorchvisionPair, match="use torch >= 2.1"):
            torchvision_for(bad)
    assert main(["2.7.1+cu118"]) == 0 and main(["2.0.1"]) == 1 and main([]) == 2


def test_preprocessing_the_fast_engine_does_not_reproduce_goes_to_nnunet():
    from amosseg.model_choice import fast_engine_problem
    conf = {"normalization_schemes": ["RescaleTo01Normalization"], "use_mask_for_norm": [False]}
    problem = fast_engine_problem(conf)
    assert problem and "RescaleTo01Normalization" in problem
    assert fast_engine_problem({"normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False]}) is None
    c = ec.choose("", [PLAIN, (*PLAIN, problem)])
    assert c.engine == "nnunet" and "RescaleTo01Normalization is not supported" in c.reason


def test_trainer_code_is_read_not_run(tmp_path):
    code = tmp_path / "trainers"
    code.mkdir()
    (code / "base.py").write_text(
        "import sys; sys.exit('never imported')\n"
        "class MyBase(nnUNetTrainer):\n"
        "    @staticmethod\n"
        "    def build_network_architecture(*a, **k):\n"
        "        return None\n")
    (code / "mine.py").write_text("class MyTrainer(MyBase):\n    def __init__(self, *a):\n        pass\n"
                                  "class Epochs(nnUNetTrainer):\n    num_epochs = 5\n")
    c = ec.choose("", [("MyTrainer", PLAIN[1])], str(code))
    assert c.engine == "nnunet" and "overrides build_network_architecture" in c.reason
    assert [p.name for p in c.trainer_files] == ["base.py", "mine.py"]
    c = ec.choose("", [("Epochs", PLAIN[1])], str(code / "mine.py"))
    assert c.engine == "fast" and "TRAINER_CODE's trainer builds the plans' network" in c.reason
    with pytest.raises(ec.EngineChoiceError, match=r"defines none of the trainers that run \(Elsewhere\)"):
        ec.choose("", [("Elsewhere", PLAIN[1])], str(code / "mine.py"))


def test_by_hand_wins_and_bad_values_are_one_line(tmp_path):
    assert ec.choose("NNUNET", [PLAIN]).engine == "nnunet"
    assert ec.choose("fast", [("nnUNetTrainerBN", None)]).reason.startswith("ENGINE=fast set by hand")
    for engine, code, words in (("gpu", "", "ENGINE='gpu' is not an engine; set ENGINE=auto"),
                                ("", str(tmp_path / "none.py"), "is not a .py file or a folder"),
                                ("", str(tmp_path), "is not a .py file or a folder")):
        with pytest.raises(ec.EngineChoiceError) as err:
            ec.choose(engine, [PLAIN], code)
        assert words in str(err.value) and "\n" not in str(err.value)
    bad = tmp_path / "bad.py"
    bad.write_text("class X(:\n")
    with pytest.raises(ec.EngineChoiceError, match="not valid Python"):
        ec.choose("", [PLAIN], str(bad))


def test_timm_pin_satisfies_what_dynamic_network_architectures_asks():
    """The image installs requirements-timm.txt beside DNA: its timm must be one DNA accepts (pip only warns)."""
    from importlib import metadata
    from packaging.requirements import Requirement
    from amoskit import REPO
    pins = {Requirement(ln).name: Requirement(ln) for ln in (REPO / "inference" / "requirements-timm.txt")
            .read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    timm_version = next(iter(pins["timm"].specifier)).version
    dna = [Requirement(r) for r in metadata.requires("dynamic_network_architectures") or []]
    asked = [r for r in dna if r.name == "timm"]
    assert asked, "dynamic-network-architectures no longer asks for timm: check requirements-timm.txt"
    assert all(r.specifier.contains(timm_version) for r in asked), (timm_version, [str(r) for r in asked])


def test_build_refuses_a_primus_folder_whose_torch_has_no_torchvision_before_docker(tmp_path, monkeypatch, capsys):
    """make build on a Primus folder: engine nnunet + timm is said, and a TORCH_VERSION without a known
    torchvision ends in one line naming the fix, before any Docker call (none is reachable here)."""
    from amoskit.verbs import build
    m = tmp_path / "nnUNet_Primus_S_Trainer__nnUNetPlans__3d_fullres"
    for name in ("dataset.json", "plans.json", "fold_0/checkpoint_final.pth"):
        (m / name).parent.mkdir(parents=True, exist_ok=True)
        (m / name).write_text("{}")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    rc = build.main(["--weights", str(m), "--torch-version", "2.0.1", "--teamname", "primusteam"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "engine: nnunet (nnU-Net's nnUNet_Primus_S_Trainer builds a Primus network" in " ".join(out.split())
    assert err.strip() == ("error: TORCH_VERSION=2.0.1: no torchvision pairs with it by the rule of torch 2.1 and "
                           "newer (2.N.P -> 0.(N+15).P); Primus networks need torchvision: use torch >= 2.1")
