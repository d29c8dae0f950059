"""Stage CIFAR-10 for the device machine: xz parts small enough to travel, one per call.

    .venv/bin/python scripts/stage_cifar10.py [--src ../shared/data/cifar10] [--stage .stage]
                                              [--part-mib MiB] [--preset 6]
    .venv/bin/python scripts/stage_cifar10.py --plan {cifar10,runs} [--stage .stage]
    python3 scripts/stage_cifar10.py --unpack [--stage .stage] [--dest .stage/data]
    .venv/bin/python scripts/stage_cifar10.py --unpack-runs runs/experiments/paper [--stage .stage]

The device tool sends only the working tree (at most 64 MiB, the repository included, ignored
paths only when a call's ``carry`` names them) and ``../shared`` stays behind, while CIFAR-10 is
about 186 MB (the five training batches, ``test_batch``, ``test_batch_lossless_1k``,
``batches.meta``). Packing writes them as one tar, xz-compressed and split into parts of at most
``--part-mib`` MiB, into the ignored folder ``.stage/``: ``cifar10.tar.xz.001``, ``.002``, … and
``cifar10.manifest.json`` (the sha256 and size of every part and of every file). A batch's
pixels travel as a lossless WebP mosaic beside the rest of its pickle: 97.6 MiB in all where xz
alone made 135.5, a device call less. By default the parts are sized to as few calls as fit
beside the tree that travels with every call (measured with git: tracked files and untracked
ones it does not ignore) and the wheels of ``.stage/wheels`` (the first call brings pydantic's,
scripts/device_paper.py ``--fetch-wheels``), then cut evenly over those calls, so that each
keeps room for a tree that grows before the calls. A warm device machine keeps the ignored files
earlier calls brought, so consecutive calls each carry the manifest and what fits; packing, and
``--plan`` for parts already here (``runs``: the runs an earlier session brought back), print
those calls' ``carry`` lists (docs/device.md gives the sequence). Unpacking, there, verifies
every part against the manifest (a missing or damaged part is named), reassembles the tar,
extracts it into ``<dest>/cifar10/`` — the layout :func:`tgd_core.data.datasets.load_cifar10`
reads —, puts every batch together again and checks every file's sha256, and prints the
``TGD_DATA_DIR`` to export (:func:`tgd_core.core.paths.data_dir`). The standard library, NumPy
and Pillow (the device image has both; the runs' parts need neither) and the project's error
type only: it runs under the device's ``python3``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import pickle
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tgd_core.core.errors import TGDError  # noqa: E402 (pure Python: no torch)

FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "test_batch_lossless_1k", "batches.meta")
NAME = "cifar10"  # the parts are cifar10.tar.xz.NNN, the manifest cifar10.manifest.json
MiB = 2**20
CHUNK = 4 * MiB
DEVICE_TREE_LIMIT = 64 * MiB  # what one device call takes: the tree and its carried paths
MARGIN = MiB  # for files written between planning and the call (logs, caches)
MANIFEST_ROOM = 64 * 1024  # a part and its manifest (a few KiB) travel together
LATE_WHEELS = ("plotly-", "narwhals-")  # only the recipe's final report needs them: any call
ROW_BYTES = 3 * 32 * 32  # one CIFAR image in a batch's ``data``: R, G and B planes
MOSAIC_COLUMNS = 100  # images a row in a batch's WebP mosaic (3,200 px; WebP allows 16,383)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class PartWriter(io.RawIOBase):
    """A write-only stream cut into files ``<stem>.001``, ``.002``, … of ``part_bytes`` each
    (the last one shorter)."""

    def __init__(self, stem: Path, part_bytes: int) -> None:
        self.stem, self.part_bytes = stem, part_bytes
        self.paths: list[Path] = []
        self.file = None
        self.room = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        while view:
            if self.room == 0:
                self._next_part()
            n = min(self.room, len(view))
            self.file.write(view[:n])
            view, self.room = view[n:], self.room - n
        return len(data)

    def _next_part(self) -> None:
        if self.file is not None:
            self.file.close()
        self.paths.append(self.stem.with_name(f"{self.stem.name}.{len(self.paths) + 1:03d}"))
        self.file, self.room = open(self.paths[-1], "wb"), self.part_bytes

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        super().close()


class PartReader(io.RawIOBase):
    """The concatenation of ``paths``, read as one stream."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = iter(paths)
        self.file = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self.file is None:
                path = next(self.paths, None)
                if path is None:
                    return 0
                self.file = open(path, "rb")
            n = self.file.readinto(buffer)
            if n:
                return n
            self.file.close()
            self.file = None


def pixel_span(data: bytes) -> tuple[int, int] | None:
    """Where a python-version CIFAR batch keeps its images: the byte offset and the number of
    rows of its ``data`` array (uint8, N × 3072) stored as one run of bytes in the pickle, or
    None for any other file."""
    import numpy as np

    try:
        batch = pickle.loads(data, encoding="latin1")
        rows = np.ascontiguousarray(batch["data"])
    except Exception:  # noqa: BLE001 - whatever it is, it is not a batch: packed as it is
        return None
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != ROW_BYTES:
        return None
    offset = data.find(rows.tobytes())
    return None if offset < 0 else (offset, len(rows))


def encode_pixels(pixels: bytes, rows: int) -> bytes:
    """CIFAR rows (each R, G and B planes of 32 × 32) as one lossless WebP mosaic of
    :data:`MOSAIC_COLUMNS` images a row, the last row padded with black."""
    import numpy as np
    from PIL import Image

    grid_rows = -(-rows // MOSAIC_COLUMNS)
    images = np.zeros((grid_rows * MOSAIC_COLUMNS, 32, 32, 3), np.uint8)
    images[:rows] = np.frombuffer(pixels, np.uint8).reshape(rows, 3, 32, 32).transpose(0, 2, 3, 1)
    mosaic = images.reshape(grid_rows, MOSAIC_COLUMNS, 32, 32, 3).transpose(0, 2, 1, 3, 4)
    out = io.BytesIO()
    Image.fromarray(mosaic.reshape(grid_rows * 32, MOSAIC_COLUMNS * 32, 3)).save(
        out, "WEBP", lossless=True, quality=100, method=4)
    return out.getvalue()


def decode_pixels(webp: bytes, rows: int) -> bytes:
    """The inverse of :func:`encode_pixels`."""
    import numpy as np
    from PIL import Image

    mosaic = np.asarray(Image.open(io.BytesIO(webp)).convert("RGB"))
    grid_rows = mosaic.shape[0] // 32
    images = mosaic.reshape(grid_rows, 32, MOSAIC_COLUMNS, 32, 3).transpose(0, 2, 1, 3, 4)
    images = images.reshape(-1, 32, 32, 3)[:rows]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).tobytes()


def archive_members(path: Path, name: str, images: bool) -> tuple[list[tuple[str, bytes]], dict]:
    """The tar members that carry the file ``path`` (archived as ``name``) and its manifest
    entry: the file itself, or, for a CIFAR batch when ``images``, ``<name>.frame`` (the file
    without its pixels) and ``<name>.webp`` (the pixels, :func:`encode_pixels`; a quarter
    smaller than xz makes them, so the data takes a device call less)."""
    data = path.read_bytes()
    entry = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    span = pixel_span(data) if images else None
    if span is None:
        return [(name, data)], entry
    offset, rows = span
    end = offset + rows * ROW_BYTES
    entry["pixels"] = {"offset": offset, "rows": rows, "codec": "webp-lossless"}
    return [(f"{name}.frame", data[:offset] + data[end:]),
            (f"{name}.webp", encode_pixels(data[offset:end], rows))], entry


def pack_files(root: Path, names: list[str], stage: Path, name: str, part_bytes: int,
               preset: int = 6, images: bool = False) -> dict:
    """Write ``names`` (paths relative to ``root``) as one tar, xz-compressed, in parts
    ``<stage>/<name>.tar.xz.NNN`` of ``part_bytes`` at most, and ``<name>.manifest.json``
    with the size and sha256 of every part and file; returns the manifest. With ``images``
    the pixels of CIFAR batches travel as lossless WebP (:func:`archive_members`)."""
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise TGDError(f"{root}: missing file(s) {missing}")
    if part_bytes < 1:
        raise TGDError(f"part size must be positive, got {part_bytes} bytes")
    stage.mkdir(parents=True, exist_ok=True)
    for old in stage.glob(f"{name}.tar.xz.*"):
        old.unlink()
    files = {}
    parts = PartWriter(stage / f"{name}.tar.xz", part_bytes)
    with parts, lzma.LZMAFile(parts, "w", preset=preset) as xz, \
            tarfile.open(fileobj=xz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for n in names:
            carried, files[n] = archive_members(root / n, n, images)
            for arcname, data in carried:
                info = tarfile.TarInfo(arcname)
                info.size, info.mode = len(data), 0o644
                info.mtime = int((root / n).stat().st_mtime)
                tar.addfile(info, io.BytesIO(data))
    manifest = {"archive": f"{name}.tar.xz", "files": files,
                "parts": [{"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_of(p)}
                          for p in parts.paths]}
    (stage / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def pack(src: Path, stage: Path, part_bytes: int, preset: int = 6) -> dict:
    """The CIFAR-10 files of ``src`` as parts ``cifar10.tar.xz.NNN`` in ``stage``."""
    if not all((src / n).is_file() for n in FILES):
        missing = [n for n in FILES if not (src / n).is_file()]
        raise TGDError(f"{src}: missing CIFAR-10 file(s) {missing}")
    return pack_files(src, list(FILES), stage, NAME, part_bytes, preset, images=True)


def read_manifest(stage: Path, name: str = "cifar10") -> dict:
    path = stage / f"{name}.manifest.json"
    try:
        manifest = json.loads(path.read_text())
        parts, files = manifest["parts"], manifest["files"]
        assert isinstance(parts, list) and isinstance(files, dict)
        for part in parts:
            assert set(part) == {"name", "bytes", "sha256"} and "/" not in part["name"]
    except FileNotFoundError:
        raise TGDError(f"{path}: missing (carry it with every part)") from None
    except (ValueError, KeyError, TypeError, AssertionError):
        raise TGDError(f"{path}: not a staging manifest") from None
    return manifest


def verified_parts(stage: Path, manifest: dict) -> list[Path]:
    """The parts, once each is present with its manifest size and sha256."""
    paths = [stage / part["name"] for part in manifest["parts"]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise TGDError(f"{stage}: part(s) {missing} of {len(paths)} not here yet; carry "
                       "them in the next calls while the machine is warm")
    for part, path in zip(manifest["parts"], paths, strict=True):
        if path.stat().st_size != part["bytes"] or sha256_of(path) != part["sha256"]:
            raise TGDError(f"{path}: damaged (size or sha256 differs from the manifest)")
    return paths


def members(tar: tarfile.TarFile, wanted: set[str]) -> Iterator[tarfile.TarInfo]:
    """The archive's members, each a regular file the manifest lists."""
    for info in tar:
        if not info.isfile() or info.name not in wanted:
            raise TGDError(f"archive member {info.name!r} is not a file of the manifest")
        yield info


def carried_names(files: dict) -> set[str]:
    """The tar members that carry the manifest's ``files`` (:func:`archive_members`)."""
    return {m for n, meta in files.items()
            for m in ([f"{n}.frame", f"{n}.webp"] if "pixels" in meta else [n])}


def unpack_files(stage: Path, name: str, dest: Path) -> dict:
    """Verify the parts of ``name`` in ``stage`` and extract their files under ``dest`` (a
    CIFAR batch put together again from its frame and its WebP pixels), each then checked
    against its sha256; returns the manifest."""
    manifest = read_manifest(stage, name)
    paths = verified_parts(stage, manifest)
    dest.mkdir(parents=True, exist_ok=True)
    files, frames = manifest["files"], {}
    with lzma.LZMAFile(io.BufferedReader(PartReader(paths), CHUNK)) as xz, \
            tarfile.open(fileobj=xz, mode="r|") as tar:
        for info in members(tar, carried_names(files)):
            stem, suffix = info.name.rpartition(".")[::2]
            if info.name in files:
                tar.extract(info, dest, filter="data")
            elif suffix == "frame":
                frames[stem] = tar.extractfile(info).read()
            else:
                write_batch(dest / stem, frames.pop(stem, b""), tar.extractfile(info).read(),
                            files[stem]["pixels"])
    for n, meta in files.items():
        path = dest / n
        if not path.is_file() or sha256_of(path) != meta["sha256"]:
            raise TGDError(f"{path}: missing or its sha256 differs from the manifest")
    return manifest


def write_batch(path: Path, frame: bytes, webp: bytes, pixels: dict) -> None:
    """A CIFAR batch again: its frame with the WebP's pixels put back at their offset."""
    try:
        data = decode_pixels(webp, pixels["rows"])
    except Exception as exc:  # noqa: BLE001 - a decoder's error, named in one line
        raise TGDError(f"{path.name}: cannot decode its pixels ({exc})") from None
    offset = pixels["offset"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(frame[:offset] + data + frame[offset:])


def unpack(stage: Path, dest: Path) -> Path:
    """Verify, reassemble and extract the CIFAR-10 parts into ``dest/cifar10``; returns it."""
    unpack_files(stage, NAME, dest / "cifar10")
    return dest / "cifar10"


def resplit(stage: Path, name: str, part_bytes: int) -> dict:
    """Cut the staged parts of ``name`` again, ``part_bytes`` each (the same byte stream, not
    compressed again); returns the rewritten manifest."""
    manifest = read_manifest(stage, name)
    old = verified_parts(stage, manifest)
    fresh = PartWriter(stage / f".{name}.tar.xz", part_bytes)
    with fresh, io.BufferedReader(PartReader(old), CHUNK) as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            fresh.write(block)
    for path in old:
        path.unlink()
    manifest["parts"] = []
    for path in fresh.paths:
        final = path.with_name(path.name[1:])
        path.rename(final)
        manifest["parts"].append({"name": final.name, "bytes": final.stat().st_size,
                                  "sha256": sha256_of(final)})
    (stage / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def balance(stage: Path, room: int) -> dict:
    """The CIFAR-10 parts cut as evenly as the calls that carry them allow: as many calls as
    the largest parts need, each with room to spare for a tree that grows before the calls (a
    commit) — the first call's wheels counted, the others' riding where there is room."""
    manifest = read_manifest(stage, NAME)
    calls = len(plan(stage, [NAME], room))
    first, late = wheels(stage)
    data = sum(part["bytes"] for part in manifest["parts"])
    carried = data + sum(w.stat().st_size for w in [*first, *late])
    even = -(-carried // calls)
    if even >= manifest["parts"][0]["bytes"]:
        return manifest
    balanced = resplit(stage, NAME, even)
    if len(plan(stage, [NAME], room)) > calls:  # the wheels found no room: cut as before
        return resplit(stage, NAME, manifest["parts"][0]["bytes"])
    return balanced


def travelling_bytes(root: Path) -> int:
    """Bytes of the working tree every device call sends: the files git tracks and the
    untracked ones it does not ignore."""
    try:
        listing = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached",
                                  "--others", "--exclude-standard"],
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise TGDError(f"{root}: cannot list the working tree with git ({exc})") from None
    names = {name for name in listing.decode().split("\0") if name}
    return sum((root / n).stat().st_size for n in names if (root / n).is_file())


def carry_room(root: Path) -> int:
    """Bytes one device call may carry beside the working tree of ``root``."""
    tree = travelling_bytes(root)
    room = DEVICE_TREE_LIMIT - tree - MARGIN
    if room < MiB:
        raise TGDError(f"{root}: the working tree is {tree / MiB:.1f} MiB, leaving no room "
                       f"to carry data within the device's {DEVICE_TREE_LIMIT // MiB} MiB")
    return room


def carry_plan(parts: Sequence[Path], manifest: Path, room: int, first: Sequence[Path] = (),
               anywhere: Sequence[Path] = ()) -> list[list[Path]]:
    """The calls, in order, that bring ``parts`` to a warm device machine within ``room``
    bytes each: every call with parts carries ``manifest`` and as many parts as fit, the first
    call ``first`` as well; each of ``anywhere`` goes with the first call that has room for
    it, else in a call of its own at the end."""
    def size(paths):
        return sum(p.stat().st_size for p in paths)

    calls = [[manifest, *first]]
    for part in parts:
        if size([manifest, part]) > room:
            raise TGDError(f"{part}: {size([part]) / MiB:.1f} MiB does not fit in one call "
                           f"beside the tree ({room / MiB:.1f} MiB of room): pack smaller parts")
        if size(calls[-1]) + size([part]) > room:
            calls.append([manifest])
        calls[-1].append(part)
    for extra in anywhere:
        if size([extra]) > room:
            raise TGDError(f"{extra}: {size([extra]) / MiB:.1f} MiB does not fit in one call")
        home = next((c for c in calls if size(c) + size([extra]) <= room), None)
        if home is None:
            calls.append(home := [])
        home.append(extra)
    return calls


def wheels(stage: Path) -> tuple[list[Path], list[Path]]:
    """The carried wheels of ``stage/wheels``: those the first call needs, those any call may
    bring (:data:`LATE_WHEELS`)."""
    found = sorted((stage / "wheels").glob("*.whl"))
    late = [w for w in found if w.name.startswith(LATE_WHEELS)]
    return [w for w in found if w not in late], late


def staged_parts(stage: Path, name: str) -> list[Path]:
    """The parts of ``name`` its manifest in ``stage`` lists."""
    return [stage / part["name"] for part in read_manifest(stage, name)["parts"]]


def plan(stage: Path, names: Sequence[str], room: int) -> list[list[Path]]:
    """The carry lists that bring the staged parts of ``names`` (each with its manifest) to a
    fresh machine: the first name's parts in order (with the wheels for CIFAR-10, the first
    thing a fresh machine needs), the others' in the room left over, then in calls of their
    own."""
    first, *others = names
    wheels_first, late = wheels(stage) if first == NAME else ([], [])
    extras = [path for name in others
              for path in (stage / f"{name}.manifest.json", *staged_parts(stage, name))]
    return carry_plan(staged_parts(stage, first), stage / f"{first}.manifest.json", room,
                      wheels_first, [*late, *extras])


def print_plan(calls: list[list[Path]]) -> None:
    for i, call in enumerate(calls, 1):
        carry = [str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT)
                 else str(p) for p in call]
        mib = sum(p.stat().st_size for p in call) / MiB
        print(f"call {i} ({mib:.1f} MiB): carry {json.dumps(carry)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unpack", action="store_true", help="verify and extract the parts")
    parser.add_argument("--unpack-runs", type=Path, metavar="DIR",
                        help="verify and extract the runs parts a device call brought back "
                             "(scripts/device_paper.py) into DIR")
    parser.add_argument("--src", type=Path, default=ROOT.parent / "shared/data/cifar10")
    parser.add_argument("--stage", type=Path, default=ROOT / ".stage")
    parser.add_argument("--dest", type=Path, default=ROOT / ".stage/data",
                        help="unpack: TGD_DATA_DIR (the files go to DEST/cifar10)")
    parser.add_argument("--part-mib", type=float,
                        help="part size (default: what fits in one call beside the tree and "
                             "the first call's wheels)")
    parser.add_argument("--preset", type=int, default=6, choices=range(10))
    parser.add_argument("--plan", nargs="+", choices=(NAME, "runs"),
                        help="print the calls' carry lists for the parts already staged: "
                             "those of the first, then the others' in the room left over")
    args = parser.parse_args(argv)
    try:
        if args.unpack:
            folder = unpack(args.stage, args.dest)
            print(f"unpacked {len(FILES)} files into {folder}; "
                  f"export TGD_DATA_DIR={folder.parent.resolve()}")
            return 0
        if args.unpack_runs:
            manifest = unpack_files(args.stage, "runs", args.unpack_runs)
            print(f"unpacked {len(manifest['files'])} files into {args.unpack_runs}; "
                  f"not brought back: {manifest.get('left_out') or 'none'}")
            return 0
        room = carry_room(ROOT)
        if args.plan:
            print_plan(plan(args.stage, args.plan, room))
            return 0
        part_bytes = (int(args.part_mib * MiB) if args.part_mib else
                      room - sum(w.stat().st_size for w in wheels(args.stage)[0])
                      - MANIFEST_ROOM)
        manifest = pack(args.src, args.stage, part_bytes, args.preset)
        if not args.part_mib:
            manifest = balance(args.stage, room)
        for part in manifest["parts"]:
            print(f"{args.stage / part['name']}: {part['bytes'] / MiB:.1f} MiB")
        print(f"{args.stage / (NAME + '.manifest.json')}: {len(manifest['parts'])} parts")
        print_plan(plan(args.stage, [NAME], room))
    except (TGDError, OSError, lzma.LZMAError, tarfile.TarError) as exc:
        print(f"stage_cifar10: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
