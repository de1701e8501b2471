"""Hostile inputs and faults for `python run_inference.py` (issue: every one gets a clear error).

Most cases share one input folder and one run (the run must go on past each bad case); faults
that need their own run (empty/missing folders, unwritable output, SIGKILL, full disk, memory
limit) each get one.
"""
import gzip
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import SimpleITK as sitk

from engine_helpers import PY, SCRIPT, WEIGHTS, labels_of, run_engine, write_image

pytestmark = [pytest.mark.hostile, pytest.mark.inference]

SHAPE = (20, 48, 56)  # z, y, x: smaller than the patch in-plane


def body(shape=SHAPE, dtype=np.int16):
    """A small CT-like block: air around a soft-tissue ellipse with a bright blob."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    arr = np.full(shape, -1000.0)
    arr[(y / 0.8) ** 2 + (x / 0.9) ** 2 < 1] = 40
    arr[(z / 0.5) ** 2 + (y / 0.3) ** 2 + ((x - 0.3) / 0.3) ** 2 < 1] = 185
    return arr.astype(dtype)


GOOD = {  # name -> (array, spacing, direction) that must be segmented
    "upper.NII.GZ": (body(), (2.5, 2.5, 6.0), None),
    "float64.nii.gz": (body(dtype=np.float64), (2.5, 2.5, 6.0), None),
    "uint16.nii.gz": (body(dtype=np.int32) + 1024, (2.5, 2.5, 6.0), None),
    "int32.nii.gz": (body(dtype=np.int32), (2.5, 2.5, 6.0), None),
    "uint8.nii.gz": (np.clip(body(dtype=np.int32) // 8 + 128, 0, 255), (2.5, 2.5, 6.0), None),
    "constant.nii.gz": (np.full(SHAPE, 7, np.int16), (2.5, 2.5, 6.0), None),
    "extreme.nii.gz": (np.where(body() > 0, 1e6, -1e6).astype(np.float32), (2.5, 2.5, 6.0), None),
    "tiny.nii.gz": (body((3, 5, 6)), (2.5, 2.5, 6.0), None),
    "single-slice.nii.gz": (body((1, 64, 64)), (2.5, 2.5, 6.0), None),
    "flipped.nii.gz": (body(), (2.5, 2.5, 6.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
    "tiny-spacing.nii.gz": (body(), (0.01, 0.01, 0.02), None),
    "huge-spacing.nii.gz": (body((4, 8, 8)), (20.0, 20.0, 50.0), None),
    "name with spaces ünïcode.v1.2.nii.gz": (body(), (2.5, 2.5, 6.0), None),
    "-leading-dash.nii.gz": (body(), (2.5, 2.5, 6.0), None),
    # names the NIfTI library would rewrite if they were handed to it (".NII"/".hdr"/".img" inside)
    "Scan.NII.nii.gz": (body(), (2.5, 2.5, 6.0), None),
    "case.hdr.img.nii.gz": (body(), (2.5, 2.5, 6.0), None),
    "twice.nii.nii.gz": (body(), (2.5, 2.5, 6.0), None),
    "patient_0042_abdomen_portal_venous_phase_recon_b30f_2mm.nii.gz": (body(), (2.5, 2.5, 6.0), None),
}
BAD = {  # name -> expected words in its error line
    "zero-bytes.nii.gz": "cannot read",
    "truncated.nii.gz": "cannot read",
    "random-gzip.nii.gz": "cannot read",
    "plain-file.nii.gz": "cannot read",
    "flat2d.nii.gz": "2D image",
    "vector.nii.gz": "vector pixel type",
    "four-d.nii.gz": "4D image",
    "sheared.nii.gz": "orthonormal",
}
SKIPPED = [".DS_Store", "README.txt", "uncompressed.nii", "subfolder"]


def build_input(folder):
    folder.mkdir(parents=True)
    for name, (arr, spacing, direction) in GOOD.items():
        write_image(folder / name, arr, spacing, direction=direction or (1, 0, 0, 0, 1, 0, 0, 0, 1))
    nan = body().astype(np.float32)
    nan[0, 0, :5] = np.nan
    nan[1, 1, :5] = np.inf
    write_image(folder / "nan-inf.nii.gz", nan, (2.5, 2.5, 6.0))
    img4 = sitk.JoinSeries([sitk.GetImageFromArray(body())])  # 4D, last dimension 1
    sitk.WriteImage(img4, str(folder / "four-d-one.nii.gz"), useCompression=True)
    scaled = sitk.GetImageFromArray(body())
    sitk.WriteImage(scaled, str(folder / "scl.nii.gz"), useCompression=True)
    _set_scl(folder / "scl.nii.gz", slope=2.0, inter=-10.0)
    (folder / "zero-bytes.nii.gz").write_bytes(b"")
    good_bytes = (folder / "upper.NII.GZ").read_bytes()
    (folder / "truncated.nii.gz").write_bytes(good_bytes[: len(good_bytes) // 2])
    (folder / "random-gzip.nii.gz").write_bytes(gzip.compress(os.urandom(4096)))
    (folder / "plain-file.nii.gz").write_text("this is not an image\n")
    write_image(folder / "flat2d.nii.gz", body((1, 40, 40))[0], (1.0, 1.0), direction=(1, 0, 0, 1))
    vec = sitk.Compose([sitk.GetImageFromArray(body())] * 3)
    sitk.WriteImage(vec, str(folder / "vector.nii.gz"), useCompression=True)
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(body())] * 2), str(folder / "four-d.nii.gz"))
    write_image(folder / "sheared.nii.gz", body(), (2.5, 2.5, 6.0))
    _set_sform(folder / "sheared.nii.gz", [[2.5, 0.75, 0, 0], [0, 2.5, 0, 0], [0, 0, 6.0, 0]])
    (folder / ".DS_Store").write_bytes(b"\0\1")
    (folder / "README.txt").write_text("hello")
    sitk.WriteImage(sitk.GetImageFromArray(body()), str(folder / "uncompressed.nii"))
    (folder / "subfolder").mkdir()
    write_image(folder / "subfolder" / "nested.nii.gz", body(), (2.5, 2.5, 6.0))
    target = folder.parent / "elsewhere.nii.gz"
    write_image(target, body(), (2.5, 2.5, 6.0))
    (folder / "symlinked.nii.gz").symlink_to(target)


def _set_sform(path, rows):
    """Write a sheared sform (sform_code 1) into a NIfTI-1 header: ITK cannot write one itself."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[254:256] = np.int16(1).tobytes()
    raw[280:328] = np.asarray(rows, np.float32).tobytes()
    path.write_bytes(gzip.compress(bytes(raw)))


def _set_scl(path, slope, inter):
    """Set scl_slope / scl_inter in a NIfTI-1 header (bytes 112..119), keeping it gzip-compressed."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[112:116] = np.float32(slope).tobytes()
    raw[116:120] = np.float32(inter).tobytes()
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    inp, out = root / "input", root / "output"
    build_input(inp)
    proc = run_engine(inp, out, TTA=0, COLUMNS=80)  # docker logs: no terminal, rich's default width
    return inp, out, proc


def test_summary_table_keeps_whole_names_in_a_log(hostile_run):
    """Without a terminal the summary table is as wide as its longest name needs: nothing cut to '…'."""
    _, _, proc = hostile_run
    table = proc.stdout[proc.stdout.index("segmentation summary"):]
    rows = [line for line in table.splitlines() if "│" in line or "|" in line]
    for name in sorted(GOOD) + sorted(BAD):
        assert any(name in row for row in rows), f"{name} not whole in the summary table:\n{table[:3000]}"
    assert "…" not in table


def test_run_goes_on_and_fails_overall(hostile_run):
    _, _, proc = hostile_run
    assert proc.returncode == 1, proc.stdout[-4000:]
    assert "FAILED 8 of" in proc.stdout


@pytest.mark.parametrize("name", sorted(GOOD) + ["nan-inf.nii.gz", "four-d-one.nii.gz", "scl.nii.gz", "symlinked.nii.gz"])
def test_segmented_with_exact_name_and_geometry(hostile_run, name):
    inp, out, proc = hostile_run
    assert (out / name).is_file(), f"{name} missing; log:\n{proc.stdout[-3000:]}"
    src, seg = sitk.ReadImage(str(inp / name)), sitk.ReadImage(str(out / name))
    if src.GetDimension() == 4:
        src = src[:, :, :, 0]
    assert seg.GetSize() == src.GetSize() and seg.GetOrigin() == src.GetOrigin()
    assert seg.GetSpacing() == src.GetSpacing() and seg.GetDirection() == src.GetDirection()
    assert seg.GetPixelID() == sitk.sitkUInt8
    assert labels_of(out / name).max() <= 15


@pytest.mark.parametrize("name,words", sorted(BAD.items()))
def test_bad_case_gets_one_clear_line(hostile_run, name, words):
    _, out, proc = hostile_run
    lines = [l for l in proc.stdout.splitlines() if l.startswith(f"error: {name}:")]
    assert len(lines) == 1, proc.stdout[-3000:]
    assert words in lines[0]
    assert not (out / name).exists()


@pytest.mark.parametrize("name", SKIPPED)
def test_non_cases_skipped_with_one_warning(hostile_run, name):
    _, out, proc = hostile_run
    assert sum(1 for l in proc.stdout.splitlines() if l.startswith("warning: skipping") and repr(name) in l) == 1
    assert not (out / name).exists()
    assert not (out / "nested.nii.gz").exists()


def test_warnings_for_nan_and_4d(hostile_run):
    _, _, proc = hostile_run
    assert "warning: nan-inf.nii.gz: 10 non-finite voxels (NaN/inf) read as 0" in proc.stdout
    assert "warning: four-d-one.nii.gz: 4D image with a last dimension of 1" in proc.stdout


def test_no_partial_files_left(hostile_run):
    _, out, _ = hostile_run
    assert not [p for p in out.iterdir() if p.name.startswith(".partial-")]


def test_empty_input_folder(tmp_path):
    (tmp_path / "in").mkdir()
    proc = run_engine(tmp_path / "in", tmp_path / "out")
    assert proc.returncode == 0
    assert "no *.nii.gz cases" in proc.stdout
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_input_folder_fails_before_inference(tmp_path):
    proc = run_engine(tmp_path / "nope", tmp_path / "out")
    assert proc.returncode == 2
    assert "error: input folder" in proc.stdout and "does not exist" in proc.stdout
    assert "device:" not in proc.stdout


def test_bad_setting_fails_before_inference(tmp_path):
    """A typo in a knob stops the run at once: one error line naming the variable and the fix."""
    inp = tmp_path / "in"
    inp.mkdir()
    write_image(inp / "a.nii.gz", body(), (2.5, 2.5, 6.0))
    proc = run_engine(inp, tmp_path / "out", BATCH_SIZE="abc")
    assert proc.returncode == 2, proc.stdout[-2000:]
    errors = [l for l in proc.stdout.splitlines() if l.startswith("error:")]
    assert errors == ["error: BATCH_SIZE='abc' is not a whole number >= 1; set BATCH_SIZE to the number of "
                      "tiles per forward (e.g. BATCH_SIZE=2), or leave it unset for the default"]
    assert "device:" not in proc.stdout and not (tmp_path / "out").exists()


def test_unwritable_output_fails_before_inference(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_image(inp / "a.nii.gz", body(), (2.5, 2.5, 6.0))
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    env = {}
    if os.geteuid() == 0:  # root ignores mode bits: use a read-only bind via a file in the way instead
        out.chmod(0o755)
        shutil.rmtree(out)
        out.write_text("a file where the output folder should be")
    proc = run_engine(inp, out, **env)
    assert proc.returncode == 2
    assert "error: output folder" in proc.stdout and "not writable" in proc.stdout
    assert "device:" not in proc.stdout


def test_sigkill_midway_then_rerun_completes(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for i in range(4):
        write_image(inp / f"case{i}.nii.gz", body((30, 120, 130)), (2.5, 2.5, 6.0))
    env = {**os.environ, "INPUT_DIR": str(inp), "OUTPUT_DIR": str(out), "MODEL_DIR": str(WEIGHTS)}
    proc = subprocess.Popen([PY, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and any(out.iterdir())):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [p for p in out.iterdir() if not p.name.startswith(".partial-")] if out.is_dir() else []
    for p in done:  # whatever carries a final name is complete and readable
        assert labels_of(p).shape == (30, 120, 130)
    rerun = run_engine(inp, out, TTA=0)
    assert rerun.returncode == 0, rerun.stdout[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [f"case{i}.nii.gz" for i in range(4)]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_leaves_no_corrupt_output(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):  # random labels-ish content compresses badly: the second write cannot fit
        write_image(inp / f"case{i}.nii.gz", rng.integers(-1000, 1000, (40, 200, 200)).astype(np.int16), (2.5, 2.5, 6.0))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(out)]).returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        proc = run_engine(inp, out, TTA=0)
        assert proc.returncode == 1
        assert "no space left" in proc.stdout
        for p in out.iterdir():
            assert not p.name.startswith(".partial-")
            labels_of(p)  # anything under a final name is complete
    finally:
        subprocess.run(["umount", str(out)])


def test_case_too_big_for_memory_limit_fails_alone(tmp_path):
    """A header claiming a huge volume is refused before reading; the other case still runs."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    write_image(inp / "a-small.nii.gz", body(), (2.5, 2.5, 6.0))
    write_image(tmp_path / "small.nii.gz", body(), (2.5, 2.5, 6.0))
    raw = bytearray(gzip.decompress((tmp_path / "small.nii.gz").read_bytes()))
    raw[40:48] = np.array([3, 4096, 4096, 2048], np.int16).tobytes()  # header claims 32 Gi voxels
    (inp / "b-huge.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    proc = run_engine(inp, out, TTA=0)
    assert proc.returncode == 1
    line = next(l for l in proc.stdout.splitlines() if l.startswith("error: b-huge.nii.gz:"))
    assert "GiB of host memory" in line
    assert (out / "a-small.nii.gz").is_file()
