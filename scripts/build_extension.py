#!/usr/bin/env python3
"""Build the Blender extension zips (one per platform) without Blender.

    python scripts/build_extension.py [--platforms linux-x64 windows-x64 macos-arm64]
                                      [--out dist] [--wheel-cache build/wheels]

Steps:

1. stage ``timar_blender/`` (without ``__pycache__``) into ``build/stage/``;
2. download the unmodified PyPI wheels the add-on needs, for every platform and for both Python
   versions Blender embeds (3.11: Blender 4.2-5.0, 3.13: Blender 5.1+), with
   ``pip download --only-binary=:all: --no-deps`` into a cache (a second run makes no pip call);
3. for each platform: put that platform's wheels into ``build/stage/wheels/``, write the stage's
   ``blender_manifest.toml`` (the repo-root manifest plus ``platforms`` and ``wheels``), build it
   with Blender's own ``blender_ext.py build --split-platforms`` and check the zip with
   ``blender_ext.py validate``.

Each platform is built from its own manifest (rather than one manifest listing every wheel) so that
a zip never holds two wheels of one distribution: ``sounddevice`` is a pure ``py3-none-any`` wheel on
Linux (PortAudio comes from the system) but a per-platform wheel bundling PortAudio on Windows and
macOS, and ``--split-platforms`` copies ``any`` wheels into every platform's zip.

numpy is never bundled: Blender ships its own. Only the standard library is used (plus pip, run as
``sys.executable -m pip``); ``blender_ext.py`` is found inside the installed ``bpy`` wheel (or given
with ``--blender-ext``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "timar_blender"
ROOT_MANIFEST = ROOT / "blender_manifest.toml"
MANIFEST_NAME = "blender_manifest.toml"

# Python versions embedded by the Blender releases the manifest allows (4.2.0 <= version < 5.3.0).
PYTHON_VERSIONS = ("311", "313")

# Blender platform -> wheel platform tags pip may pick (``--platform`` may be given several times).
# Linux: Blender 4.2+ needs glibc 2.28 (VFX reference platform 2024), so nothing newer than 2_28.
# macOS: pip expands ``macosx_14_0_arm64`` to every older macOS version and to ``universal2``;
# onnxruntime 1.31 only has ``macosx_14_0_arm64`` wheels, which sets the macOS floor at 14.
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "linux-x64": (
        *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)),
        "manylinux2014_x86_64",
    ),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_14_0_arm64", "macosx_11_0_arm64"),
}

# What the add-on imports at run time, pinned (the versions of requirements.txt / the dev venv).
# Measured in a venv holding only numpy<2 plus these wheels (--no-deps): onnxruntime builds and runs
# the exported graphs without its declared flatbuffers/packaging/protobuf/sympy (those serve its
# tools and optional extras), so they are left out; soundfile 0.14 imports typing_extensions at
# import time (Blender does not ship it), so it is in.
REQUIREMENTS: tuple[tuple[str, str, str], ...] = (
    ("onnxruntime", "1.31.1", "ONNX inference (compiled per platform and Python)"),
    ("soundfile", "0.14.0", "WAV/FLAC reading; its per-platform py3 wheels bundle libsndfile"),
    ("typing_extensions", "4.16.0", "imported by soundfile 0.14 at import time (pure)"),
    ("cffi", "2.1.1", "soundfile/sounddevice call C through cffi (compiled per Python)"),
    ("pycparser", "3.12", "cffi's declared dependency (pure; tiny)"),
    ("soxr", "1.1.0", "resampling to 16 kHz (cp311 wheel; cp312-abi3 wheel for 3.13)"),
    ("sounddevice", "0.5.6", "microphone capture; Windows/macOS wheels bundle PortAudio, Linux uses the system's"),
)
NEVER_BUNDLE = ("numpy",)
# Parts of timar_blender/ for pipelines only, never in the extension: the Ray farm (Ray is not
# bundled, and an extension must not start a cluster inside Blender) and the pip console script
# that reaches it.
PIPELINE_ONLY = ("farm", "cli.py")

INDEX_NAME = "resolved.json"  # in the wheel cache: (requirement, platform, python) -> wheel file name


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(msg, flush=True)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_dist_name(filename: str) -> str:
    return normalize(filename.split("-", 1)[0])


def human(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


# ---------------------------------------------------------------------------------------------
# blender_ext.py


def find_blender_ext(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise BuildError(f"--blender-ext {path} does not exist")
        return path
    spec = importlib.util.find_spec("bpy")  # locates the package without importing (starting) bpy
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        hits = sorted(Path(root).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    raise BuildError(
        "blender_ext.py not found: install the bpy wheel in this Python (pip install bpy==5.0.1) "
        "or pass --blender-ext PATH (it is scripts/addons_core/bl_pkg/cli/blender_ext.py in a Blender install)"
    )


def run_blender_ext(blender_ext: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(blender_ext), *args], capture_output=True, text=True, check=False)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "FATAL_ERROR" in out:
        raise BuildError(f"blender_ext.py {args[0]} failed (exit {proc.returncode}):\n{out}")
    return out


# ---------------------------------------------------------------------------------------------
# wheels


@dataclass(frozen=True)
class WheelKey:
    name: str
    version: str
    platform: str
    python: str

    @property
    def text(self) -> str:
        return f"{self.name}=={self.version} {self.platform} cp{self.python}"


def _pip_download(reqs: list[str], platform: str, python: str, dest: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--only-binary=:all:",
        "--no-deps",
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--dest",
        str(dest),
    ]
    for tag in PLATFORM_TAGS[platform]:
        cmd += ["--platform", tag]
    return subprocess.run([*cmd, *reqs], capture_output=True, text=True, check=False)


def _pip_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.startswith("ERROR")]
    return "; ".join(lines) or (proc.stderr.strip().splitlines() or ["(no output)"])[-1]


def fetch_wheels(
    platforms: list[str], cache: Path, pythons: tuple[str, ...] = PYTHON_VERSIONS
) -> dict[str, list[Path]]:
    """Return, per Blender platform, the cached wheel files to bundle (downloading what is missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    index_path = cache / INDEX_NAME
    index: dict[str, str] = json.loads(index_path.read_text()) if index_path.exists() else {}
    result: dict[str, list[Path]] = {}
    for platform in platforms:
        files: list[Path] = []
        for python in pythons:
            keys = [WheelKey(name, version, platform, python) for name, version, _ in REQUIREMENTS]
            missing = [k for k in keys if not (k.text in index and (cache / index[k.text]).is_file())]
            if missing:
                log(
                    f"  pip download for {platform} / Python 3.{python[1:]}: "
                    + ", ".join(f"{k.name}=={k.version}" for k in missing)
                )
                _download_into_cache(missing, platform, python, cache, index)
                tmp_index = index_path.with_suffix(f".{os.getpid()}.tmp")
                tmp_index.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
                os.replace(tmp_index, index_path)  # atomic: a concurrent build never reads half a file
            files += [cache / index[k.text] for k in keys]
        unique = sorted(set(files), key=lambda p: p.name)
        bad = [p.name for p in unique if wheel_dist_name(p.name) in NEVER_BUNDLE]
        if bad:
            raise BuildError(f"refusing to bundle {bad} (Blender ships its own numpy)")
        result[platform] = unique
    return result


def _download_into_cache(
    missing: list[WheelKey], platform: str, python: str, cache: Path, index: dict[str, str]
) -> None:
    # A fresh folder per call: every file pip leaves in it is the wheel it chose for one requirement.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        tmp_dir = Path(tmp)
        proc = _pip_download([f"{k.name}=={k.version}" for k in missing], platform, python, tmp_dir)
        if proc.returncode != 0:
            failures = []
            for key in missing:  # find out which requirement(s) have no wheel
                one = _pip_download([f"{key.name}=={key.version}"], platform, python, tmp_dir)
                if one.returncode != 0:
                    failures.append(
                        f"  {key.name}=={key.version}: no wheel for {platform} "
                        f"({', '.join(PLATFORM_TAGS[platform])}) and CPython 3.{python[1:]}"
                        f" -- pip: {_pip_error(one)}"
                    )
            raise BuildError("missing wheels:\n" + "\n".join(failures or [f"  pip: {_pip_error(proc)}"]))
        got = {wheel_dist_name(p.name): p for p in tmp_dir.glob("*.whl")}
        for key in missing:
            wheel = got.get(normalize(key.name))
            if wheel is None:
                raise BuildError(f"pip reported success but left no wheel for {key.text} in {tmp_dir}")
            if f"-{key.version}-" not in wheel.name:
                raise BuildError(f"pip chose {wheel.name} for {key.text}")
            os.replace(wheel, cache / wheel.name)
            index[key.text] = wheel.name


# ---------------------------------------------------------------------------------------------
# stage + manifest


def _stage_ignore(folder: str, names: list[str]) -> set[str]:
    """Left out of the extension: caches, and the pipeline-only parts (``PIPELINE_ONLY``)."""
    ignored = set(shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")(folder, names))
    if Path(folder).resolve() == PACKAGE_DIR.resolve():
        ignored |= set(PIPELINE_ONLY) & set(names)
    return ignored


def stage_package(stage: Path) -> None:
    if not (PACKAGE_DIR / "__init__.py").is_file():
        raise BuildError(f"{PACKAGE_DIR}/__init__.py is missing")
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(PACKAGE_DIR, stage, ignore=_stage_ignore)
    (stage / "wheels").mkdir()


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string of printable text is a valid TOML basic string


def stage_manifest_text(root_text: str, platform: str, wheels: list[str]) -> str:
    """The repo-root manifest with ``platforms`` and ``wheels`` inserted before its first table."""
    data = tomllib.loads(root_text)
    for key in ("platforms", "wheels"):
        if key in data:
            raise BuildError(f"{ROOT_MANIFEST} must not set {key!r}: this script generates it")
    lines = root_text.splitlines(keepends=True)
    first_table = next((i for i, ln in enumerate(lines) if re.match(r"\s*\[", ln)), len(lines))
    generated = [
        "# Generated by scripts/build_extension.py\n",
        f"platforms = [{toml_str(platform)}]\n",
        "wheels = [\n",
        *(f"  {toml_str('./wheels/' + name)},\n" for name in wheels),
        "]\n",
        "\n",
    ]
    text = "".join(lines[:first_table] + generated + lines[first_table:])
    tomllib.loads(text)  # still valid TOML
    return text


def place_wheels(stage: Path, wheels: list[Path]) -> None:
    wheel_dir = stage / "wheels"
    shutil.rmtree(wheel_dir, ignore_errors=True)
    wheel_dir.mkdir()
    for wheel in wheels:
        target = wheel_dir / wheel.name
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)


def zip_name(manifest: dict, platform: str) -> str:
    return f"{manifest['id']}-{manifest['version']}-{platform.replace('-', '_')}.zip"


def check_zip(path: Path, wheels: list[Path]) -> None:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    got = sorted(n.rsplit("/", 1)[-1] for n in names if n.startswith("wheels/"))
    want = sorted(w.name for w in wheels)
    if got != want:
        raise BuildError(f"{path.name}: wheels {got} differ from the expected {want}")
    for needed in (MANIFEST_NAME, "__init__.py"):
        if needed not in names:
            raise BuildError(f"{path.name}: {needed} is not at the root of the zip")
    stray = [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    if stray:
        raise BuildError(f"{path.name}: holds {stray[:3]}")
    pipeline = [n for n in names if n.split("/", 1)[0] in PIPELINE_ONLY]
    if pipeline:
        raise BuildError(f"{path.name}: holds pipeline-only files {pipeline[:3]}")


# ---------------------------------------------------------------------------------------------


def build(
    platforms: list[str],
    out: Path,
    cache: Path,
    stage: Path,
    blender_ext: Path,
    pythons: tuple[str, ...] = PYTHON_VERSIONS,
) -> list[Path]:
    root_text = ROOT_MANIFEST.read_text(encoding="utf-8")
    manifest = tomllib.loads(root_text)

    log(f"[1/3] staging {PACKAGE_DIR.relative_to(ROOT)}/ -> {stage}")
    stage_package(stage)

    log(f"[2/3] wheels (cache {cache})")
    t0 = time.monotonic()
    wheels = fetch_wheels(platforms, cache, pythons)
    log(f"      ready in {time.monotonic() - t0:.1f} s")

    log(f"[3/3] building into {out}")
    out.mkdir(parents=True, exist_ok=True)
    zips = []
    for platform in platforms:
        place_wheels(stage, wheels[platform])
        text = stage_manifest_text(root_text, platform, [w.name for w in wheels[platform]])
        (stage / MANIFEST_NAME).write_text(text, encoding="utf-8")
        target = out / zip_name(manifest, platform)
        run_blender_ext(blender_ext, "build", "--source-dir", str(stage), "--output-dir", str(out), "--split-platforms")
        if not target.is_file():
            raise BuildError(f"blender_ext.py build did not produce {target}")
        run_blender_ext(blender_ext, "validate", str(target))
        check_zip(target, wheels[platform])
        log(f"      {target.name}  {human(target.stat().st_size)}  (validated)")
        zips.append(target)

    log("\nSummary")
    for platform in platforms:
        total = sum(w.stat().st_size for w in wheels[platform])
        log(f"  {platform}: {len(wheels[platform])} wheels, {human(total)}")
        for w in wheels[platform]:
            log(f"    {w.name}  {human(w.stat().st_size)}")
    for z in zips:
        log(f"  {z}  {human(z.stat().st_size)}")
    return zips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--platforms", nargs="+", default=list(PLATFORM_TAGS), choices=list(PLATFORM_TAGS))
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="where the zips go (default: dist)")
    ap.add_argument(
        "--wheel-cache",
        type=Path,
        default=ROOT / "build" / "wheels",
        help="downloaded wheels are kept here (default: build/wheels)",
    )
    ap.add_argument(
        "--stage",
        type=Path,
        default=ROOT / "build" / "stage",
        help="staging folder, emptied first (default: build/stage)",
    )
    ap.add_argument(
        "--pythons",
        nargs="+",
        default=list(PYTHON_VERSIONS),
        choices=list(PYTHON_VERSIONS),
        help="CPython versions to bundle wheels for: 311 = Blender 4.2-5.0, 313 = Blender 5.1+ (default: both;"
        " one alone halves the zip but then narrow blender_version_min/max to match)",
    )
    ap.add_argument("--blender-ext", help="path to blender_ext.py (default: the one inside the bpy wheel)")
    args = ap.parse_args(argv)
    platforms = list(dict.fromkeys(args.platforms))
    try:
        blender_ext = find_blender_ext(args.blender_ext)
        pythons = tuple(dict.fromkeys(args.pythons))
        build(platforms, args.out.resolve(), args.wheel_cache.resolve(), args.stage.resolve(), blender_ext, pythons)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
