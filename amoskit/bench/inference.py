"""Benchmark: this engine vs nnU-Net's own predictor, same model, same case, same folds, one run.

Why: "faster than nnU-Net with the same answers" is a claim to measure, not to assume. Each
contender runs in its own child process (file in -> file out, imports and model loading
included), so its wall time and peak RSS (from wait4) are its own. Prints seconds per phase
(startup, read, preprocess, network, export, write), peak memory, ratios, the voxel agreement and Dice,
the sliding window against the network alone on the same tiles, and a table against the issue's
targets for the device in use.

    python scripts/bench_inference.py                      # demo model, one sample phantom, TTA off and on
    python scripts/bench_inference.py --case my.nii.gz --model path/to/nnunet_results_folder
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amoskit import REPO

CONTENDERS = ("ours", "nnunet_sequential", "nnunet_files", "nnunet_phases")
# cascades and ensembles: nnU-Net's predictor, cascade path, ensembling and postprocessing, run by its own
# functions inside our runner (ENGINE=nnunet: equal to nnUNetv2_predict + _ensemble voxel for voxel)
COMPOSITE_CONTENDERS = ("ours", "nnunet_engine")
CHILDREN = (*CONTENDERS, "nnunet_engine", "network_alone")


def _settings():
    """FOLDS, CHECKPOINT and the other knobs as the engine's run reads them (make exports FOLDS and
    CHECKPOINT), so that every contender runs the same folds of the same checkpoint."""
    from amosseg.settings import Settings
    return Settings.from_env(os.environ, REPO / "inference")


def network_only(model_dir: Path, target_shape, tta: bool, batch: int, device: str) -> dict:
    """The network alone on as many tiles as the case's sliding window, in batches of `batch`.

    Why: the issue's bar for the sliding window is "within 1.2x of the batched network time", so the
    tiling, flipping and stitching overhead is measured against a loop that only runs the network.
    """
    import torch
    from amosseg.model import load_model
    from amosseg.resources import usable_cpus
    from amosseg.sliding_window import mirror_combinations, tile_starts
    settings = _settings()
    torch.set_num_threads(settings.torch_threads or usable_cpus())
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    model = load_model(model_dir, settings.folds, settings.checkpoint)
    patch = tuple(model.patch_size)
    padded = [max(t, p) for t, p in zip(target_shape, patch)]
    n_tiles = len(list(itertools.product(*tile_starts(padded, patch))))
    flips = mirror_combinations(model.mirror_axes if tta else ())
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for net in model.networks:
        net.to(dev)
    sizes = [min(batch, n_tiles - b) for b in range(0, n_tiles, batch)]  # the window's batches, last one short
    inputs = {n: torch.randn(n, 1, *patch, device=dev) for n in set(sizes)}
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=dev.type == "cuda"):
        t0 = time.perf_counter()
        for x in inputs.values():  # warm-up (lazy library loading, cuDNN autotuning for these shapes)
            model.networks[0](x)
        sync()
        warm_up = time.perf_counter() - t0
        t0 = time.perf_counter()
        for n in sizes:
            for net in model.networks:
                for _flip in flips:
                    net(inputs[n])
        sync()
    return {"net_only": time.perf_counter() - t0, "warm_up": warm_up, "tiles": n_tiles, "forwards": len(sizes) * len(flips) * len(model.networks),
            "batch": batch}


def child(kind: str, case: Path, model: Path, out: Path, tta: bool, device: str, net_batches=(),
          target_shape=()) -> dict:
    """Runs inside the child process; returns phase timings."""
    if kind in ("ours", "nnunet_engine"):
        metrics = out.parent / f"metrics-{out.name}.json"
        # ours: the engine make build picks for this folder (BENCH_OURS_ENGINE, set by main)
        env = {**os.environ, "INPUT_DIR": str(case.parent), "OUTPUT_DIR": str(out), "MODEL_DIR": str(model),
               "TTA": "1" if tta else "0", "METRICS_FILE": str(metrics),
               "ENGINE": "nnunet" if kind == "nnunet_engine" else os.environ.get("BENCH_OURS_ENGINE", "fast")}
        if device == "cpu":
            env["FORCE_CPU"] = "1"
        sys.argv = ["run_inference.py"]
        os.environ.update(env)
        from amosseg import run_metrics
        from amosseg.runner import run
        t0 = time.perf_counter()
        rc = run(REPO / "inference", env)
        wall = time.perf_counter() - t0
        if not metrics.is_file():
            raise SystemExit(f"the engine (ENGINE={env['ENGINE']}) did not run {model} (exit {rc}): its message above")
        m = run_metrics.read(metrics)
        c = m.case(case.name)
        if rc != 0 or c is None or not c.ok:
            raise SystemExit(f"the engine failed on {case.name}: {c.error if c else 'no metrics for it'}")
        return {"rc": rc, "call": wall, "peak_gpu_gib": (c.peak_gpu_bytes or 0) / 1024**3,
                "batch": m.batch_size, "mode": c.mode, "startup": m.startup_seconds, "target_shape": c.target_shape,
                **{k: c.seconds.get(k) for k in run_metrics.PHASES}}
    if kind == "network_alone":  # its own process, so that it cannot add to the engine's peak RSS
        return {"rc": 0, "runs": [network_only(model, target_shape, tta, b, device) for b in net_batches]}
    import torch
    from amoskit.bench.nnunet_reference import make_predictor, predict_files
    from amosseg.model_choice import choose_dir
    settings = _settings()
    member = choose_dir(model, settings.checkpoint, settings.folds).members[0]  # the engine's choice
    folds = tuple(f.removeprefix("fold_") for f in member.folds)
    if kind in ("nnunet_sequential", "nnunet_files"):
        t0 = time.perf_counter()
        predict_files(model, [case], out, folds=folds, tta=tta, device=device,
                      sequential=kind == "nnunet_sequential", processes=min(3, len(os.sched_getaffinity(0))),
                      checkpoint=settings.checkpoint)
        return {"rc": 0, "call": time.perf_counter() - t0, "peak_gpu_gib": peak_gpu_gib(device)}
    # nnunet_phases: nnU-Net's own functions called one by one, to split its time
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    pred = make_predictor(model, folds, tta, device, settings.checkpoint)
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


def spawn(kind, case, model, out, tta, device, net_batches=(), target_shape=()) -> dict:
    cmd = [sys.executable, "-m", "amoskit.bench.inference", "--child", kind, "--case", str(case), "--model", str(model),
           "--out", str(out), "--tta", "1" if tta else "0", "--device", device,
           "--net-batches", ",".join(map(str, net_batches)), "--target-shape", ",".join(map(str, target_shape))]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    line = [l for l in out_text.splitlines() if l.startswith("BENCH ")]
    if os.waitstatus_to_exitcode(status) != 0 or not line:
        raise SystemExit(f"{kind} failed:\n{out_text[-3000:]}")
    res = json.loads(line[-1][6:])
    res.update(wall=wall, peak_rss_gib=usage.ru_maxrss / 1024**2)
    return res


def agreement(ours: Path, ref: Path) -> tuple[float, dict]:
    """Voxel agreement, and Dice per label with >= 1000 voxels in the reference (the issue's bar)."""
    from amoskit import metrics
    x, y = metrics.read_labels(ours), metrics.read_labels(ref)
    return metrics.agreement(x, y), metrics.dice_per_label(x, y, min_ref_voxels=1000)


# the issue's bars: (CPU value, GPU value); None = no bar on that device
TARGETS = {"speed_tta_off": (1.5, 8.0), "speed_tta_on": (None, 4.0), "rss_ratio": (1.0, 0.5),
           "window_over_network": (None, 1.2), "agreement": (0.995, 0.995), "min_dice": (0.98, 0.98)}


# how the table names each baseline (nnU-Net's own entry points)
BASELINE_NAMES = {"nnunet_sequential": "predict_from_files_sequential",
                  "nnunet_files": "predict_from_files"}


def verdicts(summary: dict, device: str, base_kind: str = "nnunet_sequential") -> list[tuple]:
    """(what, measured, bar, met) rows against the issue's targets for this device."""
    col = 1 if device == "cuda" else 0
    rows = []
    for key, res in summary.items():
        tta = key == "tta_1"
        r, ours = res["results"], res["results"]["ours"]
        base = r[base_kind]
        speed = base["wall"] / ours["wall"]
        bar = TARGETS["speed_tta_on" if tta else "speed_tta_off"][col]
        label = f"TTA {'on' if tta else 'off'}: "
        rows.append((label + f"speed vs {BASELINE_NAMES.get(base_kind, base_kind)}", f"{speed:.2f}x",
                     bar and f">= {bar}x",
                     None if bar is None else speed >= bar))
        rss = ours["peak_rss_gib"] / base["peak_rss_gib"]
        bar = TARGETS["rss_ratio"][col]
        rows.append((label + "peak RSS vs nnU-Net's", f"{rss:.2f}x", f"<= {bar}x", rss <= bar))
        if ours.get("network_only"):  # one configuration: its network timed alone on the same tiles
            net = ours["network_only"][0]
            ratio = ours["network"] / net["net_only"]
            bar = TARGETS["window_over_network"][col] if ours["mode"] in ("gpu", "cpu") else None  # not after a fallback
            rows.append((label + f"sliding window / network alone (batch {net['batch']}, {ours['mode']})",
                         f"{ratio:.2f}x", bar and f"<= {bar}x", None if bar is None else ratio <= bar))
        bar = TARGETS["agreement"][col]
        rows.append((label + "voxel agreement", f"{res['agreement']:.4%}", f">= {bar:.1%}", res["agreement"] >= bar))
        if res["dice"]:
            worst = min(res["dice"], key=res["dice"].get)
            d, bar = res["dice"][worst], TARGETS["min_dice"][col]
            rows.append((label + f"lowest Dice ({len(res['dice'])} labels >= 1000 voxels)",
                         f"{d:.4f} (label {worst})", f">= {bar}", d >= bar))
    return rows


def ours_engine(model: Path) -> str:
    """The engine make build picks for this folder (ENGINE, TRAINER_CODE as exported by make), said in a line."""
    from amoskit.image import build_context
    try:
        chosen = build_context.choose_engine(model, build_context.check_weights(model, os.environ.get("FOLDS", ""),
                                                                             os.environ.get("CHECKPOINT", "")),
                                             os.environ.get("ENGINE", ""), os.environ.get("TRAINER_CODE", ""))
    except build_context.ContextError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"ours: ENGINE={chosen.engine} ({chosen.reason})")
    for trainer in chosen.own_trainers:  # as the image does: nnU-Net's module where its lookup finds it first
        place_own_trainer(trainer)
    for f in chosen.trainer_files:  # TRAINER_CODE: nnU-Net's side needs the trainer class too, as in the image
        place_trainer_code(f)
    return chosen.engine


def _trainer_folder() -> Path:
    import nnunetv2
    return Path(nnunetv2.__file__).parent / "training" / "nnUNetTrainer"


def place_trainer_code(f: Path) -> None:
    """TRAINER_CODE's module beside nnU-Net's own trainers in this venv, where the image puts it."""
    import shutil
    target = _trainer_folder() / f.name
    if not target.is_file() or target.read_bytes() != f.read_bytes():
        shutil.copyfile(f, target)
        print(f"TRAINER_CODE: {f.name} placed beside nnU-Net's trainers in this venv")


def place_own_trainer(trainer: str) -> None:
    """Copy nnU-Net's module defining `trainer` (under variants/) to the top of this venv's trainer folder,
    as docker/Dockerfile.runtime does in the image (nnU-Net's lookup then never imports primus/timm)."""
    import re
    import shutil
    top = _trainer_folder()
    pattern = re.compile(rf"^class {re.escape(trainer)}[(:]", re.M)
    found = sorted(f for f in (top / "variants").rglob("*.py") if pattern.search(f.read_text(errors="replace")))
    if not found:
        raise SystemExit(f"error: nnU-Net's trainer {trainer} is not under {top / 'variants'}")
    if not (top / found[0].name).is_file():
        shutil.copyfile(found[0], top / found[0].name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=CHILDREN)
    ap.add_argument("--case", type=Path, help="one *.nii.gz case (default: a synthetic sample phantom)")
    ap.add_argument("--model", type=Path, default=REPO / "weights", help="any folder make build takes as WEIGHTS")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--tta", default="both", help="0, 1 or both")
    ap.add_argument("--device", default="cuda" if os.environ.get("BENCH_DEVICE") == "cuda" else "cpu")
    ap.add_argument("--skip-files", action="store_true", help="skip nnU-Net's multi-process predict_from_files")
    ap.add_argument("--no-phases", action="store_true", help="skip nnU-Net's phase-by-phase run (its time split)")
    ap.add_argument("--net-batches", default="", help="also time the network alone at these batch sizes (e.g. 1,8)")
    ap.add_argument("--target-shape", default="", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    net_batches = [int(b) for b in args.net_batches.split(",") if b.strip()]
    if args.child:
        target = [int(v) for v in args.target_shape.split(",") if v.strip()]
        res = child(args.child, args.case, args.model, args.out, args.tta == "1", args.device, net_batches, target)
        print("BENCH " + json.dumps(res), flush=True)
        return 0

    from amosseg.model_choice import choose_dir
    settings = _settings()
    choice = choose_dir(args.model, settings.checkpoint, settings.folds)
    # nnU-Net's predict_from_files takes one configuration folder; a Dataset folder, a zip, a cascade, an
    # ensemble or postprocessing is timed against nnU-Net's own functions in our runner (ENGINE=nnunet)
    one_folder = (choice.kind == "nnunet" and len(choice.members) == 1 and not choice.members[0].previous_stage
                  and not choice.postprocessing and choice.members[0].folder in ("", "."))
    composite = choice.kind != "torchscript" and not one_folder
    base_kind = "nnunet_engine" if composite else "nnunet_sequential"
    os.environ["BENCH_OURS_ENGINE"] = ours_engine(args.model)
    if composite:
        what = choice.kind_words if choice.kind == "nnunet" else "zip of nnUNetv2_export_model_to_zip"
        print(f"{args.model} is an nnU-Net {what}: timed against nnU-Net's own predictor, cascade "
              f"path, ensembling and postprocessing (ENGINE=nnunet, nnU-Net's functions in one process)")
    from rich.console import Console
    from rich.table import Table
    console = Console() if sys.stdout.isatty() else Console(width=160)  # logs: wide enough for the table
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        case = args.case
        if case is None:
            from amoskit.data.samples import make_samples
            case = make_samples(tmp / "samples", 1)[0]
        single = tmp / "in"
        single.mkdir()
        (single / case.name).symlink_to(case.resolve())
        case = single / case.name
        ttas = {"0": [False], "1": [True], "both": [False, True]}[args.tta]
        kinds = list(COMPOSITE_CONTENDERS) if composite else [
            k for k in CONTENDERS if not (args.skip_files and k == "nnunet_files")
            and not (args.no_phases and k == "nnunet_phases")]
        summary = {}
        for tta in ttas:
            results = {}
            for kind in kinds:
                console.print(f"running {kind} (TTA {'on' if tta else 'off'}) ...")
                results[kind] = spawn(kind, case, args.model, tmp / f"out-{kind}-{tta}", tta, args.device)
            ours = results["ours"]
            if not composite and os.environ["BENCH_OURS_ENGINE"] == "fast":  # our network, timed alone
                console.print(f"running the network alone on the same tiles (TTA {'on' if tta else 'off'}) ...")
                ours["network_only"] = spawn("network_alone", case, args.model, tmp / "unused", tta, args.device,
                                             list(dict.fromkeys([ours["batch"], *net_batches])),
                                             ours["target_shape"])["runs"]
            agree, dice = agreement(tmp / f"out-ours-{tta}" / case.name,
                                    tmp / f"out-{base_kind}-{tta}" / case.name)
            summary[f"tta_{int(tta)}"] = {"results": results, "agreement": agree, "dice": dice}
    table = Table(title=f"inference benchmark: {case.name}, {args.device}, model {args.model.name}")
    for col in ("TTA", "contender", "wall s", "startup", "read", "prep", "network", "export", "write", "peak RSS GiB",
                "peak GPU GiB", f"{base_kind} / this"):
        table.add_column(col, justify="right")
    for key, res in summary.items():
        tta, results = key == "tta_1", res["results"]
        base = results[base_kind]["wall"]
        for kind, r in results.items():
            fmt = lambda k: "-" if r.get(k) is None else f"{r[k]:.2f}"  # noqa: E731
            table.add_row("on" if tta else "off", kind, f"{r['wall']:.2f}", *(fmt(k) for k in
                          ("startup", "read", "preprocess", "network", "export", "write")), f"{r['peak_rss_gib']:.2f}",
                          fmt("peak_gpu_gib"), f"{base / r['wall']:.2f}x")
        ours = results["ours"]
        if not ours.get("network_only"):
            table.add_section()
            continue
        nets = ", ".join(f"batch {n['batch']}: {n['net_only']:.2f} s + {n['warm_up']:.2f} s warm-up"
                         for n in ours["network_only"])
        console.print(f"TTA {'on' if tta else 'off'}: sliding window {ours['network']:.2f} s vs the network "
                      f"alone on its {ours['network_only'][0]['tiles']} tiles ({nets}); ratios and agreement: "
                      f"the targets table below")
        table.add_section()
    console.print(table)
    targets = Table(title=f"against the issue's targets ({args.device})")
    for col in ("measure", "value", "target", "met"):
        targets.add_column(col, justify="right" if col != "measure" else "left")
    for what, value, bar, met in verdicts(summary, args.device, base_kind):
        targets.add_row(what, value, bar or "-", "-" if met is None else ("yes" if met else "NO"))
    console.print(targets)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
