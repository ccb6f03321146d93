"""Which llama.cpp build `setup.sh` makes for this machine, and a wheel cache keyed by it.

Standard library only: `setup.sh` runs it (`python -m models.llama_build install`) before
the project's dependencies are installed.

Strategy: one build, compiled for the widest SIMD level this machine can run safely.

- x86-64 Linux: `-DGGML_NATIVE=OFF` plus every ggml instruction-set option whose CPU
  flags `/proc/cpuinfo` reports (SSE4.2, AVX, F16C, FMA, BMI2, AVX2, AVX-VNNI, AVX-512
  F/CD/VL/DQ/BW, VBMI, VNNI, BF16). AMX is always switched off: llama.cpp's AMX int8
  path segfaults on the first batched evaluation in virtual machines (measured on this
  project's Xeon VMs), and `-DGGML_NATIVE=ON` would turn it on wherever the CPU reports
  it. The options are the ones llama.cpp's `ggml/CMakeLists.txt` defines in the version
  vendored by llama-cpp-python `DEFAULT_VERSION` (checked in its sdist).
- macOS: Metal (llama-cpp-python forces it on Apple), native CPU flags (NEON on Apple
  silicon; no AMX path exists there).
- other Linux (aarch64, ...): `-DGGML_NATIVE=ON`, which has no AMX to trip over.
- `--accel cuda` (or XGEN_ACCEL=cuda): the above plus `-DGGML_CUDA=ON`.

pip caches a wheel it built from an sdist under the sdist's hash, whatever CMAKE_ARGS
were: a second set-up with other flags would silently reuse the first build. So the
wheel is built with `pip wheel --no-cache-dir` and kept in our own cache, in a folder
named by a hash of (llama-cpp-python version, CMake arguments, platform, Python tag,
and the CPU's flags for native builds): a machine always gets the build its flags ask
for, and a second set-up with the same flags installs the cached wheel in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_VERSION = "0.3.36"
MARKER = "xgen-llama-build.json"  # in the venv (sys.prefix): what setup.sh installed

# ggml option -> every /proc/cpuinfo flag it needs, in llama.cpp's option order.
# -DGGML_AVX512=ON compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw.
X86_OPTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("SSE42", ("sse4_2",)),
    ("AVX", ("avx",)),
    ("F16C", ("avx", "f16c")),
    ("FMA", ("avx", "fma")),
    ("BMI2", ("bmi2",)),
    ("AVX2", ("avx", "avx2")),
    ("AVX_VNNI", ("avx2", "avx_vnni")),
    ("AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")),
    ("AVX512_VBMI", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512vbmi")),
    ("AVX512_VNNI", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512_vnni")),
    ("AVX512_BF16", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512_bf16")),
]
AMX_OPTIONS = ("AMX_TILE", "AMX_INT8", "AMX_BF16")
ACCELS = ("auto", "cpu", "cuda", "metal")


class BuildError(Exception):
    """A set-up step failed; the message is one line for the user."""


@dataclass(frozen=True)
class Machine:
    system: str  # platform.system(): Linux, Darwin, Windows
    arch: str  # platform.machine(), normalised: x86_64, arm64, aarch64
    cpu_flags: frozenset[str]

    @classmethod
    def here(cls) -> "Machine":
        system = platform.system()
        arch = {"amd64": "x86_64", "x64": "x86_64"}.get(platform.machine().lower(), platform.machine().lower())
        flags: frozenset[str] = frozenset()
        if system == "Linux":
            try:
                flags = cpuinfo_flags(Path("/proc/cpuinfo").read_text(errors="replace"))
            except OSError:
                pass
        elif system == "Darwin":
            flags = sysctl_flags()
        return cls(system, arch, flags)


def cpuinfo_flags(text: str) -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo text: x86's `flags`, ARM's `Features` (first CPU)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def sysctl_flags() -> frozenset[str]:
    """Intel Macs: CPU features from sysctl, in cpuinfo spelling (AVX1.0 -> avx, AVX512VNNI -> avx512_vnni)."""
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    rename = {"avx1.0": "avx", "sse4.2": "sse4_2", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16"}
    return frozenset(rename.get(f, f) for f in out.lower().split())


def resolve_accel(accel: str, machine: Machine) -> str:
    if accel not in ACCELS:
        raise BuildError(f"unknown accelerator {accel!r}: use one of {', '.join(ACCELS)}")
    if accel == "auto":
        return "metal" if machine.system == "Darwin" else "cpu"
    if accel == "metal" and machine.system != "Darwin":
        raise BuildError("Metal needs macOS; use XGEN_ACCEL=cpu or cuda here")
    if accel == "cuda" and machine.system == "Darwin":
        raise BuildError("CUDA is not available on macOS; Metal is used by default there")
    return accel


def x86_options(flags: frozenset[str]) -> dict[str, bool]:
    """ggml instruction-set options for an x86-64 CPU with these flags (AMX always off)."""
    options = {name: all(f in flags for f in needs) for name, needs in X86_OPTIONS}
    options.update({name: False for name in AMX_OPTIONS})
    return options


def cmake_args(machine: Machine, accel: str = "auto") -> list[str]:
    """The CMake arguments setup.sh builds llama-cpp-python with on `machine`."""
    accel = resolve_accel(accel, machine)
    args: list[str] = []
    if machine.system == "Darwin":
        args += ["-DGGML_METAL=ON"] if accel == "metal" else ["-DGGML_METAL=OFF"]
    elif machine.arch == "x86_64":
        args.append("-DGGML_NATIVE=OFF")
        args += [f"-DGGML_{name}={'ON' if on else 'OFF'}" for name, on in x86_options(machine.cpu_flags).items()]
    else:
        args.append("-DGGML_NATIVE=ON")
    if accel == "cuda":
        args.append("-DGGML_CUDA=ON")
    return args


def is_native(args: list[str], machine: Machine) -> bool:
    """Whether the build depends on the compiling CPU beyond what `args` say (-march/-mcpu=native)."""
    if "-DGGML_NATIVE=OFF" in args:
        return False
    return machine.system == "Darwin" or machine.arch != "x86_64" or "-DGGML_NATIVE=ON" in args or not args


def cache_key(version: str, args: list[str], machine: Machine, python_tag: str) -> str:
    """Folder name for a wheel built with these inputs; equal inputs (in any order) give equal keys."""
    payload = {"version": version, "args": sorted(args), "system": machine.system, "arch": machine.arch,
               "python": python_tag}
    if is_native(args, machine):
        payload["cpu"] = sorted(machine.cpu_flags)
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return f"llama-cpp-python-{version}-{python_tag}-{digest}"


def summary(args: list[str]) -> str:
    """Short human description of a build: `AVX2 AVX512 ... (no AMX)`, `Metal`, `CUDA + ...`."""
    on = [a[len("-DGGML_"):-len("=ON")] for a in args if a.startswith("-DGGML_") and a.endswith("=ON")]
    parts = []
    if "CUDA" in on:
        parts.append("CUDA")
    if "METAL" in on:
        parts.append("Metal")
    if "NATIVE" in on:
        parts.append("native CPU flags")
    simd = [name for name, _ in X86_OPTIONS if name in on]
    if simd:
        parts.append(" ".join(simd) + (" (no AMX)" if not any(a in on for a in AMX_OPTIONS) else ""))
    return ", ".join(parts) or "llama.cpp defaults"


def default_cache_dir() -> Path:
    if os.environ.get("XGEN_WHEEL_CACHE"):
        return Path(os.environ["XGEN_WHEEL_CACHE"]).expanduser()
    if platform.system() == "Darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "xgen-local" / "wheels"


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def _run(cmd: list[str], what: str, env: dict | None = None) -> None:
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}): {shlex.join(cmd)}")


def build_wheel(version: str, args: list[str], dest: Path, pip: list[str]) -> Path:
    """Build llama-cpp-python `version` with CMAKE_ARGS=args into the folder `dest` (made atomically)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xgen-llama-build-", dir=dest.parent) as tmp:
        tmp_path = Path(tmp)
        # The sdist comes through pip's HTTP cache (a second build does not download it again) ...
        _run(pip + ["download", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={version}",
                    "-d", str(tmp_path / "sdist")], "downloading the llama-cpp-python source")
        sdists = sorted((tmp_path / "sdist").glob("llama_cpp_python-*.tar.gz"))
        if not sdists:
            raise BuildError(f"pip found no llama-cpp-python {version} source distribution")
        # ... but the wheel must not come from, nor go into, pip's wheel cache (keyed on the sdist alone).
        env = dict(os.environ, CMAKE_ARGS=" ".join(args))
        env.pop("FORCE_CMAKE", None)
        _run(pip + ["wheel", "--no-deps", "--no-cache-dir", str(sdists[0]), "-w", str(tmp_path / "wheel")],
             "building llama-cpp-python", env=env)
        wheels = sorted((tmp_path / "wheel").glob("llama_cpp_python-*.whl"))
        if not wheels:
            raise BuildError("pip built no llama-cpp-python wheel")
        out = tmp_path / "out"
        out.mkdir()
        shutil.move(str(wheels[0]), out / wheels[0].name)
        (out / "build.json").write_text(json.dumps({"version": version, "cmake_args": args}, indent=1) + "\n")
        if dest.exists():  # another set-up finished the same build meanwhile
            return cached_wheel(dest)
        out.rename(dest)
    return cached_wheel(dest)


def cached_wheel(folder: Path) -> Path | None:
    wheels = sorted(folder.glob("llama_cpp_python-*.whl")) if folder.is_dir() else []
    return wheels[0] if wheels else None


def install(accel: str, version: str, cache_dir: Path, prefix: Path, pip: list[str]) -> str:
    """Build (or take from the cache) and install the llama-cpp-python this machine should have."""
    machine = Machine.here()
    user_args = os.environ.get("CMAKE_ARGS", "").split()
    args = user_args if user_args else cmake_args(machine, accel)
    key = cache_key(version, args, machine, python_tag())
    marker = prefix / MARKER
    try:
        done = json.loads(marker.read_text()).get("key") == key
    except (OSError, ValueError, AttributeError):
        done = False
    how = f"llama-cpp-python {version} for {summary(args)}"
    if done and subprocess.run(pip[:1] + ["-c", "import llama_cpp"], capture_output=True).returncode == 0:
        print(f"{how}: already installed")
        return key
    folder = cache_dir / key
    wheel = cached_wheel(folder)
    if wheel is None:
        print(f"building {how}, CMAKE_ARGS={' '.join(args)} (several minutes; cached in {folder})", flush=True)
        wheel = build_wheel(version, args, folder, pip)
    else:
        print(f"{how}: cached wheel {wheel}")
    _run(pip + ["install", "--no-deps", "--force-reinstall", str(wheel)], "installing llama-cpp-python")
    marker.write_text(json.dumps({"key": key, "version": version, "cmake_args": args, "wheel": str(wheel),
                                  "accel": accel}, indent=1) + "\n")
    return key


def installed_build(prefix: Path | None = None) -> dict | None:
    """What setup.sh recorded about the llama-cpp-python build in this environment, if it did."""
    try:
        return json.loads(((prefix or Path(sys.prefix)) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.llama_build", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["args", "key", "install"],
                        help="args: print the CMake arguments; key: the wheel cache key; install: build/install")
    parser.add_argument("--accel", default=os.environ.get("XGEN_ACCEL", "auto"),
                        help="auto (Metal on macOS, else CPU), cpu, cuda or metal (env XGEN_ACCEL)")
    parser.add_argument("--version", default=os.environ.get("XGEN_LLAMA_CPP_VERSION", DEFAULT_VERSION),
                        help=f"llama-cpp-python version (default {DEFAULT_VERSION}, env XGEN_LLAMA_CPP_VERSION)")
    parser.add_argument("--cache", type=Path, default=None, help="wheel cache (default: env XGEN_WHEEL_CACHE "
                        "or ~/.cache/xgen-local/wheels)")
    opts = parser.parse_args(argv)
    try:
        machine = Machine.here()
        args = os.environ.get("CMAKE_ARGS", "").split() or cmake_args(machine, opts.accel)
        if opts.command == "args":
            print(" ".join(args))
        elif opts.command == "key":
            print(cache_key(opts.version, args, machine, python_tag()))
        else:
            install(opts.accel, opts.version, opts.cache or default_cache_dir(), Path(sys.prefix),
                    [sys.executable, "-m", "pip"])
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
