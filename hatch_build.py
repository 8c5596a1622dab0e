"""The compiled build's native payload reader (docs/performance.md, "The native payload
reader"): with the build hooks enabled, cargo builds native/ into the wheel, beside the modules
mypyc compiles. Without cargo, or for a Python that PyO3 0.17 cannot build for, the wheel has
the pure reader only, and says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# PyO3 0.17, the version Debian bookworm packages (native/Cargo.toml), builds up to 3.11.
NEWEST_PYTHON = (3, 11)
LIBRARY_SUFFIXES = {"linux": ".so", "darwin": ".dylib"}
# Debian's packaged crates (apt-get install cargo librust-pyo3-dev librust-ahash-dev), which
# build offline; elsewhere cargo fetches the same versions from crates.io.
DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")


class NativePayloadHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "native-payload"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        cargo = shutil.which("cargo")
        library_suffix = LIBRARY_SUFFIXES.get(sys.platform)
        if cargo is None or library_suffix is None:
            self.app.display_warning("no cargo for this platform: no native payload reader")
            return
        if sys.implementation.name != "cpython" or sys.version_info[:2] > NEWEST_PYTHON:
            self.app.display_warning("PyO3 0.17 does not build for this Python: no native reader")
            return
        target = Path(tempfile.mkdtemp(prefix="keycloak-m2m-native-"))
        command = [cargo, "build", "--release", "--target-dir", str(target)]
        if DEBIAN_REGISTRY.is_dir():
            command += [
                "--offline",
                "--config",
                'source.crates-io.replace-with="debian"',
                "--config",
                f'source.debian.directory="{DEBIAN_REGISTRY}"',
            ]
        subprocess.run(  # noqa: S603 (cargo from PATH, arguments of our own)
            command,
            cwd=Path(self.root) / "native",
            env={**os.environ, "PYO3_PYTHON": sys.executable},
            check=True,
        )
        built = target / "release" / f"lib_native_payload{library_suffix}"
        installed = "keycloak_m2m/_native_payload" + sysconfig.get_config_var("EXT_SUFFIX")
        build_data["force_include"][str(built)] = installed
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
