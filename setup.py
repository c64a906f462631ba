"""Build of the `prism-sdk` distribution.

Two kinds of native code are built here:
- the C++ kernels (``kernels/``) through CMake, which is the single source of truth for C++
  compiler flags; CMake builds the pybind11 module ``sdk._kernels``;
- Cython modules: every ``.pyx`` file under ``sdk/`` and ``firmware_bridge/`` is cythonized,
  so later work only adds files.

The top-level folders ``models/`` and ``tools/`` are installed as ``sdk.models`` and ``sdk.tools``
so that no package with a generic name lands in site-packages.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "sdk"))
from _version import __version__  # noqa: E402

sys.path.pop(0)

# (installed package name) -> (folder in the repository)
PACKAGE_ROOTS = {"sdk": "sdk", "sdk.models": "models", "sdk.tools": "tools", "firmware_bridge": "firmware_bridge"}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, folder in PACKAGE_ROOTS.items():
        package_dir[name] = folder
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            sub = ".".join((name, *rel.parts)) if rel.parts else name
            if sub not in packages:
                packages.append(sub)
    return packages, package_dir


class CMakeExtension(Extension):
    """An extension whose build is delegated to CMake (target name = last part of `name`)."""

    def __init__(self, name: str, source_dir: Path = ROOT):
        super().__init__(name, sources=[])
        self.source_dir = str(source_dir)


class BuildExt(build_ext):
    def build_extension(self, ext):
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        config = os.environ.get("PRISM_BUILD_TYPE", "Release")
        configure = [
            "cmake", "-S", ext.source_dir, "-B", str(build_dir),
            f"-DCMAKE_BUILD_TYPE={config}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DPRISM_PYTHON_MODULE_DIR={out_dir}",
            "-DPRISM_BUILD_PYTHON=ON",
            "-DPRISM_BUILD_TESTS=OFF",
        ]
        try:
            import ninja  # noqa: F401

            configure += ["-G", "Ninja"]
        except ImportError:
            pass
        subprocess.run(configure, check=True)
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", ext.name.rsplit(".", 1)[-1],
                        "--parallel", jobs], check=True)


def _cython_extensions() -> list[Extension]:
    pyx = sorted(p for folder in ("sdk", "firmware_bridge") for p in (ROOT / folder).rglob("*.pyx"))
    if not pyx:
        return []
    from Cython.Build import cythonize

    exts = []
    for path in pyx:
        rel = path.relative_to(ROOT).with_suffix("")
        exts.append(Extension(".".join(rel.parts), [str(path.relative_to(ROOT))],
                              extra_compile_args=["-O3"]))
    return cythonize(exts, language_level=3, compiler_directives={"boundscheck": False,
                                                                  "wraparound": False})


packages, package_dir = _packages()

setup(
    name="prism-sdk",
    version=__version__,
    description="Prism: edge deployment SDK (PWLQ, S2DNAS, ONNX/TensorRT, sensor pipelines)",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=packages,
    package_dir=package_dir,
    package_data={"sdk": ["py.typed", "runtime/coop/cyclonedds.xml"], "firmware_bridge": ["**/*.pyx", "**/*.json", "**/*.xml"]},
    ext_modules=[CMakeExtension("sdk._kernels"), *_cython_extensions()],
    cmdclass={"build_ext": BuildExt},
    # The runtime side (sdk.load, Engine, firmware_bridge) needs only these: no PyTorch on device.
    install_requires=["numpy>=1.24", "onnxruntime>=1.17"],
    extras_require={
        "toolchain": ["torch==2.13.0", "onnx>=1.15", "mlxtend>=0.23", "scikit-learn>=1.3",
                      "tqdm>=4.60", "matplotlib>=3.7"],
        "dev": ["pytest>=7", "hypothesis>=6.80", "tqdm>=4.60", "cmake>=3.18", "ninja"],
        "camera": ["harvesters>=1.4", "genicam>=1.4"],
        # cooperative perception: Eclipse Cyclone DDS (ROS 2's default middleware) + Ed25519 signing
        "coop": ["cyclonedds~=11.0", "cryptography>=42", "scipy>=1.10"],
        # the PLC side of the conveyor scanner; pymodbus changes its API between minor versions
        "plc": ["pymodbus~=3.7.4"],
        # TensorRT engines are built on the device (JetPack ships `tensorrt`); documented, not
        # installable on machines without an NVIDIA GPU.
        "tensorrt": ["tensorrt>=10.0"],
    },
    entry_points={"console_scripts": ["prism=sdk.tools.cli:main"]},
    zip_safe=False,
)
