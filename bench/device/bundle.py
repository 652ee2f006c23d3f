"""`make gpu-bundle`: the wheels the GPU machine's image lacks, into an ignored .whl/.

    python -m bench.device.bundle [--dest .whl] [--max-mib 40]

The GPU machine reaches no package registry: every package the project needs that its image
(bench/device/image.txt) does not hold must travel as a wheel for CPython 3.12 on manylinux
x86_64. Starting from pyproject's requirements (runtime, and the dev extras the GPU tests
import), each requirement not in the image is downloaded without its dependencies, its
wheel's Requires-Dist read, and its dependencies not in the image followed in turn. Writes
the wheels to --dest (removing stale ones), bench/device/bundle.txt (name==version, committed:
tests check it covers pyproject), prints each wheel's size and the total, and fails above
--max-mib.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]
IMAGE = Path(__file__).with_name("image.txt")
BUNDLE = Path(__file__).with_name("bundle.txt")
# Dev extras the kit imports there: the GPU tests collect every test module.
DEV_EXTRAS = ("dev",)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
MAX_MIB = 40.0


def target_environment() -> dict[str, str]:
    """Marker values of the GPU machine's Python (CPython 3.12 on Linux x86_64)."""
    env = default_environment()
    env.update(python_version="3.12", python_full_version="3.12.3", implementation_name="cpython",
               platform_python_implementation="CPython", sys_platform="linux", platform_system="Linux",
               platform_machine="x86_64", os_name="posix")
    return env


def image_packages(path: Path = IMAGE) -> dict[str, str | None]:
    """{canonical name: version or None} of the image's list."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version or None
    return out


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    data = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(data.get("dependencies", []))
    for extra in DEV_EXTRAS:
        reqs += data.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(r) for r in reqs]


def applies(req: Requirement, extras: frozenset[str] = frozenset()) -> bool:
    if req.marker is None:
        return True
    env = target_environment()
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def plan(reqs: list[Requirement], image: dict[str, str | None]) -> list[Requirement]:
    """The top-level requirements that must travel: those that apply there and are not in the image.
    An extra of an image package (e.g. psycopg[binary] when psycopg is there) is not followed here;
    `closure` follows extras of the packages it downloads."""
    return [r for r in reqs if applies(r) and canonicalize_name(r.name) not in image]


def requires_dist(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8", "replace")
    return [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]


def download(req: Requirement, dest: Path) -> Path:
    """One wheel for CPython 3.12 manylinux x86_64, no dependencies; returns its path."""
    spec = f"{req.name}{req.specifier}"
    argv = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
            "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
            *[a for p in PLATFORMS for a in ("--platform", p)], "--platform", "any", "-d", str(dest), spec]
    before = set(dest.glob("*.whl"))
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"could not download a wheel of {spec}: {proc.stderr.strip().splitlines()[-1:]}")
    name = canonicalize_name(req.name)
    found = [w for w in dest.glob("*.whl") if parse_wheel_filename(w.name)[0] == name]
    new = [w for w in found if w not in before] or found
    return new[0]


def closure(reqs: list[Requirement], image: dict[str, str | None], dest: Path) -> dict[str, Path]:
    """Every package the requirements need that the image lacks: {canonical name: wheel}.
    A requirement the image meets is not followed (its version is the image's)."""
    wheels: dict[str, Path] = {}
    queue = [r for r in reqs if applies(r)]
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        if name in image or name in wheels:
            continue
        wheels[name] = download(req, dest)
        queue += [d for d in requires_dist(wheels[name]) if applies(d, frozenset(req.extras))]
    return wheels


def image_dependencies(wheels: list[Path], image: dict[str, str | None]) -> list[str]:
    """What the bundle's wheels need from the image, as pip requirements (the image's version
    where it is recorded): a stand-in of the image (the CI rehearsal) must hold these too."""
    needed: dict[str, str] = {}
    for wheel in wheels:
        for dep in requires_dist(wheel):
            name = canonicalize_name(dep.name)
            if applies(dep) and name in image and name not in needed:
                needed[name] = f"{name}=={image[name]}" if image[name] else f"{name}{dep.specifier}"
    return [needed[n] for n in sorted(needed)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--max-mib", type=float, default=MAX_MIB)
    parser.add_argument("--image-deps", action="store_true",
                        help="print what the wheels in --dest need from the image (one requirement a line), and stop")
    args = parser.parse_args(argv)
    if args.image_deps:
        print("\n".join(image_dependencies(sorted(args.dest.glob("*.whl")), image_packages())))
        return 0
    args.dest.mkdir(parents=True, exist_ok=True)
    image = image_packages()
    wheels = closure(project_requirements(), image, args.dest)
    keep = set(wheels.values())
    for stale in args.dest.glob("*.whl"):
        if stale not in keep:
            stale.unlink()
    total = 0
    lines = []
    for name in sorted(wheels):
        wheel = wheels[name]
        size = wheel.stat().st_size
        total += size
        version = parse_wheel_filename(wheel.name)[1]
        lines.append(f"{name}=={version}")
        print(f"{name:28s} {str(version):12s} {size / 2**20:6.2f} MiB")
    print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {args.dest}")
    BUNDLE.write_text("# Written by `make gpu-bundle` (bench/device/bundle.py): the wheels the GPU image lacks.\n"
                      + "\n".join(lines) + "\n")
    if total > args.max_mib * 2**20:
        print(f"the bundle is over {args.max_mib:g} MiB: a device call carries 64 MiB in all", file=sys.stderr)
        return 1
    return 0


def bundle_names(path: Path = BUNDLE) -> set[str]:
    return {canonicalize_name(re.split(r"==", line.strip())[0]) for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


if __name__ == "__main__":
    sys.exit(main())
