"""The engine's start-up settings (environment, read once) and its run-metrics record."""
from pathlib import Path

import pytest

from amosseg import folders, run_metrics
from amosseg.settings import Settings, SettingsError

pytestmark = pytest.mark.engine


def test_settings_defaults(tmp_path):
    (tmp_path / "weights").mkdir()
    s = Settings.from_env({}, tmp_path)
    assert s == Settings(model_dir=tmp_path / "weights")
    assert (s.input_dir, s.output_dir, s.folds, s.batch_size, s.torch_threads) == (None,) * 5
    assert s.tta and s.cudnn_benchmark and not s.force_cpu
    assert s.gpu_memory_limit_gb is None and s.metrics_file is None
    # blank is unset; no weights/ beside the script: the repository's, else weights/ beside it anyway
    assert Settings.from_env({"TTA": "", "BATCH_SIZE": " "}, tmp_path / "inference") == s
    assert Settings.from_env({}, tmp_path / "x" / "inference").model_dir == tmp_path / "x" / "inference" / "weights"


def test_settings_each_variable(tmp_path):
    env = {"INPUT_DIR": "/data/in", "OUTPUT_DIR": "/data/out", "MODEL_DIR": str(tmp_path / "m"),
           "FOLDS": "0, 2 all", "ENGINE": "NNUNet", "TTA": "0", "BATCH_SIZE": "3", "TORCH_THREADS": "5",
           "GPU_MEMORY_LIMIT_GB": "23.5", "FORCE_CPU": "1", "CUDNN_BENCHMARK": "0",
           "METRICS_FILE": str(tmp_path / "metrics.json"), "UNRELATED": "ignored"}
    s = Settings.from_env(env, tmp_path)
    assert s == Settings(input_dir=Path("/data/in"), output_dir=Path("/data/out"), model_dir=tmp_path / "m", engine="nnunet",
                         folds=("0", "2", "all"), tta=False, batch_size=3, torch_threads=5,
                         gpu_memory_limit_gb=23.5, force_cpu=True, cudnn_benchmark=False,
                         metrics_file=tmp_path / "metrics.json")
    assert Settings.from_env({"TTA": "1", "FORCE_CPU": "0", "CUDNN_BENCHMARK": "yes"}, tmp_path).tta is True
    assert Settings.from_env({"FORCE_CPU": "0"}, tmp_path).force_cpu is False
    got = folders.resolve(s.input_dir, s.output_dir)
    assert (got.input, got.output) == (Path("/data/in"), Path("/data/out"))
    assert folders.resolve(Path("/data/in")).output == Path("/data/output")


@pytest.mark.parametrize("name,value,fix", [
    ("BATCH_SIZE", "abc", "set BATCH_SIZE to the number of tiles per forward"),
    ("BATCH_SIZE", "0", "set BATCH_SIZE to the number of tiles per forward"),
    ("TORCH_THREADS", "2.5", "set TORCH_THREADS to the number of CPU threads"),
    ("TTA", "maybe", "set TTA=1 (mirroring on) or TTA=0 (off)"),
    ("FORCE_CPU", "sometimes", "set FORCE_CPU=1"),
    ("CUDNN_BENCHMARK", "2", "set CUDNN_BENCHMARK=1"),
    ("ENGINE", "torch", "set ENGINE=fast (default) or ENGINE=nnunet"),
    ("GPU_MEMORY_LIMIT_GB", "24GB", "set e.g. GPU_MEMORY_LIMIT_GB=24"),
    ("GPU_MEMORY_LIMIT_GB", "-1", "set e.g. GPU_MEMORY_LIMIT_GB=24"),
])
def test_settings_bad_value_names_the_variable_and_fix(tmp_path, name, value, fix):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value}, tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{name}={value!r} ") and fix in msg and "\n" not in msg


def test_run_metrics_round_trip_and_tolerance(tmp_path):
    ok = run_metrics.CaseRecord("a.nii.gz", seconds={"read": 1.0, "network": 2.0}, shape=[4, 5, 6],
                                spacing=[2.5, 0.8, 0.8], target_shape=[5, 5, 6], mode="cpu", peak_gpu_bytes=0)
    bad = run_metrics.CaseRecord("b.nii.gz")
    bad.fail("not a NIfTI file")
    run = run_metrics.RunRecord(device="device: cpu", tta=False, batch_size=2, threads=4, startup_seconds=1.5,
                                total_seconds=9.0, rss_before_cases_bytes=10, host_estimate_bytes={"a.nii.gz": 7},
                                peak_rss_bytes=20, cases=[ok, bad])
    d = run.to_dict()
    assert list(d) == ["device", "tta", "batch_size", "threads", "startup_seconds", "total_seconds",
                       "rss_before_cases_bytes", "host_estimate_bytes", "peak_rss_bytes", "cases"]
    assert d["cases"][1] == {"name": "b.nii.gz", "status": "failed", "seconds": {}, "error": "not a NIfTI file"}
    assert set(d["cases"][0]) == {"name", "status", "seconds", "shape", "spacing", "target_shape", "mode",
                                  "peak_gpu_bytes"}
    run.write(tmp_path / "m.json")
    back = run_metrics.read(tmp_path / "m.json")
    assert back == run and [c.name for c in back.failed] == ["b.nii.gz"]
    assert back.case("a.nii.gz").seconds["network"] == 2.0 and back.case("zzz") is None
    odd = run_metrics.RunRecord.from_dict({"future_key": 1, "cases": [{"name": "c", "extra": True}, "junk"]})
    assert odd.batch_size == 0 and odd.cases[0].name == "c" and odd.cases[0].ok and odd.cases[1].name == ""
    assert run_metrics.RunRecord.from_dict({"cases": None}).cases == []


def test_help_lists_folders_and_every_variable_and_exits_0():
    """`python run_inference.py --help` prints what the engine reads instead of starting a run."""
    import subprocess
    import sys
    from amosseg.settings import VARIABLES
    script = Path(__file__).resolve().parents[1] / "inference" / "run_inference.py"
    p = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == ""
    assert "/workspace/input -> /workspace/output" in p.stdout
    assert all(f"  {name} " in p.stdout for name in VARIABLES)
    p = subprocess.run([sys.executable, str(script), "/input"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "error: run_inference.py takes no arguments (got /input); settings come from the environment: "
        "python run_inference.py --help"]
