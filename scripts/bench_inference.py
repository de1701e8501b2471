"""Benchmark: this engine vs nnU-Net's own predictor, same model, same case, same folds, one run.

Why: "faster than nnU-Net with the same answers" is a claim to measure, not to assume. Each
contender runs in its own child process (file in -> file out, imports and model loading
included), so its wall time and peak RSS (from wait4) are its own. Prints seconds per phase
(read, preprocess, network, export, write), peak memory, ratios, and the voxel agreement.

    python scripts/bench_inference.py                      # demo model, one sample phantom, TTA off and on
    python scripts/bench_inference.py --case my.nii.gz --model path/to/nnunet_results_folder
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

CONTENDERS = ("ours", "nnunet_sequential", "nnunet_files", "nnunet_phases")


def child(kind: str, case: Path, model: Path, out: Path, tta: bool, device: str) -> dict:
    """Runs inside the child process; returns phase timings."""
    if kind == "ours":
        metrics = out.parent / f"metrics-{out.name}.json"
        env = {**os.environ, "INPUT_DIR": str(case.parent), "OUTPUT_DIR": str(out), "MODEL_DIR": str(model),
               "TTA": "1" if tta else "0", "METRICS_FILE": str(metrics)}
        if device == "cpu":
            env["FORCE_CPU"] = "1"
        sys.argv = ["run_inference.py"]
        os.environ.update(env)
        sys.path.insert(0, str(REPO / "inference"))
        from amosseg.runner import run
        t0 = time.perf_counter()
        rc = run(REPO / "inference", env)
        wall = time.perf_counter() - t0
        m = json.loads(metrics.read_text())
        s = m["cases"][0]["seconds"]
        return {"rc": rc, "call": wall, "peak_gpu_gib": m["cases"][0].get("peak_gpu_bytes", 0) / 1024**3,
                **{k: s.get(k) for k in ("read", "preprocess", "network", "export", "write")}}
    import torch
    from nnunet_reference import make_predictor, predict_files
    if kind in ("nnunet_sequential", "nnunet_files"):
        t0 = time.perf_counter()
        predict_files(model, [case], out, tta=tta, device=device, sequential=kind == "nnunet_sequential",
                      processes=min(3, len(os.sched_getaffinity(0))))
        return {"rc": 0, "call": time.perf_counter() - t0, "peak_gpu_gib": peak_gpu_gib(device)}
    # nnunet_phases: nnU-Net's own functions called one by one, to split its time
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    pred = make_predictor(model, (0,), tta, device)
    t = {}
    t0 = time.perf_counter()
    img, props = SimpleITKIO().read_images([str(case)])
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pp = pred.configuration_manager.preprocessor_class(verbose=False)
    data, _, props = pp.run_case_npy(img, None, props, pred.plans_manager, pred.configuration_manager, pred.dataset_json)
    data = torch.from_numpy(data)
    t["preprocess"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = pred.predict_logits_from_preprocessed_data(data).cpu()
    t["network"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    seg = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, pred.plans_manager, pred.configuration_manager, pred.label_manager, props, False)
    t["export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    SimpleITKIO().write_seg(seg, str(out / case.name), props)
    t["write"] = time.perf_counter() - t0
    t["call"] = sum(t.values())
    return {"rc": 0, **t, "peak_gpu_gib": peak_gpu_gib(device)}


def peak_gpu_gib(device: str) -> float:
    """torch's peak allocation in this process (0 on the CPU)."""
    import torch
    return torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else 0.0


def spawn(kind, case, model, out, tta, device) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--case", str(case), "--model", str(model),
           "--out", str(out), "--tta", "1" if tta else "0", "--device", device]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out_text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    line = [l for l in out_text.splitlines() if l.startswith("BENCH ")]
    if os.waitstatus_to_exitcode(status) != 0 or not line:
        raise SystemExit(f"{kind} failed:\n{out_text[-3000:]}")
    res = json.loads(line[-1][6:])
    res.update(wall=wall, peak_rss_gib=usage.ru_maxrss / 1024**2)
    return res


def agreement(a: Path, b: Path) -> float:
    import SimpleITK as sitk
    x = sitk.GetArrayFromImage(sitk.ReadImage(str(a)))
    y = sitk.GetArrayFromImage(sitk.ReadImage(str(b)))
    return float((x == y).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=CONTENDERS)
    ap.add_argument("--case", type=Path)
    ap.add_argument("--model", type=Path, default=REPO / "weights")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--tta", default="both", help="0, 1 or both")
    ap.add_argument("--device", default="cuda" if os.environ.get("BENCH_DEVICE") == "cuda" else "cpu")
    ap.add_argument("--skip-files", action="store_true", help="skip nnU-Net's multi-process predict_from_files")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.child:
        res = child(args.child, args.case, args.model, args.out, args.tta == "1", args.device)
        print("BENCH " + json.dumps(res), flush=True)
        return 0

    from rich.console import Console
    from rich.table import Table
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        case = args.case
        if case is None:
            from make_samples import make_samples
            case = make_samples(tmp / "samples", 1)[0]
        single = tmp / "in"
        single.mkdir()
        (single / case.name).symlink_to(case.resolve())
        case = single / case.name
        ttas = {"0": [False], "1": [True], "both": [False, True]}[args.tta]
        kinds = [k for k in CONTENDERS if not (args.skip_files and k == "nnunet_files")]
        rows, summary = [], {}
        for tta in ttas:
            results = {}
            for kind in kinds:
                console.print(f"running {kind} (TTA {'on' if tta else 'off'}) ...")
                results[kind] = spawn(kind, case, args.model, tmp / f"out-{kind}-{tta}", tta, args.device)
            agree = agreement(tmp / f"out-ours-{tta}" / case.name, tmp / f"out-nnunet_sequential-{tta}" / case.name)
            summary[f"tta_{int(tta)}"] = {"results": results, "agreement": agree}
            rows.append((tta, results, agree))
    table = Table(title=f"inference benchmark: {case.name}, {args.device}, model {args.model.name}")
    for col in ("TTA", "contender", "wall s", "read", "prep", "network", "export", "write", "peak RSS GiB",
                "peak GPU GiB", "nnU-Net seq / this"):
        table.add_column(col, justify="right")
    for tta, results, agree in rows:
        base = results["nnunet_sequential"]["wall"]
        for kind, r in results.items():
            fmt = lambda k: "-" if r.get(k) is None else f"{r[k]:.2f}"  # noqa: E731
            table.add_row("on" if tta else "off", kind, f"{r['wall']:.2f}", *(fmt(k) for k in
                          ("read", "preprocess", "network", "export", "write")), f"{r['peak_rss_gib']:.2f}",
                          fmt("peak_gpu_gib"), f"{base / r['wall']:.2f}x")
        ours = results["ours"]
        console.print(f"TTA {'on' if tta else 'off'}: this engine {base / ours['wall']:.2f}x faster than "
                      f"predict_from_files_sequential end to end; peak RSS ratio "
                      f"{ours['peak_rss_gib'] / results['nnunet_sequential']['peak_rss_gib']:.2f}; "
                      f"voxel agreement {agree:.4%}")
        table.add_section()
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
