"""setup.sh's llama.cpp build choice (models/llama_build.py) and the engine line of `xgen models`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import llama_build as lb
from models.llama_cpp_utils import engine_info_line, parse_system_info, system_info, weight_layout_line

# /proc/cpuinfo `flags` lines of real CPUs (trimmed to the first processor).
SAPPHIRE_RAPIDS_VM = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch cpuid_fault fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid cldemote movdiri movdir64b fsrm serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 arch_capabilities
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse sse2
"""
EPYC_ZEN3 = """model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 clzero xsaveerptr arat npt nrip_save umip vaes vpclmulqdq rdpid fsrm
"""
EPYC_ZEN4 = """model name\t: AMD EPYC 9B14
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi avx512_vbmi2 gfni vaes avx512_vnni avx512_bitalg avx512_vpopcntdq
"""
SKYLAKE_X = """flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl
"""
OLD_CORE2 = """flags\t\t: fpu sse sse2 ssse3 cx16 sse4_1 sse4_2 popcnt
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
"""


def x86(text: str) -> lb.Machine:
    return lb.Machine("Linux", "x86_64", lb.cpuinfo_flags(text))


def enabled(args: list[str]) -> set[str]:
    return {a[len("-DGGML_"):-len("=ON")] for a in args if a.endswith("=ON")}


def test_avx512_vm_with_amx_gets_avx512_extensions_and_never_amx():
    args = lb.cmake_args(x86(SAPPHIRE_RAPIDS_VM))
    assert "-DGGML_NATIVE=OFF" in args  # native would compile in the AMX path that crashes in VMs
    assert enabled(args) == {"SSE42", "AVX", "F16C", "FMA", "BMI2", "AVX2", "AVX_VNNI", "AVX512",
                             "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"}
    for amx in ("AMX_TILE", "AMX_INT8", "AMX_BF16"):
        assert f"-DGGML_{amx}=OFF" in args
    assert lb.summary(args).endswith("AVX512_BF16 (no AMX)")


def test_only_the_first_processor_flags_are_read():
    assert "avx2" in lb.cpuinfo_flags(SAPPHIRE_RAPIDS_VM)  # processor 1 lists only fpu sse sse2


def test_avx2_cpu_gets_no_avx512():
    on = enabled(lb.cmake_args(x86(EPYC_ZEN3)))
    assert on == {"SSE42", "AVX", "F16C", "FMA", "BMI2", "AVX2"}
    assert "-DGGML_AVX512=OFF" in lb.cmake_args(x86(EPYC_ZEN3))


def test_zen4_gets_avx512_extensions_without_avx_vnni():
    on = enabled(lb.cmake_args(x86(EPYC_ZEN4)))
    assert {"AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"} <= on
    assert "AVX_VNNI" not in on


def test_skylake_gets_plain_avx512_only():
    on = enabled(lb.cmake_args(x86(SKYLAKE_X)))
    assert "AVX512" in on and not on & {"AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"}


def test_cpu_without_avx_gets_sse42_only():
    # -DGGML_NATIVE=OFF alone would compile AVX2 kernels: an "Illegal instruction" on this CPU.
    args = lb.cmake_args(x86(OLD_CORE2))
    assert enabled(args) == {"SSE42"}
    assert "-DGGML_AVX=OFF" in args and "-DGGML_AVX2=OFF" in args and "-DGGML_FMA=OFF" in args


def test_arm_linux_builds_native_and_macos_metal():
    arm = lb.Machine("Linux", "aarch64", lb.cpuinfo_flags(GRAVITON3))
    assert "asimddp" in arm.cpu_flags
    assert lb.cmake_args(arm) == ["-DGGML_NATIVE=ON"]
    mac = lb.Machine("Darwin", "arm64", frozenset())
    assert lb.cmake_args(mac) == ["-DGGML_METAL=ON"]
    assert lb.cmake_args(mac, "cpu") == ["-DGGML_METAL=OFF"]


def test_cuda_adds_the_cuda_backend_to_the_cpu_flags():
    machine = x86(SAPPHIRE_RAPIDS_VM)
    args = lb.cmake_args(machine, "cuda")
    assert args[-1] == "-DGGML_CUDA=ON" and args[:-1] == lb.cmake_args(machine, "cpu")
    assert lb.summary(args).startswith("CUDA, ")


@pytest.mark.parametrize("accel, machine", [("metal", lb.Machine("Linux", "x86_64", frozenset())),
                                            ("cuda", lb.Machine("Darwin", "arm64", frozenset())),
                                            ("rocm", lb.Machine("Linux", "x86_64", frozenset()))])
def test_impossible_accelerators_are_refused(accel, machine):
    with pytest.raises(lb.BuildError):
        lb.cmake_args(machine, accel)


def test_cache_key_follows_the_flags_not_their_order():
    avx512 = lb.cmake_args(x86(SAPPHIRE_RAPIDS_VM))
    avx2 = lb.cmake_args(x86(EPYC_ZEN3))
    machine = x86(SAPPHIRE_RAPIDS_VM)
    key = lb.cache_key("0.3.36", avx512, machine, "cp311")
    assert key == lb.cache_key("0.3.36", list(reversed(avx512)), machine, "cp311")
    assert key != lb.cache_key("0.3.36", avx2, machine, "cp311")  # pip's own cache would say equal
    assert key != lb.cache_key("0.3.37", avx512, machine, "cp311")
    assert key != lb.cache_key("0.3.36", avx512, machine, "cp312")
    assert key != lb.cache_key("0.3.36", avx512 + ["-DGGML_CUDA=ON"], machine, "cp311")
    # Explicit x86 flags do not depend on the compiling CPU; native builds do.
    assert key == lb.cache_key("0.3.36", avx512, x86(EPYC_ZEN3), "cp311")
    arm_a = lb.Machine("Linux", "aarch64", lb.cpuinfo_flags(GRAVITON3))
    arm_b = lb.Machine("Linux", "aarch64", frozenset({"fp", "asimd"}))
    assert lb.cache_key("0.3.36", ["-DGGML_NATIVE=ON"], arm_a, "cp311") != \
        lb.cache_key("0.3.36", ["-DGGML_NATIVE=ON"], arm_b, "cp311")


def test_install_uses_the_wheel_cached_for_these_flags(tmp_path, monkeypatch):
    """A cached wheel for the flags is installed without building; another flag set would build."""
    calls = []
    monkeypatch.setattr(lb, "_run", lambda cmd, what, env=None: calls.append(cmd))
    monkeypatch.setattr(lb, "build_wheel", lambda *a: pytest.fail("built although a wheel was cached"))
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    machine = lb.Machine.here()
    args = lb.cmake_args(machine, "cpu")
    folder = tmp_path / "cache" / lb.cache_key("0.3.36", args, machine, lb.python_tag())
    folder.mkdir(parents=True)
    wheel = folder / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"")
    prefix = tmp_path / "venv"
    prefix.mkdir()
    lb.install("cpu", "0.3.36", tmp_path / "cache", prefix, ["pip"])
    assert calls == [["pip", "install", "--no-deps", "--force-reinstall", str(wheel)]]
    assert json.loads((prefix / lb.MARKER).read_text())["cmake_args"] == args
    # Other flags (here a user's CMAKE_ARGS) miss that cache entry and build.
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_NATIVE=OFF -DGGML_AVX2=ON")
    built = []
    monkeypatch.setattr(lb, "build_wheel", lambda version, a, dest, pip: built.append(a) or wheel)
    lb.install("cpu", "0.3.36", tmp_path / "cache", prefix, ["pip"])
    assert built == [["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON"]]


def test_bad_accelerator_is_one_line_and_nonzero():
    proc = subprocess.run([sys.executable, "-m", "models.llama_build", "args", "--accel", "rocm"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "unknown accelerator 'rocm'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_setup_sh_rejects_unknown_options():
    proc = subprocess.run(["bash", "setup.sh", "--rocm"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "setup.sh: unknown option '--rocm' (use --cpu, --cuda or --metal)"


def test_parse_system_info_splits_backends():
    text = "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 | REPACK = 1 | "
    assert parse_system_info(text) == {"CUDA": {"ARCHS": "890", "USE_GRAPHS": "1"},
                                       "CPU": {"SSE3": "1", "AVX2": "1", "REPACK": "1"}}


def test_models_command_shows_the_real_build():
    """`xgen models` ends with the engine line, made of llama.cpp's own system info, and
    the weight layout the engine will use."""
    import llama_cpp
    from click.testing import CliRunner

    from assistant.cli import main

    result = CliRunner().invoke(main, ["models"], catch_exceptions=False)
    assert result.exit_code == 0
    line, layout = result.output.strip().splitlines()[-2:]
    assert line == engine_info_line()
    assert layout == weight_layout_line()
    truth = parse_system_info(llama_cpp.llama_print_system_info().decode())
    cpu_part = line.split("CPU: ", 1)[1].split(";")[0].split()
    assert cpu_part == [k if v == "1" else f"{k}={v}" for k, v in truth["CPU"].items()]
    assert line.startswith(f"Engine: llama-cpp-python {llama_cpp.__version__} (llama.cpp), CPU: ")
    assert line.endswith("GPU offload: none") == (not llama_cpp.llama_supports_gpu_offload())


def test_installed_engine_has_the_features_setup_chose():
    """The llama.cpp in this venv was built with what models/llama_build.py picked for this CPU."""
    build = lb.installed_build()
    if build is None:
        pytest.skip("llama-cpp-python was not installed by setup.sh in this environment")
    cpu = system_info()["CPU"]
    assert "AMX_INT8" not in cpu  # never the path that segfaults in VMs
    if build["cmake_args"] != lb.cmake_args(lb.Machine.here(), build.get("accel", "auto")):
        pytest.skip("built with the user's own CMAKE_ARGS")
    for option in lb.x86_options(lb.Machine.here().cpu_flags) if lb.Machine.here().arch == "x86_64" else ():
        on = f"-DGGML_{option}=ON" in build["cmake_args"]
        if option in ("SSE42", "AMX_TILE", "AMX_BF16"):
            continue  # not reported by llama.cpp's system info
        assert (option in cpu) == on, option
