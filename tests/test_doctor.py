"""`videomae doctor`: the real command on this machine, the pass/fail logic, and the decode self-test."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from conftest import run_cli

from videomae_cli import doctor
from videomae_cli.data.video import available_backends
from videomae_cli.ui.tables import doctor_table


def test_doctor_command_passes_and_writes_nothing(tmp_path: Path) -> None:
    result = run_cli("doctor", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("python", "torch", "CUDA", "bf16", "timm", "PyAV", "decord", "decode self-test"):
        assert name in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "doctor: all required pieces work"
    assert list(tmp_path.iterdir()) == []


def _lookup_without(*missing: str, broken: str = ""):
    """A package lookup where `missing` are not installed and `broken` fails to import."""

    def lookup(dist: str, module: str | None) -> tuple[str | None, str]:
        if dist in missing:
            return None, ""
        return "1.0", "installed but cannot import: ImportError: boom" if dist == broken and module else ""

    return lookup


def test_missing_required_package_fails_with_a_pip_fix() -> None:
    checks = doctor.check_packages(lookup=_lookup_without("timm"))
    (timm,) = [c for c in checks if c.name == "timm"]
    assert timm.status == doctor.FAIL
    assert 'pip install "timm>=1.0"' in timm.fix
    assert doctor.exit_code(checks) == 1
    assert doctor.summary_line(checks) == "doctor: 1 problem(s); fixes above"
    assert all(c.status == doctor.OK for c in checks if c.name != "timm")


def test_broken_required_package_fails() -> None:
    checks = doctor.check_packages(lookup=_lookup_without(broken="av"))
    (av_check,) = [c for c in checks if c.name == "av"]
    assert av_check.status == doctor.FAIL and "cannot import" in av_check.detail
    assert doctor.exit_code(checks) == 1


def test_missing_optional_packages_only_warn() -> None:
    checks = doctor.check_packages(lookup=_lookup_without("transformers", "onnxruntime"))
    warned = {c.name: c.fix for c in checks if c.status == doctor.WARN}
    assert warned == {
        "transformers": 'pip install "videomae-cli[dev]"',
        "onnxruntime": 'pip install "videomae-cli[onnx]"',
    }
    assert doctor.exit_code(checks) == 0
    assert doctor.summary_line(checks) == "doctor: all required pieces work"


def test_real_package_lookup() -> None:
    assert doctor.package_version("numpy", "numpy")[0] is not None
    assert doctor.package_version("no-such-package-videomae-doctor", None) == (None, "")


@pytest.mark.parametrize("backend", available_backends())
def test_decode_selftest_passes(backend: str) -> None:
    (check,) = doctor.check_decode_selftest([backend])
    assert check.status == doctor.OK, check
    assert backend in check.name


def test_decode_selftest_fails_for_a_missing_backend() -> None:
    (check,) = doctor.check_decode_selftest(["no-such-backend"])
    assert check.status == doctor.FAIL and check.fix


def test_selftest_clip_lives_in_a_removed_temporary_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert all(c.status == doctor.OK for c in doctor.check_decode_selftest())
    assert list(tmp_path.iterdir()) == []


def test_render_has_one_row_per_check() -> None:
    checks = [doctor.Check("a", doctor.OK, "fine"), doctor.Check("b", doctor.FAIL, "[x] broken", "pip install b")]
    table = doctor_table(checks)
    assert table.row_count == 2
    assert [c.header for c in table.columns] == ["check", "status", "detail", "fix"]


def test_advice_names_settings_and_the_command_says_flags() -> None:
    # doctor.py names settings (`precision=bf16`); the command shows them as flags, as every command's errors do.
    from videomae_cli.cli.tools import _in_flag_terms

    check = doctor.Check("bf16", doctor.WARN, "not supported on this GPU", "use `precision=fp16` or fp32")
    assert _in_flag_terms(check).fix == "use --precision fp16 or fp32"
    assert "`format=hf`" in doctor.OPTIONAL[0][1]
    assert _in_flag_terms(doctor.Check("transformers", doctor.WARN, doctor.OPTIONAL[0][1])).detail == (
        "HF parity tests and --format hf round trips"
    )
