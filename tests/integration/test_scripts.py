"""The Quick start's scripts say what went wrong when they fail, instead
of exiting 1 in silence."""
import shutil
import subprocess

from conftest import ROOT


def test_build_explains_a_foreign_build_dir(tmp_path):
    """A build/ that is not a meson build directory (left by something
    else) is named, and nothing in it is touched."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "mine").write_text("keep")
    r = subprocess.run(["bash", tmp_path / "scripts" / "build.sh", "release"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "build/ exists but is not a meson build directory" in r.stderr
    assert (tmp_path / "build" / "mine").read_text() == "keep"


def test_up_names_the_failing_step(tmp_path):
    """scripts/up.sh stops at the first failing step and names it."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    (tmp_path / "scripts" / "deps.sh").write_text("exit 0\n")
    (tmp_path / "build").mkdir()
    r = subprocess.run(["bash", tmp_path / "scripts" / "up.sh"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "up.sh: failed: bash scripts/build.sh release" in r.stderr
