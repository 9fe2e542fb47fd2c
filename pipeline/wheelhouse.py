"""`make wheelhouse` and `make venv-offline`: eoleads on a host that cannot reach a package registry.

A GPU host on an offline network usually has Python and a CUDA build of torch already, and
nothing else. From a machine with registry access, `collect` gathers eoleads' runtime
requirements at the versions installed here (so the offline host runs what was tested here), for
the target's Python version and platform, as wheels: binary ones from the registry, pure-Python
ones built here where the registry has only a source archive. `--skip` leaves out what the target
already has (torch and what only torch needs). On the host, with the checkout and the wheelhouse
carried there, `install` builds `.venv` from the wheelhouse alone, sees the host's own torch, and
installs the checkout into it as `make venv` does, so `make demo`, `make gpu-check` and `eoleads
run` work as anywhere else (docs/offline.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pipeline.errors import EoleadsError, InputError

ROOT = Path(__file__).resolve().parent.parent
#: manylinux tags an x86-64 Linux host of the last ten years accepts (pip matches each exactly).
LINUX_X86_64 = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64")
#: What a CUDA host with PyTorch installed already has: torch and the wheels that come with it.
TORCH = ("torch", "torchvision")


@dataclass(frozen=True)
class Pin:
    """One distribution at the version installed here."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def _environment(python_version: str) -> dict[str, str]:
    """Marker values of a Linux host running `python_version` (e.g. 3.12)."""
    from packaging.markers import default_environment

    env = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
    env.update(python_version=python_version, python_full_version=f"{python_version}.0", extra="")
    return env


def runtime_closure(python_version: str, skip: tuple[str, ...] = (), root: str = "eoleads") -> list[Pin]:
    """`root`'s runtime requirements and theirs, pinned to the versions installed here, for a Linux host of
    `python_version`; `skip` and what only they need are left out. A requirement not installed here is an
    error naming it: its version would be a guess."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = _environment(python_version)
    skipped = {canonicalize_name(s) for s in skip}
    pins: dict[str, Pin] = {}
    todo: list[tuple[Requirement, str]] = [(Requirement(r), root) for r in metadata.requires(root) or []]
    seen_extras: set[tuple[str, str]] = set()
    while todo:
        req, needed_by = todo.pop()
        name = canonicalize_name(req.name)
        if name in skipped or (req.marker is not None and not req.marker.evaluate(env)):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise EoleadsError(f"{req} (needed by {needed_by}) is not installed here, so its version cannot be "
                               "pinned: install it here first (`make venv`), then collect again") from None
        extras = {e for e in req.extras if (name, e) not in seen_extras}
        if name in pins and not extras:
            continue
        pins[name] = Pin(name, dist.version)
        seen_extras.update((name, e) for e in extras)
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
                sub.marker = None
                todo.append((sub, name))
    return sorted(pins.values(), key=lambda p: p.name)


def _download(pin: Pin, folder: Path, python_version: str, platforms: tuple[str, ...]) -> None:
    """The pin's binary wheel for the target, or, where the registry has only a source archive, a
    pure-Python wheel built here (one with compiled code would fit this machine, not the target: refused)."""
    tags = [a for p in platforms for a in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    got = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
                          "--implementation", "cp", *tags, "-d", str(folder), str(pin)], capture_output=True, text=True)
    if got.returncode == 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        built = subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp, str(pin)], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if built.returncode != 0 or not wheels:
            raise EoleadsError(f"{pin}: no wheel for Python {python_version} on {platforms[0]} in the registry, and "
                               f"none could be built here ({' '.join((built.stderr or got.stderr).split()[-30:])})")
        if not wheels[0].name.endswith("-none-any.whl"):
            raise EoleadsError(f"{pin}: the registry has no wheel for Python {python_version} on {platforms[0]} and "
                               f"building one here gives {wheels[0].name}, for this machine only: build it there")
        wheels[0].replace(folder / wheels[0].name)


def collect(out: Path, python_version: str, skip: tuple[str, ...] = TORCH,
            platforms: tuple[str, ...] = LINUX_X86_64, progress: bool = True) -> list[Pin]:
    """Download (or build) every pinned wheel into `out`, with setuptools (to install the checkout
    there) and `requirements.txt`."""
    from tqdm import tqdm

    pins = runtime_closure(python_version, skip)
    if not any(p.name == "setuptools" for p in pins):
        pins.append(Pin("setuptools", metadata.version("setuptools")))
    out.mkdir(parents=True, exist_ok=True)
    for pin in tqdm(pins, desc="wheels", unit="wheel", disable=not progress):
        _download(pin, out, python_version, platforms)
    (out / "requirements.txt").write_text("".join(f"{p}\n" for p in pins), encoding="utf-8")
    return pins


def install(wheelhouse: Path, venv: Path) -> None:
    """`venv` from the wheelhouse alone, seeing this interpreter's torch, with the checkout installed
    editable in it, as `make venv` would: run by the host's Python, the one that has torch."""
    import importlib.util
    import venv as venvs

    requirements = wheelhouse / "requirements.txt"
    if not requirements.is_file():
        raise InputError(requirements, None, "not found", "make the wheelhouse with `make wheelhouse` on a machine "
                         "that can reach a package registry, and carry its folder here")
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise InputError(sys.executable, None, "this Python has no torch", "run it with the Python that has the "
                         "host's CUDA torch (PYTHON=...), or collect the wheelhouse with --skip '' to carry torch too")
    bundled_pip = importlib.util.find_spec("ensurepip") is not None  # some Pythons ship without it
    venvs.EnvBuilder(with_pip=bundled_pip, clear=True).create(venv)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # after the environment's own packages on sys.path: the wheelhouse's versions come first
    (Path(site) / "host-torch.pth").write_text(f"{Path(spec.origin).parent.parent}\n", encoding="utf-8")
    pip = [python, "-m", "pip"] if bundled_pip else [sys.executable, "-m", "pip", "--python", python]
    pip += ["--disable-pip-version-check", "-q", "install", "--no-index"]
    subprocess.run([*pip, "--find-links", str(wheelhouse), "-r", str(requirements)], check=True)
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True)
    (venv / ".installed").touch()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("collect", help="gather the wheels, on a machine with registry access")
    p.add_argument("--out", type=Path, default=Path("dist/wheelhouse"))
    p.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                   help="the target's Python, e.g. 3.12 (default: this one)")
    p.add_argument("--skip", default=",".join(TORCH),
                   help="distributions the target already has, comma-separated (default: torch,torchvision; "
                        "'' for none)")
    p = commands.add_parser("install", help="build .venv from a wheelhouse, on the offline host")
    p.add_argument("--wheelhouse", type=Path, default=Path("dist/wheelhouse"))
    p.add_argument("--venv", type=Path, default=Path(".venv"))
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install(args.wheelhouse, args.venv)
            print(f"{args.venv} built from {args.wheelhouse}, with {sys.executable}'s torch")
            return
        pins = collect(args.out, args.python_version, tuple(s for s in args.skip.split(",") if s))
    except EoleadsError as err:
        sys.exit(f"error: {err}")
    size = sum(f.stat().st_size for f in args.out.glob("*.whl"))
    print(f"{len(pins)} wheels, {size / 2**20:.0f} MiB, in {args.out} for Python {args.python_version}; on the "
          f"offline host, beside the checkout: make venv-offline WHEELHOUSE=<that folder>")


if __name__ == "__main__":
    main()
