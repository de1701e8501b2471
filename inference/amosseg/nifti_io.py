"""Read a case into a float32 array with its geometry, write a label map without half-files.

Why: inputs come from strangers (odd pixel types, 4D, NaN, broken gzip); every refusal must be one
line naming the fix, and outputs must never be left half-written under their final name.
"""
from __future__ import annotations

import errno
import gzip
import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk


class CaseError(RuntimeError):
    """This case cannot be segmented; the message says why and what to do."""


@dataclass
class Case:
    name: str
    array: np.ndarray  # float32, (z, y, x) as SimpleITK returns it
    spacing: tuple  # (z, y, x) mm, matching `array`
    reference: sitk.Image  # a 3D header-only reference whose geometry the output copies
    warnings: list


_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64


def check_file(path: Path) -> dict:
    """Prove the gzip stream is complete (CRC, length) and the NIfTI header sane, before ITK reads it.

    Why: ITK silently zero-fills a truncated gzip, coerces a sheared sform to a rotation and reads
    NaN/inf as 0, which would turn a broken input into a wrong segmentation instead of an error or
    a warning. Returns {"nonfinite": voxels that are NaN/inf (float images), "dims": header dims}.
    """
    if path.stat().st_size == 0:
        raise CaseError("cannot read as NIfTI: file is empty (0 bytes); copy the case again")
    nonfinite = 0
    try:
        with gzip.open(path, "rb") as fh:
            header = fh.read(544)
            info = _parse_header(header)
            # float voxels are counted for NaN/inf as they stream by; `carry` holds the bytes not
            # yet counted (those read with the header, then a partial item between chunks)
            carry = header[info["vox_offset"]:] if info["float"] else b""
            while True:
                chunk = fh.read(1 << 22)
                if info["float"]:
                    buf = carry + chunk
                    usable = len(buf) - len(buf) % info["itemsize"]
                    arr = np.frombuffer(buf[:usable], dtype=info["dtype"])
                    nonfinite += int(arr.size - np.isfinite(arr).sum())
                    carry = buf[usable:]
                if not chunk:
                    break
    except (OSError, EOFError, zlib.error) as exc:
        what = "truncated" if isinstance(exc, EOFError) else f"not a valid gzip stream ({exc})"
        raise CaseError(f"cannot read as NIfTI: file is {what}; re-export it as a valid .nii.gz") from None
    return {"nonfinite": nonfinite, "dims": info["dims"]}


def _parse_header(header: bytes) -> dict:
    sizeof = struct.unpack("<i", header[:4])[0] if len(header) >= 4 else 0
    endian = "<" if sizeof in (348, 540) else ">"
    sizeof = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
    if sizeof not in (348, 540) or len(header) < sizeof:
        raise CaseError("cannot read as NIfTI: no NIfTI header inside the gzip; re-export it as a valid .nii.gz")
    if sizeof == 348:
        dims = struct.unpack(endian + "8h", header[40:56])
        datatype = struct.unpack(endian + "h", header[70:72])[0]
        vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
        sform_code = struct.unpack(endian + "h", header[254:256])[0]
        srow = np.array(struct.unpack(endian + "12f", header[280:328]), dtype=np.float64).reshape(3, 4)[:, :3]
    else:
        dims = struct.unpack(endian + "8q", header[16:80])
        datatype = struct.unpack(endian + "h", header[12:14])[0]
        vox_offset = int(struct.unpack(endian + "q", header[168:176])[0])
        sform_code = struct.unpack(endian + "i", header[348:352])[0]
        srow = np.array(struct.unpack(endian + "12d", header[400:496]), dtype=np.float64).reshape(3, 4)[:, :3]
    if sform_code > 0:
        norms = np.linalg.norm(srow, axis=0)
        if np.all(norms > 0):
            cols = srow / norms
            if np.abs(cols.T @ cols - np.eye(3)).max() > 1e-3:
                raise CaseError("direction matrix is not orthonormal (sheared sform); SimpleITK cannot represent "
                                "it: resample the image to an orthonormal grid")
    code = _FLOAT_TYPES.get(datatype)
    dtype = np.dtype(endian + code) if code else None
    return {"dims": tuple(int(d) for d in dims[1:1 + max(0, min(int(dims[0]), 7))]), "float": dtype is not None, "dtype": dtype, "itemsize": dtype.itemsize if dtype else 1,
            "vox_offset": max(vox_offset, sizeof)}


def read_case(path: Path) -> Case:
    facts = check_file(path)
    nonfinite = facts["nonfinite"]
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((l for l in first if "ERROR" in l or "error" in l), first[-1] if first else "")
        raise CaseError(f"cannot read as NIfTI ({detail.strip()[:160]}); re-export it as a valid .nii.gz") from None
    warnings = [f"{nonfinite} non-finite voxels (NaN/inf) read as 0"] if nonfinite else []
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(f"vector pixel type ({img.GetNumberOfComponentsPerPixel()} components); "
                        "provide a single-channel 3D scalar image")
    dim = img.GetDimension()
    one_volume_4d = dim == 3 and facts["dims"][3:] == (1,)     # ITK already dropped the 4th axis
    if dim == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
        one_volume_4d = True
    elif dim != 3:
        raise CaseError(f"{dim}D image of size {img.GetSize()}; provide a 3D volume (or 4D with one time point)")
    if one_volume_4d:
        warnings.append("4D image with a last dimension of 1 segmented as 3D")
    direction = np.array(img.GetDirection()).reshape(3, 3)
    if not np.allclose(direction @ direction.T, np.eye(3), atol=1e-4):
        raise CaseError("direction matrix is not orthonormal (sheared); resample it to an orthonormal grid")
    spacing = img.GetSpacing()
    if min(spacing) <= 0 or not np.all(np.isfinite(spacing)):
        raise CaseError(f"invalid spacing {spacing}; fix the header")
    array = sitk.GetArrayFromImage(img).astype(np.float32, copy=False)
    if not array.flags.writeable:
        array = array.copy()
    finite = np.isfinite(array)
    if not finite.all():
        n_bad = int(array.size - finite.sum())
        fill = float(array[finite].min()) if finite.any() else 0.0
        array[~finite] = fill
        warnings.append(f"{n_bad} non-finite voxels replaced by {fill:g}")
    reference = sitk.Image([1, 1, 1], sitk.sitkUInt8)  # geometry only: the output is built from array
    reference.SetOrigin(img.GetOrigin())
    reference.SetSpacing(spacing)
    reference.SetDirection(img.GetDirection())
    return Case(path.name, array, tuple(spacing[::-1]), reference, warnings)


def probe_header(path: Path):
    """(size (x, y, z[, t]), spacing) from the header alone, for the memory check before a full read;
    (None, None) when the header cannot be read (the full read then reports why)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None, None
    return tuple(reader.GetSize()), tuple(reader.GetSpacing())


def write_label(labels: np.ndarray, reference: sitk.Image, out_path: Path) -> None:
    """Write uint8 labels with the input's exact geometry under a hidden name, then rename."""
    out = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.uint8))
    out.SetOrigin(reference.GetOrigin())
    out.SetSpacing(reference.GetSpacing())
    out.SetDirection(reference.GetDirection())
    write_atomically(out_path, lambda tmp: sitk.WriteImage(out, str(tmp), useCompression=True))


def write_atomically(out_path: Path, write) -> None:
    """`write(tmp)` writes a .nii.gz at a hidden name beside out_path; proven whole, it becomes out_path."""
    # ITK picks its writer by a lower-case extension, and the NIfTI library rewrites a name holding
    # ".nii", ".NII", ".hdr" or ".img" anywhere in it (Scan.NII.nii.gz -> Scan.NII.GZ): the temporary
    # name owes nothing to the case's, and the final rename keeps the input's exact name
    tmp = out_path.parent / f".partial-{os.getpid()}-{uuid.uuid4().hex}.nii.gz"
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        try:  # ITK reports a short write (full disk) on stderr only: prove the file is whole
            check_file(tmp)
        except CaseError:
            raise OSError(errno.ENOSPC, f"{out_path.name} was written incompletely (disk full?)") from None
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
