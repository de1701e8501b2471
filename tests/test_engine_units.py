"""Engine building blocks against nnU-Net's own functions (nnunetv2 is a test-only dependency)."""
import json

import numpy as np
import pytest
import torch

from engine_helpers import REPO

from amosseg import folders, resources, run_metrics
from amosseg.model import load_model
from amosseg.network import UnsupportedModel
from amosseg.resample import new_shape, resample, separate_z
from amosseg.sliding_window import gaussian_map, tile_starts

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("shape,old,new,order", [
    ((20, 64, 70), (5.0, 0.8, 0.8), (2.0, 1.5, 1.5), 3),   # separate z (anisotropic input), upsample z
    ((30, 40, 50), (1.0, 1.2, 1.2), (2.0, 2.0, 2.0), 3),   # plain 3D cubic, downsample
    ((12, 33, 47), (6.0, 2.5, 2.5), (4.0, 1.1, 1.3), 1),   # logits back: separate z from the new spacing
    ((25, 31, 29), (1.0, 1.0, 1.0), (0.7, 1.3, 0.9), 1),   # plain trilinear
])
def test_resample_equals_nnunet(shape, old, new, order):
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, *shape)).astype(np.float32) * 100
    target = new_shape(shape, old, new)
    ref = resample_data_or_seg_to_shape(data, target, old, new, is_seg=False, order=order, order_z=0,
                                        force_separate_z=None)
    ours = resample(torch.from_numpy(data), target, old, new, order, 0, None).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3 * 100, rtol=0)
    assert np.abs(ours - ref).mean() < 1e-4 * 100


def test_separate_z_rule():
    assert separate_z((5.0, 0.8, 0.8), (2.0, 0.8, 0.8)) == (True, 0)
    assert separate_z((1.0, 1.0, 1.0), (1.0, 1.0, 3.5)) == (True, 2)
    assert separate_z((2.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == (False, None)


def test_gaussian_and_steps_equal_nnunet():
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
    for patch in ((24, 96, 96), (64, 160, 192), (17, 33, 40)):
        ref = compute_gaussian(patch, 1 / 8, 10, dtype=torch.float32, device=torch.device("cpu"))
        ours = gaussian_map(patch)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    for size, patch in (((52, 124, 154), (24, 96, 96)), ((200, 448, 448), (64, 160, 192)), ((24, 96, 96), (24, 96, 96))):
        assert tile_starts(size, patch, 0.5) == compute_steps_for_sliding_window(size, patch, 0.5)


def test_folder_choice(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    got = folders.resolve(inp, out)
    assert (got.input, got.output) == (inp, out)
    folders.prepare_output(got)
    assert out.is_dir()
    (out / ".partial-1-x.nii.gz").write_bytes(b"junk")
    assert [p.name for p in folders.prepare_output(got)] == [".partial-1-x.nii.gz"]
    (inp / "B.NII.GZ").write_bytes(b"")
    (inp / "a.nii.gz").write_bytes(b"")
    (inp / "notes.txt").write_bytes(b"")
    (inp / "sub.nii.gz").mkdir()
    cases, skipped = folders.list_entries(inp)
    assert [p.name for p in cases] == ["B.NII.GZ", "a.nii.gz"]
    assert sorted(p.name for p in skipped) == ["notes.txt", "sub.nii.gz"]


def test_missing_input_folder_is_refused(tmp_path):
    with pytest.raises(folders.FolderError, match="does not exist"):
        folders.prepare_output(folders.resolve(tmp_path / "nope"))


def test_cgroup_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("400000 100000\n")
    (v2 / "memory.max").write_text(str(30 * 1024**3))
    (v2 / "memory.current").write_text(str(1024**3))
    assert resources.cpu_quota(v2) == 4.0
    assert resources.memory_limit_bytes(v2) == 30 * 1024**3
    (v2 / "cpu.max").write_text("50000 100000\n")
    assert resources.usable_cpus(v2) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "memory").mkdir()
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))
    assert resources.cpu_quota(v1) is None and resources.memory_limit_bytes(v1) is None
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(8 * 1024**3))
    assert resources.memory_limit_bytes(v1) == 8 * 1024**3


def test_memory_headroom_counts_page_cache_as_free(tmp_path, monkeypatch):
    """A case is admitted against memory really available: usage less the inactive file cache."""
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text(str(30 * 1024**3))
    (v2 / "memory.current").write_text(str(20 * 1024**3))
    (v2 / "memory.stat").write_text(f"anon {4 * 1024**3}\nfile {16 * 1024**3}\n"
                                    f"active_file {1024**3}\ninactive_file {15 * 1024**3}\n")
    assert resources.cgroup_headroom_bytes(v2) == 25 * 1024**3       # not 10: cache is reclaimable
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(8 * 1024**3))
    (v1 / "memory" / "memory.usage_in_bytes").write_text(str(6 * 1024**3))
    (v1 / "memory" / "memory.stat").write_text(f"cache 1\ntotal_inactive_file {2 * 1024**3}\n")
    assert resources.cgroup_headroom_bytes(v1) == 4 * 1024**3
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))
    assert resources.cgroup_headroom_bytes(v1) is None
    # MemAvailable moves between two reads of /proc/meminfo: pin it to compare exactly
    monkeypatch.setattr(resources, "host_available_bytes", lambda: 7 * 1024**3)
    assert resources.available_memory_bytes(v1) == 7 * 1024**3          # unlimited cgroup: the host's
    assert resources.available_memory_bytes(v2) == 7 * 1024**3          # the tighter of the two
    monkeypatch.setattr(resources, "host_available_bytes", lambda: 40 * 1024**3)
    assert resources.available_memory_bytes(v2) == 25 * 1024**3


def _model_folder(tmp_path, plans_edit=None, dataset_edit=None, with_fold=True):
    from engine_helpers import WEIGHTS
    dst = tmp_path / "model"
    dst.mkdir(parents=True)
    plans = json.loads((WEIGHTS / "plans.json").read_text())
    dataset = json.loads((WEIGHTS / "dataset.json").read_text())
    if plans_edit:
        plans_edit(plans)
    if dataset_edit:
        dataset_edit(dataset)
    (dst / "plans.json").write_text(json.dumps(plans))
    (dst / "dataset.json").write_text(json.dumps(dataset))
    if with_fold:
        (dst / "fold_0").mkdir()
        (dst / "fold_0" / "checkpoint_final.pth").symlink_to(WEIGHTS / "fold_0" / "checkpoint_final.pth")
    return dst


def test_model_refusals(tmp_path):
    with pytest.raises(UnsupportedModel, match=r"missing fold_\*/checkpoint_final.pth"):
        load_model(_model_folder(tmp_path / "a", with_fold=False))
    def cascade(p):
        p["configurations"]["3d_fullres"]["previous_stage"] = "3d_lowres"
    folder = _model_folder(tmp_path / "b", cascade)
    named = folder.rename(folder.parent / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    with pytest.raises(UnsupportedModel, match="needs its previous stage nnUNetTrainer__nnUNetPlans__3d_lowres/ beside"):
        load_model(named)
    def regions(d):
        d["labels"]["liver"] = [6, 7]
        d["regions_class_order"] = [1, 2]
    with pytest.raises(UnsupportedModel, match="regions_class_order does not name one label per region"):
        load_model(_model_folder(tmp_path / "c", None, regions))
    def foreign(p):
        p["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"
    with pytest.raises(UnsupportedModel, match="outside"):
        load_model(_model_folder(tmp_path / "d", foreign))
    with pytest.raises(UnsupportedModel, match="FOLDS asks for fold_3"):
        load_model(_model_folder(tmp_path / "e"), ("0", "3"))
    with pytest.raises(UnsupportedModel, match="FOLDS asks for fold_3"):
        load_model(tmp_path / "e" / "model", "3")  # a FOLDS string as given
    nested = tmp_path / "g"
    _model_folder(nested)
    (nested / "model" / "fold_1").mkdir()
    (nested / "model" / "fold_1" / "checkpoint_final.pth").write_bytes(b"")
    with pytest.raises(UnsupportedModel, match="empty fold_1/checkpoint_final.pth"):
        load_model(nested)  # the one subfolder holding plans.json; every fold found is used
    assert len(load_model(nested, ["0"]).networks) == 1  # FOLDS leaves the empty fold out
    (tmp_path / "h").mkdir()
    for name in ("one", "two"):
        _model_folder(tmp_path / name).rename(tmp_path / "h" / name)
    with pytest.raises(UnsupportedModel, match=r"several configurations \(one, two\)"):
        load_model(tmp_path / "h")
    empty = tmp_path / "f"
    empty.mkdir()
    with pytest.raises(UnsupportedModel, match="missing dataset.json, plans.json"):
        load_model(empty)


def test_demo_model_loads_with_checkpoint_mirroring():
    from engine_helpers import WEIGHTS
    model = load_model(WEIGHTS)
    assert model.num_classes == 16 and model.mirror_axes == (0, 1, 2)
    assert model.normalization == "CTNormalization"
    assert "PlainConvUNet" in model.description


def test_amos_sized_model_loads_in_engine_and_nnunet(tmp_path):
    """The benchmark model of the inference issue's GPU target: our loader and nnU-Net's agree."""
    from amoskit.devtools import amos_sized_model as ams
    n_params = ams.write_model(tmp_path / "m")
    model = load_model(tmp_path / "m")
    assert model.patch_size == (64, 160, 192) and model.spacing == (2.0, 0.7, 0.7)
    assert model.num_classes == 16 and model.normalization == "CTNormalization"
    assert sum(p.numel() for p in model.networks[0].parameters()) == n_params > 20e6
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    pred = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False)
    pred.initialize_from_trained_model_folder(str(tmp_path / "m"), use_folds=(0,))
    x = torch.randn(1, 1, 32, 64, 64)
    with torch.no_grad():
        ours = model.networks[0](x)
        theirs = pred.network(x)
    assert ours.shape == (1, 16, 32, 64, 64)
    assert torch.allclose(ours, theirs, atol=1e-5)
    vol = ams.ct_like(6, size=64)
    assert vol.dtype == np.int16 and vol.shape == (6, 64, 64)
    assert vol.min() >= -1024 and vol.max() <= 3071 and (vol < -900).any() and (vol > 0).any()
    # tiles per forward: one on the CPU for a model this size (same speed, less RAM), 4 on a GPU
    from amosseg.device import default_batch_size
    assert default_batch_size(model.networks, model.patch_size, torch.device("cpu")) == 1
    assert default_batch_size(model.networks, model.patch_size, torch.device("cuda")) == 4
    demo = load_model(REPO / "weights")
    assert default_batch_size(demo.networks, demo.patch_size, torch.device("cpu")) == 4


def test_resample_back_with_identity_inplane_equals_nnunet():
    """Logits back from 2.0 to 2.5 mm slices: separate z (from the new spacing), in-plane untouched."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
    rng = np.random.default_rng(1)
    data = rng.normal(size=(3, 15, 40, 36)).astype(np.float32) * 10
    old, new = (2.0, 0.7, 0.7), (2.5, 0.7, 0.7)
    target = new_shape(data.shape[1:], old, new)
    assert target[1:] == data.shape[2:]
    ref = resample_data_or_seg_to_shape(data, target, old, new, is_seg=False, order=1, order_z=0,
                                        force_separate_z=None)
    ours = resample(torch.from_numpy(data), target, old, new, 1, 0, None).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


class _Huge(torch.nn.Module):
    """A real network head whose logits overflow float16 accumulation (|x| * Gaussian weight > 65504)."""

    def __init__(self, classes):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, classes, 1)
        torch.nn.init.constant_(self.conv.weight, 0.0)
        with torch.no_grad():
            self.conv.bias.copy_(torch.arange(classes, dtype=torch.float32) * 4000.0)

    def forward(self, x):
        return self.conv(x)


def test_half_precision_logits_agree_with_float32():
    """The GPU keeps logits in float16 (as nnU-Net does); the labels must not change."""
    from amosseg.predictor import cropped_labels, network_logits, preprocess, uncrop
    from amosseg.sliding_window import predict_logits
    from amoskit.data.phantoms import make_phantom
    import SimpleITK as sitk
    model = load_model(REPO / "weights").first
    img = make_phantom(4242).image
    prep = preprocess(sitk.GetArrayFromImage(img), img.GetSpacing()[::-1], model, "cpu")
    args = (model.networks, prep.data, model.patch_size, model.num_classes, (), 4)
    full = predict_logits(*args, logits_dtype=torch.float32)
    half = predict_logits(*args, logits_dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    agree = (full.argmax(0) == half.float().argmax(0)).float().mean().item()
    assert agree >= 0.9995, agree
    huge = predict_logits([_Huge(model.num_classes)], *args[1:], logits_dtype=torch.float16)
    assert not torch.isfinite(huge).all()
    # network_logits() sees the overflow and predicts again in float32: the top class wins everywhere
    model.networks = [_Huge(model.num_classes)]
    logits, seconds = network_logits(prep, model, "cpu", "cpu", tta=False, batch_size=4, logits_dtype=torch.float16)
    assert seconds.get("float32_retry") == 1.0
    labels = uncrop(cropped_labels(logits, prep, model), prep, model)
    assert labels.shape == sitk.GetArrayFromImage(img).shape and (labels == model.num_classes - 1).all()


@pytest.mark.parametrize("batch", [1, 2])
def test_host_memory_estimate_covers_a_real_model_on_the_cpu(tmp_path, batch):
    """The pre-read admission check must not under-count: an OOM kill cannot be caught. A case of an
    AMOS-sized model (30.7 M parameters, 64x160x192 patch) is measured for real, at 1 and 2 tiles
    per forward (activations dominate on the CPU)."""
    from engine_helpers import run_engine
    from amoskit.devtools import amos_sized_model as ams
    ams.write_model(tmp_path / "m")
    (tmp_path / "in").mkdir()
    ams.write_case(tmp_path / "in" / "small.nii.gz", 30, size=192)  # 2 tiles: batch 2 runs both at once
    metrics = tmp_path / "metrics.json"
    proc = run_engine(tmp_path / "in", tmp_path / "out", MODEL_DIR=tmp_path / "m", TTA=0, BATCH_SIZE=batch,
                      METRICS_FILE=metrics)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    m = run_metrics.read(metrics)
    used = m.peak_rss_bytes - m.rss_before_cases_bytes
    estimate = m.host_estimate_bytes["small.nii.gz"]
    assert used <= estimate <= 2 * used, (used / 2**30, estimate / 2**30)


def test_bench_verdicts_hold_the_issue_bars():
    """The benchmark's table against the issue's targets: right bars per device, no verdict after a fallback."""
    from amoskit.bench.inference import verdicts

    def summary(speed, rss, window, mode="gpu", agree=0.999, dice=0.99):
        ours = {"wall": 10.0, "peak_rss_gib": 1.0, "network": 2.0 * window, "mode": mode,
                "network_only": [{"net_only": 2.0, "batch": 4}]}
        base = {"wall": 10.0 * speed, "peak_rss_gib": 1.0 / rss}
        return {"results": {"ours": ours, "nnunet_sequential": base}, "agreement": agree, "dice": {6: dice}}

    rows = {r[0]: r for r in verdicts({"tta_0": summary(9, 0.4, 1.1), "tta_1": summary(3.9, 0.4, 1.3)}, "cuda")}
    met = {k.split(" (")[0]: v[3] for k, v in rows.items()}
    assert met["TTA off: speed vs predict_from_files_sequential"] is True        # 9x >= 8x
    assert met["TTA on: speed vs predict_from_files_sequential"] is False        # 3.9x < 4x
    assert met["TTA off: peak RSS vs nnU-Net's"] is True                         # 0.4 <= 0.5
    assert met["TTA off: sliding window / network alone"] is True                # 1.1 <= 1.2
    assert met["TTA on: sliding window / network alone"] is False                # 1.3 > 1.2
    cpu = {r[0].split(" (")[0]: r[3] for r in verdicts({"tta_0": summary(1.6, 0.8, 1.5, mode="cpu")}, "cpu")}
    assert cpu["TTA off: speed vs predict_from_files_sequential"] is True        # CPU bar 1.5x
    assert cpu["TTA off: sliding window / network alone"] is None                # no CPU bar
    fell_back = verdicts({"tta_0": summary(9, 0.4, 5.0, mode="GPU out of memory: stitched on the CPU")}, "cuda")
    assert [r[3] for r in fell_back if "sliding window" in r[0]] == [None]
    bad = {r[0].split(" (")[0]: r[3] for r in verdicts({"tta_0": summary(9, 0.4, 1.0, agree=0.99, dice=0.97)}, "cuda")}
    assert bad["TTA off: voxel agreement"] is False and bad["TTA off: lowest Dice"] is False
